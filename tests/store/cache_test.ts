// What the stores keep in memory (contacts, messages by number, settings,
// each conversation's last queued message) always says what the file says:
// after each write of the store, after a rollback, after SQL run behind the
// stores' back.
import assert from "node:assert/strict";
import { Identity } from "../../lib/crypto/identity.ts";
import { HistoryBox } from "../../lib/crypto/secret_box.ts";
import { OutboxStore } from "../../lib/store/outbox_store.ts";
import { UserStore } from "../../lib/store/user_store.ts";
import { msg } from "./_fixtures.ts";

const KEY = HistoryBox.forIdentity(await Identity.generate());

/** A user's store in memory, with the history key (without it, nothing sealed is kept). */
function open(): UserStore {
  const db = UserStore.open(":memory:");
  db.messages.useKey(KEY);
  return db;
}

const bob = {
  name: "bob",
  userId: "dim-bob",
  signingPublicKey: new Uint8Array(32).fill(1),
  encryptionPublicKey: new Uint8Array(32).fill(2),
};

/** Runs `fn` in a transaction that then rolls back. */
function rolledBack(db: UserStore, fn: () => void): void {
  assert.throws(() =>
    db.transaction(() => {
      fn();
      throw new Error("roll back");
    }, { durable: false }), /roll back/);
}

const outgoing = (peer: string) => ({
  id: crypto.getRandomValues(new Uint8Array(16)),
  peer,
  sentAt: 1,
  receivedAt: 1,
  contentType: 1,
  body: new TextEncoder().encode("hi"),
  protection: "ratchet" as const,
});

Deno.test("contacts read again reflect every write: added, renamed, seen, removed", () => {
  using db = open();
  assert.equal(db.contacts.getById(bob.userId), undefined);
  assert.equal(db.contacts.get("bob"), undefined);
  db.contacts.upsert(bob);
  assert.equal(db.contacts.getById(bob.userId)?.name, "bob", "a miss is not kept past a write");
  assert.equal(db.contacts.get("bob")?.userId, bob.userId);
  db.contacts.touch(bob.userId, 5000);
  assert.equal(db.contacts.get("bob")?.lastSeen, 5000);
  assert.equal(db.contacts.getById(bob.userId)?.lastSeen, 5000);
  // To the second: seen again within it, the row is not written again.
  db.contacts.touch(bob.userId, 5999);
  assert.equal(db.contacts.getById(bob.userId)?.lastSeen, 5000);
  db.contacts.touch(bob.userId, 6000);
  assert.equal(db.contacts.getById(bob.userId)?.lastSeen, 6000);
  assert.equal(db.contacts.list()[0]?.lastSeen, 6000, "in the file");
  db.contacts.upsert({ ...bob, userId: "dim-robert", lastSeen: 7000 });
  assert.equal(db.contacts.getById(bob.userId), undefined, "the name now has another ID");
  assert.equal(db.contacts.getById("dim-robert")?.lastSeen, 7000);
  assert.equal(db.contacts.remove("bob"), true);
  assert.equal(db.contacts.get("bob"), undefined);
  assert.equal(db.contacts.getById("dim-robert"), undefined);
});

Deno.test("a rolled-back transaction leaves no trace in what the stores keep", () => {
  using db = open();
  db.contacts.upsert(bob);
  db.contacts.getById(bob.userId);
  db.settings.set("k", "1");
  const m = db.outbox.enqueue(outgoing(bob.userId), new Uint8Array([1]), new Uint8Array(32));
  assert.equal(db.messages.get(m.seq)?.state, "pending");
  rolledBack(db, () => {
    db.contacts.touch(bob.userId, 9000);
    db.settings.set("k", "2");
    db.outbox.markDelivered(bob.userId, new Uint8Array(32));
    assert.equal(db.messages.get(m.seq)?.state, "delivered", "seen inside");
    assert.equal(db.contacts.getById(bob.userId)?.lastSeen, 9000, "seen inside");
  });
  assert.equal(db.contacts.getById(bob.userId)?.lastSeen, 0);
  assert.equal(db.settings.get("k"), "1");
  assert.equal(db.messages.get(m.seq)?.state, "pending");
  rolledBack(db, () => {
    db.outbox.enqueue(outgoing("dim-carol"), new Uint8Array([2]), new Uint8Array(32).fill(3));
  });
  assert.deepEqual(db.outbox.after("dim-carol", 0, 10), []);
});

Deno.test("a message read again shows its new state, protection and body", () => {
  using db = open();
  const m = db.outbox.enqueue(outgoing(bob.userId), new Uint8Array([1]), new Uint8Array(32));
  assert.deepEqual(db.messages.get(m.seq)?.body, new TextEncoder().encode("hi"));
  db.outbox.markStoredOffline(m.seq, 3000);
  assert.equal(db.messages.get(m.seq)?.state, "stored");
  db.messages.setProtection(m.seq, "static");
  assert.equal(db.messages.get(m.seq)?.protection, "static");
  assert.equal(db.outbox.markDelivered(bob.userId, new Uint8Array(32)), m.seq);
  assert.equal(db.messages.get(m.seq)?.state, "delivered");
  // A delivered message stays delivered when a late mailbox copy is confirmed.
  db.outbox.markStoredOffline(m.seq, 4000);
  assert.equal(db.messages.get(m.seq)?.state, "delivered");
  const got = db.messages.insertIncoming(msg(1, 1))!;
  db.messages.clearBody(got.seq);
  assert.equal(db.messages.get(got.seq)?.body.length, 0);
  // Every history on the connection sees the outbox's writes.
  const other = new OutboxStore(db.connection);
  const n = other.enqueue(outgoing(bob.userId), new Uint8Array([2]), new Uint8Array(32).fill(4));
  assert.equal(db.messages.get(n.seq)?.state, "pending");
  other.markDelivered(bob.userId, new Uint8Array(32).fill(4));
  assert.equal(db.messages.get(n.seq)?.state, "delivered");
});

Deno.test("a message kept in memory is not changed by what its caller does with it", () => {
  using db = open();
  const draft = outgoing(bob.userId);
  const m = db.outbox.enqueue(draft, new Uint8Array([1]), new Uint8Array(32));
  draft.body.fill(0);
  assert.deepEqual(db.messages.get(m.seq)?.body, new TextEncoder().encode("hi"));
});

Deno.test("SQL run behind the stores' back empties what they keep", () => {
  using db = open();
  db.settings.set("session_saves", "7");
  db.contacts.upsert(bob);
  assert.equal(db.contacts.getById(bob.userId)?.name, "bob");
  db.connection.run("forget", (h) => h.exec("DELETE FROM meta WHERE key = 'session_saves'"));
  assert.equal(db.settings.get("session_saves"), undefined);
  db.connection.run("forget", (h) => h.exec("DELETE FROM contacts"));
  assert.equal(db.contacts.getById(bob.userId), undefined);
});

Deno.test("after() finds a conversation's new entry however it last found none", () => {
  using db = open();
  assert.deepEqual(db.outbox.after(bob.userId, 0, 10), []);
  const a = db.outbox.enqueue(outgoing(bob.userId), new Uint8Array([1]), new Uint8Array(32));
  assert.deepEqual(db.outbox.after(bob.userId, 0, 10).map((e) => e.messageSeq), [a.seq]);
  assert.deepEqual(db.outbox.after(bob.userId, a.seq, 10), []);
  // Queued by another outbox on the same connection.
  const b = new OutboxStore(db.connection).enqueue(
    outgoing(bob.userId),
    new Uint8Array([2]),
    new Uint8Array(32).fill(5),
  );
  assert.deepEqual(db.outbox.after(bob.userId, a.seq, 10).map((e) => e.messageSeq), [b.seq]);
  db.outbox.markDelivered(bob.userId, new Uint8Array(32));
  assert.deepEqual(db.outbox.after(bob.userId, 0, 10).map((e) => e.messageSeq), [b.seq]);
});

Deno.test("after() answers from memory exactly what the table holds, through every change to the queue", () => {
  using db = open();
  const hash = (n: number) => new Uint8Array(32).fill(n);
  const queue = (n: number) =>
    db.outbox.enqueue(outgoing(bob.userId), new Uint8Array([n]), hash(n)).seq;
  const table = (after: number) =>
    db.connection.run("check", (h) =>
      h.prepare(
        `SELECT message_seq, envelope, attempts, next_attempt_at, stored_offline, last_error
         FROM outbox WHERE recipient = ? AND message_seq > ? ORDER BY message_seq`,
      ).all(bob.userId, after)).map((r) => ({
        messageSeq: Number(r.message_seq),
        envelope: new Uint8Array(r.envelope as Uint8Array),
        attempts: Number(r.attempts),
        nextAttemptAt: Number(r.next_attempt_at),
        storedOfflineAt: Number(r.stored_offline),
        lastError: String(r.last_error),
      }));
  const same = (after: number, step: string) => {
    const seen = db.outbox.after(bob.userId, after, 100).map((e) => ({
      messageSeq: e.messageSeq,
      envelope: new Uint8Array(e.envelope),
      attempts: e.attempts,
      nextAttemptAt: e.nextAttemptAt,
      storedOfflineAt: e.storedOfflineAt,
      lastError: e.lastError,
    }));
    assert.deepEqual(seen, table(after), step);
  };
  const first = queue(1);
  same(0, "read from the table once");
  const second = queue(2);
  queue(3);
  same(0, "queued after the read");
  same(second, "after a later message");
  db.outbox.markDelivered(bob.userId, hash(2));
  same(0, "an acknowledged message is gone");
  db.outbox.defer(first, 9000, "offline");
  same(0, "a deferral counts its attempt");
  queue(4);
  db.outbox.markStoredOffline(first, 5000);
  same(0, "a mailbox copy");
  queue(5);
  db.outbox.replaceEnvelope(first, new Uint8Array([9]), hash(9), 7000);
  same(0, "a new envelope");
  queue(6);
  db.outbox.retryNow(100);
  same(0, "retried now");
  same(0, "read again");
  rolledBack(db, () => void queue(7));
  same(0, "a rolled-back message is not there");
  queue(8);
  same(0, "queued after a rollback");
  db.messages.deleteSealed();
  same(0, "the history's sealed rows deleted with their entries");
});
