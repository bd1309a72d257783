/**
 * Strangers and one-time prekeys (security review L3). Anyone may start a
 * session with a user, and each first message names one of the user's
 * one-time prekeys: a flood of first messages from fresh identities must
 * not cost the user a signature and a DHT put each, nor use up the prekeys
 * their contacts need; and a contact who fetched the bundle before a
 * stranger used the same prekey must get through after one retry, not wait
 * for the once-a-minute session restart.
 *
 * The strangers here build their first messages by hand (X3DH, the first
 * ratchet message, the signed envelope), as an attacker would, and send
 * them to Bob's node over `/dim/msg`.
 */
import assert from "node:assert/strict";
import { sha256 } from "@noble/hashes/sha2.js";
import { concat, utf8 } from "../../lib/platform/bytes.ts";
import { sealEnvelope } from "../../lib/crypto/envelope.ts";
import { Identity } from "../../lib/crypto/identity.ts";
import { initSender, ratchetEncrypt } from "../../lib/crypto/ratchet.ts";
import { encodeInitialMessage, encodeX3dhHeader, initiateX3dh } from "../../lib/crypto/x3dh.ts";
import type { DhtNode } from "../../lib/dht/node.ts";
import { STRANGER_PREKEY_BURST } from "../../lib/messaging/constants.ts";
import { SessionContentType } from "../../lib/messaging/sessions.ts";
import {
  encodeFrame,
  type Frame,
  FrameReader,
  FrameType,
  MESSAGE_PROTOCOL,
} from "../../lib/messaging/wire.ts";
import type { Messenger } from "../../lib/messenger/messenger.ts";
import { profileParts } from "../../lib/profile/_internals.ts";
import {
  openPrekeyBundle,
  PREKEY_RECORD_TYPE,
  type PrekeyBundle,
  signPrekeyBundle,
  toX3dhBundle,
} from "../../lib/record/prekey.ts";
import { MAX_ONE_TIME_PREKEYS } from "../../lib/record/prekey_secrets.ts";
import { recordKey } from "../../lib/record/record.ts";
import { nextMessages, testNet } from "../_support/network.ts";
import { attackerNode, figure, sleep, until } from "./_support.ts";

const TEXT = 1;

/** A first message from a fresh identity to Bob, naming one-time prekey `oneTimePrekeyId`. */
async function strangerEnvelope(
  bob: Messenger,
  bundle: PrekeyBundle,
  oneTimePrekeyId: number,
  text: string,
): Promise<{ stranger: Identity; envelope: Uint8Array }> {
  const stranger = await Identity.generate();
  const init = await initiateX3dh(stranger, toX3dhBundle(bundle, { oneTimePrekeyId }));
  const header = encodeX3dhHeader(init.header);
  const state = await initSender(init.sharedSecret, init.remoteRatchetKey, init.associatedData);
  const { message } = await ratchetEncrypt(state, concat(new Uint8Array([TEXT]), utf8(text)));
  const sessionId = sha256(header).subarray(0, 8);
  const body = concat(sessionId, encodeInitialMessage({ header: init.header, message }));
  const envelope = await sealEnvelope(stranger, bob.profile.publicIdentity, {
    body,
    contentType: SessionContentType.Initial,
  });
  return { stranger, envelope };
}

/** Sends envelopes to Bob on one stream and reads one reply for each. */
async function deliver(from: DhtNode, bob: Messenger, envelopes: Uint8Array[]): Promise<Frame[]> {
  const signal = AbortSignal.timeout(20_000);
  const stream = await from.dialProtocol(bob.addresses[0]!, MESSAGE_PROTOCOL, { signal });
  try {
    const frames = envelopes.map((envelope) => encodeFrame({ type: FrameType.Envelope, envelope }));
    if (!stream.send(concat(...frames))) await stream.onDrain({ signal });
    const reader = new FrameReader(stream);
    const replies: Frame[] = [];
    while (replies.length < envelopes.length) {
      const reply = await reader.next();
      if (reply === undefined) break;
      replies.push(reply);
    }
    return replies;
  } finally {
    await stream.close().catch(() => {});
  }
}

/** Bob's bundle as the network has it now. */
async function bundleOf(node: DhtNode, bob: Messenger): Promise<PrekeyBundle> {
  const bytes = await node.get(recordKey(PREKEY_RECORD_TYPE, bob.id));
  assert.ok(bytes !== undefined, "Bob's bundle is in the network");
  return await openPrekeyBundle(bytes);
}

/** Counts the puts of Bob's prekey record from his node from now on. */
function countPrekeyPuts(bob: Messenger): { readonly count: number } {
  const key = `/dim/${PREKEY_RECORD_TYPE}/${bob.id}`;
  const node = bob.node as { put: DhtNode["put"] };
  const put = node.put.bind(bob.node);
  const counter = { count: 0 };
  node.put = (k, value, options) => {
    if (k === key) counter.count++;
    return put(k, value, options);
  };
  return counter;
}

/**
 * `count` strangers, each with a first message to Bob that names its own
 * one-time prekey of `bundle`; every one must be acknowledged.
 */
async function flood(
  attacker: DhtNode,
  bob: Messenger,
  bundle: PrekeyBundle,
  count: number,
): Promise<Identity[]> {
  assert.ok(bundle.oneTimePrekeys.length >= count);
  const made = await Promise.all(
    bundle.oneTimePrekeys.slice(0, count).map((k, i) =>
      strangerEnvelope(bob, bundle, k.id, `hello from stranger ${i}`)
    ),
  );
  const replies = await deliver(attacker, bob, made.map((m) => m.envelope));
  assert.deepEqual(
    replies.map((r) => r.type),
    made.map(() => FrameType.Ack),
    "every stranger's first message is taken",
  );
  return made.map((m) => m.stranger);
}

Deno.test("first messages from many strangers cause one republication of the bundle, not one each", async () => {
  await using net = await testNet();
  const bob = await net.user("bob");
  const attacker = await attackerNode(net.bootstrap());
  try {
    const before = await bundleOf(attacker, bob);
    const puts = countPrekeyPuts(bob);
    const count = Math.min(10, STRANGER_PREKEY_BURST);
    await flood(attacker, bob, before, count);
    // The quiet period of the republication, and the put.
    await until("a republication", () => puts.count > 0, 10_000);
    await sleep(1500);
    figure("prekey-republications", { firstMessages: count, puts: puts.count });
    assert.ok(puts.count <= 2, `${count} first messages made ${puts.count} puts of the bundle`);
    const after = await bundleOf(attacker, bob);
    const used = new Set(before.oneTimePrekeys.slice(0, count).map((k) => k.id));
    assert.deepEqual(
      after.oneTimePrekeys.filter((k) => used.has(k.id)),
      [],
      "the one publication leaves out every used prekey",
    );
  } finally {
    await attacker.stop();
  }
});

Deno.test("strangers cannot use up the one-time prekeys: beyond a budget their first messages leave them", async () => {
  await using net = await testNet();
  const bob = await net.user("bob");
  const attacker = await attackerNode(net.bootstrap());
  try {
    const before = await bundleOf(attacker, bob);
    assert.equal(before.oneTimePrekeys.length, MAX_ONE_TIME_PREKEYS);
    const count = STRANGER_PREKEY_BURST + 20;
    const strangers = await flood(attacker, bob, before, count);
    // Every message arrived, in a session (the prekeys are a matter of forward secrecy only).
    for (const s of strangers) {
      const got = bob.profile.history(s.id);
      assert.deepEqual(got.map((m) => m.protection), ["ratchet"]);
    }
    await until("a republication", async () => (await bundleOf(attacker, bob)).seq > before.seq);
    await sleep(500);
    const left = (await bundleOf(attacker, bob)).oneTimePrekeys.length;
    figure("prekeys-left", { strangers: count, left, of: MAX_ONE_TIME_PREKEYS });
    assert.ok(
      left >= MAX_ONE_TIME_PREKEYS - STRANGER_PREKEY_BURST,
      `${count} strangers left ${left} of ${MAX_ONE_TIME_PREKEYS} one-time prekeys`,
    );
  } finally {
    await attacker.stop();
  }
});

Deno.test("a contact whose prekey a stranger used first gets through after one retry", async () => {
  await using net = await testNet();
  const bob = await net.user("bob");
  const alice = await net.user("alice");
  await alice.addContact("bob", bob.id);
  await bob.addContact("alice", alice.id);
  const attacker = await attackerNode(net.bootstrap());
  try {
    const current = await bundleOf(attacker, bob);
    const taken = current.oneTimePrekeys[0]!;
    // What Alice fetched earlier: Bob's bundle when the prekey the stranger
    // is about to use was the one Alice's random choice would land on. (A
    // bundle Bob signed listing only that prekey makes the choice certain;
    // the network keeps serving it, as nodes that missed Bob's newer put do.)
    const bobIdentity = profileParts(bob.profile).identity();
    const spk = current.signedPrekey;
    const dummy = new Uint8Array(32);
    const stale = await signPrekeyBundle(bobIdentity, {
      signedPrekeys: [{ ...spk, privateKey: dummy, retiredAt: null }],
      oneTimePrekeys: [{ ...taken, privateKey: dummy }],
      nextId: taken.id + 1,
    }, { seq: current.seq, now: current.issuedAt });
    const key = recordKey(PREKEY_RECORD_TYPE, bob.id);
    const aliceNode = alice.node as { get: DhtNode["get"] };
    const get = aliceNode.get.bind(alice.node);
    aliceNode.get = (k, options) => k === key ? Promise.resolve(stale.bytes) : get(k, options);

    // A stranger uses that prekey first.
    const { envelope } = await strangerEnvelope(bob, current, taken.id, "I was first");
    const [reply] = await deliver(attacker, bob, [envelope]);
    assert.equal(reply?.type, FrameType.Ack);
    assert.equal((await nextMessages(bob, 1))[0]?.text, "I was first");

    const started = performance.now();
    const sent = await alice.send("bob", "hello Bob");
    const [got] = await nextMessages(bob, 1, 15_000);
    assert.equal(got?.text, "hello Bob");
    assert.equal(got?.protection, "ratchet");
    await alice.waitFor(sent.seq, { signal: AbortSignal.timeout(5000) });
    figure("prekey-collision", { deliveredMs: Math.round(performance.now() - started) });
    // The session goes on both ways.
    await bob.send("alice", "hi Alice");
    const [back] = await nextMessages(alice, 1);
    assert.equal(back?.text, "hi Alice");
  } finally {
    await attacker.stop();
  }
});
