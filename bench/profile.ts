// Where does the time of a chat message and of a file transfer go?
//
// Runs the chat and bulk workloads of `chat_bench.ts` and `transfer_bench.ts`
// (two nodes in this process, real SQLite files, real TCP on loopback) with
// V8's sampling profiler on, next to the same raw-stream baselines, and
// prints per item: wall time, CPU of the whole process (every thread, user
// and kernel), and the JavaScript thread's time by what it was running.
//
// Run: deno run -A bench/profile.ts [chat|round-trip|bulk ...]   (all three by default)
//
// The JavaScript thread is one of the process's threads: CPU beyond its busy
// time is spent by the others (WebCrypto's and the file system's thread
// pools, the kernel's TCP and disk work). A native function (a SQLite
// statement, a WebCrypto call, a socket write) counts for the code that
// called it.
import { Session } from "node:inspector";
import process from "node:process";
import { Identity } from "../lib/crypto/identity.ts";
import { createDhtNode } from "../lib/dht/node.ts";
import type { MessageStream } from "../lib/messaging/mailbox.ts";
import { DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE } from "../lib/messaging/constants.ts";
import { FileReceiver } from "../lib/messaging/file_receive.ts";
import { type FileSource, sendFile } from "../lib/messaging/file_send.ts";
import { transportFor } from "../lib/messenger/transport.ts";
import { openChatPair } from "./_chat_pair.ts";
import { breakdown, type CpuProfile } from "./_profile_breakdown.ts";

const LOOPBACK = ["/ip4/127.0.0.1/tcp/0"];
const SAMPLING_US = 200;

// --- The profiler -------------------------------------------------------------

const session = new Session();
session.connect();
function post<T>(method: string, params: object = {}): Promise<T> {
  return new Promise((resolve, reject) =>
    session.post(
      method,
      params,
      (err: Error | null, result?: object) => err ? reject(err) : resolve(result as T),
    )
  );
}
await post("Profiler.enable");
await post("Profiler.setSamplingInterval", { interval: SAMPLING_US });

interface Measured {
  readonly name: string;
  readonly items: number;
  readonly unit: string;
  readonly wallMs: number;
  readonly userMs: number;
  readonly systemMs: number;
  readonly thread: Map<string, number>;
}

async function measure(
  name: string,
  items: number,
  unit: string,
  work: () => Promise<void>,
): Promise<Measured> {
  await post("Profiler.start");
  const cpu = process.cpuUsage();
  const start = performance.now();
  await work();
  const wallMs = performance.now() - start;
  const used = process.cpuUsage(cpu);
  const { profile } = await post<{ profile: CpuProfile }>("Profiler.stop");
  return {
    name,
    items,
    unit,
    wallMs,
    userMs: used.user / 1000,
    systemMs: used.system / 1000,
    thread: breakdown(profile),
  };
}

function per(ms: number, items: number): string {
  const us = ms * 1000 / items;
  return us >= 10_000 ? `${(us / 1000).toFixed(1)} ms` : `${us.toFixed(0)} µs`;
}

function report(title: string, runs: Measured[]): void {
  const categories = new Map<string, number>();
  for (const run of runs) {
    for (const [c, ms] of run.thread) {
      if (c !== "idle") categories.set(c, (categories.get(c) ?? 0) + ms);
    }
  }
  const order = [...categories].sort((a, b) => b[1] - a[1]).map(([c]) => c);
  const lines = [
    `\n### ${title}\n`,
    `| per ${runs[0]!.unit} | ${runs.map((r) => r.name).join(" | ")} |`,
    `| --- | ${runs.map(() => "---:").join(" | ")} |`,
  ];
  const row = (label: string, value: (r: Measured) => string) =>
    lines.push(`| ${label} | ${runs.map(value).join(" | ")} |`);
  row("wall time", (r) => per(r.wallMs, r.items));
  row("CPU, all threads (user + kernel)", (r) => per(r.userMs + r.systemMs, r.items));
  row("… of it in the kernel", (r) => per(r.systemMs, r.items));
  const busy = (r: Measured) =>
    [...r.thread].reduce((sum, [c, ms]) => c === "idle" ? sum : sum + ms, 0);
  row("JavaScript thread busy (or blocked in a call)", (r) => per(busy(r), r.items));
  for (const c of order) row(`… ${c}`, (r) => per(r.thread.get(c) ?? 0, r.items));
  row("other threads and the kernel (CPU − busy)", (r) => {
    const rest = r.userMs + r.systemMs - busy(r);
    return rest > 0 ? per(rest, r.items) : "—";
  });
  console.log(lines.join("\n"));
}

// --- Chat: the path of chat_bench.ts ------------------------------------------

async function chat(which: Set<string>): Promise<void> {
  const { dir, alice, bob } = await openChatPair("dim-profile-");
  const text = "x".repeat(1024);
  const deliver = async (count: number, together: boolean) => {
    const sent = [];
    if (together) {
      sent.push(...await Promise.all(Array.from({ length: count }, () => alice.send("bob", text))));
    } else {
      for (let i = 0; i < count; i++) sent.push(await alice.send("bob", text));
    }
    const signal = AbortSignal.timeout(60_000);
    await Promise.all(sent.map((m) => alice.waitFor(m.seq, { signal })));
  };

  // The baseline: 1 KiB frames on a bare stream, each answered with 4 bytes.
  const frame = new Uint8Array(4 + 1024);
  new DataView(frame.buffer).setUint32(0, 1024);
  await bob.node.handle("/dim-profile/ack/1.0.0", async (stream) => {
    let pending = 0;
    for await (const chunk of stream) {
      pending += chunk.subarray().length;
      for (; pending >= frame.length; pending -= frame.length) stream.send(new Uint8Array(4));
    }
    await stream.close();
  });
  const raw: MessageStream = await alice.node.dialProtocol(
    bob.addresses[0]!,
    "/dim-profile/ack/1.0.0",
  );
  let acked = 0;
  let waiting: { count: number; resolve: () => void } | undefined;
  (async () => {
    for await (const chunk of raw) {
      acked += chunk.subarray().length / 4;
      if (waiting !== undefined && acked >= waiting.count) waiting.resolve();
    }
  })().catch(() => {});
  let framesSent = 0;
  const rawFrames = async (count: number) => {
    let ready = true;
    for (let i = 0; i < count; i++) ready = raw.send(frame) && ready;
    framesSent += count;
    if (!ready) await raw.onDrain();
    if (acked < framesSent) {
      await new Promise<void>((resolve) => (waiting = { count: framesSent, resolve }));
    }
  };

  await deliver(1, false); // the session
  await deliver(200, true);
  await rawFrames(2000);
  try {
    if (which.has("chat")) {
      const batches = 20;
      report("Chat throughput: 100 messages of 1 KiB submitted together, 20 times", [
        await measure("raw 1 KiB frames", 100 * batches, "message", async () => {
          for (let i = 0; i < batches; i++) await rawFrames(100);
        }),
        await measure("DIM messages", 100 * batches, "message", async () => {
          for (let i = 0; i < batches; i++) await deliver(100, true);
        }),
      ]);
    }
    if (which.has("round-trip")) {
      const n = 300;
      report("Chat round trip: one message of 1 KiB at a time, until acknowledged", [
        await measure("raw 1 KiB frame", n, "message", async () => {
          for (let i = 0; i < n; i++) await rawFrames(1);
        }),
        await measure("DIM message", n, "message", async () => {
          for (let i = 0; i < n; i++) await deliver(1, false);
        }),
      ]);
    }
  } finally {
    raw.abort(new Error("profile over"));
    await Promise.all([alice.stop(), bob.stop()]);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

// --- Bulk: the path of transfer_bench.ts --------------------------------------

async function bulk(): Promise<void> {
  const size = 64 * 1024 * 1024;
  const sender = await createDhtNode({ listen: LOOPBACK });
  const recipient = await createDhtNode({ listen: LOOPBACK });
  const [alice, bob] = await Promise.all([Identity.generate(), Identity.generate()]);
  const receiver = new FileReceiver(bob, {
    accept: () => new WritableStream<Uint8Array>({ write() {} }),
    maxChunkSize: MAX_CHUNK_SIZE,
  });
  await receiver.start(transportFor(recipient));
  const block = new Uint8Array(DEFAULT_CHUNK_SIZE);
  for (let i = 0; i < block.length; i += 65536) {
    crypto.getRandomValues(block.subarray(i, i + 65536));
  }
  await recipient.handle("/dim-profile/sink/1.0.0", async (stream) => {
    let bytes = 0;
    for await (const chunk of stream) bytes += chunk.subarray().length;
    stream.send(new Uint8Array([bytes === size ? 1 : 0]));
    await stream.close();
  });
  const rawStream = async () => {
    const stream = await sender.dialProtocol(recipient.multiaddrs[0]!, "/dim-profile/sink/1.0.0");
    for (let sent = 0; sent < size; sent += block.length) {
      if (!stream.send(block)) await stream.onDrain();
    }
    await stream.close();
    let answer = 0;
    for await (const chunk of stream) answer = chunk.subarray()[0] ?? 0;
    if (answer !== 1) throw new Error("the recipient did not get every byte");
  };
  const transfer = async () => {
    let left = size;
    const source: FileSource = {
      name: "profile.bin",
      size,
      stream: new ReadableStream<Uint8Array>({
        pull(controller) {
          if (left === 0) return controller.close();
          left -= block.length;
          controller.enqueue(block);
        },
      }),
    };
    const sent = await sendFile(transportFor(sender), {
      identity: alice,
      recipient: {
        userId: bob.id,
        encryptionPublicKey: bob.encryptionPublicKey,
        peer: { peerId: recipient.peerId, addresses: recipient.multiaddrs },
      },
      source,
    });
    if (sent.bytes !== size) throw new Error("short transfer");
  };
  try {
    await rawStream();
    await transfer();
    const runs = 3;
    report(`Bulk: a 64 MiB file, ${runs} times (per MiB)`, [
      await measure("raw libp2p stream", 64 * runs, "MiB", async () => {
        for (let i = 0; i < runs; i++) await rawStream();
      }),
      await measure("sendFile", 64 * runs, "MiB", async () => {
        for (let i = 0; i < runs; i++) await transfer();
      }),
    ]);
  } finally {
    await receiver.stop();
    await Promise.all([sender.stop(), recipient.stop()]);
  }
}

const which = new Set(Deno.args.length > 0 ? Deno.args : ["chat", "round-trip", "bulk"]);
for (const w of which) {
  if (!["chat", "round-trip", "bulk"].includes(w)) {
    console.error(`Unknown workload "${w}": choose chat, round-trip or bulk.`);
    Deno.exit(2);
  }
}
console.log(
  `Profile of ${[...which].join(", ")}: ${new Date().toISOString().slice(0, 10)}, ` +
    `Deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} cores, sampling every ${SAMPLING_US} µs.`,
);
if (which.has("chat") || which.has("round-trip")) await chat(which);
if (which.has("bulk")) await bulk();
session.disconnect();
// Listening nodes keep the process alive after they stop (see README).
Deno.exit(0);
