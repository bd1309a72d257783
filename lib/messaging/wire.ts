/**
 * DIM's two message wire protocols and their frames.
 *
 * Every frame on a stream is `length u32 | type u8 | body` (framing.ts),
 * where `length` counts `type` and `body`. A reader checks `length` against
 * {@linkcode MAX_FRAME_LENGTH} before it buffers a byte of the body, so an
 * oversized frame costs the receiver four bytes. Frames are decoded
 * strictly: unknown types, short bodies and trailing bytes are
 * {@linkcode ProtocolError}s.
 *
 * - `/dim/msg/1.0.0` carries sealed envelopes between two online users:
 *   `ENVELOPE` → `ACK` (signed by the recipient over the envelope's SHA-256)
 *   or `NACK`; `RECEIPT` is an `ACK` the recipient sends on its own for an
 *   envelope it fetched from its mailbox. An `ENVELOPE` frame may hold a
 *   session frame instead (`_session_frame.ts`: the message of an
 *   established session, told apart by its first byte), acknowledged the
 *   same way; "envelope" below means either.
 * - `/dim/mbox/2.0.0` keeps envelopes for offline users on the nodes closest
 *   to the recipient's mailbox address: `STORE` → `STORE_RESULT`, and, signed
 *   by the mailbox owner for one node at one time with a fresh nonce,
 *   `FETCH` → `ITEMS` and `DELETE` → `DELETED` (or `REFUSED` for either).
 *   Version 1 let anyone FETCH and did not make a DELETE single-use; a
 *   version-2 node does not speak it, so a version-1 peer's stream is refused
 *   at protocol negotiation ("the peer does not support it").
 *
 * @example Encode and decode an acknowledgement
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeFrame, encodeFrame, FrameType } from "./wire.ts";
 *
 * const frame = encodeFrame({
 *   type: FrameType.Ack,
 *   envelopeHash: new Uint8Array(32),
 *   signature: new Uint8Array(64),
 * });
 * const back = decodeFrame(frame.subarray(4));
 * assert(back.type === FrameType.Ack);
 * ```
 *
 * @module
 */
import { concat, Reader, u16, u32, u64, utf8 } from "../platform/bytes.ts";
import { MAX_ENVELOPE_LENGTH } from "../crypto/envelope.ts";
import { ProtocolError } from "../errors.ts";
import {
  MAILBOX_DELETE_MAX_ITEMS,
  MAILBOX_FETCH_MAX_ITEMS,
  MAX_FRAME_LENGTH,
} from "./constants.ts";
import {
  type ByteBudget,
  encodeRawFrame,
  type FrameSink,
  RawFrameReader,
  type StreamChunk,
  writeBytes,
} from "./framing.ts";

export { MAX_FRAME_LENGTH };
export type { StreamChunk };

/** Protocol ID of direct messages. */
export const MESSAGE_PROTOCOL = "/dim/msg/1.0.0";
/**
 * Protocol ID of the offline mailbox, version 2: FETCH signed by the owner,
 * FETCH and DELETE single-use per node.
 */
export const MAILBOX_PROTOCOL = "/dim/mbox/2.0.0";
/** The most envelopes one FETCH answer carries: a whole mailbox. */
export const MAX_FETCH_ITEMS: number = MAILBOX_FETCH_MAX_ITEMS;
/** The most hashes one DELETE names: a whole FETCH answer. */
export const MAX_DELETE_ITEMS: number = MAILBOX_DELETE_MAX_ITEMS;
/** Length of the random nonce of a signed FETCH or DELETE. */
export const MAILBOX_NONCE_LENGTH = 16;

/** Frame type codes. */
export const FrameType = {
  Envelope: 0x01,
  Ack: 0x02,
  Nack: 0x03,
  Receipt: 0x04,
  Store: 0x10,
  StoreResult: 0x11,
  Fetch: 0x12,
  Items: 0x13,
  Delete: 0x14,
  Deleted: 0x15,
  Refused: 0x16,
} as const;

/**
 * Why a recipient refused an envelope. `NoSession`: the envelope opened and
 * its signature checked out, but the session message inside does not
 * decrypt in any session the recipient has (it lost its sessions, or two
 * senders used the same one-time prekey); the sender may start a new session.
 */
export const NackCode = { Unreadable: 1, RateLimited: 2, Busy: 3, NoSession: 4 } as const;
/**
 * The outcome of a mailbox STORE. `Full`: the storing peer is over its
 * share of the mailbox. `Invalid`: the bytes can be neither an envelope
 * nor a session frame, or the expiry is out of range. `NotClosest`: the
 * node is not among the nodes closest to the mailbox address, and keeps no
 * copy for it.
 */
export const StoreStatus = { Stored: 0, Duplicate: 1, Full: 2, Invalid: 3, NotClosest: 4 } as const;

/**
 * Why a node refused a FETCH or DELETE. `NotOwner`: the key does not hash
 * to the mailbox, or the signature (over this node's peer ID) is wrong.
 * `Stale`: the timestamp is outside the window. `Replayed`: the node has
 * served this request already.
 */
export const MailboxRefusal = { NotOwner: 1, Stale: 2, Replayed: 3 } as const;

/** What the owner of a mailbox signs for a FETCH or DELETE. */
export interface MailboxRequest {
  /** `FrameType.Fetch` or `FrameType.Delete`. */
  readonly type: typeof FrameType.Fetch | typeof FrameType.Delete;
  /** The peer ID of the node asked: a request is good on that node only. */
  readonly node: string;
  /** The mailbox address. */
  readonly mailbox: Uint8Array;
  /** The request time (ms). */
  readonly timestamp: number;
  /** {@linkcode MAILBOX_NONCE_LENGTH} random bytes. */
  readonly nonce: Uint8Array;
  /** The envelope hashes to delete (a DELETE only). */
  readonly hashes?: readonly Uint8Array[];
}

/** One decoded frame. */
export type Frame =
  | { readonly type: typeof FrameType.Envelope; readonly envelope: Uint8Array }
  | {
    readonly type: typeof FrameType.Ack | typeof FrameType.Receipt;
    readonly envelopeHash: Uint8Array;
    readonly signature: Uint8Array;
  }
  | { readonly type: typeof FrameType.Nack; readonly code: number }
  | {
    readonly type: typeof FrameType.Store;
    readonly mailbox: Uint8Array;
    readonly expiresAt: number;
    readonly envelope: Uint8Array;
  }
  | { readonly type: typeof FrameType.StoreResult; readonly status: number }
  | {
    readonly type: typeof FrameType.Fetch;
    readonly mailbox: Uint8Array;
    readonly owner: Uint8Array;
    readonly timestamp: number;
    readonly nonce: Uint8Array;
    readonly signature: Uint8Array;
  }
  | {
    readonly type: typeof FrameType.Items;
    readonly envelopes: readonly Uint8Array[];
    /** Whether more envelopes wait than the answer holds. */
    readonly more: boolean;
  }
  | {
    readonly type: typeof FrameType.Delete;
    readonly mailbox: Uint8Array;
    readonly owner: Uint8Array;
    readonly timestamp: number;
    readonly nonce: Uint8Array;
    readonly hashes: readonly Uint8Array[];
    readonly signature: Uint8Array;
  }
  | { readonly type: typeof FrameType.Deleted; readonly count: number }
  | { readonly type: typeof FrameType.Refused; readonly code: number };

function checkEnvelopeLength(env: Uint8Array): void {
  if (env.length === 0 || env.length > MAX_ENVELOPE_LENGTH) {
    throw new ProtocolError("Cannot encode frame: envelope length out of range");
  }
}

const REQUEST_LABEL = utf8("DIM-v2 mailbox request\0");

/**
 * What the mailbox owner signs (with the "mailbox" domain) for a FETCH or a
 * DELETE: the label, the request type, the asked node's peer ID, the
 * mailbox, the time, the nonce, and a DELETE's hashes. Naming the node
 * keeps a node from replaying its owner's request to another; the nonce
 * lets the node serve it once.
 *
 * @param request The request.
 * @returns The bytes to sign.
 * @throws {ProtocolError} If the nonce has the wrong length or the peer ID is too long.
 * @example
 * ```ts
 * import { FrameType, mailboxRequestSignedBytes } from "./wire.ts";
 *
 * const bytes = mailboxRequestSignedBytes({
 *   type: FrameType.Fetch,
 *   node: "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA",
 *   mailbox: new Uint8Array(32),
 *   timestamp: 0,
 *   nonce: new Uint8Array(16),
 * });
 * console.assert(bytes.length > 32);
 * ```
 */
export function mailboxRequestSignedBytes(request: MailboxRequest): Uint8Array {
  const node = utf8(request.node);
  if (node.length > 255 || request.nonce.length !== MAILBOX_NONCE_LENGTH) {
    throw new ProtocolError("Cannot sign mailbox request: malformed node or nonce");
  }
  const hashes = request.type === FrameType.Delete
    ? [u16(request.hashes?.length ?? 0), ...(request.hashes ?? [])]
    : [];
  return concat(
    REQUEST_LABEL,
    new Uint8Array([request.type, node.length]),
    node,
    request.mailbox,
    u64(request.timestamp),
    request.nonce,
    ...hashes,
  );
}

/**
 * Encodes a frame with its length prefix.
 *
 * @param frame The frame.
 * @returns `length u32 | type u8 | body`.
 * @throws {ProtocolError} If a field is out of range.
 */
export function encodeFrame(frame: Frame): Uint8Array {
  let body: Uint8Array;
  switch (frame.type) {
    case FrameType.Envelope:
      checkEnvelopeLength(frame.envelope);
      body = frame.envelope;
      break;
    case FrameType.Ack:
    case FrameType.Receipt:
      body = concat(frame.envelopeHash, frame.signature);
      break;
    case FrameType.Nack:
      body = new Uint8Array([frame.code]);
      break;
    case FrameType.Store:
      checkEnvelopeLength(frame.envelope);
      body = concat(frame.mailbox, u64(frame.expiresAt), frame.envelope);
      break;
    case FrameType.StoreResult:
      body = new Uint8Array([frame.status]);
      break;
    case FrameType.Fetch:
      body = concat(
        frame.owner,
        frame.mailbox,
        u64(frame.timestamp),
        frame.nonce,
        frame.signature,
      );
      break;
    case FrameType.Items: {
      if (frame.envelopes.length > MAX_FETCH_ITEMS) {
        throw new ProtocolError("Cannot encode frame: too many items");
      }
      const parts: Uint8Array[] = [
        new Uint8Array([frame.more ? 1 : 0]),
        u16(frame.envelopes.length),
      ];
      for (const e of frame.envelopes) parts.push(u32(e.length), e);
      body = concat(...parts);
      break;
    }
    case FrameType.Delete:
      if (frame.hashes.length > MAX_DELETE_ITEMS) {
        throw new ProtocolError("Cannot encode frame: too many hashes");
      }
      body = concat(
        frame.owner,
        frame.mailbox,
        u64(frame.timestamp),
        frame.nonce,
        u16(frame.hashes.length),
        ...frame.hashes,
        frame.signature,
      );
      break;
    case FrameType.Deleted:
      body = u16(frame.count);
      break;
    case FrameType.Refused:
      body = new Uint8Array([frame.code]);
      break;
  }
  if (body.length + 1 > MAX_FRAME_LENGTH) {
    throw new ProtocolError("Cannot encode frame: it is larger than the frame limit");
  }
  return encodeRawFrame(frame.type, body);
}

/**
 * Writes one frame, waiting for the send buffer to drain if needed.
 *
 * @param stream The stream.
 * @param frame The frame.
 * @param signal Aborts the wait.
 * @returns When the stream can take more.
 * @throws {ProtocolError} If a field is out of range.
 */
export async function writeFrame(
  stream: FrameSink,
  frame: Frame,
  signal: AbortSignal,
): Promise<void> {
  await writeBytes(stream, encodeFrame(frame), signal);
}

function fixed(r: Reader, n: number): Uint8Array {
  return r.bytes(n);
}

/**
 * Decodes one frame (without its length prefix), strictly.
 *
 * @param bytes `type u8 | body`.
 * @returns The frame.
 * @throws {ProtocolError} On an unknown type, a wrong length or trailing bytes.
 */
export function decodeFrame(bytes: Uint8Array): Frame {
  if (bytes.length === 0) throw new ProtocolError("Cannot decode frame: it is empty");
  return decodeBody(bytes[0]!, bytes.subarray(1));
}

function decodeBody(type: number, body: Uint8Array): Frame {
  try {
    const r = new Reader(body);
    let frame: Frame;
    switch (type) {
      case FrameType.Envelope: {
        const envelope = r.bytes(r.remaining);
        checkEnvelopeLength(envelope);
        frame = { type, envelope };
        break;
      }
      case FrameType.Ack:
      case FrameType.Receipt:
        frame = { type, envelopeHash: fixed(r, 32), signature: fixed(r, 64) };
        break;
      case FrameType.Nack:
        frame = { type, code: r.u8() };
        break;
      case FrameType.Store: {
        const mailbox = fixed(r, 32);
        const expiresAt = r.u64();
        const envelope = r.bytes(r.remaining);
        checkEnvelopeLength(envelope);
        frame = { type, mailbox, expiresAt, envelope };
        break;
      }
      case FrameType.StoreResult:
        frame = { type, status: r.u8() };
        break;
      case FrameType.Fetch:
        frame = {
          type,
          owner: fixed(r, 32),
          mailbox: fixed(r, 32),
          timestamp: r.u64(),
          nonce: fixed(r, MAILBOX_NONCE_LENGTH),
          signature: fixed(r, 64),
        };
        break;
      case FrameType.Items: {
        const flag = r.u8();
        if (flag > 1) throw new SyntaxError("bad more flag");
        const n = (r.u8() << 8) | r.u8();
        if (n > MAX_FETCH_ITEMS) throw new SyntaxError("too many items");
        const envelopes: Uint8Array[] = [];
        for (let i = 0; i < n; i++) {
          const len = r.u32();
          if (len === 0 || len > MAX_ENVELOPE_LENGTH) throw new SyntaxError("bad item length");
          envelopes.push(r.bytes(len));
        }
        frame = { type, envelopes, more: flag === 1 };
        break;
      }
      case FrameType.Delete: {
        const owner = fixed(r, 32);
        const mailbox = fixed(r, 32);
        const timestamp = r.u64();
        const nonce = fixed(r, MAILBOX_NONCE_LENGTH);
        const n = (r.u8() << 8) | r.u8();
        if (n > MAX_DELETE_ITEMS) throw new SyntaxError("too many hashes");
        const hashes: Uint8Array[] = [];
        for (let i = 0; i < n; i++) hashes.push(fixed(r, 32));
        frame = { type, owner, mailbox, timestamp, nonce, hashes, signature: fixed(r, 64) };
        break;
      }
      case FrameType.Deleted:
        frame = { type, count: (r.u8() << 8) | r.u8() };
        break;
      case FrameType.Refused:
        frame = { type, code: r.u8() };
        break;
      default:
        throw new SyntaxError(`unknown frame type ${type}`);
    }
    r.end();
    return frame;
  } catch (cause) {
    if (cause instanceof ProtocolError) throw cause;
    const why = cause instanceof Error ? cause.message : String(cause);
    throw new ProtocolError(`Cannot decode frame: ${why}`, { cause });
  }
}

/**
 * Reads `/dim/msg/1.0.0` and `/dim/mbox/2.0.0` frames from a byte stream,
 * refusing any frame over `maxLength` as soon as its length prefix arrives.
 */
export class FrameReader {
  readonly #raw: RawFrameReader;
  readonly #maxLength: number;

  /**
   * Wraps a stream's readable side.
   *
   * @param source The stream (async-iterable of chunks).
   * @param options `maxLength`: the largest frame accepted (default {@linkcode MAX_FRAME_LENGTH}).
   */
  constructor(source: AsyncIterable<StreamChunk>, options: { readonly maxLength?: number } = {}) {
    this.#raw = new RawFrameReader(source);
    this.#maxLength = options.maxLength ?? MAX_FRAME_LENGTH;
  }

  /**
   * Reads the next frame.
   *
   * @param reserve Called with the frame's length before its body is read
   *   (see `RawFrameReader.next`).
   * @returns The decoded frame, or `undefined` at a clean end of stream.
   * @throws {ProtocolError} On an oversized, truncated or malformed frame.
   */
  async next(reserve?: (length: number) => void | Promise<void>): Promise<Frame | undefined> {
    const raw = await this.#raw.next(this.#maxLength, reserve);
    return raw === undefined ? undefined : decodeBody(raw.type, raw.body);
  }
}

/**
 * Reads frames ahead into a bounded queue, so a consumer can take every
 * frame that has arrived at once (and answer them together) instead of one
 * per wait. When the queue is full, reading stops until frames are taken:
 * a fast peer is held back by the stream's flow control, never buffered
 * without bound.
 *
 * The queue is bounded in frames (`capacity`) and, optionally, in bytes:
 * `maxBytes` counts the frames queued and those taken but not yet given
 * back with {@linkcode FrameQueue.release}, and each frame's length is
 * reserved from every shared {@linkcode ByteBudget} in `budgets` as soon as
 * its length prefix is read, before its body is, and held until released.
 */
export class FrameQueue {
  readonly #reader: FrameReader;
  readonly #capacity: number;
  readonly #maxBytes: number;
  readonly #budgets: readonly ByteBudget[];
  readonly #stop = new AbortController();
  #frames: { frame: Frame; length: number }[] = [];
  #queuedBytes = 0;
  #takenBytes = 0;
  #ended = false;
  #error: unknown = undefined;
  #notify: (() => void) | undefined;
  #space: (() => void) | undefined;

  /**
   * Starts reading a stream.
   *
   * @param source The stream.
   * @param options `capacity`: frames held before reading pauses;
   *   `maxLength`: the largest frame accepted; `maxBytes`: bytes queued or
   *   taken and not released before reading pauses (default no limit);
   *   `budgets`: shared budgets each frame's bytes are held in.
   */
  constructor(
    source: AsyncIterable<StreamChunk>,
    options: {
      readonly capacity: number;
      readonly maxLength?: number;
      readonly maxBytes?: number;
      readonly budgets?: readonly ByteBudget[];
    },
  ) {
    this.#reader = new FrameReader(
      source,
      options.maxLength === undefined ? {} : { maxLength: options.maxLength },
    );
    this.#capacity = options.capacity;
    this.#maxBytes = options.maxBytes ?? Infinity;
    this.#budgets = options.budgets ?? [];
    this.#pump();
  }

  #full(): boolean {
    return this.#frames.length >= this.#capacity ||
      (this.#queuedBytes + this.#takenBytes >= this.#maxBytes &&
        this.#queuedBytes + this.#takenBytes > 0);
  }

  async #reserve(length: number): Promise<void> {
    const held: ByteBudget[] = [];
    try {
      for (const budget of this.#budgets) {
        await budget.reserve(length, this.#stop.signal);
        held.push(budget);
      }
    } catch (err) {
      for (const budget of held) budget.release(length);
      throw err;
    }
  }

  #give(bytes: number): void {
    if (bytes === 0) return;
    for (const budget of this.#budgets) budget.release(bytes);
  }

  async #pump(): Promise<void> {
    try {
      for (;;) {
        while (this.#full() && !this.#stop.signal.aborted) {
          await new Promise<void>((resolve) => (this.#space = resolve));
        }
        if (this.#stop.signal.aborted) break;
        let length = 0;
        const frame = await this.#reader.next((n) => {
          length = n;
          return this.#budgets.length > 0 ? this.#reserve(n) : undefined;
        });
        if (this.#stop.signal.aborted) {
          this.#give(length);
          break;
        }
        if (frame === undefined) break;
        this.#frames.push({ frame, length });
        this.#queuedBytes += length;
        this.#wake();
      }
    } catch (err) {
      this.#error = err;
    }
    this.#ended = true;
    this.#wake();
  }

  #wake(): void {
    const notify = this.#notify;
    this.#notify = undefined;
    notify?.();
  }

  #makeSpace(): void {
    if (this.#full()) return;
    const space = this.#space;
    this.#space = undefined;
    space?.();
  }

  /** How many frames are queued. */
  get size(): number {
    return this.#frames.length;
  }

  /** The bytes of the frames queued, and of those taken and not released. */
  get bytes(): number {
    return this.#queuedBytes + this.#takenBytes;
  }

  /** Whether the stream ended (cleanly or not) and nothing is left to take. */
  get done(): boolean {
    return this.#ended && this.#frames.length === 0;
  }

  /**
   * Resolves once a frame is queued or the stream has ended. Takes nothing,
   * so giving up on it loses nothing.
   *
   * @returns When there is something to take.
   */
  ready(): Promise<void> {
    if (this.#frames.length > 0 || this.#ended) return Promise.resolve();
    return new Promise((resolve) => {
      const previous = this.#notify;
      this.#notify = () => {
        previous?.();
        resolve();
      };
    });
  }

  /**
   * Takes up to `max` queued frames, oldest first. Their bytes stay counted
   * until {@linkcode FrameQueue.release}.
   *
   * @param max The most frames to take.
   * @returns The frames; empty if none are queued (see `done`).
   * @throws {ProtocolError} Once the queue is empty, if the stream ended in a
   *   malformed frame; the stream's own error if it failed.
   */
  take(max: number): Frame[] {
    const out = this.#frames.splice(0, max);
    for (const { length } of out) {
      this.#queuedBytes -= length;
      this.#takenBytes += length;
    }
    this.#makeSpace();
    if (out.length === 0 && this.#ended && this.#error !== undefined) throw this.#error;
    return out.map(({ frame }) => frame);
  }

  /** Gives back the bytes of every frame taken so far: the consumer is done with them. */
  release(): void {
    this.#give(this.#takenBytes);
    this.#takenBytes = 0;
    this.#makeSpace();
  }

  /**
   * Stops reading and gives back every byte held, queued or taken. Call it
   * once the stream is done with (it does not end the stream).
   */
  dispose(): void {
    if (this.#stop.signal.aborted) return;
    this.#stop.abort(new Error("frame queue disposed"));
    this.#give(this.#queuedBytes + this.#takenBytes);
    this.#queuedBytes = 0;
    this.#takenBytes = 0;
    this.#frames = [];
    const space = this.#space;
    this.#space = undefined;
    space?.();
  }
}
