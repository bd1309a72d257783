// What does a chat message cost over the stream it travels on?
// Targets, measured in the same run between the same two nodes:
// - throughput: 1 KiB messages A → B, sealed, signed and acknowledged, at
//   ≥ 0.5× the rate of raw 1 KiB frames (each acknowledged, pipelined) on a
//   bare libp2p stream; and (issue 17) ≥ 2,000 acknowledged messages a
//   second for 2,000 sent together;
// - round trip: a message's send → signed ack, p50 ≤ a raw frame's echo p50
//   + 1 ms, and (issue 17) ≤ 1.0 ms. A message is acknowledged only once
//   stored and flushed, and the sender flushes its session state before the
//   message leaves: the round-trip group also measures one flush (1 KiB
//   written to a file in the same folder, then `fdatasync`), the floor each
//   of those costs on this machine.
// The messages take the real path: two `Messenger`s (keystore, SQLite,
// DHT-resolved cards, X3DH + Double Ratchet, sealed envelopes, outbox, acks).
// Both users live in this process and share its one JavaScript thread and
// the machine's cores (bench/chat_process_bench.ts puts them in two
// processes). Throughput is measured with each `send` awaited before the
// next (a flush per message), and with the sends submitted together (group
// commit: they share flushes).
//
// Run:    deno bench -A bench/chat_bench.ts
// Report: deno bench -A --json bench/chat_bench.ts | deno run -A bench/report.ts
// The p50/p99 of every bench (from per-iteration times) go to stderr at the
// end, and one JSON line starting with `chat_bench` to stdout (read by
// bench/peers_report.ts).
import { ECHO_PROTOCOL, echoFrames, RawLink } from "./_acks.ts";
import { deliver, deliverTogether, exchange, openChatPair } from "./_chat_pair.ts";
import { printTimed, timedBench } from "./_timed.ts";

const BATCH = 100;
const BURST = 2000;
// The round trip's p50 is taken in a steady state, as a messenger that has
// been running a while sees it: V8 has optimized the code after about a
// thousand messages (in the first few hundred a round trip costs about a
// third more here). `deno bench` warms a bench up for a few iterations
// whatever `warmup` says, so the set-up below runs WARM_UP round trips of
// each kind first.
const ROUND_TRIP = { n: 300, warmup: 20 } as const;
const WARM_UP = 1000;
const THROUGHPUT = { n: 12, warmup: 2 } as const;
const BURST_RUNS = { n: 5, warmup: 1 } as const;

// --- Setup, outside every timed part ----------------------------------------

const pair = await openChatPair("dim-chat-bench-");
const { dir, alice, bob } = pair;

// The first message sets up the session (X3DH from Bob's prekeys in the DHT).
await deliver(alice, "bob", 1);

// The baseline: a bare stream between the same two nodes. Bob's side answers
// every 1 KiB frame with a 4-byte acknowledgement.
await bob.node.handle(ECHO_PROTOCOL, echoFrames);
const raw = new RawLink(await alice.node.dialProtocol(bob.addresses[0]!, ECHO_PROTOCOL));
for (let i = 0; i < WARM_UP; i++) {
  await raw.frames(1);
  await deliver(alice, "bob", 1);
}
// The exchange below: each of its messages starts a new chain.
for (let i = 0; i < WARM_UP / 4; i++) await exchange(pair);

// One flush: 1 KiB written over the start of a file in the same folder as
// the users' databases, then fdatasync. Synchronous, as SQLite's are.
const flushFile = Deno.openSync(`${dir}/flush.bin`, { create: true, read: true, write: true });
const KIB = new Uint8Array(1024).fill(7);
function flush(): Promise<void> {
  flushFile.seekSync(0, Deno.SeekMode.Start);
  flushFile.writeSync(KIB);
  flushFile.syncDataSync();
  return Promise.resolve();
}

// --- Round trip: one message, one acknowledgement -----------------------------

const RT = "round trip, 1 KiB";
timedBench(
  "roundtrip.raw",
  RT,
  "raw 1 KiB frame → 4-byte ack on an open libp2p stream",
  ROUND_TRIP,
  1,
  () => raw.frames(1),
  true,
);
timedBench(
  "roundtrip.flush",
  RT,
  "one flush: 1 KiB written to a file, then fdatasync",
  ROUND_TRIP,
  1,
  flush,
);
timedBench(
  "roundtrip.dim",
  RT,
  "Messenger.send 1 KiB → signed ack (waitFor delivered)",
  ROUND_TRIP,
  1,
  () => deliver(alice, "bob", 1),
);
// A conversation that alternates: each message starts a new sending chain
// (a DH ratchet step), so no key of it is reserved and each waits for its
// own flush. No target; it shows what the reserved keys do not cover.
timedBench(
  "exchange.dim",
  RT,
  "Alice → Bob, Bob answers → Alice: 1 KiB each way, until Alice has the answer",
  ROUND_TRIP,
  2,
  () => exchange(pair),
);

// --- Throughput: a burst of messages ------------------------------------------

const T100 = `throughput, ${BATCH} × 1 KiB`;
timedBench(
  "burst100.raw",
  T100,
  `raw stream, ${BATCH} frames of 1 KiB pipelined, each acked`,
  THROUGHPUT,
  BATCH,
  () => raw.frames(BATCH),
  true,
);
timedBench(
  "burst100.dim.awaited",
  T100,
  `Messenger.send, ${BATCH} messages of 1 KiB, until all are acked`,
  THROUGHPUT,
  BATCH,
  () => deliver(alice, "bob", BATCH),
);
timedBench(
  "burst100.dim",
  T100,
  `Messenger.send, ${BATCH} messages of 1 KiB submitted together, until all are acked`,
  THROUGHPUT,
  BATCH,
  () => deliverTogether(alice, "bob", BATCH),
);

const T2000 = `throughput, ${BURST.toLocaleString("en-US")} × 1 KiB sent together`;
timedBench(
  "burst2000.raw",
  T2000,
  `raw stream, ${BURST} frames of 1 KiB pipelined, each acked`,
  BURST_RUNS,
  BURST,
  () => raw.frames(BURST),
  true,
);
timedBench(
  "burst2000.dim",
  T2000,
  `Messenger.send, ${BURST} messages of 1 KiB submitted together, until all are acked`,
  BURST_RUNS,
  BURST,
  () => deliverTogether(alice, "bob", BURST),
);

// --- Percentiles and teardown --------------------------------------------------

globalThis.addEventListener("unload", () => {
  printTimed("chat_bench", { processes: 1 });
  raw.abort();
  flushFile.close();
  alice.stop().catch(() => {});
  bob.stop().catch(() => {});
  try {
    Deno.removeSync(dir, { recursive: true });
  } catch {
    // Still in use by the messengers closing: the OS temp directory is fine.
  }
});
