// The outbox's pipeline: a conversation's envelopes travel over one kept
// stream, many awaiting their acknowledgements at once, and arrive once, in
// order. Real libp2p nodes on 127.0.0.1, real SQLite files.
import assert from "node:assert/strict";
import { Identity } from "../../lib/crypto/identity.ts";
import { createDhtNode, type DhtNode } from "../../lib/dht/node.ts";
import { MessagingService } from "../../lib/messaging/service.ts";
import type { MessagingOptions, MessagingTransport } from "../../lib/messaging/types.ts";
import { SEND_WINDOW } from "../../lib/messaging/constants.ts";
import { encodeFrame, FrameReader, FrameType, MESSAGE_PROTOCOL } from "../../lib/messaging/wire.ts";
import { transportFor } from "../../lib/messenger/transport.ts";
import { UserStore } from "../../lib/store/user_store.ts";
import { LOOPBACK } from "../_support/network.ts";

const ACK_FRAME_LENGTH = 4 + 1 + 32 + 64;

/** What the sender's message streams carried. */
interface Traffic {
  streams: number;
  envelopes: number;
  acks: number;
  /** The most envelopes sent and not yet acknowledged at any moment. */
  maxOutstanding: number;
}

/** A transport that hands each message stream it opens to `watch` first. */
function watchingMessageStreams(
  inner: MessagingTransport,
  watch: (stream: Awaited<ReturnType<MessagingTransport["openStream"]>>) => void,
): MessagingTransport {
  return {
    get peerId() {
      return inner.peerId;
    },
    handle: (p, h) => inner.handle(p, h),
    unhandle: (p) => inner.unhandle(p),
    closestPeers: (k, o) => inner.closestPeers(k, o),
    async openStream(peer, protocol, options) {
      const stream = await inner.openStream(peer, protocol, options);
      if (protocol === MESSAGE_PROTOCOL) watch(stream);
      return stream;
    },
  };
}

/** A transport that counts what goes over its message streams. */
function counted(inner: MessagingTransport, traffic: Traffic): MessagingTransport {
  return watchingMessageStreams(inner, (stream) => {
    traffic.streams++;
    const send = stream.send.bind(stream);
    stream.send = (data: Uint8Array) => {
      // Count the frames in this write by their length prefixes.
      const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
      for (let at = 0; at < data.length; at += 4 + view.getUint32(at)) traffic.envelopes++;
      traffic.maxOutstanding = Math.max(traffic.maxOutstanding, traffic.envelopes - traffic.acks);
      return send(data);
    };
    const iterate = stream[Symbol.asyncIterator].bind(stream);
    let bytes = 0;
    Object.defineProperty(stream, Symbol.asyncIterator, {
      value: async function* () {
        const chunks = { [Symbol.asyncIterator]: iterate };
        for await (const chunk of chunks) {
          bytes += chunk.subarray().length;
          traffic.acks = Math.floor(bytes / ACK_FRAME_LENGTH);
          yield chunk;
        }
      },
    });
  });
}

interface Side {
  node: DhtNode;
  identity: Identity;
  db: UserStore;
  service: MessagingService | undefined;
}

async function side(dir: string, name: string): Promise<Side> {
  return {
    node: await createDhtNode({ listen: LOOPBACK }),
    identity: await Identity.generate(),
    db: UserStore.open(`${dir}/${name}.db`),
    service: undefined,
  };
}

function serve(
  s: Side,
  to: Side,
  transport: MessagingTransport,
  options: MessagingOptions = {},
  storage: UserStore = s.db,
): MessagingService {
  s.service = new MessagingService({
    identity: s.identity,
    storage,
    transport,
    resolve: () => Promise.resolve({ peerId: to.node.peerId, addresses: to.node.multiaddrs }),
  }, { retryBaseMs: 60_000, outboxIntervalMs: 60_000, ...options });
  return s.service;
}

async function pair(t: (a: Side, b: Side, dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "dim-pipeline-" });
  const a = await side(dir, "alice");
  const b = await side(dir, "bob");
  try {
    await t(a, b, dir);
  } finally {
    for (const s of [a, b]) {
      await s.service?.stop();
      await s.node.stop();
      s.db.close();
    }
    await Deno.remove(dir, { recursive: true });
  }
}

/** Resolves once `n` messages were marked delivered. */
function delivered(service: MessagingService, n: number, ms = 20_000): Promise<number[]> {
  const seqs: number[] = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${seqs.length} of ${n} delivered in ${ms} ms`)),
      ms,
    );
    service.addEventListener("delivered", (e) => {
      const d = (e as CustomEvent).detail as { seq: number };
      seqs.push(d.seq);
      if (seqs.length === n) {
        clearTimeout(timer);
        resolve(seqs);
      }
    });
  });
}

const text = (s: string) => new TextEncoder().encode(s);
const bodies = (rows: { body: Uint8Array }[]) => rows.map((r) => new TextDecoder().decode(r.body));

Deno.test("a burst goes over one stream with many envelopes in flight, and arrives once, in order", async () => {
  await pair(async (a, b) => {
    const traffic: Traffic = { streams: 0, envelopes: 0, acks: 0, maxOutstanding: 0 };
    const alice = serve(a, b, counted(transportFor(a.node), traffic));
    const bob = serve(b, a, transportFor(b.node));
    await bob.start();
    await alice.start();
    const N = 300;
    const done = delivered(alice, N);
    const recipient = {
      userId: b.identity.id,
      encryptionPublicKey: b.identity.encryptionPublicKey,
    };
    await Promise.all(Array.from({ length: N }, (_, i) => alice.send(recipient, text(`m${i}`))));
    const seqs = await done;
    assert.equal(new Set(seqs).size, N, "each delivered once");
    assert.equal(a.db.outbox.list().length, 0);
    // The recipient stored them once, in the order the sender queued them.
    const sentOrder = a.db.messages.history(b.identity.id, { limit: N }).sort((x, y) =>
      x.seq - y.seq
    );
    assert.deepEqual(bodies(b.db.messages.incomingSince(0)), bodies(sentOrder));
    assert.equal(traffic.streams, 1, "one stream for the whole burst");
    assert.equal(traffic.envelopes, N, "no envelope sent twice");
    assert.ok(traffic.maxOutstanding > 1, `at most ${traffic.maxOutstanding} in flight`);
    assert.ok(traffic.maxOutstanding <= SEND_WINDOW, `${traffic.maxOutstanding} in flight`);
    console.log(`${N} messages, up to ${traffic.maxOutstanding} in flight on one stream`);
  });
});

Deno.test("the acknowledged envelopes before a refusal are delivered; the refused one waits for its retry", async () => {
  await pair(async (a, b) => {
    const alice = serve(a, b, transportFor(a.node), { mailboxReplicas: 1 });
    // Bob's node acknowledges three envelopes properly, then refuses.
    let served = 0;
    await b.node.handle(MESSAGE_PROTOCOL, async (stream) => {
      const reader = new FrameReader(stream);
      for (let f = await reader.next(); f !== undefined; f = await reader.next()) {
        if (f.type !== FrameType.Envelope) continue;
        served++;
        if (served > 3) {
          stream.send(encodeFrame({ type: FrameType.Nack, code: 3 }));
          continue;
        }
        const envelopeHash = new Uint8Array(
          await crypto.subtle.digest("SHA-256", new Uint8Array(f.envelope)),
        );
        const signature = await b.identity.sign("ack", envelopeHash);
        stream.send(encodeFrame({ type: FrameType.Ack, envelopeHash, signature }));
      }
    });
    await alice.start();
    const done = delivered(alice, 3);
    const recipient = {
      userId: b.identity.id,
      encryptionPublicKey: b.identity.encryptionPublicKey,
    };
    const rows = [];
    for (let i = 0; i < 6; i++) rows.push(await alice.send(recipient, text(`m${i}`)));
    assert.deepEqual((await done).sort(), rows.slice(0, 3).map((r) => r.seq));
    // The refusal deferred the first unacknowledged message, not one already delivered.
    const deadline = Date.now() + 5000;
    while (a.db.outbox.list()[0]?.attempts !== 1 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    const outbox = a.db.outbox.list();
    assert.deepEqual(outbox.map((e) => e.messageSeq), rows.slice(3).map((r) => r.seq));
    assert.equal(outbox[0]!.attempts, 1);
    assert.match(outbox[0]!.lastError, /refused \(code 3\)/);
    assert.ok(outbox[0]!.nextAttemptAt > Date.now() + 10_000, "backed off");
    for (const r of rows.slice(0, 3)) assert.equal(a.db.messages.get(r.seq)?.state, "delivered");
    for (const r of rows.slice(3)) assert.notEqual(a.db.messages.get(r.seq)?.state, "delivered");
  });
});

Deno.test("a kept stream the recipient has closed is replaced at once, without a retry delay", async () => {
  await pair(async (a, b) => {
    const traffic: Traffic = { streams: 0, envelopes: 0, acks: 0, maxOutstanding: 0 };
    const alice = serve(a, b, counted(transportFor(a.node), traffic));
    // Bob closes a stream after 300 ms of silence, long before Alice would.
    const bob = serve(b, a, transportFor(b.node), { idleTimeoutMs: 300 });
    await bob.start();
    await alice.start();
    const recipient = {
      userId: b.identity.id,
      encryptionPublicKey: b.identity.encryptionPublicKey,
    };
    const first = delivered(alice, 1);
    await alice.send(recipient, text("one"));
    await first;
    await new Promise((r) => setTimeout(r, 800));
    const second = delivered(alice, 1, 3000);
    const row = await alice.send(recipient, text("two"));
    assert.deepEqual(await second, [row.seq]);
    assert.equal(traffic.streams, 2);
    assert.deepEqual(bodies(b.db.messages.incomingSince(0)), ["one", "two"]);
  });
});

Deno.test("a recipient that never acknowledges times out even while new messages keep coming", async () => {
  await pair(async (a, b) => {
    const alice = serve(a, b, transportFor(a.node), { attemptTimeoutMs: 500, mailboxReplicas: 1 });
    // Bob's node reads every envelope and answers none.
    await b.node.handle(MESSAGE_PROTOCOL, async (stream) => {
      for await (const _ of stream);
    });
    await alice.start();
    const recipient = {
      userId: b.identity.id,
      encryptionPublicKey: b.identity.encryptionPublicKey,
    };
    const first = await alice.send(recipient, text("first"));
    const started = Date.now();
    // A new message every 100 ms wakes the delivery; none of them may reset its deadline.
    let deferredAfter: number | undefined;
    for (let i = 0; i < 20 && deferredAfter === undefined; i++) {
      await alice.send(recipient, text(`more ${i}`));
      await new Promise((r) => setTimeout(r, 100));
      const head = a.db.outbox.list().find((e) => e.messageSeq === first.seq);
      if (head !== undefined && head.attempts > 0) deferredAfter = Date.now() - started;
    }
    assert.ok(deferredAfter !== undefined, "the attempt never timed out");
    assert.ok(deferredAfter < 1500, `timed out after ${deferredAfter} ms`);
    assert.equal(a.db.messages.get(first.seq)?.state === "delivered", false);
  });
});

Deno.test("a message is not held up by a slow first message to someone else", async () => {
  await pair(async (a, b) => {
    const { SessionManager } = await import("../../lib/messaging/sessions.ts");
    const { SecretBox } = await import("../../lib/crypto/secret_box.ts");
    const carol = await Identity.generate();
    const sessions = new SessionManager({
      identity: a.identity,
      storage: a.db,
      box: await SecretBox.forIdentity(a.identity),
      // Bob has no prekeys out; finding Carol's takes a second.
      fetchBundle: async (userId) => {
        if (userId === carol.id) await new Promise((r) => setTimeout(r, 1000));
        return undefined;
      },
    });
    const alice = new MessagingService({
      identity: a.identity,
      storage: a.db,
      transport: transportFor(a.node),
      resolve: () => Promise.resolve({ peerId: b.node.peerId, addresses: b.node.multiaddrs }),
      sessions,
    }, { retryBaseMs: 60_000, outboxIntervalMs: 60_000 });
    a.service = alice;
    const bob = { userId: b.identity.id, encryptionPublicKey: b.identity.encryptionPublicKey };
    const toCarol = { userId: carol.id, encryptionPublicKey: carol.encryptionPublicKey };
    for (const carolFirst of [true, false]) {
      const started = performance.now();
      const sends = carolFirst
        ? [alice.send(toCarol, text("hi carol")), alice.send(bob, text("hi bob"))]
        : [alice.send(bob, text("hi bob")), alice.send(toCarol, text("hi carol"))];
      await sends[carolFirst ? 1 : 0];
      const bobMs = performance.now() - started;
      await Promise.all(sends);
      assert.ok(bobMs < 500, `the message to Bob was stored after ${bobMs.toFixed(0)} ms`);
    }
  });
});

Deno.test("a recipient that ends a stream after answering some is no failure: the rest go on a new stream", async () => {
  await pair(async (a, b) => {
    const traffic: Traffic = { streams: 0, envelopes: 0, acks: 0, maxOutstanding: 0 };
    const alice = serve(a, b, counted(transportFor(a.node), traffic), { mailboxReplicas: 1 });
    // Bob's node answers three envelopes per stream, then closes it.
    await b.node.handle(MESSAGE_PROTOCOL, async (stream) => {
      const reader = new FrameReader(stream);
      for (let answered = 0; answered < 3;) {
        const f = await reader.next();
        if (f === undefined) break;
        if (f.type !== FrameType.Envelope) continue;
        const envelopeHash = new Uint8Array(
          await crypto.subtle.digest("SHA-256", new Uint8Array(f.envelope)),
        );
        const signature = await b.identity.sign("ack", envelopeHash);
        stream.send(encodeFrame({ type: FrameType.Ack, envelopeHash, signature }));
        answered++;
      }
      await stream.close();
    });
    await alice.start();
    const recipient = {
      userId: b.identity.id,
      encryptionPublicKey: b.identity.encryptionPublicKey,
    };
    const done = delivered(alice, 10, 10_000);
    await Promise.all(Array.from({ length: 10 }, (_, i) => alice.send(recipient, text(`m${i}`))));
    assert.equal((await done).length, 10);
    assert.ok(traffic.streams >= 4, `${traffic.streams} streams`);
    assert.equal(a.db.outbox.list().length, 0);
  });
});

Deno.test("send() given up while the prekeys are looked up stores nothing, and never falls back to the static envelope", async () => {
  await pair(async (a, b) => {
    const { SessionManager } = await import("../../lib/messaging/sessions.ts");
    const { SecretBox } = await import("../../lib/crypto/secret_box.ts");
    let lookups = 0;
    const sessions = new SessionManager({
      identity: a.identity,
      storage: a.db,
      box: await SecretBox.forIdentity(a.identity),
      // The lookup ends only when its signal aborts.
      fetchBundle: (_userId, { signal }) => {
        lookups++;
        return new Promise((_resolve, reject) => {
          signal.addEventListener("abort", () => reject(signal.reason), { once: true });
        });
      },
    });
    const alice = new MessagingService({
      identity: a.identity,
      storage: a.db,
      transport: transportFor(a.node),
      resolve: () => Promise.resolve({ peerId: b.node.peerId, addresses: b.node.multiaddrs }),
      sessions,
    }, { retryBaseMs: 60_000, outboxIntervalMs: 60_000 });
    a.service = alice;
    await alice.start();
    const bob = { userId: b.identity.id, encryptionPublicKey: b.identity.encryptionPublicKey };
    const reason = new Error("gave up");
    const controller = new AbortController();
    const sending = alice.send(bob, text("never sent"), { signal: controller.signal });
    setTimeout(() => controller.abort(reason), 50);
    const started = performance.now();
    await assert.rejects(sending, (err) => err === reason);
    assert.ok(performance.now() - started < 1000, "the lookup was cut short");
    assert.equal(lookups, 1);
    assert.equal(a.db.outbox.list().length, 0);
    // Already aborted: nothing is looked up.
    await assert.rejects(
      alice.send(bob, text("never"), { signal: controller.signal }),
      (err) => err === reason,
    );
    assert.equal(lookups, 1);
    assert.equal(a.db.outbox.list().length, 0);
  });
});

Deno.test("fetchMailbox() and flushOutbox() honour their signals", async () => {
  await pair(async (a, b) => {
    const alice = serve(a, b, transportFor(a.node));
    await alice.start();
    const reason = new Error("gave up");
    const controller = new AbortController();
    controller.abort(reason);
    await assert.rejects(
      alice.fetchMailbox({ signal: controller.signal }),
      (err) => err === reason,
    );
    await assert.rejects(alice.flushOutbox({ signal: controller.signal }), (err) => err === reason);
    const recipient = {
      userId: b.identity.id,
      encryptionPublicKey: b.identity.encryptionPublicKey,
    };
    await assert.rejects(
      alice.send(recipient, text("never"), { signal: controller.signal }),
      (err) => err === reason,
    );
    assert.equal(a.db.outbox.list().length, 0);
    // Without a signal, or with a live one, they run as before.
    assert.equal(await alice.fetchMailbox({ refresh: true }), 0);
    await alice.flushOutbox({ signal: new AbortController().signal });
  });
});

Deno.test("a delivery that runs between a message's commit and its flush does not send it before the flush", async () => {
  await pair(async (a, b) => {
    const events: string[] = [];
    let interleave = false;
    // Alice's storage: logs commits of new outbox entries and flushes, and,
    // when asked, starts a delivery right after a commit (a drain resuming
    // in the gap before the flush).
    const storage = new Proxy(a.db, {
      get(target, key) {
        if (key === "sync") {
          return () => {
            events.push("sync");
            target.sync();
          };
        }
        if (key === "syncAsync") {
          return () => {
            events.push("sync");
            return target.syncAsync();
          };
        }
        if (key === "transaction") {
          return <T>(fn: () => T, options?: { durable?: boolean }): T => {
            const before = target.outbox.list().length;
            const result = target.transaction(fn, options);
            if (target.outbox.list().length > before) {
              events.push("commit");
              if (interleave) queueMicrotask(() => void alice.flushOutbox({ all: true }));
            }
            return result;
          };
        }
        const value = Reflect.get(target, key);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    const transport = watchingMessageStreams(transportFor(a.node), (stream) => {
      const send = stream.send.bind(stream);
      stream.send = (data: Uint8Array) => {
        events.push("send");
        return send(data);
      };
    });
    const alice = serve(a, b, transport, {}, storage);
    const bob = serve(b, a, transportFor(b.node));
    await bob.start();
    await alice.start();
    const recipient = {
      userId: b.identity.id,
      encryptionPublicKey: b.identity.encryptionPublicKey,
    };
    // The first message leaves a kept stream: the next delivery sends at once, without awaiting.
    const first = delivered(alice, 1);
    await alice.send(recipient, text("one"));
    await first;
    events.length = 0;
    interleave = true;
    const second = delivered(alice, 1);
    await alice.send(recipient, text("two"));
    await second;
    const commit = events.indexOf("commit");
    const sent = events.indexOf("send", commit);
    assert.ok(commit >= 0 && sent > commit, events.join(" "));
    assert.ok(events.slice(commit, sent).includes("sync"), `sent before its flush: ${events}`);
  });
});
