/**
 * The messaging layer: sends sealed envelopes and waits for signed
 * acknowledgements, keeps every unacknowledged message in a persistent
 * outbox and retries it with backoff, leaves a copy in the recipient's
 * network mailbox when the recipient cannot be reached, receives, verifies,
 * deduplicates and stores incoming messages, and serves other users'
 * mailboxes within quotas.
 *
 * It talks to the network through the small {@linkcode MessagingTransport}
 * interface, so it can run over a DIM node or anything else that opens
 * streams.
 *
 * Delivery guarantees: a message is acknowledged only after its row is
 * committed to the recipient's database; the sender removes it from its
 * outbox only on an acknowledgement signed by the recipient's identity key
 * over the envelope's SHA-256. Envelopes are deduplicated by (sender, message
 * ID), which is persistent, so a replay is never stored twice. Each
 * conversation's outbox is sent strictly in order over one stream, with up to
 * {@linkcode SEND_WINDOW} envelopes awaiting their acknowledgements; the
 * recipient answers them in order. The recipient stores what has arrived
 * together and makes it durable with one flush before it acknowledges any of
 * it. An idle stream is kept for a few seconds for the next message.
 *
 * Mailboxes: a user's mailbox address is SHA-256("DIM-v1-mailbox\0" ||
 * signing key). A sender that cannot reach the recipient stores the envelope
 * on the {@linkcode MessagingOptions.mailboxReplicas} nodes closest to that
 * address in the DHT. The recipient fetches from the same nodes on start and
 * periodically, stores, sends a signed receipt to the sender, and deletes
 * the copies with a request signed by its identity key. Storage nodes keep at
 * most {@linkcode MailboxLimits} per mailbox and in total, and drop copies
 * at their expiry.
 *
 * @module
 */
import { concat, constantTimeEqual, toHex } from "../platform/bytes.ts";
import { type OpenedEnvelope, openEnvelope, sealEnvelope } from "../crypto/envelope.ts";
import { decodeUserId, type Identity, verifySignature } from "../crypto/identity.ts";
import { DecryptionError, DimError, PeerUnreachableError, ProtocolError } from "../errors.ts";
import type { MessagingStorage, OutboxEntry, StoredMessage } from "./storage.ts";
import { raceSignal as race } from "race-signal";
import {
  envelopeHash,
  mailboxAddress,
  type MailboxLimits,
  MailboxServer,
  type MessageStream,
  RateLimiter,
  type StreamHost,
} from "./mailbox.ts";
import type { SessionManager, SessionResult } from "./sessions.ts";
import { Deadlines } from "./_deadlines.ts";
import {
  deleteSignedBytes,
  encodeFrame,
  type Frame,
  FrameQueue,
  FrameReader,
  FrameType,
  MAILBOX_PROTOCOL,
  MAX_DELETE_ITEMS,
  MESSAGE_PROTOCOL,
  NackCode,
  StoreStatus,
  writeFrame,
} from "./wire.ts";

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

/** Tunables of the messaging layer. */
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
  /** Quotas for mailboxes kept for others. */
  readonly mailboxLimits?: Partial<MailboxLimits>;
  /** Inbound envelopes accepted per peer: burst size. Default 2000. */
  readonly rateBurst?: number;
  /** Inbound envelopes accepted per peer per second. Default 1000. */
  readonly ratePerSecond?: number;
  /** Longest silence on an inbound stream before it is reset (ms). Default 10 s. */
  readonly idleTimeoutMs?: number;
  /** Called with errors that concern one peer and never stop the node. */
  readonly onPeerError?: (error: unknown) => void;
}

/** A message delivered to this user. */
export interface IncomingMessage {
  /** The stored message. */
  readonly message: StoredMessage;
  /** The sender's verified signing key. */
  readonly senderSigningKey: Uint8Array;
}

/** Payload of the service's `message`, `delivered` and `stored` events. */
export type MessagingEventDetail =
  | { readonly type: "message"; readonly incoming: IncomingMessage }
  | { readonly type: "delivered"; readonly seq: number; readonly recipient: string }
  | { readonly type: "stored"; readonly seq: number; readonly recipient: string };

/** Resolves a user ID to where that user's node is. */
export type RecipientResolver = (
  userId: string,
  options: { readonly signal: AbortSignal },
) => Promise<PeerTarget>;

const MAX_FRAMES_PER_STREAM = 100_000;
/** How many envelopes of one conversation may await their acknowledgements. */
export const SEND_WINDOW = 64;
/** The most envelopes a recipient stores and flushes together. */
const RECEIVE_BATCH = 64;
/**
 * How long an idle outgoing stream is kept for the next message (ms). Below
 * the recipient's idle timeout, so the sender is the one that closes it.
 */
const LINK_IDLE_MS = 3000;
/** The shortest time between two session restarts with one recipient (ms). */
const SESSION_RESTART_INTERVAL_MS = 60_000;
/** The longest a sent message waits for others to share its flush (ms). */
const GROUP_COMMIT_MS = 50;
/** How long the nodes closest to a mailbox are remembered. */
const CLOSEST_CACHE_MS = 5 * 60 * 1000;

/**
 * Sends and receives DIM messages for one identity over a transport.
 * Dispatches `CustomEvent<MessagingEventDetail>` events named `message`,
 * `delivered` and `stored`.
 */
export class MessagingService extends EventTarget {
  readonly #identity: Identity;
  readonly #db: MessagingStorage;
  readonly #transport: MessagingTransport;
  readonly #resolve: RecipientResolver;
  readonly #sessions: SessionManager | undefined;
  readonly #clock: () => number;
  readonly #opts: Required<Omit<MessagingOptions, "mailboxLimits" | "clock" | "onPeerError">>;
  readonly #mailboxServer: MailboxServer;
  readonly #onPeerError: (error: unknown) => void;
  readonly #rate: RateLimiter;
  #deadlines = new Deadlines();
  #started = false;
  #timers: ReturnType<typeof setInterval>[] = [];
  /** Messages committed but not yet flushed to disk: not sent until they are. */
  #unflushed = new Set<number>();
  #flushWaiters: { resolve: () => void; reject: (err: unknown) => void }[] = [];
  /** The running deliveries, by recipient: each one's wake-up call for new messages. */
  #wakers = new Map<string, Wake>();
  /** Open streams kept between deliveries, by recipient. */
  #links = new Map<string, Link>();
  /** When a session was last restarted, by recipient. */
  #restartedAt = new Map<string, number>();
  #tasks = new Set<Promise<unknown>>();
  #streams = new Set<MessageStream>();
  #mailbox: Uint8Array | undefined;
  #closest = new Map<string, { peers: PeerTarget[]; at: number }>();

  /**
   * Makes the service; call `start()` to serve and send.
   *
   * @param deps The identity, its storage, the transport and a resolver for recipients' nodes.
   * @param options Tunables.
   */
  constructor(
    deps: {
      readonly identity: Identity;
      readonly storage: MessagingStorage;
      readonly transport: MessagingTransport;
      readonly resolve: RecipientResolver;
      /** Forward-secret sessions; without it every message uses the static envelope. */
      readonly sessions?: SessionManager;
    },
    options: MessagingOptions = {},
  ) {
    super();
    this.#identity = deps.identity;
    this.#db = deps.storage;
    this.#transport = deps.transport;
    this.#resolve = deps.resolve;
    this.#sessions = deps.sessions;
    this.#clock = options.clock ?? Date.now;
    this.#onPeerError = options.onPeerError ?? (() => {});
    this.#opts = {
      attemptTimeoutMs: options.attemptTimeoutMs ?? 5000,
      retryBaseMs: options.retryBaseMs ?? 1000,
      retryMaxMs: options.retryMaxMs ?? 5 * 60 * 1000,
      outboxIntervalMs: options.outboxIntervalMs ?? 1000,
      mailboxPollMs: options.mailboxPollMs ?? 30_000,
      mailboxReplicas: options.mailboxReplicas ?? 3,
      mailboxTtlMs: options.mailboxTtlMs ?? 7 * 24 * 3600 * 1000,
      rateBurst: options.rateBurst ?? 2000,
      ratePerSecond: options.ratePerSecond ?? 1000,
      idleTimeoutMs: options.idleTimeoutMs ?? 10_000,
    };
    this.#mailboxServer = new MailboxServer(this.#db.mailboxes, {
      clock: this.#clock,
      idleTimeoutMs: this.#opts.idleTimeoutMs,
      onPeerError: this.#onPeerError,
      ...(options.mailboxLimits ? { limits: options.mailboxLimits } : {}),
    });
    this.#rate = new RateLimiter(this.#opts.rateBurst, this.#opts.ratePerSecond);
  }

  /** Registers the protocol handlers and starts the outbox and mailbox loops. Idempotent. */
  async start(): Promise<void> {
    if (this.#started) return;
    this.#started = true;
    this.#deadlines.restart();
    this.#mailbox = await mailboxAddress(this.#identity.signingPublicKey);
    await this.#transport.handle(
      MESSAGE_PROTOCOL,
      (s, p) => this.#track(this.#serveMessages(s, p)),
    );
    await this.#mailboxServer.start(this.#transport);
    this.#every(this.#opts.outboxIntervalMs, () => this.flushOutbox());
    this.#every(this.#opts.mailboxPollMs, () => this.fetchMailbox());
    this.#track(this.flushOutbox());
  }

  /** Stops handlers and loops, aborts what is in flight. Idempotent. */
  async stop(): Promise<void> {
    if (!this.#started) return;
    this.#started = false;
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [];
    this.#deadlines.abort(new DimError("Cannot continue: the messenger is stopping"));
    for (const link of this.#links.values()) link.dispose();
    this.#links.clear();
    for (const s of this.#streams) s.abort(new Error("stopping"));
    await Promise.allSettled([
      this.#transport.unhandle(MESSAGE_PROTOCOL),
      this.#mailboxServer.stop(),
    ]);
    await Promise.allSettled([...this.#tasks]);
  }

  #every(ms: number, fn: () => Promise<unknown>): void {
    const id = setInterval(() => this.#track(fn()), ms);
    // Deno's timers are numbers; the loops must not keep a one-shot process alive.
    Deno.unrefTimer(id as unknown as number);
    this.#timers.push(id);
  }

  #track(p: Promise<unknown>): void {
    const t = p.catch((err) => this.#onPeerError(err)).finally(() => this.#tasks.delete(t));
    this.#tasks.add(t);
  }

  #emit(detail: MessagingEventDetail): void {
    this.dispatchEvent(new CustomEvent(detail.type, { detail }));
  }

  #signal(ms: number): AbortSignal {
    return this.#deadlines.signal(ms);
  }

  /**
   * Seals `body` for a recipient, stores it in the history and the outbox,
   * and starts delivering it.
   *
   * @param recipient The recipient's user ID and X25519 key.
   * @param body The message body.
   * @param contentType Envelope content type (1 = UTF-8 text).
   * @returns The stored message (state "pending").
   */
  async send(
    recipient: { readonly userId: string; readonly encryptionPublicKey: Uint8Array },
    body: Uint8Array,
    contentType = 1,
  ): Promise<StoredMessage> {
    const seal = async (sealed: SessionResult): Promise<StoredMessage> => {
      const now = this.#clock();
      const id = crypto.getRandomValues(new Uint8Array(16));
      const { envelope, hash } = await this.#seal(recipient.encryptionPublicKey, sealed, id, now);
      // The session state is saved with the outbox entry, before anything is
      // sent. The commit is flushed after the lock is released (below), so
      // messages sent together share one flush.
      return this.#db.transaction(() => {
        sealed.save();
        return this.#db.outbox.enqueue(
          {
            id,
            peer: recipient.userId,
            sentAt: now,
            receivedAt: now,
            contentType,
            body,
            protection: sealed.protection,
          },
          envelope,
          hash,
        );
      }, { durable: false });
    };
    const sessions = this.#sessions;
    let row: StoredMessage;
    if (sessions === undefined) {
      row = await seal({ contentType, body, protection: "static", save: () => {} });
    } else {
      // A first message needs the recipient's prekeys from the network:
      // looked up before taking the lock, which every other message waits for.
      const signal = this.#signal(this.#opts.attemptTimeoutMs);
      const bundle = await sessions.prepare(recipient.userId, { signal });
      row = await sessions.lock(async () =>
        seal(
          await sessions.encrypt(
            { ...recipient, signingPublicKey: decodeUserId(recipient.userId) },
            contentType,
            body,
            bundle === undefined ? { signal } : { signal, bundle },
          ),
        )
      );
    }
    // Durable before the caller hears of it, and before any of it is sent.
    this.#unflushed.add(row.seq);
    try {
      await this.#flushed();
    } finally {
      this.#unflushed.delete(row.seq);
    }
    // Only this conversation: the periodic scan looks after the others.
    this.#track(this.#deliver(recipient.userId));
    return row;
  }

  /**
   * Seals a message's envelope and hashes it; the session state, if any, is
   * sealed for storage meanwhile (`sealed.ready`).
   */
  async #seal(
    recipientKey: Uint8Array,
    sealed: SessionResult,
    id: Uint8Array,
    timestamp: number,
  ): Promise<{ envelope: Uint8Array; hash: Uint8Array }> {
    const [envelope] = await Promise.all([
      sealEnvelope(this.#identity, recipientKey, {
        body: sealed.body,
        contentType: sealed.contentType,
        id,
        timestamp,
      }),
      sealed.ready,
    ]);
    return { envelope, hash: await envelopeHash(envelope) };
  }

  /**
   * Flushes the database once no other message is being sealed: messages
   * sent together share one flush (group commit), at most SEND_WINDOW of them.
   */
  #flushed(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#flushWaiters.push({ resolve, reject });
      const sessions = this.#sessions;
      if (sessions?.busy && this.#flushWaiters.length < SEND_WINDOW) {
        if (this.#flushWaiters.length === 1) {
          // Not longer than GROUP_COMMIT_MS, though, however long the others take.
          const timer = setTimeout(() => this.#flushNow(), GROUP_COMMIT_MS);
          sessions.whenIdle().then(() => {
            clearTimeout(timer);
            this.#flushNow();
          });
        }
        return;
      }
      this.#flushNow();
    });
  }

  #flushNow(): void {
    const waiters = this.#flushWaiters.splice(0);
    if (waiters.length === 0) return;
    try {
      this.#db.sync();
    } catch (err) {
      for (const w of waiters) w.reject(err);
      return;
    }
    for (const w of waiters) w.resolve();
  }

  /**
   * Tries every outbox entry that is due now: one worker per conversation
   * sends its queue in order over one stream.
   *
   * @returns When the attempts have finished.
   */
  async flushOutbox(): Promise<void> {
    if (!this.#started) return;
    const due = this.#db.outbox.due(this.#clock());
    await Promise.all(due.map(({ recipient }) => this.#deliver(recipient)));
  }

  /**
   * Starts delivering one conversation, or wakes its running delivery, which
   * then picks new messages up itself.
   */
  async #deliver(recipient: string): Promise<void> {
    if (!this.#started) return;
    const running = this.#wakers.get(recipient);
    if (running !== undefined) {
      running.wake();
      return;
    }
    const wake = new Wake();
    this.#wakers.set(recipient, wake);
    try {
      await this.#drain(recipient, wake);
    } finally {
      this.#wakers.delete(recipient);
      // A message queued while the delivery was ending is not left for the next scan.
      if (wake.requested) this.#track(this.#deliver(recipient));
    }
  }

  /**
   * Delivers one conversation's due queue in order, up to SEND_WINDOW
   * envelopes ahead of their acknowledgements; on failure defers it and mails it.
   */
  async #drain(recipient: string, wake: Wake): Promise<void> {
    let link = this.#links.get(recipient);
    this.#links.delete(recipient);
    link?.keep();
    if (link !== undefined && (link.replies.done || link.replies.size > 0)) {
      link.dispose();
      link = undefined;
    }
    // A kept stream may have been closed by the other side meanwhile: one
    // failure on it, before any acknowledgement, is retried on a new stream.
    let retry = link !== undefined;
    let sent: OutboxEntry[] = [];
    let last = 0;
    // An attempt times out when no acknowledgement came for attemptTimeoutMs
    // while envelopes were waiting, however many new messages woke it meanwhile.
    let progressAt = performance.now();
    for (;;) {
      wake.requested = false;
      if (!this.#started) {
        link?.dispose();
        return;
      }
      const room = SEND_WINDOW - sent.length;
      const next = room > 0 ? this.#db.outbox.after(recipient, last, room) : [];
      // Nothing leaves before its flush; the order stops at the first that waits.
      const waiting = next.findIndex((e) => this.#unflushed.has(e.messageSeq));
      if (waiting >= 0) next.length = waiting;
      if (sent.length === 0 && (next.length === 0 || next[0]!.nextAttemptAt > this.#clock())) {
        if (link !== undefined) this.#park(recipient, link);
        return;
      }
      if (sent.length === 0) progressAt = performance.now();
      const left = progressAt + this.#opts.attemptTimeoutMs - performance.now();
      const signal = this.#signal(Math.max(0, left));
      try {
        if (next.length > 0) {
          if (link === undefined) {
            const target = await this.#resolve(recipient, { signal });
            const stream = await this.#transport.openStream(target, MESSAGE_PROTOCOL, { signal });
            link = new Link(stream, this.#streams);
          }
          sent = sent.concat(next);
          last = next[next.length - 1]!.messageSeq;
          const frames = next.map((e) =>
            encodeFrame({ type: FrameType.Envelope, envelope: e.envelope })
          );
          // One write for all: one stream frame and one encryption, not one per message.
          if (!link.stream.send(frames.length === 1 ? frames[0]! : concat(...frames))) {
            await link.stream.onDrain({ signal });
          }
        }
        // The first reply, or a new message to send meanwhile.
        await race(Promise.race([link!.replies.ready(), wake.wait()]), signal);
        const replies = link!.replies.take(sent.length);
        if (replies.length === 0) {
          if (!link!.replies.done) continue;
          // A recipient may end a long-used stream (it caps frames per
          // stream): after answering some, that is no failure, and the rest
          // go again on a new stream.
          if (link!.acknowledged > 0 && this.#started) {
            link!.dispose();
            link = undefined;
            sent = [];
            last = 0;
            continue;
          }
          throw new ProtocolError("Cannot deliver: the recipient closed the stream");
        }
        const { done, failure } = await this.#confirm(recipient, sent, replies);
        link!.acknowledged += done;
        sent = sent.slice(done);
        if (done > 0) {
          retry = false;
          progressAt = performance.now();
        }
        if (failure !== undefined) throw failure;
      } catch (err) {
        link?.dispose(err);
        link = undefined;
        if (retry && this.#started) {
          retry = false;
          sent = [];
          last = 0;
          continue;
        }
        // The recipient has no session for these: start a new one and seal
        // the queue again in it.
        if (err instanceof NoSessionError && await this.#restartSession(recipient)) {
          sent = [];
          last = 0;
          continue;
        }
        const head = sent[0] ?? next[0];
        if (head !== undefined) await this.#defer(recipient, head, err);
        return;
      }
    }
  }

  /**
   * Starts a new session with a recipient who could not decrypt in the
   * current one, and seals every queued message to them again in it (same
   * message IDs, so nothing is shown twice). Only with a fresh prekey bundle
   * whose keys are the pinned ones: a session is never downgraded to the
   * static envelope. At most once a minute per recipient, so a recipient
   * that keeps refusing cannot make the sender re-key in a loop.
   *
   * @returns Whether the queue was sealed again.
   */
  async #restartSession(recipient: string): Promise<boolean> {
    const sessions = this.#sessions;
    const contact = this.#db.contacts.getById(recipient);
    const now = this.#clock();
    const last = this.#restartedAt.get(recipient);
    if (sessions === undefined || contact === undefined || !this.#started) return false;
    if (last !== undefined && now - last < SESSION_RESTART_INTERVAL_MS) return false;
    this.#restartedAt.set(recipient, now);
    const signal = this.#signal(this.#opts.attemptTimeoutMs);
    const peer = {
      userId: recipient,
      signingPublicKey: decodeUserId(recipient),
      encryptionPublicKey: contact.encryptionPublicKey,
    };
    try {
      const bundle = await sessions.lookupBundle(recipient, { signal });
      if (
        bundle === undefined ||
        !constantTimeEqual(bundle.signingPublicKey, peer.signingPublicKey) ||
        !constantTimeEqual(bundle.encryptionPublicKey, peer.encryptionPublicKey)
      ) return false;
      await sessions.lock(async () => {
        this.#db.transaction(() => this.#db.sessions.deleteAll(recipient), { durable: false });
        const queue = this.#db.outbox.list().filter((e) => e.recipient === recipient);
        for (const entry of queue) {
          const message = this.#db.messages.get(entry.messageSeq);
          if (message === undefined) continue;
          const sealed = await sessions.encrypt(peer, message.contentType, message.body, {
            signal,
            bundle,
          });
          if (sealed.protection !== "ratchet") {
            throw new ProtocolError("Cannot restart session: no prekeys to start it with");
          }
          const { envelope, hash } = await this.#seal(
            peer.encryptionPublicKey,
            sealed,
            message.id,
            message.sentAt,
          );
          this.#db.transaction(() => {
            sealed.save();
            this.#db.outbox.replaceEnvelope(entry.messageSeq, envelope, hash, this.#clock());
          }, { durable: false });
        }
        this.#db.sync();
      });
      return true;
    } catch (err) {
      this.#onPeerError(err);
      return false;
    }
  }

  /**
   * Checks replies against the envelopes sent, in order, and marks the
   * acknowledged ones delivered.
   *
   * @returns How many envelopes were acknowledged, and the first reply that
   *   is not a valid acknowledgement of its envelope, as an error.
   */
  async #confirm(
    recipient: string,
    sent: OutboxEntry[],
    replies: Frame[],
  ): Promise<{ done: number; failure: ProtocolError | undefined }> {
    const key = decodeUserId(recipient);
    let failure: ProtocolError | undefined;
    const acks: { entry: OutboxEntry; check: Promise<boolean> }[] = [];
    for (const [i, reply] of replies.entries()) {
      const entry = sent[i]!;
      if (reply.type !== FrameType.Ack) {
        failure = reply.type === FrameType.Nack && reply.code === NackCode.NoSession
          ? new NoSessionError()
          : new ProtocolError(
            reply.type === FrameType.Nack
              ? `Cannot deliver: recipient refused (code ${reply.code})`
              : "Cannot deliver: no acknowledgement",
          );
        break;
      }
      if (!constantTimeEqual(reply.envelopeHash, entry.envelopeHash)) {
        failure = new ProtocolError("Cannot accept acknowledgement: it is for another message");
        break;
      }
      // The checks run together, on the crypto threads.
      acks.push({ entry, check: verifySignature("ack", key, reply.envelopeHash, reply.signature) });
    }
    let done = 0;
    for (const { check } of acks) {
      if (!(await check)) {
        failure = new ProtocolError("Cannot accept acknowledgement: invalid signature");
        break;
      }
      done++;
    }
    const delivered = this.#db.transaction(
      () =>
        acks.slice(0, done).map(({ entry }) =>
          this.#db.outbox.markDelivered(recipient, entry.envelopeHash)
        ),
      // Lost in a crash, a mark costs one more delivery, which the recipient deduplicates.
      { durable: false },
    );
    for (const seq of delivered) {
      if (seq !== undefined) this.#emit({ type: "delivered", seq, recipient });
    }
    return { done, failure };
  }

  /** Keeps an idle stream for the conversation's next message, for a while. */
  #park(recipient: string, link: Link): void {
    if (!this.#started || link.replies.done || link.replies.size > 0) {
      link.dispose();
      return;
    }
    this.#links.get(recipient)?.dispose();
    this.#links.set(recipient, link);
    link.idle(LINK_IDLE_MS, () => {
      if (this.#links.get(recipient) === link) this.#links.delete(recipient);
    });
  }

  /**
   * Schedules the next attempt of a conversation's head with backoff, and
   * leaves a copy of every queued message of it in the recipient's mailbox.
   */
  async #defer(recipient: string, head: OutboxEntry, error: unknown): Promise<void> {
    if (!this.#started) return;
    const message = error instanceof Error ? error.message : String(error);
    const backoff = Math.min(this.#opts.retryMaxMs, this.#opts.retryBaseMs * 2 ** head.attempts);
    const jitter = 0.5 + Math.random();
    this.#db.outbox.defer(head.messageSeq, this.#clock() + Math.round(backoff * jitter), message);
    const unmailed = this.#db.outbox.list().filter((e) =>
      e.recipient === recipient && !e.storedOffline
    );
    if (unmailed.length === 0) return;
    try {
      this.#db.sync();
      const stored = await this.#storeOffline(recipient, unmailed.map((e) => e.envelope));
      unmailed.forEach((e, i) => {
        if (!stored[i]) return;
        this.#db.outbox.markStoredOffline(e.messageSeq);
        this.#emit({ type: "stored", seq: e.messageSeq, recipient });
      });
    } catch (err) {
      this.#onPeerError(err);
    }
  }

  /** Verifies a receipt and marks the message delivered. */
  async #acknowledge(recipient: string, hash: Uint8Array, signature: Uint8Array): Promise<boolean> {
    const key = decodeUserId(recipient);
    if (!(await verifySignature("ack", key, hash, signature))) return false;
    const seq = this.#db.transaction(() => this.#db.outbox.markDelivered(recipient, hash), {
      durable: false,
    });
    if (seq !== undefined) this.#emit({ type: "delivered", seq, recipient });
    return true;
  }

  /**
   * The nodes closest to a mailbox address. A lookup costs a DHT query
   * across the network, so the answer is kept for a few minutes; a caller
   * that found them all unreachable asks again with `fresh`.
   */
  async #closestTo(mailbox: Uint8Array, count: number, fresh = false): Promise<PeerTarget[]> {
    const key = `${toHex(mailbox)}/${count}`;
    const cached = this.#closest.get(key);
    if (!fresh && cached && this.#clock() - cached.at < CLOSEST_CACHE_MS) return cached.peers;
    const peers = await this.#transport.closestPeers(mailbox, {
      signal: this.#signal(this.#opts.attemptTimeoutMs * 2),
      count,
    });
    if (this.#closest.size > 1000) this.#closest.clear();
    this.#closest.set(key, { peers, at: this.#clock() });
    return peers;
  }

  /** Stores envelopes on the nodes closest to the recipient's mailbox; which took. */
  async #storeOffline(recipient: string, envelopes: readonly Uint8Array[]): Promise<boolean[]> {
    const mailbox = await mailboxAddress(decodeUserId(recipient));
    // Fresh each time: storing is rare, and must reach the nodes the
    // recipient will ask.
    const peers = await this.#closestTo(mailbox, this.#opts.mailboxReplicas, true);
    const expiresAt = this.#clock() + this.#opts.mailboxTtlMs;
    return await Promise.all(envelopes.map(async (envelope) => {
      const results = await Promise.allSettled(
        peers.map((p) => this.#request(p, { type: FrameType.Store, mailbox, expiresAt, envelope })),
      );
      return results.some((r) =>
        r.status === "fulfilled" && r.value.type === FrameType.StoreResult &&
        (r.value.status === StoreStatus.Stored || r.value.status === StoreStatus.Duplicate)
      );
    }));
  }

  /** One mailbox request frame, one answer frame; this node answers its own. */
  async #request(peer: PeerTarget, frame: Frame): Promise<Frame> {
    if (peer.peerId === this.#transport.peerId) return await this.#mailboxServer.answer(frame);
    const protocol = MAILBOX_PROTOCOL;
    const signal = this.#signal(this.#opts.attemptTimeoutMs);
    const stream = await this.#transport.openStream(peer, protocol, { signal });
    this.#streams.add(stream);
    try {
      await writeFrame(stream, frame, signal);
      const reply = await race(new FrameReader(stream).next(), signal);
      if (reply === undefined) throw new ProtocolError("Cannot complete request: no answer");
      await stream.close({ signal }).catch(() => {});
      return reply;
    } catch (err) {
      stream.abort(err instanceof Error ? err : new Error(String(err)));
      throw err;
    } finally {
      this.#streams.delete(stream);
    }
  }

  /**
   * Fetches this user's messages from the network mailbox, stores the new
   * ones, sends receipts and deletes the fetched copies.
   *
   * @param refresh Look the mailbox's nodes up again instead of using the
   *   ones found in the last few minutes.
   * @returns How many new messages arrived.
   */
  async fetchMailbox(refresh = false): Promise<number> {
    if (!this.#started || this.#mailbox === undefined) return 0;
    const mailbox = this.#mailbox;
    let reached = 0;
    const peers = await this.#closestTo(mailbox, this.#opts.mailboxReplicas * 2, refresh);
    const held = new Map<string, { envelope: Uint8Array; hash: Uint8Array; peers: PeerTarget[] }>();
    await Promise.all(peers.map(async (peer) => {
      try {
        const reply = await this.#request(peer, {
          type: FrameType.Fetch,
          mailbox,
        });
        if (reply.type !== FrameType.Items) return;
        reached++;
        for (const envelope of reply.envelopes) {
          const hash = await envelopeHash(envelope);
          const key = toHex(hash);
          const entry = held.get(key) ?? { envelope, hash, peers: [] };
          entry.peers.push(peer);
          held.set(key, entry);
        }
      } catch (err) {
        this.#onPeerError(err);
      }
    }));
    // Only this node answered: the cached neighbourhood is stale.
    if (reached <= 1 && !refresh) this.#closest.clear();
    const fresh: IncomingMessage[] = [];
    const stored: { envelope: Uint8Array; hash: Uint8Array }[] = [];
    // A session's first message may come after its followers: what could not
    // be read is tried again while other messages still open sessions (a few
    // passes, so junk in the mailbox costs a bounded amount of work).
    let pending = [...held.values()];
    for (let pass = 0, progress = true; progress && pending.length > 0 && pass < 3; pass++) {
      progress = false;
      const unreadable = [];
      for (const item of pending) {
        const result = await this.#receive(item.envelope);
        if (result === "unreadable") {
          unreadable.push(item);
          continue;
        }
        progress = true;
        stored.push(item);
        if (result !== "duplicate") fresh.push(result);
      }
      pending = unreadable;
    }
    // Stored and flushed before any sender hears of it or any copy is deleted.
    this.#db.sync();
    // Show them in the senders' order.
    fresh.sort((a, b) => a.message.sentAt - b.message.sentAt);
    for (const incoming of fresh) this.#emit({ type: "message", incoming });
    // Receipts tell senders at once; the outbox retry would find out later
    // anyway. None for a copy that could not be read: the sender keeps it.
    for (const { envelope, hash } of stored) this.#track(this.#sendReceipt(envelope, hash));
    // Unreadable copies go too: no later fetch could read them either.
    await this.#deleteFromMailboxes(mailbox, [...held.values()]);
    return fresh.length;
  }

  async #sendReceipt(envelope: Uint8Array, hash: Uint8Array): Promise<void> {
    let sender: string;
    try {
      sender = (await openEnvelope(this.#identity, envelope)).senderId;
    } catch {
      return;
    }
    const signal = this.#signal(this.#opts.attemptTimeoutMs);
    const target = await this.#resolve(sender, { signal });
    const stream = await this.#transport.openStream(target, MESSAGE_PROTOCOL, { signal });
    try {
      const signature = await this.#identity.sign("ack", hash);
      await writeFrame(stream, { type: FrameType.Receipt, envelopeHash: hash, signature }, signal);
      await stream.close({ signal });
    } catch (err) {
      stream.abort(err instanceof Error ? err : new Error(String(err)));
      throw err;
    }
  }

  async #deleteFromMailboxes(
    mailbox: Uint8Array,
    items: { hash: Uint8Array; peers: PeerTarget[] }[],
  ): Promise<void> {
    const byPeer = new Map<string, { peer: PeerTarget; hashes: Uint8Array[] }>();
    for (const item of items) {
      for (const peer of item.peers) {
        const e = byPeer.get(peer.peerId) ?? { peer, hashes: [] };
        e.hashes.push(item.hash);
        byPeer.set(peer.peerId, e);
      }
    }
    await Promise.all([...byPeer.values()].map(async ({ peer, hashes }) => {
      for (let i = 0; i < hashes.length; i += MAX_DELETE_ITEMS) {
        const part = hashes.slice(i, i + MAX_DELETE_ITEMS);
        const timestamp = this.#clock();
        const signature = await this.#identity.sign(
          "mailbox",
          deleteSignedBytes(mailbox, timestamp, part),
        );
        try {
          await this.#request(peer, {
            type: FrameType.Delete,
            mailbox,
            owner: this.#identity.signingPublicKey,
            timestamp,
            hashes: part,
            signature,
          });
        } catch (err) {
          this.#onPeerError(err);
        }
      }
    }));
  }

  /**
   * Opens, verifies and stores one envelope from the mailbox. The commit is
   * not flushed: call `sync()` on the database before acknowledging it.
   *
   * @returns The new message; `"duplicate"` if it was stored before;
   *   `"unreadable"` if it does not open or decrypt (it must not be
   *   acknowledged: the sender would take it as delivered).
   */
  async #receive(envelope: Uint8Array): Promise<IncomingMessage | "duplicate" | "unreadable"> {
    try {
      const opened = await openEnvelope(this.#identity, envelope);
      return await this.#accept(opened, "mailbox") ?? "duplicate";
    } catch (err) {
      if (err instanceof DecryptionError) return "unreadable";
      throw err;
    }
  }

  /**
   * Decrypts an opened envelope in its session and stores it, without a
   * flush of the commit.
   *
   * @returns The new message, or `undefined` if it was a duplicate.
   * @throws {DecryptionError} If it does not decrypt in its session.
   */
  async #accept(opened: OpenedEnvelope, via: string): Promise<IncomingMessage | undefined> {
    const now = this.#clock();
    const sender = opened.senderId;
    // A replay is acknowledged again without touching the session.
    if (this.#db.messages.hasIncoming(sender, opened.id)) return undefined;
    const store = (content: SessionResult) =>
      this.#db.transaction(() => {
        const message = this.#db.messages.insertIncoming({
          id: opened.id,
          peer: sender,
          sentAt: opened.timestamp,
          receivedAt: now,
          contentType: content.contentType,
          body: content.body,
          via,
          protection: content.protection,
        });
        // Only a new message may move the session on.
        if (message !== undefined) content.save();
        this.#db.contacts.touch(sender, now);
        return message;
      }, { durable: false });
    const sessions = this.#sessions;
    const message = sessions === undefined
      ? store({ ...opened, protection: "static", save: () => {} })
      : await sessions.lock(async () =>
        store(
          await sessions.decrypt(
            {
              userId: sender,
              signingPublicKey: opened.senderSigningKey,
              encryptionPublicKey: this.#db.contacts.getById(sender)?.encryptionPublicKey,
            },
            opened.contentType,
            opened.body,
          ),
        )
      );
    if (message === undefined) return undefined;
    return { message, senderSigningKey: opened.senderSigningKey };
  }

  async #signAck(envelope: Uint8Array): Promise<Frame> {
    const hash = await envelopeHash(envelope);
    const signature = await this.#identity.sign("ack", hash);
    return { type: FrameType.Ack, envelopeHash: hash, signature };
  }

  async #serveMessages(stream: MessageStream, remotePeer: string): Promise<void> {
    this.#streams.add(stream);
    const queue = new FrameQueue(stream, { capacity: RECEIVE_BATCH });
    try {
      for (let count = 0; count < MAX_FRAMES_PER_STREAM && this.#started;) {
        await race(queue.ready(), this.#signal(this.#opts.idleTimeoutMs));
        const frames = queue.take(Math.min(RECEIVE_BATCH, MAX_FRAMES_PER_STREAM - count));
        if (frames.length === 0) break;
        count += frames.length;
        await this.#answer(stream, remotePeer, frames);
      }
      await stream.close({ signal: this.#signal(this.#opts.idleTimeoutMs) }).catch(() => {});
    } catch (err) {
      stream.abort(err instanceof Error ? err : new Error(String(err)));
      if (!(err instanceof PeerUnreachableError)) this.#onPeerError(err);
    } finally {
      this.#streams.delete(stream);
    }
  }

  /**
   * Handles frames that arrived together: opens their envelopes in parallel,
   * stores them in order, flushes once, and answers each envelope in order
   * with one write.
   */
  async #answer(stream: MessageStream, remotePeer: string, frames: Frame[]): Promise<void> {
    for (const frame of frames) {
      if (frame.type !== FrameType.Envelope && frame.type !== FrameType.Receipt) {
        throw new ProtocolError("Cannot serve stream: unexpected frame type");
      }
    }
    // Each envelope or receipt costs crypto and a lookup: both are rate-limited.
    const allowed = frames.map(() => this.#rate.take(remotePeer, this.#clock()));
    const opening = frames.map((frame, i) =>
      frame.type === FrameType.Envelope && allowed[i]
        ? openEnvelope(this.#identity, frame.envelope).then(
          (opened) => ({ opened }),
          (error: unknown) => ({ error }),
        )
        : undefined
    );
    // Acknowledgements are signed while the envelopes are opened and stored,
    // off the critical path; one leaves only for a message that is stored
    // and flushed.
    const signing = frames.map((frame, i) =>
      frame.type === FrameType.Envelope && allowed[i] ? this.#signAck(frame.envelope) : undefined
    );
    // Awaited below unless an earlier frame fails the batch.
    for (const p of signing) p?.catch(() => {});
    type Reply = Frame | { readonly ack: Promise<Frame> };
    const replies: Reply[] = [];
    const incoming: IncomingMessage[] = [];
    for (const [i, frame] of frames.entries()) {
      if (frame.type === FrameType.Receipt) {
        if (allowed[i]) await this.#acknowledgeAny(frame.envelopeHash, frame.signature);
        continue;
      }
      if (frame.type !== FrameType.Envelope) continue;
      if (!allowed[i]) {
        replies.push({ type: FrameType.Nack, code: NackCode.RateLimited });
        continue;
      }
      const result = await opening[i]!;
      if ("error" in result) {
        if (!(result.error instanceof DecryptionError)) throw result.error;
        replies.push({ type: FrameType.Nack, code: NackCode.Unreadable });
        continue;
      }
      try {
        const message = await this.#accept(result.opened, "direct");
        if (message !== undefined) incoming.push(message);
        replies.push({ ack: signing[i]! });
      } catch (err) {
        if (!(err instanceof DecryptionError)) throw err;
        // The sender is verified; its session is what failed.
        replies.push({ type: FrameType.Nack, code: NackCode.NoSession });
      }
    }
    if (replies.length > 0) {
      // The rows are committed and flushed: only now are the senders told.
      this.#db.sync();
      const encoded = await Promise.all(
        replies.map(async (reply) => encodeFrame("ack" in reply ? await reply.ack : reply)),
      );
      if (!stream.send(encoded.length === 1 ? encoded[0]! : concat(...encoded))) {
        await stream.onDrain({ signal: this.#signal(this.#opts.idleTimeoutMs) });
      }
    }
    for (const message of incoming) this.#emit({ type: "message", incoming: message });
  }

  async #acknowledgeAny(hash: Uint8Array, signature: Uint8Array): Promise<void> {
    // A lookup by the indexed hash: receipts are rate-limited, but each one
    // must not cost a scan of the whole outbox.
    const recipient = this.#db.outbox.recipientOf(hash);
    if (recipient !== undefined) await this.#acknowledge(recipient, hash, signature);
  }
}

/** A wake-up call for a running delivery, which remembers one that came early. */
class Wake {
  requested = false;
  #resolve: (() => void) | undefined;

  wake(): void {
    this.requested = true;
    const resolve = this.#resolve;
    this.#resolve = undefined;
    resolve?.();
  }

  wait(): Promise<void> {
    if (this.requested) return Promise.resolve();
    return new Promise((resolve) => (this.#resolve = resolve));
  }
}

/** A conversation's outgoing stream, with its replies read ahead. */
class Link {
  readonly stream: MessageStream;
  readonly replies: FrameQueue;
  /** Envelopes acknowledged on this stream. */
  acknowledged = 0;
  readonly #streams: Set<MessageStream>;
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(stream: MessageStream, streams: Set<MessageStream>) {
    this.stream = stream;
    this.replies = new FrameQueue(stream, { capacity: SEND_WINDOW });
    this.#streams = streams;
    streams.add(stream);
  }

  /** Closes the stream after `ms` unless taken back with `keep()` first. */
  idle(ms: number, onClose: () => void): void {
    this.keep();
    const timer = setTimeout(() => {
      onClose();
      this.dispose();
    }, ms);
    // An idle stream must not keep a one-shot process alive.
    Deno.unrefTimer(timer);
    this.#timer = timer;
  }

  keep(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** Closes the stream, or resets it if `error` is given. */
  dispose(error?: unknown): void {
    this.keep();
    this.#streams.delete(this.stream);
    if (error === undefined) {
      this.stream.close({ signal: AbortSignal.timeout(LINK_IDLE_MS) }).catch(() => {});
    } else {
      this.stream.abort(error instanceof Error ? error : new Error(String(error)));
    }
  }
}

/** The recipient could not decrypt in its sessions (`NACK` code NoSession). */
class NoSessionError extends ProtocolError {
  constructor() {
    super("Cannot deliver: the recipient has no session for this message");
  }
}
