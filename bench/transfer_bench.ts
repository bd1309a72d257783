// How close does a file transfer come to the stream it runs on?
// Target: sendFile moves 64 MiB at ≥ 0.8× the rate of a raw libp2p stream
// carrying the same bytes between the same two nodes, measured in the same
// run. Both nodes live in this process, so they share its one JavaScript
// thread: every cost below is paid by one core for both ends.
//
// Run:     deno bench -A bench/transfer_bench.ts
// Report:  deno bench -A --json bench/transfer_bench.ts | deno run -A bench/report.ts
// Profile: deno run -A --cpu-prof --cpu-prof-dir=prof bench/transfer_bench.ts profile
import { createHash } from "node:crypto";
import { Identity } from "../lib/crypto/identity.ts";
import { createDhtNode } from "../lib/dht/node.ts";
import type { MessageStream } from "../lib/messaging/mailbox.ts";
import { DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE } from "../lib/messaging/constants.ts";
import { FileReceiver } from "../lib/messaging/file_receive.ts";
import { type FileSource, sendFile } from "../lib/messaging/file_send.ts";
import { transportFor } from "../lib/messenger/transport.ts";

const KIB = 1024;
const MIB = 1024 * KIB;
const SIZE = 64 * MIB;
const RAW_PROTOCOL = "/dim-bench/raw-sink/1.0.0";
const HASHED_PROTOCOL = "/dim-bench/raw-sink-sha256/1.0.0";
// Each iteration moves 64 MiB: a few are enough, and keep the file's run short.
const HEAVY = { n: 5, warmup: 1 } as const;

// --- Setup, outside every timed part ----------------------------------------

const listen = ["/ip4/127.0.0.1/tcp/0"];
const sender = await createDhtNode({ listen });
const recipient = await createDhtNode({ listen });
const [alice, bob] = await Promise.all([Identity.generate(), Identity.generate()]);
const peer = { peerId: recipient.peerId, addresses: recipient.multiaddrs };
const senderTransport = transportFor(sender);

// The recipient keeps nothing: the question is the transfer, not a disk.
const receiver = new FileReceiver(bob, {
  accept: () => new WritableStream<Uint8Array>({ write() {} }),
  maxChunkSize: MAX_CHUNK_SIZE,
});
await receiver.start(transportFor(recipient));

// One block of random bytes, sent over and over: no allocation per iteration.
const block = new Uint8Array(DEFAULT_CHUNK_SIZE);
for (let i = 0; i < block.length; i += 65536) crypto.getRandomValues(block.subarray(i, i + 65536));

/** Counts what arrives; answers one byte once the sender has closed. */
async function sink(stream: MessageStream, hash: boolean): Promise<void> {
  const h = createHash("sha256");
  let bytes = 0;
  for await (const chunk of stream) {
    if (chunk instanceof Uint8Array) {
      bytes += chunk.length;
      if (hash) h.update(chunk);
    } else {
      for (const piece of chunk as unknown as Iterable<Uint8Array>) {
        bytes += piece.length;
        if (hash) h.update(piece);
      }
    }
  }
  if (hash) h.digest();
  stream.send(new Uint8Array([bytes === SIZE ? 1 : 0]));
  await stream.close();
}
await recipient.handle(RAW_PROTOCOL, (stream) => sink(stream, false));
await recipient.handle(HASHED_PROTOCOL, (stream) => sink(stream, true));

/** The baseline: SIZE bytes on a fresh stream, then the recipient's one-byte answer. */
async function rawStream(protocol: string, hash: boolean): Promise<void> {
  const stream = await sender.dialProtocol(recipient.multiaddrs[0]!, protocol);
  const h = createHash("sha256");
  for (let sent = 0; sent < SIZE; sent += block.length) {
    if (hash) h.update(block);
    if (!stream.send(block)) await stream.onDrain();
  }
  if (hash) h.digest();
  await stream.close();
  let answer = 0;
  for await (const chunk of stream) answer = chunk.subarray()[0] ?? 0;
  if (answer !== 1) throw new Error("the recipient did not get every byte");
}

/** SIZE bytes from `block`, as a file. */
function source(): FileSource {
  let left = SIZE;
  return {
    name: "bench.bin",
    size: SIZE,
    stream: new ReadableStream<Uint8Array>({
      pull(controller) {
        if (left === 0) return controller.close();
        const n = Math.min(left, block.length);
        left -= n;
        controller.enqueue(n === block.length ? block : block.subarray(0, n));
      },
    }),
  };
}

async function transfer(chunkSize: number): Promise<void> {
  const sent = await sendFile(senderTransport, {
    identity: alice,
    recipient: { userId: bob.id, encryptionPublicKey: bob.encryptionPublicKey, peer },
    source: source(),
  }, { chunkSize });
  if (sent.bytes !== SIZE) throw new Error("short transfer");
}

// --- The question: a file transfer against the raw stream --------------------

Deno.bench({
  name: "raw libp2p stream (TCP + Noise + Yamux), 64 MiB",
  group: "bulk 64 MiB",
  baseline: true,
  ...HEAVY,
  async fn() {
    await rawStream(RAW_PROTOCOL, false);
  },
});
Deno.bench({
  name: "sendFile (HPKE + AES-GCM chunks, SHA-256, signed receipt), 64 MiB",
  group: "bulk 64 MiB",
  ...HEAVY,
  async fn() {
    await transfer(DEFAULT_CHUNK_SIZE);
  },
});
// Where part of the difference goes: the same raw stream, with the SHA-256
// of every byte at each end (Deno's native node:crypto hash, as sendFile
// uses). The rest is AES-GCM at each end, on the same two cores.
Deno.bench({
  name: "raw stream + SHA-256 of every byte at both ends (diagnostic), 64 MiB",
  group: "bulk 64 MiB",
  ...HEAVY,
  async fn() {
    await rawStream(HASHED_PROTOCOL, true);
  },
});

// --- Which chunk size is fastest ---------------------------------------------

for (const chunkSize of [DEFAULT_CHUNK_SIZE, 256 * KIB, 64 * KIB]) {
  Deno.bench({
    name: `sendFile, ${chunkSize / KIB} KiB chunks${
      chunkSize === DEFAULT_CHUNK_SIZE ? " (default)" : ""
    }, 64 MiB`,
    group: "chunk size, 64 MiB",
    baseline: chunkSize === DEFAULT_CHUNK_SIZE,
    ...HEAVY,
    async fn() {
      await transfer(chunkSize);
    },
  });
}

// `deno run … bench/transfer_bench.ts profile`: a few transfers outside the
// bench harness, for `--cpu-prof`.
if (Deno.args[0] === "profile") {
  for (let i = 0; i < 4; i++) {
    const start = performance.now();
    await transfer(DEFAULT_CHUNK_SIZE);
    const ms = performance.now() - start;
    console.log(`sendFile 64 MiB: ${ms.toFixed(0)} ms, ${(SIZE / 1e3 / ms).toFixed(0)} MB/s`);
  }
  for (let i = 0; i < 4; i++) {
    const start = performance.now();
    await rawStream(RAW_PROTOCOL, false);
    const ms = performance.now() - start;
    console.log(`raw stream 64 MiB: ${ms.toFixed(0)} ms, ${(SIZE / 1e3 / ms).toFixed(0)} MB/s`);
  }
}

// The nodes stop once every bench has run (`unload` cannot wait, but the
// process ends right after it).
globalThis.addEventListener("unload", () => {
  receiver.stop().catch(() => {});
  sender.stop().catch(() => {});
  recipient.stop().catch(() => {});
});
if (Deno.args[0] === "profile") {
  await receiver.stop();
  await sender.stop();
  await recipient.stop();
}
