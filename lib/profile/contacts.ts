/**
 * The contact book: contacts pinned in the local database, looked up by
 * local name or user ID, with their trust state. A profile keeps it, so a
 * contact reads and verifies the same way with or without a network; the
 * messenger adds contacts and notes their newer cards through it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity } from "../crypto/identity.ts";
 * import { ContactBook } from "./contacts.ts";
 * import { UserStore } from "../store/user_store.ts";
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
import { constantTimeEqual } from "../platform/bytes.ts";
import type { PublicIdentity } from "../crypto/identity.ts";
import { fingerprint, safetyNumber } from "../crypto/safety_number.ts";
import { DimError, InvalidIdError } from "../errors.ts";
import type { ContactCard } from "../record/card.ts";
import type { ContactStore, StoredContact } from "../store/contact_store.ts";

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

/**
 * Thrown when sending to a contact whose keys in the network differ from
 * the pinned ones: nothing is sent until the contact is verified again.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { KeyChangedError } from "./contacts.ts";
 *
 * const err = new KeyChangedError({ name: "bob", userId: "dimexample" });
 * assert.equal(err.message, "Cannot send to bob: their keys changed");
 * assert.equal(err.contact, "bob");
 * ```
 */
export class KeyChangedError extends DimError {
  /** The contact's local name. */
  readonly contact: string;
  /** The contact's user ID. */
  readonly userId: string;

  /**
   * Makes the error for one contact.
   *
   * @param contact The contact's local name and user ID.
   * @param options `cause`, if any.
   */
  constructor(
    contact: { readonly name: string; readonly userId: string },
    options?: ErrorOptions,
  ) {
    super(`Cannot send to ${contact.name}: their keys changed`, options);
    this.contact = contact.name;
    this.userId = contact.userId;
  }
}

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
   * The stored row of a contact that can be sent to.
   *
   * @param nameOrId The local name or user ID.
   * @returns The row.
   * @throws {UnknownContactError} If there is none.
   * @throws {KeyChangedError} If their keys changed and were not verified again.
   */
  sendable(nameOrId: string): StoredContact {
    const row = this.row(nameOrId);
    if (row.changedEncryptionKey !== undefined) throw new KeyChangedError(row);
    return row;
  }

  /**
   * Checks that a user can be added under a name: the name is one word, and
   * neither it nor the user is saved for someone else.
   *
   * @param name The local name.
   * @param id The user ID (canonical form).
   * @returns The existing contact if this user is already saved under this name.
   * @throws {InvalidIdError} If the name is not one word.
   * @throws {DimError} If the name or the user is taken.
   */
  checkNew(name: string, id: string): StoredContact | undefined {
    if (name.trim() === "" || /\s/.test(name)) {
      throw new InvalidIdError("Cannot add contact: the name must be one word");
    }
    const byName = this.#db.get(name);
    if (byName !== undefined && byName.userId !== id) {
      throw new DimError(`Cannot add contact: the name "${name}" is taken by another user`);
    }
    const byId = this.#db.getById(id);
    if (byId !== undefined && byId.name !== name) {
      throw new DimError(`Cannot add contact: this user is already saved as "${byId.name}"`);
    }
    return byId;
  }

  /**
   * Pins a user's keys from their card under a local name (trust on first use).
   *
   * @param name The local name.
   * @param card The user's checked card.
   * @param addedAt When (ms).
   * @returns The new contact.
   */
  pin(name: string, card: ContactCard, addedAt: number): Contact {
    this.#db.upsert({
      name,
      userId: card.id,
      signingPublicKey: card.signingPublicKey,
      encryptionPublicKey: card.encryptionPublicKey,
      displayName: card.displayName,
      peerId: card.peerId,
      addresses: card.addresses,
      cardSeq: card.seq,
      verified: false,
      addedAt,
    });
    return this.contact(name);
  }

  /**
   * Notes a contact's newer card: their name and addresses, and their new
   * keys if they changed (the pinned keys change only by verifying).
   *
   * @param card A checked card; ignored if the user is no contact or the card is older.
   */
  noteCard(card: ContactCard): void {
    const row = this.#db.getById(card.id);
    if (row === undefined || card.seq < (row.cardSeq ?? 0)) return;
    const changed = !constantTimeEqual(row.encryptionPublicKey, card.encryptionPublicKey);
    this.#db.upsert({
      ...row,
      displayName: card.displayName,
      peerId: card.peerId,
      addresses: card.addresses,
      cardSeq: card.seq,
      changedEncryptionKey: changed ? card.encryptionPublicKey : undefined,
    });
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
