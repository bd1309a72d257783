/**
 * Double Ratchet sessions (after Signal's specification), for forward
 * secrecy and post-compromise security between two DIM users once
 * {@link "./x3dh.ts"} has given them a shared secret.
 *
 * Every function is pure: it takes a {@linkcode RatchetState} and returns a
 * new one, never changing its input. A failed decryption therefore changes
 * nothing, and a caller persists the returned state (with `encodeSession`
 * from {@link "./ratchet_session.ts"}, the state's storage encoding) before
 * it sends the message or shows the plaintext.
 *
 * ## Construction
 *
 * - DH: X25519 (`node:crypto`, on the calling thread). An all-zero shared
 *   secret is refused.
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
 * Each skipped key records when it was stored, so that `expireSkippedKeys`
 * ({@link "./ratchet_session.ts"}) can drop old ones (the specification's
 * section 6.4: the key of a message that never came is not kept forever).
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
import { concat, constantTimeEqual, u32, utf8 } from "../platform/bytes.ts";
import {
  aeadData,
  dh,
  kdfChain,
  kdfRoot as kdfRootKeys,
  MAX_MESSAGE_NUMBER,
  openBody,
  sealBody,
} from "./_ratchet_kdf.ts";
import { checkKeyLength, KEY_LENGTH, newX25519KeyPair } from "./_keys.ts";
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

const ROOT_INFO = utf8("DIM-v1 ratchet root");

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
  /** When the key was stored (ms since the epoch), so that it can expire. */
  readonly storedAt: number;
}

/**
 * The whole state of one side of a session: plain data, safe to copy and to
 * encode with `encodeSession` ({@link "./ratchet_session.ts"}). Holds secret
 * material: never log it.
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
  /**
   * The header keys of a session with encrypted headers
   * ({@link "./header_ratchet.ts"}); absent in a session of the original
   * variant, which this module's functions alone take. In such a session
   * the skipped keys' `ratchetKey` is the header key of their chain.
   */
  readonly headerKeys?: HeaderKeys;
}

/**
 * The header keys of a session with encrypted headers (the Double Ratchet
 * specification's section 4). Holds secret material: never log it.
 */
export interface HeaderKeys {
  /** HKs: the key this side's headers are sealed with; `null` until this side may send. */
  readonly sending: Uint8Array | null;
  /** HKr: the key of the current receiving chain's headers; `null` until a message is received. */
  readonly receiving: Uint8Array | null;
  /** NHKs: the sending header key after the next DH ratchet step. */
  readonly nextSending: Uint8Array;
  /** NHKr: the receiving header key after the next DH ratchet step. */
  readonly nextReceiving: Uint8Array;
  /**
   * HKr of the receiving chains before the current one, newest first: a copy
   * of a message from one of them is recognized (as one whose key is gone)
   * rather than taken for junk.
   */
  readonly previousReceiving: readonly Uint8Array[];
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

/** KDF_RK: [new root key, new chain key]. */
function kdfRoot(rootKey: Uint8Array, dhOutput: Uint8Array): [Uint8Array, Uint8Array] {
  const [root, chain] = kdfRootKeys(rootKey, dhOutput, ROOT_INFO, 2);
  return [root!, chain!];
}

/** Opens with one message key; any failure is the uniform {@linkcode DecryptionError}. */
function open(
  messageKey: Uint8Array,
  associatedData: Uint8Array,
  message: Uint8Array,
): Promise<Uint8Array<ArrayBuffer>> {
  return openBody(
    messageKey,
    message.subarray(RATCHET_HEADER_LENGTH),
    aeadData(associatedData, message.subarray(0, RATCHET_HEADER_LENGTH)),
  );
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
export function generateRatchetKeyPair(): Promise<RatchetKeyPair> {
  const pair = newX25519KeyPair();
  return Promise.resolve(pair);
}

// --- Checks --------------------------------------------------------------

function checkAssociatedData(ad: Uint8Array, action: string): void {
  if (ad.length > MAX_ASSOCIATED_DATA_LENGTH) {
    throw new RangeError(
      `Cannot ${action}: associated data exceeds ${MAX_ASSOCIATED_DATA_LENGTH} bytes`,
    );
  }
}

// --- Session setup --------------------------------------------------------

/** A state that has received nothing yet: no receiving chain, every count zero. */
function newState(
  rootKey: Uint8Array,
  sendingRatchetKey: RatchetKeyPair,
  sendingChainKey: Uint8Array | null,
  associatedData: Uint8Array,
): RatchetState {
  return {
    rootKey,
    sendingRatchetKey,
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
  checkKeyLength(sharedSecret, "the shared secret");
  checkKeyLength(remoteRatchetKey, "the remote ratchet key");
  checkAssociatedData(associatedData, "start session");
  const sendingRatchetKey = newX25519KeyPair();
  const [dhOutput] = await dh([sendingRatchetKey.privateKey], remoteRatchetKey);
  const [rootKey, sendingChainKey] = kdfRoot(sharedSecret, dhOutput!);
  // The responder never sends on its prekey, so there is no chain to
  // receive on until its first message names a ratchet key.
  return newState(rootKey, sendingRatchetKey, sendingChainKey, associatedData);
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
  checkKeyLength(sharedSecret, "the shared secret");
  checkKeyLength(ownRatchetKeyPair.privateKey, "the private ratchet key");
  checkKeyLength(ownRatchetKeyPair.publicKey, "the public ratchet key");
  checkAssociatedData(associatedData, "start session");
  const sendingRatchetKey = {
    privateKey: new Uint8Array(ownRatchetKeyPair.privateKey),
    publicKey: new Uint8Array(ownRatchetKeyPair.publicKey),
  };
  return newState(new Uint8Array(sharedSecret), sendingRatchetKey, null, associatedData);
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
  if (state.headerKeys !== undefined) {
    throw new EncryptionError("Cannot encrypt: the session encrypts its headers");
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
  const ciphertext = await sealBody(messageKey, plaintext, aeadData(state.associatedData, header));
  const message = new Uint8Array(RATCHET_HEADER_LENGTH + ciphertext.length);
  message.set(header);
  message.set(ciphertext, RATCHET_HEADER_LENGTH);
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
  storedAt: number,
  into: SkippedMessageKey[],
): Uint8Array {
  let ck = chainKey;
  for (let n = from; n < until; n++) {
    const [next, messageKey] = kdfChain(ck);
    into.push({ ratchetKey, messageNumber: n, messageKey, storedAt });
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
 * Keys of messages it skips are stamped with `options.now`; a caller that
 * expires skipped keys (`expireSkippedKeys`) does so before it calls this,
 * so an expired key cannot open a late message.
 *
 * @param state The session state; it is not changed.
 * @param message The message in its wire format.
 * @param options `now`: the time (ms) recorded with the keys of skipped
 *   messages. Default `Date.now()`.
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
  options: { readonly now?: number } = {},
): Promise<RatchetDecryptResult> {
  const now = options.now ?? Date.now();
  // 1. Structure, without looking at the state.
  const header = parseHeader(message);
  if (header === undefined || state.headerKeys !== undefined) throw new DecryptionError();
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
        skipKeys(state.receivingChainKey!, receivingCount, pn, current, now, newSkipped);
      }
      // DHRatchet.
      previousSendingCount = sendingCount;
      sendingCount = 0;
      receivingCount = 0;
      const next = newX25519KeyPair();
      const [receiving, sending] = await dh(
        [sendingRatchetKey.privateKey, next.privateKey],
        ratchetKey,
      );
      sendingRatchetKey = next;
      [rootKey, receivingChainKey] = kdfRoot(rootKey, receiving!);
      [rootKey, sendingChainKey] = kdfRoot(rootKey, sending!);
    }
    receivingChainKey = skipKeys(
      receivingChainKey,
      receivingCount,
      n,
      ratchetKey,
      now,
      newSkipped,
    );
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
