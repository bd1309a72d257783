/**
 * Assembles the libp2p node under a {@linkcode DhtNode}: checks the
 * options, loads the node key and opens the database of a data directory,
 * and builds libp2p with TCP, Noise, Yamux, identify, ping and kad-dht
 * (server mode, DIM's protocol, validators and selectors), over a datastore
 * that never lets a stored record go backwards (`_record_guard.ts`), and,
 * with `lanDiscovery`, the mDNS discovery of DIM peers on the LAN
 * (`_lan.ts`). It then applies DIM's patches of libp2p internals
 * (`_libp2p_internals.ts`)
 * and, once per process, the Deno compatibility fixes (`_deno_compat.ts`).
 *
 * `createDhtNode` (`node.ts`) calls {@linkcode assembleNode} and wraps the
 * parts in a `DhtNode`.
 *
 * @module
 */
import { join } from "node:path";
import { circuitRelayTransport } from "@libp2p/circuit-relay-v2";
import type { CircuitRelayService } from "@libp2p/circuit-relay-v2";
import { identify } from "@libp2p/identify";
import type { Identify } from "@libp2p/identify";
import type { PrivateKey } from "@libp2p/interface";
import { kadDHT, passthroughMapper } from "@libp2p/kad-dht";
import type { KadDHT } from "@libp2p/kad-dht";
import { noise } from "@libp2p/noise";
import { ping } from "@libp2p/ping";
import type { Ping } from "@libp2p/ping";
import { tcp } from "@libp2p/tcp";
import { yamux } from "@libp2p/yamux";
import type { Multiaddr } from "@multiformats/multiaddr";
import { MemoryDatastore } from "datastore-core";
import type { Datastore } from "interface-datastore";
import { createLibp2p } from "libp2p";
import type { Libp2p } from "libp2p";
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
  DEFAULT_RELAYS,
  DHT_K,
  KAD_REQUEST_TIMEOUT_MS,
  KAD_STREAM_IDLE_MS,
  kadProtocol,
  MAX_KAD_MESSAGE_BYTES,
  NODE_DATABASE_FILE,
  NODE_KEY_FILE,
  PEER_ADDRESS_MAX_AGE_MS,
  PEER_EVENT_MEMORY,
  PEER_EVENT_REFRESH_MS,
  PEER_MAX_AGE_MS,
  PEER_STORE_CACHE_ENTRIES,
  PEER_STORE_CACHE_TTL_MS,
  RELAY_MAX_STOP_STREAMS,
  RELAY_RESERVE_TIMEOUT_MS,
  VALIDATED_ENTRIES,
  VALIDATED_MEMORY_MS,
} from "./constants.ts";
import { ensureDataDirectory, loadOrCreateNodeKey } from "./node_key.ts";
import { DhtRecords } from "./records.ts";
import type { DhtNodeOptions } from "./types.ts";
import { applyDenoCompat } from "./_deno_compat.ts";
import { KadClient } from "./_kad_client.ts";
import { ValidatedRecords } from "./_validated.ts";
import {
  batchWindowUpdates,
  checkLibp2pInternals,
  filterPeerEvents,
  installFastCloserPeers,
  installFastClosest,
  installPeerStoreCache,
  type Libp2pInternals,
  quietLengthDecoders,
  relayInternals,
} from "./_libp2p_internals.ts";
import { createPortMapper } from "../platform/upnp.ts";
import { checkPublicNetworks, isPublicAddress } from "./public_networks.ts";
import { type NodePortMapper, Reach } from "./_reach.ts";
import { ReachProtocol } from "./_reach_protocol.ts";
import { RelayKeeper } from "./_relays.ts";
import {
  dimRelayServer,
  type GaterTarget,
  RelayServerSwitch,
  reservationGater,
} from "./_relay_server.ts";
import { libp2pDebugRequested, SILENT_COMPONENT_LOGGER } from "./_logger.ts";
import { PeerEventFilter } from "./_peer_events.ts";
import { PeerStoreCache } from "./_peer_store_cache.ts";
import { parseMultiaddr, peerIdOf } from "./_peers.ts";
import { RecordGuardDatastore } from "./_record_guard.ts";
import { type LanDiscovery, lanDiscovery as lanService } from "./_lan.ts";
import { StablePorts } from "./_stable_ports.ts";

/** The libp2p services a DIM node runs. */
export interface DhtServices extends Record<string, unknown> {
  /** Exchanges peer addresses and protocols on every connection. */
  identify: Identify;
  /** Used by kad-dht to check routing-table peers are alive. */
  ping: Ping;
  /** The Kademlia DHT, on `<protocolPrefix>/kad/1.0.0`. */
  dht: KadDHT;
  /** The circuit relay v2 server, unless `relayServer` is `false`. */
  relay?: CircuitRelayService;
  /** mDNS discovery of DIM peers on the LAN, if `lanDiscovery` is on. */
  lan?: LanDiscovery;
}

/** What a node's reach reports back to it. */
export interface ReachHooks {
  /** The reachability changed. */
  readonly onReachability: (value: import("./types.ts").Reachability) => void;
  /** The announced addresses may have changed. */
  readonly onAddresses: () => void;
}

/** Parts injected into {@linkcode assembleNode}, for tests and the integration of other layers. */
export interface NodeInjections {
  /**
   * The UPnP port mapper used when `upnp` is on. Default: `lib/platform/upnp.ts`'s
   * `createPortMapper`, searching by SSDP multicast, with the node's
   * `publicNetworks` deciding which external addresses count as public.
   */
  readonly portMapper?: NodePortMapper;
}

/** Everything a `DhtNode` is made of: the libp2p node and DIM's settings. */
export interface NodeParts {
  /** The libp2p node, not started. */
  readonly libp2p: Libp2p<DhtServices>;
  /** Its internals DIM uses, checked. */
  readonly internals: Libp2pInternals;
  /** The datastore under libp2p, with the replay guard. */
  readonly datastore: RecordGuardDatastore;
  /** The SQLite database of the data directory, if any: closed on stop. */
  readonly sqlite: SqliteDatastore | undefined;
  /** Bootstrap peers, each with a `/p2p/` part. */
  readonly bootstrap: readonly Multiaddr[];
  /** Whether start fails when no bootstrap peer answers. */
  readonly requireBootstrap: boolean;
  /** The kad protocol id. */
  readonly protocol: string;
  /** The default get quorum. */
  readonly quorum: number;
  /** The client that sends DIM's kad requests. */
  readonly client: KadClient;
  /** Record put, get and repair. */
  readonly records: DhtRecords;
  /** One-line diagnostics. */
  readonly log: (message: string) => void;
  /** Makes the node's reach (reachability, relays, UPnP), given its event hooks. */
  readonly makeReach: (hooks: ReachHooks) => Reach;
  /** Keeps the ports of port-0 listen addresses across runs (with a data directory). */
  readonly ports: StablePorts | undefined;
}

const NAMESPACE_PATTERN = /^[A-Za-z0-9._-]+$/;

/**
 * Checks a get quorum.
 *
 * @param quorum The quorum.
 * @param action What it is for, for the message.
 * @throws {RangeError} If it is not a non-negative integer.
 */
export function checkQuorum(quorum: number, action: string): void {
  if (!Number.isSafeInteger(quorum) || quorum < 0) {
    throw new RangeError(`Cannot ${action}: quorum must be a non-negative integer`);
  }
}

/**
 * Builds the parts of a DIM node from its options; see the module documentation.
 *
 * @param options The node's options.
 * @returns The parts, with libp2p made but not started.
 * @throws {TypeError} If a multiaddr, namespace or the protocol prefix is malformed.
 * @throws {RangeError} If a numeric option is out of range.
 * @throws {StorageError} If the data directory, key file or database cannot be used.
 * @throws {Libp2pInternalsError} If libp2p or kad-dht lacks a part DIM relies on.
 * @throws {DOMException} If `signal` is aborted.
 */
export async function assembleNode(
  options: DhtNodeOptions,
  injections: NodeInjections = {},
): Promise<NodeParts> {
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
    publicNetworks = [],
    relayServer = "auto",
    relays = DEFAULT_RELAYS,
    relayLimits = {},
    reachabilityCheck = true,
    announce = [],
    upnp = false,
    lanDiscovery = false,
    signal,
  } = options;
  signal?.throwIfAborted();
  const protocol = kadProtocol(protocolPrefix);
  const listenAddrs = listen.map((address) => parseMultiaddr(address, "listen on"));
  const announceAddrs = announce.map((address) => parseMultiaddr(address, "announce"));
  checkPublicNetworks(publicNetworks);
  if (relayServer !== true && relayServer !== false && relayServer !== "auto") {
    throw new TypeError('Cannot create DHT node: relayServer must be true, false or "auto"');
  }
  const bootstrapAddrs = bootstrap.map((address) => {
    const parsed = parseMultiaddr(address, "bootstrap from");
    if (peerIdOf(parsed) === undefined) {
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
      relays: relays + 1,
      "relayLimits.bytes": relayLimits.bytes ?? 1,
      "relayLimits.durationMs": relayLimits.durationMs ?? 1,
    })
  ) {
    if (!Number.isSafeInteger(value) || value < 1) {
      throw new RangeError(`Cannot create DHT node: ${name} must be a positive integer`);
    }
  }
  checkQuorum(quorum, "create DHT node");
  // Process-wide, once: libp2p touches these globals only once a node exists.
  applyDenoCompat();

  let privateKey: PrivateKey | undefined;
  let sqlite: SqliteDatastore | undefined;
  let ports: StablePorts | undefined;
  let listenOn = listenAddrs;
  if (dataDir !== undefined) {
    await ensureDataDirectory(dataDir);
    privateKey = await loadOrCreateNodeKey(join(dataDir, NODE_KEY_FILE));
    ports = new StablePorts(dataDir, listenAddrs);
    listenOn = await ports.listen();
    sqlite = SqliteDatastore.open(join(dataDir, NODE_DATABASE_FILE));
  }
  try {
    const inner: Datastore = sqlite ?? new MemoryDatastore();
    const datastore = new RecordGuardDatastore(inner, { selectors, clock, log });
    const validated = new ValidatedRecords({
      ms: VALIDATED_MEMORY_MS,
      maxEntries: VALIDATED_ENTRIES,
      clock,
    });
    // kad-dht's alpha is per path: share queryConcurrency among them.
    const concurrency = Math.max(1, Math.ceil(queryConcurrency / disjointPaths));
    const gaterTarget: GaterTarget = {};
    const libp2p = await createLibp2p<DhtServices>({
      ...(privateKey === undefined ? {} : { privateKey }),
      start: false,
      datastore,
      addresses: { listen: listenOn.map(String), announce: announceAddrs.map(String) },
      transports: [
        tcp(),
        circuitRelayTransport({
          reservationCompletionTimeout: RELAY_RESERVE_TIMEOUT_MS,
          maxInboundStopStreams: RELAY_MAX_STOP_STREAMS,
        }),
      ],
      connectionGater: reservationGater(gaterTarget),
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
        dht: kadDHT({
          protocol,
          clientMode: false,
          // kad-dht's handlers check with the same memory as DIM's lookups.
          validators: validated.wrap(validators),
          selectors: { ...selectors },
          kBucketSize: DHT_K,
          alpha: concurrency,
          disjointPaths,
          // DIM runs on LANs and loopback too: keep private addresses, which
          // kad-dht drops by default.
          peerInfoMapper: passthroughMapper,
          // A lone node must answer "not found" rather than wait for peers.
          allowQueryWithZeroPeers: true,
        }),
        ...(relayServer === false ? {} : { relay: dimRelayServer(relayLimits) }),
        ...(lanDiscovery ? { lan: lanService({ protocol, log, clock }) } : {}),
      },
    });
    gaterTarget.libp2p = libp2p;
    const internals = checkLibp2pInternals(libp2p);
    const relay = relayInternals(libp2p);
    const peerEvents = new PeerEventFilter({
      refreshMs: PEER_EVENT_REFRESH_MS,
      maxEntries: PEER_EVENT_MEMORY,
      clock,
    });
    filterPeerEvents(internals.kad.network, peerEvents);
    installFastClosest(internals.kad.routingTable.kb, internals.kad.routingTable, DHT_K);
    const peerStoreCache = new PeerStoreCache({
      ttlMs: PEER_STORE_CACHE_TTL_MS,
      maxEntries: PEER_STORE_CACHE_ENTRIES,
      clock,
    });
    installPeerStoreCache(libp2p.peerStore, peerStoreCache);
    installFastCloserPeers(
      internals.kad.peerRouting,
      internals.kad.routingTable,
      libp2p.peerStore,
      (peer) => peerStoreCache.peekInfo(peer),
    );
    if (!quietLengthDecoders()) log("@libp2p/utils' LengthPrefixedDecoder changed: not patched");
    if (!batchWindowUpdates()) log("@libp2p/yamux's YamuxStream changed: not patched");
    const client = new KadClient(libp2p, {
      protocol,
      maxMessageBytes: MAX_KAD_MESSAGE_BYTES,
      timeoutMs: KAD_REQUEST_TIMEOUT_MS,
      idleMs: KAD_STREAM_IDLE_MS,
    });
    const records = new DhtRecords({
      self: libp2p.peerId,
      peerAddresses: async (peer, signal) => {
        try {
          const stored = await libp2p.peerStore.get(peer, { signal });
          return stored.addresses.map(({ multiaddr }) => multiaddr.toString());
        } catch {
          return []; // Unknown to the peer store: report it without addresses.
        }
      },
      kad: internals.kad,
      client,
      datastore,
      validators,
      selectors,
      validated,
      clock,
      paths: disjointPaths,
      concurrency,
      peerEvents,
      log,
    });
    const makeReach = (hooks: ReachHooks): Reach => {
      let reach: Reach | undefined = undefined;
      const keeper = new RelayKeeper({
        libp2p,
        relay,
        count: relays,
        discover: async (signal) => {
          await records.closestPeers(crypto.getRandomValues(new Uint8Array(32)), signal);
        },
        onChange: () => {
          reach?.relaysChanged();
          hooks.onAddresses();
        },
        clock,
        log,
      });
      reach = new Reach({
        libp2p,
        kad: libp2p.services.dht,
        protocol: new ReachProtocol({ libp2p, publicNetworks, clock, log }),
        keeper,
        server: relay.onHop === undefined ? undefined : new RelayServerSwitch(libp2p, relay.onHop),
        relayServer,
        check: reachabilityCheck,
        dataDir,
        portMapper: upnp
          ? injections.portMapper ??
            createPortMapper({
              isPublic: (ip) => isPublicAddress(`/ip4/${ip}/tcp/1`, publicNetworks),
            })
          : undefined,
        ...hooks,
        clock,
        log,
      });
      return reach;
    };
    return {
      makeReach,
      ports,
      libp2p,
      internals,
      datastore,
      sqlite,
      bootstrap: bootstrapAddrs,
      requireBootstrap,
      protocol,
      quorum,
      client,
      records,
      log,
    };
  } catch (cause) {
    sqlite?.close();
    throw cause;
  }
}
