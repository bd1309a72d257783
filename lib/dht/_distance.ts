/**
 * Kademlia's XOR metric, as kad-dht measures it: the one place DIM's DHT
 * code computes positions and distances in the key space.
 *
 * A key's or peer's position is SHA-256 of its bytes (a peer's: of its
 * peer ID multihash); the distance of two positions is their bytewise XOR,
 * compared as a big-endian number ({@linkcode compareBytes} of
 * `lib/platform/bytes.ts` on two 32-byte distances).
 *
 * @module
 */
import { sha256 } from "@noble/hashes/sha2.js";

/**
 * The position of a key or peer in the DHT key space, as kad-dht computes
 * it: SHA-256 of the key bytes, or of the peer ID's multihash.
 *
 * @param bytes Key bytes or a peer ID multihash.
 * @returns 32 bytes.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { kadId } from "./_distance.ts";
 *
 * assert.equal(kadId(new TextEncoder().encode("/dim/card/x")).length, 32);
 * ```
 */
export function kadId(bytes: Uint8Array): Uint8Array {
  return sha256(bytes);
}

/**
 * The XOR distance of two positions.
 *
 * @param a A position.
 * @param b Another position of the same length.
 * @returns A new array, `a[i] ^ b[i]`.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { xorDistance } from "./_distance.ts";
 *
 * assert.deepEqual(xorDistance(new Uint8Array([3, 1]), new Uint8Array([1, 1])), new Uint8Array([2, 0]));
 * ```
 */
export function xorDistance(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = (a[i] ?? 0) ^ (b[i] ?? 0);
  return out;
}

/**
 * Compares the distances of `a` and `b` to `target` without building them
 * (the routing table ranks many peers per request).
 *
 * @param a A position.
 * @param b Another position.
 * @param target The position distances are measured from.
 * @returns Negative if `a` is closer to `target`, positive if `b` is, 0 if equal.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { compareXor } from "./_distance.ts";
 *
 * const target = new Uint8Array([0, 0]);
 * assert.ok(compareXor(new Uint8Array([0, 9]), new Uint8Array([1, 0]), target) < 0);
 * ```
 */
export function compareXor(a: Uint8Array, b: Uint8Array, target: Uint8Array): number {
  for (let i = 0; i < target.length; i++) {
    const t = target[i] ?? 0;
    const d = ((a[i] ?? 0) ^ t) - ((b[i] ?? 0) ^ t);
    if (d !== 0) return d;
  }
  return 0;
}
