/**
 * What the messaging layer keeps, and the storage it needs to keep it: the
 * message history, the outbox of messages not yet acknowledged, the
 * Double Ratchet sessions, the mailbox copies kept for other users, and a
 * few sealed secrets and settings.
 *
 * Messaging defines these interfaces and types; the store layer
 * (`lib/store/`, one SQLite file) implements them, and so can anything else
 * (a test's in-memory map, another database). The guarantees messaging
 * relies on:
 *
 * - {@linkcode StorageTransactions.transaction} commits all of its work or
 *   none, and calls nested in it join it;
 * - a commit with `durable: false` survives a crash of the process, and one
 *   of the machine once {@linkcode StorageTransactions.sync} returns (a
 *   message is acknowledged to its sender only after that);
 * - (sender, message ID) is unique among incoming messages, so a replay is
 *   never stored twice.
 *
 * @example A message's life in the outbox
 * ```ts ignore
 * import type { MessagingStorage } from "./storage.ts";
 *
 * declare const storage: MessagingStorage;
 * const message = storage.transaction(
 *   () => storage.outbox.enqueue(draft, envelope, envelopeHash),
 *   { durable: false },
 * );
 * storage.sync(); // durable before anything is sent
 * storage.outbox.markDelivered(message.peer, envelopeHash);
 * ```
 *
 * @module
 */
import { ENVELOPE_VERSION } from "../crypto/envelope.ts";
import { SESSION_FRAME_KIND } from "./_session_frame.ts";

/** Direction of a stored message. */
export type MessageDirection = "in" | "out";

/** Delivery state of a message: outgoing ones move pending → stored → delivered. */
export type MessageState = "pending" | "stored" | "delivered" | "received";

/**
 * How a message's content was protected: "ratchet" (a Double Ratchet
 * session, forward secret) or "static" (sealed to the recipient's long-term
 * key).
 */
export type MessageProtection = "ratchet" | "static";

/** A message in the history, sent or received. */
export interface StoredMessage {
  /** Local insertion order, unique. */
  readonly seq: number;
  /** 16-byte message ID chosen by the sender. */
  readonly id: Uint8Array;
  /** The other party's user ID. */
  readonly peer: string;
  /** Whether it was sent or received. */
  readonly direction: MessageDirection;
  /** Sender's timestamp (ms). */
  readonly sentAt: number;
  /** Local time it was stored (ms). */
  readonly receivedAt: number;
  /** Envelope content type. */
  readonly contentType: number;
  /** The decrypted body. */
  readonly body: Uint8Array;
  /** Delivery state. */
  readonly state: MessageState;
  /** How it travelled: "direct" or "mailbox". */
  readonly via: string;
  /** How its content was protected. */
  readonly protection: MessageProtection;
}

/** A received message to store: the history assigns its number and state. */
export type NewIncomingMessage = Omit<StoredMessage, "seq" | "direction" | "state">;

/** A message to send: the outbox assigns its number, state and route. */
export type NewOutgoingMessage = Omit<StoredMessage, "seq" | "direction" | "state" | "via">;

/** An outbox entry: a sealed envelope waiting for its acknowledgement. */
export interface OutboxEntry {
  /** The message it belongs to. */
  readonly messageSeq: number;
  /** Recipient user ID. */
  readonly recipient: string;
  /**
   * The sealed envelope bytes; empty while the message waits to be sealed
   * (a first message whose recipient's prekeys could not be looked up: it
   * is sealed when the network is back, see {@linkcode isUnsealed}).
   */
  readonly envelope: Uint8Array;
  /** SHA-256 of the envelope, which the acknowledgement signs. */
  readonly envelopeHash: Uint8Array;
  /** Delivery attempts so far. */
  readonly attempts: number;
  /** When to try next (ms). */
  readonly nextAttemptAt: number;
  /** Whether a copy sits in the recipient's mailbox in the network. */
  readonly storedOffline: boolean;
  /**
   * When a node other than this one last took a copy or was found holding
   * one (ms); 0 if none did. Outboxes written before this time was kept
   * say 1: long ago, so the next mailbox check looks at them first.
   */
  readonly storedOfflineAt: number;
  /** The last failure, for status displays. */
  readonly lastError: string;
}

/**
 * Whether an outbox entry still waits to be sealed: its envelope is empty,
 * or of another envelope version (sealed by an older DIM before an upgrade:
 * recipients refuse it, so the outbox seals the message again). A session
 * frame (`_session_frame.ts`) is sealed.
 *
 * @param entry The entry.
 * @returns `true` if its envelope is empty, or neither of
 *   {@linkcode ENVELOPE_VERSION} nor a session frame.
 */
export function isUnsealed(entry: Pick<OutboxEntry, "envelope">): boolean {
  const first = entry.envelope[0];
  return entry.envelope.length === 0 ||
    (first !== ENVELOPE_VERSION && first !== SESSION_FRAME_KIND);
}

/** A stored Double Ratchet session (its state sealed at rest by the session manager). */
export interface StoredSession {
  /** The other party's user ID. */
  readonly peer: string;
  /** 8 bytes naming the session: a hash of its X3DH header. */
  readonly sessionId: Uint8Array;
  /** The sealed session state. */
  readonly state: Uint8Array;
  /** The X3DH header to send until the peer answers (initiator side), if any. */
  readonly initialHeader: Uint8Array | undefined;
  /** Whether new messages to the peer use this session. */
  readonly current: boolean;
  /** When it was made (ms). */
  readonly createdAt: number;
  /** When it last encrypted or decrypted (ms). */
  readonly usedAt: number;
  /**
   * The session manager's save counter when this state was sealed (bound
   * into the sealing's associated data, with the session ID); 0 for a state
   * sealed before states were counted.
   */
  readonly counter: number;
}

/** Quotas for the envelopes kept for other users. */
export interface MailboxQuota {
  /** Most envelopes per mailbox. */
  readonly maxCount: number;
  /** Most bytes per mailbox. */
  readonly maxBytes: number;
  /** Most bytes in all mailboxes together. */
  readonly maxTotalBytes: number;
  /** Most envelopes one storing peer keeps in one mailbox. */
  readonly maxPeerCount: number;
  /** Most bytes one storing peer keeps in one mailbox. */
  readonly maxPeerBytes: number;
  /** Most envelopes from one origin (storing address) in all mailboxes. */
  readonly maxOriginCount: number;
  /** Most bytes from one origin (storing address) in all mailboxes. */
  readonly maxOriginBytes: number;
}

/**
 * What became of an envelope offered to a mailbox: "full" means the storer
 * is over its share, or is itself the heaviest storer where room was needed.
 */
export type MailboxPutOutcome = "stored" | "duplicate" | "full";

/** Who stored a copy in a mailbox. */
export interface MailboxStorer {
  /** The storing peer's ID. */
  readonly peer: string;
  /** The address it stored from (an IPv4 address, an IPv6 /64, …), for quotas per address. */
  readonly origin: string;
}

/** An envelope offered to a mailbox. */
export interface NewMailboxCopy {
  /** The 32-byte mailbox address. */
  readonly mailbox: Uint8Array;
  /** SHA-256 of the envelope. */
  readonly hash: Uint8Array;
  /** The sealed envelope. */
  readonly envelope: Uint8Array;
  /** When to drop it (ms). */
  readonly expiresAt: number;
  /** The current time (ms): copies expired by then go first. */
  readonly storedAt: number;
  /** Who stores it. */
  readonly storer: MailboxStorer;
}

/** An envelope kept in a mailbox, with its expiry. */
export interface MailboxCopy {
  /** The sealed envelope. */
  readonly envelope: Uint8Array;
  /** When it is dropped (ms). */
  readonly expiresAt: number;
}

/** Options of {@linkcode StorageTransactions.transaction}. */
export interface TransactionOptions {
  /**
   * Whether the commit is flushed to disk before it returns. Default `true`.
   * With `false` it survives a crash of the process, and one of the machine
   * once {@linkcode StorageTransactions.sync} or a later durable commit has
   * run, so many messages share one flush.
   */
  readonly durable?: boolean;
  /**
   * With `durable: false`, defers the commit itself too: transactions
   * deferred one after another share one commit, made by the next
   * {@linkcode StorageTransactions.sync}, the next transaction that is not
   * deferred, or a short while later. Until then a crash of the process
   * loses them, so defer only what is told to no one before
   * `sync(deferred)`. The same object marks the caller's transactions: if
   * their commit fails, its error is kept in `lost` and `sync(deferred)`
   * throws it. A storage may commit at once instead.
   */
  readonly deferred?: DeferredCommits;
}

/** Marks a caller's deferred transactions ({@linkcode TransactionOptions.deferred}). */
export interface DeferredCommits {
  /** Why a commit of them failed (they are lost), once one has. */
  lost?: unknown;
}

/** Atomic, group-committed writes. */
export interface StorageTransactions {
  /**
   * Runs `fn` in one write transaction: all of it is committed, or none.
   * Nested calls join the outer transaction and its mode.
   *
   * @param fn The work; its return value is returned.
   * @param options Whether the commit is flushed at once.
   * @returns What `fn` returned.
   * @throws {StorageError} If the commit fails; whatever `fn` throws is rethrown after rollback.
   */
  transaction<T>(fn: () => T, options?: TransactionOptions): T;
  /**
   * Makes every commit so far durable: after it returns, they survive a
   * crash of the machine. Deferred transactions are committed first.
   *
   * @param deferred The mark of the caller's deferred transactions, if any:
   *   a failed commit of them fails this call, even if another call met it.
   * @throws {StorageError} If the flush fails, or a commit of the caller's
   *   deferred transactions failed.
   */
  sync(deferred?: DeferredCommits): void;
  /**
   * As `sync`, with the flush on another thread, so the caller's thread
   * runs on meanwhile; a storage without it is flushed with `sync`.
   *
   * @param deferred As for `sync`.
   * @returns When every commit made before the call is durable.
   * @throws {StorageError} As `sync`.
   */
  syncAsync?(deferred?: DeferredCommits): Promise<void>;
}

/** The message history, as far as messaging writes and checks it. */
export interface HistoryStorage {
  /**
   * Stores a received message unless the same sender already sent this ID.
   *
   * @param message The message.
   * @returns The stored message if it was new, `undefined` if it was a duplicate.
   */
  insertIncoming(message: NewIncomingMessage): StoredMessage | undefined;
  /**
   * Whether a message from `peer` with this ID is already stored.
   *
   * @param peer The sender's user ID.
   * @param id The 16-byte message ID.
   * @returns `true` for a duplicate.
   */
  hasIncoming(peer: string, id: Uint8Array): boolean;
  /**
   * Reads one message by its local sequence number.
   *
   * @param seq The local sequence number.
   * @returns The message, or `undefined`.
   */
  get(seq: number): StoredMessage | undefined;
  /**
   * Records how an outgoing message was finally protected (a message queued
   * before it could be sealed is sealed at delivery).
   *
   * @param seq The local sequence number.
   * @param protection How its content is protected.
   */
  setProtection(seq: number, protection: MessageProtection): void;
}

/** The outbox: sealed envelopes kept until the recipient acknowledges them. */
export interface OutboxStorage {
  /**
   * Stores an outgoing message and queues its sealed envelope, in one transaction.
   *
   * @param message The message.
   * @param envelope The sealed envelope.
   * @param envelopeHash SHA-256 of the envelope.
   * @returns The stored message (state "pending").
   */
  enqueue(
    message: NewOutgoingMessage,
    envelope: Uint8Array,
    envelopeHash: Uint8Array,
  ): StoredMessage;
  /**
   * The entries due at `now`, oldest message first, at most one per
   * recipient so each conversation is delivered in order.
   *
   * @param now Time in ms.
   * @returns The due entries.
   */
  due(now: number): OutboxEntry[];
  /**
   * One conversation's entries after a given one, oldest first.
   *
   * @param recipient The recipient's user ID.
   * @param afterSeq Only entries of later messages.
   * @param limit At most this many.
   * @returns The entries.
   */
  after(recipient: string, afterSeq: number, limit: number): OutboxEntry[];
  /**
   * All entries, oldest first.
   *
   * @returns The entries.
   */
  list(): OutboxEntry[];
  /**
   * The recipient of the entry whose envelope has this hash.
   *
   * @param envelopeHash SHA-256 of the envelope.
   * @returns The recipient's user ID, or `undefined` if no entry has it.
   */
  recipientOf(envelopeHash: Uint8Array): string | undefined;
  /**
   * Records a failed attempt and when to try again.
   *
   * @param messageSeq The entry.
   * @param nextAttemptAt When to retry (ms).
   * @param error What went wrong.
   */
  defer(messageSeq: number, nextAttemptAt: number, error: string): void;
  /**
   * Makes every entry waiting out a backoff due at once (a new start, or a
   * node that was alone and now reaches a peer: the network may be back).
   *
   * @param now Time in ms.
   */
  retryNow(now: number): void;
  /**
   * Replaces a queued message's envelope (sealed again, in a new session):
   * it is due at once, and a copy left in the network before does not count.
   *
   * @param messageSeq The entry.
   * @param envelope The new envelope.
   * @param envelopeHash Its SHA-256.
   * @param now Time in ms.
   */
  replaceEnvelope(
    messageSeq: number,
    envelope: Uint8Array,
    envelopeHash: Uint8Array,
    now: number,
  ): void;
  /**
   * Marks that a copy was left in the recipient's network mailbox, or that
   * nodes closest to it were found holding one, at `at`.
   *
   * @param messageSeq The entry.
   * @param at Time in ms. Default now.
   */
  markStoredOffline(messageSeq: number, at?: number): void;
  /**
   * The entries with a copy in the network last confirmed at or before
   * `before`, the longest ago first: the ones a mailbox check looks at.
   *
   * @param before Time in ms.
   * @param limit At most this many.
   * @returns The entries.
   */
  storedOfflineBefore(before: number, limit: number): OutboxEntry[];
  /**
   * Marks the message whose envelope has this hash as delivered and removes
   * it from the outbox, if `recipient` matches.
   *
   * @param recipient The user ID the acknowledgement came from.
   * @param envelopeHash SHA-256 of the acknowledged envelope.
   * @returns The delivered message's sequence number, or `undefined` if none matched.
   */
  markDelivered(recipient: string, envelopeHash: Uint8Array): number | undefined;
}

/** What messaging needs to know of the user's contacts. */
export interface ContactLookup {
  /**
   * A contact's pinned encryption key, by user ID.
   *
   * @param userId The contact's user ID.
   * @returns The contact, or `undefined` if the user is not one.
   */
  getById(userId: string): { readonly encryptionPublicKey: Uint8Array } | undefined;
  /**
   * Records that a contact was seen.
   *
   * @param userId The contact's user ID.
   * @param at Time in ms.
   */
  touch(userId: string, at: number): void;
}

/** The Double Ratchet sessions, their states sealed by the session manager. */
export interface SessionStorage {
  /**
   * The sessions with a peer, the current one first, then newest first.
   *
   * @param peer The other party's user ID.
   * @returns The sessions.
   */
  list(peer: string): StoredSession[];
  /**
   * Every session with every peer, in no order: the session manager reads
   * them once to index the tags of incoming session frames.
   *
   * @returns The sessions.
   */
  listAll(): StoredSession[];
  /**
   * Saves a session (inside the caller's transaction, if any), making it the
   * only current one if it is current, and keeps at most `keep` per peer.
   *
   * @param session The session.
   * @param keep How many sessions per peer to keep (oldest-used dropped). Default 4.
   */
  save(session: StoredSession, keep?: number): void;
  /**
   * Deletes every session with a peer (inside the caller's transaction, if any).
   *
   * @param peer The peer's user ID.
   */
  deleteAll(peer: string): void;
  /**
   * Deletes every session with every peer (inside the caller's transaction,
   * if any): the states were found rolled back, and none may send again.
   *
   * @returns How many sessions were deleted.
   */
  clear(): number;
}

/**
 * A number kept outside the database, for the session manager's high-water
 * mark: a copy of the database put back alone cannot put it back too.
 */
export interface SessionMarkStorage {
  /**
   * Reads the mark.
   *
   * @returns The mark, or `undefined` if there is none yet.
   * @throws {unknown} If it cannot be read or is malformed (the session
   *   manager then acts as if the database was rolled back).
   */
  read(): Promise<number | undefined>;
  /**
   * Replaces the mark, durably.
   *
   * @param value The new mark, a non-negative safe integer.
   * @returns When it is on disk.
   */
  write(value: number): Promise<void>;
}

/** Sealed envelopes kept for users who are offline, within quotas. */
export interface MailboxStorage {
  /**
   * Keeps an envelope for an offline user, within quotas; expired copies go
   * first. A storer over its share of the mailbox is refused; over the
   * limit of the mailbox, of the storer's origin or in total, the heaviest
   * storer's oldest copies are evicted instead.
   *
   * @param copy The envelope with its mailbox, hash, expiry, time and storer.
   * @param quota Quotas per storer, per mailbox, per origin and in total.
   * @returns "stored", "duplicate" or "full".
   */
  put(copy: NewMailboxCopy, quota: MailboxQuota): MailboxPutOutcome;
  /**
   * The unexpired envelopes in one mailbox, oldest first.
   *
   * @param mailbox The 32-byte mailbox address.
   * @param now The current time (ms).
   * @param limit At most this many.
   * @param maxBytes At most this many envelope bytes together (default: no limit).
   * @returns The envelopes with their expiry.
   */
  list(mailbox: Uint8Array, now: number, limit: number, maxBytes?: number): MailboxCopy[];
  /**
   * How many unexpired envelopes one mailbox holds.
   *
   * @param mailbox The 32-byte mailbox address.
   * @param now The current time (ms).
   * @returns The count.
   */
  count(mailbox: Uint8Array, now: number): number;
  /**
   * Deletes envelopes from a mailbox by hash.
   *
   * @param mailbox The 32-byte mailbox address.
   * @param hashes SHA-256 hashes of the envelopes to delete.
   * @returns How many were deleted.
   */
  delete(mailbox: Uint8Array, hashes: readonly Uint8Array[]): number;
}

/** Small settings and sealed secrets (prekeys and their sequence number). */
export interface SettingsStorage {
  /**
   * Reads a setting.
   *
   * @param key Its name.
   * @returns Its value, or `undefined`.
   */
  get(key: string): string | undefined;
  /**
   * Writes a setting.
   *
   * @param key Its name.
   * @param value Its value.
   */
  set(key: string, value: string): void;
  /**
   * Reads a sealed secret.
   *
   * @param name Its name.
   * @returns The sealed bytes, or `undefined`.
   */
  getSecret(name: string): Uint8Array | undefined;
  /**
   * Writes a sealed secret.
   *
   * @param name Its name.
   * @param value The sealed bytes.
   */
  setSecret(name: string, value: Uint8Array): void;
}

/** Everything the messaging service keeps, on one transactional store. */
export interface MessagingStorage extends StorageTransactions {
  /** Sent and received messages. */
  readonly messages: HistoryStorage;
  /** Messages awaiting their acknowledgements. */
  readonly outbox: OutboxStorage;
  /** The user's contacts. */
  readonly contacts: ContactLookup;
  /** Double Ratchet sessions. */
  readonly sessions: SessionStorage;
  /** Envelopes kept for other users. */
  readonly mailboxes: MailboxStorage;
  /** Settings and sealed secrets. */
  readonly settings: SettingsStorage;
}
