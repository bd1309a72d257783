/**
 * The mailbox server's rules without a network: which STOREs it keeps, who
 * may FETCH and DELETE, and that each signed request is served once.
 */
import assert from "node:assert/strict";
import { Identity } from "../../lib/crypto/identity.ts";
import { ENVELOPE_VERSION, MIN_ENVELOPE_LENGTH } from "../../lib/crypto/envelope.ts";
import {
  mailboxAddress,
  MailboxServer,
  type MailboxServerOptions,
  sha256,
  type StreamHost,
} from "../../lib/messaging/mailbox.ts";
import { originOf, SeenRequests } from "../../lib/messaging/_mailbox_guard.ts";
import { DELETE_SKEW_MS, MAILBOX_CLOSEST_SLACK } from "../../lib/messaging/constants.ts";
import {
  type Frame,
  FrameType,
  MailboxRefusal,
  mailboxRequestSignedBytes,
  StoreStatus,
} from "../../lib/messaging/wire.ts";
import { MailboxStore } from "../../lib/store/mailbox_store.ts";

const NODE = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";
const NOW = 1_800_000_000_000;

/** Bytes that pass for an envelope: the version byte, then `fill`. */
function envelopeLike(fill: number, length = MIN_ENVELOPE_LENGTH): Uint8Array {
  const bytes = new Uint8Array(length).fill(fill);
  bytes[0] = ENVELOPE_VERSION;
  return bytes;
}

function server(store: MailboxStore, options: MailboxServerOptions = {}) {
  return new MailboxServer(store, { clock: () => NOW, peerId: NODE, ...options });
}

const storeFrame = (mailbox: Uint8Array, envelope: Uint8Array): Frame => ({
  type: FrameType.Store,
  mailbox,
  expiresAt: NOW + 3600_000,
  envelope,
});

async function signed(
  owner: Identity,
  type: typeof FrameType.Fetch | typeof FrameType.Delete,
  options: { node?: string; timestamp?: number; hashes?: Uint8Array[] } = {},
): Promise<Frame> {
  const request = {
    node: options.node ?? NODE,
    mailbox: await mailboxAddress(owner.signingPublicKey),
    timestamp: options.timestamp ?? NOW,
    nonce: crypto.getRandomValues(new Uint8Array(16)),
  };
  const hashes = options.hashes ?? [];
  const bytes = type === FrameType.Fetch
    ? mailboxRequestSignedBytes({ type, ...request })
    : mailboxRequestSignedBytes({ type, ...request, hashes });
  const signature = await owner.sign("mailbox", bytes);
  return type === FrameType.Fetch
    ? { type, owner: owner.signingPublicKey, ...request, signature }
    : { type, owner: owner.signingPublicKey, ...request, hashes, signature };
}

Deno.test("a STORE of bytes that cannot be an envelope is refused as invalid", async () => {
  using store = MailboxStore.open(":memory:");
  const s = server(store);
  const mailbox = new Uint8Array(32).fill(1);
  const short = envelopeLike(1, MIN_ENVELOPE_LENGTH - 1);
  const wrongVersion = envelopeLike(2);
  wrongVersion[0] = ENVELOPE_VERSION + 1;
  for (const envelope of [new Uint8Array([1]), short, wrongVersion]) {
    assert.deepEqual(await s.answer(storeFrame(mailbox, envelope)), {
      type: FrameType.StoreResult,
      status: StoreStatus.Invalid,
    });
  }
  assert.deepEqual(await s.answer(storeFrame(mailbox, envelopeLike(3))), {
    type: FrameType.StoreResult,
    status: StoreStatus.Stored,
  });
});

Deno.test("a node keeps mailboxes only for addresses it is among the closest to", async () => {
  using store = MailboxStore.open(":memory:");
  let closer = MAILBOX_CLOSEST_SLACK;
  const host: StreamHost = {
    handle: () => Promise.resolve(),
    unhandle: () => Promise.resolve(),
    peerId: NODE,
    closerPeerCount: (_key, limit) => Math.min(limit, closer),
  };
  const s = server(store);
  await s.start(host);
  const mailbox = new Uint8Array(32).fill(1);
  const far = await s.answer(storeFrame(mailbox, envelopeLike(1)));
  closer = MAILBOX_CLOSEST_SLACK - 1;
  const near = await s.answer(storeFrame(mailbox, envelopeLike(1)));
  await s.stop();
  assert.deepEqual(far, { type: FrameType.StoreResult, status: StoreStatus.NotClosest });
  assert.deepEqual(near, { type: FrameType.StoreResult, status: StoreStatus.Stored });
});

Deno.test("a thousand peer IDs of one address cannot push out a contact's copies from another", async () => {
  using store = MailboxStore.open(":memory:");
  const s = server(store, { limits: { maxCount: 100 } });
  const bob = await Identity.generate();
  const mailbox = await mailboxAddress(bob.signingPublicKey);
  const contact = { peer: "alice", address: "/ip4/203.0.113.5/tcp/4001" };
  for (let i = 0; i < 5; i++) await s.answer(storeFrame(mailbox, envelopeLike(i + 1)), contact);
  for (let i = 0; i < 1000; i++) {
    const bytes = envelopeLike(0);
    new DataView(bytes.buffer).setUint32(4, i);
    await s.answer(storeFrame(mailbox, bytes), {
      peer: `sybil-${i}`,
      address: "/ip4/198.51.100.7/tcp/4001",
    });
  }
  const fetched = await s.answer(await signed(bob, FrameType.Fetch));
  assert(fetched.type === FrameType.Items);
  assert.equal(fetched.envelopes.length, 100);
  const fromAlice = fetched.envelopes.filter((e) => e[1] !== 0);
  assert.equal(fromAlice.length, 5, "all of the contact's copies are still there");
});

Deno.test("only the owner's fresh FETCH for this node is served, and only once", async (t) => {
  using store = MailboxStore.open(":memory:");
  const s = server(store);
  const bob = await Identity.generate();
  const mallory = await Identity.generate();
  const mailbox = await mailboxAddress(bob.signingPublicKey);
  await s.answer(storeFrame(mailbox, envelopeLike(1)));
  const refused = (code: number) => ({ type: FrameType.Refused, code });
  await t.step("a stranger's key", async () => {
    const forged = await signed(mallory, FrameType.Fetch);
    assert.deepEqual(
      await s.answer({ ...forged, mailbox } as Frame),
      refused(MailboxRefusal.NotOwner),
    );
  });
  await t.step("a request for another node", async () => {
    const other = await signed(bob, FrameType.Fetch, { node: "another node" });
    assert.deepEqual(await s.answer(other), refused(MailboxRefusal.NotOwner));
  });
  await t.step("a forged signature", async () => {
    const frame = await signed(bob, FrameType.Fetch);
    assert(frame.type === FrameType.Fetch);
    const signature = frame.signature.slice();
    signature[0]! ^= 1;
    assert.deepEqual(await s.answer({ ...frame, signature }), refused(MailboxRefusal.NotOwner));
  });
  await t.step("a request outside the time window", async () => {
    const old = await signed(bob, FrameType.Fetch, { timestamp: NOW - DELETE_SKEW_MS - 1 });
    assert.deepEqual(await s.answer(old), refused(MailboxRefusal.Stale));
  });
  await t.step("the owner's request, then its replay", async () => {
    const frame = await signed(bob, FrameType.Fetch);
    const first = await s.answer(frame);
    assert(first.type === FrameType.Items);
    assert.equal(first.envelopes.length, 1);
    assert.equal(first.more, false);
    assert.deepEqual(await s.answer(frame), refused(MailboxRefusal.Replayed));
  });
  await t.step("a node that knows no peer ID of its own serves no request", async () => {
    using other = MailboxStore.open(":memory:");
    const anonymous = new MailboxServer(other, { clock: () => NOW });
    assert.deepEqual(
      await anonymous.answer(await signed(bob, FrameType.Fetch)),
      refused(MailboxRefusal.NotOwner),
    );
  });
});

Deno.test("a FETCH answer says when more copies wait than one frame holds", async () => {
  using store = MailboxStore.open(":memory:");
  const s = server(store);
  const bob = await Identity.generate();
  const mailbox = await mailboxAddress(bob.signingPublicKey);
  // Five of 250 KiB: more than one frame (1 MiB) holds.
  for (let i = 1; i <= 5; i++) await s.answer(storeFrame(mailbox, envelopeLike(i, 250 * 1024)));
  const first = await s.answer(await signed(bob, FrameType.Fetch));
  assert(first.type === FrameType.Items);
  assert.equal(first.envelopes.length, 4);
  assert.equal(first.more, true);
  const hashes = await Promise.all(first.envelopes.map((e) => sha256(e)));
  const deleted = await s.answer(await signed(bob, FrameType.Delete, { hashes }));
  assert.deepEqual(deleted, { type: FrameType.Deleted, count: 4 });
  const second = await s.answer(await signed(bob, FrameType.Fetch));
  assert(second.type === FrameType.Items);
  assert.deepEqual([second.envelopes.length, second.more], [1, false]);
});

Deno.test("SeenRequests forgets the oldest half when full, and refuses what it forgot as stale", () => {
  const seen = new SeenRequests(4, 60_000);
  for (let i = 0; i < 4; i++) assert.equal(seen.admit(`r${i}`, 1000 + i, 2000), "fresh");
  assert.equal(seen.admit("r3", 1003, 2000), "replayed");
  assert.equal(seen.admit("r4", 1004, 2000), "fresh");
  assert.ok(seen.size <= 4);
  assert.equal(seen.admit("r0", 1000, 2000), "stale", "forgotten, but not replayable");
  assert.equal(seen.admit("r1", 1001, 2000), "stale");
  assert.equal(seen.admit("r5", 1005, 2000), "fresh");
  // Out of the window, entries go first, without raising the floor.
  const windowed = new SeenRequests(2, 10);
  assert.equal(windowed.admit("a", 0, 0), "fresh");
  assert.equal(windowed.admit("b", 1, 1), "fresh");
  assert.equal(windowed.admit("c", 100, 100), "fresh");
  assert.equal(windowed.admit("d", 95, 100), "fresh");
});

Deno.test("originOf() groups peers by IPv4 address, IPv6 /64 and relay", () => {
  assert.equal(originOf("/ip4/192.0.2.1/tcp/4001", "p"), "ip4:192.0.2.1");
  assert.equal(
    originOf("/ip6/2001:db8:0:1:2:3:4:5/tcp/1", "p"),
    originOf("/ip6/2001:db8:0:1:ffff::1/tcp/2", "q"),
  );
  assert.notEqual(
    originOf("/ip6/2001:db8:0:1::1/tcp/1", "p"),
    originOf("/ip6/2001:db8:0:2::1/tcp/1", "p"),
  );
  const relay = "12D3KooWGRUVh2dDFx7ZcU8VTU9BFjY4B6g1ruXyM7fbQDjd3Wwv";
  assert.equal(
    originOf(`/ip4/192.0.2.9/tcp/4001/p2p/${relay}/p2p-circuit/p2p/${NODE}`, NODE),
    `relay:${relay}`,
  );
  assert.equal(originOf(undefined, "p"), "peer:p");
});
