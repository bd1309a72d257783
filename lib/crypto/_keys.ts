// Raw 32-byte X25519 and Ed25519 keys as WebCrypto and node:crypto keys, the
// one key-length check, Ed25519 signatures and the one X25519 of lib/crypto.
// Private to DIM.
import { Buffer } from "node:buffer";
import {
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  KeyObject,
  sign as nodeSign,
  verify as nodeVerify,
} from "node:crypto";
import { concat, constantTimeEqual } from "../platform/bytes.ts";

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

/** Imports a 32-byte Ed25519 private key (seed) for signing. */
export function importEd25519Private(seed: Uint8Array, extractable = false): Promise<CryptoKey> {
  return importSeed(seed, "Ed25519", "sign", extractable);
}

// The RFC 8410 SubjectPublicKeyInfo prefix of a raw Ed25519 public key.
// deno-fmt-ignore
const ED25519_SPKI_PREFIX = new Uint8Array([
  0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
]);

const der = (bytes: Uint8Array) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);

/**
 * A 32-byte Ed25519 private key (seed) as a `node:crypto` key, for
 * {@linkcode ed25519Sign}. Ed25519 through `node:crypto` runs on the calling
 * thread (sign 16 µs, verify 27 µs here), where each WebCrypto call also
 * waits for a hand-off to its thread pool and back (26 and 45 µs in the
 * same loop, and more under load): an acknowledgement is signed and checked
 * on every message's path. The signatures are the same bytes (Ed25519 is
 * deterministic).
 */
export function ed25519SigningKey(seed: Uint8Array): KeyObject {
  return nodePrivateKey(seed, "Ed25519");
}

// A 32-byte private key (seed) as a `node:crypto` key, through its PKCS#8 form.
function nodePrivateKey(seed: Uint8Array, curve: "X25519" | "Ed25519"): KeyObject {
  checkKeyLength(seed, `${curve} private key`, "import");
  const prefix = curve === "X25519" ? X25519_PKCS8_PREFIX : ED25519_PKCS8_PREFIX;
  const pkcs8 = concat(prefix, seed);
  try {
    return createPrivateKey({ key: der(pkcs8), format: "der", type: "pkcs8" });
  } finally {
    pkcs8.fill(0);
  }
}

/** Signs `message` with a key from {@linkcode ed25519SigningKey}: 64 bytes. */
export function ed25519Sign(key: KeyObject, message: Uint8Array): Uint8Array<ArrayBuffer> {
  return new Uint8Array(nodeSign(null, der(message), key));
}

// Public keys by their bytes: a chat checks the same few signers over and over.
const VERIFY_KEYS = new Map<string, KeyObject>();
const VERIFY_KEY_CACHE_SIZE = 256;

/**
 * Whether `signature` is a valid Ed25519 signature of `message` under the
 * raw 32-byte `publicKey` (`node:crypto`, on the calling thread). False for
 * a key that is not a valid point.
 */
export function ed25519Verify(
  publicKey: Uint8Array,
  message: Uint8Array,
  signature: Uint8Array,
): boolean {
  const id = Buffer.from(publicKey.buffer, publicKey.byteOffset, publicKey.length)
    .toString("base64");
  let key = VERIFY_KEYS.get(id);
  if (key === undefined) {
    try {
      key = createPublicKey({
        key: der(concat(ED25519_SPKI_PREFIX, publicKey)),
        format: "der",
        type: "spki",
      });
    } catch {
      return false;
    }
    if (VERIFY_KEYS.size >= VERIFY_KEY_CACHE_SIZE) {
      VERIFY_KEYS.delete(VERIFY_KEYS.keys().next().value!);
    }
    VERIFY_KEYS.set(id, key);
  }
  return nodeVerify(null, der(message), key, der(signature));
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
 * An X25519 private key as {@linkcode x25519} takes it: a WebCrypto key (an
 * identity's) or a `node:crypto` key (from {@linkcode x25519PrivateKey}).
 */
export type X25519PrivateKey = CryptoKey | KeyObject;

// The node:crypto form of each WebCrypto key used for X25519, made once.
const NODE_KEYS = new WeakMap<CryptoKey, KeyObject>();

function nodeKey(key: X25519PrivateKey): KeyObject {
  if (!(key instanceof CryptoKey)) return key;
  let found = NODE_KEYS.get(key);
  if (found === undefined) {
    found = KeyObject.from(key);
    NODE_KEYS.set(key, found);
  }
  return found;
}

// The RFC 8410 SubjectPublicKeyInfo prefix of a raw X25519 public key.
// deno-fmt-ignore
const X25519_SPKI_PREFIX = new Uint8Array([
  0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x03, 0x21, 0x00,
]);

/**
 * A raw 32-byte X25519 public key as a `node:crypto` key, for
 * {@linkcode x25519}. Every 32-byte string encodes a point; the low-order
 * ones are refused by `x25519`.
 *
 * @throws {TypeError} If `raw` is not 32 bytes.
 */
export function x25519PublicKey(raw: Uint8Array): KeyObject {
  checkKeyLength(raw, "X25519 public key", "import");
  return createPublicKey({
    key: der(concat(X25519_SPKI_PREFIX, raw)),
    format: "der",
    type: "spki",
  });
}

/**
 * X25519 on the calling thread (`node:crypto`), with the all-zero check of
 * RFC 7748 §6.1 (required by RFC 9180 §7.1.4): a low-order public key would
 * otherwise give a shared secret anyone can compute. One X25519 takes about
 * 50 µs here; WebCrypto's took 90 µs awaited one at a time, and 250 µs for
 * four started together (against 190 µs for four here), as each call waits
 * for a hand-off to its thread pool and back. Every Diffie-Hellman in
 * lib/crypto (HPKE, X3DH, the ratchet) goes through it.
 *
 * @throws {RangeError} If the shared point is all zeros (the runtime refuses
 *   it too; either way it is this error).
 */
export function x25519(
  privateKey: X25519PrivateKey,
  publicKey: KeyObject,
): Uint8Array<ArrayBuffer> {
  let out: Uint8Array<ArrayBuffer>;
  try {
    out = new Uint8Array(diffieHellman({ privateKey: nodeKey(privateKey), publicKey }));
  } catch (cause) {
    // A 32-byte public key is always a point, so the derivation fails only
    // on the all-zero result of a low-order one.
    throw new RangeError("Cannot complete X25519: the shared point is all zeros", { cause });
  }
  let acc = 0;
  for (const b of out) acc |= b;
  if (acc === 0) throw new RangeError("Cannot complete X25519: the shared point is all zeros");
  return out;
}

/**
 * {@linkcode x25519} of each pair in turn. If one fails, the outputs
 * already computed are zeroed before its error is thrown.
 *
 * @throws {RangeError} If a shared point is all zeros.
 */
export function x25519Each(
  pairs: readonly (readonly [X25519PrivateKey, KeyObject])[],
): Uint8Array<ArrayBuffer>[] {
  const outputs: Uint8Array<ArrayBuffer>[] = [];
  try {
    for (const [privateKey, publicKey] of pairs) outputs.push(x25519(privateKey, publicKey));
  } catch (cause) {
    for (const out of outputs) out.fill(0);
    throw cause;
  }
  return outputs;
}

/** Generates 32 random bytes. */
export function randomSeed(): Uint8Array<ArrayBuffer> {
  return crypto.getRandomValues(new Uint8Array(KEY_LENGTH));
}

/** An X25519 key pair in raw form: the 32-byte private key (seed) and public key. */
export interface RawX25519KeyPair {
  /** The raw 32-byte private key. */
  readonly privateKey: Uint8Array<ArrayBuffer>;
  /** The raw 32-byte public key. */
  readonly publicKey: Uint8Array<ArrayBuffer>;
}

// The private keys of pairs made here, as node:crypto keys, with a copy of
// their bytes: a caller may overwrite a private key's array (x3dh zeroes its
// ephemeral key), and then the cached key must not be used for it.
const imported = new WeakMap<Uint8Array, { readonly seed: Uint8Array; readonly key: KeyObject }>();

// The DER prefix of a raw X25519 public key (RFC 8410 SubjectPublicKeyInfo).
const X25519_SPKI_LENGTH = 44;

/**
 * A new X25519 key pair, on the calling thread (`node:crypto`): a
 * fixed-base scalar multiplication there takes 15–22 µs, where WebCrypto's
 * export of the public key takes 50–60 µs and a hand-off to its thread
 * pool. The private key stays ready for {@linkcode x25519PrivateKey}. The
 * caller owns the returned arrays.
 */
export function newX25519KeyPair(): RawX25519KeyPair {
  const privateKey = randomSeed();
  const key = nodePrivateKey(privateKey, "X25519");
  const spki = createPublicKey(key).export({ format: "der", type: "spki" });
  if (spki.length !== X25519_SPKI_LENGTH) throw new Error("Cannot generate an X25519 key pair");
  const publicKey = new Uint8Array(spki.subarray(X25519_SPKI_LENGTH - KEY_LENGTH));
  imported.set(privateKey, { seed: new Uint8Array(privateKey), key });
  return { privateKey, publicKey };
}

/**
 * A raw 32-byte X25519 private key as a `node:crypto` key for
 * {@linkcode x25519}: the one already made if the pair came from
 * {@linkcode newX25519KeyPair} and its bytes are unchanged, else made now.
 *
 * @throws {TypeError} If `seed` is not 32 bytes.
 */
export function x25519PrivateKey(seed: Uint8Array): KeyObject {
  const hit = imported.get(seed);
  if (hit !== undefined && constantTimeEqual(hit.seed, seed)) return hit.key;
  return nodePrivateKey(seed, "X25519");
}
