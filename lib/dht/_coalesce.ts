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
 * {@linkcode coalesceWrites} makes one connection's transport copy such a
 * list into one buffer and write it once. Lists of one chunk, and batches
 * larger than {@linkcode MAX_COALESCED_BYTES} (bulk transfers, where the
 * copy would cost more than the calls), go the usual way. The socket takes
 * the whole buffer either way, so the result is the one `sendData` would
 * give for a write that filled the socket's buffer.
 *
 * @module
 */

/** The largest batch copied into one write. */
export const MAX_COALESCED_BYTES = 64 * 1024;

interface ChunkList {
  readonly byteLength: number;
  readonly bufs: readonly Uint8Array[];
  subarray(): Uint8Array;
}

interface SendResult {
  sentBytes: number;
  canSendMore: boolean;
}

interface SocketLike {
  write(chunk: Uint8Array): boolean;
}

interface TcpConnectionLike {
  socket?: SocketLike;
  sendData?: (data: ChunkList) => SendResult;
}

/**
 * Makes the TCP transport under a libp2p connection write each batch once.
 * Does nothing (and returns `false`) if the connection is not of the shape
 * `libp2p` 3.3 and `@libp2p/tcp` 11 give it.
 *
 * @param connection A libp2p `Connection`.
 * @returns Whether the transport was changed.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { coalesceWrites } from "./_coalesce.ts";
 *
 * const written: Uint8Array[] = [];
 * const maConn = {
 *   socket: { write: (bytes: Uint8Array) => written.push(bytes) > 0 },
 *   sendData: (_data: unknown) => ({ sentBytes: 0, canSendMore: true }),
 * };
 * assert.equal(coalesceWrites({ maConn }), true);
 * const chunks = [new Uint8Array([0, 2]), new Uint8Array([7, 7])];
 * maConn.sendData({ bufs: chunks, byteLength: 4, subarray: () => new Uint8Array([0, 2, 7, 7]) });
 * assert.deepEqual(written, [new Uint8Array([0, 2, 7, 7])]);
 * ```
 */
export function coalesceWrites(connection: unknown): boolean {
  const transport = (connection as { maConn?: TcpConnectionLike } | null)?.maConn;
  const socket = transport?.socket;
  const sendData = transport?.sendData;
  if (typeof sendData !== "function" || typeof socket?.write !== "function") return false;
  Object.defineProperty(transport, "sendData", {
    configurable: true,
    writable: true,
    enumerable: false,
    value: function (this: TcpConnectionLike, data: ChunkList): SendResult {
      if (
        !Array.isArray(data?.bufs) || data.bufs.length < 2 || data.byteLength > MAX_COALESCED_BYTES
      ) {
        return sendData.call(this, data);
      }
      const bytes = data.subarray();
      return { sentBytes: bytes.byteLength, canSendMore: socket.write(bytes) };
    },
  });
  return true;
}
