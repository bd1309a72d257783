/**
 * A data directory whose `dim.db` is put back to an older copy (a restored
 * backup, or anyone with write access to the file) must not make DIM encrypt
 * a new message with a message key and nonce it has used before: the start
 * compares the database's save counter with the mark kept beside it, and
 * drops every session of a database that is behind.
 */
import assert from "node:assert/strict";
import { Identity } from "../../lib/crypto/identity.ts";
import { SecretBox } from "../../lib/crypto/secret_box.ts";
import { decodeInitialMessage } from "../../lib/crypto/x3dh.ts";
import { RATCHET_HEADER_LENGTH } from "../../lib/crypto/ratchet.ts";
import {
  SessionContentType,
  SessionManager,
  type SessionManagerOptions,
  type SessionResult,
  type SessionRollback,
} from "../../lib/messaging/sessions.ts";
import { CounterFile } from "../../lib/platform/counter_file.ts";
import { openPrekeyBundle, type PrekeyBundle } from "../../lib/record/prekey.ts";
import { UserStore } from "../../lib/store/user_store.ts";

const TEXT = 1;
const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);
const signal = () => AbortSignal.timeout(5000);

interface Party {
  readonly identity: Identity;
  db: UserStore;
  sessions: SessionManager;
}

const peerOf = (p: Party) => ({
  userId: p.identity.id,
  signingPublicKey: p.identity.signingPublicKey,
  encryptionPublicKey: p.identity.encryptionPublicKey,
});

async function send(from: Party, to: Party, text: string): Promise<SessionResult> {
  return await from.sessions.lock(async () => {
    const r = await from.sessions.encrypt(peerOf(to), TEXT, enc(text), { signal: signal() });
    await r.ready;
    from.db.transaction(() => r.save());
    return r;
  });
}

async function receive(at: Party, from: Party, sealed: SessionResult): Promise<string> {
  return await at.sessions.lock(async () => {
    if (sealed.frame !== undefined) {
      const r = await at.sessions.decryptFrame(sealed.frame, () => false);
      assert(!r.duplicate);
      at.db.transaction(() => r.save());
      return dec(r.body);
    }
    const r = await at.sessions.decrypt(peerOf(from), sealed.contentType, sealed.body);
    at.db.transaction(() => r.save());
    return dec(r.body);
  });
}

/**
 * The ratchet message inside a session message, where its body's
 * ciphertext starts, and where the text starts in the plaintext: a session
 * frame's plaintext is timestamp (8) | contentType | body, an envelope's
 * contentType | body. A session that encrypts its headers seals them (tag,
 * nonce, sealed header: 100 bytes) where the original ratchet's are in clear.
 */
function ratchetPart(sealed: SessionResult): { bytes: Uint8Array; header: number; text: number } {
  if (sealed.frame !== undefined) {
    return { bytes: sealed.frame.subarray(1), header: HEADER_PREFIX, text: 9 };
  }
  const payload = sealed.body.subarray(8);
  if (sealed.contentType !== SessionContentType.Initial) {
    return { bytes: payload, header: RATCHET_HEADER_LENGTH, text: 1 };
  }
  const initial = decodeInitialMessage(payload);
  const header = initial.header.headerEncryption ? HEADER_PREFIX : RATCHET_HEADER_LENGTH;
  return { bytes: initial.message, header, text: 1 };
}

const HEADER_PREFIX = 100;
const xor = (a: Uint8Array, b: Uint8Array) => a.map((x, i) => x ^ b[i]!);

/** Whether two messages were encrypted under the same ratchet header, key and nonce. */
function reusesKey(m1: SessionResult, t1: string, m2: SessionResult, t2: string) {
  const p1 = ratchetPart(m1);
  const p2 = ratchetPart(m2);
  const r1 = p1.bytes;
  const r2 = p2.bytes;
  const sameHeader = p1.header === p2.header &&
    dec(r1.subarray(0, p1.header)) === dec(r2.subarray(0, p2.header));
  // The same keystream byte encrypts the same plaintext position: the text of
  // two messages of one form starts at the same place.
  if (p1.header !== p2.header || p1.text !== p2.text) return { sameHeader, keystream: false };
  const at = p1.header + p1.text;
  const c1 = r1.subarray(at, at + t1.length);
  const c2 = r2.subarray(at, at + t2.length);
  // The keystream is the same exactly when XOR of ciphertexts = XOR of plaintexts.
  const keystream = dec(xor(c1, c2)) === dec(xor(enc(t1), enc(t2)));
  return { sameHeader, keystream };
}

/**
 * Alice on a data directory (dim.db and the mark beside it), which she can
 * stop cleanly, crash (stop without writing the exact mark) and reopen; Bob
 * in memory; a session in which both have spoken.
 */
async function setUp(dir: string, options: SessionManagerOptions = {}) {
  const network = new Map<string, PrekeyBundle>();
  const fetchBundle = (id: string) => Promise.resolve(network.get(id));
  const aliceIdentity = await Identity.generate();
  const box = await SecretBox.forIdentity(aliceIdentity);
  const rollbacks: SessionRollback[] = [];
  const open = async (): Promise<Party> => {
    const db = UserStore.open(`${dir}/dim.db`);
    const sessions = new SessionManager({
      identity: aliceIdentity,
      storage: db,
      box,
      fetchBundle,
    }, {
      mark: new CounterFile(`${dir}/sessions.mark`),
      onRollback: (r) => rollbacks.push(r),
      ...options,
    });
    await sessions.whenReady();
    return { identity: aliceIdentity, db, sessions };
  };
  const stop = async (p: Party) => {
    await p.sessions.close();
    p.db.close();
  };
  const crash = async (p: Party) => {
    await p.sessions.whenIdle();
    p.db.close();
  };
  const alice = await open();
  const bobIdentity = await Identity.generate();
  const bobDb = UserStore.open(":memory:");
  const bob: Party = {
    identity: bobIdentity,
    db: bobDb,
    sessions: new SessionManager({
      identity: bobIdentity,
      storage: bobDb,
      box: await SecretBox.forIdentity(bobIdentity),
      fetchBundle,
    }),
  };
  for (const p of [alice, bob]) {
    network.set(p.identity.id, await openPrekeyBundle((await p.sessions.prekeyBundle()).bytes));
  }
  assert.equal(await receive(bob, alice, await send(alice, bob, "hello")), "hello");
  assert.equal(await receive(alice, bob, await send(bob, alice, "hi")), "hi");
  return { alice, bob, open, stop, crash, rollbacks };
}

async function inTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("a dim.db put back to an older copy does not reuse a message key and nonce", async () => {
  await inTempDir(async (dir) => {
    let { alice, bob, open, stop, rollbacks } = await setUp(dir);
    await stop(alice);

    // A backup of dim.db; then a message; then the backup is put back.
    await Deno.copyFile(`${dir}/dim.db`, `${dir}/backup.db`);
    alice = await open();
    const first = "attack at dawn!";
    const m1 = await send(alice, bob, first);
    await stop(alice);
    await Deno.copyFile(`${dir}/backup.db`, `${dir}/dim.db`);

    alice = await open();
    assert.equal(rollbacks.length, 1, "the start finds the database behind its mark");
    assert.ok(rollbacks[0]!.saves < rollbacks[0]!.mark!);
    assert.equal(rollbacks[0]!.dropped, 1);
    assert.equal(alice.sessions.hasSession(bob.identity.id), false);

    const second = "retreat at dusk";
    const m2 = await send(alice, bob, second);
    const reuse = reusesKey(m1, first, m2, second);
    assert.ok(
      !reuse.sameHeader && !reuse.keystream,
      `the second message reuses the first one's ratchet header (${reuse.sameHeader}) and ` +
        `AES-GCM key and nonce (ciphertext XOR = plaintext XOR: ${reuse.keystream})`,
    );
    // A new session from Bob's prekeys, which Bob reads, as he read the first.
    assert.equal(m2.contentType, SessionContentType.Initial);
    assert.notDeepEqual(m2.body.subarray(0, 8), m1.body.subarray(0, 8));
    assert.equal(await receive(bob, alice, m1), first);
    assert.equal(await receive(bob, alice, m2), second);
    assert.equal(await receive(alice, bob, await send(bob, alice, "roger")), "roger");
    assert.equal(await receive(bob, alice, await send(alice, bob, "over")), "over");
    await stop(alice);
    // The next start finds nothing amiss.
    alice = await open();
    assert.equal(rollbacks.length, 1);
    assert.equal(alice.sessions.hasSession(bob.identity.id), true);
    await stop(alice);
    bob.db.close();
  });
});

Deno.test("after a crash, a dim.db put back more than one mark interval is found out", async () => {
  await inTempDir(async (dir) => {
    let { alice, bob, open, stop, crash, rollbacks } = await setUp(dir, { markInterval: 4 });
    await stop(alice);
    await Deno.copyFile(`${dir}/dim.db`, `${dir}/backup.db`);
    alice = await open();
    const marked = await Deno.readTextFile(`${dir}/sessions.mark`);
    const sent: SessionResult[] = [];
    for (let i = 0; i < 4; i++) sent.push(await send(alice, bob, `m${i}`));
    // The mark is written after the save that completes the interval (once
    // its commit, which may be deferred, is made).
    const end = Date.now() + 5_000;
    while (await Deno.readTextFile(`${dir}/sessions.mark`) === marked && Date.now() < end) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await crash(alice);
    await Deno.copyFile(`${dir}/backup.db`, `${dir}/dim.db`);
    alice = await open();
    assert.equal(rollbacks.length, 1);
    const again = await send(alice, bob, "m0");
    assert.equal(again.contentType, SessionContentType.Initial);
    assert.equal(reusesKey(sent[0]!, "m0", again, "m0").sameHeader, false);
    await stop(alice);
    bob.db.close();
  });
});

Deno.test("a dim.db that counted saves but has no mark beside it is not trusted", async () => {
  await inTempDir(async (dir) => {
    let { alice, bob, open, stop, rollbacks } = await setUp(dir);
    await stop(alice);
    // dim.db alone, copied into a data directory of its own.
    await Deno.remove(`${dir}/sessions.mark`);
    alice = await open();
    assert.equal(rollbacks.length, 1);
    assert.equal(rollbacks[0]!.mark, undefined);
    assert.equal(alice.sessions.hasSession(bob.identity.id), false);
    assert.equal((await send(alice, bob, "anew")).contentType, SessionContentType.Initial);
    await stop(alice);
    // A mark that is not one counts as missing.
    await Deno.writeTextFile(`${dir}/sessions.mark`, "DIM counter 1\n-5\n");
    alice = await open();
    assert.equal(rollbacks.length, 2);
    await stop(alice);
    bob.db.close();
  });
});

Deno.test("a dim.db from before save counters starts at the mark if none was left, and is found out if one was", async () => {
  await inTempDir(async (dir) => {
    let { alice, bob, open, stop, rollbacks } = await setUp(dir);
    await stop(alice);
    const forget = () => {
      const db = UserStore.open(`${dir}/dim.db`);
      db.connection.run("forget", (d) => d.exec("DELETE FROM meta WHERE key = 'session_saves'"));
      db.close();
    };
    // The first start after the upgrade: no counter, no mark.
    forget();
    await Deno.remove(`${dir}/sessions.mark`);
    alice = await open();
    assert.equal(rollbacks.length, 0);
    assert.equal(alice.sessions.hasSession(bob.identity.id), true);
    assert.equal(await new CounterFile(`${dir}/sessions.mark`).read(), 0);
    assert.equal(await receive(bob, alice, await send(alice, bob, "upgraded")), "upgraded");
    await stop(alice);
    assert.ok((await new CounterFile(`${dir}/sessions.mark`).read())! > 0);
    // A copy from before the upgrade put back after a run that counted saves.
    forget();
    alice = await open();
    assert.equal(rollbacks.length, 1);
    assert.equal(rollbacks[0]!.saves, 0);
    assert.equal(alice.sessions.hasSession(bob.identity.id), false);
    await stop(alice);
    bob.db.close();
  });
});
