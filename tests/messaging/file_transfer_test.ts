// File transfer over /dim/file/1.0.0 between real nodes on 127.0.0.1.
import assert from "node:assert/strict";
import { concat, toHex, u32, u64, utf8 } from "../../lib/platform/bytes.ts";
import { setupBaseS } from "../../lib/crypto/hpke.ts";
import { Identity, verifySignature } from "../../lib/crypto/identity.ts";
import { createDhtNode, type DhtNode } from "../../lib/dht/node.ts";
import {
  DecryptionError,
  OutdatedVersionError,
  PeerUnreachableError,
  ProtocolError,
} from "../../lib/errors.ts";
import type { MessageStream } from "../../lib/messaging/mailbox.ts";
import { DEFAULT_CHUNK_SIZE } from "../../lib/messaging/constants.ts";
import {
  FILE_PROTOCOL,
  FileFrameType,
  sanitizeFileName,
  TransferRefusedError,
} from "../../lib/messaging/file_wire.ts";
import {
  type FileOffer,
  FileReceiver,
  type FileReceiverOptions,
  type ReceivedFile,
} from "../../lib/messaging/file_receive.ts";
import {
  type FileRecipient,
  type FileSource,
  type FileTransport,
  sendFile,
  type SendFileOptions,
} from "../../lib/messaging/file_send.ts";
import { fileSink } from "../../lib/messaging/file_io.ts";
import { transportFor } from "../../lib/messenger/transport.ts";

const LOOPBACK = ["/ip4/127.0.0.1/tcp/0"];
const MIB = 1024 * 1024;

// --- A sender node, a recipient node, identities ------------------------------

interface Pair extends AsyncDisposable {
  readonly a: DhtNode;
  readonly b: DhtNode;
  readonly alice: Identity;
  readonly bob: Identity;
  readonly dir: string;
  /** Bob as Alice addresses him. */
  readonly bobRecipient: FileRecipient;
  /** Starts Bob's receiver with `options`, and records what it reports. */
  receive(options?: FileReceiverOptions): Promise<Reports>;
}

interface Reports {
  readonly receiver: FileReceiver;
  readonly received: ReceivedFile[];
  readonly failed: { error: unknown; offer: FileOffer | undefined }[];
  /** Resolves at the next `onReceived` or `onFailed`. */
  next(): Promise<void>;
}

async function pair(): Promise<Pair> {
  const a = await createDhtNode({ listen: LOOPBACK });
  const b = await createDhtNode({ listen: LOOPBACK });
  const [alice, bob] = await Promise.all([Identity.generate(), Identity.generate()]);
  const dir = await Deno.makeTempDir({ prefix: "dim-file-test-" });
  const receivers: FileReceiver[] = [];
  return {
    a,
    b,
    alice,
    bob,
    dir,
    bobRecipient: {
      userId: bob.id,
      encryptionPublicKey: bob.encryptionPublicKey,
      peer: { peerId: b.peerId, addresses: b.multiaddrs },
    },
    async receive(options = {}) {
      const received: ReceivedFile[] = [];
      const failed: { error: unknown; offer: FileOffer | undefined }[] = [];
      let wake: (() => void) | undefined;
      const receiver = new FileReceiver(bob, {
        ...options,
        onReceived(file) {
          received.push(file);
          options.onReceived?.(file);
          wake?.();
        },
        onFailed(error, offer) {
          failed.push({ error, offer });
          options.onFailed?.(error, offer);
          wake?.();
        },
      });
      receivers.push(receiver);
      await receiver.start(transportFor(b));
      return {
        receiver,
        received,
        failed,
        next: () => new Promise<void>((resolve) => (wake = resolve)),
      };
    },
    async [Symbol.asyncDispose]() {
      for (const r of receivers) await r.stop();
      await a.stop();
      await b.stop();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

// --- Sources and sinks ------------------------------------------------------

function randomBytes(n: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) crypto.getRandomValues(out.subarray(i, i + 65536));
  return out;
}

/** A source over `bytes`, in pieces of uneven sizes; `cancelled` records a cancel. */
function sourceOf(name: string, bytes: Uint8Array): FileSource & { cancelled: boolean } {
  let offset = 0;
  let piece = 1000;
  const result = {
    name,
    size: bytes.length,
    cancelled: false,
    stream: new ReadableStream<Uint8Array>({
      pull(controller) {
        if (offset >= bytes.length) return controller.close();
        piece = (piece * 7 + 12345) % 100_000 + 1;
        controller.enqueue(bytes.slice(offset, offset + piece));
        offset += piece;
      },
      cancel() {
        result.cancelled = true;
      },
    }),
  };
  return result;
}

/** `size` pseudo-random bytes made on the fly, never all in memory. */
function generatedSource(name: string, size: number): FileSource & { cancelled: boolean } {
  const block = randomBytes(64 * 1024);
  let left = size;
  const result = {
    name,
    size,
    cancelled: false,
    stream: new ReadableStream<Uint8Array>({
      pull(controller) {
        if (left === 0) return controller.close();
        const n = Math.min(left, block.length);
        left -= n;
        const out = block.slice(0, n);
        out[0] = left & 0xff;
        controller.enqueue(out);
      },
      cancel() {
        result.cancelled = true;
      },
    }),
  };
  return result;
}

/** Sinks that count bytes into `total.bytes` and forget them. */
function countingSinks(): { sink(): WritableStream<Uint8Array>; bytes: number } {
  const total = {
    bytes: 0,
    sink: () =>
      new WritableStream<Uint8Array>({
        write(chunk) {
          total.bytes += chunk.length;
        },
      }),
  };
  return total;
}

async function sha256Hex(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  return toHex(new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)));
}

async function listDir(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) names.push(entry.name);
  return names.sort();
}

const QUICK: SendFileOptions = { idleTimeoutMs: 10_000, acceptTimeoutMs: 10_000 };

// --- A man in the middle on the sender's stream ---------------------------------

interface Tamper {
  /** Flip one bit in the body of this CHUNK frame (0-based). */
  readonly flipChunk?: number;
  /** Leave this CHUNK frame out. */
  readonly dropChunk?: number;
  /** Flip one bit in the body of the END frame (the signed SHA-256). */
  readonly flipEnd?: boolean;
}

/**
 * Wraps a transport so that the streams it opens edit the frames the sender
 * writes, on their way to the wire. Counts the CHUNK frames it sees.
 */
function tampering(inner: FileTransport, tamper: Tamper): FileTransport & { chunks: number } {
  const wrapper = {
    chunks: 0,
    async openStream(
      peer: Parameters<FileTransport["openStream"]>[0],
      protocol: string,
      options: { readonly signal: AbortSignal },
    ): Promise<MessageStream> {
      const stream = await inner.openStream(peer, protocol, options);
      const header: number[] = [];
      let left = 0;
      let drop = false;
      let flipAt = -1;
      let position = 0;
      const edit = (data: Uint8Array): Uint8Array => {
        const out: number[] = [];
        for (const byte of data) {
          if (left === 0) {
            header.push(byte);
            if (header.length < 5) continue;
            const length = ((header[0]! << 24) | (header[1]! << 16) | (header[2]! << 8) |
              header[3]!) >>> 0;
            const isChunk = header[4] === FileFrameType.Chunk;
            const index = isChunk ? wrapper.chunks++ : -1;
            drop = isChunk && index === tamper.dropChunk;
            flipAt = (isChunk && index === tamper.flipChunk) ||
                (header[4] === FileFrameType.End && tamper.flipEnd === true)
              ? 10
              : -1;
            position = 0;
            left = length - 1;
            if (!drop) out.push(...header);
            header.length = 0;
            continue;
          }
          left--;
          if (!drop) out.push(position === flipAt ? byte ^ 0x01 : byte);
          position++;
        }
        return Uint8Array.from(out);
      };
      return {
        send: (data) => stream.send(edit(data)),
        onDrain: (o) => stream.onDrain(o),
        close: (o) => stream.close(o),
        abort: (err) => stream.abort(err),
        [Symbol.asyncIterator]: () => stream[Symbol.asyncIterator](),
      };
    },
  };
  return wrapper;
}

// --- Tests --------------------------------------------------------------------

Deno.test("sendFile delivers files of 0 B, 1 B, chunk size ± 1 and a few MiB byte for byte", async (t) => {
  await using net = await pair();
  const reports = await net.receive({
    accept: (offer) =>
      offer.senderId === net.alice.id ? fileSink(`${net.dir}/${offer.name}`) : undefined,
  });
  const sizes = [0, 1, DEFAULT_CHUNK_SIZE - 1, DEFAULT_CHUNK_SIZE, DEFAULT_CHUNK_SIZE + 1];
  sizes.push(3 * MIB + 17);
  for (const size of sizes) {
    await t.step(`${size} bytes`, async () => {
      const bytes = randomBytes(size);
      const name = `file-${size}.bin`;
      const progress: number[] = [];
      const done = reports.next();
      const sent = await sendFile(transportFor(net.a), {
        identity: net.alice,
        recipient: net.bobRecipient,
        source: sourceOf(name, bytes),
      }, { ...QUICK, onProgress: (p) => progress.push(p.bytes) });
      await done;
      const expected = await sha256Hex(bytes);
      assert.equal(sent.bytes, size);
      assert.equal(sent.name, name);
      assert.equal(sent.sha256, expected);
      assert.equal(sent.receipt.length, 64);
      assert.equal(progress.at(-1), size);
      const got = reports.received.at(-1)!;
      assert.deepEqual(
        { name: got.name, bytes: got.bytes, sha256: got.sha256, senderId: got.senderId },
        { name, bytes: size, sha256: expected, senderId: net.alice.id },
      );
      assert.equal(got.fileId, sent.fileId);
      const written = await Deno.readFile(`${net.dir}/${name}`);
      assert.equal(written.length, size);
      assert.ok(written.every((b, i) => b === bytes[i]), "written bytes differ");
    });
  }
  assert.deepEqual(reports.failed, []);
  assert.deepEqual(await listDir(net.dir), sizes.map((s) => `file-${s}.bin`).sort());
});

Deno.test("a flipped bit in a chunk is refused as corrupt and no partial file is kept", async () => {
  await using net = await pair();
  const reports = await net.receive({ accept: (offer) => fileSink(`${net.dir}/${offer.name}`) });
  const source = sourceOf("tampered.bin", randomBytes(3 * DEFAULT_CHUNK_SIZE + 5));
  const failed = reports.next();
  const err = await sendFile(tampering(transportFor(net.a), { flipChunk: 1 }), {
    identity: net.alice,
    recipient: net.bobRecipient,
    source,
  }, QUICK).catch((e) => e);
  await failed;
  assert.ok(err instanceof TransferRefusedError, String(err));
  assert.equal(err.reason, "corrupt");
  assert.equal(err.message, "Cannot send file: the recipient found it altered or incomplete");
  assert.equal(reports.received.length, 0);
  assert.ok(reports.failed[0]?.error instanceof DecryptionError);
  assert.equal(reports.failed[0]?.offer?.name, "tampered.bin");
  assert.deepEqual(await listDir(net.dir), [], "the partial file must be gone");
});

Deno.test("a flipped bit in the end is refused and the fully written file is discarded", async () => {
  await using net = await pair();
  const reports = await net.receive({ accept: (offer) => fileSink(`${net.dir}/${offer.name}`) });
  const failed = reports.next();
  const err = await sendFile(tampering(transportFor(net.a), { flipEnd: true }), {
    identity: net.alice,
    recipient: net.bobRecipient,
    source: sourceOf("almost.bin", randomBytes(2 * DEFAULT_CHUNK_SIZE)),
  }, QUICK).catch((e) => e);
  await failed;
  assert.ok(err instanceof TransferRefusedError, String(err));
  assert.equal(err.reason, "corrupt");
  assert.ok(reports.failed[0]?.error instanceof DecryptionError);
  assert.deepEqual(await listDir(net.dir), [], "every byte arrived, yet nothing is presented");
});

Deno.test("a dropped chunk is refused as corrupt", async () => {
  await using net = await pair();
  const sink = countingSinks();
  const reports = await net.receive({ accept: () => sink.sink() });
  const failed = reports.next();
  const err = await sendFile(tampering(transportFor(net.a), { dropChunk: 1 }), {
    identity: net.alice,
    recipient: net.bobRecipient,
    source: sourceOf("dropped.bin", randomBytes(4 * DEFAULT_CHUNK_SIZE)),
  }, QUICK).catch((e) => e);
  await failed;
  assert.ok(err instanceof TransferRefusedError, String(err));
  assert.equal(err.reason, "corrupt");
  assert.equal(reports.received.length, 0);
  assert.ok(reports.failed[0]?.error instanceof DecryptionError);
  assert.equal(sink.bytes, DEFAULT_CHUNK_SIZE, "only the chunk before the gap was written");
});

Deno.test("an unknown sender is refused before any chunk is sent", async (t) => {
  await using net = await pair();
  const eve = await Identity.generate();
  const offers: FileOffer[] = [];
  const reports = await net.receive({
    accept: (offer) => {
      offers.push(offer);
      return offer.senderId === net.alice.id ? countingSinks().sink() : undefined;
    },
  });

  await t.step("the policy names Alice only", async () => {
    const transport = tampering(transportFor(net.a), {});
    const source = sourceOf("from-eve.bin", randomBytes(2 * DEFAULT_CHUNK_SIZE));
    const failed = reports.next();
    const err = await sendFile(transport, {
      identity: eve,
      recipient: net.bobRecipient,
      source,
    }, QUICK).catch((e) => e);
    await failed;
    assert.ok(err instanceof TransferRefusedError, String(err));
    assert.equal(err.reason, "refused");
    assert.equal(transport.chunks, 0);
    assert.ok(source.cancelled);
    assert.equal(offers.length, 1);
    assert.equal(offers[0]?.senderId, eve.id, "the policy sees the verified sender");
  });

  await t.step("a receiver without a policy refuses everyone", async () => {
    await reports.receiver.stop();
    await net.receive();
    const err = await sendFile(transportFor(net.a), {
      identity: net.alice,
      recipient: net.bobRecipient,
      source: sourceOf("any.bin", randomBytes(10)),
    }, QUICK).catch((e) => e);
    assert.ok(err instanceof TransferRefusedError, String(err));
    assert.equal(err.reason, "refused");
  });
});

Deno.test("an offer over the size limits is refused before a byte of it is buffered", async (t) => {
  await using net = await pair();
  let asked = 0;
  await net.receive({
    maxFileSize: MIB,
    maxChunkSize: 64 * 1024,
    accept: () => {
      asked++;
      return countingSinks().sink();
    },
  });
  for (
    const [what, size, chunkSize] of [
      ["a file over maxFileSize", MIB + 1, 64 * 1024],
      ["chunks over maxChunkSize", 1000, 64 * 1024 + 1],
    ] as const
  ) {
    await t.step(what, async () => {
      const transport = tampering(transportFor(net.a), {});
      const source = generatedSource("big.bin", size);
      const err = await sendFile(transport, {
        identity: net.alice,
        recipient: net.bobRecipient,
        source,
      }, { ...QUICK, chunkSize }).catch((e) => e);
      assert.ok(err instanceof TransferRefusedError, String(err));
      assert.equal(err.reason, "too-large");
      assert.equal(transport.chunks, 0);
      assert.ok(source.cancelled);
    });
  }
  assert.equal(asked, 0, "the policy is not asked about an oversized offer");
});

Deno.test("a frame longer than the limit is refused at its length prefix", async () => {
  await using net = await pair();
  const reports = await net.receive({ accept: () => countingSinks().sink() });
  const failed = reports.next();
  const stream = await transportFor(net.a).openStream(
    net.bobRecipient.peer,
    FILE_PROTOCOL,
    { signal: new AbortController().signal },
  );
  // Claims a 256 MiB offer, then sends nothing more.
  stream.send(new Uint8Array([0x10, 0, 0, 0, FileFrameType.Offer]));
  await failed;
  const error = reports.failed[0]?.error;
  assert.ok(error instanceof ProtocolError, String(error));
  assert.equal(error.message, "Cannot read frame: length 268435456 is out of range");
  // The receiver reset the stream.
  await assert.rejects(async () => {
    for await (const _ of stream) { /* nothing is sent back */ }
  });
});

Deno.test("aborting the sender mid-transfer cleans up both sides", async () => {
  await using net = await pair();
  const reports = await net.receive({ accept: (offer) => fileSink(`${net.dir}/${offer.name}`) });
  const controller = new AbortController();
  const reason = new Error("the user cancelled");
  const source = generatedSource("aborted.bin", 32 * MIB);
  const failed = reports.next();
  const err = await sendFile(transportFor(net.a), {
    identity: net.alice,
    recipient: net.bobRecipient,
    source,
  }, {
    ...QUICK,
    signal: controller.signal,
    onProgress: (p) => {
      if (p.bytes >= 2 * MIB) controller.abort(reason);
    },
  }).catch((e) => e);
  assert.equal(err, reason);
  assert.ok(source.cancelled, "the source must be cancelled");
  await failed;
  assert.equal(reports.received.length, 0);
  assert.equal(reports.failed.length, 1);
  assert.deepEqual(await listDir(net.dir), [], "the partial file must be gone");
});

Deno.test("stopping the receiver mid-transfer fails the sender and keeps no partial file", async () => {
  await using net = await pair();
  let stopping: Promise<void> | undefined;
  const reports: { receiver?: FileReceiver } = {};
  const started = await net.receive({
    accept: (offer) => fileSink(`${net.dir}/${offer.name}`),
    onProgress: (p) => {
      if (p.bytes >= 2 * MIB) stopping ??= reports.receiver!.stop();
    },
  });
  reports.receiver = started.receiver;
  const source = generatedSource("stopped.bin", 32 * MIB);
  const err = await sendFile(transportFor(net.a), {
    identity: net.alice,
    recipient: net.bobRecipient,
    source,
  }, QUICK).catch((e) => e);
  assert.ok(err instanceof PeerUnreachableError, String(err));
  await stopping;
  assert.ok(source.cancelled);
  assert.equal(started.received.length, 0);
  assert.deepEqual(await listDir(net.dir), []);
});

Deno.test("a source with fewer bytes than announced fails and the recipient keeps nothing", async () => {
  await using net = await pair();
  const reports = await net.receive({ accept: (offer) => fileSink(`${net.dir}/${offer.name}`) });
  const bytes = randomBytes(DEFAULT_CHUNK_SIZE + 10);
  const failed = reports.next();
  const err = await sendFile(transportFor(net.a), {
    identity: net.alice,
    recipient: net.bobRecipient,
    source: { ...sourceOf("short.bin", bytes), size: bytes.length + 1 },
  }, QUICK).catch((e) => e);
  assert.ok(err instanceof RangeError, String(err));
  assert.equal(err.message, "Cannot send file: the source has fewer bytes than its size");
  await failed;
  assert.deepEqual(await listDir(net.dir), []);
});

Deno.test("an offer for another identity sealed to the recipient's key is refused as unreadable", async () => {
  await using net = await pair();
  const carol = await Identity.generate();
  const sinks = countingSinks();
  const reports = await net.receive({ accept: () => sinks.sink() });
  // Sealed to Bob's key but addressed to Carol (a card may list anyone's
  // X25519 key): Bob does not take it as a file from Alice to him.
  const failed = reports.next();
  const err = await sendFile(transportFor(net.a), {
    identity: net.alice,
    recipient: { ...net.bobRecipient, userId: carol.id },
    source: sourceOf("x.bin", randomBytes(100)),
  }, QUICK).catch((e) => e);
  await failed;
  assert.ok(err instanceof TransferRefusedError, String(err));
  assert.equal(err.reason, "unreadable");
  assert.equal(sinks.bytes, 0);
  assert.deepEqual(reports.received, []);
  assert.ok(reports.failed[0]?.error instanceof DecryptionError);
  assert.equal(reports.failed[0]?.offer, undefined);
});

Deno.test("a receipt not signed by the named recipient is rejected", async () => {
  await using net = await pair();
  // Bob's receiver opens the file (Bob's keys) but signs the receipt as Carol.
  const carol = await Identity.generate();
  const posing: Identity = Object.create(net.bob);
  posing.sign = (domain, message) => carol.sign(domain, message);
  const receiver = new FileReceiver(posing, { accept: () => countingSinks().sink() });
  await receiver.start(transportFor(net.b));
  try {
    const err = await sendFile(transportFor(net.a), {
      identity: net.alice,
      recipient: net.bobRecipient,
      source: sourceOf("x.bin", randomBytes(100)),
    }, QUICK).catch((e) => e);
    assert.ok(err instanceof ProtocolError, String(err));
    assert.equal(err.message, "Cannot send file: the receipt's signature does not verify");
  } finally {
    await receiver.stop();
  }
});

Deno.test("file names arrive sanitised: no separators, no dot names, at most 255 bytes", async () => {
  await using net = await pair();
  const names: string[] = [];
  const reports = await net.receive({
    accept: (offer) => {
      names.push(offer.name);
      return fileSink(`${net.dir}/${offer.name}`);
    },
  });
  const long = "é".repeat(200); // 400 bytes of UTF-8
  for (const raw of ["../../etc/passwd", "..", "a\\b\u0000c.txt", long]) {
    const done = reports.next();
    await sendFile(transportFor(net.a), {
      identity: net.alice,
      recipient: net.bobRecipient,
      source: sourceOf(raw, randomBytes(3)),
    }, QUICK);
    await done;
  }
  // Cut at a character boundary within 255 bytes.
  assert.deepEqual(names, ["_.._etc_passwd", "file", "a_b_c.txt", "é".repeat(127)]);
  assert.deepEqual(names, names.map(sanitizeFileName));
  assert.deepEqual(await listDir(net.dir), [
    "_.._etc_passwd",
    "a_b_c.txt",
    "file",
    "é".repeat(127),
  ]);
});

Deno.test("memory stays bounded: RSS grows by far less than the file, made on the fly", async () => {
  await using net = await pair();
  const sink = countingSinks();
  const reports = await net.receive({ accept: () => sink.sink() });
  const send = async (size: number) => {
    const done = reports.next();
    const sent = await sendFile(transportFor(net.a), {
      identity: net.alice,
      recipient: net.bobRecipient,
      source: generatedSource("big.bin", size),
    }, QUICK);
    await done;
    assert.equal(sent.bytes, size);
    assert.equal(reports.received.at(-1)?.sha256, sent.sha256);
  };
  // The first transfer in a process grows the heap once, and V8 lets about
  // 64 MiB of dead buffers pile up before it collects them, whatever the
  // file's size: measure after that, on a file twice that size.
  await send(16 * MIB);
  const size = 128 * MIB;
  const before = Deno.memoryUsage().rss;
  let peak = before;
  const sampler = setInterval(() => (peak = Math.max(peak, Deno.memoryUsage().rss)), 10);
  try {
    await send(size);
  } finally {
    clearInterval(sampler);
  }
  assert.equal(sink.bytes, 16 * MIB + size);
  const growth = peak - before;
  assert.ok(growth < size / 4, `RSS grew by ${(growth / MIB).toFixed(1)} MiB`);
});

// --- The documented wire format, spoken by hand -----------------------------------

/** The frames of a stream, read whole. */
async function* frames(stream: MessageStream): AsyncGenerator<{ type: number; body: Uint8Array }> {
  let buffer = new Uint8Array(0);
  for await (const chunk of stream) {
    buffer = concat(buffer, chunk instanceof Uint8Array ? chunk : chunk.subarray());
    while (buffer.length >= 4) {
      const length = new DataView(buffer.buffer, buffer.byteOffset).getUint32(0);
      if (buffer.length < 4 + length) break;
      yield { type: buffer[4]!, body: buffer.slice(5, 4 + length) };
      buffer = buffer.slice(4 + length);
    }
  }
}

function frame(type: number, body: Uint8Array): Uint8Array {
  return concat(u32(body.length + 1), new Uint8Array([type]), body);
}

/** An offer as the module documentation says a sender writes it, in `version` 2 or 1. */
async function offerByHand(net: Pair, size: number, chunkSize: number, version: 1 | 2 = 2) {
  const recipientKey = net.bob.encryptionPublicKey;
  // Version 1 named the recipient by its X25519 key only.
  const named = version === 2 ? net.bob.signingPublicKey : new Uint8Array(0);
  const { enc, context } = await setupBaseS(recipientKey, {
    info: concat(utf8(`DIM-v${version} file transfer`), named),
  });
  const fileId = crypto.getRandomValues(new Uint8Array(16));
  const name = utf8("by-hand.bin");
  const offer = concat(
    fileId,
    net.alice.signingPublicKey,
    u64(size),
    u32(chunkSize),
    u64(Date.now()),
    new Uint8Array([0, name.length]),
    name,
  );
  const prefix = (what: string) => utf8(`DIM-v${version} file transfer: ${what}\0`);
  const offerSignature = await net.alice.sign(
    "file",
    concat(prefix("offer"), named, recipientKey, enc, offer),
  );
  const body = concat(
    new Uint8Array([version]),
    enc,
    await context.seal(concat(offer, offerSignature), new Uint8Array([version, 0])),
  );
  return { enc, context, fileId, prefix, named, recipientKey, body };
}

/**
 * Sends `bytes` as the module documentation says a sender does, signing
 * `claimedSha256` as the file's hash; returns the recipient's frames.
 */
async function sendByHand(
  net: Pair,
  bytes: Uint8Array<ArrayBuffer>,
  claimedSha256: Uint8Array,
): Promise<{ frames: { type: number; body: Uint8Array }[]; enc: Uint8Array; fileId: Uint8Array }> {
  const chunkSize = 4096;
  const count = Math.max(1, Math.ceil(bytes.length / chunkSize));
  const { enc, context, fileId, prefix, named, recipientKey, body } = await offerByHand(
    net,
    bytes.length,
    chunkSize,
  );
  const aad = (kind: number, index: number) =>
    concat(new Uint8Array([2, kind]), fileId, u64(index));

  const stream = await transportFor(net.a).openStream(net.bobRecipient.peer, FILE_PROTOCOL, {
    signal: new AbortController().signal,
  });
  const answers = frames(stream);
  const got: { type: number; body: Uint8Array }[] = [];
  stream.send(frame(FileFrameType.Offer, body));
  const accept = (await answers.next()).value!;
  got.push(accept);
  assert.equal(accept.type, FileFrameType.Accept);
  for (let i = 0; i < count; i++) {
    const chunk = bytes.subarray(i * chunkSize, (i + 1) * chunkSize);
    stream.send(
      frame(FileFrameType.Chunk, await context.seal(chunk, aad(i < count - 1 ? 1 : 2, i))),
    );
  }
  const endSignature = await net.alice.sign(
    "file",
    concat(prefix("end"), named, recipientKey, enc, fileId, u64(bytes.length), claimedSha256),
  );
  stream.send(frame(
    FileFrameType.End,
    await context.seal(concat(claimedSha256, endSignature), aad(3, count)),
  ));
  try {
    for await (const answer of answers) got.push(answer);
  } catch {
    // A refusing recipient resets the stream after its REFUSE.
  }
  return { frames: got, enc, fileId };
}

Deno.test("the wire format is as documented, and a signed SHA-256 that does not match is refused", async (t) => {
  await using net = await pair();
  const reports = await net.receive({ accept: (offer) => fileSink(`${net.dir}/${offer.name}`) });
  const bytes = randomBytes(3 * 4096 + 100);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));

  await t.step("a file sent by hand arrives, with a receipt as documented", async () => {
    const done = reports.next();
    const { frames: got, enc, fileId } = await sendByHand(net, bytes, digest);
    await done;
    assert.deepEqual(got.map((f) => f.type), [
      FileFrameType.Accept,
      ...Array(4).fill(FileFrameType.Credit),
      FileFrameType.Receipt,
    ]);
    assert.deepEqual(got[0]!.body, new Uint8Array([0, 64]), "2 MiB of 4 KiB chunks, at most 64");
    const receipt = concat(
      utf8("DIM-v1 file transfer: receipt\0"),
      net.alice.signingPublicKey,
      net.bob.encryptionPublicKey,
      enc,
      fileId,
      u64(bytes.length),
      digest,
    );
    assert.ok(
      await verifySignature("file", net.bob.signingPublicKey, receipt, got.at(-1)!.body),
    );
    assert.deepEqual(await Deno.readFile(`${net.dir}/by-hand.bin`), bytes);
    await Deno.remove(`${net.dir}/by-hand.bin`);
  });

  await t.step("a wrong hash, even signed, is refused as corrupt", async () => {
    const failed = reports.next();
    const wrong = digest.slice();
    wrong[0]! ^= 1;
    const { frames: got } = await sendByHand(net, bytes, wrong);
    await failed;
    assert.deepEqual(got.at(-1), { type: FileFrameType.Refuse, body: new Uint8Array([5]) });
    assert.ok(reports.failed.at(-1)?.error instanceof DecryptionError);
    assert.deepEqual(await listDir(net.dir), []);
  });

  await t.step(
    "a version 1 offer is refused as unreadable: the sender runs an older DIM",
    async () => {
      const failed = reports.next();
      const { body } = await offerByHand(net, bytes.length, 4096, 1);
      const stream = await transportFor(net.a).openStream(net.bobRecipient.peer, FILE_PROTOCOL, {
        signal: new AbortController().signal,
      });
      const answers = frames(stream);
      stream.send(frame(FileFrameType.Offer, body));
      const answer = (await answers.next()).value;
      await failed;
      assert.deepEqual(answer, { type: FileFrameType.Refuse, body: new Uint8Array([3]) });
      const err = reports.failed.at(-1)?.error;
      assert.ok(err instanceof OutdatedVersionError, String(err));
      assert.equal(
        err.message,
        "Cannot open message: the sender runs an older DIM (file transfer version 1, " +
          "this DIM reads version 2 only); ask them to update DIM",
      );
      assert.equal(reports.failed.at(-1)?.offer, undefined);
      assert.deepEqual(await listDir(net.dir), []);
    },
  );
});
