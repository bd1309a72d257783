/**
 * What a stranger can make a node spend before it knows who sent what: the
 * bytes an inbound `/dim/msg/1.0.0` stream is read ahead, the signatures
 * junk frames cost, the rate limiter's memory of peers, and how many
 * streams one peer or one IP may hold open. Each test performs the attack
 * against an inbox (or the stream reader under it) and counts what it cost.
 *
 * @module
 */
import assert from "node:assert/strict";
import { MAX_ENVELOPE_LENGTH, sealEnvelope } from "../../lib/crypto/envelope.ts";
import { Identity, verifySignature } from "../../lib/crypto/identity.ts";
import { readStream } from "../../lib/dht/_stream.ts";
import type { Stream } from "@libp2p/interface";
import { ServiceContext } from "../../lib/messaging/_context.ts";
import { Inbox, type InboxLimits } from "../../lib/messaging/inbox.ts";
import { type MessageStream, RateLimiter } from "../../lib/messaging/mailbox.ts";
import type { MessagingOptions, MessagingTransport } from "../../lib/messaging/types.ts";
import {
  decodeFrame,
  encodeFrame,
  type Frame,
  FrameType,
  NackCode,
} from "../../lib/messaging/wire.ts";
import { UserStore } from "../../lib/store/user_store.ts";
import { Random } from "./_support.ts";

const MiB = 1024 * 1024;
/** The chunk size the fake streams deliver, as a muxer would cut a large frame. */
const CHUNK = 16 * 1024;

/** Lets every pending microtask and timer of the moment run. */
async function settle(turns = 5): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise((r) => setTimeout(r, 0));
}

/**
 * A fake inbound stream: yields `frames` in chunks of {@linkcode CHUNK} on
 * demand, counting the bytes the reader pulled; collects the frames written
 * back. With `stall`, the first write fills the send buffer and the drain
 * never comes, as when the sender does not read its answers.
 */
class FakeStream implements MessageStream {
  pulled = 0;
  readonly written: Frame[] = [];
  aborted: Error | undefined;
  closed = false;
  drainWaits = 0;
  readonly #frames: Iterator<Uint8Array>;
  readonly #stall: boolean;
  #abortWake: (() => void) | undefined;

  constructor(frames: Iterable<Uint8Array>, options: { stall?: boolean } = {}) {
    this.#frames = frames[Symbol.iterator]();
    this.#stall = options.stall ?? false;
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Uint8Array> {
    for (;;) {
      if (this.aborted !== undefined) throw this.aborted;
      const next = this.#frames.next();
      if (next.done) return;
      for (let at = 0; at < next.value.length; at += CHUNK) {
        const chunk = next.value.subarray(at, at + CHUNK);
        this.pulled += chunk.length;
        yield chunk;
      }
    }
  }

  send(data: Uint8Array): boolean {
    if (this.aborted !== undefined) throw this.aborted;
    for (let at = 0; at < data.length;) {
      const length = new DataView(data.buffer, data.byteOffset + at).getUint32(0);
      this.written.push(decodeFrame(data.subarray(at + 4, at + 4 + length)));
      at += 4 + length;
    }
    return !this.#stall;
  }

  onDrain(options?: { signal?: AbortSignal }): Promise<void> {
    this.drainWaits++;
    if (this.aborted !== undefined) return Promise.reject(this.aborted);
    return new Promise((_, reject) => {
      const fail = () => reject(options?.signal?.reason ?? this.aborted);
      options?.signal?.addEventListener("abort", fail, { once: true });
      this.#abortWake = fail;
    });
  }

  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }

  abort(err: Error): void {
    this.aborted ??= err;
    this.#abortWake?.();
  }
}

/** Frames of `size`-byte random envelopes, without end. */
function* junk(size: number, rnd = new Random(7)): Generator<Uint8Array> {
  const body = rnd.bytes(size);
  for (;;) yield encodeFrame({ type: FrameType.Envelope, envelope: body });
}

const noTransport: MessagingTransport = {
  peerId: "self",
  openStream: () => Promise.reject(new Error("no network")),
  closestPeers: () => Promise.resolve([]),
  handle: () => Promise.resolve(),
  unhandle: () => Promise.resolve(),
};

interface Bench extends AsyncDisposable {
  readonly inbox: Inbox;
  readonly identity: Identity;
  readonly context: ServiceContext;
  /** How many times the inbox's identity signed something. */
  readonly signatures: () => number;
  /** Serves a stream as if from `peer` at `ip`; resolves when it ends. */
  serve(stream: FakeStream, peer: string, ip?: string): Promise<void>;
}

async function inboxBench(
  options: MessagingOptions = {},
  limits: Partial<InboxLimits> = {},
): Promise<Bench> {
  const dir = await Deno.makeTempDir({ prefix: "dim-preauth-" });
  const storage = UserStore.open(`${dir}/bob.db`);
  const identity = await Identity.generate();
  let signatures = 0;
  const sign = identity.sign.bind(identity);
  identity.sign = (domain, message) => {
    signatures++;
    return sign(domain, message);
  };
  const context = new ServiceContext(
    { identity, transport: noTransport, resolve: () => Promise.reject(new Error("none")) },
    { idleTimeoutMs: 60_000, ...options },
    () => {},
  );
  context.running = true;
  const inbox = new Inbox({ context, storage, onReceipt: () => Promise.resolve(), limits });
  const serving = new Set<Promise<void>>();
  const streams = new Set<FakeStream>();
  return {
    inbox,
    identity,
    context,
    signatures: () => signatures,
    serve(stream, peer, ip = "127.0.0.1") {
      streams.add(stream);
      const p = inbox.serve(stream, peer, `/ip4/${ip}/tcp/4001`);
      serving.add(p);
      return p;
    },
    async [Symbol.asyncDispose]() {
      context.running = false;
      for (const s of streams) s.abort(new Error("test over"));
      context.deadlines.abort(new Error("test over"));
      await Promise.allSettled([...serving]);
      storage.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

Deno.test("a peer sending max-size frames it never reads answers to gets one stream's read-ahead budget, not 64 frames", async () => {
  await using bench = await inboxBench({}, { streamReadAheadBytes: 1 * MiB });
  const stream = new FakeStream(junk(MAX_ENVELOPE_LENGTH), { stall: true });
  const serving = bench.serve(stream, "mallory");
  await settle(20);
  assert.ok(stream.drainWaits > 0, "the inbox answered and waits for the drain");
  // Before: 64 frames queued behind the stalled answer, about 16.8 MB.
  assert.ok(
    stream.pulled <= 1 * MiB + 2 * (MAX_ENVELOPE_LENGTH + 5),
    `${(stream.pulled / MiB).toFixed(1)} MiB read ahead`,
  );
  stream.abort(new Error("done"));
  await serving;
});

Deno.test("streams from many peers share one node-wide read-ahead budget", async () => {
  const streams = 12;
  await using bench = await inboxBench({}, {
    streamReadAheadBytes: 1 * MiB,
    ipReadAheadBytes: 64 * MiB,
    nodeReadAheadBytes: 4 * MiB,
    streamsPerIp: 100,
  });
  const open = Array.from(
    { length: streams },
    () => new FakeStream(junk(MAX_ENVELOPE_LENGTH), { stall: true }),
  );
  const serving = open.map((s, i) => bench.serve(s, `peer-${i}`, `10.0.0.${i + 1}`));
  await settle(20);
  const pulled = open.reduce((sum, s) => sum + s.pulled, 0);
  // Each stream may have pulled one chunk past what it reserved.
  assert.ok(
    pulled <= 4 * MiB + streams * (MAX_ENVELOPE_LENGTH + CHUNK),
    `${(pulled / MiB).toFixed(1)} MiB read ahead over ${streams} streams`,
  );
  for (const s of open) s.abort(new Error("done"));
  await Promise.all(serving);
});

Deno.test("one IP's streams share its read-ahead budget", async () => {
  await using bench = await inboxBench({}, {
    streamReadAheadBytes: 1 * MiB,
    ipReadAheadBytes: 2 * MiB,
    streamsPerIp: 100,
  });
  const open = Array.from(
    { length: 16 },
    () => new FakeStream(junk(MAX_ENVELOPE_LENGTH), { stall: true }),
  );
  const serving = open.map((s, i) => bench.serve(s, `peer-${i}`, "10.9.9.9"));
  await settle(20);
  const pulled = open.reduce((sum, s) => sum + s.pulled, 0);
  assert.ok(
    pulled <= 2 * MiB + open.length * (MAX_ENVELOPE_LENGTH + CHUNK),
    `${(pulled / MiB).toFixed(1)} MiB read ahead from one IP`,
  );
  // Another IP is not held up by the first one's budget.
  const other = new FakeStream(junk(1000), { stall: true });
  const otherServing = bench.serve(other, "honest", "10.1.1.1");
  await settle(20);
  assert.ok(other.written.length > 0, "a stream from another IP was answered");
  for (const s of [...open, other]) s.abort(new Error("done"));
  await Promise.all([...serving, otherServing]);
});

Deno.test("junk frames cost no acknowledgement signature; an envelope that opens still gets one", async () => {
  await using bench = await inboxBench();
  const rnd = new Random(11);
  const frames = [1, 2, 50, 200, 1000, 4096, MAX_ENVELOPE_LENGTH].map((n) =>
    encodeFrame({ type: FrameType.Envelope, envelope: rnd.bytes(n) })
  );
  const stranger = await Identity.generate();
  const real = await sealEnvelope(stranger, bench.identity, { body: new Uint8Array([1]) });
  const stream = new FakeStream([
    ...frames,
    encodeFrame({ type: FrameType.Envelope, envelope: real }),
  ]);
  await bench.serve(stream, "mallory");
  assert.equal(stream.written.length, frames.length + 1);
  for (const reply of stream.written.slice(0, -1)) {
    assert.deepEqual(reply, { type: FrameType.Nack, code: NackCode.Unreadable });
  }
  // Before: one signature per frame, junk or not (8).
  assert.equal(bench.signatures(), 1, "signed only the envelope that opened");
  const ack = stream.written.at(-1)!;
  assert.equal(ack.type, FrameType.Ack);
  assert.ok(
    ack.type === FrameType.Ack &&
      await verifySignature(
        "ack",
        bench.identity.signingPublicKey,
        ack.envelopeHash,
        ack.signature,
      ),
  );
});

Deno.test("10,001 fresh peer IDs do not give a throttled peer its burst back", () => {
  const limiter = new RateLimiter(100, 1);
  const now = 1_000_000;
  let allowed = 0;
  while (limiter.take("mallory", now)) allowed++;
  assert.equal(allowed, 100);
  for (let i = 0; i <= 10_000; i++) limiter.take(`sybil-${i}`, now);
  // Before: the map was cleared past 10,000 keys, and the burst came back.
  assert.equal(limiter.take("mallory", now), false, "still throttled");
  assert.ok(limiter.size <= 10_001, `${limiter.size} buckets kept`);
});

Deno.test("the rate limiter forgets full buckets first, and never more than it must", () => {
  const limiter = new RateLimiter(10, 10, { maxKeys: 3 });
  for (let i = 0; i < 10; i++) limiter.take("throttled", 0);
  limiter.take("a", 0);
  limiter.take("b", 0);
  // At 1 s, "a" and "b" are full again: forgetting them loses nothing.
  limiter.take("c", 1000);
  limiter.take("d", 1000);
  assert.equal(limiter.size, 3);
  assert.equal(limiter.take("throttled", 1000), true, "it refilled, as it would have anyway");
});

Deno.test("fresh peer IDs from one IP share that IP's bucket; another IP is not affected", async () => {
  const now = 5_000_000;
  await using bench = await inboxBench({ rateBurst: 5, ratePerSecond: 0.001, clock: () => now }, {
    ipRateBurst: 20,
    ipRatePerSecond: 0.001,
  });
  const stranger = await Identity.generate();
  const envelope = await sealEnvelope(stranger, bench.identity, { body: new Uint8Array([2]) });
  const frame = encodeFrame({ type: FrameType.Envelope, envelope });
  let accepted = 0;
  for (let p = 0; p < 10; p++) {
    const stream = new FakeStream(Array.from({ length: 5 }, () => frame));
    await bench.serve(stream, `sybil-${p}`, "192.0.2.7");
    accepted += stream.written.filter((f) => f.type !== FrameType.Nack).length;
  }
  // Before: each new ID brought a fresh burst of 5 (50 in all).
  assert.equal(accepted, 20, "the IP's burst, shared");
  const honest = new FakeStream([frame]);
  await bench.serve(honest, "carol", "198.51.100.1");
  assert.equal(honest.written[0]?.type, FrameType.Ack);
});

Deno.test("one peer may keep only a few message streams open at once; one IP a few more", async () => {
  await using bench = await inboxBench({}, { streamsPerPeer: 3, streamsPerIp: 5 });
  const fromMallory = Array.from({ length: 4 }, () => new FakeStream(junk(100), { stall: true }));
  const serving = fromMallory.map((s) => bench.serve(s, "mallory", "192.0.2.1"));
  await settle();
  assert.deepEqual(fromMallory.map((s) => s.aborted !== undefined), [false, false, false, true]);
  const others = Array.from({ length: 3 }, () => new FakeStream(junk(100), { stall: true }));
  const more = others.map((s, i) => bench.serve(s, `sybil-${i}`, "192.0.2.1"));
  await settle();
  // Three of Mallory's and two more from the IP: the sixth is refused.
  assert.deepEqual(others.map((s) => s.aborted !== undefined), [false, false, true]);
  const elsewhere = new FakeStream(junk(100), { stall: true });
  const third = bench.serve(elsewhere, "carol", "198.51.100.2");
  await settle();
  assert.equal(elsewhere.aborted, undefined, "another IP still gets in");
  // A stream that ends frees its place.
  fromMallory[0]!.abort(new Error("gone"));
  await serving[0];
  const again = new FakeStream(junk(100), { stall: true });
  const fourth = bench.serve(again, "mallory", "192.0.2.1");
  await settle();
  assert.equal(again.aborted, undefined);
  for (const s of [...fromMallory, ...others, elsewhere, again]) s.abort(new Error("done"));
  await Promise.all([...serving, ...more, third, fourth]);
});

/** A stand-in for a libp2p stream: an event target that counts pauses. */
class FakeLibp2pStream extends EventTarget {
  readStatus: "readable" | "paused" | "closed" = "readable";
  pauses = 0;
  resumes = 0;

  pause(): void {
    if (this.readStatus !== "readable") return;
    this.readStatus = "paused";
    this.pauses++;
  }

  resume(): void {
    if (this.readStatus !== "paused") return;
    this.readStatus = "readable";
    this.resumes++;
  }

  push(bytes: number): void {
    const event = new Event("message") as Event & { data: Uint8Array };
    Object.defineProperty(event, "data", { value: new Uint8Array(bytes) });
    this.dispatchEvent(event);
  }
}

Deno.test("a stream reader that is not read from pauses its stream, so the muxer's flow control holds the sender", async () => {
  const stream = new FakeLibp2pStream();
  const reader = readStream(stream as unknown as Stream);
  const first = reader.next(); // starts listening
  stream.push(100);
  await first;
  // The consumer stops reading; the sender goes on.
  for (let i = 0; i < 64; i++) stream.push(256 * 1024);
  // Before: nothing paused the stream, and all 16 MiB sat in the reader's queue.
  assert.equal(stream.pauses, 1, "paused once its queue passed the limit");
  let read = 0;
  while (stream.resumes === 0) {
    const { value } = await reader.next();
    read += (value as Uint8Array).length;
  }
  assert.ok(read > 0 && read <= 64 * 256 * 1024);
  await reader.return(undefined);
});
