// WebCrypto key import/export for raw 32-byte X25519 and Ed25519 keys, the
// one key-length check and the one X25519 of lib/crypto. Private to DIM.
import { concat } from "../platform/bytes.ts";

// The RFC 8410 PKCS#8 prefix of a 32-byte private key (the "seed"); the
// two curves differ only in the last byte of their OID (1.3.101.110 and .112).
function pkcs8Prefix(curveOid: number): Uint8Array {
  // deno-fmt-ignore
  return new Uint8Array([
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06,
    0x03, 0x2b, 0x65, curveOid, 0x04, 0x22, 0x04, 0x20,
  ]);
}
const X25519_PKCS8_PREFIX = pkcs8Prefix(0x6e);
const ED25519_PKCS8_PREFIX = pkcs8Prefix(0x70);

/** Length of every raw key DIM handles (Ed25519 and X25519 public keys and seeds). */
export const KEY_LENGTH = 32;

/**
 * Throws a `TypeError` unless `bytes` is a 32-byte key: "Cannot <action>
 * <what>: expected 32 bytes, got <n>". The one key-length check of lib/crypto.
 */
export function checkKeyLength(bytes: Uint8Array, what: string, action = "use"): void {
  if (!(bytes instanceof Uint8Array) || bytes.length !== KEY_LENGTH) {
    throw new TypeError(
      `Cannot ${action} ${what}: expected ${KEY_LENGTH} bytes, got ${bytes?.length}`,
    );
  }
}

// A 32-byte private key (seed) as a WebCrypto key, through its PKCS#8 form.
function importSeed(
  seed: Uint8Array,
  curve: "X25519" | "Ed25519",
  usage: KeyUsage,
  extractable: boolean,
): Promise<CryptoKey> {
  checkKeyLength(seed, `${curve} private key`, "import");
  const prefix = curve === "X25519" ? X25519_PKCS8_PREFIX : ED25519_PKCS8_PREFIX;
  return crypto.subtle.importKey("pkcs8", concat(prefix, seed), { name: curve }, extractable, [
    usage,
  ]);
}

/** Imports a 32-byte X25519 private key for `deriveBits`. */
export function importX25519Private(seed: Uint8Array, extractable = false): Promise<CryptoKey> {
  return importSeed(seed, "X25519", "deriveBits", extractable);
}

/** Imports a 32-byte X25519 public key. */
export function importX25519Public(raw: Uint8Array): Promise<CryptoKey> {
  checkKeyLength(raw, "X25519 public key", "import");
  return crypto.subtle.importKey("raw", new Uint8Array(raw), { name: "X25519" }, true, []);
}

/** Imports a 32-byte Ed25519 private key (seed) for signing. */
export function importEd25519Private(seed: Uint8Array, extractable = false): Promise<CryptoKey> {
  return importSeed(seed, "Ed25519", "sign", extractable);
}

/** Imports a 32-byte Ed25519 public key for verifying. */
export function importEd25519Public(raw: Uint8Array): Promise<CryptoKey> {
  checkKeyLength(raw, "Ed25519 public key", "import");
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

/**
 * X25519 with the all-zero check of RFC 7748 §6.1 (required by RFC 9180
 * §7.1.4): a low-order public key would otherwise give a shared secret
 * anyone can compute. WebCrypto's X25519 already refuses an all-zero
 * result; the check stays so the property does not depend on the runtime.
 * Every Diffie-Hellman in lib/crypto (HPKE, X3DH, the ratchet) goes through it.
 *
 * @throws {RangeError} If the shared point is all zeros.
 * @throws {DOMException} If WebCrypto refuses the keys.
 */
export async function x25519(
  privateKey: CryptoKey,
  publicKey: CryptoKey,
): Promise<Uint8Array<ArrayBuffer>> {
  const out = new Uint8Array(
    await crypto.subtle.deriveBits({ name: "X25519", public: publicKey }, privateKey, 256),
  );
  let acc = 0;
  for (const b of out) acc |= b;
  if (acc === 0) throw new RangeError("Cannot complete X25519: the shared point is all zeros");
  return out;
}

/** Generates 32 random bytes. */
export function randomSeed(): Uint8Array<ArrayBuffer> {
  return crypto.getRandomValues(new Uint8Array(KEY_LENGTH));
}
