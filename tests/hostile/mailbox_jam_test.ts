/**
 * Jamming offline delivery (issue 16, M2 and the mailbox FETCH/DELETE
 * item): STOREs need no authentication, so a stranger tries to fill a
 * victim's mailbox or a whole node with junk, to read a mailbox it does not
 * own, and to replay its owner's DELETE.
 */
import assert from "node:assert/strict";
import { Identity } from "../../lib/crypto/identity.ts";
import { mailboxAddress, type MessageStream } from "../../lib/messaging/mailbox.ts";
import {
  encodeFrame,
  type Frame,
  FrameReader,
  FrameType,
  MAILBOX_PROTOCOL,
  MailboxRefusal,
  mailboxRequestSignedBytes,
  StoreStatus,
} from "../../lib/messaging/wire.ts";
import { createStorageNode } from "../../lib/storage_node.ts";
import type { DhtNode } from "../../lib/dht/node.ts";
import { ENVELOPE_VERSION, MIN_ENVELOPE_LENGTH, sealEnvelope } from "../../lib/crypto/envelope.ts";
import { FAST_MESSAGING, LOOPBACK, nextMessages, testNet } from "../_support/network.ts";
import { copiesOn, testIdentity } from "../messaging/_mailbox_probe.ts";
import { attackerNode, figure, pool, Random, sleep } from "./_support.ts";

async function exchange(
  from: DhtNode,
  to: string,
  bytes: Uint8Array,
  protocol = MAILBOX_PROTOCOL,
): Promise<Frame | undefined> {
  let stream: MessageStream | undefined;
  try {
    stream = await from.dialProtocol(to, protocol, { signal: AbortSignal.timeout(5000) });
    stream.send(bytes);
    const reply = await new FrameReader(stream).next();
    await stream.close().catch(() => {});
    return reply;
  } catch {
    stream?.abort(new Error("refused"));
    return undefined;
  }
}

const store = (from: DhtNode, to: string, mailbox: Uint8Array, envelope: Uint8Array) =>
  exchange(
    from,
    to,
    encodeFrame({ type: FrameType.Store, mailbox, expiresAt: Date.now() + 3600_000, envelope }),
  );

const statusOf = (f: Frame | undefined) => f?.type === FrameType.StoreResult ? f.status : -1;

Deno.test("200 one-byte STOREs from one peer do not keep a contact's envelope out", async () => {
  await using node = await createStorageNode({ listen: LOOPBACK });
  const to = node.addresses[0]!;
  const attacker = await attackerNode([to]);
  const contact = await attackerNode([to]);
  try {
    const bob = await Identity.generate();
    const alice = await Identity.generate();
    const mailbox = await mailboxAddress(bob.signingPublicKey);
    let junk = 0;
    for (let i = 0; i < 200; i++) {
      // 200 distinct one-byte envelopes.
      const one = new Uint8Array([i]);
      if (statusOf(await store(attacker, to, mailbox, one)) === StoreStatus.Stored) junk++;
    }
    const real = await sealEnvelope(alice, bob.public, { body: new TextEncoder().encode("hi") });
    const status = statusOf(await store(contact, to, mailbox, real));
    figure("mailbox-jam-one-byte", { junkStored: junk, contactStatus: status });
    assert.equal(status, StoreStatus.Stored, "the contact's envelope was refused");
  } finally {
    await attacker.stop();
    await contact.stop();
  }
});

Deno.test("junk spread over random mailboxes does not fill a node for everyone", async () => {
  await using node = await createStorageNode({
    listen: LOOPBACK,
    mailbox: { limits: { maxTotalBytes: 1024 * 1024 } },
  });
  const to = node.addresses[0]!;
  const attacker = await attackerNode([to]);
  const contact = await attackerNode([to]);
  try {
    const bob = await Identity.generate();
    const alice = await Identity.generate();
    const rnd = new Random();
    let junk = 0;
    for (let i = 0; i < 150; i++) {
      const envelope = rnd.bytes(8 * 1024);
      envelope[0] = 2;
      if (statusOf(await store(attacker, to, rnd.bytes(32), envelope)) === StoreStatus.Stored) {
        junk++;
      }
    }
    const real = await sealEnvelope(alice, bob.public, { body: new TextEncoder().encode("hi") });
    const status = statusOf(
      await store(contact, to, await mailboxAddress(bob.signingPublicKey), real),
    );
    figure("mailbox-jam-node", { junkStored: junk, contactStatus: status });
    assert.equal(status, StoreStatus.Stored, "the contact's envelope was refused");
  } finally {
    await attacker.stop();
    await contact.stop();
  }
});

/** A FETCH or DELETE signed by `owner` for the node `node`. */
async function signed(
  owner: Identity,
  node: string,
  type: typeof FrameType.Fetch | typeof FrameType.Delete,
  hashes: Uint8Array[] = [],
): Promise<Frame> {
  const request = {
    node,
    mailbox: await mailboxAddress(owner.signingPublicKey),
    timestamp: Date.now(),
    nonce: crypto.getRandomValues(new Uint8Array(16)),
  };
  if (type === FrameType.Fetch) {
    const signature = await owner.sign("mailbox", mailboxRequestSignedBytes({ type, ...request }));
    return { type, owner: owner.signingPublicKey, ...request, signature };
  }
  const signature = await owner.sign(
    "mailbox",
    mailboxRequestSignedBytes({ type, ...request, hashes }),
  );
  return { type, owner: owner.signingPublicKey, ...request, hashes, signature };
}

Deno.test("a stranger cannot list or download someone else's mailbox", async () => {
  await using node = await createStorageNode({ listen: LOOPBACK });
  const to = node.addresses[0]!;
  const stranger = await attackerNode([to]);
  const contact = await attackerNode([to]);
  try {
    const bob = await Identity.generate();
    const alice = await Identity.generate();
    const mallory = await Identity.generate();
    const mailbox = await mailboxAddress(bob.signingPublicKey);
    const real = await sealEnvelope(alice, bob.public, { body: new TextEncoder().encode("hi") });
    assert.equal(statusOf(await store(contact, to, mailbox, real)), StoreStatus.Stored);
    // The FETCH of /dim/mbox/1.0.0: the mailbox address alone.
    const raw = new Uint8Array(4 + 1 + 32);
    new DataView(raw.buffer).setUint32(0, 33);
    raw[4] = FrameType.Fetch;
    raw.set(mailbox, 5);
    const v1 = await exchange(stranger, to, raw, "/dim/mbox/1.0.0");
    const v1Here = await exchange(stranger, to, raw);
    // Mallory signs a FETCH of Bob's mailbox with her own key.
    const forged = await signed(mallory, node.node.peerId, FrameType.Fetch);
    const asMallory = await exchange(stranger, to, encodeFrame({ ...forged, mailbox } as Frame));
    // Bob's own FETCH, made for another node, sent here by that node.
    const elsewhere = await signed(bob, stranger.peerId, FrameType.Fetch);
    const relayed = await exchange(stranger, to, encodeFrame(elsewhere));
    const own = await exchange(
      stranger,
      to,
      encodeFrame(await signed(bob, node.node.peerId, FrameType.Fetch)),
    );
    const got = (f: Frame | undefined) => f?.type === FrameType.Items ? f.envelopes.length : 0;
    figure("mailbox-fetch-stranger", {
      v1: got(v1),
      v1OnV2: got(v1Here),
      forged: got(asMallory),
      otherNode: got(relayed),
      owner: got(own),
    });
    assert.equal(v1, undefined, "a version-1 FETCH is refused at negotiation");
    assert.equal(v1Here, undefined, "an unsigned FETCH is malformed on version 2");
    assert.deepEqual(asMallory, { type: FrameType.Refused, code: MailboxRefusal.NotOwner });
    assert.deepEqual(relayed, { type: FrameType.Refused, code: MailboxRefusal.NotOwner });
    assert.equal(got(own), 1, "the owner reads its mailbox");
  } finally {
    await stranger.stop();
    await contact.stop();
  }
});

Deno.test("a replayed FETCH or DELETE is refused", async () => {
  await using node = await createStorageNode({ listen: LOOPBACK });
  const to = node.addresses[0]!;
  const observer = await attackerNode([to]);
  const contact = await attackerNode([to]);
  try {
    const bob = await Identity.generate();
    const alice = await Identity.generate();
    const mailbox = await mailboxAddress(bob.signingPublicKey);
    const real = await sealEnvelope(alice, bob.public, { body: new TextEncoder().encode("hi") });
    const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", real));
    assert.equal(statusOf(await store(contact, to, mailbox, real)), StoreStatus.Stored);
    const del = encodeFrame(await signed(bob, node.node.peerId, FrameType.Delete, [hash]));
    const first = await exchange(observer, to, del);
    assert.deepEqual(first, { type: FrameType.Deleted, count: 1 });
    // The sender stores its copy again (a recheck); the old request comes back.
    assert.equal(statusOf(await store(contact, to, mailbox, real)), StoreStatus.Stored);
    const again = await exchange(observer, to, del);
    const fetch = encodeFrame(await signed(bob, node.node.peerId, FrameType.Fetch));
    const fetched = await exchange(observer, to, fetch);
    const refetched = await exchange(observer, to, fetch);
    figure("mailbox-delete-replay", {
      deleted: again?.type === FrameType.Deleted ? again.count : 0,
      refetched: refetched?.type === FrameType.Items ? refetched.envelopes.length : 0,
    });
    assert.deepEqual(again, { type: FrameType.Refused, code: MailboxRefusal.Replayed });
    assert.equal(fetched?.type === FrameType.Items && fetched.envelopes.length, 1, "still there");
    assert.deepEqual(refetched, { type: FrameType.Refused, code: MailboxRefusal.Replayed });
  } finally {
    await observer.stop();
    await contact.stop();
  }
});

Deno.test("a flood from many peer IDs of one address still lets a contact's offline message through, and the owner clears it in one round", async () => {
  await using net = await testNet(1);
  // Alice retries directly only after a minute: the mailbox is what carries it.
  const alice = await net.user("alice", {
    messaging: { ...FAST_MESSAGING, retryBaseMs: 60_000, retryMaxMs: 120_000 },
  });
  const bob = await net.user("bob");
  await alice.addContact("bob", bob.id);
  const bobKey = await testIdentity(net.dir, "bob");
  const mailbox = await mailboxAddress(bobKey.signingPublicKey);
  await bob.stop();
  const target = net.storageNodes[0]!.addresses[0]!;
  // Twenty peer IDs, all on 127.0.0.1, each storing 60 copies of junk that
  // passes for an envelope: more than the mailbox holds (1000).
  const sybils = await Promise.all(Array.from({ length: 20 }, () => attackerNode(net.bootstrap())));
  try {
    const rnd = new Random();
    const counts = { stored: 0, other: 0 };
    await pool(20 * 60, 16, async (i) => {
      const junk = rnd.bytes(MIN_ENVELOPE_LENGTH);
      junk[0] = ENVELOPE_VERSION;
      const status = statusOf(await store(sybils[i % 20]!, target, mailbox, junk));
      if (status === StoreStatus.Stored) counts.stored++;
      else counts.other++;
    });
    const before = await copiesOn(alice.node, target, bobKey);
    // Gone before Alice looks the mailbox's nodes up: as DHT peers they
    // would be closer to it than the storage node, and keep no mailboxes.
    for (const s of sybils) await s.stop();
    const sent = await alice.send("bob", "through the junk");
    await alice.waitFor(sent.seq, { orStored: true, signal: AbortSignal.timeout(30_000) });
    const bob2 = await net.reopen("bob");
    const [got] = await nextMessages(bob2, 1, 20_000);
    await sleep(500);
    const left = await copiesOn(alice.node, target, bobKey);
    figure("mailbox-jam-sybils", {
      junkStored: counts.stored,
      junkRefused: counts.other,
      heldBefore: before,
      delivered: got === undefined ? 0 : 1,
      leftAfterOneFetch: left,
    });
    assert.equal(got?.text, "through the junk");
    assert.equal(got?.via, "mailbox");
    assert.ok(before >= 1000, `the mailbox was full (${before})`);
    assert.equal(left, 0, "one fetch cleared the junk");
  } finally {
    for (const s of sybils) await s.stop();
  }
});
