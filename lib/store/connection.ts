/**
 * The one SQLite connection a data directory's stores share: opening (with
 * the tables of the stores that will use it), schema versions and
 * migrations, transactions, group commit, and errors worded for people.
 *
 * It is one SQLite file (`node:sqlite`, built into Deno) in WAL mode, and a
 * row whose durable commit returned is on disk: a message is acknowledged to
 * its sender only after its row is committed.
 *
 * Writes whose loss costs nothing but a repeat (a delivery mark, a message
 * that will be acknowledged only after {@linkcode Connection.sync}) may commit
 * with `{ durable: false }`: such a commit survives a crash of the process
 * but not yet of the machine, until the next durable commit or `sync()`
 * flushes the log. Many messages then share one flush.
 *
 * Such a commit may be deferred too (`{ durable: false, deferred }`): the
 * transactions are savepoints in one SQLite transaction, left open until
 * `sync(deferred)`, a transaction that is not deferred, a write outside a
 * transaction, or `DEFERRED_COMMIT_MS` (50 ms) later commits it, so a
 * batch of received messages, or of messages sealed together, is one
 * commit. A crash of the process before then loses them, so a caller
 * defers only what it tells no one of before `sync(deferred)`, and a
 * commit of them that fails is kept in their mark for that call to throw.
 *
 * The flush is the connection's own: SQLite runs with `synchronous=NORMAL`
 * (a commit writes its pages to the `-wal` file, and the file is synced only
 * at checkpoints and when the log starts over, header first), and a durable
 * commit or `sync()` then calls `fdatasync` on the `-wal` file, opened beside
 * SQLite's own handle. That is the one thing `synchronous=FULL` adds to a
 * commit in WAL mode (SQLite's `walFrames` syncs the log after the commit's
 * frames; on Unix with power-safe overwrite it pads nothing), so a flushed
 * commit is as durable as a FULL one, but `sync()` costs one `fdatasync`
 * instead of a commit of its own, and no commit toggles the pragma. The log
 * stays the same file while the connection is open (a checkpoint makes
 * SQLite write it again from its start, or truncate it, never replace it;
 * it is removed only when the last connection closes). A database that is
 * not in WAL mode (`:memory:`, a file system without shared memory), and
 * every database on Windows, keeps `synchronous=FULL` and flushes with a
 * durable commit.
 *
 * Stores may keep what they read in maps from {@linkcode Connection.cache}:
 * one process holds a data directory's lock, so a store that updates its
 * map on each of its writes stays right, and the connection empties every
 * such map when a transaction rolls back.
 *
 * Each store declares its tables as a {@linkcode SchemaPart}; a connection
 * creates only the parts it is opened with (a storage node opens the
 * mailboxes alone), and the `meta` table, which holds the file's schema
 * version.
 *
 * @example Open an in-memory connection with one table
 * ```ts
 * import assert from "node:assert/strict";
 * import { Connection } from "./connection.ts";
 *
 * using conn = Connection.open(":memory:", [
 *   { tables: ["notes"], sql: "CREATE TABLE IF NOT EXISTS notes (text TEXT NOT NULL)" },
 * ]);
 * conn.transaction(() => conn.run("add note", (db) =>
 *   db.prepare("INSERT INTO notes (text) VALUES (?)").run("hi")));
 * const n = conn.run("count notes", (db) => db.prepare("SELECT COUNT(*) AS n FROM notes").get());
 * assert.equal(n?.n, 1);
 * ```
 *
 * @module
 */
import { DatabaseSync, type SQLInputValue, type StatementSync } from "node:sqlite";
import { StorageError } from "../errors.ts";
import { whyUnopenable } from "../platform/sqlite_errors.ts";
import { privateSqliteFile } from "../platform/sqlite_files.ts";
import type { DeferredCommits, TransactionOptions } from "../messaging/storage.ts";

/**
 * The longest deferred transactions wait for their commit when no sync or
 * other transaction commits them first (ms).
 */
const DEFERRED_COMMIT_MS = 50;

/**
 * The schema version this DIM writes; a file from a newer one is refused.
 * Version 3 seals message bodies (`messages.body_format`): a DIM of version
 * 2 would take sealed bodies for text, so it must refuse the file.
 */
export const SCHEMA_VERSION = 3;

/**
 * Schema changes after version 1, applied in order to older files, each to
 * the table it alters if the file has it (a table created by this open has
 * the newest shape already), before the stores' `CREATE … IF NOT EXISTS`
 * statements, whose indexes may need the new columns. They are the file's
 * history, so they run whichever stores a connection opens.
 */
const MIGRATIONS: Readonly<Record<number, { readonly table: string; readonly sql: string }>> = {
  2: {
    table: "messages",
    sql: "ALTER TABLE messages ADD COLUMN protection TEXT NOT NULL DEFAULT 'static'",
  },
  // Every older body is in the clear; the profile seals them on its first unlock.
  3: {
    table: "messages",
    sql: "ALTER TABLE messages ADD COLUMN body_format INTEGER NOT NULL DEFAULT 0",
  },
};

/** The table every connection has: settings, the schema version, the flush counter. */
const META_SCHEMA = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);";

/** The tables of one store. */
export interface SchemaPart {
  /** The tables it creates. */
  readonly tables: readonly string[];
  /** `CREATE … IF NOT EXISTS` statements of its tables and indexes, newest shape. */
  readonly sql: string;
}

/** What statements run through: prepared statements are cached. */
export interface SqlHandle {
  /**
   * The prepared statement for `sql`, compiled once per connection.
   *
   * @param sql One SQL statement.
   * @returns The statement.
   */
  prepare(sql: string): StatementSync;
  /**
   * Runs SQL without a result. SQL run this way may change any row, so the
   * connection empties the maps of {@linkcode Connection.cache}: the stores
   * use it only for schema changes, pragmas and rare bulk changes.
   *
   * @param sql One or more statements.
   */
  exec(sql: string): void;
}

/** A result row. */
export type Row = Record<string, SQLInputValue>;

/**
 * A blob column's value.
 *
 * @param v The column's value.
 * @returns The bytes.
 * @throws {StorageError} If it is not a blob.
 */
export function blob(v: SQLInputValue | undefined): Uint8Array {
  if (v instanceof Uint8Array) return v;
  throw new StorageError("Cannot read database: expected a blob");
}

/**
 * A nullable blob column's value.
 *
 * @param v The column's value.
 * @returns The bytes, or `undefined` for NULL.
 */
export function optionalBlob(v: SQLInputValue | undefined): Uint8Array | undefined {
  return v instanceof Uint8Array ? v : undefined;
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

/** Creates the parts' tables and brings an older file up to {@linkcode SCHEMA_VERSION}. */
function applySchema(db: DatabaseSync, parts: readonly SchemaPart[]): void {
  db.exec(META_SCHEMA);
  const existing = new Set(
    (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as Row[])
      .map((r) => String(r.name)),
  );
  const row = db.prepare("SELECT value FROM meta WHERE key = 'schema'").get() as Row | undefined;
  if (row !== undefined && Number(row.value) > SCHEMA_VERSION) {
    throw new StorageError(
      `Cannot open database: it was written by a newer DIM (schema ${row.value})`,
    );
  }
  for (let v = Number(row?.value ?? SCHEMA_VERSION) + 1; v <= SCHEMA_VERSION; v++) {
    const migration = MIGRATIONS[v];
    db.exec("BEGIN IMMEDIATE");
    try {
      if (migration !== undefined && existing.has(migration.table)) db.exec(migration.sql);
      db.prepare("UPDATE meta SET value = ? WHERE key = 'schema'").run(String(v));
      db.exec("COMMIT");
    } catch (err) {
      db.exec("ROLLBACK");
      throw err;
    }
  }
  for (const part of parts) db.exec(part.sql);
  if (row === undefined) {
    db.prepare("INSERT INTO meta (key, value) VALUES ('schema', ?)").run(String(SCHEMA_VERSION));
  }
}

/**
 * The `-wal` file of a database in WAL mode, opened to flush it, or
 * `undefined` where SQLite must flush it itself (not in WAL mode, in memory,
 * the file cannot be opened, or on Windows, which flushes only a file
 * opened for writing).
 */
function openLog(db: DatabaseSync): Deno.FsFile | undefined {
  if (Deno.build.os === "windows") return undefined;
  const mode = db.prepare("PRAGMA journal_mode").get() as Row | undefined;
  if (mode?.journal_mode !== "wal") return undefined;
  // The name SQLite itself gives the log: the database's full path (after
  // it resolved links) with "-wal".
  const main = (db.prepare("PRAGMA database_list").all() as Row[]).find((r) => r.name === "main");
  const file = typeof main?.file === "string" ? main.file : "";
  if (file === "") return undefined;
  try {
    return Deno.openSync(`${file}-wal`, { read: true });
  } catch {
    return undefined;
  }
}

/**
 * Maps of rows a store keeps in memory, by name: every store of a kind on a
 * connection shares one. Each is bounded: the oldest entry goes first.
 */
class Caches {
  readonly #maps = new Map<string, Map<unknown, unknown>>();

  get<K, V>(name: string): Map<K, V> {
    let map = this.#maps.get(name);
    if (map === undefined) {
      map = new Map();
      this.#maps.set(name, map);
    }
    return map as Map<K, V>;
  }

  clear(): void {
    for (const map of this.#maps.values()) map.clear();
  }
}

/**
 * Keeps `value` under `key` in a map from {@linkcode Connection.cache},
 * dropping the oldest entries beyond `limit`.
 *
 * @param map The map.
 * @param key The key.
 * @param value The value.
 * @param limit The most entries the map keeps.
 * @returns `value`.
 */
export function remember<K, V>(map: Map<K, V>, key: K, value: V, limit: number): V {
  map.delete(key);
  map.set(key, value);
  for (const oldest of map.keys()) {
    if (map.size <= limit) break;
    map.delete(oldest);
  }
  return value;
}

/** One SQLite connection. Not safe to share between processes without the data-dir lock. */
export class Connection implements Disposable {
  #db: DatabaseSync;
  #closed = false;
  #inTransaction = false;
  /** Commits made so far. */
  #commits = 0;
  /** How many of them a flush has made durable. */
  #flushedUpTo = 0;
  /** The flushes running on other threads (`syncAsync`), settled or not failing. */
  readonly #flushing = new Set<Promise<void>>();
  /** The `-wal` file this connection flushes itself, if it does. */
  #log: Deno.FsFile | undefined;
  /** While deferred transactions wait for their commit: the marks of their callers. */
  #deferred: Set<DeferredCommits> | undefined;
  /** Commits the deferred transactions if nothing else has. */
  #deferredTimer: ReturnType<typeof setTimeout> | undefined;
  /** Whether each SQL text run so far writes (not a SELECT). */
  readonly #writes = new Map<string, boolean>();
  readonly #caches = new Caches();

  private constructor(db: DatabaseSync, log: Deno.FsFile | undefined) {
    this.#db = db;
    this.#log = log;
  }

  /**
   * Opens (creating if needed) the database at `path`, or `":memory:"`, with
   * the tables of `parts`.
   *
   * @param path File path or `":memory:"`.
   * @param parts The tables of the stores that will use the connection.
   * @returns The open connection.
   * @throws {StorageError} If the file is corrupt, locked, read-only or from a newer DIM.
   */
  static open(path: string, parts: readonly SchemaPart[]): Connection {
    let db: DatabaseSync | undefined;
    let log: Deno.FsFile | undefined;
    try {
      privateSqliteFile(path);
      db = new DatabaseSync(path);
      db.exec("PRAGMA busy_timeout = 5000");
      db.exec("PRAGMA journal_mode = WAL");
      db.exec("PRAGMA synchronous = FULL");
      db.exec("PRAGMA foreign_keys = ON");
      applySchema(db, parts);
      // The log exists now: the schema's reads opened it.
      log = openLog(db);
      if (log !== undefined) db.exec("PRAGMA synchronous = NORMAL");
    } catch (cause) {
      log?.close();
      try {
        db?.close();
      } catch { /* already failing */ }
      if (cause instanceof StorageError) throw cause;
      throw storageError(`open database ${path}`, cause, whyUnopenable(path, cause));
    }
    return new Connection(db, log);
  }

  // Compiling SQL costs more than running these small statements: each is
  // prepared once and reused.
  #statements = new Map<string, StatementSync>();
  #handle: SqlHandle = {
    prepare: (sql: string): StatementSync => {
      // A write outside a transaction commits at once, as it always did:
      // the deferred transactions first.
      if (this.#deferred !== undefined && !this.#inTransaction && this.#isWrite(sql)) {
        this.#commitDeferred();
      }
      let statement = this.#statements.get(sql);
      if (statement === undefined) {
        statement = this.#db.prepare(sql);
        this.#statements.set(sql, statement);
      }
      return statement;
    },
    exec: (sql: string): void => {
      if (this.#deferred !== undefined && !this.#inTransaction) this.#commitDeferred();
      this.#caches.clear();
      this.#db.exec(sql);
    },
  };

  #isWrite(sql: string): boolean {
    let writes = this.#writes.get(sql);
    if (writes === undefined) {
      writes = !/^\s*SELECT\b/i.test(sql);
      this.#writes.set(sql, writes);
    }
    return writes;
  }

  /** Runs a statement of the connection's own (a transaction's), with errors worded for people. */
  #exec(action: string, sql: string): void {
    this.run(action, () => this.#db.exec(sql));
  }

  /**
   * Runs statements, with errors worded for people.
   *
   * @param action What is being done, for the error ("read contact").
   * @param fn The work, given the statement cache.
   * @returns What `fn` returned.
   * @throws {StorageError} `Cannot <action>: <reason>` if it fails or the connection is closed.
   */
  run<T>(action: string, fn: (db: SqlHandle) => T): T {
    if (this.#closed) throw new StorageError(`Cannot ${action}: the database is closed`);
    try {
      return fn(this.#handle);
    } catch (cause) {
      if (cause instanceof StorageError) throw cause;
      throw storageError(action, cause);
    }
  }

  /**
   * A map, by name, for rows a store keeps in memory: every call with the
   * same name on this connection gets the same map, so two stores of a kind
   * see each other's updates. The connection empties it when a transaction
   * rolls back (a store may have updated it inside) and when it closes; a
   * store updates it after each of its writes succeeds, and empties it when
   * it cannot tell which entries a write changed. Bound it with
   * {@linkcode remember}.
   *
   * @param name The map's name, e.g. the table's.
   * @returns The map.
   */
  cache<K, V>(name: string): Map<K, V> {
    return this.#caches.get<K, V>(name);
  }

  /**
   * Whether the connection flushes the `-wal` file itself (see the module
   * doc): a database in WAL mode on disk. Otherwise SQLite flushes each
   * durable commit, and `sync()` makes one.
   */
  get flushesLog(): boolean {
    return this.#log !== undefined;
  }

  /**
   * Runs `fn` in one write transaction: all of it is committed, or none.
   *
   * @param fn The work; its return value is returned.
   * @param options `durable: false` commits without flushing the log to
   *   disk (the default flushes): the commit survives a crash of the process,
   *   and one of the machine once {@linkcode Connection.sync} or a later durable
   *   commit has run. Nested calls join the outer transaction and its mode.
   * @returns What `fn` returned.
   * @throws {StorageError} If the commit or its flush fails; whatever `fn`
   *   throws is rethrown after rollback.
   */
  transaction<T>(fn: () => T, options: TransactionOptions = {}): T {
    if (this.#inTransaction) return fn();
    const durable = options.durable ?? true;
    // Deferred only where the connection flushes the log itself: elsewhere
    // each commit sets how SQLite flushes it.
    const deferred = durable || this.#log === undefined ? undefined : options.deferred;
    if (deferred !== undefined) {
      if (this.#deferred === undefined) {
        this.#exec("begin transaction", "BEGIN IMMEDIATE");
        this.#deferred = new Set();
        const timer = setTimeout(() => {
          try {
            this.#commitDeferred();
          } catch { /* kept in the callers' marks */ }
        }, DEFERRED_COMMIT_MS);
        Deno.unrefTimer(timer);
        this.#deferredTimer = timer;
      }
      this.#deferred.add(deferred);
      return this.#savepoint(fn);
    }
    if (this.#deferred !== undefined) {
      // Joins the deferred transactions, and commits them with it.
      const out = this.#savepoint(fn);
      this.#commitDeferred();
      if (durable) this.#flush("commit");
      return out;
    }
    // Without its own flush, the connection has SQLite flush a durable
    // commit (FULL) and skip it for the others.
    const toggle = !durable && this.#log === undefined;
    if (toggle) this.#exec("begin transaction", "PRAGMA synchronous = NORMAL");
    try {
      this.#exec("begin transaction", "BEGIN IMMEDIATE");
      this.#inTransaction = true;
      let out: T;
      try {
        out = fn();
        this.#exec("commit", "COMMIT");
      } catch (err) {
        try {
          this.#db.exec("ROLLBACK");
        } catch { /* the failed statement may have rolled back already */ }
        // Whatever a store kept in memory inside may not be in the file.
        this.#caches.clear();
        throw err;
      } finally {
        this.#inTransaction = false;
      }
      this.#commits++;
      if (durable && this.#log !== undefined) this.#flush("commit");
      else if (durable) this.#flushedUpTo = this.#commits;
      return out;
    } finally {
      if (toggle && !this.#closed) this.#db.exec("PRAGMA synchronous = FULL");
    }
  }

  /** Runs `fn` in a savepoint of the deferred transactions' SQLite transaction. */
  #savepoint<T>(fn: () => T): T {
    this.#exec("begin transaction", "SAVEPOINT deferred");
    this.#inTransaction = true;
    try {
      const out = fn();
      this.#exec("commit", "RELEASE deferred");
      return out;
    } catch (err) {
      try {
        this.#db.exec("ROLLBACK TO deferred");
        this.#db.exec("RELEASE deferred");
      } catch { /* the failed statement may have rolled everything back */ }
      this.#caches.clear();
      // A failure that ended the SQLite transaction took the earlier ones with it.
      if (!this.#db.isTransaction) this.#loseDeferred(err);
      throw err;
    } finally {
      this.#inTransaction = false;
    }
  }

  /**
   * Commits the deferred transactions, if any wait.
   *
   * @throws {StorageError} If the commit fails: they are lost, and their
   *   callers' marks say so.
   */
  #commitDeferred(): void {
    if (this.#deferred === undefined) return;
    try {
      this.#exec("commit", "COMMIT");
    } catch (err) {
      try {
        this.#db.exec("ROLLBACK");
      } catch { /* rolled back already */ }
      this.#loseDeferred(err);
      throw err;
    }
    clearTimeout(this.#deferredTimer);
    this.#deferred = undefined;
    this.#commits++;
  }

  /** The deferred transactions are lost: their callers' marks say why. */
  #loseDeferred(err: unknown): void {
    const marks = this.#deferred ?? new Set();
    clearTimeout(this.#deferredTimer);
    this.#deferred = undefined;
    // Whatever a store kept in memory of them is not in the file.
    this.#caches.clear();
    const lost = err instanceof StorageError ? err : storageError("commit", err);
    for (const mark of marks) mark.lost ??= lost;
  }

  /** Flushes the log: every commit so far is then on disk. */
  #flush(action: string): void {
    if (this.#closed) throw new StorageError(`Cannot ${action}: the database is closed`);
    const upTo = this.#commits;
    try {
      this.#log!.syncDataSync();
    } catch (cause) {
      throw storageError(action, cause);
    }
    this.#flushedUpTo = Math.max(this.#flushedUpTo, upTo);
  }

  /**
   * Makes every commit so far durable: after it returns, they survive a
   * crash of the machine. Costs one flush if a commit was made with
   * `durable: false` since the last one, nothing otherwise; deferred
   * transactions are committed first.
   *
   * @param deferred The mark of the caller's deferred transactions, if any:
   *   a failed commit of them fails this call, even if another call met it.
   * @throws {StorageError} If the commit or the flush fails, or a commit of
   *   the caller's deferred transactions failed.
   */
  sync(deferred?: DeferredCommits): void {
    this.#commitDeferred();
    if (deferred?.lost !== undefined) throw deferred.lost;
    if (this.#flushedUpTo >= this.#commits) return;
    if (this.#log !== undefined) {
      this.#flush("flush");
      return;
    }
    // A durable commit flushes the whole log, the earlier commits with it;
    // it must change a page, or SQLite has nothing to write and flush.
    this.transaction(() =>
      this.run("flush", (db) =>
        db.prepare(
          `INSERT INTO meta (key, value) VALUES ('flushes', '1')
           ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1`,
        ).run())
    );
    // The settings store keeps the meta table's values in this map.
    this.#caches.get("meta").delete("flushes");
  }

  /**
   * As {@linkcode Connection.sync}, with the flush on another thread: the
   * JavaScript thread runs on meanwhile, and commits made meanwhile are
   * not counted as flushed by it.
   *
   * @param deferred The mark of the caller's deferred transactions, if any.
   * @returns When every commit made before the call is durable.
   * @throws {StorageError} As `sync`.
   */
  async syncAsync(deferred?: DeferredCommits): Promise<void> {
    if (this.#log === undefined) return this.sync(deferred);
    if (this.#closed) throw new StorageError("Cannot flush: the database is closed");
    this.#commitDeferred();
    if (deferred?.lost !== undefined) throw deferred.lost;
    const upTo = this.#commits;
    if (this.#flushedUpTo >= upTo) return;
    const flushing = this.#log.syncData();
    const settled = flushing.then(() => {}, () => {});
    this.#flushing.add(settled);
    try {
      await flushing;
    } catch (cause) {
      throw storageError("flush", cause);
    } finally {
      this.#flushing.delete(settled);
    }
    this.#flushedUpTo = Math.max(this.#flushedUpTo, upTo);
  }

  /** Closes the connection. Idempotent. */
  close(): void {
    if (this.#closed) return;
    try {
      this.#commitDeferred();
    } catch { /* kept in the callers' marks; they told no one */ }
    this.#closed = true;
    this.#caches.clear();
    try {
      // Flushes still running on other threads keep the file open until they end.
      const log = this.#log;
      if (this.#flushing.size === 0) log?.close();
      else Promise.all(this.#flushing).finally(() => log?.close());
    } finally {
      this.#db.close();
    }
  }

  /** Closes the connection. */
  [Symbol.dispose](): void {
    this.close();
  }
}
