/**
 * Contact cards: the signed record through which a user tells the network
 * how to encrypt to them and where to reach them.
 *
 * A card is a record of type `"card"` under `/dim/card/<userId>`. Its
 * owner's user ID and signing key come from the record itself; the payload
 * carries the X25519 encryption key, a display name, and the libp2p peer ID
 * and addresses of the user's node. The node's transport key is separate
 * from the identity key, so the card is what binds the two. The card
 * expires with its record; a running node republishes it before then.
 *
 * Payload encoding (integers big-endian):
 *
 * ```text
 * version u8 (= 1) | encryptionPublicKey (32) | nameLength u8 | name (UTF-8) |
 * peerIdLength u8 | peerId (ASCII) | addressCount u8 |
 * addressCount × (addressLength u32 | address (ASCII))
 * ```
 *
 * @example Publish and open a card
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity } from "../crypto/identity.ts";
 * import { openCard, signCard } from "./card.ts";
 *
 * const alice = await Identity.generate();
 * const record = await signCard(alice, {
 *   displayName: "Alice",
 *   peerId: "12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo",
 *   addresses: ["/ip4/192.0.2.7/tcp/4001"],
 * });
 * const card = await openCard(record.bytes, { key: `/dim/card/${alice.id}` });
 * assert(card.id === alice.id && card.displayName === "Alice");
 * ```
 *
 * @module
 */
import { concat, fromUtf8, u32, utf8 } from "../platform/bytes.ts";
import { KEY_LENGTH } from "../crypto/_keys.ts";
import type { Identity, PublicIdentity } from "../crypto/identity.ts";
import { checkEncryptionKey, decodePayload, invalidPayload } from "./_checks.ts";
import { openTypedRecord, type SignedRecord, signRecord } from "./record.ts";

/** The record type of contact cards. */
export const CARD_RECORD_TYPE = "card";

/** The payload encoding version this module writes and the only one it reads. */
export const CARD_VERSION = 1;

/** How long a card stays valid when {@linkcode signCard} is given no `ttlMs` (24 hours). */
export const DEFAULT_CARD_TTL_MS: number = 24 * 60 * 60 * 1000;

/** The longest display name, in UTF-8 bytes. */
export const MAX_DISPLAY_NAME_BYTES = 64;

/** The longest libp2p peer ID string, in bytes. */
export const MAX_PEER_ID_LENGTH = 128;

/** The most addresses a card lists. */
export const MAX_ADDRESSES = 16;

/** The longest multiaddr string, in bytes. */
export const MAX_ADDRESS_LENGTH = 256;

// Characters that would let a name break a terminal line or reorder the
// text around it when shown.
const NAME_FORBIDDEN = /[\p{Cc}\p{Zl}\p{Zp}\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]/u;
const PEER_ID_PATTERN = /^[A-Za-z0-9]+$/;
const ADDRESS_PATTERN = /^\/[\x21-\x7e]*$/;

/** A contact card that passed every check: who the user is and how to reach them. */
export interface ContactCard extends PublicIdentity {
  /** The user's display name, as they chose it (not unique, not verified). */
  readonly displayName: string;
  /** The libp2p peer ID of the user's node. */
  readonly peerId: string;
  /** The multiaddrs the node listens on, possibly none. */
  readonly addresses: readonly string[];
  /** The card's sequence number; a higher one supersedes a lower one. */
  readonly seq: number;
  /** When the card was signed, in milliseconds since the epoch. */
  readonly issuedAt: number;
  /** When the card expires, in milliseconds since the epoch. */
  readonly expiresAt: number;
  /** The signed record the card came from, for storing or republishing. */
  readonly record: SignedRecord;
}

/** What {@linkcode signCard} needs from an identity. */
export type CardSigner = Pick<Identity, "signingPublicKey" | "encryptionPublicKey" | "sign">;

/** What to put in a card made by {@linkcode signCard}. */
export interface SignCardOptions {
  /** Non-empty, at most {@linkcode MAX_DISPLAY_NAME_BYTES} UTF-8 bytes, no control characters. */
  readonly displayName: string;
  /** The libp2p peer ID string of the user's node. */
  readonly peerId: string;
  /** At most {@linkcode MAX_ADDRESSES} distinct multiaddr strings. */
  readonly addresses: readonly string[];
  /**
   * The sequence number. Defaults to the signing time in milliseconds, so
   * each republished card supersedes the last while the clock moves forward.
   */
  readonly seq?: number;
  /** How long the card stays valid. Defaults to {@linkcode DEFAULT_CARD_TTL_MS}. */
  readonly ttlMs?: number;
  /** The signing time in milliseconds since the epoch. Defaults to `Date.now()`. */
  readonly now?: number;
}

/** Options of {@linkcode openCard}. */
export interface OpenCardOptions {
  /** The current time in milliseconds since the epoch. Defaults to `Date.now()`. */
  readonly now?: number;
  /**
   * The DHT key the card was found under; the card must belong to it.
   * Defaults to the card's own key, which checks only that it is
   * self-consistent.
   */
  readonly key?: string | Uint8Array;
}

type Problem = [typeof TypeError | typeof RangeError, string];

function nameProblem(name: string, byteLength: number): Problem | undefined {
  if (byteLength === 0) return [RangeError, "the display name is empty"];
  if (byteLength > MAX_DISPLAY_NAME_BYTES) {
    return [RangeError, `the display name exceeds ${MAX_DISPLAY_NAME_BYTES} bytes`];
  }
  if (!name.isWellFormed() || NAME_FORBIDDEN.test(name)) {
    return [TypeError, "the display name contains a control character"];
  }
  return undefined;
}

function peerIdProblem(peerId: string): Problem | undefined {
  if (peerId.length === 0 || peerId.length > MAX_PEER_ID_LENGTH) {
    return [RangeError, `the peer ID must be 1 to ${MAX_PEER_ID_LENGTH} characters`];
  }
  if (!PEER_ID_PATTERN.test(peerId)) {
    return [TypeError, "the peer ID contains a character outside [A-Za-z0-9]"];
  }
  return undefined;
}

function addressesProblem(addresses: readonly string[]): Problem | undefined {
  if (addresses.length > MAX_ADDRESSES) {
    return [RangeError, `a card lists at most ${MAX_ADDRESSES} addresses`];
  }
  for (const address of addresses) {
    if (address.length > MAX_ADDRESS_LENGTH) {
      return [RangeError, `an address exceeds ${MAX_ADDRESS_LENGTH} bytes`];
    }
    if (!ADDRESS_PATTERN.test(address)) {
      return [TypeError, "an address is not a printable ASCII multiaddr starting with '/'"];
    }
  }
  if (new Set(addresses).size !== addresses.length) {
    return [TypeError, "an address is listed twice"];
  }
  return undefined;
}

function encodePayload(
  encryptionPublicKey: Uint8Array,
  name: Uint8Array,
  peerId: string,
  addresses: readonly string[],
): Uint8Array<ArrayBuffer> {
  const parts: Uint8Array[] = [
    new Uint8Array([CARD_VERSION]),
    encryptionPublicKey,
    new Uint8Array([name.length]),
    name,
    new Uint8Array([peerId.length]),
    utf8(peerId),
    new Uint8Array([addresses.length]),
  ];
  for (const address of addresses) parts.push(u32(address.length), utf8(address));
  return concat(...parts);
}

/**
 * Makes and signs the contact card of an identity.
 *
 * @param identity Whose card it is; its keys go into the card.
 * @param options The display name, node peer ID and addresses, and the
 *   sequence number and validity period.
 * @returns The signed record, ready to publish under its `key`.
 * @throws {TypeError} If the name has a control character, the peer ID or
 *   an address has a forbidden character, an address repeats, or a key is
 *   not 32 bytes.
 * @throws {RangeError} If a field is empty or too long, there are too many
 *   addresses, or `seq`, `now` or `ttlMs` is out of range.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity } from "../crypto/identity.ts";
 * import { signCard } from "./card.ts";
 *
 * const me = await Identity.generate();
 * const record = await signCard(me, {
 *   displayName: "Zoë",
 *   peerId: "12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo",
 *   addresses: [],
 *   now: 1_700_000_000_000,
 * });
 * assert(record.key === `/dim/card/${me.id}` && record.seq === 1_700_000_000_000);
 * ```
 */
export async function signCard(
  identity: CardSigner,
  options: SignCardOptions,
): Promise<SignedRecord> {
  const { displayName, peerId, addresses } = options;
  checkEncryptionKey(identity.encryptionPublicKey, "sign card");
  const name = utf8(displayName);
  const problem = nameProblem(displayName, name.length) ?? peerIdProblem(peerId) ??
    addressesProblem(addresses);
  if (problem !== undefined) {
    const [ErrorClass, reason] = problem;
    throw new ErrorClass(`Cannot sign card: ${reason}`);
  }
  const issuedAt = options.now ?? Date.now();
  return await signRecord(identity, {
    type: CARD_RECORD_TYPE,
    seq: options.seq ?? issuedAt,
    payload: encodePayload(identity.encryptionPublicKey, name, peerId, addresses),
    issuedAt,
    ttlMs: options.ttlMs ?? DEFAULT_CARD_TTL_MS,
  });
}

function invalid(reason: string, cause?: unknown): never {
  return invalidPayload("card", reason, cause);
}

function decodeAscii(bytes: Uint8Array): string {
  // Every byte is checked to be ASCII by the pattern applied afterwards.
  return String.fromCharCode(...bytes);
}

function decodeCardPayload(
  payload: Uint8Array,
): { encryptionPublicKey: Uint8Array; displayName: string; peerId: string; addresses: string[] } {
  const decoded = decodePayload("card", payload, (r) => {
    const version = r.u8();
    if (version !== CARD_VERSION) invalid(`unknown card version ${version}`);
    const encryptionPublicKey = r.bytes(KEY_LENGTH);
    const nameBytes = r.bytes(r.u8());
    let displayName: string;
    try {
      displayName = fromUtf8(nameBytes);
    } catch (cause) {
      invalid("the display name is not valid UTF-8", cause);
    }
    // The decoder drops a leading byte order mark: insist on the canonical bytes.
    if (utf8(displayName).length !== nameBytes.length) {
      invalid("the display name is not canonical UTF-8");
    }
    const peerIdLength = r.u8();
    if (peerIdLength > MAX_PEER_ID_LENGTH) invalid("the peer ID is too long");
    const peerId = decodeAscii(r.bytes(peerIdLength));
    const count = r.u8();
    if (count > MAX_ADDRESSES) invalid("it lists too many addresses");
    const addresses: string[] = [];
    for (let i = 0; i < count; i++) {
      const length = r.u32();
      if (length > MAX_ADDRESS_LENGTH) invalid("an address is too long");
      addresses.push(decodeAscii(r.bytes(length)));
    }
    return { encryptionPublicKey, displayName, nameLength: nameBytes.length, peerId, addresses };
  });
  const { encryptionPublicKey, displayName, nameLength, peerId, addresses } = decoded;
  const problem = nameProblem(displayName, nameLength) ?? peerIdProblem(peerId) ??
    addressesProblem(addresses);
  if (problem !== undefined) invalid(problem[1]);
  return { encryptionPublicKey, displayName, peerId, addresses };
}

/**
 * Validates a contact card record in full (size, structure, owner, key,
 * signature, validity period, payload) and returns its contents.
 *
 * @param input The encoded record, or a decoded one (its `bytes` are
 *   validated again).
 * @param options `key`: the DHT key it was found under; `now`: the current time.
 * @returns The contact card.
 * @throws {InvalidRecordError} If the record or its payload fails a check,
 *   or it is not a card.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity } from "../crypto/identity.ts";
 * import { openCard, signCard } from "./card.ts";
 *
 * const me = await Identity.generate();
 * const record = await signCard(me, {
 *   displayName: "Me",
 *   peerId: "12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo",
 *   addresses: ["/ip4/192.0.2.7/tcp/4001", "/ip6/2001:db8::7/tcp/4001"],
 * });
 * const card = await openCard(record);
 * assert(card.addresses.length === 2 && card.seq === record.seq);
 * ```
 */
export async function openCard(
  input: Uint8Array | SignedRecord,
  options: OpenCardOptions = {},
): Promise<ContactCard> {
  const record = await openTypedRecord(input, CARD_RECORD_TYPE, "card", options);
  const payload = decodeCardPayload(record.payload);
  return {
    id: record.ownerId,
    signingPublicKey: record.owner,
    encryptionPublicKey: payload.encryptionPublicKey,
    displayName: payload.displayName,
    peerId: payload.peerId,
    addresses: payload.addresses,
    seq: record.seq,
    issuedAt: record.issuedAt,
    expiresAt: record.expiresAt,
    record,
  };
}
