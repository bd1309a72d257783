/**
 * The part of `@libp2p/mdns` 12.0.32's types DIM uses. Its own types pull
 * in `@types/node` (through `@types/multicast-dns`), whose global `Event`
 * clashes with Deno's in every file type-checked with it.
 *
 * @module
 */
import type { ComponentLogger, PeerDiscovery } from "@libp2p/interface";
import type { Multiaddr } from "@multiformats/multiaddr";

/** Settings of {@linkcode mdns} (the ones DIM sets). */
export interface MulticastDNSInit {
  /** Answer others' queries. Default `true`. */
  broadcast?: boolean;
  /** How often to query, in ms. Default 10 s. */
  interval?: number;
  /** The DNS-SD service asked for and answered. Default `_p2p._udp.local`. */
  serviceTag?: string;
}

/** The libp2p components mDNS reads. */
export interface MulticastDNSComponents {
  /** The node's addresses, for answers. */
  addressManager: { getAddresses(): Multiaddr[] };
  /** libp2p's logger. */
  logger: ComponentLogger;
}

/**
 * mDNS peer discovery for libp2p.
 *
 * @param init Its settings.
 * @returns The discovery factory: it dispatches `peer` events (`CustomEvent<PeerInfo>`)
 *   and is started and stopped with `start()` and `stop()`.
 */
export declare function mdns(
  init?: MulticastDNSInit,
): (components: MulticastDNSComponents) => PeerDiscovery;
