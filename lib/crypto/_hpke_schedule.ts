// The inside of DIM's HPKE (RFC 9180): labeled KDF, DHKEM(X25519,
// HKDF-SHA256), key schedule and the encryption contexts, for the one suite
// DIM uses (HKDF-SHA256, AES-128-GCM). Private to DIM: `hpke.ts` is the
// public face; the tests reach in here to check intermediate values against
// the RFC's vectors. All four modes are implemented, since they cost only a
// branch in the KEM and the key schedule and let every vector of RFC 9180
// A.1 be checked; only base mode is exposed publicly.
//
// HKDF comes from @noble/hashes, not WebCrypto: WebCrypto's HKDF only offers
// extract-then-expand as one step, while HPKE's labeled KDF needs to extract
// (to get a PRK such as `secret`) and expand that PRK several times with
// different labels.
import { expand, extract } from "@noble/hashes/hkdf.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { concat, toHex, utf8 } from "../platform/bytes.ts";
import type { KeyObject } from "node:crypto";
import {
  checkKeyLength,
  KEY_LENGTH,
  newX25519KeyPair,
  x25519,
  type X25519PrivateKey,
  x25519PrivateKey,
  x25519PublicKey,
} from "./_keys.ts";
import { DecryptionError, EncryptionError } from "../errors.ts";

/** HPKE modes (RFC 9180 §5). */
export const MODE_BASE = 0x00;
export const MODE_PSK = 0x01;
export const MODE_AUTH = 0x02;
export const MODE_AUTH_PSK = 0x03;
export type Mode = typeof MODE_BASE | typeof MODE_PSK | typeof MODE_AUTH | typeof MODE_AUTH_PSK;

/** Nenc = Npk = Nsk = Ndh for X25519. */
export const ENC_LENGTH = KEY_LENGTH;
/** Nk: AES-128-GCM key length. */
export const AEAD_KEY_LENGTH = 16;
/** Nn: AES-GCM nonce length. */
export const NONCE_LENGTH = 12;
/** Nt: AES-GCM tag length. */
export const TAG_LENGTH = 16;
/** Nh: HKDF-SHA256 output length. */
export const HASH_LENGTH = 32;
/** The largest `L` the exporter accepts (255 * Nh). */
export const MAX_EXPORT_LENGTH = 255 * HASH_LENGTH;
/**
 * The last sequence number a context may use. RFC 9180 allows up to
 * 2^96 - 1; DIM stops at 2^53 - 1 so the counter stays an exact JS number.
 */
export const MAX_SEQUENCE = Number.MAX_SAFE_INTEGER;

const KEM_ID = 0x0020; // DHKEM(X25519, HKDF-SHA256)
const KDF_ID = 0x0001; // HKDF-SHA256
const AEAD_ID = 0x0001; // AES-128-GCM

// "HPKE-v1" || suite_id, once for the KEM and once for the whole suite.
const KEM_PREFIX = concat(utf8("HPKE-v1KEM"), new Uint8Array([KEM_ID >> 8, KEM_ID & 0xff]));
const HPKE_PREFIX = concat(
  utf8("HPKE-v1HPKE"),
  new Uint8Array([KEM_ID >> 8, KEM_ID & 0xff, KDF_ID >> 8, KDF_ID & 0xff, 0, AEAD_ID]),
);

const EMPTY = new Uint8Array(0);
const LABEL = {
  dkpPrk: utf8("dkp_prk"),
  sk: utf8("sk"),
  eaePrk: utf8("eae_prk"),
  sharedSecret: utf8("shared_secret"),
  pskIdHash: utf8("psk_id_hash"),
  infoHash: utf8("info_hash"),
  secret: utf8("secret"),
  key: utf8("key"),
  baseNonce: utf8("base_nonce"),
  exp: utf8("exp"),
  sec: utf8("sec"),
} as const;

function labeledExtract(
  prefix: Uint8Array,
  salt: Uint8Array,
  label: Uint8Array,
  ikm: Uint8Array,
): Uint8Array {
  return extract(sha256, concat(prefix, label, ikm), salt);
}

function labeledExpand(
  prefix: Uint8Array,
  prk: Uint8Array,
  label: Uint8Array,
  info: Uint8Array,
  length: number,
): Uint8Array<ArrayBuffer> {
  const labeledInfo = concat(new Uint8Array([length >> 8, length & 0xff]), prefix, label, info);
  return new Uint8Array(expand(sha256, prk, labeledInfo, length));
}

/** DeriveKeyPair(ikm) for X25519 (RFC 9180 §7.1.3): the private key bytes. */
export function deriveSecretKey(ikm: Uint8Array): Uint8Array<ArrayBuffer> {
  const dkpPrk = labeledExtract(KEM_PREFIX, EMPTY, LABEL.dkpPrk, ikm);
  return labeledExpand(KEM_PREFIX, dkpPrk, LABEL.sk, EMPTY, KEY_LENGTH);
}

/** A private key and its raw public key. */
export interface KeyPair {
  readonly privateKey: X25519PrivateKey;
  readonly publicKey: Uint8Array;
}

/** X25519 key generation with WebCrypto; the private key is not extractable. */
export async function generateKeyPair(): Promise<
  { privateKey: CryptoKey; publicKey: Uint8Array<ArrayBuffer> }
> {
  const pair = await crypto.subtle.generateKey({ name: "X25519" }, false, [
    "deriveBits",
  ]) as CryptoKeyPair;
  const publicKey = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
  return { privateKey: pair.privateKey, publicKey };
}

function extractAndExpand(dhOutput: Uint8Array, kemContext: Uint8Array): Uint8Array<ArrayBuffer> {
  const eaePrk = labeledExtract(KEM_PREFIX, EMPTY, LABEL.eaePrk, dhOutput);
  return labeledExpand(KEM_PREFIX, eaePrk, LABEL.sharedSecret, kemContext, HASH_LENGTH);
}

// A sender usually writes to the same few contacts, and hears from the same
// few senders, so their imported public keys are kept (public data only;
// bounded, oldest dropped first).
const PUBLIC_KEY_CACHE = new Map<string, KeyObject>();
const PUBLIC_KEY_CACHE_LIMIT = 256;

function cachedPublicKey(raw: Uint8Array): KeyObject {
  const cacheKey = toHex(raw);
  const hit = PUBLIC_KEY_CACHE.get(cacheKey);
  if (hit !== undefined) return hit;
  const key = x25519PublicKey(raw);
  if (PUBLIC_KEY_CACHE.size >= PUBLIC_KEY_CACHE_LIMIT) {
    PUBLIC_KEY_CACHE.delete(PUBLIC_KEY_CACHE.keys().next().value!);
  }
  PUBLIC_KEY_CACHE.set(cacheKey, key);
  return key;
}

/**
 * A fresh ephemeral key (see `newX25519KeyPair`), used once. Its raw private
 * key is zeroed at once; only the `node:crypto` key is kept, until `encap`
 * returns.
 */
function freshEphemeral(): { privateKey: X25519PrivateKey; enc: Uint8Array<ArrayBuffer> } {
  const pair = newX25519KeyPair();
  const privateKey = x25519PrivateKey(pair.privateKey);
  pair.privateKey.fill(0);
  return { privateKey, enc: pair.publicKey };
}

/**
 * Encap / AuthEncap (RFC 9180 §4.1): `sender` selects the auth variant;
 * `ephemeral` replaces the fresh key pair (for test vectors only). Runs on
 * the calling thread.
 */
export function encap(
  recipientPublicKey: Uint8Array,
  ephemeral?: KeyPair,
  sender?: KeyPair,
): { enc: Uint8Array<ArrayBuffer>; sharedSecret: Uint8Array<ArrayBuffer> } {
  checkKeyLength(recipientPublicKey, "recipient public key");
  if (ephemeral !== undefined) checkKeyLength(ephemeral.publicKey, "ephemeral public key");
  if (sender !== undefined) checkKeyLength(sender.publicKey, "sender public key");
  const pkR = cachedPublicKey(recipientPublicKey);
  const eph = ephemeral === undefined
    ? freshEphemeral()
    : { privateKey: ephemeral.privateKey, enc: new Uint8Array(ephemeral.publicKey) };
  const enc = eph.enc;
  const dhE = x25519(eph.privateKey, pkR);
  if (sender === undefined) {
    return { enc, sharedSecret: extractAndExpand(dhE, concat(enc, recipientPublicKey)) };
  }
  const dhS = x25519(sender.privateKey, pkR);
  const kemContext = concat(enc, recipientPublicKey, sender.publicKey);
  return { enc, sharedSecret: extractAndExpand(concat(dhE, dhS), kemContext) };
}

/**
 * Decap / AuthDecap (RFC 9180 §4.1): `senderPublicKey` selects the auth
 * variant. Runs on the calling thread.
 */
export function decap(
  enc: Uint8Array,
  recipient: KeyPair,
  senderPublicKey?: Uint8Array,
): Uint8Array<ArrayBuffer> {
  checkKeyLength(enc, "enc");
  checkKeyLength(recipient.publicKey, "recipient public key");
  const dhE = x25519(recipient.privateKey, x25519PublicKey(enc));
  if (senderPublicKey === undefined) {
    return extractAndExpand(dhE, concat(enc, recipient.publicKey));
  }
  checkKeyLength(senderPublicKey, "sender public key");
  const dhS = x25519(recipient.privateKey, cachedPublicKey(senderPublicKey));
  const kemContext = concat(enc, recipient.publicKey, senderPublicKey);
  return extractAndExpand(concat(dhE, dhS), kemContext);
}

/** A pre-shared key and its identifier (PSK modes). */
export interface Psk {
  readonly key: Uint8Array;
  readonly id: Uint8Array;
}

// key_schedule_context depends only on mode, psk_id and info; DIM seals every
// envelope with the same info, so it is computed once and kept. Only small
// infos with no psk_id are cached, and the cache is bounded.
const CONTEXT_CACHE = new Map<string, Uint8Array<ArrayBuffer>>();
const CONTEXT_CACHE_LIMIT = 64;
const CACHEABLE_INFO_LENGTH = 128;

function keyScheduleContext(
  mode: Mode,
  pskId: Uint8Array,
  info: Uint8Array,
): Uint8Array<ArrayBuffer> {
  const cacheable = pskId.length === 0 && info.length <= CACHEABLE_INFO_LENGTH;
  const cacheKey = cacheable ? `${mode}:${toHex(info)}` : "";
  if (cacheable) {
    const hit = CONTEXT_CACHE.get(cacheKey);
    if (hit !== undefined) return hit;
  }
  const pskIdHash = labeledExtract(HPKE_PREFIX, EMPTY, LABEL.pskIdHash, pskId);
  const infoHash = labeledExtract(HPKE_PREFIX, EMPTY, LABEL.infoHash, info);
  const context = concat(new Uint8Array([mode]), pskIdHash, infoHash);
  if (cacheable) {
    if (CONTEXT_CACHE.size >= CONTEXT_CACHE_LIMIT) CONTEXT_CACHE.clear();
    CONTEXT_CACHE.set(cacheKey, context);
  }
  return context;
}

/**
 * What the key schedule produces, for the contexts and the tests. The
 * exporter secret is derived from `secret` only when first needed (see
 * {@linkcode deriveExporterSecret}): most contexts never export.
 */
export interface Schedule {
  readonly keyScheduleContext: Uint8Array;
  readonly secret: Uint8Array;
  readonly key: Uint8Array<ArrayBuffer>;
  readonly baseNonce: Uint8Array<ArrayBuffer>;
}

/** exporter_secret = LabeledExpand(secret, "exp", key_schedule_context, Nh). */
export function deriveExporterSecret(
  schedule: Pick<Schedule, "secret" | "keyScheduleContext">,
): Uint8Array<ArrayBuffer> {
  return labeledExpand(
    HPKE_PREFIX,
    schedule.secret,
    LABEL.exp,
    schedule.keyScheduleContext,
    HASH_LENGTH,
  );
}

/** KeySchedule (RFC 9180 §5.1), including VerifyPSKInputs. */
export function keySchedule(
  mode: Mode,
  sharedSecret: Uint8Array,
  info: Uint8Array,
  psk?: Psk,
): Schedule {
  const wantsPsk = mode === MODE_PSK || mode === MODE_AUTH_PSK;
  if (wantsPsk !== (psk !== undefined)) {
    throw new TypeError("Cannot run key schedule: a PSK is required exactly in the PSK modes");
  }
  if (psk !== undefined && (psk.key.length === 0 || psk.id.length === 0)) {
    throw new TypeError("Cannot run key schedule: PSK and PSK ID must not be empty");
  }
  const context = keyScheduleContext(mode, psk?.id ?? EMPTY, info);
  const secret = labeledExtract(HPKE_PREFIX, sharedSecret, LABEL.secret, psk?.key ?? EMPTY);
  return {
    keyScheduleContext: context,
    secret,
    key: labeledExpand(HPKE_PREFIX, secret, LABEL.key, context, AEAD_KEY_LENGTH),
    baseNonce: labeledExpand(HPKE_PREFIX, secret, LABEL.baseNonce, context, NONCE_LENGTH),
  };
}

/** ComputeNonce(seq) = base_nonce XOR I2OSP(seq, Nn), with the overflow check. */
export function computeNonce(baseNonce: Uint8Array, seq: number): Uint8Array<ArrayBuffer> {
  if (!Number.isSafeInteger(seq) || seq < 0 || seq >= MAX_SEQUENCE) {
    throw new RangeError("Cannot compute nonce: the context's message limit is reached");
  }
  const nonce = new Uint8Array(baseNonce);
  let rest = seq;
  for (let i = NONCE_LENGTH - 1; rest > 0; i--) {
    nonce[i]! ^= rest % 256;
    rest = Math.floor(rest / 256);
  }
  return nonce;
}

/** Secret export (RFC 9180 §5.3), deriving the exporter secret on first use. */
class Exporter {
  // Only what the exporter secret needs: not the AEAD key or nonce.
  #inputs: Pick<Schedule, "secret" | "keyScheduleContext"> | undefined;
  #exporterSecret: Uint8Array | undefined;

  constructor(schedule: Schedule) {
    this.#inputs = { secret: schedule.secret, keyScheduleContext: schedule.keyScheduleContext };
  }

  export(exporterContext: Uint8Array, length: number): Uint8Array<ArrayBuffer> {
    if (!Number.isInteger(length) || length < 1 || length > MAX_EXPORT_LENGTH) {
      throw new RangeError(`Cannot export secret: length must be 1 to ${MAX_EXPORT_LENGTH}`);
    }
    if (this.#exporterSecret === undefined) {
      this.#exporterSecret = deriveExporterSecret(this.#inputs!);
      this.#inputs = undefined;
    }
    return labeledExpand(HPKE_PREFIX, this.#exporterSecret, LABEL.sec, exporterContext, length);
  }
}

function importAeadKey(key: Uint8Array<ArrayBuffer>, usage: KeyUsage): Promise<CryptoKey> {
  return crypto.subtle.importKey("raw", key, { name: "AES-GCM" }, false, [usage]);
}

/** ContextS: seals with increasing sequence numbers. */
export class SenderContext {
  #key: CryptoKey;
  #baseNonce: Uint8Array;
  #exporter: Exporter;
  #seq = 0;

  private constructor(key: CryptoKey, schedule: Schedule) {
    this.#key = key;
    this.#baseNonce = schedule.baseNonce;
    this.#exporter = new Exporter(schedule);
  }

  static async create(schedule: Schedule): Promise<SenderContext> {
    const key = await importAeadKey(schedule.key, "encrypt");
    return new SenderContext(key, schedule);
  }

  async seal(plaintext: Uint8Array, aad: Uint8Array = EMPTY): Promise<Uint8Array<ArrayBuffer>> {
    let nonce: Uint8Array<ArrayBuffer>;
    try {
      // The sequence number is taken before any await, so concurrent seals
      // never share a nonce.
      nonce = computeNonce(this.#baseNonce, this.#seq);
    } catch (cause) {
      throw new EncryptionError("Cannot seal: the context's message limit is reached", { cause });
    }
    this.#seq++;
    try {
      return new Uint8Array(
        await crypto.subtle.encrypt(
          { name: "AES-GCM", iv: nonce, additionalData: aad as Uint8Array<ArrayBuffer> },
          this.#key,
          plaintext as Uint8Array<ArrayBuffer>,
        ),
      );
    } catch (cause) {
      throw new EncryptionError("Cannot seal: AES-GCM encryption failed", { cause });
    }
  }

  export(exporterContext: Uint8Array, length: number): Uint8Array<ArrayBuffer> {
    return this.#exporter.export(exporterContext, length);
  }

  [Symbol.for("Deno.customInspect")](): string {
    return "HpkeSenderContext";
  }
}

/** ContextR: opens in order; a failed open does not advance the sequence. */
export class RecipientContext {
  #key: CryptoKey;
  #baseNonce: Uint8Array;
  #exporter: Exporter;
  #seq = 0;
  // Opens run one after another: the sequence number may only advance once
  // the previous message is known to be authentic.
  #tail: Promise<unknown> = Promise.resolve();

  private constructor(key: CryptoKey, schedule: Schedule) {
    this.#key = key;
    this.#baseNonce = schedule.baseNonce;
    this.#exporter = new Exporter(schedule);
  }

  static async create(schedule: Schedule): Promise<RecipientContext> {
    const key = await importAeadKey(schedule.key, "decrypt");
    return new RecipientContext(key, schedule);
  }

  open(ciphertext: Uint8Array, aad: Uint8Array = EMPTY): Promise<Uint8Array<ArrayBuffer>> {
    const result = this.#tail.then(() => this.#open(ciphertext, aad));
    this.#tail = result.catch(() => {});
    return result;
  }

  async #open(ciphertext: Uint8Array, aad: Uint8Array): Promise<Uint8Array<ArrayBuffer>> {
    let plaintext: ArrayBuffer;
    try {
      const nonce = computeNonce(this.#baseNonce, this.#seq);
      plaintext = await crypto.subtle.decrypt(
        { name: "AES-GCM", iv: nonce, additionalData: aad as Uint8Array<ArrayBuffer> },
        this.#key,
        ciphertext as Uint8Array<ArrayBuffer>,
      );
    } catch (cause) {
      throw new DecryptionError({ cause });
    }
    this.#seq++;
    return new Uint8Array(plaintext);
  }

  export(exporterContext: Uint8Array, length: number): Uint8Array<ArrayBuffer> {
    return this.#exporter.export(exporterContext, length);
  }

  [Symbol.for("Deno.customInspect")](): string {
    return "HpkeRecipientContext";
  }
}

/** Inputs of a sender setup in any mode. */
export interface SenderSetup {
  readonly mode: Mode;
  readonly recipientPublicKey: Uint8Array;
  readonly info: Uint8Array;
  readonly ephemeral?: KeyPair | undefined;
  readonly psk?: Psk | undefined;
  readonly sender?: KeyPair | undefined;
}

/** SetupBaseS / SetupPSKS / SetupAuthS / SetupAuthPSKS, with the intermediates. */
export async function setupSender(setup: SenderSetup): Promise<{
  enc: Uint8Array<ArrayBuffer>;
  sharedSecret: Uint8Array;
  schedule: Schedule;
  context: SenderContext;
}> {
  const isAuth = setup.mode === MODE_AUTH || setup.mode === MODE_AUTH_PSK;
  if (isAuth !== (setup.sender !== undefined)) {
    throw new TypeError("Cannot set up HPKE: a sender key is required exactly in the auth modes");
  }
  const { enc, sharedSecret } = encap(
    setup.recipientPublicKey,
    setup.ephemeral,
    setup.sender,
  );
  const schedule = keySchedule(setup.mode, sharedSecret, setup.info, setup.psk);
  return { enc, sharedSecret, schedule, context: await SenderContext.create(schedule) };
}

/** Inputs of a recipient setup in any mode. */
export interface RecipientSetup {
  readonly mode: Mode;
  readonly enc: Uint8Array;
  readonly recipient: KeyPair;
  readonly info: Uint8Array;
  readonly psk?: Psk | undefined;
  readonly senderPublicKey?: Uint8Array | undefined;
}

/** SetupBaseR / SetupPSKR / SetupAuthR / SetupAuthPSKR, with the intermediates. */
export async function setupRecipient(setup: RecipientSetup): Promise<{
  sharedSecret: Uint8Array;
  schedule: Schedule;
  context: RecipientContext;
}> {
  const isAuth = setup.mode === MODE_AUTH || setup.mode === MODE_AUTH_PSK;
  if (isAuth !== (setup.senderPublicKey !== undefined)) {
    throw new TypeError("Cannot set up HPKE: a sender key is required exactly in the auth modes");
  }
  const sharedSecret = decap(setup.enc, setup.recipient, setup.senderPublicKey);
  const schedule = keySchedule(setup.mode, sharedSecret, setup.info, setup.psk);
  return { sharedSecret, schedule, context: await RecipientContext.create(schedule) };
}
