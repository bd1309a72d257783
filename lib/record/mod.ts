/**
 * Signed records, contact cards and prekey bundles: the self-certifying values DIM keeps
 * in the DHT under `/dim/<type>/<userId>`.
 *
 * {@linkcode signRecord} makes a record, {@linkcode validateRecord} checks
 * one received under a key, and {@linkcode selectRecord} (or
 * {@linkcode dimSelector} and {@linkcode dimValidator} for kad-dht) picks the
 * newest of several. {@linkcode signCard} and {@linkcode openCard} do the
 * same for contact cards. {@linkcode signPrekeyBundle} and
 * {@linkcode openPrekeyBundle} publish and open a user's prekeys, which
 * {@linkcode createPrekeySecrets} and its siblings keep on the owner's side.
 * A record that fails a check is refused with an {@linkcode InvalidRecordError}.
 *
 * @example Publish a card and open it on the other side
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity } from "../crypto/identity.ts";
 * import { openCard, recordKey, selectRecord, signCard } from "./mod.ts";
 *
 * const alice = await Identity.generate();
 * const peerId = "12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo";
 * const older = await signCard(alice, { displayName: "Alice", peerId, addresses: [], seq: 1 });
 * const newer = await signCard(alice, {
 *   displayName: "Alice",
 *   peerId,
 *   addresses: ["/ip4/192.0.2.7/tcp/4001"],
 *   seq: 2,
 * });
 *
 * // Bob knows only Alice's user ID; the DHT returns what peers hold.
 * const key = recordKey("card", alice.id);
 * const found = [older.bytes, newer.bytes];
 * const card = await openCard(found[selectRecord(found)]!, { key });
 * assert(card.seq === 2 && card.addresses[0] === "/ip4/192.0.2.7/tcp/4001");
 * ```
 *
 * @module
 */
export {
  CLOCK_SKEW_TOLERANCE_MS,
  compareRecords,
  decodeRecord,
  DEFAULT_RECORD_TTL_MS,
  dimSelector,
  dimValidator,
  isNewer,
  MAX_RECORD_LIFETIME_MS,
  MAX_RECORD_SIZE,
  openTypedRecord,
  RECORD_KEY_NAMESPACE,
  RECORD_TYPE_PATTERN,
  RECORD_VERSION,
  recordKey,
  selectRecord,
  signRecord,
  validateRecord,
} from "./record.ts";
export type {
  RecordRank,
  RecordSigner,
  SignedRecord,
  SignRecordOptions,
  ValidateRecordOptions,
} from "./record.ts";
export {
  CARD_RECORD_TYPE,
  CARD_VERSION,
  DEFAULT_CARD_TTL_MS,
  MAX_ADDRESS_LENGTH,
  MAX_ADDRESSES,
  MAX_DISPLAY_NAME_BYTES,
  MAX_PEER_ID_LENGTH,
  openCard,
  signCard,
} from "./card.ts";
export type { CardSigner, ContactCard, OpenCardOptions, SignCardOptions } from "./card.ts";
export {
  DEFAULT_PREKEY_TTL_MS,
  openPrekeyBundle,
  PREKEY_PAYLOAD_VERSION,
  PREKEY_RECORD_TYPE,
  signPrekeyBundle,
  toX3dhBundle,
} from "./prekey.ts";
export type {
  OpenPrekeyBundleOptions,
  PrekeyBundle,
  PrekeyBundleSigner,
  SignPrekeyBundleOptions,
  ToX3dhBundleOptions,
} from "./prekey.ts";
export {
  consumeOneTimePrekey,
  createPrekeySecrets,
  decodePrekeySecrets,
  encodePrekeySecrets,
  MAX_ONE_TIME_PREKEYS,
  MAX_PREKEY_SECRETS_LENGTH,
  MAX_SIGNED_PREKEYS,
  PREKEY_SECRETS_VERSION,
  refillOneTimePrekeys,
  rotateSignedPrekey,
  SIGNED_PREKEY_GRACE_MS,
  SIGNED_PREKEY_ROTATION_MS,
} from "./prekey_secrets.ts";
export type {
  CreatePrekeySecretsOptions,
  PrekeySecrets,
  RefillOneTimePrekeysOptions,
  RotateSignedPrekeyOptions,
  SignedPrekeySecret,
} from "./prekey_secrets.ts";
export { DimError, InvalidRecordError } from "../errors.ts";
