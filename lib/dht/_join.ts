/**
 * How a started DIM node joins the DHT: it dials its bootstrap peers and,
 * in parallel, up to 16 remembered peers ({@linkcode joinCandidates}: the
 * learned bootstrap list, peers named by join hints, the most recently
 * seen peers of the peer book, then other peers of libp2p's peer store),
 * a few at a time, and is online as soon as any of them answers,
 * bootstrap or not: one stopped bootstrap node does not keep out a node
 * that knows other peers. Once one answered it waits a moment for the
 * others (at most 5 s in all), then waits for the first routing-table
 * peer and looks up its own neighbourhood, so that a put or get right
 * after `start()` reaches the DHT. Dials still pending go on in the
 * background.
 *
 * @module
 */
import delay from "delay";
import type { PeerId } from "@libp2p/interface";
import { peerIdFromString } from "@libp2p/peer-id";
import { type Multiaddr, multiaddr } from "@multiformats/multiaddr";
import type { Libp2p } from "libp2p";
import { PeerUnreachableError } from "../errors.ts";
import {
  JOIN_GRACE_MS,
  JOIN_HINT_PEERS,
  JOIN_TIMEOUT_MS,
  RECONNECT_PEER_LIMIT,
  START_DIAL_CONCURRENCY,
  START_DIAL_TIMEOUT_MS,
} from "./constants.ts";
import type { DhtRecords } from "./records.ts";
import type { DhtPeer, RememberedPeer } from "./types.ts";
import type { JoinHint } from "./types.ts";
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
  /** What the peer book remembers: learned bootstrap peers, hints, peers by last seen. */
  readonly book: RememberedPeers;
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
  const bootstrapIds = init.bootstrap.map((address) => peerIdOf(address));
  const exclude = new Set([init.libp2p.peerId.toString(), ...bootstrapIds.filter(isString)]);
  const known = joinCandidates(init.book, await init.knownPeers(signal), exclude);
  if (init.bootstrap.length + known.length > 0) {
    init.log(
      `start dials: bootstrap ${init.bootstrap.length}; remembered ${
        known.map((c) => `${c.peerId} (${c.reason})`).join(", ") || "none"
      }`,
    );
  }
  let connected = 0;
  let waiting = true;
  let answered = (): void => {};
  const firstAnswer = new Promise<void>((resolve) => answered = resolve);
  const dial = async ({ label, target }: DialItem) => {
    try {
      const connection = await init.libp2p.dial(target(), { signal: init.dialSignal });
      connected++;
      init.joined(connection.remotePeer.toString());
      answered();
    } catch (cause) {
      init.log(`could not dial ${label}: ${describe(cause)}`);
    }
  };
  // The bootstrap peers and the remembered ones dial side by side: a dead
  // bootstrap list does not queue the remembered peers behind it.
  const dials = Promise.all([
    runLimited(
      init.bootstrap.map((address) => ({ label: address.toString(), target: () => address })),
      START_DIAL_CONCURRENCY,
      dial,
    ),
    runLimited(known.map(dialTarget), START_DIAL_CONCURRENCY, dial),
  ]);
  init.track(dials);
  // Online once any peer answered and the others had a moment to; slow
  // dials go on in the background.
  const enough = firstAnswer.then(() =>
    waiting ? settlesWithin(dials, JOIN_GRACE_MS, signal) : false
  );
  await settlesWithin(Promise.race([dials, enough]), START_DIAL_TIMEOUT_MS, signal);
  waiting = false;
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

/** What {@linkcode joinCandidates} reads of the peer book. */
export interface RememberedPeers {
  /** The learned bootstrap peers. */
  readonly learnedBootstrap: readonly RememberedPeer[];
  /** The join hints, newest first. */
  readonly hints: readonly JoinHint[];
  /** The remembered peers, most recently seen first. */
  readonly remembered: readonly RememberedPeer[];
}

/** A peer `start()` dials beside the bootstrap peers. */
export interface JoinCandidate {
  /** The peer ID. */
  readonly peerId: string;
  /** Why it is dialled. */
  readonly reason: "learned" | "hint" | "recent" | "known";
  /** The addresses to dial; empty to dial by peer ID (the peer store's addresses). */
  readonly multiaddrs: readonly string[];
}

/**
 * The remembered peers `start()` dials, in this order: the learned
 * bootstrap peers, the peers named by the newest join hints (at most
 * `JOIN_HINT_PEERS`), the peer book's peers by last seen, most recent
 * first, then other peers of libp2p's peer store; each peer once, none in
 * `exclude`, at most `limit`.
 *
 * @param book The peer book.
 * @param known The peers of libp2p's peer store.
 * @param exclude Peer IDs not to dial (this node, the bootstrap peers).
 * @param limit The most candidates. Default `RECONNECT_PEER_LIMIT`.
 * @returns The candidates, in dial order.
 */
export function joinCandidates(
  book: RememberedPeers,
  known: readonly DhtPeer[],
  exclude: ReadonlySet<string>,
  limit: number = RECONNECT_PEER_LIMIT,
): JoinCandidate[] {
  const out: JoinCandidate[] = [];
  const taken = new Set(exclude);
  const add = (peerId: string, reason: JoinCandidate["reason"], multiaddrs: readonly string[]) => {
    if (out.length >= limit || taken.has(peerId)) return;
    taken.add(peerId);
    out.push({ peerId, reason, multiaddrs });
  };
  for (const peer of book.learnedBootstrap) add(peer.peerId, "learned", peer.multiaddrs);
  const hinted = new Map<string, string[]>();
  for (const hint of book.hints) {
    for (const address of hint.multiaddrs) {
      const peerId = peerIdOf(multiaddr(address));
      if (peerId === undefined || taken.has(peerId)) continue;
      const addresses = hinted.get(peerId);
      if (addresses !== undefined) addresses.push(address);
      else if (hinted.size < JOIN_HINT_PEERS) hinted.set(peerId, [address]);
    }
  }
  for (const [peerId, addresses] of hinted) add(peerId, "hint", addresses);
  for (const peer of book.remembered) {
    if (peer.multiaddrs.length > 0) add(peer.peerId, "recent", peer.multiaddrs);
  }
  for (const peer of known) if (peer.multiaddrs.length > 0) add(peer.peerId, "known", []);
  return out;
}

interface DialItem {
  readonly label: string;
  // Parsed when dialled: an address the peer book kept that no longer
  // parses fails that dial only.
  readonly target: () => Multiaddr | Multiaddr[] | PeerId;
}

function dialTarget(candidate: JoinCandidate): DialItem {
  return {
    label: candidate.peerId,
    target: () =>
      candidate.multiaddrs.length === 0
        ? peerIdFromString(candidate.peerId)
        : candidate.multiaddrs.map((address) => multiaddr(address)),
  };
}

function isString(value: string | undefined): value is string {
  return value !== undefined;
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
