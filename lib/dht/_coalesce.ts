/**
 * One socket write per batch of frames on libp2p's TCP connections.
 *
 * Everything a connection sends in one turn of the event loop reaches
 * `@libp2p/tcp` 11.0.28 as one list of chunks (Noise already encrypts the
 * batch as one message), but its `sendData` writes each chunk with its own
 * `socket.write`: the 2-byte Noise length, the ciphertext and its tag
 * separately. A DHT request on a reused stream took 8 socket writes, one
 * on a new stream 26; each write costs microseconds of JavaScript stream
 * machinery plus a system call, about a third of the CPU time of a small
 * request on loopback.
 *
 * {@linkcode coalescedSendData} copies such a list into one buffer and
 * writes it once; `coalesceWrites` (`_libp2p_internals.ts`) puts it in
 * place of a connection's `sendData`. Lists of one chunk, and batches
 * larger than {@linkcode MAX_COALESCED_BYTES} (bulk transfers, where the
 * copy would cost more than the calls), go the usual way. The socket takes
 * the whole buffer either way, so the result is the one `sendData` would
 * give for a write that filled the socket's buffer.
 *
 * @module
 */

/** The largest batch copied into one write. */
export const MAX_COALESCED_BYTES = 64 * 1024;

/** A batch of chunks, as libp2p's connection hands it to the transport. */
export interface ChunkList {
  /** The total length. */
  readonly byteLength: number;
  /** The chunks. */
  readonly bufs: readonly Uint8Array[];
  /** The chunks copied into one array. */
  subarray(): Uint8Array;
}

/** What `sendData` of `@libp2p/tcp` returns. */
export interface SendResult {
  /** Bytes handed to the socket. */
  sentBytes: number;
  /** `false` when the caller should wait for the socket to drain. */
  canSendMore: boolean;
}

/** The `socket.write` of a Node.js-style socket. */
export interface SocketLike {
  /** Writes bytes; `false` when the socket's buffer is full. */
  write(chunk: Uint8Array): boolean;
}

/** A transport's `sendData`. */
export type SendData = (data: ChunkList) => SendResult;

/**
 * A `sendData` that writes a batch of several chunks, up to
 * {@linkcode MAX_COALESCED_BYTES}, with one `socket.write`, and hands any
 * other batch to the original.
 *
 * @param sendData The transport's own `sendData` (called with the transport as `this`).
 * @param socket The transport's socket.
 * @returns The replacement, to be called with the transport as `this`.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { coalescedSendData } from "./_coalesce.ts";
 *
 * const written: Uint8Array[] = [];
 * const socket = { write: (bytes: Uint8Array) => written.push(bytes) > 0 };
 * const send = coalescedSendData(() => ({ sentBytes: 0, canSendMore: true }), socket);
 * const bufs = [new Uint8Array([0, 2]), new Uint8Array([7, 7])];
 * send({ bufs, byteLength: 4, subarray: () => new Uint8Array([0, 2, 7, 7]) });
 * assert.deepEqual(written, [new Uint8Array([0, 2, 7, 7])]);
 * ```
 */
export function coalescedSendData(sendData: SendData, socket: SocketLike): SendData {
  return function (this: unknown, data: ChunkList): SendResult {
    if (
      !Array.isArray(data?.bufs) || data.bufs.length < 2 || data.byteLength > MAX_COALESCED_BYTES
    ) {
      return sendData.call(this, data);
    }
    const bytes = data.subarray();
    return { sentBytes: bytes.byteLength, canSendMore: socket.write(bytes) };
  };
}
