/**
 * The shape check of lib/dht/_libp2p_internals.ts: it passes on the libp2p
 * and kad-dht versions DIM pins, on a real node and a real TCP connection,
 * and fails loudly, naming the missing part, when one is gone.
 */
import assert from "node:assert/strict";
import {
  batchWindowUpdates,
  checkConnectionInternals,
  CHECKED_VERSIONS,
  checkLibp2pInternals,
  Libp2pInternalsError,
  quietLengthDecoders,
} from "../../lib/dht/_libp2p_internals.ts";
import { kadId } from "../../lib/dht/_distance.ts";
import { createDhtNode, libp2pOf } from "../../lib/dht/node.ts";
import { LengthPrefixedDecoder } from "@libp2p/utils";
import { StreamState, YamuxStream } from "@libp2p/yamux/stream";
import { startNetwork, stopAll, testNodeOptions, waitForFullTables } from "./_helpers.ts";

Deno.test("the pinned versions are the ones deno.json imports", async () => {
  const config = JSON.parse(await Deno.readTextFile(new URL("../../deno.json", import.meta.url)));
  for (const name of ["libp2p", "@libp2p/kad-dht", "@libp2p/tcp", "@libp2p/yamux"]) {
    assert.equal(config.imports[name], `npm:${name}@${CHECKED_VERSIONS[name]}`);
  }
});

Deno.test("a real node and TCP connection have every internal part DIM relies on", async () => {
  await using a = await createDhtNode(testNodeOptions());
  await using b = await createDhtNode(testNodeOptions());
  const internals = checkLibp2pInternals(libp2pOf(a));
  assert.equal(internals.kad.routingTable.size, 0);
  await b.dial(a.multiaddrs[0]!);
  const [connection] = libp2pOf(b).getConnections();
  assert.ok(connection !== undefined);
  checkConnectionInternals(connection);
});

Deno.test("a missing internal part fails the check with a clear error", async (t) => {
  await using node = await createDhtNode(testNodeOptions({ start: false }));
  const libp2p = libp2pOf(node);
  const dht = libp2p.services.dht as unknown as Record<string, unknown>;
  const routingTable = dht.routingTable as Record<string, unknown>;

  await t.step("kad-dht's routing table", () => {
    const changed = { ...libp2p, services: { dht: { ...dht, routingTable: undefined } } };
    assert.throws(
      () => checkLibp2pInternals(changed as never),
      (err: unknown) =>
        err instanceof Libp2pInternalsError &&
        err.message.startsWith("Cannot create DHT node: libp2p internals changed") &&
        err.message.includes("@libp2p/kad-dht: services.dht.routingTable (an EventTarget)") &&
        err.message.includes("@libp2p/kad-dht 16.4.5"),
    );
  });

  await t.step("the k-bucket tree's closest()", () => {
    // The same table and tree, but for the tree's closest().
    const kb = Object.create(routingTable.kb as object, { closest: { value: undefined } });
    const table = Object.create(routingTable, { kb: { value: kb } });
    const changed = { ...libp2p, services: { dht: { ...dht, routingTable: table } } };
    assert.throws(
      () => checkLibp2pInternals(changed as never),
      (err: unknown) =>
        err instanceof Libp2pInternalsError &&
        err.message.endsWith(
          "missing: @libp2p/kad-dht: routingTable.kb.closest(). See lib/dht/_libp2p_internals.ts",
        ),
    );
  });

  await t.step("the address manager's debounced update", () => {
    const changed = { services: libp2p.services, peerStore: libp2p.peerStore, components: {} };
    assert.throws(
      () => checkLibp2pInternals(changed as never),
      /libp2p: components\.addressManager\._updatePeerStoreAddresses\.stop\(\)/,
    );
  });

  await t.step("a TCP connection's socket", () => {
    assert.throws(
      () => checkConnectionInternals({ maConn: { sendData() {} } }),
      (err: unknown) =>
        err instanceof Libp2pInternalsError && err.message.includes("connection.maConn.socket"),
    );
  });
});

Deno.test("a patched length-prefixed decoder reads the same frames, whole or split", () => {
  assert.equal(quietLengthDecoders(), true);
  assert.equal(quietLengthDecoders(), true);
  const decoder = new LengthPrefixedDecoder({
    lengthDecoder: (data: { subarray(): Uint8Array; byteLength: number }) => {
      if (data.byteLength < 2) throw new RangeError("short");
      const bytes = data.subarray();
      return (bytes[0]! << 8) | bytes[1]!;
    },
    encodingLength: () => 2,
  });
  const frames = (bytes: number[]) =>
    [...decoder.decode(new Uint8Array(bytes))].map((frame) => [...frame.subarray()]);
  assert.deepEqual(frames([0, 2, 7, 8, 0, 1, 9]), [[7, 8], [9]]);
  // A partial length, then the rest.
  assert.deepEqual(frames([0]), []);
  assert.deepEqual(frames([1, 5]), [[5]]);
  assert.deepEqual(frames([0, 3, 1]), []);
  assert.deepEqual(frames([2, 3]), [[1, 2, 3]]);
});

// A yamux stream as `sendWindowUpdate` uses it, with its frames recorded.
function windowStub(state: number, used: number) {
  const frames: { flag: number; length: number }[] = [];
  return {
    frames,
    stream: {
      state,
      recvWindow: 256 * 1024,
      recvWindowCapacity: 256 * 1024 - used,
      maxStreamWindowSize: 16 * 1024 * 1024,
      epochStart: Date.now(),
      getRTT: () => -1,
      getSendFlags: () => (state === StreamState.SYNReceived ? 2 : 0), // ACK
      sendFrame: (frame: { flag: number; length: number }) => frames.push(frame),
    },
  };
}

Deno.test("a yamux stream sends a window update once half its window is used, or with a flag", () => {
  assert.equal(batchWindowUpdates(), true);
  assert.equal(batchWindowUpdates(), true);
  const update = (YamuxStream.prototype as unknown as { sendWindowUpdate: () => void })
    .sendWindowUpdate;
  for (
    const [state, used, sent] of [
      [StreamState.Established, 1024, false],
      [StreamState.Established, 128 * 1024 - 1, false],
      [StreamState.Established, 128 * 1024, true],
      [StreamState.Established, 256 * 1024, true],
      [StreamState.SYNReceived, 1024, true], // its ACK goes at once
      [StreamState.Paused, 256 * 1024, false], // as before: nothing while paused
    ] as const
  ) {
    const { frames, stream } = windowStub(state, used);
    update.call(stream);
    assert.equal(frames.length, sent ? 1 : 0, `state ${state}, ${used} bytes used`);
    if (sent) {
      assert.equal(frames[0]!.length, used);
      assert.equal(stream.recvWindowCapacity, stream.recvWindow);
    }
  }
});

Deno.test("small messages on a real stream cost no window update each, and a large write still flows", async () => {
  await using a = await createDhtNode(testNodeOptions());
  await using b = await createDhtNode(testNodeOptions());
  const PROTOCOL = "/dim-test/window/1.0.0";
  let updates = 0;
  let received = 0;
  const done = Promise.withResolvers<void>();
  await a.handle(PROTOCOL, async (stream) => {
    // The receiving end's frames: count its window updates (type 1).
    const own = stream as unknown as {
      sendFrame: (frame: { type: number }, data?: unknown) => boolean;
    };
    const send = own.sendFrame;
    own.sendFrame = (frame, data) => {
      if (frame.type === 1) updates++;
      return send(frame, data);
    };
    for await (const chunk of stream) {
      received += chunk.byteLength;
      if (received === 200 * 1024 + 4 * 1024 * 1024) break;
    }
    done.resolve();
  });
  const stream = await b.dialProtocol(a.multiaddrs[0]!, PROTOCOL);
  // 200 messages of 1 KiB, one at a time: without batching, 200 updates.
  for (let i = 0; i < 200; i++) {
    stream.send(new Uint8Array(1024));
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
  const small = updates;
  assert.ok(small <= 2, `${small} window updates for 200 KiB`);
  // Then 4 MiB at once: it needs updates to get through at all.
  if (!stream.send(new Uint8Array(4 * 1024 * 1024))) await stream.onDrain();
  await Promise.race([
    done.promise,
    new Promise((_, reject) => setTimeout(() => reject(new Error("stalled")), 10_000)),
  ]);
  assert.equal(received, 200 * 1024 + 4 * 1024 * 1024);
  assert.ok(updates > small);
  await stream.close();
});

Deno.test("the server's closer peers for a DIM key are the routing table's, as kad-dht gives them", async () => {
  const nodes = await startNetwork(5);
  try {
    await waitForFullTables(nodes);
    const { kad } = checkLibp2pInternals(libp2pOf(nodes[0]!));
    const key = new TextEncoder().encode("/test/closer");
    const expected = kad.routingTable.closestPeers(kadId(key), { count: 20 }).map(String);
    const closer = await kad.peerRouting.getClosestPeersOffline(key);
    assert.deepEqual(closer.map(({ id }) => id.toString()), expected);
    assert.ok(closer.every(({ multiaddrs }) => multiaddrs.length > 0));
    // A key that is a peer ID still names that peer first (kad-dht's own path).
    const peer = libp2pOf(nodes[3]!).peerId;
    const named = await kad.peerRouting.getClosestPeersOffline(peer.toMultihash().bytes);
    assert.equal(named[0]!.id.toString(), peer.toString());
  } finally {
    await stopAll(nodes);
  }
});
