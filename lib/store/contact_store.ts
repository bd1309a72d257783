/**
 * The user's contacts: keys pinned on first use, the newest card seen,
 * the trust state, and when each was last seen.
 *
 * @example Add a contact and find it by name and by user ID
 * ```ts
 * import assert from "node:assert/strict";
 * import { Connection } from "./connection.ts";
 * import { CONTACTS_SCHEMA, ContactStore } from "./contact_store.ts";
 *
 * using conn = Connection.open(":memory:", [CONTACTS_SCHEMA]);
 * const contacts = new ContactStore(conn);
 * contacts.upsert({
 *   name: "bob",
 *   userId: "dim-example",
 *   signingPublicKey: new Uint8Array(32),
 *   encryptionPublicKey: new Uint8Array(32),
 * });
 * assert.equal(contacts.get("bob")?.userId, "dim-example");
 * assert.equal(contacts.getById("dim-example")?.name, "bob");
 * ```
 *
 * @module
 */
import type { ContactLookup } from "../messaging/storage.ts";
import {
  blob,
  type Connection,
  optionalBlob,
  remember,
  type Row,
  type SchemaPart,
} from "./connection.ts";

/** The `contacts` table. */
export const CONTACTS_SCHEMA: SchemaPart = {
  tables: ["contacts"],
  sql: `
CREATE TABLE IF NOT EXISTS contacts (
  name TEXT PRIMARY KEY,
  user_id TEXT NOT NULL UNIQUE,
  signing_key BLOB NOT NULL,
  encryption_key BLOB NOT NULL,
  display_name TEXT NOT NULL DEFAULT '',
  peer_id TEXT NOT NULL DEFAULT '',
  addresses TEXT NOT NULL DEFAULT '[]',
  card_seq INTEGER NOT NULL DEFAULT 0,
  verified INTEGER NOT NULL DEFAULT 0,
  changed_signing_key BLOB,
  changed_encryption_key BLOB,
  added_at INTEGER NOT NULL,
  last_seen INTEGER NOT NULL DEFAULT 0
);`,
};

/** A contact as it is kept. */
export interface StoredContact {
  /** The local name the user chose. */
  readonly name: string;
  /** The contact's user ID. */
  readonly userId: string;
  /** Pinned Ed25519 public key. */
  readonly signingPublicKey: Uint8Array;
  /** Pinned X25519 public key. */
  readonly encryptionPublicKey: Uint8Array;
  /** Display name from the contact's card. */
  readonly displayName?: string;
  /** libp2p peer ID from the card. */
  readonly peerId?: string;
  /** Multiaddrs from the card. */
  readonly addresses?: readonly string[];
  /** Sequence number of the newest card seen. */
  readonly cardSeq?: number;
  /** Whether the user compared safety numbers and confirmed. */
  readonly verified?: boolean;
  /** A newer encryption key seen in the network that differs from the pinned one. */
  readonly changedEncryptionKey?: Uint8Array | undefined;
  /** When the contact was added (ms). */
  readonly addedAt?: number;
  /** When a message or card from the contact was last seen (ms). */
  readonly lastSeen?: number;
}

/**
 * How precisely a contact's last-seen time is kept: {@linkcode ContactStore.touch}
 * writes it again only once it is this much older than the new time.
 */
export const LAST_SEEN_RESOLUTION_MS = 1000;

/** The most contacts (and absent names or IDs) kept in memory. */
const CACHED_CONTACTS = 512;

function toContact(r: Row): StoredContact {
  return Object.freeze({
    name: String(r.name),
    userId: String(r.user_id),
    signingPublicKey: blob(r.signing_key),
    encryptionPublicKey: blob(r.encryption_key),
    displayName: String(r.display_name),
    peerId: String(r.peer_id),
    addresses: JSON.parse(String(r.addresses)) as string[],
    cardSeq: Number(r.card_seq),
    verified: Number(r.verified) === 1,
    changedEncryptionKey: optionalBlob(r.changed_encryption_key),
    addedAt: Number(r.added_at),
    lastSeen: Number(r.last_seen),
  });
}

/**
 * The `contacts` table on a shared connection. Contacts are read for every
 * message (its sender's pinned key), so the ones read are kept in memory, by
 * name and by user ID (a miss too: strangers write as well), and every write
 * here updates or empties that copy.
 */
export class ContactStore implements ContactLookup {
  readonly #conn: Connection;
  /** Contacts read, by name; `null` for a name that is none. */
  readonly #byName: Map<string, StoredContact | null>;
  /** Contacts read, by user ID; `null` for a user who is not one. */
  readonly #byId: Map<string, StoredContact | null>;

  /**
   * Uses a connection opened with {@linkcode CONTACTS_SCHEMA}.
   *
   * @param conn The connection.
   */
  constructor(conn: Connection) {
    this.#conn = conn;
    this.#byName = conn.cache("contacts by name");
    this.#byId = conn.cache("contacts by id");
  }

  /** Keeps a row read (or its absence) under the key it was read by, and the other. */
  #keep(map: Map<string, StoredContact | null>, key: string, r: Row | undefined) {
    const contact = r === undefined ? null : toContact(r);
    remember(map, key, contact, CACHED_CONTACTS);
    if (contact !== null) {
      remember(this.#byName, contact.name, contact, CACHED_CONTACTS);
      remember(this.#byId, contact.userId, contact, CACHED_CONTACTS);
    }
    return contact ?? undefined;
  }

  /** Forgets every contact kept: a write changed rows by name, maybe IDs too. */
  #forget(): void {
    this.#byName.clear();
    this.#byId.clear();
  }

  /**
   * Adds or replaces a contact by name.
   *
   * @param c The contact.
   */
  upsert(c: StoredContact): void {
    try {
      this.#conn.run("save contact", (db) =>
        db.prepare(
          `INSERT INTO contacts (name, user_id, signing_key, encryption_key, display_name, peer_id,
             addresses, card_seq, verified, changed_encryption_key, added_at, last_seen)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (name) DO UPDATE SET user_id = excluded.user_id,
             signing_key = excluded.signing_key, encryption_key = excluded.encryption_key,
             display_name = excluded.display_name, peer_id = excluded.peer_id,
             addresses = excluded.addresses, card_seq = excluded.card_seq,
             verified = excluded.verified, changed_encryption_key = excluded.changed_encryption_key,
             last_seen = excluded.last_seen`,
        ).run(
          c.name,
          c.userId,
          c.signingPublicKey,
          c.encryptionPublicKey,
          c.displayName ?? "",
          c.peerId ?? "",
          JSON.stringify(c.addresses ?? []),
          c.cardSeq ?? 0,
          c.verified ? 1 : 0,
          c.changedEncryptionKey ?? null,
          c.addedAt ?? Date.now(),
          c.lastSeen ?? 0,
        ));
    } finally {
      this.#forget();
    }
  }

  /**
   * Finds a contact by local name.
   *
   * @param name The local name.
   * @returns The contact, or `undefined`.
   */
  get(name: string): StoredContact | undefined {
    const kept = this.#byName.get(name);
    if (kept !== undefined) return kept ?? undefined;
    const r = this.#conn.run(
      "read contact",
      (db) => db.prepare("SELECT * FROM contacts WHERE name = ?").get(name),
    ) as Row | undefined;
    return this.#keep(this.#byName, name, r);
  }

  /**
   * Finds a contact by user ID.
   *
   * @param userId The contact's user ID.
   * @returns The contact, or `undefined`.
   */
  getById(userId: string): StoredContact | undefined {
    const kept = this.#byId.get(userId);
    if (kept !== undefined) return kept ?? undefined;
    const r = this.#conn.run(
      "read contact",
      (db) => db.prepare("SELECT * FROM contacts WHERE user_id = ?").get(userId),
    ) as Row | undefined;
    return this.#keep(this.#byId, userId, r);
  }

  /**
   * Lists all contacts by name.
   *
   * @returns The contacts.
   */
  list(): StoredContact[] {
    const rows = this.#conn.run(
      "list contacts",
      (db) => db.prepare("SELECT * FROM contacts ORDER BY name").all(),
    ) as Row[];
    return rows.map(toContact);
  }

  /**
   * Removes a contact by name (its history stays).
   *
   * @param name The local name.
   * @returns Whether a contact was removed.
   */
  remove(name: string): boolean {
    try {
      const r = this.#conn.run(
        "remove contact",
        (db) => db.prepare("DELETE FROM contacts WHERE name = ?").run(name),
      );
      return Number(r.changes) > 0;
    } finally {
      this.#forget();
    }
  }

  /**
   * Records that a contact was seen now, to the second: a contact seen
   * again less than {@linkcode LAST_SEEN_RESOLUTION_MS} after the time
   * kept is not written again (a chat would write the row with every
   * message).
   *
   * @param userId The contact's user ID.
   * @param at Time in ms.
   */
  touch(userId: string, at: number): void {
    const known = this.#byId.get(userId)?.lastSeen;
    if (known !== undefined && at >= known && at - known < LAST_SEEN_RESOLUTION_MS) return;
    this.#conn.run(
      "update contact",
      (db) => db.prepare("UPDATE contacts SET last_seen = ? WHERE user_id = ?").run(at, userId),
    );
    const kept = this.#byId.get(userId);
    if (kept == null) return;
    const seen = Object.freeze({ ...kept, lastSeen: at });
    remember(this.#byId, userId, seen, CACHED_CONTACTS);
    remember(this.#byName, seen.name, seen, CACHED_CONTACTS);
  }
}
