/**
 * Length-prefixed frames: the one framing of every DIM stream protocol
 * (`/dim/msg/1.0.0`, `/dim/mbox/1.0.0` and `/dim/file/1.0.0`).
 *
 * Every frame is `length u32 | type u8 | body`, `length` counting `type`
 * and `body`, big-endian. What a body means is each protocol's business
 * (wire.ts, file_wire.ts); this module only cuts a byte stream into frames
 * and writes frames to a stream.
 *
 * A reader is given the largest frame it accepts with every read, because
 * what may come next depends on the protocol's state (a file chunk may be
 * megabytes, a credit is five bytes), and checks the length prefix against
 * it before it buffers a byte of the body: an oversized frame costs the
 * receiver four bytes. The stream's chunks are kept as they arrived (in a
 * `Uint8ArrayList`, the list libp2p streams yield) and a frame is a view of
 * its chunk; only a frame that spans chunks is copied, once.
 *
 * @example Write two frames, read them back
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeRawFrame, RawFrameReader } from "./framing.ts";
 *
 * async function* chunks() {
 *   const both = new Uint8Array([
 *     ...encodeRawFrame(7, new Uint8Array([1, 2])),
 *     ...encodeRawFrame(8, new Uint8Array(0)),
 *   ]);
 *   for (const byte of both) yield new Uint8Array([byte]); // one byte at a time
 * }
 * const reader = new RawFrameReader(chunks());
 * assert.deepEqual(await reader.next(16), { type: 7, body: new Uint8Array([1, 2]) });
 * assert.deepEqual(await reader.next(16), { type: 8, body: new Uint8Array(0) });
 * assert.equal(await reader.next(16), undefined);
 * ```
 *
 * @module
 */
import { isUint8ArrayList, Uint8ArrayList } from "uint8arraylist";
import { ProtocolError } from "../errors.ts";
import { INLINE_BODY_LENGTH } from "./constants.ts";

/** A chunk as libp2p streams yield it: bytes, or a list of them with `subarray()`. */
export type StreamChunk = Uint8Array | { subarray(): Uint8Array };

/** The writable side of a stream, as libp2p 3 streams have it. */
export interface FrameSink {
  /** Queues bytes; `false` means wait for `onDrain` before sending more. */
  send(data: Uint8Array): boolean;
  /** Resolves when the send buffer has room again. */
  onDrain(options?: { signal?: AbortSignal }): Promise<void>;
}

/** A frame's type code and its body, not yet decoded. */
export interface RawFrame {
  /** The type code. */
  readonly type: number;
  /** The body (a view of the bytes received, where they arrived in one piece). */
  readonly body: Uint8Array;
}

/** Bytes before a frame's body: `length u32 | type u8`. */
export const FRAME_HEADER_LENGTH = 5;

function header(type: number, bodyLength: number): Uint8Array {
  const out = new Uint8Array(FRAME_HEADER_LENGTH);
  new DataView(out.buffer).setUint32(0, bodyLength + 1);
  out[4] = type;
  return out;
}

/**
 * Encodes one frame in one buffer.
 *
 * @param type The type code, 0 to 255.
 * @param body The body.
 * @returns `length u32 | type u8 | body`.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeRawFrame } from "./framing.ts";
 *
 * assert.deepEqual(encodeRawFrame(2, new Uint8Array([9])), new Uint8Array([0, 0, 0, 2, 2, 9]));
 * ```
 */
export function encodeRawFrame(type: number, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(FRAME_HEADER_LENGTH + body.length);
  out.set(header(type, body.length));
  out.set(body, FRAME_HEADER_LENGTH);
  return out;
}

/**
 * Sends bytes, then waits for the stream to drain if it asks to.
 *
 * @param stream The stream.
 * @param bytes What to send (one or more whole frames).
 * @param signal Aborts the wait for the drain.
 * @returns When the stream can take more.
 * @throws The stream's error if it failed, or `signal`'s reason.
 */
export async function writeBytes(
  stream: FrameSink,
  bytes: Uint8Array,
  signal: AbortSignal,
): Promise<void> {
  if (!stream.send(bytes)) await stream.onDrain({ signal });
}

/**
 * Writes one frame, then waits for the stream to drain if it asks to. A
 * body over {@linkcode INLINE_BODY_LENGTH} is queued as it is, after a
 * separate header, so it is never copied.
 *
 * @param stream The stream.
 * @param type The type code.
 * @param body The body.
 * @param signal Aborts the wait for the drain.
 * @returns When the stream can take more.
 * @throws The stream's error if it failed, or `signal`'s reason.
 */
export async function writeRawFrame(
  stream: FrameSink,
  type: number,
  body: Uint8Array,
  signal: AbortSignal,
): Promise<void> {
  if (body.length <= INLINE_BODY_LENGTH) {
    return await writeBytes(stream, encodeRawFrame(type, body), signal);
  }
  const afterHeader = stream.send(header(type, body.length));
  if (!(stream.send(body) && afterHeader)) await stream.onDrain({ signal });
}

/**
 * Reads `length u32 | type u8 | body` frames from a byte stream, refusing
 * any frame over the limit of the read as soon as its length prefix
 * arrives.
 */
export class RawFrameReader {
  readonly #iterator: AsyncIterator<StreamChunk>;
  readonly #buffer = new Uint8ArrayList();

  /**
   * Wraps a stream's readable side.
   *
   * @param source The stream (async-iterable of chunks).
   */
  constructor(source: AsyncIterable<StreamChunk>) {
    this.#iterator = source[Symbol.asyncIterator]();
  }

  async #fill(n: number): Promise<boolean> {
    while (this.#buffer.byteLength < n) {
      const { value, done } = await this.#iterator.next();
      if (done) return false;
      if (value instanceof Uint8Array || isUint8ArrayList(value)) this.#buffer.append(value);
      else this.#buffer.append(value.subarray());
    }
    return true;
  }

  #take(n: number): Uint8Array {
    const out = this.#buffer.subarray(0, n);
    this.#buffer.consume(n);
    return out;
  }

  /**
   * Reads the next frame.
   *
   * @param maxLength The largest frame accepted, type byte included.
   * @returns The frame, or `undefined` at a clean end of stream.
   * @throws {ProtocolError} If the frame is empty, over `maxLength` or cut short.
   */
  async next(maxLength: number): Promise<RawFrame | undefined> {
    if (!(await this.#fill(4))) {
      if (this.#buffer.byteLength === 0) return undefined;
      throw new ProtocolError("Cannot read frame: stream ended inside a length prefix");
    }
    const length = this.#buffer.getUint32(0);
    if (length === 0 || length > maxLength) {
      throw new ProtocolError(`Cannot read frame: length ${length} is out of range`);
    }
    this.#buffer.consume(4);
    if (!(await this.#fill(length))) {
      throw new ProtocolError("Cannot read frame: stream ended inside a frame");
    }
    const frame = this.#take(length);
    return { type: frame[0]!, body: frame.subarray(1) };
  }
}
