import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { Database } from "../../lib/store/database.ts";
import { StorageError } from "../../lib/errors.ts";

const msg = (id: number, sentAt: number) => ({
  id: new Uint8Array(16).fill(id),
  peer: "dimpeer",
  sentAt,
  receivedAt: 1000,
  contentType: 1,
  body: new TextEncoder().encode(`m${id}`),
  via: "direct",
  protection: "static" as const,
});

Deno.test("insertIncoming() stores a message once and reports the replay as duplicate", () => {
  using db = Database.open(":memory:");
  assert.ok(db.insertIncoming(msg(1, 10)));
  assert.equal(db.insertIncoming(msg(1, 10)), undefined);
  assert.equal(db.history("dimpeer").length, 1);
});

Deno.test("a duplicate is still a duplicate after the database is reopened", () => {
  const dir = Deno.makeTempDirSync();
  try {
    const path = `${dir}/dim.db`;
    const a = Database.open(path);
    assert.ok(a.insertIncoming(msg(7, 10)));
    a.close();
    using b = Database.open(path);
    assert.equal(b.insertIncoming(msg(7, 10)), undefined);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("history() orders a conversation by the sender's timestamps", () => {
  using db = Database.open(":memory:");
  db.insertIncoming(msg(2, 300));
  db.insertIncoming(msg(1, 100));
  db.insertIncoming(msg(3, 200));
  assert.deepEqual(db.history("dimpeer").map((m) => m.sentAt), [100, 200, 300]);
  assert.deepEqual(db.history("dimpeer", { limit: 2 }).map((m) => m.sentAt), [200, 300]);
});

Deno.test("the outbox hands out one entry per recipient, oldest first, until delivered", () => {
  using db = Database.open(":memory:");
  const out = (id: number, peer: string) =>
    db.insertOutgoing(
      { ...msg(id, id), peer },
      new Uint8Array([id]),
      new Uint8Array(32).fill(id),
    );
  const a1 = out(1, "a");
  out(2, "a");
  const b1 = out(3, "b");
  assert.deepEqual(db.dueOutbox(5000).map((e) => e.messageSeq), [a1.seq, b1.seq]);
  assert.equal(db.markDelivered("b", new Uint8Array(32).fill(1)), undefined, "wrong recipient");
  assert.equal(db.markDelivered("a", new Uint8Array(32).fill(1)), a1.seq);
  assert.equal(db.getMessage(a1.seq)?.state, "delivered");
  assert.deepEqual(db.dueOutbox(5000).map((e) => e.recipient), ["a", "b"]);
  db.deferOutbox(b1.seq, 9000, "offline");
  assert.deepEqual(db.dueOutbox(5000).map((e) => e.recipient), ["a"]);
  db.markStoredOffline(b1.seq);
  assert.equal(db.getMessage(b1.seq)?.state, "stored");
  assert.equal(db.listOutbox().find((e) => e.messageSeq === b1.seq)?.attempts, 1);
});

Deno.test("mailboxPut() enforces per-mailbox count and byte quotas and expiry", () => {
  using db = Database.open(":memory:");
  const box = new Uint8Array(32).fill(1);
  const limits = { maxCount: 2, maxBytes: 100, maxTotalBytes: 150 };
  const put = (n: number, size: number, exp = 10_000, mb = box) =>
    db.mailboxPut(mb, new Uint8Array(32).fill(n), new Uint8Array(size), exp, 0, limits);
  assert.equal(put(1, 10), "stored");
  assert.equal(put(1, 10), "duplicate");
  assert.equal(put(2, 95), "full", "bytes per mailbox");
  assert.equal(put(2, 10), "stored");
  assert.equal(put(3, 10), "full", "count per mailbox");
  assert.equal(put(4, 100, 10_000, new Uint8Array(32).fill(2)), "stored");
  assert.equal(put(5, 40, 10_000, new Uint8Array(32).fill(3)), "full", "total bytes");
  assert.equal(db.mailboxList(box, 0, 10).length, 2);
  assert.equal(db.mailboxList(box, 20_000, 10).length, 0, "expired copies are not served");
  assert.equal(db.mailboxDelete(box, [new Uint8Array(32).fill(1)]), 1);
  assert.equal(db.mailboxList(box, 0, 10).length, 1);
});

Deno.test("Database.open() reports a corrupt file clearly", () => {
  const dir = Deno.makeTempDirSync();
  try {
    const path = `${dir}/dim.db`;
    Deno.writeTextFileSync(
      path,
      "this is not a database, just text that is long enough".repeat(100),
    );
    assert.throws(() => Database.open(path), (e) => {
      assert.ok(e instanceof StorageError);
      assert.match(e.message, /Cannot open database .*: the database file is corrupt/);
      return true;
    });
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("Database.open() upgrades a version-1 database and keeps its messages", () => {
  const dir = Deno.makeTempDirSync();
  try {
    const path = `${dir}/dim.db`;
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
    using db = Database.open(path);
    assert.equal(db.getMeta("schema"), "2");
    const [m] = db.history("dimpeer");
    assert.equal(m?.protection, "static");
    assert.ok(db.insertIncoming({ ...msg(9, 10), protection: "ratchet" }));
    assert.equal(db.history("dimpeer").at(-1)?.protection, "ratchet");
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("a commit made without a flush is flushed by sync(), once", () => {
  const dir = Deno.makeTempDirSync({ prefix: "dim-db-" });
  try {
    using db = Database.open(`${dir}/dim.db`);
    const flushes = () => Number(db.getMeta("flushes") ?? 0);
    db.sync();
    assert.equal(flushes(), 0, "nothing to flush");
    db.transaction(() => db.insertIncoming(msg(1, 1)), { durable: false });
    db.transaction(() => db.insertIncoming(msg(2, 2)), { durable: false });
    db.sync();
    assert.equal(flushes(), 1, "one flush for both commits");
    db.sync();
    assert.equal(flushes(), 1, "flushed already");
    db.transaction(() => db.insertIncoming(msg(3, 3)), { durable: false });
    db.transaction(() => db.insertIncoming(msg(4, 4)));
    db.sync();
    assert.equal(flushes(), 1, "a durable commit flushed the earlier one too");
    // A rolled-back lazy transaction leaves nothing behind and the mode restored.
    assert.throws(
      () =>
        db.transaction(() => {
          db.insertIncoming(msg(5, 5));
          throw new Error("abort");
        }, { durable: false }),
      /abort/,
    );
    assert.equal(db.hasIncoming("dimpeer", msg(5, 5).id), false);
    assert.equal(db.incomingSince(0).length, 4);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("outboxAfter() pages through one conversation in order", () => {
  using db = Database.open(":memory:");
  const out = (n: number, peer: string) =>
    db.insertOutgoing(
      {
        id: new Uint8Array(16).fill(n),
        peer,
        sentAt: n,
        receivedAt: n,
        contentType: 1,
        body: new Uint8Array([n]),
        protection: "static",
      },
      new Uint8Array([n]),
      new Uint8Array(32).fill(n),
    ).seq;
  const a = [out(1, "a"), out(2, "a"), out(3, "b"), out(4, "a")];
  assert.deepEqual(db.outboxAfter("a", 0, 2).map((e) => e.messageSeq), [a[0], a[1]]);
  assert.deepEqual(db.outboxAfter("a", a[1]!, 10).map((e) => e.messageSeq), [a[3]]);
  assert.deepEqual(db.outboxAfter("b", 0, 10).map((e) => e.messageSeq), [a[2]]);
  assert.deepEqual(db.outboxAfter("c", 0, 10), []);
});
