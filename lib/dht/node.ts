/**
 * DIM's libp2p node: TCP + Noise + Yamux, kad-dht in server mode on
 * `/dim/kad/1.0.0` with DIM's record validators and selectors, and the
 * identify and ping services kad-dht needs.
 *
 * {@linkcode createDhtNode} makes (and by default starts) a
 * {@linkcode DhtNode}. With a `dataDir`, the node keeps its libp2p key in
 * `node.key` (so its peer ID is stable) and its peer store and DHT records
 * in the SQLite database `node.db`, and on start it redials peers it knew.
 *
 * kad-dht serves the protocol and keeps the routing table; `get`, `put` and
 * `getClosestPeers` run DIM's own lookup (`_lookup.ts`): the same iterative
 * Kademlia over disjoint paths, sending its requests on streams it keeps
 * open per peer (`_kad_client.ts`), and ending a `get` once the closest
 * peers agree (see {@linkcode DhtGetOptions.quorum}). Around libp2p, the
 * node trims per-request work that changed nothing: repeated peer-store
 * writes and reads (`_peer_store_cache.ts`, `_peer_events.ts`), the
 * routing table's slow closest-peer search (`_closest.ts`), one socket
 * write per frame chunk (`_coalesce.ts`), and libp2p's logging when it is
 * off (`_logger.ts`).
 *
 * @example Two nodes on loopback: one puts, the other gets
 * ```ts
 * import { createDhtNode } from "./node.ts";
 *
 * const validators = { demo: async (_key: Uint8Array, _value: Uint8Array) => {} };
 * const selectors = { demo: (_key: Uint8Array, _records: Uint8Array[]) => 0 };
 * const listen = ["/ip4/127.0.0.1/tcp/0"];
 *
 * await using a = await createDhtNode({ listen, validators, selectors });
 * await using b = await createDhtNode({ listen, validators, selectors, bootstrap: a.multiaddrs });
 * await b.put("/demo/greeting", new TextEncoder().encode("hello"));
 * const value = await a.get("/demo/greeting");
 * console.assert(new TextDecoder().decode(value) === "hello");
 * ```
 *
 * @module
 */
import delay from "delay";
import "./_deno_compat.ts";
import { join } from "node:path";
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from "@libp2p/crypto/keys";
import { identify } from "@libp2p/identify";
import type { Identify } from "@libp2p/identify";
import type { Connection, PeerId, PrivateKey, Stream } from "@libp2p/interface";
import { kadDHT, passthroughMapper } from "@libp2p/kad-dht";
import type { KadDHT } from "@libp2p/kad-dht";
import { noise } from "@libp2p/noise";
import { peerIdFromMultihash, peerIdFromString } from "@libp2p/peer-id";
import { ping } from "@libp2p/ping";
import type { Ping } from "@libp2p/ping";
import { Libp2pRecord } from "@libp2p/record";
import { tcp } from "@libp2p/tcp";
import { yamux } from "@libp2p/yamux";
import { multiaddr } from "@multiformats/multiaddr";
import type { Multiaddr } from "@multiformats/multiaddr";
import { MemoryDatastore } from "datastore-core";
import type { Datastore } from "interface-datastore";
import { createLibp2p } from "libp2p";
import type { Libp2p } from "libp2p";
import {
  DimError,
  InvalidRecordError,
  PeerUnreachableError,
  ProtocolError,
  StorageError,
} from "../errors.ts";
import { readFileBounded, writeFileAtomic } from "../platform/atomic_file.ts";
import { SqliteDatastore } from "../platform/sqlite_datastore.ts";
import {
  CONNECTION_PING_INTERVAL_MS,
  DEFAULT_DISJOINT_PATHS,
  DEFAULT_INBOUND_CONNECTION_THRESHOLD,
  DEFAULT_LISTEN,
  DEFAULT_MAX_CONNECTIONS,
  DEFAULT_MAX_INCOMING_PENDING_CONNECTIONS,
  DEFAULT_PROTOCOL_PREFIX,
  DEFAULT_QUERY_CONCURRENCY,
  DEFAULT_QUORUM,
  DHT_K,
  JOIN_TIMEOUT_MS,
  KAD_REQUEST_TIMEOUT_MS,
  KAD_STREAM_IDLE_MS,
  kadProtocol,
  LIBP2P_STOP_TIMEOUT_MS,
  LOOKUP_STRAGGLE_MS,
  MAX_KAD_MESSAGE_BYTES,
  MAX_NODE_KEY_BYTES,
  NODE_DATABASE_FILE,
  NODE_KEY_FILE,
  PEER_ADDRESS_MAX_AGE_MS,
  PEER_EVENT_MEMORY,
  PEER_EVENT_REFRESH_MS,
  PEER_MAX_AGE_MS,
  PEER_STORE_CACHE_ENTRIES,
  PEER_STORE_CACHE_TTL_MS,
  QUERY_TIMEOUT_MS,
  RECONNECT_PEER_LIMIT,
  RECORD_MAX_AGE_MS,
  START_DIAL_CONCURRENCY,
  START_DIAL_TIMEOUT_MS,
} from "./constants.ts";
import { installFastClosest, type KBucketLike } from "./_closest.ts";
import { coalesceWrites } from "./_coalesce.ts";
import { KadClient } from "./_kad_client.ts";
import { KadMessageType, type KadPeer } from "./_kad_wire.ts";
import { kadId, lookup, type LookupQuorum, type LookupResult } from "./_lookup.ts";
import { namespaceOf, recordDatastoreKey, RecordGuardDatastore } from "./_record_guard.ts";
import { withReliableIteration } from "./_stream.ts";
import { libp2pDebugRequested, SILENT_COMPONENT_LOGGER } from "./_logger.ts";
import { PeerEventFilter } from "./_peer_events.ts";
import { PeerStoreCache } from "./_peer_store_cache.ts";

export type { Stream };

/**
 * Checks a record value found under a DHT key; resolves if it is valid and
 * rejects otherwise. kad-dht runs it on every record a peer stores here, and
 * DIM's lookups on every record a peer answers with.
 */
export type DhtValidator = (key: Uint8Array, value: Uint8Array) => Promise<void>;

/**
 * Picks the best of several valid record values for one DHT key and returns
 * its index. It must be deterministic, so every node picks the same one.
 */
export type DhtSelector = (key: Uint8Array, records: Uint8Array[]) => number;

/** The libp2p services a DIM node runs. */
export interface DhtServices extends Record<string, unknown> {
  /** Exchanges peer addresses and protocols on every connection. */
  identify: Identify;
  /** Used by kad-dht to check routing-table peers are alive. */
  ping: Ping;
  /** The Kademlia DHT, on `<protocolPrefix>/kad/1.0.0`. */
  dht: KadDHT;
}

/** Options of {@linkcode createDhtNode}. */
export interface DhtNodeOptions {
  /** Multiaddrs to listen on. Default `["/ip4/0.0.0.0/tcp/0"]`; tests pass `/ip4/127.0.0.1/tcp/0`. */
  readonly listen?: readonly string[];
  /**
   * Multiaddrs, each ending in `/p2p/<peer id>`, dialled on start. Failures
   * are logged, not thrown, unless `requireBootstrap` is set. Default `[]`.
   */
  readonly bootstrap?: readonly string[];
  /**
   * Whether `start()` fails with {@linkcode PeerUnreachableError} (and the
   * node stops) when `bootstrap` is not empty and no bootstrap peer could be
   * dialled. Default `false`.
   */
  readonly requireBootstrap?: boolean;
  /**
   * A directory for the node's state: `node.key` (its libp2p Ed25519 key,
   * mode 0600, separate from the user's identity key) and `node.db` (peer
   * store and DHT records, SQLite). Created with mode 0700 if missing.
   * Default: none, everything in memory and a new peer ID each time.
   */
  readonly dataDir?: string;
  /**
   * Record validators by namespace: `{ dim: … }` serves keys `/dim/…`. A key
   * whose namespace has no validator cannot be put or got. Default `{}`.
   */
  readonly validators?: Readonly<Record<string, DhtValidator>>;
  /**
   * Record selectors by namespace. A namespace with a selector also gets the
   * replay guard: a stored record is only replaced by one its selector
   * prefers. Default `{}` (the first answer wins and any valid record
   * replaces a stored one).
   */
  readonly selectors?: Readonly<Record<string, DhtSelector>>;
  /** The clock, in milliseconds since the epoch, for record ages. Default `Date.now`. */
  readonly clock?: () => number;
  /**
   * Inbound connections allowed per second from one IP address. Default
   * `100` (libp2p's 5 refuses many DIM peers behind one NAT).
   */
  readonly inboundConnectionThreshold?: number;
  /** The most open connections before libp2p prunes. Default `300`. */
  readonly maxConnections?: number;
  /** The most inbound connections in their handshake at once. Default `100`. */
  readonly maxIncomingPendingConnections?: number;
  /** The protocol prefix: kad-dht speaks `<prefix>/kad/1.0.0`. Default `"/dim"`. */
  readonly protocolPrefix?: string;
  /**
   * Requests in flight per lookup (Kademlia's alpha), shared among its
   * disjoint paths; a `get` asks one peer per path at a time. Default `10`.
   */
  readonly queryConcurrency?: number;
  /**
   * Disjoint paths per lookup (S/Kademlia): no peer is asked on two paths,
   * so malicious peers on one path cannot steer the others. Default `10`.
   */
  readonly disjointPaths?: number;
  /**
   * How many agreeing answers from the closest peers end a `get` early;
   * `0` never ends it early. See {@linkcode DhtGetOptions.quorum}. Default `3`.
   */
  readonly quorum?: number;
  /**
   * Receives one-line diagnostics (failed dials, refused records, repairs).
   * They never contain key material. Default: discard.
   */
  readonly log?: (message: string) => void;
  /** Whether `createDhtNode` also starts the node. Default `true`. */
  readonly start?: boolean;
  /** Aborts creating and starting the node. */
  readonly signal?: AbortSignal;
}

/** The options every networked call of a {@linkcode DhtNode} takes. */
export interface DhtCallOptions {
  /** Aborts the call; it then rejects with the signal's reason. */
  readonly signal?: AbortSignal;
}

/** Options of {@linkcode DhtNode.get}. */
export interface DhtGetOptions extends DhtCallOptions {
  /**
   * End the lookup once this many peers, on at least as many disjoint paths
   * (or all paths in use, if fewer), answered with the best value found,
   * and every peer known to be closer to the key than them has answered or
   * failed. Otherwise (`0`, or too few agreeing answers) the lookup runs
   * until the k closest peers of every path have been asked. Either way the
   * best answer (by the namespace's selector, with the local copy) is
   * returned and peers that answered with an older value are repaired.
   * Default: the node's `quorum`.
   */
  readonly quorum?: number;
}

/** Counters of a node's DHT requests; see {@linkcode DhtNode.stats}. */
export interface DhtStats {
  /** DHT requests sent (lookups, puts, repairs). */
  readonly requests: number;
  /** Streams opened for them. */
  readonly streams: number;
  /** Requests sent on a stream kept open from an earlier request. */
  readonly reused: number;
}

/** A peer and the addresses it can be dialled on. */
export interface DhtPeer {
  /** The peer ID, as a string. */
  readonly peerId: string;
  /** Its multiaddrs, as strings. */
  readonly multiaddrs: readonly string[];
}

/**
 * Serves one incoming stream of a protocol registered with
 * {@linkcode DhtNode.handle}. A thrown error or rejection aborts that stream
 * only.
 */
export type DhtStreamHandler = (stream: Stream, peerId: string) => void | Promise<void>;

/** Options of {@linkcode DhtNode.handle}. */
export interface DhtHandleOptions {
  /** Incoming streams of the protocol allowed at once per connection. Default `32`. */
  readonly maxInboundStreams?: number;
  /** Outgoing streams of the protocol allowed at once per connection. Default `64`. */
  readonly maxOutboundStreams?: number;
}

type NodeState = "new" | "starting" | "started" | "stopping" | "stopped";

interface NodeInit {
  readonly libp2p: Libp2p<DhtServices>;
  readonly datastore: RecordGuardDatastore;
  readonly sqlite: SqliteDatastore | undefined;
  readonly bootstrap: readonly Multiaddr[];
  readonly requireBootstrap: boolean;
  readonly validators: Readonly<Record<string, DhtValidator>>;
  readonly selectors: Readonly<Record<string, DhtSelector>>;
  readonly clock: () => number;
  readonly protocol: string;
  readonly quorum: number;
  readonly queryConcurrency: number;
  readonly disjointPaths: number;
  readonly peerEvents: PeerEventFilter;
  readonly log: (message: string) => void;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const NAMESPACE_PATTERN = /^[A-Za-z0-9._-]+$/;

let constructNode: (init: NodeInit) => DhtNode;

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
 * @throws {PeerUnreachableError} If `requireBootstrap` is set and no bootstrap peer answers
 *   within 5 s.
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
  const {
    listen = DEFAULT_LISTEN,
    bootstrap = [],
    requireBootstrap = false,
    dataDir,
    validators = {},
    selectors = {},
    clock = Date.now,
    inboundConnectionThreshold = DEFAULT_INBOUND_CONNECTION_THRESHOLD,
    maxConnections = DEFAULT_MAX_CONNECTIONS,
    maxIncomingPendingConnections = DEFAULT_MAX_INCOMING_PENDING_CONNECTIONS,
    protocolPrefix = DEFAULT_PROTOCOL_PREFIX,
    queryConcurrency = DEFAULT_QUERY_CONCURRENCY,
    disjointPaths = DEFAULT_DISJOINT_PATHS,
    quorum = DEFAULT_QUORUM,
    log = () => {},
    start = true,
    signal,
  } = options;
  signal?.throwIfAborted();
  const protocol = kadProtocol(protocolPrefix);
  const listenAddrs = listen.map((address) => parseMultiaddr(address, "listen on"));
  const bootstrapAddrs = bootstrap.map((address) => {
    const parsed = parseMultiaddr(address, "bootstrap from");
    if (parsed.getComponents().findLast((c) => c.name === "p2p") === undefined) {
      throw new TypeError(`Cannot bootstrap from ${address}: it has no /p2p/<peer id> part`);
    }
    return parsed;
  });
  for (const name of [...Object.keys(validators), ...Object.keys(selectors)]) {
    if (!NAMESPACE_PATTERN.test(name)) {
      throw new TypeError(
        `Cannot use DHT namespace ${JSON.stringify(name)}: expected a name without slashes`,
      );
    }
  }
  for (
    const [name, value] of Object.entries({
      inboundConnectionThreshold,
      maxConnections,
      maxIncomingPendingConnections,
      queryConcurrency,
      disjointPaths,
    })
  ) {
    if (!Number.isSafeInteger(value) || value < 1) {
      throw new RangeError(`Cannot create DHT node: ${name} must be a positive integer`);
    }
  }
  checkQuorum(quorum, "create DHT node");

  let privateKey: PrivateKey | undefined;
  let sqlite: SqliteDatastore | undefined;
  if (dataDir !== undefined) {
    await ensureDirectory(dataDir);
    privateKey = await loadOrCreateNodeKey(join(dataDir, NODE_KEY_FILE));
    sqlite = SqliteDatastore.open(join(dataDir, NODE_DATABASE_FILE));
  }
  const inner: Datastore = sqlite ?? new MemoryDatastore();
  const peerEvents = new PeerEventFilter({
    refreshMs: PEER_EVENT_REFRESH_MS,
    maxEntries: PEER_EVENT_MEMORY,
    clock,
  });
  const datastore = new RecordGuardDatastore(inner, { selectors, clock, log });

  let node: DhtNode;
  try {
    const libp2p = await createLibp2p<DhtServices>({
      ...(privateKey === undefined ? {} : { privateKey }),
      start: false,
      datastore,
      addresses: { listen: listenAddrs.map(String) },
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      connectionManager: {
        inboundConnectionThreshold,
        maxConnections,
        maxIncomingPendingConnections,
      },
      connectionMonitor: { pingInterval: CONNECTION_PING_INTERVAL_MS },
      peerStore: {
        maxAddressAge: PEER_ADDRESS_MAX_AGE_MS,
        maxPeerAge: PEER_MAX_AGE_MS,
      },
      ...(libp2pDebugRequested() ? {} : { logger: SILENT_COMPONENT_LOGGER }),
      services: {
        identify: identify(),
        ping: ping(),
        dht: withDimTuning(
          kadDHT({
            protocol,
            clientMode: false,
            validators: { ...validators },
            selectors: { ...selectors },
            kBucketSize: DHT_K,
            // kad-dht's alpha is per path: share queryConcurrency among them.
            alpha: Math.max(1, Math.ceil(queryConcurrency / disjointPaths)),
            disjointPaths,
            // DIM runs on LANs and loopback too: keep private addresses, which
            // kad-dht drops by default.
            peerInfoMapper: passthroughMapper,
            // A lone node must answer "not found" rather than wait for peers.
            allowQueryWithZeroPeers: true,
          }),
          peerEvents,
        ),
      },
    });
    new PeerStoreCache({
      ttlMs: PEER_STORE_CACHE_TTL_MS,
      maxEntries: PEER_STORE_CACHE_ENTRIES,
      clock,
    }).install(libp2p.peerStore);
    node = constructNode({
      libp2p,
      datastore,
      sqlite,
      bootstrap: bootstrapAddrs,
      requireBootstrap,
      validators,
      selectors,
      clock,
      protocol,
      quorum,
      queryConcurrency,
      disjointPaths,
      peerEvents,
      log,
    });
  } catch (cause) {
    sqlite?.close();
    throw cause;
  }
  if (start) await node.start(signal === undefined ? {} : { signal });
  return node;
}

/**
 * A running (or stopped) DIM DHT node. Make one with {@linkcode createDhtNode}.
 *
 * Every networked call takes `{ signal }`; `stop()` aborts all calls in
 * progress. Dial failures and misbehaving peers are reported as errors of
 * the call concerned (or logged, for background work) and never end the
 * node. It dispatches `peer:connect` and `peer:disconnect` events, each a
 * `CustomEvent<string>` whose `detail` is the remote peer ID.
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
  readonly #libp2p: Libp2p<DhtServices>;
  readonly #datastore: RecordGuardDatastore;
  readonly #sqlite: SqliteDatastore | undefined;
  readonly #bootstrap: readonly Multiaddr[];
  readonly #requireBootstrap: boolean;
  readonly #validators: Readonly<Record<string, DhtValidator>>;
  readonly #selectors: Readonly<Record<string, DhtSelector>>;
  readonly #clock: () => number;
  readonly #protocol: string;
  readonly #quorum: number;
  readonly #paths: number;
  readonly #concurrency: number;
  readonly #peerEvents: PeerEventFilter;
  readonly #kad: KadInternals;
  readonly #client: KadClient;
  readonly #log: (message: string) => void;
  #state: NodeState = "new";
  #starting: Promise<void> | undefined;
  #stopping: Promise<void> | undefined;
  #stopController = new AbortController();
  readonly #background = new Set<Promise<unknown>>();
  readonly #onConnectionOpen = (event: CustomEvent<Connection>): void => {
    coalesceWrites(event.detail);
  };
  readonly #onConnect = (event: CustomEvent<PeerId>): void => {
    this.dispatchEvent(new CustomEvent("peer:connect", { detail: event.detail.toString() }));
  };
  readonly #onDisconnect = (event: CustomEvent<PeerId>): void => {
    this.dispatchEvent(new CustomEvent("peer:disconnect", { detail: event.detail.toString() }));
  };

  static {
    constructNode = (init) => new DhtNode(init);
  }

  private constructor(init: NodeInit) {
    super();
    this.#libp2p = init.libp2p;
    this.#datastore = init.datastore;
    this.#sqlite = init.sqlite;
    this.#bootstrap = init.bootstrap;
    this.#requireBootstrap = init.requireBootstrap;
    this.#validators = init.validators;
    this.#selectors = init.selectors;
    this.#clock = init.clock;
    this.#protocol = init.protocol;
    this.#quorum = init.quorum;
    this.#paths = init.disjointPaths;
    this.#concurrency = Math.max(1, Math.ceil(init.queryConcurrency / init.disjointPaths));
    this.#peerEvents = init.peerEvents;
    this.#kad = kadInternals(init.libp2p.services.dht);
    this.#client = new KadClient(init.libp2p, {
      protocol: init.protocol,
      maxMessageBytes: MAX_KAD_MESSAGE_BYTES,
      timeoutMs: KAD_REQUEST_TIMEOUT_MS,
      idleMs: KAD_STREAM_IDLE_MS,
    });
    this.#log = init.log;
    this.peerId = init.libp2p.peerId.toString();
  }

  /**
   * The underlying libp2p node, for advanced use. DIM does not expect
   * callers to start, stop or reconfigure it.
   */
  get libp2p(): Libp2p<DhtServices> {
    return this.#libp2p;
  }

  /** Whether the node is started (and not stopping). */
  get started(): boolean {
    return this.#state === "started";
  }

  /** The addresses this node listens on, each ending in `/p2p/<peerId>`. */
  get multiaddrs(): string[] {
    return this.#libp2p.getMultiaddrs().map(String);
  }

  /** The kad-dht protocol id this node speaks, such as `/dim/kad/1.0.0`. */
  get protocol(): string {
    return this.#protocol;
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
    return this.#kad.routingTable.size;
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
    return { ...this.#client.stats };
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
   *   bootstrap peer could be dialled (the node is then stopped).
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
    if (this.#state === "started") return Promise.resolve();
    if (this.#state === "starting" && this.#starting !== undefined) return this.#starting;
    if (this.#state !== "new") {
      return Promise.reject(new DimError("Cannot start DHT node: it has been stopped"));
    }
    this.#state = "starting";
    this.#starting = this.#start(options).then(
      () => {
        if (this.#state === "starting") this.#state = "started";
      },
      async (cause) => {
        // A stop() already in progress waits for this promise: do not wait for it back.
        if (this.#stopping === undefined) {
          this.#stopping = this.#stop(false);
          await this.#stopping;
        }
        throw cause;
      },
    );
    return this.#starting;
  }

  /**
   * Stops the node: aborts every call in progress, closes connections and
   * streams, and closes the datastore. It returns within about 5 s even if
   * peers do not answer, and afterwards the node holds nothing that keeps
   * the process alive. Calling it again is harmless.
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
    this.#stopping ??= this.#stop(true);
    return this.#stopping;
  }

  /**
   * Stops the node, for `await using`.
   *
   * @returns When the node is stopped.
   * @throws {StorageError} If the database fails to close.
   * @example
   * ```ts
   * import { createDhtNode } from "./node.ts";
   *
   * {
   *   await using _node = await createDhtNode({ listen: ["/ip4/127.0.0.1/tcp/0"] });
   * }
   * ```
   */
  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  /**
   * Stores `value` under `key` in the DHT: validates it, keeps it locally,
   * looks up the k = 20 peers closest to the key and sends it to each.
   *
   * @param key A DHT key `/<namespace>/<rest>` whose namespace has a validator.
   * @param value The record value.
   * @param options `signal`: aborts the put.
   * @returns How many remote peers acknowledged storing it (0 on a lone node).
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
    const keyBytes = this.#dhtKey(key, "put record");
    this.#assertStarted("put record");
    const validator = this.#validators[namespaceOf(keyBytes) ?? ""];
    try {
      await validator?.(keyBytes, value);
    } catch (cause) {
      throw new InvalidRecordError(`Cannot put record ${key}: it is not valid under its key`, {
        cause,
      });
    }
    return await this.#query("put record", options, async (signal) => {
      const record = new Libp2pRecord(keyBytes, value, new Date(this.#clock())).serialize();
      try {
        await this.#datastore.put(recordDatastoreKey(keyBytes), record, { signal });
      } catch (cause) {
        if (cause instanceof InvalidRecordError) {
          throw new InvalidRecordError(
            `Cannot put record ${key}: this node holds a newer record for the key`,
            { cause },
          );
        }
        throw cause;
      }
      const { responses } = await this.#lookup(keyBytes, KadMessageType.FIND_NODE, signal);
      const acks = await Promise.all(
        responses.slice(0, DHT_K).map(({ peer }) =>
          this.#sendRecord(peer, keyBytes, record, signal)
        ),
      );
      return acks.filter(Boolean).length;
    });
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
    const keyBytes = this.#dhtKey(key, "get record");
    const quorum = options.quorum ?? this.#quorum;
    checkQuorum(quorum, "get record");
    this.#assertStarted("get record");
    return await this.#query("get record", options, async (signal) => {
      const local = await this.#readLocal(keyBytes, signal);
      const result = await this.#lookup(keyBytes, KadMessageType.GET_VALUE, signal, {
        count: quorum,
        ...(local === undefined ? {} : { local }),
        select: (values) => this.#select(keyBytes, values),
      });
      const answers = result.responses.filter((response) => response.value !== undefined);
      const values = [...(local === undefined ? [] : [local]), ...answers.map((a) => a.value!)];
      if (values.length === 0) {
        if (result.responses.length > 0) return undefined;
        throw new PeerUnreachableError(
          this.routingTableSize === 0
            ? `Cannot get record ${key}: not connected to any DHT peer`
            : `Cannot get record ${key}: no DHT peer answered`,
        );
      }
      const chosen = values[this.#select(keyBytes, values)] as Uint8Array;
      const stale = answers.filter((answer) => !equalBytes(answer.value!, chosen));
      await this.#repair(keyBytes, local, stale.map((answer) => answer.peer), chosen, signal);
      return chosen;
    });
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
    const keyBytes = this.#dhtKey(key, "read record");
    options.signal?.throwIfAborted();
    return await this.#readLocal(keyBytes, options.signal);
  }

  /**
   * Looks up the peers closest to `key` in the DHT's XOR metric.
   *
   * @param key Any bytes, or text used as its UTF-8 bytes.
   * @param options `signal`: aborts the lookup.
   * @returns The closest peers found, nearest first, with their addresses.
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
    options: DhtCallOptions = {},
  ): Promise<DhtPeer[]> {
    const keyBytes = typeof key === "string" ? encoder.encode(key) : key;
    this.#assertStarted("find closest peers");
    return await this.#query("find closest peers", options, async (signal) => {
      const { responses } = await this.#lookup(keyBytes, KadMessageType.FIND_NODE, signal);
      const peers: DhtPeer[] = [];
      for (const { peer } of responses.slice(0, DHT_K)) {
        const peerId = toPeerId(peer);
        let addresses = peer.addrs.map((bytes) => multiaddr(bytes).toString());
        // Peers the lookup started from carry no addresses: take the peer store's.
        if (addresses.length === 0) {
          try {
            const stored = await this.#libp2p.peerStore.get(peerId, { signal });
            addresses = stored.addresses.map(({ multiaddr }) => multiaddr.toString());
          } catch {
            // Unknown to the peer store: report it without addresses.
          }
        }
        peers.push({ peerId: peerId.toString(), multiaddrs: addresses });
      }
      return peers;
    });
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
    this.#assertStarted(`dial ${address}`);
    const { signal, release } = this.#callSignal(options.signal);
    try {
      const connection = await this.#libp2p.dial(target, { signal });
      return connection.remotePeer.toString();
    } catch (cause) {
      signal.throwIfAborted();
      throw new PeerUnreachableError(`Cannot dial ${address}: ${describe(cause)}`, { cause });
    } finally {
      release();
    }
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
   *   for await (const chunk of stream) stream.send(chunk);
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
  ): Promise<Stream> {
    const peer = parseTarget(target);
    this.#assertStarted(`open ${protocol} stream`);
    const { signal, release } = this.#callSignal(options.signal);
    try {
      return withReliableIteration(await this.#libp2p.dialProtocol(peer, protocol, { signal }));
    } catch (cause) {
      signal.throwIfAborted();
      const name = (cause as { name?: unknown } | null)?.name;
      if (name === "UnsupportedProtocolError") {
        throw new ProtocolError(`Cannot open ${protocol} stream: the peer does not support it`, {
          cause,
        });
      }
      throw new PeerUnreachableError(
        `Cannot open ${protocol} stream to ${
          typeof target === "string" ? target : target.peerId
        }: ${describe(cause)}`,
        { cause },
      );
    } finally {
      release();
    }
  }

  /**
   * Serves incoming streams of `protocol`. A handler that throws aborts its
   * stream only.
   *
   * @param protocol The protocol id.
   * @param handler Called with each incoming stream and the remote peer ID.
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
    await this.#libp2p.handle(protocol, async (stream: Stream, connection: Connection) => {
      try {
        await handler(withReliableIteration(stream), connection.remotePeer.toString());
      } catch (cause) {
        this.#log(`${protocol} handler failed for ${connection.remotePeer}: ${describe(cause)}`);
        stream.abort(cause instanceof Error ? cause : new Error(String(cause)));
      }
    }, { ...options });
  }

  /**
   * Stops serving `protocol`.
   *
   * @param protocol The protocol id.
   * @returns When the handler is removed.
   * @throws {Error} Never in practice; libp2p's errors are passed on.
   * @example
   * ```ts
   * import { createDhtNode } from "./node.ts";
   *
   * await using node = await createDhtNode({ listen: ["/ip4/127.0.0.1/tcp/0"] });
   * await node.unhandle("/demo/never-registered/1.0.0");
   * ```
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
    const peers = await this.#libp2p.peerStore.all(
      options.signal === undefined ? {} : { signal: options.signal },
    );
    return peers
      .filter((peer) => peer.id.toString() !== this.peerId)
      .map((peer) => ({
        peerId: peer.id.toString(),
        multiaddrs: peer.addresses.map(({ multiaddr }) => multiaddr.toString()),
      }));
  }

  async #start(options: DhtCallOptions): Promise<void> {
    this.#stopController = new AbortController();
    const scoped = this.#callSignal(options.signal);
    try {
      await this.#startWith(scoped.signal);
    } finally {
      scoped.release();
    }
  }

  async #startWith(signal: AbortSignal): Promise<void> {
    this.#libp2p.addEventListener("connection:open", this.#onConnectionOpen);
    try {
      await this.#libp2p.start();
    } catch (cause) {
      throw new DimError(`Cannot start DHT node: ${describe(cause)}`, { cause });
    }
    this.#libp2p.addEventListener("peer:connect", this.#onConnect);
    this.#libp2p.addEventListener("peer:disconnect", this.#onDisconnect);
    signal.throwIfAborted();

    const bootstrapIds = new Set(this.#bootstrap.map((address) => peerIdOf(address)));
    const known = (await this.knownPeers({ signal }))
      .filter((peer) => !bootstrapIds.has(peer.peerId) && peer.multiaddrs.length > 0)
      .slice(0, RECONNECT_PEER_LIMIT);
    const targets: { label: string; target: Multiaddr | PeerId; bootstrap: boolean }[] = [
      ...this.#bootstrap.map((address) => ({
        label: address.toString(),
        target: address,
        bootstrap: true,
      })),
      ...known.map((peer) => ({
        label: peer.peerId,
        target: peerIdFromString(peer.peerId),
        bootstrap: false,
      })),
    ];
    let bootstrapped = 0;
    let connected = 0;
    const dials = runLimited(
      targets,
      START_DIAL_CONCURRENCY,
      async ({ label, target, bootstrap }) => {
        try {
          await this.#libp2p.dial(target, { signal: this.#stopController.signal });
          connected++;
          if (bootstrap) bootstrapped++;
        } catch (cause) {
          this.#log(`could not dial ${label}: ${describe(cause)}`);
        }
      },
    );
    this.#track(dials);
    // Slow dials go on in the background; start() does not wait for them all.
    await raceTimeout(dials, START_DIAL_TIMEOUT_MS, signal);
    signal.throwIfAborted();
    if (this.#requireBootstrap && this.#bootstrap.length > 0 && bootstrapped === 0) {
      throw new PeerUnreachableError(
        `Cannot start DHT node: none of the ${this.#bootstrap.length} bootstrap peers answered`,
      );
    }
    if (connected === 0 && this.#libp2p.getConnections().length === 0) return;
    await this.#join(signal);
  }

  // Waits for the first routing-table peer, then looks up this node's own
  // neighbourhood, so a put or get right after start() reaches the DHT.
  async #join(signal: AbortSignal): Promise<void> {
    const deadline = performance.now() + JOIN_TIMEOUT_MS;
    while (this.routingTableSize === 0 && performance.now() < deadline) {
      await delay(10, { signal });
    }
    if (this.routingTableSize === 0) {
      this.#log("no peer entered the routing table after the start dials");
      return;
    }
    const timeout = timeoutController(JOIN_TIMEOUT_MS);
    try {
      // Run for its side effect: the peers it learns of enter the table.
      await this.#lookup(
        this.#libp2p.peerId.toMultihash().bytes,
        KadMessageType.FIND_NODE,
        AbortSignal.any([signal, timeout.signal]),
      );
    } catch (cause) {
      signal.throwIfAborted();
      this.#log(`self lookup failed: ${describe(cause)}`);
    } finally {
      timeout.clear();
    }
  }

  async #stop(waitForStart: boolean): Promise<void> {
    const wasNew = this.#state === "new";
    this.#state = "stopping";
    this.#stopController.abort(new DOMException("The DHT node is stopping", "AbortError"));
    try {
      if (!wasNew) {
        if (waitForStart) await this.#starting?.catch(() => {});
        await raceTimeout(this.#client.close(), 250);
        const stopped = Promise.resolve(this.#libp2p.stop()).then(
          () => true,
          (cause: unknown) => {
            this.#log(`libp2p stop failed: ${describe(cause)}`);
            return true;
          },
        );
        if (!(await raceTimeout(stopped, LIBP2P_STOP_TIMEOUT_MS))) {
          this.#log(`libp2p did not stop within ${LIBP2P_STOP_TIMEOUT_MS} ms; closing anyway`);
        }
        cancelAddressUpdate(this.#libp2p);
        this.#libp2p.removeEventListener("connection:open", this.#onConnectionOpen);
        this.#libp2p.removeEventListener("peer:connect", this.#onConnect);
        this.#libp2p.removeEventListener("peer:disconnect", this.#onDisconnect);
        await raceTimeout(Promise.allSettled([...this.#background]), 250);
        await raceTimeout(this.#datastore.settled(), 250);
      }
    } finally {
      this.#datastore.seal();
      this.#state = "stopped";
      this.#sqlite?.close();
    }
  }

  async #query<T>(
    action: string,
    options: DhtCallOptions,
    run: (signal: AbortSignal) => Promise<T>,
  ): Promise<T> {
    const timeout = timeoutController(QUERY_TIMEOUT_MS);
    const { signal, release } = scopedSignal([
      this.#stopController.signal,
      timeout.signal,
      ...(options.signal === undefined ? [] : [options.signal]),
    ]);
    try {
      signal.throwIfAborted();
      return await run(signal);
    } catch (cause) {
      if (timeout.signal.aborted && !this.#stopController.signal.aborted) {
        if (!options.signal?.aborted) {
          throw new PeerUnreachableError(
            `Cannot ${action}: no result within ${QUERY_TIMEOUT_MS} ms`,
            { cause },
          );
        }
      }
      if (signal.aborted) throw signal.reason;
      if (cause instanceof DimError || cause instanceof TypeError) throw cause;
      throw new PeerUnreachableError(`Cannot ${action}: ${describe(cause)}`, { cause });
    } finally {
      release();
      timeout.clear();
    }
  }

  #callSignal(signal: AbortSignal | undefined): { signal: AbortSignal; release(): void } {
    return scopedSignal(
      signal === undefined ? [this.#stopController.signal] : [this.#stopController.signal, signal],
    );
  }

  #assertStarted(action: string): void {
    if (this.#state !== "started") {
      throw new DimError(`Cannot ${action}: the DHT node is ${this.#state}`);
    }
  }

  #dhtKey(key: string, action: string): Uint8Array {
    const bytes = encoder.encode(key);
    const namespace = namespaceOf(bytes);
    if (!key.startsWith("/") || namespace === undefined || namespace === "") {
      throw new TypeError(`Cannot ${action}: key ${JSON.stringify(key)} is not /namespace/name`);
    }
    if (this.#validators[namespace] === undefined) {
      throw new TypeError(`Cannot ${action}: no validator for namespace ${namespace}`);
    }
    return bytes;
  }

  #select(keyBytes: Uint8Array, values: Uint8Array[]): number {
    if (values.length < 2) return 0;
    const selector = this.#selectors[namespaceOf(keyBytes) ?? ""];
    if (selector === undefined) return 0;
    const index = selector(keyBytes, values);
    return Number.isInteger(index) && index >= 0 && index < values.length ? index : 0;
  }

  async #readLocal(keyBytes: Uint8Array, signal?: AbortSignal): Promise<Uint8Array | undefined> {
    const key = recordDatastoreKey(keyBytes);
    const options = signal === undefined ? {} : { signal };
    let raw: Uint8Array;
    try {
      // Most gets are for records this node does not hold: ask first, so
      // that no NotFoundError (and its stack trace) is built.
      if (!(await this.#datastore.has(key, options))) return undefined;
      raw = await this.#datastore.get(key, options);
    } catch (cause) {
      if ((cause as { name?: unknown } | null)?.name === "NotFoundError") return undefined;
      throw cause instanceof StorageError ? cause : new StorageError(
        `Cannot read local record: ${describe(cause)}`,
        { cause },
      );
    }
    let record: Libp2pRecord;
    try {
      record = Libp2pRecord.deserialize(raw);
    } catch {
      return undefined;
    }
    const receivedAt = record.timeReceived?.getTime();
    if (receivedAt === undefined || this.#clock() - receivedAt > RECORD_MAX_AGE_MS) {
      return undefined;
    }
    try {
      await this.#validators[namespaceOf(keyBytes) ?? ""]?.(keyBytes, record.value);
    } catch {
      return undefined;
    }
    return record.value;
  }

  // Runs one lookup for `keyBytes` (see _lookup.ts): GET_VALUE with a
  // quorum for a get, FIND_NODE otherwise.
  async #lookup(
    keyBytes: Uint8Array,
    type: number,
    signal: AbortSignal,
    quorum?: LookupQuorum,
  ): Promise<LookupResult> {
    const target = kadId(keyBytes);
    const start: StartPeer[] = this.#kad.routingTable
      .closestPeers(target, { count: DHT_K })
      .map((peerId) => ({ id: peerId.toMultihash().bytes, addrs: [], peerId }));
    // One check per distinct value a lookup is answered with (few: peers
    // mostly agree).
    const checked: { value: Uint8Array; valid: Promise<boolean> }[] = [];
    const isValid = (value: Uint8Array): Promise<boolean> => {
      const known = checked.find((entry) => equalBytes(entry.value, value));
      if (known !== undefined) return known.valid;
      const validator = this.#validators[namespaceOf(keyBytes) ?? ""];
      const valid = Promise.resolve(validator?.(keyBytes, value)).then(
        () => validator !== undefined,
        () => false,
      );
      checked.push({ value, valid });
      return valid;
    };
    return await lookup<StartPeer>({
      target,
      self: this.#libp2p.peerId.toMultihash().bytes,
      start,
      k: DHT_K,
      paths: this.#paths,
      // A get asks one peer per path at a time: it ends as soon as the
      // closest agree, so asking farther peers in parallel is wasted.
      concurrency: quorum !== undefined && quorum.count > 0 ? 1 : this.#concurrency,
      straggleMs: LOOKUP_STRAGGLE_MS,
      // kad-dht's own queries tell its routing table and the peer store of
      // every peer an answer names; DIM's lookups do it for new ones only.
      onNewPeer: (peer) => this.#learn(peer),
      ...(quorum !== undefined && quorum.count > 0 ? { quorum } : {}),
      signal,
      ask: async (peer, askSignal) => {
        const answer = await this.#client.request(
          toPeerId(peer),
          () => dialAddresses(peer),
          { type, key: keyBytes },
          askSignal,
        );
        if (answer.type !== type) {
          throw new ProtocolError(`Cannot read kad answer: type ${answer.type}, not ${type}`);
        }
        const closer = answer.closer ?? [];
        let value: Uint8Array | undefined;
        if (type === KadMessageType.GET_VALUE && answer.record !== undefined) {
          value = recordValue(keyBytes, answer.record);
          if (value !== undefined && !(await isValid(value))) {
            this.#log(`a peer answered an invalid record for ${decoder.decode(keyBytes)}`);
            value = undefined;
          }
        }
        return value === undefined ? { closer } : { closer, value };
      },
    });
  }

  // Tells kad-dht about a peer named in an answer, as its own queries do,
  // so that it may enter the routing table and the peer store (which the
  // filter spares from repeats).
  #learn(peer: KadPeer): void {
    if (!this.#peerEvents.wouldAdmit(peer.id, peer.addrs)) return;
    let detail: { id: PeerId; multiaddrs: Multiaddr[] };
    try {
      detail = { id: toPeerId(peer), multiaddrs: peer.addrs.map((bytes) => multiaddr(bytes)) };
    } catch {
      return; // A malformed peer ID or address: nothing to learn.
    }
    if (detail.id.equals(this.#libp2p.peerId)) return;
    this.#kad.network.dispatchEvent(new CustomEvent("peer", { detail }));
  }

  // Sends a PUT_VALUE; true if the peer acknowledged storing the record.
  async #sendRecord(
    peer: KadPeer,
    keyBytes: Uint8Array,
    record: Uint8Array,
    signal: AbortSignal,
  ): Promise<boolean> {
    try {
      const answer = await this.#client.request(
        toPeerId(peer),
        () => dialAddresses(peer),
        { type: KadMessageType.PUT_VALUE, key: keyBytes, record },
        signal,
      );
      return answer.type === KadMessageType.PUT_VALUE && answer.record !== undefined &&
        equalBytes(
          Libp2pRecord.deserialize(answer.record).value,
          Libp2pRecord.deserialize(record).value,
        );
    } catch (cause) {
      if (!signal.aborted) this.#log(`could not store the record on a peer: ${describe(cause)}`);
      return false;
    }
  }

  // Sends the chosen value to peers that answered with another one, and
  // replaces an older local copy, each independently: one failure stops
  // nothing else. (A node that held no copy does not start keeping one.)
  async #repair(
    keyBytes: Uint8Array,
    local: Uint8Array | undefined,
    stale: readonly KadPeer[],
    chosen: Uint8Array,
    signal: AbortSignal,
  ): Promise<void> {
    const record = new Libp2pRecord(keyBytes, chosen, new Date(this.#clock())).serialize();
    const jobs: Promise<unknown>[] = stale.map((peer) =>
      this.#sendRecord(peer, keyBytes, record, signal)
    );
    if (local !== undefined && !equalBytes(local, chosen)) {
      jobs.push(
        this.#datastore.put(recordDatastoreKey(keyBytes), record, { signal }).then(
          () => {},
          (cause) => this.#log(`could not repair the local copy: ${describe(cause)}`),
        ),
      );
    }
    await Promise.all(jobs);
  }

  #track(task: Promise<unknown>): void {
    const tracked = task.finally(() => this.#background.delete(tracked));
    this.#background.add(tracked);
  }
}

// Wraps kad-dht's factory: its network layer's repeated "peer seen" events
// are dropped (_peer_events.ts) and its routing table finds the closest
// peers faster (_closest.ts).
function withDimTuning<C>(
  factory: (components: C) => KadDHT,
  filter: PeerEventFilter,
): (components: C) => KadDHT {
  return (components) => {
    const dht = factory(components);
    const internals = kadInternals(dht);
    filter.install(internals.network);
    installFastClosest(internals.routingTable.kb, internals.routingTable, DHT_K);
    return dht;
  };
}

interface KadInternals {
  /** kad-dht's network layer: emits a `peer` event for each peer it learns of. */
  readonly network: EventTarget;
  readonly routingTable: EventTarget & {
    readonly size: number;
    readonly kb: KBucketLike;
    closestPeers(kadId: Uint8Array, options: { count: number }): PeerId[];
  };
}

// The parts of kad-dht 16.4.5 that its public interface does not type, but
// DIM's lookups use: checked, so an upgrade that moves them fails loudly.
function kadInternals(dht: KadDHT): KadInternals {
  const candidate = dht as unknown as Partial<KadInternals>;
  if (
    !(candidate.network instanceof EventTarget) ||
    !(candidate.routingTable instanceof EventTarget) ||
    typeof candidate.routingTable.closestPeers !== "function" ||
    typeof candidate.routingTable.kb?.closest !== "function" ||
    typeof candidate.routingTable.kb.toIterable !== "function"
  ) {
    throw new DimError(
      "Cannot create DHT node: @libp2p/kad-dht lacks the network and routingTable DIM uses",
    );
  }
  return candidate as KadInternals;
}

/** A starting peer of a lookup: from the routing table, with its PeerId at hand. */
interface StartPeer extends KadPeer {
  readonly peerId: PeerId;
}

// The PeerId of a lookup peer, built from its multihash unless at hand.
function toPeerId(peer: KadPeer | StartPeer): PeerId {
  if ("peerId" in peer) return peer.peerId;
  return peerIdFromMultihash(decodeMultihash(peer.id));
}

type Multihash = Parameters<typeof peerIdFromMultihash>[0];

function decodeMultihash(bytes: Uint8Array): Multihash {
  let offset = 0;
  const read = (): number => {
    let value = 0;
    for (let shift = 0; shift < 28; shift += 7) {
      const byte = bytes[offset++];
      if (byte === undefined) throw new ProtocolError("Cannot decode peer ID: truncated");
      value |= (byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) return value;
    }
    throw new ProtocolError("Cannot decode peer ID: varint too long");
  };
  const code = read();
  const size = read();
  if (bytes.length - offset !== size) throw new ProtocolError("Cannot decode peer ID: bad length");
  return { code, size, digest: bytes.subarray(offset), bytes } as unknown as Multihash;
}

// The addresses of a peer named in an answer, each ending in /p2p/<id>.
function dialAddresses(peer: KadPeer): Multiaddr[] {
  if (peer.addrs.length === 0) return [];
  const id = toPeerId(peer).toString();
  const out: Multiaddr[] = [];
  for (const bytes of peer.addrs) {
    try {
      const address = multiaddr(bytes);
      out.push(peerIdOf(address) === undefined ? address.encapsulate(`/p2p/${id}`) : address);
    } catch {
      // Skip an address that does not parse.
    }
  }
  return out;
}

// The value of a record answered for `keyBytes`, as kad-dht accepts it: for
// the same key, with a reception time; undefined otherwise.
function recordValue(keyBytes: Uint8Array, bytes: Uint8Array): Uint8Array | undefined {
  try {
    const record = Libp2pRecord.deserialize(bytes);
    if (record.timeReceived === undefined || !equalBytes(record.key, keyBytes)) return undefined;
    return record.value;
  } catch {
    return undefined;
  }
}

function checkQuorum(quorum: number, action: string): void {
  if (!Number.isSafeInteger(quorum) || quorum < 0) {
    throw new RangeError(`Cannot ${action}: quorum must be a non-negative integer`);
  }
}

function parseMultiaddr(address: string, action: string): Multiaddr {
  try {
    return multiaddr(address);
  } catch (cause) {
    throw new TypeError(`Cannot ${action} ${JSON.stringify(address)}: not a multiaddr`, {
      cause,
    });
  }
}

function parseTarget(target: string | DhtPeer): Multiaddr | Multiaddr[] | PeerId {
  if (typeof target !== "string") {
    const peerId = parseTarget(target.peerId);
    if (!("toMultihash" in peerId)) {
      throw new TypeError(`Cannot open a stream: ${target.peerId} is not a peer ID`);
    }
    if (target.multiaddrs.length === 0) return peerId;
    return target.multiaddrs.map((address) => {
      const parsed = parseMultiaddr(address, "open a stream to");
      const named = peerIdOf(parsed);
      if (named === undefined) return parsed.encapsulate(`/p2p/${target.peerId}`);
      if (named !== target.peerId) {
        throw new TypeError(
          `Cannot open a stream to ${target.peerId}: ${address} names another peer`,
        );
      }
      return parsed;
    });
  }
  if (target.startsWith("/")) return parseMultiaddr(target, "open a stream to");
  try {
    return peerIdFromString(target);
  } catch (cause) {
    throw new TypeError(
      `Cannot open a stream to ${JSON.stringify(target)}: neither a peer ID nor a multiaddr`,
      { cause },
    );
  }
}

function peerIdOf(address: Multiaddr): string | undefined {
  return address.getComponents().findLast((c) => c.name === "p2p")?.value;
}

// libp2p's address manager debounces a peer-store write by 1 s whenever a
// listener closes, which stop() does; the timer would outlive stop() and
// write to a closed datastore. Cancel it if the (private) hook is there.
function cancelAddressUpdate(libp2p: Libp2p<DhtServices>): void {
  const components = (libp2p as { components?: { addressManager?: unknown } }).components;
  const update = (components?.addressManager as { _updatePeerStoreAddresses?: unknown } | undefined)
    ?._updatePeerStoreAddresses as { stop?: unknown } | undefined;
  if (typeof update?.stop === "function") (update.stop as () => void)();
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function describe(cause: unknown): string {
  if (cause instanceof AggregateError && cause.errors.length > 0) {
    return describe(cause.errors[0]);
  }
  return cause instanceof Error ? `${cause.name}: ${cause.message}` : String(cause);
}

async function ensureDirectory(path: string): Promise<void> {
  try {
    await Deno.mkdir(path, { recursive: true, mode: 0o700 });
  } catch (cause) {
    throw new StorageError(`Cannot create data directory ${path}: ${describe(cause)}`, { cause });
  }
}

async function loadOrCreateNodeKey(path: string): Promise<PrivateKey> {
  let bytes: Uint8Array | undefined;
  try {
    bytes = await readFileBounded(path, MAX_NODE_KEY_BYTES);
  } catch (cause) {
    if (cause instanceof RangeError) {
      throw new StorageError(`Cannot load node key ${path}: the file is too large`, { cause });
    }
    throw cause;
  }
  if (bytes !== undefined) {
    try {
      const key = privateKeyFromProtobuf(bytes);
      if (key.type !== "Ed25519") throw new TypeError(`unexpected key type ${key.type}`);
      return key;
    } catch (cause) {
      throw new StorageError(`Cannot load node key ${path}: the file is corrupt`, { cause });
    }
  }
  const key = await generateKeyPair("Ed25519");
  try {
    await writeFileAtomic(path, privateKeyToProtobuf(key), { mode: 0o600, overwrite: false });
  } catch (cause) {
    // Another process may have created the key first: use that one.
    if ((await readFileBounded(path, MAX_NODE_KEY_BYTES).catch(() => undefined)) !== undefined) {
      return await loadOrCreateNodeKey(path);
    }
    throw cause;
  }
  return key;
}

async function runLimited<T>(
  items: readonly T[],
  limit: number,
  task: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++] as T;
      await task(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

interface TimeoutController {
  readonly signal: AbortSignal;
  clear(): void;
}

// A timeout signal whose timer is always cleared, so nothing lingers.
/**
 * A signal that follows `sources` only until `release()`. libp2p keeps
 * listeners on the signals it is given after a call returns; a caller's
 * signal that fires later (a timeout, a shutdown) must not reach them, or
 * their promises reject with nobody listening.
 */
function scopedSignal(sources: readonly AbortSignal[]): { signal: AbortSignal; release(): void } {
  const controller = new AbortController();
  const onAbort = (event: Event) => controller.abort((event.target as AbortSignal).reason);
  const attached: AbortSignal[] = [];
  for (const source of sources) {
    if (source.aborted) {
      controller.abort(source.reason);
      break;
    }
    source.addEventListener("abort", onAbort, { once: true });
    attached.push(source);
  }
  return {
    signal: controller.signal,
    release() {
      for (const source of attached) source.removeEventListener("abort", onAbort);
    },
  };
}

function timeoutController(ms: number): TimeoutController {
  const controller = new AbortController();
  const id = setTimeout(() => {
    controller.abort(new DOMException(`Timed out after ${ms} ms`, "TimeoutError"));
  }, ms);
  return { signal: controller.signal, clear: () => clearTimeout(id) };
}

// Resolves true if `task` settles within `ms`, false otherwise (or on abort).
async function raceTimeout(
  task: Promise<unknown>,
  ms: number,
  signal?: AbortSignal,
): Promise<boolean> {
  let id: ReturnType<typeof setTimeout> | undefined;
  let onAbort: (() => void) | undefined;
  const timedOut = new Promise<boolean>((resolve) => {
    id = setTimeout(() => resolve(false), ms);
    if (signal !== undefined) {
      onAbort = () => resolve(false);
      signal.addEventListener("abort", onAbort, { once: true });
    }
  });
  try {
    return await Promise.race([task.then(() => true, () => true), timedOut]);
  } finally {
    clearTimeout(id);
    if (onAbort !== undefined) signal?.removeEventListener("abort", onAbort);
  }
}
