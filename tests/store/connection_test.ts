import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { StorageError } from "../../lib/errors.ts";
import { MailboxStore } from "../../lib/store/mailbox_store.ts";
import { UserStore } from "../../lib/store/user_store.ts";
import { inTempDir, msg } from "./_fixtures.ts";

Deno.test("UserStore.open() reports a corrupt file clearly", () => {
  inTempDir((dir) => {
    const path = `${dir}/dim.db`;
    Deno.writeTextFileSync(
      path,
      "this is not a database, just text that is long enough".repeat(100),
    );
    assert.throws(() => UserStore.open(path), (e) => {
      assert.ok(e instanceof StorageError);
      assert.match(e.message, /Cannot open database .*: the database file is corrupt/);
      return true;
    });
  });
});

Deno.test("a database written by a newer DIM is refused", () => {
  inTempDir((dir) => {
    const path = `${dir}/dim.db`;
    {
      using db = UserStore.open(path);
      db.settings.set("schema", "99");
    }
    assert.throws(() => MailboxStore.open(path), (e) => {
      assert.ok(e instanceof StorageError);
      assert.equal(e.message, "Cannot open database: it was written by a newer DIM (schema 99)");
      return true;
    });
  });
});

/** A version-1 database: the messages table has no `protection` column. */
function writeVersion1(path: string): void {
  const old = new DatabaseSync(path);
  old.exec(`CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    INSERT INTO meta VALUES ('schema', '1');
    CREATE TABLE messages (
      seq INTEGER PRIMARY KEY AUTOINCREMENT, msg_id BLOB NOT NULL, peer TEXT NOT NULL,
      direction TEXT NOT NULL, sent_at INTEGER NOT NULL, received_at INTEGER NOT NULL,
      content_type INTEGER NOT NULL, body BLOB NOT NULL, state TEXT NOT NULL,
      via TEXT NOT NULL DEFAULT 'direct', UNIQUE (direction, peer, msg_id));
    INSERT INTO messages (msg_id, peer, direction, sent_at, received_at, content_type, body,
      state) VALUES (x'01', 'dimpeer', 'in', 5, 5, 1, x'6869', 'received');`);
  old.close();
}

Deno.test("UserStore.open() upgrades a version-1 database and keeps its messages", () => {
  inTempDir((dir) => {
    const path = `${dir}/dim.db`;
    writeVersion1(path);
    using db = UserStore.open(path);
    assert.equal(db.settings.get("schema"), "3");
    const [m] = db.messages.history("dimpeer");
    assert.equal(m?.protection, "static");
    assert.ok(db.messages.insertIncoming({ ...msg(9, 10), protection: "ratchet" }));
    assert.equal(db.messages.history("dimpeer").at(-1)?.protection, "ratchet");
  });
});

Deno.test("a storage node upgrades a user's version-1 file for the user too", () => {
  inTempDir((dir) => {
    const path = `${dir}/dim.db`;
    writeVersion1(path);
    MailboxStore.open(path).close();
    using db = UserStore.open(path);
    assert.equal(db.settings.get("schema"), "3");
    assert.equal(db.messages.history("dimpeer")[0]?.protection, "static");
  });
});

/**
 * Runs `fn` counting flushes of files (`fdatasync`) by the process; passes
 * it the files flushed so far.
 */
function countingFlushes(fn: (flushed: Deno.FsFile[]) => void): void {
  const original = Deno.FsFile.prototype.syncDataSync;
  const flushed: Deno.FsFile[] = [];
  Deno.FsFile.prototype.syncDataSync = function (this: Deno.FsFile) {
    flushed.push(this);
    return original.call(this);
  };
  try {
    fn(flushed);
  } finally {
    Deno.FsFile.prototype.syncDataSync = original;
  }
}

// Windows: SQLite flushes (see connection.ts).
Deno.test({
  name: "a commit made without a flush is flushed by sync(), once: one fdatasync of the log",
  ignore: Deno.build.os === "windows",
}, () => {
  inTempDir((dir) => {
    using db = UserStore.open(`${dir}/dim.db`);
    assert.equal(db.connection.flushesLog, true);
    countingFlushes((flushed) => {
      db.sync();
      assert.equal(flushed.length, 0, "nothing to flush");
      db.transaction(() => db.messages.insertIncoming(msg(1, 1)), { durable: false });
      db.transaction(() => db.messages.insertIncoming(msg(2, 2)), { durable: false });
      assert.equal(flushed.length, 0, "commits without a flush");
      db.sync();
      assert.equal(flushed.length, 1, "one flush for both commits");
      db.sync();
      assert.equal(flushed.length, 1, "flushed already");
      db.transaction(() => db.messages.insertIncoming(msg(3, 3)), { durable: false });
      db.transaction(() => db.messages.insertIncoming(msg(4, 4)));
      assert.equal(flushed.length, 2, "a durable commit is flushed when it returns");
      db.sync();
      assert.equal(flushed.length, 2, "a durable commit flushed the earlier one too");
    });
    // No commit makes a flush of its own: no meta row, no pragma toggled.
    assert.equal(db.settings.get("flushes"), undefined);
    const synchronous = () =>
      db.connection.run("read", (h) => h.prepare("PRAGMA synchronous").get())?.synchronous;
    assert.equal(synchronous(), 1, "NORMAL: the connection flushes the log itself");
    // A rolled-back lazy transaction leaves nothing behind.
    assert.throws(
      () =>
        db.transaction(() => {
          db.messages.insertIncoming(msg(5, 5));
          throw new Error("abort");
        }, { durable: false }),
      /abort/,
    );
    assert.equal(synchronous(), 1);
    assert.equal(db.messages.hasIncoming("dimpeer", msg(5, 5).id), false);
    assert.equal(db.messages.incomingSince(0).length, 4);
  });
});

// Windows: SQLite flushes (see connection.ts).
Deno.test({
  name: "the file sync() flushes is the live -wal file, after a checkpoint empties it too",
  ignore: Deno.build.os === "windows",
}, () => {
  inTempDir((dir) => {
    const path = `${dir}/dim.db`;
    using db = UserStore.open(path);
    countingFlushes((flushed) => {
      const write = (n: number) => {
        db.transaction(() => db.messages.insertIncoming(msg(n, n)), { durable: false });
        db.sync();
        const log = flushed.at(-1)!;
        const live = Deno.statSync(`${path}-wal`);
        assert.equal(log.statSync().ino, live.ino, "the same file");
        assert.equal(log.statSync().size, live.size);
        assert.ok(live.size > 32, "the commit's frames are in it");
      };
      write(1);
      // Truncated to nothing, then written again from its start.
      db.connection.run("checkpoint", (h) => h.exec("PRAGMA wal_checkpoint(TRUNCATE)"));
      assert.equal(Deno.statSync(`${path}-wal`).size, 0);
      write(2);
      // Checkpointed but kept: the next commit starts the log over.
      db.connection.run("checkpoint", (h) => h.exec("PRAGMA wal_checkpoint(RESTART)"));
      write(3);
      assert.equal(flushed.length, 3);
    });
  });
});

Deno.test("commits flushed by sync() are read back after the connection is closed", () => {
  inTempDir((dir) => {
    const path = `${dir}/dim.db`;
    {
      using db = UserStore.open(path);
      db.transaction(() => db.messages.insertIncoming(msg(1, 1)), { durable: false });
      db.sync();
    }
    using db = UserStore.open(path);
    assert.equal(db.messages.hasIncoming("dimpeer", msg(1, 1).id), true);
  });
});

Deno.test("a database not in WAL mode flushes with a durable commit, once", () => {
  using db = UserStore.open(":memory:");
  assert.equal(db.connection.flushesLog, false);
  const flushes = () => Number(db.settings.get("flushes") ?? 0);
  db.sync();
  assert.equal(flushes(), 0, "nothing to flush");
  db.transaction(() => db.messages.insertIncoming(msg(1, 1)), { durable: false });
  db.transaction(() => db.messages.insertIncoming(msg(2, 2)), { durable: false });
  db.sync();
  assert.equal(flushes(), 1, "one flush for both commits");
  db.sync();
  assert.equal(flushes(), 1, "flushed already");
  db.transaction(() => db.messages.insertIncoming(msg(3, 3)), { durable: false });
  db.transaction(() => db.messages.insertIncoming(msg(4, 4)));
  db.sync();
  assert.equal(flushes(), 1, "a durable commit flushed the earlier one too");
  // A rolled-back lazy transaction leaves nothing behind and the mode restored.
  assert.throws(
    () =>
      db.transaction(() => {
        db.messages.insertIncoming(msg(5, 5));
        throw new Error("abort");
      }, { durable: false }),
    /abort/,
  );
  assert.equal(
    db.connection.run("read", (h) => h.prepare("PRAGMA synchronous").get())?.synchronous,
    2,
  );
  assert.equal(db.messages.hasIncoming("dimpeer", msg(5, 5).id), false);
  assert.equal(db.messages.incomingSince(0).length, 4);
});

Deno.test("a closed store refuses work with a StorageError", () => {
  const db = UserStore.open(":memory:");
  db.close();
  db.close();
  assert.throws(() => db.contacts.list(), (e) => {
    assert.ok(e instanceof StorageError);
    assert.equal(e.message, "Cannot list contacts: the database is closed");
    return true;
  });
});
