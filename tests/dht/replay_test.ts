/**
 * A storage node never goes backwards: kad-dht's PUT handler stores any
 * valid record without asking the selector, so DIM's datastore guard must
 * refuse an older one. And `get` returns the best answer and repairs peers
 * that hold an older one.
 */
import assert from "node:assert/strict";
import { Libp2pRecord } from "@libp2p/record";
import type { DhtNode } from "../../lib/dht/node.ts";
import { createDhtNode } from "../../lib/dht/node.ts";
import {
  encodeKadMessage,
  KadMessageType,
  readKadMessage,
  sendBytes,
} from "../../lib/dht/_kad_wire.ts";
import { InvalidRecordError } from "../../lib/errors.ts";
import {
  rawStream,
  seqOf,
  startNetwork,
  stopAll,
  testNodeOptions,
  testRecord,
  waitForFullTables,
} from "./_helpers.ts";

const encoder = new TextEncoder();

/** Sends one raw kad PUT_VALUE from `from` to `to`; tells whether `to` acknowledged it. */
async function rawPut(
  from: DhtNode,
  to: DhtNode,
  key: string,
  value: Uint8Array,
): Promise<"accepted" | "refused"> {
  const keyBytes = encoder.encode(key);
  const record = new Libp2pRecord(keyBytes, value, new Date()).serialize();
  const stream = rawStream(await from.dialProtocol(to.multiaddrs[0]!, from.protocol));
  try {
    await sendBytes(
      stream,
      encodeKadMessage({ type: KadMessageType.PUT_VALUE, key: keyBytes, record }),
    );
    const reply = await readKadMessage(stream, 1 << 20);
    await stream.close();
    return reply.type === KadMessageType.PUT_VALUE ? "accepted" : "refused";
  } catch {
    stream.abort(new Error("refused"));
    return "refused";
  }
}

Deno.test("a replayed older record sent straight to a storage node is refused", async () => {
  const nodes = await startNetwork(4);
  const attacker = await createDhtNode(testNodeOptions());
  try {
    const [owner, storage, reader] = nodes as [DhtNode, DhtNode, DhtNode, DhtNode];
    await waitForFullTables(nodes);
    await owner.put("/test/replay", testRecord(1, "old"));
    await owner.put("/test/replay", testRecord(2, "new"));
    assert.equal(seqOf(await storage.getLocal("/test/replay")), 2);

    assert.equal(await rawPut(attacker, storage, "/test/replay", testRecord(1, "old")), "refused");
    assert.equal(seqOf(await storage.getLocal("/test/replay")), 2);
    assert.equal(seqOf(await reader.get("/test/replay")), 2);

    // The same record again, or a newer one, is still accepted.
    assert.equal(await rawPut(attacker, storage, "/test/replay", testRecord(2, "new")), "accepted");
    assert.equal(
      await rawPut(attacker, storage, "/test/replay", testRecord(3, "newer")),
      "accepted",
    );
    assert.equal(seqOf(await storage.getLocal("/test/replay")), 3);
  } finally {
    await attacker.stop();
    await stopAll(nodes);
  }
});

Deno.test("an older record put from another node reaches no storage node", async () => {
  const nodes = await startNetwork(4);
  try {
    const [owner, , reader, replayer] = nodes as [DhtNode, DhtNode, DhtNode, DhtNode];
    await waitForFullTables(nodes);
    await owner.put("/test/replay-put", testRecord(2, "new"));
    // The replayer already holds seq 2, so its own store refuses first.
    await assert.rejects(
      replayer.put("/test/replay-put", testRecord(1, "old")),
      (err: unknown) =>
        err instanceof InvalidRecordError && /holds a newer record/.test(err.message),
    );
    assert.equal(seqOf(await reader.get("/test/replay-put")), 2);
  } finally {
    await stopAll(nodes);
  }
});

Deno.test("a fresh node's put of an older record is acknowledged by no peer", async () => {
  const nodes = await startNetwork(4);
  let late: DhtNode | undefined;
  try {
    await waitForFullTables(nodes);
    await nodes[0]!.put("/test/replay-late", testRecord(5, "new"));
    late = await createDhtNode(testNodeOptions({ bootstrap: [nodes[1]!.multiaddrs[0]!] }));
    // `late` joined after the put and holds nothing, so it stores seq 4 itself.
    assert.equal(await late.put("/test/replay-late", testRecord(4, "old")), 0);
    for (const node of nodes) {
      assert.equal(seqOf(await node.getLocal("/test/replay-late")), 5);
    }
    assert.equal(seqOf(await nodes[2]!.get("/test/replay-late")), 5);
    // The get found `late` among the holders and sent it the newer record.
    assert.equal(seqOf(await late.get("/test/replay-late")), 5);
    assert.equal(seqOf(await late.getLocal("/test/replay-late")), 5);
  } finally {
    await late?.stop();
    await stopAll(nodes);
  }
});

Deno.test("get returns the best answer and corrects the peers that held an older one", async () => {
  const nodes = await startNetwork(5);
  try {
    const [writer, fresh, reader] = nodes as [DhtNode, DhtNode, DhtNode];
    // kad-dht corrects only the peers a query asks: make it ask them all.
    await waitForFullTables(nodes);
    await writer.put("/test/repair", testRecord(1));
    // Every node holds seq 1 (a background replica must not land after the repair).
    assert.equal(await writer.settled(5_000), true);
    // Only `fresh` learns seq 2.
    assert.equal(await rawPut(reader, fresh, "/test/repair", testRecord(2)), "accepted");
    // Quorum 0: ask every peer, however early the closest agree.
    assert.equal(seqOf(await reader.get("/test/repair", { quorum: 0 })), 2);
    for (const node of nodes) {
      assert.equal(seqOf(await node.getLocal("/test/repair")), 2, `stale copy on ${node.peerId}`);
    }
  } finally {
    await stopAll(nodes);
  }
});

Deno.test("a get that stops at its quorum still repairs the local copy", async () => {
  const nodes = await startNetwork(5);
  try {
    const [writer, reader] = nodes as [DhtNode, DhtNode];
    await waitForFullTables(nodes);
    await writer.put("/test/quorum", testRecord(1));
    for (const node of nodes) {
      if (node !== reader) {
        assert.equal(await rawPut(reader, node, "/test/quorum", testRecord(2)), "accepted");
      }
    }
    assert.equal(seqOf(await reader.getLocal("/test/quorum")), 1);
    assert.equal(seqOf(await reader.get("/test/quorum", { quorum: 2 })), 2);
    assert.equal(seqOf(await reader.getLocal("/test/quorum")), 2);
  } finally {
    await stopAll(nodes);
  }
});

Deno.test("a newer record on the closest peer outweighs older ones that agree", async () => {
  const nodes = await startNetwork(6);
  try {
    const [writer, reader] = nodes as [DhtNode, DhtNode];
    await waitForFullTables(nodes);
    await writer.put("/test/closest", testRecord(1));
    const closest = (await reader.getClosestPeers("/test/closest"))[0]!;
    const holder = nodes.find((node) => node.peerId === closest.peerId)!;
    assert.equal(await rawPut(reader, holder, "/test/closest", testRecord(2)), "accepted");
    // The closest peer is always heard: its newer record wins, and the get
    // cannot end on the older one the next closest agree on.
    assert.equal(seqOf(await reader.get("/test/closest")), 2);
  } finally {
    await stopAll(nodes);
  }
});
