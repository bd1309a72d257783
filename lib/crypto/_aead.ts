// AES-256-GCM for lib/crypto, by the fastest path for the input's size.
// Private to DIM.
//
// Deno's WebCrypto hands each call to a thread-pool thread and back, which
// costs 12–25 µs on an idle machine (50–110 µs under load) whatever the size,
// but then encrypts at about 1 GB/s. Deno's `node:crypto` cipher runs on the
// calling thread with no hand-off but at about 250 MB/s. Measured on the
// 2-core bench machine (`deno bench`, 2026-12-06), encrypt, min … avg:
//
//   size     node:crypto        WebCrypto (import + encrypt)
//   1 KiB     6 …  14 µs        13 …  23 µs
//   4 KiB    18 …  23 µs        15 …  28 µs
//   8 KiB    32 …  39 µs        18 …  38 µs
//   16 KiB   63 …  72 µs        24 …  40 µs
//
// so inputs up to SYNC_LIMIT bytes take node:crypto and larger ones WebCrypto.
// Both are the same AES-256-GCM (a 12-byte nonce, a 16-byte tag appended to
// the ciphertext): the bytes on the wire do not depend on the path. An
// `@noble/ciphers` AES-GCM was slower than both at every size (28 µs at
// 1 KiB, 265 µs at 16 KiB).
import { createCipheriv, createDecipheriv, type KeyObject } from "node:crypto";

/** Inputs up to this many bytes are sealed and opened on the calling thread. */
export const SYNC_LIMIT = 4096;
/** The AES-GCM tag length in bytes. */
export const GCM_TAG_LENGTH = 16;

/**
 * AES-256-GCM seal on the calling thread (`node:crypto`): ciphertext with
 * its 16-byte tag appended. For small inputs, and for callers that must not
 * wait (the history, sealed inside synchronous transactions).
 *
 * @throws If the key is not 32 bytes or the nonce not 12 (the caller wraps it).
 */
export function gcmSealSync(
  key: Uint8Array | KeyObject,
  nonce: Uint8Array,
  plaintext: Uint8Array,
  additionalData: Uint8Array,
): Uint8Array<ArrayBuffer> {
  const cipher = createCipheriv("aes-256-gcm", key, nonce, { authTagLength: GCM_TAG_LENGTH });
  cipher.setAAD(additionalData);
  const body = cipher.update(plaintext);
  const last = cipher.final();
  const tag = cipher.getAuthTag();
  const out = new Uint8Array(body.length + last.length + GCM_TAG_LENGTH);
  out.set(body);
  out.set(last, body.length);
  out.set(tag, body.length + last.length);
  return out;
}

/**
 * AES-256-GCM open on the calling thread (`node:crypto`) of a ciphertext
 * with its tag appended; the unauthenticated plaintext is zeroed on failure.
 *
 * @throws If the tag does not verify, the input is shorter than a tag, or
 *   the key or nonce has the wrong length.
 */
export function gcmOpenSync(
  key: Uint8Array | KeyObject,
  nonce: Uint8Array,
  sealed: Uint8Array,
  additionalData: Uint8Array,
): Uint8Array<ArrayBuffer> {
  if (sealed.length < GCM_TAG_LENGTH) throw new RangeError("AES-GCM input shorter than its tag");
  const length = sealed.length - GCM_TAG_LENGTH;
  const decipher = createDecipheriv("aes-256-gcm", key, nonce, {
    authTagLength: GCM_TAG_LENGTH,
  });
  decipher.setAAD(additionalData);
  decipher.setAuthTag(sealed.subarray(length));
  const body = decipher.update(sealed.subarray(0, length));
  let last: Uint8Array;
  try {
    last = decipher.final(); // throws unless the tag verifies
  } catch (error) {
    body.fill(0); // unauthenticated plaintext
    throw error;
  }
  const out = new Uint8Array(body.length + last.length);
  out.set(body);
  out.set(last, body.length);
  return out;
}

/**
 * AES-256-GCM seal: ciphertext with its 16-byte tag appended.
 *
 * @throws If the key is not 32 bytes or the nonce not 12 (the caller wraps it).
 */
export async function gcmSeal(
  key: Uint8Array,
  nonce: Uint8Array,
  plaintext: Uint8Array,
  additionalData: Uint8Array,
): Promise<Uint8Array<ArrayBuffer>> {
  if (plaintext.length <= SYNC_LIMIT) return gcmSealSync(key, nonce, plaintext, additionalData);
  return await webGcm("encrypt", key, nonce, plaintext, additionalData);
}

/**
 * AES-256-GCM open of a ciphertext with its tag appended.
 *
 * @throws If the tag does not verify, the input is shorter than a tag, or
 *   the key or nonce has the wrong length (the caller maps every failure to
 *   its one uniform error).
 */
export async function gcmOpen(
  key: Uint8Array,
  nonce: Uint8Array,
  sealed: Uint8Array,
  additionalData: Uint8Array,
): Promise<Uint8Array<ArrayBuffer>> {
  if (sealed.length < GCM_TAG_LENGTH) throw new RangeError("AES-GCM input shorter than its tag");
  if (sealed.length - GCM_TAG_LENGTH <= SYNC_LIMIT) {
    return gcmOpenSync(key, nonce, sealed, additionalData);
  }
  return await webGcm("decrypt", key, nonce, sealed, additionalData);
}

// WebCrypto's AES-GCM, for large inputs.
async function webGcm(
  operation: "encrypt" | "decrypt",
  key: Uint8Array,
  nonce: Uint8Array,
  data: Uint8Array,
  additionalData: Uint8Array,
): Promise<Uint8Array<ArrayBuffer>> {
  const cryptoKey = await crypto.subtle.importKey(
    "raw",
    key as Uint8Array<ArrayBuffer>,
    { name: "AES-GCM" },
    false,
    [operation],
  );
  const params = {
    name: "AES-GCM",
    iv: nonce as Uint8Array<ArrayBuffer>,
    additionalData: additionalData as Uint8Array<ArrayBuffer>,
  };
  const input = data as Uint8Array<ArrayBuffer>;
  return new Uint8Array(
    operation === "encrypt"
      ? await crypto.subtle.encrypt(params, cryptoKey, input)
      : await crypto.subtle.decrypt(params, cryptoKey, input),
  );
}
