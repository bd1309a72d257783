/**
 * SHA-256 and HKDF-SHA-256 on the calling thread through `node:crypto`: for
 * a message-sized input (1.2 KB) SHA-256 takes 1.8 µs here, against 6.2 µs
 * for `@noble/hashes` and a round trip through WebCrypto's thread pool; an
 * HKDF of a 32-byte key to 44 bytes 5–6 µs, against 11–13 µs. (HMAC of a
 * few bytes is faster in `@noble/hashes`: 5 µs against 7–8 µs.)
 *
 * @example The digest of "abc" (FIPS 180-2, appendix B.1)
 * ```ts
 * import assert from "node:assert/strict";
 * import { sha256Now } from "./_digest.ts";
 *
 * const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
 * assert.equal(
 *   hex(sha256Now(new TextEncoder().encode("abc"))),
 *   "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
 * );
 * ```
 *
 * @module
 */
import { createHash, hkdfSync } from "node:crypto";

/**
 * SHA-256 of `bytes`, computed at once on this thread.
 *
 * @param bytes The input.
 * @returns The 32-byte digest.
 */
export function sha256Now(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(32);
  out.set(createHash("sha256").update(bytes).digest());
  return out;
}

/**
 * HKDF-SHA-256 (RFC 5869) of `ikm` with `salt` and `info`, computed at once
 * on this thread.
 *
 * @param ikm The input keying material.
 * @param salt The salt (an empty one stands for 32 zero bytes).
 * @param info The context.
 * @param length The output length, at most 8,160 bytes.
 * @returns `length` bytes of output keying material.
 */
export function hkdfNow(
  ikm: Uint8Array,
  salt: Uint8Array,
  info: Uint8Array,
  length: number,
): Uint8Array<ArrayBuffer> {
  return new Uint8Array(hkdfSync("sha256", ikm, salt, info, length));
}
