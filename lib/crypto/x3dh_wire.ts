/**
 * The wire format of X3DH headers and of initial messages (an X3DH header
 * followed by the first ratchet message), for {@link "./x3dh.ts"}, which
 * re-exports everything here.
 *
 * @module
 */
import { concat, Reader, u32 } from "../platform/bytes.ts";
import { checkKeyLength, KEY_LENGTH } from "./_keys.ts";
import { MAX_RATCHET_MESSAGE_LENGTH, RATCHET_OVERHEAD } from "./ratchet.ts";
import { HEADER_RATCHET_OVERHEAD, MAX_HEADER_RATCHET_MESSAGE_LENGTH } from "./header_ratchet.ts";
import { ProtocolError } from "../errors.ts";
import type { X3dhHeader } from "./x3dh.ts";

/** The header format version of a session of the original ratchet. */
export const X3DH_HEADER_VERSION = 1;
/** The header format version of a session that encrypts its headers. */
export const X3DH_HEADER_VERSION_HE = 2;
/** Length of an X3DH header without a one-time prekey ID. */
export const X3DH_HEADER_MIN_LENGTH: number = 1 + 3 * KEY_LENGTH + 4 + 1;
/** Length of an X3DH header with a one-time prekey ID. */
export const X3DH_HEADER_MAX_LENGTH: number = X3DH_HEADER_MIN_LENGTH + 4;

function checkId(id: number, what: string): void {
  if (!Number.isInteger(id) || id < 0 || id > 0xffffffff) {
    throw new RangeError(`Cannot use ${what}: ID ${id} is not a u32`);
  }
}

/**
 * Encodes an X3DH header in its wire format.
 *
 * @param header The header.
 * @returns {@linkcode X3DH_HEADER_MIN_LENGTH} bytes, or
 *   {@linkcode X3DH_HEADER_MAX_LENGTH} with a one-time prekey ID.
 * @throws {TypeError} If a key is not 32 bytes.
 * @throws {RangeError} If an ID is not a u32.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeX3dhHeader, encodeX3dhHeader } from "./x3dh_wire.ts";
 *
 * const header = {
 *   initiatorSigningKey: new Uint8Array(32).fill(1),
 *   initiatorEncryptionKey: new Uint8Array(32).fill(2),
 *   ephemeralKey: new Uint8Array(32).fill(3),
 *   signedPrekeyId: 7,
 *   oneTimePrekeyId: null,
 * };
 * assert.deepEqual(decodeX3dhHeader(encodeX3dhHeader(header)), header);
 * ```
 */
export function encodeX3dhHeader(header: X3dhHeader): Uint8Array<ArrayBuffer> {
  checkKeyLength(header.initiatorSigningKey, "initiator signing key");
  checkKeyLength(header.initiatorEncryptionKey, "initiator encryption key");
  checkKeyLength(header.ephemeralKey, "ephemeral key");
  checkId(header.signedPrekeyId, "signed prekey");
  const opk = header.oneTimePrekeyId;
  if (opk !== null) checkId(opk, "one-time prekey");
  return concat(
    new Uint8Array([
      header.headerEncryption === true ? X3DH_HEADER_VERSION_HE : X3DH_HEADER_VERSION,
    ]),
    header.initiatorSigningKey,
    header.initiatorEncryptionKey,
    header.ephemeralKey,
    u32(header.signedPrekeyId),
    opk === null ? new Uint8Array([0]) : concat(new Uint8Array([1]), u32(opk)),
  );
}

function readHeader(r: Reader): X3dhHeader {
  const version = r.u8();
  if (version !== X3DH_HEADER_VERSION && version !== X3DH_HEADER_VERSION_HE) {
    throw new SyntaxError(`unknown version ${version}`);
  }
  const initiatorSigningKey = r.bytes(KEY_LENGTH);
  const initiatorEncryptionKey = r.bytes(KEY_LENGTH);
  const ephemeralKey = r.bytes(KEY_LENGTH);
  const signedPrekeyId = r.u32();
  const flag = r.u8();
  if (flag > 1) throw new SyntaxError("the one-time prekey flag is not 0 or 1");
  const oneTimePrekeyId = flag === 1 ? r.u32() : null;
  const header = {
    initiatorSigningKey,
    initiatorEncryptionKey,
    ephemeralKey,
    signedPrekeyId,
    oneTimePrekeyId,
  };
  return version === X3DH_HEADER_VERSION_HE ? { ...header, headerEncryption: true } : header;
}

function decodeFailure(what: string, err: unknown): never {
  const detail = err instanceof Error ? err.message.replace(/^Cannot decode: /, "") : "malformed";
  throw new ProtocolError(`Cannot decode ${what}: ${detail}`, { cause: err });
}

/**
 * Decodes an X3DH header strictly: known version, exact length, flag 0 or 1,
 * no trailing bytes.
 *
 * @param bytes The encoded header.
 * @returns The header.
 * @throws {ProtocolError} If the bytes are not a valid header.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ProtocolError } from "../errors.ts";
 * import { decodeX3dhHeader } from "./x3dh_wire.ts";
 *
 * assert.throws(() => decodeX3dhHeader(new Uint8Array(106)), ProtocolError); // version 0
 * ```
 */
export function decodeX3dhHeader(bytes: Uint8Array): X3dhHeader {
  if (bytes.length > X3DH_HEADER_MAX_LENGTH) {
    throw new ProtocolError("Cannot decode X3DH header: it is too long");
  }
  try {
    const r = new Reader(bytes);
    const header = readHeader(r);
    r.end();
    return header;
  } catch (err) {
    return decodeFailure("X3DH header", err);
  }
}

/** An initial message: the X3DH header and the first ratchet message. */
export interface InitialMessage {
  /** The X3DH header. */
  readonly header: X3dhHeader;
  /** The ratchet message in its wire format (see {@link "./ratchet.ts"}). */
  readonly message: Uint8Array;
}

/** The largest valid initial message in bytes. */
export const MAX_INITIAL_MESSAGE_LENGTH: number = X3DH_HEADER_MAX_LENGTH +
  MAX_HEADER_RATCHET_MESSAGE_LENGTH;

/** Whether a ratchet message of `length` bytes fits the header's version. */
function messageLengthFits(header: X3dhHeader, length: number): boolean {
  return header.headerEncryption === true
    ? length >= HEADER_RATCHET_OVERHEAD && length <= MAX_HEADER_RATCHET_MESSAGE_LENGTH
    : length >= RATCHET_OVERHEAD && length <= MAX_RATCHET_MESSAGE_LENGTH;
}

/**
 * Encodes an initial message: `header || ratchetMessage`. The header
 * delimits itself (its flag says whether a prekey ID follows). The ratchet
 * message is of {@link "./ratchet.ts"} for a version-1 header, of
 * {@link "./header_ratchet.ts"} for a version-2 one.
 *
 * @param initial The header and the ratchet message.
 * @returns The encoding.
 * @throws {TypeError} If a key in the header is not 32 bytes.
 * @throws {RangeError} If an ID is not a u32 or the ratchet message's length
 *   is out of range.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeInitialMessage, encodeInitialMessage } from "./x3dh_wire.ts";
 *
 * const header = {
 *   initiatorSigningKey: new Uint8Array(32).fill(1),
 *   initiatorEncryptionKey: new Uint8Array(32).fill(2),
 *   ephemeralKey: new Uint8Array(32).fill(3),
 *   signedPrekeyId: 7,
 *   oneTimePrekeyId: 9,
 * };
 * const message = new Uint8Array(60);
 * assert.deepEqual(decodeInitialMessage(encodeInitialMessage({ header, message })), {
 *   header,
 *   message,
 * });
 * ```
 */
export function encodeInitialMessage(initial: InitialMessage): Uint8Array<ArrayBuffer> {
  const { message } = initial;
  if (!messageLengthFits(initial.header, message.length)) {
    throw new RangeError("Cannot encode initial message: ratchet message length out of range");
  }
  return concat(encodeX3dhHeader(initial.header), message);
}

/**
 * Decodes an initial message strictly. Only the length of the ratchet
 * message is checked here; {@linkcode ratchetDecrypt} checks the rest.
 *
 * @param bytes The encoding.
 * @returns The header and the ratchet message.
 * @throws {ProtocolError} If the bytes are too long or too short, or the
 *   header is invalid.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ProtocolError } from "../errors.ts";
 * import { decodeInitialMessage } from "./x3dh_wire.ts";
 *
 * assert.throws(() => decodeInitialMessage(new Uint8Array([1, 2, 3])), ProtocolError);
 * ```
 */
export function decodeInitialMessage(bytes: Uint8Array): InitialMessage {
  if (bytes.length > MAX_INITIAL_MESSAGE_LENGTH) {
    throw new ProtocolError("Cannot decode initial message: it is too long");
  }
  let header: X3dhHeader;
  let r: Reader;
  try {
    r = new Reader(bytes);
    header = readHeader(r);
  } catch (err) {
    return decodeFailure("initial message", err);
  }
  if (!messageLengthFits(header, r.remaining)) {
    throw new ProtocolError("Cannot decode initial message: ratchet message length out of range");
  }
  return { header, message: r.bytes(r.remaining) };
}
