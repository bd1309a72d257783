/**
 * A read cache in front of libp2p's peer store, and skipping of merges
 * that would change nothing.
 *
 * libp2p's peer store keeps each peer as a protobuf in the datastore and
 * re-reads it on every call: each `get` takes a lock, reads the datastore
 * and decodes the protobuf and every address. kad-dht reads 20 peers that
 * way to answer each DHT request (the "closer peers" of its answer), and
 * libp2p merges the stream's protocol into the remote peer's entry on
 * every new stream, on both ends — a read, an encode and a datastore write
 * (a SQLite write with a data directory) that changes nothing but the
 * entry's `updated` time once the protocol is known. Together these were
 * about a sixth of the CPU time of a DHT request.
 *
 * {@linkcode PeerStoreCache.wrap} builds replacements for one peer store
 * object's methods, which `_libp2p_internals.ts` installs in place (libp2p
 * hands the same object to all its components):
 *
 * - `get` and `getInfo` answer from a cached copy younger than `ttlMs`;
 * - `merge` of protocols and addresses the cached copy already holds is
 *   skipped, so an unchanged entry is written at most once per `ttlMs`
 *   (which only moves its `updated` time, and the peer store keeps peers
 *   for days);
 * - every other write (`merge` with news, `patch`, `save`, `delete`,
 *   `consumePeerRecord`, which writes with `patch`) goes through and
 *   replaces or drops the cached copy. A write that started after a read wins over that read's result.
 *
 * @module
 */
import type { Peer, PeerData, PeerId, PeerInfo, PeerStore } from "@libp2p/interface";

/** Options of {@linkcode PeerStoreCache}. */
export interface PeerStoreCacheOptions {
  /** How long a cached copy is used, in ms. */
  readonly ttlMs: number;
  /** How many peers are cached; the least recently stored go first. */
  readonly maxEntries: number;
  /** The clock, in ms. */
  readonly clock: () => number;
}

interface Entry {
  readonly peer: Peer;
  info?: PeerInfo;
  /** Replaced or dropped: no longer to be answered from. */
  dead?: boolean;
  readonly at: number;
  readonly protocols: ReadonlySet<string>;
  readonly addresses: ReadonlySet<string>;
}

type Options = { signal?: AbortSignal } | undefined;

/** The peer store methods a {@linkcode PeerStoreCache} replaces. */
export type CachedPeerStoreMethods = Pick<
  PeerStore,
  "get" | "getInfo" | "merge" | "patch" | "save" | "delete"
>;

/** Counters of a {@linkcode PeerStoreCache}, for tests and benches. */
export interface PeerStoreCacheStats {
  /** Reads answered from the cache. */
  readonly hits: number;
  /** Reads that went to the peer store. */
  readonly misses: number;
  /** Merges skipped because they would change nothing. */
  readonly skippedMerges: number;
  /** Writes that went to the peer store. */
  readonly writes: number;
}

/**
 * A cache for one libp2p peer store; see the module documentation.
 *
 * @example
 * ```ts ignore
 * import type { PeerStore } from "@libp2p/interface";
 * import { PeerStoreCache } from "./_peer_store_cache.ts";
 *
 * declare const store: PeerStore; // libp2p's peer store
 * const cache = new PeerStoreCache({ ttlMs: 60_000, maxEntries: 512, clock: Date.now });
 * Object.assign(store, cache.wrap(store));
 * ```
 */
export class PeerStoreCache {
  readonly #options: PeerStoreCacheOptions;
  readonly #entries = new Map<string, Entry>();
  // The same entries by PeerId object: kad-dht asks with the routing
  // table's own objects, which spares building and hashing the string.
  readonly #byObject = new WeakMap<PeerId, Entry>();
  readonly #generations = new Map<string, number>();
  #hits = 0;
  #misses = 0;
  #skippedMerges = 0;
  #writes = 0;

  /**
   * @param options Time to live, capacity and clock.
   */
  constructor(options: PeerStoreCacheOptions) {
    this.#options = options;
  }

  /** The counters so far. */
  get stats(): PeerStoreCacheStats {
    return {
      hits: this.#hits,
      misses: this.#misses,
      skippedMerges: this.#skippedMerges,
      writes: this.#writes,
    };
  }

  /** How many peers are cached. */
  get size(): number {
    return this.#entries.size;
  }

  /**
   * Builds cached versions of `store`'s methods, calling its current ones
   * underneath; `installPeerStoreCache` (`_libp2p_internals.ts`) puts them
   * in place.
   *
   * @param store The peer store (libp2p's `components.peerStore`).
   * @returns The replacement methods.
   */
  wrap(store: PeerStore): CachedPeerStoreMethods {
    const get = store.get.bind(store);
    const merge = store.merge.bind(store);
    const patch = store.patch.bind(store);
    const save = store.save.bind(store);
    const remove = store.delete.bind(store);

    const cachedGet = async (id: PeerId, options?: Options): Promise<Peer> => {
      const key = keyOf(id);
      const entry = this.#fresh(key);
      if (entry !== undefined) {
        this.#hits++;
        return entry.peer;
      }
      this.#misses++;
      const generation = this.#generation(key);
      const peer = await get(id, options);
      if (this.#generation(key) === generation) this.#store(key, peer);
      return peer;
    };
    // kad-dht reads 20 of these per request: keep the derived object too.
    const getInfo = async (id: PeerId, options?: Options): Promise<PeerInfo> => {
      const info = this.peekInfo(id);
      if (info !== undefined) return info;
      const peer = await cachedGet(id, options);
      return { id: peer.id, multiaddrs: peer.addresses.map(({ multiaddr }) => multiaddr) };
    };
    const cachedMerge = async (id: PeerId, data: PeerData, options?: Options): Promise<Peer> => {
      const key = keyOf(id);
      const entry = this.#fresh(key);
      if (entry !== undefined && changesNothing(entry, data)) {
        this.#skippedMerges++;
        return entry.peer;
      }
      return await this.#write(key, () => merge(id, data, options));
    };
    const cachedPatch = (id: PeerId, data: PeerData, options?: Options): Promise<Peer> =>
      this.#write(keyOf(id), () => patch(id, data, options));
    const cachedSave = (id: PeerId, data: PeerData, options?: Options): Promise<Peer> =>
      this.#write(keyOf(id), () => save(id, data, options));
    const cachedDelete = async (id: PeerId, options?: Options): Promise<void> => {
      const key = keyOf(id);
      this.#invalidate(key);
      try {
        await remove(id, options);
      } finally {
        this.#invalidate(key);
      }
    };
    // `consumePeerRecord` and `has` call the methods above.
    return {
      get: cachedGet,
      getInfo,
      merge: cachedMerge,
      patch: cachedPatch,
      save: cachedSave,
      delete: cachedDelete,
    };
  }

  /**
   * A peer's ID and addresses, as the peer store's `getInfo` gives them, if
   * a cached copy younger than `ttlMs` holds them: without a wait, for a
   * caller that reads many (kad-dht's closer peers, `_libp2p_internals.ts`).
   *
   * @param id The peer.
   * @returns Its info, or `undefined` if it is not cached.
   */
  peekInfo(id: PeerId): PeerInfo | undefined {
    let entry = this.#byObject.get(id);
    if (entry === undefined || entry.dead === true || this.#expired(entry)) {
      entry = this.#fresh(keyOf(id));
      if (entry !== undefined) this.#byObject.set(id, entry);
    }
    if (entry === undefined) return undefined;
    this.#hits++;
    return entry.info ??= {
      id: entry.peer.id,
      multiaddrs: entry.peer.addresses.map(({ multiaddr }) => multiaddr),
    };
  }

  async #write(key: string, write: () => Promise<Peer>): Promise<Peer> {
    this.#writes++;
    const generation = this.#invalidate(key);
    const peer = await write().catch((cause: unknown) => {
      this.#invalidate(key);
      throw cause;
    });
    if (this.#generation(key) === generation) this.#store(key, peer);
    return peer;
  }

  #fresh(key: string): Entry | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    if (this.#expired(entry)) {
      entry.dead = true;
      this.#entries.delete(key);
      return undefined;
    }
    return entry;
  }

  #expired(entry: Entry): boolean {
    return this.#options.clock() - entry.at >= this.#options.ttlMs;
  }

  #generation(key: string): number {
    return this.#generations.get(key) ?? 0;
  }

  // Drops the cached copy and starts a new generation, so reads and writes
  // already in flight do not store their (older) result.
  #invalidate(key: string): number {
    const entry = this.#entries.get(key);
    if (entry !== undefined) entry.dead = true;
    this.#entries.delete(key);
    const next = this.#generation(key) + 1;
    this.#generations.delete(key);
    this.#generations.set(key, next);
    if (this.#generations.size > this.#options.maxEntries * 2) {
      const oldest = this.#generations.keys().next().value;
      if (oldest !== undefined && oldest !== key) this.#generations.delete(oldest);
    }
    return next;
  }

  #store(key: string, peer: Peer): void {
    const previous = this.#entries.get(key);
    if (previous !== undefined) previous.dead = true;
    this.#entries.delete(key);
    this.#entries.set(key, {
      peer,
      at: this.#options.clock(),
      protocols: new Set(peer.protocols),
      addresses: new Set(peer.addresses.map(({ multiaddr }) => multiaddr.toString())),
    });
    if (this.#entries.size > this.#options.maxEntries) {
      const oldest = this.#entries.keys().next().value;
      if (oldest !== undefined) {
        this.#entries.get(oldest)!.dead = true;
        this.#entries.delete(oldest);
      }
    }
  }
}

// Whether merging `data` into the cached peer would leave it as it is.
function changesNothing(entry: Entry, data: PeerData): boolean {
  for (const field of Object.keys(data) as (keyof PeerData)[]) {
    const value = data[field];
    if (value === undefined) continue;
    switch (field) {
      case "protocols":
        if (!(value as string[]).every((protocol) => entry.protocols.has(protocol))) return false;
        break;
      case "multiaddrs":
        for (const address of value as { toString(): string }[]) {
          if (!entry.addresses.has(address.toString())) return false;
        }
        break;
      default:
        return false;
    }
  }
  return true;
}

function keyOf(id: PeerId): string {
  return id.toString();
}
