/**
 * The synchronous SHA-256 and the user ID decoder's memory: the same
 * answers as the JavaScript hash and as decoding afresh.
 */
import assert from "node:assert/strict";
import { sha256 } from "@noble/hashes/sha2.js";
import { sha256Now } from "../../lib/crypto/_digest.ts";
import { decodeUserId, encodeUserId, Identity } from "../../lib/crypto/identity.ts";
import { InvalidIdError } from "../../lib/errors.ts";

Deno.test("sha256Now gives @noble/hashes' digest for every length from 0 to 5,000 bytes", () => {
  for (let length = 0; length <= 5000; length += length < 130 ? 1 : 97) {
    const bytes = crypto.getRandomValues(new Uint8Array(length));
    assert.deepEqual(sha256Now(bytes), sha256(bytes), `${length} bytes`);
  }
  // A view into a larger buffer hashes only its own bytes.
  const big = crypto.getRandomValues(new Uint8Array(100));
  assert.deepEqual(sha256Now(big.subarray(10, 50)), sha256(big.slice(10, 50)));
});

Deno.test("decodeUserId: a remembered ID decodes to the same key, unchanged by what a caller does with an earlier answer", async () => {
  const identity = await Identity.generate();
  const id = encodeUserId(identity.signingPublicKey);
  const first = decodeUserId(id);
  assert.deepEqual(first, identity.signingPublicKey);
  first.fill(0);
  assert.deepEqual(decodeUserId(id), identity.signingPublicKey);
  // A mistyped ID is refused every time, never remembered.
  const typo = id.slice(0, -1) + (id.endsWith("a") ? "b" : "a");
  for (let i = 0; i < 2; i++) assert.throws(() => decodeUserId(typo), InvalidIdError);
  // More IDs than it keeps: the oldest are decoded afresh, with the same result.
  const ids = await Promise.all(
    Array.from({ length: 1100 }, async () => (await Identity.generate()).signingPublicKey),
  );
  for (const key of ids) assert.deepEqual(decodeUserId(encodeUserId(key)), key);
  assert.deepEqual(decodeUserId(encodeUserId(ids[0]!)), ids[0]);
});
