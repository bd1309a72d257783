// Envelopes sealed by an older DIM (envelope version 1) and still waiting in
// an outbox after the upgrade: recipients refuse them, so the outbox seals
// the message again, in the current version, and it is delivered once.
// Real libp2p nodes on 127.0.0.1, real SQLite files.
import assert from "node:assert/strict";
import { ENVELOPE_VERSION } from "../../lib/crypto/envelope.ts";
import { Identity } from "../../lib/crypto/identity.ts";
import { SecretBox } from "../../lib/crypto/secret_box.ts";
import { createDhtNode, type DhtNode } from "../../lib/dht/node.ts";
import { envelopeHash } from "../../lib/messaging/mailbox.ts";
import { MessagingService } from "../../lib/messaging/service.ts";
import { SessionManager } from "../../lib/messaging/sessions.ts";
import { isUnsealed } from "../../lib/messaging/storage.ts";
import { transportFor } from "../../lib/messenger/transport.ts";
import { UserStore } from "../../lib/store/user_store.ts";
import { LOOPBACK } from "../_support/network.ts";

interface Side {
  node: DhtNode;
  identity: Identity;
  db: UserStore;
}

async function side(dir: string, name: string): Promise<Side> {
  return {
    node: await createDhtNode({ listen: LOOPBACK }),
    identity: await Identity.generate(),
    db: UserStore.open(`${dir}/${name}.db`),
  };
}

/** A messaging service for `s` that delivers to `to`; no one publishes prekeys. */
async function service(s: Side, to: Side): Promise<MessagingService> {
  const sessions = new SessionManager({
    identity: s.identity,
    storage: s.db,
    box: await SecretBox.forIdentity(s.identity),
    fetchBundle: () => Promise.resolve(undefined),
  });
  return new MessagingService({
    identity: s.identity,
    storage: s.db,
    transport: transportFor(s.node),
    resolve: () => Promise.resolve({ peerId: to.node.peerId, addresses: to.node.multiaddrs }),
    sessions,
  }, { retryBaseMs: 100, retryMaxMs: 500, outboxIntervalMs: 100, mailboxReplicas: 1 });
}

Deno.test("isUnsealed() takes an envelope of another version for one still to seal", () => {
  assert.equal(isUnsealed({ envelope: new Uint8Array(0) }), true);
  assert.equal(isUnsealed({ envelope: new Uint8Array([ENVELOPE_VERSION - 1, 0, 0]) }), true);
  assert.equal(isUnsealed({ envelope: new Uint8Array([ENVELOPE_VERSION, 0, 0]) }), false);
});

Deno.test("a message sealed before the upgrade (envelope version 1) is sealed again and delivered once", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dim-upgrade-" });
  const a = await side(dir, "alice");
  const b = await side(dir, "bob");
  const running: MessagingService[] = [];
  try {
    a.db.contacts.upsert({
      name: "bob",
      userId: b.identity.id,
      signingPublicKey: b.identity.signingPublicKey,
      encryptionPublicKey: b.identity.encryptionPublicKey,
    });
    const recipient = {
      userId: b.identity.id,
      encryptionPublicKey: b.identity.encryptionPublicKey,
    };

    // Alice queues a message while Bob is away, then stops.
    const before = await service(a, b);
    running.push(before);
    await before.start();
    const row = await before.send(
      recipient,
      new TextEncoder().encode("written before the upgrade"),
    );
    await before.stop();

    // What an older DIM left in the outbox: the same entry, in envelope version 1.
    const entry = a.db.outbox.list().find((e) => e.messageSeq === row.seq)!;
    const old = entry.envelope.slice();
    old[0] = 1;
    a.db.outbox.replaceEnvelope(row.seq, old, await envelopeHash(old), Date.now());
    assert.equal(isUnsealed(a.db.outbox.list()[0]!), true);

    // After the upgrade both are online.
    const bob = await service(b, a);
    running.push(bob);
    await bob.start();
    const alice = await service(a, b);
    running.push(alice);
    const delivered = new Promise<void>((resolve) =>
      alice.addEventListener("delivered", () => resolve(), { once: true })
    );
    await alice.start();
    await alice.flushOutbox();
    await Promise.race([
      delivered,
      new Promise((_, reject) =>
        setTimeout(() => reject(new Error("the message was not delivered in 10 s")), 10_000)
      ),
    ]);

    const got = b.db.messages.incomingSince(0);
    assert.deepEqual(
      got.map((m) => new TextDecoder().decode(m.body)),
      ["written before the upgrade"],
    );
    assert.deepEqual(got[0]!.id, row.id, "the same message, not a new one");
    assert.equal(a.db.outbox.list().length, 0);
    assert.equal(a.db.messages.get(row.seq)?.state, "delivered");
  } finally {
    for (const s of running) await s.stop();
    for (const s of [a, b]) {
      await s.node.stop();
      s.db.close();
    }
    await Deno.remove(dir, { recursive: true });
  }
});
