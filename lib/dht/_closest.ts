/**
 * A faster "closest peers of the routing table" for kad-dht.
 *
 * kad-dht answers every DHT request with the 20 peers of its routing table
 * closest to the key, and DIM starts every lookup from them. kad-dht 16.4.5
 * finds them by inserting each routing-table peer into a sorted list of 20,
 * comparing peer IDs byte by byte against every entry and allocating a
 * distance for each: about a millisecond for a table of 100 peers, which
 * made it a quarter of the CPU time of a DHT request in a 100-node network
 * (and it grows with the table).
 *
 * {@linkcode ClosestIndex} computes the same answer — the `count` peers
 * closest to the target in the XOR metric, nearest first — from a snapshot
 * of the tree's peers, ranking them by the first 32 bits of their distance
 * and comparing whole distances only to break ties;
 * `installFastClosest` (`_libp2p_internals.ts`) puts it in place of the
 * k-bucket tree's `closest` method. {@linkcode closestPeers} ranks a plain
 * list the same way.
 *
 * @module
 */
import type { PeerId } from "@libp2p/interface";
import { compareXor } from "./_distance.ts";

/** A routing-table entry, as kad-dht's k-bucket tree keeps it. */
export interface TablePeer {
  /** The peer. */
  readonly peerId: PeerId;
  /** Its position in the DHT key space (SHA-256 of its multihash). */
  readonly kadId: Uint8Array;
}

/** Options of {@linkcode closestPeers}, as kad-dht passes them. */
export interface ClosestOptions {
  /** How many peers to return. */
  readonly count?: number;
  /** Peers to leave out. */
  readonly exclude?: readonly PeerId[];
}

/**
 * The `count` peers closest to `target`, nearest first.
 *
 * @param peers The routing-table peers.
 * @param target The position to measure from (32 bytes).
 * @param count How many to return.
 * @param exclude Peers to leave out.
 * @returns The closest peers, nearest first.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { peerIdFromString } from "@libp2p/peer-id";
 * import { closestPeers } from "./_closest.ts";
 *
 * const near = peerIdFromString("12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo");
 * const far = peerIdFromString("12D3KooWGRUVh2dDFx7ZcU8VTU9BFjY4B6g1ruXyM7fbQDjd3Wwv");
 * const table = [
 *   { peerId: far, kadId: new Uint8Array(32).fill(0xff) },
 *   { peerId: near, kadId: new Uint8Array(32).fill(0x01) },
 * ];
 * assert.deepEqual(closestPeers(table, new Uint8Array(32), 1), [near]);
 * ```
 */
export function closestPeers(
  peers: Iterable<TablePeer>,
  target: Uint8Array,
  count: number,
  exclude: readonly PeerId[] = [],
): PeerId[] {
  const list = [...peers];
  const tree: KBucketLike = { toIterable: () => list, closest: () => [] };
  return new ClosestIndex(tree, count).closest(target, { count, exclude });
}

/** A node of kad-dht's k-bucket tree: a leaf holds peers, an inner node two halves. */
export interface BucketLike {
  /** The peers of a leaf bucket. */
  readonly peers?: readonly TablePeer[];
  /** The lower half of an inner node. */
  readonly left?: BucketLike;
  /** The upper half of an inner node. */
  readonly right?: BucketLike;
}

/** The part of kad-dht's k-bucket tree that `installFastClosest` (`_libp2p_internals.ts`) replaces. */
export interface KBucketLike {
  /** The root of the tree. */
  readonly root?: BucketLike;
  /** Every peer of the tree. */
  toIterable(): Iterable<TablePeer>;
  /** The `count` closest peers, nearest first. */
  closest(id: Uint8Array, options?: ClosestOptions): Iterable<PeerId>;
}

/**
 * {@linkcode closestPeers} over a snapshot of the tree's peers, with the
 * first 32 bits of every position kept side by side. The snapshot is taken
 * again after {@linkcode ClosestIndex.invalidate} (the routing table's
 * `peer:add` and `peer:remove` events), or when a walk of the tree, at most
 * every 250 ms, finds other leaves or other leaf sizes. kad-dht's own `toIterable` nests a generator per
 * tree level, which alone cost ten times the ranking.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { peerIdFromString } from "@libp2p/peer-id";
 * import { ClosestIndex } from "./_closest.ts";
 *
 * const peerId = peerIdFromString("12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo");
 * const leaf = { peers: [{ peerId, kadId: new Uint8Array(32) }] };
 * const index = new ClosestIndex({ root: leaf, toIterable: () => [], closest: () => [] }, 20);
 * assert.deepEqual(index.closest(new Uint8Array(32)), [peerId]);
 * leaf.peers.length = 0; // The routing table's `peer:remove` event says:
 * index.invalidate();
 * assert.deepEqual(index.closest(new Uint8Array(32)), []);
 * ```
 */
export class ClosestIndex {
  readonly #kb: KBucketLike;
  readonly #defaultCount: number;
  #peers: TablePeer[] | undefined;
  #leaves: BucketLike[] = [];
  #checkedAt = 0;
  #sizes: number[] = [];
  #prefixes = new Uint32Array(0);
  #keys = new Float64Array(0);

  /**
   * @param kb The k-bucket tree.
   * @param defaultCount The count when none is given (kad-dht's k).
   */
  constructor(kb: KBucketLike, defaultCount: number) {
    this.#kb = kb;
    this.#defaultCount = defaultCount;
  }

  /** Forgets the snapshot: the tree's peers have changed. */
  invalidate(): void {
    this.#peers = undefined;
  }

  /**
   * The `count` peers closest to `target`, nearest first.
   *
   * @param target The position to measure from (32 bytes).
   * @param options `count` (default k) and `exclude`.
   * @returns The closest peers, nearest first.
   */
  closest(target: Uint8Array, options: ClosestOptions = {}): PeerId[] {
    const count = options.count ?? this.#defaultCount;
    const exclude = options.exclude ?? [];
    const peers = this.#snapshot();
    const n = peers.length;
    const t = prefixOf(target);
    if (this.#keys.length < n) this.#keys = new Float64Array(n);
    const keys = this.#keys.subarray(0, n);
    // The 32-bit distance prefix, and the index in the low 16 bits.
    for (let i = 0; i < n; i++) keys[i] = ((this.#prefixes[i]! ^ t) >>> 0) * 65536 + i;
    keys.sort();
    const out: PeerId[] = [];
    for (let i = 0; i < n && out.length < count; i++) {
      const prefix = Math.floor(keys[i]! / 65536);
      if (i + 1 < n && Math.floor(keys[i + 1]! / 65536) === prefix) {
        // Equal prefixes (one chance in four billion): compare whole distances.
        let end = i + 1;
        while (end < n && Math.floor(keys[end]! / 65536) === prefix) end++;
        const run: TablePeer[] = [];
        for (let j = i; j < end; j++) run.push(peers[keys[j]! % 65536]!);
        run.sort((a, b) => compareXor(a.kadId, b.kadId, target));
        for (const peer of run) if (out.length < count) this.#add(out, peer, exclude);
        i = end - 1;
      } else {
        this.#add(out, peers[keys[i]! % 65536]!, exclude);
      }
    }
    return out;
  }

  #add(out: PeerId[], peer: TablePeer, exclude: readonly PeerId[]): void {
    if (exclude.length > 0 && exclude.some((other) => other.equals(peer.peerId))) return;
    out.push(peer.peerId);
  }

  #snapshot(): TablePeer[] {
    const root = this.#kb.root;
    if (root === undefined) return this.#take([...this.#kb.toIterable()], []);
    // Between events, check the tree itself now and then: the same leaves,
    // with as many peers each.
    const now = Date.now();
    if (this.#peers !== undefined && now - this.#checkedAt < RECHECK_MS) return this.#peers;
    this.#checkedAt = now;
    const leaves = leafBuckets(root);
    if (
      this.#peers !== undefined && leaves.length === this.#leaves.length &&
      leaves.every((leaf, i) => leaf === this.#leaves[i] && leaf.peers!.length === this.#sizes[i])
    ) {
      return this.#peers;
    }
    const peers: TablePeer[] = [];
    for (const leaf of leaves) for (const peer of leaf.peers!) peers.push(peer);
    return this.#take(peers, leaves);
  }

  #take(peers: TablePeer[], leaves: BucketLike[]): TablePeer[] {
    const prefixes = new Uint32Array(peers.length);
    for (let i = 0; i < peers.length; i++) prefixes[i] = prefixOf(peers[i]!.kadId);
    this.#prefixes = prefixes;
    this.#leaves = leaves;
    this.#sizes = leaves.map((leaf) => leaf.peers!.length);
    this.#peers = leaves.length > 0 && peers.length < 65536 ? peers : undefined;
    return peers;
  }
}

function leafBuckets(root: BucketLike): BucketLike[] {
  const out: BucketLike[] = [];
  const stack: BucketLike[] = [root];
  while (stack.length > 0) {
    const bucket = stack.pop()!;
    if (Array.isArray(bucket.peers)) out.push(bucket);
    else {
      if (bucket.right !== undefined) stack.push(bucket.right);
      if (bucket.left !== undefined) stack.push(bucket.left);
    }
  }
  return out;
}

/** How often at most the tree is walked to check the snapshot between events. */
const RECHECK_MS = 250;

function prefixOf(id: Uint8Array): number {
  return (((id[0] ?? 0) << 24) | ((id[1] ?? 0) << 16) | ((id[2] ?? 0) << 8) | (id[3] ?? 0)) >>> 0;
}
