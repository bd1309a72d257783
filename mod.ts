/**
 * DIM: serverless, end-to-end encrypted instant messaging for Deno.
 *
 * Peers form a Kademlia DHT (libp2p) that keeps the network alive, stores
 * users' signed contact cards and keeps sealed messages for users who are
 * offline. Every message is sealed with HPKE (RFC 9180) to the recipient's
 * X25519 key and signed inside the ciphertext by the sender's Ed25519 key.
 *
 * Most programs need only {@linkcode createProfile} or {@linkcode openProfile}
 * (offline) and {@linkcode createMessenger} (online); the layers below are
 * importable on their own: `@dim/dim/crypto`, `@dim/dim/record`,
 * `@dim/dim/dht`, `@dim/dim/messaging`.
 *
 * @example Seal and open a message without any network
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity, openEnvelope, sealEnvelope } from "./mod.ts";
 *
 * const alice = await Identity.generate();
 * const bob = await Identity.generate();
 * const sealed = await sealEnvelope(alice, bob.public, {
 *   body: new TextEncoder().encode("hello"),
 * });
 * const opened = await openEnvelope(bob, sealed);
 * assert.equal(opened.senderId, alice.id);
 * ```
 *
 * @example Two users on one machine
 * ```ts
 * import assert from "node:assert/strict";
 * import { createMessenger, createProfile, createStorageNode } from "./mod.ts";
 *
 * const dir = await Deno.makeTempDir();
 * const node = await createStorageNode({ listen: ["/ip4/127.0.0.1/tcp/0"] });
 * const start = async (name: string) =>
 *   await createMessenger(
 *     await createProfile({
 *       home: `${dir}/${name}`,
 *       passphrase: `${name}: plum vortex quietly sings`,
 *       displayName: name,
 *     }),
 *     { listen: ["/ip4/127.0.0.1/tcp/0"], bootstrap: node.addresses },
 *   );
 * const alice = await start("alice");
 * const bob = await start("bob");
 * await alice.addContact("bob", bob.id);
 * const sent = await alice.send("bob", "hi Bob");
 * const incoming = await bob.messages().next();
 * assert.equal(incoming.value?.text, "hi Bob");
 * assert.equal((await alice.waitFor(sent.seq)).state, "delivered");
 * await alice.stop();
 * await bob.stop();
 * await node.stop();
 * await Deno.remove(dir, { recursive: true });
 * ```
 *
 * @example Read contacts offline, without the passphrase; messages need it
 * ```ts
 * import assert from "node:assert/strict";
 * import { createProfile, openProfile, ProfileLockedError } from "./mod.ts";
 *
 * const home = await Deno.makeTempDir();
 * const passphrase = "plum vortex quietly sings";
 * await (await createProfile({ home, passphrase, displayName: "Ada" })).stop();
 * await using profile = await openProfile({ home, exclusive: false });
 * assert.equal(profile.displayName, "Ada");
 * assert.deepEqual(profile.contacts(), []);
 * // Message bodies are sealed at rest with a key of the identity.
 * assert.throws(() => profile.history(profile.id), ProfileLockedError);
 * await profile.unlock(passphrase);
 * assert.deepEqual(profile.history(profile.id), []);
 * await Deno.remove(home, { recursive: true });
 * ```
 *
 * @module
 */
export { createMessenger, Messenger, sessionRollbackMessage } from "./lib/messenger/messenger.ts";
export type { MessengerOptions, SignalOptions } from "./lib/messenger/messenger.ts";
export { GroupError, NOT_A_CONTACT } from "./lib/messenger/groups.ts";
export type { GroupChats, GroupInfo, GroupMember, VerifiedMember } from "./lib/messenger/groups.ts";
export type { GroupDelivery, StoredGroupMessage } from "./lib/store/group_store.ts";
export { transportFor } from "./lib/messenger/transport.ts";
export type { FileDelivery, FileQueueEvent } from "./lib/messenger/file_queue.ts";
export type {
  FileQueueEntry,
  NewQueuedFile,
  QueuedFileState,
} from "./lib/store/file_queue_store.ts";
export { createProfile, openProfile, Profile, ProfileLockedError } from "./lib/profile/profile.ts";
export type { CreateProfileOptions, OpenProfileOptions } from "./lib/profile/profile.ts";
export {
  checkNewPassphrase,
  MIN_PASSPHRASE_SCORE,
  passphraseStrength,
} from "./lib/profile/passphrase.ts";
export type { CheckPassphraseOptions, PassphraseStrength } from "./lib/profile/passphrase.ts";
export { KeyChangedError, UnknownContactError } from "./lib/profile/contacts.ts";
export type { Contact } from "./lib/profile/contacts.ts";
export { TEXT_CONTENT_TYPE } from "./lib/profile/chat_message.ts";
export type { ChatMessage } from "./lib/profile/chat_message.ts";
export { contactString, parseContactString } from "./lib/profile/contact_string.ts";
export type { ParsedContactString } from "./lib/profile/contact_string.ts";
export type {
  FileOffer,
  InboxLimits,
  MailboxLimits,
  MailboxServerOptions,
  MessageProtection,
  MessageState,
  MessageStream,
  MessagingOptions,
  MessagingTransport,
  PeerTarget,
  QueuedFile,
  ReceivedFile,
  SendFileOptions,
  SentFile,
  SessionRollback,
  StreamChunk,
  StreamHost,
  TransferProgress,
} from "./lib/messaging/mod.ts";
export { createStorageNode } from "./lib/storage_node.ts";
export type { StorageNode, StorageNodeOptions } from "./lib/storage_node.ts";
export { connectDaemon, DaemonClient } from "./lib/daemon/client.ts";
export type {
  ConnectDaemonOptions,
  DaemonSubscription,
  DaemonTimeoutOptions,
} from "./lib/daemon/client.ts";
export {
  DAEMON_API_VERSION,
  DAEMON_METHODS,
  DaemonError,
  DaemonErrorCode,
  DaemonNotRunningError,
  MAX_LINE_BYTES,
} from "./lib/daemon/protocol.ts";
export type {
  DaemonContact,
  DaemonErrorCodeValue,
  DaemonFile,
  DaemonFileFailed,
  DaemonFileProgress,
  DaemonHello,
  DaemonInbox,
  DaemonMethod,
  DaemonMethods,
  DaemonNotification,
  DaemonSendFileResult,
  DaemonSendGroupResult,
  DaemonSendResult,
  DaemonStatus,
  DaemonVerifyResult,
  RpcErrorObject,
  RpcRequest,
  RpcResponse,
} from "./lib/daemon/protocol.ts";
export {
  DecryptionError,
  DimError,
  EncryptionError,
  InvalidIdError,
  InvalidRecordError,
  KeyAgreementError,
  KeystoreError,
  OutdatedVersionError,
  PeerUnreachableError,
  ProtocolError,
  StorageError,
  TooManySkippedMessagesError,
  WeakPassphraseError,
} from "./lib/errors.ts";
export type { KeystoreErrorCode } from "./lib/errors.ts";
export {
  decodeUserId,
  encodeUserId,
  fingerprint,
  Identity,
  openEnvelope,
  safetyNumber,
  sealEnvelope,
} from "./lib/crypto/mod.ts";
export type {
  EnvelopeMessage,
  EnvelopeRecipient,
  IdentitySeeds,
  OpenedEnvelope,
  PublicIdentity,
  SignatureDomain,
} from "./lib/crypto/mod.ts";
export { openCard, signCard } from "./lib/record/mod.ts";
export type {
  CardSigner,
  ContactCard,
  OpenCardOptions,
  SignCardOptions,
  SignedRecord,
} from "./lib/record/mod.ts";
export { createDhtNode, DhtNode } from "./lib/dht/mod.ts";
export { isPublicAddress } from "./lib/dht/public_networks.ts";
export type {
  JoinHint,
  JoinHintSource,
  PeerBookView,
  PeerSource,
  Reachability,
  RelayLimits,
  RememberedPeer,
} from "./lib/dht/types.ts";
export type {
  DhtCallOptions,
  DhtChunkList,
  DhtClosestPeersOptions,
  DhtGetOptions,
  DhtHandleOptions,
  DhtNodeOptions,
  DhtPeer,
  DhtSelector,
  DhtStats,
  DhtStream,
  DhtStreamChunk,
  DhtStreamHandler,
  DhtValidator,
} from "./lib/dht/mod.ts";
