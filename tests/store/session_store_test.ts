import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
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
  counter: usedAt,
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

Deno.test("save() keeps each state's counter, and clear() deletes every session", () => {
  using db = UserStore.open(":memory:");
  db.sessions.save(session(1, 10, true));
  db.sessions.save({ ...session(1, 10, true), counter: 11 });
  db.sessions.save({ ...session(2, 20, true), peer: "dimother" });
  assert.equal(db.sessions.list("dimpeer")[0]?.counter, 11);
  assert.equal(db.sessions.clear(), 2);
  assert.deepEqual(db.sessions.list("dimpeer"), []);
  assert.deepEqual(db.sessions.list("dimother"), []);
});

Deno.test("a sessions table made before the counter gets it, 0 in its rows", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/dim.db`;
    const old = new DatabaseSync(path);
    old.exec(`CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
      INSERT INTO meta VALUES ('schema', '2');
      CREATE TABLE sessions (peer TEXT NOT NULL, session_id BLOB NOT NULL, state BLOB NOT NULL,
        initial_header BLOB, current INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL,
        used_at INTEGER NOT NULL, PRIMARY KEY (peer, session_id));
      INSERT INTO sessions VALUES ('dimpeer', x'0101010101010101', x'07', NULL, 1, 5, 5);`);
    old.close();
    {
      using db = UserStore.open(path);
      const [row] = db.sessions.list("dimpeer");
      assert.equal(row?.counter, 0);
      assert.deepEqual(row?.state, new Uint8Array([7]));
      db.sessions.save({ ...row!, counter: 3 });
    }
    using again = UserStore.open(path);
    assert.equal(again.sessions.list("dimpeer")[0]?.counter, 3);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("list() read again after each save, delete and rollback says what the file says", () => {
  using db = UserStore.open(":memory:");
  const fromFile = () =>
    (db.connection.run("read", (h) =>
      h.prepare(
        "SELECT session_id, current, state FROM sessions WHERE peer = 'dimpeer' ORDER BY current DESC, used_at DESC, created_at DESC",
      ).all()) as { session_id: Uint8Array; current: number; state: Uint8Array }[])
      .map((r) => [r.session_id[0], r.current === 1, r.state[0]]);
  const listed = () =>
    db.sessions.list("dimpeer").map((s) => [s.sessionId[0], s.current, s.state[0]]);
  const same = (what: string) => assert.deepEqual(listed(), fromFile(), what);
  same("none");
  db.sessions.save(session(1, 10, true));
  same("one current");
  db.sessions.save(session(2, 20, true));
  same("a new current one");
  db.sessions.save({ ...session(1, 30, true), state: new Uint8Array([7]) });
  same("the older made current again, its state moved on");
  db.sessions.save({ ...session(2, 40), state: new Uint8Array([8]) });
  same("the other moved on, not current");
  assert.throws(() =>
    db.transaction(() => {
      db.sessions.save({ ...session(2, 50, true), state: new Uint8Array([9]) });
      same("seen inside the transaction");
      throw new Error("roll back");
    }), /roll back/);
  same("rolled back");
  db.sessions.deleteAll("dimpeer");
  same("deleted");
  db.sessions.save(session(3, 60, true));
  assert.equal(db.sessions.clear(), 1);
  same("cleared");
});
