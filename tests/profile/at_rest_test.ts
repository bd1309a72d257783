/**
 * What a copy of the data directory shows without the passphrase: message
 * bodies are sealed in `dim.db` (plain SQLite and a byte search of the files
 * find none), and every file DIM writes there is its owner's alone (0600,
 * directories 0700).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { writeConfig } from "../../lib/cli/config.ts";
import { lockDataDir } from "../../lib/platform/lock.ts";
import { SqliteDatastore } from "../../lib/platform/sqlite_datastore.ts";
import { profileParts } from "../../lib/profile/_internals.ts";
import { createProfile, openProfile, ProfileLockedError } from "../../lib/profile/profile.ts";
import { UserStore } from "../../lib/store/user_store.ts";
import { nextMessages, testNet } from "../_support/network.ts";

const enc = new TextEncoder();

/** Whether `needle` occurs in `hay`. */
function contains(hay: Uint8Array, needle: Uint8Array): boolean {
  outer: for (let i = 0; i + needle.length <= hay.length; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return true;
  }
  return false;
}

/** Every file and directory under `dir`, with its permission bits. */
async function modes(dir: string, prefix = ""): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for await (const entry of Deno.readDir(dir)) {
    const path = join(dir, entry.name);
    const name = prefix + entry.name + (entry.isDirectory ? "/" : "");
    out.set(name, (await Deno.lstat(path)).mode! & 0o777);
    if (entry.isDirectory) { for (const [k, v] of await modes(path, name)) out.set(k, v); }
  }
  return out;
}

function assertPrivate(found: Map<string, number>, where: string): void {
  const open = [...found].filter(([name, mode]) => mode !== (name.endsWith("/") ? 0o700 : 0o600))
    .map(([name, mode]) => `${name} ${mode.toString(8)}`);
  assert.deepEqual(open, [], `files others can read in ${where}`);
}

/** The rows of `dim.db` as plain SQLite shows them, and the files' bytes. */
async function whatACopyShows(home: string): Promise<{ bodies: Uint8Array[]; files: Uint8Array }> {
  const db = new DatabaseSync(join(home, "dim.db"), { readOnly: true });
  try {
    const rows = db.prepare("SELECT body FROM messages").all();
    const bodies = rows.map((r) => r.body as Uint8Array);
    const parts: Uint8Array[] = [];
    for (const name of ["dim.db", "dim.db-wal"]) {
      parts.push(await Deno.readFile(join(home, name)).catch(() => new Uint8Array(0)));
    }
    return { bodies, files: new Uint8Array(parts.flatMap((p) => [...p])) };
  } finally {
    db.close();
  }
}

Deno.test("a copy of dim.db shows no message body, sent or received, and the profile shows them once unlocked", async () => {
  await using net = await testNet();
  const alice = await net.user("alice");
  const bob = await net.user("bob");
  await alice.addContact("bob", bob.id);
  await bob.addContact("alice", alice.id);
  const toBob = "the gate code is 4711 (secret-to-bob)";
  const toAlice = "meet at the north door (secret-to-alice)";
  const sent = await alice.send("bob", toBob);
  await nextMessages(bob, 1);
  await alice.waitFor(sent.seq, { signal: AbortSignal.timeout(10_000) });
  await bob.send("alice", toAlice);
  await nextMessages(alice, 1);
  const homes = { alice: alice.profile.home, bob: bob.profile.home };
  const ids = { alice: alice.id, bob: bob.id };
  // While running: the write-ahead log holds the newest rows.
  for (const home of Object.values(homes)) {
    const { bodies, files } = await whatACopyShows(home);
    assert.equal(bodies.length, 2);
    for (const secret of [toBob, toAlice]) {
      assert.ok(!bodies.some((b) => contains(b, enc.encode(secret))), `a body in clear: ${secret}`);
      assert.ok(!contains(files, enc.encode(secret)), `in the files of ${home}: ${secret}`);
    }
  }
  await alice.stop();
  await bob.stop();
  for (const home of Object.values(homes)) {
    const { files } = await whatACopyShows(home);
    for (const secret of [toBob, toAlice]) assert.ok(!contains(files, enc.encode(secret)));
  }

  // Offline and locked: who and when, not what.
  {
    await using locked = await openProfile({ home: homes.bob, exclusive: false });
    assert.deepEqual(locked.contacts().map((c) => c.name), ["alice"]);
    assert.throws(() => locked.history("alice"), ProfileLockedError);
    assert.throws(() => locked.incomingSince(0), ProfileLockedError);
    assert.throws(() => locked.outbox(), ProfileLockedError);
    await locked.unlock("bob: plum vortex quietly sings");
    assert.deepEqual(locked.history("alice").map((m) => m.text), [toBob, toAlice]);
    assert.deepEqual(locked.incomingSince(0).map((m) => [m.peer, m.text]), [[ids.alice, toBob]]);
  }
  await using unlocked = await openProfile({
    home: homes.alice,
    passphrase: "alice: plum vortex quietly sings",
  });
  assert.deepEqual(unlocked.history("bob").map((m) => [m.direction, m.text, m.state]), [
    ["out", toBob, "delivered"],
    ["in", toAlice, "received"],
  ]);
});

Deno.test("every file DIM writes in the data directory is mode 0600, every directory 0700", async () => {
  // A umask that would leave files readable by everyone, as on many systems.
  const umask = Deno.umask(0o022);
  try {
    await using net = await testNet();
    const alice = await net.user("alice");
    const bob = await net.user("bob", { downloadDir: join(net.dir, "bob", "files") });
    await alice.addContact("bob", bob.id);
    await bob.addContact("alice", alice.id);
    await alice.send("bob", "hi");
    await nextMessages(bob, 1);
    const file = join(net.dir, "report.txt");
    await Deno.writeTextFile(file, "a file for bob\n", { mode: 0o644 });
    await alice.sendFile("bob", file);
    await writeConfig(bob.profile.home, { bootstrap: net.bootstrap(), listen: [] });
    const home = bob.profile.home;
    const running = await modes(home);
    for (const name of ["dim.db", "dim.db-wal", "dim.db-shm", "node.db", "identity.key", "lock"]) {
      assert.ok(running.has(name), `${name} exists`);
    }
    assert.ok(running.has("files/report.txt"), "the file arrived");
    assertPrivate(running, `${home} while running`);
    await bob.stop();
    const stopped = await modes(home);
    for (const name of ["node.key", "config.json", "peers.json", "ports.json"]) {
      assert.ok(stopped.has(name), `${name} exists`);
    }
    assertPrivate(stopped, `${home} after stop`);
  } finally {
    Deno.umask(umask);
  }
});

Deno.test("files an older DIM left readable by others become the owner's alone when opened", async () => {
  const home = await Deno.makeTempDir({ prefix: "dim-at-rest-" });
  try {
    // As an older DIM left them: the database with its log open, the lock, node.db.
    using reader = UserStore.open(join(home, "dim.db"));
    reader.settings.set("x", "1");
    lockDataDir(home).release();
    SqliteDatastore.open(join(home, "node.db")).close();
    const before = await modes(home);
    for (const name of before.keys()) await Deno.chmod(join(home, name), 0o644);
    for (const name of ["dim.db-wal", "dim.db-shm"]) assert.ok(before.has(name), name);
    using _db = UserStore.open(join(home, "dim.db"));
    lockDataDir(home).release();
    SqliteDatastore.open(join(home, "node.db")).close();
    assertPrivate(await modes(home), home);
  } finally {
    await Deno.remove(home, { recursive: true });
  }
});

Deno.test("an older DIM's history, kept in the clear, is sealed at the first unlock", async () => {
  const home = await Deno.makeTempDir({ prefix: "dim-at-rest-" });
  const passphrase = "plum vortex quietly sings";
  try {
    await (await createProfile({ home, passphrase, displayName: "Ada" })).stop();
    const body = enc.encode("written by DIM 0.1 (old-secret)");
    {
      // A store without the key writes as DIM did before bodies were sealed.
      using old = UserStore.open(join(home, "dim.db"));
      const m = {
        id: new Uint8Array(16),
        peer: "dimbob",
        sentAt: 1,
        receivedAt: 2,
        contentType: 1,
      };
      old.messages.insertIncoming({ ...m, body, via: "direct", protection: "ratchet" });
      old.outbox.enqueue(
        { ...m, id: new Uint8Array(16).fill(1), sentAt: 3, body, protection: "ratchet" },
        new Uint8Array([1]),
        new Uint8Array(32),
      );
    }
    assert.ok((await whatACopyShows(home)).bodies.every((b) => contains(b, body)));
    {
      // Locked and sharing the directory: nothing is sealed, nothing shown.
      await using locked = await openProfile({ home, exclusive: false });
      assert.throws(() => locked.history("dimbob"), ProfileLockedError);
    }
    assert.ok((await whatACopyShows(home)).bodies.every((b) => contains(b, body)));
    {
      await using profile = await openProfile({ home, passphrase });
      assert.deepEqual(profile.history("dimbob").map((m) => [m.direction, m.text]), [
        ["in", "written by DIM 0.1 (old-secret)"],
        ["out", "written by DIM 0.1 (old-secret)"],
      ]);
      assert.equal(profile.outbox().length, 1);
    }
    const copy = await whatACopyShows(home);
    assert.equal(copy.bodies.length, 2);
    assert.ok(!copy.bodies.some((b) => contains(b, body)), "sealed in place");
    assert.ok(!contains(copy.files, body), "no old copy left in free pages or the log");
    // A shared profile, unlocked, reads them too.
    await using shared = await openProfile({ home, exclusive: false });
    await shared.unlock(passphrase);
    assert.equal(shared.history("dimbob").length, 2);
  } finally {
    await Deno.remove(home, { recursive: true });
  }
});

Deno.test("a new identity in the same directory drops the history sealed under the old one", async () => {
  const home = await Deno.makeTempDir({ prefix: "dim-at-rest-" });
  const passphrase = "plum vortex quietly sings";
  try {
    {
      await using profile = await createProfile({ home, passphrase, displayName: "Ada" });
      const { store } = profileParts(profile);
      store.messages.insertIncoming({
        id: new Uint8Array(16),
        peer: "dimbob",
        sentAt: 1,
        receivedAt: 1,
        contentType: 1,
        body: enc.encode("old"),
        via: "direct",
        protection: "ratchet",
      });
      assert.equal(profile.history("dimbob").length, 1);
    }
    await using replaced = await createProfile({
      home,
      passphrase,
      displayName: "Ada",
      force: true,
    });
    assert.deepEqual(replaced.history("dimbob"), []);
  } finally {
    await Deno.remove(home, { recursive: true });
  }
});
