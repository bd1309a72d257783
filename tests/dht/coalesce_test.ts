/**
 * One socket write per batch (lib/dht/_coalesce.ts): a list of chunks is
 * written once; single chunks and large batches go the usual way.
 */
import assert from "node:assert/strict";
import { MAX_COALESCED_BYTES } from "../../lib/dht/_coalesce.ts";
import { coalesceWrites } from "../../lib/dht/_libp2p_internals.ts";

/** The parts of a `ChunkList` (from `uint8arraylist`) the transport uses. */
class ChunkList {
  readonly bufs: Uint8Array[];
  constructor(...bufs: Uint8Array[]) {
    this.bufs = bufs;
  }
  get byteLength(): number {
    return this.bufs.reduce((n, b) => n + b.length, 0);
  }
  subarray(): Uint8Array {
    const out = new Uint8Array(this.byteLength);
    let offset = 0;
    for (const buf of this.bufs) {
      out.set(buf, offset);
      offset += buf.length;
    }
    return out;
  }
  [Symbol.iterator]() {
    return this.bufs[Symbol.iterator]();
  }
}

function fakeConnection() {
  const writes: Uint8Array[] = [];
  const original: ChunkList[] = [];
  const maConn = {
    socket: {
      write(bytes: Uint8Array): boolean {
        writes.push(bytes);
        return true;
      },
    },
    sendData(data: ChunkList) {
      original.push(data);
      for (const buf of data) maConn.socket.write(buf);
      return { sentBytes: data.byteLength, canSendMore: true };
    },
  };
  return { connection: { maConn }, maConn, writes, original };
}

Deno.test("a batch of chunks becomes one socket write", () => {
  const { connection, maConn, writes, original } = fakeConnection();
  assert.equal(coalesceWrites(connection), true);
  const result = maConn.sendData(new ChunkList(new Uint8Array([0, 3]), new Uint8Array([1, 2, 3])));
  assert.deepEqual(result, { sentBytes: 5, canSendMore: true });
  assert.deepEqual(writes, [new Uint8Array([0, 3, 1, 2, 3])]);
  assert.equal(original.length, 0);
  maConn.sendData(new ChunkList(new Uint8Array([9])));
  maConn.sendData(
    new ChunkList(new Uint8Array(MAX_COALESCED_BYTES), new Uint8Array(1)),
  );
  assert.equal(original.length, 2);
  assert.equal(writes.length, 4);
});

Deno.test("a connection of another shape is left alone", () => {
  assert.equal(coalesceWrites({}), false);
  assert.equal(coalesceWrites({ maConn: { sendData() {} } }), false);
  assert.equal(coalesceWrites(null), false);
});
