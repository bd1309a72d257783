/**
 * A DIM user identity: a long-term Ed25519 signing key and an X25519
 * encryption key, and the printable user ID derived from the signing key.
 *
 * The libp2p transport key of a node is a different, separately generated
 * key, so a DIM signature can never be presented as a transport signature
 * or the reverse. Within DIM every signature is additionally prefixed with a
 * {@linkcode SignatureDomain}, so a record signature cannot be replayed as an
 * envelope or acknowledgement signature.
 *
 * @example Make an identity, sign and verify
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity, verifySignature } from "./identity.ts";
 *
 * const alice = await Identity.generate();
 * const msg = new TextEncoder().encode("hello");
 * const sig = await alice.sign("record", msg);
 * assert(await verifySignature("record", alice.signingPublicKey, msg, sig));
 * assert(!(await verifySignature("envelope", alice.signingPublicKey, msg, sig)));
 * assert(alice.id.startsWith("dim"));
 * ```
 *
 * @module
 */
import { concat, constantTimeEqual, copy, fromBase32, toBase32, utf8 } from "../platform/bytes.ts";
import type { KeyObject } from "node:crypto";
import {
  ed25519Sign,
  ed25519SigningKey,
  ed25519Verify,
  exportOkpPrivate,
  importEd25519Private,
  importX25519Private,
  KEY_LENGTH,
  randomSeed,
} from "./_keys.ts";
import { InvalidIdError } from "../errors.ts";
import { sha256 } from "@noble/hashes/sha2.js";

/** The prefix of every user ID. */
export const USER_ID_PREFIX = "dim";
const CHECKSUM_LENGTH = 4;
const USER_ID_BODY_LENGTH = Math.ceil(((KEY_LENGTH + CHECKSUM_LENGTH) * 8) / 5);
/** The length of a user ID in characters. */
export const USER_ID_LENGTH: number = USER_ID_PREFIX.length + USER_ID_BODY_LENGTH;

/**
 * What a signature is for. Each domain has its own prefix, so a signature
 * made for one purpose never verifies for another.
 */
export type SignatureDomain = "record" | "envelope" | "ack" | "prekey" | "mailbox" | "file";

const DOMAIN_PREFIX: Record<SignatureDomain, Uint8Array> = {
  record: utf8("DIM-v1-sig/record\0"),
  envelope: utf8("DIM-v1-sig/envelope\0"),
  ack: utf8("DIM-v1-sig/ack\0"),
  prekey: utf8("DIM-v1-sig/prekey\0"),
  mailbox: utf8("DIM-v1-sig/mailbox\0"),
  file: utf8("DIM-v1-sig/file\0"),
};

/** The public half of an identity: what a contact card carries. */
export interface PublicIdentity {
  /** The user ID, derived from `signingPublicKey`. */
  readonly id: string;
  /** Raw 32-byte Ed25519 public key. */
  readonly signingPublicKey: Uint8Array;
  /** Raw 32-byte X25519 public key. */
  readonly encryptionPublicKey: Uint8Array;
}

/** The secret seeds of an identity, as the keystore saves them. */
export interface IdentitySeeds {
  /** 32-byte Ed25519 seed. */
  readonly signing: Uint8Array;
  /** 32-byte X25519 private key. */
  readonly encryption: Uint8Array;
}

const ID_LABEL = utf8("DIM-v1-id\0");

// A synchronous hash: a WebCrypto digest costs a round trip through the event
// loop, which is most of the cost of deriving an ID for every opened envelope.
function checksum(publicKey: Uint8Array): Uint8Array {
  return sha256(concat(ID_LABEL, publicKey)).subarray(0, CHECKSUM_LENGTH);
}

/**
 * Encodes an Ed25519 public key as a user ID: `dim` followed by base32 of
 * the key and a 4-byte SHA-256 checksum, so a mistyped ID is an error rather
 * than a different user.
 *
 * @param signingPublicKey The raw 32-byte Ed25519 public key.
 * @returns The user ID.
 * @throws {TypeError} If the key is not 32 bytes.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeUserId, Identity } from "./identity.ts";
 * const me = await Identity.generate();
 * assert(encodeUserId(me.signingPublicKey) === me.id);
 * ```
 */
export function encodeUserId(signingPublicKey: Uint8Array): string {
  if (signingPublicKey.length !== KEY_LENGTH) {
    throw new TypeError(`Cannot encode user ID: key must be ${KEY_LENGTH} bytes`);
  }
  return USER_ID_PREFIX + toBase32(concat(signingPublicKey, checksum(signingPublicKey)));
}

/**
 * Parses a user ID back to its Ed25519 public key, checking its checksum.
 * Surrounding white space is ignored and case does not matter.
 *
 * @param id The user ID as typed or pasted.
 * @returns The raw 32-byte Ed25519 public key.
 * @throws {InvalidIdError} If the ID is malformed or its checksum is wrong.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeUserId, Identity } from "./identity.ts";
 * const me = await Identity.generate();
 * const key = decodeUserId(me.id.toUpperCase());
 * assert(key.length === 32);
 * ```
 */
export function decodeUserId(id: string): Uint8Array<ArrayBuffer> {
  // Every message decodes its peer's ID: the valid ones are remembered.
  const known = decodedIds.get(id);
  if (known !== undefined) return known.slice();
  const key = decodeUserIdOnce(id);
  if (decodedIds.size >= DECODED_IDS) decodedIds.delete(decodedIds.keys().next().value!);
  decodedIds.set(id, key.slice());
  return key;
}

/** The most decoded user IDs kept. */
const DECODED_IDS = 1024;
const decodedIds = new Map<string, Uint8Array<ArrayBuffer>>();

function decodeUserIdOnce(id: string): Uint8Array<ArrayBuffer> {
  const text = id.trim().toLowerCase();
  if (!text.startsWith(USER_ID_PREFIX)) {
    throw new InvalidIdError(`Cannot parse user ID: it must start with "${USER_ID_PREFIX}"`);
  }
  if (text.length !== USER_ID_LENGTH) {
    throw new InvalidIdError(
      `Cannot parse user ID: expected ${USER_ID_LENGTH} characters, got ${text.length}`,
    );
  }
  let raw: Uint8Array;
  try {
    raw = fromBase32(text.slice(USER_ID_PREFIX.length));
  } catch (cause) {
    throw new InvalidIdError("Cannot parse user ID: it contains a character outside base32", {
      cause,
    });
  }
  const key = copy(raw.subarray(0, KEY_LENGTH));
  if (!constantTimeEqual(raw.subarray(KEY_LENGTH), checksum(key))) {
    throw new InvalidIdError("Cannot parse user ID: checksum mismatch (is it mistyped?)");
  }
  return key;
}

/**
 * Verifies a domain-separated Ed25519 signature (on the calling thread,
 * with `node:crypto`).
 *
 * @param domain What the signature must have been made for.
 * @param signingPublicKey The signer's raw 32-byte Ed25519 key.
 * @param message The signed bytes (without the domain prefix).
 * @param signature The 64-byte signature.
 * @returns `true` only if the signature is valid for this domain, key and message.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity, verifySignature } from "./identity.ts";
 * const me = await Identity.generate();
 * const sig = await me.sign("ack", new Uint8Array([1]));
 * assert(await verifySignature("ack", me.signingPublicKey, new Uint8Array([1]), sig));
 * ```
 */
export function verifySignature(
  domain: SignatureDomain,
  signingPublicKey: Uint8Array,
  message: Uint8Array,
  signature: Uint8Array,
): Promise<boolean> {
  if (signature.length !== 64 || signingPublicKey.length !== KEY_LENGTH) {
    return Promise.resolve(false);
  }
  try {
    const signed = concat(DOMAIN_PREFIX[domain], message);
    return Promise.resolve(ed25519Verify(signingPublicKey, signed, signature));
  } catch {
    return Promise.resolve(false);
  }
}

/** A user's long-term keys. Holds secret material: never log it. */
export class Identity implements PublicIdentity {
  readonly id: string;
  readonly signingPublicKey: Uint8Array<ArrayBuffer>;
  readonly encryptionPublicKey: Uint8Array<ArrayBuffer>;
  /** The X25519 private key, for opening envelopes (non-extractable). */
  readonly encryptionPrivateKey: CryptoKey;
  /** The Ed25519 private key, for `node:crypto` (see `ed25519SigningKey`). */
  #signingKey: KeyObject;
  #seeds: IdentitySeeds;

  private constructor(
    id: string,
    signingPublicKey: Uint8Array<ArrayBuffer>,
    encryptionPublicKey: Uint8Array<ArrayBuffer>,
    signingKey: KeyObject,
    encryptionPrivateKey: CryptoKey,
    seeds: IdentitySeeds,
  ) {
    this.id = id;
    this.signingPublicKey = signingPublicKey;
    this.encryptionPublicKey = encryptionPublicKey;
    this.#signingKey = signingKey;
    this.encryptionPrivateKey = encryptionPrivateKey;
    this.#seeds = seeds;
  }

  /**
   * Generates a new identity from fresh randomness.
   *
   * @returns The new identity.
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { Identity } from "./identity.ts";
   * const me = await Identity.generate();
   * assert(me.signingPublicKey.length === 32);
   * ```
   */
  static generate(): Promise<Identity> {
    return Identity.fromSeeds({ signing: randomSeed(), encryption: randomSeed() });
  }

  /**
   * Rebuilds an identity from its saved seeds.
   *
   * @param seeds The 32-byte Ed25519 seed and X25519 private key.
   * @returns The identity.
   * @throws {TypeError} If a seed is not 32 bytes.
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { Identity } from "./identity.ts";
   * const a = await Identity.generate();
   * const b = await Identity.fromSeeds(a.exportSeeds());
   * assert(a.id === b.id);
   * ```
   */
  static async fromSeeds(seeds: IdentitySeeds): Promise<Identity> {
    const signing = copy(seeds.signing);
    const encryption = copy(seeds.encryption);
    const [signingExport, encryptionExport] = await Promise.all([
      importEd25519Private(signing, true).then(exportOkpPrivate),
      importX25519Private(encryption, true).then(exportOkpPrivate),
    ]);
    const signingKey = ed25519SigningKey(signing);
    const encryptionKey = await importX25519Private(encryption);
    const id = encodeUserId(signingExport.publicKey);
    return new Identity(
      id,
      signingExport.publicKey,
      encryptionExport.publicKey,
      signingKey,
      encryptionKey,
      { signing, encryption },
    );
  }

  /**
   * The secret seeds, for the keystore. Handle with care.
   *
   * @returns Copies of both 32-byte seeds.
   */
  exportSeeds(): IdentitySeeds {
    return { signing: copy(this.#seeds.signing), encryption: copy(this.#seeds.encryption) };
  }

  /** The public half of this identity. */
  get public(): PublicIdentity {
    return {
      id: this.id,
      signingPublicKey: copy(this.signingPublicKey),
      encryptionPublicKey: copy(this.encryptionPublicKey),
    };
  }

  /**
   * Signs `message` for one purpose with the Ed25519 key.
   *
   * @param domain What the signature is for.
   * @param message The bytes to sign.
   * @returns The 64-byte signature.
   */
  sign(domain: SignatureDomain, message: Uint8Array): Promise<Uint8Array<ArrayBuffer>> {
    try {
      return Promise.resolve(ed25519Sign(this.#signingKey, concat(DOMAIN_PREFIX[domain], message)));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** Keeps seeds out of `console.log` and `JSON.stringify`. */
  toJSON(): PublicIdentity {
    return this.public;
  }

  /** Keeps seeds out of `Deno.inspect`. */
  [Symbol.for("Deno.customInspect")](): string {
    return `Identity(${this.id})`;
  }
}
