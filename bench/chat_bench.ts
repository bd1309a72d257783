// What does a chat message cost over the stream it travels on?
// Targets, measured in the same run between the same two nodes:
// - throughput: 1 KiB messages A → B, sealed, signed and acknowledged, at
//   ≥ 0.5× the rate of raw 1 KiB frames (each acknowledged, pipelined) on a
//   bare libp2p stream;
// - round trip: a message's send → signed ack, p50 ≤ a raw frame's echo p50 + 1 ms.
// The messages take the real path: two `Messenger`s (keystore, SQLite,
// DHT-resolved cards, X3DH + Double Ratchet, HPKE envelope, outbox, acks).
// Both users live in this process and share its one JavaScript thread and
// the machine's cores. Throughput is measured twice: with each `send`
// awaited before the next (a flush per message), and with the sends
// submitted together (group commit: they share flushes).
//
// Run:    deno bench -A bench/chat_bench.ts
// Report: deno bench -A --json bench/chat_bench.ts | deno run -A bench/report.ts
// The p50/p99 of every bench (from per-iteration times) go to stderr at the end.
import { Acks } from "./_acks.ts";
import { openChatPair } from "./_chat_pair.ts";

const ECHO_PROTOCOL = "/dim-bench/ack/1.0.0";
const BATCH = 100;
const TEXT = "x".repeat(1024);
const FRAME = new Uint8Array(4 + 1024);
new DataView(FRAME.buffer).setUint32(0, 1024);
const ROUND_TRIP = { n: 300, warmup: 20 } as const;
const THROUGHPUT = { n: 12, warmup: 2 } as const;

// --- Setup, outside every timed part ----------------------------------------

const { dir, alice, bob } = await openChatPair("dim-chat-bench-");

/** Sends `count` messages, each `send` awaited before the next, then waits for every ack. */
async function deliver(count: number): Promise<void> {
  const sent = [];
  for (let i = 0; i < count; i++) sent.push(await alice.send("bob", TEXT));
  const signal = AbortSignal.timeout(30_000);
  await Promise.all(sent.map((m) => alice.waitFor(m.seq, { signal })));
}

/** Submits `count` messages at once (they share flushes), then waits for every ack. */
async function deliverTogether(count: number): Promise<void> {
  const sent = await Promise.all(Array.from({ length: count }, () => alice.send("bob", TEXT)));
  const signal = AbortSignal.timeout(30_000);
  await Promise.all(sent.map((m) => alice.waitFor(m.seq, { signal })));
}
// The first message sets up the session (X3DH from Bob's prekeys in the DHT).
await deliver(1);

// The baseline: a bare stream between the same two nodes. Bob's side answers
// every 1 KiB frame with a 4-byte acknowledgement.
await bob.node.handle(ECHO_PROTOCOL, async (stream) => {
  let pending = 0;
  for await (const chunk of stream) {
    pending += chunk.subarray().length;
    while (pending >= FRAME.length) {
      pending -= FRAME.length;
      stream.send(new Uint8Array(4));
    }
  }
  await stream.close();
});
const raw = await alice.node.dialProtocol(bob.addresses[0]!, ECHO_PROTOCOL);

const acks = new Acks(raw);
let framesSent = 0;

async function rawFrames(count: number): Promise<void> {
  let ready = true;
  for (let i = 0; i < count; i++) ready = raw.send(FRAME) && ready;
  framesSent += count;
  if (!ready) await raw.onDrain();
  await acks.until(framesSent);
}

// --- Per-iteration times, for p50 and p99 ------------------------------------

const samples = new Map<string, { n: number; per: number; ms: number[] }>();
function timed(name: string, options: { n: number }, per: number, work: () => Promise<void>) {
  const entry = { n: options.n, per, ms: [] as number[] };
  samples.set(name, entry);
  return async () => {
    const start = performance.now();
    await work();
    entry.ms.push(performance.now() - start);
  };
}

function bench(
  group: string,
  name: string,
  options: { n: number; warmup: number },
  per: number,
  work: () => Promise<void>,
  baseline = false,
): void {
  const run = timed(name, options, per, work);
  Deno.bench({
    name,
    group,
    baseline,
    ...options,
    async fn() {
      await run();
    },
  });
}

// --- Round trip: one message, one acknowledgement -----------------------------

bench(
  "round trip, 1 KiB",
  "raw 1 KiB frame → 4-byte ack on an open libp2p stream",
  ROUND_TRIP,
  1,
  () => rawFrames(1),
  true,
);
bench(
  "round trip, 1 KiB",
  "Messenger.send 1 KiB → signed ack (waitFor delivered)",
  ROUND_TRIP,
  1,
  () => deliver(1),
);

// --- Throughput: a burst of messages ------------------------------------------

bench(
  "throughput, 100 × 1 KiB",
  `raw stream, ${BATCH} frames of 1 KiB pipelined, each acked`,
  THROUGHPUT,
  BATCH,
  () => rawFrames(BATCH),
  true,
);
bench(
  "throughput, 100 × 1 KiB",
  `Messenger.send, ${BATCH} messages of 1 KiB, until all are acked`,
  THROUGHPUT,
  BATCH,
  () => deliver(BATCH),
);
bench(
  "throughput, 100 × 1 KiB",
  `Messenger.send, ${BATCH} messages of 1 KiB submitted together, until all are acked`,
  THROUGHPUT,
  BATCH,
  () => deliverTogether(BATCH),
);

// --- Percentiles and teardown --------------------------------------------------

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? NaN;
}

globalThis.addEventListener("unload", () => {
  const lines = [
    "",
    "| bench | iterations | p50 | p99 | per item (p50) | items/s (p50) |",
    "| --- | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const [name, { n, per, ms }] of samples) {
    // The harness also calls fn for warm-up: keep the last n runs.
    const sorted = ms.slice(-n).sort((a, b) => a - b);
    if (sorted.length === 0) continue;
    const p50 = percentile(sorted, 0.5);
    lines.push(
      `| ${name} | ${sorted.length} | ${p50.toFixed(3)} ms | ${
        percentile(sorted, 0.99).toFixed(3)
      } ms | ${(p50 / per).toFixed(3)} ms | ${(per / p50 * 1000).toFixed(0)} |`,
    );
  }
  console.error(lines.join("\n"));
  raw.abort(new Error("bench over"));
  alice.stop().catch(() => {});
  bob.stop().catch(() => {});
  try {
    Deno.removeSync(dir, { recursive: true });
  } catch {
    // Still in use by the messengers closing: the OS temp directory is fine.
  }
});
