import assert from "node:assert/strict";
import {
  decodeFrame,
  encodeFrame,
  type Frame,
  FrameQueue,
  FrameReader,
  FrameType,
  MAX_FRAME_LENGTH,
} from "../../lib/messaging/wire.ts";
import { ProtocolError } from "../../lib/errors.ts";

const h = (n: number) => new Uint8Array(32).fill(n);

const SAMPLES: Frame[] = [
  { type: FrameType.Envelope, envelope: new Uint8Array([1, 2, 3]) },
  { type: FrameType.Ack, envelopeHash: h(1), signature: new Uint8Array(64).fill(2) },
  { type: FrameType.Receipt, envelopeHash: h(3), signature: new Uint8Array(64).fill(4) },
  { type: FrameType.Nack, code: 2 },
  { type: FrameType.Store, mailbox: h(5), expiresAt: 1_700_000_000_000, envelope: h(6) },
  { type: FrameType.StoreResult, status: 1 },
  {
    type: FrameType.Fetch,
    mailbox: h(7),
    owner: h(15),
    timestamp: 41,
    nonce: new Uint8Array(16).fill(16),
    signature: new Uint8Array(64).fill(17),
  },
  { type: FrameType.Items, envelopes: [h(8), new Uint8Array([9])], more: true },
  {
    type: FrameType.Delete,
    mailbox: h(10),
    owner: h(11),
    timestamp: 42,
    nonce: new Uint8Array(16).fill(18),
    hashes: [h(12), h(13)],
    signature: new Uint8Array(64).fill(14),
  },
  { type: FrameType.Deleted, count: 300 },
  { type: FrameType.Refused, code: 3 },
];

async function* chunks(bytes: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
}

Deno.test("encodeFrame() and decodeFrame() round-trip every frame type", () => {
  for (const frame of SAMPLES) {
    const encoded = encodeFrame(frame);
    assert.deepEqual(decodeFrame(encoded.subarray(4)), frame);
  }
});

Deno.test("decodeFrame() rejects trailing bytes, truncation and unknown types", async (t) => {
  for (const frame of SAMPLES) {
    if (frame.type === FrameType.Envelope || frame.type === FrameType.Store) continue;
    const body = encodeFrame(frame).subarray(4);
    await t.step(`type ${frame.type}: trailing byte`, () => {
      const longer = new Uint8Array(body.length + 1);
      longer.set(body);
      assert.throws(() => decodeFrame(longer), ProtocolError);
    });
    await t.step(`type ${frame.type}: every truncation`, () => {
      for (let n = 0; n < body.length; n++) {
        assert.throws(() => decodeFrame(body.subarray(0, n)), ProtocolError);
      }
    });
  }
  assert.throws(() => decodeFrame(new Uint8Array([0x7f])), /unknown frame type/);
  assert.throws(() => decodeFrame(new Uint8Array([FrameType.Envelope])), ProtocolError);
});

Deno.test("FrameReader reassembles frames split across chunks", async () => {
  const all = new Uint8Array(SAMPLES.reduce((n, f) => n + encodeFrame(f).length, 0));
  let off = 0;
  for (const f of SAMPLES) {
    const e = encodeFrame(f);
    all.set(e, off);
    off += e.length;
  }
  for (const size of [1, 3, 7, 1000]) {
    const reader = new FrameReader(chunks(all, size));
    const got: Frame[] = [];
    for (let f = await reader.next(); f !== undefined; f = await reader.next()) got.push(f);
    assert.deepEqual(got, SAMPLES);
  }
});

Deno.test("FrameReader refuses an oversized frame from its length prefix alone", async () => {
  let pulled = 0;
  async function* hostile(): AsyncGenerator<Uint8Array> {
    const prefix = new Uint8Array(4);
    new DataView(prefix.buffer).setUint32(0, MAX_FRAME_LENGTH + 1);
    pulled++;
    yield prefix;
    // A reader that buffered the body would pull these.
    for (;;) {
      pulled++;
      yield new Uint8Array(65536);
    }
  }
  const reader = new FrameReader(hostile());
  await assert.rejects(() => reader.next(), /length \d+ is out of range/);
  assert.equal(pulled, 1);
});

Deno.test("FrameReader rejects a stream that ends inside a frame", async () => {
  const frame = encodeFrame(SAMPLES[1]!);
  await assert.rejects(
    () => new FrameReader(chunks(frame.subarray(0, frame.length - 1), 5)).next(),
    /stream ended inside a frame/,
  );
  await assert.rejects(
    () => new FrameReader(chunks(frame.subarray(0, 2), 5)).next(),
    /inside a length prefix/,
  );
  assert.equal(await new FrameReader(chunks(new Uint8Array(0), 5)).next(), undefined);
});

Deno.test("FrameQueue hands over every frame that arrived at once, and reads no further than its capacity", async () => {
  let pulled = 0;
  async function* source(): AsyncGenerator<Uint8Array> {
    for (let i = 0; i < 10; i++) {
      pulled++;
      yield encodeFrame({ type: FrameType.Nack, code: i });
    }
  }
  const queue = new FrameQueue(source(), { capacity: 4 });
  await queue.ready();
  // Let the reader run ahead as far as it may.
  for (let i = 0; i < 20; i++) await Promise.resolve();
  assert.equal(queue.size, 4);
  assert.ok(pulled <= 5, `pulled ${pulled} chunks with room for 4 frames`);
  const first = queue.take(100);
  assert.deepEqual(first.map((f) => f.type === FrameType.Nack && f.code), [0, 1, 2, 3]);
  const rest: Frame[] = [];
  while (!queue.done) {
    await queue.ready();
    rest.push(...queue.take(100));
  }
  assert.deepEqual(rest.map((f) => f.type === FrameType.Nack && f.code), [4, 5, 6, 7, 8, 9]);
  assert.deepEqual(queue.take(1), []);
});

Deno.test("FrameQueue gives the frames before a malformed one, then its error", async () => {
  async function* source(): AsyncGenerator<Uint8Array> {
    yield encodeFrame({ type: FrameType.Nack, code: 1 });
    yield new Uint8Array([0, 0, 0, 1, 0x7f]); // unknown frame type
  }
  const queue = new FrameQueue(source(), { capacity: 8 });
  const got: Frame[] = [];
  await assert.rejects(async () => {
    for (;;) {
      await queue.ready();
      const frames = queue.take(8);
      if (frames.length === 0) break;
      got.push(...frames);
    }
  }, ProtocolError);
  assert.deepEqual(got, [{ type: FrameType.Nack, code: 1 }]);
});

Deno.test("envelopeHash() is SHA-256 for small and large envelopes alike", async () => {
  const { envelopeHash } = await import("../../lib/messaging/mailbox.ts");
  for (const size of [0, 1, 1200, 16 * 1024, 16 * 1024 + 1, 300 * 1024]) {
    const bytes = new Uint8Array(size);
    for (let i = 0; i < size; i += 65536) crypto.getRandomValues(bytes.subarray(i, i + 65536));
    const expected = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
    assert.deepEqual(await envelopeHash(bytes), expected, `${size} bytes`);
  }
});
