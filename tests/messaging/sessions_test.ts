import assert from "node:assert/strict";
import { Identity } from "../../lib/crypto/identity.ts";
import { DecryptionError, StorageError } from "../../lib/errors.ts";
import {
  SessionContentType,
  SessionManager,
  type SessionManagerOptions,
} from "../../lib/messaging/sessions.ts";
import { decodeInitialMessage } from "../../lib/crypto/x3dh.ts";
import { openPrekeyBundle, type PrekeyBundle } from "../../lib/record/prekey.ts";
import { UserStore } from "../../lib/store/user_store.ts";
import { SecretBox } from "../../lib/crypto/secret_box.ts";
import { decodeSession } from "../../lib/crypto/ratchet_session.ts";
import { toHex } from "../../lib/platform/bytes.ts";
import type { RatchetState } from "../../lib/crypto/ratchet.ts";
import {
  MAX_OPENED_SESSION_STATES,
  RESERVED_SENDING_KEYS,
  SKIPPED_KEY_MAX_AGE_MS,
  UNSAVED_RECEIVED_MESSAGES,
} from "../../lib/messaging/constants.ts";
import type { StoredSession } from "../../lib/messaging/storage.ts";
import { SESSION_FRAME_KIND } from "../../lib/messaging/_session_frame.ts";

const TEXT = 1;
const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);
const signal = () => AbortSignal.timeout(5000);

interface Party {
  identity: Identity;
  db: UserStore;
  sessions: SessionManager;
  bundle?: PrekeyBundle;
  republished: number;
}

/** Two parties whose bundles are "in the network" as long as `online` says. */
async function pair(
  options: {
    bobHasPrekeys?: boolean;
    clock?: () => number;
    sessions?: SessionManagerOptions;
  } = {},
) {
  const network = new Map<string, PrekeyBundle>();
  const make = async (): Promise<Party> => {
    const identity = await Identity.generate();
    const db = UserStore.open(":memory:");
    const party: Party = {
      identity,
      db,
      republished: 0,
      sessions: undefined as unknown as SessionManager,
    };
    party.sessions = new SessionManager(
      {
        identity,
        storage: db,
        box: await SecretBox.forIdentity(identity),
        fetchBundle: (id) => Promise.resolve(network.get(id)),
      },
      {
        onPrekeysChanged: () => party.republished++,
        ...(options.clock ? { clock: options.clock } : {}),
        ...options.sessions,
      },
    );
    return party;
  };
  const alice = await make();
  const bob = await make();
  const publish = async (p: Party) => {
    const record = await p.sessions.prekeyBundle();
    network.set(p.identity.id, await openPrekeyBundle(record.bytes));
  };
  await publish(alice);
  if (options.bobHasPrekeys ?? true) await publish(bob);
  return { alice, bob, network, publish, make };
}

const peerOf = (p: Party) => ({
  userId: p.identity.id,
  signingPublicKey: p.identity.signingPublicKey,
  encryptionPublicKey: p.identity.encryptionPublicKey,
});

async function send(from: Party, to: Party, text: string) {
  return await from.sessions.lock(async () => {
    const r = await from.sessions.encrypt(peerOf(to), TEXT, enc(text), { signal: signal() });
    await r.ready;
    from.db.transaction(() => r.save());
    return r;
  });
}

async function receive(
  at: Party,
  from: Party,
  sealed: { contentType: number; body: Uint8Array; frame?: Uint8Array },
) {
  return await at.sessions.lock(async () => {
    if (sealed.frame !== undefined) {
      // A session frame names no sender: its session's peer is the sender.
      const r = await at.sessions.decryptFrame(sealed.frame, () => false);
      assert(!r.duplicate);
      assert.equal(r.peer, from.identity.id);
      at.db.transaction(() => r.save());
      return { text: dec(r.body), protection: r.protection, contentType: r.contentType };
    }
    const r = await at.sessions.decrypt(peerOf(from), sealed.contentType, sealed.body);
    at.db.transaction(() => r.save());
    return { text: dec(r.body), protection: r.protection, contentType: r.contentType };
  });
}

Deno.test("a first message to an offline user uses their prekeys and consumes one one-time prekey", async () => {
  const { alice, bob, network } = await pair();
  const before = network.get(bob.identity.id)!.oneTimePrekeys.length;
  const m1 = await send(alice, bob, "first");
  assert.equal(m1.contentType, SessionContentType.Initial);
  assert.equal(m1.protection, "ratchet");
  // Bob reads it later (nothing about Bob was online but his bundle).
  assert.deepEqual(await receive(bob, alice, m1), {
    text: "first",
    protection: "ratchet",
    contentType: TEXT,
  });
  await new Promise((r) => setTimeout(r, 0));
  assert.equal(bob.republished, 1, "the bundle is republished without the used prekey");
  const after = await openPrekeyBundle((await bob.sessions.prekeyBundle()).bytes);
  assert.equal(after.oneTimePrekeys.length, before - 1);
});

Deno.test("the initiator sends the X3DH header until the peer answers, then session frames", async () => {
  const { alice, bob } = await pair();
  const a1 = await send(alice, bob, "a1");
  const a2 = await send(alice, bob, "a2");
  assert.equal(a2.contentType, SessionContentType.Initial);
  assert.equal(a2.frame, undefined, "in the envelope until the peer answers");
  assert.equal((await receive(bob, alice, a2)).text, "a2", "out of order is fine");
  assert.equal((await receive(bob, alice, a1)).text, "a1");
  const b1 = await send(bob, alice, "b1");
  assert.equal(b1.frame?.[0], SESSION_FRAME_KIND, "the answer is a session frame");
  assert.equal(b1.contentType, TEXT);
  assert.equal((await receive(alice, bob, b1)).text, "b1");
  const a3 = await send(alice, bob, "a3");
  assert.equal(a3.frame?.[0], SESSION_FRAME_KIND);
  assert.equal((await receive(bob, alice, a3)).text, "a3");
});

Deno.test("a session is never downgraded: without the bundle, a peer with a session still gets ratchet messages", async () => {
  const { alice, bob, network } = await pair();
  await receive(bob, alice, await send(alice, bob, "hello"));
  network.clear();
  const m = await send(alice, bob, "still secret");
  assert.equal(m.protection, "ratchet");
  assert.equal((await receive(bob, alice, m)).text, "still secret");
});

Deno.test("a first contact without prekeys falls back to the static envelope, labelled as such", async () => {
  const { alice, bob } = await pair({ bobHasPrekeys: false });
  const m = await send(alice, bob, "no prekeys");
  assert.equal(m.protection, "static");
  assert.equal(m.contentType, TEXT);
  assert.equal(alice.sessions.hasSession(bob.identity.id), false);
  assert.equal((await receive(bob, alice, m)).protection, "static");
});

Deno.test("both users starting a session at once converge on one session", async () => {
  const { alice, bob } = await pair();
  const a1 = await send(alice, bob, "a1");
  const b1 = await send(bob, alice, "b1");
  assert.equal((await receive(bob, alice, a1)).text, "a1");
  assert.equal((await receive(alice, bob, b1)).text, "b1");
  // Each side may send on either session for a while; all of it must read.
  for (let i = 0; i < 3; i++) {
    assert.equal((await receive(bob, alice, await send(alice, bob, `a${i}`))).text, `a${i}`);
    assert.equal((await receive(alice, bob, await send(bob, alice, `b${i}`))).text, `b${i}`);
  }
  const current = (p: Party, other: Party) => p.db.sessions.list(other.identity.id)[0]!.sessionId;
  assert.deepEqual(current(alice, bob), current(bob, alice));
});

Deno.test("a forged initial message changes nothing and does not use up a prekey", async () => {
  const { alice, bob } = await pair();
  const m = await send(alice, bob, "genuine");
  const mallory = await Identity.generate();
  // The header names Alice, but the envelope was signed by Mallory.
  await assert.rejects(
    bob.sessions.decrypt(
      {
        userId: mallory.id,
        signingPublicKey: mallory.signingPublicKey,
        encryptionPublicKey: undefined,
      },
      m.contentType,
      m.body,
    ),
    DecryptionError,
  );
  // A flipped byte in the ratchet part: rejected, and the genuine one still reads.
  const flipped = new Uint8Array(m.body);
  flipped[flipped.length - 1]! ^= 1;
  await assert.rejects(receive(bob, alice, { ...m, body: flipped }), DecryptionError);
  assert.equal((await receive(bob, alice, m)).text, "genuine");
  assert.equal(bob.republished, 1, "one prekey consumed, by the genuine message only");
});

Deno.test("session states are sealed at rest", async () => {
  const { alice, bob } = await pair();
  await receive(bob, alice, await send(alice, bob, "x"));
  const row = alice.db.sessions.list(bob.identity.id)[0]!;
  // The sealed blob does not contain the encoded state's recognisable parts.
  const eve = await SecretBox.forIdentity(await Identity.generate());
  await assert.rejects(eve.open(`session:${bob.identity.id}`, row.state));
});

Deno.test("a bundle signed after the clock went back still supersedes the last one", async () => {
  const identity = await Identity.generate();
  const db = UserStore.open(":memory:");
  let now = Date.now();
  const sessions = new SessionManager({
    identity,
    storage: db,
    box: await SecretBox.forIdentity(identity),
    fetchBundle: () => Promise.resolve(undefined),
  }, { clock: () => now });
  const first = await sessions.prekeyBundle();
  now -= 10 * 60 * 1000;
  const second = await sessions.prekeyBundle();
  assert.ok(second.seq > first.seq);
  db.close();
});

/** The state a party has stored for its current session with a peer, opened. */
async function storedState(at: Party, peer: Party): Promise<RatchetState> {
  const row = at.db.sessions.list(peer.identity.id)[0]!;
  const box = await SecretBox.forIdentity(at.identity);
  const label = `session:${peer.identity.id}:${toHex(row.sessionId)}:${row.counter}`;
  return decodeSession(await box.open(label, row.state));
}

Deno.test("a skipped message key older than SKIPPED_KEY_MAX_AGE_MS is gone after the next save, and its message fails cleanly", async () => {
  let now = Date.now();
  const { alice, bob } = await pair({ clock: () => now });
  const early = await send(alice, bob, "early");
  const lost = await send(alice, bob, "delayed for a month");
  const kept = await send(alice, bob, "delayed a little");
  await receive(bob, alice, early);
  const late = await send(alice, bob, "late");
  await receive(bob, alice, late);
  assert.deepEqual((await storedState(bob, alice)).skippedMessageKeys.map((e) => e.storedAt), [
    now,
    now,
  ]);
  // Within the age, a delayed message still reads.
  now += SKIPPED_KEY_MAX_AGE_MS - 1;
  assert.equal((await receive(bob, alice, kept)).text, "delayed a little");
  assert.equal((await storedState(bob, alice)).skippedMessageKeys.length, 1);
  // Past it, the next save drops the key...
  now += 2;
  await receive(alice, bob, await send(bob, alice, "a month later"));
  await receive(bob, alice, await send(alice, bob, "and back"));
  assert.equal((await storedState(bob, alice)).skippedMessageKeys.length, 0);
  // ...and the message it was kept for fails like any undecryptable one, changing nothing.
  const before = bob.db.sessions.list(alice.identity.id)[0]!.state;
  await assert.rejects(receive(bob, alice, lost), DecryptionError);
  assert.deepEqual(bob.db.sessions.list(alice.identity.id)[0]!.state, before);
  assert.equal(
    (await receive(bob, alice, await send(alice, bob, "still fine"))).text,
    "still fine",
  );
});

Deno.test("an expired skipped key does not open a late message even before any save", async () => {
  let now = Date.now();
  const { alice, bob } = await pair({ clock: () => now });
  await receive(bob, alice, await send(alice, bob, "first"));
  const lost = await send(alice, bob, "lost");
  await receive(bob, alice, await send(alice, bob, "third"));
  now += SKIPPED_KEY_MAX_AGE_MS + 1;
  // The stored state still holds the key (nothing was saved since), but it is not used.
  assert.equal((await storedState(bob, alice)).skippedMessageKeys.length, 1);
  await assert.rejects(receive(bob, alice, lost), DecryptionError);
});

Deno.test("a state is bound to its session and save counter: moved to another counter or row, it does not open", async () => {
  const { alice, bob } = await pair();
  const a1 = await send(alice, bob, "a1");
  const b1 = await send(bob, alice, "b1");
  await receive(bob, alice, a1);
  await receive(alice, bob, b1);
  // Alice now keeps two sessions with Bob (both started one).
  const rows = alice.db.sessions.list(bob.identity.id);
  assert.equal(rows.length, 2);
  const [current, other] = rows as [StoredSession, StoredSession];
  assert.ok(current.counter > 0 && other.counter > 0);
  for (
    const moved of [
      { ...current, counter: current.counter + 1 },
      { ...current, state: other.state },
      { ...current, state: other.state, counter: other.counter },
    ]
  ) {
    alice.db.sessions.save(moved);
    await assert.rejects(send(alice, bob, "x"), StorageError);
  }
  alice.db.sessions.save(current);
  assert.equal((await receive(bob, alice, await send(alice, bob, "back"))).text, "back");
});

Deno.test("each save takes the next counter, committed with the state or not at all", async () => {
  const { alice, bob } = await pair();
  const saves = () => Number(alice.db.settings.get("session_saves"));
  await send(alice, bob, "one");
  const after = saves();
  assert.equal(alice.db.sessions.list(bob.identity.id)[0]!.counter, after);
  // A transaction that fails after the save leaves the counter and the state as they were.
  const r = await alice.sessions.lock(async () => {
    const r = await alice.sessions.encrypt(peerOf(bob), TEXT, enc("two"), { signal: signal() });
    await r.ready;
    return r;
  });
  assert.throws(() =>
    alice.db.transaction(() => {
      r.save();
      throw new Error("the outbox entry could not be written");
    })
  );
  assert.equal(saves(), after);
  assert.equal(alice.db.sessions.list(bob.identity.id)[0]!.counter, after);
  await send(alice, bob, "three");
  assert.ok(saves() > after);
});

Deno.test("a session sealed before save counters still reads, and is sealed with one at its next save", async () => {
  const { alice, bob } = await pair();
  await receive(bob, alice, await send(alice, bob, "before the upgrade"));
  // Bob's row as an older DIM left it: sealed under the peer alone, no counter anywhere.
  const row = bob.db.sessions.list(alice.identity.id)[0]!;
  const box = await SecretBox.forIdentity(bob.identity);
  const label = `session:${alice.identity.id}:${toHex(row.sessionId)}:${row.counter}`;
  const plain = await box.open(label, row.state);
  const legacy = await box.seal(`session:${alice.identity.id}`, plain);
  bob.db.sessions.save({ ...row, state: legacy, counter: 0 });
  bob.db.connection.run("forget", (db) => db.exec("DELETE FROM meta WHERE key = 'session_saves'"));
  const upgraded = new SessionManager({
    identity: bob.identity,
    storage: bob.db,
    box,
    fetchBundle: () => Promise.resolve(undefined),
  });
  bob.sessions = upgraded;
  assert.equal(await upgraded.whenReady(), undefined);
  assert.equal((await receive(bob, alice, await send(alice, bob, "after"))).text, "after");
  const now = bob.db.sessions.list(alice.identity.id)[0]!;
  assert.ok(now.counter > 0);
  assert.equal(Number(bob.db.settings.get("session_saves")), now.counter);
  assert.equal((await receive(alice, bob, await send(bob, alice, "answer"))).text, "answer");
});

/** A first message to `to` that names one-time prekey `oneTimePrekeyId` (`null`: none). */
async function sendWith(
  from: Party,
  to: Party,
  bundle: PrekeyBundle,
  oneTimePrekeyId: number | null,
  text: string,
) {
  return await from.sessions.lock(async () => {
    const r = await from.sessions.encrypt(peerOf(to), TEXT, enc(text), {
      signal: signal(),
      bundle,
      oneTimePrekeyId,
    });
    await r.ready;
    from.db.transaction(() => r.save());
    return r;
  });
}

/** Receives a message from someone who is not a contact: no pinned X25519 key. */
async function receiveFromStranger(
  at: Party,
  from: Party,
  sealed: { contentType: number; body: Uint8Array },
) {
  return await at.sessions.lock(async () => {
    const r = await at.sessions.decrypt(
      {
        userId: from.identity.id,
        signingPublicKey: from.identity.signingPublicKey,
        encryptionPublicKey: undefined,
      },
      sealed.contentType,
      sealed.body,
    );
    at.db.transaction(() => r.save());
    return dec(r.body);
  });
}

/** The one-time prekey IDs Bob would list now. */
async function listed(p: Party): Promise<number[]> {
  return (await openPrekeyBundle((await p.sessions.prekeyBundle()).bytes)).oneTimePrekeys
    .map((k) => k.id);
}

Deno.test("strangers use up one-time prekeys only within their budget; contacts always", async () => {
  let now = Date.now();
  const { alice, bob, network, make } = await pair({
    clock: () => now,
    sessions: { strangerPrekeyBurst: 2, strangerPrekeyRefillMs: 60_000 },
  });
  const bundle = network.get(bob.identity.id)!;
  const ids = bundle.oneTimePrekeys.map((k) => k.id);
  const strangers = [await make(), await make(), await make()];
  for (const [i, stranger] of strangers.entries()) {
    const m = await sendWith(stranger, bob, bundle, ids[i]!, `stranger ${i}`);
    assert.equal(await receiveFromStranger(bob, stranger, m), `stranger ${i}`);
  }
  await new Promise((r) => setTimeout(r, 0));
  assert.equal(bob.republished, 2, "two prekeys used up, then the budget is spent");
  let left = await listed(bob);
  assert.ok(!left.includes(ids[0]!) && !left.includes(ids[1]!));
  assert.ok(left.includes(ids[2]!), "the third stranger's prekey stays on offer");
  // The third stranger's session works both ways.
  const answer = await send(bob, strangers[2]!, "hello stranger");
  assert.equal((await receive(strangers[2]!, bob, answer)).text, "hello stranger");
  // A contact's first message is not counted against the budget.
  await receive(bob, alice, await sendWith(alice, bob, bundle, ids[3]!, "from a contact"));
  await new Promise((r) => setTimeout(r, 0));
  assert.equal(bob.republished, 3);
  assert.ok(!(await listed(bob)).includes(ids[3]!));
  // A minute later, one more stranger may use one up.
  now += 60_000;
  const later = await make();
  await receiveFromStranger(bob, later, await sendWith(later, bob, bundle, ids[2]!, "later"));
  await new Promise((r) => setTimeout(r, 0));
  assert.equal(bob.republished, 4);
  left = await listed(bob);
  assert.ok(!left.includes(ids[2]!));
});

Deno.test("a first message may name no one-time prekey: it opens on the signed prekey and uses none up", async () => {
  const { alice, bob, network } = await pair();
  const m = await sendWith(alice, bob, network.get(bob.identity.id)!, null, "signed prekey only");
  assert.equal(decodeInitialMessage(m.body.subarray(8)).header.oneTimePrekeyId, null);
  assert.equal((await receive(bob, alice, m)).text, "signed prekey only");
  await new Promise((r) => setTimeout(r, 0));
  assert.equal(bob.republished, 0);
});

Deno.test("a retry after 'no session' takes no one-time prekey while the bundle still lists the one that failed", async () => {
  const { alice, bob, network, publish, make } = await pair();
  const stale = network.get(bob.identity.id)!;
  const taken = stale.oneTimePrekeys[0]!.id;
  // A stranger uses the prekey first; Alice's first message names it too.
  const mallory = await make();
  await receiveFromStranger(bob, mallory, await sendWith(mallory, bob, stale, taken, "first"));
  const refused = await sendWith(alice, bob, stale, taken, "hello");
  await assert.rejects(receive(bob, alice, refused), DecryptionError);
  // Found again, the stale bundle still lists it: the new session takes none.
  assert.equal(alice.sessions.retryPrekeyChoice(bob.identity.id, stale), null);
  // Bob's newer bundle no longer lists it: a prekey at random, as usual.
  await publish(bob);
  const fresh = network.get(bob.identity.id)!;
  assert.equal(alice.sessions.retryPrekeyChoice(bob.identity.id, fresh), undefined);
  // The retry, as the outbox makes it: the old sessions go, a new one reads.
  alice.db.transaction(() => alice.db.sessions.deleteAll(bob.identity.id));
  const retry = await sendWith(alice, bob, stale, null, "hello");
  assert.equal((await receive(bob, alice, retry)).text, "hello");
  // Once Bob has answered, a refusal is not about prekeys.
  await receive(alice, bob, await send(bob, alice, "hi"));
  assert.equal(alice.sessions.retryPrekeyChoice(bob.identity.id, stale), undefined);
});

/** Sends as the outbox does: the state saved in the message's transaction, then the flush reported. */
async function sendFlushed(from: Party, to: Party, text: string) {
  const r = await send(from, to, text);
  r.flushed?.();
  return r;
}

/** Alice's session manager started again on her store, as after a crash or a stop. */
async function restarted(alice: Party): Promise<Party> {
  const sessions = new SessionManager({
    identity: alice.identity,
    storage: alice.db,
    box: await SecretBox.forIdentity(alice.identity),
    fetchBundle: () => Promise.resolve(undefined),
  });
  return { ...alice, sessions };
}

Deno.test("a flushed save reserves the chain's next keys: their messages save nothing, and after a crash the chain resumes past them", async () => {
  const { alice, bob } = await pair();
  assert.equal((await receive(bob, alice, await sendFlushed(alice, bob, "open"))).text, "open");
  // The next message's save reserves keys 1 to 16: at rest, the chain stands at 17.
  const grant = await sendFlushed(alice, bob, "grant");
  assert.notEqual(grant.reserved, true, "it waits for its own flush");
  assert.equal((await storedState(alice, bob)).sendingCount, 1 + RESERVED_SENDING_KEYS);
  assert.equal((await receive(bob, alice, grant)).text, "grant");
  const saves = alice.db.sessions.list(bob.identity.id)[0]!.counter;
  for (let i = 2; i < RESERVED_SENDING_KEYS; i++) {
    const m = await sendFlushed(alice, bob, `m${i}`);
    assert.equal(m.reserved, true, `message ${i} may leave before its flush`);
    assert.equal((await receive(bob, alice, m)).text, `m${i}`);
  }
  assert.equal(alice.db.sessions.list(bob.identity.id)[0]!.counter, saves, "no state saved");
  // A crash: the live chain (at 16) is lost; the one at rest resumes at 17.
  const again = await restarted(alice);
  const after = await send(again, bob, "after the crash");
  assert.notEqual(after.reserved, true);
  assert.equal((await receive(bob, alice, after)).text, "after the crash");
  assert.equal((await storedState(bob, alice)).skippedMessageKeys.length, 1, "key 16, never used");
});

Deno.test("a reservation ends with its chain and its keys: a DH step or the last reserved key makes the next save reserve again", async () => {
  const { alice, bob } = await pair();
  await receive(bob, alice, await sendFlushed(alice, bob, "open"));
  await receive(bob, alice, await sendFlushed(alice, bob, "grant"));
  const reserved = await sendFlushed(alice, bob, "reserved");
  assert.equal(reserved.reserved, true);
  await receive(bob, alice, reserved);
  // Bob answers: Alice's next message starts a new chain, with no key reserved yet.
  await receive(alice, bob, await sendFlushed(bob, alice, "answer"));
  const newChain = await sendFlushed(alice, bob, "new chain");
  assert.notEqual(newChain.reserved, true);
  await receive(bob, alice, newChain);
  let sent = 0;
  for (; sent < RESERVED_SENDING_KEYS - 1; sent++) {
    const m = await sendFlushed(alice, bob, `m${sent}`);
    assert.equal(m.reserved, true);
    await receive(bob, alice, m);
  }
  const past = await sendFlushed(alice, bob, "past the reservation");
  assert.notEqual(past.reserved, true, "saved and flushed, reserving the next keys");
  assert.equal((await receive(bob, alice, past)).text, "past the reservation");
  assert.deepEqual((await storedState(bob, alice)).skippedMessageKeys, []);
});

Deno.test("a clean stop saves the live chain: the next start skips no key; an unflushed reservation covers nothing", async () => {
  const { alice, bob } = await pair();
  await receive(bob, alice, await sendFlushed(alice, bob, "open"));
  // Saved but its flush never reported: the next messages still save their states.
  const unflushed = await send(alice, bob, "unflushed");
  await receive(bob, alice, unflushed);
  const next = await send(alice, bob, "still saved");
  assert.notEqual(next.reserved, true);
  next.flushed?.();
  await receive(bob, alice, next);
  for (let i = 0; i < 3; i++) {
    const m = await sendFlushed(alice, bob, `m${i}`);
    assert.equal(m.reserved, true);
    await receive(bob, alice, m);
  }
  await alice.sessions.close();
  assert.equal(
    (await storedState(alice, bob)).sendingCount,
    6,
    "the live chain, not its reservation",
  );
  const again = await restarted(alice);
  assert.equal((await receive(bob, alice, await send(again, bob, "after"))).text, "after");
  assert.deepEqual((await storedState(bob, alice)).skippedMessageKeys, []);
});

/** Bob's session with Alice established both ways, as a chat has it. */
async function chatting() {
  const parties = await pair();
  const { alice, bob } = parties;
  await receive(bob, alice, await sendFlushed(alice, bob, "open"));
  await receive(alice, bob, await sendFlushed(bob, alice, "answer"));
  await receive(bob, alice, await sendFlushed(alice, bob, "new chain"));
  return parties;
}

const savesOf = (at: Party, peer: Party) => at.db.sessions.list(peer.identity.id)[0]!.counter;

Deno.test("messages that only move the receiving chain on leave the state unsaved, up to UNSAVED_RECEIVED_MESSAGES - 1 in a row", async () => {
  const { alice, bob } = await chatting();
  const saves = savesOf(bob, alice);
  const atRest = (await storedState(bob, alice)).receivingCount;
  for (let i = 1; i < UNSAVED_RECEIVED_MESSAGES; i++) {
    assert.equal((await receive(bob, alice, await sendFlushed(alice, bob, `m${i}`))).text, `m${i}`);
    assert.equal(savesOf(bob, alice), saves, `message ${i}: no save`);
  }
  assert.equal((await storedState(bob, alice)).receivingCount, atRest);
  // The next one saves the state, with all the messages before it.
  await receive(bob, alice, await sendFlushed(alice, bob, "saved"));
  assert.equal(savesOf(bob, alice), saves + 1);
  assert.equal((await storedState(bob, alice)).receivingCount, atRest + UNSAVED_RECEIVED_MESSAGES);
  // A message out of order stores a skipped key: saved at once.
  const skipped = await sendFlushed(alice, bob, "late");
  await receive(bob, alice, await sendFlushed(alice, bob, "early"));
  assert.equal(savesOf(bob, alice), saves + 2);
  assert.equal((await storedState(bob, alice)).skippedMessageKeys.length, 1);
  // And one that uses it is saved too.
  assert.equal((await receive(bob, alice, skipped)).text, "late");
  assert.equal(savesOf(bob, alice), saves + 3);
  assert.deepEqual((await storedState(bob, alice)).skippedMessageKeys, []);
});

Deno.test("unsaved received messages are saved by a message sent, a DH step and a clean stop", async () => {
  const { alice, bob } = await chatting();
  await receive(bob, alice, await sendFlushed(alice, bob, "kept"));
  const saves = savesOf(bob, alice);
  const live = (await storedState(bob, alice)).receivingCount + 1;
  // Bob answers: his message's save holds what he received.
  const answer = await send(bob, alice, "answer");
  assert.equal(savesOf(bob, alice), saves + 1);
  assert.equal((await storedState(bob, alice)).receivingCount, live);
  answer.flushed?.();
  await receive(alice, bob, answer);
  // Alice's next message is a DH step at Bob: saved at once.
  await receive(bob, alice, await sendFlushed(alice, bob, "step"));
  assert.equal(savesOf(bob, alice), saves + 2);
  // Kept again, then a clean stop saves it.
  await receive(bob, alice, await sendFlushed(alice, bob, "kept again"));
  assert.equal(savesOf(bob, alice), saves + 2);
  const before = (await storedState(bob, alice)).receivingCount;
  await bob.sessions.close();
  assert.equal(savesOf(bob, alice), saves + 3);
  assert.equal((await storedState(bob, alice)).receivingCount, before + 1);
});

Deno.test("after a crash, a state left behind by unsaved messages reads on: their keys come back as skipped keys, and copies of them are duplicates", async () => {
  const { alice, bob } = await chatting();
  const sent: Awaited<ReturnType<typeof sendFlushed>>[] = [];
  for (let i = 0; i < 5; i++) {
    const m = await sendFlushed(alice, bob, `m${i}`);
    sent.push(m);
    await receive(bob, alice, m);
  }
  // A crash: Bob's live state is lost; the one at rest is five messages back.
  const again = await restarted(bob);
  const after = await sendFlushed(alice, bob, "after the crash");
  assert.equal((await receive(again, alice, after)).text, "after the crash");
  assert.equal((await storedState(bob, alice)).skippedMessageKeys.length, 5);
  // A copy of a message Bob stored before the crash decrypts with its
  // skipped key; the caller's ID check (here: always "seen") drops it.
  const copy = await again.sessions.lock(() =>
    again.sessions.decryptFrame(sent[2]!.frame!, () => true)
  );
  assert.equal(copy.duplicate, false, "decrypted: the messages store tells it is a copy by its ID");
  assert.equal(dec((copy as { body: Uint8Array }).body), "m2");
  // Its state is not saved unless the message is new (the caller's choice):
  // the skipped key stays until it expires.
  assert.equal((await storedState(bob, alice)).skippedMessageKeys.length, 5);
});

Deno.test("states with unsaved received messages stay in memory when the cache is full, and at most half the cache's worth of peers have any", async () => {
  const { bob, make, publish } = await pair();
  const peers: Party[] = [];
  // Each peer and Bob start chatting (every state saved at Bob), then the
  // peer sends one more message: kept unsaved for the first
  // MAX_OPENED_SESSION_STATES / 2 peers only.
  for (let i = 0; i <= MAX_OPENED_SESSION_STATES; i++) {
    const peer = await make();
    peers.push(peer);
    await receive(bob, peer, await sendFlushed(peer, bob, "open"));
    await publish(bob); // the next peer takes another one-time prekey
    await receive(peer, bob, await sendFlushed(bob, peer, "answer"));
    await receive(bob, peer, await sendFlushed(peer, bob, "new chain"));
    const saves = savesOf(bob, peer);
    await receive(bob, peer, await sendFlushed(peer, bob, "second"));
    const kept = i < MAX_OPENED_SESSION_STATES / 2;
    assert.equal(savesOf(bob, peer), kept ? saves : saves + 1, `peer ${i}`);
  }
  // More than the cache holds have been opened: the others were evicted,
  // those with unsaved messages were not. Their next message skips no key.
  const first = peers[0]!;
  assert.equal((await receive(bob, first, await sendFlushed(first, bob, "third"))).text, "third");
  assert.deepEqual((await storedState(bob, first)).skippedMessageKeys, []);
  // A clean stop saves what each kept.
  await bob.sessions.close();
  for (const peer of peers.slice(1, MAX_OPENED_SESSION_STATES / 2)) {
    assert.equal((await storedState(bob, peer)).receivingCount, 2, "new chain, second");
  }
});
