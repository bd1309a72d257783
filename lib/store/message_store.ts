/**
 * The message history: every message sent and received, with its delivery
 * state. Incoming messages are unique by (sender, message ID), so a replay
 * is never stored twice, even after a restart.
 *
 * @example Store a received message once
 * ```ts
 * import assert from "node:assert/strict";
 * import { Connection } from "./connection.ts";
 * import { MESSAGES_SCHEMA, MessageStore } from "./message_store.ts";
 *
 * using conn = Connection.open(":memory:", [MESSAGES_SCHEMA]);
 * const messages = new MessageStore(conn);
 * const m = {
 *   id: new Uint8Array(16), peer: "dim-example", sentAt: 1, receivedAt: 2, contentType: 1,
 *   body: new TextEncoder().encode("hi"), via: "direct", protection: "ratchet" as const,
 * };
 * assert.equal(messages.insertIncoming(m)?.state, "received");
 * assert.equal(messages.insertIncoming(m), undefined);
 * assert.equal(messages.history("dim-example").length, 1);
 * ```
 *
 * @module
 */
import type {
  HistoryStorage,
  MessageDirection,
  MessageProtection,
  MessageState,
  NewIncomingMessage,
  StoredMessage,
} from "../messaging/storage.ts";
import { blob, type Connection, type Row, type SchemaPart } from "./connection.ts";

/** The `messages` table. */
export const MESSAGES_SCHEMA: SchemaPart = {
  tables: ["messages"],
  sql: `
CREATE TABLE IF NOT EXISTS messages (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  msg_id BLOB NOT NULL,
  peer TEXT NOT NULL,
  direction TEXT NOT NULL CHECK (direction IN ('in', 'out')),
  sent_at INTEGER NOT NULL,
  received_at INTEGER NOT NULL,
  content_type INTEGER NOT NULL,
  body BLOB NOT NULL,
  state TEXT NOT NULL,
  via TEXT NOT NULL DEFAULT 'direct',
  protection TEXT NOT NULL DEFAULT 'static',
  UNIQUE (direction, peer, msg_id)
);
CREATE INDEX IF NOT EXISTS messages_by_peer ON messages (peer, sent_at, seq);`,
};

function toMessage(r: Row): StoredMessage {
  return {
    seq: Number(r.seq),
    id: blob(r.msg_id),
    peer: String(r.peer),
    direction: String(r.direction) as MessageDirection,
    sentAt: Number(r.sent_at),
    receivedAt: Number(r.received_at),
    contentType: Number(r.content_type),
    body: blob(r.body),
    state: String(r.state) as MessageState,
    via: String(r.via),
    protection: String(r.protection) as MessageProtection,
  };
}

/** The `messages` table on a shared connection. */
export class MessageStore implements HistoryStorage {
  readonly #conn: Connection;

  /**
   * Uses a connection opened with {@linkcode MESSAGES_SCHEMA}.
   *
   * @param conn The connection.
   */
  constructor(conn: Connection) {
    this.#conn = conn;
  }

  /**
   * Stores a received message unless the same sender already sent this ID.
   *
   * @param m The message.
   * @returns The stored message if it was new, `undefined` if it was a duplicate.
   */
  insertIncoming(m: NewIncomingMessage): StoredMessage | undefined {
    const r = this.#conn.run("store message", (db) =>
      db.prepare(
        `INSERT INTO messages (msg_id, peer, direction, sent_at, received_at, content_type, body,
           state, via, protection)
         VALUES (?, ?, 'in', ?, ?, ?, ?, 'received', ?, ?)
         ON CONFLICT (direction, peer, msg_id) DO NOTHING`,
      ).run(m.id, m.peer, m.sentAt, m.receivedAt, m.contentType, m.body, m.via, m.protection));
    if (Number(r.changes) === 0) return undefined;
    return { ...m, seq: Number(r.lastInsertRowid), direction: "in", state: "received" };
  }

  /**
   * Whether a message from `peer` with this ID is already stored.
   *
   * @param peer The sender's user ID.
   * @param id The 16-byte message ID.
   * @returns `true` for a duplicate.
   */
  hasIncoming(peer: string, id: Uint8Array): boolean {
    const r = this.#conn.run(
      "read message",
      (db) =>
        db.prepare("SELECT 1 FROM messages WHERE direction = 'in' AND peer = ? AND msg_id = ?").get(
          peer,
          id,
        ),
    );
    return r !== undefined;
  }

  /**
   * Reads one message by its local sequence number.
   *
   * @param seq The local sequence number.
   * @returns The message, or `undefined`.
   */
  get(seq: number): StoredMessage | undefined {
    const r = this.#conn.run(
      "read message",
      (db) => db.prepare("SELECT * FROM messages WHERE seq = ?").get(seq),
    ) as Row | undefined;
    return r === undefined ? undefined : toMessage(r);
  }

  /**
   * Records how an outgoing message was finally protected.
   *
   * @param seq The local sequence number.
   * @param protection How its content is protected.
   */
  setProtection(seq: number, protection: MessageProtection): void {
    this.#conn.run(
      "update message",
      (db) =>
        db.prepare("UPDATE messages SET protection = ? WHERE seq = ? AND direction = 'out'").run(
          protection,
          seq,
        ),
    );
  }

  /**
   * The conversation with one peer, oldest first, in the sender's order.
   *
   * @param peer The other party's user ID.
   * @param options `limit`: the newest this many (default 50); `afterSeq`: only later rows.
   * @returns The messages.
   */
  history(
    peer: string,
    options: { readonly limit?: number; readonly afterSeq?: number } = {},
  ): StoredMessage[] {
    const rows = this.#conn.run("read history", (db) =>
      db.prepare(
        `SELECT * FROM (SELECT * FROM messages WHERE peer = ? AND seq > ?
           ORDER BY sent_at DESC, seq DESC LIMIT ?) ORDER BY sent_at, seq`,
      ).all(peer, options.afterSeq ?? 0, options.limit ?? 50)) as Row[];
    return rows.map(toMessage);
  }

  /**
   * Messages received after `afterSeq`, from every peer, in arrival order.
   *
   * @param afterSeq Only rows with a larger local sequence number.
   * @returns The messages.
   */
  incomingSince(afterSeq: number): StoredMessage[] {
    const rows = this.#conn.run(
      "read messages",
      (db) =>
        db.prepare("SELECT * FROM messages WHERE direction = 'in' AND seq > ? ORDER BY seq").all(
          afterSeq,
        ),
    ) as Row[];
    return rows.map(toMessage);
  }
}
