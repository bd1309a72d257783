/**
 * Signed records: the small, self-certifying values DIM stores in the DHT.
 *
 * A record says "the owner of this Ed25519 key published this payload, in
 * this version (`seq`), valid from `issuedAt` until `expiresAt`". It lives
 * under the DHT key `/dim/<type>/<ownerUserId>`, and a record is only
 * accepted under the key of its own owner, so nobody can write under
 * another user's key. Every field sits in one canonical, length-bounded
 * binary encoding, and the Ed25519 signature covers all of it under the
 * `"record"` signature domain.
 *
 * Encoding (integers big-endian):
 *
 * ```text
 * version u8 (= 1) | typeLength u8 | type | owner (32) | seq u64 |
 * issuedAt u64 | expiresAt u64 | payloadLength u32 | payload | signature (64)
 * ```
 *
 * @example Sign, validate and pick the newest record
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity } from "../crypto/identity.ts";
 * import { selectRecord, signRecord, validateRecord } from "./record.ts";
 *
 * const me = await Identity.generate();
 * const payload = new TextEncoder().encode("hello");
 * const v1 = await signRecord(me, { type: "note", seq: 1, payload });
 * const v2 = await signRecord(me, { type: "note", seq: 2, payload });
 *
 * const checked = await validateRecord(v2.key, v2.bytes);
 * assert(checked.seq === 2);
 * assert(selectRecord([v1.bytes, v2.bytes]) === 1);
 * ```
 *
 * @module
 */
import { compareBytes, concat, fromUtf8, Reader, u32, u64, utf8 } from "../platform/bytes.ts";
import { KEY_LENGTH } from "../crypto/_keys.ts";
import { decodeUserId, encodeUserId, type Identity, verifySignature } from "../crypto/identity.ts";
import { InvalidRecordError } from "../errors.ts";
import { checkTime } from "./_checks.ts";

/** The encoding version this module writes and the only one it reads. */
export const RECORD_VERSION = 1;

/** The largest encoded record accepted, in bytes (10 KiB), checked before parsing. */
export const MAX_RECORD_SIZE: number = 10 * 1024;

/** The longest time between a record's `issuedAt` and `expiresAt` (30 days). */
export const MAX_RECORD_LIFETIME_MS: number = 30 * 24 * 60 * 60 * 1000;

/** How long a record stays valid when {@linkcode signRecord} is given no `ttlMs` (24 hours). */
export const DEFAULT_RECORD_TTL_MS: number = 24 * 60 * 60 * 1000;

/**
 * How far apart two honest clocks may be (10 minutes). A record is still
 * accepted this long after its `expiresAt`, and its `issuedAt` may be this
 * far in the future.
 */
export const CLOCK_SKEW_TOLERANCE_MS: number = 10 * 60 * 1000;

/**
 * The first segment of every DIM DHT key (`/dim/...`): the name under which
 * {@linkcode dimValidator} and {@linkcode dimSelector} are registered with
 * kad-dht.
 */
export const RECORD_KEY_NAMESPACE = "dim";

/** The pattern every record type matches: a short lower-case ASCII name. */
export const RECORD_TYPE_PATTERN: RegExp = /^[a-z][a-z0-9-]{0,31}$/;

const SIGNATURE_LENGTH = 64;

/** A decoded signed record. */
export interface SignedRecord {
  /** The record type, such as `"card"`. */
  readonly type: string;
  /** The owner's raw 32-byte Ed25519 public key. */
  readonly owner: Uint8Array;
  /** The owner's user ID, derived from `owner`. */
  readonly ownerId: string;
  /** The DHT key the record belongs under: `/dim/<type>/<ownerId>`. */
  readonly key: string;
  /** The version number; a higher one supersedes a lower one. */
  readonly seq: number;
  /** When the record was signed, in milliseconds since the Unix epoch. */
  readonly issuedAt: number;
  /** When the record stops being valid, in milliseconds since the Unix epoch. */
  readonly expiresAt: number;
  /** The type-specific content. */
  readonly payload: Uint8Array;
  /** The 64-byte Ed25519 signature over everything before it. */
  readonly signature: Uint8Array;
  /** The whole canonical encoding, as stored in the DHT. */
  readonly bytes: Uint8Array;
}

/** What {@linkcode signRecord} needs from an identity. */
export type RecordSigner = Pick<Identity, "signingPublicKey" | "sign">;

/** What to put in a record made by {@linkcode signRecord}. */
export interface SignRecordOptions {
  /** The record type; must match {@linkcode RECORD_TYPE_PATTERN}. */
  readonly type: string;
  /** The version number; publish a higher one to replace an older record. */
  readonly seq: number;
  /** The type-specific content. */
  readonly payload: Uint8Array;
  /** The signing time in milliseconds since the epoch. Defaults to `Date.now()`. */
  readonly issuedAt?: number;
  /**
   * How long the record stays valid, in milliseconds, at most
   * {@linkcode MAX_RECORD_LIFETIME_MS}. Defaults to {@linkcode DEFAULT_RECORD_TTL_MS}.
   */
  readonly ttlMs?: number;
}

/** Options of {@linkcode validateRecord}. */
export interface ValidateRecordOptions {
  /** The current time in milliseconds since the epoch. Defaults to `Date.now()`. */
  readonly now?: number;
}

/** The fields that decide which of two records is newer. */
export type RecordRank = Pick<SignedRecord, "seq" | "expiresAt" | "bytes">;

type ParsedRecord = Omit<SignedRecord, "ownerId" | "key">;

function checkType(type: string): void {
  if (!RECORD_TYPE_PATTERN.test(type)) {
    throw new TypeError(
      `Cannot use record type ${JSON.stringify(type)}: it must match ${RECORD_TYPE_PATTERN}`,
    );
  }
}

function fail(reason: string, cause?: unknown): never {
  throw new InvalidRecordError(
    `Cannot decode record: ${reason}`,
    cause === undefined ? undefined : { cause },
  );
}

// Structure only: no signature, key or clock check. Synchronous so that the
// kad-dht selector, which must not await, can use it.
function parseRecord(bytes: Uint8Array): ParsedRecord {
  if (bytes.length > MAX_RECORD_SIZE) {
    fail(`${bytes.length} bytes exceeds the ${MAX_RECORD_SIZE}-byte limit`);
  }
  try {
    const r = new Reader(bytes);
    const version = r.u8();
    if (version !== RECORD_VERSION) fail(`unknown version ${version}`);
    const typeLength = r.u8();
    // Byte by byte: the pattern admits only ASCII, so any other byte fails it.
    const type = String.fromCharCode(...r.bytes(typeLength));
    if (!RECORD_TYPE_PATTERN.test(type)) fail("the type is not a valid record type");
    const owner = r.bytes(KEY_LENGTH);
    const seq = r.u64();
    const issuedAt = r.u64();
    const expiresAt = r.u64();
    const payload = r.bytes(r.u32());
    const signature = r.bytes(SIGNATURE_LENGTH);
    r.end();
    if (expiresAt <= issuedAt) fail("it expires before it is issued");
    if (expiresAt - issuedAt > MAX_RECORD_LIFETIME_MS) {
      fail(`its lifetime exceeds ${MAX_RECORD_LIFETIME_MS} ms`);
    }
    return {
      type,
      owner,
      seq,
      issuedAt,
      expiresAt,
      payload,
      signature,
      bytes: bytes.slice(),
    };
  } catch (err) {
    if (err instanceof InvalidRecordError) throw err;
    const detail = err instanceof Error ? err.message.replace(/^Cannot decode: /, "") : "";
    return fail(detail || "malformed", err);
  }
}

function withKey(parsed: ParsedRecord): SignedRecord {
  const ownerId = encodeUserId(parsed.owner);
  return { ...parsed, ownerId, key: `/${RECORD_KEY_NAMESPACE}/${parsed.type}/${ownerId}` };
}

/**
 * The DHT key of the record of one type owned by one user:
 * `/dim/<type>/<userId>`.
 *
 * @param type The record type, such as `"card"`.
 * @param owner The owner's raw 32-byte Ed25519 public key, or their user ID
 *   (checked and normalised to its canonical lower-case form).
 * @returns The key as a string; kad-dht keys are its UTF-8 bytes.
 * @throws {TypeError} If the type is invalid or the key is not 32 bytes.
 * @throws {InvalidIdError} If `owner` is a malformed user ID.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity } from "../crypto/identity.ts";
 * import { recordKey } from "./record.ts";
 *
 * const me = await Identity.generate();
 * const key = recordKey("card", me.signingPublicKey);
 * assert(key === `/dim/card/${me.id}`);
 * assert(recordKey("card", me.id.toUpperCase()) === key);
 * ```
 */
export function recordKey(type: string, owner: Uint8Array | string): string {
  checkType(type);
  const signingKey = typeof owner === "string" ? decodeUserId(owner) : owner;
  return `/${RECORD_KEY_NAMESPACE}/${type}/${encodeUserId(signingKey)}`;
}

/**
 * Makes and signs a record with the identity's Ed25519 key, under the
 * `"record"` signature domain.
 *
 * @param identity Whose record it is; its signing key becomes the owner.
 * @param options The type, sequence number, payload and validity period.
 * @returns The signed record, with its canonical `bytes` and DHT `key`.
 * @throws {TypeError} If the type is invalid or the signing key is not 32 bytes.
 * @throws {RangeError} If `seq`, `issuedAt` or `ttlMs` is out of range, or
 *   the encoding would exceed {@linkcode MAX_RECORD_SIZE}.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity } from "../crypto/identity.ts";
 * import { signRecord } from "./record.ts";
 *
 * const me = await Identity.generate();
 * const record = await signRecord(me, {
 *   type: "note",
 *   seq: 7,
 *   payload: new Uint8Array([1, 2, 3]),
 *   ttlMs: 60_000,
 * });
 * assert(record.key === `/dim/note/${me.id}`);
 * assert(record.expiresAt - record.issuedAt === 60_000);
 * ```
 */
export async function signRecord(
  identity: RecordSigner,
  options: SignRecordOptions,
): Promise<SignedRecord> {
  const { type, seq, payload } = options;
  checkType(type);
  const owner = identity.signingPublicKey;
  if (owner.length !== KEY_LENGTH) {
    throw new TypeError(`Cannot sign record: the signing key must be ${KEY_LENGTH} bytes`);
  }
  checkTime(seq, "seq", "sign record");
  const issuedAt = options.issuedAt ?? Date.now();
  checkTime(issuedAt, "issuedAt", "sign record");
  const ttlMs = options.ttlMs ?? DEFAULT_RECORD_TTL_MS;
  if (!Number.isSafeInteger(ttlMs) || ttlMs <= 0 || ttlMs > MAX_RECORD_LIFETIME_MS) {
    throw new RangeError(
      `Cannot sign record: ttlMs ${ttlMs} is outside 1..${MAX_RECORD_LIFETIME_MS}`,
    );
  }
  const expiresAt = issuedAt + ttlMs;
  checkTime(expiresAt, "expiresAt", "sign record");
  const typeBytes = utf8(type);
  const unsigned = concat(
    new Uint8Array([RECORD_VERSION, typeBytes.length]),
    typeBytes,
    owner,
    u64(seq),
    u64(issuedAt),
    u64(expiresAt),
    u32(payload.length),
    payload,
  );
  if (unsigned.length + SIGNATURE_LENGTH > MAX_RECORD_SIZE) {
    throw new RangeError(
      `Cannot sign record: it would be ${
        unsigned.length + SIGNATURE_LENGTH
      } bytes, over the ${MAX_RECORD_SIZE}-byte limit`,
    );
  }
  const signature = await identity.sign("record", unsigned);
  return withKey(parseRecord(concat(unsigned, signature)));
}

/**
 * Decodes a record's structure strictly, without checking its signature,
 * key or validity period. Use {@linkcode validateRecord} for anything
 * received from the network.
 *
 * @param bytes The encoded record.
 * @returns The decoded record.
 * @throws {InvalidRecordError} If it is over {@linkcode MAX_RECORD_SIZE}
 *   (checked before parsing), of an unknown version, truncated, followed by
 *   trailing bytes, or its validity period is empty or too long.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity } from "../crypto/identity.ts";
 * import { decodeRecord, signRecord } from "./record.ts";
 *
 * const me = await Identity.generate();
 * const signed = await signRecord(me, { type: "note", seq: 1, payload: new Uint8Array() });
 * const decoded = decodeRecord(signed.bytes);
 * assert(decoded.ownerId === me.id && decoded.type === "note");
 * ```
 */
export function decodeRecord(bytes: Uint8Array): SignedRecord {
  return withKey(parseRecord(bytes));
}

/**
 * The last moment (ms since the epoch) at which a record is still accepted:
 * its `expiresAt` plus {@linkcode CLOCK_SKEW_TOLERANCE_MS}. Structure only,
 * no signature check: for caches of records already validated, which must
 * not outlive this.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity } from "../crypto/identity.ts";
 * import { acceptedUntil, CLOCK_SKEW_TOLERANCE_MS, signRecord } from "./record.ts";
 *
 * const me = await Identity.generate();
 * const signed = await signRecord(me, { type: "note", seq: 1, payload: new Uint8Array() });
 * assert.equal(acceptedUntil(signed.bytes), signed.expiresAt + CLOCK_SKEW_TOLERANCE_MS);
 * assert.equal(acceptedUntil(new Uint8Array([9])), undefined);
 * ```
 *
 * @param bytes An encoded record.
 * @returns The time, or undefined if `bytes` is not a record.
 */
export function acceptedUntil(bytes: Uint8Array): number | undefined {
  try {
    return parseRecord(bytes).expiresAt + CLOCK_SKEW_TOLERANCE_MS;
  } catch {
    return undefined;
  }
}

function keyText(key: string | Uint8Array): string {
  if (typeof key === "string") return key;
  try {
    return fromUtf8(key);
  } catch (cause) {
    throw new InvalidRecordError("Cannot accept record: the key is not UTF-8", { cause });
  }
}

/**
 * Checks everything about a record received under a DHT key: its size
 * (before parsing), its structure, that the key is the one of the record's
 * type and owner, its signature, and that the current time lies within its
 * validity period, give or take {@linkcode CLOCK_SKEW_TOLERANCE_MS}.
 *
 * @param key The DHT key the record was stored or found under, as a string
 *   or as its UTF-8 bytes.
 * @param bytes The encoded record.
 * @param options `now`: the current time (defaults to `Date.now()`).
 * @returns The decoded record, which may be trusted.
 * @throws {InvalidRecordError} If any check fails; the message names which.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity } from "../crypto/identity.ts";
 * import { InvalidRecordError } from "../errors.ts";
 * import { signRecord, validateRecord } from "./record.ts";
 *
 * const alice = await Identity.generate();
 * const mallory = await Identity.generate();
 * const forged = await signRecord(mallory, { type: "card", seq: 9, payload: new Uint8Array() });
 * const aliceKey = `/dim/card/${alice.id}`;
 * try {
 *   await validateRecord(aliceKey, forged.bytes);
 *   throw new Error("unreachable");
 * } catch (err) {
 *   assert(err instanceof InvalidRecordError);
 * }
 * ```
 */
export async function validateRecord(
  key: string | Uint8Array,
  bytes: Uint8Array,
  options: ValidateRecordOptions = {},
): Promise<SignedRecord> {
  const now = options.now ?? Date.now();
  const expectedKey = keyText(key);
  const record = withKey(parseRecord(bytes));
  if (expectedKey !== record.key) {
    throw new InvalidRecordError(
      "Cannot accept record: the key does not belong to the record's owner and type",
    );
  }
  const signed = record.bytes.subarray(0, record.bytes.length - SIGNATURE_LENGTH);
  if (!(await verifySignature("record", record.owner, signed, record.signature))) {
    throw new InvalidRecordError("Cannot accept record: the signature is invalid");
  }
  if (now - CLOCK_SKEW_TOLERANCE_MS >= record.expiresAt) {
    throw new InvalidRecordError("Cannot accept record: it has expired");
  }
  if (record.issuedAt > now + CLOCK_SKEW_TOLERANCE_MS) {
    throw new InvalidRecordError("Cannot accept record: it is issued in the future");
  }
  return record;
}

/**
 * Validates a record that must be of one type, found under `options.key`
 * (default: its own key), as {@linkcode validateRecord} does.
 *
 * @param input The encoded record, or a decoded one (its `bytes` are validated again).
 * @param type The record type it must have.
 * @param what What the record is called in errors, such as `"card"`.
 * @param options `key`: the DHT key it was found under; `now`: the current time.
 * @returns The validated record.
 * @throws {InvalidRecordError} If it fails a check or is of another type.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity } from "../crypto/identity.ts";
 * import { openTypedRecord, signRecord } from "./record.ts";
 *
 * const me = await Identity.generate();
 * const note = await signRecord(me, { type: "note", seq: 1, payload: new Uint8Array() });
 * assert.equal((await openTypedRecord(note, "note", "note")).seq, 1);
 * await assert.rejects(openTypedRecord(note, "card", "card"), /not a card/);
 * ```
 */
export async function openTypedRecord(
  input: Uint8Array | SignedRecord,
  type: string,
  what: string,
  options: { readonly key?: string | Uint8Array; readonly now?: number } = {},
): Promise<SignedRecord> {
  const bytes = input instanceof Uint8Array ? input : input.bytes;
  const key = options.key ?? decodeRecord(bytes).key;
  const record = await validateRecord(
    key,
    bytes,
    options.now === undefined ? {} : { now: options.now },
  );
  if (record.type !== type) {
    throw new InvalidRecordError(
      `Cannot open ${what}: it is a ${JSON.stringify(record.type)} record, not a ${what}`,
    );
  }
  return record;
}

/**
 * Orders two records of the same key: the higher `seq` is newer; on equal
 * `seq` the later `expiresAt`; on a full tie the lexicographically greater
 * encoding, so every node picks the same one whatever order it saw them in.
 *
 * @param a One record.
 * @param b The other record.
 * @returns A positive number if `a` supersedes `b`, a negative one if `b`
 *   supersedes `a`, and 0 only if their encodings are identical.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity } from "../crypto/identity.ts";
 * import { compareRecords, signRecord } from "./record.ts";
 *
 * const me = await Identity.generate();
 * const payload = new Uint8Array();
 * const old = await signRecord(me, { type: "note", seq: 1, payload });
 * const fresh = await signRecord(me, { type: "note", seq: 2, payload });
 * assert(compareRecords(fresh, old) > 0);
 * ```
 */
export function compareRecords(a: RecordRank, b: RecordRank): number {
  if (a.seq !== b.seq) return a.seq - b.seq;
  if (a.expiresAt !== b.expiresAt) return a.expiresAt - b.expiresAt;
  return compareBytes(a.bytes, b.bytes);
}

function tryParse(bytes: Uint8Array): ParsedRecord | undefined {
  try {
    return parseRecord(bytes);
  } catch {
    return undefined;
  }
}

/**
 * Tells whether an encoded record supersedes the one already held, by the
 * order of {@linkcode compareRecords}. A store uses it to refuse to go
 * backwards. Only the structure is decoded: validate both first.
 *
 * @param candidate The newly received encoding.
 * @param current The encoding held so far.
 * @returns `true` if `candidate` decodes and `current` does not, or both
 *   decode and `candidate` ranks strictly above `current`; otherwise `false`
 *   (so an identical copy is not newer).
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity } from "../crypto/identity.ts";
 * import { isNewer, signRecord } from "./record.ts";
 *
 * const me = await Identity.generate();
 * const payload = new Uint8Array();
 * const v1 = await signRecord(me, { type: "note", seq: 1, payload });
 * const v2 = await signRecord(me, { type: "note", seq: 2, payload });
 * assert(isNewer(v2.bytes, v1.bytes));
 * assert(!isNewer(v1.bytes, v2.bytes));
 * assert(!isNewer(v2.bytes, v2.bytes));
 * ```
 */
export function isNewer(candidate: Uint8Array, current: Uint8Array): boolean {
  const next = tryParse(candidate);
  if (next === undefined) return false;
  const held = tryParse(current);
  return held === undefined || compareRecords(next, held) > 0;
}

/**
 * Picks the best of several encodings of the records under one key, by the
 * order of {@linkcode compareRecords}. The answer does not depend on the
 * order of the inputs, and an entry that does not decode never wins. Only
 * the structure is decoded: validate the records first.
 *
 * @param records The candidate encodings.
 * @returns The index of the best one.
 * @throws {RangeError} If `records` is empty.
 * @throws {InvalidRecordError} If none of them decodes.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity } from "../crypto/identity.ts";
 * import { selectRecord, signRecord } from "./record.ts";
 *
 * const me = await Identity.generate();
 * const payload = new Uint8Array();
 * const v1 = await signRecord(me, { type: "note", seq: 1, payload });
 * const v2 = await signRecord(me, { type: "note", seq: 2, payload });
 * assert(selectRecord([v2.bytes, new Uint8Array([0]), v1.bytes]) === 0);
 * ```
 */
export function selectRecord(records: readonly Uint8Array[]): number {
  if (records.length === 0) throw new RangeError("Cannot select record: no records given");
  let best = -1;
  let bestRecord: ParsedRecord | undefined;
  records.forEach((bytes, index) => {
    const record = tryParse(bytes);
    if (record === undefined) return;
    if (bestRecord === undefined || compareRecords(record, bestRecord) > 0) {
      best = index;
      bestRecord = record;
    }
  });
  if (best < 0) {
    throw new InvalidRecordError(
      `Cannot select record: none of the ${records.length} candidates decodes`,
    );
  }
  return best;
}

/**
 * {@linkcode selectRecord} in the shape of a kad-dht selector, to register
 * as `selectors: { dim: dimSelector }`.
 *
 * @param _key The DHT key (the records were validated against it already).
 * @param records The candidate encodings.
 * @returns The index of the best one.
 * @throws {RangeError} If `records` is empty.
 * @throws {InvalidRecordError} If none of them decodes.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity } from "../crypto/identity.ts";
 * import { dimSelector, signRecord } from "./record.ts";
 *
 * const me = await Identity.generate();
 * const payload = new Uint8Array();
 * const v1 = await signRecord(me, { type: "note", seq: 1, payload });
 * const v2 = await signRecord(me, { type: "note", seq: 2, payload });
 * const key = new TextEncoder().encode(v1.key);
 * assert(dimSelector(key, [v1.bytes, v2.bytes]) === 1);
 * ```
 */
export function dimSelector(_key: Uint8Array, records: Uint8Array[]): number {
  return selectRecord(records);
}

/**
 * {@linkcode validateRecord} in the shape of a kad-dht validator, to
 * register as `validators: { dim: dimValidator }`. It uses the current time.
 *
 * @param key The DHT key as bytes.
 * @param value The encoded record.
 * @param options `signal`: aborts the validation.
 * @returns Nothing; it resolves if the record is valid under the key.
 * @throws {InvalidRecordError} If the record is invalid under the key.
 * @throws {DOMException} If `signal` is aborted.
 * @example
 * ```ts
 * import { Identity } from "../crypto/identity.ts";
 * import { dimValidator, signRecord } from "./record.ts";
 *
 * const me = await Identity.generate();
 * const record = await signRecord(me, { type: "note", seq: 1, payload: new Uint8Array() });
 * await dimValidator(new TextEncoder().encode(record.key), record.bytes);
 * ```
 */
export async function dimValidator(
  key: Uint8Array,
  value: Uint8Array,
  options: { readonly signal?: AbortSignal } = {},
): Promise<void> {
  options.signal?.throwIfAborted();
  await validateRecord(key, value);
}
