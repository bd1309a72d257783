/**
 * Seals small secrets kept in the local database (prekeys, ratchet session
 * states) with a key derived from the user's identity, so a copy of the
 * database alone reveals none of them. The identity itself is protected by
 * the passphrase in the keystore.
 *
 * Each value is AES-256-GCM with a fresh 12-byte nonce, and its label (what
 * the value is, and for whom) as associated data, so a sealed value cannot
 * be moved to another row. A small value (a session state, sealed with
 * every message) is sealed and opened on the calling thread
 * (`node:crypto`), a large one with WebCrypto, whose hand-off to its
 * thread pool costs more than the work on a few hundred bytes (see
 * `_aead.ts`); the bytes are the same either way.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity } from "./identity.ts";
 * import { SecretBox } from "./secret_box.ts";
 *
 * const box = await SecretBox.forIdentity(await Identity.generate());
 * const sealed = await box.seal("session:bob", new Uint8Array([1, 2, 3]));
 * assert.deepEqual(await box.open("session:bob", sealed), new Uint8Array([1, 2, 3]));
 * await assert.rejects(box.open("session:eve", sealed));
 * ```
 *
 * {@linkcode HistoryBox} seals message bodies the same way, under a key of
 * its own (another HKDF label), and synchronously: the history is written
 * inside the storage's synchronous transactions, which WebCrypto's promises
 * cannot enter, so it uses the AES-256-GCM of `node:crypto` (built into
 * Deno). Its output is what WebCrypto's would be for the same key and nonce.
 *
 * @module
 */
import { createSecretKey, type KeyObject } from "node:crypto";
import { gcmOpenSync, gcmSealSync, SYNC_LIMIT } from "./_aead.ts";
import { hkdf } from "@noble/hashes/hkdf.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { concat, utf8 } from "../platform/bytes.ts";
import type { Identity } from "./identity.ts";
import { StorageError } from "../errors.ts";

const NONCE_LENGTH = 12;
const TAG_LENGTH = 16;
const INFO = utf8("DIM-v1 local secrets");
/** The HKDF label of the history's key: not the key of the other secrets. */
const HISTORY_INFO = utf8("DIM-v1 message history");

/** A 32-byte key derived from an identity's seeds under `info`. */
function deriveKey(
  identity: Pick<Identity, "exportSeeds">,
  info: Uint8Array,
): Uint8Array<ArrayBuffer> {
  const seeds = identity.exportSeeds();
  const raw = hkdf(sha256, concat(seeds.signing, seeds.encryption), undefined, info, 32);
  seeds.signing.fill(0);
  seeds.encryption.fill(0);
  return raw;
}

function corrupt(label: string, cause: unknown): StorageError {
  return new StorageError(`Cannot read ${label.split(":")[0]}: the stored secret is corrupt`, {
    cause,
  });
}

/** Seals and opens labelled secrets with a key derived from an identity. */
export class SecretBox {
  readonly #key: CryptoKey;
  readonly #sync: KeyObject;

  private constructor(key: CryptoKey, sync: KeyObject) {
    this.#key = key;
    this.#sync = sync;
  }

  /**
   * Derives the box of an identity.
   *
   * @param identity The unlocked identity.
   * @returns The box.
   */
  static async forIdentity(identity: Pick<Identity, "exportSeeds">): Promise<SecretBox> {
    const raw = deriveKey(identity, INFO);
    const key = await crypto.subtle.importKey("raw", raw, "AES-GCM", false, [
      "encrypt",
      "decrypt",
    ]);
    const sync = createSecretKey(raw);
    raw.fill(0);
    return new SecretBox(key, sync);
  }

  /**
   * Seals a value under a label.
   *
   * @param label What the value is (bound as associated data).
   * @param value The secret bytes.
   * @returns `nonce | ciphertext`.
   */
  async seal(label: string, value: Uint8Array): Promise<Uint8Array> {
    const iv = crypto.getRandomValues(new Uint8Array(NONCE_LENGTH));
    if (value.length <= SYNC_LIMIT) {
      return concat(iv, gcmSealSync(this.#sync, iv, value, utf8(label)));
    }
    const ct = await crypto.subtle.encrypt(
      { name: "AES-GCM", iv, additionalData: utf8(label) },
      this.#key,
      new Uint8Array(value),
    );
    return concat(iv, new Uint8Array(ct));
  }

  /**
   * Opens a sealed value.
   *
   * @param label The label it was sealed under.
   * @param sealed `nonce | ciphertext`.
   * @returns The secret bytes.
   * @throws {StorageError} If it was altered, or sealed by another identity or label.
   */
  async open(label: string, sealed: Uint8Array): Promise<Uint8Array> {
    try {
      if (sealed.length < NONCE_LENGTH + TAG_LENGTH) throw new RangeError("too short");
      if (sealed.length - NONCE_LENGTH - TAG_LENGTH <= SYNC_LIMIT) {
        const iv = sealed.subarray(0, NONCE_LENGTH);
        return gcmOpenSync(this.#sync, iv, sealed.subarray(NONCE_LENGTH), utf8(label));
      }
      const pt = await crypto.subtle.decrypt(
        {
          name: "AES-GCM",
          iv: new Uint8Array(sealed.subarray(0, NONCE_LENGTH)),
          additionalData: utf8(label),
        },
        this.#key,
        new Uint8Array(sealed.subarray(NONCE_LENGTH)),
      );
      return new Uint8Array(pt);
    } catch (cause) {
      throw corrupt(label, cause);
    }
  }
}

/**
 * Seals and opens message bodies at rest, synchronously, with a key derived
 * from an identity under its own HKDF label ("DIM-v1 message history").
 * Each value is `nonce (12) | AES-256-GCM ciphertext | tag (16)`, with its
 * label as associated data.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity } from "./identity.ts";
 * import { HistoryBox } from "./secret_box.ts";
 *
 * const box = HistoryBox.forIdentity(await Identity.generate());
 * const sealed = box.seal("message:in:bob:01", new Uint8Array([1, 2, 3]));
 * assert.deepEqual(box.open("message:in:bob:01", sealed), new Uint8Array([1, 2, 3]));
 * assert.throws(() => box.open("message:in:bob:02", sealed));
 * ```
 */
export class HistoryBox {
  readonly #key: KeyObject;

  private constructor(key: KeyObject) {
    this.#key = key;
  }

  /**
   * Derives the history box of an identity.
   *
   * @param identity The unlocked identity.
   * @returns The box.
   */
  static forIdentity(identity: Pick<Identity, "exportSeeds">): HistoryBox {
    const raw = deriveKey(identity, HISTORY_INFO);
    const key = createSecretKey(raw);
    raw.fill(0);
    return new HistoryBox(key);
  }

  /**
   * Seals a value under a label.
   *
   * @param label What the value is and where it belongs (bound as associated data).
   * @param value The bytes.
   * @returns `nonce | ciphertext | tag`.
   */
  seal(label: string, value: Uint8Array): Uint8Array {
    const iv = crypto.getRandomValues(new Uint8Array(NONCE_LENGTH));
    return concat(iv, gcmSealSync(this.#key, iv, value, utf8(label)));
  }

  /**
   * Opens a sealed value.
   *
   * @param label The label it was sealed under.
   * @param sealed `nonce | ciphertext | tag`.
   * @returns The bytes.
   * @throws {StorageError} If it was altered, or sealed by another identity or label.
   */
  open(label: string, sealed: Uint8Array): Uint8Array {
    try {
      if (sealed.length < NONCE_LENGTH + TAG_LENGTH) throw new RangeError("too short");
      const iv = sealed.subarray(0, NONCE_LENGTH);
      return gcmOpenSync(this.#key, iv, sealed.subarray(NONCE_LENGTH), utf8(label));
    } catch (cause) {
      throw corrupt(label, cause);
    }
  }
}
