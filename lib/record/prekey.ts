/**
 * Prekey bundles as signed DHT records, so that even the first message to
 * an offline contact has forward secrecy (see `lib/crypto/x3dh.ts`).
 *
 * A user keeps {@linkcode PrekeySecrets}: a current signed prekey, older
 * signed prekeys still within their grace period (messages sent to them
 * may still be in a mailbox), and up to {@linkcode MAX_ONE_TIME_PREKEYS}
 * unused one-time prekeys. {@linkcode signPrekeyBundle} publishes their
 * public halves as a `"prekeys"` record under `/dim/prekeys/<userId>`;
 * {@linkcode openPrekeyBundle} validates one found in the DHT, and
 * {@linkcode toX3dhBundle} picks a one-time prekey for X3DH.
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
 * import {
 *   consumeOneTimePrekey,
 *   createPrekeySecrets,
 *   openPrekeyBundle,
 *   signPrekeyBundle,
 *   toX3dhBundle,
 * } from "./prekey.ts";
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
import { concat, Reader, toHex, u32, u64 } from "../platform/bytes.ts";
import { KEY_LENGTH } from "../crypto/_keys.ts";
import type { Identity } from "../crypto/identity.ts";
import {
  generatePrekey,
  type IdentityKeys,
  PREKEY_SIGNATURE_LENGTH,
  type PrekeyKeyPair,
  type PublicPrekey,
  type SignedPrekey,
  signPrekey,
  verifyPrekeySignature,
  type X3dhBundle,
} from "../crypto/x3dh.ts";
import { InvalidRecordError } from "../errors.ts";
import { openTypedRecord, type SignedRecord, signRecord } from "./record.ts";

/** The record type of prekey bundles. */
export const PREKEY_RECORD_TYPE = "prekeys";
/** The payload encoding version this module writes and the only one it reads. */
export const PREKEY_PAYLOAD_VERSION = 1;
/** The secrets encoding version {@linkcode encodePrekeySecrets} writes and the only one it reads. */
export const PREKEY_SECRETS_VERSION = 1;
/** The most one-time prekeys a bundle lists and a user keeps. */
export const MAX_ONE_TIME_PREKEYS = 100;
/** The most signed prekeys a user keeps: the current one and retired ones in their grace period. */
export const MAX_SIGNED_PREKEYS = 8;
/** How often to rotate the signed prekey (7 days): call {@linkcode rotateSignedPrekey} when it is older. */
export const SIGNED_PREKEY_ROTATION_MS: number = 7 * 24 * 60 * 60 * 1000;
/**
 * How long a retired signed prekey's private key is kept (14 days): long
 * enough for a record fetched before the rotation to expire (7 days) and a
 * message sent with it to wait a week in a mailbox.
 */
export const SIGNED_PREKEY_GRACE_MS: number = 14 * 24 * 60 * 60 * 1000;
/** How long a prekey record stays valid by default (7 days). */
export const DEFAULT_PREKEY_TTL_MS: number = 7 * 24 * 60 * 60 * 1000;

const MAX_PREKEY_ID = 0xffffffff;

/** A signed prekey as its owner keeps it. Holds secret material: never log it. */
export interface SignedPrekeySecret extends PrekeyKeyPair {
  /** When it was made, in milliseconds since the epoch. */
  readonly createdAt: number;
  /** Its signature under the `"prekey"` domain. */
  readonly signature: Uint8Array;
  /** When a newer one replaced it, or `null` for the current one. */
  readonly retiredAt: number | null;
}

/**
 * A user's private prekeys: plain data, to store encrypted with
 * {@linkcode encodePrekeySecrets}. It is also what `respondX3dh` takes.
 * Holds secret material: never log it.
 */
export interface PrekeySecrets {
  /** Newest first: the current signed prekey, then retired ones. */
  readonly signedPrekeys: readonly SignedPrekeySecret[];
  /** The one-time prekeys not used yet. */
  readonly oneTimePrekeys: readonly PrekeyKeyPair[];
  /** The ID the next prekey gets (signed and one-time prekeys share one counter). */
  readonly nextId: number;
}

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

/** Options of {@linkcode createPrekeySecrets}. */
export interface CreatePrekeySecretsOptions {
  /** How many one-time prekeys to make, 0 to {@linkcode MAX_ONE_TIME_PREKEYS}. Default: the maximum. */
  readonly oneTimePrekeyCount?: number;
  /** The current time in milliseconds since the epoch. Default: `Date.now()`. */
  readonly now?: number;
}

/** Options of {@linkcode rotateSignedPrekey}. */
export interface RotateSignedPrekeyOptions {
  /** The current time in milliseconds since the epoch. Default: `Date.now()`. */
  readonly now?: number;
  /** How long retired signed prekeys are kept. Default: {@linkcode SIGNED_PREKEY_GRACE_MS}. */
  readonly gracePeriodMs?: number;
}

/** Options of {@linkcode refillOneTimePrekeys}. */
export interface RefillOneTimePrekeysOptions {
  /** How many unused one-time prekeys to have afterwards. Default: {@linkcode MAX_ONE_TIME_PREKEYS}. */
  readonly count?: number;
}

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

function checkTime(value: number, what: string, action: string): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`Cannot ${action}: ${what} ${value} is not a non-negative integer`);
  }
}

function checkOneTimeCount(count: number, action: string): void {
  if (!Number.isInteger(count) || count < 0 || count > MAX_ONE_TIME_PREKEYS) {
    throw new RangeError(
      `Cannot ${action}: one-time prekey count ${count} is outside 0..${MAX_ONE_TIME_PREKEYS}`,
    );
  }
}

function allocate(nextId: number, count: number, action: string): void {
  if (nextId + count - 1 > MAX_PREKEY_ID) {
    throw new RangeError(`Cannot ${action}: prekey IDs are exhausted`);
  }
}

async function newSignedPrekey(
  signer: Pick<Identity, "sign">,
  id: number,
  now: number,
): Promise<SignedPrekeySecret> {
  const prekey = await generatePrekey(id);
  return {
    ...prekey,
    createdAt: now,
    signature: await signPrekey(signer, prekey),
    retiredAt: null,
  };
}

function generatePrekeys(firstId: number, count: number): Promise<PrekeyKeyPair[]> {
  return Promise.all(Array.from({ length: count }, (_, i) => generatePrekey(firstId + i)));
}

/**
 * Makes a user's first prekeys: a signed prekey and one-time prekeys.
 *
 * @param signer The owner's identity; it signs the signed prekey.
 * @param options How many one-time prekeys, and the current time.
 * @returns The new secrets; store them before publishing their bundle.
 * @throws {RangeError} If the count or time is out of range.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity } from "../crypto/identity.ts";
 * import { createPrekeySecrets } from "./prekey.ts";
 *
 * const me = await Identity.generate();
 * const secrets = await createPrekeySecrets(me, { oneTimePrekeyCount: 3 });
 * assert.equal(secrets.signedPrekeys.length, 1);
 * assert.equal(secrets.oneTimePrekeys.length, 3);
 * assert.equal(secrets.nextId, 4);
 * ```
 */
export async function createPrekeySecrets(
  signer: Pick<Identity, "sign">,
  options: CreatePrekeySecretsOptions = {},
): Promise<PrekeySecrets> {
  const action = "create prekeys";
  const count = options.oneTimePrekeyCount ?? MAX_ONE_TIME_PREKEYS;
  checkOneTimeCount(count, action);
  const now = options.now ?? Date.now();
  checkTime(now, "now", action);
  const [signed, oneTime] = await Promise.all([
    newSignedPrekey(signer, 0, now),
    generatePrekeys(1, count),
  ]);
  return { signedPrekeys: [signed], oneTimePrekeys: oneTime, nextId: 1 + count };
}

/**
 * Replaces the current signed prekey with a new one. The old one is kept,
 * marked retired, for the grace period; retired ones older than that (or
 * beyond {@linkcode MAX_SIGNED_PREKEYS}) are dropped, which is what gives
 * first messages forward secrecy once the grace period is over.
 *
 * @param signer The owner's identity; it signs the new prekey.
 * @param secrets The current secrets; they are not changed.
 * @param options The current time and the grace period.
 * @returns The new secrets; store them, then publish a new bundle.
 * @throws {RangeError} If the time or grace period is out of range, or the
 *   prekey IDs are exhausted.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity } from "../crypto/identity.ts";
 * import { createPrekeySecrets, rotateSignedPrekey, SIGNED_PREKEY_GRACE_MS } from "./prekey.ts";
 *
 * const me = await Identity.generate();
 * const day0 = await createPrekeySecrets(me, { oneTimePrekeyCount: 0, now: 0 });
 * const day7 = await rotateSignedPrekey(me, day0, { now: 7 * 86_400_000 });
 * assert.equal(day7.signedPrekeys.length, 2);
 * const later = await rotateSignedPrekey(me, day7, { now: 7 * 86_400_000 + SIGNED_PREKEY_GRACE_MS + 1 });
 * assert.equal(later.signedPrekeys.length, 2); // the day-0 prekey is gone
 * assert.equal(later.signedPrekeys[1]!.id, day7.signedPrekeys[0]!.id);
 * ```
 */
export async function rotateSignedPrekey(
  signer: Pick<Identity, "sign">,
  secrets: PrekeySecrets,
  options: RotateSignedPrekeyOptions = {},
): Promise<PrekeySecrets> {
  const action = "rotate signed prekey";
  const now = options.now ?? Date.now();
  checkTime(now, "now", action);
  const grace = options.gracePeriodMs ?? SIGNED_PREKEY_GRACE_MS;
  checkTime(grace, "gracePeriodMs", action);
  allocate(secrets.nextId, 1, action);
  const fresh = await newSignedPrekey(signer, secrets.nextId, now);
  const kept = secrets.signedPrekeys
    .map((k) => (k.retiredAt === null ? { ...k, retiredAt: now } : k))
    .filter((k) => now - k.retiredAt! <= grace)
    .slice(0, MAX_SIGNED_PREKEYS - 1);
  return { ...secrets, signedPrekeys: [fresh, ...kept], nextId: secrets.nextId + 1 };
}

/**
 * Tops the unused one-time prekeys up to `count` with new ones.
 *
 * @param secrets The current secrets; they are not changed.
 * @param options `count`: how many to have afterwards.
 * @returns The new secrets (the same object if none were missing).
 * @throws {RangeError} If `count` is out of range or the prekey IDs are exhausted.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity } from "../crypto/identity.ts";
 * import { createPrekeySecrets, refillOneTimePrekeys } from "./prekey.ts";
 *
 * const me = await Identity.generate();
 * const few = await createPrekeySecrets(me, { oneTimePrekeyCount: 2 });
 * const more = await refillOneTimePrekeys(few, { count: 5 });
 * assert.equal(more.oneTimePrekeys.length, 5);
 * ```
 */
export async function refillOneTimePrekeys(
  secrets: PrekeySecrets,
  options: RefillOneTimePrekeysOptions = {},
): Promise<PrekeySecrets> {
  const action = "refill one-time prekeys";
  const count = options.count ?? MAX_ONE_TIME_PREKEYS;
  checkOneTimeCount(count, action);
  const missing = count - secrets.oneTimePrekeys.length;
  if (missing <= 0) return secrets;
  allocate(secrets.nextId, missing, action);
  const fresh = await generatePrekeys(secrets.nextId, missing);
  return {
    ...secrets,
    oneTimePrekeys: [...secrets.oneTimePrekeys, ...fresh],
    nextId: secrets.nextId + missing,
  };
}

/**
 * Deletes a used one-time prekey. Call it only once the first message of
 * the session it started has decrypted (X3DH's `consumeOneTimePrekeyId`).
 *
 * @param secrets The current secrets; they are not changed.
 * @param id The one-time prekey ID.
 * @returns The secrets without that prekey (the same object if it was not there).
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity } from "../crypto/identity.ts";
 * import { consumeOneTimePrekey, createPrekeySecrets } from "./prekey.ts";
 *
 * const me = await Identity.generate();
 * const secrets = await createPrekeySecrets(me, { oneTimePrekeyCount: 2 });
 * const id = secrets.oneTimePrekeys[0]!.id;
 * assert.equal(consumeOneTimePrekey(secrets, id).oneTimePrekeys.length, 1);
 * ```
 */
export function consumeOneTimePrekey(secrets: PrekeySecrets, id: number): PrekeySecrets {
  const oneTimePrekeys = secrets.oneTimePrekeys.filter((k) => k.id !== id);
  if (oneTimePrekeys.length === secrets.oneTimePrekeys.length) return secrets;
  return { ...secrets, oneTimePrekeys };
}

function currentSignedPrekey(secrets: PrekeySecrets, action: string): SignedPrekeySecret {
  const current = secrets.signedPrekeys[0];
  if (current === undefined || current.retiredAt !== null) {
    throw new TypeError(`Cannot ${action}: there is no current signed prekey`);
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
 * import { createPrekeySecrets, signPrekeyBundle } from "./prekey.ts";
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
  const spk = currentSignedPrekey(secrets, action);
  if (identity.encryptionPublicKey.length !== KEY_LENGTH) {
    throw new TypeError(`Cannot ${action}: the encryption key must be ${KEY_LENGTH} bytes`);
  }
  checkOneTimeCount(secrets.oneTimePrekeys.length, action);
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

function invalid(reason: string, cause?: unknown): never {
  throw new InvalidRecordError(
    `Cannot open prekey bundle: ${reason}`,
    cause === undefined ? undefined : { cause },
  );
}

interface DecodedPayload {
  encryptionPublicKey: Uint8Array;
  signedPrekey: SignedPrekey & { createdAt: number };
  oneTimePrekeys: PublicPrekey[];
}

function decodePayload(payload: Uint8Array): DecodedPayload {
  try {
    const r = new Reader(payload);
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
    r.end();
    return { encryptionPublicKey, signedPrekey, oneTimePrekeys };
  } catch (err) {
    if (err instanceof InvalidRecordError) throw err;
    const detail = err instanceof Error ? err.message.replace(/^Cannot decode: /, "") : "";
    return invalid(`the payload is malformed (${detail})`, err);
  }
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
 * import { createPrekeySecrets, openPrekeyBundle, signPrekeyBundle } from "./prekey.ts";
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
  const payload = decodePayload(record.payload);
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
 * import { createPrekeySecrets, openPrekeyBundle, signPrekeyBundle, toX3dhBundle } from "./prekey.ts";
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

// --- Storage of the secrets ---------------------------------------------------

const SIGNED_SECRET_LENGTH = 4 + 2 * KEY_LENGTH + 8 + PREKEY_SIGNATURE_LENGTH + 1 + 8;
const ONE_TIME_SECRET_LENGTH = 4 + 2 * KEY_LENGTH;
/** The largest valid encoding of {@linkcode PrekeySecrets} in bytes. */
export const MAX_PREKEY_SECRETS_LENGTH: number = 1 + 8 + 1 +
  MAX_SIGNED_PREKEYS * SIGNED_SECRET_LENGTH + 1 + MAX_ONE_TIME_PREKEYS * ONE_TIME_SECRET_LENGTH;

function checkKeyPair(k: PrekeyKeyPair): void {
  if (k.privateKey.length !== KEY_LENGTH || k.publicKey.length !== KEY_LENGTH) {
    throw new TypeError(`Cannot encode prekey secrets: a key is not ${KEY_LENGTH} bytes`);
  }
  if (!Number.isInteger(k.id) || k.id < 0 || k.id > MAX_PREKEY_ID) {
    throw new RangeError(`Cannot encode prekey secrets: prekey ID ${k.id} is not a u32`);
  }
}

/**
 * Encodes prekey secrets for storage (version 1, integers big-endian):
 *
 * ```text
 * version u8 (= 1) | nextId u64 | signedCount u8
 * | { id u32 | privateKey (32) | publicKey (32) | createdAt u64 | signature (64)
 * |   | retired u8 (0|1) | retiredAt u64 (0 if not retired) } × signedCount
 * | oneTimeCount u8 | { id u32 | privateKey (32) | publicKey (32) } × oneTimeCount
 * ```
 *
 * The result holds private keys: store it encrypted.
 *
 * @param secrets The secrets.
 * @returns The encoding, at most {@linkcode MAX_PREKEY_SECRETS_LENGTH} bytes.
 * @throws {TypeError} If a key or signature has the wrong length.
 * @throws {RangeError} If a count, ID or time is out of range.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity } from "../crypto/identity.ts";
 * import { createPrekeySecrets, decodePrekeySecrets, encodePrekeySecrets } from "./prekey.ts";
 *
 * const me = await Identity.generate();
 * const secrets = await createPrekeySecrets(me, { oneTimePrekeyCount: 2 });
 * assert.deepEqual(decodePrekeySecrets(encodePrekeySecrets(secrets)), secrets);
 * ```
 */
export function encodePrekeySecrets(secrets: PrekeySecrets): Uint8Array<ArrayBuffer> {
  const action = "encode prekey secrets";
  const { signedPrekeys, oneTimePrekeys, nextId } = secrets;
  if (signedPrekeys.length > MAX_SIGNED_PREKEYS) {
    throw new RangeError(`Cannot ${action}: more than ${MAX_SIGNED_PREKEYS} signed prekeys`);
  }
  checkOneTimeCount(oneTimePrekeys.length, action);
  checkTime(nextId, "nextId", action);
  const parts: Uint8Array[] = [
    new Uint8Array([PREKEY_SECRETS_VERSION]),
    u64(nextId),
    new Uint8Array([signedPrekeys.length]),
  ];
  for (const k of signedPrekeys) {
    checkKeyPair(k);
    checkTime(k.createdAt, "createdAt", action);
    if (k.signature.length !== PREKEY_SIGNATURE_LENGTH) {
      throw new TypeError(`Cannot ${action}: a signature is not ${PREKEY_SIGNATURE_LENGTH} bytes`);
    }
    if (k.retiredAt !== null) checkTime(k.retiredAt, "retiredAt", action);
    parts.push(
      u32(k.id),
      k.privateKey,
      k.publicKey,
      u64(k.createdAt),
      k.signature,
      new Uint8Array([k.retiredAt === null ? 0 : 1]),
      u64(k.retiredAt ?? 0),
    );
  }
  parts.push(new Uint8Array([oneTimePrekeys.length]));
  for (const k of oneTimePrekeys) {
    checkKeyPair(k);
    parts.push(u32(k.id), k.privateKey, k.publicKey);
  }
  return concat(...parts);
}

/**
 * Decodes prekey secrets stored with {@linkcode encodePrekeySecrets},
 * strictly: the length is checked before parsing, and an unknown version,
 * truncation, trailing bytes, counts over their limits, a bad flag or a
 * repeated ID are refused.
 *
 * @param bytes The encoding.
 * @returns The secrets.
 * @throws {SyntaxError} If the bytes are not a valid encoding.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodePrekeySecrets } from "./prekey.ts";
 *
 * assert.throws(() => decodePrekeySecrets(new Uint8Array([2])), SyntaxError);
 * ```
 */
export function decodePrekeySecrets(bytes: Uint8Array): PrekeySecrets {
  const fail = (reason: string): never => {
    throw new SyntaxError(`Cannot decode prekey secrets: ${reason}`);
  };
  if (bytes.length > MAX_PREKEY_SECRETS_LENGTH) fail("the input is too long");
  const r = new Reader(bytes);
  const version = r.u8();
  if (version !== PREKEY_SECRETS_VERSION) fail(`unknown version ${version}`);
  const nextId = r.u64();
  if (nextId > MAX_PREKEY_ID + 1) fail("nextId is out of range");
  const signedCount = r.u8();
  if (signedCount > MAX_SIGNED_PREKEYS) fail("too many signed prekeys");
  const ids = new Set<number>();
  const checkId = (id: number): void => {
    if (ids.has(id)) fail(`prekey ID ${id} is repeated`);
    if (id >= nextId) fail(`prekey ID ${id} is not below nextId`);
    ids.add(id);
  };
  const signedPrekeys: SignedPrekeySecret[] = [];
  for (let i = 0; i < signedCount; i++) {
    const id = r.u32();
    checkId(id);
    const privateKey = r.bytes(KEY_LENGTH);
    const publicKey = r.bytes(KEY_LENGTH);
    const createdAt = r.u64();
    const signature = r.bytes(PREKEY_SIGNATURE_LENGTH);
    const retired = r.u8();
    const retiredAtValue = r.u64();
    if (retired > 1 || (retired === 0 && retiredAtValue !== 0)) fail("a retired flag is invalid");
    // Only the first (newest) may be current.
    if ((retired === 0) !== (i === 0)) fail("only the first signed prekey may be current");
    const retiredAt = retired === 1 ? retiredAtValue : null;
    signedPrekeys.push({ id, privateKey, publicKey, createdAt, signature, retiredAt });
  }
  const oneTimeCount = r.u8();
  if (oneTimeCount > MAX_ONE_TIME_PREKEYS) fail("too many one-time prekeys");
  const oneTimePrekeys: PrekeyKeyPair[] = [];
  for (let i = 0; i < oneTimeCount; i++) {
    const id = r.u32();
    checkId(id);
    oneTimePrekeys.push({ id, privateKey: r.bytes(KEY_LENGTH), publicKey: r.bytes(KEY_LENGTH) });
  }
  r.end();
  return { signedPrekeys, oneTimePrekeys, nextId };
}
