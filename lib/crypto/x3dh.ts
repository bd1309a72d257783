/**
 * X3DH-style initial key agreement: how a DIM user starts a session with a
 * contact who may be offline, with forward secrecy from the first message.
 *
 * The responder (Bob) publishes a signed prekey and one-time prekeys (see
 * `lib/record/prekey.ts`). The initiator (Alice) fetches them, checks the
 * signed prekey's signature, and computes with a fresh ephemeral key EK_A:
 *
 * ```text
 * DH1 = DH(IK_A, SPK_B)   DH2 = DH(EK_A, IK_B)   DH3 = DH(EK_A, SPK_B)
 * DH4 = DH(EK_A, OPK_B)   (only if a one-time prekey was available)
 * SK  = HKDF-SHA-256(salt = 32 zero bytes, IKM = F || DH1 || DH2 || DH3 [|| DH4],
 *                    info = "DIM-v1 X3DH", 32 bytes)      F = 32 bytes 0xFF
 * AD  = IK_A signing (32) || IK_A X25519 (32) || IK_B signing (32) || IK_B X25519 (32)
 * ```
 *
 * A DIM identity has two long-term keys: Ed25519 for signatures and X25519
 * for encryption. X3DH's identity keys IK_A and IK_B are the X25519
 * encryption keys; the Ed25519 keys sign the prekeys and are bound into AD.
 * The header of Alice's first message names her keys, EK_A and the prekey
 * IDs, so Bob can compute the same SK. SK and AD start a Double Ratchet
 * ({@link "./ratchet.ts"}) in which Bob's signed prekey is his first
 * ratchet key.
 *
 * X3DH authenticates Alice's X25519 key (through DH1) but not the Ed25519
 * key her header claims: the caller must check that the two belong together
 * (they are on her signed contact card) before trusting the sender's ID.
 *
 * ## Header wire format (versions 1 and 2)
 *
 * ```text
 * version u8 (1|2) | initiatorSigningKey (32) | initiatorEncryptionKey (32)
 * | ephemeralKey (32) | signedPrekeyId u32 | hasOneTimePrekey u8 (0|1) [ oneTimePrekeyId u32 ]
 * ```
 *
 * Version 2 says the session encrypts its headers
 * ({@link "./header_ratchet.ts"}): both sides then also derive its initial
 * header keys from the same input as SK, with HKDF infos
 * `"DIM-v1 X3DH header a"` (`shared_hka`, the initiator's first sending
 * header key) and `"DIM-v1 X3DH header b"` (`shared_nhkb`, the responder's).
 * A DIM that knows only version 1 refuses a version-2 header.
 *
 * @example Alice starts a session with offline Bob
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity } from "./identity.ts";
 * import { generatePrekey, initiateX3dh, respondX3dh, signPrekey } from "./x3dh.ts";
 *
 * const alice = await Identity.generate();
 * const bob = await Identity.generate();
 * const spk = await generatePrekey(1);
 * const opk = await generatePrekey(2);
 * const signature = await signPrekey(bob, spk);
 *
 * const sent = await initiateX3dh(alice, {
 *   signingPublicKey: bob.signingPublicKey,
 *   encryptionPublicKey: bob.encryptionPublicKey,
 *   signedPrekey: { id: spk.id, publicKey: spk.publicKey, signature },
 *   oneTimePrekey: { id: opk.id, publicKey: opk.publicKey },
 * });
 * const got = await respondX3dh(bob, sent.header, {
 *   signedPrekeys: [spk],
 *   oneTimePrekeys: [opk],
 * });
 * assert.deepEqual(got.sharedSecret, sent.sharedSecret);
 * assert.deepEqual(got.associatedData, sent.associatedData);
 * assert.equal(got.consumeOneTimePrekeyId, 2);
 * ```
 *
 * @module
 */
import { hkdf } from "@noble/hashes/hkdf.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { concat, u32, utf8 } from "../platform/bytes.ts";
import {
  checkKeyLength,
  KEY_LENGTH,
  newX25519KeyPair,
  x25519Each,
  type X25519PrivateKey,
  x25519PrivateKey,
  x25519PublicKey,
} from "./_keys.ts";
import { type Identity, verifySignature } from "./identity.ts";
import { generateRatchetKeyPair, type RatchetKeyPair } from "./ratchet.ts";
import { KeyAgreementError } from "../errors.ts";
export { KeyAgreementError };
export {
  decodeInitialMessage,
  decodeX3dhHeader,
  encodeInitialMessage,
  encodeX3dhHeader,
  type InitialMessage,
  MAX_INITIAL_MESSAGE_LENGTH,
} from "./x3dh_wire.ts";

export {
  X3DH_HEADER_MAX_LENGTH,
  X3DH_HEADER_MIN_LENGTH,
  X3DH_HEADER_VERSION,
  X3DH_HEADER_VERSION_HE,
} from "./x3dh_wire.ts";
/** Length of the associated data X3DH produces: four 32-byte keys. */
export const X3DH_ASSOCIATED_DATA_LENGTH: number = 4 * KEY_LENGTH;
/** The length of an Ed25519 prekey signature. */
export const PREKEY_SIGNATURE_LENGTH = 64;

const INFO = utf8("DIM-v1 X3DH");
const HEADER_A_INFO = utf8("DIM-v1 X3DH header a");
const HEADER_B_INFO = utf8("DIM-v1 X3DH header b");
const F = new Uint8Array(KEY_LENGTH).fill(0xff);
const SALT = new Uint8Array(32);

/** A prekey's public half: what a bundle lists. */
export interface PublicPrekey {
  /** The prekey ID, 0 to 2^32 - 1, chosen by its owner. */
  readonly id: number;
  /** The raw 32-byte X25519 public key. */
  readonly publicKey: Uint8Array;
}

/** A signed prekey's public half with its Ed25519 signature (domain `"prekey"`). */
export interface SignedPrekey extends PublicPrekey {
  /** The 64-byte signature by the owner's identity over `id u32 || publicKey`. */
  readonly signature: Uint8Array;
}

/** A prekey with its private key in raw form, as its owner stores it. Holds secret material. */
export interface PrekeyKeyPair extends RatchetKeyPair {
  /** The prekey ID. */
  readonly id: number;
}

/** The two public keys of a DIM identity. */
export interface IdentityKeys {
  /** The raw 32-byte Ed25519 signing key. */
  readonly signingPublicKey: Uint8Array;
  /** The raw 32-byte X25519 encryption key (X3DH's identity key). */
  readonly encryptionPublicKey: Uint8Array;
}

/** What X3DH needs of a local identity. */
export type X3dhIdentity = Pick<
  Identity,
  "signingPublicKey" | "encryptionPublicKey" | "encryptionPrivateKey"
>;

/** What the initiator needs of the responder: identity keys and one prekey set. */
export interface X3dhBundle extends IdentityKeys {
  /** The responder's current signed prekey. */
  readonly signedPrekey: SignedPrekey;
  /** One of the responder's one-time prekeys, if any is left. */
  readonly oneTimePrekey?: PublicPrekey | undefined;
}

/** The header of the initiator's first message. */
export interface X3dhHeader {
  /** The initiator's Ed25519 key (a claim: check it against their card). */
  readonly initiatorSigningKey: Uint8Array;
  /** The initiator's X25519 identity key. */
  readonly initiatorEncryptionKey: Uint8Array;
  /** The initiator's ephemeral X25519 public key EK_A. */
  readonly ephemeralKey: Uint8Array;
  /** The ID of the signed prekey used. */
  readonly signedPrekeyId: number;
  /** The ID of the one-time prekey used, or `null` if none was. */
  readonly oneTimePrekeyId: number | null;
  /** `true` (header version 2) if the session encrypts its headers; absent for version 1. */
  readonly headerEncryption?: true;
}

/** The initial header keys of a session that encrypts its headers. Secret material. */
export interface X3dhHeaderKeys {
  /** `shared_hka`: the initiator's first sending header key. */
  readonly initiator: Uint8Array<ArrayBuffer>;
  /** `shared_nhkb`: the responder's first sending header key. */
  readonly responder: Uint8Array<ArrayBuffer>;
}

/** What {@linkcode initiateX3dh} returns. Holds secret material. */
export interface X3dhInitiation {
  /** SK: the 32-byte shared secret, for `initSender`. */
  readonly sharedSecret: Uint8Array<ArrayBuffer>;
  /** AD: both identities, for `initSender`. */
  readonly associatedData: Uint8Array<ArrayBuffer>;
  /** The header to send with the first message (and with each until Bob answers). */
  readonly header: X3dhHeader;
  /** The responder's signed prekey: the remote ratchet key for `initSender`. */
  readonly remoteRatchetKey: Uint8Array;
  /** The initial header keys, if the header says the session encrypts its headers. */
  readonly headerKeys?: X3dhHeaderKeys;
}

/** The responder's private prekeys, from which X3DH picks the ones a header names. */
export interface X3dhResponderPrekeys {
  /** Signed prekeys still accepted: the current one and those in their grace period. */
  readonly signedPrekeys: readonly PrekeyKeyPair[];
  /** One-time prekeys not yet used. */
  readonly oneTimePrekeys: readonly PrekeyKeyPair[];
}

/** What {@linkcode respondX3dh} returns. Holds secret material. */
export interface X3dhResponse {
  /** SK: the 32-byte shared secret, for `initReceiver`. */
  readonly sharedSecret: Uint8Array<ArrayBuffer>;
  /** AD: both identities, for `initReceiver`. */
  readonly associatedData: Uint8Array<ArrayBuffer>;
  /** The signed prekey used: the responder's first ratchet key pair, for `initReceiver`. */
  readonly ownRatchetKeyPair: RatchetKeyPair;
  /** The initiator's claimed identity keys, from the header. */
  readonly initiator: IdentityKeys;
  /**
   * The one-time prekey to delete, or `null`. Delete it only after the first
   * message has decrypted; after a failure keep it, so a forged header cannot
   * use up a prekey.
   */
  readonly consumeOneTimePrekeyId: number | null;
  /** The initial header keys, if the header says the session encrypts its headers. */
  readonly headerKeys?: X3dhHeaderKeys;
}

function checkId(id: number, what: string): void {
  if (!Number.isInteger(id) || id < 0 || id > 0xffffffff) {
    throw new RangeError(`Cannot use ${what}: ID ${id} is not a u32`);
  }
}

function prekeySignedBytes(prekey: PublicPrekey): Uint8Array<ArrayBuffer> {
  return concat(u32(prekey.id), prekey.publicKey);
}

/**
 * Generates a prekey: a fresh X25519 key pair with its owner's chosen ID.
 *
 * @param id The prekey ID, a u32.
 * @returns The prekey with its raw private key.
 * @throws {RangeError} If `id` is not a u32.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generatePrekey } from "./x3dh.ts";
 *
 * const prekey = await generatePrekey(7);
 * assert.equal(prekey.id, 7);
 * assert.equal(prekey.publicKey.length, 32);
 * ```
 */
export async function generatePrekey(id: number): Promise<PrekeyKeyPair> {
  checkId(id, "prekey");
  const pair = await generateRatchetKeyPair();
  return { id, privateKey: pair.privateKey, publicKey: pair.publicKey };
}

/**
 * Signs a prekey with an identity's Ed25519 key under the `"prekey"`
 * domain, over `id u32 || publicKey`, so that the prekey can be checked on
 * its own, apart from the record that carries it.
 *
 * @param signer The owner's identity.
 * @param prekey The prekey's ID and public key.
 * @returns The 64-byte signature.
 * @throws {RangeError} If the ID is not a u32.
 * @throws {TypeError} If the public key is not 32 bytes.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity } from "./identity.ts";
 * import { generatePrekey, signPrekey, verifyPrekeySignature } from "./x3dh.ts";
 *
 * const bob = await Identity.generate();
 * const prekey = await generatePrekey(1);
 * const signature = await signPrekey(bob, prekey);
 * assert(await verifyPrekeySignature(bob.signingPublicKey, { ...prekey, signature }));
 * ```
 */
export function signPrekey(
  signer: Pick<Identity, "sign">,
  prekey: PublicPrekey,
): Promise<Uint8Array<ArrayBuffer>> {
  checkId(prekey.id, "prekey");
  checkKeyLength(prekey.publicKey, "prekey public key");
  return signer.sign("prekey", prekeySignedBytes(prekey));
}

/**
 * Verifies a signed prekey's own signature (domain `"prekey"`).
 *
 * @param signingPublicKey The owner's raw 32-byte Ed25519 key.
 * @param prekey The prekey ID, public key and signature.
 * @returns `true` only if the signature is valid for this key, ID and public key.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity } from "./identity.ts";
 * import { generatePrekey, signPrekey, verifyPrekeySignature } from "./x3dh.ts";
 *
 * const bob = await Identity.generate();
 * const prekey = await generatePrekey(1);
 * const signature = await signPrekey(bob, prekey);
 * assert(!(await verifyPrekeySignature(bob.signingPublicKey, { ...prekey, id: 2, signature })));
 * ```
 */
export async function verifyPrekeySignature(
  signingPublicKey: Uint8Array,
  prekey: SignedPrekey,
): Promise<boolean> {
  if (
    !Number.isInteger(prekey.id) || prekey.id < 0 || prekey.id > 0xffffffff ||
    prekey.publicKey.length !== KEY_LENGTH
  ) {
    return false;
  }
  return await verifySignature(
    "prekey",
    signingPublicKey,
    prekeySignedBytes(prekey),
    prekey.signature,
  );
}

/**
 * The associated data of a session: the initiator's Ed25519 and X25519 keys,
 * then the responder's.
 *
 * @param initiator The initiator's public keys.
 * @param responder The responder's public keys.
 * @returns The {@linkcode X3DH_ASSOCIATED_DATA_LENGTH}-byte associated data.
 * @throws {TypeError} If a key is not 32 bytes.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity } from "./identity.ts";
 * import { x3dhAssociatedData } from "./x3dh.ts";
 *
 * const alice = await Identity.generate();
 * const bob = await Identity.generate();
 * const ad = x3dhAssociatedData(alice, bob);
 * assert.equal(ad.length, 128);
 * assert.notDeepEqual(ad, x3dhAssociatedData(bob, alice));
 * ```
 */
export function x3dhAssociatedData(
  initiator: IdentityKeys,
  responder: IdentityKeys,
): Uint8Array<ArrayBuffer> {
  for (const keys of [initiator, responder]) {
    checkKeyLength(keys.signingPublicKey, "identity signing key");
    checkKeyLength(keys.encryptionPublicKey, "identity encryption key");
  }
  return concat(
    initiator.signingPublicKey,
    initiator.encryptionPublicKey,
    responder.signingPublicKey,
    responder.encryptionPublicKey,
  );
}

// The DHs of one side, on the calling thread (see `x25519Each`: on a failure
// the outputs already computed are zeroed).
function dhAll(pairs: [X25519PrivateKey, Uint8Array][]): Uint8Array[] {
  try {
    return x25519Each(pairs.map(([privateKey, publicKey]) =>
      [
        privateKey,
        x25519PublicKey(publicKey),
      ] as const
    ));
  } catch (cause) {
    // x25519 throws a RangeError only for an all-zero output.
    const reason = cause instanceof RangeError
      ? "a Diffie-Hellman output is all zeros"
      : "a public key is not a usable X25519 key";
    throw new KeyAgreementError(`Cannot agree on a key: ${reason}`, { cause });
  }
}

function deriveSecrets(
  outputs: Uint8Array[],
  headerEncryption: boolean,
): { sharedSecret: Uint8Array<ArrayBuffer>; headerKeys?: X3dhHeaderKeys } {
  const ikm = concat(F, ...outputs);
  const derive = (info: Uint8Array) => new Uint8Array(hkdf(sha256, ikm, SALT, info, KEY_LENGTH));
  const sharedSecret = derive(INFO);
  const headerKeys = headerEncryption
    ? { initiator: derive(HEADER_A_INFO), responder: derive(HEADER_B_INFO) }
    : undefined;
  ikm.fill(0);
  for (const out of outputs) out.fill(0);
  return headerKeys === undefined ? { sharedSecret } : { sharedSecret, headerKeys };
}

/**
 * The initiator's side: checks the responder's signed prekey signature
 * (and aborts if it is invalid), then computes SK from DH1 to DH3 (and DH4
 * if the bundle has a one-time prekey) with a fresh ephemeral key.
 *
 * @param initiator The local identity.
 * @param bundle The responder's identity keys and prekeys.
 * @param options `headerEncryption`: start a session that encrypts its
 *   headers (header version 2, with `headerKeys`). Default `false`.
 * @returns SK, AD, the header to send and the responder's ratchet key.
 * @throws {KeyAgreementError} If the signed prekey's signature is invalid or
 *   a DH output is all zeros.
 * @throws {TypeError} If a key is not 32 bytes.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity } from "./identity.ts";
 * import { generatePrekey, initiateX3dh, KeyAgreementError, signPrekey } from "./x3dh.ts";
 *
 * const alice = await Identity.generate();
 * const bob = await Identity.generate();
 * const mallory = await Identity.generate();
 * const spk = await generatePrekey(1);
 * const forged = await signPrekey(mallory, spk);
 * await assert.rejects(
 *   initiateX3dh(alice, {
 *     signingPublicKey: bob.signingPublicKey,
 *     encryptionPublicKey: bob.encryptionPublicKey,
 *     signedPrekey: { ...spk, signature: forged },
 *   }),
 *   KeyAgreementError,
 * );
 * ```
 */
export async function initiateX3dh(
  initiator: X3dhIdentity,
  bundle: X3dhBundle,
  options: { readonly headerEncryption?: boolean } = {},
): Promise<X3dhInitiation> {
  checkKeyLength(bundle.signingPublicKey, "responder signing key");
  checkKeyLength(bundle.encryptionPublicKey, "responder encryption key");
  const { signedPrekey, oneTimePrekey } = bundle;
  if (oneTimePrekey !== undefined) {
    checkId(oneTimePrekey.id, "one-time prekey");
    checkKeyLength(oneTimePrekey.publicKey, "one-time prekey public key");
  }
  const associatedData = x3dhAssociatedData(initiator, bundle);
  // No DH is computed unless the signature is valid.
  if (!(await verifyPrekeySignature(bundle.signingPublicKey, signedPrekey))) {
    throw new KeyAgreementError("Cannot agree on a key: the signed prekey's signature is invalid");
  }
  const ephemeral = newX25519KeyPair();
  const ek = x25519PrivateKey(ephemeral.privateKey);
  ephemeral.privateKey.fill(0);
  const outputs = dhAll([
    [initiator.encryptionPrivateKey, signedPrekey.publicKey],
    [ek, bundle.encryptionPublicKey],
    [ek, signedPrekey.publicKey],
    ...(oneTimePrekey === undefined ? [] : [[ek, oneTimePrekey.publicKey] as [
      X25519PrivateKey,
      Uint8Array,
    ]]),
  ]);
  const he = options.headerEncryption === true;
  const header: X3dhHeader = {
    initiatorSigningKey: new Uint8Array(initiator.signingPublicKey),
    initiatorEncryptionKey: new Uint8Array(initiator.encryptionPublicKey),
    ephemeralKey: ephemeral.publicKey,
    signedPrekeyId: signedPrekey.id,
    oneTimePrekeyId: oneTimePrekey === undefined ? null : oneTimePrekey.id,
  };
  return {
    ...deriveSecrets(outputs, he),
    associatedData,
    header: he ? { ...header, headerEncryption: true } : header,
    remoteRatchetKey: new Uint8Array(signedPrekey.publicKey),
  };
}

/**
 * The responder's side: looks up the signed and one-time prekeys the header
 * names and computes the same SK. Nothing is deleted here: the caller
 * deletes `consumeOneTimePrekeyId` only once the first message has
 * decrypted with a session started from this result.
 *
 * @param responder The local identity.
 * @param header The header of the initiator's first message.
 * @param prekeys The responder's private prekeys.
 * @returns SK, AD, the signed prekey as the first ratchet key pair, the
 *   initiator's claimed keys and the one-time prekey to delete on success.
 * @throws {KeyAgreementError} If the signed prekey or the one-time prekey is
 *   unknown (used, expired or never issued), or a DH output is all zeros.
 * @throws {TypeError} If a key in the header is not 32 bytes.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity } from "./identity.ts";
 * import { generatePrekey, initiateX3dh, KeyAgreementError, respondX3dh, signPrekey } from "./x3dh.ts";
 *
 * const alice = await Identity.generate();
 * const bob = await Identity.generate();
 * const spk = await generatePrekey(1);
 * const opk = await generatePrekey(2);
 * const sent = await initiateX3dh(alice, {
 *   ...bob.public,
 *   signedPrekey: { ...spk, signature: await signPrekey(bob, spk) },
 *   oneTimePrekey: opk,
 * });
 * // The one-time prekey has already been used and deleted.
 * await assert.rejects(
 *   respondX3dh(bob, sent.header, { signedPrekeys: [spk], oneTimePrekeys: [] }),
 *   KeyAgreementError,
 * );
 * ```
 */
// deno-lint-ignore require-await -- async so that every failure is a rejection
export async function respondX3dh(
  responder: X3dhIdentity,
  header: X3dhHeader,
  prekeys: X3dhResponderPrekeys,
): Promise<X3dhResponse> {
  checkKeyLength(header.initiatorSigningKey, "initiator signing key");
  checkKeyLength(header.initiatorEncryptionKey, "initiator encryption key");
  checkKeyLength(header.ephemeralKey, "ephemeral key");
  const spk = prekeys.signedPrekeys.find((k) => k.id === header.signedPrekeyId);
  if (spk === undefined) {
    throw new KeyAgreementError("Cannot agree on a key: the signed prekey is unknown or retired");
  }
  let opk: PrekeyKeyPair | undefined;
  if (header.oneTimePrekeyId !== null) {
    opk = prekeys.oneTimePrekeys.find((k) => k.id === header.oneTimePrekeyId);
    if (opk === undefined) {
      throw new KeyAgreementError(
        "Cannot agree on a key: the one-time prekey is unknown or already used",
      );
    }
  }
  const initiator: IdentityKeys = {
    signingPublicKey: new Uint8Array(header.initiatorSigningKey),
    encryptionPublicKey: new Uint8Array(header.initiatorEncryptionKey),
  };
  const associatedData = x3dhAssociatedData(initiator, responder);
  const spkPrivate = x25519PrivateKey(spk.privateKey);
  const outputs = dhAll([
    [spkPrivate, header.initiatorEncryptionKey],
    [responder.encryptionPrivateKey, header.ephemeralKey],
    [spkPrivate, header.ephemeralKey],
    ...(opk === undefined ? [] : [[x25519PrivateKey(opk.privateKey), header.ephemeralKey] as [
      X25519PrivateKey,
      Uint8Array,
    ]]),
  ]);
  return {
    ...deriveSecrets(outputs, header.headerEncryption === true),
    associatedData,
    ownRatchetKeyPair: {
      privateKey: new Uint8Array(spk.privateKey),
      publicKey: new Uint8Array(spk.publicKey),
    },
    initiator,
    consumeOneTimePrekeyId: opk === undefined ? null : opk.id,
  };
}
