/**
 * The DIM node as the transport the messaging layer needs: its streams, and
 * the peers closest to a key sorted by Kademlia distance, so a sender and a
 * recipient pick the same mailbox nodes whatever order a query met them in.
 *
 * @module
 */
import { sha256 } from "@noble/hashes/sha2.js";
import { peerIdFromString } from "@libp2p/peer-id";
import { compareBytes } from "../platform/bytes.ts";
import type { DhtNode } from "../dht/node.ts";
import type { MessagingTransport } from "../messaging/mod.ts";

/** The XOR distance of a peer from a key in Kademlia's key space. */
function kadDistance(peerId: string, keyHash: Uint8Array): Uint8Array {
  const peerHash = sha256(peerIdFromString(peerId).toMultihash().bytes);
  return peerHash.map((b, i) => b ^ keyHash[i]!);
}

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
      // Sorted by distance here, with this node among them, so sender and
      // recipient pick the same nodes whatever order the query met them in.
      const keyHash = sha256(key);
      const found = await node.getClosestPeers(key, options);
      const peers = [...found.map((p) => ({ peerId: p.peerId, addresses: p.multiaddrs })), {
        peerId: node.peerId,
        addresses: [] as readonly string[],
      }];
      return peers
        .map((p) => ({ p, d: kadDistance(p.peerId, keyHash) }))
        .sort((a, b) => compareBytes(a.d, b.d))
        .slice(0, options.count)
        .map(({ p }) => p);
    },
  };
}
