import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { MailboxStore } from "../../lib/store/mailbox_store.ts";
import { UserStore } from "../../lib/store/user_store.ts";
import { inTempDir, msg } from "./_fixtures.ts";

Deno.test("put() enforces per-mailbox count and byte quotas and expiry", () => {
  using db = UserStore.open(":memory:");
  const box = new Uint8Array(32).fill(1);
  const limits = { maxCount: 2, maxBytes: 100, maxTotalBytes: 150 };
  const put = (n: number, size: number, exp = 10_000, mb = box) =>
    db.mailboxes.put(mb, new Uint8Array(32).fill(n), new Uint8Array(size), exp, 0, limits);
  assert.equal(put(1, 10), "stored");
  assert.equal(put(1, 10), "duplicate");
  assert.equal(put(2, 95), "full", "bytes per mailbox");
  assert.equal(put(2, 10), "stored");
  assert.equal(put(3, 10), "full", "count per mailbox");
  assert.equal(put(4, 100, 10_000, new Uint8Array(32).fill(2)), "stored");
  assert.equal(put(5, 40, 10_000, new Uint8Array(32).fill(3)), "full", "total bytes");
  assert.equal(db.mailboxes.list(box, 0, 10).length, 2);
  assert.equal(db.mailboxes.list(box, 20_000, 10).length, 0, "expired copies are not served");
  assert.equal(db.mailboxes.delete(box, [new Uint8Array(32).fill(1)]), 1);
  assert.equal(db.mailboxes.list(box, 0, 10).length, 1);
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
    const quota = { maxCount: 10, maxBytes: 1000, maxTotalBytes: 1000 };
    {
      using node = MailboxStore.open(path);
      assert.equal(node.put(box, new Uint8Array(32), new Uint8Array([1]), 100, 0, quota), "stored");
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
