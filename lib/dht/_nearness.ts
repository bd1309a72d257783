/**
 * Whether this node is near a key by its own routing table, without asking
 * the network: how many peers it knows that are closer to the key than
 * itself. A mailbox server uses it to keep copies only for the addresses
 * it is among the closest to.
 *
 * @module
 */
import type { PeerId } from "@libp2p/interface";
import { compareXor, kadId } from "./_distance.ts";

/** The part of kad-dht's routing table this needs. */
export interface NearTable {
  /** The `count` peers of the table closest to a position, nearest first. */
  closestPeers(kadId: Uint8Array, options: { count: number }): PeerId[];
}

/**
 * How many peers of the routing table are closer to `key` than `self`,
 * counting at most `limit`.
 *
 * @param table The routing table.
 * @param self This node's peer ID.
 * @param key The key's bytes (a mailbox address).
 * @param limit The most to count.
 * @returns A number from 0 to `limit`.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { peerIdFromString } from "@libp2p/peer-id";
 * import { closerPeerCount } from "./_nearness.ts";
 *
 * const self = peerIdFromString("12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA");
 * assert.equal(closerPeerCount({ closestPeers: () => [] }, self, new Uint8Array(32), 20), 0);
 * ```
 */
export function closerPeerCount(
  table: NearTable,
  self: PeerId,
  key: Uint8Array,
  limit: number,
): number {
  const target = kadId(key);
  const here = kadId(self.toMultihash().bytes);
  let closer = 0;
  for (const peer of table.closestPeers(target, { count: limit })) {
    if (compareXor(kadId(peer.toMultihash().bytes), here, target) < 0) closer++;
  }
  return closer;
}
