/**
 * The sender's check of the copies it left in recipients' network
 * mailboxes (MailboxClient.storeOffline and recheck): a copy whose holder
 * left is stored again on the node that replaced it, and only there; the
 * work per check is bounded; only another node's copy counts. The first
 * tests fake the network (each node a MailboxServer on an in-memory store,
 * reached over in-memory streams, the test saying which are the closest);
 * the last runs it on real nodes.
 */
import assert from "node:assert/strict";
import { Identity } from "../../lib/crypto/identity.ts";
import { ENVELOPE_VERSION, MIN_ENVELOPE_LENGTH } from "../../lib/crypto/envelope.ts";
import { mailboxAddress, MailboxServer, type MessageStream } from "../../lib/messaging/mailbox.ts";
import { MailboxClient } from "../../lib/messaging/mailbox_client.ts";
import {
  MAILBOX_RECHECK_MAX_MESSAGES,
  MAILBOX_RECHECK_MAX_RECIPIENTS,
  MAILBOX_STORE_PARALLEL,
} from "../../lib/messaging/constants.ts";
import type { PeerTarget } from "../../lib/messaging/types.ts";
import { ServiceContext } from "../../lib/messaging/_context.ts";
import { encodeFrame, type Frame, FrameReader, FrameType } from "../../lib/messaging/wire.ts";
import { MailboxStore } from "../../lib/store/mailbox_store.ts";
import { UserStore } from "../../lib/store/user_store.ts";
import { FAST_MESSAGING, nextMessages, testNet } from "../_support/network.ts";
import { until } from "../hostile/_support.ts";
import { holdersOf, testIdentity } from "./_mailbox_probe.ts";

const RECHECK_MS = 60_000;
const SELF = "self";

/** A fake network of mailbox nodes, a user store, and a mailbox client on them. */
async function fakeNetwork() {
  let now = 1_000_000;
  const clock = () => now;
  const nodes = new Map<string, { server: MailboxServer; store: MailboxStore }>();
  const node = (id: string) => {
    let n = nodes.get(id);
    if (n === undefined) {
      const store = MailboxStore.open(":memory:");
      n = { server: new MailboxServer(store, { clock }), store };
      nodes.set(id, n);
    }
    return n;
  };
  const gone = new Set<string>();
  const stores: string[] = [];
  const streams = { open: 0, most: 0 };
  let lookups = 0;
  let closest: string[] = [];
  const stream = (answer: (frame: Frame) => Promise<Frame>): MessageStream => {
    let reply: Promise<Uint8Array> | undefined;
    return {
      send(data) {
        const sent = (async function* () {
          yield data.slice();
        })();
        reply = new FrameReader(sent).next().then((frame) => answer(frame!)).then(encodeFrame);
        return true;
      },
      onDrain: () => Promise.resolve(),
      close: () => {
        streams.open--;
        return Promise.resolve();
      },
      abort: () => {
        streams.open--;
      },
      async *[Symbol.asyncIterator]() {
        if (reply !== undefined) yield await reply;
      },
    };
  };
  const transport = {
    peerId: SELF,
    handle: () => Promise.resolve(),
    unhandle: () => Promise.resolve(),
    openStream: (peer: PeerTarget) => {
      if (gone.has(peer.peerId)) return Promise.reject(new Error(`${peer.peerId} is gone`));
      streams.most = Math.max(streams.most, ++streams.open);
      return Promise.resolve(stream((frame) => {
        if (frame.type === FrameType.Store) stores.push(peer.peerId);
        return node(peer.peerId).server.answer(frame);
      }));
    },
    closestPeers: (_key: Uint8Array, options: { count: number }) => {
      lookups++;
      return Promise.resolve(
        closest.slice(0, options.count).map((peerId) => ({ peerId, addresses: [] })),
      );
    },
  };
  const identity = await Identity.generate();
  const context = new ServiceContext(
    { identity, transport, resolve: () => Promise.reject(new Error("no resolver")) },
    { clock, mailboxRecheckMs: RECHECK_MS, attemptTimeoutMs: 1000 },
    () => {},
  );
  context.running = true;
  const db = UserStore.open(":memory:");
  const self = node(SELF);
  const client = new MailboxClient({
    context,
    server: self.server,
    storage: db,
    receive: () => Promise.resolve("unreadable"),
  });
  await client.start();
  let n = 0;
  /** Queues a message for `recipient` whose envelope is `n`'s bytes. */
  const queue = (recipient: string) => {
    n++;
    // Passes for an envelope with the mailbox nodes: the version byte, and long enough.
    const envelope = new Uint8Array(MIN_ENVELOPE_LENGTH);
    envelope[0] = ENVELOPE_VERSION;
    envelope.set(new TextEncoder().encode(`envelope ${n}`), 1);
    const m = db.outbox.enqueue(
      {
        id: new Uint8Array(16).fill(n),
        peer: recipient,
        sentAt: now,
        receivedAt: now,
        contentType: 1,
        body: new Uint8Array([n]),
        protection: "ratchet",
      },
      envelope,
      crypto.getRandomValues(new Uint8Array(32)),
    );
    return { seq: m.seq, envelope };
  };
  const entry = (seq: number) => db.outbox.list().find((e) => e.messageSeq === seq)!;
  /** Which nodes keep how many envelopes, in their stores. */
  const held = (id: string, mailbox: Uint8Array) => node(id).store.list(mailbox, now, 1000).length;
  return {
    client,
    context,
    db,
    queue,
    entry,
    held,
    gone,
    stores,
    streams,
    get lookups() {
      return lookups;
    },
    setClosest(ids: string[]) {
      closest = ids;
    },
    advance(ms: number) {
      now += ms;
    },
    now: clock,
    [Symbol.dispose]() {
      context.running = false;
      db.close();
      for (const { store } of nodes.values()) store.close();
    },
  };
}

async function recipient(): Promise<{ id: string; mailbox: Uint8Array }> {
  const bob = await Identity.generate();
  return { id: bob.id, mailbox: await mailboxAddress(bob.signingPublicKey) };
}

Deno.test("a mailbox check stores a copy again on the node that replaced a holder that left, and only there", async () => {
  using net = await fakeNetwork();
  const bob = await recipient();
  const m = net.queue(bob.id);
  net.setClosest(["a", "b", "c"]);
  assert.deepEqual(await net.client.storeOffline(bob.id, [m.envelope]), [true]);
  net.db.outbox.markStoredOffline(m.seq, net.now());
  assert.deepEqual(net.stores.sort(), ["a", "b", "c"]);
  assert.equal(net.entry(m.seq).storedOfflineAt, net.now());

  // Nothing changed: the check looks the nodes up, and asks none of them.
  net.advance(RECHECK_MS + 1);
  net.stores.length = 0;
  assert.equal(await net.client.recheck(), 1);
  assert.deepEqual(net.stores, []);
  assert.equal(net.entry(m.seq).storedOfflineAt, net.now(), "confirmed now");

  // "b" left; "d" is now among the closest: only "d" is asked.
  net.gone.add("b");
  net.setClosest(["a", "c", "d"]);
  net.advance(RECHECK_MS + 1);
  assert.equal(await net.client.recheck(), 1);
  assert.deepEqual(net.stores, ["d"]);
  assert.equal(net.held("d", bob.mailbox), 1);
  assert.equal(net.entry(m.seq).storedOfflineAt, net.now());

  // Not due yet: a check before mailboxRecheckMs passed leaves it alone.
  const lookups = net.lookups;
  net.advance(RECHECK_MS - 1);
  assert.equal(await net.client.recheck(), 0);
  assert.equal(net.lookups, lookups, "no lookup for a copy confirmed recently");
});

Deno.test("a mailbox check does not count this node's own copy, and keeps the last time another node held it", async () => {
  using net = await fakeNetwork();
  const bob = await recipient();
  const m = net.queue(bob.id);
  net.setClosest(["a"]);
  assert.deepEqual(await net.client.storeOffline(bob.id, [m.envelope]), [true]);
  const storedAt = net.now();
  net.db.outbox.markStoredOffline(m.seq, storedAt);
  // Every other node left: only this node is found, and stores a copy.
  net.gone.add("a");
  net.setClosest([SELF]);
  net.advance(RECHECK_MS + 1);
  assert.equal(await net.client.recheck(), 0);
  assert.equal(net.held(SELF, bob.mailbox), 1, "kept here too");
  assert.equal(net.entry(m.seq).storedOfflineAt, storedAt, "not confirmed by this node's copy");
  assert.equal(net.db.messages.get(m.seq)?.state, "stored");
  // Another node appears: the next check stores it there.
  net.setClosest([SELF, "e"]);
  net.advance(RECHECK_MS + 1);
  assert.equal(await net.client.recheck(), 1);
  assert.equal(net.held("e", bob.mailbox), 1);
});

Deno.test("after a restart every holder is asked once (duplicate counts as held), then only where its copy may expire", async () => {
  using net = await fakeNetwork();
  const bob = await recipient();
  const m = net.queue(bob.id);
  net.setClosest(["a", "b"]);
  await net.client.storeOffline(bob.id, [m.envelope]);
  net.db.outbox.markStoredOffline(m.seq, net.now());
  // A new client, as after a start: it knows no holders.
  const again = new MailboxClient({
    context: net.context,
    server: { answer: () => Promise.reject(new Error("unused")) },
    storage: net.db,
    receive: () => Promise.resolve("unreadable"),
  });
  net.stores.length = 0;
  assert.equal(await again.recheck({ all: true }), 1, '"all": even one confirmed just now');
  assert.deepEqual(net.stores.sort(), ["a", "b"], "both answered duplicate");
  // A duplicate's age is unknown, so it is asked again; a fresh STORE's is not.
  net.advance(RECHECK_MS + 1);
  net.stores.length = 0;
  assert.equal(await again.recheck(), 1);
  assert.deepEqual(net.stores.sort(), ["a", "b"]);
});

Deno.test("a copy about to expire is stored again once the holder dropped it", async () => {
  using net = await fakeNetwork();
  const bob = await recipient();
  const m = net.queue(bob.id);
  net.setClosest(["a"]);
  await net.client.storeOffline(bob.id, [m.envelope]);
  net.db.outbox.markStoredOffline(m.seq, net.now());
  // Default TTL 7 days: past it, "a" has dropped the copy and takes it anew.
  net.advance(7 * 24 * 3600 * 1000 + 1);
  net.stores.length = 0;
  assert.equal(await net.client.recheck(), 1);
  assert.deepEqual(net.stores, ["a"]);
  assert.equal(net.held("a", bob.mailbox), 1);
});

Deno.test("a mailbox check is bounded: a few recipients, a few dozen messages, the longest confirmed first", async () => {
  using net = await fakeNetwork();
  net.setClosest(["a", "b", "c"]);
  const recipients = await Promise.all(Array.from({ length: 6 }, () => recipient()));
  const seqs: number[] = [];
  for (const [i, r] of recipients.entries()) {
    // More messages for the first recipient than one check takes.
    const count = i === 0 ? MAILBOX_RECHECK_MAX_MESSAGES + 10 : 1;
    for (let k = 0; k < count; k++) {
      const m = net.queue(r.id);
      // Confirmed at different times: the first recipient's longest ago.
      net.db.outbox.markStoredOffline(m.seq, net.now() + i);
      seqs.push(m.seq);
    }
  }
  net.advance(RECHECK_MS + 100);
  const first = await net.client.recheck();
  assert.equal(net.lookups, 1, "the first recipient's messages fill the check");
  assert.equal(first, MAILBOX_RECHECK_MAX_MESSAGES);
  const second = await net.client.recheck({ all: false });
  assert.equal(second, 10 + MAILBOX_RECHECK_MAX_RECIPIENTS - 1, "the rest, up to the cap");
  assert.equal(net.lookups, 1 + MAILBOX_RECHECK_MAX_RECIPIENTS);
  const third = await net.client.recheck();
  assert.equal(third, recipients.length - MAILBOX_RECHECK_MAX_RECIPIENTS);
  assert.equal(await net.client.recheck(), 0, "all confirmed now");
});

Deno.test("a long queue is stored a few envelopes at a time", async () => {
  using net = await fakeNetwork();
  const bob = await recipient();
  net.setClosest(["a", "b", "c"]);
  const queue = Array.from({ length: 3 * MAILBOX_STORE_PARALLEL }, () => net.queue(bob.id));
  const held = await net.client.storeOffline(bob.id, queue.map((m) => m.envelope));
  assert.ok(held.every((h) => h));
  assert.equal(net.stores.length, 3 * queue.length);
  assert.ok(
    net.streams.most <= 3 * MAILBOX_STORE_PARALLEL,
    `${net.streams.most} streams open at once`,
  );
});

Deno.test("checks do not overlap, and a stopped service checks nothing", async () => {
  using net = await fakeNetwork();
  const bob = await recipient();
  const m = net.queue(bob.id);
  net.db.outbox.markStoredOffline(m.seq, 5);
  net.setClosest(["a"]);
  const [one, two] = await Promise.all([net.client.recheck(), net.client.recheck()]);
  assert.deepEqual([one, two], [1, 0]);
  net.advance(RECHECK_MS + 1);
  net.context.running = false;
  assert.equal(await net.client.recheck(), 0);
  assert.equal(net.lookups, 1);
});

Deno.test("a mailbox copy whose holders all stopped is stored again on the nodes that replaced them, and reaches the recipient after the sender left", async () => {
  await using net = await testNet(8);
  // Alice retries directly only after a minute: the mailbox is what carries it.
  const alice = await net.user("alice", {
    messaging: {
      ...FAST_MESSAGING,
      retryBaseMs: 60_000,
      retryMaxMs: 120_000,
      mailboxRecheckMs: 300,
    },
  });
  const bob = await net.user("bob");
  await alice.addContact("bob", bob.id);
  const bobKey = await testIdentity(net.dir, "bob");
  await bob.stop();
  const sent = await alice.send("bob", "outlives its holders");
  await alice.waitFor(sent.seq, { orStored: true, signal: AbortSignal.timeout(10_000) });
  // A probe may time out on a loaded machine: asked again until one answers.
  let holders: typeof net.storageNodes = [];
  await until(
    "stored on storage nodes",
    async () => (holders = await holdersOf(alice.node, net.storageNodes, bobKey)).length > 0,
    15_000,
  );
  for (const holder of holders) await holder.stop();
  const survivors = net.storageNodes.filter((n) => !holders.includes(n));
  await until(
    "a surviving node holds a copy",
    async () => (await holdersOf(alice.node, survivors, bobKey)).length > 0,
    15_000,
  );
  // Alice leaves before Bob is back: only the network's copies can reach him.
  await alice.stop();
  const bob2 = await net.reopen("bob", { bootstrap: [survivors[0]!.addresses[0]!] });
  const [got] = await nextMessages(bob2, 1, 20_000);
  assert.equal(got?.text, "outlives its holders");
  assert.equal(got?.via, "mailbox");
});
