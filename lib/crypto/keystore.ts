/**
 * The encrypted identity keystore: a user's two secret seeds (see
 * {@linkcode Identity.exportSeeds}), encrypted at rest under a passphrase.
 *
 * The passphrase (Unicode NFC, UTF-8) is stretched with Argon2id (RFC 9106)
 * into a 256-bit key that encrypts the seeds with AES-256-GCM. Every file has
 * its own random salt and nonce, and the whole header is the GCM additional
 * data, so the Argon2 parameters, salt and nonce cannot be changed without
 * the unlock failing.
 *
 * ## File format, version 1 (127 bytes, integers big-endian)
 *
 * | Offset | Length | Field                                          |
 * | -----: | -----: | ---------------------------------------------- |
 * |      0 |      6 | magic, ASCII `DIMKEY`                          |
 * |      6 |      1 | version, `1`                                   |
 * |      7 |      4 | Argon2id memory `m`, in KiB                    |
 * |     11 |      4 | Argon2id passes `t`                            |
 * |     15 |      4 | Argon2id lanes `p`                             |
 * |     19 |     16 | Argon2id salt                                  |
 * |     35 |     12 | AES-GCM nonce                                  |
 * |     47 |     80 | AES-256-GCM of signing seed ‖ encryption seed, |
 * |        |        | with its 16-byte tag; bytes 0–46 are the AAD   |
 *
 * A file is decoded strictly, and each failure has its own
 * {@linkcode KeystoreError} code: `truncated` if it is shorter than 127
 * bytes, `corrupt` if the magic is wrong or there are bytes after the end,
 * `unsupported-version`, and `parameters-out-of-range` if the Argon2
 * parameters lie outside {@linkcode MIN_ARGON2_PARAMS} and
 * {@linkcode MAX_ARGON2_PARAMS}. Those checks all come before Argon2 runs,
 * so a crafted file cannot make an unlock take minutes or all memory, nor
 * downgrade the key derivation. When decryption fails the code is
 * `wrong-passphrase`: a wrong passphrase and a damaged salt, nonce or
 * ciphertext cannot be told apart.
 *
 * @example Create, unlock and change the passphrase
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity } from "./identity.ts";
 * import { changePassphrase, createKeystore, unlockKeystore } from "./keystore.ts";
 *
 * const dir = await Deno.makeTempDir();
 * const path = `${dir}/identity.key`;
 * const me = await Identity.generate();
 * await createKeystore(path, me, "correct horse battery staple");
 * await changePassphrase(path, "correct horse battery staple", "a new passphrase");
 * const again = await unlockKeystore(path, "a new passphrase");
 * assert(again.id === me.id);
 * await Deno.remove(dir, { recursive: true });
 * ```
 *
 * @module
 */
import { argon2idAsync } from "@noble/hashes/argon2.js";
import { concat, copy, Reader, u32, utf8 } from "../platform/bytes.ts";
import { KEY_LENGTH } from "./_keys.ts";
import { Identity, type IdentitySeeds } from "./identity.ts";
import { KeystoreError, StorageError } from "../errors.ts";
import { pathExists, readFileBounded, writeFileAtomic } from "../platform/atomic_file.ts";

/** Argon2id cost parameters (RFC 9106 §3.1). */
export interface Argon2Params {
  /** Memory `m`, in KiB. */
  readonly memoryKib: number;
  /** Number of passes `t`. */
  readonly iterations: number;
  /** Degree of parallelism `p` (lanes). */
  readonly parallelism: number;
}

/**
 * The parameters new keystores use: 19 MiB, 2 passes, 1 lane (the OWASP
 * minimum recommendation for Argon2id).
 */
export const DEFAULT_ARGON2_PARAMS: Argon2Params = Object.freeze({
  memoryKib: 19_456,
  iterations: 2,
  parallelism: 1,
});

/** The smallest parameters accepted, on write and on read; weaker files are refused. */
export const MIN_ARGON2_PARAMS: Argon2Params = Object.freeze({
  memoryKib: 19_456,
  iterations: 2,
  parallelism: 1,
});

/**
 * The largest parameters accepted, on write and on read: 64 MiB, 4 passes,
 * 4 lanes. They bound the memory and time a crafted file can make an unlock
 * use: about 1.5 s on a 2-core machine, against about 0.2 s for the defaults.
 */
export const MAX_ARGON2_PARAMS: Argon2Params = Object.freeze({
  memoryKib: 65_536,
  iterations: 4,
  parallelism: 4,
});

/** The keystore format version this module writes. */
export const KEYSTORE_VERSION = 1;

const MAGIC = utf8("DIMKEY");
const SALT_LENGTH = 16;
const NONCE_LENGTH = 12;
const TAG_LENGTH = 16;
const HEADER_LENGTH = MAGIC.length + 1 + 3 * 4 + SALT_LENGTH + NONCE_LENGTH;
const PLAINTEXT_LENGTH = 2 * KEY_LENGTH;
const FILE_LENGTH = HEADER_LENGTH + PLAINTEXT_LENGTH + TAG_LENGTH;
// Reads stop here, so a huge file is refused without reading it all.
const MAX_READ_LENGTH = 4096;

/** What a keystore header says, readable without the passphrase. */
export interface KeystoreHeader {
  /** The format version. */
  readonly version: number;
  /** The Argon2id parameters the file was written with. */
  readonly params: Argon2Params;
}

/** Options for {@linkcode createKeystore}. */
export interface CreateKeystoreOptions {
  /** Replace an existing file at the path. Default `false`. */
  readonly force?: boolean;
  /** Argon2id parameters. Default {@linkcode DEFAULT_ARGON2_PARAMS}. */
  readonly params?: Argon2Params;
  /** Aborts the key derivation. */
  readonly signal?: AbortSignal;
}

/** Options for {@linkcode unlockKeystore}. */
export interface UnlockKeystoreOptions {
  /** Aborts the key derivation. */
  readonly signal?: AbortSignal;
}

/** Options for {@linkcode changePassphrase}. */
export interface ChangePassphraseOptions {
  /** Argon2id parameters of the rewritten file. Default: those of the current file. */
  readonly params?: Argon2Params;
  /** Aborts the key derivations. */
  readonly signal?: AbortSignal;
}

interface Decoded {
  readonly header: KeystoreHeader;
  readonly aad: Uint8Array<ArrayBuffer>;
  readonly salt: Uint8Array<ArrayBuffer>;
  readonly nonce: Uint8Array<ArrayBuffer>;
  readonly ciphertext: Uint8Array<ArrayBuffer>;
}

/**
 * Encrypts `identity` under `passphrase` and writes it to `path`
 * atomically, readable by its owner only (mode `0o600`).
 *
 * @param path Where to write the keystore.
 * @param identity The identity to save.
 * @param passphrase The passphrase; must not be empty.
 * @param options `force` to replace an existing file (default `false`),
 *   `params` (default {@linkcode DEFAULT_ARGON2_PARAMS}) and `signal`.
 * @returns When the file is durably written.
 * @throws {TypeError} If `passphrase` is empty or not a string.
 * @throws {KeystoreError} `exists` if a file is there and `force` is not
 *   set, `parameters-out-of-range` if `params` lie outside the accepted
 *   bounds, `io` if the file cannot be written.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity } from "./identity.ts";
 * import { createKeystore } from "./keystore.ts";
 *
 * const dir = await Deno.makeTempDir();
 * await createKeystore(`${dir}/identity.key`, await Identity.generate(), "hunter2 hunter2");
 * assert((await Deno.stat(`${dir}/identity.key`)).size === 127);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function createKeystore(
  path: string,
  identity: Identity,
  passphrase: string,
  options: CreateKeystoreOptions = {},
): Promise<void> {
  const { force = false, params = DEFAULT_ARGON2_PARAMS, signal } = options;
  checkNewPassphrase(passphrase, "create keystore");
  checkParams(params, "create keystore");
  if (!force && await exists(path)) {
    throw new KeystoreError(
      "exists",
      `Cannot create keystore: ${path} already exists (use force to replace it)`,
    );
  }
  const seeds = identity.exportSeeds();
  try {
    const bytes = await seal(seeds, passphrase, params, signal);
    await write(path, bytes, force);
  } finally {
    wipe(seeds);
  }
}

/**
 * Reads and decrypts the keystore at `path`. The file is only read, never
 * modified, whether or not the unlock succeeds.
 *
 * @param path The keystore file.
 * @param passphrase The passphrase it was created with.
 * @param options `signal` to abort the key derivation.
 * @returns The identity.
 * @throws {TypeError} If `passphrase` is not a string.
 * @throws {KeystoreError} `not-found`, `truncated`, `corrupt`,
 *   `unsupported-version`, `parameters-out-of-range`, `wrong-passphrase`
 *   (wrong passphrase or damaged file) or `io`.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity } from "./identity.ts";
 * import { KeystoreError } from "../errors.ts";
 * import { createKeystore, unlockKeystore } from "./keystore.ts";
 *
 * const dir = await Deno.makeTempDir();
 * const me = await Identity.generate();
 * await createKeystore(`${dir}/identity.key`, me, "open sesame");
 * assert((await unlockKeystore(`${dir}/identity.key`, "open sesame")).id === me.id);
 * try {
 *   await unlockKeystore(`${dir}/identity.key`, "open barley");
 *   assert(false);
 * } catch (err) {
 *   assert(err instanceof KeystoreError && err.code === "wrong-passphrase");
 * }
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function unlockKeystore(
  path: string,
  passphrase: string,
  options: UnlockKeystoreOptions = {},
): Promise<Identity> {
  const decoded = decode(await read(path));
  const seeds = await open(decoded, passphrase, options.signal);
  try {
    return await Identity.fromSeeds(seeds);
  } finally {
    wipe(seeds);
  }
}

/**
 * Re-encrypts the keystore at `path` under a new passphrase, with a fresh
 * salt and nonce, replacing the file atomically. If anything fails the old
 * file is left as it was.
 *
 * @param path The keystore file.
 * @param oldPassphrase The current passphrase.
 * @param newPassphrase The new passphrase; must not be empty.
 * @param options `params` for the new file (default: those of the current
 *   file) and `signal`.
 * @returns When the new file is durably written.
 * @throws {TypeError} If `newPassphrase` is empty or either passphrase is not a string.
 * @throws {KeystoreError} Any code {@linkcode unlockKeystore} throws, and
 *   `parameters-out-of-range` for bad `params`.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity } from "./identity.ts";
 * import { changePassphrase, createKeystore, unlockKeystore } from "./keystore.ts";
 *
 * const dir = await Deno.makeTempDir();
 * const path = `${dir}/identity.key`;
 * const me = await Identity.generate();
 * await createKeystore(path, me, "old passphrase");
 * await changePassphrase(path, "old passphrase", "new passphrase");
 * assert((await unlockKeystore(path, "new passphrase")).id === me.id);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function changePassphrase(
  path: string,
  oldPassphrase: string,
  newPassphrase: string,
  options: ChangePassphraseOptions = {},
): Promise<void> {
  checkNewPassphrase(newPassphrase, "change passphrase");
  if (options.params !== undefined) checkParams(options.params, "change passphrase");
  const decoded = decode(await read(path));
  const seeds = await open(decoded, oldPassphrase, options.signal);
  try {
    const params = options.params ?? decoded.header.params;
    const bytes = await seal(seeds, newPassphrase, params, options.signal);
    await write(path, bytes, true);
  } finally {
    wipe(seeds);
  }
}

/**
 * Reads a keystore's version and Argon2id parameters without the
 * passphrase, applying every check {@linkcode unlockKeystore} makes before
 * decryption.
 *
 * @param path The keystore file.
 * @returns The header.
 * @throws {KeystoreError} `not-found`, `truncated`, `corrupt`,
 *   `unsupported-version`, `parameters-out-of-range` or `io`.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity } from "./identity.ts";
 * import { createKeystore, readKeystoreHeader } from "./keystore.ts";
 *
 * const dir = await Deno.makeTempDir();
 * await createKeystore(`${dir}/identity.key`, await Identity.generate(), "passphrase");
 * const header = await readKeystoreHeader(`${dir}/identity.key`);
 * assert(header.version === 1 && header.params.memoryKib === 19456);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function readKeystoreHeader(path: string): Promise<KeystoreHeader> {
  return decode(await read(path)).header;
}

function checkNewPassphrase(passphrase: string, action: string): void {
  if (typeof passphrase !== "string") {
    throw new TypeError(`Cannot ${action}: the passphrase must be a string`);
  }
  if (passphrase.length === 0) {
    throw new TypeError(`Cannot ${action}: the passphrase must not be empty`);
  }
}

function checkParams(params: Argon2Params, action: string): void {
  const fields = ["memoryKib", "iterations", "parallelism"] as const;
  for (const field of fields) {
    const value = params[field];
    const min = MIN_ARGON2_PARAMS[field];
    const max = MAX_ARGON2_PARAMS[field];
    if (!Number.isInteger(value) || value < min || value > max) {
      throw new KeystoreError(
        "parameters-out-of-range",
        `Cannot ${action}: Argon2 ${field} ${value} is outside ${min}..${max}`,
      );
    }
  }
}

function decode(bytes: Uint8Array): Decoded {
  // The magic is checked on whatever prefix there is, so a short file that is
  // not a keystore at all reads as corrupt rather than truncated.
  const prefix = Math.min(bytes.length, MAGIC.length);
  for (let i = 0; i < prefix; i++) {
    if (bytes[i] !== MAGIC[i]) {
      throw new KeystoreError("corrupt", "Cannot read keystore: it is not a DIM keystore file");
    }
  }
  if (bytes.length <= MAGIC.length) throw truncated(bytes.length);
  const version = bytes[MAGIC.length]!;
  if (version !== KEYSTORE_VERSION) {
    throw new KeystoreError(
      "unsupported-version",
      `Cannot read keystore: format version ${version} is not supported (expected ${KEYSTORE_VERSION})`,
    );
  }
  if (bytes.length < FILE_LENGTH) throw truncated(bytes.length);
  if (bytes.length > FILE_LENGTH) {
    throw new KeystoreError(
      "corrupt",
      `Cannot read keystore: it has ${bytes.length - FILE_LENGTH} unexpected bytes after the end`,
    );
  }
  // The length is exact, so these reads cannot run short.
  const r = new Reader(bytes);
  r.bytes(MAGIC.length + 1); // the magic and version, checked above
  const params: Argon2Params = { memoryKib: r.u32(), iterations: r.u32(), parallelism: r.u32() };
  checkParams(params, "read keystore");
  const salt = r.bytes(SALT_LENGTH);
  const nonce = r.bytes(NONCE_LENGTH);
  return {
    header: { version, params },
    aad: bytes.slice(0, HEADER_LENGTH),
    salt,
    nonce,
    ciphertext: r.bytes(r.remaining),
  };
}

function truncated(length: number): KeystoreError {
  return new KeystoreError(
    "truncated",
    `Cannot read keystore: it is truncated (${length} of ${FILE_LENGTH} bytes)`,
  );
}

function encodeHeader(
  params: Argon2Params,
  salt: Uint8Array,
  nonce: Uint8Array,
): Uint8Array<ArrayBuffer> {
  return concat(
    MAGIC,
    new Uint8Array([KEYSTORE_VERSION]),
    u32(params.memoryKib),
    u32(params.iterations),
    u32(params.parallelism),
    salt,
    nonce,
  );
}

async function deriveKey(
  passphrase: string,
  salt: Uint8Array,
  params: Argon2Params,
  signal: AbortSignal | undefined,
): Promise<CryptoKey> {
  signal?.throwIfAborted();
  // NFC so the same passphrase typed on different systems gives the same bytes.
  const password = utf8(passphrase.normalize("NFC"));
  let raw: Uint8Array | undefined;
  try {
    raw = await argon2idAsync(password, salt, {
      m: params.memoryKib,
      t: params.iterations,
      p: params.parallelism,
      dkLen: 32,
      // A second bound on memory, should the checks above ever be bypassed.
      maxmem: MAX_ARGON2_PARAMS.memoryKib * 1024,
      ...(signal ? { onProgress: () => signal.throwIfAborted() } : {}),
    });
    return await crypto.subtle.importKey("raw", copy(raw), "AES-GCM", false, [
      "encrypt",
      "decrypt",
    ]);
  } finally {
    password.fill(0);
    raw?.fill(0);
  }
}

async function seal(
  seeds: IdentitySeeds,
  passphrase: string,
  params: Argon2Params,
  signal: AbortSignal | undefined,
): Promise<Uint8Array<ArrayBuffer>> {
  const salt = crypto.getRandomValues(new Uint8Array(SALT_LENGTH));
  const nonce = crypto.getRandomValues(new Uint8Array(NONCE_LENGTH));
  const header = encodeHeader(params, salt, nonce);
  const key = await deriveKey(passphrase, salt, params, signal);
  const plaintext = concat(seeds.signing, seeds.encryption);
  try {
    const ciphertext = await crypto.subtle.encrypt(
      { name: "AES-GCM", iv: nonce, additionalData: header, tagLength: TAG_LENGTH * 8 },
      key,
      plaintext,
    );
    return concat(header, new Uint8Array(ciphertext));
  } finally {
    plaintext.fill(0);
  }
}

async function open(
  decoded: Decoded,
  passphrase: string,
  signal: AbortSignal | undefined,
): Promise<IdentitySeeds> {
  if (typeof passphrase !== "string") {
    throw new TypeError("Cannot unlock keystore: the passphrase must be a string");
  }
  const key = await deriveKey(passphrase, decoded.salt, decoded.header.params, signal);
  let plaintext: Uint8Array;
  try {
    plaintext = new Uint8Array(
      await crypto.subtle.decrypt(
        {
          name: "AES-GCM",
          iv: decoded.nonce,
          additionalData: decoded.aad,
          tagLength: TAG_LENGTH * 8,
        },
        key,
        decoded.ciphertext,
      ),
    );
  } catch (cause) {
    throw new KeystoreError(
      "wrong-passphrase",
      "Cannot unlock keystore: wrong passphrase or corrupted file",
      { cause },
    );
  }
  // The length is fixed by the file size check, so this is a sanity check only.
  if (plaintext.length !== PLAINTEXT_LENGTH) {
    plaintext.fill(0);
    throw new KeystoreError("corrupt", "Cannot unlock keystore: unexpected contents length");
  }
  const seeds = {
    signing: copy(plaintext.subarray(0, KEY_LENGTH)),
    encryption: copy(plaintext.subarray(KEY_LENGTH)),
  };
  plaintext.fill(0);
  return seeds;
}

function wipe(seeds: IdentitySeeds): void {
  seeds.signing.fill(0);
  seeds.encryption.fill(0);
}

async function exists(path: string): Promise<boolean> {
  try {
    return await pathExists(path);
  } catch (cause) {
    throw new KeystoreError("io", (cause as Error).message, { cause });
  }
}

async function read(path: string): Promise<Uint8Array> {
  let bytes: Uint8Array | undefined;
  try {
    bytes = await readFileBounded(path, MAX_READ_LENGTH);
  } catch (cause) {
    if (cause instanceof RangeError) {
      throw new KeystoreError(
        "corrupt",
        `Cannot read keystore: ${path} is far larger than a keystore file`,
        { cause },
      );
    }
    throw new KeystoreError("io", (cause as Error).message, { cause });
  }
  if (bytes === undefined) {
    throw new KeystoreError("not-found", `Cannot read keystore: ${path} does not exist`);
  }
  return bytes;
}

async function write(path: string, bytes: Uint8Array, overwrite: boolean): Promise<void> {
  try {
    await writeFileAtomic(path, bytes, { mode: 0o600, overwrite });
  } catch (cause) {
    if (!overwrite && cause instanceof StorageError && await pathExists(path).catch(() => false)) {
      throw new KeystoreError(
        "exists",
        `Cannot create keystore: ${path} already exists (use force to replace it)`,
        { cause },
      );
    }
    throw new KeystoreError("io", (cause as Error).message, { cause });
  }
}
