/**
 * The contact book: contacts pinned in the local database, looked up by
 * local name or user ID, with their trust state. The messenger and the
 * CLI's offline commands share it, so a contact reads and verifies the same
 * way with or without a network.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity } from "./crypto/identity.ts";
 * import { ContactBook } from "./contacts.ts";
 * import { UserStore } from "./store/user_store.ts";
 *
 * using db = UserStore.open(":memory:");
 * const bob = await Identity.generate();
 * db.contacts.upsert({
 *   name: "bob",
 *   userId: bob.id,
 *   signingPublicKey: bob.signingPublicKey,
 *   encryptionPublicKey: bob.encryptionPublicKey,
 * });
 * const book = new ContactBook(db.contacts);
 * assert.equal(book.contact(bob.id).name, "bob");
 * book.verify("bob");
 * assert.equal(book.contact("bob").verified, true);
 * ```
 *
 * @module
 */
import type { PublicIdentity } from "./crypto/identity.ts";
import { fingerprint, safetyNumber } from "./crypto/safety_number.ts";
import { DimError } from "./errors.ts";
import type { ContactStore, StoredContact } from "./store/contact_store.ts";

/** A contact as DIM shows it. */
export interface Contact {
  /** The local name. */
  readonly name: string;
  /** The contact's user ID. */
  readonly id: string;
  /** The display name from their card. */
  readonly displayName: string;
  /** Short fingerprint of the pinned keys. */
  readonly fingerprint: string;
  /** Whether the user confirmed the safety number. */
  readonly verified: boolean;
  /** Whether the network shows keys that differ from the pinned ones. */
  readonly keyChanged: boolean;
  /** When they were last seen (ms), 0 if never. */
  readonly lastSeen: number;
}

/** Thrown for an unknown contact name or ID. */
export class UnknownContactError extends DimError {}

/** Contacts in one database. */
export class ContactBook {
  readonly #db: ContactStore;

  /**
   * Opens the book of a database.
   *
   * @param db The database's contacts.
   */
  constructor(db: ContactStore) {
    this.#db = db;
  }

  /**
   * The stored row of a contact, if there is one.
   *
   * @param nameOrId The local name or user ID.
   * @returns The row, or `undefined`.
   */
  find(nameOrId: string): StoredContact | undefined {
    return this.#db.get(nameOrId) ?? this.#db.getById(nameOrId.trim().toLowerCase());
  }

  /**
   * The stored row of a contact.
   *
   * @param nameOrId The local name or user ID.
   * @returns The row.
   * @throws {UnknownContactError} If there is none.
   */
  row(nameOrId: string): StoredContact {
    const row = this.find(nameOrId);
    if (row === undefined) throw new UnknownContactError(`Cannot find contact "${nameOrId}"`);
    return row;
  }

  /**
   * A contact by local name or user ID.
   *
   * @param nameOrId The local name or user ID.
   * @returns The contact.
   * @throws {UnknownContactError} If there is none.
   */
  contact(nameOrId: string): Contact {
    return toContact(this.row(nameOrId));
  }

  /**
   * All contacts, by name.
   *
   * @returns The contacts.
   */
  list(): Contact[] {
    return this.#db.list().map(toContact);
  }

  /**
   * Forgets a contact (the history stays).
   *
   * @param name The local name.
   * @returns Whether a contact was removed.
   */
  remove(name: string): boolean {
    return this.#db.remove(name);
  }

  /**
   * The safety number of the user and a contact, over the keys the network
   * shows now (the new ones, if they changed).
   *
   * @param me The user's public identity.
   * @param nameOrId The contact.
   * @returns 60 digits in 12 groups.
   * @throws {UnknownContactError} If there is no such contact.
   */
  safetyNumber(me: PublicIdentity, nameOrId: string): string {
    const row = this.row(nameOrId);
    return safetyNumber(me, {
      id: row.userId,
      signingPublicKey: row.signingPublicKey,
      encryptionPublicKey: row.changedEncryptionKey ?? row.encryptionPublicKey,
    });
  }

  /**
   * Marks a contact verified; if their keys changed, pins the new keys.
   *
   * @param nameOrId The contact.
   * @returns The contact as it is now.
   * @throws {UnknownContactError} If there is no such contact.
   */
  verify(nameOrId: string): Contact {
    const row = this.row(nameOrId);
    this.#db.upsert({
      ...row,
      encryptionPublicKey: row.changedEncryptionKey ?? row.encryptionPublicKey,
      changedEncryptionKey: undefined,
      verified: true,
    });
    return this.contact(row.name);
  }
}

function toContact(row: StoredContact): Contact {
  return {
    name: row.name,
    id: row.userId,
    displayName: row.displayName ?? "",
    fingerprint: fingerprint({
      id: row.userId,
      signingPublicKey: row.signingPublicKey,
      encryptionPublicKey: row.encryptionPublicKey,
    }),
    verified: row.verified ?? false,
    keyChanged: row.changedEncryptionKey !== undefined,
    lastSeen: row.lastSeen ?? 0,
  };
}
