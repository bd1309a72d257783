// The one framing of DIM's stream protocols (lib/messaging/framing.ts).
import assert from "node:assert/strict";
import { Uint8ArrayList } from "uint8arraylist";
import { ProtocolError } from "../../lib/errors.ts";
import {
  ByteBudget,
  encodeRawFrame,
  type FrameSink,
  RawFrameReader,
  writeRawFrame,
} from "../../lib/messaging/framing.ts";

async function* yieldAll<T>(items: T[]): AsyncGenerator<T> {
  for (const item of items) yield item;
}

Deno.test("RawFrameReader refuses a frame over the read's limit from its length prefix alone", async () => {
  let pulled = 0;
  async function* hostile() {
    pulled++;
    yield new Uint8Array([0, 0, 1, 0]); // 256 bytes announced
    pulled++;
    throw new Error("the body must never be read");
  }
  const reader = new RawFrameReader(hostile());
  await assert.rejects(() => reader.next(255), ProtocolError);
  assert.equal(pulled, 1);
});

Deno.test("RawFrameReader takes the limit per read", async () => {
  const frames = [encodeRawFrame(1, new Uint8Array(100)), encodeRawFrame(2, new Uint8Array(100))];
  const reader = new RawFrameReader(yieldAll(frames));
  assert.equal((await reader.next(101))?.type, 1);
  await assert.rejects(() => reader.next(100), /length 101 is out of range/);
});

Deno.test("RawFrameReader reads Uint8ArrayList chunks, and a frame in one piece is a view of it", async () => {
  const a = encodeRawFrame(7, new Uint8Array([1, 2, 3]));
  const b = encodeRawFrame(8, new Uint8Array([4, 5]));
  const list = new Uint8ArrayList(a, b.subarray(0, 3));
  const reader = new RawFrameReader(yieldAll<Uint8Array | Uint8ArrayList>([list, b.subarray(3)]));
  const first = await reader.next(16);
  assert.deepEqual(first, { type: 7, body: new Uint8Array([1, 2, 3]) });
  assert.equal(first!.body.buffer, a.buffer, "not copied");
  assert.deepEqual(await reader.next(16), { type: 8, body: new Uint8Array([4, 5]) });
  assert.equal(await reader.next(16), undefined);
});

Deno.test("RawFrameReader rejects an empty frame and a stream cut inside a frame", async () => {
  await assert.rejects(
    () => new RawFrameReader(yieldAll([new Uint8Array(4)])).next(16),
    /length 0 is out of range/,
  );
  const frame = encodeRawFrame(1, new Uint8Array(8));
  await assert.rejects(
    () => new RawFrameReader(yieldAll([frame.subarray(0, 10)])).next(16),
    /stream ended inside a frame/,
  );
  await assert.rejects(
    () => new RawFrameReader(yieldAll([frame.subarray(0, 2)])).next(16),
    /stream ended inside a length prefix/,
  );
});

Deno.test("writeRawFrame sends a large body as it is and waits for the drain", async () => {
  const sent: Uint8Array[] = [];
  let drained = 0;
  const sink: FrameSink = {
    send: (data) => {
      sent.push(data);
      return sent.length < 2;
    },
    onDrain: () => {
      drained++;
      return Promise.resolve();
    },
  };
  const body = new Uint8Array(4096).fill(9);
  await writeRawFrame(sink, 4, body, new AbortController().signal);
  assert.equal(sent.length, 2);
  assert.deepEqual(sent[0], new Uint8Array([0, 0, 16, 1, 4]));
  assert.equal(sent[1], body, "the body is not copied");
  assert.equal(drained, 1);

  sent.length = 0;
  await writeRawFrame(sink, 5, new Uint8Array([1]), new AbortController().signal);
  assert.deepEqual(sent, [new Uint8Array([0, 0, 0, 2, 5, 1])], "a small frame goes in one piece");
});

Deno.test("RawFrameReader reserves a frame's length before it reads the body", async () => {
  let pulled = 0;
  async function* chunks() {
    const frame = encodeRawFrame(1, new Uint8Array(1000));
    pulled++;
    yield frame.subarray(0, 4);
    pulled++;
    yield frame.subarray(4);
  }
  const reader = new RawFrameReader(chunks());
  const reserved: number[] = [];
  const frame = await reader.next(2000, (length) => {
    reserved.push(length);
    assert.equal(pulled, 1, "the body is still in the stream");
  });
  assert.deepEqual(reserved, [1001]);
  assert.equal(frame?.body.length, 1000);
  // A reservation that fails ends the read before the body is pulled.
  const refused = new RawFrameReader(yieldAll([encodeRawFrame(1, new Uint8Array(10))]));
  await assert.rejects(() =>
    refused.next(100, () => {
      throw new RangeError("no room");
    }), RangeError);
});

Deno.test("ByteBudget serves waiters in order, and grants an oversized one once nothing is held", async () => {
  const budget = new ByteBudget(100);
  await budget.reserve(60);
  const order: string[] = [];
  const big = budget.reserve(50).then(() => order.push("big"));
  const small = budget.reserve(10).then(() => order.push("small"));
  await Promise.resolve();
  assert.deepEqual(order, [], "the small one does not pass the big one");
  budget.release(60);
  await Promise.all([big, small]);
  assert.deepEqual(order, ["big", "small"]);
  assert.equal(budget.used, 60);
  budget.release(60);
  await budget.reserve(500);
  assert.equal(budget.used, 500, "more than the limit, but nothing else was held");
  budget.release(500);
});

Deno.test("ByteBudget gives up a wait when its signal aborts, and lets the next waiter in", async () => {
  const budget = new ByteBudget(100);
  await budget.reserve(90);
  const controller = new AbortController();
  const blocked = budget.reserve(50, controller.signal);
  const next = budget.reserve(10);
  controller.abort(new Error("stream gone"));
  await assert.rejects(blocked, /stream gone/);
  await next;
  assert.equal(budget.used, 100);
});
