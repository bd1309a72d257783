/**
 * The format of `/dim/file/1.0.0`, version 2: its frames, their limits,
 * what is sealed with which additional data, and what each side signs.
 * file_send.ts and file_receive.ts speak it; nothing here touches a stream.
 *
 * ## Overview
 *
 * File transfer streams a file, end-to-end encrypted, between two online
 * DIM users, on its own protocol `/dim/file/1.0.0`, one libp2p stream per
 * file. It lives in four modules:
 *
 * - file_wire.ts (this one): the format (frames, limits, what is sealed and signed);
 * - file_send.ts: `sendFile`;
 * - file_receive.ts: `FileReceiver`;
 * - file_io.ts: `fileSource` and `fileSink`, files on disk;
 *
 * and its tunables are in constants.ts.
 *
 * The sender sets up one HPKE base-mode context (RFC 9180) to the
 * recipient's X25519 key per file and seals everything after it with that
 * context: the offer, every chunk and the end. HPKE's sequence numbers give
 * each seal a unique nonce and make the recipient open them strictly in
 * order, and each chunk's additional data names its file, its index and
 * whether it is the last one, so chunks cannot be reordered, dropped,
 * replayed from another file or cut short without the recipient noticing.
 * The offer is signed by the sender's identity key under the `file`
 * signature domain (and binds the recipient's identity and key and HPKE's
 * `enc`, so the context belongs to the signer and is meant for that
 * recipient); the end carries the signed SHA-256 of the whole plaintext,
 * which the recipient checks before it presents the file, and the recipient
 * answers with a receipt signed by its own identity key.
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
 * ## Frames
 *
 * Every frame is `length u32 | type u8 | body` (framing.ts), `length`
 * counting `type` and `body`, integers big-endian; a reader checks `length`
 * against the largest frame it expects next before it buffers the body.
 *
 * ```text
 * type  frame    from  body
 * 0x01  OFFER    S     version u8 (= 2) | enc (32) | seal(offer), aad = version | 0
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
 * `seal` is the file's HPKE context (RFC 9180 base mode to the recipient's
 * X25519 key, info "DIM-v2 file transfer" | recipientSigningKey (32), the
 * Ed25519 key its user ID names), one sequence number per frame:
 * 0 for the offer, 1 … count for the chunks, count + 1 for the end. A file
 * of `size` bytes has `max(1, ceil(size / chunkSize))` chunks, all
 * `chunkSize` long but the last.
 *
 * ## Signatures
 *
 * The signatures are Ed25519 under the `file` domain of identity.ts (its
 * own prefix, "DIM-v1-sig/file\0", so no other DIM signature passes for
 * one), over a prefix naming the message, then the fields:
 *
 * ```text
 * offer    (sender)     "DIM-v2 file transfer: offer\0" | recipientSigningKey
 *                       | recipientEncryptionKey | enc | offer without its signature
 * end      (sender)     "DIM-v2 file transfer: end\0" | recipientSigningKey
 *                       | recipientEncryptionKey | enc | fileId | size u64 | sha256
 * receipt  (recipient)  "DIM-v1 file transfer: receipt\0"
 *                       | senderSigningKey | recipientEncryptionKey | enc | fileId
 *                       | size u64 | sha256
 * ```
 *
 * The offer binds the recipient's identity and key and HPKE's `enc`, so the
 * context belongs to the signer; the end signs the SHA-256 of the whole
 * plaintext. The recipient checks both with its own signing key, and opens
 * the context with it in `info`: an offer made for another identity does
 * not open, even for the holder of the X25519 key it was sealed to (a card
 * may list someone else's X25519 key; see envelope.ts). The receipt is
 * signed by the recipient's identity key, which names it already.
 *
 * A version 1 offer (which named the recipient by its X25519 key only) is
 * refused as unreadable, with an {@linkcode OutdatedVersionError} that
 * says the sender runs an older DIM.
 *
 * The SHA-256 is computed as the bytes stream past. WebCrypto can only hash
 * a whole buffer at once, so it comes from Deno's built-in `node:crypto`
 * hash (native code, about 0.5 ns per byte); the pure-JavaScript
 * `@noble/hashes` one cost 4.5 ns per byte, more than the libp2p stream
 * itself.
 *
 * @example Send a file to a contact who accepts it
 * ```ts ignore
 * import { FileReceiver, fileSink, fileSource, sendFile } from "./mod.ts";
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
 * @example Encode an offer and read it back
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeOffer, encodeOffer } from "./file_wire.ts";
 *
 * const fields = {
 *   fileId: new Uint8Array(16),
 *   senderSigningKey: new Uint8Array(32),
 *   size: 3,
 *   chunkSize: 4096,
 *   timestamp: 0,
 *   name: "a.txt",
 * };
 * const unsigned = encodeOffer(fields);
 * const back = decodeOffer(new Uint8Array([...unsigned, ...new Uint8Array(64)]));
 * assert.equal(back.name, "a.txt");
 * assert.deepEqual(back.unsigned, unsigned);
 * ```
 *
 * @module
 */
import { createHash } from "node:crypto";
import { concat, fromUtf8, Reader, u16, u32, u64, utf8 } from "../platform/bytes.ts";
import { HPKE_ENC_LENGTH, HPKE_TAG_LENGTH } from "../crypto/hpke.ts";
import type { SignatureDomain } from "../crypto/identity.ts";
import { DimError, OutdatedVersionError, ProtocolError } from "../errors.ts";

/** Protocol ID of file transfers. */
export const FILE_PROTOCOL = "/dim/file/1.0.0";
/**
 * The file transfer format version this module writes and reads. Version 1
 * did not name the recipient's identity; its offers are refused.
 */
export const FILE_TRANSFER_VERSION = 2;
/** The longest file name carried, in UTF-8 bytes (most file systems' limit). */
export const MAX_FILE_NAME_LENGTH = 255;
/** Length of a file ID in bytes (shown as 32 hex digits). */
export const FILE_ID_LENGTH = 16;
/** The largest window an ACCEPT can carry (a u16). */
export const MAX_WINDOW = 0xffff;

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

// --- Refusals ----------------------------------------------------------------

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
  unreadable: "the recipient could not open the offer (it may run an older DIM)",
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
   * import { TransferRefusedError } from "./file_wire.ts";
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

/**
 * The body of a REFUSE frame.
 *
 * @param reason Why.
 * @returns `code u8`.
 */
export function encodeRefusal(reason: RefusalReason): Uint8Array {
  return new Uint8Array([REFUSAL_CODES[reason]]);
}

/**
 * The error a REFUSE frame's body stands for.
 *
 * @param body The body.
 * @returns A {@linkcode TransferRefusedError}, or a {@linkcode ProtocolError}
 *   for an unknown code.
 */
export function decodeRefusal(body: Uint8Array): Error {
  const code = body.length === 1 ? body[0] : undefined;
  const reason = (Object.keys(REFUSAL_CODES) as RefusalReason[]).find((r) =>
    REFUSAL_CODES[r] === code
  );
  return reason === undefined
    ? new ProtocolError("Cannot send file: the recipient gave an unknown refusal")
    : new TransferRefusedError(reason);
}

// --- Lengths and limits ------------------------------------------------------

const HPKE_INFO_PREFIX = utf8("DIM-v2 file transfer");

/**
 * HPKE's `info` for a file's context: it names the recipient's identity.
 *
 * @param recipientSigningKey The recipient's Ed25519 key (the one its user ID names).
 * @returns `"DIM-v2 file transfer" | recipientSigningKey`.
 */
export function hpkeInfo(recipientSigningKey: Uint8Array): Uint8Array {
  return concat(HPKE_INFO_PREFIX, recipientSigningKey);
}
/** The signature domain of offers, ends and receipts. */
export const SIGNATURE_DOMAIN = "file" satisfies SignatureDomain;
/** Length of an Ed25519 signature. */
export const SIGNATURE_LENGTH = 64;
/** Length of an Ed25519 key. */
export const KEY_LENGTH = 32;
/** Length of the file's SHA-256. */
export const HASH_LENGTH = 32;

// fileId | senderSigningKey | size | chunkSize | timestamp | nameLength
const OFFER_FIXED_LENGTH = FILE_ID_LENGTH + KEY_LENGTH + 8 + 4 + 8 + 2;
const MAX_OFFER_BODY_LENGTH = 1 + HPKE_ENC_LENGTH + OFFER_FIXED_LENGTH + MAX_FILE_NAME_LENGTH +
  SIGNATURE_LENGTH + HPKE_TAG_LENGTH;
/** The largest OFFER frame, type byte included. */
export const MAX_OFFER_FRAME_LENGTH = 1 + MAX_OFFER_BODY_LENGTH;
/** The exact length of an END body. */
export const END_BODY_LENGTH = HASH_LENGTH + SIGNATURE_LENGTH + HPKE_TAG_LENGTH;
/** The largest frame besides OFFER and CHUNK (type byte included): the END. */
export const MAX_CONTROL_FRAME_LENGTH = 1 + END_BODY_LENGTH;

/**
 * The largest CHUNK frame for a chunk size, type byte included.
 *
 * @param chunkSize The offer's chunk size.
 * @returns The limit to read a chunk with.
 */
export function maxChunkFrameLength(chunkSize: number): number {
  return 1 + chunkSize + HPKE_TAG_LENGTH;
}

/**
 * How many chunks a file has.
 *
 * @param size The file size.
 * @param chunkSize The chunk size.
 * @returns `max(1, ceil(size / chunkSize))`.
 */
export function chunkCount(size: number, chunkSize: number): number {
  return Math.max(1, Math.ceil(size / chunkSize));
}

/**
 * The length of chunk `index`.
 *
 * @param index The chunk's index.
 * @param size The file size.
 * @param chunkSize The chunk size.
 * @returns `chunkSize`, or less for the last chunk.
 */
export function chunkLength(index: number, size: number, chunkSize: number): number {
  return Math.min(chunkSize, size - index * chunkSize);
}

/**
 * Checks a timeout option.
 *
 * @param value The timeout (ms).
 * @param what The option's name, for the message.
 * @returns `value`.
 * @throws {RangeError} If it is not a positive number.
 */
export function checkTimeout(value: number, what: string): number {
  if (!Number.isFinite(value) || value <= 0) {
    throw new RangeError(`Cannot transfer file: ${what} must be a positive number of ms`);
  }
  return value;
}

// --- Bodies ------------------------------------------------------------------

/**
 * The offer's fields, as the sender writes them (the name not yet
 * sanitised by the recipient).
 */
export interface OfferFields {
  /** The file ID. */
  readonly fileId: Uint8Array;
  /** The sender's Ed25519 key. */
  readonly senderSigningKey: Uint8Array;
  /** The file size. */
  readonly size: number;
  /** The chunk size. */
  readonly chunkSize: number;
  /** When the offer was made (ms since the epoch). */
  readonly timestamp: number;
  /** The file name, at most {@linkcode MAX_FILE_NAME_LENGTH} UTF-8 bytes. */
  readonly name: string;
}

/**
 * Encodes an offer without its signature.
 *
 * @param fields The fields.
 * @returns `fileId | senderSigningKey | size u64 | chunkSize u32 | timestamp u64 | nameLength u16 | name`.
 * @throws {RangeError} If a number is out of range.
 */
export function encodeOffer(fields: OfferFields): Uint8Array {
  const name = utf8(fields.name);
  return concat(
    fields.fileId,
    fields.senderSigningKey,
    u64(fields.size),
    u32(fields.chunkSize),
    u64(fields.timestamp),
    u16(name.length),
    name,
  );
}

/**
 * Decodes an opened offer, strictly.
 *
 * @param plain The offer with its signature.
 * @returns The fields, the signed part and the signature.
 * @throws {SyntaxError} If it is truncated, too long or its name is over the limit.
 */
export function decodeOffer(
  plain: Uint8Array,
): OfferFields & { readonly unsigned: Uint8Array; readonly signature: Uint8Array } {
  const r = new Reader(plain);
  const fileId = r.bytes(FILE_ID_LENGTH);
  const senderSigningKey = r.bytes(KEY_LENGTH);
  const size = r.u64();
  const chunkSize = r.u32();
  const timestamp = r.u64();
  const nameLength = (r.u8() << 8) | r.u8();
  if (nameLength > MAX_FILE_NAME_LENGTH) throw new SyntaxError("name length");
  const name = fromUtf8(r.bytes(nameLength));
  const unsigned = plain.subarray(0, r.position);
  const signature = r.bytes(SIGNATURE_LENGTH);
  r.end();
  return { fileId, senderSigningKey, size, chunkSize, timestamp, name, unsigned, signature };
}

/**
 * The body of an OFFER frame.
 *
 * @param enc HPKE's encapsulated key.
 * @param sealed The sealed offer.
 * @returns `version | enc | sealed`.
 */
export function encodeOfferBody(enc: Uint8Array, sealed: Uint8Array): Uint8Array {
  return concat(new Uint8Array([FILE_TRANSFER_VERSION]), enc, sealed);
}

/**
 * Splits an OFFER frame's body.
 *
 * @param body The body.
 * @returns HPKE's `enc` and the sealed offer (views of `body`).
 * @throws {OutdatedVersionError} On an older version (the sender runs an older DIM).
 * @throws {SyntaxError} On an unknown version or a short body.
 */
export function decodeOfferBody(body: Uint8Array): { enc: Uint8Array; sealed: Uint8Array } {
  const version = body[0] ?? 0;
  if (version >= 1 && version < FILE_TRANSFER_VERSION) {
    throw new OutdatedVersionError("file transfer", version, FILE_TRANSFER_VERSION);
  }
  if (version !== FILE_TRANSFER_VERSION || body.length < 1 + HPKE_ENC_LENGTH) {
    throw new SyntaxError("version");
  }
  return {
    enc: body.subarray(1, 1 + HPKE_ENC_LENGTH),
    sealed: body.subarray(1 + HPKE_ENC_LENGTH),
  };
}

/**
 * Reads the u16 of an ACCEPT or the u32 of a CREDIT.
 *
 * @param body The body.
 * @param length 2 or 4.
 * @returns The number.
 * @throws {ProtocolError} If the body is not `length` bytes.
 */
export function decodeCount(body: Uint8Array, length: 2 | 4): number {
  if (body.length !== length) throw new ProtocolError("Cannot read frame: wrong body length");
  const view = new DataView(body.buffer, body.byteOffset, length);
  return length === 2 ? view.getUint16(0) : view.getUint32(0);
}

// --- Additional data ---------------------------------------------------------

const AAD_OFFER = 0;
const AAD_CHUNK = 1;
const AAD_LAST_CHUNK = 2;
const AAD_END = 3;

function aad(kind: number, fileId: Uint8Array, index: number): Uint8Array {
  const out = new Uint8Array(2 + FILE_ID_LENGTH + 8);
  out[0] = FILE_TRANSFER_VERSION;
  out[1] = kind;
  out.set(fileId, 2);
  new DataView(out.buffer).setBigUint64(2 + FILE_ID_LENGTH, BigInt(index));
  return out;
}

/** The additional data of the sealed offer. */
export const OFFER_AAD: Uint8Array = new Uint8Array([FILE_TRANSFER_VERSION, AAD_OFFER]);

/**
 * The additional data of chunk `index`.
 *
 * @param fileId The file ID.
 * @param index The chunk's index.
 * @param last Whether it is the last chunk.
 * @returns `version | 1 (2 for the last) | fileId | index u64`.
 */
export function chunkAad(fileId: Uint8Array, index: number, last: boolean): Uint8Array {
  return aad(last ? AAD_LAST_CHUNK : AAD_CHUNK, fileId, index);
}

/**
 * The additional data of the end.
 *
 * @param fileId The file ID.
 * @param count The number of chunks.
 * @returns `version | 3 | fileId | count u64`.
 */
export function endAad(fileId: Uint8Array, count: number): Uint8Array {
  return aad(AAD_END, fileId, count);
}

// --- What is signed ----------------------------------------------------------

const SIGNED_OFFER = utf8("DIM-v2 file transfer: offer\0");
const SIGNED_END = utf8("DIM-v2 file transfer: end\0");
const SIGNED_RECEIPT = utf8("DIM-v1 file transfer: receipt\0");

/** The recipient as an offer or an end names it. */
export interface FileRecipientKeys {
  /** The recipient's Ed25519 key, the one its user ID names. */
  readonly signingPublicKey: Uint8Array;
  /** The recipient's X25519 key, which the file is sealed to. */
  readonly encryptionPublicKey: Uint8Array;
}

/**
 * What the sender signs for an offer.
 *
 * @param recipient The recipient's signing and X25519 keys.
 * @param enc HPKE's encapsulated key.
 * @param unsigned The offer without its signature.
 * @returns The bytes to sign under {@linkcode SIGNATURE_DOMAIN}.
 */
export function offerSignedBytes(
  recipient: FileRecipientKeys,
  enc: Uint8Array,
  unsigned: Uint8Array,
): Uint8Array {
  return concat(
    SIGNED_OFFER,
    recipient.signingPublicKey,
    recipient.encryptionPublicKey,
    enc,
    unsigned,
  );
}

/**
 * What the sender signs for the end.
 *
 * @param recipient The recipient's signing and X25519 keys.
 * @param enc HPKE's encapsulated key.
 * @param file The file ID, size and SHA-256.
 * @returns The bytes to sign under {@linkcode SIGNATURE_DOMAIN}.
 */
export function endSignedBytes(
  recipient: FileRecipientKeys,
  enc: Uint8Array,
  file: { readonly fileId: Uint8Array; readonly size: number; readonly hash: Uint8Array },
): Uint8Array {
  return concat(
    SIGNED_END,
    recipient.signingPublicKey,
    recipient.encryptionPublicKey,
    enc,
    file.fileId,
    u64(file.size),
    file.hash,
  );
}

/**
 * What the recipient signs for its receipt.
 *
 * @param senderKey The sender's Ed25519 key.
 * @param recipientKey The recipient's X25519 key.
 * @param enc HPKE's encapsulated key.
 * @param fileId The file ID.
 * @param size The file size.
 * @param hash The file's SHA-256.
 * @returns The bytes to sign under {@linkcode SIGNATURE_DOMAIN}.
 */
export function receiptSignedBytes(
  senderKey: Uint8Array,
  recipientKey: Uint8Array,
  enc: Uint8Array,
  fileId: Uint8Array,
  size: number,
  hash: Uint8Array,
): Uint8Array {
  return concat(SIGNED_RECEIPT, senderKey, recipientKey, enc, fileId, u64(size), hash);
}

/**
 * An incremental SHA-256 of a file's plaintext (Deno's native one).
 *
 * @returns `update` for each piece, `digest` at the end.
 */
export function fileHash(): { update(bytes: Uint8Array): void; digest(): Uint8Array } {
  const hash = createHash("sha256");
  return {
    update: (bytes) => void hash.update(bytes),
    digest: () => new Uint8Array(hash.digest()),
  };
}

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
 * import { sanitizeFileName } from "./file_wire.ts";
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
