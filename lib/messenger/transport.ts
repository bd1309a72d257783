/**
 * The DIM node as the transport the messaging layer needs: its streams, and
 * the peers closest to a key ranked by Kademlia distance, so a sender and a
 * recipient pick the same mailbox nodes whatever order a query met them in.
 *
 * The node counts itself among those peers (and so keeps a mailbox copy
 * itself) unless its reachability is `"private"`: a node nobody outside can
 * dial would keep a copy the recipient cannot fetch. (A copy on this node
 * alone never counts as "stored in the network": see
 * `MailboxClient.storeOffline`.) While its reachability is `"unknown"` it counts
 * itself, as before reachability was checked, so that loopback tests, a LAN
 * and the demo keep working.
 *
 * @module
 */
import type { DhtNode } from "../dht/node.ts";
import type { MessagingTransport } from "../messaging/mod.ts";

/**
 * Adapts a DIM node to the transport the messaging layer needs.
 *
 * @param node The node.
 * @returns The transport.
 */
export function transportFor(node: DhtNode): MessagingTransport {
  return {
    get peerId() {
      return node.peerId;
    },
    handle: (protocol, handler) =>
      node.handle(
        protocol,
        (stream, remotePeer, remoteAddress) => handler(stream, remotePeer, remoteAddress),
      ),
    unhandle: (protocol) => node.unhandle(protocol),
    closerPeerCount: (key, limit) => node.closerPeerCount(key, limit),
    openStream: (peer, protocol, options) =>
      node.dialProtocol({ peerId: peer.peerId, multiaddrs: peer.addresses }, protocol, options),
    closestPeers: async (key, options) => {
      const includeSelf = node.reachability.status !== "private";
      const found = await node.getClosestPeers(key, { ...options, includeSelf });
      return found
        .slice(0, options.count)
        .map((p) => ({ peerId: p.peerId, addresses: p.multiaddrs }));
    },
  };
}
