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
 * const server = new MailboxServer(database);
 * await server.start(node);
 * ```
 *
 * @module
 */
import { concat, constantTimeEqual, utf8 } from "../crypto/_bytes.ts";
import { verifySignature } from "../crypto/identity.ts";
import { ProtocolError } from "../errors.ts";
import type { Database } from "../store/database.ts";
import {
  deleteSignedBytes,
  encodeFrame,
  type Frame,
  FrameReader,
  FrameType,
  MAILBOX_PROTOCOL,
  MAX_FETCH_ITEMS,
  StoreStatus,
  type StreamChunk,
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

/** The default {@linkcode MailboxLimits}. */
export const DEFAULT_MAILBOX_LIMITS: MailboxLimits = Object.freeze({
  maxCount: 200,
  maxBytes: 8 * 1024 * 1024,
  maxTotalBytes: 256 * 1024 * 1024,
  maxTtlMs: 14 * 24 * 3600 * 1000,
});

/** Tolerance for the timestamp of a signed DELETE (ms). */
export const DELETE_SKEW_MS: number = 10 * 60 * 1000;

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
 * Writes one frame, waiting for the send buffer to drain if needed.
 *
 * @param stream The stream.
 * @param frame The frame.
 * @param signal Aborts the wait.
 */
export async function writeFrame(
  stream: MessageStream,
  frame: Frame,
  signal: AbortSignal,
): Promise<void> {
  if (!stream.send(encodeFrame(frame))) await stream.onDrain({ signal });
}

/**
 * Settles as `promise`, or rejects with the signal's reason when it aborts first.
 *
 * @param promise The work.
 * @param signal The deadline.
 * @returns What `promise` resolves to.
 */
export function race<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
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
}

/** Serves `/dim/mbox/1.0.0`: STORE, FETCH and signed DELETE of sealed envelopes. */
export class MailboxServer {
  readonly #db: Database;
  readonly #clock: () => number;
  readonly #limits: MailboxLimits;
  readonly #idleMs: number;
  readonly #onPeerError: (error: unknown) => void;
  #host: StreamHost | undefined;
  #stopping = new AbortController();
  #active = new Set<Promise<void>>();

  /**
   * Makes a server over a database; call `start()` to serve.
   *
   * @param database Where copies are kept.
   * @param options Clock, quotas, timeouts.
   */
  constructor(database: Database, options: MailboxServerOptions = {}) {
    this.#db = database;
    this.#clock = options.clock ?? Date.now;
    this.#limits = { ...DEFAULT_MAILBOX_LIMITS, ...options.limits };
    this.#idleMs = options.idleTimeoutMs ?? 10_000;
    this.#onPeerError = options.onPeerError ?? (() => {});
  }

  /**
   * Registers the protocol handler. Idempotent.
   *
   * @param host The node to serve on.
   */
  async start(host: StreamHost): Promise<void> {
    if (this.#host !== undefined) return;
    this.#host = host;
    this.#stopping = new AbortController();
    await host.handle(MAILBOX_PROTOCOL, (stream) => {
      const p = this.#serve(stream).finally(() => this.#active.delete(p));
      this.#active.add(p);
      return p;
    });
  }

  /** Removes the handler and aborts requests being served. Idempotent. */
  async stop(): Promise<void> {
    const host = this.#host;
    if (host === undefined) return;
    this.#host = undefined;
    this.#stopping.abort(new Error("stopping"));
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
      const outcome = this.#db.mailboxPut(
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
      const items = this.#db.mailboxList(frame.mailbox, now, MAX_FETCH_ITEMS);
      return { type: FrameType.Items, envelopes: items.map((i) => i.envelope) };
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
      const count = signed ? this.#db.mailboxDelete(frame.mailbox, frame.hashes) : 0;
      return { type: FrameType.Deleted, count };
    }
    throw new ProtocolError("Cannot serve mailbox: unexpected frame type");
  }

  async #serve(stream: MessageStream): Promise<void> {
    try {
      const signal = AbortSignal.any([this.#stopping.signal, AbortSignal.timeout(this.#idleMs)]);
      const frame = await race(new FrameReader(stream).next(), signal);
      if (frame === undefined) return;
      await writeFrame(stream, await this.answer(frame), signal);
      await stream.close({ signal }).catch(() => {});
    } catch (err) {
      stream.abort(err instanceof Error ? err : new Error(String(err)));
      this.#onPeerError(err);
    }
  }
}
