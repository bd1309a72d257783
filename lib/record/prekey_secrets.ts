/**
 * A user's private prekeys, as their owner keeps them: made with
 * {@linkcode createPrekeySecrets}, kept fresh with
 * {@linkcode rotateSignedPrekey} and {@linkcode refillOneTimePrekeys},
 * spent with {@linkcode consumeOneTimePrekey}, and stored (encrypted) with
 * {@linkcode encodePrekeySecrets}. Every function is pure: it returns new
 * secrets and never changes its input.
 *
 * {@linkcode PrekeySecrets} hold a current signed prekey, older signed
 * prekeys still within their grace period (messages sent to them may still
 * be in a mailbox), and up to {@linkcode MAX_ONE_TIME_PREKEYS} unused
 * one-time prekeys. Their public halves are published as a prekey bundle
 * (see {@link "./prekey.ts"}); the secrets themselves are what X3DH's
 * `respondX3dh` takes.
 *
 * @example A week in the life of Bob's prekeys
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity } from "../crypto/identity.ts";
 * import {
 *   consumeOneTimePrekey,
 *   createPrekeySecrets,
 *   decodePrekeySecrets,
 *   encodePrekeySecrets,
 *   refillOneTimePrekeys,
 *   rotateSignedPrekey,
 *   SIGNED_PREKEY_ROTATION_MS,
 * } from "./prekey_secrets.ts";
 *
 * const bob = await Identity.generate();
 * let secrets = await createPrekeySecrets(bob, { oneTimePrekeyCount: 3, now: 0 });
 * secrets = consumeOneTimePrekey(secrets, secrets.oneTimePrekeys[0]!.id);
 * secrets = await refillOneTimePrekeys(secrets, { count: 3 });
 * secrets = await rotateSignedPrekey(bob, secrets, { now: SIGNED_PREKEY_ROTATION_MS });
 *
 * const stored = encodePrekeySecrets(secrets); // holds private keys: seal it
 * assert.deepEqual(decodePrekeySecrets(stored), secrets);
 * assert.equal(secrets.signedPrekeys.length, 2);
 * ```
 *
 * @module
 */
import { concat, Reader, u32, u64 } from "../platform/bytes.ts";
import { KEY_LENGTH } from "../crypto/_keys.ts";
import type { Identity } from "../crypto/identity.ts";
import {
  generatePrekey,
  PREKEY_SIGNATURE_LENGTH,
  type PrekeyKeyPair,
  signPrekey,
} from "../crypto/x3dh.ts";
import { checkTime } from "./_checks.ts";

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
 * import { createPrekeySecrets } from "./prekey_secrets.ts";
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
 * import { createPrekeySecrets, rotateSignedPrekey, SIGNED_PREKEY_GRACE_MS } from "./prekey_secrets.ts";
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
 * import { createPrekeySecrets, refillOneTimePrekeys } from "./prekey_secrets.ts";
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
 * import { consumeOneTimePrekey, createPrekeySecrets } from "./prekey_secrets.ts";
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
 * import { createPrekeySecrets, decodePrekeySecrets, encodePrekeySecrets } from "./prekey_secrets.ts";
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
 * import { decodePrekeySecrets } from "./prekey_secrets.ts";
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
