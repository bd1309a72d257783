import assert from "node:assert/strict";
import { UserStore } from "../../lib/store/user_store.ts";
import { inTempDir, msg } from "./_fixtures.ts";

Deno.test("insertIncoming() stores a message once and reports the replay as duplicate", () => {
  using db = UserStore.open(":memory:");
  assert.ok(db.messages.insertIncoming(msg(1, 10)));
  assert.equal(db.messages.insertIncoming(msg(1, 10)), undefined);
  assert.equal(db.messages.history("dimpeer").length, 1);
});

Deno.test("a duplicate is still a duplicate after the database is reopened", () => {
  inTempDir((dir) => {
    const path = `${dir}/dim.db`;
    const a = UserStore.open(path);
    assert.ok(a.messages.insertIncoming(msg(7, 10)));
    a.close();
    using b = UserStore.open(path);
    assert.equal(b.messages.insertIncoming(msg(7, 10)), undefined);
  });
});

Deno.test("history() orders a conversation by the sender's timestamps", () => {
  using db = UserStore.open(":memory:");
  db.messages.insertIncoming(msg(2, 300));
  db.messages.insertIncoming(msg(1, 100));
  db.messages.insertIncoming(msg(3, 200));
  assert.deepEqual(db.messages.history("dimpeer").map((m) => m.sentAt), [100, 200, 300]);
  assert.deepEqual(db.messages.history("dimpeer", { limit: 2 }).map((m) => m.sentAt), [200, 300]);
});
