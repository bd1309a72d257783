/**
 * DIM: serverless, end-to-end encrypted instant messaging for Deno.
 *
 * Peers form a Kademlia DHT (libp2p) that keeps the network alive, stores
 * users' signed contact cards and keeps sealed messages for users who are
 * offline. Every message is sealed with HPKE (RFC 9180) to the recipient's
 * X25519 key and signed inside the ciphertext by the sender's Ed25519 key.
 *
 * Most programs need only {@linkcode Messenger}; the layers below it are
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
 * const sealed = await sealEnvelope(alice, bob.encryptionPublicKey, {
 *   body: new TextEncoder().encode("hello"),
 * });
 * const opened = await openEnvelope(bob, sealed);
 * assert.equal(opened.senderId, alice.id);
 * ```
 *
 * @example Two users on one machine
 * ```ts
 * import assert from "node:assert/strict";
 * import { createStorageNode, Messenger } from "./mod.ts";
 *
 * const dir = await Deno.makeTempDir();
 * const node = await createStorageNode({ listen: ["/ip4/127.0.0.1/tcp/0"] });
 * const options = (name: string) => ({
 *   home: `${dir}/${name}`,
 *   passphrase: `secret of ${name}`,
 *   displayName: name,
 *   listen: ["/ip4/127.0.0.1/tcp/0"],
 *   bootstrap: node.addresses,
 * });
 * const alice = await Messenger.create(options("alice"));
 * const bob = await Messenger.create(options("bob"));
 * await alice.addContact("bob", bob.id);
 * const sent = await alice.send("bob", "hi Bob");
 * const incoming = await bob.messages().next();
 * assert.equal(incoming.value?.text, "hi Bob");
 * assert.equal((await alice.waitFor(sent.seq)).state, "delivered");
 * await alice.close();
 * await bob.close();
 * await node.stop();
 * await Deno.remove(dir, { recursive: true });
 * ```
 *
 * @module
 */
export {
  contactString,
  KeyChangedError,
  Messenger,
  TEXT_CONTENT_TYPE,
  transportFor,
  UnknownContactError,
} from "./lib/messenger.ts";
export type {
  ChatMessage,
  Contact,
  CreateMessengerOptions,
  MessengerOptions,
} from "./lib/messenger.ts";
export { createStorageNode } from "./lib/storage_node.ts";
export type { StorageNode, StorageNodeOptions } from "./lib/storage_node.ts";
export {
  DecryptionError,
  DimError,
  EncryptionError,
  InvalidIdError,
  InvalidRecordError,
  KeyAgreementError,
  KeystoreError,
  PeerUnreachableError,
  ProtocolError,
  StorageError,
  TooManySkippedMessagesError,
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
export type { OpenedEnvelope, PublicIdentity } from "./lib/crypto/mod.ts";
export { openCard, signCard } from "./lib/record/mod.ts";
export type { ContactCard } from "./lib/record/mod.ts";
export { createDhtNode, DhtNode } from "./lib/dht/mod.ts";
export type { DhtNodeOptions } from "./lib/dht/mod.ts";
