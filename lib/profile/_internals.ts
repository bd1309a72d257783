/**
 * What the messenger needs of a profile beyond its public API: the store
 * and the unlocked identity. Kept out of the public API (no database type or
 * private key there), and reachable only by importing this file.
 *
 * @module
 */
import type { Identity } from "../crypto/identity.ts";
import type { UserStore } from "../store/user_store.ts";
import type { ContactBook } from "./contacts.ts";

/** A profile's parts, for the layers above it in DIM. */
export interface ProfileParts {
  /** The user's database. */
  readonly store: UserStore;
  /** The contact book on it. */
  readonly book: ContactBook;
  /** Whether the profile holds the data-directory lock. */
  readonly exclusive: boolean;
  /** The unlocked identity; throws `ProfileLockedError` while locked. */
  identity(): Identity;
}

const PARTS = new WeakMap<object, ProfileParts>();

/**
 * Records a profile's parts (called by its constructor).
 *
 * @param profile The profile.
 * @param parts Its parts.
 */
export function setProfileParts(profile: object, parts: ProfileParts): void {
  PARTS.set(profile, parts);
}

/**
 * The parts of a profile.
 *
 * @param profile A profile.
 * @returns Its parts.
 * @throws {TypeError} If it is not a profile.
 */
export function profileParts(profile: object): ProfileParts {
  const parts = PARTS.get(profile);
  if (parts === undefined) throw new TypeError("Cannot use this object as a profile");
  return parts;
}
