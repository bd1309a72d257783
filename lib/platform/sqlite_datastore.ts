/**
 * A persistent `interface-datastore` {@linkcode Datastore} on SQLite
 * (`node:sqlite`, built into Deno), used as the libp2p datastore of a DIM
 * node so that its peer store and the DHT records it holds survive a
 * restart.
 *
 * The database is one file in WAL mode holding a single key/value table.
 * Keys are kept as their UTF-8 bytes, so SQLite's byte order is the key
 * order and a key prefix is a range scan. Every SQLite failure surfaces as
 * a {@linkcode StorageError}; a missing key is the `NotFoundError` that
 * libp2p expects.
 *
 * @example Store, read and list entries
 * ```ts
 * import { Key } from "interface-datastore";
 * import { SqliteDatastore } from "./sqlite_datastore.ts";
 *
 * using store = SqliteDatastore.open(":memory:");
 * await store.put(new Key("/peers/a"), new Uint8Array([1]));
 * await store.put(new Key("/dht/record/b"), new Uint8Array([2]));
 * console.assert((await store.get(new Key("/peers/a")))[0] === 1);
 *
 * const keys = [];
 * for await (const key of store.queryKeys({ prefix: "/peers" })) keys.push(key.toString());
 * console.assert(keys.length === 1 && keys[0] === "/peers/a");
 * ```
 *
 * @module
 */
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { Key } from "interface-datastore";
import type { Batch, Datastore, KeyQuery, Pair, Query } from "interface-datastore";
import { NotFoundError } from "interface-store";
import { StorageError } from "../errors.ts";
import { privateSqliteFile } from "./sqlite_files.ts";

/** The schema version this module writes into `PRAGMA user_version`. */
const SCHEMA_VERSION = 1;

/** How many rows a query reads from SQLite at a time. */
const QUERY_PAGE_SIZE = 256;

/** A byte no UTF-8 string contains: appended to a prefix it bounds the prefix's range. */
const PAST_ANY_UTF8 = 0xff;

const encoder = new TextEncoder();

/** Options for {@linkcode SqliteDatastore.open}. */
export interface SqliteDatastoreOptions {
  /**
   * How long, in milliseconds, a statement waits for another connection's
   * lock before failing with a {@linkcode StorageError}. Default `5000`.
   */
  readonly busyTimeoutMs?: number;
}

/** The shape of the optional second argument of the datastore methods. */
export interface DatastoreCallOptions {
  /** Aborts the call; a query checks it between rows. */
  readonly signal?: AbortSignal;
}

interface Statements {
  readonly put: StatementSync;
  readonly get: StatementSync;
  readonly has: StatementSync;
  readonly delete: StatementSync;
  readonly page: StatementSync;
  readonly pageKeys: StatementSync;
}

/**
 * An `interface-datastore` {@linkcode Datastore} kept in a SQLite file.
 *
 * Open it with {@linkcode SqliteDatastore.open}; close it with
 * {@linkcode SqliteDatastore.close} (or `using`). Calls after `close()`
 * fail with a {@linkcode StorageError}.
 *
 * @example Batch writes are one transaction
 * ```ts
 * import { Key } from "interface-datastore";
 * import { SqliteDatastore } from "./sqlite_datastore.ts";
 *
 * using store = SqliteDatastore.open(":memory:");
 * const batch = store.batch();
 * batch.put(new Key("/a"), new Uint8Array([1]));
 * batch.put(new Key("/b"), new Uint8Array([2]));
 * await batch.commit();
 * console.assert(await store.has(new Key("/b")));
 * ```
 */
export class SqliteDatastore implements Datastore, Disposable {
  #db: DatabaseSync | undefined;
  #statements: Statements | undefined;
  readonly #path: string;

  private constructor(path: string, db: DatabaseSync, statements: Statements) {
    this.#path = path;
    this.#db = db;
    this.#statements = statements;
  }

  /**
   * Opens (creating if needed) the datastore at `path`, in WAL mode with a
   * busy timeout. `":memory:"` gives a private in-memory store.
   *
   * @param path The database file.
   * @param options `busyTimeoutMs` (default `5000`).
   * @returns The open datastore.
   * @throws {RangeError} If `busyTimeoutMs` is not a non-negative integer.
   * @throws {StorageError} If the file cannot be opened, is not a SQLite
   *   database ("Cannot open datastore …: the file is not a database or is
   *   corrupt"), is locked by another connection for longer than the busy
   *   timeout, or was written by a newer schema version.
   * @example
   * ```ts
   * import { SqliteDatastore } from "./sqlite_datastore.ts";
   *
   * const dir = await Deno.makeTempDir();
   * const store = SqliteDatastore.open(`${dir}/node.db`, { busyTimeoutMs: 1000 });
   * store.close();
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  static open(path: string, options: SqliteDatastoreOptions = {}): SqliteDatastore {
    const { busyTimeoutMs = 5000 } = options;
    if (!Number.isSafeInteger(busyTimeoutMs) || busyTimeoutMs < 0) {
      throw new RangeError(
        `Cannot open datastore: busyTimeoutMs must be a non-negative integer, got ${busyTimeoutMs}`,
      );
    }
    let db: DatabaseSync | undefined;
    try {
      privateSqliteFile(path);
      db = new DatabaseSync(path);
      db.exec(`PRAGMA busy_timeout = ${busyTimeoutMs}`);
      // Reading the journal mode is the first statement that touches the
      // file header, so a foreign or damaged file fails here.
      db.exec("PRAGMA journal_mode = WAL");
      // NORMAL is safe in WAL mode: a power cut may lose the last commits
      // (peer addresses, DHT copies that peers re-send) but never corrupts.
      db.exec("PRAGMA synchronous = NORMAL");
      const row = db.prepare("PRAGMA user_version").get() as { user_version?: unknown } | undefined;
      const version = Number(row?.user_version ?? 0);
      if (version > SCHEMA_VERSION) {
        throw new StorageError(
          `Cannot open datastore ${path}: schema version ${version} is newer than supported (${SCHEMA_VERSION})`,
        );
      }
      if (version < SCHEMA_VERSION) {
        db.exec("BEGIN IMMEDIATE");
        try {
          db.exec(
            "CREATE TABLE IF NOT EXISTS datastore (key BLOB PRIMARY KEY NOT NULL, value BLOB NOT NULL) WITHOUT ROWID",
          );
          db.exec(`PRAGMA user_version = ${SCHEMA_VERSION}`);
          db.exec("COMMIT");
        } catch (cause) {
          rollback(db);
          throw cause;
        }
      }
      const statements: Statements = {
        put: db.prepare("INSERT OR REPLACE INTO datastore (key, value) VALUES (?, ?)"),
        get: db.prepare("SELECT value FROM datastore WHERE key = ?"),
        has: db.prepare("SELECT 1 AS found FROM datastore WHERE key = ?"),
        delete: db.prepare("DELETE FROM datastore WHERE key = ?"),
        page: db.prepare(
          "SELECT key, value FROM datastore WHERE key > ? AND key >= ? AND key < ? ORDER BY key LIMIT ?",
        ),
        pageKeys: db.prepare(
          "SELECT key FROM datastore WHERE key > ? AND key >= ? AND key < ? ORDER BY key LIMIT ?",
        ),
      };
      return new SqliteDatastore(path, db, statements);
    } catch (cause) {
      try {
        db?.close();
      } catch {
        // The open failure is the error worth reporting.
      }
      if (cause instanceof StorageError) throw cause;
      throw storageError(`open datastore ${path}`, cause);
    }
  }

  /** Whether {@linkcode SqliteDatastore.close} has been called. */
  get closed(): boolean {
    return this.#db === undefined;
  }

  /**
   * Stores `value` under `key`, replacing any previous value.
   *
   * @param key The key.
   * @param value The bytes to store.
   * @param options `signal`: checked before writing.
   * @returns The key.
   * @throws {StorageError} If the database fails or is closed.
   * @throws {DOMException} If `signal` is aborted.
   * @example
   * ```ts
   * import { Key } from "interface-datastore";
   * import { SqliteDatastore } from "./sqlite_datastore.ts";
   *
   * using store = SqliteDatastore.open(":memory:");
   * await store.put(new Key("/a"), new Uint8Array([1]));
   * ```
   */
  put(key: Key, value: Uint8Array, options: DatastoreCallOptions = {}): Promise<Key> {
    return this.#run("put datastore entry", options, (s) => {
      s.put.run(key.uint8Array(), value);
      return key;
    });
  }

  /**
   * Reads the value stored under `key`.
   *
   * @param key The key.
   * @param options `signal`: checked before reading.
   * @returns The stored bytes.
   * @throws {NotFoundError} (from `interface-store`, `name` `"NotFoundError"`) if nothing is stored under `key`.
   * @throws {StorageError} If the database fails or is closed.
   * @throws {DOMException} If `signal` is aborted.
   * @example
   * ```ts
   * import { Key } from "interface-datastore";
   * import { SqliteDatastore } from "./sqlite_datastore.ts";
   *
   * using store = SqliteDatastore.open(":memory:");
   * try {
   *   await store.get(new Key("/missing"));
   * } catch (err) {
   *   console.assert((err as Error).name === "NotFoundError");
   * }
   * ```
   */
  get(key: Key, options: DatastoreCallOptions = {}): Promise<Uint8Array> {
    return this.#run("get datastore entry", options, (s) => {
      const row = s.get.get(key.uint8Array()) as { value: Uint8Array } | undefined;
      if (row === undefined) throw new NotFoundError(`Not found: ${key.toString()}`);
      return row.value;
    });
  }

  /**
   * Tells whether a value is stored under `key`.
   *
   * @param key The key.
   * @param options `signal`: checked before reading.
   * @returns `true` if the key is present.
   * @throws {StorageError} If the database fails or is closed.
   * @throws {DOMException} If `signal` is aborted.
   * @example
   * ```ts
   * import { Key } from "interface-datastore";
   * import { SqliteDatastore } from "./sqlite_datastore.ts";
   *
   * using store = SqliteDatastore.open(":memory:");
   * console.assert(!(await store.has(new Key("/a"))));
   * ```
   */
  has(key: Key, options: DatastoreCallOptions = {}): Promise<boolean> {
    return this.#run("check datastore entry", options, (s) => {
      return s.has.get(key.uint8Array()) !== undefined;
    });
  }

  /**
   * Removes the value stored under `key`; removing a missing key is not an error.
   *
   * @param key The key.
   * @param options `signal`: checked before writing.
   * @returns When the key is gone.
   * @throws {StorageError} If the database fails or is closed.
   * @throws {DOMException} If `signal` is aborted.
   * @example
   * ```ts
   * import { Key } from "interface-datastore";
   * import { SqliteDatastore } from "./sqlite_datastore.ts";
   *
   * using store = SqliteDatastore.open(":memory:");
   * await store.delete(new Key("/never-stored"));
   * ```
   */
  delete(key: Key, options: DatastoreCallOptions = {}): Promise<void> {
    return this.#run("delete datastore entry", options, (s) => {
      s.delete.run(key.uint8Array());
    });
  }

  /**
   * Stores every pair of `source`, yielding each key once it is written.
   *
   * @param source The pairs to store.
   * @param options `signal`: checked before each write.
   * @returns The keys, in order, as they are written.
   * @throws {StorageError} If the database fails or is closed.
   * @throws {DOMException} If `signal` is aborted.
   * @example
   * ```ts
   * import { Key } from "interface-datastore";
   * import { SqliteDatastore } from "./sqlite_datastore.ts";
   *
   * using store = SqliteDatastore.open(":memory:");
   * const pairs = [{ key: new Key("/a"), value: new Uint8Array([1]) }];
   * for await (const key of store.putMany(pairs)) console.assert(key.toString() === "/a");
   * ```
   */
  async *putMany(
    source: Iterable<Pair> | AsyncIterable<Pair>,
    options: DatastoreCallOptions = {},
  ): AsyncGenerator<Key> {
    for await (const { key, value } of source) {
      yield await this.put(key, value, options);
    }
  }

  /**
   * Reads the value of every key of `source`.
   *
   * @param source The keys to read.
   * @param options `signal`: checked before each read.
   * @returns The pairs, in the order of `source`.
   * @throws {NotFoundError} If a key is missing.
   * @throws {StorageError} If the database fails or is closed.
   * @throws {DOMException} If `signal` is aborted.
   * @example
   * ```ts
   * import { Key } from "interface-datastore";
   * import { SqliteDatastore } from "./sqlite_datastore.ts";
   *
   * using store = SqliteDatastore.open(":memory:");
   * await store.put(new Key("/a"), new Uint8Array([1]));
   * for await (const pair of store.getMany([new Key("/a")])) console.assert(pair.value[0] === 1);
   * ```
   */
  async *getMany(
    source: Iterable<Key> | AsyncIterable<Key>,
    options: DatastoreCallOptions = {},
  ): AsyncGenerator<Pair> {
    for await (const key of source) {
      yield { key, value: await this.get(key, options) };
    }
  }

  /**
   * Removes every key of `source`, yielding each once it is gone.
   *
   * @param source The keys to remove.
   * @param options `signal`: checked before each removal.
   * @returns The keys, in order, as they are removed.
   * @throws {StorageError} If the database fails or is closed.
   * @throws {DOMException} If `signal` is aborted.
   * @example
   * ```ts
   * import { Key } from "interface-datastore";
   * import { SqliteDatastore } from "./sqlite_datastore.ts";
   *
   * using store = SqliteDatastore.open(":memory:");
   * for await (const key of store.deleteMany([new Key("/a")])) console.assert(key.toString() === "/a");
   * ```
   */
  async *deleteMany(
    source: Iterable<Key> | AsyncIterable<Key>,
    options: DatastoreCallOptions = {},
  ): AsyncGenerator<Key> {
    for await (const key of source) {
      await this.delete(key, options);
      yield key;
    }
  }

  /**
   * Starts a batch: puts and deletes collected and then written in one
   * transaction by `commit()`, so either all of them land or none does.
   * Puts are applied before deletes, as in `datastore-core`.
   *
   * @returns The batch.
   * @throws {StorageError} From `commit()`, if the database fails or is closed.
   * @example
   * ```ts
   * import { Key } from "interface-datastore";
   * import { SqliteDatastore } from "./sqlite_datastore.ts";
   *
   * using store = SqliteDatastore.open(":memory:");
   * const batch = store.batch();
   * batch.put(new Key("/a"), new Uint8Array([1]));
   * batch.delete(new Key("/b"));
   * await batch.commit();
   * ```
   */
  batch(): Batch {
    const puts: Pair[] = [];
    const deletes: Key[] = [];
    return {
      put: (key: Key, value: Uint8Array): void => {
        puts.push({ key, value });
      },
      delete: (key: Key): void => {
        deletes.push(key);
      },
      commit: (options: DatastoreCallOptions = {}): Promise<void> => {
        return this.#run("commit datastore batch", options, (s, db) => {
          db.exec("BEGIN IMMEDIATE");
          try {
            for (const { key, value } of puts) s.put.run(key.uint8Array(), value);
            for (const key of deletes) s.delete.run(key.uint8Array());
            db.exec("COMMIT");
          } catch (cause) {
            rollback(db);
            throw cause;
          }
          puts.length = 0;
          deletes.length = 0;
        });
      },
    };
  }

  /**
   * Lists entries: those whose key starts with `prefix`, kept by every
   * filter, sorted by each order in turn (unsorted means key order), then
   * `offset` skipped and at most `limit` returned. Rows are read from SQLite
   * in pages, so entries may be changed or deleted while a query runs.
   *
   * @param query `prefix`, `filters`, `orders`, `offset`, `limit`.
   * @param options `signal`: checked between pages and rows.
   * @returns The matching pairs.
   * @throws {StorageError} If the database fails or is closed.
   * @throws {DOMException} If `signal` is aborted.
   * @example
   * ```ts
   * import { Key } from "interface-datastore";
   * import { SqliteDatastore } from "./sqlite_datastore.ts";
   *
   * using store = SqliteDatastore.open(":memory:");
   * for (const name of ["c", "a", "b"]) await store.put(new Key(`/x/${name}`), new Uint8Array());
   * const found = [];
   * for await (const { key } of store.query({ prefix: "/x", offset: 1, limit: 1 })) {
   *   found.push(key.toString());
   * }
   * console.assert(found.length === 1 && found[0] === "/x/b");
   * ```
   */
  query(query: Query, options: DatastoreCallOptions = {}): AsyncGenerator<Pair> {
    return this.#select(query, options, true, (row) => ({
      key: new Key(row.key, false),
      value: row.value as Uint8Array,
    }));
  }

  /**
   * Lists keys, with the same rules as {@linkcode SqliteDatastore.query}.
   *
   * @param query `prefix`, `filters`, `orders`, `offset`, `limit`.
   * @param options `signal`: checked between pages and rows.
   * @returns The matching keys.
   * @throws {StorageError} If the database fails or is closed.
   * @throws {DOMException} If `signal` is aborted.
   * @example
   * ```ts
   * import { Key } from "interface-datastore";
   * import { SqliteDatastore } from "./sqlite_datastore.ts";
   *
   * using store = SqliteDatastore.open(":memory:");
   * await store.put(new Key("/a/1"), new Uint8Array());
   * for await (const key of store.queryKeys({ prefix: "/a" })) console.assert(key.toString() === "/a/1");
   * ```
   */
  queryKeys(query: KeyQuery, options: DatastoreCallOptions = {}): AsyncGenerator<Key> {
    return this.#select(query, options, false, (row) => new Key(row.key, false));
  }

  /**
   * Closes the database. Closing twice is harmless.
   *
   * @returns Nothing.
   * @throws {StorageError} If SQLite fails to close the file.
   * @example
   * ```ts
   * import { SqliteDatastore } from "./sqlite_datastore.ts";
   *
   * const store = SqliteDatastore.open(":memory:");
   * store.close();
   * store.close();
   * console.assert(store.closed);
   * ```
   */
  close(): void {
    const db = this.#db;
    if (db === undefined) return;
    this.#db = undefined;
    this.#statements = undefined;
    try {
      db.close();
    } catch (cause) {
      throw storageError(`close datastore ${this.#path}`, cause);
    }
  }

  /**
   * Closes the database, for `using`.
   *
   * @returns Nothing.
   * @throws {StorageError} If SQLite fails to close the file.
   * @example
   * ```ts
   * import { SqliteDatastore } from "./sqlite_datastore.ts";
   *
   * {
   *   using _store = SqliteDatastore.open(":memory:");
   * }
   * ```
   */
  [Symbol.dispose](): void {
    this.close();
  }

  // Runs one synchronous database step, mapping failures to StorageError.
  #run<T>(
    action: string,
    options: DatastoreCallOptions,
    step: (statements: Statements, db: DatabaseSync) => T,
  ): Promise<T> {
    try {
      options.signal?.throwIfAborted();
      return Promise.resolve(step(this.#open(action), this.#db as DatabaseSync));
    } catch (cause) {
      if (cause instanceof NotFoundError || isAbort(cause, options.signal)) {
        return Promise.reject(cause);
      }
      return Promise.reject(
        cause instanceof StorageError ? cause : storageError(`${action} in ${this.#path}`, cause),
      );
    }
  }

  #open(action: string): Statements {
    if (this.#statements === undefined) {
      throw new StorageError(`Cannot ${action}: the datastore ${this.#path} is closed`);
    }
    return this.#statements;
  }

  async *#select<T>(
    query: Query | KeyQuery,
    options: DatastoreCallOptions,
    withValues: boolean,
    map: (row: { key: Uint8Array; value?: unknown }) => T,
  ): AsyncGenerator<T> {
    const low = query.prefix === undefined ? new Uint8Array() : encoder.encode(query.prefix);
    const high = new Uint8Array(low.length + 1);
    high.set(low);
    high[low.length] = PAST_ANY_UTF8;
    const filters = (query.filters ?? []) as ((item: T) => boolean)[];
    const orders = (query.orders ?? []) as ((a: T, b: T) => number)[];
    const offset = query.offset ?? 0;
    const limit = query.limit ?? Infinity;
    if (limit <= 0) return;

    const matching = async function* (this: SqliteDatastore): AsyncGenerator<T> {
      let after: Uint8Array = new Uint8Array();
      while (true) {
        const rows = await this.#run("query datastore", options, (s) => {
          const statement = withValues ? s.page : s.pageKeys;
          return statement.all(after, low, high, QUERY_PAGE_SIZE) as {
            key: Uint8Array;
            value?: unknown;
          }[];
        });
        for (const row of rows) {
          const item = map(row);
          if (filters.every((filter) => filter(item))) yield item;
        }
        const last = rows.at(-1);
        if (last === undefined || rows.length < QUERY_PAGE_SIZE) return;
        after = last.key;
      }
    }.call(this);

    let skipped = 0;
    let sent = 0;
    if (orders.length === 0) {
      for await (const item of matching) {
        if (skipped < offset) {
          skipped++;
          continue;
        }
        yield item;
        if (++sent >= limit) return;
      }
      return;
    }
    const all: T[] = [];
    for await (const item of matching) all.push(item);
    // Each order is a full stable sort, so the last order is the primary one,
    // as with datastore-core's BaseDatastore.
    for (const order of orders) all.sort(order);
    for (const item of all.slice(offset, offset + limit)) {
      options.signal?.throwIfAborted();
      yield item;
    }
  }
}

function rollback(db: DatabaseSync): void {
  try {
    db.exec("ROLLBACK");
  } catch {
    // SQLite may already have rolled back; the original failure matters.
  }
}

function isAbort(cause: unknown, signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true && cause === signal.reason;
}

function storageError(action: string, cause: unknown): StorageError {
  const message = cause instanceof Error ? cause.message : String(cause);
  let state: string;
  if (/not a database|malformed|corrupt/i.test(message)) {
    state = "the file is not a database or is corrupt";
  } else if (/locked|busy/i.test(message)) {
    state = "the database is locked by another connection";
  } else if (/unable to open|cannot open|readonly|read-only|permission/i.test(message)) {
    state = `the file cannot be opened for writing (${message})`;
  } else {
    state = message;
  }
  return new StorageError(`Cannot ${action}: ${state}`, { cause });
}
