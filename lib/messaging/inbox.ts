/**
 * The inbox: serves `/dim/msg/1.0.0`, through which other users deliver
 * their messages to this one, and stores what arrives.
 *
 * Frames are read ahead, up to {@linkcode RECEIVE_BATCH} at a time. The
 * envelopes that arrived together are opened (signature, HPKE) in
 * parallel, decrypted in their sessions and stored in order, each with its
 * new session state in one transaction, then made durable with one flush;
 * only then are their acknowledgements (signed while the rest went on)
 * written back, in order, in one write. Envelopes are deduplicated by
 * (sender, message ID), which is persistent: a replay is acknowledged
 * again, never stored twice. An envelope that does not open is refused
 * with NACK "unreadable"; one that opens but does not decrypt in any
 * session with NACK "no session", so its sender starts a new session.
 * Opening checks that the envelope names this user's own identity (see
 * envelope.ts): one sealed for another user, even to the same X25519 key,
 * is unreadable. An envelope of an older version is unreadable too, and
 * its {@linkcode OutdatedVersionError} goes to `onPeerError`, which says
 * the sender runs an older DIM.
 * Each peer's envelopes and receipts are rate-limited, and a stream ends
 * after {@linkcode MAX_FRAMES_PER_STREAM} frames or a silence.
 *
 * The mailbox client stores what it fetches through
 * {@linkcode Inbox.receive}, so both paths store alike.
 *
 * @example
 * ```ts ignore
 * const inbox = new Inbox({ context, storage, onReceipt: (h, s) => outbox.acknowledgeReceipt(h, s) });
 * await transport.handle(MESSAGE_PROTOCOL, (stream, peer) => context.track(inbox.serve(stream, peer)));
 * ```
 *
 * @module
 */
import { concat } from "../platform/bytes.ts";
import { type OpenedEnvelope, openEnvelope } from "../crypto/envelope.ts";
import {
  DecryptionError,
  OutdatedVersionError,
  PeerUnreachableError,
  ProtocolError,
} from "../errors.ts";
import { raceSignal as race } from "race-signal";
import type { ContactLookup, HistoryStorage, StorageTransactions } from "./storage.ts";
import { envelopeHash, type MessageStream, RateLimiter } from "./mailbox.ts";
import type { SessionResult } from "./sessions.ts";
import type { IncomingMessage } from "./types.ts";
import { MAX_FRAMES_PER_STREAM, RECEIVE_BATCH } from "./constants.ts";
import type { ServiceContext } from "./_context.ts";
import { encodeFrame, type Frame, FrameQueue, FrameType, NackCode } from "./wire.ts";

/** What the inbox keeps and reads: the history, in transactions, and the contacts. */
export interface InboxStore extends StorageTransactions {
  /** Where received messages are stored and deduplicated. */
  readonly messages: Pick<HistoryStorage, "insertIncoming" | "hasIncoming">;
  /** The senders' pinned keys; a contact's last contact time. */
  readonly contacts: ContactLookup;
}

/** Receives, verifies, deduplicates and stores incoming messages. */
export class Inbox {
  readonly #ctx: ServiceContext;
  readonly #storage: InboxStore;
  readonly #onReceipt: (hash: Uint8Array, signature: Uint8Array) => Promise<void>;
  readonly #rate: RateLimiter;

  /**
   * @param deps The service's shared context; the storage; and
   *   `onReceipt`, which takes a recipient's receipt for a message this
   *   user sent.
   */
  constructor(deps: {
    readonly context: ServiceContext;
    readonly storage: InboxStore;
    readonly onReceipt: (hash: Uint8Array, signature: Uint8Array) => Promise<void>;
  }) {
    this.#ctx = deps.context;
    this.#storage = deps.storage;
    this.#onReceipt = deps.onReceipt;
    const { rateBurst, ratePerSecond } = deps.context.options;
    this.#rate = new RateLimiter(rateBurst, ratePerSecond);
  }

  /**
   * Opens, verifies and stores one envelope from the mailbox. The commit is
   * not flushed: call `sync()` on the storage before acknowledging it.
   *
   * @param envelope The sealed envelope.
   * @returns The new message; `"duplicate"` if it was stored before;
   *   `"unreadable"` if it does not open or decrypt (it must not be
   *   acknowledged: the sender would take it as delivered).
   */
  async receive(envelope: Uint8Array): Promise<IncomingMessage | "duplicate" | "unreadable"> {
    try {
      const opened = await openEnvelope(this.#ctx.identity, envelope);
      return await this.#accept(opened, "mailbox") ?? "duplicate";
    } catch (err) {
      if (!(err instanceof DecryptionError)) throw err;
      if (err instanceof OutdatedVersionError) this.#ctx.onPeerError(err);
      return "unreadable";
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
    const now = this.#ctx.clock();
    const sender = opened.senderId;
    // A replay is acknowledged again without touching the session.
    if (this.#storage.messages.hasIncoming(sender, opened.id)) return undefined;
    const store = (content: SessionResult) =>
      this.#storage.transaction(() => {
        const message = this.#storage.messages.insertIncoming({
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
        this.#storage.contacts.touch(sender, now);
        return message;
      }, { durable: false });
    const sessions = this.#ctx.sessions;
    const message = sessions === undefined
      ? store({ ...opened, protection: "static", save: () => {} })
      : await sessions.lock(async () =>
        store(
          await sessions.decrypt(
            {
              userId: sender,
              signingPublicKey: opened.senderSigningKey,
              encryptionPublicKey: this.#storage.contacts.getById(sender)?.encryptionPublicKey,
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
    const signature = await this.#ctx.identity.sign("ack", hash);
    return { type: FrameType.Ack, envelopeHash: hash, signature };
  }

  /**
   * Serves one inbound `/dim/msg/1.0.0` stream until it ends, goes silent
   * or reaches its frame limit.
   *
   * @param stream The stream.
   * @param remotePeer The peer that opened it.
   */
  async serve(stream: MessageStream, remotePeer: string): Promise<void> {
    this.#ctx.streams.add(stream);
    const queue = new FrameQueue(stream, { capacity: RECEIVE_BATCH });
    try {
      for (let count = 0; count < MAX_FRAMES_PER_STREAM && this.#ctx.running;) {
        await race(queue.ready(), this.#ctx.signal(this.#ctx.options.idleTimeoutMs));
        const frames = queue.take(Math.min(RECEIVE_BATCH, MAX_FRAMES_PER_STREAM - count));
        if (frames.length === 0) break;
        count += frames.length;
        await this.#answer(stream, remotePeer, frames);
      }
      await stream.close({ signal: this.#ctx.signal(this.#ctx.options.idleTimeoutMs) }).catch(
        () => {},
      );
    } catch (err) {
      stream.abort(err instanceof Error ? err : new Error(String(err)));
      if (!(err instanceof PeerUnreachableError)) this.#ctx.onPeerError(err);
    } finally {
      this.#ctx.streams.delete(stream);
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
    const allowed = frames.map(() => this.#rate.take(remotePeer, this.#ctx.clock()));
    const opening = frames.map((frame, i) =>
      frame.type === FrameType.Envelope && allowed[i]
        ? openEnvelope(this.#ctx.identity, frame.envelope).then(
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
        if (allowed[i]) await this.#onReceipt(frame.envelopeHash, frame.signature);
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
        if (result.error instanceof OutdatedVersionError) this.#ctx.onPeerError(result.error);
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
      this.#storage.sync();
      const encoded = await Promise.all(
        replies.map(async (reply) => encodeFrame("ack" in reply ? await reply.ack : reply)),
      );
      if (!stream.send(encoded.length === 1 ? encoded[0]! : concat(...encoded))) {
        await stream.onDrain({ signal: this.#ctx.signal(this.#ctx.options.idleTimeoutMs) });
      }
    }
    for (const message of incoming) this.#ctx.emit({ type: "message", incoming: message });
  }
}
