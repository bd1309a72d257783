/**
 * The synchronous SHA-256 and HKDF and the user ID decoder's memory: the
 * same answers as the published vectors, the JavaScript hash and decoding
 * afresh.
 */
import assert from "node:assert/strict";
import { hkdf } from "@noble/hashes/hkdf.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { hkdfNow, sha256Now } from "../../lib/crypto/_digest.ts";
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

const fromHex = (hex: string) => new Uint8Array(hex.match(/../g)!.map((b) => parseInt(b, 16)));

Deno.test("hkdfNow gives RFC 5869's test cases 1 and 3 and @noble/hashes' output", () => {
  // RFC 5869, Appendix A.1 (basic) and A.3 (no salt, no info).
  const ikm = new Uint8Array(22).fill(0x0b);
  assert.deepEqual(
    hkdfNow(ikm, fromHex("000102030405060708090a0b0c"), fromHex("f0f1f2f3f4f5f6f7f8f9"), 42),
    fromHex(
      "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
    ),
  );
  assert.deepEqual(
    hkdfNow(ikm, new Uint8Array(0), new Uint8Array(0), 42),
    fromHex(
      "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
    ),
  );
  for (const length of [1, 32, 44, 64, 96, 255]) {
    const key = crypto.getRandomValues(new Uint8Array(32));
    const salt = crypto.getRandomValues(new Uint8Array(32));
    const info = crypto.getRandomValues(new Uint8Array(length % 40));
    assert.deepEqual(hkdfNow(key, salt, info, length), hkdf(sha256, key, salt, info, length));
  }
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
