/**
 * The `file_queue` table: files too large to leave in the network, waiting
 * on the sender's device until sender and recipient are online together.
 * Each entry names the file by path, with the size and SHA-256 it had when
 * it was queued (a file changed since is not sent), and keeps its attempts,
 * the time of the next one and the last error, for status displays.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Connection } from "./connection.ts";
 * import { FILE_QUEUE_SCHEMA, FileQueueStore } from "./file_queue_store.ts";
 *
 * using conn = Connection.open(":memory:", [FILE_QUEUE_SCHEMA]);
 * const queue = new FileQueueStore(conn);
 * const entry = queue.add({
 *   fileId: "00".repeat(16), recipient: "dimbob", path: "/tmp/big.bin", name: "big.bin",
 *   bytes: 5_000_000, sha256: new Uint8Array(32), queuedAt: 1,
 * });
 * assert.deepEqual(queue.due(1).map((e) => e.fileId), [entry.fileId]);
 * queue.defer(entry.fileId, 100, "bob is offline");
 * assert.deepEqual(queue.due(50), []);
 * queue.finish(entry.fileId, "sent", 60, "");
 * assert.equal(queue.waiting().length, 0);
 * ```
 *
 * @module
 */
import { blob, type Connection, type Row, type SchemaPart } from "./connection.ts";

/** The `file_queue` table. */
export const FILE_QUEUE_SCHEMA: SchemaPart = {
  tables: ["file_queue"],
  sql: `
CREATE TABLE IF NOT EXISTS file_queue (
  file_id TEXT PRIMARY KEY,
  recipient TEXT NOT NULL,
  path TEXT NOT NULL,
  name TEXT NOT NULL,
  bytes INTEGER NOT NULL,
  sha256 BLOB NOT NULL,
  queued_at INTEGER NOT NULL,
  state TEXT NOT NULL DEFAULT 'waiting',
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER NOT NULL DEFAULT 0,
  last_error TEXT NOT NULL DEFAULT '',
  done_at INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS file_queue_waiting ON file_queue (state, next_attempt_at);`,
};

/** Where a queued file is. */
export type QueuedFileState = "waiting" | "sent" | "failed";

/** A file to queue. */
export interface NewQueuedFile {
  /** 16 random bytes, hex: the transfer's ID. */
  readonly fileId: string;
  /** The recipient's user ID. */
  readonly recipient: string;
  /** The file's absolute path. */
  readonly path: string;
  /** The name the recipient sees. */
  readonly name: string;
  /** Its size when queued. */
  readonly bytes: number;
  /** Its SHA-256 when queued. */
  readonly sha256: Uint8Array;
  /** When it was queued (ms). */
  readonly queuedAt: number;
}

/** A queued file and what became of it. */
export interface FileQueueEntry extends NewQueuedFile {
  /** Waiting, sent, or failed for good. */
  readonly state: QueuedFileState;
  /** Attempts so far. */
  readonly attempts: number;
  /** When to try next (ms). */
  readonly nextAttemptAt: number;
  /** The last failure, for status displays. */
  readonly lastError: string;
  /** When it was sent or failed for good (ms); 0 while waiting. */
  readonly doneAt: number;
}

function toEntry(r: Row): FileQueueEntry {
  return {
    fileId: String(r.file_id),
    recipient: String(r.recipient),
    path: String(r.path),
    name: String(r.name),
    bytes: Number(r.bytes),
    sha256: blob(r.sha256),
    queuedAt: Number(r.queued_at),
    state: String(r.state) as QueuedFileState,
    attempts: Number(r.attempts),
    nextAttemptAt: Number(r.next_attempt_at),
    lastError: String(r.last_error),
    doneAt: Number(r.done_at),
  };
}

/** The `file_queue` table on a shared connection. */
export class FileQueueStore {
  readonly #conn: Connection;

  /**
   * Uses a connection opened with {@linkcode FILE_QUEUE_SCHEMA}.
   *
   * @param conn The connection.
   */
  constructor(conn: Connection) {
    this.#conn = conn;
  }

  /**
   * Queues a file, due at once.
   *
   * @param file The file.
   * @returns The entry.
   */
  add(file: NewQueuedFile): FileQueueEntry {
    this.#conn.run("queue file", (db) =>
      db.prepare(
        `INSERT INTO file_queue (file_id, recipient, path, name, bytes, sha256, queued_at,
           next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      ).run(
        file.fileId,
        file.recipient,
        file.path,
        file.name,
        file.bytes,
        file.sha256,
        file.queuedAt,
        file.queuedAt,
      ));
    return this.get(file.fileId)!;
  }

  /**
   * One entry.
   *
   * @param fileId The transfer's ID.
   * @returns The entry, or `undefined`.
   */
  get(fileId: string): FileQueueEntry | undefined {
    const r = this.#conn.run(
      "read file queue",
      (db) => db.prepare("SELECT * FROM file_queue WHERE file_id = ?").get(fileId),
    ) as Row | undefined;
    return r === undefined ? undefined : toEntry(r);
  }

  /**
   * The waiting entries due at `now`, oldest first.
   *
   * @param now Time in ms.
   * @returns The entries.
   */
  due(now: number): FileQueueEntry[] {
    const rows = this.#conn.run("read file queue", (db) =>
      db.prepare(
        `SELECT * FROM file_queue WHERE state = 'waiting' AND next_attempt_at <= ?
         ORDER BY queued_at, file_id`,
      ).all(now)) as Row[];
    return rows.map(toEntry);
  }

  /**
   * Every waiting entry, oldest first.
   *
   * @returns The entries.
   */
  waiting(): FileQueueEntry[] {
    const rows = this.#conn.run(
      "read file queue",
      (db) =>
        db.prepare("SELECT * FROM file_queue WHERE state = 'waiting' ORDER BY queued_at, file_id")
          .all(),
    ) as Row[];
    return rows.map(toEntry);
  }

  /**
   * Records a failed attempt and when to try again.
   *
   * @param fileId The entry.
   * @param nextAttemptAt When to retry (ms).
   * @param error What went wrong.
   */
  defer(fileId: string, nextAttemptAt: number, error: string): void {
    this.#conn.run("update file queue", (db) =>
      db.prepare(
        `UPDATE file_queue SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?
         WHERE file_id = ? AND state = 'waiting'`,
      ).run(nextAttemptAt, error, fileId));
  }

  /**
   * Makes every waiting entry due at once (a peer connected: the recipient may be back).
   *
   * @param now Time in ms.
   */
  retryNow(now: number): void {
    this.#conn.run("update file queue", (db) =>
      db.prepare(
        "UPDATE file_queue SET next_attempt_at = ? WHERE state = 'waiting' AND next_attempt_at > ?",
      ).run(now, now));
  }

  /**
   * Ends an entry: sent, or failed for good (the file changed or is gone).
   *
   * @param fileId The entry.
   * @param state `"sent"` or `"failed"`.
   * @param at When (ms).
   * @param error Why it failed; empty when sent.
   */
  finish(fileId: string, state: Exclude<QueuedFileState, "waiting">, at: number, error: string) {
    this.#conn.run("update file queue", (db) =>
      db.prepare(
        `UPDATE file_queue SET state = ?, done_at = ?, last_error = ?,
           attempts = attempts + 1 WHERE file_id = ?`,
      ).run(state, at, error, fileId));
  }
}
