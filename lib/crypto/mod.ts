/**
 * DIM's cryptographic core: identities and user IDs, HPKE (RFC 9180), the
 * sealed message envelope, the encrypted keystore, safety numbers, X3DH and
 * Double Ratchet sessions (with their storage encoding), and the
 * {@linkcode SecretBox} that seals secrets at rest. The errors its functions
 * throw are exported too, all under {@linkcode DimError}.
 *
 * Everything runs on the platform's primitives (Ed25519, X25519, AES-GCM and
 * SHA-256 through `node:crypto` on the calling thread, large AES-GCM and key
 * import through WebCrypto) plus `@noble/hashes` where neither has the
 * primitive (argon2id, HKDF's separate extract and expand, HMAC).
 *
 * @example Seal a message for Bob and open it
 * ```ts
 * import { Identity, openEnvelope, sealEnvelope } from "./mod.ts";
 *
 * const alice = await Identity.generate();
 * const bob = await Identity.generate();
 * const sealed = await sealEnvelope(alice, bob.public, {
 *   body: new TextEncoder().encode("hi Bob"),
 * });
 * const opened = await openEnvelope(bob, sealed);
 * if (opened.senderId !== alice.id) throw new Error("wrong sender");
 * if (new TextDecoder().decode(opened.body) !== "hi Bob") throw new Error("wrong body");
 * ```
 *
 * @module
 */
export {
  decodeUserId,
  encodeUserId,
  Identity,
  USER_ID_LENGTH,
  USER_ID_PREFIX,
  verifySignature,
} from "./identity.ts";
export type { IdentitySeeds, PublicIdentity, SignatureDomain } from "./identity.ts";
export {
  deriveKeyPair,
  generateKeyPair,
  HPKE_ENC_LENGTH,
  HPKE_TAG_LENGTH,
  openBase,
  sealBase,
  setupBaseR,
  setupBaseS,
} from "./hpke.ts";
export type {
  HpkeKeyPair,
  HpkeRecipientContext,
  HpkeSealed,
  HpkeSenderContext,
  OpenBaseOptions,
  SealBaseOptions,
  SetupBaseROptions,
  SetupBaseSOptions,
} from "./hpke.ts";
export {
  ENVELOPE_ID_LENGTH,
  ENVELOPE_VERSION,
  MAX_BODY_LENGTH,
  MAX_ENVELOPE_LENGTH,
  MIN_ENVELOPE_LENGTH,
  openEnvelope,
  sealEnvelope,
} from "./envelope.ts";
export type { EnvelopeMessage, EnvelopeRecipient, OpenedEnvelope } from "./envelope.ts";
export {
  changePassphrase,
  createKeystore,
  DEFAULT_ARGON2_PARAMS,
  KEYSTORE_VERSION,
  MAX_ARGON2_PARAMS,
  MIN_ARGON2_PARAMS,
  readKeystoreHeader,
  unlockKeystore,
} from "./keystore.ts";
export type {
  Argon2Params,
  ChangePassphraseOptions,
  CreateKeystoreOptions,
  KeystoreHeader,
  UnlockKeystoreOptions,
} from "./keystore.ts";
export { fingerprint, SAFETY_NUMBER_ITERATIONS, safetyNumber } from "./safety_number.ts";
export {
  decodeInitialMessage,
  decodeX3dhHeader,
  encodeInitialMessage,
  encodeX3dhHeader,
  generatePrekey,
  initiateX3dh,
  KeyAgreementError,
  respondX3dh,
  signPrekey,
  verifyPrekeySignature,
  x3dhAssociatedData,
} from "./x3dh.ts";
export type {
  IdentityKeys,
  InitialMessage,
  PrekeyKeyPair,
  PublicPrekey,
  SignedPrekey,
  X3dhBundle,
  X3dhHeader,
  X3dhHeaderKeys,
  X3dhIdentity,
  X3dhInitiation,
  X3dhResponderPrekeys,
  X3dhResponse,
} from "./x3dh.ts";
export {
  decodeRatchetMessage,
  generateRatchetKeyPair,
  initReceiver,
  initSender,
  MAX_ASSOCIATED_DATA_LENGTH,
  MAX_RATCHET_MESSAGE_LENGTH,
  MAX_RATCHET_PLAINTEXT_LENGTH,
  MAX_SKIP,
  MAX_SKIPPED_KEYS,
  RATCHET_HEADER_LENGTH,
  RATCHET_MESSAGE_VERSION,
  RATCHET_OVERHEAD,
  ratchetDecrypt,
  ratchetEncrypt,
  TooManySkippedMessagesError,
} from "./ratchet.ts";
export type {
  HeaderKeys,
  RatchetDecryptResult,
  RatchetEncryptResult,
  RatchetHeader,
  RatchetKeyPair,
  RatchetState,
  SkippedMessageKey,
} from "./ratchet.ts";
export {
  HEADER_ID_LENGTH,
  HEADER_RATCHET_OVERHEAD,
  headerRatchetDecrypt,
  headerRatchetEncrypt,
  initHeaderReceiver,
  initHeaderSender,
  MAX_HEADER_RATCHET_MESSAGE_LENGTH,
  MAX_PREVIOUS_HEADER_KEYS,
  receivingTags,
  SEALED_HEADER_LENGTH,
  SESSION_TAG_LENGTH,
  sessionTag,
  startFirstSenderStep,
} from "./header_ratchet.ts";
export type {
  FirstSenderStep,
  HeaderDecryptResult,
  HeaderEncryptResult,
} from "./header_ratchet.ts";
export {
  decodeSession,
  encodeSession,
  expireSkippedKeys,
  HEADER_SESSION_VERSION,
  MAX_SESSION_LENGTH,
  SESSION_VERSION,
} from "./ratchet_session.ts";
export { SecretBox } from "./secret_box.ts";
export {
  DecryptionError,
  DimError,
  EncryptionError,
  InvalidIdError,
  KeystoreError,
  OutdatedVersionError,
  ProtocolError,
  StorageError,
} from "../errors.ts";
export type { KeystoreErrorCode } from "../errors.ts";
