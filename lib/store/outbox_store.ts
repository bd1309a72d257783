/**
 * The outbox: each sent message's sealed envelope, kept with its attempts
 * and backoff until the recipient's signed acknowledgement arrives. Queuing
 * a message also writes it to the history, and an acknowledgement or a
 * mailbox copy moves its delivery state there.
 *
 * @example Queue a message, then mark it delivered
 * ```ts
 * import assert from "node:assert/strict";
 * import { Connection } from "./connection.ts";
 * import { MESSAGES_SCHEMA, MessageStore } from "./message_store.ts";
 * import { OUTBOX_SCHEMA, OutboxStore } from "./outbox_store.ts";
 *
 * using conn = Connection.open(":memory:", [MESSAGES_SCHEMA, OUTBOX_SCHEMA]);
 * const outbox = new OutboxStore(conn);
 * const hash = new Uint8Array(32).fill(7);
 * const m = outbox.enqueue({
 *   id: new Uint8Array(16), peer: "dim-bob", sentAt: 1, receivedAt: 1, contentType: 1,
 *   body: new Uint8Array([1]), protection: "ratchet",
 * }, new Uint8Array([1, 2, 3]), hash);
 * assert.deepEqual(outbox.due(1).map((e) => e.messageSeq), [m.seq]);
 * assert.equal(outbox.markDelivered("dim-bob", hash), m.seq);
 * assert.equal(new MessageStore(conn).get(m.seq)?.state, "delivered");
 * ```
 *
 * @module
 */
import type {
  NewOutgoingMessage,
  OutboxEntry,
  OutboxStorage,
  StoredMessage,
} from "../messaging/storage.ts";
import { blob, type Connection, remember, type Row, type SchemaPart } from "./connection.ts";
import { MessageStore, OUTBOX_TAILS } from "./message_store.ts";

/** The `outbox` table; it refers to the `messages` table of the same file. */
export const OUTBOX_SCHEMA: SchemaPart = {
  tables: ["outbox"],
  sql: `
CREATE TABLE IF NOT EXISTS outbox (
  message_seq INTEGER PRIMARY KEY REFERENCES messages (seq),
  recipient TEXT NOT NULL,
  envelope BLOB NOT NULL,
  envelope_hash BLOB NOT NULL UNIQUE,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER NOT NULL,
  -- When a node other than this one last took or held a mailbox copy (ms),
  -- 0 if none did; 1 in rows from before the time was kept (long ago).
  stored_offline INTEGER NOT NULL DEFAULT 0,
  last_error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS outbox_by_recipient ON outbox (recipient, message_seq);`,
};

/** The most recipients whose last queued message is kept in memory. */
const CACHED_RECIPIENTS = 1024;
/** The most entries of one recipient's queue tail kept in memory. */
const CACHED_TAIL = 256;

/**
 * A recipient's queue in memory from `after` on: every entry of theirs with
 * a larger message number, oldest first, as the table has it.
 */
interface Tail {
  readonly after: number;
  readonly entries: OutboxEntry[];
}

function toOutbox(r: Row): OutboxEntry {
  return {
    messageSeq: Number(r.message_seq),
    recipient: String(r.recipient),
    envelope: blob(r.envelope),
    envelopeHash: blob(r.envelope_hash),
    attempts: Number(r.attempts),
    nextAttemptAt: Number(r.next_attempt_at),
    storedOffline: Number(r.stored_offline) > 0,
    storedOfflineAt: Number(r.stored_offline),
    lastError: String(r.last_error),
  };
}

/** The `outbox` table, with the `messages` rows it moves, on a shared connection. */
export class OutboxStore implements OutboxStorage {
  readonly #conn: Connection;

  readonly #messages: MessageStore;

  /**
   * No recipient's entry has a larger message number than its value here
   * (an entry's number never changes, and new messages get larger ones):
   * a delivery asks for entries after the last one it sent, and most often
   * there is none, which this tells without a query.
   */
  readonly #lastSeq: Map<string, number>;

  /**
   * The end of each busy conversation's queue, so a delivery finds the
   * messages just queued without reading them back: set from a read that
   * returned a recipient's whole queue after some message, extended by
   * `enqueue`, shortened by `markDelivered`. Any other change to the table
   * drops it all (`#changed`), as does a rollback (it is a connection cache).
   */
  readonly #tails: Map<string, Tail>;

  /**
   * Uses a connection opened with the messages' and the outbox's schemas.
   *
   * @param conn The connection.
   * @param messages The history on it, which writes (and seals) the rows of
   *   queued messages. Default: a history of its own, without a key.
   */
  constructor(conn: Connection, messages: MessageStore = new MessageStore(conn)) {
    this.#conn = conn;
    this.#messages = messages;
    this.#lastSeq = conn.cache("outbox last seq");
    this.#tails = conn.cache(OUTBOX_TAILS);
  }

  /** Entries changed other than by queuing or acknowledging: the tails in memory may be stale. */
  #changed(): void {
    this.#tails.clear();
  }

  /**
   * Stores an outgoing message and its sealed envelope in one transaction.
   *
   * @param m The message.
   * @param envelope The sealed envelope.
   * @param envelopeHash SHA-256 of the envelope.
   * @returns The stored message (state "pending").
   */
  enqueue(m: NewOutgoingMessage, envelope: Uint8Array, envelopeHash: Uint8Array): StoredMessage {
    return this.#conn.transaction(() => {
      const message = this.#messages.insertOutgoing(m);
      this.#conn.run("queue message", (db) =>
        db.prepare(
          `INSERT INTO outbox (message_seq, recipient, envelope, envelope_hash, next_attempt_at)
           VALUES (?, ?, ?, ?, ?)`,
        ).run(message.seq, m.peer, envelope, envelopeHash, m.receivedAt));
      if (this.#lastSeq.has(m.peer)) this.#lastSeq.set(m.peer, message.seq);
      const tail = this.#tails.get(m.peer);
      if (tail !== undefined) {
        if (tail.entries.length >= CACHED_TAIL) this.#tails.delete(m.peer);
        else {
          tail.entries.push({
            messageSeq: message.seq,
            recipient: m.peer,
            envelope,
            envelopeHash,
            attempts: 0,
            nextAttemptAt: m.receivedAt,
            storedOffline: false,
            storedOfflineAt: 0,
            lastError: "",
          });
        }
      }
      return message;
    });
  }

  /**
   * The entries due at `now`, oldest message first, at most one per recipient
   * so each conversation is delivered in order.
   *
   * @param now Time in ms.
   * @returns The due entries.
   */
  due(now: number): OutboxEntry[] {
    const rows = this.#conn.run("read outbox", (db) =>
      db.prepare(
        `SELECT o.* FROM outbox o
         WHERE o.message_seq = (SELECT MIN(message_seq) FROM outbox WHERE recipient = o.recipient)
           AND o.next_attempt_at <= ?
         ORDER BY o.message_seq`,
      ).all(now)) as Row[];
    return rows.map(toOutbox);
  }

  /**
   * One conversation's entries after a given one, oldest first.
   *
   * @param recipient The recipient's user ID.
   * @param afterSeq Only entries of later messages.
   * @param limit At most this many.
   * @returns The entries.
   */
  after(recipient: string, afterSeq: number, limit: number): OutboxEntry[] {
    let last = this.#lastSeq.get(recipient);
    if (last === undefined) {
      const r = this.#conn.run(
        "read outbox",
        (db) =>
          db.prepare("SELECT MAX(message_seq) AS last FROM outbox WHERE recipient = ?").get(
            recipient,
          ),
      ) as Row | undefined;
      last = Number(r?.last ?? 0);
      remember(this.#lastSeq, recipient, last, CACHED_RECIPIENTS);
    }
    if (afterSeq >= last) return [];
    const tail = this.#tails.get(recipient);
    if (tail !== undefined && afterSeq >= tail.after) {
      const from = tail.entries.findIndex((e) => e.messageSeq > afterSeq);
      return from < 0 ? [] : tail.entries.slice(from, from + limit);
    }
    const rows = this.#conn.run("read outbox", (db) =>
      db.prepare(
        `SELECT * FROM outbox WHERE recipient = ? AND message_seq > ?
         ORDER BY message_seq LIMIT ?`,
      ).all(recipient, afterSeq, limit)) as Row[];
    const entries = rows.map(toOutbox);
    // Fewer than asked for: this is all of the queue after `afterSeq`.
    if (entries.length < limit && entries.length < CACHED_TAIL) {
      remember(
        this.#tails,
        recipient,
        { after: afterSeq, entries: entries.slice() },
        CACHED_RECIPIENTS,
      );
    }
    return entries;
  }

  /**
   * All entries, oldest first.
   *
   * @returns The entries.
   */
  list(): OutboxEntry[] {
    const rows = this.#conn.run(
      "read outbox",
      (db) => db.prepare("SELECT * FROM outbox ORDER BY message_seq").all(),
    ) as Row[];
    return rows.map(toOutbox);
  }

  /**
   * The recipient of the entry whose envelope has this hash.
   *
   * @param envelopeHash SHA-256 of the envelope.
   * @returns The recipient's user ID, or `undefined` if no entry has it.
   */
  recipientOf(envelopeHash: Uint8Array): string | undefined {
    const r = this.#conn.run(
      "read outbox",
      (db) => db.prepare("SELECT recipient FROM outbox WHERE envelope_hash = ?").get(envelopeHash),
    ) as Row | undefined;
    return r === undefined ? undefined : String(r.recipient);
  }

  /**
   * Records a failed attempt and when to try again.
   *
   * @param messageSeq The entry.
   * @param nextAttemptAt When to retry (ms).
   * @param error What went wrong.
   */
  defer(messageSeq: number, nextAttemptAt: number, error: string): void {
    this.#changed();
    this.#conn.run("update outbox", (db) =>
      db.prepare(
        `UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?
         WHERE message_seq = ?`,
      ).run(nextAttemptAt, error.slice(0, 500), messageSeq));
  }

  /**
   * Makes every entry waiting out a backoff due at once.
   *
   * @param now Time in ms.
   */
  retryNow(now: number): void {
    this.#changed();
    this.#conn.run(
      "update outbox",
      (db) =>
        db.prepare("UPDATE outbox SET next_attempt_at = ? WHERE next_attempt_at > ?").run(now, now),
    );
  }

  /**
   * Replaces a queued message's envelope (sealed again, in a new session):
   * it is due at once, and a copy left in the network before does not count.
   *
   * @param messageSeq The entry.
   * @param envelope The new envelope.
   * @param envelopeHash Its SHA-256.
   * @param now Time in ms.
   */
  replaceEnvelope(
    messageSeq: number,
    envelope: Uint8Array,
    envelopeHash: Uint8Array,
    now: number,
  ): void {
    this.#changed();
    this.#conn.run("update outbox", (db) =>
      db.prepare(
        `UPDATE outbox SET envelope = ?, envelope_hash = ?, attempts = 0, next_attempt_at = ?,
           stored_offline = 0, last_error = '' WHERE message_seq = ?`,
      ).run(envelope, envelopeHash, now, messageSeq));
  }

  /**
   * Marks that a copy was left in the recipient's network mailbox, or that
   * nodes closest to it were found holding one, at `at`. An earlier time
   * never replaces a later one.
   *
   * @param messageSeq The entry.
   * @param at Time in ms. Default now.
   */
  markStoredOffline(messageSeq: number, at: number = Date.now()): void {
    this.#changed();
    // Never 0 or 1, which say "none" and "before the time was kept".
    const time = Math.max(2, Math.floor(at));
    this.#conn.transaction(() => {
      this.#conn.run("update outbox", (db) =>
        db.prepare(
          "UPDATE outbox SET stored_offline = MAX(stored_offline, ?) WHERE message_seq = ?",
        ).run(time, messageSeq));
      this.#messages.setState(messageSeq, "stored", "pending");
    });
  }

  /**
   * The entries with a copy in the network last confirmed at or before
   * `before`, the longest ago first.
   *
   * @param before Time in ms.
   * @param limit At most this many.
   * @returns The entries.
   */
  storedOfflineBefore(before: number, limit: number): OutboxEntry[] {
    const rows = this.#conn.run("read outbox", (db) =>
      db.prepare(
        `SELECT * FROM outbox WHERE stored_offline > 0 AND stored_offline <= ?
         ORDER BY stored_offline, message_seq LIMIT ?`,
      ).all(before, limit)) as Row[];
    return rows.map(toOutbox);
  }

  /**
   * Marks the message whose envelope has this hash as delivered and removes it
   * from the outbox, if `recipient` matches.
   *
   * @param recipient The user ID the acknowledgement came from.
   * @param envelopeHash SHA-256 of the acknowledged envelope.
   * @returns The delivered message's sequence number, or `undefined` if none matched.
   */
  markDelivered(recipient: string, envelopeHash: Uint8Array): number | undefined {
    return this.#conn.transaction(() => {
      const row = this.#conn.run(
        "update outbox",
        (db) =>
          db.prepare(
            "DELETE FROM outbox WHERE envelope_hash = ? AND recipient = ? RETURNING message_seq",
          ).get(envelopeHash, recipient),
      ) as Row | undefined;
      if (row === undefined) return undefined;
      const seq = Number(row.message_seq);
      const tail = this.#tails.get(recipient);
      const i = tail?.entries.findIndex((e) => e.messageSeq === seq) ?? -1;
      if (i >= 0) tail!.entries.splice(i, 1);
      this.#messages.setState(seq, "delivered");
      return seq;
    });
  }
}
