/**
 * Prekey bundles as signed DHT records, so that even the first message to
 * an offline contact has forward secrecy (see `lib/crypto/x3dh.ts`).
 *
 * A user keeps private {@linkcode PrekeySecrets} (see
 * {@link "./prekey_secrets.ts"}). {@linkcode signPrekeyBundle} publishes
 * their public halves as a `"prekeys"` record under
 * `/dim/prekeys/<userId>`; {@linkcode openPrekeyBundle} validates one found
 * in the DHT, and {@linkcode toX3dhBundle} picks a one-time prekey for X3DH.
 *
 * The signed prekey carries, besides the record's signature, its own
 * Ed25519 signature under the `"prekey"` domain over `id u32 || publicKey`,
 * so it can be checked apart from the record; X3DH checks it again.
 *
 * ## Payload (version 1, integers big-endian)
 *
 * ```text
 * version u8 (= 1) | identityEncryptionKey (32)
 * | signedPrekeyId u32 | signedPrekeyPublicKey (32) | signedPrekeyCreatedAt u64 | signedPrekeySignature (64)
 * | oneTimeCount u8 (<= 100) | { id u32 | publicKey (32) } × oneTimeCount
 * ```
 *
 * With 100 one-time prekeys the whole record is under 4 KiB, well within
 * the 10 KiB record limit.
 *
 * @example Bob publishes prekeys; Alice opens them and starts X3DH
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity } from "../crypto/identity.ts";
 * import { initiateX3dh, respondX3dh } from "../crypto/x3dh.ts";
 * import { openPrekeyBundle, signPrekeyBundle, toX3dhBundle } from "./prekey.ts";
 * import { consumeOneTimePrekey, createPrekeySecrets } from "./prekey_secrets.ts";
 *
 * const alice = await Identity.generate();
 * const bob = await Identity.generate();
 * let secrets = await createPrekeySecrets(bob, { oneTimePrekeyCount: 5 });
 * const record = await signPrekeyBundle(bob, secrets);
 *
 * const bundle = await openPrekeyBundle(record.bytes, { key: `/dim/prekeys/${bob.id}` });
 * const sent = await initiateX3dh(alice, toX3dhBundle(bundle));
 *
 * const got = await respondX3dh(bob, sent.header, secrets);
 * assert.deepEqual(got.sharedSecret, sent.sharedSecret);
 * // ...once the first message has decrypted:
 * secrets = consumeOneTimePrekey(secrets, got.consumeOneTimePrekeyId!);
 * assert.equal(secrets.oneTimePrekeys.length, 4);
 * ```
 *
 * @module
 */
import { concat, toHex, u32, u64 } from "../platform/bytes.ts";
import { KEY_LENGTH } from "../crypto/_keys.ts";
import type { Identity } from "../crypto/identity.ts";
import {
  type IdentityKeys,
  PREKEY_SIGNATURE_LENGTH,
  type PublicPrekey,
  type SignedPrekey,
  verifyPrekeySignature,
  type X3dhBundle,
} from "../crypto/x3dh.ts";
import { checkEncryptionKey, decodePayload, invalidPayload } from "./_checks.ts";
import {
  MAX_ONE_TIME_PREKEYS,
  type PrekeySecrets,
  type SignedPrekeySecret,
} from "./prekey_secrets.ts";
import { openTypedRecord, type SignedRecord, signRecord } from "./record.ts";

/** The record type of prekey bundles. */
export const PREKEY_RECORD_TYPE = "prekeys";
/** The payload encoding version this module writes and the only one it reads. */
export const PREKEY_PAYLOAD_VERSION = 1;
/** How long a prekey record stays valid by default (7 days). */
export const DEFAULT_PREKEY_TTL_MS: number = 7 * 24 * 60 * 60 * 1000;

/** A validated prekey bundle: a user's identity keys and published prekeys. */
export interface PrekeyBundle extends IdentityKeys {
  /** The owner's user ID. */
  readonly id: string;
  /** The current signed prekey, its signature checked. */
  readonly signedPrekey: SignedPrekey & { readonly createdAt: number };
  /** The one-time prekeys listed, each ID and key distinct. */
  readonly oneTimePrekeys: readonly PublicPrekey[];
  /** The record's sequence number. */
  readonly seq: number;
  /** When the record was signed, in milliseconds since the epoch. */
  readonly issuedAt: number;
  /** When the record expires, in milliseconds since the epoch. */
  readonly expiresAt: number;
  /** The signed record the bundle came from. */
  readonly record: SignedRecord;
}

/** What {@linkcode signPrekeyBundle} needs from an identity. */
export type PrekeyBundleSigner = Pick<
  Identity,
  "signingPublicKey" | "encryptionPublicKey" | "sign"
>;

/** Options of {@linkcode signPrekeyBundle}. */
export interface SignPrekeyBundleOptions {
  /** The sequence number. Default: the signing time, so each publication supersedes the last. */
  readonly seq?: number;
  /** The signing time in milliseconds since the epoch. Default: `Date.now()`. */
  readonly now?: number;
  /** How long the record stays valid. Default: {@linkcode DEFAULT_PREKEY_TTL_MS}. */
  readonly ttlMs?: number;
}

/** Options of {@linkcode openPrekeyBundle}. */
export interface OpenPrekeyBundleOptions {
  /** The current time in milliseconds since the epoch. Default: `Date.now()`. */
  readonly now?: number;
  /**
   * The DHT key the bundle was found under; it must belong to it. Default:
   * the record's own key, which checks only that it is self-consistent.
   */
  readonly key?: string | Uint8Array;
}

/** Options of {@linkcode toX3dhBundle}. */
export interface ToX3dhBundleOptions {
  /**
   * The one-time prekey to use, or `null` for none. Default: one chosen at
   * random, so that initiators who fetched the same record rarely pick the
   * same one.
   */
  readonly oneTimePrekeyId?: number | null;
}

function currentSignedPrekey(secrets: PrekeySecrets): SignedPrekeySecret {
  const current = secrets.signedPrekeys[0];
  if (current === undefined || current.retiredAt !== null) {
    throw new TypeError("Cannot sign prekey bundle: there is no current signed prekey");
  }
  return current;
}

/**
 * Makes and signs the prekey record of an identity: the current signed
 * prekey and every unused one-time prekey.
 *
 * @param identity The owner's identity, whose secrets these are.
 * @param secrets The owner's prekeys.
 * @param options The sequence number, signing time and validity period.
 * @returns The signed record, ready to publish under its `key`.
 * @throws {TypeError} If there is no current signed prekey or a key is not 32 bytes.
 * @throws {RangeError} If there are more than {@linkcode MAX_ONE_TIME_PREKEYS}
 *   one-time prekeys, or `seq`, `now` or `ttlMs` is out of range.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity } from "../crypto/identity.ts";
 * import { signPrekeyBundle } from "./prekey.ts";
 * import { createPrekeySecrets } from "./prekey_secrets.ts";
 *
 * const me = await Identity.generate();
 * const secrets = await createPrekeySecrets(me);
 * const record = await signPrekeyBundle(me, secrets, { now: 1_700_000_000_000 });
 * assert.equal(record.key, `/dim/prekeys/${me.id}`);
 * assert(record.bytes.length < 4096);
 * ```
 */
export async function signPrekeyBundle(
  identity: PrekeyBundleSigner,
  secrets: PrekeySecrets,
  options: SignPrekeyBundleOptions = {},
): Promise<SignedRecord> {
  const action = "sign prekey bundle";
  const spk = currentSignedPrekey(secrets);
  checkEncryptionKey(identity.encryptionPublicKey, action);
  const count = secrets.oneTimePrekeys.length;
  if (count > MAX_ONE_TIME_PREKEYS) {
    throw new RangeError(
      `Cannot ${action}: one-time prekey count ${count} is outside 0..${MAX_ONE_TIME_PREKEYS}`,
    );
  }
  const parts: Uint8Array[] = [
    new Uint8Array([PREKEY_PAYLOAD_VERSION]),
    identity.encryptionPublicKey,
    u32(spk.id),
    spk.publicKey,
    u64(spk.createdAt),
    spk.signature,
    new Uint8Array([secrets.oneTimePrekeys.length]),
  ];
  for (const k of secrets.oneTimePrekeys) parts.push(u32(k.id), k.publicKey);
  const payload = concat(...parts);
  const issuedAt = options.now ?? Date.now();
  return await signRecord(identity, {
    type: PREKEY_RECORD_TYPE,
    seq: options.seq ?? issuedAt,
    payload,
    issuedAt,
    ttlMs: options.ttlMs ?? DEFAULT_PREKEY_TTL_MS,
  });
}

function invalid(reason: string): never {
  return invalidPayload("prekey bundle", reason);
}

interface DecodedPayload {
  encryptionPublicKey: Uint8Array;
  signedPrekey: SignedPrekey & { createdAt: number };
  oneTimePrekeys: PublicPrekey[];
}

function decodeBundlePayload(payload: Uint8Array): DecodedPayload {
  return decodePayload("prekey bundle", payload, (r) => {
    const version = r.u8();
    if (version !== PREKEY_PAYLOAD_VERSION) invalid(`unknown payload version ${version}`);
    const encryptionPublicKey = r.bytes(KEY_LENGTH);
    const signedPrekey = {
      id: r.u32(),
      publicKey: r.bytes(KEY_LENGTH),
      createdAt: r.u64(),
      signature: r.bytes(PREKEY_SIGNATURE_LENGTH),
    };
    const count = r.u8();
    if (count > MAX_ONE_TIME_PREKEYS) invalid("it lists too many one-time prekeys");
    const oneTimePrekeys: PublicPrekey[] = [];
    const ids = new Set<number>();
    const keys = new Set<string>([toHex(signedPrekey.publicKey)]);
    for (let i = 0; i < count; i++) {
      const prekey = { id: r.u32(), publicKey: r.bytes(KEY_LENGTH) };
      const hex = toHex(prekey.publicKey);
      if (ids.has(prekey.id) || keys.has(hex)) invalid("a one-time prekey is listed twice");
      ids.add(prekey.id);
      keys.add(hex);
      oneTimePrekeys.push(prekey);
    }
    return { encryptionPublicKey, signedPrekey, oneTimePrekeys };
  });
}

/**
 * Validates a prekey record in full (size, structure, owner, key, record
 * signature, validity period, payload, and the signed prekey's own
 * signature) and returns the bundle.
 *
 * @param input The encoded record, or a decoded one (its `bytes` are
 *   validated again).
 * @param options `key`: the DHT key it was found under; `now`: the current time.
 * @returns The bundle.
 * @throws {InvalidRecordError} If the record or its payload fails a check,
 *   or it is not a prekey record.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity } from "../crypto/identity.ts";
 * import { InvalidRecordError } from "../errors.ts";
 * import { openPrekeyBundle, signPrekeyBundle } from "./prekey.ts";
 * import { createPrekeySecrets } from "./prekey_secrets.ts";
 *
 * const bob = await Identity.generate();
 * const mallory = await Identity.generate();
 * const record = await signPrekeyBundle(mallory, await createPrekeySecrets(mallory));
 * await assert.rejects(
 *   openPrekeyBundle(record, { key: `/dim/prekeys/${bob.id}` }),
 *   InvalidRecordError,
 * );
 * ```
 */
export async function openPrekeyBundle(
  input: Uint8Array | SignedRecord,
  options: OpenPrekeyBundleOptions = {},
): Promise<PrekeyBundle> {
  const record = await openTypedRecord(input, PREKEY_RECORD_TYPE, "prekey bundle", options);
  const payload = decodeBundlePayload(record.payload);
  if (payload.signedPrekey.createdAt > record.issuedAt) {
    invalid("the signed prekey is newer than the record");
  }
  if (!(await verifyPrekeySignature(record.owner, payload.signedPrekey))) {
    invalid("the signed prekey's signature is invalid");
  }
  return {
    id: record.ownerId,
    signingPublicKey: record.owner,
    encryptionPublicKey: payload.encryptionPublicKey,
    signedPrekey: payload.signedPrekey,
    oneTimePrekeys: payload.oneTimePrekeys,
    seq: record.seq,
    issuedAt: record.issuedAt,
    expiresAt: record.expiresAt,
    record,
  };
}

/**
 * The X3DH input from a validated bundle, with one of its one-time prekeys.
 *
 * @param bundle A bundle from {@linkcode openPrekeyBundle}.
 * @param options `oneTimePrekeyId`: which one-time prekey, or `null` for
 *   none; by default one at random (none if the bundle lists none).
 * @returns The bundle for `initiateX3dh`.
 * @throws {RangeError} If `oneTimePrekeyId` is not listed in the bundle.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity } from "../crypto/identity.ts";
 * import { openPrekeyBundle, signPrekeyBundle, toX3dhBundle } from "./prekey.ts";
 * import { createPrekeySecrets } from "./prekey_secrets.ts";
 *
 * const bob = await Identity.generate();
 * const secrets = await createPrekeySecrets(bob, { oneTimePrekeyCount: 3 });
 * const bundle = await openPrekeyBundle(await signPrekeyBundle(bob, secrets));
 * assert.equal(toX3dhBundle(bundle, { oneTimePrekeyId: 2 }).oneTimePrekey?.id, 2);
 * assert.equal(toX3dhBundle(bundle, { oneTimePrekeyId: null }).oneTimePrekey, undefined);
 * ```
 */
export function toX3dhBundle(bundle: PrekeyBundle, options: ToX3dhBundleOptions = {}): X3dhBundle {
  const { oneTimePrekeys } = bundle;
  let oneTimePrekey: PublicPrekey | undefined;
  if (options.oneTimePrekeyId === undefined) {
    if (oneTimePrekeys.length > 0) {
      const [random] = crypto.getRandomValues(new Uint32Array(1));
      oneTimePrekey = oneTimePrekeys[random! % oneTimePrekeys.length];
    }
  } else if (options.oneTimePrekeyId !== null) {
    oneTimePrekey = oneTimePrekeys.find((k) => k.id === options.oneTimePrekeyId);
    if (oneTimePrekey === undefined) {
      throw new RangeError(
        `Cannot choose one-time prekey: ${options.oneTimePrekeyId} is not in the bundle`,
      );
    }
  }
  return {
    signingPublicKey: bundle.signingPublicKey,
    encryptionPublicKey: bundle.encryptionPublicKey,
    signedPrekey: bundle.signedPrekey,
    ...(oneTimePrekey === undefined ? {} : { oneTimePrekey }),
  };
}
