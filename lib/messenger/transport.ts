/**
 * The DIM node as the transport the messaging layer needs: its streams, and
 * the peers closest to a key (this node among them) ranked by Kademlia
 * distance, so a sender and a recipient pick the same mailbox nodes
 * whatever order a query met them in.
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
      node.handle(protocol, (stream, remotePeer) => handler(stream, remotePeer)),
    unhandle: (protocol) => node.unhandle(protocol),
    openStream: (peer, protocol, options) =>
      node.dialProtocol({ peerId: peer.peerId, multiaddrs: peer.addresses }, protocol, options),
    closestPeers: async (key, options) => {
      const found = await node.getClosestPeers(key, { ...options, includeSelf: true });
      return found
        .slice(0, options.count)
        .map((p) => ({ peerId: p.peerId, addresses: p.multiaddrs }));
    },
  };
}
