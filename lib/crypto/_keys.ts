// WebCrypto key import/export for raw 32-byte X25519 and Ed25519 keys. Private to DIM.
import { concat } from "../platform/bytes.ts";

// RFC 8410 PKCS#8 prefixes for a 32-byte private key (the "seed").
const ED25519_PKCS8_PREFIX = new Uint8Array([
  0x30,
  0x2e,
  0x02,
  0x01,
  0x00,
  0x30,
  0x05,
  0x06,
  0x03,
  0x2b,
  0x65,
  0x70,
  0x04,
  0x22,
  0x04,
  0x20,
]);
const X25519_PKCS8_PREFIX = new Uint8Array([
  0x30,
  0x2e,
  0x02,
  0x01,
  0x00,
  0x30,
  0x05,
  0x06,
  0x03,
  0x2b,
  0x65,
  0x6e,
  0x04,
  0x22,
  0x04,
  0x20,
]);

/** Length of every raw key DIM handles (Ed25519 and X25519 public keys and seeds). */
export const KEY_LENGTH = 32;

function checkLength(raw: Uint8Array, what: string): void {
  if (raw.length !== KEY_LENGTH) {
    throw new TypeError(`Cannot import ${what}: expected ${KEY_LENGTH} bytes, got ${raw.length}`);
  }
}

/** Imports a 32-byte X25519 private key for `deriveBits`. */
export function importX25519Private(seed: Uint8Array, extractable = false): Promise<CryptoKey> {
  checkLength(seed, "X25519 private key");
  return crypto.subtle.importKey(
    "pkcs8",
    concat(X25519_PKCS8_PREFIX, seed),
    { name: "X25519" },
    extractable,
    ["deriveBits"],
  );
}

/** Imports a 32-byte X25519 public key. */
export function importX25519Public(raw: Uint8Array): Promise<CryptoKey> {
  checkLength(raw, "X25519 public key");
  return crypto.subtle.importKey("raw", new Uint8Array(raw), { name: "X25519" }, true, []);
}

/** Imports a 32-byte Ed25519 private key (seed) for signing. */
export function importEd25519Private(seed: Uint8Array, extractable = false): Promise<CryptoKey> {
  checkLength(seed, "Ed25519 private key");
  return crypto.subtle.importKey(
    "pkcs8",
    concat(ED25519_PKCS8_PREFIX, seed),
    { name: "Ed25519" },
    extractable,
    ["sign"],
  );
}

/** Imports a 32-byte Ed25519 public key for verifying. */
export function importEd25519Public(raw: Uint8Array): Promise<CryptoKey> {
  checkLength(raw, "Ed25519 public key");
  return crypto.subtle.importKey("raw", new Uint8Array(raw), { name: "Ed25519" }, true, ["verify"]);
}

function fromBase64Url(s: string): Uint8Array<ArrayBuffer> {
  const b64 = s.replace(/-/g, "+").replace(/_/g, "/");
  const bin = atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/**
 * The raw public key and seed of an extractable OKP private key (X25519 or
 * Ed25519), read from its JWK form.
 */
export async function exportOkpPrivate(
  key: CryptoKey,
): Promise<{ publicKey: Uint8Array<ArrayBuffer>; seed: Uint8Array<ArrayBuffer> }> {
  const jwk = await crypto.subtle.exportKey("jwk", key);
  if (typeof jwk.x !== "string" || typeof jwk.d !== "string") {
    throw new TypeError("Cannot export key: not an OKP private key");
  }
  return { publicKey: fromBase64Url(jwk.x), seed: fromBase64Url(jwk.d) };
}

/** Generates 32 random bytes. */
export function randomSeed(): Uint8Array<ArrayBuffer> {
  return crypto.getRandomValues(new Uint8Array(KEY_LENGTH));
}
