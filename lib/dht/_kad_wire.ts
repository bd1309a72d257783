/**
 * The few kad-dht wire messages DIM sends by itself, on a raw stream of the
 * kad protocol: a `PUT_VALUE` to repair a peer that answered a `get` with an
 * out-of-date record, and (in tests) a `GET_VALUE` or replayed `PUT_VALUE`.
 *
 * The format is libp2p's kad-dht `Message` protobuf (`dht.proto`: field 1
 * `type`, 2 `key`, 3 `record`; the rest is skipped), each message framed by
 * an unsigned-varint length. The record field holds a libp2p `Record`
 * protobuf (`@libp2p/record`).
 *
 * @module
 */
import type { Stream } from "@libp2p/interface";
import { ProtocolError } from "../errors.ts";
import { readStream } from "./_stream.ts";

/** kad-dht message types (the `MessageType` enum of `dht.proto`). */
export const KadMessageType = {
  PUT_VALUE: 0,
  GET_VALUE: 1,
  FIND_NODE: 4,
  PING: 5,
} as const;

/** The fields of a kad-dht message DIM reads or writes. */
export interface KadMessage {
  /** The message type. */
  readonly type: number;
  /** The DHT key. */
  readonly key?: Uint8Array;
  /** A serialized libp2p `Record`. */
  readonly record?: Uint8Array;
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

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, part) => n + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/**
 * Encodes a kad-dht message with its varint length prefix.
 *
 * @param message The type, key and record.
 * @returns The framed bytes.
 */
export function encodeKadMessage(message: KadMessage): Uint8Array {
  const parts: Uint8Array[] = [new Uint8Array([0x08, ...varint(message.type)])];
  if (message.key !== undefined) parts.push(bytesField(2, message.key));
  if (message.record !== undefined) parts.push(bytesField(3, message.record));
  const body = concat(parts);
  return concat([new Uint8Array(varint(body.length)), body]);
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
    const out = this.bytes.slice(this.offset, this.offset + length);
    this.offset += length;
    return out;
  }
}

/**
 * Decodes the body (without the length prefix) of a kad-dht message.
 *
 * @param body The protobuf bytes.
 * @returns The type, key and record; other fields are skipped.
 * @throws {ProtocolError} If the bytes are not a well-formed protobuf.
 */
export function decodeKadMessage(body: Uint8Array): KadMessage {
  const reader = new Reader(body);
  let type = 0;
  let key: Uint8Array | undefined;
  let record: Uint8Array | undefined;
  while (reader.offset < body.length) {
    const tag = reader.varint();
    const field = Math.floor(tag / 8);
    switch (tag & 7) {
      case 0: {
        const value = reader.varint();
        if (field === 1) type = value;
        break;
      }
      case 1:
        reader.take(8);
        break;
      case 2: {
        const value = reader.take(reader.varint());
        if (field === 2) key = value;
        if (field === 3) record = value;
        break;
      }
      case 5:
        reader.take(4);
        break;
      default:
        throw new ProtocolError(`Cannot decode kad message: unsupported wire type ${tag & 7}`);
    }
  }
  return {
    type,
    ...(key === undefined ? {} : { key }),
    ...(record === undefined ? {} : { record }),
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
 * Reads one length-prefixed kad-dht message from a stream.
 *
 * @param stream The stream.
 * @param maxBytes The largest message body accepted.
 * @returns The decoded message.
 * @throws {ProtocolError} If the stream ends early, the length exceeds
 *   `maxBytes`, or the body is malformed.
 */
export async function readKadMessage(stream: Stream, maxBytes: number): Promise<KadMessage> {
  let buffered: Uint8Array = new Uint8Array(0);
  for await (const chunk of readStream(stream)) {
    const bytes = chunk instanceof Uint8Array ? chunk : chunk.subarray();
    buffered = concat([buffered, bytes]);
    const reader = new Reader(buffered);
    let length: number;
    try {
      length = reader.varint();
    } catch {
      if (buffered.length > 10) throw new ProtocolError("Cannot read kad message: bad length");
      continue;
    }
    if (length > maxBytes) {
      throw new ProtocolError(`Cannot read kad message: ${length} bytes is over ${maxBytes}`);
    }
    if (buffered.length - reader.offset >= length) {
      return decodeKadMessage(buffered.subarray(reader.offset, reader.offset + length));
    }
  }
  throw new ProtocolError("Cannot read kad message: the stream ended first");
}
