/**
 * Sender keys, as Signal and WhatsApp use them for groups: each member has,
 * per group and epoch, a sending chain and an Ed25519 key pair of its own;
 * it hands the chain's current key and the public key to every other
 * member once, over their pairwise Double Ratchet sessions (a
 * {@linkcode SenderKeyDistribution}), and then encrypts each group message
 * once, whatever the group's size.
 *
 * Every function is pure: it returns a new chain and never changes its
 * input, so a failed decryption changes nothing; the caller saves the new
 * chain before it sends the message or shows the plaintext.
 *
 * ## Construction
 *
 * - Chain step: message key = HMAC-SHA-256(chain key, 0x01), next chain key
 *   = HMAC-SHA-256(chain key, 0x02), as in the Double Ratchet's KDF_CK; a
 *   chain only moves forward and a used message key is deleted, so a copy
 *   of today's state does not read yesterday's messages.
 * - Message encryption: HKDF-SHA-256(message key, salt = 32 zero bytes,
 *   info = "DIM-v1 group message") gives an AES-256-GCM key and nonce; the
 *   header is the associated data.
 * - Signature: Ed25519 by the chain's own key over "DIM-v1 group message\0"
 *   | header | ciphertext: members share the chain key, so only the
 *   signature tells the real sender from another member.
 *
 * ## Wire format of a group message (version 1)
 *
 * ```text
 * version u8 (= 1) | groupId (16) | epoch u32 | sender (32) | iteration u32
 *   | ciphertext (AES-256-GCM, tag included) | signature (64)
 * plaintext = contentType u8 | messageId (16) | timestamp u64 | body
 * ```
 *
 * `sender` is the member's identity key (its user ID). The header travels
 * only inside a per-member wrap ({@link "./wire.ts"}), never in the clear.
 *
 * ## Limits
 *
 * A message more than {@linkcode MAX_GROUP_SKIP} ahead of its chain is
 * refused before any key is derived; at most
 * {@linkcode MAX_GROUP_SKIPPED_KEYS} skipped keys are kept per chain (the
 * oldest go first), and {@linkcode expireSkippedGroupKeys} drops those
 * older than {@linkcode GROUP_SKIPPED_KEY_MAX_AGE_MS}.
 *
 * @example Alice's chain, Bob's copy of it
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   createSenderChain,
 *   decodeDistribution,
 *   encodeDistribution,
 *   groupDecrypt,
 *   groupEncrypt,
 *   receiverChainFrom,
 * } from "./sender_keys.ts";
 *
 * const groupId = new Uint8Array(16);
 * const aliceKey = new Uint8Array(32).fill(1); // Alice's identity signing key
 * let alice = await createSenderChain(groupId, 0);
 * // Over the pairwise session:
 * const dist = decodeDistribution(encodeDistribution(alice));
 * let bob = receiverChainFrom(dist, aliceKey);
 *
 * const sent = await groupEncrypt(alice, aliceKey, { body: new TextEncoder().encode("hi all") });
 * alice = sent.chain;
 * const got = await groupDecrypt(bob, sent.message);
 * bob = got.chain;
 * assert.equal(new TextDecoder().decode(got.plaintext.body), "hi all");
 * ```
 *
 * @module
 */
import { hkdf } from "@noble/hashes/hkdf.js";
import { hmac } from "@noble/hashes/hmac.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { createCipheriv, createDecipheriv } from "node:crypto";
import { concat, equalBytes, Reader, u32, u64, utf8 } from "../platform/bytes.ts";
import { DecryptionError, EncryptionError, TooManySkippedMessagesError } from "../errors.ts";
import {
  GROUP_ID_LENGTH,
  GROUP_SKIPPED_KEY_MAX_AGE_MS,
  MAX_GROUP_BODY_LENGTH,
  MAX_GROUP_SKIP,
  MAX_GROUP_SKIPPED_KEYS,
} from "./constants.ts";

/** The group message format version this module writes and the only one it reads. */
export const GROUP_MESSAGE_VERSION = 1;
/** The distribution format version this module writes and the only one it reads. */
export const DISTRIBUTION_VERSION = 1;
/** Length of a group message's header. */
export const GROUP_HEADER_LENGTH: number = 1 + GROUP_ID_LENGTH + 4 + 32 + 4;
/** Length of a group message ID. */
export const GROUP_MESSAGE_ID_LENGTH = 16;
const TAG_LENGTH = 16;
const SIGNATURE_LENGTH = 64;
const INNER_HEADER_LENGTH = 1 + GROUP_MESSAGE_ID_LENGTH + 8;
/** Bytes a group message is longer than its body. */
export const GROUP_MESSAGE_OVERHEAD: number = GROUP_HEADER_LENGTH + INNER_HEADER_LENGTH +
  TAG_LENGTH + SIGNATURE_LENGTH;
/** The largest valid group message. */
export const MAX_GROUP_MESSAGE_LENGTH: number = GROUP_MESSAGE_OVERHEAD + MAX_GROUP_BODY_LENGTH;
/** Length of an encoded distribution. */
export const DISTRIBUTION_LENGTH: number = 1 + GROUP_ID_LENGTH + 4 + 4 + 32 + 32 + 32;

const MAX_ITERATION = 0xfffffffe;
const MESSAGE_INFO = utf8("DIM-v1 group message");
const SIGN_LABEL = utf8("DIM-v1 group message\0");
const ZERO_SALT = new Uint8Array(32);
const MESSAGE_KEY_INPUT = new Uint8Array([0x01]);
const CHAIN_KEY_INPUT = new Uint8Array([0x02]);

/** One's own sending chain in a group for one epoch. Holds secret material: never log it. */
export interface SenderChain {
  /** The 16-byte group ID. */
  readonly groupId: Uint8Array;
  /** The membership epoch the chain belongs to. */
  readonly epoch: number;
  /** The 32-byte key of the next message. */
  readonly chainKey: Uint8Array;
  /** The next message's iteration. */
  readonly iteration: number;
  /** The chain's Ed25519 private key, PKCS#8 (48 bytes). */
  readonly signingPrivateKey: Uint8Array;
  /** The chain's raw Ed25519 public key. */
  readonly signingPublicKey: Uint8Array;
  /**
   * A 32-byte key other members wrap their messages to this member with
   * ({@link "./wire.ts"}): distributed with the chain, new each epoch.
   */
  readonly inboxKey: Uint8Array;
}

/** A message key kept for a group message that has not arrived yet. */
export interface SkippedGroupKey {
  /** The message's iteration. */
  readonly iteration: number;
  /** The 32-byte message key. */
  readonly messageKey: Uint8Array;
  /** When it was kept (ms), so that it expires. */
  readonly storedAt: number;
}

/** Another member's chain, as this member reads it. Holds secret material: never log it. */
export interface ReceiverChain {
  /** The 16-byte group ID. */
  readonly groupId: Uint8Array;
  /** The epoch. */
  readonly epoch: number;
  /** The sender's identity key (32 bytes). */
  readonly sender: Uint8Array;
  /** The key of the next message not yet read. */
  readonly chainKey: Uint8Array;
  /** The iteration of `chainKey`. */
  readonly iteration: number;
  /** The sender's chain public key, which signs its messages. */
  readonly signingPublicKey: Uint8Array;
  /** The sender's inbox key for wraps to it. */
  readonly inboxKey: Uint8Array;
  /** Keys of skipped messages, oldest first. */
  readonly skipped: readonly SkippedGroupKey[];
}

/** What a member sends every other member, inside their pairwise session, to let them read it. */
export interface SenderKeyDistribution {
  /** The 16-byte group ID. */
  readonly groupId: Uint8Array;
  /** The epoch. */
  readonly epoch: number;
  /** The iteration of `chainKey`. */
  readonly iteration: number;
  /** The chain key at `iteration`. */
  readonly chainKey: Uint8Array;
  /** The chain's Ed25519 public key. */
  readonly signingPublicKey: Uint8Array;
  /** The sender's inbox key for this epoch. */
  readonly inboxKey: Uint8Array;
}

/** The plaintext of a group message. */
export interface GroupPlaintext {
  /** What the body is, 0 to 255. Default 0 (text). */
  readonly contentType?: number;
  /** A 16-byte message ID, for deduplication by (sender, ID). Default: random. */
  readonly id?: Uint8Array;
  /** When it was written (ms). Default: `Date.now()`. */
  readonly timestamp?: number;
  /** The body, at most {@linkcode MAX_GROUP_BODY_LENGTH} bytes. */
  readonly body: Uint8Array;
}

/** An opened group message. */
export interface OpenedGroupPlaintext {
  /** The content type. */
  readonly contentType: number;
  /** The 16-byte message ID. */
  readonly id: Uint8Array;
  /** The sender's timestamp (ms). */
  readonly timestamp: number;
  /** The body. */
  readonly body: Uint8Array;
}

/** A group message's header, as {@linkcode decodeGroupMessageHeader} reads it. */
export interface GroupMessageHeader {
  /** The 16-byte group ID. */
  readonly groupId: Uint8Array;
  /** The epoch. */
  readonly epoch: number;
  /** The sender's identity key. */
  readonly sender: Uint8Array;
  /** The chain iteration. */
  readonly iteration: number;
}

function step(chainKey: Uint8Array): [Uint8Array, Uint8Array] {
  return [hmac(sha256, chainKey, CHAIN_KEY_INPUT), hmac(sha256, chainKey, MESSAGE_KEY_INPUT)];
}

function cipherOf(messageKey: Uint8Array): Uint8Array {
  return hkdf(sha256, messageKey, ZERO_SALT, MESSAGE_INFO, 44);
}

// Imported signing and verifying keys, by their bytes' identity or value.
const SIGNING_KEYS = new WeakMap<Uint8Array, Promise<CryptoKey>>();
const VERIFY_KEYS = new Map<string, Promise<CryptoKey>>();

function signingKey(pkcs8: Uint8Array): Promise<CryptoKey> {
  let key = SIGNING_KEYS.get(pkcs8);
  if (key === undefined) {
    key = crypto.subtle.importKey("pkcs8", new Uint8Array(pkcs8), "Ed25519", false, ["sign"]);
    SIGNING_KEYS.set(pkcs8, key);
  }
  return key;
}

async function verify(
  publicKey: Uint8Array,
  signed: Uint8Array<ArrayBuffer>,
  sig: Uint8Array,
): Promise<boolean> {
  const id = String.fromCharCode(...publicKey);
  let key = VERIFY_KEYS.get(id);
  if (key === undefined) {
    if (VERIFY_KEYS.size >= 512) VERIFY_KEYS.delete(VERIFY_KEYS.keys().next().value!);
    key = crypto.subtle.importKey("raw", new Uint8Array(publicKey), "Ed25519", false, ["verify"]);
    VERIFY_KEYS.set(id, key);
  }
  try {
    return await crypto.subtle.verify("Ed25519", await key, new Uint8Array(sig), signed);
  } catch {
    return false;
  }
}

function checkGroupId(groupId: Uint8Array, action: string): void {
  if (!(groupId instanceof Uint8Array) || groupId.length !== GROUP_ID_LENGTH) {
    throw new TypeError(`Cannot ${action}: the group ID must be ${GROUP_ID_LENGTH} bytes`);
  }
}

function checkEpoch(epoch: number, action: string): void {
  if (!Number.isInteger(epoch) || epoch < 0 || epoch > 0xffffffff) {
    throw new RangeError(`Cannot ${action}: epoch ${epoch} is out of range`);
  }
}

/**
 * Makes a fresh sending chain: a random chain key, an Ed25519 key pair and
 * an inbox key, at iteration 0.
 *
 * @param groupId The 16-byte group ID.
 * @param epoch The membership epoch.
 * @returns The chain.
 * @throws {TypeError} If the group ID is not 16 bytes.
 * @throws {RangeError} If the epoch is not a u32.
 */
export async function createSenderChain(groupId: Uint8Array, epoch: number): Promise<SenderChain> {
  checkGroupId(groupId, "create sender chain");
  checkEpoch(epoch, "create sender chain");
  const pair = await crypto.subtle.generateKey("Ed25519", true, [
    "sign",
    "verify",
  ]) as CryptoKeyPair;
  const [pkcs8, raw] = await Promise.all([
    crypto.subtle.exportKey("pkcs8", pair.privateKey),
    crypto.subtle.exportKey("raw", pair.publicKey),
  ]);
  return {
    groupId: new Uint8Array(groupId),
    epoch,
    chainKey: crypto.getRandomValues(new Uint8Array(32)),
    iteration: 0,
    signingPrivateKey: new Uint8Array(pkcs8),
    signingPublicKey: new Uint8Array(raw),
    inboxKey: crypto.getRandomValues(new Uint8Array(32)),
  };
}

/**
 * Encodes the distribution of a chain at its current iteration:
 * `version u8 (= 1) | groupId (16) | epoch u32 | iteration u32 | chainKey (32)
 * | signingPublicKey (32) | inboxKey (32)`. Send it only inside a pairwise
 * session: it lets its holder read every later message of the chain.
 *
 * @param chain One's own chain.
 * @returns {@linkcode DISTRIBUTION_LENGTH} bytes.
 */
export function encodeDistribution(chain: SenderChain | SenderKeyDistribution): Uint8Array {
  return concat(
    new Uint8Array([DISTRIBUTION_VERSION]),
    chain.groupId,
    u32(chain.epoch),
    u32(chain.iteration),
    chain.chainKey,
    chain.signingPublicKey,
    chain.inboxKey,
  );
}

/**
 * Decodes a distribution strictly.
 *
 * @param bytes The encoded distribution.
 * @returns The distribution.
 * @throws {SyntaxError} If the length or version is wrong.
 */
export function decodeDistribution(bytes: Uint8Array): SenderKeyDistribution {
  if (bytes.length !== DISTRIBUTION_LENGTH || bytes[0] !== DISTRIBUTION_VERSION) {
    throw new SyntaxError("Cannot decode sender key distribution: wrong length or version");
  }
  const r = new Reader(bytes.subarray(1));
  const out = {
    groupId: r.bytes(GROUP_ID_LENGTH),
    epoch: r.u32(),
    iteration: r.u32(),
    chainKey: r.bytes(32),
    signingPublicKey: r.bytes(32),
    inboxKey: r.bytes(32),
  };
  r.end();
  if (out.iteration > MAX_ITERATION) {
    throw new SyntaxError("Cannot decode sender key distribution: iteration out of range");
  }
  return out;
}

/**
 * Starts reading a member's chain from its distribution.
 *
 * @param distribution What the member sent over the pairwise session.
 * @param sender The member's identity key (the session's peer, not a
 *   claim of the distribution).
 * @returns The receiving chain.
 */
export function receiverChainFrom(
  distribution: SenderKeyDistribution,
  sender: Uint8Array,
): ReceiverChain {
  return {
    groupId: new Uint8Array(distribution.groupId),
    epoch: distribution.epoch,
    sender: new Uint8Array(sender),
    chainKey: new Uint8Array(distribution.chainKey),
    iteration: distribution.iteration,
    signingPublicKey: new Uint8Array(distribution.signingPublicKey),
    inboxKey: new Uint8Array(distribution.inboxKey),
    skipped: [],
  };
}

/**
 * Encrypts one group message once for every member, and advances the chain.
 *
 * @param chain One's own chain; not changed.
 * @param sender One's identity signing key (32 bytes), named in the header.
 * @param plaintext The body and, optionally, content type, ID and timestamp.
 * @returns The new chain (save it first) and the group message.
 * @throws {EncryptionError} If the body is too long, a field is out of
 *   range or the chain is exhausted.
 */
export async function groupEncrypt(
  chain: SenderChain,
  sender: Uint8Array,
  plaintext: GroupPlaintext,
): Promise<{ chain: SenderChain; message: Uint8Array<ArrayBuffer> }> {
  const { body } = plaintext;
  const contentType = plaintext.contentType ?? 0;
  const id = plaintext.id ?? crypto.getRandomValues(new Uint8Array(GROUP_MESSAGE_ID_LENGTH));
  const timestamp = plaintext.timestamp ?? Date.now();
  if (body.length > MAX_GROUP_BODY_LENGTH) {
    throw new EncryptionError(
      `Cannot encrypt group message: body exceeds ${MAX_GROUP_BODY_LENGTH} bytes`,
    );
  }
  if (
    id.length !== GROUP_MESSAGE_ID_LENGTH || sender.length !== 32 ||
    !Number.isInteger(contentType) || contentType < 0 || contentType > 255 ||
    !Number.isSafeInteger(timestamp) || timestamp < 0
  ) {
    throw new EncryptionError("Cannot encrypt group message: a field is out of range");
  }
  if (chain.iteration > MAX_ITERATION) {
    throw new EncryptionError("Cannot encrypt group message: the chain is exhausted");
  }
  const [chainKey, messageKey] = step(chain.chainKey);
  const header = concat(
    new Uint8Array([GROUP_MESSAGE_VERSION]),
    chain.groupId,
    u32(chain.epoch),
    sender,
    u32(chain.iteration),
  );
  const okm = cipherOf(messageKey);
  messageKey.fill(0);
  const cipher = createCipheriv("aes-256-gcm", okm.subarray(0, 32), okm.subarray(32));
  okm.fill(0);
  cipher.setAAD(header);
  const ciphertext = concat(
    cipher.update(concat(new Uint8Array([contentType]), id, u64(timestamp), body)),
    cipher.final(),
    cipher.getAuthTag(),
  );
  const unsigned = concat(header, ciphertext);
  const signature = new Uint8Array(
    await crypto.subtle.sign(
      "Ed25519",
      await signingKey(chain.signingPrivateKey),
      concat(SIGN_LABEL, unsigned),
    ),
  );
  return {
    chain: { ...chain, chainKey, iteration: chain.iteration + 1 },
    message: concat(unsigned, signature),
  };
}

/**
 * Reads a group message's header, unauthenticated, to find the chain that
 * opens it.
 *
 * @param message The group message.
 * @returns The header.
 * @throws {DecryptionError} If the length or version is wrong.
 */
export function decodeGroupMessageHeader(message: Uint8Array): GroupMessageHeader {
  if (
    message.length < GROUP_MESSAGE_OVERHEAD || message.length > MAX_GROUP_MESSAGE_LENGTH ||
    message[0] !== GROUP_MESSAGE_VERSION
  ) {
    throw new DecryptionError();
  }
  const r = new Reader(message.subarray(1, GROUP_HEADER_LENGTH));
  const header = {
    groupId: r.bytes(GROUP_ID_LENGTH),
    epoch: r.u32(),
    sender: r.bytes(32),
    iteration: r.u32(),
  };
  if (header.iteration > MAX_ITERATION) throw new DecryptionError();
  return header;
}

function open(messageKey: Uint8Array, message: Uint8Array): OpenedGroupPlaintext {
  const okm = cipherOf(messageKey);
  try {
    const sealed = message.subarray(GROUP_HEADER_LENGTH, message.length - SIGNATURE_LENGTH);
    const decipher = createDecipheriv("aes-256-gcm", okm.subarray(0, 32), okm.subarray(32));
    decipher.setAAD(message.subarray(0, GROUP_HEADER_LENGTH));
    decipher.setAuthTag(sealed.subarray(sealed.length - TAG_LENGTH));
    const inner = concat(
      decipher.update(sealed.subarray(0, sealed.length - TAG_LENGTH)),
      decipher.final(),
    );
    const r = new Reader(inner);
    return {
      contentType: r.u8(),
      id: r.bytes(GROUP_MESSAGE_ID_LENGTH),
      timestamp: r.u64(),
      body: r.bytes(r.remaining),
    };
  } catch {
    throw new DecryptionError();
  } finally {
    okm.fill(0);
  }
}

/**
 * Decrypts one group message with the sender's chain, keeping the keys of
 * messages it skips; a duplicate, a message whose key is gone, or a jump
 * over {@linkcode MAX_GROUP_SKIP} is refused before any key is derived.
 *
 * @param chain The sender's chain as this member holds it; not changed.
 * @param message The group message.
 * @param options `now`: the time (ms) stamped on skipped keys. Default `Date.now()`.
 * @returns The new chain (save it first) and the plaintext.
 * @throws {TooManySkippedMessagesError} If it would skip more than {@linkcode MAX_GROUP_SKIP} keys.
 * @throws {DecryptionError} With one message for every other failure: not
 *   this chain's, altered, badly signed, duplicated or too old.
 */
export async function groupDecrypt(
  chain: ReceiverChain,
  message: Uint8Array,
  options: { readonly now?: number } = {},
): Promise<{ chain: ReceiverChain; plaintext: OpenedGroupPlaintext }> {
  const now = options.now ?? Date.now();
  const header = decodeGroupMessageHeader(message);
  if (
    !equalBytes(header.groupId, chain.groupId) || header.epoch !== chain.epoch ||
    !equalBytes(header.sender, chain.sender)
  ) {
    throw new DecryptionError();
  }
  const signedLength = message.length - SIGNATURE_LENGTH;
  const ok = await verify(
    chain.signingPublicKey,
    concat(SIGN_LABEL, message.subarray(0, signedLength)),
    message.subarray(signedLength),
  );
  if (!ok) throw new DecryptionError();
  const n = header.iteration;
  const index = chain.skipped.findIndex((k) => k.iteration === n);
  if (index >= 0) {
    const plaintext = open(chain.skipped[index]!.messageKey, message);
    const skipped = chain.skipped.filter((_, i) => i !== index);
    return { chain: { ...chain, skipped }, plaintext };
  }
  if (n < chain.iteration) throw new DecryptionError();
  if (n - chain.iteration > MAX_GROUP_SKIP) throw new TooManySkippedMessagesError();
  let ck = chain.chainKey;
  const kept: SkippedGroupKey[] = [];
  for (let i = chain.iteration; i < n; i++) {
    const [next, mk] = step(ck);
    kept.push({ iteration: i, messageKey: mk, storedAt: now });
    ck = next;
  }
  const [next, messageKey] = step(ck);
  let plaintext: OpenedGroupPlaintext;
  try {
    plaintext = open(messageKey, message);
  } finally {
    messageKey.fill(0);
  }
  let skipped = kept.length === 0 ? chain.skipped : [...chain.skipped, ...kept];
  if (skipped.length > MAX_GROUP_SKIPPED_KEYS) {
    skipped = skipped.slice(skipped.length - MAX_GROUP_SKIPPED_KEYS);
  }
  return { chain: { ...chain, chainKey: next, iteration: n + 1, skipped }, plaintext };
}

/**
 * Drops skipped keys older than `maxAgeMs`.
 *
 * @param chain A receiving chain; not changed.
 * @param now The time (ms).
 * @param maxAgeMs Default {@linkcode GROUP_SKIPPED_KEY_MAX_AGE_MS}.
 * @returns The chain without the expired keys.
 */
export function expireSkippedGroupKeys(
  chain: ReceiverChain,
  now: number,
  maxAgeMs: number = GROUP_SKIPPED_KEY_MAX_AGE_MS,
): ReceiverChain {
  const skipped = chain.skipped.filter((k) => now - k.storedAt <= maxAgeMs);
  return skipped.length === chain.skipped.length ? chain : { ...chain, skipped };
}
