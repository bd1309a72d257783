/**
 * The Double Ratchet sessions with each peer: a few per peer, one of them
 * current, their states sealed by the session manager before they get here.
 *
 * Each row keeps the save counter its state was sealed under (`counter`,
 * bound into the sealing by the session manager). A file from before the
 * counter gets the column when it is opened, 0 in every row: states sealed
 * the old way.
 *
 * @example Save a session and read it back
 * ```ts
 * import assert from "node:assert/strict";
 * import { Connection } from "./connection.ts";
 * import { SESSIONS_SCHEMA, SessionStore } from "./session_store.ts";
 *
 * using conn = Connection.open(":memory:", [SESSIONS_SCHEMA]);
 * const sessions = new SessionStore(conn);
 * sessions.save({
 *   peer: "dim-bob", sessionId: new Uint8Array(8), state: new Uint8Array([1]),
 *   initialHeader: undefined, current: true, createdAt: 1, usedAt: 1, counter: 1,
 * });
 * assert.equal(sessions.list("dim-bob")[0]?.current, true);
 * sessions.deleteAll("dim-bob");
 * assert.deepEqual(sessions.list("dim-bob"), []);
 * ```
 *
 * @module
 */
import type { SessionStorage, StoredSession } from "../messaging/storage.ts";
import { constantTimeEqual } from "../platform/bytes.ts";
import {
  blob,
  type Connection,
  optionalBlob,
  remember,
  type Row,
  type SchemaPart,
} from "./connection.ts";

/** The most peers whose sessions are kept in memory. */
const CACHED_PEERS = 256;

/** The `sessions` table. */
export const SESSIONS_SCHEMA: SchemaPart = {
  tables: ["sessions"],
  sql: `
CREATE TABLE IF NOT EXISTS sessions (
  peer TEXT NOT NULL,
  session_id BLOB NOT NULL,
  state BLOB NOT NULL,
  initial_header BLOB,
  current INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  used_at INTEGER NOT NULL,
  counter INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (peer, session_id)
);`,
};

/**
 * Adds the `counter` column to a `sessions` table made before it. The column
 * is additive (an older DIM ignores it), so the file's schema version stays.
 */
function addCounterColumn(conn: Connection): void {
  conn.run("upgrade sessions", (db) => {
    const columns = db.prepare("PRAGMA table_info(sessions)").all() as Row[];
    if (columns.length === 0 || columns.some((c) => c.name === "counter")) return;
    db.exec("ALTER TABLE sessions ADD COLUMN counter INTEGER NOT NULL DEFAULT 0");
  });
}

function toSession(r: Row): StoredSession {
  return {
    peer: String(r.peer),
    sessionId: blob(r.session_id),
    state: blob(r.state),
    initialHeader: optionalBlob(r.initial_header),
    current: Number(r.current) === 1,
    createdAt: Number(r.created_at),
    usedAt: Number(r.used_at),
    counter: Number(r.counter),
  };
}

/** The order of {@linkcode SessionStore.list}: the current one first, then the latest used, then the newest. */
function byUse(a: StoredSession, b: StoredSession): number {
  return Number(b.current) - Number(a.current) || b.usedAt - a.usedAt || b.createdAt - a.createdAt;
}

/**
 * The `sessions` table on a shared connection. A peer's sessions are read
 * for every message to or from it, so the ones read are kept in memory, and
 * each save here updates that copy.
 */
export class SessionStore implements SessionStorage {
  readonly #conn: Connection;
  /** Each peer's sessions as {@linkcode SessionStore.list} returns them. */
  readonly #byPeer: Map<string, readonly StoredSession[]>;

  /**
   * Uses a connection opened with {@linkcode SESSIONS_SCHEMA}, adding the
   * `counter` column to a table made before it.
   *
   * @param conn The connection.
   * @throws {StorageError} If the table cannot be upgraded.
   */
  constructor(conn: Connection) {
    this.#conn = conn;
    addCounterColumn(conn);
    this.#byPeer = conn.cache("sessions by peer");
  }

  /**
   * The sessions with a peer, the current one first, then newest first.
   *
   * @param peer The other party's user ID.
   * @returns The sessions.
   */
  list(peer: string): StoredSession[] {
    const kept = this.#byPeer.get(peer);
    if (kept !== undefined) return [...kept];
    const rows = this.#conn.run("read sessions", (db) =>
      db.prepare(
        "SELECT * FROM sessions WHERE peer = ? ORDER BY current DESC, used_at DESC, created_at DESC",
      ).all(peer)) as Row[];
    const sessions = rows.map(toSession);
    remember(this.#byPeer, peer, sessions, CACHED_PEERS);
    return [...sessions];
  }

  /**
   * Every session with every peer, in no order.
   *
   * @returns The sessions.
   */
  listAll(): StoredSession[] {
    const rows = this.#conn.run(
      "read sessions",
      (db) => db.prepare("SELECT * FROM sessions").all(),
    ) as Row[];
    return rows.map(toSession);
  }

  /**
   * Saves a session (inside the caller's transaction, if any), optionally
   * making it the current one, and keeps at most `keep` sessions per peer.
   *
   * @param row The session.
   * @param keep How many sessions per peer to keep (oldest-used dropped). Default 4.
   */
  save(row: StoredSession, keep = 4): void {
    const kept = this.#byPeer.get(row.peer);
    const same = (s: StoredSession) => constantTimeEqual(s.sessionId, row.sessionId);
    // Forgotten until the save is done: a failed statement leaves it unknown.
    this.#byPeer.delete(row.peer);
    this.#conn.run("save session", (db) => {
      // Another current session to demote, unless the sessions kept say there is none.
      if (row.current && (kept === undefined || kept.some((s) => s.current && !same(s)))) {
        db.prepare(
          "UPDATE sessions SET current = 0 WHERE peer = ? AND session_id != ? AND current = 1",
        ).run(row.peer, row.sessionId);
      }
      // Most saves move an existing session on: one update by key, no pruning.
      const updated = db.prepare(
        `UPDATE sessions SET state = ?, initial_header = ?, current = ?, used_at = ?, counter = ?
         WHERE peer = ? AND session_id = ?`,
      ).run(
        row.state,
        row.initialHeader ?? null,
        row.current ? 1 : 0,
        row.usedAt,
        row.counter,
        row.peer,
        row.sessionId,
      );
      if (Number(updated.changes) > 0) {
        if (kept !== undefined && kept.some(same)) {
          const sessions = kept.map((s) =>
            same(s)
              ? { ...row, createdAt: s.createdAt }
              : row.current
              ? { ...s, current: false }
              : s
          );
          remember(this.#byPeer, row.peer, sessions.sort(byUse), CACHED_PEERS);
        }
        return;
      }
      db.prepare(
        `INSERT INTO sessions
           (peer, session_id, state, initial_header, current, created_at, used_at, counter)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      ).run(
        row.peer,
        row.sessionId,
        row.state,
        row.initialHeader ?? null,
        row.current ? 1 : 0,
        row.createdAt,
        row.usedAt,
        row.counter,
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
  deleteAll(peer: string): void {
    this.#byPeer.delete(peer);
    this.#conn.run(
      "delete sessions",
      (db) => db.prepare("DELETE FROM sessions WHERE peer = ?").run(peer),
    );
  }

  /**
   * Deletes every session with every peer (inside the caller's transaction, if any).
   *
   * @returns How many sessions were deleted.
   */
  clear(): number {
    this.#byPeer.clear();
    return this.#conn.run(
      "delete sessions",
      (db) => Number(db.prepare("DELETE FROM sessions").run().changes),
    );
  }
}
