/**
 * Access to what is under a {@linkcode DhtNode}, for DIM's own tests and
 * benches; not part of the public API (`mod.ts` exports none of it).
 *
 * @module
 */
import type { Libp2p } from "libp2p";
import type { DhtServices } from "./create.ts";
import type { DhtNode } from "./node.ts";
import type { Reachability } from "./types.ts";
import type { Reach } from "./_reach.ts";

const PARTS = new WeakMap<object, { libp2p: Libp2p<DhtServices>; reach: Reach }>();

/**
 * Records a node's parts; called by its constructor.
 *
 * @param node The node.
 * @param libp2p Its libp2p node.
 * @param reach Its reach.
 */
export function registerParts(node: object, libp2p: Libp2p<DhtServices>, reach: Reach): void {
  PARTS.set(node, { libp2p, reach });
}

/**
 * The libp2p node under a {@linkcode DhtNode}.
 *
 * @param node The node.
 * @returns Its libp2p node.
 */
export function libp2pOf(node: DhtNode): Libp2p<DhtServices> {
  return PARTS.get(node)!.libp2p;
}

/**
 * Sets a node's reachability as a check would (kad-dht mode, relay
 * reservations, relay server). Pass `reachabilityCheck: false` so no check
 * overrides it.
 *
 * @param node The node.
 * @param status The status.
 * @returns When applied.
 */
export function forceReachability(node: DhtNode, status: Reachability["status"]): Promise<void> {
  return PARTS.get(node)!.reach.force(status);
}
