/**
 * The per-member wrap of a group message: what goes to each member's
 * mailbox (or stream). The group message is encrypted once
 * ({@link "./sender_keys.ts"}); each member gets it inside a small wrap of
 * its own, so that a mailbox node learns neither the sender nor the group,
 * and two members' copies share no bytes.
 *
 * ## Wire format of a wrap (version 1)
 *
 * ```text
 * wrap = 0x02 | seed (16) | hint (16) | AES-256-GCM(key, nonce, groupMessage, aad = the first 33 bytes)
 * key (32) | nonce (12) = HKDF-SHA-256(inboxKey, salt = seed, info = "DIM-v1 group wrap")
 * hint = HMAC-SHA-256(inboxKey, "DIM-v1 group wrap hint\0" | seed)[0..16], top bit of its last byte cleared
 * ```
 *
 * `inboxKey` is the recipient's inbox key for the group's epoch, which it
 * sent every member with its sender key. The recipient recognizes a wrap
 * with one HMAC per inbox key it holds (one or two per group), with no trial
 * decryption; to anyone else the seed and hint are random. A wrap starts
 * with the envelope version byte and is never shorter than an envelope, and
 * its byte 32 has its top bit clear as an X25519 key's last byte does, so
 * mailbox nodes store it as they store an envelope and cannot tell the two
 * apart but by size and timing.
 *
 * A member whose inbox key the sender does not hold yet (it has not
 * distributed its key for this epoch) gets the group message in a static
 * envelope instead ({@linkcode sealGroupEnvelope}): the same wrap's job, at
 * the price of an X25519 and a signature per member.
 *
 * Every failure to open a wrap is `undefined` from {@linkcode openWrap} (not
 * ours) or the uniform `DecryptionError`.
 *
 * @example Wrap for Bob, and Bob opens it
 * ```ts
 * import assert from "node:assert/strict";
 * import { openWrap, wrapForMember } from "./wire.ts";
 *
 * const bobInboxKey = crypto.getRandomValues(new Uint8Array(32));
 * const groupMessage = new Uint8Array(300).fill(7);
 * const wrap = wrapForMember(bobInboxKey, groupMessage);
 * const opened = openWrap([bobInboxKey], wrap);
 * assert.deepEqual(opened?.groupMessage, groupMessage);
 * assert.equal(openWrap([new Uint8Array(32)], wrap), undefined);
 * ```
 *
 * @module
 */
import { hkdf } from "@noble/hashes/hkdf.js";
import { hmac } from "@noble/hashes/hmac.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { createCipheriv, createDecipheriv } from "node:crypto";
import { concat, constantTimeEqual, utf8 } from "../platform/bytes.ts";
import {
  ENVELOPE_VERSION,
  type EnvelopeRecipient,
  MIN_ENVELOPE_LENGTH,
  sealEnvelope,
} from "../crypto/envelope.ts";
import type { Identity } from "../crypto/identity.ts";
import { DecryptionError, EncryptionError } from "../errors.ts";
import { GroupContentType, MAX_GROUP_WRAP_LENGTH } from "./constants.ts";
import { GROUP_MESSAGE_OVERHEAD, MAX_GROUP_MESSAGE_LENGTH } from "./sender_keys.ts";

const SEED_LENGTH = 16;
const HINT_LENGTH = 16;
const TAG_LENGTH = 16;
/** Bytes before a wrap's ciphertext: version, seed, hint. */
export const WRAP_HEADER_LENGTH: number = 1 + SEED_LENGTH + HINT_LENGTH;
/** Bytes a wrap is longer than the group message it carries. */
export const WRAP_OVERHEAD: number = WRAP_HEADER_LENGTH + TAG_LENGTH;
/** The smallest valid wrap. */
export const MIN_WRAP_LENGTH: number = WRAP_OVERHEAD + GROUP_MESSAGE_OVERHEAD;
const WRAP_INFO = utf8("DIM-v1 group wrap");
const HINT_LABEL = utf8("DIM-v1 group wrap hint\0");

// Mailbox nodes keep only what looks like an envelope; the largest wrap fits their fast path.
if (
  MIN_WRAP_LENGTH < MIN_ENVELOPE_LENGTH ||
  MAX_GROUP_MESSAGE_LENGTH + WRAP_OVERHEAD > MAX_GROUP_WRAP_LENGTH
) {
  throw new Error("group wrap bounds do not fit the envelope bounds");
}

function hintOf(inboxKey: Uint8Array, seed: Uint8Array): Uint8Array {
  const hint = hmac(sha256, inboxKey, concat(HINT_LABEL, seed)).subarray(0, HINT_LENGTH);
  hint[HINT_LENGTH - 1]! &= 0x7f;
  return hint;
}

/**
 * Wraps a group message for one member: one HMAC, one HKDF and one AES-GCM
 * over the message, with no public-key operation.
 *
 * @param inboxKey The member's 32-byte inbox key for this epoch.
 * @param groupMessage The group message (encrypted and signed once).
 * @returns The wrap, at most {@linkcode MAX_GROUP_WRAP_LENGTH} bytes.
 * @throws {EncryptionError} If the key is not 32 bytes or the message is
 *   outside a group message's bounds.
 */
export function wrapForMember(inboxKey: Uint8Array, groupMessage: Uint8Array): Uint8Array {
  if (
    inboxKey.length !== 32 || groupMessage.length < GROUP_MESSAGE_OVERHEAD ||
    groupMessage.length > MAX_GROUP_MESSAGE_LENGTH
  ) {
    throw new EncryptionError("Cannot wrap group message: bad key or message length");
  }
  const seed = crypto.getRandomValues(new Uint8Array(SEED_LENGTH));
  const header = concat(new Uint8Array([ENVELOPE_VERSION]), seed, hintOf(inboxKey, seed));
  const okm = hkdf(sha256, inboxKey, seed, WRAP_INFO, 44);
  const cipher = createCipheriv("aes-256-gcm", okm.subarray(0, 32), okm.subarray(32));
  okm.fill(0);
  cipher.setAAD(header);
  return concat(header, cipher.update(groupMessage), cipher.final(), cipher.getAuthTag());
}

/**
 * Recognizes and opens a wrap with one of the inbox keys this member holds.
 *
 * @param inboxKeys This member's inbox keys (of every group and live epoch).
 * @param wrap The bytes from the mailbox or stream.
 * @returns The group message and the index of the key that opened it, or
 *   `undefined` if no key's hint matches (an envelope, or not for us).
 * @throws {DecryptionError} If a hint matches but the wrap does not open.
 */
export function openWrap(
  inboxKeys: readonly Uint8Array[],
  wrap: Uint8Array,
): { groupMessage: Uint8Array; keyIndex: number } | undefined {
  if (
    wrap.length < MIN_WRAP_LENGTH || wrap.length > MAX_GROUP_WRAP_LENGTH ||
    wrap[0] !== ENVELOPE_VERSION
  ) {
    return undefined;
  }
  const seed = wrap.subarray(1, 1 + SEED_LENGTH);
  const hint = wrap.subarray(1 + SEED_LENGTH, WRAP_HEADER_LENGTH);
  const keyIndex = inboxKeys.findIndex((k) => constantTimeEqual(hintOf(k, seed), hint));
  if (keyIndex < 0) return undefined;
  const okm = hkdf(sha256, inboxKeys[keyIndex]!, seed, WRAP_INFO, 44);
  try {
    const decipher = createDecipheriv("aes-256-gcm", okm.subarray(0, 32), okm.subarray(32));
    decipher.setAAD(wrap.subarray(0, WRAP_HEADER_LENGTH));
    decipher.setAuthTag(wrap.subarray(wrap.length - TAG_LENGTH));
    const groupMessage = concat(
      decipher.update(wrap.subarray(WRAP_HEADER_LENGTH, wrap.length - TAG_LENGTH)),
      decipher.final(),
    );
    return { groupMessage, keyIndex };
  } catch {
    throw new DecryptionError();
  } finally {
    okm.fill(0);
  }
}

/**
 * The fallback wrap: the group message in a static envelope from `sender`
 * to `recipient`, content type {@linkcode GroupContentType}.EnvelopedMessage,
 * for a member whose inbox key the sender does not hold yet.
 *
 * @param sender The sender's identity.
 * @param recipient The member's pinned keys.
 * @param groupMessage The group message.
 * @returns The envelope.
 * @throws {EncryptionError} As `sealEnvelope` does.
 */
export function sealGroupEnvelope(
  sender: Identity,
  recipient: EnvelopeRecipient,
  groupMessage: Uint8Array,
): Promise<Uint8Array> {
  return sealEnvelope(sender, recipient, {
    body: groupMessage,
    contentType: GroupContentType.EnvelopedMessage,
  });
}
