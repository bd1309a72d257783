/**
 * How a started DIM node joins the DHT: it dials its bootstrap peers and up
 * to 16 peers known from an earlier run together (a few at a time, for at
 * most 5 s before it goes on), and is online as soon as any of them
 * answers, bootstrap or not: one stopped bootstrap node does not keep out a
 * node that knows other peers. Then it waits for the first routing-table
 * peer and looks up its own neighbourhood, so that a put or get right after
 * `start()` reaches the DHT.
 *
 * @module
 */
import delay from "delay";
import type { PeerId } from "@libp2p/interface";
import { peerIdFromString } from "@libp2p/peer-id";
import type { Multiaddr } from "@multiformats/multiaddr";
import type { Libp2p } from "libp2p";
import { PeerUnreachableError } from "../errors.ts";
import {
  JOIN_TIMEOUT_MS,
  RECONNECT_PEER_LIMIT,
  START_DIAL_CONCURRENCY,
  START_DIAL_TIMEOUT_MS,
} from "./constants.ts";
import type { DhtRecords } from "./records.ts";
import type { DhtPeer } from "./types.ts";
import { KadMessageType } from "./_kad_wire.ts";
import { describe, peerIdOf } from "./_peers.ts";
import { deadline, scopedSignal, settlesWithin } from "../platform/signals.ts";

/** What {@linkcode joinNetwork} needs from the node. */
export interface JoinInit {
  /** The libp2p node, started. */
  readonly libp2p: Pick<Libp2p, "dial" | "getConnections" | "peerId">;
  /** Bootstrap peers. */
  readonly bootstrap: readonly Multiaddr[];
  /**
   * Whether joining fails when there are bootstrap peers and no peer
   * answers, bootstrap or known from an earlier run.
   */
  readonly requireBootstrap: boolean;
  /** The node's record operations, for the self lookup. */
  readonly records: Pick<DhtRecords, "lookup">;
  /** The routing table's size now. */
  readonly routingTableSize: () => number;
  /** Called with the peer ID of each peer that answered a start dial. */
  readonly joined: (peerId: string) => void;
  /** The peers of the peer store. */
  readonly knownPeers: (signal: AbortSignal) => Promise<DhtPeer[]>;
  /** Aborts dials that go on after the join (the node's stop signal). */
  readonly dialSignal: AbortSignal;
  /** Keeps background work for stop() to wait for. */
  readonly track: (task: Promise<unknown>) => void;
  /** One-line diagnostics. */
  readonly log: (message: string) => void;
}

/**
 * Joins the DHT; see the module documentation.
 *
 * @param init The node's parts.
 * @param signal Aborts the join.
 * @returns When the node has joined, or found no peer to join through.
 * @throws {PeerUnreachableError} If `requireBootstrap` is set, there are
 *   bootstrap peers, and no peer answered.
 * @throws {DOMException} If `signal` is aborted.
 */
export async function joinNetwork(init: JoinInit, signal: AbortSignal): Promise<void> {
  const bootstrapIds = new Set(init.bootstrap.map((address) => peerIdOf(address)));
  const known = (await init.knownPeers(signal))
    .filter((peer) => !bootstrapIds.has(peer.peerId) && peer.multiaddrs.length > 0)
    .slice(0, RECONNECT_PEER_LIMIT);
  const targets: { label: string; target: Multiaddr | PeerId }[] = [
    ...init.bootstrap.map((address) => ({ label: address.toString(), target: address })),
    ...known.map((peer) => ({ label: peer.peerId, target: peerIdFromString(peer.peerId) })),
  ];
  let connected = 0;
  const dials = runLimited(
    targets,
    START_DIAL_CONCURRENCY,
    async ({ label, target }) => {
      try {
        const connection = await init.libp2p.dial(target, { signal: init.dialSignal });
        connected++;
        init.joined(connection.remotePeer.toString());
      } catch (cause) {
        init.log(`could not dial ${label}: ${describe(cause)}`);
      }
    },
  );
  init.track(dials);
  // Slow dials go on in the background; start() does not wait for them all.
  await settlesWithin(dials, START_DIAL_TIMEOUT_MS, signal);
  signal.throwIfAborted();
  if (init.requireBootstrap && init.bootstrap.length > 0 && connected === 0) {
    const others = known.length === 0 ? "" : `, nor any of ${known.length} peers known before`;
    throw new PeerUnreachableError(
      `Cannot start DHT node: none of the ${init.bootstrap.length} bootstrap peers answered${others}`,
    );
  }
  if (connected === 0 && init.libp2p.getConnections().length === 0) return;
  await lookUpSelf(init, signal);
}

// Waits for the first routing-table peer, then looks up this node's own
// neighbourhood.
async function lookUpSelf(init: JoinInit, signal: AbortSignal): Promise<void> {
  const until = performance.now() + JOIN_TIMEOUT_MS;
  while (init.routingTableSize() === 0 && performance.now() < until) {
    await delay(10, { signal });
  }
  if (init.routingTableSize() === 0) {
    init.log("no peer entered the routing table after the start dials");
    return;
  }
  const timeout = deadline(JOIN_TIMEOUT_MS);
  const scoped = scopedSignal([signal, timeout.signal]);
  try {
    // Run for its side effect: the peers it learns of enter the table.
    await init.records.lookup(
      init.libp2p.peerId.toMultihash().bytes,
      KadMessageType.FIND_NODE,
      scoped.signal,
    );
  } catch (cause) {
    signal.throwIfAborted();
    init.log(`self lookup failed: ${describe(cause)}`);
  } finally {
    scoped.release();
    timeout.clear();
  }
}

async function runLimited<T>(
  items: readonly T[],
  limit: number,
  task: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++] as T;
      await task(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
