/**
 * Seals small secrets kept in the local database (prekeys, ratchet session
 * states) with a key derived from the user's identity, so a copy of the
 * database alone reveals none of them. The identity itself is protected by
 * the passphrase in the keystore.
 *
 * Each value is AES-256-GCM with a fresh 12-byte nonce, and its label (what
 * the value is, and for whom) as associated data, so a sealed value cannot
 * be moved to another row.
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
 * @module
 */
import { hkdf } from "@noble/hashes/hkdf.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { concat, utf8 } from "../platform/bytes.ts";
import type { Identity } from "./identity.ts";
import { StorageError } from "../errors.ts";

const NONCE_LENGTH = 12;
const INFO = utf8("DIM-v1 local secrets");

/** Seals and opens labelled secrets with a key derived from an identity. */
export class SecretBox {
  readonly #key: CryptoKey;

  private constructor(key: CryptoKey) {
    this.#key = key;
  }

  /**
   * Derives the box of an identity.
   *
   * @param identity The unlocked identity.
   * @returns The box.
   */
  static async forIdentity(identity: Pick<Identity, "exportSeeds">): Promise<SecretBox> {
    const seeds = identity.exportSeeds();
    const raw = hkdf(sha256, concat(seeds.signing, seeds.encryption), undefined, INFO, 32);
    seeds.signing.fill(0);
    seeds.encryption.fill(0);
    const key = await crypto.subtle.importKey("raw", raw, "AES-GCM", false, [
      "encrypt",
      "decrypt",
    ]);
    raw.fill(0);
    return new SecretBox(key);
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
      throw new StorageError(`Cannot read ${label.split(":")[0]}: the stored secret is corrupt`, {
        cause,
      });
    }
  }
}
