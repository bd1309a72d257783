/**
 * Every place DIM relies on, or patches, what js-libp2p and kad-dht do not
 * offer in their typed public API — in one module, behind one shape check.
 *
 * Checked against `libp2p` 3.3.11, `@libp2p/kad-dht` 16.4.5,
 * `@libp2p/tcp` 11.0.28, `@libp2p/utils` 7.4.1, `@libp2p/yamux` 8.0.3 and
 * `@libp2p/circuit-relay-v2` 4.2.13 (the pins of
 * `deno.json`). {@linkcode checkLibp2pInternals} runs when a node is made
 * and throws a {@linkcode Libp2pInternalsError} naming every part that is
 * missing, so an upgrade that moves one fails at once and loudly, not by
 * slowly making DIM's figures worse; `tests/dht/libp2p_internals_test.ts`
 * runs it on a real node. After an upgrade, read the sources again for each
 * row below.
 *
 * | Relied on | By | Why |
 * | --- | --- | --- |
 * | `services.dht.routingTable` (`size`, `closestPeers`, `peer:add`/`peer:remove` events) | lookups, `routingTableSize` | kad-dht's public API has no "closest peers of my table"; DIM's lookup starts from them |
 * | `routingTable.kb` (`root`, leaves' `peers`, `toIterable`, `closest`) | {@linkcode installFastClosest} | kad-dht ranks the table per request by sorted insertion: ≈1 ms per request at 100 peers, a quarter of a request's CPU (`_closest.ts`) |
 * | `services.dht.peerRouting.getClosestPeersOffline` (the closer peers of every answer the server sends) | {@linkcode installFastCloserPeers} | for a key that is not a peer ID it still tried to parse one, and built and caught an error per request, then hashed the key asynchronously: a third of the server's own work per GET_VALUE |
 * | `services.dht.network` (`peer` events, `dispatchEvent`) | {@linkcode filterPeerEvents}, `records.ts` | repeated "peer seen" events cost a peer-store write and a routing-table job each, a fifth of a request's CPU (`_peer_events.ts`); DIM's lookups announce new peers there as kad-dht's own do |
 * | `peerStore` (the one object all components share; `consumePeerRecord` and `has` call `get`/`patch`) | {@linkcode installPeerStoreCache} | a peer-store read per closer peer and a no-op write per stream, a sixth of a request's CPU (`_peer_store_cache.ts`) |
 * | `components.addressManager._updatePeerStoreAddresses.stop` | {@linkcode cancelAddressUpdate} | a 1 s debounced write that outlives `stop()` and would hit a closed database |
 * | a TCP connection's `maConn.socket` and `maConn.sendData` | {@linkcode coalesceWrites} | one `socket.write` per frame chunk: 8–26 writes per request, a third of a small request's CPU (`_coalesce.ts`) |
 * | `LengthPrefixedDecoder` of `@libp2p/utils` (`decode`, `lengthDecoder`, `buffer`), which Noise frames with | {@linkcode quietLengthDecoders} | the decoder learns that a chunk is used up when its length decoder throws a new `RangeError`; building that error's stack trace for every chunk received was 4% of a DHT get's CPU |
 * | `YamuxStream` of `@libp2p/yamux` (`sendWindowUpdate`, `state`, `recvWindow`, `recvWindowCapacity`) | {@linkcode batchWindowUpdates} | a stream answered every data frame it received with a window update: one more frame each way per message (encrypted, written, read, decrypted), where go-yamux waits until half the window is used; DHT get p50 at 20 nodes 0.66–0.74 → 0.52–0.59 ms, put 1.27–1.44 → 0.99–1.15 ms |
 * | a stream's `Symbol.asyncIterator` | {@linkcode withReliableIteration} | `@libp2p/utils` 7.4.1's iterator can wait for ever when the remote closes early (`_stream.ts`) |
 * | the circuit-relay transport's `reservationStore` (`addRelay`, `reservations`, `relay:removed` events) and `components.addressManager` (`confirmObservedAddr`, `removeObservedAddr`) | {@linkcode relayInternals}, `_relays.ts` | the transport reserves on relays it discovers itself, on the bootstrap list's terms; DIM picks its relays (hop peers spread over /24s) and gives up a reservation when the node turns public |
 * | the relay server's bound `onHop` | {@linkcode relayInternals}, `_relay_server.ts` | the server has no switch: `relayServer: "auto"` offers the hop protocol only while the node is public, by registering and removing that handler |
 *
 * The TCP connection shape is checked by {@linkcode checkConnectionInternals};
 * at run time a connection of another shape (another transport) is left
 * as it is, so that check runs in the test, on a real connection.
 *
 * ## Why DIM runs its own lookup rather than kad-dht's `get`
 *
 * kad-dht's `get()` and `getClosestPeers()` yield query progress events
 * (`PEER_RESPONSE`, `VALUE`, `QUERY_ERROR`), so a caller can stop a `get`
 * after enough agreeing `VALUE` events. That cannot carry DIM's quorum
 * without losing its figures: the events do not say whether a closer peer
 * is still unasked, so "the closest peers agree" cannot be told from "the
 * first three answers agree" (which would let a replay on far peers win);
 * kad-dht sends `alpha` requests per path on all disjoint paths at once, so
 * several requests are in flight before the first answer; and its network
 * layer opens a new stream per request (≈0.5 ms of CPU each on loopback).
 * Measured on 20 loopback nodes: kad-dht's `get` ≈ 73 ms and 19 requests
 * (52 at 100 nodes); DIM's lookup 1.18 ms p50 and 3 requests at both 20
 * and 100 nodes. So `_lookup.ts` (the algorithm), `_kad_client.ts` (one
 * stream per peer, reused) and `_kad_wire.ts` (the messages it sends) stay;
 * kad-dht still serves the protocol, keeps the routing table and
 * validates incoming records.
 *
 * @module
 */
import type { PeerId, PeerInfo, PeerStore, Stream } from "@libp2p/interface";
import { LengthPrefixedDecoder } from "@libp2p/utils";
import { StreamState, YamuxStream } from "@libp2p/yamux/stream";
import type { Multiaddr } from "@multiformats/multiaddr";
import { DimError } from "../errors.ts";
import { ClosestIndex, type ClosestOptions, type KBucketLike } from "./_closest.ts";
import { coalescedSendData, type SendData, type SocketLike } from "./_coalesce.ts";
import { DHT_K } from "./constants.ts";
import { kadId } from "./_distance.ts";
import { peerKey } from "./_lookup.ts";
import type { PeerEventFilter } from "./_peer_events.ts";
import type { PeerStoreCache } from "./_peer_store_cache.ts";
import { readStream } from "./_stream.ts";

/** The package versions whose internals this module was checked against. */
export const CHECKED_VERSIONS: Readonly<Record<string, string>> = Object.freeze({
  "libp2p": "3.3.11",
  "@libp2p/kad-dht": "16.4.5",
  "@libp2p/tcp": "11.0.28",
  "@libp2p/utils": "7.4.1",
  "@libp2p/yamux": "8.0.3",
  "@libp2p/circuit-relay-v2": "4.2.13",
});

/** Thrown when a libp2p or kad-dht object lacks a part DIM relies on. */
export class Libp2pInternalsError extends DimError {}

/**
 * Throws one {@linkcode Libp2pInternalsError} naming every part of the
 * checked list that is missing.
 */
function requireAll(checks: readonly (readonly [boolean, string])[]): void {
  const missing = checks.filter(([ok]) => !ok).map(([, name]) => name);
  if (missing.length > 0) {
    throw new Libp2pInternalsError(
      `Cannot create DHT node: libp2p internals changed (checked against ${versions()}); ` +
        `missing: ${missing.join(", ")}. See lib/dht/_libp2p_internals.ts`,
    );
  }
}

/** kad-dht's routing table, as DIM uses it. */
export interface RoutingTableInternals extends EventTarget {
  /** How many peers it holds. */
  readonly size: number;
  /** Its k-bucket tree. */
  readonly kb: KBucketLike;
  /** The `count` peers closest to a position, nearest first. */
  closestPeers(kadId: Uint8Array, options: { count: number }): PeerId[];
}

/** kad-dht's peer routing, as DIM patches it. */
export interface PeerRoutingInternals {
  /**
   * The peers of the routing table closest to a key, with their addresses,
   * nearest first (and first of all the peer the key names, if it is a
   * peer ID): the closer peers of every answer the server sends.
   */
  getClosestPeersOffline(
    key: Uint8Array,
    options?: { signal?: AbortSignal },
  ): Promise<{ id: PeerId; multiaddrs: Multiaddr[] }[]>;
}

/** The parts of a kad-dht service DIM uses. */
export interface KadInternals {
  /** kad-dht's network layer: emits a `peer` event for each peer it learns of. */
  readonly network: EventTarget;
  /** kad-dht's peer routing, which its request handlers share. */
  readonly peerRouting: PeerRoutingInternals;
  /** kad-dht's routing table. */
  readonly routingTable: RoutingTableInternals;
}

/** The parts of a libp2p node DIM uses beyond its public API. */
export interface Libp2pInternals {
  /** The kad-dht service. */
  readonly kad: KadInternals;
  /** The peer store all components share. */
  readonly peerStore: PeerStore;
  /** The address manager's debounced peer-store update. */
  readonly addressUpdate: { stop(): void };
}

/** What {@linkcode checkLibp2pInternals} is given: a libp2p node with a `dht` service. */
export interface Libp2pLike {
  /** The services, among them kad-dht under `dht`. */
  readonly services: { readonly dht: unknown };
  /** The peer store. */
  readonly peerStore: PeerStore;
}

const PEER_STORE_METHODS = ["get", "getInfo", "merge", "patch", "save", "delete"] as const;

/**
 * Checks that a libp2p node has every internal part DIM relies on.
 *
 * @param libp2p The node, made with a kad-dht service named `dht`.
 * @returns Those parts, typed.
 * @throws {Libp2pInternalsError} Naming every missing part, if any is missing.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkLibp2pInternals, Libp2pInternalsError } from "./_libp2p_internals.ts";
 *
 * const fake = { services: { dht: {} }, peerStore: {} as never };
 * assert.throws(() => checkLibp2pInternals(fake), Libp2pInternalsError);
 * ```
 */
export function checkLibp2pInternals(libp2p: Libp2pLike): Libp2pInternals {
  const dht = libp2p.services.dht as Partial<KadInternals> | undefined;
  const table = dht?.routingTable as Partial<RoutingTableInternals> | undefined;
  const kb = table?.kb as Partial<KBucketLike> | undefined;
  const store = libp2p.peerStore as unknown as Record<string, unknown> | undefined;
  const components = (libp2p as { components?: { addressManager?: unknown } }).components;
  const update = (components?.addressManager as { _updatePeerStoreAddresses?: unknown } | undefined)
    ?._updatePeerStoreAddresses as { stop?: unknown } | undefined;
  requireAll([
    [dht?.network instanceof EventTarget, "@libp2p/kad-dht: services.dht.network (an EventTarget)"],
    [table instanceof EventTarget, "@libp2p/kad-dht: services.dht.routingTable (an EventTarget)"],
    [typeof table?.size === "number", "@libp2p/kad-dht: routingTable.size"],
    [
      typeof dht?.peerRouting?.getClosestPeersOffline === "function",
      "@libp2p/kad-dht: services.dht.peerRouting.getClosestPeersOffline()",
    ],
    [typeof table?.closestPeers === "function", "@libp2p/kad-dht: routingTable.closestPeers()"],
    [typeof kb?.closest === "function", "@libp2p/kad-dht: routingTable.kb.closest()"],
    [typeof kb?.toIterable === "function", "@libp2p/kad-dht: routingTable.kb.toIterable()"],
    [isBucket(kb?.root), "@libp2p/kad-dht: routingTable.kb.root (a k-bucket tree node)"],
    ...PEER_STORE_METHODS.map((name) =>
      [typeof store?.[name] === "function", `libp2p: peerStore.${name}()`] as const
    ),
    [
      typeof update?.stop === "function",
      "libp2p: components.addressManager._updatePeerStoreAddresses.stop()",
    ],
  ]);
  return {
    kad: dht as KadInternals,
    peerStore: libp2p.peerStore,
    addressUpdate: update as { stop(): void },
  };
}

function isBucket(value: unknown): boolean {
  const bucket = value as { peers?: unknown; left?: unknown; right?: unknown } | null | undefined;
  return typeof bucket === "object" && bucket !== null &&
    (Array.isArray(bucket.peers) || (isBucket(bucket.left) && isBucket(bucket.right)));
}

function versions(): string {
  return Object.entries(CHECKED_VERSIONS).map(([name, version]) => `${name} ${version}`).join(
    ", ",
  );
}

/** A TCP connection's transport, as `@libp2p/tcp` 11 builds it. */
interface TcpConnectionInternals {
  readonly socket: SocketLike;
  sendData: SendData;
}

/**
 * Checks that a libp2p connection is a TCP connection of the shape
 * {@linkcode coalesceWrites} relies on.
 *
 * @param connection A libp2p `Connection`.
 * @returns Nothing.
 * @throws {Libp2pInternalsError} If `maConn.socket.write` or `maConn.sendData` is missing.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkConnectionInternals, Libp2pInternalsError } from "./_libp2p_internals.ts";
 *
 * assert.throws(() => checkConnectionInternals({}), Libp2pInternalsError);
 * ```
 */
export function checkConnectionInternals(connection: unknown): void {
  if (tcpTransport(connection) === undefined) {
    throw new Libp2pInternalsError(
      `Cannot coalesce socket writes: libp2p internals changed (checked against ${versions()}); ` +
        "missing: connection.maConn.socket.write() or connection.maConn.sendData()",
    );
  }
}

function tcpTransport(connection: unknown): TcpConnectionInternals | undefined {
  const transport = (connection as { maConn?: Partial<TcpConnectionInternals> } | null)?.maConn;
  if (typeof transport?.sendData !== "function") return undefined;
  if (typeof transport.socket?.write !== "function") return undefined;
  return transport as TcpConnectionInternals;
}

/**
 * Makes the TCP transport under a libp2p connection write each batch of
 * frames once (`_coalesce.ts`). A connection of another shape is left as
 * it is.
 *
 * @param connection A libp2p `Connection`.
 * @returns Whether the transport was changed.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { coalesceWrites } from "./_libp2p_internals.ts";
 *
 * const written: Uint8Array[] = [];
 * const maConn = {
 *   socket: { write: (bytes: Uint8Array) => written.push(bytes) > 0 },
 *   sendData: (_data: unknown) => ({ sentBytes: 0, canSendMore: true }),
 * };
 * assert.equal(coalesceWrites({ maConn }), true);
 * const chunks = [new Uint8Array([0, 2]), new Uint8Array([7, 7])];
 * maConn.sendData({ bufs: chunks, byteLength: 4, subarray: () => new Uint8Array([0, 2, 7, 7]) });
 * assert.deepEqual(written, [new Uint8Array([0, 2, 7, 7])]);
 * ```
 */
export function coalesceWrites(connection: unknown): boolean {
  const transport = tcpTransport(connection);
  if (transport === undefined) return false;
  Object.defineProperty(transport, "sendData", {
    configurable: true,
    writable: true,
    enumerable: false,
    value: coalescedSendData(transport.sendData, transport.socket),
  });
  return true;
}

/**
 * Replaces `kb.closest` with a {@linkcode ClosestIndex} that `table`'s
 * `peer:add` and `peer:remove` events keep up to date.
 *
 * @param kb kad-dht's k-bucket tree (`routingTable.kb`).
 * @param table The routing table that owns it.
 * @param defaultCount The count when none is given (kad-dht's k).
 * @returns The index.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { peerIdFromString } from "@libp2p/peer-id";
 * import type { KBucketLike } from "./_closest.ts";
 * import { installFastClosest } from "./_libp2p_internals.ts";
 *
 * const peerId = peerIdFromString("12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo");
 * const kb: KBucketLike = {
 *   root: { peers: [{ peerId, kadId: new Uint8Array(32) }] },
 *   toIterable: () => [],
 *   closest: () => [],
 * };
 * installFastClosest(kb, new EventTarget(), 20);
 * assert.deepEqual([...kb.closest(new Uint8Array(32))], [peerId]);
 * ```
 */
export function installFastClosest(
  kb: KBucketLike,
  table: EventTarget,
  defaultCount: number,
): ClosestIndex {
  const index = new ClosestIndex(kb, defaultCount);
  table.addEventListener("peer:add", () => index.invalidate());
  table.addEventListener("peer:remove", () => index.invalidate());
  Object.defineProperty(kb, "closest", {
    configurable: true,
    writable: true,
    enumerable: false,
    value: function* (id: Uint8Array, options?: ClosestOptions): Generator<PeerId> {
      yield* index.closest(id, options);
    },
  });
  return index;
}

/**
 * Puts a faster equivalent in place of kad-dht's `getClosestPeersOffline`
 * for keys that cannot be a peer ID: a multihash that could name a peer
 * starts with the identity (0x00) or SHA-256 (0x12) code, so for any other
 * first byte (every DIM key starts with `/`) kad-dht's attempt to parse one
 * can only fail, and is skipped; the key is hashed with the same SHA-256,
 * synchronously. The rest is kad-dht's: the routing table's closest peers,
 * each with its peer-store entry (read anew), in order; the closest peers
 * of the last 1,024 keys asked for are kept until the table's `peer:add`
 * or `peer:remove` events say it changed, 1 s at most. Other keys go to
 * the original.
 *
 * @param peerRouting kad-dht's peer routing (changed in place).
 * @param routingTable kad-dht's routing table.
 * @param peerStore The peer store.
 * @param peek Its cached entries, read without a wait (`PeerStoreCache.peekInfo`).
 * @returns Nothing.
 * @example
 * ```ts ignore
 * import { checkLibp2pInternals, installFastCloserPeers } from "./_libp2p_internals.ts";
 *
 * const { kad, peerStore } = checkLibp2pInternals(libp2p);
 * installFastCloserPeers(kad.peerRouting, kad.routingTable, peerStore);
 * ```
 */
export function installFastCloserPeers(
  peerRouting: PeerRoutingInternals,
  routingTable: RoutingTableInternals,
  peerStore: PeerStore,
  peek: (peer: PeerId) => PeerInfo | undefined = () => undefined,
): void {
  const original = peerRouting.getClosestPeersOffline.bind(peerRouting);
  // The closest peers of recent keys, while the table has not changed since.
  let version = 0;
  routingTable.addEventListener("peer:add", () => version++);
  routingTable.addEventListener("peer:remove", () => version++);
  const recent = new Map<string, { version: number; size: number; at: number; ids: PeerId[] }>();
  const closestTo = (key: Uint8Array): PeerId[] => {
    const name = peerKey(key);
    const known = recent.get(name);
    const now = Date.now();
    if (
      known?.version === version && known.size === routingTable.size &&
      now - known.at < CLOSER_KEEP_MS
    ) {
      return known.ids;
    }
    const ids = routingTable.closestPeers(kadId(key), { count: DHT_K });
    recent.delete(name);
    if (recent.size >= CLOSER_KEYS) recent.delete(recent.keys().next().value!);
    recent.set(name, { version, size: routingTable.size, at: now, ids });
    return ids;
  };
  peerRouting.getClosestPeersOffline = async (key, options) => {
    if (key.length === 0 || key[0] === 0x00 || key[0] === 0x12) return await original(key, options);
    options?.signal?.throwIfAborted();
    const output: { id: PeerId; multiaddrs: Multiaddr[] }[] = [];
    for (const peerId of closestTo(key)) {
      const cached = peek(peerId);
      if (cached !== undefined) {
        output.push(cached);
        continue;
      }
      try {
        output.push(await peerStore.getInfo(peerId, options));
      } catch (cause) {
        if ((cause as { name?: unknown } | null)?.name !== "NotFoundError") throw cause;
      }
    }
    return output;
  };
}

// How many keys' closest peers `installFastCloserPeers` keeps, and how long
// at most (the table's events say when it changes; this bounds a missed one).
const CLOSER_KEYS = 1024;
const CLOSER_KEEP_MS = 1000;

/**
 * Makes `network` drop the `peer` events `filter` does not admit; other
 * events pass unchanged.
 *
 * @param network The event target (kad-dht's network layer).
 * @param filter The filter.
 * @returns A function that removes the filter again.
 * @example
 * ```ts
 * import { PeerEventFilter } from "./_peer_events.ts";
 * import { filterPeerEvents } from "./_libp2p_internals.ts";
 *
 * const filter = new PeerEventFilter({ refreshMs: 60_000, maxEntries: 100, clock: Date.now });
 * const remove = filterPeerEvents(new EventTarget(), filter);
 * remove();
 * ```
 */
export function filterPeerEvents(network: EventTarget, filter: PeerEventFilter): () => void {
  const own = Object.getOwnPropertyDescriptor(network, "dispatchEvent");
  const dispatch = network.dispatchEvent;
  const filtered = (event: Event): boolean =>
    filter.admitEvent(event) ? dispatch.call(network, event) : true;
  Object.defineProperty(network, "dispatchEvent", {
    configurable: true,
    writable: true,
    enumerable: false,
    value: filtered,
  });
  return () => {
    if (network.dispatchEvent !== filtered) return;
    if (own === undefined) delete (network as { dispatchEvent?: unknown }).dispatchEvent;
    else Object.defineProperty(network, "dispatchEvent", own);
  };
}

/**
 * Puts `cache`'s methods in place of the peer store's own.
 *
 * @param store The peer store (libp2p's `peerStore`, the object every component holds).
 * @param cache The cache.
 * @returns Nothing.
 * @example
 * ```ts ignore
 * import { installPeerStoreCache } from "./_libp2p_internals.ts";
 * import { PeerStoreCache } from "./_peer_store_cache.ts";
 *
 * const cache = new PeerStoreCache({ ttlMs: 60_000, maxEntries: 512, clock: Date.now });
 * installPeerStoreCache(libp2p.peerStore, cache);
 * ```
 */
export function installPeerStoreCache(store: PeerStore, cache: PeerStoreCache): void {
  Object.assign(store, cache.wrap(store));
}

/**
 * Cancels the address manager's pending peer-store update: libp2p
 * debounces it by 1 s whenever a listener closes, which `stop()` does, and
 * the timer would outlive `stop()` and write to a closed datastore.
 *
 * @param internals The node's internals.
 * @returns Nothing.
 * @example
 * ```ts ignore
 * cancelAddressUpdate(checkLibp2pInternals(libp2p));
 * ```
 */
export function cancelAddressUpdate(internals: Libp2pInternals): void {
  internals.addressUpdate.stop();
}

/**
 * Makes `for await (const chunk of stream)` use `readStream` (`_stream.ts`),
 * which always ends.
 *
 * @param stream The stream, changed in place.
 * @returns The same stream.
 * @example
 * ```ts ignore
 * const stream = withReliableIteration(await libp2p.dialProtocol(peer, protocol));
 * for await (const chunk of stream) console.log(chunk.byteLength);
 * ```
 */
export function withReliableIteration(stream: Stream): Stream {
  Object.defineProperty(stream, Symbol.asyncIterator, {
    configurable: true,
    writable: true,
    enumerable: false,
    value: () => readStream(stream),
  });
  return stream;
}

/** The parts of `@libp2p/utils`' `LengthPrefixedDecoder` that {@linkcode quietLengthDecoders} uses. */
interface LengthDecoderInternals {
  decode(this: LengthDecoderInternals, chunk: unknown): Generator<unknown>;
  lengthDecoder: ((data: { readonly byteLength: number }) => number) & { quiet?: true };
  readonly buffer: { readonly byteLength: number };
}

// Thrown, already built, when nothing is left to decode: no stack trace per chunk.
const NOTHING_LEFT = new RangeError("Cannot decode a length prefix: no bytes left");

/**
 * Makes every `LengthPrefixedDecoder` of `@libp2p/utils` (Noise's framing of
 * each connection) stop without building an error when its buffer is used
 * up. Its `decode` reads frames until its length decoder throws a
 * `RangeError` for too few bytes, which for a whole chunk means every
 * chunk received ends in a new `RangeError`, stack trace and all; the
 * length decoders DIM's connections use throw that error for an empty
 * buffer, so a decoder now gets, once, a length decoder that throws one
 * prepared `RangeError` instead when its buffer is empty. Nothing else
 * changes: a partial prefix still goes to the original. Idempotent.
 *
 * @returns Whether the decoder had the expected shape (it is then patched).
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { quietLengthDecoders } from "./_libp2p_internals.ts";
 *
 * assert.equal(quietLengthDecoders(), true);
 * ```
 */
export function quietLengthDecoders(): boolean {
  const proto = LengthPrefixedDecoder.prototype as unknown as Partial<LengthDecoderInternals> & {
    decode: LengthDecoderInternals["decode"] & { quiet?: true };
  };
  if (typeof proto.decode !== "function") return false;
  if (proto.decode.quiet === true) return true;
  const decode = proto.decode;
  const quiet = function (this: LengthDecoderInternals, chunk: unknown): Generator<unknown> {
    const inner = this.lengthDecoder;
    if (typeof inner === "function" && inner.quiet !== true) {
      const buffer = this.buffer;
      this.lengthDecoder = Object.assign((data: { readonly byteLength: number }) => {
        if (data === buffer && buffer.byteLength === 0) throw NOTHING_LEFT;
        return inner(data);
      }, { quiet: true as const });
    }
    return decode.call(this, chunk);
  };
  proto.decode = Object.assign(quiet, { quiet: true as const });
  return true;
}

/** What {@linkcode batchWindowUpdates} reads of a yamux stream. */
interface YamuxWindowInternals {
  readonly state: number;
  readonly recvWindow: number;
  readonly recvWindowCapacity: number;
}

type WindowUpdate = ((this: YamuxWindowInternals) => void) & { batched?: true };

/**
 * Makes yamux streams send a window update only once half of the receive
 * window is used, as go-yamux does (`sendWindowUpdate` returns while the
 * delta is under half the window and no flag is due), instead of after
 * every data frame received. A sender then always has at least half a
 * window to go on with, so a stream that is read stalls no more than
 * before, and an update still grows the window when frames come fast
 * (`@libp2p/yamux`'s own logic, which runs whenever an update is due).
 * Updates that carry a flag (a new stream's ACK), and those of a stream
 * being paused or resumed, go as before. Idempotent.
 *
 * @returns Whether the stream had the expected shape (it is then patched).
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { batchWindowUpdates } from "./_libp2p_internals.ts";
 *
 * assert.equal(batchWindowUpdates(), true);
 * ```
 */
export function batchWindowUpdates(): boolean {
  const proto = YamuxStream.prototype as unknown as { sendWindowUpdate?: WindowUpdate };
  const established = (StreamState as unknown as Record<string, unknown>).Established;
  if (typeof proto.sendWindowUpdate !== "function" || typeof established !== "number") {
    return false;
  }
  if (proto.sendWindowUpdate.batched === true) return true;
  const update = proto.sendWindowUpdate;
  proto.sendWindowUpdate = Object.assign(function (this: YamuxWindowInternals) {
    if (
      this.state === established &&
      this.recvWindow - this.recvWindowCapacity < this.recvWindow / 2
    ) return;
    update.call(this);
  }, { batched: true as const });
  return true;
}

/** A reservation the circuit-relay transport holds, as DIM reads it. */
export interface HeldReservation {
  /** Its renewal timer. */
  readonly timeout: ReturnType<typeof setTimeout>;
  /** The relay's answer: the relay's addresses (binary multiaddrs) and the expiry (s). */
  readonly reservation: { readonly addrs: readonly Uint8Array[]; readonly expire: bigint };
}

/** The circuit-relay transport's reservation store, as DIM uses it. */
export interface ReservationStoreInternals extends EventTarget {
  /** Reserves (or renews) a slot on a relay; dials it if needed. Renews before expiry. */
  addRelay(
    peer: PeerId,
    type: "configured",
  ): Promise<{ relay: PeerId; details: HeldReservation }>;
  /** The reservations held, by relay. */
  readonly reservations: {
    get(peer: PeerId): HeldReservation | undefined;
    delete(peer: PeerId): boolean;
    has(peer: PeerId): boolean;
  };
}

/** The address manager's calls DIM makes to announce relay and mapped addresses. */
export interface AddressManagerInternals {
  /** Adds an address as verified. */
  confirmObservedAddr(address: Multiaddr, options: { type: "observed"; ttl: number }): void;
  /** Removes it. */
  removeObservedAddr(address: Multiaddr): void;
}

/** What DIM uses of circuit relay v2 beyond its typed API. */
export interface RelayInternals {
  /** The transport's reservation store. */
  readonly store: ReservationStoreInternals;
  /** The address manager. */
  readonly addressManager: AddressManagerInternals;
  /** The relay server's hop handler, if the node has a relay server. */
  readonly onHop: ((stream: Stream, connection: unknown) => Promise<void>) | undefined;
}

/**
 * Finds and checks the circuit-relay parts DIM relies on.
 *
 * @param libp2p A libp2p node made with the circuit-relay transport and,
 *   optionally, a relay server under `services.relay`.
 * @returns Those parts, typed.
 * @throws {Libp2pInternalsError} Naming every missing part, if any is missing.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Libp2pInternalsError, relayInternals } from "./_libp2p_internals.ts";
 *
 * assert.throws(() => relayInternals({ services: {} }), Libp2pInternalsError);
 * ```
 */
export function relayInternals(libp2p: { readonly services: object }): RelayInternals {
  const components = (libp2p as { components?: Record<string, unknown> }).components;
  const manager = components?.transportManager as { getTransports?: () => unknown[] } | undefined;
  const transport = (typeof manager?.getTransports === "function" ? manager.getTransports() : [])
    .find((t) =>
      (t as { [Symbol.toStringTag]?: string })?.[Symbol.toStringTag] ===
        "@libp2p/circuit-relay-v2-transport"
    ) as { reservationStore?: Partial<ReservationStoreInternals> } | undefined;
  const store = transport?.reservationStore;
  const addresses = components?.addressManager as Partial<AddressManagerInternals> | undefined;
  const server = (libp2p.services as { relay?: { onHop?: unknown } }).relay;
  requireAll([
    [transport !== undefined, "libp2p: components.transportManager (a circuit-relay transport)"],
    [store instanceof EventTarget, "@libp2p/circuit-relay-v2: transport.reservationStore"],
    [
      typeof store?.addRelay === "function",
      "@libp2p/circuit-relay-v2: reservationStore.addRelay()",
    ],
    [
      typeof store?.reservations?.get === "function",
      "@libp2p/circuit-relay-v2: reservationStore.reservations",
    ],
    [
      typeof addresses?.confirmObservedAddr === "function" &&
      typeof addresses.removeObservedAddr === "function",
      "libp2p: components.addressManager.confirmObservedAddr()/removeObservedAddr()",
    ],
    [
      server === undefined || typeof server.onHop === "function",
      "@libp2p/circuit-relay-v2: services.relay.onHop()",
    ],
  ]);
  return {
    store: store as ReservationStoreInternals,
    addressManager: addresses as AddressManagerInternals,
    onHop: server?.onHop as RelayInternals["onHop"],
  };
}
