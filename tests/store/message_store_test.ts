import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { Identity } from "../../lib/crypto/identity.ts";
import { HistoryBox } from "../../lib/crypto/secret_box.ts";
import { StorageError } from "../../lib/errors.ts";
import { toHex } from "../../lib/platform/bytes.ts";
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

const KEY = HistoryBox.forIdentity(await Identity.generate());

/** A row of the messages table as plain SQLite shows it. */
function rawRow(db: UserStore, seq: number): { body: Uint8Array; format: number } {
  const r = db.connection.run(
    "read",
    (h) => h.prepare("SELECT body, body_format FROM messages WHERE seq = ?").get(seq),
  );
  return { body: r?.body as Uint8Array, format: Number(r?.body_format) };
}

Deno.test("with the history key, bodies are sealed in the file and read back in the clear", () => {
  using db = UserStore.open(":memory:");
  db.messages.useKey(KEY);
  const got = db.messages.insertIncoming(msg(1, 10))!;
  const sent = db.outbox.enqueue(
    { ...msg(2, 20), body: new TextEncoder().encode("out going") },
    new Uint8Array([1]),
    new Uint8Array(32).fill(1),
  );
  for (const [seq, text] of [[got.seq, "m1"], [sent.seq, "out going"]] as const) {
    const raw = rawRow(db, seq);
    assert.equal(raw.format, 1);
    assert.equal(raw.body.length, 12 + text.length + 16);
    assert.ok(!new TextDecoder().decode(raw.body).includes(text));
    // What the outbox reads to seal the message again is the text.
    assert.equal(new TextDecoder().decode(db.messages.get(seq)!.body), text);
  }
  assert.deepEqual(db.messages.incomingSince(0).map((m) => m.body), [msg(1, 10).body]);
});

Deno.test("a sealed body moved to another row does not open", () => {
  using db = UserStore.open(":memory:");
  db.messages.useKey(KEY);
  const a = db.messages.insertIncoming(msg(1, 10))!;
  const b = db.messages.insertIncoming(msg(2, 20))!;
  // Behind the store's back, as a raw edit of the file would.
  db.connection.run(
    "swap",
    (h) =>
      h.exec(`UPDATE messages SET body = x'${toHex(rawRow(db, a.seq).body)}' WHERE seq = ${b.seq}`),
  );
  assert.throws(() => db.messages.get(b.seq), (e) => {
    assert.ok(e instanceof StorageError);
    assert.equal(e.message, "Cannot read message: the stored secret is corrupt");
    return true;
  });
  assert.ok(db.messages.get(a.seq));
});

Deno.test("without the key a sealed body cannot be read, and another identity's key cannot open it", async () => {
  inTempDir((dir) => {
    const path = `${dir}/dim.db`;
    {
      using db = UserStore.open(path);
      db.messages.useKey(KEY);
      db.messages.insertIncoming(msg(1, 10));
    }
    using db = UserStore.open(path);
    assert.equal(db.messages.hasKey, false);
    assert.throws(
      () => db.messages.history("dimpeer"),
      /Cannot read message: the history is locked/,
    );
    // Who and when stay readable without the key.
    assert.equal(db.messages.hasIncoming("dimpeer", msg(1, 10).id), true);
  });
  using other = UserStore.open(":memory:");
  other.messages.useKey(KEY);
  other.messages.insertIncoming(msg(1, 10));
  other.messages.useKey(HistoryBox.forIdentity(await Identity.generate()));
  assert.throws(() => other.messages.history("dimpeer"), StorageError);
});

Deno.test("sealPlaintext() seals the rows kept in the clear, sent and received, in place", () => {
  using db = UserStore.open(":memory:");
  // Rows as an older DIM wrote them.
  const got = db.messages.insertIncoming(msg(1, 10))!;
  const sent = db.outbox.enqueue(msg(2, 20), new Uint8Array([1]), new Uint8Array(32).fill(1));
  assert.equal(rawRow(db, got.seq).format, 0);
  assert.equal(db.messages.hasPlaintext(), true);
  assert.throws(() => db.messages.sealPlaintext(), /Cannot seal the history: it is locked/);
  db.messages.useKey(KEY);
  assert.equal(db.messages.sealPlaintext(), 2);
  assert.equal(db.messages.hasPlaintext(), false);
  assert.equal(db.messages.sealPlaintext(), 0);
  for (const m of [got, sent]) {
    assert.equal(rawRow(db, m.seq).format, 1);
    assert.deepEqual(db.messages.get(m.seq)?.body, m.body);
    assert.equal(db.messages.get(m.seq)?.seq, m.seq, "the same row");
  }
  assert.equal(db.outbox.list().length, 1, "the outbox entry still points at its message");
});

Deno.test("a version-2 file gets body_format 0 on its rows, which the key then seals", () => {
  inTempDir((dir) => {
    const path = `${dir}/dim.db`;
    const old = new DatabaseSync(path);
    old.exec(`CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
      INSERT INTO meta VALUES ('schema', '2');
      CREATE TABLE messages (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, msg_id BLOB NOT NULL, peer TEXT NOT NULL,
        direction TEXT NOT NULL, sent_at INTEGER NOT NULL, received_at INTEGER NOT NULL,
        content_type INTEGER NOT NULL, body BLOB NOT NULL, state TEXT NOT NULL,
        via TEXT NOT NULL DEFAULT 'direct', protection TEXT NOT NULL DEFAULT 'static',
        UNIQUE (direction, peer, msg_id));
      INSERT INTO messages (msg_id, peer, direction, sent_at, received_at, content_type, body,
        state) VALUES (x'01', 'dimpeer', 'in', 5, 5, 1, x'6869', 'received');`);
    old.close();
    using db = UserStore.open(path);
    assert.equal(db.settings.get("schema"), "3");
    assert.equal(rawRow(db, 1).format, 0);
    assert.equal(new TextDecoder().decode(db.messages.get(1)!.body), "hi");
    db.messages.useKey(KEY);
    assert.equal(db.messages.sealPlaintext(), 1);
    assert.equal(new TextDecoder().decode(db.messages.get(1)!.body), "hi");
    assert.notDeepEqual(rawRow(db, 1).body, new TextEncoder().encode("hi"));
  });
});

Deno.test("deleteSealed() drops the sealed messages and their outbox entries, not the clear ones", () => {
  using db = UserStore.open(":memory:");
  db.messages.insertIncoming(msg(1, 10));
  db.messages.useKey(KEY);
  db.messages.insertIncoming(msg(2, 20));
  db.outbox.enqueue(msg(3, 30), new Uint8Array([1]), new Uint8Array(32).fill(1));
  assert.equal(db.messages.deleteSealed(), 2);
  assert.deepEqual(db.outbox.list(), []);
  assert.deepEqual(db.messages.history("dimpeer").map((m) => m.sentAt), [10]);
});

Deno.test("sealPlaintext() leaves no old copy of a clear body in the file or its log", () => {
  inTempDir((dir) => {
    const path = `${dir}/dim.db`;
    const marker = "CLEAR-BODY-";
    {
      using db = UserStore.open(path);
      for (let i = 0; i < 50; i++) {
        // Short bodies and long ones, which SQLite keeps in overflow pages.
        const body = new TextEncoder().encode(`${marker}${i} `.repeat(i % 5 === 0 ? 800 : 3));
        db.messages.insertIncoming({ ...msg(i, i), body });
      }
    }
    const found = () =>
      ["", "-wal"].map((suffix) => {
        try {
          return new TextDecoder("latin1").decode(Deno.readFileSync(path + suffix)).split(marker)
            .length - 1;
        } catch {
          return 0;
        }
      }).reduce((a, b) => a + b);
    assert.ok(found() > 0);
    using db = UserStore.open(path);
    db.messages.useKey(KEY);
    assert.equal(db.messages.sealPlaintext(), 50);
    assert.equal(found(), 0);
    assert.equal(db.messages.history("dimpeer", { limit: 100 }).length, 50);
  });
});
