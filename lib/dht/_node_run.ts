/**
 * The order of a DHT node's start and stop, apart from the node's public
 * face (`node.ts`): the peer book, libp2p, the node's event listeners, the
 * kept listen ports, reach, the join through bootstrap, remembered and LAN
 * peers; and on stop the same in reverse, each step bounded in time so one
 * stuck part cannot keep the node from stopping.
 *
 * @module
 */
import type { Libp2p } from "libp2p";
import { DimError } from "../errors.ts";
import { settlesWithin } from "../platform/signals.ts";
import { LIBP2P_STOP_TIMEOUT_MS } from "./constants.ts";
import type { DhtServices, NodeParts } from "./create.ts";
import type { DhtPeer } from "./types.ts";
import { joinNetwork } from "./_join.ts";
import { cancelAddressUpdate } from "./_libp2p_internals.ts";
import type { Lifecycle } from "./_lifecycle.ts";
import type { PeerBookKeeper } from "./_peer_book_keeper.ts";
import { describe } from "./_peers.ts";
import type { Reach } from "./_reach.ts";

/** The libp2p events a node listens to while it runs, and its listeners. */
export type NodeListeners = Readonly<
  Record<"connection:open" | "peer:connect" | "peer:disconnect" | "self:peer:update", EventListener>
>;

/** What starting and stopping a node touches. */
export interface NodeRun {
  /** The node's assembled parts. */
  readonly parts: NodeParts;
  /** The peer book and its keeper. */
  readonly peerBook: PeerBookKeeper;
  /** Reachability, relays and UPnP. */
  readonly reach: Reach;
  /** The node's lifecycle: stop signal, background tasks. */
  readonly life: Lifecycle;
  /** The node's libp2p listeners. */
  readonly listeners: NodeListeners;
  /** Called once libp2p listens, before reach starts (the node notes its addresses). */
  readonly listening: () => void;
  /** Called with each peer the node joined through. */
  readonly joined: (peerId: string) => void;
  /** The routing table's size now. */
  readonly routingTableSize: () => number;
  /** Open connections now. */
  readonly connections: () => number;
  /** The peer store's peers. */
  readonly knownPeers: (signal: AbortSignal) => Promise<DhtPeer[]>;
}

/**
 * Starts a node's parts and joins the network.
 *
 * @param run The node's parts and hooks.
 * @param signal Aborts the start.
 * @returns When the node has joined (or found nobody to join through).
 * @throws {DimError} If libp2p cannot start (a taken port…).
 * @throws {PeerUnreachableError} If bootstrap peers are required and nobody answered.
 */
export async function startNode(run: NodeRun, signal: AbortSignal): Promise<void> {
  const { parts, peerBook, listeners } = run;
  const libp2p: Libp2p<DhtServices> = parts.libp2p;
  await peerBook.load();
  peerBook.attach();
  libp2p.addEventListener("connection:open", listeners["connection:open"]);
  try {
    await libp2p.start();
  } catch (cause) {
    throw new DimError(`Cannot start DHT node: ${describe(cause)}`, { cause });
  }
  for (const type of ["peer:connect", "peer:disconnect", "self:peer:update"] as const) {
    libp2p.addEventListener(type, listeners[type]);
  }
  run.listening();
  await parts.ports?.remember(libp2p.getMultiaddrs());
  await run.reach.start();
  signal.throwIfAborted();

  const lan = libp2p.services.lan;
  await joinNetwork({
    ...parts,
    // A DIM peer on the LAN may do instead of the bootstrap peers: lan.join decides.
    requireBootstrap: parts.requireBootstrap && lan === undefined,
    routingTableSize: run.routingTableSize,
    book: peerBook.book,
    knownPeers: run.knownPeers,
    dialSignal: run.life.stopSignal,
    joined: run.joined,
    track: (task) => run.life.track(task),
    log: parts.log,
  }, signal);
  await lan?.join({
    ...parts,
    connections: run.connections,
    routingTableSize: run.routingTableSize,
    joined: run.joined,
  }, signal);
}

/**
 * Stops a node's parts, each within its time limit.
 *
 * @param run The node's parts and hooks.
 * @returns When the parts have stopped or run out of time.
 */
export async function stopNode(run: NodeRun): Promise<void> {
  const { parts, listeners } = run;
  const libp2p = parts.libp2p;
  // Before libp2p stops: the peers still connected count as seen now.
  await settlesWithin(run.peerBook.close(), 1_000);
  libp2p.removeEventListener("self:peer:update", listeners["self:peer:update"]);
  await settlesWithin(run.reach.stop(), 1_000);
  await settlesWithin(parts.client.close(), 250);
  const stopped = Promise.resolve(libp2p.stop()).then(
    () => true,
    (cause: unknown) => {
      parts.log(`libp2p stop failed: ${describe(cause)}`);
      return true;
    },
  );
  if (!(await settlesWithin(stopped, LIBP2P_STOP_TIMEOUT_MS))) {
    parts.log(`libp2p did not stop within ${LIBP2P_STOP_TIMEOUT_MS} ms; closing anyway`);
  }
  cancelAddressUpdate(parts.internals);
  for (const type of ["connection:open", "peer:connect", "peer:disconnect"] as const) {
    libp2p.removeEventListener(type, listeners[type]);
  }
  await run.life.settleBackground(250);
  await settlesWithin(parts.datastore.settled(), 250);
}
