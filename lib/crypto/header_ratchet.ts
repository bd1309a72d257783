/**
 * The Double Ratchet with header encryption (Signal's specification,
 * section 4): each message's header (the sender's ratchet key, PN, N) is
 * sealed with a symmetric header key, so that a message shows nothing that
 * links it to its sender, and a session needs no public-key operation per
 * message beyond the ratchet's own DH steps.
 *
 * A state is a {@linkcode RatchetState} from {@link "./ratchet.ts"} with
 * `headerKeys` set; it is stored with `encodeSession`
 * ({@link "./ratchet_session.ts"}) as any state. Every function is pure: a
 * failed decryption changes nothing.
 *
 * ## Construction
 *
 * As {@link "./ratchet.ts"} (X25519, HKDF-SHA-256, HMAC-SHA-256 chains,
 * AES-256-GCM bodies), and:
 *
 * - KDF_RK_HE: HKDF-SHA-256 with salt = root key, IKM = DH output, info =
 *   `"DIM-v1 ratchet root HE"`, 96 bytes: root key || chain key || next header key.
 * - Initial header keys come from the key agreement (`shared_hka`,
 *   `shared_nhkb`, see {@link "./x3dh.ts"}): the initiator sends under
 *   `shared_hka` and its next receiving key is `shared_nhkb`; the responder's
 *   next sending key is `shared_nhkb` and its next receiving key `shared_hka`.
 * - The tag of a header key: the first 16 bytes of HMAC-SHA-256(header key,
 *   `"DIM-v1 session tag"`). It travels in clear in front of the sealed
 *   header, so a recipient finds the session and the header key a message
 *   uses without trying them; it stays the same for every message of one
 *   sending chain and changes with each DH ratchet step.
 * - The header, `ratchetKey (32) | PN u32 | N u32 | id (16)`, is sealed with
 *   AES-256-GCM under the header key with a random 12-byte nonce and
 *   associated data `context | tag`. `id` is the caller's message ID: a copy
 *   of a message whose key is already used is recognized by it.
 * - The body's associated data is `adLength u32 | AD | context | tag |
 *   sealed header`: both identities (from the key agreement), the caller's
 *   context and every byte before the body.
 *
 * ## Wire format of a message
 *
 * ```text
 * tag (16) | nonce (12) | sealed header (56 + 16) | ciphertext (plaintext + 16)
 * ```
 *
 * ## Safety limits
 *
 * As {@link "./ratchet.ts"}: {@linkcode MAX_SKIP} per chain, at most
 * {@linkcode MAX_SKIPPED_KEYS} skipped keys (indexed by header key and
 * message number), a used key is deleted. A message whose tag matches none
 * of the state's header keys is refused before any decryption; one whose
 * tag matches costs exactly one header decryption.
 *
 * @example Alice and Bob, after a key agreement
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateRatchetKeyPair } from "./ratchet.ts";
 * import {
 *   headerRatchetDecrypt,
 *   headerRatchetEncrypt,
 *   initHeaderReceiver,
 *   initHeaderSender,
 * } from "./header_ratchet.ts";
 *
 * const sk = crypto.getRandomValues(new Uint8Array(32));
 * const hka = crypto.getRandomValues(new Uint8Array(32));
 * const nhkb = crypto.getRandomValues(new Uint8Array(32));
 * const ad = new TextEncoder().encode("alice and bob");
 * const bobPrekey = await generateRatchetKeyPair();
 *
 * const alice = await initHeaderSender(sk, bobPrekey.publicKey, ad, { sending: hka, nextReceiving: nhkb });
 * const bob = initHeaderReceiver(sk, bobPrekey, ad, { nextSending: nhkb, nextReceiving: hka });
 *
 * const id = crypto.getRandomValues(new Uint8Array(16));
 * const sent = await headerRatchetEncrypt(alice, new TextEncoder().encode("hi Bob"), { id });
 * const got = await headerRatchetDecrypt(bob, sent.message);
 * assert(!got.gone);
 * assert.equal(new TextDecoder().decode(got.plaintext), "hi Bob");
 * assert.deepEqual(got.id, id);
 * ```
 *
 * @module
 */
import { hmac } from "@noble/hashes/hmac.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { concat, constantTimeEqual, equalBytes, u32, utf8 } from "../platform/bytes.ts";
import { GCM_TAG_LENGTH, gcmOpenSync, gcmSealSync } from "./_aead.ts";
import {
  aeadData,
  dh,
  kdfChain,
  kdfRoot,
  MAX_MESSAGE_NUMBER,
  NONCE_LENGTH,
  openBody,
  sealBody,
} from "./_ratchet_kdf.ts";
import { checkKeyLength, KEY_LENGTH, newX25519KeyPair } from "./_keys.ts";
import {
  type HeaderKeys,
  MAX_ASSOCIATED_DATA_LENGTH,
  MAX_RATCHET_PLAINTEXT_LENGTH,
  MAX_SKIP,
  MAX_SKIPPED_KEYS,
  type RatchetKeyPair,
  type RatchetState,
  type SkippedMessageKey,
} from "./ratchet.ts";
import { DecryptionError, EncryptionError, TooManySkippedMessagesError } from "../errors.ts";

/** Length of a message ID carried in the sealed header. */
export const HEADER_ID_LENGTH = 16;
/** Length of the tag in front of a message. */
export const SESSION_TAG_LENGTH = 16;
/** Length of a header before sealing: ratchet key, PN, N, message ID. */
const HEADER_LENGTH = KEY_LENGTH + 4 + 4 + HEADER_ID_LENGTH;
/** Length of a sealed header: nonce, header, AES-GCM tag. */
export const SEALED_HEADER_LENGTH: number = NONCE_LENGTH + HEADER_LENGTH + GCM_TAG_LENGTH;
/** Bytes a message is longer than its plaintext: tag, sealed header, body tag. */
export const HEADER_RATCHET_OVERHEAD: number = SESSION_TAG_LENGTH + SEALED_HEADER_LENGTH +
  GCM_TAG_LENGTH;
/** The largest valid message in bytes. */
export const MAX_HEADER_RATCHET_MESSAGE_LENGTH: number = HEADER_RATCHET_OVERHEAD +
  MAX_RATCHET_PLAINTEXT_LENGTH;
/** How many earlier receiving header keys a state keeps, to recognize copies of old messages. */
export const MAX_PREVIOUS_HEADER_KEYS = 8;

const ROOT_INFO = utf8("DIM-v1 ratchet root HE");
const TAG_INFO = utf8("DIM-v1 session tag");
const EMPTY = new Uint8Array(0);

let trials = 0;

/**
 * How many header decryptions this module has tried since it was loaded:
 * for tests that check a message with an unknown tag costs none.
 *
 * @returns The count.
 */
export function headerTrialCount(): number {
  return trials;
}

/**
 * The tag of a header key, which messages sealed under it carry in clear.
 *
 * @param headerKey A 32-byte header key.
 * @returns The first 16 bytes of HMAC-SHA-256(headerKey, "DIM-v1 session tag").
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sessionTag } from "./header_ratchet.ts";
 *
 * assert.equal(sessionTag(new Uint8Array(32)).length, 16);
 * ```
 */
export function sessionTag(headerKey: Uint8Array): Uint8Array<ArrayBuffer> {
  return tagOf(headerKey).slice();
}

/**
 * Tags by header key: a state's header keys are never changed in place, and
 * are shared by the states that follow it, so each key's tag is computed once.
 */
const tags = new WeakMap<Uint8Array, Uint8Array<ArrayBuffer>>();

function tagOf(headerKey: Uint8Array): Uint8Array<ArrayBuffer> {
  let tag = tags.get(headerKey);
  if (tag === undefined) {
    tag = new Uint8Array(hmac(sha256, headerKey, TAG_INFO).subarray(0, SESSION_TAG_LENGTH));
    tags.set(headerKey, tag);
  }
  return tag;
}

/**
 * Every tag a message to this state may carry now, with its header key:
 * the current and next receiving keys, the earlier ones, and those of
 * skipped keys. A recipient indexes its sessions by them.
 *
 * @param state A state with header keys.
 * @returns The distinct header keys and their tags; empty without header keys.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateRatchetKeyPair } from "./ratchet.ts";
 * import { initHeaderReceiver, receivingTags, sessionTag } from "./header_ratchet.ts";
 *
 * const hka = new Uint8Array(32).fill(1);
 * const bob = initHeaderReceiver(new Uint8Array(32), await generateRatchetKeyPair(), new Uint8Array(), {
 *   nextSending: new Uint8Array(32).fill(2),
 *   nextReceiving: hka,
 * });
 * assert.deepEqual(receivingTags(bob).map((t) => t.tag), [sessionTag(hka)]);
 * ```
 */
export function receivingTags(
  state: RatchetState,
): { readonly headerKey: Uint8Array; readonly tag: Uint8Array }[] {
  return candidateKeys(state).map((headerKey) => ({ headerKey, tag: sessionTag(headerKey) }));
}

/** The distinct receiving header keys of a state, most likely first. */
function candidateKeys(state: RatchetState): Uint8Array[] {
  const keys = state.headerKeys;
  if (keys === undefined) return [];
  const out: Uint8Array[] = [];
  const add = (key: Uint8Array | null) => {
    if (key !== null && !out.some((k) => constantTimeEqual(k, key))) out.push(key);
  };
  add(keys.receiving);
  add(keys.nextReceiving);
  for (const key of keys.previousReceiving) add(key);
  for (const entry of state.skippedMessageKeys) add(entry.ratchetKey);
  return out;
}

function checkAssociatedData(ad: Uint8Array): void {
  if (ad.length > MAX_ASSOCIATED_DATA_LENGTH) {
    throw new RangeError(
      `Cannot start session: associated data exceeds ${MAX_ASSOCIATED_DATA_LENGTH} bytes`,
    );
  }
}

/**
 * Starts the initiator's side (RatchetInitAliceHE): a DH ratchet step
 * towards the responder's ratchet key, so it can send at once.
 *
 * @param sharedSecret The 32-byte secret from the key agreement.
 * @param remoteRatchetKey The responder's X25519 ratchet public key (its signed prekey).
 * @param associatedData Both identities, at most {@linkcode MAX_ASSOCIATED_DATA_LENGTH} bytes.
 * @param headerKeys `sending`: `shared_hka`; `nextReceiving`: `shared_nhkb`.
 * @returns The initiator's state.
 * @throws {TypeError} If a secret or key is not 32 bytes.
 * @throws {RangeError} If the associated data is too long or the remote key unusable.
 */
export async function initHeaderSender(
  sharedSecret: Uint8Array,
  remoteRatchetKey: Uint8Array,
  associatedData: Uint8Array,
  headerKeys: { readonly sending: Uint8Array; readonly nextReceiving: Uint8Array },
  started?: FirstSenderStep,
): Promise<RatchetState> {
  checkKeyLength(sharedSecret, "the shared secret");
  checkKeyLength(remoteRatchetKey, "the remote ratchet key");
  checkKeyLength(headerKeys.sending, "the sending header key");
  checkKeyLength(headerKeys.nextReceiving, "the next receiving header key");
  checkAssociatedData(associatedData);
  const step = started !== undefined && equalBytes(started.remoteRatchetKey, remoteRatchetKey)
    ? started
    : startFirstSenderStep(remoteRatchetKey);
  const sendingRatchetKey = step.keyPair;
  const out = await step.output;
  const [rootKey, sendingChainKey, nextSending] = kdfRoot(sharedSecret, out, ROOT_INFO, 3);
  out.fill(0);
  return {
    rootKey: rootKey!,
    sendingRatchetKey,
    receivingRatchetKey: null,
    sendingChainKey: sendingChainKey!,
    receivingChainKey: null,
    sendingCount: 0,
    receivingCount: 0,
    previousSendingCount: 0,
    skippedMessageKeys: [],
    associatedData: new Uint8Array(associatedData),
    headerKeys: {
      sending: new Uint8Array(headerKeys.sending),
      receiving: null,
      nextSending: nextSending!,
      nextReceiving: new Uint8Array(headerKeys.nextReceiving),
      previousReceiving: [],
    },
  };
}

/** The initiator's first DH ratchet step, started ahead: see {@linkcode startFirstSenderStep}. */
export interface FirstSenderStep {
  /** The peer's ratchet key (its signed prekey) the step is with. */
  readonly remoteRatchetKey: Uint8Array;
  /** The initiator's first sending ratchet key pair. */
  readonly keyPair: RatchetKeyPair;
  /** X25519 of the key pair's private key and `remoteRatchetKey`. */
  readonly output: Promise<Uint8Array>;
}

/**
 * Starts the initiator's first DH ratchet step (a fresh key pair and its DH
 * with the peer's signed prekey), which does not depend on the key
 * agreement: it may be started before `initiateX3dh`, and
 * {@linkcode initHeaderSender} takes it. If the key agreement fails
 * (a forged prekey signature), the step is simply dropped: its key pair was
 * never used.
 *
 * @param remoteRatchetKey The peer's signed prekey.
 * @returns The step; its `output` rejects with a `RangeError` on an unusable key.
 */
export function startFirstSenderStep(remoteRatchetKey: Uint8Array): FirstSenderStep {
  checkKeyLength(remoteRatchetKey, "the remote ratchet key");
  const keyPair = newX25519KeyPair();
  const output = dh([keyPair.privateKey], remoteRatchetKey).then(([out]) => out!);
  output.catch(() => {}); // seen by initHeaderSender, or dropped with the step
  return { remoteRatchetKey: new Uint8Array(remoteRatchetKey), keyPair, output };
}

/**
 * Starts the responder's side (RatchetInitBobHE). It cannot send until it
 * has decrypted the initiator's first message.
 *
 * @param sharedSecret The 32-byte secret from the key agreement.
 * @param ownRatchetKeyPair The signed prekey the initiator used.
 * @param associatedData Both identities, at most {@linkcode MAX_ASSOCIATED_DATA_LENGTH} bytes.
 * @param headerKeys `nextSending`: `shared_nhkb`; `nextReceiving`: `shared_hka`.
 * @returns The responder's state.
 * @throws {TypeError} If a secret or key is not 32 bytes.
 * @throws {RangeError} If the associated data is too long.
 */
export function initHeaderReceiver(
  sharedSecret: Uint8Array,
  ownRatchetKeyPair: RatchetKeyPair,
  associatedData: Uint8Array,
  headerKeys: { readonly nextSending: Uint8Array; readonly nextReceiving: Uint8Array },
): RatchetState {
  checkKeyLength(sharedSecret, "the shared secret");
  checkKeyLength(ownRatchetKeyPair.privateKey, "the private ratchet key");
  checkKeyLength(ownRatchetKeyPair.publicKey, "the public ratchet key");
  checkKeyLength(headerKeys.nextSending, "the next sending header key");
  checkKeyLength(headerKeys.nextReceiving, "the next receiving header key");
  checkAssociatedData(associatedData);
  return {
    rootKey: new Uint8Array(sharedSecret),
    sendingRatchetKey: {
      privateKey: new Uint8Array(ownRatchetKeyPair.privateKey),
      publicKey: new Uint8Array(ownRatchetKeyPair.publicKey),
    },
    receivingRatchetKey: null,
    sendingChainKey: null,
    receivingChainKey: null,
    sendingCount: 0,
    receivingCount: 0,
    previousSendingCount: 0,
    skippedMessageKeys: [],
    associatedData: new Uint8Array(associatedData),
    headerKeys: {
      sending: null,
      receiving: null,
      nextSending: new Uint8Array(headerKeys.nextSending),
      nextReceiving: new Uint8Array(headerKeys.nextReceiving),
      previousReceiving: [],
    },
  };
}

/** What {@linkcode headerRatchetEncrypt} returns. */
export interface HeaderEncryptResult {
  /** The state after sending; persist it before sending `message`. */
  readonly state: RatchetState;
  /** The message: tag, sealed header, ciphertext. */
  readonly message: Uint8Array<ArrayBuffer>;
}

/**
 * Encrypts one message and advances the sending chain.
 *
 * @param state A state with header keys; it is not changed.
 * @param plaintext At most {@linkcode MAX_RATCHET_PLAINTEXT_LENGTH} bytes.
 * @param options `id`: the 16-byte message ID sealed in the header;
 *   `context`: bytes the recipient must pass alike, bound into both seals
 *   (default none).
 * @returns The new state (persist it first) and the message.
 * @throws {EncryptionError} If the state has no header keys or cannot send
 *   yet, the chain is exhausted, the plaintext is too long or the ID is not
 *   16 bytes.
 */
export async function headerRatchetEncrypt(
  state: RatchetState,
  plaintext: Uint8Array,
  options: { readonly id: Uint8Array; readonly context?: Uint8Array },
): Promise<HeaderEncryptResult> {
  const keys = state.headerKeys;
  if (keys === undefined) {
    throw new EncryptionError("Cannot encrypt: the session does not encrypt its headers");
  }
  if (state.sendingChainKey === null || keys.sending === null) {
    throw new EncryptionError("Cannot encrypt: the session has not received a message yet");
  }
  if (state.sendingCount > MAX_MESSAGE_NUMBER) {
    throw new EncryptionError("Cannot encrypt: the sending chain is exhausted");
  }
  if (plaintext.length > MAX_RATCHET_PLAINTEXT_LENGTH) {
    throw new EncryptionError(
      `Cannot encrypt: plaintext exceeds ${MAX_RATCHET_PLAINTEXT_LENGTH} bytes`,
    );
  }
  if (options.id.length !== HEADER_ID_LENGTH) {
    throw new EncryptionError(`Cannot encrypt: the message ID is not ${HEADER_ID_LENGTH} bytes`);
  }
  const context = options.context ?? EMPTY;
  const tag = tagOf(keys.sending);
  const header = concat(
    state.sendingRatchetKey.publicKey,
    u32(state.previousSendingCount),
    u32(state.sendingCount),
    options.id,
  );
  const nonce = crypto.getRandomValues(new Uint8Array(NONCE_LENGTH));
  let sealedHeader: Uint8Array;
  try {
    sealedHeader = gcmSealSync(keys.sending, nonce, header, concat(context, tag));
  } catch (cause) {
    throw new EncryptionError("Cannot encrypt: AES-GCM encryption failed", { cause });
  }
  const prefix = concat(tag, nonce, sealedHeader);
  const [sendingChainKey, messageKey] = kdfChain(state.sendingChainKey);
  const ciphertext = await sealBody(
    messageKey,
    plaintext,
    aeadData(state.associatedData, concat(context, prefix)),
  );
  const message = new Uint8Array(prefix.length + ciphertext.length);
  message.set(prefix);
  message.set(ciphertext, prefix.length);
  return {
    state: { ...state, sendingChainKey, sendingCount: state.sendingCount + 1 },
    message,
  };
}

/** What {@linkcode headerRatchetDecrypt} returns. */
export type HeaderDecryptResult =
  | {
    /** The message decrypted. */
    readonly gone: false;
    /** The state after receiving; persist it before acting on `plaintext`. */
    readonly state: RatchetState;
    /** The authenticated plaintext. */
    readonly plaintext: Uint8Array<ArrayBuffer>;
    /** The message ID from the header. */
    readonly id: Uint8Array<ArrayBuffer>;
  }
  | {
    /**
     * The header is authentic (sealed by the peer under one of this state's
     * keys) but the message's key is gone: it was decrypted before (a copy)
     * or skipped and dropped. The caller tells which by `id`.
     */
    readonly gone: true;
    /** The message ID from the header. */
    readonly id: Uint8Array<ArrayBuffer>;
  };

/** The header a key opens, or `undefined`. */
function openHeader(
  headerKey: Uint8Array,
  message: Uint8Array,
  context: Uint8Array,
): { ratchetKey: Uint8Array; pn: number; n: number; id: Uint8Array<ArrayBuffer> } | undefined {
  trials++;
  const tag = message.subarray(0, SESSION_TAG_LENGTH);
  const nonce = message.subarray(SESSION_TAG_LENGTH, SESSION_TAG_LENGTH + NONCE_LENGTH);
  const sealed = message.subarray(
    SESSION_TAG_LENGTH + NONCE_LENGTH,
    SESSION_TAG_LENGTH + SEALED_HEADER_LENGTH,
  );
  let header: Uint8Array;
  try {
    header = gcmOpenSync(headerKey, nonce, sealed, concat(context, tag));
  } catch {
    return undefined;
  }
  const view = new DataView(header.buffer, header.byteOffset, header.byteLength);
  const n = view.getUint32(KEY_LENGTH + 4);
  if (n > MAX_MESSAGE_NUMBER) return undefined;
  return {
    ratchetKey: header.slice(0, KEY_LENGTH),
    pn: view.getUint32(KEY_LENGTH),
    n,
    id: header.slice(KEY_LENGTH + 8),
  };
}

function skipKeys(
  chainKey: Uint8Array,
  from: number,
  until: number,
  headerKey: Uint8Array,
  storedAt: number,
  into: SkippedMessageKey[],
): Uint8Array {
  let ck = chainKey;
  for (let n = from; n < until; n++) {
    const [next, messageKey] = kdfChain(ck);
    into.push({ ratchetKey: headerKey, messageNumber: n, messageKey, storedAt });
    ck = next;
  }
  return ck;
}

/**
 * Decrypts one message: finds the header key its tag names (none: refused
 * with no decryption tried), opens the header with it, performs a DH
 * ratchet step if the key is the next receiving one, and keeps the keys of
 * the messages it skips.
 *
 * @param state A state with header keys; it is not changed.
 * @param message The message (tag, sealed header, ciphertext).
 * @param options `context`: as given to {@linkcode headerRatchetEncrypt};
 *   `now`: the time (ms) recorded with skipped keys (default `Date.now()`).
 * @returns The new state and plaintext, or `gone` (see {@linkcode HeaderDecryptResult}).
 * @throws {TooManySkippedMessagesError} If the header asks to skip more
 *   than {@linkcode MAX_SKIP} keys in one chain.
 * @throws {DecryptionError} With one uniform message for every other failure.
 */
export async function headerRatchetDecrypt(
  state: RatchetState,
  message: Uint8Array,
  options: { readonly context?: Uint8Array; readonly now?: number } = {},
): Promise<HeaderDecryptResult> {
  const keys = state.headerKeys;
  if (
    keys === undefined || message.length < HEADER_RATCHET_OVERHEAD ||
    message.length > MAX_HEADER_RATCHET_MESSAGE_LENGTH
  ) throw new DecryptionError();
  const now = options.now ?? Date.now();
  const context = options.context ?? EMPTY;
  const tag = message.subarray(0, SESSION_TAG_LENGTH);
  const headerKey = candidateKeys(state).find((k) => constantTimeEqual(tagOf(k), tag));
  if (headerKey === undefined) throw new DecryptionError();
  const header = openHeader(headerKey, message, context);
  if (header === undefined) throw new DecryptionError();
  const { ratchetKey, pn, n, id } = header;
  const bodyData = aeadData(
    state.associatedData,
    concat(context, message.subarray(0, SESSION_TAG_LENGTH + SEALED_HEADER_LENGTH)),
  );
  const body = message.subarray(SESSION_TAG_LENGTH + SEALED_HEADER_LENGTH);

  // A key kept for a skipped message.
  const skipped = state.skippedMessageKeys;
  const at = skipped.findIndex((e) =>
    e.messageNumber === n && constantTimeEqual(e.ratchetKey, headerKey)
  );
  if (at >= 0) {
    const plaintext = await openBody(skipped[at]!.messageKey, body, bodyData);
    return {
      gone: false,
      state: { ...state, skippedMessageKeys: [...skipped.slice(0, at), ...skipped.slice(at + 1)] },
      plaintext,
      id,
    };
  }
  const current = keys.receiving !== null && constantTimeEqual(keys.receiving, headerKey);
  const next = !current && constantTimeEqual(keys.nextReceiving, headerKey);
  if (!current && !next) return { gone: true, id }; // an earlier chain
  if (current) {
    if (!constantTimeEqual(state.receivingRatchetKey!, ratchetKey)) throw new DecryptionError();
    if (n < state.receivingCount) return { gone: true, id };
    if (n - state.receivingCount > MAX_SKIP) throw new TooManySkippedMessagesError();
  } else {
    if (state.receivingChainKey !== null) {
      if (pn < state.receivingCount) throw new DecryptionError();
      if (pn - state.receivingCount > MAX_SKIP) throw new TooManySkippedMessagesError();
    }
    if (n > MAX_SKIP) throw new TooManySkippedMessagesError();
  }

  // Derive on copies; commit only once the body has opened.
  const newSkipped: SkippedMessageKey[] = [];
  let rootKey = state.rootKey;
  let sendingRatchetKey = state.sendingRatchetKey;
  let sendingChainKey = state.sendingChainKey;
  let sendingCount = state.sendingCount;
  let previousSendingCount = state.previousSendingCount;
  let receivingChainKey: Uint8Array;
  let receivingCount = state.receivingCount;
  let headerKeys: HeaderKeys = keys;
  try {
    if (current) {
      receivingChainKey = state.receivingChainKey!;
    } else {
      if (state.receivingChainKey !== null && keys.receiving !== null) {
        skipKeys(state.receivingChainKey, receivingCount, pn, keys.receiving, now, newSkipped);
      }
      // DHRatchetHE.
      previousSendingCount = sendingCount;
      sendingCount = 0;
      receivingCount = 0;
      const pair = newX25519KeyPair();
      const [receiving, sending] = await dh(
        [sendingRatchetKey.privateKey, pair.privateKey],
        ratchetKey,
      );
      sendingRatchetKey = pair;
      let nextReceiving: Uint8Array, nextSending: Uint8Array;
      [rootKey, receivingChainKey, nextReceiving] = kdfRoot(rootKey, receiving!, ROOT_INFO, 3) as [
        Uint8Array,
        Uint8Array,
        Uint8Array,
      ];
      [rootKey, sendingChainKey, nextSending] = kdfRoot(rootKey, sending!, ROOT_INFO, 3) as [
        Uint8Array,
        Uint8Array,
        Uint8Array,
      ];
      headerKeys = {
        sending: keys.nextSending,
        receiving: keys.nextReceiving,
        nextSending,
        nextReceiving,
        previousReceiving: keys.receiving === null
          ? keys.previousReceiving
          : [keys.receiving, ...keys.previousReceiving].slice(0, MAX_PREVIOUS_HEADER_KEYS),
      };
    }
    receivingChainKey = skipKeys(receivingChainKey, receivingCount, n, headerKey, now, newSkipped);
  } catch {
    // A low-order ratchet key in a header the peer sealed.
    throw new DecryptionError();
  }
  const [nextChainKey, messageKey] = kdfChain(receivingChainKey);
  let plaintext: Uint8Array<ArrayBuffer>;
  try {
    plaintext = await openBody(messageKey, body, bodyData);
  } finally {
    messageKey.fill(0);
  }
  let skippedMessageKeys = newSkipped.length === 0 ? skipped : [...skipped, ...newSkipped];
  if (skippedMessageKeys.length > MAX_SKIPPED_KEYS) {
    skippedMessageKeys = skippedMessageKeys.slice(skippedMessageKeys.length - MAX_SKIPPED_KEYS);
  }
  return {
    gone: false,
    state: {
      rootKey,
      sendingRatchetKey,
      receivingRatchetKey: current ? state.receivingRatchetKey : ratchetKey,
      sendingChainKey,
      receivingChainKey: nextChainKey,
      sendingCount,
      receivingCount: n + 1,
      previousSendingCount,
      skippedMessageKeys,
      associatedData: state.associatedData,
      headerKeys,
    },
    plaintext,
    id,
  };
}
