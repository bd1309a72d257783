/**
 * DIM's client side of the kad protocol: one request, one answer, on a
 * stream kept open for the next request to the same peer.
 *
 * kad-dht's own client opens a new stream for every request: a yamux
 * stream opening and closing handshake and a multistream-select
 * negotiation on both ends, and a peer-store write per stream on each end.
 * On loopback that cost about 0.5 ms of CPU per request, as much as the
 * request itself. kad-dht's server reads requests from a stream until the
 * remote closes it (resetting its 10 s read timeout after each one), so
 * {@linkcode KadClient} keeps one idle stream per peer and sends the next
 * request to that peer on it; an idle stream is closed `idleMs` to 1.5 ×
 * `idleMs` after its last answer,
 * well within the server's timeout.
 *
 * {@linkcode KadClient.requestAll} sends several requests to one peer in
 * one write on its stream (a put's FIND_NODE and PUT_VALUE), and settles
 * each answer as it is read.
 *
 * A request that fails on a reused stream (the server or the connection
 * closed it meanwhile) is sent again once on a new stream, with the
 * requests after it that were not answered yet: every kad request DIM
 * sends is idempotent. A stream whose request timed out or was
 * aborted is reset, never reused, so answers cannot get out of step.
 *
 * @module
 */
import type { PeerId, Stream } from "@libp2p/interface";
import type { Multiaddr } from "@multiformats/multiaddr";
import { concat } from "../platform/bytes.ts";
import { encodeKadMessage, type KadMessage, KadStreamReader, sendBytes } from "./_kad_wire.ts";

/** What {@linkcode KadClient} needs from a libp2p node. */
export interface KadClientHost {
  /** Opens a stream of `protocol` to a peer, dialling if needed. */
  dialProtocol(
    peer: PeerId | Multiaddr | Multiaddr[],
    protocol: string,
    options: { signal: AbortSignal },
  ): Promise<Stream>;
  /** The open connections to a peer. */
  getConnections(peer: PeerId): readonly unknown[];
}

/** Options of {@linkcode KadClient}. */
export interface KadClientOptions {
  /** The kad protocol id, such as `/dim/kad/1.0.0`. */
  readonly protocol: string;
  /** The largest answer accepted, in bytes. */
  readonly maxMessageBytes: number;
  /** How long one request may take, dial included, in ms. */
  readonly timeoutMs: number;
  /** How long an idle stream is kept for reuse, in ms. */
  readonly idleMs: number;
}

/** Counters of a {@linkcode KadClient}. */
export interface KadClientStats {
  /** Requests sent (a request sent again on a new stream counts twice). */
  readonly requests: number;
  /** Streams opened. */
  readonly streams: number;
  /** Requests sent on a stream that an earlier request had opened. */
  readonly reused: number;
}

/** How often requests in flight are checked for their deadline. */
const SWEEP_MS = 250;

interface Deadline {
  readonly at: number;
  readonly controller: AbortController;
}

interface Pooled {
  readonly stream: Stream;
  readonly reader: KadStreamReader;
  /** When it was last released, in ms (`Date.now()`). */
  idleSince?: number;
}

/**
 * Sends kad requests over reused streams; see the module documentation.
 *
 * @example One FIND_NODE request to a peer, as DIM's lookups send it
 * ```ts ignore
 * import { KadClient } from "./_kad_client.ts";
 * import { KadMessageType } from "./_kad_wire.ts";
 * import { createDhtNode, libp2pOf } from "./node.ts";
 *
 * await using a = await createDhtNode({ listen: ["/ip4/127.0.0.1/tcp/0"] });
 * await using b = await createDhtNode({ listen: ["/ip4/127.0.0.1/tcp/0"] });
 * const kad = new KadClient(libp2pOf(b), {
 *   protocol: b.protocol,
 *   maxMessageBytes: 1 << 20,
 *   timeoutMs: 5000,
 *   idleMs: 5000,
 * });
 * const answer = await kad.request(
 *   libp2pOf(a).peerId,
 *   () => libp2pOf(a).getMultiaddrs(),
 *   { type: KadMessageType.FIND_NODE, key: new TextEncoder().encode("/demo/a") },
 *   AbortSignal.timeout(5000),
 * );
 * console.log(answer.closer?.length ?? 0);
 * await kad.close();
 * ```
 */
export class KadClient {
  readonly #host: KadClientHost;
  readonly #options: KadClientOptions;
  readonly #idle = new Map<string, Pooled>();
  #idleSweeper: ReturnType<typeof setInterval> | undefined;
  readonly #inFlight = new Set<Deadline>();
  #sweeper: ReturnType<typeof setInterval> | undefined;
  #closed = false;
  #requests = 0;
  #streams = 0;
  #reused = 0;

  /**
   * @param host The libp2p node.
   * @param options Protocol, limits and timings.
   */
  constructor(host: KadClientHost, options: KadClientOptions) {
    this.#host = host;
    this.#options = options;
  }

  /** The counters so far. */
  get stats(): KadClientStats {
    return { requests: this.#requests, streams: this.#streams, reused: this.#reused };
  }

  /** How many idle streams are kept. */
  get idleStreams(): number {
    return this.#idle.size;
  }

  /**
   * Sends one request and reads its answer.
   *
   * @param peer The peer.
   * @param addresses Gives addresses to dial when no connection to the peer
   *   is open (each ending in `/p2p/<peer>`); none: the peer store's.
   * @param message The request.
   * @param signal Aborts the request.
   * @returns The answer.
   * @throws {Error} If the peer cannot be reached, the stream fails, the
   *   answer is malformed, or the request times out or is aborted.
   */
  request(
    peer: PeerId,
    addresses: () => Multiaddr[],
    message: KadMessage,
    signal: AbortSignal,
  ): Promise<KadMessage> {
    return this.requestAll(peer, addresses, [message], signal)[0]!;
  }

  /**
   * Sends several requests to one peer back to back, in one write on one
   * stream, and reads their answers in order (kad-dht's server answers the
   * requests of a stream one after another). Each answer's promise settles
   * as soon as that answer is read, so the first can be used while the
   * peer still works on the next.
   *
   * @param peer The peer.
   * @param addresses Gives addresses to dial when no connection to the peer
   *   is open; none: the peer store's.
   * @param messages The requests, in order.
   * @param signal Aborts the requests.
   * @returns One promise per request, for its answer; a request whose
   *   answer did not come rejects (see {@linkcode KadClient.request}).
   */
  requestAll(
    peer: PeerId,
    addresses: () => Multiaddr[],
    messages: readonly KadMessage[],
    signal: AbortSignal,
  ): Promise<KadMessage>[] {
    const answers = messages.map(() => Promise.withResolvers<KadMessage>());
    for (const { promise } of answers) promise.catch(() => {}); // The caller may await only some.
    this.#run(peer, addresses, messages, answers, signal).catch((cause) => {
      for (const { reject } of answers) reject(cause);
    });
    return answers.map(({ promise }) => promise);
  }

  async #run(
    peer: PeerId,
    addresses: () => Multiaddr[],
    messages: readonly KadMessage[],
    answers: readonly PromiseWithResolvers<KadMessage>[],
    signal: AbortSignal,
  ): Promise<void> {
    if (this.#closed) throw new DOMException("The kad client is closed", "AbortError");
    signal.throwIfAborted();
    const encoded = messages.map(encodeKadMessage);
    const key = peer.toString();
    const controller = new AbortController();
    const deadline = { at: Date.now() + this.#options.timeoutMs, controller };
    this.#watch(deadline);
    const onAbort = (): void => controller.abort(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    const scope = controller.signal;
    // The answers read so far: a retry sends only the requests after them.
    const progress = { answered: 0, answers };
    try {
      const pooled = this.#take(key);
      if (pooled !== undefined) {
        this.#reused += encoded.length;
        try {
          return await this.#exchange(key, pooled, encoded, progress, scope);
        } catch (cause) {
          if (scope.aborted) throw cause;
          // The stream had gone stale: try once more on a new one.
        }
      }
      const dialAddresses = this.#host.getConnections(peer).length === 0 ? addresses() : [];
      const target = dialAddresses.length > 0 ? dialAddresses : peer;
      const stream = await this.#host.dialProtocol(target, this.#options.protocol, {
        signal: scope,
      });
      this.#streams++;
      const fresh = { stream, reader: new KadStreamReader(stream, this.#options.maxMessageBytes) };
      return await this.#exchange(key, fresh, encoded, progress, scope);
    } finally {
      this.#inFlight.delete(deadline);
      signal.removeEventListener("abort", onAbort);
    }
  }

  // One sweep timer for all requests in flight, rather than a timer each:
  // requests time out between `timeoutMs` and `timeoutMs + SWEEP_MS`.
  #watch(deadline: Deadline): void {
    this.#inFlight.add(deadline);
    if (this.#sweeper !== undefined) return;
    this.#sweeper = setInterval(() => {
      const now = Date.now();
      for (const entry of this.#inFlight) {
        if (entry.at > now) continue;
        this.#inFlight.delete(entry);
        entry.controller.abort(new DOMException("The kad request timed out", "TimeoutError"));
      }
      if (this.#inFlight.size === 0) {
        clearInterval(this.#sweeper);
        this.#sweeper = undefined;
      }
    }, SWEEP_MS);
    unrefTimer(this.#sweeper);
  }

  /**
   * Closes the idle streams; later requests fail.
   *
   * @returns When the streams are closed or reset.
   */
  async close(): Promise<void> {
    this.#closed = true;
    for (const entry of this.#inFlight) {
      entry.controller.abort(new DOMException("The kad client is closed", "AbortError"));
    }
    this.#inFlight.clear();
    clearInterval(this.#sweeper);
    this.#sweeper = undefined;
    clearInterval(this.#idleSweeper);
    this.#idleSweeper = undefined;
    const idle = [...this.#idle.values()];
    this.#idle.clear();
    await Promise.all(idle.map((pooled) => this.#dispose(pooled)));
  }

  // Sends the requests not answered yet in one write and reads their answers.
  async #exchange(
    key: string,
    pooled: Pooled,
    encoded: readonly Uint8Array[],
    progress: { answered: number; readonly answers: readonly PromiseWithResolvers<KadMessage>[] },
    signal: AbortSignal,
  ): Promise<void> {
    const pending = encoded.slice(progress.answered);
    this.#requests += pending.length;
    const { stream, reader } = pooled;
    const onAbort = (): void => {
      stream.abort(
        signal.reason instanceof Error ? signal.reason : new Error(String(signal.reason)),
      );
    };
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      signal.throwIfAborted();
      await sendBytes(stream, pending.length === 1 ? pending[0]! : concat(...pending), signal);
      while (progress.answered < encoded.length) {
        const answer = await reader.next();
        signal.throwIfAborted();
        if (progress.answered === encoded.length - 1) this.#release(key, pooled);
        progress.answers[progress.answered++]!.resolve(answer);
      }
    } catch (cause) {
      stream.abort(cause instanceof Error ? cause : new Error(String(cause)));
      await reader.cancel().catch(() => {});
      throw signal.aborted ? signal.reason : cause;
    } finally {
      signal.removeEventListener("abort", onAbort);
    }
  }

  #take(key: string): Pooled | undefined {
    const pooled = this.#idle.get(key);
    if (pooled === undefined) return undefined;
    this.#idle.delete(key);
    if (pooled.stream.status !== "open" || pooled.stream.writeStatus !== "writable") {
      void this.#dispose(pooled);
      return undefined;
    }
    return pooled;
  }

  #release(key: string, pooled: Pooled): void {
    if (this.#closed || this.#idle.has(key) || pooled.stream.status !== "open") {
      void this.#dispose(pooled);
      return;
    }
    pooled.idleSince = Date.now();
    this.#sweepIdle();
    this.#idle.set(key, pooled);
  }

  // One timer closes the streams idle longer than `idleMs`, rather than a
  // timer per request: a stream is closed between `idleMs` and 1.5 × `idleMs`
  // after its last answer (kad-dht's server waits 10 s for the next request).
  #sweepIdle(): void {
    if (this.#idleSweeper !== undefined) return;
    this.#idleSweeper = setInterval(() => {
      const now = Date.now();
      for (const [key, pooled] of this.#idle) {
        if (now - pooled.idleSince! < this.#options.idleMs) continue;
        this.#idle.delete(key);
        void this.#dispose(pooled);
      }
      if (this.#idle.size === 0) {
        clearInterval(this.#idleSweeper);
        this.#idleSweeper = undefined;
      }
    }, Math.max(1, this.#options.idleMs / 2));
    unrefTimer(this.#idleSweeper);
  }

  async #dispose(pooled: Pooled): Promise<void> {
    await pooled.reader.cancel().catch(() => {});
    try {
      await pooled.stream.close({ signal: AbortSignal.timeout(1000) });
    } catch (cause) {
      pooled.stream.abort(cause instanceof Error ? cause : new Error(String(cause)));
    }
  }
}

// The sweeps must not keep a Deno process alive (a request in flight is
// awaited by its caller anyway). Deno 2.9's setTimeout returns a Node.js
// style timer object, which has `unref()`; older Deno returned a number.
function unrefTimer(timer: ReturnType<typeof setTimeout>): void {
  const object = timer as unknown as { unref?: () => void } | number;
  if (typeof object === "object" && typeof object?.unref === "function") {
    object.unref();
    return;
  }
  const deno = (globalThis as { Deno?: { unrefTimer?: (id: number) => void } }).Deno;
  if (typeof timer === "number") deno?.unrefTimer?.(timer);
}
