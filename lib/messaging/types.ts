/**
 * The public types of the messaging service: what it needs from the network
 * ({@linkcode MessagingTransport}, {@linkcode RecipientResolver}), its
 * tunables ({@linkcode MessagingOptions}), the options of its calls, and
 * what it reports ({@linkcode IncomingMessage}, {@linkcode MessagingEventDetail}).
 * They live apart from the service so that its parts (outbox, inbox,
 * mailbox client) and other modules (file transfer) share them without
 * importing the service.
 *
 * @example A transport over anything that opens streams
 * ```ts ignore
 * import type { MessagingTransport } from "./types.ts";
 *
 * const transport: MessagingTransport = {
 *   peerId: node.peerId,
 *   openStream: (peer, protocol, { signal }) => node.dial(peer, protocol, { signal }),
 *   closestPeers: (key, { signal, count }) => node.closest(key, { signal, count }),
 *   handle: (protocol, handler) => node.handle(protocol, handler),
 *   unhandle: (protocol) => node.unhandle(protocol),
 * };
 * ```
 *
 * @module
 */
import type { InboxLimits } from "./inbox.ts";
import type { MailboxLimits, MessageStream, StreamHost } from "./mailbox.ts";
import type { StoredMessage } from "./storage.ts";
import type { OpenedEnvelope } from "../crypto/envelope.ts";

/** Where a peer can be reached. */
export interface PeerTarget {
  /** The libp2p peer ID. */
  readonly peerId: string;
  /** Known multiaddrs (may be empty: the network then looks the peer up). */
  readonly addresses: readonly string[];
}

/** What the messaging layer needs from the network. */
export interface MessagingTransport extends StreamHost {
  /** This node's peer ID. */
  readonly peerId: string;
  /** Opens a stream to a peer. */
  openStream(
    peer: PeerTarget,
    protocol: string,
    options: { readonly signal: AbortSignal },
  ): Promise<MessageStream>;
  /** The peers closest to `key` in the DHT, nearest first, this node included if it is among them. */
  closestPeers(
    key: Uint8Array,
    options: { readonly signal: AbortSignal; readonly count: number },
  ): Promise<PeerTarget[]>;
}

/** Resolves a user ID to where that user's node is. */
export type RecipientResolver = (
  userId: string,
  options: { readonly signal: AbortSignal },
) => Promise<PeerTarget>;

/**
 * Tunables of the messaging service. The defaults, and the reasons for
 * them, are in `constants.ts`.
 */
export interface MessagingOptions {
  /** Clock in ms. Default `Date.now`. */
  readonly clock?: () => number;
  /** Time allowed for one delivery attempt (dial, send, ack). Default 5000 ms. */
  readonly attemptTimeoutMs?: number;
  /** Backoff of the first retry; doubles per attempt. Default 1000 ms. */
  readonly retryBaseMs?: number;
  /** Longest backoff. Default 5 minutes. */
  readonly retryMaxMs?: number;
  /** How often the outbox is scanned. Default 1000 ms. */
  readonly outboxIntervalMs?: number;
  /** How often the own mailbox is polled. Default 30 s. */
  readonly mailboxPollMs?: number;
  /** How many nodes keep a copy of an offline message. Default 3. */
  readonly mailboxReplicas?: number;
  /** How long an offline copy is kept (ms). Default 7 days. */
  readonly mailboxTtlMs?: number;
  /**
   * How often the copies left for offline recipients are checked and
   * stored again on the nodes now closest to their mailboxes that do not
   * hold them (ms); also once after each start. Default 10 minutes.
   */
  readonly mailboxRecheckMs?: number;
  /** Quotas for mailboxes kept for others. */
  readonly mailboxLimits?: Partial<MailboxLimits>;
  /**
   * What a peer may cost the inbox before any envelope of its has opened:
   * bytes read ahead (per stream, per IP address, per node), streams open
   * at once (per peer, per IP address), envelopes per IP address. Defaults
   * in `DEFAULT_INBOX_LIMITS`.
   */
  readonly inboxLimits?: Partial<InboxLimits>;
  /** Inbound envelopes accepted per peer: burst size. Default 2000. */
  readonly rateBurst?: number;
  /** Inbound envelopes accepted per peer per second. Default 1000. */
  readonly ratePerSecond?: number;
  /** Longest silence on an inbound stream before it is reset (ms). Default 10 s. */
  readonly idleTimeoutMs?: number;
  /** Called with errors that concern one peer and never stop the node. */
  readonly onPeerError?: (error: unknown) => void;
}

/** Who a message is for: the recipient's user ID and pinned X25519 key. */
export interface MessageRecipient {
  /** The recipient's user ID. */
  readonly userId: string;
  /** The recipient's X25519 key, which the envelope is sealed to. */
  readonly encryptionPublicKey: Uint8Array;
}

/** Options of `MessagingService.send`. */
export interface SendOptions {
  /** Envelope content type. Default 1 (UTF-8 text). */
  readonly contentType?: number;
  /**
   * Gives up before the message is stored (while the recipient's prekeys
   * are looked up, or while other messages are being sealed); once stored,
   * the message is the outbox's to deliver.
   */
  readonly signal?: AbortSignal;
}

/** Options of `MessagingService.fetchMailbox`. */
export interface FetchMailboxOptions {
  /**
   * Look the mailbox's nodes up again instead of using the ones found in
   * the last few minutes. Default `false`.
   */
  readonly refresh?: boolean;
  /** Gives up the fetch; what was already stored stays stored. */
  readonly signal?: AbortSignal;
}

/** Options of `MessagingService.flushOutbox`. */
export interface FlushOutboxOptions {
  /** Stops waiting for the attempts, which go on in the background. */
  readonly signal?: AbortSignal;
  /**
   * Tries every queued conversation now, even one waiting out a backoff
   * (the service starts, or the node reaches a peer after being alone).
   * Default `false`.
   */
  readonly all?: boolean;
}

/** A message delivered to this user. */
export interface IncomingMessage {
  /** The stored message. */
  readonly message: StoredMessage;
  /** The sender's verified signing key. */
  readonly senderSigningKey: Uint8Array;
}

/**
 * Payload of the service's `message`, `delivered`, `stored`, `mailbox` and
 * `file-part` events. `mailbox` names the nodes that answered a fetch of
 * this user's mailbox: nodes that keep copies for this user, worth dialling
 * on a later start when the bootstrap nodes are gone. `file-part` is a
 * stored part of a file left in a mailbox (`MailboxFiles` assembles them).
 */
export type MessagingEventDetail =
  | { readonly type: "message"; readonly incoming: IncomingMessage }
  | { readonly type: "delivered"; readonly seq: number; readonly recipient: string }
  | { readonly type: "stored"; readonly seq: number; readonly recipient: string }
  | { readonly type: "mailbox"; readonly holders: readonly PeerTarget[] }
  | { readonly type: "file-part"; readonly incoming: IncomingMessage };

/**
 * Recognizes a wrap among the envelopes that arrive (directly or from the
 * mailbox): bytes sealed for this user by a layer above (a group message's
 * per-member wrap, `lib/group/wire.ts`), known by a tag this user's keys
 * compute, with no trial decryption. The inbox asks it before it opens an
 * envelope.
 *
 * @param bytes What arrived.
 * @returns What the wrap carries, as an opened envelope (its sender as the
 *   wrap's content names it, checked by the layer that takes it), or
 *   `undefined` if the bytes are no wrap of this user's.
 * @throws {DecryptionError} If the tag matches but the wrap does not open.
 */
export type WrapOpener = (bytes: Uint8Array) => OpenedEnvelope | undefined;
