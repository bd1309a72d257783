/**
 * The kad-dht wire messages DIM sends and reads by itself on streams of the
 * kad protocol: its own lookups (`GET_VALUE`, `FIND_NODE`), puts and
 * repairs (`PUT_VALUE`), and, in tests, replayed records.
 *
 * The format is libp2p's kad-dht `Message` protobuf (`dht.proto`: field 1
 * `type`, 2 `key`, 3 `record`, 8 `closerPeers`; the rest is skipped), each
 * message framed by an unsigned-varint length. The record field holds a
 * libp2p `Record` protobuf (`@libp2p/record`); a closer peer is a `Peer`
 * message (field 1 `id`, a multihash; 2 `addrs`, repeated multiaddr bytes).
 * Decoding is strict: truncated fields, unknown wire types, and more closer
 * peers or addresses than {@linkcode MAX_CLOSER_PEERS} and
 * {@linkcode MAX_PEER_ADDRESSES} are refused.
 *
 * kad-dht's server reads requests from one stream until the remote closes
 * it, so a {@linkcode KadStreamReader} reads answer after answer from the
 * same stream.
 *
 * @module
 */
import type { Stream } from "@libp2p/interface";
import { concat } from "../platform/bytes.ts";
import { ProtocolError } from "../errors.ts";
import { readStream, type StreamChunk } from "./_stream.ts";

/** kad-dht message types (the `MessageType` enum of `dht.proto`). */
export const KadMessageType = {
  PUT_VALUE: 0,
  GET_VALUE: 1,
  FIND_NODE: 4,
  PING: 5,
} as const;

/** The most closer peers one message may carry (kad-dht sends at most k = 20). */
export const MAX_CLOSER_PEERS = 64;

/** The most addresses one closer peer may carry. */
export const MAX_PEER_ADDRESSES = 32;

/** A peer as a kad-dht message carries it. */
export interface KadPeer {
  /** The peer ID's multihash bytes. */
  readonly id: Uint8Array;
  /** Its multiaddrs, as bytes. */
  readonly addrs: readonly Uint8Array[];
}

/** The fields of a kad-dht message DIM reads or writes. */
export interface KadMessage {
  /** The message type. */
  readonly type: number;
  /** The DHT key. */
  readonly key?: Uint8Array;
  /** A serialized libp2p `Record`. */
  readonly record?: Uint8Array;
  /** Peers closer to the key, in an answer. */
  readonly closer?: readonly KadPeer[];
}

function varint(value: number): number[] {
  const out: number[] = [];
  let rest = value;
  while (rest >= 0x80) {
    out.push((rest % 0x80) | 0x80);
    rest = Math.floor(rest / 0x80);
  }
  out.push(rest);
  return out;
}

function bytesField(field: number, bytes: Uint8Array): Uint8Array {
  const head = [...varint((field << 3) | 2), ...varint(bytes.length)];
  const out = new Uint8Array(head.length + bytes.length);
  out.set(head);
  out.set(bytes, head.length);
  return out;
}

/**
 * Encodes a kad-dht message with its varint length prefix.
 *
 * @param message The type, key, record and closer peers.
 * @returns The framed bytes.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeKadMessage, encodeKadMessage, KadMessageType } from "./_kad_wire.ts";
 *
 * const framed = encodeKadMessage({ type: KadMessageType.FIND_NODE, key: new Uint8Array([1]) });
 * assert.equal(framed[0], framed.length - 1); // The length prefix.
 * assert.equal(decodeKadMessage(framed.subarray(1)).type, KadMessageType.FIND_NODE);
 * ```
 */
export function encodeKadMessage(message: KadMessage): Uint8Array {
  const parts: Uint8Array[] = [new Uint8Array([0x08, ...varint(message.type)])];
  if (message.key !== undefined) parts.push(bytesField(2, message.key));
  if (message.record !== undefined) parts.push(bytesField(3, message.record));
  for (const peer of message.closer ?? []) {
    parts.push(
      bytesField(8, concat(bytesField(1, peer.id), ...peer.addrs.map((a) => bytesField(2, a)))),
    );
  }
  const body = concat(...parts);
  return concat(new Uint8Array(varint(body.length)), body);
}

function hasWholeVarint(bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length && i < 10; i++) if ((bytes[i]! & 0x80) === 0) return true;
  return false;
}

class Reader {
  offset = 0;
  constructor(readonly bytes: Uint8Array) {}
  varint(): number {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      const byte = this.bytes[this.offset++];
      if (byte === undefined) {
        throw new ProtocolError("Cannot decode kad message: truncated varint");
      }
      value += (byte & 0x7f) * scale;
      if ((byte & 0x80) === 0) return value;
      scale *= 0x80;
    }
    throw new ProtocolError("Cannot decode kad message: varint too long");
  }
  take(length: number): Uint8Array {
    if (this.offset + length > this.bytes.length) {
      throw new ProtocolError("Cannot decode kad message: truncated field");
    }
    const out = this.bytes.subarray(this.offset, this.offset + length);
    this.offset += length;
    return out;
  }
  skip(wireType: number): void {
    switch (wireType) {
      case 0:
        this.varint();
        break;
      case 1:
        this.take(8);
        break;
      case 2:
        this.take(this.varint());
        break;
      case 5:
        this.take(4);
        break;
      default:
        throw new ProtocolError(`Cannot decode kad message: unsupported wire type ${wireType}`);
    }
  }
}

function decodePeer(bytes: Uint8Array): KadPeer {
  const reader = new Reader(bytes);
  let id: Uint8Array | undefined;
  let addresses = 0;
  while (reader.offset < bytes.length) {
    const tag = reader.varint();
    const field = Math.floor(tag / 8);
    if ((tag & 7) === 2 && field === 1) {
      id = reader.take(reader.varint());
    } else if ((tag & 7) === 2 && field === 2) {
      reader.take(reader.varint());
      if (++addresses > MAX_PEER_ADDRESSES) {
        throw new ProtocolError(
          `Cannot decode kad message: a peer has more than ${MAX_PEER_ADDRESSES} addresses`,
        );
      }
    } else {
      reader.skip(tag & 7);
    }
  }
  if (id === undefined || id.length === 0) {
    throw new ProtocolError("Cannot decode kad message: a closer peer has no ID");
  }
  return new DecodedPeer(id, bytes);
}

// A closer peer whose addresses are collected only if asked for: a lookup
// needs just the ID of the many peers it has already seen.
class DecodedPeer implements KadPeer {
  #addrs: Uint8Array[] | undefined;
  // Views of the message: it lives only as long as the lookup's peers.
  constructor(readonly id: Uint8Array, readonly raw: Uint8Array) {}
  get addrs(): readonly Uint8Array[] {
    if (this.#addrs !== undefined) return this.#addrs;
    const addrs: Uint8Array[] = [];
    const reader = new Reader(this.raw);
    while (reader.offset < this.raw.length) {
      const tag = reader.varint();
      if ((tag & 7) === 2 && Math.floor(tag / 8) === 2) addrs.push(reader.take(reader.varint()));
      else reader.skip(tag & 7);
    }
    this.#addrs = addrs;
    return addrs;
  }
}

/**
 * Decodes the body (without the length prefix) of a kad-dht message.
 *
 * @param body The protobuf bytes.
 * @returns The type, key, record and closer peers; other fields are skipped.
 * @throws {ProtocolError} If the bytes are not a well-formed protobuf, or
 *   carry too many closer peers or addresses.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeKadMessage } from "./_kad_wire.ts";
 *
 * // type = 1 (GET_VALUE), key = "k"
 * const message = decodeKadMessage(new Uint8Array([0x08, 0x01, 0x12, 0x01, 0x6b]));
 * assert.equal(message.type, 1);
 * assert.deepEqual([...message.key!], [0x6b]);
 * ```
 */
export function decodeKadMessage(body: Uint8Array): KadMessage {
  const reader = new Reader(body);
  let type = 0;
  let key: Uint8Array | undefined;
  let record: Uint8Array | undefined;
  const closer: KadPeer[] = [];
  while (reader.offset < body.length) {
    const tag = reader.varint();
    const field = Math.floor(tag / 8);
    const wireType = tag & 7;
    if (wireType === 0 && field === 1) {
      type = reader.varint();
    } else if (wireType === 2 && (field === 2 || field === 3 || field === 8)) {
      const value = reader.take(reader.varint());
      if (field === 2) key = value.slice();
      else if (field === 3) record = value.slice();
      else if (closer.push(decodePeer(value)) > MAX_CLOSER_PEERS) {
        throw new ProtocolError(
          `Cannot decode kad message: more than ${MAX_CLOSER_PEERS} closer peers`,
        );
      }
    } else {
      reader.skip(wireType);
    }
  }
  return {
    type,
    ...(key === undefined ? {} : { key }),
    ...(record === undefined ? {} : { record }),
    ...(closer.length === 0 ? {} : { closer }),
  };
}

/**
 * Writes bytes to a libp2p stream, waiting for the stream to drain when it
 * asks to.
 *
 * @param stream The stream.
 * @param bytes The bytes.
 * @param signal Aborts the wait for drain.
 * @returns When the bytes are queued.
 */
export async function sendBytes(
  stream: Stream,
  bytes: Uint8Array,
  signal?: AbortSignal,
): Promise<void> {
  if (!stream.send(bytes)) {
    await stream.onDrain(signal === undefined ? {} : { signal });
  }
}

/**
 * Reads length-prefixed kad-dht messages one after another from a stream,
 * keeping bytes that arrive ahead of the next message.
 *
 * @example Two answers read from one stream
 * ```ts ignore
 * import { KadStreamReader } from "./_kad_wire.ts";
 *
 * declare const stream: import("@libp2p/interface").Stream;
 * const reader = new KadStreamReader(stream, 1 << 20);
 * const first = await reader.next();
 * const second = await reader.next();
 * await reader.cancel();
 * console.log(first.type, second.type);
 * ```
 */
export class KadStreamReader {
  readonly #chunks: AsyncIterator<StreamChunk>;
  readonly #maxBytes: number;
  #buffered: Uint8Array = new Uint8Array(0);

  /**
   * @param stream The stream to read; nothing else may read it.
   * @param maxBytes The largest message body accepted.
   */
  constructor(stream: Stream, maxBytes: number) {
    this.#chunks = readStream(stream)[Symbol.asyncIterator]();
    this.#maxBytes = maxBytes;
  }

  /**
   * Reads the next message.
   *
   * @returns The decoded message.
   * @throws {ProtocolError} If the stream ends first, the length exceeds
   *   the limit, or the body is malformed.
   */
  async next(): Promise<KadMessage> {
    while (true) {
      const reader = new Reader(this.#buffered);
      let length: number | undefined;
      // Only parse a length that has arrived whole: a throw per message,
      // caught, cost more than the rest of reading it.
      if (hasWholeVarint(this.#buffered)) {
        length = reader.varint();
      } else if (this.#buffered.length >= 10) {
        throw new ProtocolError("Cannot read kad message: bad length");
      }
      if (length !== undefined) {
        if (length > this.#maxBytes) {
          throw new ProtocolError(
            `Cannot read kad message: ${length} bytes is over ${this.#maxBytes}`,
          );
        }
        if (this.#buffered.length - reader.offset >= length) {
          const end = reader.offset + length;
          const message = decodeKadMessage(this.#buffered.subarray(reader.offset, end));
          // A chunk is often a view of a 64 KiB socket read buffer: keep a
          // copy of the rest, never a view that would pin that buffer while
          // the stream waits idle for its next request.
          this.#buffered = end === this.#buffered.length
            ? new Uint8Array(0)
            : this.#buffered.slice(end);
          return message;
        }
      }
      const { value, done } = await this.#chunks.next();
      if (done) throw new ProtocolError("Cannot read kad message: the stream ended first");
      const bytes = value instanceof Uint8Array ? value : value.subarray();
      this.#buffered = this.#buffered.length === 0 ? bytes : concat(this.#buffered, bytes);
    }
  }

  /** Stops reading (the stream's listeners are removed). */
  async cancel(): Promise<void> {
    await this.#chunks.return?.();
  }
}

/**
 * Reads one length-prefixed kad-dht message from a stream.
 *
 * @param stream The stream.
 * @param maxBytes The largest message body accepted.
 * @returns The decoded message.
 * @throws {ProtocolError} If the stream ends early, the length exceeds
 *   `maxBytes`, or the body is malformed.
 */
export async function readKadMessage(stream: Stream, maxBytes: number): Promise<KadMessage> {
  const reader = new KadStreamReader(stream, maxBytes);
  try {
    return await reader.next();
  } finally {
    await reader.cancel();
  }
}
