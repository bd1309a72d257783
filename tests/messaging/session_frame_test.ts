/**
 * Session frames on the wire: once a session is answered, its messages
 * leave without an envelope or a signature, go directly or through the
 * mailbox, and a copy replayed to the recipient or forwarded to someone
 * else changes nothing.
 */
import assert from "node:assert/strict";
import { sha256 } from "@noble/hashes/sha2.js";
import { openEnvelope } from "../../lib/crypto/envelope.ts";
import { initSender, ratchetDecrypt, ratchetEncrypt } from "../../lib/crypto/ratchet.ts";
import { decodeSession } from "../../lib/crypto/ratchet_session.ts";
import { toHex } from "../../lib/platform/bytes.ts";
import { encodeInitialMessage, encodeX3dhHeader, initiateX3dh } from "../../lib/crypto/x3dh.ts";
import { Identity } from "../../lib/crypto/identity.ts";
import { headerTrialCount } from "../../lib/crypto/header_ratchet.ts";
import { DecryptionError } from "../../lib/errors.ts";
import { MailboxServer } from "../../lib/messaging/mailbox.ts";
import { SessionManager } from "../../lib/messaging/sessions.ts";
import {
  isSessionFrame,
  MIN_SESSION_FRAME_LENGTH,
  SESSION_FRAME_KIND,
} from "../../lib/messaging/_session_frame.ts";
import { encodeFrame, FrameType, MESSAGE_PROTOCOL, StoreStatus } from "../../lib/messaging/wire.ts";
import { SecretBox } from "../../lib/crypto/secret_box.ts";
import { openPrekeyBundle, type PrekeyBundle, toX3dhBundle } from "../../lib/record/prekey.ts";
import { MailboxStore } from "../../lib/store/mailbox_store.ts";
import { UserStore } from "../../lib/store/user_store.ts";
import { FAST_MESSAGING, nextMessages, testNet } from "../_support/network.ts";
import { attackerNode, rawExchange, sleep } from "../hostile/_support.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

/** Alice's queued entries' wire bytes, read from her database. */
function queued(home: string): Uint8Array[] {
  using db = UserStore.open(`${home}/dim.db`);
  return db.outbox.list().map((e) => e.envelope);
}

Deno.test("after the first answer, messages go as session frames, directly and through the mailbox; copies change nothing", async () => {
  await using net = await testNet(2);
  const alice = await net.user("alice", {
    messaging: { ...FAST_MESSAGING, retryBaseMs: 60_000, retryMaxMs: 120_000 },
  });
  const bob = await net.user("bob");
  const carol = await net.user("carol");
  await alice.addContact("bob", bob.id);
  await bob.addContact("alice", alice.id);
  await carol.addContact("alice", alice.id);
  // The first message opens the session, in the envelope; Bob's answer is a frame.
  await alice.send("bob", "one");
  await nextMessages(bob, 1);
  const answer = await bob.send("alice", "hi alice");
  assert.equal((await nextMessages(alice, 1))[0]?.text, "hi alice");
  await bob.waitFor(answer.seq, { signal: AbortSignal.timeout(5000) });
  const two = await alice.send("bob", "two");
  assert.equal((await nextMessages(bob, 1))[0]?.text, "two");
  await alice.waitFor(two.seq, { signal: AbortSignal.timeout(5000) });

  // Bob goes offline: Alice's next message waits in her outbox and in his mailbox.
  await bob.stop();
  const three = await alice.send("bob", "three");
  const stored = await alice.waitFor(three.seq, {
    orStored: true,
    signal: AbortSignal.timeout(10_000),
  });
  assert.equal(stored.state, "stored", "a mailbox node took the frame");
  const [frame] = queued(`${net.dir}/alice`);
  assert.ok(frame !== undefined);
  assert.equal(frame[0], SESSION_FRAME_KIND, "no envelope");
  assert.ok(isSessionFrame(frame));
  // No signature or HPKE encapsulation: a 1-byte kind, a tag, a sealed
  // header and the ciphertext of the timestamp, content type and body.
  assert.equal(frame.length, MIN_SESSION_FRAME_LENGTH + enc("three").length);
  await assert.rejects(
    openEnvelope(await Identity.generate(), frame),
    DecryptionError,
  );

  const bob2 = await net.reopen("bob");
  const [got] = await nextMessages(bob2, 1, 15_000);
  assert.equal(got?.text, "three");
  assert.equal(got?.protection, "ratchet");
  assert.equal(got?.peer, alice.id);
  await alice.waitFor(three.seq, { signal: AbortSignal.timeout(10_000) });
  assert.equal(
    alice.profile.history(bob.id).find((m) => m.seq === three.seq)?.state,
    "delivered",
  );

  // Replayed to Bob, the frame is acknowledged again and shown once; forwarded
  // to Carol, it is refused and shows nothing.
  const attacker = await attackerNode(net.bootstrap());
  try {
    const shown: string[] = [];
    bob2.addEventListener("message", (e) => shown.push((e as CustomEvent).detail.text));
    const carolShown: string[] = [];
    carol.addEventListener("message", (e) => carolShown.push((e as CustomEvent).detail.text));
    const bytes = encodeFrame({ type: FrameType.Envelope, envelope: frame });
    const replay = await rawExchange(attacker, bob2.addresses[0]!, MESSAGE_PROTOCOL, bytes);
    assert.equal(replay.outcome, "answered");
    assert.equal(replay.received, 4 + 1 + 32 + 64, "an acknowledgement, not a refusal");
    const forward = await rawExchange(attacker, carol.addresses[0]!, MESSAGE_PROTOCOL, bytes);
    assert.equal(forward.outcome, "answered");
    assert.equal(forward.received, 4 + 1 + 1, "a refusal");
    await sleep(300);
    assert.deepEqual(shown, []);
    assert.deepEqual(carolShown, []);
    assert.deepEqual(bob2.profile.history(alice.id).map((m) => m.text), [
      "one",
      "hi alice",
      "two",
      "three",
    ]);
    assert.deepEqual(carol.profile.history(alice.id), []);
  } finally {
    await attacker.stop();
  }
  // The session goes on both ways after all that.
  await bob2.send("alice", "still here");
  assert.equal((await nextMessages(alice, 1))[0]?.text, "still here");
  await alice.send("bob", "good");
  assert.equal((await nextMessages(bob2, 1))[0]?.text, "good");
});

interface Party {
  identity: Identity;
  db: UserStore;
  sessions: SessionManager;
}

async function party(network: Map<string, PrekeyBundle>): Promise<Party> {
  const identity = await Identity.generate();
  const db = UserStore.open(":memory:");
  const sessions = new SessionManager({
    identity,
    storage: db,
    box: await SecretBox.forIdentity(identity),
    fetchBundle: (id) => Promise.resolve(network.get(id)),
  });
  network.set(identity.id, await openPrekeyBundle((await sessions.prekeyBundle()).bytes));
  return { identity, db, sessions };
}

const peerOf = (p: Party) => ({
  userId: p.identity.id,
  signingPublicKey: p.identity.signingPublicKey,
  encryptionPublicKey: p.identity.encryptionPublicKey,
});

async function send(from: Party, to: Party, text: string, id?: Uint8Array) {
  return await from.sessions.lock(async () => {
    const r = await from.sessions.encrypt(peerOf(to), 1, enc(text), {
      signal: AbortSignal.timeout(5000),
      ...(id ? { id } : {}),
    });
    await r.ready;
    from.db.transaction(() => r.save());
    return r;
  });
}

async function receive(at: Party, from: Party, sealed: Awaited<ReturnType<typeof send>>) {
  return await at.sessions.lock(async () => {
    if (sealed.frame !== undefined) {
      const r = await at.sessions.decryptFrame(
        sealed.frame,
        (peer, id) => at.db.messages.hasIncoming(peer, id),
      );
      if (r.duplicate) return "duplicate";
      at.db.transaction(() => {
        at.db.messages.insertIncoming({
          id: r.id,
          peer: r.peer,
          sentAt: r.timestamp,
          receivedAt: r.timestamp,
          contentType: r.contentType,
          body: r.body,
          via: "direct",
          protection: r.protection,
        });
        r.save();
      });
      return dec(r.body);
    }
    const r = await at.sessions.decrypt(peerOf(from), sealed.contentType, sealed.body);
    at.db.transaction(() => r.save());
    return dec(r.body);
  });
}

Deno.test("a frame's sender is found by its tag alone: unknown tags cost no decryption, a known one exactly one", async () => {
  const network = new Map<string, PrekeyBundle>();
  const alice = await party(network);
  const bob = await party(network);
  const carol = await party(network);
  assert.equal(await receive(bob, alice, await send(alice, bob, "open")), "open");
  const answer = await send(bob, alice, "answer");
  assert.ok(answer.frame !== undefined);
  assert.equal(await receive(alice, bob, answer), "answer");
  const m = await send(alice, bob, "frame");
  assert.ok(m.frame !== undefined);

  // Carol has sessions too, but none this tag names: refused without a trial.
  assert.equal(await receive(carol, alice, await send(alice, carol, "hello carol")), "hello carol");
  let trials = headerTrialCount();
  await assert.rejects(receive(carol, alice, m), DecryptionError);
  const junk = new Uint8Array(m.frame);
  junk.fill(7, 1, 17);
  await assert.rejects(receive(bob, alice, { ...m, frame: junk }), DecryptionError);
  assert.equal(headerTrialCount(), trials, "no header was tried");

  // A forged frame under Bob's tag: one trial, refused, nothing changes.
  const forged = new Uint8Array(m.frame);
  forged[40]! ^= 1;
  const before = bob.db.sessions.list(alice.identity.id).map((r) => r.state);
  trials = headerTrialCount();
  await assert.rejects(receive(bob, alice, { ...m, frame: forged }), DecryptionError);
  assert.equal(headerTrialCount(), trials + 1);
  assert.deepEqual(bob.db.sessions.list(alice.identity.id).map((r) => r.state), before);

  // The genuine frame reads, and its copy is recognized as one.
  assert.equal(await receive(bob, alice, m), "frame");
  assert.equal(await receive(bob, alice, m), "duplicate");
  // A restarted Bob builds his index from storage and still reads the next ones.
  bob.sessions = new SessionManager({
    identity: bob.identity,
    storage: bob.db,
    box: await SecretBox.forIdentity(bob.identity),
    fetchBundle: () => Promise.resolve(undefined),
  });
  assert.equal(await receive(bob, alice, m), "duplicate");
  assert.equal(await receive(bob, alice, await send(alice, bob, "after restart")), "after restart");
});

Deno.test("an older DIM's first message opens a session of the original ratchet, which keeps the envelope both ways", async () => {
  // An older DIM's first message: an X3DH version-1 header and the
  // original ratchet, as `SessionManager` wrote it before frames.
  const network = new Map<string, PrekeyBundle>();
  const alice = await party(network);
  const bob = await party(network);
  const init = await initiateX3dh(alice.identity, toX3dhBundle(network.get(bob.identity.id)!));
  const header = encodeX3dhHeader(init.header);
  assert.equal(header[0], 1);
  const state = await initSender(init.sharedSecret, init.remoteRatchetKey, init.associatedData);
  const first = await ratchetEncrypt(state, new Uint8Array([1, ...enc("from an older DIM")]));
  const body = new Uint8Array([
    ...sha256(header).subarray(0, 8),
    ...encodeInitialMessage({ header: init.header, message: first.message }),
  ]);
  const got = await bob.sessions.lock(async () => {
    const r = await bob.sessions.decrypt(peerOf(alice), 0x80, body);
    bob.db.transaction(() => r.save());
    return dec(r.body);
  });
  assert.equal(got, "from an older DIM");
  // Bob's answer in that session keeps the envelope (content type 0x81),
  // which the older DIM reads, and its next message reads at Bob.
  const answer = await send(bob, alice, "an envelope for you");
  assert.equal(answer.frame, undefined);
  assert.equal(answer.contentType, 0x81);
  assert.equal(answer.opens, undefined);
  const read = await ratchetDecrypt(first.state, answer.body.subarray(8));
  assert.equal(dec(read.plaintext.subarray(1)), "an envelope for you");
  const next = await ratchetEncrypt(read.state, new Uint8Array([1, ...enc("and back")]));
  const back = new Uint8Array([...answer.body.subarray(0, 8), ...next.message]);
  const again = await bob.sessions.lock(async () => {
    const r = await bob.sessions.decrypt(peerOf(alice), 0x81, back);
    bob.db.transaction(() => r.save());
    return dec(r.body);
  });
  assert.equal(again, "and back");
  // Stored, it is still a state without header keys (encoding version 2).
  const row = bob.db.sessions.list(alice.identity.id)[0]!;
  const box = await SecretBox.forIdentity(bob.identity);
  const label = `session:${alice.identity.id}:${toHex(row.sessionId)}:${row.counter}`;
  const plain = await box.open(label, row.state);
  assert.equal(plain[0], 2);
  assert.equal(decodeSession(plain).headerKeys, undefined);
});

Deno.test("a mailbox node accepts a session frame's shape and refuses a short one", async () => {
  using store = MailboxStore.open(":memory:");
  const now = Date.now();
  const server = new MailboxServer(store, { clock: () => now });
  const mailbox = new Uint8Array(32).fill(1);
  const store1 = (envelope: Uint8Array) =>
    server.answer({ type: FrameType.Store, mailbox, expiresAt: now + 60_000, envelope });
  const frame = crypto.getRandomValues(new Uint8Array(MIN_SESSION_FRAME_LENGTH + 10));
  frame[0] = SESSION_FRAME_KIND;
  assert.deepEqual(await store1(frame), {
    type: FrameType.StoreResult,
    status: StoreStatus.Stored,
  });
  assert.deepEqual(await store1(frame.subarray(0, MIN_SESSION_FRAME_LENGTH - 1)), {
    type: FrameType.StoreResult,
    status: StoreStatus.Invalid,
  });
});

Deno.test("the peer's acknowledgement of a first message answers the session: the next message is a frame", async () => {
  const network = new Map<string, PrekeyBundle>();
  const alice = await party(network);
  const bob = await party(network);
  const first = await send(alice, bob, "first");
  assert.equal(first.frame, undefined);
  assert.ok(first.opens !== undefined);
  const second = await send(alice, bob, "second, before any answer");
  assert.equal(second.frame, undefined, "still the envelope");
  assert.equal(await receive(bob, alice, first), "first");
  // Bob's signed acknowledgement of the first came back (the outbox checks it).
  await alice.sessions.lock(() =>
    Promise.resolve(
      alice.db.transaction(() => alice.sessions.acknowledged(bob.identity.id, first.opens!)),
    )
  );
  const third = await send(alice, bob, "third");
  assert.equal(third.frame?.[0], SESSION_FRAME_KIND);
  assert.equal(await receive(bob, alice, third), "third");
  // The envelope sent before the acknowledgement still reads after the frame.
  assert.equal(await receive(bob, alice, second), "second, before any answer");
  // Bob answers in the same session.
  const answer = await send(bob, alice, "answer");
  assert.equal(await receive(alice, bob, answer), "answer");
});
