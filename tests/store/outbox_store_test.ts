import assert from "node:assert/strict";
import { UserStore } from "../../lib/store/user_store.ts";
import { msg } from "./_fixtures.ts";

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
      lastError: "",
    },
  );
  assert.equal(db.outbox.recipientOf(hash), "a");
  assert.equal(db.outbox.recipientOf(new Uint8Array(32)), undefined);
});
