/**
 * The options of `createMessenger`, and the node's reach options taken from them.
 *
 * @module
 */
import type { DhtNodeOptions } from "../dht/node.ts";
import type { MessagingOptions, SessionRollback } from "../messaging/mod.ts";

/**
 * Options of `createMessenger`.
 *
 * The node's network options a program usually sets (`listen`, `bootstrap`
 * and the reach options `publicNetworks`, `announce`, `upnp`, `relays`,
 * `relayServer`, `lanDiscovery`) are top-level fields, passed through to
 * `createDhtNode` unchanged; `node` carries any other node
 * option, and wins where both set the same one.
 */
export interface MessengerOptions {
  /** Multiaddrs to listen on. Default `/ip4/0.0.0.0/tcp/0`. */
  readonly listen?: readonly string[];
  /** Multiaddrs (with `/p2p/`) of nodes to join through. */
  readonly bootstrap?: readonly string[];
  /**
   * CIDRs (IPv4 or IPv6) whose addresses count as public besides libp2p's
   * rule, in the node's reachability decisions and in the choice of the
   * card's addresses. Default: none.
   */
  readonly publicNetworks?: readonly string[];
  /**
   * Multiaddrs announced instead of the listen addresses (a port forwarded
   * by hand). Default: the listen addresses.
   */
  readonly announce?: readonly string[];
  /** Whether to ask a UPnP gateway for a port mapping. Default `false`. */
  readonly upnp?: boolean;
  /**
   * Whether to find DIM peers on the local network over mDNS (see
   * `DhtNodeOptions.lanDiscovery`). Default `false`.
   */
  readonly lanDiscovery?: boolean;
  /** Relay reservations kept while the node is not publicly reachable. Default 2. */
  readonly relays?: number;
  /**
   * Whether to relay for others: `true`, `false`, or `"auto"` (while this
   * node is publicly reachable). Default `"auto"`.
   */
  readonly relayServer?: boolean | "auto";
  /** Clock in ms. Default `Date.now`. */
  readonly clock?: () => number;
  /** Tunables of the messaging layer. */
  readonly messaging?: MessagingOptions;
  /**
   * Told when the start finds `dim.db` older than its session mark (put
   * back to an older copy) and dropped the sessions, so that no message key
   * is used twice; the next message to each contact starts a new session.
   * Default: a warning on the console.
   */
  readonly onSessionRollback?: (rollback: SessionRollback) => void;
  /** Extra options for the DIM node. */
  readonly node?: Partial<DhtNodeOptions>;
  /** Whether to publish the contact card on start. Default `true`. */
  readonly publish?: boolean;
  /**
   * Where files from contacts are saved. Default: none, and every incoming
   * file is refused. Files from unknown senders, or from contacts whose keys
   * changed, are always refused.
   */
  readonly downloadDir?: string;
  /** The largest file accepted, in bytes. Default 4 GiB. */
  readonly maxFileSize?: number;
}

/**
 * The reach options given, and only those, for the node.
 *
 * @param options The messenger's options.
 * @returns The node options among them that were set.
 */
export function reachOptions(options: MessengerOptions): Partial<DhtNodeOptions> {
  const { publicNetworks, announce, upnp, relays, relayServer, lanDiscovery } = options;
  return {
    ...(publicNetworks === undefined ? {} : { publicNetworks }),
    ...(announce === undefined ? {} : { announce }),
    ...(upnp === undefined ? {} : { upnp }),
    ...(relays === undefined ? {} : { relays }),
    ...(relayServer === undefined ? {} : { relayServer }),
    ...(lanDiscovery === undefined ? {} : { lanDiscovery }),
  };
}
