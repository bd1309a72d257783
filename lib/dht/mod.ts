/**
 * DIM's DHT node: a js-libp2p node (TCP, Noise, Yamux) running kad-dht in
 * server mode on `/dim/kad/1.0.0`, with DIM's record validators and
 * selectors, a replay guard that never lets a stored record go backwards,
 * optional persistence (peer ID, peer store and DHT records) in a data
 * directory, and reach through NAT: circuit relay v2 (a relay server on
 * public nodes, reservations on relays while not reachable), DIM's own
 * dial-back reachability check, and an explicit rule for which networks
 * count as public ({@linkcode isPublicAddress}).
 *
 * Importing this module changes no global. Making the first node applies
 * two Deno compatibility fixes, process-wide, so that a process exits once
 * its nodes have stopped and does not keep every timeout signal alive: it
 * gives `BroadcastChannel` the `unref()` libp2p's lock expects, and
 * replaces `AbortSignal.timeout()` by one whose timer is unref'd (as in
 * Node.js) and which is collected when nothing listens to it.
 *
 * @example Two nodes on loopback share a record
 * ```ts
 * import { createDhtNode } from "./mod.ts";
 *
 * // A toy namespace: any value of one byte or more; the larger first byte wins.
 * const validators = {
 *   demo: (_key: Uint8Array, value: Uint8Array) =>
 *     value.length > 0 ? Promise.resolve() : Promise.reject(new Error("empty")),
 * };
 * const selectors = {
 *   demo: (_key: Uint8Array, records: Uint8Array[]) =>
 *     records.reduce((best, r, i) => (r[0]! > records[best]![0]! ? i : best), 0),
 * };
 * const listen = ["/ip4/127.0.0.1/tcp/0"];
 *
 * await using alice = await createDhtNode({ listen, validators, selectors });
 * await using bob = await createDhtNode({
 *   listen,
 *   validators,
 *   selectors,
 *   bootstrap: alice.multiaddrs,
 * });
 * await alice.put("/demo/status", new Uint8Array([1]));
 * await alice.put("/demo/status", new Uint8Array([2]));
 * console.assert((await bob.get("/demo/status"))?.[0] === 2);
 * ```
 *
 * @module
 */
export { createDhtNode, DhtNode } from "./node.ts";
export { isPublicAddress } from "./public_networks.ts";
export { readReachability } from "./_reach.ts";
export type {
  DhtCallOptions,
  DhtChunkList,
  DhtClosestPeersOptions,
  DhtGetOptions,
  DhtHandleOptions,
  DhtNodeOptions,
  DhtPeer,
  DhtSelector,
  DhtStats,
  DhtStream,
  DhtStreamChunk,
  DhtStreamHandler,
  DhtValidator,
  JoinHint,
  JoinHintSource,
  PeerBookView,
  PeerSource,
  Reachability,
  RelayLimits,
  RememberedPeer,
} from "./types.ts";
export {
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
  kadProtocol,
  NODE_DATABASE_FILE,
  NODE_KEY_FILE,
  NODE_REACH_FILE,
  QUERY_TIMEOUT_MS,
  REACH_PROTOCOL,
  RECORD_MAX_AGE_MS,
  RELAY_CONNECTION_BYTES,
  RELAY_CONNECTION_DURATION_MS,
  RELAY_MAX_RESERVATIONS,
  RELAY_MAX_RESERVATIONS_PER_IP,
} from "./constants.ts";
