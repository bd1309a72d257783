/**
 * Streamed, end-to-end encrypted file transfer between two online DIM users,
 * on its own protocol `/dim/file/1.0.0`, one libp2p stream per file.
 *
 * The sender sets up one HPKE base-mode context (RFC 9180) to the
 * recipient's X25519 key per file and seals everything after it with that
 * context: the offer, every chunk and the end. HPKE's sequence numbers give
 * each seal a unique nonce and make the recipient open them strictly in
 * order, and each chunk's additional data names its file, its index and
 * whether it is the last one, so chunks cannot be reordered, dropped,
 * replayed from another file or cut short without the recipient noticing.
 * The offer is signed by the sender's identity key (and binds the
 * recipient's key and HPKE's `enc`, so the context belongs to the signer);
 * the end carries the signed SHA-256 of the whole plaintext, which the
 * recipient checks before it presents the file, and the recipient answers
 * with a receipt signed by its own identity key.
 *
 * Neither side holds the file in memory: the sender reads a
 * `ReadableStream<Uint8Array>` chunk by chunk, and the recipient writes to a
 * `WritableStream<Uint8Array>` its policy callback returns, which it closes
 * (commits) only after the SHA-256 and the signature check out and aborts
 * (discards) on any failure. The recipient grants the sender a window of
 * chunks and returns a credit for every chunk written, so at most that many
 * chunks are ever in flight or buffered, whatever the transport's own
 * windows. A recipient refuses an offer over its size limits before it
 * reads a single chunk, and refuses every sender its `accept` callback does
 * not take.
 *
 * The SHA-256 of the whole file is computed as the bytes stream past.
 * WebCrypto can only hash a whole buffer at once, so it comes from Deno's
 * built-in `node:crypto` hash (native code, about 0.5 ns per byte); the
 * pure-JavaScript `@noble/hashes` one cost 4.5 ns per byte, more than the
 * libp2p stream itself. AES-GCM (WebCrypto) costs about 1.5 ns per byte and end.
 *
 * ## Wire format (version 1)
 *
 * Every frame is `length u32 | type u8 | body`, `length` counting `type` and
 * `body`, integers big-endian; a reader checks `length` against the largest
 * frame it expects next before it buffers the body.
 *
 * ```text
 * type  frame    from  body
 * 0x01  OFFER    S     version u8 (= 1) | enc (32) | seal(offer), aad = version | 0
 *                      offer = fileId (16) | senderSigningKey (32) | size u64
 *                              | chunkSize u32 | timestamp u64 | nameLength u16
 *                              | name (UTF-8) | signature (64)
 * 0x02  ACCEPT   R     window u16: chunks the sender may have sent and not had credited
 * 0x03  REFUSE   R     code u8: 1 refused, 2 too large, 3 unreadable, 4 busy,
 *                      5 corrupt, 6 sink failed; then the stream closes
 * 0x04  CHUNK    S     seal(chunk i), aad = version | 1 (2 for the last) | fileId | i u64
 * 0x05  CREDIT   R     count u32: chunks written to the sink since the last credit
 * 0x06  END      S     seal(sha256 (32) | signature (64)),
 *                      aad = version | 3 | fileId | count u64
 * 0x07  RECEIPT  R     signature (64)
 * ```
 *
 * `seal` is the file's HPKE context (info "DIM-v1 file transfer"), one
 * sequence number per frame: 0 for the offer, 1 … count for the chunks,
 * count + 1 for the end. A file of `size` bytes has
 * `max(1, ceil(size / chunkSize))` chunks, all `chunkSize` long but the last.
 * The signatures are Ed25519 under the "envelope" domain of identity.ts
 * (which has no file domain yet), over a prefix that keeps them apart from
 * envelope signatures, then the fields:
 *
 * ```text
 * offer    (sender)     "DIM-v1 file transfer: offer\0"
 *                       | recipientEncryptionKey | enc | offer without its signature
 * end      (sender)     "DIM-v1 file transfer: end\0"
 *                       | recipientEncryptionKey | enc | fileId | size u64 | sha256
 * receipt  (recipient)  "DIM-v1 file transfer: receipt\0"
 *                       | senderSigningKey | recipientEncryptionKey | enc | fileId
 *                       | size u64 | sha256
 * ```
 *
 * @example Send a file to a contact who accepts it
 * ```ts ignore
 * import { FileReceiver, fileSink, fileSource, sendFile } from "./file_transfer.ts";
 *
 * // Bob's side: accept files from Alice into ~/Downloads.
 * const receiver = new FileReceiver(bob, {
 *   accept: (offer) => offer.senderId === alice.id ? fileSink(`${downloads}/${offer.name}`) : undefined,
 *   onReceived: (file) => console.log(`got ${file.name}, sha256 ${file.sha256}`),
 * });
 * await receiver.start(bobTransport);
 *
 * // Alice's side.
 * const sent = await sendFile(aliceTransport, {
 *   identity: alice,
 *   recipient: { userId: bob.id, encryptionPublicKey: bob.encryptionPublicKey, peer: bobPeer },
 *   source: await fileSource("./holiday.jpg"),
 * });
 * console.log(`sent ${sent.bytes} bytes`);
 * ```
 *
 * @module
 */
import { createHash } from "node:crypto";
import { basename, dirname, join } from "node:path";
import { raceSignal as race } from "race-signal";
import {
  concat,
  constantTimeEqual,
  fromUtf8,
  Reader,
  toHex,
  u16,
  u64,
  utf8,
} from "../platform/bytes.ts";
import {
  HPKE_ENC_LENGTH,
  HPKE_TAG_LENGTH,
  type HpkeRecipientContext,
  type HpkeSenderContext,
  setupBaseR,
  setupBaseS,
} from "../crypto/hpke.ts";
import {
  decodeUserId,
  encodeUserId,
  type Identity,
  type SignatureDomain,
  verifySignature,
} from "../crypto/identity.ts";
import { DecryptionError, DimError, PeerUnreachableError, ProtocolError } from "../errors.ts";
import type { MessageStream, StreamHost } from "./mailbox.ts";
import type { PeerTarget } from "./service.ts";
import type { StreamChunk } from "./wire.ts";

/** Protocol ID of file transfers. */
export const FILE_PROTOCOL = "/dim/file/1.0.0";
/** The file transfer format version this module writes and reads. */
export const FILE_TRANSFER_VERSION = 1;
/**
 * The chunk size a sender uses unless told otherwise: 1 MiB. On loopback
 * (bench/transfer_bench.ts) 256 KiB chunks are about 15% slower and 64 KiB
 * chunks 40%, paying the per-chunk costs (an AES-GCM call, a frame, a
 * credit) more often. A recipient's window is counted in bytes (2 MiB by
 * default), so bigger chunks do not make it hold more.
 */
export const DEFAULT_CHUNK_SIZE: number = 1024 * 1024;
/** The smallest chunk size a recipient accepts: 4 KiB. */
export const MIN_CHUNK_SIZE: number = 4 * 1024;
/** The largest chunk size this module handles at all: 4 MiB. */
export const MAX_CHUNK_SIZE: number = 4 * 1024 * 1024;
/** The largest chunk size a recipient accepts unless told otherwise: 1 MiB. */
export const DEFAULT_MAX_CHUNK_SIZE: number = 1024 * 1024;
/** The largest file a recipient accepts unless told otherwise: 4 GiB. */
export const DEFAULT_MAX_FILE_SIZE: number = 4 * 1024 * 1024 * 1024;
/** The longest file name carried, in UTF-8 bytes. */
export const MAX_FILE_NAME_LENGTH = 255;
/** Length of a file ID in bytes (shown as 32 hex digits). */
export const FILE_ID_LENGTH = 16;

/** Frame type codes of `/dim/file/1.0.0`. */
export const FileFrameType = {
  Offer: 0x01,
  Accept: 0x02,
  Refuse: 0x03,
  Chunk: 0x04,
  Credit: 0x05,
  End: 0x06,
  Receipt: 0x07,
} as const;

/** Why a recipient refused or abandoned a transfer. */
export type RefusalReason =
  | "refused"
  | "too-large"
  | "unreadable"
  | "busy"
  | "corrupt"
  | "sink-failed";

const REFUSAL_CODES: Record<RefusalReason, number> = {
  refused: 1,
  "too-large": 2,
  unreadable: 3,
  busy: 4,
  corrupt: 5,
  "sink-failed": 6,
};

const REFUSAL_TEXT: Record<RefusalReason, string> = {
  refused: "the recipient refused it",
  "too-large": "it is over the recipient's size limits",
  unreadable: "the recipient could not open the offer",
  busy: "the recipient is busy with other transfers",
  corrupt: "the recipient found it altered or incomplete",
  "sink-failed": "the recipient could not store it",
};

/** A transfer was refused by the recipient, or abandoned by it after a failed check. */
export class TransferRefusedError extends DimError {
  /** Why. */
  readonly reason: RefusalReason;
  /**
   * Makes the error for one reason.
   *
   * @param reason Why the transfer was refused.
   * @param options `cause`, if any.
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { TransferRefusedError } from "./file_transfer.ts";
   * const err = new TransferRefusedError("too-large");
   * assert.equal(err.reason, "too-large");
   * assert.equal(err.name, "TransferRefusedError");
   * assert.match(err.message, /^Cannot send file: /);
   * ```
   */
  constructor(reason: RefusalReason, options?: ErrorOptions) {
    super(`Cannot send file: ${REFUSAL_TEXT[reason]}`, options);
    this.reason = reason;
  }
}

/** What the file transfer needs from the network to send. */
export interface FileTransport {
  /** Opens a stream of `protocol` to a peer. */
  openStream(
    peer: PeerTarget,
    protocol: string,
    options: { readonly signal: AbortSignal },
  ): Promise<MessageStream>;
}

/** The recipient of a file: who they are and where their node is. */
export interface FileRecipient {
  /** The recipient's user ID; its key verifies the receipt. */
  readonly userId: string;
  /** The recipient's raw 32-byte X25519 key, to which the file is sealed. */
  readonly encryptionPublicKey: Uint8Array;
  /** The recipient's node. */
  readonly peer: PeerTarget;
}

/** A file to send, as a stream of its bytes. */
export interface FileSource {
  /** The file name shown to the recipient; sanitised with {@linkcode sanitizeFileName}. */
  readonly name: string;
  /** The exact size in bytes; the stream must yield exactly this many. */
  readonly size: number;
  /** The bytes. It is read once and cancelled if the transfer fails. */
  readonly stream: ReadableStream<Uint8Array>;
}

/** Who sends what to whom, for {@linkcode sendFile}. */
export interface FileTransfer {
  /** The sender's identity; it signs the offer and the end. */
  readonly identity: Identity;
  /** The recipient. */
  readonly recipient: FileRecipient;
  /** The file. */
  readonly source: FileSource;
}

/** Progress of one transfer, reported after every chunk. */
export interface TransferProgress {
  /** The file ID, 32 hex digits. */
  readonly fileId: string;
  /** The file name. */
  readonly name: string;
  /** Bytes sent (sender) or written (recipient) so far. */
  readonly bytes: number;
  /** The file size. */
  readonly total: number;
}

/** Options of {@linkcode sendFile}. */
export interface SendFileOptions {
  /** Chunk size in bytes, {@linkcode MIN_CHUNK_SIZE} to {@linkcode MAX_CHUNK_SIZE}. Default {@linkcode DEFAULT_CHUNK_SIZE}. */
  readonly chunkSize?: number;
  /** Aborts the transfer: the stream is reset and the recipient discards what it got. */
  readonly signal?: AbortSignal;
  /** Called after each chunk is handed to the stream. */
  readonly onProgress?: (progress: TransferProgress) => void;
  /** Longest wait for the recipient to accept or refuse (ms). Default 120 000. */
  readonly acceptTimeoutMs?: number;
  /** Longest silence from the recipient once it accepted (ms). Default 30 000. */
  readonly idleTimeoutMs?: number;
  /** When the offer was made, in ms since the epoch. Default `Date.now()`. */
  readonly timestamp?: number;
}

/** What {@linkcode sendFile} returns once the recipient signed its receipt. */
export interface SentFile {
  /** The file ID, 32 hex digits. */
  readonly fileId: string;
  /** The (sanitised) name the recipient was given. */
  readonly name: string;
  /** Bytes sent. */
  readonly bytes: number;
  /** SHA-256 of the file, hex. */
  readonly sha256: string;
  /** The recipient's Ed25519 signature over the receipt. */
  readonly receipt: Uint8Array;
}

/** An offer as the recipient's policy sees it: signed by `senderId`, not yet transferred. */
export interface FileOffer {
  /** The file ID, 32 hex digits. */
  readonly fileId: string;
  /** The sender's verified user ID. */
  readonly senderId: string;
  /** The sender's verified Ed25519 key. */
  readonly senderSigningKey: Uint8Array;
  /** The file name, sanitised: no path separators, control characters, "." or "..". */
  readonly name: string;
  /** The announced size in bytes (the transfer fails unless exactly this many arrive). */
  readonly size: number;
  /** The sender's chunk size. */
  readonly chunkSize: number;
  /** The sender's claimed time of the offer (ms since the epoch; not checked). */
  readonly timestamp: number;
  /** The libp2p peer ID the offer came from. */
  readonly remotePeer: string;
}

/** A file the recipient received, checked and committed. */
export interface ReceivedFile {
  /** The file ID, 32 hex digits. */
  readonly fileId: string;
  /** The sender's verified user ID. */
  readonly senderId: string;
  /** The sanitised file name. */
  readonly name: string;
  /** Bytes received. */
  readonly bytes: number;
  /** SHA-256 of the file, hex; the sender signed it. */
  readonly sha256: string;
  /** The libp2p peer ID it came from. */
  readonly remotePeer: string;
}

/** Options of {@linkcode FileReceiver}. */
export interface FileReceiverOptions {
  /**
   * The policy: returns where to write an offered file, or `undefined` to
   * refuse it. Only called for offers within the size limits whose
   * signature verified. The sink is closed only once the whole file checked
   * out, and aborted on any failure, so a sink that writes to a temporary
   * name and renames on close (like {@linkcode fileSink}) never shows a
   * partial file. Default: refuse every offer, so a receiver accepts only
   * the senders its policy names.
   */
  readonly accept?: (
    offer: FileOffer,
    options: { readonly signal: AbortSignal },
  ) => WritableStream<Uint8Array> | undefined | Promise<WritableStream<Uint8Array> | undefined>;
  /** Called after each chunk is written. */
  readonly onProgress?: (progress: TransferProgress & { readonly senderId: string }) => void;
  /** Called for each file received, after its sink was closed. */
  readonly onReceived?: (file: ReceivedFile) => void;
  /** Called for each transfer that failed or was refused, with the offer if it was read. */
  readonly onFailed?: (error: unknown, offer: FileOffer | undefined) => void;
  /** The largest file accepted (bytes). Default {@linkcode DEFAULT_MAX_FILE_SIZE}. */
  readonly maxFileSize?: number;
  /** The largest chunk size accepted (bytes, at most {@linkcode MAX_CHUNK_SIZE}). Default {@linkcode DEFAULT_MAX_CHUNK_SIZE}. */
  readonly maxChunkSize?: number;
  /**
   * Chunks the sender may have in flight. Default: as many of the offer's
   * chunks as fit in 2 MiB, 2 to 64.
   */
  readonly window?: number;
  /** Transfers served at once; more are refused as busy. Default 8. */
  readonly maxConcurrent?: number;
  /** Longest wait for `accept` to decide (ms). Default 120 000. */
  readonly acceptTimeoutMs?: number;
  /** Longest silence from the sender (ms). Default 30 000. */
  readonly idleTimeoutMs?: number;
}

// --- Constants of the format -------------------------------------------------

const INFO = utf8("DIM-v1 file transfer");
// TODO(identity): sign under a "file" domain once identity.ts has one. Until
// then the signatures use the "envelope" domain, and every signed message
// starts with a prefix longer than 32 bytes: an envelope signature covers
// `recipientEncryptionKey (32) | enc (32) | …`, and a recipient key chosen to
// equal the prefix's first 32 bytes would still need the signer's random
// `enc` to match the rest, so neither kind of signature passes for the other.
const SIGNATURE_DOMAIN: SignatureDomain = "file";
const SIGNED_OFFER = utf8("DIM-v1 file transfer: offer\0");
const SIGNED_END = utf8("DIM-v1 file transfer: end\0");
const SIGNED_RECEIPT = utf8("DIM-v1 file transfer: receipt\0");

const KEY_LENGTH = 32;
const SIGNATURE_LENGTH = 64;
const HASH_LENGTH = 32;
const AAD_OFFER = 0;
const AAD_CHUNK = 1;
const AAD_LAST_CHUNK = 2;
const AAD_END = 3;
// fileId | senderSigningKey | size | chunkSize | timestamp | nameLength
const OFFER_FIXED_LENGTH = FILE_ID_LENGTH + KEY_LENGTH + 8 + 4 + 8 + 2;
const MAX_OFFER_BODY_LENGTH = 1 + HPKE_ENC_LENGTH + OFFER_FIXED_LENGTH + MAX_FILE_NAME_LENGTH +
  SIGNATURE_LENGTH + HPKE_TAG_LENGTH;
const END_BODY_LENGTH = HASH_LENGTH + SIGNATURE_LENGTH + HPKE_TAG_LENGTH;
/** The largest frame besides OFFER and CHUNK (type byte included). */
const MAX_CONTROL_FRAME_LENGTH = 1 + END_BODY_LENGTH;
const FRAME_HEADER_LENGTH = 5;
const MAX_WINDOW = 0xffff;

/** Chunk bytes a recipient lets a sender have in flight, unless told a window in chunks. */
const DEFAULT_WINDOW_BYTES = 2 * 1024 * 1024;
/** The most chunks that window comes to, for small chunks. */
const MAX_DEFAULT_WINDOW = 64;
const DEFAULT_MAX_CONCURRENT = 8;
const DEFAULT_ACCEPT_TIMEOUT_MS = 120_000;
const DEFAULT_IDLE_TIMEOUT_MS = 30_000;
/** Chunks sealed ahead of the one being sent. */
const SEAL_AHEAD = 2;

// --- Names -------------------------------------------------------------------

// Separators, control characters and the characters Windows forbids.
// deno-lint-ignore no-control-regex
const UNSAFE_NAME_CHARS = /[\u0000-\u001f\u007f/\\:*?"<>|]/g;

/**
 * Makes a file name safe to use as the last component of a path: path
 * separators, control characters and `:*?"<>|` become `_`, dots and spaces
 * are trimmed from both ends (so `.` and `..` cannot name a directory and no
 * hidden file appears), and the name is cut to
 * {@linkcode MAX_FILE_NAME_LENGTH} UTF-8 bytes at a character boundary. An
 * empty result becomes `"file"`.
 *
 * @param name The name as given.
 * @returns The safe name, never empty.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sanitizeFileName } from "./file_transfer.ts";
 * assert.equal(sanitizeFileName("../../etc/passwd"), "_.._etc_passwd");
 * assert.equal(sanitizeFileName("C:\\report.pdf"), "C__report.pdf");
 * assert.equal(sanitizeFileName(".."), "file");
 * assert.equal(sanitizeFileName("photo.jpg"), "photo.jpg");
 * ```
 */
export function sanitizeFileName(name: string): string {
  let safe = name.normalize("NFC").replace(UNSAFE_NAME_CHARS, "_").replace(/^[.\s]+|[.\s]+$/g, "");
  const bytes = utf8(safe);
  if (bytes.length > MAX_FILE_NAME_LENGTH) {
    let end = MAX_FILE_NAME_LENGTH;
    // Back up to the start of a UTF-8 sequence.
    while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
    safe = fromUtf8(bytes.subarray(0, end)).replace(/[.\s]+$/, "");
  }
  return safe === "" ? "file" : safe;
}

// --- Byte helpers ------------------------------------------------------------

function u32be(n: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, n);
  return out;
}

function readU16(bytes: Uint8Array): number {
  if (bytes.length !== 2) throw new ProtocolError("Cannot read frame: wrong body length");
  return (bytes[0]! << 8) | bytes[1]!;
}

function readU32(bytes: Uint8Array): number {
  if (bytes.length !== 4) throw new ProtocolError("Cannot read frame: wrong body length");
  return new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0);
}

function aad(kind: number, fileId?: Uint8Array, index?: number): Uint8Array {
  if (fileId === undefined || index === undefined) {
    return new Uint8Array([FILE_TRANSFER_VERSION, kind]);
  }
  const out = new Uint8Array(2 + FILE_ID_LENGTH + 8);
  out[0] = FILE_TRANSFER_VERSION;
  out[1] = kind;
  out.set(fileId, 2);
  new DataView(out.buffer).setBigUint64(2 + FILE_ID_LENGTH, BigInt(index));
  return out;
}

function chunkCount(size: number, chunkSize: number): number {
  return Math.max(1, Math.ceil(size / chunkSize));
}

function chunkLength(index: number, size: number, chunkSize: number): number {
  return Math.min(chunkSize, size - index * chunkSize);
}

function endSignedBytes(
  recipientKey: Uint8Array,
  enc: Uint8Array,
  fileId: Uint8Array,
  size: number,
  hash: Uint8Array,
): Uint8Array {
  return concat(SIGNED_END, recipientKey, enc, fileId, u64(size), hash);
}

function receiptSignedBytes(
  senderKey: Uint8Array,
  recipientKey: Uint8Array,
  enc: Uint8Array,
  fileId: Uint8Array,
  size: number,
  hash: Uint8Array,
): Uint8Array {
  return concat(SIGNED_RECEIPT, senderKey, recipientKey, enc, fileId, u64(size), hash);
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

// --- Frames ------------------------------------------------------------------

/**
 * Bytes kept as the pieces they arrived in, from which exact lengths are
 * taken: a length within one piece is a view of it, and only a length that
 * spans pieces is copied, once.
 */
class ByteQueue {
  #pieces: Uint8Array[] = [];
  #length = 0;

  get length(): number {
    return this.#length;
  }

  push(piece: Uint8Array): void {
    if (piece.length === 0) return;
    this.#pieces.push(piece);
    this.#length += piece.length;
  }

  /** The next `n` bytes; the caller checked that `length >= n`. */
  take(n: number): Uint8Array {
    this.#length -= n;
    const first = this.#pieces[0];
    if (first !== undefined && first.length >= n) {
      if (first.length === n) this.#pieces.shift();
      else this.#pieces[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const out = new Uint8Array(n);
    for (let filled = 0; filled < n;) {
      const piece = this.#pieces[0]!;
      const used = Math.min(piece.length, n - filled);
      out.set(used === piece.length ? piece : piece.subarray(0, used), filled);
      filled += used;
      if (used === piece.length) this.#pieces.shift();
      else this.#pieces[0] = piece.subarray(used);
    }
    return out;
  }
}

interface RawFrame {
  readonly type: number;
  readonly body: Uint8Array;
}

/**
 * Reads `length u32 | type u8 | body` frames. The limit is given per read,
 * because what may come next depends on the protocol's state, and checked
 * as soon as the length prefix arrives. Stream chunks are kept as received
 * and copied once, into the frame, when a frame spans several of them.
 */
class FrameReader {
  readonly #iterator: AsyncIterator<StreamChunk>;
  readonly #queue = new ByteQueue();

  constructor(source: AsyncIterable<StreamChunk>) {
    this.#iterator = source[Symbol.asyncIterator]();
  }

  async #fill(n: number): Promise<boolean> {
    while (this.#queue.length < n) {
      const { value, done } = await this.#iterator.next();
      if (done) return false;
      if (value instanceof Uint8Array) {
        this.#queue.push(value);
      } else if (Symbol.iterator in value) {
        // A Uint8ArrayList: take its buffers without joining them.
        for (const piece of value as Iterable<Uint8Array>) this.#queue.push(piece);
      } else {
        this.#queue.push(value.subarray());
      }
    }
    return true;
  }

  /**
   * The next frame, or `undefined` at a clean end of stream.
   *
   * @throws {ProtocolError} If the frame is empty, over `maxLength` or cut short.
   */
  async next(maxLength: number): Promise<RawFrame | undefined> {
    if (!(await this.#fill(4))) {
      if (this.#queue.length === 0) return undefined;
      throw new ProtocolError("Cannot read frame: stream ended inside a length prefix");
    }
    const prefix = this.#queue.take(4);
    const length = ((prefix[0]! << 24) | (prefix[1]! << 16) | (prefix[2]! << 8) | prefix[3]!) >>> 0;
    if (length === 0 || length > maxLength) {
      throw new ProtocolError(`Cannot read frame: length ${length} is out of range`);
    }
    if (!(await this.#fill(length))) {
      throw new ProtocolError("Cannot read frame: stream ended inside a frame");
    }
    const type = this.#queue.take(1)[0]!;
    return { type, body: this.#queue.take(length - 1) };
  }
}

/**
 * Writes one frame and waits for the stream to drain if it asks to. A large
 * body is queued as it is, after a separate header, so it is never copied.
 */
async function writeFrame(
  stream: MessageStream,
  type: number,
  body: Uint8Array,
  signal: AbortSignal,
): Promise<void> {
  const header = new Uint8Array(FRAME_HEADER_LENGTH);
  new DataView(header.buffer).setUint32(0, body.length + 1);
  header[4] = type;
  let ready: boolean;
  if (body.length <= 1024) {
    ready = stream.send(concat(header, body));
  } else {
    const afterHeader = stream.send(header);
    ready = stream.send(body) && afterHeader;
  }
  if (!ready) await stream.onDrain({ signal });
}

/**
 * An abort signal that fires after `ms` without a `refresh()`. One timer per
 * transfer, rearmed on progress, instead of a timeout signal per frame.
 */
class IdleTimer {
  readonly #controller = new AbortController();
  readonly #ms: number;
  readonly #reason: () => Error;
  readonly #parent: AbortSignal | undefined;
  readonly #onParentAbort = () => this.#controller.abort(this.#parent!.reason);
  #timer: ReturnType<typeof setTimeout> | undefined;

  /**
   * @param ms The silence allowed.
   * @param reason The error the signal aborts with when it comes.
   * @param parent A signal that aborts this one too (the caller's, or the
   *   receiver stopping). Linked by a listener that `release()` removes, not
   *   by `AbortSignal.any`, which Deno never frees (a few hundred bytes a
   *   call, for every transfer and every stream a peer opens).
   */
  constructor(ms: number, reason: () => Error, parent?: AbortSignal) {
    this.#ms = ms;
    this.#reason = reason;
    this.#parent = parent;
    if (parent?.aborted) this.#onParentAbort();
    else parent?.addEventListener("abort", this.#onParentAbort, { once: true });
    this.refresh();
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  refresh(): void {
    if (this.#controller.signal.aborted) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#controller.abort(this.#reason()), this.#ms);
  }

  /** Stops the clock; the parent can still abort the signal. */
  clear(): void {
    clearTimeout(this.#timer);
  }

  /** Stops the clock and unhooks from the parent: call it when done. */
  release(): void {
    this.clear();
    this.#parent?.removeEventListener("abort", this.#onParentAbort);
  }
}

/** Wakes every waiter on `notify()`. */
class Notifier {
  #waiters: (() => void)[] = [];

  wait(): Promise<void> {
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  notify(): void {
    for (const wake of this.#waiters.splice(0)) wake();
  }
}

function checkTimeout(value: number, what: string): number {
  if (!Number.isFinite(value) || value <= 0) {
    throw new RangeError(`Cannot transfer file: ${what} must be a positive number of ms`);
  }
  return value;
}

// --- The source, in chunks ---------------------------------------------------

/** Cuts a byte stream into exact-length pieces, copying only pieces that straddle. */
class Chunker {
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly #queue = new ByteQueue();
  #done = false;

  constructor(stream: ReadableStream<Uint8Array>) {
    this.#reader = stream.getReader();
  }

  async #fill(n: number): Promise<boolean> {
    while (this.#queue.length < n && !this.#done) {
      const { value, done } = await this.#reader.read();
      if (done) {
        this.#done = true;
        break;
      }
      if (!(value instanceof Uint8Array)) {
        throw new TypeError("Cannot send file: the source must yield Uint8Array chunks");
      }
      this.#queue.push(value);
    }
    return this.#queue.length >= n;
  }

  /** Exactly `n` bytes, or a `RangeError` if the source ends first. */
  async take(n: number): Promise<Uint8Array> {
    if (!(await this.#fill(n))) {
      throw new RangeError("Cannot send file: the source has fewer bytes than its size");
    }
    return this.#queue.take(n);
  }

  /** Checks that the source has nothing left, then releases it. */
  async finish(): Promise<void> {
    if (await this.#fill(1)) {
      throw new RangeError("Cannot send file: the source has more bytes than its size");
    }
    this.#reader.releaseLock();
  }

  /** Stops reading the source, on failure. */
  cancel(reason: unknown): void {
    this.#reader.cancel(reason).catch(() => {});
  }
}

// --- Sending -----------------------------------------------------------------

function checkSource(source: FileSource, chunkSize: number): void {
  if (!Number.isSafeInteger(source.size) || source.size < 0) {
    throw new RangeError(`Cannot send file: size ${source.size} is not a byte count`);
  }
  if (
    !Number.isSafeInteger(chunkSize) || chunkSize < MIN_CHUNK_SIZE || chunkSize > MAX_CHUNK_SIZE
  ) {
    throw new RangeError(
      `Cannot send file: chunk size must be ${MIN_CHUNK_SIZE} to ${MAX_CHUNK_SIZE} bytes`,
    );
  }
}

/**
 * Sends a file to an online recipient on `/dim/file/1.0.0` and waits for
 * its signed receipt. The file is read, hashed, sealed and sent chunk by
 * chunk, with at most the recipient's window of chunks in flight, so memory
 * use does not depend on the file's size.
 *
 * @param transport Opens the stream to the recipient's node.
 * @param transfer The sender's identity, the recipient and the file.
 * @param options Chunk size, `signal`, progress callback and timeouts.
 * @returns The file ID, name, size and SHA-256, and the recipient's receipt.
 * @throws {TransferRefusedError} If the recipient refused the file or
 *   abandoned it (for example because a check failed).
 * @throws {RangeError} If the size or chunk size is out of range, or the
 *   source yields more or fewer bytes than its size.
 * @throws {TypeError} If the source yields something other than `Uint8Array`s.
 * @throws {InvalidIdError} If the recipient's user ID is malformed.
 * @throws {EncryptionError} If the recipient's key is not a usable X25519 key.
 * @throws {ProtocolError} On a malformed answer or a receipt whose signature
 *   does not verify.
 * @throws {PeerUnreachableError} If the recipient cannot be reached or goes silent.
 * @throws {DOMException} If `signal` aborts (its reason is thrown as is).
 * @example
 * ```ts ignore
 * import { fileSource, sendFile } from "./file_transfer.ts";
 *
 * const sent = await sendFile(transport, {
 *   identity: alice,
 *   recipient: { userId: bob.id, encryptionPublicKey: bob.encryptionPublicKey, peer: bobPeer },
 *   source: await fileSource("./report.pdf"),
 * }, { onProgress: (p) => console.log(`${p.bytes}/${p.total}`) });
 * console.log(sent.sha256);
 * ```
 */
export async function sendFile(
  transport: FileTransport,
  transfer: FileTransfer,
  options: SendFileOptions = {},
): Promise<SentFile> {
  const { identity, recipient, source } = transfer;
  const chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
  let chunker: Chunker | undefined;
  let stream: MessageStream | undefined;
  // Until the recipient accepts (its policy may ask a person), the accept
  // timeout applies; after that, the idle timeout.
  const offering = new IdleTimer(
    checkTimeout(options.acceptTimeoutMs ?? DEFAULT_ACCEPT_TIMEOUT_MS, "acceptTimeoutMs"),
    () => new PeerUnreachableError("Cannot send file: the recipient did not answer the offer"),
    options.signal,
  );
  try {
    const idleMs = checkTimeout(options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS, "idleTimeoutMs");
    checkSource(source, chunkSize);
    const recipientSigningKey = decodeUserId(recipient.userId);
    options.signal?.throwIfAborted();
    chunker = new Chunker(source.stream);
    const signal = offering.signal;

    const { size } = source;
    const name = sanitizeFileName(source.name);
    const nameBytes = utf8(name);
    const fileId = crypto.getRandomValues(new Uint8Array(FILE_ID_LENGTH));
    const recipientKey = recipient.encryptionPublicKey;
    const { enc, context } = await setupBaseS(recipientKey, { info: INFO });
    const offer = concat(
      fileId,
      identity.signingPublicKey,
      u64(size),
      u32be(chunkSize),
      u64(options.timestamp ?? Date.now()),
      u16(nameBytes.length),
      nameBytes,
    );
    const offerSignature = await identity.sign(
      SIGNATURE_DOMAIN,
      concat(SIGNED_OFFER, recipientKey, enc, offer),
    );
    const sealedOffer = await context.seal(concat(offer, offerSignature), aad(AAD_OFFER));

    stream = await transport.openStream(recipient.peer, FILE_PROTOCOL, { signal });
    const opened = stream;
    const reader = new FrameReader(opened);
    await writeFrame(
      opened,
      FileFrameType.Offer,
      concat(new Uint8Array([FILE_TRANSFER_VERSION]), enc, sealedOffer),
      signal,
    );
    const answer = await race(reader.next(MAX_CONTROL_FRAME_LENGTH), signal);
    if (answer?.type === FileFrameType.Refuse) throw refusal(answer.body);
    if (answer?.type !== FileFrameType.Accept) {
      throw new ProtocolError("Cannot send file: the recipient did not accept or refuse");
    }
    const window = readU16(answer.body);
    if (window === 0) throw new ProtocolError("Cannot send file: the recipient's window is empty");
    offering.clear();
    const sending = new IdleTimer(
      idleMs,
      () => new PeerUnreachableError("Cannot send file: the recipient went silent"),
      options.signal,
    );
    try {
      return await streamChunks(opened, reader, {
        identity,
        recipientSigningKey,
        recipientKey,
        enc,
        context,
        fileId,
        name,
        size,
        chunkSize,
        window,
        chunker,
        idle: sending,
        signal: sending.signal,
        onProgress: options.onProgress,
      });
    } finally {
      sending.release();
    }
  } catch (err) {
    if (chunker === undefined) source.stream.cancel(err).catch(() => {});
    else chunker.cancel(err);
    stream?.abort(asError(err));
    if (options.signal?.aborted && err === options.signal.reason) throw err;
    if (err instanceof DimError || err instanceof RangeError || err instanceof TypeError) throw err;
    // The stream failed under us (reset, connection lost): say so in DIM's terms.
    throw new PeerUnreachableError("Cannot send file: the stream to the recipient failed", {
      cause: err,
    });
  } finally {
    offering.release();
  }
}

function refusal(body: Uint8Array): Error {
  const code = body.length === 1 ? body[0] : undefined;
  const reason = (Object.keys(REFUSAL_CODES) as RefusalReason[]).find((r) =>
    REFUSAL_CODES[r] === code
  );
  return reason === undefined
    ? new ProtocolError("Cannot send file: the recipient gave an unknown refusal")
    : new TransferRefusedError(reason);
}

interface ChunkStreaming {
  readonly identity: Identity;
  readonly recipientSigningKey: Uint8Array;
  readonly recipientKey: Uint8Array;
  readonly enc: Uint8Array;
  readonly context: HpkeSenderContext;
  readonly fileId: Uint8Array;
  readonly name: string;
  readonly size: number;
  readonly chunkSize: number;
  readonly window: number;
  readonly chunker: Chunker;
  readonly idle: IdleTimer;
  readonly signal: AbortSignal;
  readonly onProgress: ((progress: TransferProgress) => void) | undefined;
}

/** An incremental SHA-256 of a file's plaintext (Deno's native one). */
function fileHash(): { update(bytes: Uint8Array): void; digest(): Uint8Array } {
  const hash = createHash("sha256");
  return {
    update: (bytes) => void hash.update(bytes),
    digest: () => new Uint8Array(hash.digest()),
  };
}

/** The accepted part of a send: chunks under the credit window, the end, the receipt. */
async function streamChunks(
  stream: MessageStream,
  reader: FrameReader,
  t: ChunkStreaming,
): Promise<SentFile> {
  const fileIdHex = toHex(t.fileId);
  const count = chunkCount(t.size, t.chunkSize);
  const hash = fileHash();
  const changed = new Notifier();
  let credits = t.window;
  let failure: unknown;
  let receipt: Uint8Array | undefined;
  let listening = true;

  // The recipient's frames (credits, a refusal, the receipt), read as they
  // come while the chunks go out.
  const control = (async () => {
    try {
      for (;;) {
        const frame = await reader.next(MAX_CONTROL_FRAME_LENGTH);
        if (frame === undefined) {
          throw new ProtocolError("Cannot send file: the recipient closed the stream");
        }
        t.idle.refresh();
        if (frame.type === FileFrameType.Credit) {
          credits += readU32(frame.body);
          if (credits > t.window) throw new ProtocolError("Cannot send file: credit over window");
        } else if (frame.type === FileFrameType.Refuse) {
          throw refusal(frame.body);
        } else if (frame.type === FileFrameType.Receipt) {
          if (frame.body.length !== SIGNATURE_LENGTH) {
            throw new ProtocolError("Cannot send file: malformed receipt");
          }
          receipt = frame.body;
          return;
        } else {
          throw new ProtocolError("Cannot send file: unexpected frame from the recipient");
        }
        changed.notify();
      }
    } catch (err) {
      failure = err;
    } finally {
      listening = false;
      changed.notify();
    }
  })();

  const until = async (ready: () => boolean): Promise<void> => {
    while (!ready()) {
      if (failure !== undefined) throw failure;
      if (!listening) throw new ProtocolError("Cannot send file: the recipient stopped early");
      await race(changed.wait(), t.signal);
    }
  };

  try {
    const sealing: Promise<Uint8Array>[] = [];
    let sent = 0;
    let bytes = 0;
    const sendNext = async () => {
      const ciphertext = await sealing.shift()!;
      await until(() => credits > 0);
      credits--;
      await writeFrame(stream, FileFrameType.Chunk, ciphertext, t.signal);
      t.idle.refresh();
      bytes += ciphertext.length - HPKE_TAG_LENGTH;
      sent++;
      t.onProgress?.({ fileId: fileIdHex, name: t.name, bytes, total: t.size });
    };
    for (let i = 0; i < count; i++) {
      const plaintext = await race(t.chunker.take(chunkLength(i, t.size, t.chunkSize)), t.signal);
      hash.update(plaintext);
      // Sequence numbers are taken when `seal` is called, so the chunks are
      // sealed in order even though they are awaited later.
      const sealed = t.context.seal(
        plaintext,
        aad(i === count - 1 ? AAD_LAST_CHUNK : AAD_CHUNK, t.fileId, i),
      );
      // Awaited in turn below; this only keeps a failure that is never
      // awaited (the transfer failed first) from being reported as unhandled.
      sealed.catch(() => {});
      sealing.push(sealed);
      if (sealing.length > SEAL_AHEAD) await sendNext();
    }
    await race(t.chunker.finish(), t.signal);
    while (sent < count) await sendNext();

    const digest = hash.digest();
    const endSignature = await t.identity.sign(
      SIGNATURE_DOMAIN,
      endSignedBytes(t.recipientKey, t.enc, t.fileId, t.size, digest),
    );
    const end = await t.context.seal(concat(digest, endSignature), aad(AAD_END, t.fileId, count));
    await writeFrame(stream, FileFrameType.End, end, t.signal);
    await until(() => receipt !== undefined);
    const signed = receiptSignedBytes(
      t.identity.signingPublicKey,
      t.recipientKey,
      t.enc,
      t.fileId,
      t.size,
      digest,
    );
    if (!(await verifySignature(SIGNATURE_DOMAIN, t.recipientSigningKey, signed, receipt!))) {
      throw new ProtocolError("Cannot send file: the receipt's signature does not verify");
    }
    await stream.close({ signal: t.signal }).catch(() => {});
    return { fileId: fileIdHex, name: t.name, bytes, sha256: toHex(digest), receipt: receipt! };
  } finally {
    if (listening) stream.abort(new Error("file transfer ended"));
    await control;
  }
}

// --- Receiving ---------------------------------------------------------------

function quietly(callback: () => void): void {
  try {
    callback();
  } catch {
    // A caller's callback failed; the transfer goes on.
  }
}

/** Thrown inside the receiver to refuse with a code; never leaves this module as is. */
class Refusal extends Error {
  constructor(readonly reason: RefusalReason, readonly error: unknown) {
    super(reason);
  }
}

interface OpenedOffer {
  readonly offer: FileOffer;
  readonly fileId: Uint8Array;
  readonly enc: Uint8Array;
  readonly context: HpkeRecipientContext;
}

/**
 * Serves `/dim/file/1.0.0` for one identity: opens offers, asks the
 * `accept` policy where to write each file, and receives, checks and
 * commits it. Without an `accept` callback every offer is refused.
 *
 * @example Accept files from one contact
 * ```ts ignore
 * import { FileReceiver, fileSink } from "./file_transfer.ts";
 *
 * await using receiver = new FileReceiver(bob, {
 *   accept: (offer) => offer.senderId === alice.id ? fileSink(`/tmp/${offer.name}`) : undefined,
 *   onReceived: (file) => console.log(`${file.name}: ${file.bytes} bytes`),
 * });
 * await receiver.start(transport);
 * ```
 */
export class FileReceiver implements AsyncDisposable {
  readonly #identity: Identity;
  readonly #accept: NonNullable<FileReceiverOptions["accept"]>;
  readonly #onProgress: FileReceiverOptions["onProgress"];
  readonly #onReceived: (file: ReceivedFile) => void;
  readonly #onFailed: (error: unknown, offer: FileOffer | undefined) => void;
  readonly #maxFileSize: number;
  readonly #maxChunkSize: number;
  readonly #window: number | undefined;
  readonly #maxConcurrent: number;
  readonly #acceptMs: number;
  readonly #idleMs: number;
  #host: StreamHost | undefined;
  #stopping = new AbortController();
  #active = new Set<Promise<void>>();

  /**
   * Makes a receiver; call `start()` to serve.
   *
   * @param identity Whose files: its X25519 key opens them, its Ed25519 key signs receipts.
   * @param options The `accept` policy, callbacks and limits.
   * @throws {RangeError} If a limit is out of range.
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { Identity } from "../crypto/identity.ts";
   * import { FileReceiver } from "./file_transfer.ts";
   * const bob = await Identity.generate();
   * assert.throws(() => new FileReceiver(bob, { window: 0 }), RangeError);
   * ```
   */
  constructor(identity: Identity, options: FileReceiverOptions = {}) {
    this.#identity = identity;
    this.#accept = options.accept ?? (() => undefined);
    // The callbacks report; one that throws must not break a transfer.
    const { onProgress, onReceived, onFailed } = options;
    this.#onProgress = onProgress && ((p) => quietly(() => onProgress(p)));
    this.#onReceived = (file) => quietly(() => onReceived?.(file));
    this.#onFailed = (error, offer) => quietly(() => onFailed?.(error, offer));
    this.#maxFileSize = options.maxFileSize ?? DEFAULT_MAX_FILE_SIZE;
    this.#maxChunkSize = options.maxChunkSize ?? DEFAULT_MAX_CHUNK_SIZE;
    this.#window = options.window;
    this.#maxConcurrent = options.maxConcurrent ?? DEFAULT_MAX_CONCURRENT;
    this.#acceptMs = checkTimeout(
      options.acceptTimeoutMs ?? DEFAULT_ACCEPT_TIMEOUT_MS,
      "acceptTimeoutMs",
    );
    this.#idleMs = checkTimeout(options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS, "idleTimeoutMs");
    if (!Number.isSafeInteger(this.#maxFileSize) || this.#maxFileSize < 0) {
      throw new RangeError("Cannot make file receiver: maxFileSize must be a byte count");
    }
    if (
      !Number.isSafeInteger(this.#maxChunkSize) || this.#maxChunkSize < MIN_CHUNK_SIZE ||
      this.#maxChunkSize > MAX_CHUNK_SIZE
    ) {
      throw new RangeError(
        `Cannot make file receiver: maxChunkSize must be ${MIN_CHUNK_SIZE} to ${MAX_CHUNK_SIZE}`,
      );
    }
    if (
      this.#window !== undefined &&
      (!Number.isSafeInteger(this.#window) || this.#window < 1 || this.#window > MAX_WINDOW)
    ) {
      throw new RangeError(`Cannot make file receiver: window must be 1 to ${MAX_WINDOW}`);
    }
    if (!Number.isSafeInteger(this.#maxConcurrent) || this.#maxConcurrent < 1) {
      throw new RangeError("Cannot make file receiver: maxConcurrent must be at least 1");
    }
  }

  /**
   * Registers the protocol handler. Idempotent.
   *
   * @param host The node (or transport) to serve on.
   * @returns When the handler is registered.
   * @example
   * ```ts ignore
   * await receiver.start(transportFor(node));
   * ```
   */
  async start(host: StreamHost): Promise<void> {
    if (this.#host !== undefined) return;
    this.#host = host;
    this.#stopping = new AbortController();
    await host.handle(FILE_PROTOCOL, (stream, remotePeer) => {
      const served = this.#serve(stream, remotePeer).finally(() => this.#active.delete(served));
      this.#active.add(served);
      return served;
    });
  }

  /**
   * Removes the handler and aborts the transfers in progress, whose sinks
   * are aborted (so nothing partial is committed). Idempotent.
   *
   * @returns When every transfer has ended.
   * @example
   * ```ts ignore
   * await receiver.stop();
   * ```
   */
  async stop(): Promise<void> {
    const host = this.#host;
    if (host === undefined) return;
    this.#host = undefined;
    this.#stopping.abort(new DimError("Cannot receive file: the receiver is stopping"));
    await host.unhandle(FILE_PROTOCOL).catch(() => {});
    await Promise.allSettled([...this.#active]);
  }

  /** Same as {@linkcode FileReceiver.stop}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  async #refuse(stream: MessageStream, reason: RefusalReason, signal: AbortSignal): Promise<void> {
    await writeFrame(
      stream,
      FileFrameType.Refuse,
      new Uint8Array([REFUSAL_CODES[reason]]),
      signal,
    ).catch(() => {});
    await stream.close({ signal }).catch(() => {});
  }

  async #openOffer(body: Uint8Array, remotePeer: string): Promise<OpenedOffer> {
    try {
      if (body[0] !== FILE_TRANSFER_VERSION || body.length < 1 + HPKE_ENC_LENGTH) {
        throw new SyntaxError("version");
      }
      const enc = body.subarray(1, 1 + HPKE_ENC_LENGTH);
      const recipientKey = this.#identity.encryptionPublicKey;
      const context = await setupBaseR(enc, {
        privateKey: this.#identity.encryptionPrivateKey,
        publicKey: recipientKey,
      }, { info: INFO });
      const plain = await context.open(body.subarray(1 + HPKE_ENC_LENGTH), aad(AAD_OFFER));
      const r = new Reader(plain);
      const fileId = r.bytes(FILE_ID_LENGTH);
      const senderSigningKey = r.bytes(KEY_LENGTH);
      const size = r.u64();
      const chunkSize = r.u32();
      const timestamp = r.u64();
      const nameLength = (r.u8() << 8) | r.u8();
      if (nameLength > MAX_FILE_NAME_LENGTH) throw new SyntaxError("name length");
      const rawName = fromUtf8(r.bytes(nameLength));
      const signedLength = r.position;
      const signature = r.bytes(SIGNATURE_LENGTH);
      r.end();
      const signed = concat(SIGNED_OFFER, recipientKey, enc, plain.subarray(0, signedLength));
      if (!(await verifySignature(SIGNATURE_DOMAIN, senderSigningKey, signed, signature))) {
        throw new SyntaxError("signature");
      }
      const offer: FileOffer = {
        fileId: toHex(fileId),
        senderId: encodeUserId(senderSigningKey),
        senderSigningKey,
        name: sanitizeFileName(rawName),
        size,
        chunkSize,
        timestamp,
        remotePeer,
      };
      return { offer, fileId, enc: enc.slice(), context };
    } catch {
      // One uniform failure: which check failed must not leak.
      throw new DecryptionError();
    }
  }

  async #serve(stream: MessageStream, remotePeer: string): Promise<void> {
    const accepting = new IdleTimer(
      this.#idleMs,
      () => new ProtocolError("Cannot receive file: the sender sent no offer"),
      this.#stopping.signal,
    );
    let signal = accepting.signal;
    let idle: IdleTimer | undefined;
    let offer: FileOffer | undefined;
    let writer: WritableStreamDefaultWriter<Uint8Array> | undefined;
    let committed = false;
    try {
      // This transfer is not in the set yet.
      if (this.#active.size >= this.#maxConcurrent) {
        throw new Refusal("busy", new TransferRefusedError("busy"));
      }
      const reader = new FrameReader(stream);
      const first = await race(reader.next(1 + MAX_OFFER_BODY_LENGTH), signal);
      if (first?.type !== FileFrameType.Offer) {
        throw new ProtocolError("Cannot receive file: expected an offer");
      }
      let opened: OpenedOffer;
      try {
        opened = await this.#openOffer(first.body, remotePeer);
      } catch (err) {
        throw new Refusal("unreadable", err);
      }
      offer = opened.offer;
      const { size, chunkSize } = offer;
      if (
        size > this.#maxFileSize || chunkSize > this.#maxChunkSize || chunkSize < MIN_CHUNK_SIZE
      ) {
        throw new Refusal("too-large", new TransferRefusedError("too-large"));
      }

      // The policy may ask a person: it gets its own, longer deadline.
      accepting.clear();
      const deciding = new IdleTimer(
        this.#acceptMs,
        () => new ProtocolError("Cannot receive file: no decision on the offer in time"),
        this.#stopping.signal,
      );
      let sink: WritableStream<Uint8Array> | undefined;
      let decided = false;
      try {
        const decideSignal = deciding.signal;
        sink = await race(
          Promise.resolve().then(() => this.#accept(offer!, { signal: decideSignal })),
          decideSignal,
        );
        decided = true;
        if (sink !== undefined) {
          writer = sink.getWriter();
          await race(writer.ready, decideSignal);
        }
      } catch (err) {
        throw new Refusal(decided ? "sink-failed" : "refused", err);
      } finally {
        deciding.release();
      }
      if (writer === undefined) throw new Refusal("refused", new TransferRefusedError("refused"));

      idle = new IdleTimer(
        this.#idleMs,
        () => new ProtocolError("Cannot receive file: the sender went silent"),
        this.#stopping.signal,
      );
      signal = idle.signal;
      const window = this.#window ??
        Math.min(
          MAX_DEFAULT_WINDOW,
          Math.max(2, Math.ceil(DEFAULT_WINDOW_BYTES / offer.chunkSize)),
        );
      await writeFrame(stream, FileFrameType.Accept, u16(window), signal);
      const received = await this.#receiveChunks(stream, reader, opened, writer, idle, signal);

      try {
        await race(writer.close(), signal);
      } catch (err) {
        throw new Refusal("sink-failed", err);
      }
      committed = true;
      this.#onReceived({
        fileId: offer.fileId,
        senderId: offer.senderId,
        name: offer.name,
        bytes: size,
        sha256: toHex(received),
        remotePeer,
      });
      // The file is complete whatever happens to the receipt: a sender that
      // misses it reports a failure and may send again.
      const signature = await this.#identity.sign(
        SIGNATURE_DOMAIN,
        receiptSignedBytes(
          offer.senderSigningKey,
          this.#identity.encryptionPublicKey,
          opened.enc,
          opened.fileId,
          size,
          received,
        ),
      );
      await writeFrame(stream, FileFrameType.Receipt, signature, signal);
      await stream.close({ signal }).catch(() => {});
    } catch (thrown) {
      let err = thrown instanceof Refusal ? thrown.error : thrown;
      if (this.#stopping.signal.aborted || signal.aborted) {
        // Stopped or timed out: not a verdict on the file; the sender sees the reset.
        err = this.#stopping.signal.aborted ? this.#stopping.signal.reason : signal.reason;
      } else if (thrown instanceof Refusal) {
        await this.#refuse(stream, thrown.reason, signal);
      }
      if (writer !== undefined && !committed) await writer.abort(err).catch(() => {});
      stream.abort(asError(err));
      if (!committed) this.#onFailed(err, offer);
    } finally {
      accepting.release();
      idle?.release();
    }
  }

  /** Receives, opens, hashes and writes every chunk, then checks the end; the SHA-256. */
  async #receiveChunks(
    stream: MessageStream,
    reader: FrameReader,
    opened: OpenedOffer,
    writer: WritableStreamDefaultWriter<Uint8Array>,
    idle: IdleTimer,
    signal: AbortSignal,
  ): Promise<Uint8Array> {
    const { offer, fileId, context } = opened;
    const { size, chunkSize } = offer;
    const count = chunkCount(size, chunkSize);
    const hash = fileHash();
    // Opening (AES-GCM) and hashing overlap the sink's write of the chunk
    // before, which is why the write is awaited one chunk late.
    let writing: Promise<void> = Promise.resolve();
    for (let i = 0; i < count; i++) {
      const frame = await race(reader.next(1 + chunkSize + HPKE_TAG_LENGTH), signal);
      if (frame?.type !== FileFrameType.Chunk) {
        throw new Refusal(
          "corrupt",
          new ProtocolError("Cannot receive file: the stream ended before the last chunk"),
        );
      }
      idle.refresh();
      const expected = chunkLength(i, size, chunkSize) + HPKE_TAG_LENGTH;
      let plain: Uint8Array;
      try {
        if (frame.body.length !== expected) throw new SyntaxError("chunk length");
        plain = await context.open(
          frame.body,
          aad(i === count - 1 ? AAD_LAST_CHUNK : AAD_CHUNK, fileId, i),
        );
      } catch (err) {
        throw new Refusal("corrupt", new DecryptionError({ cause: err }));
      }
      hash.update(plain);
      try {
        await race(writing, signal);
      } catch (err) {
        throw new Refusal("sink-failed", err);
      }
      const total = i * chunkSize + plain.length;
      writing = writer.write(plain).then(async () => {
        await writeFrame(stream, FileFrameType.Credit, u32be(1), signal);
        this.#onProgress?.({
          fileId: offer.fileId,
          name: offer.name,
          bytes: total,
          total: size,
          senderId: offer.senderId,
        });
      });
      // Awaited at the next chunk; this only keeps a failure that is never
      // awaited (the transfer failed first) from being reported as unhandled.
      writing.catch(() => {});
    }
    try {
      await race(writing, signal);
    } catch (err) {
      throw new Refusal("sink-failed", err);
    }

    const frame = await race(reader.next(1 + END_BODY_LENGTH), signal);
    if (frame?.type !== FileFrameType.End) {
      throw new Refusal("corrupt", new ProtocolError("Cannot receive file: expected the end"));
    }
    const digest = hash.digest();
    try {
      if (frame.body.length !== END_BODY_LENGTH) throw new SyntaxError("end length");
      const end = await context.open(frame.body, aad(AAD_END, fileId, count));
      const claimed = end.subarray(0, HASH_LENGTH);
      const signature = end.subarray(HASH_LENGTH);
      const signed = endSignedBytes(
        this.#identity.encryptionPublicKey,
        opened.enc,
        fileId,
        size,
        claimed,
      );
      if (
        !constantTimeEqual(claimed, digest) ||
        !(await verifySignature(SIGNATURE_DOMAIN, offer.senderSigningKey, signed, signature))
      ) {
        throw new SyntaxError("end");
      }
    } catch (err) {
      throw new Refusal("corrupt", new DecryptionError({ cause: err }));
    }
    return digest;
  }
}

// --- Files on disk -----------------------------------------------------------

/**
 * A {@linkcode FileSource} for a file on disk: its base name, its size and
 * a stream of its bytes (the file is closed when the stream ends or is
 * cancelled).
 *
 * @param path The file to send.
 * @returns The source.
 * @throws {TypeError} If `path` is not a regular file.
 * @throws {Deno.errors.NotFound} If there is no such file.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fileSource } from "./file_transfer.ts";
 *
 * const dir = await Deno.makeTempDir();
 * await Deno.writeFile(`${dir}/notes.txt`, new Uint8Array([1, 2, 3]));
 * const source = await fileSource(`${dir}/notes.txt`);
 * assert.equal(source.name, "notes.txt");
 * assert.equal(source.size, 3);
 * assert.deepEqual(new Uint8Array(await new Response(source.stream).arrayBuffer()), new Uint8Array([1, 2, 3]));
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function fileSource(path: string): Promise<FileSource> {
  const file = await Deno.open(path, { read: true });
  try {
    const info = await file.stat();
    if (!info.isFile) throw new TypeError(`Cannot send ${path}: it is not a regular file`);
    return { name: basename(path), size: info.size, stream: file.readable };
  } catch (err) {
    file.close();
    throw err;
  }
}

/** Options of {@linkcode fileSink}. */
export interface FileSinkOptions {
  /** Permission bits of the written file. Default `0o600`. */
  readonly mode?: number;
}

/**
 * A sink that writes to `path` without ever showing a partial file: the
 * bytes go to a hidden temporary file in the same directory, which is
 * flushed and then linked to `path` when the stream closes (failing if
 * `path` exists by then), and removed when the stream is aborted.
 *
 * @param path Where the complete file goes. It must not exist yet.
 * @param options `mode` of the file.
 * @returns The sink.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fileSink } from "./file_transfer.ts";
 *
 * const dir = await Deno.makeTempDir();
 * const done = fileSink(`${dir}/a.bin`).getWriter();
 * await done.write(new Uint8Array([7]));
 * await done.close();
 * assert.deepEqual(await Deno.readFile(`${dir}/a.bin`), new Uint8Array([7]));
 *
 * const failed = fileSink(`${dir}/b.bin`).getWriter();
 * await failed.write(new Uint8Array([8]));
 * await failed.abort(new Error("checksum mismatch"));
 * assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["a.bin"]);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export function fileSink(path: string, options: FileSinkOptions = {}): WritableStream<Uint8Array> {
  const mode = options.mode ?? 0o600;
  // Not named after the file: a name of the longest allowed length would
  // make the temporary name too long for the file system.
  const temp = join(
    dirname(path),
    `.dim-${toHex(crypto.getRandomValues(new Uint8Array(8)))}.part`,
  );
  let file: Deno.FsFile | undefined;
  const discard = async () => {
    file?.close();
    file = undefined;
    await Deno.remove(temp).catch(() => {});
  };
  return new WritableStream<Uint8Array>({
    async start() {
      if (await Deno.lstat(path).then(() => true, () => false)) {
        throw new Deno.errors.AlreadyExists(`Cannot write ${path}: it exists`);
      }
      file = await Deno.open(temp, { write: true, createNew: true, mode });
    },
    async write(chunk) {
      try {
        for (let done = 0; done < chunk.length;) {
          done += await file!.write(chunk.subarray(done));
        }
      } catch (err) {
        await discard();
        throw err;
      }
    },
    async close() {
      try {
        await file!.sync();
        file!.close();
        file = undefined;
        // link() fails if `path` appeared meanwhile: never replace a file.
        await Deno.link(temp, path);
      } finally {
        await discard();
      }
    },
    async abort() {
      await discard();
    },
  });
}
