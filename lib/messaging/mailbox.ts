/**
 * The mailbox server: keeps sealed envelopes for users who are offline, on
 * behalf of any DIM node near their mailbox address in the DHT, within
 * quotas. Every DIM node runs one, including bootstrap nodes without an
 * identity.
 *
 * Storage nodes learn a mailbox address (derived from the recipient's public
 * key), envelope sizes and times; never the body or the sender, which are
 * inside the HPKE ciphertext. Only the mailbox owner can delete: a DELETE
 * carries the owner's key, which must hash to the mailbox address, and a
 * fresh signature over the request.
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
import { sha256 as nobleSha256 } from "@noble/hashes/sha2.js";
import { raceSignal as race } from "race-signal";
import { concat, constantTimeEqual, utf8 } from "../platform/bytes.ts";
import { verifySignature } from "../crypto/identity.ts";
import { ProtocolError } from "../errors.ts";
import type { MailboxStorage } from "./storage.ts";
import {
  DEFAULT_MAILBOX_REQUEST_BURST,
  DEFAULT_MAILBOX_REQUESTS_PER_SECOND,
  DEFAULT_STREAM_IDLE_TIMEOUT_MS,
  DELETE_SKEW_MS,
  MAILBOX_MAX_BYTES,
  MAILBOX_MAX_COUNT,
  MAILBOX_MAX_TOTAL_BYTES,
  MAILBOX_MAX_TTL_MS,
  RATE_LIMITER_EVICTION_SAMPLE,
  RATE_LIMITER_MAX_PEERS,
  SMALL_ENVELOPE_LENGTH,
} from "./constants.ts";
import { Deadlines } from "../platform/signals.ts";
import {
  deleteSignedBytes,
  type Frame,
  FrameReader,
  FrameType,
  MAILBOX_PROTOCOL,
  MAX_FETCH_ITEMS,
  MAX_FRAME_LENGTH,
  StoreStatus,
  type StreamChunk,
  writeFrame,
} from "./wire.ts";

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
  /** Registers a handler for inbound streams of a protocol. */
  handle(
    protocol: string,
    handler: (stream: MessageStream, remotePeer: string) => void | Promise<void>,
  ): Promise<void>;
  /** Removes a handler. */
  unhandle(protocol: string): Promise<void>;
}

/** Quotas a node enforces on the mailboxes it keeps for others. */
export interface MailboxLimits {
  /** Envelopes per mailbox. Default 200. */
  readonly maxCount: number;
  /** Bytes per mailbox. Default 8 MiB. */
  readonly maxBytes: number;
  /** Bytes over all mailboxes. Default 256 MiB. */
  readonly maxTotalBytes: number;
  /** The longest a copy is kept (ms). Default 14 days. */
  readonly maxTtlMs: number;
}

/** The default {@linkcode MailboxLimits}, each with its reason in `constants.ts`. */
export const DEFAULT_MAILBOX_LIMITS: MailboxLimits = Object.freeze({
  maxCount: MAILBOX_MAX_COUNT,
  maxBytes: MAILBOX_MAX_BYTES,
  maxTotalBytes: MAILBOX_MAX_TOTAL_BYTES,
  maxTtlMs: MAILBOX_MAX_TTL_MS,
});

/** The bytes an ITEMS answer may hold: the frame limit less its header. */
const MAX_ITEMS_BYTES = MAX_FRAME_LENGTH - 1 - 2;

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
 * SHA-256 of an envelope. A small one is hashed on this thread: for a few
 * KiB the JavaScript hash (@noble/hashes) takes microseconds, less than
 * handing the work to WebCrypto's thread and back; a large one goes to
 * WebCrypto, which is faster per byte and does not hold this thread.
 *
 * @param envelope The sealed envelope.
 * @returns Its 32-byte hash.
 */
export async function envelopeHash(envelope: Uint8Array): Promise<Uint8Array> {
  return envelope.length <= SMALL_ENVELOPE_LENGTH ? nobleSha256(envelope) : await sha256(envelope);
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
}

/** Serves `/dim/mbox/1.0.0`: STORE, FETCH and signed DELETE of sealed envelopes. */
export class MailboxServer {
  readonly #store: MailboxStorage;
  readonly #clock: () => number;
  readonly #limits: MailboxLimits;
  readonly #idleMs: number;
  readonly #onPeerError: (error: unknown) => void;
  readonly #rate: RateLimiter;
  #host: StreamHost | undefined;
  #deadlines = new Deadlines();
  #active = new Set<Promise<void>>();

  /**
   * Makes a server over a mailbox store; call `start()` to serve.
   *
   * @param store Where copies are kept.
   * @param options Clock, quotas, timeouts.
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
    await host.handle(MAILBOX_PROTOCOL, (stream, remotePeer) => {
      const p = this.#serve(stream, remotePeer).finally(() => this.#active.delete(p));
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
   * @returns The answer frame.
   * @throws {ProtocolError} For any other frame type.
   */
  async answer(frame: Frame): Promise<Frame> {
    const now = this.#clock();
    if (frame.type === FrameType.Store) {
      if (frame.expiresAt <= now || frame.expiresAt > now + this.#limits.maxTtlMs) {
        return { type: FrameType.StoreResult, status: StoreStatus.Invalid };
      }
      const outcome = this.#store.put(
        frame.mailbox,
        await sha256(frame.envelope),
        frame.envelope,
        frame.expiresAt,
        now,
        this.#limits,
      );
      const status = outcome === "stored"
        ? StoreStatus.Stored
        : outcome === "duplicate"
        ? StoreStatus.Duplicate
        : StoreStatus.Full;
      return { type: FrameType.StoreResult, status };
    }
    if (frame.type === FrameType.Fetch) {
      // As many as fit in one frame: a few large envelopes must not make
      // the answer unencodable, and with it the whole mailbox unreadable.
      const envelopes: Uint8Array[] = [];
      let bytes = 0;
      for (const item of this.#store.list(frame.mailbox, now, MAX_FETCH_ITEMS)) {
        bytes += 4 + item.envelope.length;
        if (bytes > MAX_ITEMS_BYTES) break;
        envelopes.push(item.envelope);
      }
      return { type: FrameType.Items, envelopes };
    }
    if (frame.type === FrameType.Delete) {
      const owned = constantTimeEqual(await mailboxAddress(frame.owner), frame.mailbox);
      const fresh = Math.abs(frame.timestamp - now) <= DELETE_SKEW_MS;
      const signed = owned && fresh && await verifySignature(
        "mailbox",
        frame.owner,
        deleteSignedBytes(frame.mailbox, frame.timestamp, frame.hashes),
        frame.signature,
      );
      const count = signed ? this.#store.delete(frame.mailbox, frame.hashes) : 0;
      return { type: FrameType.Deleted, count };
    }
    throw new ProtocolError("Cannot serve mailbox: unexpected frame type");
  }

  async #serve(stream: MessageStream, remotePeer: string): Promise<void> {
    try {
      // One peer's flood of requests (each STORE is a disk write) must not
      // stall the node for everyone else.
      if (!this.#rate.take(remotePeer, this.#clock())) {
        throw new ProtocolError("Cannot serve mailbox: too many requests from this peer");
      }
      const signal = this.#deadlines.signal(this.#idleMs);
      const frame = await race(new FrameReader(stream).next(), signal);
      // A peer that ends its side without asking still gets its stream closed,
      // or the stream would stay open on this node for good.
      if (frame !== undefined) await writeFrame(stream, await this.answer(frame), signal);
      await stream.close({ signal }).catch(() => {});
    } catch (err) {
      stream.abort(err instanceof Error ? err : new Error(String(err)));
      this.#onPeerError(err);
    }
  }
}
