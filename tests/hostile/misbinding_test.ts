/**
 * Recipient misbinding (an unknown key share): Mallory publishes a validly
 * signed card with her own user ID and Bob's X25519 key. Alice, writing to
 * "Mallory", seals to Bob's key; Mallory forwards the bytes to Bob. Bob must
 * not take them as "a message (or a file) from Alice to me": the envelope
 * and the file offer name their recipient's identity, and only that
 * identity opens them.
 */
import assert from "node:assert/strict";
import { utf8 } from "../../lib/platform/bytes.ts";
import { sealEnvelope } from "../../lib/crypto/envelope.ts";
import { Identity, type PublicIdentity } from "../../lib/crypto/identity.ts";
import { createDhtNode } from "../../lib/dht/node.ts";
import { TransferRefusedError } from "../../lib/messaging/file_wire.ts";
import { FileReceiver, type ReceivedFile } from "../../lib/messaging/file_receive.ts";
import { sendFile } from "../../lib/messaging/file_send.ts";
import {
  encodeFrame,
  FrameReader,
  FrameType,
  MESSAGE_PROTOCOL,
  NackCode,
} from "../../lib/messaging/wire.ts";
import { transportFor } from "../../lib/messenger/transport.ts";
import { testNet } from "../_support/network.ts";
import { attackerNode, describeSeen, LOOPBACK, sleep, watchRejections } from "./_support.ts";

/** Mallory's card: her own user ID and signing key, Bob's X25519 key. */
function malloryCard(mallory: Identity, bob: PublicIdentity): PublicIdentity {
  return {
    id: mallory.id,
    signingPublicKey: mallory.signingPublicKey,
    encryptionPublicKey: bob.encryptionPublicKey,
  };
}

Deno.test("an envelope Alice sealed for Mallory's card, forwarded to Bob, is refused and not stored", async () => {
  using watch = watchRejections();
  await using net = await testNet();
  const bob = await net.user("bob");
  const attacker = await attackerNode(net.bootstrap());
  try {
    const [alice, mallory] = await Promise.all([Identity.generate(), Identity.generate()]);
    const card = malloryCard(mallory, bob.profile.publicIdentity);
    // What Alice's outbox seals for "Mallory", who publishes no prekeys: a
    // static envelope to the card's keys.
    const envelope = await sealEnvelope(alice, card, {
      body: utf8("for Mallory's eyes only"),
      contentType: 1,
    });

    // Mallory forwards the bytes to Bob, as they are.
    const stream = await attacker.dialProtocol(bob.addresses[0]!, MESSAGE_PROTOCOL, {
      signal: AbortSignal.timeout(5000),
    });
    stream.send(encodeFrame({ type: FrameType.Envelope, envelope }));
    const reply = await new FrameReader(stream).next();
    await stream.close().catch(() => {});
    await sleep(100);

    const fromAlice = bob.profile.history(alice.id);
    assert.deepEqual(fromAlice.map((m) => m.text), [], "Bob stored Alice's message to Mallory");
    assert.deepEqual(reply, { type: FrameType.Nack, code: NackCode.Unreadable });
    assert.deepEqual(watch.seen, [], describeSeen(watch.seen));
  } finally {
    await attacker.stop();
  }
});

Deno.test("a file Alice sends to Mallory's card, relayed to Bob, is refused and not kept", async () => {
  const a = await createDhtNode({ listen: LOOPBACK });
  const b = await createDhtNode({ listen: LOOPBACK });
  const [alice, bob, mallory] = await Promise.all([
    Identity.generate(),
    Identity.generate(),
    Identity.generate(),
  ]);
  const received: ReceivedFile[] = [];
  const failed: unknown[] = [];
  let written = 0;
  // Bob takes files from Alice, his contact.
  const receiver = new FileReceiver(bob, {
    accept: (offer) =>
      offer.senderId === alice.id
        ? new WritableStream<Uint8Array>({ write: (chunk) => void (written += chunk.length) })
        : undefined,
    onReceived: (file) => received.push(file),
    onFailed: (error) => failed.push(error),
  });
  try {
    await receiver.start(transportFor(b));
    const card = malloryCard(mallory, bob);
    // Alice sends to "Mallory"; Mallory relays the stream to Bob's node (the
    // bytes are the same either way: the test dials Bob directly).
    const err = await sendFile(transportFor(a), {
      identity: alice,
      recipient: {
        userId: card.id,
        encryptionPublicKey: card.encryptionPublicKey,
        peer: { peerId: b.peerId, addresses: b.multiaddrs },
      },
      source: {
        name: "for-mallory.txt",
        size: 100,
        stream: ReadableStream.from([new Uint8Array(100)]),
      },
    }, { idleTimeoutMs: 5000, acceptTimeoutMs: 5000 }).catch((e) => e);
    await sleep(100);

    assert.deepEqual(
      received.map((f) => `${f.name} from ${f.senderId === alice.id ? "Alice" : f.senderId}`),
      [],
      "Bob kept Alice's file to Mallory",
    );
    assert.equal(written, 0, "Bob wrote the file's bytes");
    assert.ok(err instanceof TransferRefusedError, String(err));
    assert.equal(err.reason, "unreadable");
    assert.equal(failed.length, 1);
  } finally {
    await receiver.stop();
    await a.stop();
    await b.stop();
  }
});
