/**
 * The faster "closest peers" of lib/dht/_closest.ts gives kad-dht's answer:
 * on synthetic tables against a full sort, and on a live routing table.
 */
import assert from "node:assert/strict";
import { generateKeyPair } from "@libp2p/crypto/keys";
import type { PeerId } from "@libp2p/interface";
import { peerIdFromPrivateKey } from "@libp2p/peer-id";
import { ClosestIndex, closestPeers, type TablePeer } from "../../lib/dht/_closest.ts";
import { kadId } from "../../lib/dht/_distance.ts";
import { libp2pOf } from "../../lib/dht/node.ts";
import { compareBytes as compareDistance } from "../../lib/platform/bytes.ts";
import { startNetwork, stopAll, waitForFullTables } from "./_helpers.ts";

async function tablePeers(count: number): Promise<TablePeer[]> {
  const out: TablePeer[] = [];
  for (let i = 0; i < count; i++) {
    const peerId = peerIdFromPrivateKey(await generateKeyPair("Ed25519"));
    out.push({ peerId, kadId: kadId(peerId.toMultihash().bytes) });
  }
  return out;
}

function reference(peers: readonly TablePeer[], target: Uint8Array, count: number): string[] {
  const xor = (id: Uint8Array) => id.map((byte, i) => byte ^ target[i]!);
  return [...peers]
    .sort((a, b) => compareDistance(xor(a.kadId), xor(b.kadId)))
    .slice(0, count)
    .map((peer) => peer.peerId.toString());
}

Deno.test("closestPeers ranks a table as a full XOR sort does", async () => {
  const peers = await tablePeers(120);
  for (let i = 0; i < 50; i++) {
    const target = crypto.getRandomValues(new Uint8Array(32));
    const count = [1, 5, 20, 200][i % 4]!;
    assert.deepEqual(
      closestPeers(peers, target, count).map(String),
      reference(peers, target, count),
    );
  }
  // Positions equal in their first 32 bits are ordered by the rest.
  const [a, b] = peers as [TablePeer, TablePeer];
  const twinA = { peerId: a.peerId, kadId: new Uint8Array(32).fill(7) };
  const twinB = { peerId: b.peerId, kadId: new Uint8Array(32).fill(7) };
  twinB.kadId[31] = 8;
  const target = new Uint8Array(32).fill(7);
  target[31] = 8;
  assert.deepEqual(closestPeers([twinA, twinB], target, 2), [b.peerId, a.peerId]);
  assert.deepEqual(closestPeers([twinA, twinB], target, 2, [b.peerId]), [a.peerId]);
});

Deno.test("a ClosestIndex follows the tree as peers come and go", async () => {
  const peers = await tablePeers(30);
  const leaf = { peers: peers.slice(0, 10) };
  const root = { left: leaf, right: { peers: peers.slice(10, 20) } };
  const kb = { root, toIterable: () => [], closest: () => [] as PeerId[] };
  const index = new ClosestIndex(kb, 20);
  const target = crypto.getRandomValues(new Uint8Array(32));
  assert.deepEqual(index.closest(target).map(String), reference(peers.slice(0, 20), target, 20));
  leaf.peers.push(peers[25]!); // A leaf grew: noticed without an event, soon.
  await new Promise((resolve) => setTimeout(resolve, 260));
  assert.deepEqual(
    index.closest(target).map(String),
    reference([...peers.slice(0, 20), peers[25]!], target, 20),
  );
  leaf.peers[0] = peers[26]!; // Replaced in place: the routing table's event tells.
  index.invalidate();
  assert.deepEqual(
    index.closest(target, { count: 5 }).map(String),
    reference([...peers.slice(1, 20), peers[25]!, peers[26]!], target, 5),
  );
});

Deno.test("a node's routing table answers closest-peer queries as before", async () => {
  const nodes = await startNetwork(8);
  try {
    await waitForFullTables(nodes);
    const table = (libp2pOf(nodes[0]!).services.dht as unknown as {
      routingTable: {
        kb: { toIterable(): Iterable<TablePeer> };
        closestPeers(id: Uint8Array, options: { count: number }): PeerId[];
      };
    }).routingTable;
    const peers = [...table.kb.toIterable()];
    assert.equal(peers.length, 7);
    for (let i = 0; i < 10; i++) {
      const target = crypto.getRandomValues(new Uint8Array(32));
      assert.deepEqual(
        table.closestPeers(target, { count: 3 }).map(String),
        reference(peers, target, 3),
      );
    }
  } finally {
    await stopAll(nodes);
  }
});
