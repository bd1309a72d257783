/**
 * Length-prefixed frames: the one framing of every DIM stream protocol
 * (`/dim/msg/1.0.0`, `/dim/mbox/2.0.0` and `/dim/file/1.0.0`).
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
   * @param reserve Called with the frame's length once its prefix is read
   *   and accepted, before the body is read: a reader that must budget its
   *   memory waits here, and the body stays in the stream (where the
   *   muxer's flow control holds the sender) until it resolves.
   * @returns The frame, or `undefined` at a clean end of stream.
   * @throws {ProtocolError} If the frame is empty, over `maxLength` or cut short.
   * @throws {unknown} What `reserve` throws.
   */
  async next(
    maxLength: number,
    reserve?: (length: number) => void | Promise<void>,
  ): Promise<RawFrame | undefined> {
    if (!(await this.#fill(4))) {
      if (this.#buffer.byteLength === 0) return undefined;
      throw new ProtocolError("Cannot read frame: stream ended inside a length prefix");
    }
    const length = this.#buffer.getUint32(0);
    if (length === 0 || length > maxLength) {
      throw new ProtocolError(`Cannot read frame: length ${length} is out of range`);
    }
    this.#buffer.consume(4);
    // Awaited only when it is a promise: a reader without a budget keeps
    // its pace (no extra turn per frame).
    const reserving = reserve?.(length);
    if (reserving !== undefined) await reserving;
    if (!(await this.#fill(length))) {
      throw new ProtocolError("Cannot read frame: stream ended inside a frame");
    }
    const frame = this.#take(length);
    return { type: frame[0]!, body: frame.subarray(1) };
  }
}

/**
 * Bytes that several readers share, such as the frames read ahead on all
 * of a node's inbound streams: {@linkcode ByteBudget.reserve} waits while
 * the budget is spent, and waiters are served in the order they came, so
 * a large frame is not passed over for ever by small ones. A reservation
 * larger than the whole budget is granted once nothing else is held, so no
 * reader waits for ever.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ByteBudget } from "./framing.ts";
 *
 * const budget = new ByteBudget(100);
 * await budget.reserve(80);
 * let second = false;
 * const waiting = budget.reserve(40).then(() => (second = true));
 * await Promise.resolve();
 * assert.equal(second, false);
 * budget.release(80);
 * await waiting;
 * assert.equal(budget.used, 40);
 * ```
 */
export class ByteBudget {
  /** The bytes that may be held at once. */
  readonly limit: number;
  #used = 0;
  readonly #waiters: { n: number; grant: () => void; signal: AbortSignal | undefined }[] = [];

  /**
   * @param limit The bytes that may be held at once.
   */
  constructor(limit: number) {
    this.limit = limit;
  }

  /** The bytes held now. */
  get used(): number {
    return this.#used;
  }

  #fits(n: number): boolean {
    return this.#used + n <= this.limit || this.#used === 0;
  }

  /**
   * Holds `n` bytes, waiting until they fit.
   *
   * @param n The bytes.
   * @param signal Gives up the wait (nothing is then held).
   * @returns When the bytes are held.
   * @throws {unknown} The signal's reason, if it aborts first.
   */
  reserve(n: number, signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    if (this.#waiters.length === 0 && this.#fits(n)) {
      this.#used += n;
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const waiter = {
        n,
        signal,
        grant: () => {
          signal?.removeEventListener("abort", onAbort);
          resolve();
        },
      };
      const onAbort = () => {
        const i = this.#waiters.indexOf(waiter);
        if (i >= 0) this.#waiters.splice(i, 1);
        reject(signal!.reason);
        // The waiter at the head may have been held back by this one.
        this.#grant();
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#waiters.push(waiter);
    });
  }

  /**
   * Gives back bytes held with {@linkcode ByteBudget.reserve}.
   *
   * @param n The bytes.
   */
  release(n: number): void {
    this.#used = Math.max(0, this.#used - n);
    this.#grant();
  }

  #grant(): void {
    while (this.#waiters.length > 0 && this.#fits(this.#waiters[0]!.n)) {
      const waiter = this.#waiters.shift()!;
      this.#used += waiter.n;
      waiter.grant();
    }
  }
}
