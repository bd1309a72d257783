/**
 * DIM's kad wire codec (lib/dht/_kad_wire.ts): closer peers round-trip,
 * limits are enforced, and a reader takes answer after answer from one
 * stream however the bytes are split.
 */
import assert from "node:assert/strict";
import { ProtocolError } from "../../lib/errors.ts";
import {
  decodeKadMessage,
  encodeKadMessage,
  KadMessageType,
  KadStreamReader,
  MAX_CLOSER_PEERS,
  MAX_PEER_ADDRESSES,
} from "../../lib/dht/_kad_wire.ts";
import { createDhtNode } from "../../lib/dht/node.ts";
import { rawStream, testNodeOptions } from "./_helpers.ts";

const peer = (n: number, addresses = 1) => ({
  id: new Uint8Array([0, 36, n, n, n]),
  addrs: Array.from(
    { length: addresses },
    (_, i) => new Uint8Array([4, 127, 0, 0, i, 6, 0x0f, 0xa1]),
  ),
});

// The body of a framed message (its first byte is a one-byte length here).
const body = (framed: Uint8Array) => framed.subarray(framed.length > 128 ? 2 : 1);

Deno.test("a message with a key, a record and closer peers round-trips", () => {
  const message = {
    type: KadMessageType.GET_VALUE,
    key: new TextEncoder().encode("/test/a"),
    record: new Uint8Array([1, 2, 3]),
    closer: [peer(1, 2), peer(2, 0)],
  };
  const decoded = decodeKadMessage(body(encodeKadMessage(message)));
  assert.equal(decoded.type, KadMessageType.GET_VALUE);
  assert.deepEqual(decoded.key, message.key);
  assert.deepEqual(decoded.record, message.record);
  assert.deepEqual(decoded.closer!.map((p) => [p.id, [...p.addrs]]), [
    [message.closer[0]!.id, message.closer[0]!.addrs],
    [message.closer[1]!.id, []],
  ]);
});

Deno.test("too many closer peers, too many addresses or a peer without ID are refused", () => {
  const many = { type: 4, closer: Array.from({ length: MAX_CLOSER_PEERS + 1 }, (_, i) => peer(i)) };
  assert.throws(
    () => decodeKadMessage(encodeKadMessage(many).subarray(2)),
    (err: unknown) => err instanceof ProtocolError && /more than 64 closer peers/.test(err.message),
  );
  assert.throws(
    () =>
      decodeKadMessage(
        body(encodeKadMessage({ type: 4, closer: [peer(1, MAX_PEER_ADDRESSES + 1)] })),
      ),
    ProtocolError,
  );
  assert.throws(
    () =>
      decodeKadMessage(
        body(encodeKadMessage({ type: 4, closer: [{ id: new Uint8Array(), addrs: [] }] })),
      ),
    (err: unknown) => err instanceof ProtocolError && /has no ID/.test(err.message),
  );
  assert.throws(() => decodeKadMessage(new Uint8Array([0x12, 0x05, 1])), ProtocolError);
});

Deno.test("a stream reader returns each of several messages, split or joined", async () => {
  await using a = await createDhtNode(testNodeOptions());
  await using b = await createDhtNode(testNodeOptions());
  const first = encodeKadMessage({ type: 1, key: new Uint8Array([1]) });
  const second = encodeKadMessage({ type: 4, key: new Uint8Array(300).fill(2) });
  await a.handle("/test/kad-frames/1.0.0", async (stream) => {
    // Both messages in one chunk, then the second again byte by byte.
    stream.send(new Uint8Array([...first, ...second]));
    for (const byte of second) stream.send(new Uint8Array([byte]));
    await stream.close();
  });
  const stream = await b.dialProtocol(a.multiaddrs[0]!, "/test/kad-frames/1.0.0");
  const reader = new KadStreamReader(rawStream(stream), 1024);
  assert.equal((await reader.next()).type, 1);
  assert.deepEqual((await reader.next()).key, new Uint8Array(300).fill(2));
  assert.deepEqual((await reader.next()).key, new Uint8Array(300).fill(2));
  await assert.rejects(
    reader.next(),
    (err: unknown) => err instanceof ProtocolError && /ended first/.test(err.message),
  );
  await reader.cancel();
  await stream.close();
});
