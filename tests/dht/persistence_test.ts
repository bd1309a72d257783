/**
 * A node with a data directory keeps its identity, its records and its
 * peers across restarts; a damaged directory gives a clear StorageError.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { createDhtNode, type DhtNode } from "../../lib/dht/node.ts";
import { StorageError } from "../../lib/errors.ts";
import { payloadOf, seqOf, testNodeOptions, testRecord } from "./_helpers.ts";

Deno.test("a restarted node keeps its peer ID, serves its records and rejoins its peers", async () => {
  const dataDir = await Deno.makeTempDir();
  const nodes: DhtNode[] = [];
  try {
    const b = await createDhtNode(testNodeOptions());
    nodes.push(b);
    const first = await createDhtNode(testNodeOptions({ dataDir, bootstrap: [b.multiaddrs[0]!] }));
    nodes.push(first);
    await b.put("/test/persist", testRecord(9, "kept"));
    assert.equal(seqOf(await first.getLocal("/test/persist")), 9);
    if (Deno.build.os !== "windows") {
      assert.equal((await Deno.stat(join(dataDir, "node.key"))).mode! & 0o777, 0o600);
    }
    await first.stop();

    // No bootstrap list: the node finds `b` in its own peer store.
    const second = await createDhtNode(testNodeOptions({ dataDir }));
    nodes.push(second);
    assert.equal(second.peerId, first.peerId);
    assert.deepEqual(second.peers, [b.peerId]);
    assert.equal(payloadOf(await second.getLocal("/test/persist")), "kept");

    // With `b` gone, a newcomer that knows only the restarted node gets the record from it.
    await b.stop();
    const newcomer = await createDhtNode(testNodeOptions({ bootstrap: [second.multiaddrs[0]!] }));
    nodes.push(newcomer);
    assert.equal(payloadOf(await newcomer.get("/test/persist")), "kept");
  } finally {
    await Promise.all(nodes.map((node) => node.stop()));
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("with its bootstrap peer gone, a node starts through a peer it knew, even with requireBootstrap", async () => {
  const dataDir = await Deno.makeTempDir();
  const nodes: DhtNode[] = [];
  try {
    const bootstrap = await createDhtNode(testNodeOptions());
    nodes.push(bootstrap);
    const other = await createDhtNode(testNodeOptions({ bootstrap: bootstrap.multiaddrs }));
    nodes.push(other);
    const first = await createDhtNode(
      testNodeOptions({ dataDir, bootstrap: bootstrap.multiaddrs, requireBootstrap: true }),
    );
    nodes.push(first);
    assert.deepEqual(first.joinedThrough, [bootstrap.peerId]);
    // The self lookup met `other`, which is now in the peer store.
    assert.ok(first.peers.includes(other.peerId), `peers: ${first.peers.join(", ")}`);
    await first.stop();
    await bootstrap.stop();

    const second = await createDhtNode(
      testNodeOptions({ dataDir, bootstrap: bootstrap.multiaddrs, requireBootstrap: true }),
    );
    nodes.push(second);
    assert.equal(second.started, true);
    assert.deepEqual(second.joinedThrough, [other.peerId]);
    await other.put("/test/after-bootstrap", testRecord(1, "still here"));
    assert.equal(payloadOf(await second.get("/test/after-bootstrap")), "still here");
  } finally {
    await Promise.all(nodes.map((node) => node.stop()));
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("records older than 48 h are neither served nor protected", async () => {
  let now = Date.now();
  await using node = await createDhtNode(testNodeOptions({ clock: () => now }));
  await node.put("/test/aged", testRecord(2));
  now += 47 * 60 * 60 * 1000;
  assert.equal(seqOf(await node.getLocal("/test/aged")), 2);
  now += 2 * 60 * 60 * 1000;
  assert.equal(await node.getLocal("/test/aged"), undefined);
  // The expired seq 2 no longer blocks an older record.
  await node.put("/test/aged", testRecord(1));
});

Deno.test("a corrupt node key or database is a StorageError", async (t) => {
  await t.step("node.key", async () => {
    const dataDir = await Deno.makeTempDir();
    try {
      await Deno.writeFile(join(dataDir, "node.key"), new Uint8Array([1, 2, 3]), { mode: 0o600 });
      await assert.rejects(
        createDhtNode(testNodeOptions({ dataDir })),
        (err: unknown) =>
          err instanceof StorageError &&
          /Cannot load node key .*: the file is corrupt/.test(err.message),
      );
    } finally {
      await Deno.remove(dataDir, { recursive: true });
    }
  });
  await t.step("node.db", async () => {
    const dataDir = await Deno.makeTempDir();
    try {
      await Deno.writeTextFile(join(dataDir, "node.db"), "not a database ".repeat(512));
      await assert.rejects(
        createDhtNode(testNodeOptions({ dataDir })),
        (err: unknown) =>
          err instanceof StorageError && /not a database or is corrupt/.test(err.message),
      );
    } finally {
      await Deno.remove(dataDir, { recursive: true });
    }
  });
});
