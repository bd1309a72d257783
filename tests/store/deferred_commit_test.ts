// Deferred transactions (`{ durable: false, deferred }`): savepoints of one
// SQLite transaction, committed by the next sync, undeferred transaction,
// write outside a transaction, close, or a short while later. A second
// connection on the same file sees only what is committed.
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { StorageError } from "../../lib/errors.ts";
import type { DeferredCommits } from "../../lib/messaging/storage.ts";
import { Connection } from "../../lib/store/connection.ts";
import { inTempDir } from "./_fixtures.ts";

const SCHEMA = [{
  tables: ["notes", "tags"],
  sql: `CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS tags (note INTEGER NOT NULL REFERENCES notes (id))`,
}];

/** A connection with the notes table, and a count of the notes another connection sees. */
function open(dir: string): { conn: Connection; committed: () => number; close: () => void } {
  const path = `${dir}/notes.db`;
  const conn = Connection.open(path, SCHEMA);
  const reader = new DatabaseSync(path);
  const committed = () => {
    const row = reader.prepare("SELECT COUNT(*) AS n FROM notes").get();
    return Number(row?.n);
  };
  const close = () => {
    conn.close();
    reader.close();
  };
  return { conn, committed, close };
}

function add(conn: Connection, text: string): void {
  conn.run("add note", (db) => db.prepare("INSERT INTO notes (text) VALUES (?)").run(text));
}

Deno.test("deferred transactions share one commit, made by sync(), which then flushes it", () => {
  inTempDir((dir) => {
    const { conn, committed, close } = open(dir);
    assert.ok(conn.flushesLog);
    const mark: DeferredCommits = {};
    for (const text of ["a", "b", "c"]) {
      conn.transaction(() => add(conn, text), { durable: false, deferred: mark });
    }
    assert.equal(committed(), 0, "not committed yet");
    assert.equal(
      conn.run("count", (db) => Number(db.prepare("SELECT COUNT(*) AS n FROM notes").get()?.n)),
      3,
      "the connection itself reads them",
    );
    conn.sync(mark);
    assert.equal(committed(), 3);
    assert.equal(mark.lost, undefined);
    close();
  });
});

Deno.test("a failing deferred transaction rolls back alone; the others stay", () => {
  inTempDir((dir) => {
    const { conn, committed, close } = open(dir);
    const mark: DeferredCommits = {};
    conn.transaction(() => add(conn, "kept"), { durable: false, deferred: mark });
    assert.throws(
      () =>
        conn.transaction(() => {
          add(conn, "dropped");
          throw new Error("no");
        }, { durable: false, deferred: mark }),
      /no/,
    );
    conn.transaction(() => add(conn, "kept too"), { durable: false, deferred: mark });
    conn.sync(mark);
    assert.equal(committed(), 2);
    close();
  });
});

Deno.test("a transaction that is not deferred, a write outside one, and close() commit the deferred ones", () => {
  inTempDir((dir) => {
    const { conn, committed, close } = open(dir);
    const mark: DeferredCommits = {};
    conn.transaction(() => add(conn, "a"), { durable: false, deferred: mark });
    conn.transaction(() => add(conn, "b"), { durable: false });
    assert.equal(committed(), 2, "a non-durable transaction commits at once, with them");
    conn.transaction(() => add(conn, "c"), { durable: false, deferred: mark });
    conn.run("read", (db) => db.prepare("SELECT * FROM notes").all());
    assert.equal(committed(), 2, "a read leaves them waiting");
    add(conn, "d");
    assert.equal(committed(), 4, "a write outside a transaction commits them first");
    conn.transaction(() => add(conn, "e"), { durable: false, deferred: mark });
    conn.transaction(() => add(conn, "f"));
    assert.equal(committed(), 6, "a durable transaction commits them");
    conn.transaction(() => add(conn, "g"), { durable: false, deferred: mark });
    conn.close();
    assert.equal(committed(), 7, "close() commits them");
    close();
  });
});

Deno.test("deferred transactions are committed a short while later if nothing else does", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "dim-store-" });
  const { conn, committed, close } = open(dir);
  try {
    conn.transaction(() => add(conn, "a"), { durable: false, deferred: {} });
    assert.equal(committed(), 0);
    const end = Date.now() + 5_000;
    while (committed() === 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
    assert.equal(committed(), 1);
  } finally {
    close();
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("a failed commit of deferred transactions is told to each of their callers' sync(), not to others", () => {
  inTempDir((dir) => {
    const { conn, committed, close } = open(dir);
    conn.run("foreign keys", (db) => db.exec("PRAGMA foreign_keys = ON"));
    const first: DeferredCommits = {};
    const second: DeferredCommits = {};
    conn.transaction(() => add(conn, "a"), { durable: false, deferred: first });
    // A foreign key checked only at the commit makes the commit fail.
    conn.transaction(() => {
      conn.run("defer", (db) => db.prepare("PRAGMA defer_foreign_keys = ON").run());
      conn.run("tag", (db) => db.prepare("INSERT INTO tags (note) VALUES (999)").run());
    }, { durable: false, deferred: second });
    // Another caller's transaction meets the failure first.
    assert.throws(
      () => conn.transaction(() => add(conn, "b"), { durable: false }),
      (e) => e instanceof StorageError && /Cannot commit/.test(e.message),
    );
    assert.equal(committed(), 0, "all of it rolled back");
    assert.ok(first.lost instanceof StorageError);
    assert.ok(second.lost instanceof StorageError);
    assert.throws(() => conn.sync(first), StorageError);
    assert.throws(() => conn.sync(second), StorageError);
    // Later callers are not held by it.
    const third: DeferredCommits = {};
    conn.transaction(() => add(conn, "c"), { durable: false, deferred: third });
    conn.sync(third);
    conn.sync();
    assert.equal(committed(), 1);
    close();
  });
});

Deno.test("syncAsync() commits the deferred transactions at once and flushes on another thread; a commit made meanwhile still needs a flush", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dim-store-" });
  const flushes = { sync: 0, async: 0 };
  const syncDataSync = Deno.FsFile.prototype.syncDataSync;
  const syncData = Deno.FsFile.prototype.syncData;
  Deno.FsFile.prototype.syncDataSync = function () {
    flushes.sync++;
    return syncDataSync.call(this);
  };
  Deno.FsFile.prototype.syncData = function () {
    flushes.async++;
    return syncData.call(this);
  };
  try {
    const { conn, committed, close } = open(dir);
    const mark: DeferredCommits = {};
    conn.transaction(() => add(conn, "a"), { durable: false, deferred: mark });
    const flushing = conn.syncAsync(mark);
    assert.equal(committed(), 1, "committed before the call returned");
    conn.transaction(() => add(conn, "b"), { durable: false });
    await flushing;
    assert.deepEqual(flushes, { sync: 0, async: 1 });
    conn.sync();
    assert.deepEqual(flushes, { sync: 1, async: 1 }, "b's commit came after the flush began");
    await conn.syncAsync();
    conn.sync();
    assert.deepEqual(flushes, { sync: 1, async: 1 }, "nothing left to flush");
    // Closed while two flushes run: both still end well.
    conn.transaction(() => add(conn, "c"), { durable: false });
    const first = conn.syncAsync();
    conn.transaction(() => add(conn, "d"), { durable: false });
    const second = conn.syncAsync();
    close();
    await Promise.all([first, second]);
    await assert.rejects(conn.syncAsync(), StorageError);
  } finally {
    Deno.FsFile.prototype.syncDataSync = syncDataSync;
    Deno.FsFile.prototype.syncData = syncData;
    await Deno.remove(dir, { recursive: true });
  }
});
