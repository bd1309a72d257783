/**
 * Drops repeated "peer seen" events of kad-dht's network layer.
 *
 * Every DHT answer carries up to 20 "closer" peers, and kad-dht's network
 * layer emits one `peer` event for each. Each event makes libp2p merge the
 * peer's addresses into the peer store (a lock, a protobuf decode and
 * encode, a datastore write — a SQLite write with a data directory) and
 * makes kad-dht queue a routing-table update (a job, two abort signals and
 * a 10 s timer). In a DHT of stable membership nearly all of these events
 * repeat what the node already knows: they were about a fifth of the CPU
 * time of a DHT request.
 *
 * {@linkcode PeerEventFilter} lets an event through when the peer or its
 * addresses are new, or when the same news last went through more than
 * `refreshMs` ago, so addresses are still refreshed in the peer store
 * (which keeps them for a week) and a peer that left the routing table is
 * tried again. `filterPeerEvents` (`_libp2p_internals.ts`) puts it in
 * front of the network layer's `dispatchEvent`.
 *
 * @module
 */

/** Options of {@linkcode PeerEventFilter}. */
export interface PeerEventFilterOptions {
  /** How long the same peer and addresses are not passed on again, in ms. */
  readonly refreshMs: number;
  /** How many peers are remembered; the oldest are forgotten first. */
  readonly maxEntries: number;
  /** The clock, in ms. */
  readonly clock: () => number;
}

interface PeerInfoLike {
  readonly id: { toMultihash(): { bytes: Uint8Array } };
  readonly multiaddrs: readonly { readonly bytes: Uint8Array }[];
}

interface Seen {
  readonly addresses: string;
  readonly at: number;
}

/**
 * Remembers which peers (with which addresses) were recently passed on.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { PeerEventFilter } from "./_peer_events.ts";
 *
 * const filter = new PeerEventFilter({ refreshMs: 60_000, maxEntries: 100, clock: Date.now });
 * const peer = {
 *   id: { toMultihash: () => ({ bytes: new Uint8Array([0, 1, 7]) }) },
 *   multiaddrs: [{ bytes: new Uint8Array([4, 127, 0, 0, 1]) }],
 * };
 * assert.equal(filter.admit(peer), true);
 * assert.equal(filter.admit(peer), false);
 * ```
 */
export class PeerEventFilter {
  readonly #options: PeerEventFilterOptions;
  readonly #seen = new Map<string, Seen>();
  #dropped = 0;
  #passed = 0;

  /**
   * @param options Refresh interval, capacity and clock.
   */
  constructor(options: PeerEventFilterOptions) {
    this.#options = options;
  }

  /** How many events were dropped and passed so far. */
  get stats(): { dropped: number; passed: number } {
    return { dropped: this.#dropped, passed: this.#passed };
  }

  /**
   * Tells whether an event about this peer would go through now, without
   * remembering anything.
   *
   * @param id The peer ID's multihash bytes.
   * @param addresses Its multiaddrs, as bytes.
   * @returns `true` if the event would be passed on.
   */
  wouldAdmit(id: Uint8Array, addresses: readonly Uint8Array[]): boolean {
    const seen = this.#seen.get(binaryString(id));
    return seen === undefined || seen.addresses !== addressKey(addresses) ||
      this.#options.clock() - seen.at >= this.#options.refreshMs;
  }

  /**
   * Decides whether an event about `peer` should go through, and remembers
   * it if so.
   *
   * @param peer The peer ID and addresses the event carries.
   * @returns `true` to pass the event on.
   */
  admit(peer: PeerInfoLike): boolean {
    const id = peer.id.toMultihash().bytes;
    const addresses = peer.multiaddrs.map((address) => address.bytes);
    if (!this.wouldAdmit(id, addresses)) {
      this.#dropped++;
      return false;
    }
    const key = binaryString(id);
    this.#seen.delete(key);
    this.#seen.set(key, { addresses: addressKey(addresses), at: this.#options.clock() });
    if (this.#seen.size > this.#options.maxEntries) {
      const oldest = this.#seen.keys().next().value;
      if (oldest !== undefined) this.#seen.delete(oldest);
    }
    this.#passed++;
    return true;
  }

  /**
   * Decides whether an event dispatched on kad-dht's network layer should
   * go through: a `peer` event only if {@linkcode PeerEventFilter.admit}
   * admits its peer, every other event always.
   *
   * @param event The event.
   * @returns `true` to dispatch it.
   */
  admitEvent(event: Event): boolean {
    if (event.type !== "peer") return true;
    const detail = (event as CustomEvent<unknown>).detail;
    return !isPeerInfo(detail) || this.admit(detail);
  }
}

function isPeerInfo(value: unknown): value is PeerInfoLike {
  const peer = value as Partial<PeerInfoLike> | null;
  return typeof peer?.id?.toMultihash === "function" && Array.isArray(peer.multiaddrs);
}

function addressKey(addresses: readonly Uint8Array[]): string {
  if (addresses.length === 1) return binaryString(addresses[0]!);
  return addresses.map(binaryString).sort().join("\0");
}

function binaryString(bytes: Uint8Array): string {
  return String.fromCharCode.apply(null, bytes as unknown as number[]);
}
