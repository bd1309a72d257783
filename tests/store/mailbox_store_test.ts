import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { MailboxStore } from "../../lib/store/mailbox_store.ts";
import { UserStore } from "../../lib/store/user_store.ts";
import { inTempDir, msg } from "./_fixtures.ts";

const QUOTA = {
  maxCount: 2,
  maxBytes: 100,
  maxTotalBytes: 1_000_000,
  maxPeerCount: 100,
  maxPeerBytes: 100_000,
  maxOriginCount: 100,
  maxOriginBytes: 1_000_000,
};
const ALICE = { peer: "alice", origin: "ip4:192.0.2.1" };

/** A copy of `size` bytes whose hash is `n` repeated. */
const copy = (n: number, size: number, options: {
  mailbox?: Uint8Array;
  storer?: { peer: string; origin: string };
  expiresAt?: number;
  storedAt?: number;
} = {}) => ({
  mailbox: options.mailbox ?? new Uint8Array(32).fill(1),
  hash: new Uint8Array(32).fill(n),
  envelope: new Uint8Array(size),
  expiresAt: options.expiresAt ?? 10_000,
  storedAt: options.storedAt ?? n,
  storer: options.storer ?? ALICE,
});

Deno.test("put() refuses a storer over its share, and list() serves unexpired copies", () => {
  using db = UserStore.open(":memory:");
  const box = new Uint8Array(32).fill(1);
  const quota = { ...QUOTA, maxCount: 10, maxBytes: 1000, maxPeerCount: 2, maxPeerBytes: 100 };
  assert.equal(db.mailboxes.put(copy(1, 10), quota), "stored");
  assert.equal(db.mailboxes.put(copy(1, 10), quota), "duplicate");
  assert.equal(db.mailboxes.put(copy(2, 95), quota), "full", "bytes per storer");
  assert.equal(db.mailboxes.put(copy(2, 10), quota), "stored");
  assert.equal(db.mailboxes.put(copy(3, 10), quota), "full", "copies per storer");
  const bob = { peer: "bob", origin: "ip4:192.0.2.1" };
  assert.equal(db.mailboxes.put(copy(3, 10, { storer: bob }), quota), "stored", "another storer");
  assert.equal(db.mailboxes.list(box, 0, 10).length, 3);
  assert.equal(db.mailboxes.count(box, 0), 3);
  assert.equal(db.mailboxes.list(box, 0, 10, 25).length, 2, "at most 25 bytes");
  assert.equal(db.mailboxes.list(box, 20_000, 10).length, 0, "expired copies are not served");
  assert.equal(db.mailboxes.delete(box, [new Uint8Array(32).fill(1)]), 1);
  assert.equal(db.mailboxes.list(box, 0, 10).length, 2);
});

Deno.test("put() evicts the heaviest storer's oldest copy in a full mailbox, not the newcomer", () => {
  using db = UserStore.open(":memory:");
  const box = new Uint8Array(32).fill(1);
  const quota = { ...QUOTA, maxCount: 4, maxBytes: 10_000 };
  const mallory = { peer: "mallory", origin: "ip4:198.51.100.7" };
  for (let n = 1; n <= 4; n++) {
    assert.equal(db.mailboxes.put(copy(n, 200, { storer: mallory }), quota), "stored");
  }
  assert.equal(db.mailboxes.put(copy(10, 300), quota), "stored", "the contact gets in");
  const held = db.mailboxes.list(box, 0, 10).map((c) => c.envelope.length);
  assert.deepEqual(held, [200, 200, 200, 300], "mallory's oldest went");
  // Mallory is still the heaviest: her new copies replace her own, never Alice's.
  for (let n = 20; n < 30; n++) db.mailboxes.put(copy(n, 200, { storer: mallory }), quota);
  assert.equal(db.mailboxes.list(box, 0, 10).filter((c) => c.envelope.length === 300).length, 1);
});

Deno.test("put() weighs storers by origin first, so many peer IDs of one address lose first", () => {
  using db = UserStore.open(":memory:");
  const box = new Uint8Array(32).fill(1);
  const quota = { ...QUOTA, maxCount: 10, maxBytes: 100_000 };
  // Alice (another address) stored three; ten of Mallory's peer IDs one each.
  for (let n = 1; n <= 3; n++) assert.equal(db.mailboxes.put(copy(n, 300), quota), "stored");
  for (let n = 10; n < 20; n++) {
    const sybil = { peer: `sybil-${n}`, origin: "ip4:198.51.100.7" };
    db.mailboxes.put(copy(n, 200, { storer: sybil }), quota);
  }
  const kept = db.mailboxes.list(box, 0, 20);
  assert.equal(kept.length, 10);
  assert.equal(kept.filter((c) => c.envelope.length === 300).length, 3, "Alice's copies stay");
});

Deno.test("put() keeps one origin within its share of the node, and the node within its total", () => {
  using db = UserStore.open(":memory:");
  const quota = { ...QUOTA, maxCount: 100, maxBytes: 100_000, maxOriginCount: 5 };
  const mallory = { peer: "mallory", origin: "ip4:198.51.100.7" };
  for (let n = 1; n <= 8; n++) {
    const mailbox = new Uint8Array(32).fill(n);
    assert.equal(
      db.mailboxes.put(copy(n, 10, { mailbox, storer: mallory }), quota),
      n <= 5 ? "stored" : "full",
    );
  }
  // Another peer of the same address evicts Mallory's copies, not itself refused.
  const other = { peer: "other", origin: "ip4:198.51.100.7" };
  assert.equal(db.mailboxes.put(copy(30, 10, { storer: other }), quota), "stored");
  // The node: 150 bytes in all; a newcomer evicts the heaviest origin's copies.
  const total = { ...QUOTA, maxCount: 100, maxBytes: 100_000, maxTotalBytes: 150 };
  using node = UserStore.open(":memory:");
  for (let n = 1; n <= 3; n++) {
    const mailbox = new Uint8Array(32).fill(n);
    assert.equal(node.mailboxes.put(copy(n, 50, { mailbox, storer: mallory }), total), "stored");
  }
  assert.equal(node.mailboxes.put(copy(9, 40), total), "stored", "the node makes room");
  const first = node.mailboxes.list(new Uint8Array(32).fill(1), 0, 10);
  assert.deepEqual(first.map((c) => c.envelope.length), [40], "mallory's oldest went");
  assert.equal(node.mailboxes.put(copy(10, 200), total), "full", "larger than the node");
});

Deno.test("a mailbox table of an older DIM gets the storer columns; its copies count as one storer", () => {
  inTempDir((dir) => {
    const path = `${dir}/dim.db`;
    const raw = new DatabaseSync(path);
    raw.exec(`CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
      INSERT INTO meta (key, value) VALUES ('schema', '2');
      CREATE TABLE mailbox (mailbox BLOB NOT NULL, hash BLOB NOT NULL, envelope BLOB NOT NULL,
        expires_at INTEGER NOT NULL, stored_at INTEGER NOT NULL, PRIMARY KEY (mailbox, hash));`);
    raw.prepare("INSERT INTO mailbox VALUES (?, ?, ?, ?, ?)").run(
      new Uint8Array(32).fill(1),
      new Uint8Array(32).fill(7),
      new Uint8Array(50),
      10_000,
      0,
    );
    raw.close();
    using node = MailboxStore.open(path);
    const box = new Uint8Array(32).fill(1);
    assert.equal(node.list(box, 0, 10).length, 1);
    const quota = { ...QUOTA, maxCount: 1, maxBytes: 1000 };
    assert.equal(node.put(copy(1, 10), quota), "stored", "the old copy was evicted");
    assert.equal(node.list(box, 0, 10)[0]?.envelope.length, 10);
  });
});

const tables = (path: string) => {
  const raw = new DatabaseSync(path);
  try {
    return (raw.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
      .all() as { name: string }[]).map((r) => r.name).filter((n) => !n.startsWith("sqlite_"));
  } finally {
    raw.close();
  }
};

Deno.test("MailboxStore.open() creates the mailboxes only, and a user can share the file", () => {
  inTempDir((dir) => {
    const path = `${dir}/dim.db`;
    const box = new Uint8Array(32).fill(1);
    {
      using node = MailboxStore.open(path);
      assert.equal(node.put(copy(1, 1, { expiresAt: 100, storedAt: 0 }), QUOTA), "stored");
    }
    assert.deepEqual(tables(path), ["mailbox", "meta"]);
    {
      using user = UserStore.open(path);
      assert.equal(user.mailboxes.list(box, 0, 10).length, 1);
      assert.ok(user.messages.insertIncoming({ ...msg(1, 1), protection: "ratchet" }));
      assert.equal(user.messages.history("dimpeer")[0]?.protection, "ratchet");
    }
    using again = MailboxStore.open(path);
    assert.equal(again.list(box, 0, 10).length, 1);
  });
});
