/**
 * The mailbox server: keeps sealed envelopes for users who are offline, on
 * behalf of any DIM node near their mailbox address in the DHT, within
 * quotas. Every DIM node runs one, including bootstrap nodes without an
 * identity.
 *
 * Storage nodes learn a mailbox address (derived from the recipient's public
 * key), envelope sizes and times, and who stored each copy; never the body
 * or the sender, which are inside the HPKE ciphertext. A session frame
 * (`_session_frame.ts`) is kept as an envelope is: it shows a pseudorandom
 * tag, the same for the frames of one sending chain, and nothing of its
 * sender.
 *
 * Anyone may STORE, so what keeps a stranger from jamming a mailbox is the
 * server's rules: bytes that cannot be an envelope or a session frame
 * (shorter than `MIN_ENVELOPE_LENGTH` or `MIN_SESSION_FRAME_LENGTH`, or of
 * another version or kind) are refused; a node keeps
 * mailboxes only for addresses it is among the closest to
 * ({@linkcode MAILBOX_CLOSEST_SLACK}); and copies are counted per storing
 * peer in a mailbox, per mailbox, per storing address and over the node,
 * where the heaviest storer's copies are evicted rather than a newcomer
 * refused (see `MailboxStore`).
 *
 * Only the mailbox owner can list, download or delete: a FETCH or DELETE
 * carries the owner's key, which must hash to the mailbox address, and a
 * signature over the request naming this node, a time within
 * {@linkcode DELETE_SKEW_MS} and a nonce; each request is served once.
 *
 * @example Serve mailboxes on a node
 * ```ts ignore
 * import { MailboxServer } from "./mailbox.ts";
 * const server = new MailboxServer(store.mailboxes);
 * await server.start(node);
 * ```
 *
 * @module
 */
import { raceSignal as race } from "race-signal";
import { concat, constantTimeEqual, toHex, utf8 } from "../platform/bytes.ts";
import { ENVELOPE_VERSION, MIN_ENVELOPE_LENGTH } from "../crypto/envelope.ts";
import { verifySignature } from "../crypto/identity.ts";
import { sha256Now } from "../crypto/_digest.ts";
import { ProtocolError } from "../errors.ts";
import type { MailboxStorage, MailboxStorer } from "./storage.ts";
import { isSessionFrame } from "./_session_frame.ts";
import {
  DEFAULT_MAILBOX_ORIGIN_REQUEST_BURST,
  DEFAULT_MAILBOX_ORIGIN_REQUESTS_PER_SECOND,
  DEFAULT_MAILBOX_REQUEST_BURST,
  DEFAULT_MAILBOX_REQUESTS_PER_SECOND,
  DEFAULT_STREAM_IDLE_TIMEOUT_MS,
  DELETE_SKEW_MS,
  MAILBOX_CLOSEST_SLACK,
  MAILBOX_MAX_BYTES,
  MAILBOX_MAX_COUNT,
  MAILBOX_MAX_TOTAL_BYTES,
  MAILBOX_MAX_TTL_MS,
  MAILBOX_ORIGIN_MAX_BYTES,
  MAILBOX_ORIGIN_MAX_COUNT,
  MAILBOX_PEER_MAX_BYTES,
  MAILBOX_PEER_MAX_COUNT,
  MAILBOX_SEEN_REQUESTS_MAX,
  RATE_LIMITER_EVICTION_SAMPLE,
  RATE_LIMITER_MAX_PEERS,
  SMALL_ENVELOPE_LENGTH,
} from "./constants.ts";
import { Deadlines } from "../platform/signals.ts";
import {
  type Frame,
  FrameReader,
  FrameType,
  MAILBOX_PROTOCOL,
  MailboxRefusal,
  mailboxRequestSignedBytes,
  MAX_FETCH_ITEMS,
  MAX_FRAME_LENGTH,
  StoreStatus,
  type StreamChunk,
  writeFrame,
} from "./wire.ts";
import { originOf, SeenRequests } from "./_mailbox_guard.ts";

/** A bidirectional byte stream, as libp2p 3 streams are. */
export interface MessageStream extends AsyncIterable<StreamChunk> {
  /** Queues bytes; `false` means wait for `onDrain` before sending more. */
  send(data: Uint8Array): boolean;
  /** Resolves when the send buffer has room again. */
  onDrain(options?: { signal?: AbortSignal }): Promise<void>;
  /** Closes the writable end gracefully. */
  close(options?: { signal?: AbortSignal }): Promise<void>;
  /** Resets the stream at once. */
  abort(err: Error): void;
}

/** Where inbound streams of a protocol are registered. */
export interface StreamHost {
  /**
   * Registers a handler for inbound streams of a protocol; it gets the
   * remote peer ID and, if known, the connection's remote multiaddr.
   */
  handle(
    protocol: string,
    handler: (
      stream: MessageStream,
      remotePeer: string,
      remoteAddress?: string,
    ) => void | Promise<void>,
  ): Promise<void>;
  /** Removes a handler. */
  unhandle(protocol: string): Promise<void>;
  /** This node's peer ID: signed mailbox requests name it. */
  readonly peerId?: string;
  /**
   * How many peers of the routing table are closer to `key` than this node,
   * counting at most `limit`. Without it, the server keeps every mailbox.
   */
  closerPeerCount?(key: Uint8Array, limit: number): number;
}

/** Quotas a node enforces on the mailboxes it keeps for others. */
export interface MailboxLimits {
  /** Envelopes per mailbox, from all storers. Default 1000. */
  readonly maxCount: number;
  /** Bytes per mailbox, from all storers. Default 32 MiB. */
  readonly maxBytes: number;
  /** Bytes over all mailboxes. Default 256 MiB. */
  readonly maxTotalBytes: number;
  /** Envelopes one storing peer keeps in one mailbox. Default 500. */
  readonly maxPeerCount: number;
  /** Bytes one storing peer keeps in one mailbox. Default 8 MiB. */
  readonly maxPeerBytes: number;
  /** Envelopes from one storing address (IPv4, IPv6 /64) over all mailboxes. Default 20,000. */
  readonly maxOriginCount: number;
  /** Bytes from one storing address over all mailboxes. Default 64 MiB. */
  readonly maxOriginBytes: number;
  /** The longest a copy is kept (ms). Default 14 days. */
  readonly maxTtlMs: number;
}

/** The default {@linkcode MailboxLimits}, each with its reason in `constants.ts`. */
export const DEFAULT_MAILBOX_LIMITS: MailboxLimits = Object.freeze({
  maxCount: MAILBOX_MAX_COUNT,
  maxBytes: MAILBOX_MAX_BYTES,
  maxTotalBytes: MAILBOX_MAX_TOTAL_BYTES,
  maxPeerCount: MAILBOX_PEER_MAX_COUNT,
  maxPeerBytes: MAILBOX_PEER_MAX_BYTES,
  maxOriginCount: MAILBOX_ORIGIN_MAX_COUNT,
  maxOriginBytes: MAILBOX_ORIGIN_MAX_BYTES,
  maxTtlMs: MAILBOX_MAX_TTL_MS,
});

/**
 * The envelope bytes an ITEMS answer may hold: the frame limit less its
 * header (type, flag, count) and the length of every item.
 */
const MAX_ITEMS_BYTES = MAX_FRAME_LENGTH - 1 - 1 - 2 - 4 * MAX_FETCH_ITEMS;

/**
 * A token bucket per key (a remote peer, or an IP): `take` says whether one
 * more request fits. It remembers at most `maxKeys` keys (default
 * {@linkcode RATE_LIMITER_MAX_PEERS}); past that, each new key makes it
 * forget one other, never all at once. It looks at the few keys used
 * longest ago and forgets the one whose bucket is fullest: a bucket that
 * has refilled says nothing a new one would not, while a throttled peer's
 * empty bucket is kept, so a flood of new keys cannot hand it its burst
 * back.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { RateLimiter } from "./mailbox.ts";
 *
 * const limiter = new RateLimiter(2, 1);
 * assert.equal(limiter.take("peer", 0), true);
 * assert.equal(limiter.take("peer", 0), true);
 * assert.equal(limiter.take("peer", 0), false);
 * assert.equal(limiter.take("peer", 1000), true); // one token a second
 * ```
 */
export class RateLimiter {
  /** Buckets, least recently used first (a `Map` keeps insertion order). */
  readonly #buckets = new Map<string, { tokens: number; at: number }>();
  readonly #maxKeys: number;

  /**
   * @param burst Requests allowed at once.
   * @param perSecond Requests allowed per second after the burst.
   * @param options `maxKeys`: the most keys remembered (default
   *   {@linkcode RATE_LIMITER_MAX_PEERS}).
   */
  constructor(
    readonly burst: number,
    readonly perSecond: number,
    options: { readonly maxKeys?: number } = {},
  ) {
    this.#maxKeys = Math.max(1, options.maxKeys ?? RATE_LIMITER_MAX_PEERS);
  }

  /** How many keys it remembers now. */
  get size(): number {
    return this.#buckets.size;
  }

  #refill(b: { tokens: number; at: number }, now: number): void {
    b.tokens = Math.min(this.burst, b.tokens + (Math.max(0, now - b.at) / 1000) * this.perSecond);
    b.at = Math.max(b.at, now);
  }

  /**
   * Takes a token for `key`, if there is one.
   *
   * @param key Whose bucket.
   * @param now The time (ms).
   * @returns Whether the request may go ahead.
   */
  take(key: string, now: number): boolean {
    return this.#take(key, now, true);
  }

  /**
   * Whether `key` has a token now, without taking it.
   *
   * @param key Whose bucket.
   * @param now The time (ms).
   * @returns Whether a `take` now would succeed.
   */
  has(key: string, now: number): boolean {
    return this.#take(key, now, false);
  }

  #take(key: string, now: number, consume: boolean): boolean {
    let b = this.#buckets.get(key);
    if (b === undefined) {
      if (!consume) return this.burst >= 1;
      if (this.#buckets.size >= this.#maxKeys) this.#forgetOne(now);
      b = { tokens: this.burst, at: now };
    } else {
      // Most recently used last.
      this.#buckets.delete(key);
    }
    this.#buckets.set(key, b);
    this.#refill(b, now);
    if (b.tokens < 1) return false;
    if (consume) b.tokens -= 1;
    return true;
  }

  /** Forgets the fullest of the few buckets used longest ago. */
  #forgetOne(now: number): void {
    let victim: string | undefined;
    let fullest = -Infinity;
    let looked = 0;
    for (const [key, b] of this.#buckets) {
      this.#refill(b, now);
      if (b.tokens > fullest) {
        victim = key;
        fullest = b.tokens;
      }
      if (fullest >= this.burst || ++looked >= RATE_LIMITER_EVICTION_SAMPLE) break;
    }
    if (victim !== undefined) this.#buckets.delete(victim);
  }
}

const MAILBOX_LABEL = utf8("DIM-v1-mailbox\0");

/**
 * The mailbox address of a user: SHA-256("DIM-v1-mailbox\0" || signing key).
 *
 * @param signingPublicKey The user's Ed25519 key.
 * @returns 32 bytes.
 * @example
 * ```ts
 * import { mailboxAddress } from "./mailbox.ts";
 * const a = await mailboxAddress(new Uint8Array(32));
 * if (a.length !== 32) throw new Error("bad length");
 * ```
 */
export async function mailboxAddress(signingPublicKey: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(
    await crypto.subtle.digest("SHA-256", concat(MAILBOX_LABEL, signingPublicKey)),
  );
}

/**
 * SHA-256 of bytes.
 *
 * @param bytes Input.
 * @returns The 32-byte digest.
 */
export async function sha256(bytes: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", new Uint8Array(bytes)));
}

/**
 * SHA-256 of an envelope. A small one is hashed on this thread
 * (`node:crypto`): for a few KiB that takes microseconds, less than handing
 * the work to WebCrypto's thread and back; a large one goes to WebCrypto,
 * which does not hold this thread.
 *
 * @param envelope The sealed envelope.
 * @returns Its 32-byte hash.
 */
export async function envelopeHash(envelope: Uint8Array): Promise<Uint8Array> {
  return envelope.length <= SMALL_ENVELOPE_LENGTH ? sha256Now(envelope) : await sha256(envelope);
}

/** Options of {@linkcode MailboxServer}. */
export interface MailboxServerOptions {
  /** Clock in ms. Default `Date.now`. */
  readonly clock?: () => number;
  /** Quotas; defaults in {@linkcode DEFAULT_MAILBOX_LIMITS}. */
  readonly limits?: Partial<MailboxLimits>;
  /** Longest wait for a request frame (ms). Default 10 s. */
  readonly idleTimeoutMs?: number;
  /** Receives errors caused by one peer; they never stop the server. */
  readonly onPeerError?: (error: unknown) => void;
  /** Requests (STORE, FETCH, DELETE) accepted from one peer at once. Default 200. */
  readonly requestBurst?: number;
  /** Requests accepted from one peer per second after the burst. Default 20. */
  readonly requestsPerSecond?: number;
  /**
   * Requests accepted from one storing address (all its peers) at once.
   * Default 2000. Tests whose peers all share 127.0.0.1 raise it.
   */
  readonly originRequestBurst?: number;
  /** Requests accepted from one storing address per second after the burst. Default 200. */
  readonly originRequestsPerSecond?: number;
  /**
   * The origin (the key of the quotas and rates per address) of a remote
   * peer, from its ID and the connection's remote multiaddr. Default: its
   * IPv4 address or IPv6 /64, or its relay (`originOf`).
   */
  readonly originOf?: (remotePeer: string, remoteAddress: string | undefined) => string;
  /**
   * This node's peer ID, which signed FETCH and DELETE requests must name.
   * Default: the host's `peerId` once started.
   */
  readonly peerId?: string;
}

/** Who sent a request: the storer of a STORE. */
export interface MailboxRequester {
  /** The remote peer ID. */
  readonly peer: string;
  /** The connection's remote multiaddr, if known. */
  readonly address?: string;
}

/**
 * Serves `/dim/mbox/2.0.0`: STORE of sealed envelopes within quotas, and
 * FETCH and DELETE signed by the mailbox owner, each served once.
 */
export class MailboxServer {
  readonly #store: MailboxStorage;
  readonly #clock: () => number;
  readonly #limits: MailboxLimits;
  readonly #idleMs: number;
  readonly #onPeerError: (error: unknown) => void;
  readonly #rate: RateLimiter;
  readonly #originRate: RateLimiter;
  readonly #originOf: (remotePeer: string, remoteAddress: string | undefined) => string;
  readonly #seen = new SeenRequests(MAILBOX_SEEN_REQUESTS_MAX, DELETE_SKEW_MS);
  readonly #peerId: string | undefined;
  #host: StreamHost | undefined;
  #deadlines = new Deadlines();
  #active = new Set<Promise<void>>();

  /**
   * Makes a server over a mailbox store; call `start()` to serve.
   *
   * @param store Where copies are kept.
   * @param options Clock, quotas, timeouts, rates.
   */
  constructor(store: MailboxStorage, options: MailboxServerOptions = {}) {
    this.#store = store;
    this.#clock = options.clock ?? Date.now;
    this.#limits = { ...DEFAULT_MAILBOX_LIMITS, ...options.limits };
    this.#idleMs = options.idleTimeoutMs ?? DEFAULT_STREAM_IDLE_TIMEOUT_MS;
    this.#onPeerError = options.onPeerError ?? (() => {});
    this.#rate = new RateLimiter(
      options.requestBurst ?? DEFAULT_MAILBOX_REQUEST_BURST,
      options.requestsPerSecond ?? DEFAULT_MAILBOX_REQUESTS_PER_SECOND,
    );
    this.#originRate = new RateLimiter(
      options.originRequestBurst ?? DEFAULT_MAILBOX_ORIGIN_REQUEST_BURST,
      options.originRequestsPerSecond ?? DEFAULT_MAILBOX_ORIGIN_REQUESTS_PER_SECOND,
    );
    this.#originOf = options.originOf ?? ((peer, address) => originOf(address, peer));
    this.#peerId = options.peerId;
  }

  /**
   * Registers the protocol handler. Idempotent.
   *
   * @param host The node to serve on.
   */
  async start(host: StreamHost): Promise<void> {
    if (this.#host !== undefined) return;
    this.#host = host;
    this.#deadlines.restart();
    await host.handle(MAILBOX_PROTOCOL, (stream, remotePeer, remoteAddress) => {
      const p = this.#serve(stream, {
        peer: remotePeer,
        ...(remoteAddress ? { address: remoteAddress } : {}),
      })
        .finally(() => this.#active.delete(p));
      this.#active.add(p);
      return p;
    });
  }

  /** Removes the handler and aborts requests being served. Idempotent. */
  async stop(): Promise<void> {
    const host = this.#host;
    if (host === undefined) return;
    this.#host = undefined;
    this.#deadlines.abort(new Error("stopping"));
    await host.unhandle(MAILBOX_PROTOCOL).catch(() => {});
    await Promise.allSettled([...this.#active]);
  }

  /**
   * Answers one request frame, as for a remote peer. Used for the local copy
   * when this node is itself among the closest to a mailbox.
   *
   * @param frame A STORE, FETCH or DELETE frame.
   * @param from Who asks (a STORE's storer). Default: this node.
   * @returns The answer frame.
   * @throws {ProtocolError} For any other frame type.
   */
  async answer(frame: Frame, from?: MailboxRequester): Promise<Frame> {
    const now = this.#clock();
    if (frame.type === FrameType.Store) {
      const peer = from?.peer ?? this.#self ?? "self";
      const storer: MailboxStorer = {
        peer,
        origin: from === undefined ? "self" : this.#originOf(peer, from.address),
      };
      return { type: FrameType.StoreResult, status: await this.#storeOne(frame, storer, now) };
    }
    if (frame.type === FrameType.Fetch || frame.type === FrameType.Delete) {
      const refusal = await this.#authorize(frame, now);
      if (refusal !== undefined) return { type: FrameType.Refused, code: refusal };
      if (frame.type === FrameType.Delete) {
        return { type: FrameType.Deleted, count: this.#store.delete(frame.mailbox, frame.hashes) };
      }
      // As many as fit in one frame: a few large envelopes must not make
      // the answer unencodable, and with it the whole mailbox unreadable.
      const copies = this.#store.list(frame.mailbox, now, MAX_FETCH_ITEMS, MAX_ITEMS_BYTES);
      const envelopes = copies.map((c) => c.envelope);
      const more = this.#store.count(frame.mailbox, now) > envelopes.length;
      return { type: FrameType.Items, envelopes, more };
    }
    throw new ProtocolError("Cannot serve mailbox: unexpected frame type");
  }

  get #self(): string | undefined {
    return this.#peerId ?? this.#host?.peerId;
  }

  async #storeOne(
    frame: Frame & { type: typeof FrameType.Store },
    storer: MailboxStorer,
    now: number,
  ): Promise<number> {
    const { envelope, mailbox, expiresAt } = frame;
    if (expiresAt <= now || expiresAt > now + this.#limits.maxTtlMs) return StoreStatus.Invalid;
    // Junk that cannot be an envelope or a session frame takes no room.
    const isEnvelope = envelope.length >= MIN_ENVELOPE_LENGTH && envelope[0] === ENVELOPE_VERSION;
    if (!isEnvelope && !isSessionFrame(envelope)) return StoreStatus.Invalid;
    const closer = this.#host?.closerPeerCount?.(mailbox, MAILBOX_CLOSEST_SLACK) ?? 0;
    if (closer >= MAILBOX_CLOSEST_SLACK) return StoreStatus.NotClosest;
    const outcome = this.#store.put({
      mailbox,
      hash: await sha256(envelope),
      envelope,
      expiresAt,
      storedAt: now,
      storer,
    }, this.#limits);
    return outcome === "stored"
      ? StoreStatus.Stored
      : outcome === "duplicate"
      ? StoreStatus.Duplicate
      : StoreStatus.Full;
  }

  /** Why a FETCH or DELETE is refused, or `undefined` if its owner signed it afresh. */
  async #authorize(
    frame: Frame & { type: typeof FrameType.Fetch | typeof FrameType.Delete },
    now: number,
  ): Promise<number | undefined> {
    const node = this.#self;
    const owned = constantTimeEqual(await mailboxAddress(frame.owner), frame.mailbox);
    if (node === undefined || !owned) return MailboxRefusal.NotOwner;
    if (Math.abs(frame.timestamp - now) > DELETE_SKEW_MS) return MailboxRefusal.Stale;
    const signed = await verifySignature(
      "mailbox",
      frame.owner,
      mailboxRequestSignedBytes({
        type: frame.type,
        node,
        mailbox: frame.mailbox,
        timestamp: frame.timestamp,
        nonce: frame.nonce,
        ...(frame.type === FrameType.Delete ? { hashes: frame.hashes } : {}),
      }),
      frame.signature,
    );
    if (!signed) return MailboxRefusal.NotOwner;
    // Only after the signature: a stranger cannot fill the memory.
    const seen = this.#seen.admit(
      `${toHex(frame.mailbox)}:${toHex(frame.nonce)}`,
      frame.timestamp,
      now,
    );
    return seen === "fresh"
      ? undefined
      : seen === "replayed"
      ? MailboxRefusal.Replayed
      : MailboxRefusal.Stale;
  }

  async #serve(stream: MessageStream, from: MailboxRequester): Promise<void> {
    try {
      // One peer's flood of requests (each STORE is a disk write) must not
      // stall the node for everyone else, nor many peers behind one address.
      const now = this.#clock();
      const origin = this.#originOf(from.peer, from.address);
      if (!this.#rate.take(from.peer, now) || !this.#originRate.take(origin, now)) {
        throw new ProtocolError("Cannot serve mailbox: too many requests from this peer");
      }
      const signal = this.#deadlines.signal(this.#idleMs);
      const frame = await race(new FrameReader(stream).next(), signal);
      // A peer that ends its side without asking still gets its stream closed,
      // or the stream would stay open on this node for good.
      if (frame !== undefined) await writeFrame(stream, await this.answer(frame, from), signal);
      await stream.close({ signal }).catch(() => {});
    } catch (err) {
      stream.abort(err instanceof Error ? err : new Error(String(err)));
      this.#onPeerError(err);
    }
  }
}
