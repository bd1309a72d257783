/**
 * The public types of DIM's DHT node: its options, the options of its
 * calls, record validators and selectors, and the streams it opens.
 *
 * @module
 */

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

/** Options of `createDhtNode`. */
export interface DhtNodeOptions {
  /** Multiaddrs to listen on. Default `["/ip4/0.0.0.0/tcp/0"]`; tests pass `/ip4/127.0.0.1/tcp/0`. */
  readonly listen?: readonly string[];
  /**
   * Multiaddrs, each ending in `/p2p/<peer id>`, dialled on start. Failures
   * are logged, not thrown, unless `requireBootstrap` is set. Default `[]`.
   */
  readonly bootstrap?: readonly string[];
  /**
   * Whether `start()` fails with `PeerUnreachableError` (and the node
   * stops) when `bootstrap` is not empty and no peer could be dialled:
   * neither a bootstrap peer nor one known from an earlier run (with a
   * `dataDir`). Default `false`.
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
  /**
   * CIDRs (IPv4 or IPv6) whose addresses count as public in addition to
   * libp2p's rule (which counts every reserved range, 198.18.0.0/15
   * included, as private); see `isPublicAddress`. Only a dial-back on a
   * public address makes a node "public". Default `[]`.
   */
  readonly publicNetworks?: readonly string[];
  /**
   * Offer circuit relay v2 (hop) to other nodes: `true` always, `false`
   * never, `"auto"` while this node's reachability is "public". Storage
   * nodes pass `true`. Default `"auto"`.
   */
  readonly relayServer?: boolean | "auto";
  /** Relay reservations to keep while this node's reachability is "private". Default `2`. */
  readonly relays?: number;
  /**
   * What one connection relayed by this node may carry before the relay
   * resets it (the two ends then dial a fresh one). Defaults:
   * `RELAY_CONNECTION_BYTES` (32 MiB, both directions together) and
   * `RELAY_CONNECTION_DURATION_MS` (10 min).
   */
  readonly relayLimits?: RelayLimits;
  /**
   * Run DIM's dial-back check (`/dim/reach/1.0.0`) to learn this node's
   * reachability. With `false` the status stays "unknown". Default `true`.
   */
  readonly reachabilityCheck?: boolean;
  /**
   * Multiaddrs announced instead of the listen addresses, such as a port
   * forwarded on the router. Default: the listen addresses.
   */
  readonly announce?: readonly string[];
  /**
   * Try UPnP IGD port mapping of the TCP listen port while the node is not
   * public. Default `false`.
   */
  readonly upnp?: boolean;
  /**
   * Find DIM peers on the local network over mDNS, with no bootstrap
   * node: the node multicasts a query for DIM's service every 10 s and
   * answers others' with its peer ID and private addresses; a peer found so
   * is dialled and kept only if it speaks this node's kad protocol. When no
   * bootstrap or remembered peer answers, `start()` waits up to 3 s for
   * one. Default `false` for the library (it sends on the host's
   * networks); the `dim` CLI turns it on unless told not to.
   */
  readonly lanDiscovery?: boolean;
  /** Whether `createDhtNode` also starts the node. Default `true`. */
  readonly start?: boolean;
  /** Aborts creating and starting the node. */
  readonly signal?: AbortSignal;
}

/**
 * What a node knows of its reachability from the internet; see
 * `DhtNode.reachability`.
 */
export interface Reachability {
  /**
   * "public": peers dialled it back on a public address; "private": peers
   * failed to and none succeeded (it is then a DHT client and keeps relay
   * reservations); "unknown": no evidence yet, or only on non-public
   * addresses (loopback, a LAN), or the check is off.
   */
  readonly status: "unknown" | "public" | "private";
  /** When the status was last decided, in ms since the epoch (also when loaded from disk). */
  readonly checkedAt?: number;
  /** The peer IDs of the relays this node holds a reservation on. */
  readonly relays: readonly string[];
  /** The external multiaddr a UPnP gateway maps to this node, if any. */
  readonly mapped?: string;
}

/** The options every networked call of a `DhtNode` takes. */
export interface DhtCallOptions {
  /** Aborts the call; it then rejects with the signal's reason. */
  readonly signal?: AbortSignal;
}

/** Options of `DhtNode.getClosestPeers`. */
export interface DhtClosestPeersOptions extends DhtCallOptions {
  /**
   * Count this node among the peers, at its place by distance (it has no
   * addresses in the result). Default `false`.
   */
  readonly includeSelf?: boolean;
}

/** Options of `DhtNode.get`. */
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

/** Counters of a node's DHT requests; see `DhtNode.stats`. */
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
 * `DhtNode.handle`, given the remote peer ID and the connection's remote
 * multiaddr (for limits per address). A thrown error or rejection aborts
 * that stream only.
 */
export type DhtStreamHandler = (
  stream: DhtStream,
  peerId: string,
  remoteAddress: string,
) => void | Promise<void>;

/** Options of `DhtNode.handle`. */
export interface DhtHandleOptions {
  /** Incoming streams of the protocol allowed at once per connection. Default `32`. */
  readonly maxInboundStreams?: number;
  /** Outgoing streams of the protocol allowed at once per connection. Default `64`. */
  readonly maxOutboundStreams?: number;
}

/**
 * A chunk a {@linkcode DhtStream} yields: bytes, or a list of byte arrays
 * (libp2p's `Uint8ArrayList`) whose `subarray()` copies them into one.
 */
export type DhtStreamChunk = Uint8Array | DhtChunkList;

/** A list of byte arrays read as one, as libp2p's `Uint8ArrayList`. */
export interface DhtChunkList {
  /** The total length. */
  readonly byteLength: number;
  /**
   * The bytes from `begin` to `end`, in one array.
   *
   * @param begin The first index. Default 0.
   * @param end The index after the last. Default `byteLength`.
   * @returns The bytes.
   */
  subarray(begin?: number, end?: number): Uint8Array;
}

/**
 * A libp2p stream as DIM hands it out (`DhtNode.dialProtocol`,
 * `DhtNode.handle`): read it with `for await`, write with
 * `send(bytes)`, and `close()` it when done.
 */
export interface DhtStream extends AsyncIterable<DhtStreamChunk> {
  /** The protocol negotiated for it. */
  readonly protocol: string;
  /** Whether it is open, closing, closed, aborted (here) or reset (by the remote). */
  readonly status: "open" | "closing" | "closed" | "aborted" | "reset";
  /** Whether the remote may still send: `closed` once it has closed its writable end. */
  readonly remoteWriteStatus: "writable" | "closing" | "closed";
  /**
   * Queues bytes to send.
   *
   * @param data The bytes.
   * @returns `false` when the caller should `await onDrain()` before sending more.
   */
  send(data: Uint8Array): boolean;
  /**
   * Waits until the send buffer has room again.
   *
   * @param options `signal`: aborts the wait.
   * @returns When more may be sent.
   */
  onDrain(options?: { signal?: AbortSignal }): Promise<void>;
  /**
   * Closes the stream gracefully: sends what is queued, then ends both directions.
   *
   * @param options `signal`: aborts the close (the stream is then reset).
   * @returns When the stream is closed.
   */
  close(options?: { signal?: AbortSignal }): Promise<void>;
  /**
   * Resets the stream at once.
   *
   * @param err Why.
   */
  abort(err: Error): void;
}

/** Limits of one relayed connection, see {@linkcode DhtNodeOptions.relayLimits}. */
export interface RelayLimits {
  /** Bytes, both directions together. */
  readonly bytes?: number;
  /** Milliseconds. */
  readonly durationMs?: number;
}

/**
 * How a node learned of a remembered peer: `"bootstrap"` (its configured
 * bootstrap list), `"network"` (met while running), or a join hint's
 * source (see {@linkcode JoinHintSource}).
 */
export type PeerSource = "bootstrap" | "network" | JoinHintSource;

/**
 * Who vouched for a join hint: `hint:<user id>` for the bootstrap
 * addresses a `dim:` contact string carried, `contact:<user id>` for the
 * addresses on a contact's card, `mailbox:<user id>` for the nodes that
 * answered a fetch of that user's own mailbox.
 */
export type JoinHintSource = `hint:${string}` | `contact:${string}` | `mailbox:${string}`;

/** A set of join hints from one source; see `PeerBookView.hints`. */
export interface JoinHint {
  /** Who vouched for them. */
  readonly source: JoinHintSource;
  /** The addresses, each ending in `/p2p/<peer id>`. */
  readonly multiaddrs: readonly string[];
  /** When they were last given, in ms since the epoch. */
  readonly at: number;
}

/** A peer a node remembers having been connected to; see `DhtNode.peerBook`. */
export interface RememberedPeer {
  /** The peer ID. */
  readonly peerId: string;
  /**
   * A few of its addresses, each ending in `/p2p/<peer id>`: first the one
   * this node last dialled it on directly, if any, then those it announced.
   */
  readonly multiaddrs: readonly string[];
  /** When this node first saw it, in ms since the epoch. */
  readonly firstSeen: number;
  /** When this node last saw it (connected, or still connected), in ms since the epoch. */
  readonly lastSeen: number;
  /** On how many separate occasions (at least `PEER_OCCASION_GAP_MS` apart) it was seen. */
  readonly occasions: number;
  /** How the node learned of it. */
  readonly source: PeerSource;
}

/**
 * What a node remembers of the peers it met (the peer book, `peers.json`
 * in its data directory), and the join hints it was given. `start()` dials
 * the learned bootstrap peers, hinted peers and the most recently seen
 * peers beside the configured bootstrap peers.
 */
export interface PeerBookView {
  /** The remembered peers, most recently seen first. */
  readonly remembered: readonly RememberedPeer[];
  /**
   * The learned bootstrap peers: peers this node itself connected to on
   * several occasions spread over at least an hour, on a direct (not
   * relayed) address, at most two per network (IPv4 /16, IPv6 /48) and
   * two per source, at most `LEARNED_BOOTSTRAP_CAP` in all.
   */
  readonly learnedBootstrap: readonly RememberedPeer[];
  /** The join hints, newest first: dialled on start after the learned bootstrap peers. */
  readonly hints: readonly JoinHint[];
  /**
   * Adds addresses to dial on the next start: a contact string's bootstrap
   * addresses, or a contact's card. A source keeps at most
   * `JOIN_HINTS_PER_SOURCE` addresses, and a new set replaces its old one.
   *
   * @param multiaddrs Multiaddrs, each ending in `/p2p/<peer id>`; others
   *   (and this node's own) are skipped.
   * @param source Who vouched for them.
   * @returns How many addresses were kept.
   * @throws {TypeError} If `source` is not `hint:<id>`, `contact:<id>` or `mailbox:<id>`.
   */
  addJoinHints(multiaddrs: readonly string[], source: JoinHintSource): number;
}
