import assert from "node:assert/strict";
import type { StoredSession } from "../../lib/messaging/storage.ts";
import { UserStore } from "../../lib/store/user_store.ts";

const session = (id: number, usedAt: number, current = false): StoredSession => ({
  peer: "dimpeer",
  sessionId: new Uint8Array(8).fill(id),
  state: new Uint8Array([id]),
  initialHeader: undefined,
  current,
  createdAt: usedAt,
  usedAt,
});

Deno.test("save() keeps one current session per peer, listed first", () => {
  using db = UserStore.open(":memory:");
  db.sessions.save(session(1, 10, true));
  db.sessions.save(session(2, 20, true));
  db.sessions.save({ ...session(1, 30), state: new Uint8Array([9]) });
  const list = db.sessions.list("dimpeer");
  assert.deepEqual(list.map((s) => [s.sessionId[0], s.current]), [[2, true], [1, false]]);
  assert.deepEqual(list[1]?.state, new Uint8Array([9]), "an update moves the state on");
});

Deno.test("save() drops the least recently used sessions beyond `keep`", () => {
  using db = UserStore.open(":memory:");
  for (let i = 1; i <= 5; i++) db.sessions.save(session(i, i * 10, i === 1), 3);
  assert.deepEqual(db.sessions.list("dimpeer").map((s) => s.sessionId[0]), [1, 5, 4]);
  db.sessions.deleteAll("dimpeer");
  assert.deepEqual(db.sessions.list("dimpeer"), []);
});
