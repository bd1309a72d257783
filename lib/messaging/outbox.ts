/**
 * The outbox: sends this user's messages and keeps each one until the
 * recipient acknowledges it.
 *
 * `send` seals a message (in its Double Ratchet session: a session frame
 * once the session is established, else inside the signed HPKE envelope,
 * `sessions.ts`), stores it in the history and the persistent outbox with
 * the new session state in one transaction, and flushes: messages sent
 * together share one commit and one flush (group commit, `_group_commit.ts`, up to
 * {@linkcode SEND_WINDOW} messages or `GROUP_COMMIT_MS`: their
 * transactions are deferred, `TransactionOptions.deferred`, to the flush,
 * which commits them first). Nothing leaves before its flush.
 *
 * Each conversation has one delivery at a time, which sends its queue
 * strictly in order over one stream, with up to {@linkcode SEND_WINDOW}
 * envelopes awaiting their acknowledgements (pipelined, one write for all
 * that are ready); the recipient answers them in order. An entry leaves the
 * outbox only on an acknowledgement signed by the recipient's identity key
 * over the envelope's SHA-256. An idle stream is kept for
 * {@linkcode LINK_IDLE_MS} for the conversation's next message.
 *
 * A failed attempt is retried with exponential backoff and jitter, and a
 * copy of every queued message of the conversation is left in the
 * recipient's network mailbox (through the mailbox client, which checks
 * the copies now and then and stores them again where their holders left).
 * A recipient that answers "no session" gets a new session, and the queue
 * is sealed in it again, at most once per
 * {@linkcode SESSION_RESTART_INTERVAL_MS}.
 * A first message whose recipient's prekeys cannot be looked up (no peer
 * answers) is kept unsealed, with an empty envelope, and sealed in a new
 * session by the delivery that finds them: never in the static envelope
 * because of an outage.
 *
 * @example
 * ```ts ignore
 * const outbox = new Outbox({ context, storage, storeOffline });
 * const message = await outbox.send(bob, utf8("hello"));
 * outbox.stop();
 * ```
 *
 * @module
 */
import { concat, constantTimeEqual } from "../platform/bytes.ts";
import { decodeUserId, verifySignature } from "../crypto/identity.ts";
import { PeerUnreachableError, ProtocolError } from "../errors.ts";
import { raceSignal as race } from "race-signal";
import type {
  ContactLookup,
  HistoryStorage,
  OutboxEntry,
  OutboxStorage,
  SessionStorage,
  StorageTransactions,
  StoredMessage,
} from "./storage.ts";
import { isUnsealed } from "./storage.ts";
import { envelopeHash } from "./mailbox.ts";
import { settlesWhenStored } from "./_receipts.ts";
import type { SessionResult } from "./sessions.ts";
import type { FlushOutboxOptions, MessageRecipient, SendOptions } from "./types.ts";
import { LINK_IDLE_MS, SEND_WINDOW, SESSION_RESTART_INTERVAL_MS } from "./constants.ts";
import type { ServiceContext } from "./_context.ts";
import { Link, Wake } from "./_link.ts";
import { Sealer } from "./_outbox_sealer.ts";
import { type FlushGroup, GroupCommit } from "./_group_commit.ts";
import { encodeFrame, type Frame, FrameType, MESSAGE_PROTOCOL, NackCode } from "./wire.ts";
import { tracePoint } from "../platform/trace.ts";

/**
 * What the outbox keeps and reads: the outbox itself, in transactions;
 * and, to seal a queue again in a new session, the queued messages, the
 * recipient's pinned key and the old sessions to drop.
 */
export interface OutboxStore extends StorageTransactions {
  /** The queue of sealed envelopes. */
  readonly outbox: OutboxStorage;
  /** The queued messages' content, to seal them again. */
  readonly messages: Pick<HistoryStorage, "get" | "setProtection">;
  /** The recipient's pinned key, to check a new prekey bundle against. */
  readonly contacts: Pick<ContactLookup, "getById">;
  /** The sessions dropped when one is restarted. */
  readonly sessions: Pick<SessionStorage, "deleteAll">;
}

/**
 * Leaves copies of envelopes in a recipient's network mailbox
 * (`MailboxClient.storeOffline`), and says for each whether a node took it.
 */
export type StoreOffline = (
  recipient: string,
  envelopes: readonly Uint8Array[],
) => Promise<boolean[]>;

/** What was stored, and the group whose flush makes it durable. */
interface Stored<T = StoredMessage> {
  readonly row: T;
  readonly group: FlushGroup;
  /** Its session's state at rest already reserves its key: it may leave before the flush. */
  readonly reserved?: boolean;
  /** Tells the session the flush is done (`SessionResult.flushed`). */
  readonly flushed?: () => void;
}

/** Sends messages and keeps them until they are acknowledged. */
export class Outbox {
  readonly #ctx: ServiceContext;
  readonly #storage: OutboxStore;
  readonly #storeOffline: StoreOffline;
  /** Messages committed but not yet flushed to disk: not sent until they are. */
  #unflushed = new Set<number>();
  /** Messages of `#unflushed` whose flush failed. */
  #heldBack = new Set<number>();
  /** Stores messages in groups that share one commit and flush. */
  readonly #commits: GroupCommit;
  /** The running deliveries, by recipient: each one's wake-up call for new messages. */
  #wakers = new Map<string, Wake>();
  /** Open streams kept between deliveries, by recipient. */
  #links = new Map<string, Link>();
  /** When a session was last restarted, by recipient. */
  #restartedAt = new Map<string, number>();
  /** Seals envelopes and frames, and seals queued messages again. */
  readonly #sealer: Sealer;

  /**
   * @param deps The service's shared context; the storage; and
   *   `storeOffline`, which leaves copies of envelopes in a recipient's
   *   network mailbox and says which took.
   */
  constructor(deps: {
    readonly context: ServiceContext;
    readonly storage: OutboxStore;
    readonly storeOffline: StoreOffline;
  }) {
    this.#ctx = deps.context;
    this.#storage = deps.storage;
    this.#storeOffline = deps.storeOffline;
    this.#sealer = new Sealer(deps.context, deps.storage);
    this.#commits = new GroupCommit(deps.storage, () => deps.context.sessions);
  }

  /** Closes the streams kept for the next messages (the service is stopping). */
  stop(): void {
    for (const link of this.#links.values()) link.dispose();
    this.#links.clear();
  }

  /**
   * Seals `body` for a recipient, stores it in the history and the outbox,
   * and starts delivering it.
   *
   * @param recipient The recipient's user ID and X25519 key.
   * @param body The message body.
   * @param options `contentType` (default 1, UTF-8 text); `signal`, which
   *   gives up before the message is stored.
   * @returns The stored message (state "pending").
   * @throws {unknown} The signal's reason if it aborts before the message is stored.
   */
  async send(
    recipient: MessageRecipient,
    body: Uint8Array,
    options: SendOptions = {},
  ): Promise<StoredMessage> {
    tracePoint("send: called");
    const contentType = options.contentType ?? 1;
    const caller = options.signal;
    const seal = async (
      sealed: SessionResult,
      id: Uint8Array,
      now: number,
    ): Promise<Stored> => {
      tracePoint("send: encrypted");
      const { envelope, hash } = await this.#sealer.seal(recipient, sealed, id, now);
      // The session state is saved with the outbox entry, before anything is
      // sent. The commit is deferred and made and flushed after the lock is
      // released (below), so messages sent together share one commit and flush.
      return this.#store(() => {
        sealed.save();
        return this.#storage.outbox.enqueue(
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
      }, sealed);
    };
    const sessions = this.#ctx.sessions;
    let row: Stored;
    if (sessions === undefined) {
      caller?.throwIfAborted();
      row = await seal(
        { contentType, body, protection: "static", save: () => {} },
        crypto.getRandomValues(new Uint8Array(16)),
        this.#ctx.clock(),
      );
    } else {
      // A first message needs the recipient's prekeys from the network:
      // looked up before taking the lock, which every other message waits for.
      row = await this.#ctx.within(this.#ctx.options.attemptTimeoutMs, caller, async (signal) => {
        let bundle: Awaited<ReturnType<typeof sessions.prepare>>;
        try {
          bundle = await sessions.prepare(recipient.userId, { signal });
        } catch (err) {
          // No peer answers the prekey lookup: the message waits, unsealed,
          // and is sealed when the network is back (never in the static
          // envelope for want of a lookup).
          if (!(err instanceof PeerUnreachableError) || caller?.aborted) throw err;
          return this.#queueUnsealed(recipient.userId, contentType, body);
        }
        return await sessions.lock(async () => {
          // A lookup the caller cut short found nothing: that must not
          // send the message in the static envelope.
          caller?.throwIfAborted();
          const id = crypto.getRandomValues(new Uint8Array(16));
          const timestamp = this.#ctx.clock();
          const sealed = await sessions.encrypt(
            { ...recipient, signingPublicKey: decodeUserId(recipient.userId) },
            contentType,
            body,
            bundle === undefined ? { signal, id, timestamp } : { signal, bundle, id, timestamp },
          );
          if (caller?.aborted) {
            sealed.ready?.catch(() => {});
            caller.throwIfAborted();
          }
          return seal(sealed, id, timestamp);
        });
      });
    }
    return await this.#queued(recipient.userId, row);
  }

  /**
   * Stores messages in the outbox in a transaction deferred to the next
   * flush (the current group's), and holds them back from delivery until it.
   */
  #store<T extends StoredMessage | StoredMessage[] = StoredMessage>(
    fn: () => T,
    sealed?: Pick<SessionResult, "reserved" | "flushed">,
  ): Stored<T> {
    const reserved = sealed?.reserved === true;
    const { value: row, group } = this.#commits.store(fn, reserved);
    // In the same synchronous block as the commit: a delivery that runs
    // before the flush must not send it (a crash would roll the ratchet
    // back), unless its key is reserved in a state already flushed.
    if (!reserved) {
      for (const r of Array.isArray(row) ? row : [row]) this.#unflushed.add(r.seq);
    }
    return { row, group, reserved, ...(sealed?.flushed ? { flushed: sealed.flushed } : {}) };
  }

  /** Queues wraps as envelopes, one transaction and flush; see `MessagingService.sendWrapped`. */
  async sendWrapped(
    wraps: readonly { readonly recipient: MessageRecipient; readonly wrap: Uint8Array }[],
    body: Uint8Array,
    contentType: number,
  ): Promise<StoredMessage[]> {
    const now = this.#ctx.clock();
    const hashes = await Promise.all(wraps.map(({ wrap }) => envelopeHash(wrap)));
    const { row: rows, group } = this.#store(
      () =>
        wraps.map(({ recipient, wrap }, i) =>
          this.#storage.outbox.enqueue(
            {
              id: crypto.getRandomValues(new Uint8Array(16)),
              peer: recipient.userId,
              sentAt: now,
              receivedAt: now,
              contentType,
              body,
              protection: "ratchet",
            },
            wrap,
            hashes[i]!,
          )
        ),
    );
    return await Promise.all(
      rows.map((row, i) => this.#queued(wraps[i]!.recipient.userId, { row, group })),
    );
  }

  /**
   * Flushes a stored message (durable before the caller hears of it) and
   * starts its delivery: after the flush, or at once if its key is reserved.
   */
  async #queued(recipient: string, stored: Stored): Promise<StoredMessage> {
    const { row, group, reserved } = stored;
    const flushed = this.#commits.flushed(group);
    // Only this conversation: the periodic scan looks after the others.
    // A reserved key's message leaves once committed, while the flush runs.
    if (reserved) {
      group.committed.then(() => {
        tracePoint("send: committed");
        this.#ctx.track(this.#deliver(recipient));
      }, () => {});
    }
    try {
      await flushed;
    } catch (err) {
      // Perhaps committed, but not known to be on disk: held back from
      // delivery until a later flush succeeds (`flush()` tries one).
      if (!reserved) this.#heldBack.add(row.seq);
      throw err;
    }
    stored.flushed?.();
    if (!reserved) tracePoint("send: committed and flushed");
    this.#unflushed.delete(row.seq);
    if (!reserved) this.#ctx.track(this.#deliver(recipient));
    return row;
  }

  /**
   * Stores a message that cannot be sealed yet in the history and the
   * outbox, with an empty envelope and a random placeholder hash (which no
   * acknowledgement can sign); `Sealer.sealQueued` seals it before it is sent.
   */
  #queueUnsealed(
    recipient: string,
    contentType: number,
    body: Uint8Array,
  ): Stored {
    const now = this.#ctx.clock();
    const message = {
      id: crypto.getRandomValues(new Uint8Array(16)),
      peer: recipient,
      sentAt: now,
      receivedAt: now,
      contentType,
      body,
      // What it will have, unless the recipient turns out to publish no prekeys.
      protection: "ratchet" as const,
    };
    const placeholder = crypto.getRandomValues(new Uint8Array(32));
    return this.#store(() => this.#storage.outbox.enqueue(message, new Uint8Array(0), placeholder));
  }

  /**
   * Tries every outbox entry that is due now: one worker per conversation
   * sends its queue in order over one stream.
   *
   * @param options `signal`: stops waiting; the attempts go on. `all`: try
   *   every queued conversation now, backoff or not.
   * @returns When the attempts have finished.
   * @throws {unknown} The signal's reason if it aborts first.
   */
  async flush(options: FlushOutboxOptions = {}): Promise<void> {
    if (!this.#ctx.running) return;
    this.#releaseHeldBack();
    if (options.all === true) this.#storage.outbox.retryNow(this.#ctx.clock());
    const due = this.#storage.outbox.due(this.#ctx.clock());
    const attempts = Promise.all(due.map(({ recipient }) => this.#deliver(recipient)));
    if (options.signal === undefined) {
      await attempts;
      return;
    }
    // The caller may stop waiting: the service still waits for these when it stops.
    this.#ctx.track(attempts);
    await race(attempts, options.signal);
  }

  /** Flushes again for messages whose flush failed; once it succeeds, they may leave. */
  #releaseHeldBack(): void {
    if (this.#heldBack.size === 0) return;
    try {
      this.#storage.sync();
    } catch {
      return; // Still held back: tried again at the next scan.
    }
    for (const seq of this.#heldBack) this.#unflushed.delete(seq);
    this.#heldBack.clear();
  }

  /**
   * Starts delivering one conversation, or wakes its running delivery, which
   * then picks new messages up itself.
   */
  async #deliver(recipient: string): Promise<void> {
    if (!this.#ctx.running) return;
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
      if (wake.requested) this.#ctx.track(this.#deliver(recipient));
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
      if (!this.#ctx.running) {
        link?.dispose();
        return;
      }
      const room = SEND_WINDOW - sent.length;
      const next = room > 0 ? this.#storage.outbox.after(recipient, last, room) : [];
      // Nothing leaves before its flush; the order stops at the first that waits.
      const waiting = next.findIndex((e) => this.#unflushed.has(e.messageSeq));
      if (waiting >= 0) next.length = waiting;
      if (sent.length === 0 && (next.length === 0 || next[0]!.nextAttemptAt > this.#ctx.clock())) {
        if (link !== undefined) this.#park(recipient, link);
        return;
      }
      if (sent.length === 0) progressAt = performance.now();
      const left = progressAt + this.#ctx.options.attemptTimeoutMs - performance.now();
      const signal = this.#ctx.signal(Math.max(0, left));
      try {
        if (next.some(isUnsealed)) {
          await this.#sealer.sealQueued(recipient, signal);
          continue;
        }
        if (next.length > 0) {
          if (link === undefined) {
            const target = await this.#ctx.resolve(recipient, { signal });
            const stream = await this.#ctx.transport.openStream(target, MESSAGE_PROTOCOL, {
              signal,
            });
            link = new Link(stream, this.#ctx.streams);
          }
          sent = sent.concat(next);
          last = next[next.length - 1]!.messageSeq;
          const frames = next.map((e) =>
            encodeFrame({ type: FrameType.Envelope, envelope: e.envelope })
          );
          // One write for all: one stream frame and one encryption, not one per message.
          tracePoint("send: written to the stream");
          if (!link.stream.send(frames.length === 1 ? frames[0]! : concat(...frames))) {
            await link.stream.onDrain({ signal });
          }
        }
        // The first reply, or a new message to send meanwhile.
        await race(Promise.race([link!.replies.ready(), wake.wait()]), signal);
        const replies = link!.replies.take(sent.length);
        tracePoint("send: acknowledgements read");
        if (replies.length === 0) {
          if (!link!.replies.done) continue;
          // A recipient may end a long-used stream (it caps frames per
          // stream): after answering some, that is no failure, and the rest
          // go again on a new stream.
          if (link!.acknowledged > 0 && this.#ctx.running) {
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
        if (retry && this.#ctx.running) {
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
   * message IDs, so nothing is shown twice). Only for a recipient whose key
   * is pinned (a contact, or a member of a group joined now, who may have
   * refused a first message whose one-time prekey another member used
   * first), and only with a fresh prekey bundle whose keys are the pinned
   * ones: a session is never downgraded to the
   * static envelope. If the refused session was ours, unanswered, and the
   * bundle still lists the one-time prekey it used (a stranger may have
   * used it first), the new one uses none, so it cannot be refused the same
   * way. At most once a minute per recipient, so a recipient
   * that keeps refusing cannot make the sender re-key in a loop.
   *
   * @returns Whether the queue was sealed again.
   */
  async #restartSession(recipient: string): Promise<boolean> {
    const sessions = this.#ctx.sessions;
    // A contact's pinned key, or a group member's (the signed membership pins it).
    const pinned = this.#storage.contacts.getById(recipient)?.encryptionPublicKey ??
      this.#ctx.knownKey(recipient);
    const now = this.#ctx.clock();
    const last = this.#restartedAt.get(recipient);
    if (sessions === undefined || pinned === undefined || !this.#ctx.running) return false;
    if (last !== undefined && now - last < SESSION_RESTART_INTERVAL_MS) return false;
    this.#restartedAt.set(recipient, now);
    const signal = this.#ctx.signal(this.#ctx.options.attemptTimeoutMs);
    const peer = {
      userId: recipient,
      signingPublicKey: decodeUserId(recipient),
      encryptionPublicKey: pinned,
    };
    try {
      const bundle = await sessions.lookupBundle(recipient, { signal });
      if (
        bundle === undefined ||
        !constantTimeEqual(bundle.signingPublicKey, peer.signingPublicKey) ||
        !constantTimeEqual(bundle.encryptionPublicKey, peer.encryptionPublicKey)
      ) return false;
      await sessions.lock(async () => {
        // Our first message may have named a prekey someone used first.
        const oneTimePrekeyId = sessions.retryPrekeyChoice(recipient, bundle);
        this.#storage.transaction(() => this.#storage.sessions.deleteAll(recipient), {
          durable: false,
        });
        const queue = this.#storage.outbox.list().filter((e) => e.recipient === recipient);
        await this.#sealer.reseal(peer, queue, { signal, bundle, oneTimePrekeyId }, (sealed) => {
          if (sealed.protection !== "ratchet") {
            throw new ProtocolError("Cannot restart session: no prekeys to start it with");
          }
        });
      });
      return true;
    } catch (err) {
      this.#ctx.onPeerError(err);
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
    const delivered = this.#storage.transaction(
      () =>
        acks.slice(0, done).map(({ entry }) =>
          this.#storage.outbox.markDelivered(recipient, entry.envelopeHash)
        ),
      // Lost in a crash, a mark costs one more delivery, which the recipient
      // deduplicates: its commit may wait for the next one.
      { durable: false, deferred: {} },
    );
    tracePoint("send: acknowledgements checked, marked delivered");
    for (const seq of delivered) {
      if (seq !== undefined) this.#ctx.emit({ type: "delivered", seq, recipient });
    }
    this.#sealer.answered(recipient, acks.slice(0, done).map(({ entry }) => entry.envelopeHash));
    return { done, failure };
  }

  /** Keeps an idle stream for the conversation's next message, for a while. */
  #park(recipient: string, link: Link): void {
    if (!this.#ctx.running || link.replies.done || link.replies.size > 0) {
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
    if (!this.#ctx.running) return;
    const message = error instanceof Error ? error.message : String(error);
    const backoff = Math.min(
      this.#ctx.options.retryMaxMs,
      this.#ctx.options.retryBaseMs * 2 ** head.attempts,
    );
    const jitter = 0.5 + Math.random();
    this.#storage.outbox.defer(
      head.messageSeq,
      this.#ctx.clock() + Math.round(backoff * jitter),
      message,
    );
    const unmailed = this.#storage.outbox.list().filter((e) =>
      e.recipient === recipient && !e.storedOffline && !isUnsealed(e)
    );
    if (unmailed.length === 0) return;
    try {
      this.#storage.sync();
      const stored = await this.#storeOffline(recipient, unmailed.map((e) => e.envelope));
      const at = this.#ctx.clock();
      unmailed.forEach((e, i) => {
        if (!stored[i]) return;
        this.#storage.outbox.markStoredOffline(e.messageSeq, at);
        // A receipt that wants no acknowledgement is done once a node holds it.
        const message = this.#storage.messages.get(e.messageSeq);
        if (message !== undefined && settlesWhenStored(message)) {
          this.#storage.outbox.markDelivered(recipient, e.envelopeHash);
        }
        this.#ctx.emit({ type: "stored", seq: e.messageSeq, recipient });
      });
    } catch (err) {
      this.#ctx.onPeerError(err);
    }
  }

  /**
   * Takes a receipt (a recipient's signed acknowledgement that came another
   * way, after a mailbox fetch): marks its message delivered if the
   * signature is the recipient's.
   *
   * @param hash SHA-256 of the envelope.
   * @param signature The recipient's signature over it.
   */
  async acknowledgeReceipt(hash: Uint8Array, signature: Uint8Array): Promise<void> {
    // A lookup by the indexed hash: receipts are rate-limited, but each one
    // must not cost a scan of the whole outbox.
    const recipient = this.#storage.outbox.recipientOf(hash);
    if (recipient !== undefined) await this.#acknowledge(recipient, hash, signature);
  }

  /**
   * Takes a sealed receipt (its envelope verified as the recipient's): marks
   * delivered the messages to `recipient` whose envelopes it names.
   *
   * @param recipient The receipt's verified sender.
   * @param hashes SHA-256 of each envelope it names.
   */
  acknowledgeHashes(recipient: string, hashes: readonly Uint8Array[]): void {
    const seqs = this.#storage.transaction(
      () => hashes.map((hash) => this.#storage.outbox.markDelivered(recipient, hash)),
      { durable: false },
    );
    for (const seq of seqs) {
      if (seq !== undefined) this.#ctx.emit({ type: "delivered", seq, recipient });
    }
    this.#sealer.answered(recipient, hashes);
  }

  /** Verifies a receipt and marks the message delivered. */
  async #acknowledge(recipient: string, hash: Uint8Array, signature: Uint8Array): Promise<boolean> {
    const key = decodeUserId(recipient);
    if (!(await verifySignature("ack", key, hash, signature))) return false;
    const seq = this.#storage.transaction(
      () => this.#storage.outbox.markDelivered(recipient, hash),
      {
        durable: false,
      },
    );
    if (seq !== undefined) this.#ctx.emit({ type: "delivered", seq, recipient });
    this.#sealer.answered(recipient, [hash]);
    return true;
  }
}

/** The recipient could not decrypt in its sessions (`NACK` code NoSession). */
class NoSessionError extends ProtocolError {
  constructor() {
    super("Cannot deliver: the recipient has no session for this message");
  }
}
