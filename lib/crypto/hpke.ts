/**
 * Hybrid Public Key Encryption (RFC 9180) in base mode, for the one suite
 * DIM uses: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256 and AES-128-GCM.
 *
 * A sender who knows only a recipient's raw X25519 public key sets up a
 * context and gets `enc` (its ephemeral public key, 32 bytes) to send along;
 * the recipient sets up the matching context from `enc` and its key pair.
 * Each context seals or opens a sequence of messages (the nonce advances
 * with every message) and can export secrets bound to the exchange.
 * `sealBase` and `openBase` do setup and one message in a single call.
 *
 * X25519 and key generation come from `node:crypto` (on the calling
 * thread), AES-GCM from `node:crypto` for small inputs and WebCrypto for
 * large ones; HKDF comes from `@noble/hashes`, because HPKE's key schedule
 * extracts and expands in separate steps, which WebCrypto's HKDF cannot do. The implementation
 * passes the RFC 9180 Appendix A.1 test vectors.
 *
 * What does not depend on the message is computed once: the hash of each
 * (small) `info`, and the imported form of the last 256 recipient public
 * keys sealed to.
 *
 * @example Seal a message for a key pair and open it
 * ```ts
 * import { generateKeyPair, openBase, sealBase } from "./hpke.ts";
 *
 * const bob = await generateKeyPair();
 * const info = new TextEncoder().encode("example app v1");
 * const sealed = await sealBase(bob.publicKey, new TextEncoder().encode("hi Bob"), { info });
 * const plaintext = await openBase(bob, sealed, { info });
 * if (new TextDecoder().decode(plaintext) !== "hi Bob") throw new Error("round trip failed");
 * ```
 *
 * @module
 */
import { exportOkpPrivate, importX25519Private, KEY_LENGTH } from "./_keys.ts";
import {
  deriveSecretKey,
  ENC_LENGTH,
  generateKeyPair as generateX25519KeyPair,
  MODE_BASE,
  setupRecipient,
  setupSender,
  TAG_LENGTH,
} from "./_hpke_schedule.ts";
import { DecryptionError, EncryptionError } from "../errors.ts";

/** Length of `enc` (the sender's ephemeral X25519 public key) in bytes. */
export const HPKE_ENC_LENGTH: number = ENC_LENGTH;
/** Bytes a sealed message is longer than its plaintext (the AES-GCM tag). */
export const HPKE_TAG_LENGTH: number = TAG_LENGTH;

const EMPTY = new Uint8Array(0);

/** An X25519 key pair as HPKE uses it. Holds secret material: never log it. */
export interface HpkeKeyPair {
  /** The private key, usable for `deriveBits`. */
  readonly privateKey: CryptoKey;
  /** The raw 32-byte public key. */
  readonly publicKey: Uint8Array;
}

/** The sender's side of an HPKE exchange. */
export interface HpkeSenderContext {
  /**
   * Encrypts the next message of the sequence.
   *
   * @param plaintext The message.
   * @param aad Additional data authenticated but not encrypted; empty by default.
   * @returns The ciphertext, {@linkcode HPKE_TAG_LENGTH} bytes longer than the plaintext.
   * @throws {EncryptionError} If the context's message limit is reached or AES-GCM fails.
   */
  seal(plaintext: Uint8Array, aad?: Uint8Array): Promise<Uint8Array<ArrayBuffer>>;
  /**
   * Derives a secret bound to this exchange (RFC 9180 §5.3).
   *
   * @param exporterContext What the secret is for.
   * @param length How many bytes to derive, 1 to 8160.
   * @returns The secret.
   * @throws {RangeError} If `length` is out of range.
   */
  export(exporterContext: Uint8Array, length: number): Uint8Array<ArrayBuffer>;
}

/** The recipient's side of an HPKE exchange. */
export interface HpkeRecipientContext {
  /**
   * Decrypts the next message of the sequence. Calls are served in order,
   * and a failed open does not advance the sequence.
   *
   * @param ciphertext The sealed message.
   * @param aad The additional data it was sealed with; empty by default.
   * @returns The plaintext.
   * @throws {DecryptionError} If the message is not authentic for this context.
   */
  open(ciphertext: Uint8Array, aad?: Uint8Array): Promise<Uint8Array<ArrayBuffer>>;
  /**
   * Derives a secret bound to this exchange (RFC 9180 §5.3); the sender gets the same one.
   *
   * @param exporterContext What the secret is for.
   * @param length How many bytes to derive, 1 to 8160.
   * @returns The secret.
   * @throws {RangeError} If `length` is out of range.
   */
  export(exporterContext: Uint8Array, length: number): Uint8Array<ArrayBuffer>;
}

/** Options of {@linkcode setupBaseS}. */
export interface SetupBaseSOptions {
  /** Application info bound into the keys; both sides must use the same. Default: empty. */
  readonly info?: Uint8Array;
  /**
   * The ephemeral key pair to use instead of a fresh one. Only for
   * reproducing test vectors: reusing an ephemeral key breaks security.
   */
  readonly ephemeral?: HpkeKeyPair;
}

/** Options of {@linkcode setupBaseR}. */
export interface SetupBaseROptions {
  /** Application info the sender used. Default: empty. */
  readonly info?: Uint8Array;
}

/** Options of {@linkcode sealBase}. */
export interface SealBaseOptions extends SetupBaseSOptions {
  /** Additional data authenticated but not encrypted. Default: empty. */
  readonly aad?: Uint8Array;
}

/** Options of {@linkcode openBase}. */
export interface OpenBaseOptions extends SetupBaseROptions {
  /** The additional data the message was sealed with. Default: empty. */
  readonly aad?: Uint8Array;
}

/** A single-shot sealed message: what the recipient needs besides its key. */
export interface HpkeSealed {
  /** The sender's ephemeral public key, {@linkcode HPKE_ENC_LENGTH} bytes. */
  readonly enc: Uint8Array;
  /** The AES-GCM ciphertext with its tag. */
  readonly ciphertext: Uint8Array;
}

/**
 * Generates a fresh X25519 key pair. The private key is not extractable.
 *
 * @returns The key pair.
 * @example
 * ```ts
 * import { generateKeyPair } from "./hpke.ts";
 * const pair = await generateKeyPair();
 * if (pair.publicKey.length !== 32) throw new Error("public key is not raw X25519");
 * ```
 */
export function generateKeyPair(): Promise<HpkeKeyPair> {
  return generateX25519KeyPair();
}

/**
 * Derives an X25519 key pair deterministically from input keying material
 * (RFC 9180 §7.1.3 DeriveKeyPair). The private key is not extractable.
 *
 * @param ikm At least 32 bytes of secret, uniformly random input.
 * @returns The key pair; the same `ikm` always gives the same pair.
 * @throws {RangeError} If `ikm` is shorter than 32 bytes.
 * @example
 * ```ts
 * import { deriveKeyPair } from "./hpke.ts";
 * const ikm = crypto.getRandomValues(new Uint8Array(32));
 * const a = await deriveKeyPair(ikm);
 * const b = await deriveKeyPair(ikm);
 * if (!a.publicKey.every((byte, i) => byte === b.publicKey[i])) throw new Error("not deterministic");
 * ```
 */
export async function deriveKeyPair(ikm: Uint8Array): Promise<HpkeKeyPair> {
  if (ikm.length < KEY_LENGTH) {
    throw new RangeError(`Cannot derive key pair: ikm must be at least ${KEY_LENGTH} bytes`);
  }
  const sk = deriveSecretKey(ikm);
  const [{ publicKey }, privateKey] = await Promise.all([
    importX25519Private(sk, true).then(exportOkpPrivate),
    importX25519Private(sk),
  ]);
  sk.fill(0);
  return { privateKey, publicKey };
}

function checkKeyPair(pair: HpkeKeyPair, action: string): void {
  if (pair.publicKey.length !== KEY_LENGTH) {
    throw new TypeError(`Cannot ${action}: key pair's public key must be ${KEY_LENGTH} bytes`);
  }
}

/**
 * Sets up the sender's context for a recipient (RFC 9180 SetupBaseS).
 *
 * @param recipientPublicKey The recipient's raw 32-byte X25519 public key.
 * @param options `info` bound into the keys (default empty); `ephemeral` for tests only.
 * @returns `enc`, which the recipient needs, and the context to seal with.
 * @throws {EncryptionError} If the recipient key is not 32 bytes or not a usable X25519 key.
 * @throws {TypeError} If `options.ephemeral` has a public key that is not 32 bytes.
 * @example
 * ```ts
 * import { generateKeyPair, setupBaseR, setupBaseS } from "./hpke.ts";
 *
 * const bob = await generateKeyPair();
 * const { enc, context } = await setupBaseS(bob.publicKey);
 * const first = await context.seal(new Uint8Array([1]));
 * const second = await context.seal(new Uint8Array([2]));
 *
 * const receiver = await setupBaseR(enc, bob);
 * if ((await receiver.open(first))[0] !== 1) throw new Error("first message lost");
 * if ((await receiver.open(second))[0] !== 2) throw new Error("second message lost");
 * ```
 */
export async function setupBaseS(
  recipientPublicKey: Uint8Array,
  options: SetupBaseSOptions = {},
): Promise<{ enc: Uint8Array<ArrayBuffer>; context: HpkeSenderContext }> {
  if (recipientPublicKey.length !== KEY_LENGTH) {
    throw new EncryptionError(
      `Cannot seal: recipient public key must be ${KEY_LENGTH} bytes, got ${recipientPublicKey.length}`,
    );
  }
  if (options.ephemeral !== undefined) checkKeyPair(options.ephemeral, "seal");
  try {
    const { enc, context } = await setupSender({
      mode: MODE_BASE,
      recipientPublicKey,
      info: options.info ?? EMPTY,
      ephemeral: options.ephemeral,
    });
    return { enc, context };
  } catch (cause) {
    throw new EncryptionError("Cannot seal: recipient public key is not a usable X25519 key", {
      cause,
    });
  }
}

/**
 * Sets up the recipient's context from the sender's `enc` (RFC 9180
 * SetupBaseR). It takes the whole key pair because the public key is part
 * of the key derivation and a non-extractable private key cannot give it.
 *
 * @param enc The sender's 32-byte `enc`.
 * @param recipientKey The recipient's key pair.
 * @param options `info`, the same the sender used (default empty).
 * @returns The context to open with.
 * @throws {DecryptionError} If `enc` is malformed or not a usable X25519 key.
 * @throws {TypeError} If `recipientKey.publicKey` is not 32 bytes.
 * @example
 * ```ts
 * import { generateKeyPair, setupBaseR, setupBaseS } from "./hpke.ts";
 *
 * const bob = await generateKeyPair();
 * const { enc, context } = await setupBaseS(bob.publicKey);
 * const receiver = await setupBaseR(enc, bob);
 * const label = new TextEncoder().encode("session id");
 * const mine = context.export(label, 16);
 * const theirs = receiver.export(label, 16);
 * if (!mine.every((byte, i) => byte === theirs[i])) throw new Error("exports differ");
 * ```
 */
export async function setupBaseR(
  enc: Uint8Array,
  recipientKey: HpkeKeyPair,
  options: SetupBaseROptions = {},
): Promise<HpkeRecipientContext> {
  checkKeyPair(recipientKey, "open");
  try {
    const { context } = await setupRecipient({
      mode: MODE_BASE,
      enc,
      recipient: recipientKey,
      info: options.info ?? EMPTY,
    });
    return context;
  } catch (cause) {
    throw new DecryptionError({ cause });
  }
}

/**
 * Seals one message for a recipient (RFC 9180 SealBase).
 *
 * @param recipientPublicKey The recipient's raw 32-byte X25519 public key.
 * @param plaintext The message.
 * @param options `info` and `aad` (both default empty); `ephemeral` for tests only.
 * @returns `enc` and the ciphertext; send both.
 * @throws {EncryptionError} If the recipient key is not usable or encryption fails.
 * @throws {TypeError} If `options.ephemeral` has a public key that is not 32 bytes.
 * @example
 * ```ts
 * import { generateKeyPair, HPKE_ENC_LENGTH, HPKE_TAG_LENGTH, sealBase } from "./hpke.ts";
 * const bob = await generateKeyPair();
 * const sealed = await sealBase(bob.publicKey, new Uint8Array(10));
 * if (sealed.enc.length !== HPKE_ENC_LENGTH) throw new Error("unexpected enc length");
 * if (sealed.ciphertext.length !== 10 + HPKE_TAG_LENGTH) throw new Error("unexpected length");
 * ```
 */
export async function sealBase(
  recipientPublicKey: Uint8Array,
  plaintext: Uint8Array,
  options: SealBaseOptions = {},
): Promise<{ enc: Uint8Array<ArrayBuffer>; ciphertext: Uint8Array<ArrayBuffer> }> {
  const { enc, context } = await setupBaseS(recipientPublicKey, options);
  return { enc, ciphertext: await context.seal(plaintext, options.aad ?? EMPTY) };
}

/**
 * Opens one message sealed with {@linkcode sealBase} (RFC 9180 OpenBase).
 *
 * @param recipientKey The recipient's key pair.
 * @param sealed `enc` and the ciphertext.
 * @param options `info` and `aad`, the same the sender used (both default empty).
 * @returns The plaintext.
 * @throws {DecryptionError} If the message is not authentic or not for this key.
 * @throws {TypeError} If `recipientKey.publicKey` is not 32 bytes.
 * @example
 * ```ts
 * import { DecryptionError } from "../errors.ts";
 * import { generateKeyPair, openBase, sealBase } from "./hpke.ts";
 *
 * const bob = await generateKeyPair();
 * const eve = await generateKeyPair();
 * const aad = new Uint8Array([7]);
 * const sealed = await sealBase(bob.publicKey, new Uint8Array([42]), { aad });
 * if ((await openBase(bob, sealed, { aad }))[0] !== 42) throw new Error("round trip failed");
 * const failure = await openBase(eve, sealed, { aad }).catch((err) => err);
 * if (!(failure instanceof DecryptionError)) throw new Error("Eve opened Bob's message");
 * ```
 */
export async function openBase(
  recipientKey: HpkeKeyPair,
  sealed: HpkeSealed,
  options: OpenBaseOptions = {},
): Promise<Uint8Array<ArrayBuffer>> {
  const context = await setupBaseR(sealed.enc, recipientKey, options);
  return await context.open(sealed.ciphertext, options.aad ?? EMPTY);
}
