/**
 * The message history: every message sent and received, with its delivery
 * state. Incoming messages are unique by (sender, message ID), so a replay
 * is never stored twice, even after a restart.
 *
 * Bodies are sealed at rest once the store has the history key
 * ({@linkcode MessageStore.useKey}, which a profile gives it when it is
 * unlocked): a copy of the file shows who wrote to whom, when, how much and
 * how far each message got, but not what it says. The `body_format` column
 * says how a row's body is kept:
 *
 * | body_format | body                                                            |
 * | ----------- | --------------------------------------------------------------- |
 * | 0           | in the clear: rows of DIM before 0.2.0, or of a store given no key |
 * | 1           | `nonce (12) \| AES-256-GCM ciphertext \| tag (16)` ({@linkcode HistoryBox}), associated data `message:<direction>:<peer>:<hex message ID>` |
 *
 * The associated data binds a body to its row: moved to another row, it does
 * not open. {@linkcode MessageStore.sealPlaintext} seals the rows of format
 * 0 in place, in one transaction.
 *
 * @example Store a received message once
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity } from "../crypto/identity.ts";
 * import { HistoryBox } from "../crypto/secret_box.ts";
 * import { Connection } from "./connection.ts";
 * import { MESSAGES_SCHEMA, MessageStore } from "./message_store.ts";
 *
 * using conn = Connection.open(":memory:", [MESSAGES_SCHEMA]);
 * const messages = new MessageStore(conn);
 * messages.useKey(HistoryBox.forIdentity(await Identity.generate()));
 * const m = {
 *   id: new Uint8Array(16), peer: "dim-example", sentAt: 1, receivedAt: 2, contentType: 1,
 *   body: new TextEncoder().encode("hi"), via: "direct", protection: "ratchet" as const,
 * };
 * assert.equal(messages.insertIncoming(m)?.state, "received");
 * assert.equal(messages.insertIncoming(m), undefined);
 * assert.deepEqual(messages.history("dim-example")[0]?.body, m.body);
 * ```
 *
 * @module
 */
import type { HistoryBox } from "../crypto/secret_box.ts";
import { StorageError } from "../errors.ts";
import { toHex } from "../platform/bytes.ts";
import type {
  HistoryStorage,
  MessageDirection,
  MessageProtection,
  MessageState,
  NewIncomingMessage,
  NewOutgoingMessage,
  StoredMessage,
} from "../messaging/storage.ts";
import { CONTROL_CONTENT_TYPE_MAX, CONTROL_CONTENT_TYPE_MIN } from "../messaging/constants.ts";
import { blob, type Connection, remember, type Row, type SchemaPart } from "./connection.ts";

/**
 * The connection cache in which the outbox keeps the ends of its queues
 * (`outbox_store.ts`); whatever deletes outbox rows here clears it.
 */
export const OUTBOX_TAILS = "outbox tails";

/** How a row's body is kept (the `body_format` column). */
export const BODY_FORMAT = {
  /** In the clear. */
  plain: 0,
  /** Sealed with the history key, version 1. */
  sealed: 1,
} as const;

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
  body_format INTEGER NOT NULL DEFAULT 0,
  UNIQUE (direction, peer, msg_id)
);
CREATE INDEX IF NOT EXISTS messages_by_peer ON messages (peer, sent_at, seq);
CREATE INDEX IF NOT EXISTS messages_in_clear ON messages (seq) WHERE body_format = 0;`,
};

/**
 * The rows a history shows: not the messaging layer's own (receipts, parts
 * of mailbox files; content types {@linkcode CONTROL_CONTENT_TYPE_MIN} to
 * {@linkcode CONTROL_CONTENT_TYPE_MAX}).
 */
const SHOWN =
  `content_type NOT BETWEEN ${CONTROL_CONTENT_TYPE_MIN} AND ${CONTROL_CONTENT_TYPE_MAX}`;

/**
 * The longest body a cleared row keeps: an empty body sealed (a 12-byte
 * nonce and a 16-byte tag). Every file part's body is longer.
 */
const CLEARED_LENGTH = 28;

/**
 * The most messages kept in memory, and the longest body kept (so at most
 * 8 MiB of bodies): a message is read again soon after it is written (its
 * state, by the sender, for each message of a burst of 2,000; the chat shows
 * it), and file parts need not stay.
 */
const CACHED_MESSAGES = 2048;
const CACHED_BODY_LENGTH = 4096;

/** The associated data of a row's sealed body: what binds it to the row. */
function bodyLabel(direction: MessageDirection, peer: string, id: Uint8Array): string {
  return `message:${direction}:${peer}:${toHex(id)}`;
}

/**
 * The `messages` table on a shared connection. Without a key
 * ({@linkcode MessageStore.useKey}) it writes bodies in the clear and cannot
 * read sealed ones: a profile gives it the key before any message is stored.
 */
export class MessageStore implements HistoryStorage {
  readonly #conn: Connection;
  #box: HistoryBox | undefined;
  /**
   * The messages last written or read by number, opened: shared by every
   * history on the connection, updated by each write here.
   */
  readonly #bySeq: Map<number, StoredMessage>;

  /**
   * Uses a connection opened with {@linkcode MESSAGES_SCHEMA}.
   *
   * @param conn The connection.
   */
  constructor(conn: Connection) {
    this.#conn = conn;
    this.#bySeq = conn.cache("messages by seq");
  }

  /** Keeps a message as it now is in the file; returns it. */
  #remember(m: StoredMessage): StoredMessage {
    if (m.body.length <= CACHED_BODY_LENGTH) remember(this.#bySeq, m.seq, m, CACHED_MESSAGES);
    else this.#bySeq.delete(m.seq);
    return m;
  }

  /**
   * Gives the store the history key: from now on bodies are sealed when
   * written and opened when read. Writes nothing (see
   * {@linkcode MessageStore.sealPlaintext}).
   *
   * @param box The history box of the user's identity.
   */
  useKey(box: HistoryBox): void {
    this.#box = box;
  }

  /** Whether the store has the history key. */
  get hasKey(): boolean {
    return this.#box !== undefined;
  }

  /** A body as it is written: sealed if there is a key. */
  #keep(
    direction: MessageDirection,
    peer: string,
    id: Uint8Array,
    body: Uint8Array,
  ): { readonly body: Uint8Array; readonly format: number } {
    if (this.#box === undefined) return { body, format: BODY_FORMAT.plain };
    return {
      body: this.#box.seal(bodyLabel(direction, peer, id), body),
      format: BODY_FORMAT.sealed,
    };
  }

  #toMessage(r: Row): StoredMessage {
    const id = blob(r.msg_id);
    const peer = String(r.peer);
    const direction = String(r.direction) as MessageDirection;
    let body = blob(r.body);
    const format = Number(r.body_format);
    if (format === BODY_FORMAT.sealed) {
      if (this.#box === undefined) {
        throw new StorageError("Cannot read message: the history is locked");
      }
      body = this.#box.open(bodyLabel(direction, peer, id), body);
    } else if (format !== BODY_FORMAT.plain) {
      throw new StorageError(`Cannot read message: unknown body format ${format}`);
    }
    return {
      seq: Number(r.seq),
      id,
      peer,
      direction,
      sentAt: Number(r.sent_at),
      receivedAt: Number(r.received_at),
      contentType: Number(r.content_type),
      body,
      state: String(r.state) as MessageState,
      via: String(r.via),
      protection: String(r.protection) as MessageProtection,
    };
  }

  /**
   * Stores a received message unless the same sender already sent this ID.
   *
   * @param m The message.
   * @returns The stored message if it was new, `undefined` if it was a duplicate.
   */
  insertIncoming(m: NewIncomingMessage): StoredMessage | undefined {
    const kept = this.#keep("in", m.peer, m.id, m.body);
    const r = this.#conn.run("store message", (db) =>
      db.prepare(
        `INSERT INTO messages (msg_id, peer, direction, sent_at, received_at, content_type, body,
           state, via, protection, body_format)
         VALUES (?, ?, 'in', ?, ?, ?, ?, 'received', ?, ?, ?)
         ON CONFLICT (direction, peer, msg_id) DO NOTHING`,
      ).run(
        m.id,
        m.peer,
        m.sentAt,
        m.receivedAt,
        m.contentType,
        kept.body,
        m.via,
        m.protection,
        kept.format,
      ));
    if (Number(r.changes) === 0) return undefined;
    this.#remember({
      seq: Number(r.lastInsertRowid),
      id: m.id.slice(),
      peer: m.peer,
      direction: "in",
      sentAt: m.sentAt,
      receivedAt: m.receivedAt,
      contentType: m.contentType,
      body: m.body.slice(),
      state: "received",
      via: m.via,
      protection: m.protection,
    });
    return { ...m, seq: Number(r.lastInsertRowid), direction: "in", state: "received" };
  }

  /**
   * Stores a message being sent (the outbox queues its envelope in the same
   * transaction).
   *
   * @param m The message.
   * @returns The stored message (state "pending").
   */
  insertOutgoing(m: NewOutgoingMessage): StoredMessage {
    const kept = this.#keep("out", m.peer, m.id, m.body);
    const r = this.#conn.run("store message", (db) =>
      db.prepare(
        `INSERT INTO messages (msg_id, peer, direction, sent_at, received_at, content_type, body,
           state, protection, body_format)
         VALUES (?, ?, 'out', ?, ?, ?, ?, 'pending', ?, ?)`,
      ).run(
        m.id,
        m.peer,
        m.sentAt,
        m.receivedAt,
        m.contentType,
        kept.body,
        m.protection,
        kept.format,
      ));
    this.#remember({
      seq: Number(r.lastInsertRowid),
      id: m.id.slice(),
      peer: m.peer,
      direction: "out",
      sentAt: m.sentAt,
      receivedAt: m.receivedAt,
      contentType: m.contentType,
      body: m.body.slice(),
      state: "pending",
      via: "direct",
      protection: m.protection,
    });
    return {
      ...m,
      seq: Number(r.lastInsertRowid),
      direction: "out",
      state: "pending",
      via: "direct",
    };
  }

  /**
   * Whether some body is kept in the clear (see
   * {@linkcode MessageStore.sealPlaintext}). Cheap: an index holds only
   * those rows.
   *
   * @returns `true` if there is one.
   */
  hasPlaintext(): boolean {
    const r = this.#conn.run(
      "read history",
      (db) => db.prepare("SELECT 1 FROM messages WHERE body_format = 0 LIMIT 1").get(),
    );
    return r !== undefined;
  }

  /**
   * Seals, in one transaction, every body kept in the clear (rows of an
   * older DIM): each such row is deleted with SQLite's `secure_delete` on,
   * which overwrites the space it leaves with zeros, and written again,
   * sealed, under the same number; then the log is emptied into the file.
   * So no old copy of a clear body stays behind in free pages, unused space
   * of a page, or `dim.db-wal`. (Not an update in place, which leaves old
   * bytes in the page, nor `VACUUM`, which attaches a database, and Deno
   * allows that only with every permission.) Call it outside a transaction.
   *
   * @returns How many rows were sealed.
   * @throws {StorageError} If the store has no key, or the commit fails
   *   (then no row changed).
   */
  sealPlaintext(): number {
    const box = this.#box;
    if (box === undefined) throw new StorageError("Cannot seal the history: it is locked");
    this.#conn.run("clean up history", (db) => db.exec("PRAGMA secure_delete = ON"));
    this.#bySeq.clear();
    try {
      const sealed = this.#conn.transaction(() =>
        this.#conn.run("seal history", (db) => {
          const rows = db.prepare("SELECT * FROM messages WHERE body_format = 0").all() as Row[];
          if (rows.length === 0) return 0;
          // The outbox refers to these rows; they are back before the commit.
          db.exec("PRAGMA defer_foreign_keys = ON");
          db.exec("DELETE FROM messages WHERE body_format = 0");
          const columns = Object.keys(rows[0]!);
          const insert = db.prepare(
            `INSERT INTO messages (${columns.join(", ")}) VALUES (${
              columns.map(() => "?").join(", ")
            })`,
          );
          for (const r of rows) {
            const direction = String(r.direction) as MessageDirection;
            const label = bodyLabel(direction, String(r.peer), blob(r.msg_id));
            const row: Row = {
              ...r,
              body: box.seal(label, blob(r.body)),
              body_format: BODY_FORMAT.sealed,
            };
            insert.run(...columns.map((c) => row[c]!));
          }
          return rows.length;
        })
      );
      // The pages rewritten go from the log into the file; a reader in
      // another process may keep the log a while, and the next checkpoint
      // overwrites it.
      if (sealed > 0) {
        this.#conn.run("clean up history", (db) => db.exec("PRAGMA wal_checkpoint(TRUNCATE)"));
      }
      return sealed;
    } finally {
      this.#conn.run("clean up history", (db) => db.exec("PRAGMA secure_delete = OFF"));
    }
  }

  /**
   * Deletes every sealed body's row, and its outbox entry if the file has an
   * outbox: for an identity replaced by a new one, whose key cannot open them.
   *
   * @returns How many messages were deleted.
   * @throws {StorageError} If the commit fails.
   */
  deleteSealed(): number {
    this.#bySeq.clear();
    return this.#conn.transaction(() =>
      this.#conn.run("delete history", (db) => {
        const outbox = db.prepare(
          "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'outbox'",
        ).get();
        if (outbox !== undefined) {
          // The outbox keeps the ends of its queues in memory.
          this.#conn.cache(OUTBOX_TAILS).clear();
          db.prepare(
            `DELETE FROM outbox WHERE message_seq IN
               (SELECT seq FROM messages WHERE body_format <> 0)`,
          ).run();
        }
        return Number(db.prepare("DELETE FROM messages WHERE body_format <> 0").run().changes);
      })
    );
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
    // A history without the key reads the file, which refuses sealed bodies.
    const kept = this.#box === undefined ? undefined : this.#bySeq.get(seq);
    if (kept !== undefined) return kept;
    const r = this.#conn.run(
      "read message",
      (db) => db.prepare("SELECT * FROM messages WHERE seq = ?").get(seq),
    ) as Row | undefined;
    return r === undefined ? undefined : this.#remember(this.#toMessage(r));
  }

  /**
   * Moves a message's delivery state (the outbox does, on an
   * acknowledgement or a mailbox copy).
   *
   * @param seq The local sequence number.
   * @param state The new state.
   * @param from Only if the message is in this state now. Default: any.
   */
  setState(seq: number, state: MessageState, from?: MessageState): void {
    const r = this.#conn.run(
      "update message",
      (db) =>
        from === undefined
          ? db.prepare("UPDATE messages SET state = ? WHERE seq = ?").run(state, seq)
          : db.prepare("UPDATE messages SET state = ? WHERE seq = ? AND state = ?").run(
            state,
            seq,
            from,
          ),
    );
    const kept = this.#bySeq.get(seq);
    if (kept !== undefined && Number(r.changes) > 0) this.#remember({ ...kept, state });
  }

  /**
   * Records how an outgoing message was finally protected.
   *
   * @param seq The local sequence number.
   * @param protection How its content is protected.
   */
  setProtection(seq: number, protection: MessageProtection): void {
    this.#bySeq.delete(seq);
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
        `SELECT * FROM (SELECT * FROM messages WHERE peer = ? AND seq > ? AND ${SHOWN}
           ORDER BY sent_at DESC, seq DESC LIMIT ?) ORDER BY sent_at, seq`,
      ).all(peer, options.afterSeq ?? 0, options.limit ?? 50)) as Row[];
    return rows.map((r) => this.#toMessage(r));
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
        db.prepare(
          `SELECT * FROM messages WHERE direction = 'in' AND seq > ? AND ${SHOWN} ORDER BY seq`,
        ).all(afterSeq),
    ) as Row[];
    return rows.map((r) => this.#toMessage(r));
  }

  /**
   * Received messages of some content types from one peer whose bodies are
   * kept (not cleared by {@linkcode MessageStore.clearBody}), oldest first:
   * the parts of files left in a mailbox, until each file is whole.
   *
   * @param peer The sender's user ID.
   * @param contentTypes The content types.
   * @returns The messages.
   */
  incomingWithBody(peer: string, contentTypes: readonly number[]): StoredMessage[] {
    const types = contentTypes.map((t) => Math.trunc(t)).join(", ");
    const rows = this.#conn.run(
      "read messages",
      (db) =>
        db.prepare(
          `SELECT * FROM messages WHERE direction = 'in' AND peer = ?
             AND content_type IN (${types}) AND length(body) > ${CLEARED_LENGTH} ORDER BY seq`,
        ).all(peer),
    ) as Row[];
    return rows.map((r) => this.#toMessage(r));
  }

  /**
   * Empties a message's body, keeping its row (so that a copy arriving
   * again is still known): a file part once its file is saved or refused.
   *
   * @param seq The local sequence number.
   */
  clearBody(seq: number): void {
    const row = this.get(seq);
    if (row === undefined) return;
    // An empty body, sealed as any other: a clear one would make the profile
    // reseal (and rebuild) the file.
    const kept = this.#keep(row.direction, row.peer, row.id, new Uint8Array(0));
    this.#bySeq.delete(seq);
    this.#conn.run(
      "update message",
      (db) =>
        db.prepare("UPDATE messages SET body = ?, body_format = ? WHERE seq = ?").run(
          kept.body,
          kept.format,
          seq,
        ),
    );
  }
}
