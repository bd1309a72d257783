/**
 * Double Ratchet sessions (after Signal's specification), for forward
 * secrecy and post-compromise security between two DIM users once
 * {@link "./x3dh.ts"} has given them a shared secret.
 *
 * Every function is pure: it takes a {@linkcode RatchetState} and returns a
 * new one, never changing its input. A failed decryption therefore changes
 * nothing, and a caller persists the returned state (with
 * {@linkcode encodeSession}) before it sends the message or shows the
 * plaintext.
 *
 * ## Construction
 *
 * - DH: X25519 (WebCrypto). An all-zero shared secret is refused.
 * - KDF_RK: HKDF-SHA-256 with salt = root key, IKM = DH output, info =
 *   `"DIM-v1 ratchet root"`, 64 bytes: new root key || new chain key.
 * - KDF_CK: message key = HMAC-SHA-256(chain key, 0x01), next chain key =
 *   HMAC-SHA-256(chain key, 0x02).
 * - Message encryption: HKDF-SHA-256 with salt = 32 zero bytes, IKM =
 *   message key, info = `"DIM-v1 ratchet message"`, 44 bytes: an AES-256-GCM
 *   key (32) || nonce (12). Signal derives an AES-CBC key, HMAC key and IV
 *   the same way; AES-GCM needs no separate MAC key, and as each message key
 *   encrypts exactly one message, a nonce derived from it never repeats.
 * - AEAD associated data: `adLength u32 | AD | header`, where AD comes from
 *   the key agreement (both users' identities) and `header` is the message's
 *   41 header bytes, so every header bit is authenticated.
 *
 * ## Wire format of a message (version 1)
 *
 * ```text
 * version u8 (= 1) | ratchetKey (32) | previousChainLength u32 | messageNumber u32 | ciphertext
 * ```
 *
 * Integers are big-endian; `ciphertext` is AES-256-GCM output with its
 * 16-byte tag. The length is bounded by {@linkcode MAX_RATCHET_MESSAGE_LENGTH}.
 *
 * ## Safety limits
 *
 * The header is checked against the state before any key is derived: a
 * message number below the chain's position (a duplicate or a message whose
 * key is gone), or a jump of more than {@linkcode MAX_SKIP} keys in one
 * chain, is rejected without touching a chain key. At most
 * {@linkcode MAX_SKIPPED_KEYS} skipped message keys are kept; the oldest go
 * first. A used message key is deleted, so a replayed message is refused.
 *
 * @example Alice and Bob exchange messages
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   generateRatchetKeyPair,
 *   initReceiver,
 *   initSender,
 *   ratchetDecrypt,
 *   ratchetEncrypt,
 * } from "./ratchet.ts";
 *
 * // From X3DH: the shared secret, Bob's signed prekey and the associated data.
 * const sk = crypto.getRandomValues(new Uint8Array(32));
 * const ad = new TextEncoder().encode("alice and bob");
 * const bobPrekey = await generateRatchetKeyPair();
 *
 * let alice = await initSender(sk, bobPrekey.publicKey, ad);
 * let bob = initReceiver(sk, bobPrekey, ad);
 *
 * const sent = await ratchetEncrypt(alice, new TextEncoder().encode("hi Bob"));
 * alice = sent.state;
 * const got = await ratchetDecrypt(bob, sent.message);
 * bob = got.state;
 * assert.equal(new TextDecoder().decode(got.plaintext), "hi Bob");
 *
 * const reply = await ratchetEncrypt(bob, new TextEncoder().encode("hi Alice"));
 * const back = await ratchetDecrypt(alice, reply.message);
 * assert.equal(new TextDecoder().decode(back.plaintext), "hi Alice");
 * ```
 *
 * @module
 */
import { hkdf } from "@noble/hashes/hkdf.js";
import { hmac } from "@noble/hashes/hmac.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { concat, constantTimeEqual, Reader, toHex, u16, u32, utf8 } from "../platform/bytes.ts";
import {
  exportOkpPrivate,
  importX25519Private,
  importX25519Public,
  KEY_LENGTH,
  randomSeed,
} from "./_keys.ts";
import {
  DecryptionError,
  EncryptionError,
  ProtocolError,
  TooManySkippedMessagesError,
} from "../errors.ts";
export { TooManySkippedMessagesError };

const TAG_LENGTH = 16;

/** The message format version this module writes and the only one it reads. */
export const RATCHET_MESSAGE_VERSION = 1;
/** The session encoding version {@linkcode encodeSession} writes and the only one it reads. */
export const SESSION_VERSION = 1;
/** The most message keys one chain may skip in a single step (Signal's MAX_SKIP). */
export const MAX_SKIP = 1000;
/** The most skipped message keys a session keeps; the oldest are evicted first. */
export const MAX_SKIPPED_KEYS = 2000;
/** The longest associated data a session binds, in bytes. */
export const MAX_ASSOCIATED_DATA_LENGTH = 1024;
/** The longest plaintext a message carries: 257 KiB, a 256 KiB body plus room for its framing. */
export const MAX_RATCHET_PLAINTEXT_LENGTH: number = 257 * 1024;
/** Length of a message header: version, ratchet key, previous chain length, message number. */
export const RATCHET_HEADER_LENGTH: number = 1 + KEY_LENGTH + 4 + 4;
/** Bytes a message is longer than its plaintext: the header and the AES-GCM tag. */
export const RATCHET_OVERHEAD: number = RATCHET_HEADER_LENGTH + TAG_LENGTH;
/** The largest valid message in bytes. */
export const MAX_RATCHET_MESSAGE_LENGTH: number = RATCHET_OVERHEAD + MAX_RATCHET_PLAINTEXT_LENGTH;

const NONCE_LENGTH = 12;
// A sending chain stops one short of the u32 limit, so a receiver's count
// (one past the last message number) always fits in a u32 too.
const MAX_MESSAGE_NUMBER = 0xfffffffe;
const ROOT_INFO = utf8("DIM-v1 ratchet root");
const MESSAGE_INFO = utf8("DIM-v1 ratchet message");
const ZERO_SALT = new Uint8Array(32);
const MESSAGE_KEY_INPUT = new Uint8Array([0x01]);
const CHAIN_KEY_INPUT = new Uint8Array([0x02]);

/** An X25519 key pair in raw form, so that it can be stored. Holds secret material: never log it. */
export interface RatchetKeyPair {
  /** The raw 32-byte X25519 private key. */
  readonly privateKey: Uint8Array;
  /** The raw 32-byte X25519 public key. */
  readonly publicKey: Uint8Array;
}

/** A message key kept for a message that has not arrived yet (Signal's MKSKIPPED). */
export interface SkippedMessageKey {
  /** The sender's ratchet public key of the chain the message belongs to. */
  readonly ratchetKey: Uint8Array;
  /** The message number in that chain. */
  readonly messageNumber: number;
  /** The 32-byte message key. */
  readonly messageKey: Uint8Array;
}

/**
 * The whole state of one side of a session: plain data, safe to copy and to
 * encode with {@linkcode encodeSession}. Holds secret material: never log it.
 */
export interface RatchetState {
  /** RK: the 32-byte root key. */
  readonly rootKey: Uint8Array;
  /** DHs: this side's current ratchet key pair. */
  readonly sendingRatchetKey: RatchetKeyPair;
  /** DHr: the other side's current ratchet public key; `null` until a message is received. */
  readonly receivingRatchetKey: Uint8Array | null;
  /** CKs: the sending chain key; `null` until this side may send (the receiver waits for a message). */
  readonly sendingChainKey: Uint8Array | null;
  /** CKr: the receiving chain key; `null` exactly when `receivingRatchetKey` is. */
  readonly receivingChainKey: Uint8Array | null;
  /** Ns: messages sent in the current sending chain. */
  readonly sendingCount: number;
  /** Nr: messages received in the current receiving chain (one past the highest number). */
  readonly receivingCount: number;
  /** PN: messages sent in the previous sending chain. */
  readonly previousSendingCount: number;
  /** Keys of skipped messages, oldest first, at most {@linkcode MAX_SKIPPED_KEYS}. */
  readonly skippedMessageKeys: readonly SkippedMessageKey[];
  /** AD: the associated data from the key agreement, bound into every message. */
  readonly associatedData: Uint8Array;
}

/** A message's header, as {@linkcode decodeRatchetMessage} shows it. */
export interface RatchetHeader {
  /** The sender's current ratchet public key (32 bytes). */
  readonly ratchetKey: Uint8Array;
  /** PN: how many messages the sender sent in its previous chain. */
  readonly previousChainLength: number;
  /** N: the message's number in its chain. */
  readonly messageNumber: number;
}

/** What {@linkcode ratchetEncrypt} returns. */
export interface RatchetEncryptResult {
  /** The state after sending; persist it before sending `message`. */
  readonly state: RatchetState;
  /** The message in its wire format. */
  readonly message: Uint8Array<ArrayBuffer>;
}

/** What {@linkcode ratchetDecrypt} returns. */
export interface RatchetDecryptResult {
  /** The state after receiving; persist it before acting on `plaintext`. */
  readonly state: RatchetState;
  /** The authenticated plaintext. */
  readonly plaintext: Uint8Array<ArrayBuffer>;
}

// --- Primitives --------------------------------------------------------------

function isAllZero(bytes: Uint8Array): boolean {
  let acc = 0;
  for (const b of bytes) acc |= b;
  return acc === 0;
}

/** X25519 from raw keys; throws `RangeError` on an unusable key or an all-zero result. */
async function dh(privateKey: Uint8Array, publicKey: Uint8Array): Promise<Uint8Array> {
  let out: Uint8Array;
  try {
    const [priv, pub] = await Promise.all([
      importX25519Private(privateKey),
      importX25519Public(publicKey),
    ]);
    out = new Uint8Array(
      await crypto.subtle.deriveBits({ name: "X25519", public: pub }, priv, 256),
    );
  } catch (cause) {
    throw new RangeError("Cannot complete X25519: the public key is not usable", { cause });
  }
  // WebCrypto refuses a low-order point already; the check keeps the
  // property independent of the runtime.
  if (isAllZero(out)) throw new RangeError("Cannot complete X25519: the shared point is all zeros");
  return out;
}

/** KDF_RK: HKDF-SHA-256 keyed by the root key over a DH output. */
function kdfRoot(rootKey: Uint8Array, dhOutput: Uint8Array): [Uint8Array, Uint8Array] {
  const out = hkdf(sha256, dhOutput, rootKey, ROOT_INFO, 64);
  dhOutput.fill(0);
  return [out.slice(0, 32), out.slice(32, 64)];
}

/** KDF_CK: [next chain key, message key]. */
function kdfChain(chainKey: Uint8Array): [Uint8Array, Uint8Array] {
  return [hmac(sha256, chainKey, CHAIN_KEY_INPUT), hmac(sha256, chainKey, MESSAGE_KEY_INPUT)];
}

async function messageCipher(
  messageKey: Uint8Array,
  usage: KeyUsage,
): Promise<{ key: CryptoKey; iv: Uint8Array<ArrayBuffer> }> {
  const okm = hkdf(sha256, messageKey, ZERO_SALT, MESSAGE_INFO, 32 + NONCE_LENGTH);
  const key = await crypto.subtle.importKey(
    "raw",
    okm.subarray(0, 32) as Uint8Array<ArrayBuffer>,
    { name: "AES-GCM" },
    false,
    [usage],
  );
  const iv = okm.slice(32);
  okm.fill(0);
  return { key, iv };
}

function aeadData(associatedData: Uint8Array, header: Uint8Array): Uint8Array<ArrayBuffer> {
  return concat(u32(associatedData.length), associatedData, header);
}

/** Opens with one message key; any failure is the uniform {@linkcode DecryptionError}. */
async function open(
  messageKey: Uint8Array,
  associatedData: Uint8Array,
  message: Uint8Array,
): Promise<Uint8Array<ArrayBuffer>> {
  try {
    const { key, iv } = await messageCipher(messageKey, "decrypt");
    const plaintext = await crypto.subtle.decrypt(
      {
        name: "AES-GCM",
        iv,
        additionalData: aeadData(associatedData, message.subarray(0, RATCHET_HEADER_LENGTH)),
      },
      key,
      message.subarray(RATCHET_HEADER_LENGTH) as Uint8Array<ArrayBuffer>,
    );
    return new Uint8Array(plaintext);
  } catch {
    throw new DecryptionError();
  }
}

/**
 * Generates a fresh X25519 key pair in raw form, as a ratchet or prekey key.
 *
 * @returns The key pair; the private key is 32 random bytes.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateRatchetKeyPair } from "./ratchet.ts";
 *
 * const pair = await generateRatchetKeyPair();
 * assert.equal(pair.privateKey.length, 32);
 * assert.equal(pair.publicKey.length, 32);
 * ```
 */
export async function generateRatchetKeyPair(): Promise<RatchetKeyPair> {
  const privateKey = randomSeed();
  const exported = await exportOkpPrivate(await importX25519Private(privateKey, true));
  return { privateKey: exported.seed, publicKey: exported.publicKey };
}

// --- Checks --------------------------------------------------------------

function checkKey(bytes: Uint8Array, what: string, action: string): void {
  if (!(bytes instanceof Uint8Array) || bytes.length !== KEY_LENGTH) {
    throw new TypeError(`Cannot ${action}: ${what} must be ${KEY_LENGTH} bytes`);
  }
}

function checkAssociatedData(ad: Uint8Array, action: string): void {
  if (ad.length > MAX_ASSOCIATED_DATA_LENGTH) {
    throw new RangeError(
      `Cannot ${action}: associated data exceeds ${MAX_ASSOCIATED_DATA_LENGTH} bytes`,
    );
  }
}

// --- Session setup --------------------------------------------------------

/**
 * Starts the session of the side that speaks first (X3DH's initiator):
 * it performs the first DH ratchet step towards the responder's ratchet key
 * (Bob's signed prekey), so it can send at once.
 *
 * @param sharedSecret The 32-byte secret from the key agreement.
 * @param remoteRatchetKey The responder's 32-byte X25519 ratchet public key.
 * @param associatedData The associated data from the key agreement, at most
 *   {@linkcode MAX_ASSOCIATED_DATA_LENGTH} bytes.
 * @returns The initiator's state.
 * @throws {TypeError} If the secret or the key is not 32 bytes.
 * @throws {RangeError} If the associated data is too long, or the remote key
 *   is not a usable X25519 key (a low-order point, say).
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateRatchetKeyPair, initSender } from "./ratchet.ts";
 *
 * const bob = await generateRatchetKeyPair();
 * const state = await initSender(new Uint8Array(32).fill(7), bob.publicKey, new Uint8Array());
 * assert.notEqual(state.sendingChainKey, null);
 * assert.equal(state.sendingCount, 0);
 * ```
 */
export async function initSender(
  sharedSecret: Uint8Array,
  remoteRatchetKey: Uint8Array,
  associatedData: Uint8Array,
): Promise<RatchetState> {
  checkKey(sharedSecret, "the shared secret", "start session");
  checkKey(remoteRatchetKey, "the remote ratchet key", "start session");
  checkAssociatedData(associatedData, "start session");
  const sendingRatchetKey = await generateRatchetKeyPair();
  const [rootKey, sendingChainKey] = kdfRoot(
    sharedSecret,
    await dh(sendingRatchetKey.privateKey, remoteRatchetKey),
  );
  return {
    rootKey,
    sendingRatchetKey,
    // The responder never sends on its prekey, so there is no chain to
    // receive on until its first message names a ratchet key.
    receivingRatchetKey: null,
    sendingChainKey,
    receivingChainKey: null,
    sendingCount: 0,
    receivingCount: 0,
    previousSendingCount: 0,
    skippedMessageKeys: [],
    associatedData: new Uint8Array(associatedData),
  };
}

/**
 * Starts the session of the side that answers (X3DH's responder). It cannot
 * send until it has decrypted the initiator's first message.
 *
 * @param sharedSecret The 32-byte secret from the key agreement.
 * @param ownRatchetKeyPair This side's ratchet key pair: the signed prekey
 *   the initiator used.
 * @param associatedData The associated data from the key agreement, at most
 *   {@linkcode MAX_ASSOCIATED_DATA_LENGTH} bytes.
 * @returns The responder's state.
 * @throws {TypeError} If the secret or a key is not 32 bytes.
 * @throws {RangeError} If the associated data is too long.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateRatchetKeyPair, initReceiver } from "./ratchet.ts";
 *
 * const prekey = await generateRatchetKeyPair();
 * const state = initReceiver(new Uint8Array(32).fill(7), prekey, new Uint8Array());
 * assert.equal(state.sendingChainKey, null);
 * ```
 */
export function initReceiver(
  sharedSecret: Uint8Array,
  ownRatchetKeyPair: RatchetKeyPair,
  associatedData: Uint8Array,
): RatchetState {
  checkKey(sharedSecret, "the shared secret", "start session");
  checkKey(ownRatchetKeyPair.privateKey, "the private ratchet key", "start session");
  checkKey(ownRatchetKeyPair.publicKey, "the public ratchet key", "start session");
  checkAssociatedData(associatedData, "start session");
  return {
    rootKey: new Uint8Array(sharedSecret),
    sendingRatchetKey: {
      privateKey: new Uint8Array(ownRatchetKeyPair.privateKey),
      publicKey: new Uint8Array(ownRatchetKeyPair.publicKey),
    },
    receivingRatchetKey: null,
    sendingChainKey: null,
    receivingChainKey: null,
    sendingCount: 0,
    receivingCount: 0,
    previousSendingCount: 0,
    skippedMessageKeys: [],
    associatedData: new Uint8Array(associatedData),
  };
}

// --- Encrypt and decrypt -----------------------------------------------------

/**
 * Encrypts one message and advances the sending chain.
 *
 * @param state The session state; it is not changed.
 * @param plaintext At most {@linkcode MAX_RATCHET_PLAINTEXT_LENGTH} bytes.
 * @returns The new state (persist it first) and the message to send.
 * @throws {EncryptionError} If this side cannot send yet (a responder that
 *   has received nothing), the chain is exhausted, the plaintext is too long
 *   or AES-GCM fails.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateRatchetKeyPair, initSender, RATCHET_OVERHEAD, ratchetEncrypt } from "./ratchet.ts";
 *
 * const bob = await generateRatchetKeyPair();
 * const alice = await initSender(new Uint8Array(32).fill(1), bob.publicKey, new Uint8Array());
 * const { state, message } = await ratchetEncrypt(alice, new Uint8Array(5));
 * assert.equal(message.length, 5 + RATCHET_OVERHEAD);
 * assert.equal(state.sendingCount, 1);
 * assert.equal(alice.sendingCount, 0);
 * ```
 */
export async function ratchetEncrypt(
  state: RatchetState,
  plaintext: Uint8Array,
): Promise<RatchetEncryptResult> {
  if (state.sendingChainKey === null) {
    throw new EncryptionError("Cannot encrypt: the session has not received a message yet");
  }
  if (state.sendingCount > MAX_MESSAGE_NUMBER) {
    throw new EncryptionError("Cannot encrypt: the sending chain is exhausted");
  }
  if (plaintext.length > MAX_RATCHET_PLAINTEXT_LENGTH) {
    throw new EncryptionError(
      `Cannot encrypt: plaintext exceeds ${MAX_RATCHET_PLAINTEXT_LENGTH} bytes`,
    );
  }
  const [sendingChainKey, messageKey] = kdfChain(state.sendingChainKey);
  const header = concat(
    new Uint8Array([RATCHET_MESSAGE_VERSION]),
    state.sendingRatchetKey.publicKey,
    u32(state.previousSendingCount),
    u32(state.sendingCount),
  );
  let ciphertext: ArrayBuffer;
  try {
    const { key, iv } = await messageCipher(messageKey, "encrypt");
    ciphertext = await crypto.subtle.encrypt(
      { name: "AES-GCM", iv, additionalData: aeadData(state.associatedData, header) },
      key,
      plaintext as Uint8Array<ArrayBuffer>,
    );
  } catch (cause) {
    throw new EncryptionError("Cannot encrypt: AES-GCM encryption failed", { cause });
  } finally {
    messageKey.fill(0);
  }
  const message = new Uint8Array(RATCHET_HEADER_LENGTH + ciphertext.byteLength);
  message.set(header);
  message.set(new Uint8Array(ciphertext), RATCHET_HEADER_LENGTH);
  return {
    state: { ...state, sendingChainKey, sendingCount: state.sendingCount + 1 },
    message,
  };
}

/** The header fields, or `undefined` if the bytes are not a well-formed message. */
function parseHeader(message: Uint8Array): RatchetHeader | undefined {
  if (
    message.length < RATCHET_OVERHEAD || message.length > MAX_RATCHET_MESSAGE_LENGTH ||
    message[0] !== RATCHET_MESSAGE_VERSION
  ) {
    return undefined;
  }
  const view = new DataView(message.buffer, message.byteOffset, message.byteLength);
  const header = {
    ratchetKey: message.slice(1, 1 + KEY_LENGTH),
    previousChainLength: view.getUint32(1 + KEY_LENGTH),
    messageNumber: view.getUint32(1 + KEY_LENGTH + 4),
  };
  if (header.messageNumber > MAX_MESSAGE_NUMBER) return undefined;
  return header;
}

/**
 * Decodes a message's header without decrypting it, for inspection (the
 * header is authenticated only once {@linkcode ratchetDecrypt} succeeds).
 *
 * @param bytes The message as received.
 * @returns The header and the ciphertext (with its tag).
 * @throws {ProtocolError} If the message is shorter than
 *   {@linkcode RATCHET_OVERHEAD}, longer than
 *   {@linkcode MAX_RATCHET_MESSAGE_LENGTH}, of an unknown version, or its
 *   message number is out of range.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   decodeRatchetMessage,
 *   generateRatchetKeyPair,
 *   initSender,
 *   ratchetEncrypt,
 * } from "./ratchet.ts";
 *
 * const bob = await generateRatchetKeyPair();
 * const alice = await initSender(new Uint8Array(32).fill(1), bob.publicKey, new Uint8Array());
 * const { message } = await ratchetEncrypt(alice, new Uint8Array(3));
 * const { header } = decodeRatchetMessage(message);
 * assert.equal(header.messageNumber, 0);
 * assert.deepEqual(header.ratchetKey, alice.sendingRatchetKey.publicKey);
 * ```
 */
export function decodeRatchetMessage(
  bytes: Uint8Array,
): { header: RatchetHeader; ciphertext: Uint8Array<ArrayBuffer> } {
  const header = parseHeader(bytes);
  if (header === undefined) {
    throw new ProtocolError(
      "Cannot decode ratchet message: wrong length, unknown version or message number out of range",
    );
  }
  return { header, ciphertext: bytes.slice(RATCHET_HEADER_LENGTH) };
}

/** Skips a receiving chain forward to `until`, collecting the skipped keys. */
function skipKeys(
  chainKey: Uint8Array,
  from: number,
  until: number,
  ratchetKey: Uint8Array,
  into: SkippedMessageKey[],
): Uint8Array {
  let ck = chainKey;
  for (let n = from; n < until; n++) {
    const [next, messageKey] = kdfChain(ck);
    into.push({ ratchetKey, messageNumber: n, messageKey });
    ck = next;
  }
  return ck;
}

/**
 * Decrypts one message, performing a DH ratchet step if it names a new
 * ratchet key and keeping the keys of any messages it skips.
 *
 * The header is checked first: a duplicate, a message too old for its key
 * to remain, or a jump of more than {@linkcode MAX_SKIP} is refused before
 * any key is derived. All work happens on new objects; the new state is
 * returned only once the AEAD has opened, so on failure `state` remains the
 * one to keep.
 *
 * @param state The session state; it is not changed.
 * @param message The message in its wire format.
 * @returns The new state (persist it first) and the plaintext.
 * @throws {TooManySkippedMessagesError} If the header asks to skip more than
 *   {@linkcode MAX_SKIP} keys in one chain.
 * @throws {DecryptionError} With one uniform message for every other failure:
 *   malformed, altered, duplicated, too old or not from this session.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DecryptionError } from "../errors.ts";
 * import {
 *   generateRatchetKeyPair,
 *   initReceiver,
 *   initSender,
 *   ratchetDecrypt,
 *   ratchetEncrypt,
 * } from "./ratchet.ts";
 *
 * const sk = new Uint8Array(32).fill(3);
 * const prekey = await generateRatchetKeyPair();
 * const alice = await initSender(sk, prekey.publicKey, new Uint8Array());
 * const bob = initReceiver(sk, prekey, new Uint8Array());
 * const { message } = await ratchetEncrypt(alice, new Uint8Array([42]));
 *
 * const { state, plaintext } = await ratchetDecrypt(bob, message);
 * assert.deepEqual(plaintext, new Uint8Array([42]));
 * await assert.rejects(ratchetDecrypt(state, message), DecryptionError); // a replay
 * ```
 */
export async function ratchetDecrypt(
  state: RatchetState,
  message: Uint8Array,
): Promise<RatchetDecryptResult> {
  // 1. Structure, without looking at the state.
  const header = parseHeader(message);
  if (header === undefined) throw new DecryptionError();
  const { ratchetKey, previousChainLength: pn, messageNumber: n } = header;

  // 2. A key kept for a skipped message.
  const skipped = state.skippedMessageKeys;
  for (let i = 0; i < skipped.length; i++) {
    const entry = skipped[i]!;
    if (entry.messageNumber !== n || !constantTimeEqual(entry.ratchetKey, ratchetKey)) continue;
    const plaintext = await open(entry.messageKey, state.associatedData, message);
    return {
      state: { ...state, skippedMessageKeys: [...skipped.slice(0, i), ...skipped.slice(i + 1)] },
      plaintext,
    };
  }

  // 3. The header against the state, before any key is derived.
  const current = state.receivingRatchetKey;
  const sameChain = current !== null && constantTimeEqual(current, ratchetKey);
  if (sameChain) {
    // A used key is deleted: below the chain's position is a duplicate or lost.
    if (n < state.receivingCount) throw new DecryptionError();
    if (n - state.receivingCount > MAX_SKIP) throw new TooManySkippedMessagesError();
  } else {
    if (current !== null) {
      // Every message of the old chain had a number below PN.
      if (pn < state.receivingCount) throw new DecryptionError();
      if (pn - state.receivingCount > MAX_SKIP) throw new TooManySkippedMessagesError();
    }
    if (n > MAX_SKIP) throw new TooManySkippedMessagesError();
  }

  // 4. Derive on copies; commit only once the AEAD has opened.
  const newSkipped: SkippedMessageKey[] = [];
  let rootKey = state.rootKey;
  let sendingRatchetKey = state.sendingRatchetKey;
  let sendingChainKey = state.sendingChainKey;
  let sendingCount = state.sendingCount;
  let previousSendingCount = state.previousSendingCount;
  let receivingChainKey: Uint8Array;
  let receivingCount = state.receivingCount;
  try {
    if (sameChain) {
      receivingChainKey = state.receivingChainKey!;
    } else {
      if (current !== null) {
        skipKeys(state.receivingChainKey!, receivingCount, pn, current, newSkipped);
      }
      // DHRatchet.
      previousSendingCount = sendingCount;
      sendingCount = 0;
      receivingCount = 0;
      [rootKey, receivingChainKey] = kdfRoot(
        rootKey,
        await dh(sendingRatchetKey.privateKey, ratchetKey),
      );
      sendingRatchetKey = await generateRatchetKeyPair();
      [rootKey, sendingChainKey] = kdfRoot(
        rootKey,
        await dh(sendingRatchetKey.privateKey, ratchetKey),
      );
    }
    receivingChainKey = skipKeys(receivingChainKey, receivingCount, n, ratchetKey, newSkipped);
  } catch {
    // A low-order ratchet key in a forged header.
    throw new DecryptionError();
  }
  const [nextChainKey, messageKey] = kdfChain(receivingChainKey);
  let plaintext: Uint8Array<ArrayBuffer>;
  try {
    plaintext = await open(messageKey, state.associatedData, message);
  } finally {
    messageKey.fill(0);
  }

  let skippedMessageKeys = newSkipped.length === 0 ? skipped : [...skipped, ...newSkipped];
  if (skippedMessageKeys.length > MAX_SKIPPED_KEYS) {
    skippedMessageKeys = skippedMessageKeys.slice(skippedMessageKeys.length - MAX_SKIPPED_KEYS);
  }
  return {
    state: {
      rootKey,
      sendingRatchetKey,
      receivingRatchetKey: sameChain ? current : ratchetKey,
      sendingChainKey,
      receivingChainKey: nextChainKey,
      sendingCount,
      receivingCount: n + 1,
      previousSendingCount,
      skippedMessageKeys,
      associatedData: state.associatedData,
    },
    plaintext,
  };
}

// --- Session encoding --------------------------------------------------------

const SKIPPED_ENTRY_LENGTH = KEY_LENGTH + 4 + KEY_LENGTH;
/** The largest valid session encoding in bytes. */
export const MAX_SESSION_LENGTH: number = 1 + 3 * KEY_LENGTH + 1 + 2 * KEY_LENGTH + 1 +
  KEY_LENGTH + 3 * 4 + 2 + MAX_ASSOCIATED_DATA_LENGTH + 2 + MAX_SKIPPED_KEYS * SKIPPED_ENTRY_LENGTH;

function checkCount(n: number, what: string): void {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) {
    throw new RangeError(`Cannot encode session: ${what} ${n} is out of range`);
  }
}

/**
 * Encodes a session state for storage (version 1, integers big-endian):
 *
 * ```text
 * version u8 (= 1) | rootKey (32) | DHs private (32) | DHs public (32)
 * | hasReceivingChain u8 (0|1) [ DHr (32) | CKr (32) ]
 * | hasSendingChain u8 (0|1) [ CKs (32) ]
 * | Ns u32 | Nr u32 | PN u32 | adLength u16 | AD
 * | skippedCount u16 | { ratchetKey (32) | messageNumber u32 | messageKey (32) } × skippedCount
 * ```
 *
 * The result holds every secret of the session: store it encrypted.
 *
 * @param state The state to encode.
 * @returns The encoding, at most {@linkcode MAX_SESSION_LENGTH} bytes.
 * @throws {TypeError} If a key is not 32 bytes, or exactly one of
 *   `receivingRatchetKey` and `receivingChainKey` is `null`.
 * @throws {RangeError} If a counter, the associated data or the number of
 *   skipped keys is out of range.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeSession, encodeSession, generateRatchetKeyPair, initReceiver } from "./ratchet.ts";
 *
 * const state = initReceiver(new Uint8Array(32), await generateRatchetKeyPair(), new Uint8Array(4));
 * assert.deepEqual(decodeSession(encodeSession(state)), state);
 * ```
 */
export function encodeSession(state: RatchetState): Uint8Array<ArrayBuffer> {
  const action = "encode session";
  checkKey(state.rootKey, "the root key", action);
  checkKey(state.sendingRatchetKey.privateKey, "the private ratchet key", action);
  checkKey(state.sendingRatchetKey.publicKey, "the public ratchet key", action);
  if ((state.receivingRatchetKey === null) !== (state.receivingChainKey === null)) {
    throw new TypeError("Cannot encode session: receiving key and chain must both be set or unset");
  }
  checkCount(state.sendingCount, "sendingCount");
  checkCount(state.receivingCount, "receivingCount");
  checkCount(state.previousSendingCount, "previousSendingCount");
  checkAssociatedData(state.associatedData, action);
  if (state.skippedMessageKeys.length > MAX_SKIPPED_KEYS) {
    throw new RangeError(`Cannot encode session: more than ${MAX_SKIPPED_KEYS} skipped keys`);
  }
  const parts: Uint8Array[] = [
    new Uint8Array([SESSION_VERSION]),
    state.rootKey,
    state.sendingRatchetKey.privateKey,
    state.sendingRatchetKey.publicKey,
  ];
  if (state.receivingRatchetKey !== null && state.receivingChainKey !== null) {
    checkKey(state.receivingRatchetKey, "the receiving ratchet key", action);
    checkKey(state.receivingChainKey, "the receiving chain key", action);
    parts.push(new Uint8Array([1]), state.receivingRatchetKey, state.receivingChainKey);
  } else {
    parts.push(new Uint8Array([0]));
  }
  if (state.sendingChainKey !== null) {
    checkKey(state.sendingChainKey, "the sending chain key", action);
    parts.push(new Uint8Array([1]), state.sendingChainKey);
  } else {
    parts.push(new Uint8Array([0]));
  }
  parts.push(
    u32(state.sendingCount),
    u32(state.receivingCount),
    u32(state.previousSendingCount),
    u16(state.associatedData.length),
    state.associatedData,
    u16(state.skippedMessageKeys.length),
  );
  // The skipped keys are most of a full session: written in place.
  const skipped = new Uint8Array(state.skippedMessageKeys.length * SKIPPED_ENTRY_LENGTH);
  const view = new DataView(skipped.buffer);
  let offset = 0;
  for (const entry of state.skippedMessageKeys) {
    checkKey(entry.ratchetKey, "a skipped key's ratchet key", action);
    checkKey(entry.messageKey, "a skipped message key", action);
    checkCount(entry.messageNumber, "a skipped message number");
    skipped.set(entry.ratchetKey, offset);
    view.setUint32(offset + KEY_LENGTH, entry.messageNumber);
    skipped.set(entry.messageKey, offset + KEY_LENGTH + 4);
    offset += SKIPPED_ENTRY_LENGTH;
  }
  parts.push(skipped);
  return concat(...parts);
}

function presence(r: Reader): boolean {
  const flag = r.u8();
  if (flag > 1) throw new SyntaxError("Cannot decode session: a presence flag is not 0 or 1");
  return flag === 1;
}

/**
 * Decodes a session stored with {@linkcode encodeSession}, strictly: the
 * length is checked before parsing, and an unknown version, a truncated
 * input, trailing bytes, an inconsistent state or a repeated skipped key is
 * refused.
 *
 * @param bytes The encoding.
 * @returns The state.
 * @throws {SyntaxError} If the bytes are not a valid session encoding.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeSession, encodeSession, generateRatchetKeyPair, initSender } from "./ratchet.ts";
 *
 * const state = await initSender(new Uint8Array(32), (await generateRatchetKeyPair()).publicKey, new Uint8Array());
 * const bytes = encodeSession(state);
 * assert.throws(() => decodeSession(bytes.subarray(0, bytes.length - 1)), SyntaxError);
 * assert.throws(() => decodeSession(new Uint8Array([...bytes, 0])), SyntaxError);
 * ```
 */
export function decodeSession(bytes: Uint8Array): RatchetState {
  if (bytes.length > MAX_SESSION_LENGTH) {
    throw new SyntaxError(`Cannot decode session: longer than ${MAX_SESSION_LENGTH} bytes`);
  }
  const r = new Reader(bytes);
  const version = r.u8();
  if (version !== SESSION_VERSION) {
    throw new SyntaxError(`Cannot decode session: unknown version ${version}`);
  }
  const rootKey = r.bytes(KEY_LENGTH);
  const sendingRatchetKey = { privateKey: r.bytes(KEY_LENGTH), publicKey: r.bytes(KEY_LENGTH) };
  let receivingRatchetKey: Uint8Array | null = null;
  let receivingChainKey: Uint8Array | null = null;
  if (presence(r)) {
    receivingRatchetKey = r.bytes(KEY_LENGTH);
    receivingChainKey = r.bytes(KEY_LENGTH);
  }
  const sendingChainKey = presence(r) ? r.bytes(KEY_LENGTH) : null;
  const sendingCount = r.u32();
  const receivingCount = r.u32();
  const previousSendingCount = r.u32();
  if (receivingChainKey === null && receivingCount !== 0) {
    throw new SyntaxError("Cannot decode session: a count without a receiving chain");
  }
  if (sendingChainKey === null && (sendingCount !== 0 || previousSendingCount !== 0)) {
    throw new SyntaxError("Cannot decode session: a count without a sending chain");
  }
  const adLength = (r.u8() << 8) | r.u8();
  if (adLength > MAX_ASSOCIATED_DATA_LENGTH) {
    throw new SyntaxError("Cannot decode session: associated data too long");
  }
  const associatedData = r.bytes(adLength);
  const skippedCount = (r.u8() << 8) | r.u8();
  if (skippedCount > MAX_SKIPPED_KEYS) {
    throw new SyntaxError("Cannot decode session: too many skipped keys");
  }
  const skippedMessageKeys: SkippedMessageKey[] = [];
  // Skipped keys come in runs of one chain: entries of a chain share one
  // copy of its ratchet key, and the repeat check is per chain.
  const chains = new Map<string, { key: Uint8Array; numbers: Set<number> }>();
  let chain: { key: Uint8Array; numbers: Set<number> } | undefined;
  for (let i = 0; i < skippedCount; i++) {
    const ratchetKey = r.bytes(KEY_LENGTH);
    const messageNumber = r.u32();
    const messageKey = r.bytes(KEY_LENGTH);
    if (chain === undefined || !constantTimeEqual(chain.key, ratchetKey)) {
      const id = toHex(ratchetKey);
      chain = chains.get(id) ?? { key: ratchetKey, numbers: new Set() };
      chains.set(id, chain);
    }
    if (chain.numbers.has(messageNumber)) {
      throw new SyntaxError("Cannot decode session: a skipped key is repeated");
    }
    chain.numbers.add(messageNumber);
    skippedMessageKeys.push({ ratchetKey: chain.key, messageNumber, messageKey });
  }
  r.end();
  return {
    rootKey,
    sendingRatchetKey,
    receivingRatchetKey,
    sendingChainKey,
    receivingChainKey,
    sendingCount,
    receivingCount,
    previousSendingCount,
    skippedMessageKeys,
    associatedData,
  };
}
