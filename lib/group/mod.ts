/**
 * Group chats' core, for programs that build on DIM: signed membership
 * ({@linkcode GroupLog}), sender keys ({@linkcode GroupKeyring}), the
 * per-member wrap and its fallback, and the keyring's storage encoding. The
 * messenger wires them in (`Messenger.createGroup` and the rest); see the
 * README's Groups section for the design.
 *
 * @module
 */
export {
  CHANGE_VERSION,
  decodeChange,
  type GroupChange,
  type GroupMemberKeys,
  type GroupOp,
  type GroupOpKind,
  type GroupSigner,
  InvalidGroupChangeError,
  type NewMember,
  signChange,
  type UnsignedChange,
  verifyChange,
} from "./change.ts";
export {
  type CreateGroupOptions,
  GroupLog,
  type GroupState,
  type ReceiveOutcome,
} from "./membership.ts";
export {
  type GroupFanOut,
  GroupKeyring,
  type GroupReceived,
  type KeyringSnapshot,
} from "./keyring.ts";
export { decodeKeyring, encodeKeyring, KEYRING_VERSION } from "./keyring_codec.ts";
export {
  type GroupPlaintext,
  type OpenedGroupPlaintext,
  type ReceiverChain,
  type SenderChain,
  type SenderKeyDistribution,
  type SkippedGroupKey,
} from "./sender_keys.ts";
export { openWrap, sealGroupEnvelope, wrapForMember } from "./wire.ts";
export {
  GROUP_ID_LENGTH,
  MAX_GROUP_BODY_LENGTH,
  MAX_GROUP_MEMBERS,
  MAX_GROUP_NAME_LENGTH,
} from "./constants.ts";
export { DecryptionError, DimError, EncryptionError } from "../errors.ts";
export type {
  Identity,
  IdentitySeeds,
  PublicIdentity,
  SignatureDomain,
} from "../crypto/identity.ts";
export type { EnvelopeRecipient } from "../crypto/envelope.ts";
