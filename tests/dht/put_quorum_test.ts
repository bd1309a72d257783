/**
 * A put returns once its write quorum (the 3 closest peers) has stored the
 * record; the rest of the k closest get it in the background, which
 * `settled()` and `stop()` wait for. A put whose quorum refuses sends to
 * every closest peer before it returns, and says how many stored.
 */
import assert from "node:assert/strict";
import { Libp2pRecord } from "@libp2p/record";
import type { DhtNode } from "../../lib/dht/node.ts";
import {
  encodeKadMessage,
  KadMessageType,
  readKadMessage,
  sendBytes,
} from "../../lib/dht/_kad_wire.ts";
import {
  rawStream,
  seqOf,
  startNetwork,
  stopAll,
  testRecord,
  waitForFullTables,
} from "./_helpers.ts";

const NODES = 8;

/** The nodes among `nodes` that are the `count` closest to `key`, as `from` ranks them. */
async function closest(from: DhtNode, nodes: readonly DhtNode[], key: string, count: number) {
  const ranked = await from.getClosestPeers(key);
  return ranked.slice(0, count).map((peer) => nodes.find((node) => node.peerId === peer.peerId)!);
}

Deno.test("a put returns at its write quorum and the other replicas still arrive", async () => {
  const nodes = await startNetwork(NODES);
  try {
    await waitForFullTables(nodes);
    const writer = nodes[0]!;
    const key = "/test/quorum-put";
    assert.equal(await writer.put(key, testRecord(1)), 3);
    // The 3 closest hold it when put returns.
    for (const node of await closest(writer, nodes, key, 3)) {
      assert.equal(seqOf(await node.getLocal(key)), 1, `quorum peer ${node.peerId}`);
    }
    assert.equal(await writer.settled(5_000), true);
    for (const node of nodes) {
      assert.equal(seqOf(await node.getLocal(key)), 1, `replica on ${node.peerId}`);
    }
    // A get from another node ends on the quorum with the new record.
    assert.equal(seqOf(await nodes[5]!.get(key)), 1);
  } finally {
    await stopAll(nodes);
  }
});

Deno.test("stop waits for the background replicas of a put", async () => {
  const nodes = await startNetwork(NODES);
  const [writer, ...others] = nodes as [DhtNode, ...DhtNode[]];
  try {
    await waitForFullTables(nodes);
    assert.equal(await writer.put("/test/quorum-stop", testRecord(4)), 3);
    await writer.stop();
    for (const node of others) {
      assert.equal(seqOf(await node.getLocal("/test/quorum-stop")), 4, `replica on ${node.peerId}`);
    }
  } finally {
    await stopAll(nodes);
  }
});

Deno.test("a put whose quorum refuses sends to every closest peer and says how many stored", async () => {
  const nodes = await startNetwork(NODES);
  try {
    await waitForFullTables(nodes);
    const reader = nodes[0]!;
    const key = "/test/quorum-refused";
    // The closest peer already holds a newer record, so it refuses seq 1.
    const [nearest] = await closest(reader, nodes, key, 1);
    // The writer is any other node (peer IDs, so the closest, change each run).
    const writer = nodes.find((node) => node !== reader && node !== nearest)!;
    await rawPut(reader, nearest!, key, testRecord(2));
    // The quorum is not reached: the put waits for the other 6 peers.
    assert.equal(await writer.put(key, testRecord(1)), NODES - 2);
    for (const node of nodes) {
      assert.equal(seqOf(await node.getLocal(key)), node === nearest ? 2 : 1);
    }
  } finally {
    await stopAll(nodes);
  }
});

/** Sends one raw kad PUT_VALUE from `from` to `to`. */
async function rawPut(from: DhtNode, to: DhtNode, key: string, value: Uint8Array): Promise<void> {
  const keyBytes = new TextEncoder().encode(key);
  const record = new Libp2pRecord(keyBytes, value, new Date()).serialize();
  const stream = rawStream(await from.dialProtocol(to.multiaddrs[0]!, from.protocol));
  await sendBytes(
    stream,
    encodeKadMessage({ type: KadMessageType.PUT_VALUE, key: keyBytes, record }),
  );
  assert.equal((await readKadMessage(stream, 1 << 20)).type, KadMessageType.PUT_VALUE);
  await stream.close();
}
