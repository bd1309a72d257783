import assert from "node:assert/strict";
import { UserStore } from "../../lib/store/user_store.ts";
import { DatabaseSync } from "node:sqlite";
import { inTempDir, msg } from "./_fixtures.ts";

Deno.test("the outbox hands out one entry per recipient, oldest first, until delivered", () => {
  using db = UserStore.open(":memory:");
  const out = (id: number, peer: string) =>
    db.outbox.enqueue(
      { ...msg(id, id), peer },
      new Uint8Array([id]),
      new Uint8Array(32).fill(id),
    );
  const a1 = out(1, "a");
  out(2, "a");
  const b1 = out(3, "b");
  assert.deepEqual(db.outbox.due(5000).map((e) => e.messageSeq), [a1.seq, b1.seq]);
  assert.equal(
    db.outbox.markDelivered("b", new Uint8Array(32).fill(1)),
    undefined,
    "wrong recipient",
  );
  assert.equal(db.outbox.markDelivered("a", new Uint8Array(32).fill(1)), a1.seq);
  assert.equal(db.messages.get(a1.seq)?.state, "delivered");
  assert.deepEqual(db.outbox.due(5000).map((e) => e.recipient), ["a", "b"]);
  db.outbox.defer(b1.seq, 9000, "offline");
  assert.deepEqual(db.outbox.due(5000).map((e) => e.recipient), ["a"]);
  db.outbox.markStoredOffline(b1.seq);
  assert.equal(db.messages.get(b1.seq)?.state, "stored");
  assert.equal(db.outbox.list().find((e) => e.messageSeq === b1.seq)?.attempts, 1);
});

Deno.test("after() pages through one conversation in order", () => {
  using db = UserStore.open(":memory:");
  const out = (n: number, peer: string) =>
    db.outbox.enqueue(
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
  assert.deepEqual(db.outbox.after("a", 0, 2).map((e) => e.messageSeq), [a[0], a[1]]);
  assert.deepEqual(db.outbox.after("a", a[1]!, 10).map((e) => e.messageSeq), [a[3]]);
  assert.deepEqual(db.outbox.after("b", 0, 10).map((e) => e.messageSeq), [a[2]]);
  assert.deepEqual(db.outbox.after("c", 0, 10), []);
});

Deno.test("replaceEnvelope() makes an entry due at once and forgets its mailbox copy", () => {
  using db = UserStore.open(":memory:");
  const m = db.outbox.enqueue({ ...msg(1, 1), peer: "a" }, new Uint8Array([1]), new Uint8Array(32));
  db.outbox.defer(m.seq, 9000, "offline");
  db.outbox.markStoredOffline(m.seq);
  const hash = new Uint8Array(32).fill(9);
  db.outbox.replaceEnvelope(m.seq, new Uint8Array([2]), hash, 100);
  const [entry] = db.outbox.due(100);
  assert.deepEqual(
    { ...entry, envelope: [...entry!.envelope] },
    {
      messageSeq: m.seq,
      recipient: "a",
      envelope: [2],
      envelopeHash: hash,
      attempts: 0,
      nextAttemptAt: 100,
      storedOffline: false,
      storedOfflineAt: 0,
      lastError: "",
    },
  );
  assert.equal(db.outbox.recipientOf(hash), "a");
  assert.equal(db.outbox.recipientOf(new Uint8Array(32)), undefined);
});

Deno.test("storedOfflineBefore() lists the copies confirmed longest ago first; a row from before the time was kept counts as long ago", () => {
  inTempDir((dir) => {
    const path = `${dir}/user.db`;
    const out = (db: UserStore, n: number) =>
      db.outbox.enqueue(
        { ...msg(n, n), peer: "a" },
        new Uint8Array([n]),
        new Uint8Array(32).fill(n),
      ).seq;
    let legacy: number;
    {
      using db = UserStore.open(path);
      legacy = out(db, 1);
    }
    // What DIM wrote before the time was kept: 1 for "stored".
    const raw = new DatabaseSync(path);
    raw.prepare("UPDATE outbox SET stored_offline = 1 WHERE message_seq = ?").run(legacy);
    raw.close();
    using db = UserStore.open(path);
    const [never, recent, older] = [out(db, 2), out(db, 3), out(db, 4)];
    db.outbox.markStoredOffline(recent!, 5000);
    db.outbox.markStoredOffline(older!, 3000);
    // An earlier time never replaces a later one.
    db.outbox.markStoredOffline(recent!, 4000);
    const entries = db.outbox.list();
    const at = (seq: number) => entries.find((e) => e.messageSeq === seq)!;
    assert.deepEqual([at(never!).storedOffline, at(never!).storedOfflineAt], [false, 0]);
    assert.deepEqual([at(legacy).storedOffline, at(legacy).storedOfflineAt], [true, 1]);
    assert.equal(at(recent!).storedOfflineAt, 5000);
    assert.equal(db.messages.get(older!)?.state, "stored");
    const before = (t: number, limit: number) =>
      db.outbox.storedOfflineBefore(t, limit).map((e) => e.messageSeq);
    assert.deepEqual(before(4000, 10), [legacy, older]);
    assert.deepEqual(before(9000, 2), [legacy, older]);
    assert.deepEqual(before(9000, 10), [legacy, older, recent]);
  });
});
