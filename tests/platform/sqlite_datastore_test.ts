/**
 * The SQLite datastore against the interface-datastore contract, with
 * datastore-core's MemoryDatastore as the reference for queries.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { MemoryDatastore } from "datastore-core";
import { Key } from "interface-datastore";
import type { Pair, Query } from "interface-datastore";
import { StorageError } from "../../lib/errors.ts";
import { SqliteDatastore } from "../../lib/platform/sqlite_datastore.ts";

const bytes = (...values: number[]) => new Uint8Array(values);

async function collect<T>(source: AsyncIterable<T> | Iterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of source) out.push(item);
  return out;
}

async function withTempDir(run: (dir: string) => Promise<void> | void): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await run(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("put, get, has and delete round-trip", async () => {
  using store = SqliteDatastore.open(":memory:");
  const key = new Key("/peers/abc");
  assert.equal(await store.has(key), false);
  assert.equal(await store.put(key, bytes(1, 2, 3)), key);
  assert.equal(await store.has(key), true);
  assert.deepEqual(await store.get(key), bytes(1, 2, 3));
  await store.put(key, bytes(4));
  assert.deepEqual(await store.get(key), bytes(4));
  await store.delete(key);
  await store.delete(key);
  assert.equal(await store.has(key), false);
  await assert.rejects(store.get(key), (err: unknown) => (err as Error).name === "NotFoundError");
});

Deno.test("putMany, getMany and deleteMany stream in order", async () => {
  using store = SqliteDatastore.open(":memory:");
  const pairs = [1, 2, 3].map((n) => ({ key: new Key(`/n/${n}`), value: bytes(n) }));
  assert.deepEqual(
    (await collect(store.putMany(pairs))).map(String),
    ["/n/1", "/n/2", "/n/3"],
  );
  const got = await collect(store.getMany(pairs.map((pair) => pair.key)));
  assert.deepEqual(got.map((pair) => pair.value[0]), [1, 2, 3]);
  await collect(store.deleteMany([pairs[0]!.key, pairs[2]!.key]));
  assert.deepEqual((await collect(store.queryKeys({}))).map(String), ["/n/2"]);
});

Deno.test("queries match MemoryDatastore for prefixes, filters, orders, offset and limit", async (t) => {
  using store = SqliteDatastore.open(":memory:");
  const reference = new MemoryDatastore();
  const names = ["/a", "/a/b", "/a/c", "/ab", "/b", "/b/a", "/dht/record/x", "/é/1", "/z"];
  for (const [i, name] of names.entries()) {
    await store.put(new Key(name), bytes(i));
    await reference.put(new Key(name), bytes(i));
  }
  const byValueDesc = (a: Pair, b: Pair): -1 | 0 | 1 =>
    a.value[0]! > b.value[0]! ? -1 : a.value[0]! < b.value[0]! ? 1 : 0;
  const cases: [string, Query, boolean][] = [
    ["everything", {}, false],
    ["prefix /a (string prefix, so /ab too)", { prefix: "/a" }, false],
    ["prefix /a/", { prefix: "/a/" }, false],
    ["prefix with no match", { prefix: "/q" }, false],
    ["non-ASCII prefix", { prefix: "/é" }, false],
    ["filter", { filters: [(pair) => pair.value[0]! % 2 === 0] }, false],
    ["order", { orders: [byValueDesc] }, true],
    ["order, offset and limit", { orders: [byValueDesc], offset: 2, limit: 3 }, true],
    ["prefix, filter, order, limit", {
      prefix: "/a",
      filters: [(pair) => pair.key.toString() !== "/a"],
      orders: [byValueDesc],
      limit: 2,
    }, true],
    ["limit 0", { limit: 0 }, false],
  ];
  for (const [name, query, ordered] of cases) {
    await t.step(name, async () => {
      const ours = (await collect(store.query(query))).map((pair) => pair.key.toString());
      const theirs = (await collect(reference.query(query))).map((pair) => pair.key.toString());
      if (ordered) assert.deepEqual(ours, theirs);
      else assert.deepEqual([...ours].sort(), [...theirs].sort());
      const keys = (await collect(store.queryKeys({
        ...(query.prefix === undefined ? {} : { prefix: query.prefix }),
        ...(query.limit === undefined ? {} : { limit: query.limit }),
      }))).map(String);
      const refKeys = (await collect(reference.queryKeys({
        ...(query.prefix === undefined ? {} : { prefix: query.prefix }),
        ...(query.limit === undefined ? {} : { limit: query.limit }),
      }))).map(String);
      assert.equal(keys.length, refKeys.length);
    });
  }
  // Unordered queries come back in key (byte) order.
  assert.deepEqual((await collect(store.queryKeys({}))).map(String), [...names].sort());
  // The values come along with the keys.
  const [first] = await collect(store.query({ prefix: "/z" }));
  assert.deepEqual(first?.value, bytes(8));
});

Deno.test("a query pages through many rows and tolerates deletes while it runs", async () => {
  using store = SqliteDatastore.open(":memory:");
  const count = 700;
  const batch = store.batch();
  for (let i = 0; i < count; i++) {
    batch.put(new Key(`/many/${String(i).padStart(4, "0")}`), bytes(i % 256));
  }
  await batch.commit();
  let seen = 0;
  let previous = "";
  for await (const { key } of store.query({ prefix: "/many/" })) {
    assert.ok(key.toString() > previous);
    previous = key.toString();
    await store.delete(key);
    seen++;
  }
  assert.equal(seen, count);
  assert.equal((await collect(store.queryKeys({}))).length, 0);
  assert.deepEqual(
    (await collect(store.queryKeys({ offset: 1, limit: 2 }))).map(String),
    [],
  );
});

Deno.test("a batch commits all of its writes or none", async () => {
  using store = SqliteDatastore.open(":memory:");
  await store.put(new Key("/keep"), bytes(1));
  const batch = store.batch();
  batch.put(new Key("/x"), bytes(2));
  batch.put(new Key("/y"), bytes(3));
  batch.delete(new Key("/keep"));
  await batch.commit();
  assert.deepEqual((await collect(store.queryKeys({}))).map(String), ["/x", "/y"]);

  const failing = store.batch();
  failing.put(new Key("/z"), bytes(4));
  // A value SQLite cannot bind makes the commit fail half-way.
  failing.put(new Key("/bad"), { length: 1 } as unknown as Uint8Array);
  await assert.rejects(async () => await failing.commit(), StorageError);
  assert.equal(await store.has(new Key("/z")), false);
});

Deno.test("data survives reopening, in a WAL-mode file", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "node.db");
    {
      using store = SqliteDatastore.open(path);
      await store.put(new Key("/persist"), bytes(7));
    }
    {
      using store = SqliteDatastore.open(path);
      assert.deepEqual(await store.get(new Key("/persist")), bytes(7));
    }
    const raw = new DatabaseSync(path);
    try {
      const row = raw.prepare("PRAGMA journal_mode").get() as { journal_mode: string };
      assert.equal(row.journal_mode, "wal");
    } finally {
      raw.close();
    }
  });
});

Deno.test("a corrupt file is a clear StorageError", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "node.db");
    await Deno.writeTextFile(path, "definitely not SQLite ".repeat(300));
    assert.throws(
      () => SqliteDatastore.open(path),
      (err: unknown) =>
        err instanceof StorageError &&
        err.message === `Cannot open datastore ${path}: the file is not a database or is corrupt`,
    );
  });
});

Deno.test("a database locked by another connection is a clear StorageError", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "node.db");
    using store = SqliteDatastore.open(path, { busyTimeoutMs: 50 });
    const other = new DatabaseSync(path);
    try {
      other.exec("BEGIN EXCLUSIVE");
      other.exec("INSERT INTO datastore (key, value) VALUES (x'2f6f', x'00')");
      await assert.rejects(
        store.put(new Key("/mine"), bytes(1)),
        (err: unknown) =>
          err instanceof StorageError &&
          err.message ===
            `Cannot put datastore entry in ${path}: the database is locked by another connection`,
      );
      other.exec("ROLLBACK");
      await store.put(new Key("/mine"), bytes(1));
    } finally {
      other.close();
    }
  });
});

Deno.test("a database from a newer schema version is refused", async () => {
  await withTempDir((dir) => {
    const path = join(dir, "node.db");
    const raw = new DatabaseSync(path);
    raw.exec("PRAGMA user_version = 99");
    raw.close();
    assert.throws(
      () => SqliteDatastore.open(path),
      (err: unknown) => err instanceof StorageError && /schema version 99/.test(err.message),
    );
  });
});

Deno.test("calls after close() and aborted calls fail cleanly", async () => {
  const store = SqliteDatastore.open(":memory:");
  const reason = new Error("stop");
  await assert.rejects(
    store.put(new Key("/a"), bytes(1), { signal: AbortSignal.abort(reason) }),
    (err: unknown) => err === reason,
  );
  await assert.rejects(
    collect(store.query({}, { signal: AbortSignal.abort(reason) })),
    (err: unknown) => err === reason,
  );
  store.close();
  store.close();
  assert.equal(store.closed, true);
  await assert.rejects(
    store.get(new Key("/a")),
    (err: unknown) => err instanceof StorageError && /is closed/.test(err.message),
  );
  await assert.rejects(collect(store.queryKeys({})), StorageError);
  assert.throws(() => SqliteDatastore.open(":memory:", { busyTimeoutMs: -1 }), RangeError);
});
