/**
 * The storage encoding of a Double Ratchet session: {@linkcode encodeSession}
 * turns a {@linkcode RatchetState} from {@link "./ratchet.ts"} into bytes to
 * seal and keep, {@linkcode decodeSession} reads them back strictly.
 *
 * The ratchet itself never encodes: its functions take a state and return a
 * new one, and the caller persists that state with {@linkcode encodeSession}
 * before it sends the message or shows the plaintext. The encoding holds
 * every secret of the session, so it is stored encrypted.
 *
 * Version 2 records when each skipped message key was stored, so that
 * {@linkcode expireSkippedKeys} can drop old ones; version 1 (DIM before
 * skipped keys expired) is still read, and its skipped keys count as stored
 * when it is decoded (they then live one full age from the upgrade).
 * Version 3 is version 2 with the header keys of a session that encrypts
 * its headers ({@link "./header_ratchet.ts"}). A state without header keys
 * is written as version 2, one with them as version 3.
 *
 * @example Persist a session between two messages
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateRatchetKeyPair, initReceiver, initSender, ratchetDecrypt, ratchetEncrypt } from "./ratchet.ts";
 * import { decodeSession, encodeSession } from "./ratchet_session.ts";
 *
 * const sk = crypto.getRandomValues(new Uint8Array(32));
 * const bobPrekey = await generateRatchetKeyPair();
 * const alice = await initSender(sk, bobPrekey.publicKey, new Uint8Array());
 * const stored = encodeSession(initReceiver(sk, bobPrekey, new Uint8Array()));
 *
 * const sent = await ratchetEncrypt(alice, new TextEncoder().encode("hi"));
 * const bob = decodeSession(stored); // e.g. after a restart
 * const got = await ratchetDecrypt(bob, sent.message);
 * assert.equal(new TextDecoder().decode(got.plaintext), "hi");
 * assert.deepEqual(decodeSession(encodeSession(got.state)), got.state);
 * ```
 *
 * @module
 */
import { concat, constantTimeEqual, Reader, toHex, u16, u32 } from "../platform/bytes.ts";
import { checkKeyLength, KEY_LENGTH } from "./_keys.ts";
import {
  type HeaderKeys,
  MAX_ASSOCIATED_DATA_LENGTH,
  MAX_SKIPPED_KEYS,
  type RatchetState,
  type SkippedMessageKey,
} from "./ratchet.ts";

/**
 * The session encoding version {@linkcode encodeSession} writes for a state
 * without header keys. {@linkcode decodeSession} reads it, version 1 and
 * {@linkcode HEADER_SESSION_VERSION}.
 */
export const SESSION_VERSION = 2;
/** The session encoding version of a state with header keys. */
export const HEADER_SESSION_VERSION = 3;
/** Version 1: a skipped entry without the time it was stored. */
const SESSION_VERSION_1 = 1;
const SKIPPED_ENTRY_LENGTH = KEY_LENGTH + 4 + 8 + KEY_LENGTH;
/** The most earlier receiving header keys an encoding holds. */
const MAX_PREVIOUS_HEADER_KEYS = 255;
const HEADER_KEYS_MAX_LENGTH = 2 * (1 + KEY_LENGTH) + 2 * KEY_LENGTH + 1 +
  MAX_PREVIOUS_HEADER_KEYS * KEY_LENGTH;
/** The largest valid session encoding in bytes (version 3, the largest). */
export const MAX_SESSION_LENGTH: number = 1 + 3 * KEY_LENGTH + 1 + 2 * KEY_LENGTH + 1 +
  KEY_LENGTH + 3 * 4 + 2 + MAX_ASSOCIATED_DATA_LENGTH + HEADER_KEYS_MAX_LENGTH + 2 +
  MAX_SKIPPED_KEYS * SKIPPED_ENTRY_LENGTH;

function checkCount(n: number, what: string): void {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) {
    throw new RangeError(`Cannot encode session: ${what} ${n} is out of range`);
  }
}

/**
 * Encodes a session state for storage (version 2, integers big-endian):
 *
 * ```text
 * version u8 (= 2) | rootKey (32) | DHs private (32) | DHs public (32)
 * | hasReceivingChain u8 (0|1) [ DHr (32) | CKr (32) ]
 * | hasSendingChain u8 (0|1) [ CKs (32) ]
 * | Ns u32 | Nr u32 | PN u32 | adLength u16 | AD
 * | skippedCount u16
 * | { ratchetKey (32) | messageNumber u32 | storedAt u64 | messageKey (32) } × skippedCount
 * ```
 *
 * `storedAt` is in ms since the epoch. Version 1 was the same without
 * `storedAt`. Version 3 (a state with header keys) has, after `AD`:
 *
 * ```text
 * | hasHKs u8 (0|1) [ HKs (32) ] | hasHKr u8 (0|1) [ HKr (32) ] | NHKs (32) | NHKr (32)
 * | previousCount u8 | previous HKr (32) × previousCount
 * ```
 *
 * and its skipped entries' `ratchetKey` is their chain's header key.
 *
 * The result holds every secret of the session: store it encrypted.
 *
 * @param state The state to encode.
 * @returns The encoding, at most {@linkcode MAX_SESSION_LENGTH} bytes.
 * @throws {TypeError} If a key is not 32 bytes, or exactly one of
 *   `receivingRatchetKey` and `receivingChainKey` is `null`.
 * @throws {RangeError} If a counter, a skipped key's time, the associated
 *   data or the number of skipped keys is out of range.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateRatchetKeyPair, initReceiver } from "./ratchet.ts";
 * import { decodeSession, encodeSession } from "./ratchet_session.ts";
 *
 * const state = initReceiver(new Uint8Array(32), await generateRatchetKeyPair(), new Uint8Array(4));
 * assert.deepEqual(decodeSession(encodeSession(state)), state);
 * ```
 */
export function encodeSession(state: RatchetState): Uint8Array<ArrayBuffer> {
  const action = "encode session";
  checkKeyLength(state.rootKey, "the root key");
  checkKeyLength(state.sendingRatchetKey.privateKey, "the private ratchet key");
  checkKeyLength(state.sendingRatchetKey.publicKey, "the public ratchet key");
  if ((state.receivingRatchetKey === null) !== (state.receivingChainKey === null)) {
    throw new TypeError("Cannot encode session: receiving key and chain must both be set or unset");
  }
  checkCount(state.sendingCount, "sendingCount");
  checkCount(state.receivingCount, "receivingCount");
  checkCount(state.previousSendingCount, "previousSendingCount");
  if (state.associatedData.length > MAX_ASSOCIATED_DATA_LENGTH) {
    throw new RangeError(
      `Cannot ${action}: associated data exceeds ${MAX_ASSOCIATED_DATA_LENGTH} bytes`,
    );
  }
  if (state.skippedMessageKeys.length > MAX_SKIPPED_KEYS) {
    throw new RangeError(`Cannot encode session: more than ${MAX_SKIPPED_KEYS} skipped keys`);
  }
  const keys = state.headerKeys;
  const parts: Uint8Array[] = [
    new Uint8Array([keys === undefined ? SESSION_VERSION : HEADER_SESSION_VERSION]),
    state.rootKey,
    state.sendingRatchetKey.privateKey,
    state.sendingRatchetKey.publicKey,
  ];
  if (state.receivingRatchetKey !== null && state.receivingChainKey !== null) {
    checkKeyLength(state.receivingRatchetKey, "the receiving ratchet key");
    checkKeyLength(state.receivingChainKey, "the receiving chain key");
    parts.push(new Uint8Array([1]), state.receivingRatchetKey, state.receivingChainKey);
  } else {
    parts.push(new Uint8Array([0]));
  }
  if (state.sendingChainKey !== null) {
    checkKeyLength(state.sendingChainKey, "the sending chain key");
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
  );
  if (keys !== undefined) parts.push(encodeHeaderKeys(keys));
  parts.push(u16(state.skippedMessageKeys.length));
  // The skipped keys are most of a full session: written in place.
  const skipped = new Uint8Array(state.skippedMessageKeys.length * SKIPPED_ENTRY_LENGTH);
  const view = new DataView(skipped.buffer);
  let offset = 0;
  for (const entry of state.skippedMessageKeys) {
    checkKeyLength(entry.ratchetKey, "a skipped key's ratchet key");
    checkKeyLength(entry.messageKey, "a skipped message key");
    checkCount(entry.messageNumber, "a skipped message number");
    if (!Number.isSafeInteger(entry.storedAt) || entry.storedAt < 0) {
      throw new RangeError(`Cannot ${action}: a skipped key's time is out of range`);
    }
    skipped.set(entry.ratchetKey, offset);
    view.setUint32(offset + KEY_LENGTH, entry.messageNumber);
    view.setBigUint64(offset + KEY_LENGTH + 4, BigInt(entry.storedAt));
    skipped.set(entry.messageKey, offset + KEY_LENGTH + 12);
    offset += SKIPPED_ENTRY_LENGTH;
  }
  parts.push(skipped);
  return concat(...parts);
}

function optionalKey(key: Uint8Array | null, what: string): Uint8Array {
  if (key === null) return new Uint8Array([0]);
  checkKeyLength(key, what, "encode session with");
  return concat(new Uint8Array([1]), key);
}

function encodeHeaderKeys(keys: HeaderKeys): Uint8Array {
  checkKeyLength(keys.nextSending, "the next sending header key", "encode session with");
  checkKeyLength(keys.nextReceiving, "the next receiving header key", "encode session with");
  if (keys.previousReceiving.length > MAX_PREVIOUS_HEADER_KEYS) {
    throw new RangeError("Cannot encode session: too many earlier header keys");
  }
  for (const key of keys.previousReceiving) {
    checkKeyLength(key, "an earlier header key", "encode session with");
  }
  return concat(
    optionalKey(keys.sending, "the sending header key"),
    optionalKey(keys.receiving, "the receiving header key"),
    keys.nextSending,
    keys.nextReceiving,
    new Uint8Array([keys.previousReceiving.length]),
    ...keys.previousReceiving,
  );
}

function decodeHeaderKeys(r: Reader): HeaderKeys {
  const sending = presence(r) ? r.bytes(KEY_LENGTH) : null;
  const receiving = presence(r) ? r.bytes(KEY_LENGTH) : null;
  const nextSending = r.bytes(KEY_LENGTH);
  const nextReceiving = r.bytes(KEY_LENGTH);
  const count = r.u8();
  const previousReceiving: Uint8Array[] = [];
  for (let i = 0; i < count; i++) previousReceiving.push(r.bytes(KEY_LENGTH));
  return { sending, receiving, nextSending, nextReceiving, previousReceiving };
}

function presence(r: Reader): boolean {
  const flag = r.u8();
  if (flag > 1) throw new SyntaxError("Cannot decode session: a presence flag is not 0 or 1");
  return flag === 1;
}

/**
 * Decodes a session stored with {@linkcode encodeSession}, strictly: the
 * length is checked before parsing, and an unknown version, a truncated
 * input, trailing bytes, an inconsistent state, a repeated skipped key or a
 * skipped key's time beyond 2^53 is refused.
 *
 * A version-1 encoding has no times: its skipped keys count as stored at
 * `options.now`, so they expire one full age after the upgrade.
 *
 * @param bytes The encoding (version 2, or version 1).
 * @param options `now`: the time (ms) given to the skipped keys of a
 *   version-1 encoding. Default `Date.now()`.
 * @returns The state.
 * @throws {SyntaxError} If the bytes are not a valid session encoding.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateRatchetKeyPair, initSender } from "./ratchet.ts";
 * import { decodeSession, encodeSession } from "./ratchet_session.ts";
 *
 * const state = await initSender(new Uint8Array(32), (await generateRatchetKeyPair()).publicKey, new Uint8Array());
 * const bytes = encodeSession(state);
 * assert.throws(() => decodeSession(bytes.subarray(0, bytes.length - 1)), SyntaxError);
 * assert.throws(() => decodeSession(new Uint8Array([...bytes, 0])), SyntaxError);
 * ```
 */
export function decodeSession(
  bytes: Uint8Array,
  options: { readonly now?: number } = {},
): RatchetState {
  if (bytes.length > MAX_SESSION_LENGTH) {
    throw new SyntaxError(`Cannot decode session: longer than ${MAX_SESSION_LENGTH} bytes`);
  }
  const r = new Reader(bytes);
  const version = r.u8();
  if (
    version !== SESSION_VERSION && version !== SESSION_VERSION_1 &&
    version !== HEADER_SESSION_VERSION
  ) {
    throw new SyntaxError(`Cannot decode session: unknown version ${version}`);
  }
  const decodedAt = version === SESSION_VERSION_1 ? options.now ?? Date.now() : 0;
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
  const headerKeys = version === HEADER_SESSION_VERSION ? decodeHeaderKeys(r) : undefined;
  if (headerKeys !== undefined && (headerKeys.sending === null) !== (sendingChainKey === null)) {
    throw new SyntaxError("Cannot decode session: a sending chain without its header key");
  }
  if (
    headerKeys !== undefined && (headerKeys.receiving === null) !== (receivingChainKey === null)
  ) {
    throw new SyntaxError("Cannot decode session: a receiving chain without its header key");
  }
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
    const storedAt = version === SESSION_VERSION_1 ? decodedAt : r.u64();
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
    skippedMessageKeys.push({ ratchetKey: chain.key, messageNumber, messageKey, storedAt });
  }
  r.end();
  const state: RatchetState = {
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
  return headerKeys === undefined ? state : { ...state, headerKeys };
}

/**
 * Drops the skipped message keys stored before `before` (Signal's Double
 * Ratchet, section 6.4): a message delayed longer than the caller's limit
 * can no longer be read, and its key no longer waits in storage for an
 * attacker who later reads the state.
 *
 * @param state The session state; it is not changed.
 * @param before Keys stored earlier than this time (ms) are dropped.
 * @returns The state without those keys; `state` itself if none was dropped.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   generateRatchetKeyPair,
 *   initReceiver,
 *   initSender,
 *   ratchetDecrypt,
 *   ratchetEncrypt,
 * } from "./ratchet.ts";
 * import { expireSkippedKeys } from "./ratchet_session.ts";
 *
 * const sk = new Uint8Array(32).fill(5);
 * const prekey = await generateRatchetKeyPair();
 * const alice = await initSender(sk, prekey.publicKey, new Uint8Array());
 * const first = await ratchetEncrypt(alice, new Uint8Array([1]));
 * const second = await ratchetEncrypt(first.state, new Uint8Array([2]));
 * // Bob reads the second message on day 0: the first one's key is kept.
 * const bob = initReceiver(sk, prekey, new Uint8Array());
 * const { state } = await ratchetDecrypt(bob, second.message, { now: 0 });
 * assert.equal(state.skippedMessageKeys.length, 1);
 * assert.equal(expireSkippedKeys(state, 0), state);
 * assert.equal(expireSkippedKeys(state, 1).skippedMessageKeys.length, 0);
 * ```
 */
export function expireSkippedKeys(state: RatchetState, before: number): RatchetState {
  const skipped = state.skippedMessageKeys;
  if (!skipped.some((entry) => entry.storedAt < before)) return state;
  return { ...state, skippedMessageKeys: skipped.filter((entry) => entry.storedAt >= before) };
}
