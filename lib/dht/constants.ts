/**
 * The tunables of DIM's DHT node, with their defaults, in one place.
 *
 * Times are in milliseconds. Options of {@linkcode createDhtNode} override
 * the ones that are per node; the rest are fixed here.
 *
 * @example Read a default
 * ```ts
 * import { DEFAULT_PROTOCOL_PREFIX, kadProtocol } from "./constants.ts";
 *
 * console.assert(kadProtocol(DEFAULT_PROTOCOL_PREFIX) === "/dim/kad/1.0.0");
 * ```
 *
 * @module
 */

/** The addresses a node listens on by default: every IPv4 interface, a free TCP port. */
export const DEFAULT_LISTEN: readonly string[] = Object.freeze(["/ip4/0.0.0.0/tcp/0"]);

/**
 * The prefix of DIM's DHT protocol: kad-dht speaks `<prefix>/kad/1.0.0`, so
 * DIM nodes form their own DHT, separate from IPFS's `/ipfs/kad/1.0.0`.
 */
export const DEFAULT_PROTOCOL_PREFIX = "/dim";

/**
 * How many inbound connections per second one IP address may open. libp2p's
 * default of 5 refuses the sixth DIM peer behind one NAT (or on one test
 * machine) within a second.
 */
export const DEFAULT_INBOUND_CONNECTION_THRESHOLD = 100;

/** The most open connections a node keeps before pruning (libp2p's default). */
export const DEFAULT_MAX_CONNECTIONS = 300;

/**
 * How often libp2p's connection monitor pings each open connection (over a
 * new stream) to find dead ones. libp2p's 10 s made a node with 60
 * connections open 12 streams a second while idle; yamux already sends a
 * keep-alive frame every 30 s on each connection.
 */
export const CONNECTION_PING_INTERVAL_MS = 60_000;

/** The most inbound connections that may be in their handshake at once. */
export const DEFAULT_MAX_INCOMING_PENDING_CONNECTIONS = 100;

/**
 * Kademlia's k: how many peers closest to a key store its record, and how
 * many closest answering peers a lookup path keeps. kad-dht's default.
 */
export const DHT_K = 20;

/**
 * Kademlia's alpha: how many requests one lookup has in flight, shared
 * among its disjoint paths (kad-dht is given `alpha / disjointPaths` per
 * path). A `get` with a quorum asks at most one peer per path at a time,
 * closest first, and none that could not change its outcome: it ends once
 * the closest peers agree, so farther peers asked in parallel would be
 * wasted.
 */
export const DEFAULT_QUERY_CONCURRENCY = 10;

/**
 * How many disjoint paths (S/Kademlia) a lookup walks: no peer is asked on
 * two paths, so malicious peers on one path cannot steer the others.
 * kad-dht's default.
 */
export const DEFAULT_DISJOINT_PATHS = 10;

/**
 * How many agreeing answers from the closest peers, on as many disjoint
 * paths, end a `get` once no closer peer remains to ask (see
 * `_lookup.ts`). go-libp2p-kad-dht likewise ends a lookup once its 3
 * closest peers have answered.
 */
export const DEFAULT_QUORUM = 3;

/**
 * A put's write quorum: a put returns once the PUT_QUORUM peers closest to
 * the key (found by a lookup that settled on them: no closer peer left to
 * ask) have acknowledged the record, and sends it to the rest of the k
 * closest in the background. These are the peers a `get` hears first (it
 * always asks closer peers before farther ones), so a get that follows the
 * put finds the new record on its closest peers. It equals
 * {@linkcode DEFAULT_QUORUM}, so such a get can end at its quorum on them.
 */
export const PUT_QUORUM = 3;

/** The longest a put's background replicas may run (a lookup and one request). */
export const BACKGROUND_REPLICAS_MS = 5_000;

/**
 * The longest a stopping node waits for its puts' background replicas
 * before it aborts them: enough for a lookup and a round of requests to
 * peers that answer; a peer that does not answer would have failed anyway.
 */
export const REPLICAS_STOP_WAIT_MS = 2_000;

/**
 * After how long an unanswered DHT request of a lookup stops holding its
 * path's slot, so that the path asks its next peer meanwhile: a slow or
 * unreachable peer (or a made-up one a malicious peer named) then costs
 * the lookup one straggling request, not a stalled path.
 */
export const LOOKUP_STRAGGLE_MS = 1_000;

/** How long one DHT request (dial included) may take. */
export const KAD_REQUEST_TIMEOUT_MS = 5_000;

/**
 * How long an idle DHT request stream is kept for the next request to the
 * same peer (closed between this and 1.5 times this after its last answer);
 * kad-dht's server closes it after 10 s without a request.
 */
export const KAD_STREAM_IDLE_MS = 5_000;

/**
 * The longest a `get`, `put` or `getClosestPeers` runs before it gives up,
 * whatever signal the caller passed.
 */
export const QUERY_TIMEOUT_MS = 30_000;

/**
 * How long `start()` waits for its bootstrap and reconnection dials before
 * it goes on; dials still pending continue in the background.
 */
export const START_DIAL_TIMEOUT_MS = 5_000;

/** How many dials `start()` runs at once. */
export const START_DIAL_CONCURRENCY = 8;

/**
 * How many remembered peers `start()` dials beside its bootstrap peers
 * (learned bootstrap peers, peers named by join hints, then the most
 * recently seen), so that a node restarted with its data directory
 * rejoins when its bootstrap peers are gone.
 */
export const RECONNECT_PEER_LIMIT = 16;

/**
 * Once one start dial answered, how much longer `start()` waits for the
 * others before it goes on (they continue in the background): a node is
 * online as soon as any peer answers, and one dead address that takes a
 * dial timeout to fail must not hold every start up.
 */
export const JOIN_GRACE_MS = 500;

/** The file of a node's data directory that remembers the peers it met (the peer book). */
export const NODE_PEERS_FILE = "peers.json";

/** The largest peer book file read; a larger one is ignored (and replaced on the next write). */
export const MAX_PEERS_FILE_BYTES = 1024 * 1024;

/** How many peers the peer book remembers; the least recently seen are forgotten first. */
export const PEER_BOOK_CAPACITY = 256;

/** How many addresses the peer book keeps per peer (the one this node dialled first). */
export const PEER_BOOK_ADDRESSES = 4;

/** The longest address the peer book keeps, as a contact card does. */
export const PEER_BOOK_ADDRESS_LENGTH = 256;

/**
 * How often, at most, the peer book is written while the node runs (it is
 * written once more on stop): a busy node meets peers every second, and
 * one file write per connection would cost more than the memory is worth.
 */
export const PEER_BOOK_WRITE_MS = 30_000;

/**
 * How long a peer must have been out of sight for a new connection to
 * count as another occasion it was seen: reconnections within minutes
 * (a dropped connection, two commands in a row) are one occasion.
 */
export const PEER_OCCASION_GAP_MS = 10 * 60_000;

/**
 * How many peers the learned bootstrap list holds. It is dialled on every
 * start beside the configured bootstrap peers; a few vetted peers are
 * enough to get in, and a short list is hard to fill with an attacker's.
 */
export const LEARNED_BOOTSTRAP_CAP = 8;

/** On how many separate occasions a peer must have been seen to be learned as a bootstrap peer. */
export const LEARNED_MIN_OCCASIONS = 3;

/**
 * Over how long those occasions must spread: a peer learned as a bootstrap
 * peer has stayed reachable for a while, not just appeared in a burst.
 */
export const LEARNED_MIN_SPAN_MS = 60 * 60_000;

/**
 * How many learned bootstrap peers may share one network (IPv4 /16, IPv6
 * /48, or DNS name): peers an attacker runs are mostly on few networks.
 */
export const LEARNED_PER_NETWORK = 2;

/**
 * How many learned bootstrap peers may come from one source (the
 * configuration, one contact's card or hint, or the network): no single
 * party can fill the list.
 */
export const LEARNED_PER_SOURCE = 2;

/**
 * After how long unseen a learned bootstrap peer may be replaced by a new
 * one that qualifies; until then the list does not churn.
 */
export const LEARNED_STALE_MS = 7 * 24 * 60 * 60_000;

/**
 * How many addresses one source of join hints (one contact's card, one
 * contact string) may add; a new set from the same source replaces its old one.
 */
export const JOIN_HINTS_PER_SOURCE = 3;

/** How many sources of join hints are remembered; the oldest are forgotten first. */
export const JOIN_HINT_SOURCES = 32;

/** How many peers named by join hints `start()` dials, newest hints first. */
export const JOIN_HINT_PEERS = 4;

/**
 * After a successful dial, how long `start()` waits for the first peer to
 * enter the routing table, and then for its own-neighbourhood lookup.
 */
export const JOIN_TIMEOUT_MS = 5_000;

/**
 * How long `stop()` lets libp2p close connections gracefully before it
 * stops waiting; with the rest of the shutdown it stays under 5 s.
 */
export const LIBP2P_STOP_TIMEOUT_MS = 3_500;

/**
 * How long a peer's addresses stay usable in the peer store. libp2p forgets
 * them after an hour; DIM keeps them a week so a laptop that was closed for
 * a weekend can still reconnect to the peers it knew.
 */
export const PEER_ADDRESS_MAX_AGE_MS = 7 * 24 * 60 * 60 * 1000;

/** How long a peer with no usable address stays in the peer store. */
export const PEER_MAX_AGE_MS = 7 * 24 * 60 * 60 * 1000;

/**
 * How long a peer and its addresses, once learnt from a DHT answer, are
 * not passed on again to the peer store and the routing table (see
 * `_peer_events.ts`). Far below the week the peer store keeps addresses.
 */
export const PEER_EVENT_REFRESH_MS = 60_000;

/** How many peers that filter remembers (about 200 bytes each). */
export const PEER_EVENT_MEMORY = 1024;

/**
 * How long a peer read from the peer store is answered from memory, and how
 * often at most an unchanged peer entry is rewritten (see
 * `_peer_store_cache.ts`).
 */
export const PEER_STORE_CACHE_TTL_MS = 60_000;

/** How many peers each node's peer-store cache holds. */
export const PEER_STORE_CACHE_ENTRIES = 512;

/**
 * kad-dht serves a stored record only if it was received less than 48 hours
 * ago (`PROVIDERS_VALIDITY` in its GET handler) and deletes it otherwise, so
 * owners must republish well within that time. The record guard uses the
 * same age: a stored record older than this no longer blocks a replacement.
 */
export const RECORD_MAX_AGE_MS = 48 * 60 * 60 * 1000;

/** The largest DHT wire message DIM reads from a raw kad stream. */
export const MAX_KAD_MESSAGE_BYTES = 1024 * 1024;

/** The file, inside a node's data directory, of its libp2p datastore. */
export const NODE_DATABASE_FILE = "node.db";

/** The file, inside a node's data directory, of its libp2p private key (mode 0600). */
export const NODE_KEY_FILE = "node.key";

/** The largest node key file accepted (a protobuf Ed25519 key is 68 bytes). */
export const MAX_NODE_KEY_BYTES = 4096;

/**
 * The kad-dht protocol id for a protocol prefix.
 *
 * @param prefix A protocol prefix such as `"/dim"`.
 * @returns The protocol id, such as `"/dim/kad/1.0.0"`.
 * @throws {TypeError} If `prefix` does not start with `/` or ends with `/`.
 * @example
 * ```ts
 * import { kadProtocol } from "./constants.ts";
 *
 * console.assert(kadProtocol("/test") === "/test/kad/1.0.0");
 * ```
 */
export function kadProtocol(prefix: string): string {
  if (!/^(\/[A-Za-z0-9._-]+)+$/.test(prefix)) {
    throw new TypeError(`Cannot use protocol prefix ${JSON.stringify(prefix)}: expected "/name"`);
  }
  return `${prefix}/kad/1.0.0`;
}

// ---------------------------------------------------------------------------
// Reach: circuit relay v2, DIM's dial-back check, reservations.

/** The protocol of DIM's dial-back reachability check. */
export const REACH_PROTOCOL = "/dim/reach/1.0.0";

/**
 * The largest dial-back message (a request: 1 type byte, a 16-byte nonce, a
 * count and at most {@linkcode REACH_MAX_PORTS} ports of 2 bytes). Anything
 * longer is refused before it is read.
 */
export const REACH_MAX_MESSAGE_BYTES = 64;

/**
 * How many ports one dial-back request may name: the checker dials each on
 * the requester's own IP address, so this bounds one request's work.
 */
export const REACH_MAX_PORTS = 4;

/**
 * How long a dial-back (connect, Noise, one stream) may take. Longer than a
 * healthy dial across the internet (under 1 s), short enough that a SYN a
 * NAT drops counts as a failure within one check.
 */
export const REACH_DIAL_TIMEOUT_MS = 5_000;

/** How long a whole dial-back exchange may take, request to answer. */
export const REACH_REQUEST_TIMEOUT_MS = 10_000;

/**
 * How often one peer, and separately one IP address, may have this node
 * dial back: once a minute. Peer IDs cost nothing to make, so the IP limit
 * is what holds; a requester gets dialled on its own address only, so the
 * most it can cause is one connection attempt to itself a minute.
 */
export const REACH_SERVE_INTERVAL_MS = 60_000;

/** How many dial-backs this node runs at once for others; more are refused. */
export const REACH_SERVE_CONCURRENCY = 4;

/** How many peers and IP addresses the dial-back rate limiter remembers. */
export const REACH_LIMITER_ENTRIES = 1024;

/** How many peers one check round asks at once. */
export const REACH_CHECK_PEERS = 4;

/**
 * How many distinct peers must have dialled this node back on a public
 * address (see `isPublicAddress`) for it to count as publicly reachable:
 * two, so one lying or misconfigured peer cannot make a NATed node a DHT
 * server.
 */
export const REACH_PUBLIC_SUCCESSES = 2;

/**
 * How many distinct peers must have failed to dial this node back, with
 * none succeeding, for it to count as not reachable ("private"). Two, not
 * more: a small network (one `dim node` and two users) has no third peer to
 * ask, and a wrong "private" only costs relay reservations and DHT client
 * mode, while a wrong "public" makes others time out on this node.
 */
export const REACH_PRIVATE_FAILURES = 2;

/** How long a dial-back result counts towards the decision. */
export const REACH_RESULT_TTL_MS = 30 * 60_000;

/** How long after the node has started (and joined) the first check runs. */
export const REACH_FIRST_CHECK_MS = 1_000;

/** How soon a check round that could not decide is retried, with whatever peers are there then. */
export const REACH_RETRY_MS = 30_000;

/** How often a decided reachability is checked again. */
export const REACH_RECHECK_MS = 15 * 60_000;

/** The file, inside a node's data directory, of its last known reachability (JSON). */
export const NODE_REACH_FILE = "reach.json";

/** The largest reachability file read back. */
export const MAX_REACH_FILE_BYTES = 16 * 1024;

/** How many relay reservations a node keeps while it is not publicly reachable. */
export const DEFAULT_RELAYS = 2;

/**
 * How often the relay keeper checks its reservations and fills missing
 * ones. A relay whose connection closes is replaced at once (on the
 * connection's close event); this tick catches the rest.
 */
export const RELAY_TICK_MS = 2_000;

/**
 * How often the keeper pings each relay it holds a reservation on, and how
 * long a ping may take. Two missed pings close the connection and the relay
 * is replaced: a relay whose host vanished without closing its sockets is
 * replaced within about 2 × 3 s + a tick, under 10 s.
 */
export const RELAY_PING_INTERVAL_MS = 3_000;

/** How long one relay ping may take before it counts as missed. */
export const RELAY_PING_TIMEOUT_MS = 3_000;

/** How many pings in a row a relay may miss before it is dropped. */
export const RELAY_MAX_MISSED_PINGS = 2;

/**
 * How long a relay that refused or failed a reservation is not tried again,
 * so the keeper moves on to other candidates.
 */
export const RELAY_RETRY_BACKOFF_MS = 60_000;

/** How long a reservation request (dial included) may take. */
export const RELAY_RESERVE_TIMEOUT_MS = 5_000;

/**
 * How long opening a stream on an open relayed connection may take before
 * the connection is taken for dead (a relay that went silent keeps it open)
 * and a fresh one is dialed in the same call. Negotiating a stream is one
 * round trip through the relay, milliseconds even across continents; 2 s
 * leaves room for a loaded relay and still leaves most of a delivery
 * attempt (5 s) for the fresh dial.
 */
export const RELAY_STREAM_OPEN_TIMEOUT_MS = 2_000;

/**
 * How many reservations this node holds as a relay, in all. Each costs the
 * relay one kept connection (the client's) and a map entry; 128 stays well
 * under the 300 connections libp2p keeps before pruning, leaving room for
 * the DHT. A `dim node` with more memory can serve more by running more nodes.
 */
export const RELAY_MAX_RESERVATIONS = 128;

/**
 * How many of those reservations may come from one IP address: a quarter of
 * them, so the many users behind one carrier-grade NAT (who each pick 2
 * relays of the whole network) still get slots, while one host cannot take
 * them all. One peer holds at most one reservation (a renewal keeps its slot).
 */
export const RELAY_MAX_RESERVATIONS_PER_IP = 32;

/**
 * How long a reservation lasts before the client must renew it (libp2p's
 * client renews 5 minutes before expiry). 15 minutes, not libp2p's 2 hours,
 * so a slot held by a client that vanished is freed soon (the relay also
 * frees slots of clients it is no longer connected to when the cap is hit).
 */
export const RELAY_RESERVATION_TTL_MS = 15 * 60_000;

/**
 * The byte budget of one relayed connection, both directions together:
 * 32 MiB, so an 8 MiB file (with DIM's framing and encryption overhead, a
 * few percent) fits four times over alongside a chat. After it the relay
 * resets the connection; DIM's outbox and file sender re-dial.
 */
export const RELAY_CONNECTION_BYTES = 32 * 1024 * 1024;

/**
 * The time budget of one relayed connection: 10 minutes, then the relay
 * resets it and DIM re-dials on the next message (an hours-long chat runs
 * over a chain of relayed connections). Bounds what an idle circuit costs.
 */
export const RELAY_CONNECTION_DURATION_MS = 10 * 60_000;

/** How many relay requests (hop streams) one connection may have open at once. */
export const RELAY_MAX_HOP_STREAMS = 32;

/**
 * How many relayed connections this relay may open to one reserved client
 * at once (stop streams on its connection): the peers talking to one user
 * through this relay at the same time.
 */
export const RELAY_MAX_STOP_STREAMS = 64;

// ---------------------------------------------------------------------------
// LAN discovery: mDNS (`_lan.ts`), when `lanDiscovery` is on.

/**
 * The DNS-SD service DIM nodes ask for and answer on the LAN. DIM's own
 * name, not libp2p's `_p2p._udp.local`, so other libp2p programs on the
 * LAN (IPFS, …) are neither asked nor found.
 */
export const LAN_SERVICE_TAG = "_dim._udp.local";

/**
 * How often a node sends its mDNS query (one multicast packet). Others
 * answer each query with a multicast answer everyone hears, so a node that
 * joins the LAN is found by the others within this time, and finds them
 * within a few milliseconds of its first query. `@libp2p/mdns`'s default.
 */
export const LAN_QUERY_INTERVAL_MS = 10_000;

/**
 * The most mDNS answers handled per minute; more are ignored until the
 * minute is over. Ten DIM nodes on a LAN make about 600 (each hears every
 * node's answer to every node's query), all about peers already checked;
 * a flood of made-up peers is cut off here.
 */
export const LAN_EVENTS_PER_MINUTE = 600;

/**
 * The most peers found on the LAN that are dialed (to check they speak
 * DIM) per minute: a LAN host answering with ever new peer IDs costs at
 * most this many dials.
 */
export const LAN_CHECKS_PER_MINUTE = 30;

/** The most such checks running at once; a peer found meanwhile is checked on a later answer. */
export const LAN_MAX_CHECKS = 4;

/**
 * The most peers found on the LAN kept at once (each costs a connection
 * and a routing-table slot); others found meanwhile are ignored until one
 * disconnects.
 */
export const LAN_MAX_PEERS = 32;

/** The most addresses of one LAN answer dialed (the rest are ignored). */
export const LAN_MAX_ADDRESSES = 4;

/** How long a LAN check (dial, Noise, identify) may take. */
export const LAN_CHECK_TIMEOUT_MS = 5_000;

/**
 * How long a LAN peer that does not speak DIM's protocols is left alone
 * after it was dropped: its answers every 10 s would otherwise be dials.
 */
export const LAN_REJECT_MS = 10 * 60_000;

/** How long a LAN peer that could not be dialed is left alone before it is tried again. */
export const LAN_RETRY_MS = 60_000;

/** How many rejected or unreachable LAN peers are remembered. */
export const LAN_MEMORY = 256;

/**
 * How long `start()` waits for a DIM peer on the LAN when no bootstrap or
 * remembered peer answered: the first query is answered within
 * milliseconds and a LAN check takes tens of them, so 3 s leave room for
 * a slow Wi-Fi and cost an offline node little.
 */
export const LAN_JOIN_WAIT_MS = 3_000;

/**
 * How long a node takes a record value it has validated as valid without
 * checking it again (its signature, its key and its validity period), for
 * the same key: a get that reads its own copy, and answers equal to it or
 * to one checked before, then costs no signature check. A DIM record is
 * remembered no longer than it is accepted (its expiry plus the clock-skew
 * tolerance), so an expired record is refused as before.
 */
export const VALIDATED_MEMORY_MS = 60_000;

/** How many validated record values a node remembers (one per key). */
export const VALIDATED_ENTRIES = 1_024;
