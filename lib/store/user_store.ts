/**
 * A user's local database: every store of a data directory on one SQLite
 * connection, so a message, its outbox entry and its session state commit
 * together. It implements the storage the messaging layer defines
 * ({@linkcode MessagingStorage}).
 *
 * | store       | tables             | what it keeps                                   |
 * | ----------- | ------------------ | ----------------------------------------------- |
 * | `contacts`  | contacts           | pinned keys, cards, trust                       |
 * | `messages`  | messages           | the history, sent and received; bodies sealed   |
 * | `outbox`    | outbox (+messages) | envelopes until acknowledged, delivery states   |
 * | `sessions`  | sessions           | Double Ratchet states, sealed                   |
 * | `mailboxes` | mailbox            | envelopes kept for offline users                |
 * | `settings`  | meta, secrets      | settings and sealed prekeys                     |
 *
 * @example Open an in-memory store and add a contact
 * ```ts
 * import assert from "node:assert/strict";
 * import { UserStore } from "./user_store.ts";
 *
 * using store = UserStore.open(":memory:");
 * store.contacts.upsert({
 *   name: "bob",
 *   userId: "dim-example",
 *   signingPublicKey: new Uint8Array(32),
 *   encryptionPublicKey: new Uint8Array(32),
 * });
 * assert.equal(store.contacts.get("bob")?.userId, "dim-example");
 * ```
 *
 * @module
 */
import type {
  DeferredCommits,
  MessagingStorage,
  TransactionOptions,
} from "../messaging/storage.ts";
import { Connection } from "./connection.ts";
import { CONTACTS_SCHEMA, ContactStore } from "./contact_store.ts";
import { MAILBOX_SCHEMA, MailboxStore } from "./mailbox_store.ts";
import { MESSAGES_SCHEMA, MessageStore } from "./message_store.ts";
import { OUTBOX_SCHEMA, OutboxStore } from "./outbox_store.ts";
import { SESSIONS_SCHEMA, SessionStore } from "./session_store.ts";
import { SECRETS_SCHEMA, SettingsStore } from "./settings_store.ts";
import { FILE_QUEUE_SCHEMA, FileQueueStore } from "./file_queue_store.ts";
import { GROUPS_SCHEMA, GroupStore } from "./group_store.ts";

/** Every table of a user's database, in the order they were first created. */
const USER_SCHEMA = [
  CONTACTS_SCHEMA,
  MESSAGES_SCHEMA,
  OUTBOX_SCHEMA,
  MAILBOX_SCHEMA,
  SESSIONS_SCHEMA,
  SECRETS_SCHEMA,
  FILE_QUEUE_SCHEMA,
  GROUPS_SCHEMA,
];

/** A user's stores on one connection. Not safe to share between processes without the data-dir lock. */
export class UserStore implements MessagingStorage, Disposable {
  /** The connection the stores share. */
  readonly connection: Connection;
  /** The contacts. */
  readonly contacts: ContactStore;
  /** The message history. */
  readonly messages: MessageStore;
  /** The outbox. */
  readonly outbox: OutboxStore;
  /** The Double Ratchet sessions. */
  readonly sessions: SessionStore;
  /** The envelopes kept for offline users. */
  readonly mailboxes: MailboxStore;
  /** Settings and sealed secrets. */
  readonly settings: SettingsStore;
  /** Files waiting until their contact is online. */
  readonly fileQueue: FileQueueStore;
  /** Groups: membership changes, sender keys, group history (sealed). */
  readonly groups: GroupStore;

  private constructor(connection: Connection) {
    this.connection = connection;
    this.contacts = new ContactStore(connection);
    this.messages = new MessageStore(connection);
    this.outbox = new OutboxStore(connection, this.messages);
    this.sessions = new SessionStore(connection);
    this.mailboxes = new MailboxStore(connection);
    this.settings = new SettingsStore(connection);
    this.fileQueue = new FileQueueStore(connection);
    this.groups = new GroupStore(connection);
  }

  /**
   * Opens (creating if needed) the database at `path`, or `":memory:"`.
   *
   * @param path File path or `":memory:"`.
   * @returns The open store.
   * @throws {StorageError} If the file is corrupt, locked, read-only or from a newer DIM.
   */
  static open(path: string): UserStore {
    return new UserStore(Connection.open(path, USER_SCHEMA));
  }

  /**
   * Runs `fn` in one write transaction over all the stores.
   *
   * @param fn The work; its return value is returned.
   * @param options `durable: false` defers the flush to {@linkcode UserStore.sync}.
   * @returns What `fn` returned.
   * @throws {StorageError} If the commit fails; whatever `fn` throws is rethrown after rollback.
   */
  transaction<T>(fn: () => T, options?: TransactionOptions): T {
    return this.connection.transaction(fn, options);
  }

  /**
   * Makes every commit so far durable; one flush, or none if there is nothing to flush.
   *
   * @param deferred The mark of the caller's deferred transactions, if any.
   * @throws {StorageError} If the flush fails, or a commit of the caller's
   *   deferred transactions failed.
   */
  sync(deferred?: DeferredCommits): void {
    this.connection.sync(deferred);
  }

  /**
   * As {@linkcode UserStore.sync}, with the flush on another thread.
   *
   * @param deferred The mark of the caller's deferred transactions, if any.
   * @returns When every commit made before the call is durable.
   * @throws {StorageError} As `sync`.
   */
  syncAsync(deferred?: DeferredCommits): Promise<void> {
    return this.connection.syncAsync(deferred);
  }

  /** Closes the connection. Idempotent. */
  close(): void {
    this.connection.close();
  }

  /** Closes the connection. */
  [Symbol.dispose](): void {
    this.close();
  }
}
