/**
 * DIM's libp2p node: TCP + Noise + Yamux, kad-dht in server mode on
 * `/dim/kad/1.0.0` with DIM's record validators and selectors, and the
 * identify and ping services kad-dht needs.
 *
 * {@linkcode createDhtNode} makes (and by default starts) a
 * {@linkcode DhtNode}: the node's life (start, join, stop), its
 * connections and streams, and the entry points of its record operations.
 * Around it: `create.ts` assembles libp2p, `records.ts` puts, gets and
 * repairs records, `node_key.ts` keeps the node key, `types.ts` holds the
 * public types. With a `dataDir`, the node keeps its libp2p key in
 * `node.key` (so its peer ID is stable) and its peer store and DHT records
 * in the SQLite database `node.db`, and on start it redials peers it knew.
 *
 * kad-dht serves the protocol and keeps the routing table; `get`, `put` and
 * `getClosestPeers` run DIM's own Kademlia lookup over disjoint paths
 * (`_lookup.ts`, called by `records.ts`, on streams kept per peer by
 * `_kad_client.ts`), ending a `get` once the closest peers agree. The
 * `_*.ts` modules beside it trim per-request work libp2p does for nothing;
 * every reliance on libp2p's internals goes through `_libp2p_internals.ts`,
 * which checks their shape when a node is made.
 *
 * Reach (`_reach.ts`): circuit relay v2 on every node (dialling circuits,
 * reservations while "private", the hop server per `relayServer`), DIM's
 * dial-back reachability check, and UPnP when asked.
 *
 * Making the first node applies two process-wide fixes for Deno
 * (`_deno_compat.ts`): `BroadcastChannel.prototype.unref` and an unref'd,
 * collectable `AbortSignal.timeout`. Importing this module changes nothing.
 *
 * @module
 */
import type { Connection, PeerId } from "@libp2p/interface";
import type { Libp2p } from "libp2p";
import { DimError, PeerUnreachableError } from "../errors.ts";
import { assembleNode, checkQuorum, type DhtServices, type NodeParts } from "./create.ts";
import type { Reach } from "./_reach.ts";
import { registerParts } from "./_access.ts";
import type { DhtRecords } from "./records.ts";
import type {
  DhtCallOptions,
  DhtClosestPeersOptions,
  DhtGetOptions,
  DhtHandleOptions,
  DhtNodeOptions,
  DhtPeer,
  DhtStats,
  DhtStream,
  DhtStreamHandler,
  PeerBookView,
  Reachability,
} from "./types.ts";
import { coalesceWrites } from "./_libp2p_internals.ts";
import { describe, parseMultiaddr, parseTarget, streamError } from "./_peers.ts";
import { openStream, runConnected, serveProtocol, storedPeers } from "./_node_streams.ts";
import { BACKGROUND_REPLICAS_MS, REPLICAS_STOP_WAIT_MS } from "./constants.ts";
import { type NodeRun, startNode, stopNode } from "./_node_run.ts";
import { PeerBookKeeper } from "./_peer_book_keeper.ts";
import { Lifecycle } from "./_lifecycle.ts";
import { runQuery } from "./_query.ts";
import { closerPeerCount } from "./_nearness.ts";

// Every public type of the node, for those who import it from here.
export type * from "./types.ts";

export { forceReachability, libp2pOf } from "./_access.ts";

const encoder = new TextEncoder();

/**
 * Makes a DIM DHT node and, unless `start: false`, starts it.
 *
 * @param options Listening addresses, bootstrap peers, data directory,
 *   record validators and selectors, limits; see {@linkcode DhtNodeOptions}.
 * @returns The node (started unless `start: false`).
 * @throws {TypeError} If a multiaddr, namespace or the protocol prefix is malformed.
 * @throws {RangeError} If a numeric option is out of range.
 * @throws {StorageError} If the data directory, key file or database cannot
 *   be used (unreadable, corrupt, locked).
 * @throws {PeerUnreachableError} If `requireBootstrap` is set and no peer, bootstrap or
 *   known from an earlier run, answers within 5 s.
 * @throws {DimError} If libp2p cannot start, for example when a listen address is in use.
 * @throws {DOMException} If `signal` is aborted.
 * @example An isolated node with its state in a temporary directory
 * ```ts
 * import { createDhtNode } from "./node.ts";
 *
 * const dataDir = await Deno.makeTempDir();
 * const node = await createDhtNode({ listen: ["/ip4/127.0.0.1/tcp/0"], dataDir });
 * console.assert(node.multiaddrs[0]?.endsWith(`/p2p/${node.peerId}`));
 * await node.stop();
 * await Deno.remove(dataDir, { recursive: true });
 * ```
 */
export async function createDhtNode(options: DhtNodeOptions = {}): Promise<DhtNode> {
  const node = new DhtNode(await assembleNode(options), options);
  if (options.start ?? true) {
    await node.start(options.signal === undefined ? {} : { signal: options.signal });
  }
  return node;
}

/**
 * A running (or stopped) DIM DHT node. Make one with {@linkcode createDhtNode}.
 *
 * Every networked call takes `{ signal }`; `stop()` aborts all calls in
 * progress. Dial failures and misbehaving peers are reported as errors of
 * the call concerned (or logged, for background work) and never end the
 * node. It dispatches `peer:connect` and `peer:disconnect` events, each a
 * `CustomEvent<string>` whose `detail` is the remote peer ID;
 * `reachability` (`CustomEvent<Reachability>`) when its reachability
 * changes; and `addresses` (`CustomEvent<string[]>`, the new `multiaddrs`)
 * when the addresses it announces change (a relay reservation made or
 * lost, a UPnP mapping).
 *
 * @example Listen for peers and dispose of the node with `await using`
 * ```ts
 * import { createDhtNode } from "./node.ts";
 *
 * await using a = await createDhtNode({ listen: ["/ip4/127.0.0.1/tcp/0"] });
 * await using b = await createDhtNode({ listen: ["/ip4/127.0.0.1/tcp/0"] });
 * const connected = new Promise<string>((resolve) => {
 *   a.addEventListener("peer:connect", (event) => resolve((event as CustomEvent<string>).detail), {
 *     once: true,
 *   });
 * });
 * await b.dial(a.multiaddrs[0]!);
 * console.assert((await connected) === b.peerId);
 * ```
 */
export class DhtNode extends EventTarget implements AsyncDisposable {
  /** This node's libp2p peer ID. */
  readonly peerId: string;
  readonly #parts: NodeParts;
  readonly #libp2p: Libp2p<DhtServices>;
  readonly #records: DhtRecords;
  readonly #reach: Reach;
  #announced = "";
  readonly #joinedThrough = new Set<string>();
  readonly #peerBook: PeerBookKeeper;
  readonly #life: Lifecycle = new Lifecycle({
    start: (signal) => startNode(this.#run(), signal),
    stop: async () => {
      // Puts' background replicas first, while the kad client is open.
      if (!(await this.#records.settled(REPLICAS_STOP_WAIT_MS))) this.#records.abandon();
      await stopNode(this.#run());
    },
    release: () => {
      this.#parts.datastore.seal();
      this.#parts.sqlite?.close();
    },
  });
  readonly #onConnectionOpen = (event: CustomEvent<Connection>): void => {
    coalesceWrites(event.detail);
  };
  readonly #onConnect = (event: CustomEvent<PeerId>): void => {
    this.dispatchEvent(new CustomEvent("peer:connect", { detail: event.detail.toString() }));
  };
  readonly #onDisconnect = (event: CustomEvent<PeerId>): void => {
    this.dispatchEvent(new CustomEvent("peer:disconnect", { detail: event.detail.toString() }));
  };
  readonly #onAddresses = (): void => {
    this.#reach.addressesChanged();
    const addresses = this.multiaddrs;
    if (addresses.join(" ") === this.#announced) return;
    this.#announced = addresses.join(" ");
    this.dispatchEvent(new CustomEvent("addresses", { detail: addresses }));
  };

  /**
   * Wraps assembled parts; use {@linkcode createDhtNode} instead.
   *
   * @internal
   * @param parts What `assembleNode` (`create.ts`) built.
   * @param options The node's `dataDir` (for `peers.json`) and `clock`.
   */
  constructor(parts: NodeParts, options: Pick<DhtNodeOptions, "dataDir" | "clock"> = {}) {
    super();
    this.#parts = parts;
    this.#libp2p = parts.libp2p;
    this.#records = parts.records;
    this.peerId = parts.libp2p.peerId.toString();
    this.#reach = parts.makeReach({
      onReachability: (detail) => this.dispatchEvent(new CustomEvent("reachability", { detail })),
      onAddresses: this.#onAddresses,
    });
    registerParts(this, parts.libp2p, this.#reach);
    this.#peerBook = new PeerBookKeeper({
      ...parts,
      dataDir: options.dataDir,
      clock: options.clock ?? Date.now,
    });
  }

  /** Whether the node is started (and not stopping). */
  get started(): boolean {
    return this.#life.state === "started";
  }

  /**
   * The addresses this node can be dialled on, each ending in
   * `/p2p/<peerId>`: its listen (or `announce`) addresses, the
   * `/p2p-circuit` addresses of its relay reservations and its UPnP-mapped
   * address.
   */
  get multiaddrs(): string[] {
    return this.#reach.announced(this.#libp2p.getMultiaddrs().map(String), this.peerId);
  }

  /**
   * What this node knows of its reachability: see {@linkcode Reachability}.
   * Loaded from the data directory at start (with its `checkedAt`), then
   * kept current by DIM's dial-back check.
   */
  get reachability(): Reachability {
    return this.#reach.value;
  }

  /**
   * The peer IDs of the peers that answered this node's start dials: its
   * bootstrap peers and the peers it knew from an earlier run (and, with
   * `lanDiscovery`, the DIM peers it found on the LAN while starting).
   */
  get joinedThrough(): string[] {
    return [...this.#joinedThrough];
  }

  /**
   * The peers this node remembers (in `peers.json` with a `dataDir`), its
   * learned bootstrap peers, and `addJoinHints` for addresses to dial on
   * the next start; see {@linkcode PeerBookView}.
   */
  get peerBook(): PeerBookView {
    return this.#peerBook.book.view;
  }

  /** The kad-dht protocol id this node speaks, such as `/dim/kad/1.0.0`. */
  get protocol(): string {
    return this.#parts.protocol;
  }

  /** How many connections are open. */
  get connections(): number {
    return this.#libp2p.getConnections().length;
  }

  /** The peer IDs of the peers this node is connected to. */
  get peers(): string[] {
    return this.#libp2p.getPeers().map(String);
  }

  /** How many peers are in the kad-dht routing table. */
  get routingTableSize(): number {
    return this.#parts.internals.kad.routingTable.size;
  }

  /**
   * How many peers of the routing table are closer to `key` than this node,
   * counting at most `limit`; asks no one.
   *
   * @param key The key's bytes.
   * @param limit The most to count.
   * @returns A number from 0 to `limit`.
   */
  closerPeerCount(key: Uint8Array, limit: number): number {
    return closerPeerCount(this.#parts.internals.kad.routingTable, this.#libp2p.peerId, key, limit);
  }

  /**
   * Counters of the DHT requests this node's own lookups, puts and repairs
   * sent (kad-dht's background refreshes are not counted).
   *
   * @example
   * ```ts
   * import { createDhtNode } from "./node.ts";
   *
   * await using node = await createDhtNode({ listen: ["/ip4/127.0.0.1/tcp/0"] });
   * console.assert(node.stats.requests === 0);
   * ```
   */
  get stats(): DhtStats {
    return { ...this.#parts.client.stats };
  }

  /**
   * Starts listening, dials the bootstrap peers and up to 16 peers known
   * from an earlier run, waits for the first routing-table peer and looks up
   * its own neighbourhood. Calling it again while started (or starting) is
   * harmless; a stopped node cannot be restarted.
   *
   * @param options `signal`: aborts the start, which then stops the node.
   * @returns When the node is started and, if any peer answered, has joined the DHT.
   * @throws {PeerUnreachableError} If `requireBootstrap` was set and no
   *   peer could be dialled, bootstrap or known before (the node is then stopped).
   * @throws {DimError} If the node has been stopped.
   * @throws {StorageError} If the datastore fails.
   * @throws {DOMException} If `signal` is aborted.
   * @example
   * ```ts
   * import { createDhtNode } from "./node.ts";
   *
   * const node = await createDhtNode({ listen: ["/ip4/127.0.0.1/tcp/0"], start: false });
   * await node.start();
   * await node.start();
   * console.assert(node.started);
   * await node.stop();
   * ```
   */
  start(options: DhtCallOptions = {}): Promise<void> {
    return this.#life.start(options.signal);
  }

  /**
   * Stops the node: aborts every call in progress, waits (at most 2 s) for
   * the background replicas of its puts, closes connections and streams,
   * and closes the datastore. It returns within about 7 s even if peers do
   * not answer, and afterwards the node holds nothing that keeps the
   * process alive. Calling it again is harmless.
   *
   * @returns When the node is stopped.
   * @throws {StorageError} If the database fails to close.
   * @example
   * ```ts
   * import { createDhtNode } from "./node.ts";
   *
   * const node = await createDhtNode({ listen: ["/ip4/127.0.0.1/tcp/0"] });
   * await node.stop();
   * await node.stop();
   * console.assert(!node.started);
   * ```
   */
  stop(): Promise<void> {
    return this.#life.stop();
  }

  /**
   * Stops the node, for `await using`.
   *
   * @returns When the node is stopped.
   * @throws {StorageError} If the database fails to close.
   */
  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  /**
   * Stores `value` under `key` in the DHT: validates it, keeps it locally,
   * and returns once the 3 peers closest to the key have acknowledged it
   * (its write quorum); the rest of the k = 20 closest are sent it in the
   * background (see {@linkcode DhtNode.settled}). If the quorum is not
   * reached, it sends to all k closest before it returns.
   *
   * @param key A DHT key `/<namespace>/<rest>` whose namespace has a validator.
   * @param value The record value.
   * @param options `signal`: aborts the put (not its background replicas).
   * @returns How many remote peers acknowledged storing it by then: 3 once
   *   the quorum is reached (fewer in a smaller network; 0 on a lone node),
   *   otherwise how many of the k closest did.
   * @throws {TypeError} If the key is malformed or its namespace has no validator.
   * @throws {InvalidRecordError} If the validator rejects the value, or this
   *   node already holds a record for the key that the selector prefers.
   * @throws {PeerUnreachableError} If the query fails or times out.
   * @throws {DimError} If the node is not started.
   * @throws {DOMException} If `signal` is aborted or the node stops.
   * @example
   * ```ts
   * import { createDhtNode } from "./node.ts";
   *
   * const validators = { demo: async (_key: Uint8Array, _value: Uint8Array) => {} };
   * await using node = await createDhtNode({ listen: ["/ip4/127.0.0.1/tcp/0"], validators });
   * const acks = await node.put("/demo/a", new Uint8Array([1]));
   * console.assert(acks === 0);
   * ```
   */
  async put(key: string, value: Uint8Array, options: DhtCallOptions = {}): Promise<number> {
    const keyBytes = this.#records.key(key, "put record");
    this.#life.assertStarted("put record");
    await this.#records.validate(key, keyBytes, value);
    return await this.#query(
      "put record",
      options,
      (signal) => this.#records.put(key, keyBytes, value, signal),
    );
  }

  /**
   * Waits until the background replicas of this node's puts have been sent
   * (`stop()` waits for them too, at most 2 s).
   *
   * @param timeoutMs The longest wait.
   * @returns Whether they all finished in time.
   * @example
   * ```ts
   * import { createDhtNode } from "./node.ts";
   *
   * await using node = await createDhtNode({ listen: ["/ip4/127.0.0.1/tcp/0"] });
   * console.assert(await node.settled());
   * ```
   */
  settled(timeoutMs: number = BACKGROUND_REPLICAS_MS): Promise<boolean> {
    return this.#records.settled(timeoutMs);
  }

  /**
   * Finds the best value stored under `key`: asks the closest peers (until
   * the closest agree, see {@linkcode DhtGetOptions.quorum}), adds this
   * node's own copy, and returns the one the namespace's selector prefers.
   * Peers that answered with an older value, and an older local copy, are
   * sent the best one.
   *
   * @param key A DHT key `/<namespace>/<rest>` whose namespace has a validator.
   * @param options `signal`: aborts the get; `quorum`: see {@linkcode DhtGetOptions}.
   * @returns The best value, or `undefined` if peers answered and none holds one.
   * @throws {TypeError} If the key is malformed or its namespace has no validator.
   * @throws {RangeError} If `quorum` is not a non-negative integer.
   * @throws {PeerUnreachableError} If no peer could be asked (none known, or
   *   none answered) and no local copy exists, or the query times out.
   * @throws {DimError} If the node is not started.
   * @throws {DOMException} If `signal` is aborted or the node stops.
   * @example
   * ```ts
   * import { createDhtNode } from "./node.ts";
   *
   * const validators = { demo: async (_key: Uint8Array, _value: Uint8Array) => {} };
   * await using node = await createDhtNode({ listen: ["/ip4/127.0.0.1/tcp/0"], validators });
   * await node.put("/demo/a", new Uint8Array([7]));
   * console.assert((await node.get("/demo/a"))?.[0] === 7);
   * ```
   */
  async get(key: string, options: DhtGetOptions = {}): Promise<Uint8Array | undefined> {
    const keyBytes = this.#records.key(key, "get record");
    const quorum = options.quorum ?? this.#parts.quorum;
    checkQuorum(quorum, "get record");
    this.#life.assertStarted("get record");
    return await this.#query(
      "get record",
      options,
      (signal) => this.#records.get(key, keyBytes, quorum, signal),
    );
  }

  /**
   * Reads this node's own copy of the record under `key`, as it would serve
   * it to peers: validated, and only if received less than 48 h ago.
   *
   * @param key A DHT key `/<namespace>/<rest>` whose namespace has a validator.
   * @param options `signal`: aborts the read.
   * @returns The stored value, or `undefined`.
   * @throws {TypeError} If the key is malformed or its namespace has no validator.
   * @throws {StorageError} If the datastore fails.
   * @throws {DOMException} If `signal` is aborted.
   * @example
   * ```ts
   * import { createDhtNode } from "./node.ts";
   *
   * const validators = { demo: async (_key: Uint8Array, _value: Uint8Array) => {} };
   * await using node = await createDhtNode({ listen: ["/ip4/127.0.0.1/tcp/0"], validators });
   * console.assert((await node.getLocal("/demo/none")) === undefined);
   * ```
   */
  async getLocal(key: string, options: DhtCallOptions = {}): Promise<Uint8Array | undefined> {
    const keyBytes = this.#records.key(key, "read record");
    options.signal?.throwIfAborted();
    return await this.#records.readLocal(keyBytes, options.signal);
  }

  /**
   * Looks up the peers closest to `key` in the DHT's XOR metric.
   *
   * @param key Any bytes, or text used as its UTF-8 bytes.
   * @param options `signal`: aborts the lookup; `includeSelf`: rank this
   *   node among them.
   * @returns The closest peers found (at most k), nearest first, with their addresses.
   * @throws {PeerUnreachableError} If the lookup fails or times out.
   * @throws {DimError} If the node is not started.
   * @throws {DOMException} If `signal` is aborted or the node stops.
   * @example
   * ```ts
   * import { createDhtNode } from "./node.ts";
   *
   * await using a = await createDhtNode({ listen: ["/ip4/127.0.0.1/tcp/0"] });
   * await using b = await createDhtNode({
   *   listen: ["/ip4/127.0.0.1/tcp/0"],
   *   bootstrap: a.multiaddrs,
   * });
   * const peers = await b.getClosestPeers("/demo/a");
   * console.assert(peers.some((peer) => peer.peerId === a.peerId));
   * ```
   */
  async getClosestPeers(
    key: string | Uint8Array,
    options: DhtClosestPeersOptions = {},
  ): Promise<DhtPeer[]> {
    const keyBytes = typeof key === "string" ? encoder.encode(key) : key;
    this.#life.assertStarted("find closest peers");
    return await this.#query(
      "find closest peers",
      options,
      (signal) => this.#records.closestPeers(keyBytes, signal, options.includeSelf),
    );
  }

  /**
   * Opens a connection to a peer.
   *
   * @param address A multiaddr, normally ending in `/p2p/<peer id>`.
   * @param options `signal`: aborts the dial.
   * @returns The remote peer ID.
   * @throws {TypeError} If `address` is not a multiaddr.
   * @throws {PeerUnreachableError} If the peer cannot be reached or authenticated.
   * @throws {DimError} If the node is not started.
   * @throws {DOMException} If `signal` is aborted or the node stops.
   * @example
   * ```ts
   * import { createDhtNode } from "./node.ts";
   *
   * await using a = await createDhtNode({ listen: ["/ip4/127.0.0.1/tcp/0"] });
   * await using b = await createDhtNode({ listen: ["/ip4/127.0.0.1/tcp/0"] });
   * console.assert((await b.dial(a.multiaddrs[0]!)) === a.peerId);
   * ```
   */
  async dial(address: string, options: DhtCallOptions = {}): Promise<string> {
    const target = parseMultiaddr(address, "dial");
    return await runConnected(
      this.#life,
      `dial ${address}`,
      options,
      async (signal) => (await this.#libp2p.dial(target, { signal })).remotePeer.toString(),
      (cause) => new PeerUnreachableError(`Cannot dial ${address}: ${describe(cause)}`, { cause }),
    );
  }

  /**
   * Closes every connection to a peer.
   *
   * @param peerId The remote peer ID.
   * @param options `signal`: aborts the close (connections are then reset).
   * @returns When the connections are closed.
   * @throws {TypeError} If `peerId` is not a peer ID.
   * @throws {DimError} If the node is not started.
   * @throws {DOMException} If `signal` is aborted or the node stops.
   * @example
   * ```ts
   * import { createDhtNode } from "./node.ts";
   *
   * await using a = await createDhtNode({ listen: ["/ip4/127.0.0.1/tcp/0"] });
   * await using b = await createDhtNode({ listen: ["/ip4/127.0.0.1/tcp/0"] });
   * await b.dial(a.multiaddrs[0]!);
   * await b.hangUp(a.peerId);
   * ```
   */
  async hangUp(peerId: string, options: DhtCallOptions = {}): Promise<void> {
    const target = parseTarget(peerId);
    if (!("toMultihash" in target)) {
      throw new TypeError(`Cannot hang up: ${peerId} is not a peer ID`);
    }
    await runConnected(
      this.#life,
      "hang up",
      options,
      (signal) => this.#libp2p.hangUp(target, { signal }),
      (cause) => new DimError(`Cannot hang up on ${peerId}: ${describe(cause)}`, { cause }),
    );
  }

  /**
   * Opens a stream of `protocol` to a peer, dialling it if needed. Read it
   * with `for await`, write with `send(bytes)` (which returns `false` when
   * the caller should `await stream.onDrain()`), and `close()` it when done.
   *
   * @param target A peer ID, a multiaddr, or a {@linkcode DhtPeer} whose
   *   multiaddrs are tried in turn. A peer ID whose addresses the node does
   *   not know is looked up in the DHT first.
   * @param protocol The protocol id, such as `/dim/msg/1.0.0`.
   * @param options `signal`: aborts the dial and the protocol negotiation.
   * @returns The open stream.
   * @throws {TypeError} If `target` is neither a peer ID nor a multiaddr, or a
   *   {@linkcode DhtPeer} address names another peer.
   * @throws {ProtocolError} If the peer does not support `protocol`.
   * @throws {PeerUnreachableError} If the peer cannot be reached.
   * @throws {DimError} If the node is not started.
   * @throws {DOMException} If `signal` is aborted or the node stops.
   * @example Echo one message
   * ```ts
   * import { createDhtNode } from "./node.ts";
   *
   * await using a = await createDhtNode({ listen: ["/ip4/127.0.0.1/tcp/0"] });
   * await using b = await createDhtNode({ listen: ["/ip4/127.0.0.1/tcp/0"] });
   * await a.handle("/demo/echo/1.0.0", async (stream) => {
   *   for await (const chunk of stream) stream.send(chunk.subarray());
   *   await stream.close();
   * });
   * const stream = await b.dialProtocol(a.multiaddrs[0]!, "/demo/echo/1.0.0");
   * stream.send(new Uint8Array([42]));
   * await stream.close();
   * for await (const chunk of stream) console.assert(chunk.subarray()[0] === 42);
   * ```
   */
  async dialProtocol(
    target: string | DhtPeer,
    protocol: string,
    options: DhtCallOptions = {},
  ): Promise<DhtStream> {
    const peer = parseTarget(target);
    return await runConnected(
      this.#life,
      `open ${protocol} stream`,
      options,
      (signal) => openStream(this.#libp2p, peer, protocol, signal),
      (cause) => streamError(target, protocol, cause),
    );
  }

  /**
   * Serves incoming streams of `protocol`. A handler that throws aborts its
   * stream only.
   *
   * @param protocol The protocol id.
   * @param handler Called with each incoming stream, the remote peer ID and
   *   the connection's remote multiaddr.
   * @param options Stream limits per connection.
   * @returns When the handler is registered.
   * @throws {Error} If a handler is already registered for `protocol` (from libp2p).
   * @example
   * ```ts
   * import { createDhtNode } from "./node.ts";
   *
   * await using node = await createDhtNode({ listen: ["/ip4/127.0.0.1/tcp/0"] });
   * await node.handle("/demo/sink/1.0.0", async (stream) => {
   *   for await (const _ of stream);
   *   await stream.close();
   * });
   * await node.unhandle("/demo/sink/1.0.0");
   * ```
   */
  async handle(
    protocol: string,
    handler: DhtStreamHandler,
    options: DhtHandleOptions = {},
  ): Promise<void> {
    await serveProtocol(this.#libp2p, protocol, handler, options, this.#parts.log);
  }

  /**
   * Stops serving `protocol`.
   *
   * @param protocol The protocol id.
   * @returns When the handler is removed.
   * @throws {Error} Never in practice; libp2p's errors are passed on.
   */
  async unhandle(protocol: string): Promise<void> {
    await this.#libp2p.unhandle(protocol);
  }

  /**
   * Lists the peers in the peer store (persisted with a `dataDir`): those
   * this node has met, with the addresses it knows for them.
   *
   * @param options `signal`: aborts the listing.
   * @returns The known peers, without this node.
   * @throws {StorageError} If the datastore fails.
   * @throws {DOMException} If `signal` is aborted.
   * @example
   * ```ts
   * import { createDhtNode } from "./node.ts";
   *
   * await using node = await createDhtNode({ listen: ["/ip4/127.0.0.1/tcp/0"] });
   * console.assert((await node.knownPeers()).length === 0);
   * ```
   */
  async knownPeers(options: DhtCallOptions = {}): Promise<DhtPeer[]> {
    return await storedPeers(this.#libp2p, options.signal);
  }

  // The parts and hooks `_node_run.ts` starts and stops.
  #run(): NodeRun {
    return {
      parts: this.#parts,
      peerBook: this.#peerBook,
      reach: this.#reach,
      life: this.#life,
      listeners: {
        "connection:open": this.#onConnectionOpen as EventListener,
        "peer:connect": this.#onConnect as EventListener,
        "peer:disconnect": this.#onDisconnect as EventListener,
        "self:peer:update": this.#onAddresses,
      },
      listening: () => this.#announced = this.multiaddrs.join(" "),
      joined: (peerId) => this.#joinedThrough.add(peerId),
      routingTableSize: () => this.routingTableSize,
      connections: () => this.connections,
      knownPeers: (signal) => this.knownPeers({ signal }),
    };
  }

  #query<T>(
    action: string,
    options: DhtCallOptions,
    run: (signal: AbortSignal) => Promise<T>,
  ): Promise<T> {
    return runQuery(action, [this.#life.stopSignal, options.signal], run);
  }
}
