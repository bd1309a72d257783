/**
 * The mailboxes this node keeps for other users: sealed envelopes by mailbox
 * address, each with the peer that stored it and that peer's address
 * (`origin`), within quotas, dropped at their expiry. A storage node opens
 * only this store (and the connection's `meta` table).
 *
 * Quotas (see `MailboxQuota`): a storing peer over its share of one mailbox
 * is refused; over the limit of a mailbox, of an origin or of the node, the
 * heaviest storer's oldest copies are evicted to make room, so a light
 * sender always gets in. "Heaviest" is decided by origin first (in a
 * mailbox and over the node), then by peer within it, by what is over
 * (copies or bytes); among equals, the one that stored most recently loses
 * first, and the newcomer's own copies go only if it alone is heaviest (it
 * is then refused). Copies of a DIM before 0.2.0 carry no storer (empty
 * `storer` and `origin`): they count as one storer.
 *
 * @example A storage node's store
 * ```ts
 * import assert from "node:assert/strict";
 * import { MailboxStore } from "./mailbox_store.ts";
 *
 * using store = MailboxStore.open(":memory:");
 * const mailbox = new Uint8Array(32);
 * const quota = {
 *   maxCount: 10, maxBytes: 1000, maxTotalBytes: 10_000, maxPeerCount: 5,
 *   maxPeerBytes: 500, maxOriginCount: 100, maxOriginBytes: 5000,
 * };
 * const storer = { peer: "peer-a", origin: "ip4:192.0.2.1" };
 * const copy = { mailbox, hash: new Uint8Array(32), envelope: new Uint8Array([1]) };
 * assert.equal(store.put({ ...copy, expiresAt: 100, storedAt: 0, storer }, quota), "stored");
 * assert.equal(store.list(mailbox, 0, 10).length, 1);
 * assert.equal(store.list(mailbox, 100, 10).length, 0, "expired");
 * ```
 *
 * @module
 */
import type {
  MailboxCopy,
  MailboxPutOutcome,
  MailboxQuota,
  MailboxStorage,
  NewMailboxCopy,
} from "../messaging/storage.ts";
import { blob, Connection, type Row, type SchemaPart } from "./connection.ts";

/**
 * The `mailbox` table. Files written before storers were recorded get the
 * `storer` and `origin` columns (and their indexes) when a
 * {@linkcode MailboxStore} is made on them; the change only adds columns, so
 * an older DIM still reads and writes the file.
 */
export const MAILBOX_SCHEMA: SchemaPart = {
  tables: ["mailbox"],
  sql: `
CREATE TABLE IF NOT EXISTS mailbox (
  mailbox BLOB NOT NULL,
  hash BLOB NOT NULL,
  envelope BLOB NOT NULL,
  expires_at INTEGER NOT NULL,
  stored_at INTEGER NOT NULL,
  storer TEXT NOT NULL DEFAULT '',
  origin TEXT NOT NULL DEFAULT '',
  PRIMARY KEY (mailbox, hash)
);
CREATE INDEX IF NOT EXISTS mailbox_expiry ON mailbox (expires_at);`,
};

const STORER_COLUMNS = `
CREATE INDEX IF NOT EXISTS mailbox_storer ON mailbox (mailbox, storer);
CREATE INDEX IF NOT EXISTS mailbox_origin ON mailbox (origin, storer);`;

/** One storer's copies in a scope (a mailbox, an origin, the node). */
interface Usage {
  readonly origin: string;
  readonly storer: string;
  count: number;
  bytes: number;
  /** When it last stored (ms). */
  last: number;
}

/** Where an eviction looks: a SQL condition and its values. */
interface Scope {
  readonly where: string;
  readonly args: readonly (Uint8Array | string)[];
  /** Whether storers are grouped by origin first. */
  readonly byOrigin: boolean;
}

/** The `mailbox` table on a shared connection, or on its own one. */
export class MailboxStore implements MailboxStorage, Disposable {
  readonly #conn: Connection;
  /** Whether the store opened its connection, and closes it. */
  #owned = false;

  /**
   * Uses a connection opened with {@linkcode MAILBOX_SCHEMA}; closing the
   * connection is the caller's. Adds the storer columns to an older file.
   *
   * @param conn The connection.
   * @throws {StorageError} If an older file cannot be given the new columns.
   */
  constructor(conn: Connection) {
    this.#conn = conn;
    conn.run("upgrade mailbox", (db) => {
      const columns = new Set(
        (db.prepare("PRAGMA table_info(mailbox)").all() as Row[]).map((r) => String(r.name)),
      );
      for (const name of ["storer", "origin"]) {
        if (!columns.has(name)) {
          db.exec(`ALTER TABLE mailbox ADD COLUMN ${name} TEXT NOT NULL DEFAULT ''`);
        }
      }
      db.exec(STORER_COLUMNS);
    });
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
    const conn = Connection.open(path, [MAILBOX_SCHEMA]);
    let store: MailboxStore;
    try {
      store = new MailboxStore(conn);
    } catch (err) {
      conn.close();
      throw err;
    }
    store.#owned = true;
    return store;
  }

  /**
   * Keeps an envelope for an offline user, within quotas: a storer over its
   * share of the mailbox is refused; over the limit of the mailbox, of the
   * storer's origin or of the node, the heaviest storer's oldest copies are
   * evicted first (see the module doc). Expired copies go first.
   *
   * @param copy The envelope, its mailbox, hash, expiry, the time and its storer.
   * @param quota The limits.
   * @returns "stored", "duplicate" or "full" (the storer is over its share,
   *   or is itself the heaviest storer where room is needed).
   * @throws {StorageError} If the database fails.
   */
  put(copy: NewMailboxCopy, quota: MailboxQuota): MailboxPutOutcome {
    const { mailbox, hash, envelope, storer } = copy;
    return this.#conn.transaction(() => {
      this.#conn.run(
        "expire mailbox",
        (db) => db.prepare("DELETE FROM mailbox WHERE expires_at <= ?").run(copy.storedAt),
      );
      const exists = this.#conn.run(
        "read mailbox",
        (db) =>
          db.prepare("SELECT 1 FROM mailbox WHERE mailbox = ? AND hash = ?").get(mailbox, hash),
      );
      if (exists !== undefined) return "duplicate";
      const size = envelope.length;
      const own = this.#sum("mailbox = ? AND storer = ?", [mailbox, storer.peer]);
      if (own.count + 1 > quota.maxPeerCount || own.bytes + size > quota.maxPeerBytes) {
        return "full";
      }
      const scopes: [Scope, number, number][] = [
        [{ where: "mailbox = ?", args: [mailbox], byOrigin: true }, quota.maxCount, quota.maxBytes],
        [
          { where: "origin = ?", args: [storer.origin], byOrigin: false },
          quota.maxOriginCount,
          quota.maxOriginBytes,
        ],
        [{ where: "1", args: [], byOrigin: true }, Infinity, quota.maxTotalBytes],
      ];
      for (const [scope, maxCount, maxBytes] of scopes) {
        if (!this.#makeRoom(scope, copy, maxCount, maxBytes)) return "full";
      }
      this.#conn.run("store in mailbox", (db) =>
        db.prepare(
          `INSERT INTO mailbox (mailbox, hash, envelope, expires_at, stored_at, storer, origin)
           VALUES (?, ?, ?, ?, ?, ?, ?)`,
        ).run(mailbox, hash, envelope, copy.expiresAt, copy.storedAt, storer.peer, storer.origin));
      return "stored";
    });
  }

  #sum(where: string, args: readonly (Uint8Array | string)[]): { count: number; bytes: number } {
    const row = this.#conn.run("read mailbox", (db) =>
      db.prepare(
        `SELECT COUNT(*) AS n, COALESCE(SUM(LENGTH(envelope)), 0) AS b FROM mailbox WHERE ${where}`,
      ).get(...args)) as Row;
    return { count: Number(row.n), bytes: Number(row.b) };
  }

  /**
   * Evicts the heaviest storers' oldest copies in a scope until `copy`
   * fits; `false` if the newcomer is itself the heaviest before it fits.
   */
  #makeRoom(scope: Scope, copy: NewMailboxCopy, maxCount: number, maxBytes: number): boolean {
    const size = copy.envelope.length;
    let { count, bytes } = this.#sum(scope.where, scope.args);
    if (count + 1 <= maxCount && bytes + size <= maxBytes) return true;
    if (size > maxBytes || maxCount < 1) return false;
    const usage = (this.#conn.run("read mailbox", (db) =>
      db.prepare(
        `SELECT origin, storer, COUNT(*) AS n, SUM(LENGTH(envelope)) AS b, MAX(stored_at) AS t
         FROM mailbox WHERE ${scope.where} GROUP BY origin, storer`,
      ).all(...scope.args)) as Row[]).map((r): Usage => ({
        origin: String(r.origin),
        storer: String(r.storer),
        count: Number(r.n),
        bytes: Number(r.b),
        last: Number(r.t),
      }));
    const me = { origin: copy.storer.origin, storer: copy.storer.peer };
    while (count + 1 > maxCount || bytes + size > maxBytes) {
      const victim = heaviest(usage, me, size, count + 1 > maxCount, scope.byOrigin);
      if (victim === undefined) return false;
      const oldest = this.#conn.run("read mailbox", (db) =>
        db.prepare(
          `SELECT mailbox, hash, LENGTH(envelope) AS b FROM mailbox
           WHERE ${scope.where} AND origin = ? AND storer = ?
           ORDER BY stored_at, hash LIMIT 1`,
        ).get(...scope.args, victim.origin, victim.storer)) as Row | undefined;
      if (oldest === undefined) return false;
      this.#conn.run(
        "evict from mailbox",
        (db) =>
          db.prepare("DELETE FROM mailbox WHERE mailbox = ? AND hash = ?").run(
            blob(oldest.mailbox),
            blob(oldest.hash),
          ),
      );
      const b = Number(oldest.b);
      count--;
      bytes -= b;
      victim.count--;
      victim.bytes -= b;
      if (victim.count === 0) usage.splice(usage.indexOf(victim), 1);
    }
    return true;
  }

  /**
   * The unexpired envelopes in one mailbox, oldest first.
   *
   * @param mailbox The 32-byte mailbox address.
   * @param now The current time (ms).
   * @param limit At most this many.
   * @param maxBytes At most this many envelope bytes together (default: no limit).
   * @returns Envelopes with their expiry.
   * @throws {StorageError} If the database fails.
   */
  list(mailbox: Uint8Array, now: number, limit: number, maxBytes = Infinity): MailboxCopy[] {
    return this.#conn.run("read mailbox", (db) => {
      const out: MailboxCopy[] = [];
      let bytes = 0;
      const rows = db.prepare(
        `SELECT envelope, expires_at FROM mailbox WHERE mailbox = ? AND expires_at > ?
         ORDER BY stored_at, hash LIMIT ?`,
      ).iterate(mailbox, now, limit) as Iterable<Row>;
      for (const r of rows) {
        const envelope = blob(r.envelope);
        bytes += envelope.length;
        if (bytes > maxBytes) break;
        out.push({ envelope, expiresAt: Number(r.expires_at) });
      }
      return out;
    });
  }

  /**
   * How many unexpired envelopes one mailbox holds.
   *
   * @param mailbox The 32-byte mailbox address.
   * @param now The current time (ms).
   * @returns The count.
   * @throws {StorageError} If the database fails.
   */
  count(mailbox: Uint8Array, now: number): number {
    const row = this.#conn.run(
      "read mailbox",
      (db) =>
        db.prepare("SELECT COUNT(*) AS n FROM mailbox WHERE mailbox = ? AND expires_at > ?")
          .get(mailbox, now),
    ) as Row;
    return Number(row.n);
  }

  /**
   * Deletes envelopes from a mailbox by hash.
   *
   * @param mailbox The 32-byte mailbox address.
   * @param hashes SHA-256 hashes of the envelopes to delete.
   * @returns How many were deleted.
   * @throws {StorageError} If the database fails.
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

/**
 * The storer whose oldest copy goes: by origin first if `byOrigin`, then by
 * peer; heaviest by copies if `byCount`, else by bytes (the other breaks a
 * tie, then the most recent store); the newcomer counted with its copy, and
 * chosen (`undefined`: refuse it) only if it alone is heaviest.
 */
function heaviest(
  usage: Usage[],
  me: { readonly origin: string; readonly storer: string },
  size: number,
  byCount: boolean,
  byOrigin: boolean,
): Usage | undefined {
  type Group = { key: string; count: number; bytes: number; last: number; mine: boolean };
  const pick = (groups: Group[]): Group | undefined => {
    const weight = (g: Group) => byCount ? [g.count, g.bytes] : [g.bytes, g.count];
    let best: Group | undefined;
    for (const g of groups) {
      if (best === undefined) {
        best = g;
        continue;
      }
      const [a1, a2] = weight(g);
      const [b1, b2] = weight(best);
      const cmp = a1! - b1! || a2! - b2! ||
        // Equal: another storer loses before the newcomer, then the latest.
        (g.mine ? -1 : 0) - (best.mine ? -1 : 0) || g.last - best.last;
      if (cmp > 0) best = g;
    }
    return best;
  };
  const group = (rows: Usage[], key: (u: Usage) => string, mine: (u: Usage) => boolean) => {
    const groups = new Map<string, Group>();
    for (const u of rows) {
      const k = key(u);
      const g = groups.get(k) ?? { key: k, count: 0, bytes: 0, last: -Infinity, mine: mine(u) };
      g.count += u.count;
      g.bytes += u.bytes;
      g.last = Math.max(g.last, u.last);
      groups.set(k, g);
    }
    return [...groups.values()];
  };
  const newcomer: Usage = { ...me, count: 1, bytes: size, last: -Infinity };
  const rows = [...usage, newcomer];
  let candidates = rows;
  if (byOrigin) {
    const origin = pick(group(rows, (u) => u.origin, (u) => u.origin === me.origin));
    candidates = rows.filter((u) => u.origin === origin?.key);
  }
  const isMe = (u: Usage) => u.origin === me.origin && u.storer === me.storer;
  const peer = pick(group(candidates, (u) => u.storer, isMe));
  if (peer === undefined || peer.mine) return undefined;
  // The candidates share one origin (the scope's, or the heaviest's).
  return usage.find((u) => u.storer === peer.key && candidates.includes(u));
}
