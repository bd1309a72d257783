/**
 * The storage encoding of a group keyring ({@linkcode KeyringSnapshot}): the
 * own sending chains and the other members' receiving chains, which the
 * store seals at rest with the history key. The decoder is strict: a wrong
 * version, a length out of bounds or a trailing byte is a `SyntaxError`.
 *
 * ## Format (version 1)
 *
 * ```text
 * keyring  = 0x01 | u8 hasOwn | [sender] | u8 n | n × sender | u16 m | m × receiver | u16 k | k × (u32 epoch | u64 ms)
 * sender   = groupId (16) | u32 epoch | chainKey (32) | u32 iteration | u8 len | pkcs8 (len) | signPub (32) | inboxKey (32)
 * receiver = groupId (16) | u32 epoch | sender (32) | chainKey (32) | u32 iteration | signPub (32) | inboxKey (32)
 *            | u16 s | s × (u32 iteration | messageKey (32) | u64 storedAt)
 * ```
 *
 * @example Round trip
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeKeyring, encodeKeyring } from "./keyring_codec.ts";
 *
 * const empty = { own: undefined, ownOld: [], chains: [], epochSeen: [[0, 5]] as const };
 * assert.deepEqual(decodeKeyring(encodeKeyring(empty)), { ...empty, epochSeen: [[0, 5]] });
 * ```
 *
 * @module
 */
import { concat, Reader, u16, u32, u64 } from "../platform/bytes.ts";
import { GROUP_ID_LENGTH, MAX_GROUP_MEMBERS, MAX_GROUP_SKIPPED_KEYS } from "./constants.ts";
import type { KeyringSnapshot } from "./keyring.ts";
import type { ReceiverChain, SenderChain, SkippedGroupKey } from "./sender_keys.ts";

/** The keyring encoding version this module writes and the only one it reads. */
export const KEYRING_VERSION = 1;
const KEY = 32;
/** Chains kept per member: a few epochs during a grace period. */
const MAX_CHAINS = MAX_GROUP_MEMBERS * 8;
const MAX_OLD_OWN = 8;
const MAX_EPOCHS_SEEN = 1024;

function u16Checked(n: number, max: number, what: string): Uint8Array {
  if (n > max) throw new RangeError(`Cannot encode keyring: too many ${what}`);
  return u16(n);
}

function encodeSender(c: SenderChain): Uint8Array {
  return concat(
    c.groupId,
    u32(c.epoch),
    c.chainKey,
    u32(c.iteration),
    new Uint8Array([c.signingPrivateKey.length]),
    c.signingPrivateKey,
    c.signingPublicKey,
    c.inboxKey,
  );
}

function encodeReceiver(c: ReceiverChain): Uint8Array {
  return concat(
    c.groupId,
    u32(c.epoch),
    c.sender,
    c.chainKey,
    u32(c.iteration),
    c.signingPublicKey,
    c.inboxKey,
    u16Checked(c.skipped.length, MAX_GROUP_SKIPPED_KEYS, "skipped keys"),
    ...c.skipped.flatMap((s) => [u32(s.iteration), s.messageKey, u64(s.storedAt)]),
  );
}

/**
 * Encodes a keyring's state.
 *
 * @param k The state, from `GroupKeyring.snapshot()`.
 * @returns The bytes (secret: seal them before they are written).
 * @throws {RangeError} If a count is out of bounds.
 */
export function encodeKeyring(k: KeyringSnapshot): Uint8Array {
  if (k.ownOld.length > MAX_OLD_OWN) throw new RangeError("Cannot encode keyring: too many chains");
  return concat(
    new Uint8Array([KEYRING_VERSION, k.own === undefined ? 0 : 1]),
    ...(k.own === undefined ? [] : [encodeSender(k.own)]),
    new Uint8Array([k.ownOld.length]),
    ...k.ownOld.map(encodeSender),
    u16Checked(k.chains.length, MAX_CHAINS, "chains"),
    ...k.chains.map(encodeReceiver),
    u16Checked(k.epochSeen.length, MAX_EPOCHS_SEEN, "epochs"),
    ...k.epochSeen.flatMap(([e, at]) => [u32(e), u64(at)]),
  );
}

function decodeSender(r: Reader): SenderChain {
  const groupId = r.bytes(GROUP_ID_LENGTH);
  const epoch = r.u32();
  const chainKey = r.bytes(KEY);
  const iteration = r.u32();
  const len = r.u8();
  if (len !== 48) throw new SyntaxError("Cannot decode keyring: bad signing key");
  const signingPrivateKey = r.bytes(len);
  return {
    groupId,
    epoch,
    chainKey,
    iteration,
    signingPrivateKey,
    signingPublicKey: r.bytes(KEY),
    inboxKey: r.bytes(KEY),
  };
}

function decodeReceiver(r: Reader): ReceiverChain {
  const groupId = r.bytes(GROUP_ID_LENGTH);
  const epoch = r.u32();
  const sender = r.bytes(KEY);
  const chainKey = r.bytes(KEY);
  const iteration = r.u32();
  const signingPublicKey = r.bytes(KEY);
  const inboxKey = r.bytes(KEY);
  const n = readCount(r, MAX_GROUP_SKIPPED_KEYS);
  const skipped: SkippedGroupKey[] = [];
  for (let i = 0; i < n; i++) {
    skipped.push({ iteration: r.u32(), messageKey: r.bytes(KEY), storedAt: r.u64() });
  }
  return { groupId, epoch, sender, chainKey, iteration, signingPublicKey, inboxKey, skipped };
}

function readCount(r: Reader, max: number): number {
  const n = (r.u8() << 8) | r.u8();
  if (n > max) throw new SyntaxError("Cannot decode keyring: a count is out of bounds");
  return n;
}

/**
 * Decodes what {@linkcode encodeKeyring} wrote.
 *
 * @param bytes The encoding.
 * @returns The state, for `GroupKeyring.restore`.
 * @throws {SyntaxError} If it is not a version-1 keyring, exactly.
 */
export function decodeKeyring(bytes: Uint8Array): KeyringSnapshot {
  const r = new Reader(bytes);
  if (r.u8() !== KEYRING_VERSION) throw new SyntaxError("Cannot decode keyring: unknown version");
  const hasOwn = r.u8();
  if (hasOwn > 1) throw new SyntaxError("Cannot decode keyring: bad flag");
  const own = hasOwn === 1 ? decodeSender(r) : undefined;
  const nOld = r.u8();
  if (nOld > MAX_OLD_OWN) throw new SyntaxError("Cannot decode keyring: too many chains");
  const ownOld: SenderChain[] = [];
  for (let i = 0; i < nOld; i++) ownOld.push(decodeSender(r));
  const nChains = readCount(r, MAX_CHAINS);
  const chains: ReceiverChain[] = [];
  for (let i = 0; i < nChains; i++) chains.push(decodeReceiver(r));
  const nSeen = readCount(r, MAX_EPOCHS_SEEN);
  const epochSeen: [number, number][] = [];
  for (let i = 0; i < nSeen; i++) epochSeen.push([r.u32(), r.u64()]);
  r.end();
  return { own, ownOld, chains, epochSeen };
}
