/**
 * The message envelope: one message from a sender's {@linkcode Identity} to
 * a recipient's identity (its Ed25519 signing key, which its user ID names,
 * and its X25519 encryption key), encrypted with HPKE (RFC 9180, base mode)
 * and signed by the sender inside the encryption, so that an observer learns
 * neither the body nor who sent it, and the recipient learns and verifies
 * both.
 *
 * ## Wire format (version 2)
 *
 * All integers are big-endian.
 *
 * ```text
 * outer     = version u8 (= 2) | enc (32) | ciphertext
 * ciphertext = HPKE base-mode seal of `inner`, with
 *              info = "DIM-v2 envelope" | recipientSigningKey (32),
 *              aad = version byte
 * inner     = senderSigningKey (32) | id (16) | timestamp u64 (ms since epoch)
 *           | contentType u8 | bodyLength u32 | body | signature (64)
 * signature = Ed25519 by senderSigningKey, domain "envelope", over
 *             version u8 | recipientSigningKey (32) | recipientEncryptionKey (32)
 *             | enc (32) | inner without signature
 * ```
 *
 * The signature binds the sender to the recipient's identity and key and to
 * `enc`, and so (through the AEAD key HPKE derives from `enc`) to this
 * ciphertext: a recipient cannot re-seal a signed message to someone else,
 * and a message signed for another purpose (a record, say) is not an
 * envelope.
 *
 * The recipient's signing key is in both the HPKE `info` and the signature,
 * and {@linkcode openEnvelope} uses the opener's own: an envelope sealed for
 * one identity does not open for another, even one that holds the same
 * X25519 key. Nothing proves that a contact card's owner holds the X25519
 * key it lists, so Mallory can publish a card with her user ID and Bob's
 * X25519 key; a message Alice writes to Mallory is then sealed to Bob's key,
 * but it names Mallory, so Bob refuses it if Mallory forwards it to him
 * (version 1 named the recipient by its X25519 key only, and Bob took it as
 * a message from Alice to him: an unknown key share).
 *
 * Decoding is strict: the total length is checked against
 * {@linkcode MAX_ENVELOPE_LENGTH} and the minimum before any cryptography,
 * the version must be known, `bodyLength` must match exactly and no bytes may
 * trail. Every failure to open raises the same {@linkcode DecryptionError},
 * so a caller (or an attacker watching it) cannot tell which check failed;
 * the one exception is an envelope of an older version, whose version byte
 * is in the clear anyway: it raises {@linkcode OutdatedVersionError}, which
 * says the sender runs an older DIM. Version 1 envelopes are refused, not
 * read: reading them would keep the attack above open.
 *
 * @example Alice seals a message for Bob
 * ```ts
 * import { Identity } from "./identity.ts";
 * import { openEnvelope, sealEnvelope } from "./envelope.ts";
 *
 * const alice = await Identity.generate();
 * const bob = await Identity.generate();
 * const body = new TextEncoder().encode("hello Bob");
 * const sealed = await sealEnvelope(alice, bob.public, { body });
 *
 * const opened = await openEnvelope(bob, sealed);
 * if (opened.senderId !== alice.id) throw new Error("wrong sender");
 * if (new TextDecoder().decode(opened.body) !== "hello Bob") throw new Error("wrong body");
 * ```
 *
 * @module
 */
import { concat, Reader, u32, u64, utf8 } from "../platform/bytes.ts";
import { KEY_LENGTH } from "./_keys.ts";
import { HPKE_ENC_LENGTH, HPKE_TAG_LENGTH, setupBaseR, setupBaseS } from "./hpke.ts";
import { encodeUserId, type Identity, type PublicIdentity, verifySignature } from "./identity.ts";
import { DecryptionError, EncryptionError, OutdatedVersionError } from "../errors.ts";

/**
 * The envelope format version this module writes and reads. Version 1 did
 * not name the recipient's identity; it is refused with
 * {@linkcode OutdatedVersionError}.
 */
export const ENVELOPE_VERSION = 2;
/** The largest body an envelope carries: 256 KiB. */
export const MAX_BODY_LENGTH: number = 256 * 1024;
/** Length of a message ID in bytes. */
export const ENVELOPE_ID_LENGTH = 16;

const SIGNATURE_LENGTH = 64;
// What the signature covers before `inner`: version | recipient's two keys | enc.
const SIGNED_PREFIX_LENGTH = 1 + 2 * KEY_LENGTH + HPKE_ENC_LENGTH;
const OUTER_HEADER_LENGTH = 1 + HPKE_ENC_LENGTH;
// senderSigningKey | id | timestamp | contentType | bodyLength
const INNER_HEADER_LENGTH = KEY_LENGTH + ENVELOPE_ID_LENGTH + 8 + 1 + 4;
/** The smallest valid envelope in bytes (one with an empty body). */
export const MIN_ENVELOPE_LENGTH: number = OUTER_HEADER_LENGTH + INNER_HEADER_LENGTH +
  SIGNATURE_LENGTH + HPKE_TAG_LENGTH;
/** The largest valid envelope in bytes (one with a body of {@linkcode MAX_BODY_LENGTH}). */
export const MAX_ENVELOPE_LENGTH: number = MIN_ENVELOPE_LENGTH + MAX_BODY_LENGTH;

const INFO_PREFIX = utf8("DIM-v2 envelope");
const AAD = new Uint8Array([ENVELOPE_VERSION]);

/** HPKE's `info` for an envelope to the owner of `recipientSigningKey`. */
function info(recipientSigningKey: Uint8Array): Uint8Array {
  return concat(INFO_PREFIX, recipientSigningKey);
}

/**
 * Who an envelope is for: the recipient's identity (its signing key) and the
 * X25519 key it is sealed to, as the recipient's contact card lists them. A
 * {@linkcode PublicIdentity} or an {@linkcode Identity} will do.
 */
export type EnvelopeRecipient = Pick<PublicIdentity, "signingPublicKey" | "encryptionPublicKey">;

/** What {@linkcode sealEnvelope} puts in an envelope. */
export interface EnvelopeMessage {
  /** The message body, at most {@linkcode MAX_BODY_LENGTH} bytes. */
  readonly body: Uint8Array;
  /** What the body is, 0 to 255; its meaning belongs to the messaging layer. Default: 0. */
  readonly contentType?: number;
  /** A 16-byte message ID. Default: random. */
  readonly id?: Uint8Array;
  /** When the message was written, in ms since the Unix epoch. Default: `Date.now()`. */
  readonly timestamp?: number;
}

/** An opened envelope, its sender verified. */
export interface OpenedEnvelope {
  /** The sender's raw 32-byte Ed25519 key; the signature verified with it. */
  readonly senderSigningKey: Uint8Array<ArrayBuffer>;
  /** The sender's user ID, derived from `senderSigningKey`. */
  readonly senderId: string;
  /** The 16-byte message ID. */
  readonly id: Uint8Array<ArrayBuffer>;
  /** The sender's timestamp in ms since the Unix epoch (the sender's claim, not checked). */
  readonly timestamp: number;
  /** The content type, 0 to 255. */
  readonly contentType: number;
  /** The message body. */
  readonly body: Uint8Array<ArrayBuffer>;
}

/**
 * Seals a message from `sender` for `recipient`: to its X25519 key, and
 * naming its identity, so that only that identity opens it.
 *
 * @param sender The sender's identity; its signing key signs the envelope.
 * @param recipient The recipient's raw 32-byte Ed25519 signing key (whose
 *   user ID the sender addresses) and raw 32-byte X25519 public key.
 * @param message The body and, optionally, content type, ID and timestamp.
 * @returns The envelope bytes, at most {@linkcode MAX_ENVELOPE_LENGTH}.
 * @throws {EncryptionError} If the body is over {@linkcode MAX_BODY_LENGTH},
 * the ID is not 16 bytes, the content type or timestamp is out of range,
 * the recipient's signing key is not 32 bytes, or its X25519 key is not a
 * usable X25519 key.
 * @example
 * ```ts
 * import { Identity } from "./identity.ts";
 * import { MAX_ENVELOPE_LENGTH, sealEnvelope } from "./envelope.ts";
 *
 * const alice = await Identity.generate();
 * const bob = await Identity.generate();
 * const sealed = await sealEnvelope(alice, bob.public, {
 *   body: new Uint8Array(100),
 *   contentType: 1,
 *   timestamp: 1_700_000_000_000,
 * });
 * if (sealed.length > MAX_ENVELOPE_LENGTH) throw new Error("envelope too large");
 * ```
 */
export async function sealEnvelope(
  sender: Identity,
  recipient: EnvelopeRecipient,
  message: EnvelopeMessage,
): Promise<Uint8Array<ArrayBuffer>> {
  const { signingPublicKey: recipientSigningKey, encryptionPublicKey: recipientEncryptionKey } =
    recipient;
  const { body } = message;
  const contentType = message.contentType ?? 0;
  const timestamp = message.timestamp ?? Date.now();
  const id = message.id ?? crypto.getRandomValues(new Uint8Array(ENVELOPE_ID_LENGTH));
  if (body.length > MAX_BODY_LENGTH) {
    throw new EncryptionError(
      `Cannot seal envelope: body is ${body.length} bytes, over the limit of ${MAX_BODY_LENGTH}`,
    );
  }
  if (id.length !== ENVELOPE_ID_LENGTH) {
    throw new EncryptionError(
      `Cannot seal envelope: id must be ${ENVELOPE_ID_LENGTH} bytes, got ${id.length}`,
    );
  }
  if (!Number.isInteger(contentType) || contentType < 0 || contentType > 0xff) {
    throw new EncryptionError(`Cannot seal envelope: content type ${contentType} is not 0 to 255`);
  }
  if (!Number.isSafeInteger(timestamp) || timestamp < 0) {
    throw new EncryptionError(`Cannot seal envelope: timestamp ${timestamp} is out of range`);
  }
  if (!(recipientSigningKey instanceof Uint8Array) || recipientSigningKey.length !== KEY_LENGTH) {
    throw new EncryptionError(
      `Cannot seal envelope: the recipient's signing key must be ${KEY_LENGTH} bytes`,
    );
  }
  const { enc, context } = await setupBaseS(recipientEncryptionKey, {
    info: info(recipientSigningKey),
  });

  // What is signed (version | recipient's keys | enc | inner without
  // signature), then room for the signature: the plaintext is this buffer
  // from the inner header on, with no second copy of the body to build it.
  const buffer = concat(
    AAD,
    recipientSigningKey,
    recipientEncryptionKey,
    enc,
    sender.signingPublicKey,
    id,
    u64(timestamp),
    new Uint8Array([contentType]),
    u32(body.length),
    body,
    new Uint8Array(SIGNATURE_LENGTH),
  );
  const signedLength = buffer.length - SIGNATURE_LENGTH;
  const signature = await sender.sign("envelope", buffer.subarray(0, signedLength));
  buffer.set(signature, signedLength);

  const ciphertext = await context.seal(buffer.subarray(SIGNED_PREFIX_LENGTH), AAD);
  const out = new Uint8Array(OUTER_HEADER_LENGTH + ciphertext.length);
  out[0] = ENVELOPE_VERSION;
  out.set(enc, 1);
  out.set(ciphertext, OUTER_HEADER_LENGTH);
  return out;
}

/**
 * Opens an envelope addressed to `recipient`, verifying its sender and that
 * it names `recipient`'s own identity.
 *
 * @param recipient The recipient's identity; its X25519 key opens the
 *   envelope, which must name its signing key.
 * @param bytes The envelope as received.
 * @returns The sender's key and user ID, and the message.
 * @throws {OutdatedVersionError} If the envelope is of an older version (its
 * sender runs an older DIM); it is not read.
 * @throws {DecryptionError} With one uniform message for every other
 * failure: not addressed to this recipient (its X25519 key or its
 * identity), altered, truncated, oversized, trailing bytes, unknown version
 * or a bad signature.
 * @example
 * ```ts
 * import { DecryptionError } from "../errors.ts";
 * import { Identity } from "./identity.ts";
 * import { openEnvelope, sealEnvelope } from "./envelope.ts";
 *
 * const alice = await Identity.generate();
 * const bob = await Identity.generate();
 * const eve = await Identity.generate();
 * const sealed = await sealEnvelope(alice, bob.public, { body: new Uint8Array([1]) });
 *
 * const opened = await openEnvelope(bob, sealed);
 * if (opened.senderSigningKey.some((b, i) => b !== alice.signingPublicKey[i])) {
 *   throw new Error("wrong sender key");
 * }
 * const failure = await openEnvelope(eve, sealed).catch((err) => err);
 * if (!(failure instanceof DecryptionError)) throw new Error("Eve opened Bob's envelope");
 * ```
 */
export async function openEnvelope(
  recipient: Identity,
  bytes: Uint8Array,
): Promise<OpenedEnvelope> {
  if (bytes.length < MIN_ENVELOPE_LENGTH || bytes.length > MAX_ENVELOPE_LENGTH) {
    throw new DecryptionError();
  }
  const version = bytes[0]!;
  if (version !== ENVELOPE_VERSION) {
    // Version 1 had the same lengths.
    if (version >= 1 && version < ENVELOPE_VERSION) {
      throw new OutdatedVersionError("envelope", version, ENVELOPE_VERSION);
    }
    throw new DecryptionError();
  }
  try {
    const enc = bytes.subarray(1, OUTER_HEADER_LENGTH);
    const context = await setupBaseR(enc, {
      privateKey: recipient.encryptionPrivateKey,
      publicKey: recipient.encryptionPublicKey,
    }, { info: info(recipient.signingPublicKey) });
    const inner = await context.open(bytes.subarray(OUTER_HEADER_LENGTH), AAD);

    const reader = new Reader(inner);
    const senderSigningKey = reader.bytes(KEY_LENGTH);
    const id = reader.bytes(ENVELOPE_ID_LENGTH);
    const timestamp = reader.u64();
    const contentType = reader.u8();
    const bodyLength = reader.u32();
    if (bodyLength !== reader.remaining - SIGNATURE_LENGTH) throw new SyntaxError("bodyLength");
    const body = reader.bytes(bodyLength);
    const signedLength = reader.position;
    const signature = reader.bytes(SIGNATURE_LENGTH);
    reader.end();

    const signed = concat(
      AAD,
      recipient.signingPublicKey,
      recipient.encryptionPublicKey,
      enc,
      inner.subarray(0, signedLength),
    );
    if (!(await verifySignature("envelope", senderSigningKey, signed, signature))) {
      throw new SyntaxError("signature");
    }
    return {
      senderSigningKey,
      senderId: encodeUserId(senderSigningKey),
      id,
      timestamp,
      contentType,
      body,
    };
  } catch {
    // No cause: which check failed is exactly what must not leak.
    throw new DecryptionError();
  }
}
