/**
 * The inbox: serves `/dim/msg/1.0.0`, through which other users deliver
 * their messages to this one, and stores what arrives.
 *
 * Frames are read ahead, up to {@linkcode RECEIVE_BATCH} at a time. The
 * envelopes that arrived together are opened (signature, HPKE) in
 * parallel, decrypted in their sessions and stored in order, each with its
 * new session state (all of it or none), the whole batch deferred to one
 * commit, which is made and flushed once after the last
 * (`TransactionOptions.deferred`); only then are their acknowledgements
 * (signed while the rest went on) written back, in order, in one write. A
 * message that does not decrypt stores nothing and leaves the others as
 * they are; a crash before the commit loses only messages not yet
 * acknowledged. Envelopes are deduplicated by
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
 * Before an envelope opens, its sender is only a free peer ID on some IP
 * address, so what a stranger can make the node spend is bounded
 * ({@linkcode InboxLimits}): the bytes read ahead, per stream, per IP
 * address and for the whole node, each frame's length reserved before its
 * body is read (past them, reading stops and the muxer's flow control
 * holds the sender); the streams open at once, per peer and per IP; and
 * the envelopes opened, per peer and then per IP, so new peer IDs from
 * one address share that address's bucket. Only an envelope that opens
 * is hashed and gets a signed acknowledgement; junk gets an unsigned NACK.
 *
 * A wrap (a group message sealed for this user alone, `lib/group/wire.ts`)
 * travels as an envelope does; the context's `openWrap` recognizes it
 * first, by a tag of this user's keys, with no trial decryption, and it is
 * stored as it comes, outside the pairwise sessions (the group layer checks
 * its sender's signature). A session frame (its first byte, see
 * `_session_frame.ts`) is decrypted in the session its tag names, with no
 * envelope to open: its sender is that session's peer, a tag no session
 * has is refused at once (NACK "no session", as its sender may have a
 * session this user lost), and a copy of a stored message is recognized
 * by its ID in the sealed header and acknowledged again. Its
 * acknowledgement is signed once it has decrypted. Anything else is opened
 * as an envelope.
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
import { MAX_ENVELOPE_LENGTH, type OpenedEnvelope, openEnvelope } from "../crypto/envelope.ts";
import { decodeUserId } from "../crypto/identity.ts";
import { SESSION_FRAME_KIND } from "./_session_frame.ts";
import {
  DecryptionError,
  OutdatedVersionError,
  PeerUnreachableError,
  ProtocolError,
} from "../errors.ts";
import { raceSignal as race } from "race-signal";
import { ipOf, ipToBytes } from "../dht/public_networks.ts";
import type {
  ContactLookup,
  DeferredCommits,
  HistoryStorage,
  StorageTransactions,
  StoredMessage,
} from "./storage.ts";
import { envelopeHash, type MessageStream, RateLimiter } from "./mailbox.ts";
import type { SessionResult } from "./sessions.ts";
import type { IncomingMessage } from "./types.ts";
import {
  DEFAULT_IP_MESSAGE_BURST,
  DEFAULT_IP_MESSAGES_PER_SECOND,
  DEFAULT_IP_READ_AHEAD_BYTES,
  DEFAULT_NODE_READ_AHEAD_BYTES,
  DEFAULT_STREAM_READ_AHEAD_BYTES,
  DEFAULT_STREAMS_PER_IP,
  DEFAULT_STREAMS_PER_PEER,
  MAX_FRAMES_PER_STREAM,
  RECEIVE_BATCH,
} from "./constants.ts";
import type { ServiceContext } from "./_context.ts";
import { ByteBudget } from "./framing.ts";
import { encodeFrame, type Frame, FrameQueue, FrameType, NackCode } from "./wire.ts";
import { tracePoint } from "../platform/trace.ts";

/**
 * What the inbox lets a peer cost it before any envelope of the peer's has
 * opened. The defaults, and the reasons for them, are in `constants.ts`.
 */
export interface InboxLimits {
  /** Bytes of frames one stream may hold read ahead of its answers. Default 1 MiB. */
  readonly streamReadAheadBytes: number;
  /** Bytes read ahead on all streams from one IP address (IPv6: one /64). Default 8 MiB. */
  readonly ipReadAheadBytes: number;
  /** Bytes read ahead on all inbound message streams. Default 32 MiB. */
  readonly nodeReadAheadBytes: number;
  /** Inbound message streams one peer may have open at once. Default 8. */
  readonly streamsPerPeer: number;
  /** Inbound message streams all peers at one IP address may have open at once. Default 64. */
  readonly streamsPerIp: number;
  /** Envelopes and receipts accepted from one IP address at once. Default 4000. */
  readonly ipRateBurst: number;
  /** Envelopes and receipts accepted from one IP address per second after the burst. Default 2000. */
  readonly ipRatePerSecond: number;
}

/** The default {@linkcode InboxLimits}. */
export const DEFAULT_INBOX_LIMITS: InboxLimits = Object.freeze({
  streamReadAheadBytes: DEFAULT_STREAM_READ_AHEAD_BYTES,
  ipReadAheadBytes: DEFAULT_IP_READ_AHEAD_BYTES,
  nodeReadAheadBytes: DEFAULT_NODE_READ_AHEAD_BYTES,
  streamsPerPeer: DEFAULT_STREAMS_PER_PEER,
  streamsPerIp: DEFAULT_STREAMS_PER_IP,
  ipRateBurst: DEFAULT_IP_MESSAGE_BURST,
  ipRatePerSecond: DEFAULT_IP_MESSAGES_PER_SECOND,
});

/** The largest frame a message stream carries: an envelope of the largest size. */
const MAX_MESSAGE_FRAME_LENGTH = 1 + MAX_ENVELOPE_LENGTH;

/**
 * The key an address is limited under: the IPv4 address, or the /64 of an
 * IPv6 address (one subscriber's usual allotment); `undefined` for a
 * relayed or unknown address (its relay limits it).
 */
function ipKey(remoteAddress: string | undefined): string | undefined {
  const ip = remoteAddress === undefined ? undefined : ipOf(remoteAddress);
  if (ip === undefined) return undefined;
  const bytes = ipToBytes(ip);
  if (bytes.length !== 16) return ip;
  return `${Array.from(bytes.subarray(0, 8), (b) => b.toString(16).padStart(2, "0")).join("")}/64`;
}

/** The inbound message streams of one IP address, and the bytes they hold. */
interface IpState {
  streams: number;
  readonly budget: ByteBudget;
}

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
  readonly #ipRate: RateLimiter;
  readonly #limits: InboxLimits;
  readonly #nodeBytes: ByteBudget;
  readonly #peerStreams = new Map<string, number>();
  readonly #ips = new Map<string, IpState>();

  /**
   * @param deps The service's shared context; the storage; `onReceipt`,
   *   which takes a recipient's receipt for a message this user sent; and
   *   `limits`, what a peer may cost before it is known (defaults in
   *   {@linkcode DEFAULT_INBOX_LIMITS}).
   */
  constructor(deps: {
    readonly context: ServiceContext;
    readonly storage: InboxStore;
    readonly onReceipt: (hash: Uint8Array, signature: Uint8Array) => Promise<void>;
    readonly limits?: Partial<InboxLimits> | undefined;
  }) {
    this.#ctx = deps.context;
    this.#storage = deps.storage;
    this.#onReceipt = deps.onReceipt;
    const { rateBurst, ratePerSecond } = deps.context.options;
    this.#rate = new RateLimiter(rateBurst, ratePerSecond);
    const limits = { ...DEFAULT_INBOX_LIMITS, ...deps.limits };
    this.#limits = limits;
    this.#ipRate = new RateLimiter(limits.ipRateBurst, limits.ipRatePerSecond);
    this.#nodeBytes = new ByteBudget(limits.nodeReadAheadBytes);
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
      const opened = await this.#open(envelope);
      if (opened === "frame") return await this.#acceptFrame(envelope, "mailbox") ?? "duplicate";
      return await this.#accept(opened.opened, "mailbox", opened.wrapped) ?? "duplicate";
    } catch (err) {
      if (!(err instanceof DecryptionError)) throw err;
      if (err instanceof OutdatedVersionError) this.#ctx.onPeerError(err);
      return "unreadable";
    }
  }

  /**
   * A wrap if `openWrap` knows it (its tag), `"frame"` for a session frame
   * (decrypted later, in its session), otherwise an envelope.
   */
  async #open(bytes: Uint8Array): Promise<{ opened: OpenedEnvelope; wrapped: boolean } | "frame"> {
    if (bytes[0] === SESSION_FRAME_KIND) return "frame";
    const wrap = this.#ctx.openWrap(bytes);
    if (wrap !== undefined) return { opened: wrap, wrapped: true };
    return { opened: await openEnvelope(this.#ctx.identity, bytes), wrapped: false };
  }

  /**
   * Decrypts an opened envelope in its session (a wrap needs none) and
   * stores it, without a flush of the commit.
   *
   * @returns The new message, or `undefined` if it was a duplicate.
   * @throws {DecryptionError} If it does not decrypt in its session.
   */
  async #accept(
    opened: OpenedEnvelope,
    via: string,
    wrapped = false,
    deferred?: DeferredCommits,
  ): Promise<IncomingMessage | undefined> {
    const sender = opened.senderId;
    // A replay is acknowledged again without touching the session.
    if (this.#storage.messages.hasIncoming(sender, opened.id)) return undefined;
    const store = (content: SessionResult) =>
      this.#store(sender, opened.id, opened.timestamp, content, via, deferred);
    const sessions = this.#ctx.sessions;
    const message = wrapped
      ? store({ ...opened, protection: "ratchet", save: () => {} })
      : sessions === undefined
      ? store({ ...opened, protection: "static", save: () => {} })
      : await sessions.lock(async () =>
        store(
          await sessions.decrypt(
            {
              userId: sender,
              signingPublicKey: opened.senderSigningKey,
              encryptionPublicKey: this.#storage.contacts.getById(sender)?.encryptionPublicKey ??
                this.#ctx.knownKey(sender),
            },
            opened.contentType,
            opened.body,
          ),
        )
      );
    if (message === undefined) return undefined;
    return { message, senderSigningKey: opened.senderSigningKey };
  }

  /**
   * Stores a decrypted message with its session's new state, in one
   * transaction without a flush; with `deferred`, the commit waits for the
   * batch's `sync(deferred)`.
   *
   * @returns The new message, or `undefined` if it was a duplicate.
   */
  #store(
    sender: string,
    id: Uint8Array,
    sentAt: number,
    content: SessionResult,
    via: string,
    deferred?: DeferredCommits,
  ): StoredMessage | undefined {
    const now = this.#ctx.clock();
    return this.#storage.transaction(() => {
      const message = this.#storage.messages.insertIncoming({
        id,
        peer: sender,
        sentAt,
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
    }, deferred === undefined ? { durable: false } : { durable: false, deferred });
  }

  /**
   * Decrypts a session frame in the session its tag names and stores it,
   * without a flush of the commit.
   *
   * @returns The new message, or `undefined` if it was a copy of a stored one.
   * @throws {DecryptionError} If no session has its tag or it does not decrypt.
   */
  async #acceptFrame(
    frame: Uint8Array,
    via: string,
    deferred?: DeferredCommits,
  ): Promise<IncomingMessage | undefined> {
    const sessions = this.#ctx.sessions;
    if (sessions === undefined) throw new DecryptionError();
    const message = await sessions.lock(async () => {
      const result = await sessions.decryptFrame(
        frame,
        (peer, id) => this.#storage.messages.hasIncoming(peer, id),
      );
      if (result.duplicate) return undefined;
      return this.#store(result.peer, result.id, result.timestamp, result, via, deferred);
    });
    if (message === undefined) return undefined;
    return { message, senderSigningKey: decodeUserId(message.peer) };
  }

  /**
   * Counts a new stream against its peer's and its IP's caps.
   *
   * @returns The stream's IP state (`null` if its IP is unknown), or
   *   `undefined` if a cap is reached and the stream is refused.
   */
  #admit(remotePeer: string, ip: string | undefined): IpState | null | undefined {
    const { streamsPerPeer, streamsPerIp, ipReadAheadBytes } = this.#limits;
    const peerStreams = this.#peerStreams.get(remotePeer) ?? 0;
    let state = ip === undefined ? null : this.#ips.get(ip);
    if (peerStreams >= streamsPerPeer || (state != null && state.streams >= streamsPerIp)) {
      return undefined;
    }
    this.#peerStreams.set(remotePeer, peerStreams + 1);
    if (ip !== undefined && state === undefined) {
      state = { streams: 0, budget: new ByteBudget(ipReadAheadBytes) };
      this.#ips.set(ip, state);
    }
    if (state != null) state.streams++;
    return state ?? null;
  }

  #leave(remotePeer: string, ip: string | undefined, state: IpState | null): void {
    const left = (this.#peerStreams.get(remotePeer) ?? 1) - 1;
    if (left > 0) this.#peerStreams.set(remotePeer, left);
    else this.#peerStreams.delete(remotePeer);
    if (state !== null && --state.streams === 0 && ip !== undefined) this.#ips.delete(ip);
  }

  /** Whether one more envelope or receipt from this peer and IP may be handled. */
  #allow(remotePeer: string, ip: string | undefined, now: number): boolean {
    // The peer's own bucket first: a flooding peer spends its own tokens,
    // not its neighbours' share of the IP's.
    if (!this.#rate.has(remotePeer, now)) return false;
    if (ip !== undefined && !this.#ipRate.take(ip, now)) return false;
    return this.#rate.take(remotePeer, now);
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
   * A stream over its peer's or its IP's cap on open streams is reset at
   * once.
   *
   * @param stream The stream.
   * @param remotePeer The peer that opened it.
   * @param remoteAddress The connection's remote multiaddr, if known: its
   *   IP address is limited as a whole.
   */
  async serve(stream: MessageStream, remotePeer: string, remoteAddress?: string): Promise<void> {
    const ip = ipKey(remoteAddress);
    const state = this.#admit(remotePeer, ip);
    if (state === undefined) {
      const err = new ProtocolError("Cannot serve stream: too many streams from this peer");
      stream.abort(err);
      this.#ctx.onPeerError(err);
      return;
    }
    this.#ctx.streams.add(stream);
    const queue = new FrameQueue(stream, {
      capacity: RECEIVE_BATCH,
      maxLength: MAX_MESSAGE_FRAME_LENGTH,
      maxBytes: this.#limits.streamReadAheadBytes,
      budgets: state === null ? [this.#nodeBytes] : [state.budget, this.#nodeBytes],
    });
    try {
      for (let count = 0; count < MAX_FRAMES_PER_STREAM && this.#ctx.running;) {
        await race(queue.ready(), this.#ctx.signal(this.#ctx.options.idleTimeoutMs));
        const frames = queue.take(Math.min(RECEIVE_BATCH, MAX_FRAMES_PER_STREAM - count));
        if (frames.length === 0) break;
        count += frames.length;
        await this.#answer(stream, remotePeer, ip, frames);
        queue.release();
      }
      await stream.close({ signal: this.#ctx.signal(this.#ctx.options.idleTimeoutMs) }).catch(
        () => {},
      );
    } catch (err) {
      stream.abort(err instanceof Error ? err : new Error(String(err)));
      if (!(err instanceof PeerUnreachableError)) this.#ctx.onPeerError(err);
    } finally {
      queue.dispose();
      this.#leave(remotePeer, ip, state);
      this.#ctx.streams.delete(stream);
    }
  }

  /**
   * Handles frames that arrived together: opens their envelopes in parallel,
   * stores them in order, flushes once, and answers each envelope in order
   * with one write.
   */
  async #answer(
    stream: MessageStream,
    remotePeer: string,
    ip: string | undefined,
    frames: Frame[],
  ): Promise<void> {
    for (const frame of frames) {
      if (frame.type !== FrameType.Envelope && frame.type !== FrameType.Receipt) {
        throw new ProtocolError("Cannot serve stream: unexpected frame type");
      }
    }
    tracePoint("receive: frames read");
    // Each envelope or receipt costs crypto and a lookup: both are rate-limited.
    const now = this.#ctx.clock();
    const allowed = frames.map(() => this.#allow(remotePeer, ip, now));
    const opening = frames.map((frame, i) =>
      frame.type === FrameType.Envelope && allowed[i]
        ? this.#open(frame.envelope).then(
          (opened) => opened,
          (error: unknown) => ({ error }),
        )
        : undefined
    );
    type Opened = Awaited<NonNullable<(typeof opening)[number]>>;
    // An acknowledgement is hashed and signed once its envelope has opened
    // (its sender is then known and rate-limited: junk costs no signature),
    // while the envelopes are decrypted and stored, off the critical path;
    // one leaves only for a message that is stored and flushed.
    // A session frame's is signed as soon as its tag names a session (junk
    // with a random tag costs none).
    const signing = frames.map((frame, i) =>
      frame.type === FrameType.Envelope
        ? opening[i]?.then((result: Opened) =>
          result === "frame"
            ? this.#ctx.sessions?.frameSender(frame.envelope) !== undefined
              ? this.#signAck(frame.envelope)
              : undefined
            : "opened" in result
            ? this.#signAck(frame.envelope)
            : undefined
        )
        : undefined
    );
    // Awaited below unless an earlier frame fails the batch.
    for (const p of signing) p?.catch(() => {});
    type Reply = Frame | { readonly ack: Promise<Frame> };
    const replies: Reply[] = [];
    // The batch's messages and session states are one commit, made (and
    // flushed) by the sync below, before any acknowledgement leaves; a
    // crash before it loses only unacknowledged messages.
    const deferred: DeferredCommits = {};
    const incoming: IncomingMessage[] = [];
    // A frame that fails otherwise than by not decrypting ends the stream;
    // what was stored before it is still committed and passed on.
    let failure: { readonly error: unknown } | undefined;
    try {
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
        if (result === "frame") {
          try {
            const message = await this.#acceptFrame(frame.envelope, "direct", deferred);
            if (message !== undefined) incoming.push(message);
            const bytes = frame.envelope;
            replies.push({ ack: signing[i]!.then((ack) => ack ?? this.#signAck(bytes)) });
          } catch (err) {
            if (!(err instanceof DecryptionError)) throw err;
            // Its session is unknown here, or it does not decrypt in it.
            replies.push({ type: FrameType.Nack, code: NackCode.NoSession });
          }
          continue;
        }
        if ("error" in result) {
          if (!(result.error instanceof DecryptionError)) throw result.error;
          if (result.error instanceof OutdatedVersionError) this.#ctx.onPeerError(result.error);
          replies.push({ type: FrameType.Nack, code: NackCode.Unreadable });
          continue;
        }
        try {
          const message = await this.#accept(result.opened, "direct", result.wrapped, deferred);
          if (message !== undefined) incoming.push(message);
          replies.push({ ack: signing[i]! as Promise<Frame> });
        } catch (err) {
          if (!(err instanceof DecryptionError)) throw err;
          // The sender is verified; its session is what failed.
          replies.push({ type: FrameType.Nack, code: NackCode.NoSession });
        }
      }
    } catch (error) {
      failure = { error };
    }
    if (replies.length === 0 && failure === undefined) return;
    let flushed = false;
    try {
      // The rows are committed and flushed: only now are the senders told.
      tracePoint("receive: decrypted and stored");
      this.#storage.sync(deferred);
      tracePoint("receive: committed and flushed");
      flushed = true;
      if (failure !== undefined) throw failure.error;
      const encoded = await Promise.all(
        replies.map(async (reply) => encodeFrame("ack" in reply ? await reply.ack : reply)),
      );
      tracePoint("receive: acknowledgements signed");
      if (!stream.send(encoded.length === 1 ? encoded[0]! : concat(...encoded))) {
        await stream.onDrain({ signal: this.#ctx.signal(this.#ctx.options.idleTimeoutMs) });
      }
    } finally {
      // Stored is shown, even when the acknowledgements could not be
      // written (the sender closed the stream first) or a later frame
      // failed: its next try is a duplicate, acknowledged but never shown again.
      if (flushed) {
        for (const message of incoming) this.#ctx.emit({ type: "message", incoming: message });
      }
    }
  }
}
