/**
 * The mailboxes this node keeps for other users: sealed envelopes by mailbox
 * address, within quotas per mailbox and in total, dropped at their expiry.
 * A storage node opens only this store (and the connection's `meta` table).
 *
 * @example A storage node's store
 * ```ts
 * import assert from "node:assert/strict";
 * import { MailboxStore } from "./mailbox_store.ts";
 *
 * using store = MailboxStore.open(":memory:");
 * const box = new Uint8Array(32);
 * const quota = { maxCount: 10, maxBytes: 1000, maxTotalBytes: 10_000 };
 * assert.equal(store.put(box, new Uint8Array(32), new Uint8Array([1]), 100, 0, quota), "stored");
 * assert.equal(store.list(box, 0, 10).length, 1);
 * assert.equal(store.list(box, 100, 10).length, 0, "expired");
 * ```
 *
 * @module
 */
import type {
  MailboxCopy,
  MailboxPutOutcome,
  MailboxQuota,
  MailboxStorage,
} from "../messaging/storage.ts";
import { blob, Connection, type Row, type SchemaPart } from "./connection.ts";

/** The `mailbox` table. */
export const MAILBOX_SCHEMA: SchemaPart = {
  tables: ["mailbox"],
  sql: `
CREATE TABLE IF NOT EXISTS mailbox (
  mailbox BLOB NOT NULL,
  hash BLOB NOT NULL,
  envelope BLOB NOT NULL,
  expires_at INTEGER NOT NULL,
  stored_at INTEGER NOT NULL,
  PRIMARY KEY (mailbox, hash)
);
CREATE INDEX IF NOT EXISTS mailbox_expiry ON mailbox (expires_at);`,
};

/** The `mailbox` table on a shared connection, or on its own one. */
export class MailboxStore implements MailboxStorage, Disposable {
  readonly #conn: Connection;
  /** Whether the store opened its connection, and closes it. */
  #owned = false;

  /**
   * Uses a connection opened with {@linkcode MAILBOX_SCHEMA}; closing the
   * connection is the caller's.
   *
   * @param conn The connection.
   */
  constructor(conn: Connection) {
    this.#conn = conn;
  }

  /**
   * Opens (creating if needed) the mailboxes of the database at `path`, or
   * `":memory:"`, on a connection of their own, without the user's tables.
   *
   * @param path File path or `":memory:"`.
   * @returns The store; {@linkcode MailboxStore.close} closes its connection.
   * @throws {StorageError} If the file is corrupt, locked, read-only or from a newer DIM.
   */
  static open(path: string): MailboxStore {
    const store = new MailboxStore(Connection.open(path, [MAILBOX_SCHEMA]));
    store.#owned = true;
    return store;
  }

  /**
   * Keeps an envelope for an offline user, within quotas.
   *
   * @param mailbox The 32-byte mailbox address.
   * @param hash SHA-256 of the envelope.
   * @param envelope The sealed envelope.
   * @param expiresAt When to drop it (ms).
   * @param now The current time (ms).
   * @param quota `maxCount` and `maxBytes` per mailbox, `maxTotalBytes` for all mailboxes.
   * @returns "stored", "duplicate" or "full".
   */
  put(
    mailbox: Uint8Array,
    hash: Uint8Array,
    envelope: Uint8Array,
    expiresAt: number,
    now: number,
    quota: MailboxQuota,
  ): MailboxPutOutcome {
    return this.#conn.transaction(() => {
      this.#conn.run(
        "expire mailbox",
        (db) => db.prepare("DELETE FROM mailbox WHERE expires_at <= ?").run(now),
      );
      const exists = this.#conn.run(
        "read mailbox",
        (db) =>
          db.prepare("SELECT 1 FROM mailbox WHERE mailbox = ? AND hash = ?").get(mailbox, hash),
      );
      if (exists !== undefined) return "duplicate";
      const box = this.#conn.run("read mailbox", (db) =>
        db.prepare(
          "SELECT COUNT(*) AS n, COALESCE(SUM(LENGTH(envelope)), 0) AS b FROM mailbox WHERE mailbox = ?",
        ).get(mailbox)) as Row;
      const total = this.#conn.run(
        "read mailbox",
        (db) => db.prepare("SELECT COALESCE(SUM(LENGTH(envelope)), 0) AS b FROM mailbox").get(),
      ) as Row;
      if (
        Number(box.n) + 1 > quota.maxCount ||
        Number(box.b) + envelope.length > quota.maxBytes ||
        Number(total.b) + envelope.length > quota.maxTotalBytes
      ) return "full";
      this.#conn.run("store in mailbox", (db) =>
        db.prepare(
          "INSERT INTO mailbox (mailbox, hash, envelope, expires_at, stored_at) VALUES (?, ?, ?, ?, ?)",
        ).run(mailbox, hash, envelope, expiresAt, now));
      return "stored";
    });
  }

  /**
   * The unexpired envelopes in one mailbox, oldest first.
   *
   * @param mailbox The 32-byte mailbox address.
   * @param now The current time (ms).
   * @param limit At most this many.
   * @returns Envelopes with their expiry.
   */
  list(mailbox: Uint8Array, now: number, limit: number): MailboxCopy[] {
    const rows = this.#conn.run("read mailbox", (db) =>
      db.prepare(
        `SELECT envelope, expires_at FROM mailbox WHERE mailbox = ? AND expires_at > ?
         ORDER BY stored_at, hash LIMIT ?`,
      ).all(mailbox, now, limit)) as Row[];
    return rows.map((r) => ({ envelope: blob(r.envelope), expiresAt: Number(r.expires_at) }));
  }

  /**
   * Deletes envelopes from a mailbox by hash.
   *
   * @param mailbox The 32-byte mailbox address.
   * @param hashes SHA-256 hashes of the envelopes to delete.
   * @returns How many were deleted.
   */
  delete(mailbox: Uint8Array, hashes: readonly Uint8Array[]): number {
    return this.#conn.transaction(() => {
      let n = 0;
      for (const h of hashes) {
        const r = this.#conn.run(
          "delete from mailbox",
          (db) => db.prepare("DELETE FROM mailbox WHERE mailbox = ? AND hash = ?").run(mailbox, h),
        );
        n += Number(r.changes);
      }
      return n;
    });
  }

  /** Closes the connection if the store opened it ({@linkcode MailboxStore.open}). Idempotent. */
  close(): void {
    if (this.#owned) this.#conn.close();
  }

  /** Same as {@linkcode MailboxStore.close}. */
  [Symbol.dispose](): void {
    this.close();
  }
}
