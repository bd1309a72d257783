// The Double Ratchet's primitives, shared by both of its variants: the
// original (ratchet.ts) and the one with encrypted headers
// (header_ratchet.ts). Private to lib/crypto.
import { hmac } from "@noble/hashes/hmac.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { concat, u32 } from "../platform/bytes.ts";
import { gcmOpen, gcmSeal } from "./_aead.ts";
import { hkdfNow } from "./_digest.ts";
import { x25519Each, x25519PrivateKey, x25519PublicKey } from "./_keys.ts";
import { DecryptionError, EncryptionError } from "../errors.ts";

/** The AES-GCM nonce length. */
export const NONCE_LENGTH = 12;
// A sending chain stops one short of the u32 limit, so a receiver's count
// (one past the last message number) always fits in a u32 too.
/** The highest message number a chain uses. */
export const MAX_MESSAGE_NUMBER = 0xfffffffe;
const MESSAGE_INFO = new TextEncoder().encode("DIM-v1 ratchet message");
const ZERO_SALT = new Uint8Array(32);
const MESSAGE_KEY_INPUT = new Uint8Array([0x01]);
const CHAIN_KEY_INPUT = new Uint8Array([0x02]);

/**
 * X25519 of each raw private key with one raw public key; throws
 * `RangeError` on an all-zero result, and then zeroes every output that was
 * computed. It computes on the calling thread (see `x25519`), and is async
 * only so that each failure reaches its caller as a rejection.
 */
// deno-lint-ignore require-await
export async function dh(privateKeys: Uint8Array[], publicKey: Uint8Array): Promise<Uint8Array[]> {
  const pub = x25519PublicKey(publicKey);
  return x25519Each(privateKeys.map((k) => [x25519PrivateKey(k), pub] as const));
}

/**
 * KDF_RK: HKDF-SHA-256 keyed by the root key over a DH output, split into
 * `count` 32-byte keys (new root key, chain key[, next header key]). The DH
 * output is zeroed.
 */
export function kdfRoot(
  rootKey: Uint8Array,
  dhOutput: Uint8Array,
  info: Uint8Array,
  count: number,
): Uint8Array[] {
  const out = hkdfNow(dhOutput, rootKey, info, 32 * count);
  dhOutput.fill(0);
  const keys: Uint8Array[] = [];
  for (let i = 0; i < count; i++) keys.push(out.slice(32 * i, 32 * i + 32));
  out.fill(0);
  return keys;
}

/** KDF_CK: [next chain key, message key]. */
export function kdfChain(chainKey: Uint8Array): [Uint8Array, Uint8Array] {
  return [hmac(sha256, chainKey, CHAIN_KEY_INPUT), hmac(sha256, chainKey, MESSAGE_KEY_INPUT)];
}

/**
 * The chain key `steps` KDF_CK steps after `chainKey`, without the message
 * keys of the steps between.
 */
export function chainKeyAfter(chainKey: Uint8Array, steps: number): Uint8Array {
  let key = chainKey;
  for (let i = 0; i < steps; i++) key = hmac(sha256, key, CHAIN_KEY_INPUT);
  return key;
}

/** The associated data of a message body: `adLength u32 | AD | header`. */
export function aeadData(associatedData: Uint8Array, header: Uint8Array): Uint8Array<ArrayBuffer> {
  return concat(u32(associatedData.length), associatedData, header);
}

/** The AES-256-GCM key (32 bytes) and nonce (12) of a message key; zero it after use. */
function messageCipher(messageKey: Uint8Array): Uint8Array {
  return hkdfNow(messageKey, ZERO_SALT, MESSAGE_INFO, 32 + NONCE_LENGTH);
}

/** Seals a body with a message key (which it zeroes); failures are {@linkcode EncryptionError}. */
export async function sealBody(
  messageKey: Uint8Array,
  plaintext: Uint8Array,
  ad: Uint8Array,
): Promise<Uint8Array<ArrayBuffer>> {
  const okm = messageCipher(messageKey);
  messageKey.fill(0);
  try {
    return await gcmSeal(okm.subarray(0, 32), okm.subarray(32), plaintext, ad);
  } catch (cause) {
    throw new EncryptionError("Cannot encrypt: AES-GCM encryption failed", { cause });
  } finally {
    okm.fill(0);
  }
}

/** Opens a body with one message key; any failure is the uniform {@linkcode DecryptionError}. */
export async function openBody(
  messageKey: Uint8Array,
  sealed: Uint8Array,
  ad: Uint8Array,
): Promise<Uint8Array<ArrayBuffer>> {
  const okm = messageCipher(messageKey);
  try {
    return await gcmOpen(okm.subarray(0, 32), okm.subarray(32), sealed, ad);
  } catch {
    throw new DecryptionError();
  } finally {
    okm.fill(0);
  }
}
