// Chat between two processes, as Tox's two instances ran in issue 17: bob is
// a child process (bench/_chat_peer.ts, a real `Messenger` with a home of
// its own), alice a `Messenger` in this one. Each has its own JavaScript
// thread, so the figures show what one user's work costs when it does not
// share a thread with the other's.
// Targets (issue 17), against raw baselines between the same two processes:
// ≥ 2,000 acknowledged messages a second for 2,000 × 1 KiB sent together,
// and a 1 KiB round trip p50 ≤ 1.0 ms. The baselines are 1 KiB frames on a
// bare libp2p stream between alice's and bob's nodes, each answered by a
// 4-byte acknowledgement from bob's process (bench/_acks.ts).
//
// Run: deno bench -A bench/chat_process_bench.ts
// The p50/p99 of every bench (from per-iteration times) go to stderr at the
// end, and one JSON line starting with `chat_process_bench` to stdout (read
// by bench/peers_report.ts).
import { fileURLToPath } from "node:url";
import type { Messenger } from "../lib/messenger/messenger.ts";
import { ECHO_PROTOCOL, RawLink } from "./_acks.ts";
import { deliver, deliverTogether, openUser, readLines } from "./_chat_pair.ts";
import { printTimed, timedBench } from "./_timed.ts";

const BURST = 2000;
// The round trip's p50 is taken in a steady state, as a messenger that has
// been running a while sees it: V8 has optimized the code after about a
// thousand messages (in the first few hundred a round trip costs about a
// third more here). `deno bench` warms a bench up for a few iterations
// whatever `warmup` says, so the set-up below runs WARM_UP round trips of
// each kind first.
const ROUND_TRIP = { n: 300, warmup: 20 } as const;
const WARM_UP = 1000;
const BURST_RUNS = { n: 5, warmup: 1 } as const;
const AWAITED_RUNS = { n: 12, warmup: 2 } as const;
const SETUP_LIMIT_MS = 60_000;

// --- Setup, outside every timed part ----------------------------------------

const dir = await Deno.makeTempDir({ prefix: "dim-chat-process-bench-" });
const peer = new Deno.Command(Deno.execPath(), {
  args: [
    "run",
    `--config=${fileURLToPath(new URL("../deno.json", import.meta.url))}`,
    "--allow-read",
    "--allow-write",
    "--allow-env",
    "--allow-net",
    "--allow-sys",
    fileURLToPath(new URL("./_chat_peer.ts", import.meta.url)),
  ],
  stdin: "piped",
  stdout: "piped",
  stderr: "inherit",
  // In a process group of its own: otherwise it is killed with this
  // process, before it has removed its folder.
  detached: true,
}).spawn();
const peerIn = peer.stdin.getWriter();
const peerOut = readLines(peer.stdout);

/** The child's next JSON line (other lines it prints are passed over). */
async function fromPeer(): Promise<Record<string, unknown>> {
  const timeout = AbortSignal.timeout(SETUP_LIMIT_MS);
  const expired = new Promise<never>((_, reject) =>
    timeout.addEventListener("abort", () => reject(new Error("chat peer: no answer in time")))
  );
  for (;;) {
    const line = await Promise.race([peerOut.next(), expired]);
    if (line.done === true) throw new Error("chat peer exited during setup");
    if (line.value.startsWith("{")) return JSON.parse(line.value);
  }
}

function stopPeer(): void {
  try {
    peer.kill("SIGTERM");
  } catch {
    // It has exited already.
  }
}

let alice: Messenger | undefined;
let raw: RawLink;
try {
  const bob = await fromPeer() as { id: string; addresses: string[] };
  alice = await openUser(dir, "alice", { bootstrap: bob.addresses });
  await peerIn.write(new TextEncoder().encode(`${alice.id}\n`));
  await fromPeer(); // {"ready": true}: bob knows alice
  // Drain the child's stdout from now on, so it never blocks on a full pipe.
  (async () => {
    for await (const _ of peerOut);
  })().catch(() => {});
  await alice.addContact("bob", bob.id);
  // The first message sets up the session (X3DH from Bob's prekeys in the DHT).
  await deliver(alice, "bob", 1);
  raw = new RawLink(await alice.node.dialProtocol(bob.addresses[0]!, ECHO_PROTOCOL));
  for (let i = 0; i < WARM_UP; i++) {
    await raw.frames(1);
    await deliver(alice, "bob", 1);
  }
} catch (err) {
  stopPeer();
  await peer.status;
  await alice?.stop().catch(() => {});
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  throw err;
}
const sender = alice;

// --- Round trip: one message, one acknowledgement -----------------------------

const RT = "round trip, 1 KiB, two processes";
timedBench(
  "roundtrip.raw",
  RT,
  "raw 1 KiB frame → 4-byte ack on an open libp2p stream to the other process",
  ROUND_TRIP,
  1,
  () => raw.frames(1),
  true,
);
timedBench(
  "roundtrip.dim",
  RT,
  "Messenger.send 1 KiB → signed ack from the other process",
  ROUND_TRIP,
  1,
  () => deliver(sender, "bob", 1),
);

// --- Throughput: 100 messages, each send awaited ------------------------------

timedBench(
  "burst100.dim.awaited",
  "throughput, 100 × 1 KiB, each send awaited, two processes",
  "Messenger.send, 100 messages of 1 KiB, each awaited, until all are acked by the other process",
  AWAITED_RUNS,
  100,
  () => deliver(sender, "bob", 100),
);

// --- Throughput: 2,000 messages sent together ---------------------------------

const T2000 = `throughput, ${BURST.toLocaleString("en-US")} × 1 KiB sent together, two processes`;
timedBench(
  "burst2000.raw",
  T2000,
  `raw stream, ${BURST} frames of 1 KiB pipelined, each acked by the other process`,
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
  () => deliverTogether(sender, "bob", BURST),
);

// --- Percentiles and teardown --------------------------------------------------

globalThis.addEventListener("unload", () => {
  printTimed("chat_process_bench", { processes: 2 });
  raw.abort();
  // Bob stops, removes his own folder and exits on SIGTERM, or when his
  // stdin closes as this process ends.
  stopPeer();
  sender.stop().catch(() => {});
  try {
    Deno.removeSync(dir, { recursive: true });
  } catch {
    // Still in use by alice closing: the OS temp directory is fine.
  }
});
