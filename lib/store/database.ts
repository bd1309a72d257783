/**
 * DIM's local database: contacts, message history, the outbox of messages
 * not yet acknowledged, the set of seen message IDs, and the mailbox of
 * sealed envelopes this node keeps for offline users.
 *
 * It is one SQLite file (`node:sqlite`, built into Deno) in WAL mode with
 * `synchronous=FULL`, so a row whose insert returned is on disk: a message is
 * acknowledged to its sender only after its row is committed.
 *
 * Writes whose loss costs nothing but a repeat (a delivery mark, a message
 * that will be acknowledged only after {@linkcode Database.sync}) may commit
 * with `{ durable: false }`: such a commit survives a crash of the process
 * but not yet of the machine, until the next durable commit or `sync()`
 * flushes the log. Many messages then share one flush.
 *
 * @example Open an in-memory database and add a contact
 * ```ts
 * import assert from "node:assert/strict";
 * import { Database } from "./database.ts";
 *
 * using db = Database.open(":memory:");
 * db.upsertContact({
 *   name: "bob",
 *   userId: "dim-example",
 *   signingPublicKey: new Uint8Array(32),
 *   encryptionPublicKey: new Uint8Array(32),
 * });
 * assert(db.getContact("bob")?.userId === "dim-example");
 * ```
 *
 * @module
 */
import { DatabaseSync, type SQLInputValue, type StatementSync } from "node:sqlite";

/** What statements run through: prepared statements are cached. */
interface SqlHandle {
  prepare(sql: string): StatementSync;
  exec(sql: string): void;
}
import { StorageError } from "../errors.ts";
import { whyUnopenable } from "../platform/sqlite_errors.ts";

const SCHEMA_VERSION = 2;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
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
);
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
CREATE INDEX IF NOT EXISTS messages_by_peer ON messages (peer, sent_at, seq);
CREATE TABLE IF NOT EXISTS outbox (
  message_seq INTEGER PRIMARY KEY REFERENCES messages (seq),
  recipient TEXT NOT NULL,
  envelope BLOB NOT NULL,
  envelope_hash BLOB NOT NULL UNIQUE,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER NOT NULL,
  stored_offline INTEGER NOT NULL DEFAULT 0,
  last_error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS outbox_by_recipient ON outbox (recipient, message_seq);
CREATE TABLE IF NOT EXISTS mailbox (
  mailbox BLOB NOT NULL,
  hash BLOB NOT NULL,
  envelope BLOB NOT NULL,
  expires_at INTEGER NOT NULL,
  stored_at INTEGER NOT NULL,
  PRIMARY KEY (mailbox, hash)
);
CREATE INDEX IF NOT EXISTS mailbox_expiry ON mailbox (expires_at);
CREATE TABLE IF NOT EXISTS sessions (
  peer TEXT NOT NULL,
  session_id BLOB NOT NULL,
  state BLOB NOT NULL,
  initial_header BLOB,
  current INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  used_at INTEGER NOT NULL,
  PRIMARY KEY (peer, session_id)
);
CREATE TABLE IF NOT EXISTS secrets (name TEXT PRIMARY KEY, value BLOB NOT NULL);
`;

/** Schema changes after version 1, applied in order to older files. */
const MIGRATIONS: Record<number, string> = {
  2: "ALTER TABLE messages ADD COLUMN protection TEXT NOT NULL DEFAULT 'static'",
};

/** A contact as the database keeps it. */
export interface ContactRow {
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

/** Direction of a stored message. */
export type MessageDirection = "in" | "out";

/** Delivery state of a message: outgoing ones move pending → stored → delivered. */
export type MessageState = "pending" | "stored" | "delivered" | "received";

/** A message in the history. */
export interface MessageRow {
  /** Local insertion order, unique. */
  readonly seq: number;
  /** 16-byte message ID chosen by the sender. */
  readonly id: Uint8Array;
  /** The other party's user ID. */
  readonly peer: string;
  /** Whether it was sent or received. */
  readonly direction: MessageDirection;
  /** Sender's timestamp (ms). */
  readonly sentAt: number;
  /** Local time it was stored (ms). */
  readonly receivedAt: number;
  /** Envelope content type. */
  readonly contentType: number;
  /** The decrypted body. */
  readonly body: Uint8Array;
  /** Delivery state. */
  readonly state: MessageState;
  /** How it travelled: "direct" or "mailbox". */
  readonly via: string;
  /**
   * How its content was protected: "ratchet" (a Double Ratchet session,
   * forward secret) or "static" (sealed to the recipient's long-term key).
   */
  readonly protection: MessageProtection;
}

/** How a message's content was protected. */
export type MessageProtection = "ratchet" | "static";

/** A stored Double Ratchet session (its state sealed at rest by the caller). */
export interface SessionRow {
  /** The other party's user ID. */
  readonly peer: string;
  /** 8 bytes naming the session: a hash of its X3DH header. */
  readonly sessionId: Uint8Array;
  /** The sealed session state. */
  readonly state: Uint8Array;
  /** The X3DH header to send until the peer answers (initiator side), if any. */
  readonly initialHeader: Uint8Array | undefined;
  /** Whether new messages to the peer use this session. */
  readonly current: boolean;
  /** When it was made (ms). */
  readonly createdAt: number;
  /** When it last encrypted or decrypted (ms). */
  readonly usedAt: number;
}

/** An outbox entry: a sealed envelope waiting for its acknowledgement. */
export interface OutboxRow {
  /** The message it belongs to. */
  readonly messageSeq: number;
  /** Recipient user ID. */
  readonly recipient: string;
  /** The sealed envelope bytes. */
  readonly envelope: Uint8Array;
  /** SHA-256 of the envelope, which the acknowledgement signs. */
  readonly envelopeHash: Uint8Array;
  /** Delivery attempts so far. */
  readonly attempts: number;
  /** When to try next (ms). */
  readonly nextAttemptAt: number;
  /** Whether a copy sits in the recipient's mailbox in the network. */
  readonly storedOffline: boolean;
  /** The last failure, for status displays. */
  readonly lastError: string;
}

type Row = Record<string, SQLInputValue>;

function bytes(v: SQLInputValue | undefined): Uint8Array {
  if (v instanceof Uint8Array) return v;
  throw new StorageError("Cannot read database: expected a blob");
}

function toContact(r: Row): ContactRow {
  return {
    name: String(r.name),
    userId: String(r.user_id),
    signingPublicKey: bytes(r.signing_key),
    encryptionPublicKey: bytes(r.encryption_key),
    displayName: String(r.display_name),
    peerId: String(r.peer_id),
    addresses: JSON.parse(String(r.addresses)) as string[],
    cardSeq: Number(r.card_seq),
    verified: Number(r.verified) === 1,
    changedEncryptionKey: r.changed_encryption_key instanceof Uint8Array
      ? r.changed_encryption_key
      : undefined,
    addedAt: Number(r.added_at),
    lastSeen: Number(r.last_seen),
  };
}

function toMessage(r: Row): MessageRow {
  return {
    seq: Number(r.seq),
    id: bytes(r.msg_id),
    peer: String(r.peer),
    direction: String(r.direction) as MessageDirection,
    sentAt: Number(r.sent_at),
    receivedAt: Number(r.received_at),
    contentType: Number(r.content_type),
    body: bytes(r.body),
    state: String(r.state) as MessageState,
    via: String(r.via),
    protection: String(r.protection) as MessageProtection,
  };
}

function toSession(r: Row): SessionRow {
  return {
    peer: String(r.peer),
    sessionId: bytes(r.session_id),
    state: bytes(r.state),
    initialHeader: r.initial_header instanceof Uint8Array ? r.initial_header : undefined,
    current: Number(r.current) === 1,
    createdAt: Number(r.created_at),
    usedAt: Number(r.used_at),
  };
}

function toOutbox(r: Row): OutboxRow {
  return {
    messageSeq: Number(r.message_seq),
    recipient: String(r.recipient),
    envelope: bytes(r.envelope),
    envelopeHash: bytes(r.envelope_hash),
    attempts: Number(r.attempts),
    nextAttemptAt: Number(r.next_attempt_at),
    storedOffline: Number(r.stored_offline) === 1,
    lastError: String(r.last_error),
  };
}

function storageError(action: string, cause: unknown, known?: string): StorageError {
  const detail = cause instanceof Error ? cause.message : String(cause);
  let reason = known ?? detail;
  if (/SQLITE_FULL|database or disk is full/i.test(detail)) reason = "no space left on device";
  else if (/readonly|read-only/i.test(detail)) reason = "the data directory is read-only";
  else if (/not a database|malformed/i.test(detail)) reason = "the database file is corrupt";
  else if (/locked|busy/i.test(detail)) reason = "the database is locked by another process";
  return new StorageError(`Cannot ${action}: ${reason}`, { cause });
}

/** DIM's local SQLite database. Not safe to share between processes without the data-dir lock. */
export class Database implements Disposable {
  #db: DatabaseSync;
  #closed = false;
  #inTransaction = false;
  /** Commits made without a flush of the log since the last flush. */
  #unsynced = false;

  private constructor(db: DatabaseSync) {
    this.#db = db;
  }

  /**
   * Opens (creating if needed) the database at `path`, or `":memory:"`.
   *
   * @param path File path or `":memory:"`.
   * @returns The open database.
   * @throws {StorageError} If the file is corrupt, locked, read-only or from a newer DIM.
   * @example
   * ```ts
   * import { Database } from "./database.ts";
   * const db = Database.open(":memory:");
   * db.close();
   * ```
   */
  static open(path: string): Database {
    let db: DatabaseSync | undefined;
    try {
      db = new DatabaseSync(path);
      db.exec("PRAGMA busy_timeout = 5000");
      db.exec("PRAGMA journal_mode = WAL");
      db.exec("PRAGMA synchronous = FULL");
      db.exec("PRAGMA foreign_keys = ON");
      db.exec(SCHEMA);
      const row = db.prepare("SELECT value FROM meta WHERE key = 'schema'").get() as
        | Row
        | undefined;
      if (row === undefined) {
        db.prepare("INSERT INTO meta (key, value) VALUES ('schema', ?)").run(
          String(SCHEMA_VERSION),
        );
      } else if (Number(row.value) > SCHEMA_VERSION) {
        throw new StorageError(
          `Cannot open database: it was written by a newer DIM (schema ${row.value})`,
        );
      } else {
        for (let v = Number(row.value) + 1; v <= SCHEMA_VERSION; v++) {
          db.exec("BEGIN IMMEDIATE");
          try {
            if (MIGRATIONS[v]) db.exec(MIGRATIONS[v]!);
            db.prepare("UPDATE meta SET value = ? WHERE key = 'schema'").run(String(v));
            db.exec("COMMIT");
          } catch (err) {
            db.exec("ROLLBACK");
            throw err;
          }
        }
      }
    } catch (cause) {
      try {
        db?.close();
      } catch { /* already failing */ }
      if (cause instanceof StorageError) throw cause;
      throw storageError(`open database ${path}`, cause, whyUnopenable(path, cause));
    }
    return new Database(db);
  }

  // Compiling SQL costs more than running these small statements: each is
  // prepared once and reused.
  #statements = new Map<string, StatementSync>();
  #handle: SqlHandle = {
    prepare: (sql: string): StatementSync => {
      let statement = this.#statements.get(sql);
      if (statement === undefined) {
        statement = this.#db.prepare(sql);
        this.#statements.set(sql, statement);
      }
      return statement;
    },
    exec: (sql: string): void => this.#db.exec(sql),
  };

  #run<T>(action: string, fn: (db: SqlHandle) => T): T {
    if (this.#closed) throw new StorageError(`Cannot ${action}: the database is closed`);
    try {
      return fn(this.#handle);
    } catch (cause) {
      if (cause instanceof StorageError) throw cause;
      throw storageError(action, cause);
    }
  }

  /**
   * Runs `fn` in one write transaction: all of it is committed, or none.
   *
   * @param fn The work; its return value is returned.
   * @param options `durable: false` commits without flushing the log to
   *   disk (the default flushes): the commit survives a crash of the process,
   *   and one of the machine once {@linkcode Database.sync} or a later durable
   *   commit has run. Nested calls join the outer transaction and its mode.
   * @returns What `fn` returned.
   * @throws {StorageError} If the commit fails; whatever `fn` throws is rethrown after rollback.
   */
  transaction<T>(fn: () => T, options: { readonly durable?: boolean } = {}): T {
    if (this.#inTransaction) return fn();
    const durable = options.durable ?? true;
    if (!durable) this.#run("begin transaction", (db) => db.exec("PRAGMA synchronous = NORMAL"));
    try {
      this.#run("begin transaction", (db) => db.exec("BEGIN IMMEDIATE"));
      this.#inTransaction = true;
      try {
        const out = fn();
        this.#run("commit", (db) => db.exec("COMMIT"));
        this.#unsynced = !durable;
        return out;
      } catch (err) {
        try {
          this.#db.exec("ROLLBACK");
        } catch { /* the failed statement may have rolled back already */ }
        throw err;
      } finally {
        this.#inTransaction = false;
      }
    } finally {
      if (!durable && !this.#closed) this.#db.exec("PRAGMA synchronous = FULL");
    }
  }

  /**
   * Makes every commit so far durable: after it returns, they survive a
   * crash of the machine. Costs one flush if a commit was made with
   * `durable: false` since the last one, nothing otherwise.
   *
   * @throws {StorageError} If the flush fails.
   */
  sync(): void {
    if (!this.#unsynced) return;
    // A durable commit flushes the whole log, the earlier commits with it;
    // it must change a page, or SQLite has nothing to write and flush.
    this.transaction(() =>
      this.#run("flush", (db) =>
        db.prepare(
          `INSERT INTO meta (key, value) VALUES ('flushes', '1')
           ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1`,
        ).run())
    );
  }

  // ---- contacts ----

  /**
   * Adds or replaces a contact by name.
   *
   * @param c The contact.
   */
  upsertContact(c: ContactRow): void {
    this.#run("save contact", (db) =>
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
  }

  /**
   * Finds a contact by local name.
   *
   * @param name The local name.
   * @returns The contact, or `undefined`.
   */
  getContact(name: string): ContactRow | undefined {
    const r = this.#run(
      "read contact",
      (db) => db.prepare("SELECT * FROM contacts WHERE name = ?").get(name),
    ) as Row | undefined;
    return r === undefined ? undefined : toContact(r);
  }

  /**
   * Finds a contact by user ID.
   *
   * @param userId The contact's user ID.
   * @returns The contact, or `undefined`.
   */
  getContactById(userId: string): ContactRow | undefined {
    const r = this.#run(
      "read contact",
      (db) => db.prepare("SELECT * FROM contacts WHERE user_id = ?").get(userId),
    ) as Row | undefined;
    return r === undefined ? undefined : toContact(r);
  }

  /**
   * Lists all contacts by name.
   *
   * @returns The contacts.
   */
  listContacts(): ContactRow[] {
    const rows = this.#run(
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
  removeContact(name: string): boolean {
    const r = this.#run(
      "remove contact",
      (db) => db.prepare("DELETE FROM contacts WHERE name = ?").run(name),
    );
    return Number(r.changes) > 0;
  }

  /**
   * Records that a contact was seen now.
   *
   * @param userId The contact's user ID.
   * @param at Time in ms.
   */
  touchContact(userId: string, at: number): void {
    this.#run(
      "update contact",
      (db) => db.prepare("UPDATE contacts SET last_seen = ? WHERE user_id = ?").run(at, userId),
    );
  }

  // ---- messages ----

  /**
   * Stores a received message unless the same sender already sent this ID.
   *
   * @param m The message (direction "in").
   * @returns The stored row if it was new, `undefined` if it was a duplicate.
   */
  insertIncoming(m: Omit<MessageRow, "seq" | "direction" | "state">): MessageRow | undefined {
    const r = this.#run("store message", (db) =>
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
   * Stores an outgoing message and its sealed envelope in one transaction.
   *
   * @param m The message (direction "out").
   * @param envelope The sealed envelope.
   * @param envelopeHash SHA-256 of the envelope.
   * @returns The stored message.
   */
  insertOutgoing(
    m: Omit<MessageRow, "seq" | "direction" | "state" | "via">,
    envelope: Uint8Array,
    envelopeHash: Uint8Array,
  ): MessageRow {
    return this.transaction(() => {
      const r = this.#run("store message", (db) =>
        db.prepare(
          `INSERT INTO messages (msg_id, peer, direction, sent_at, received_at, content_type, body,
             state, protection)
           VALUES (?, ?, 'out', ?, ?, ?, ?, 'pending', ?)`,
        ).run(m.id, m.peer, m.sentAt, m.receivedAt, m.contentType, m.body, m.protection));
      const seq = Number(r.lastInsertRowid);
      this.#run("queue message", (db) =>
        db.prepare(
          `INSERT INTO outbox (message_seq, recipient, envelope, envelope_hash, next_attempt_at)
           VALUES (?, ?, ?, ?, ?)`,
        ).run(seq, m.peer, envelope, envelopeHash, m.receivedAt));
      return { ...m, seq, direction: "out" as const, state: "pending" as const, via: "direct" };
    });
  }

  /**
   * Reads one message by its local sequence number.
   *
   * @param seq The local sequence number.
   * @returns The message, or `undefined`.
   */
  getMessage(seq: number): MessageRow | undefined {
    const r = this.#run(
      "read message",
      (db) => db.prepare("SELECT * FROM messages WHERE seq = ?").get(seq),
    ) as Row | undefined;
    return r === undefined ? undefined : toMessage(r);
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
  ): MessageRow[] {
    const rows = this.#run("read history", (db) =>
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
  incomingSince(afterSeq: number): MessageRow[] {
    const rows = this.#run(
      "read messages",
      (db) =>
        db.prepare("SELECT * FROM messages WHERE direction = 'in' AND seq > ? ORDER BY seq").all(
          afterSeq,
        ),
    ) as Row[];
    return rows.map(toMessage);
  }

  // ---- outbox ----

  /**
   * The outbox entries due at `now`, oldest message first, at most one per recipient
   * so each conversation is delivered in order.
   *
   * @param now Time in ms.
   * @returns The due entries.
   */
  dueOutbox(now: number): OutboxRow[] {
    const rows = this.#run("read outbox", (db) =>
      db.prepare(
        `SELECT o.* FROM outbox o
         WHERE o.message_seq = (SELECT MIN(message_seq) FROM outbox WHERE recipient = o.recipient)
           AND o.next_attempt_at <= ?
         ORDER BY o.message_seq`,
      ).all(now)) as Row[];
    return rows.map(toOutbox);
  }

  /**
   * One conversation's outbox after a given entry, oldest first.
   *
   * @param recipient The recipient's user ID.
   * @param afterSeq Only entries of later messages.
   * @param limit At most this many.
   * @returns The entries.
   */
  outboxAfter(recipient: string, afterSeq: number, limit: number): OutboxRow[] {
    const rows = this.#run("read outbox", (db) =>
      db.prepare(
        `SELECT * FROM outbox WHERE recipient = ? AND message_seq > ?
         ORDER BY message_seq LIMIT ?`,
      ).all(recipient, afterSeq, limit)) as Row[];
    return rows.map(toOutbox);
  }

  /**
   * All outbox entries, oldest first.
   *
   * @returns The entries.
   */
  listOutbox(): OutboxRow[] {
    const rows = this.#run(
      "read outbox",
      (db) => db.prepare("SELECT * FROM outbox ORDER BY message_seq").all(),
    ) as Row[];
    return rows.map(toOutbox);
  }

  /**
   * The recipient of the outbox entry whose envelope has this hash.
   *
   * @param envelopeHash SHA-256 of the envelope.
   * @returns The recipient's user ID, or `undefined` if no entry has it.
   */
  outboxRecipient(envelopeHash: Uint8Array): string | undefined {
    const r = this.#run(
      "read outbox",
      (db) => db.prepare("SELECT recipient FROM outbox WHERE envelope_hash = ?").get(envelopeHash),
    ) as
      | Row
      | undefined;
    return r === undefined ? undefined : String(r.recipient);
  }

  /**
   * Records a failed attempt and when to try again.
   *
   * @param messageSeq The entry.
   * @param nextAttemptAt When to retry (ms).
   * @param error What went wrong.
   */
  deferOutbox(messageSeq: number, nextAttemptAt: number, error: string): void {
    this.#run("update outbox", (db) =>
      db.prepare(
        `UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?
         WHERE message_seq = ?`,
      ).run(nextAttemptAt, error.slice(0, 500), messageSeq));
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
  replaceOutboxEnvelope(
    messageSeq: number,
    envelope: Uint8Array,
    envelopeHash: Uint8Array,
    now: number,
  ): void {
    this.#run("update outbox", (db) =>
      db.prepare(
        `UPDATE outbox SET envelope = ?, envelope_hash = ?, attempts = 0, next_attempt_at = ?,
           stored_offline = 0, last_error = '' WHERE message_seq = ?`,
      ).run(envelope, envelopeHash, now, messageSeq));
  }

  /**
   * Marks that a copy was left in the recipient's network mailbox.
   *
   * @param messageSeq The entry.
   */
  markStoredOffline(messageSeq: number): void {
    this.transaction(() => {
      this.#run(
        "update outbox",
        (db) =>
          db.prepare("UPDATE outbox SET stored_offline = 1 WHERE message_seq = ?").run(messageSeq),
      );
      this.#run(
        "update message",
        (db) =>
          db.prepare("UPDATE messages SET state = 'stored' WHERE seq = ? AND state = 'pending'")
            .run(
              messageSeq,
            ),
      );
    });
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
    return this.transaction(() => {
      const row = this.#run(
        "read outbox",
        (db) =>
          db.prepare("SELECT message_seq FROM outbox WHERE envelope_hash = ? AND recipient = ?")
            .get(
              envelopeHash,
              recipient,
            ),
      ) as Row | undefined;
      if (row === undefined) return undefined;
      const seq = Number(row.message_seq);
      this.#run(
        "update outbox",
        (db) => db.prepare("DELETE FROM outbox WHERE message_seq = ?").run(seq),
      );
      this.#run(
        "update message",
        (db) => db.prepare("UPDATE messages SET state = 'delivered' WHERE seq = ?").run(seq),
      );
      return seq;
    });
  }

  // ---- mailbox (envelopes kept for others) ----

  /**
   * Keeps an envelope for an offline user, within quotas.
   *
   * @param mailbox The 32-byte mailbox address.
   * @param hash SHA-256 of the envelope.
   * @param envelope The sealed envelope.
   * @param expiresAt When to drop it (ms).
   * @param now The current time (ms).
   * @param limits `maxCount` and `maxBytes` per mailbox, `maxTotalBytes` for all mailboxes.
   * @returns "stored", "duplicate" or "full".
   */
  mailboxPut(
    mailbox: Uint8Array,
    hash: Uint8Array,
    envelope: Uint8Array,
    expiresAt: number,
    now: number,
    limits: {
      readonly maxCount: number;
      readonly maxBytes: number;
      readonly maxTotalBytes: number;
    },
  ): "stored" | "duplicate" | "full" {
    return this.transaction(() => {
      this.#run(
        "expire mailbox",
        (db) => db.prepare("DELETE FROM mailbox WHERE expires_at <= ?").run(now),
      );
      const exists = this.#run(
        "read mailbox",
        (db) =>
          db.prepare("SELECT 1 FROM mailbox WHERE mailbox = ? AND hash = ?").get(mailbox, hash),
      );
      if (exists !== undefined) return "duplicate";
      const box = this.#run("read mailbox", (db) =>
        db.prepare(
          "SELECT COUNT(*) AS n, COALESCE(SUM(LENGTH(envelope)), 0) AS b FROM mailbox WHERE mailbox = ?",
        ).get(mailbox)) as Row;
      const total = this.#run(
        "read mailbox",
        (db) => db.prepare("SELECT COALESCE(SUM(LENGTH(envelope)), 0) AS b FROM mailbox").get(),
      ) as Row;
      if (
        Number(box.n) + 1 > limits.maxCount ||
        Number(box.b) + envelope.length > limits.maxBytes ||
        Number(total.b) + envelope.length > limits.maxTotalBytes
      ) return "full";
      this.#run("store in mailbox", (db) =>
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
  mailboxList(
    mailbox: Uint8Array,
    now: number,
    limit: number,
  ): { envelope: Uint8Array; expiresAt: number }[] {
    const rows = this.#run("read mailbox", (db) =>
      db.prepare(
        `SELECT envelope, expires_at FROM mailbox WHERE mailbox = ? AND expires_at > ?
         ORDER BY stored_at, hash LIMIT ?`,
      ).all(mailbox, now, limit)) as Row[];
    return rows.map((r) => ({ envelope: bytes(r.envelope), expiresAt: Number(r.expires_at) }));
  }

  /**
   * Deletes envelopes from a mailbox by hash.
   *
   * @param mailbox The 32-byte mailbox address.
   * @param hashes SHA-256 hashes of the envelopes to delete.
   * @returns How many were deleted.
   */
  mailboxDelete(mailbox: Uint8Array, hashes: readonly Uint8Array[]): number {
    return this.transaction(() => {
      let n = 0;
      for (const h of hashes) {
        const r = this.#run(
          "delete from mailbox",
          (db) => db.prepare("DELETE FROM mailbox WHERE mailbox = ? AND hash = ?").run(mailbox, h),
        );
        n += Number(r.changes);
      }
      return n;
    });
  }

  /**
   * Whether a message from `peer` with this ID is already stored.
   *
   * @param peer The sender's user ID.
   * @param id The 16-byte message ID.
   * @returns `true` for a duplicate.
   */
  hasIncoming(peer: string, id: Uint8Array): boolean {
    const r = this.#run(
      "read message",
      (db) =>
        db.prepare("SELECT 1 FROM messages WHERE direction = 'in' AND peer = ? AND msg_id = ?").get(
          peer,
          id,
        ),
    );
    return r !== undefined;
  }

  // ---- sessions and secrets ----

  /**
   * The sessions with a peer, the current one first, then newest first.
   *
   * @param peer The other party's user ID.
   * @returns The sessions.
   */
  sessions(peer: string): SessionRow[] {
    const rows = this.#run("read sessions", (db) =>
      db.prepare(
        "SELECT * FROM sessions WHERE peer = ? ORDER BY current DESC, used_at DESC, created_at DESC",
      ).all(peer)) as Row[];
    return rows.map(toSession);
  }

  /**
   * Saves a session (inside the caller's transaction, if any), optionally
   * making it the current one, and keeps at most `keep` sessions per peer.
   *
   * @param row The session.
   * @param keep How many sessions per peer to keep (oldest-used dropped). Default 4.
   */
  saveSession(row: SessionRow, keep = 4): void {
    this.#run("save session", (db) => {
      if (row.current) {
        db.prepare(
          "UPDATE sessions SET current = 0 WHERE peer = ? AND session_id != ? AND current = 1",
        ).run(row.peer, row.sessionId);
      }
      // Most saves move an existing session on: one update by key, no pruning.
      const updated = db.prepare(
        `UPDATE sessions SET state = ?, initial_header = ?, current = ?, used_at = ?
         WHERE peer = ? AND session_id = ?`,
      ).run(
        row.state,
        row.initialHeader ?? null,
        row.current ? 1 : 0,
        row.usedAt,
        row.peer,
        row.sessionId,
      );
      if (Number(updated.changes) > 0) return;
      db.prepare(
        `INSERT INTO sessions (peer, session_id, state, initial_header, current, created_at, used_at)
         VALUES (?, ?, ?, ?, ?, ?, ?)`,
      ).run(
        row.peer,
        row.sessionId,
        row.state,
        row.initialHeader ?? null,
        row.current ? 1 : 0,
        row.createdAt,
        row.usedAt,
      );
      db.prepare(
        `DELETE FROM sessions WHERE peer = ? AND current = 0 AND session_id NOT IN (
           SELECT session_id FROM sessions WHERE peer = ? ORDER BY current DESC, used_at DESC
           LIMIT ?)`,
      ).run(row.peer, row.peer, keep);
    });
  }

  /**
   * Deletes every session with a peer (inside the caller's transaction, if any).
   *
   * @param peer The peer's user ID.
   */
  deleteSessions(peer: string): void {
    this.#run(
      "delete sessions",
      (db) => db.prepare("DELETE FROM sessions WHERE peer = ?").run(peer),
    );
  }

  /**
   * Reads a sealed secret (prekeys and the like).
   *
   * @param name Its name.
   * @returns The sealed bytes, or `undefined`.
   */
  getSecret(name: string): Uint8Array | undefined {
    const r = this.#run(
      "read secret",
      (db) => db.prepare("SELECT value FROM secrets WHERE name = ?").get(name),
    ) as Row | undefined;
    return r === undefined ? undefined : bytes(r.value);
  }

  /**
   * Writes a sealed secret.
   *
   * @param name Its name.
   * @param value The sealed bytes.
   */
  setSecret(name: string, value: Uint8Array): void {
    this.#run("write secret", (db) =>
      db.prepare(
        "INSERT INTO secrets (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
      ).run(name, value));
  }

  /**
   * Reads a small setting.
   *
   * @param key Setting name.
   * @returns Its value, or `undefined`.
   */
  getMeta(key: string): string | undefined {
    const r = this.#run(
      "read setting",
      (db) => db.prepare("SELECT value FROM meta WHERE key = ?").get(key),
    ) as Row | undefined;
    return r === undefined ? undefined : String(r.value);
  }

  /**
   * Writes a small setting.
   *
   * @param key Setting name.
   * @param value Its value.
   */
  setMeta(key: string, value: string): void {
    this.#run("write setting", (db) =>
      db.prepare(
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
      ).run(key, value));
  }

  /** Closes the database. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#db.close();
  }

  /** Closes the database. */
  [Symbol.dispose](): void {
    this.close();
  }
}
