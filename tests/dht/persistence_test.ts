/**
 * A node with a data directory keeps its identity, its records and its
 * peers across restarts; a damaged directory gives a clear StorageError.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { createDhtNode, type DhtNode, type RememberedPeer } from "../../lib/dht/node.ts";
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

Deno.test("with its bootstrap peer gone, a restarted node dials the peer it saw last first, and joins through it", async () => {
  const dataDir = await Deno.makeTempDir();
  const nodes: DhtNode[] = [];
  let now = Date.now();
  const lines: string[] = [];
  const log = (line: string) => lines.push(line);
  try {
    const bootstrap = await createDhtNode(testNodeOptions());
    const earlier = await createDhtNode(testNodeOptions());
    const later = await createDhtNode(testNodeOptions());
    nodes.push(bootstrap, earlier, later);
    const first = await createDhtNode(
      testNodeOptions({ dataDir, bootstrap: bootstrap.multiaddrs, clock: () => now }),
    );
    nodes.push(first);
    now += 60_000;
    await first.dial(earlier.multiaddrs[0]!);
    await first.hangUp(earlier.peerId);
    now += 60_000;
    await first.dial(later.multiaddrs[0]!);
    now += 60_000;
    await bootstrap.stop();
    await first.stop();
    if (Deno.build.os !== "windows") {
      assert.equal((await Deno.stat(join(dataDir, "peers.json"))).mode! & 0o777, 0o600);
    }
    const saved: { peers: RememberedPeer[] } = JSON.parse(
      await Deno.readTextFile(join(dataDir, "peers.json")),
    );
    const seen = Object.fromEntries(saved.peers.map((p) => [p.peerId, p]));
    assert.equal(seen[bootstrap.peerId]?.source, "bootstrap");
    assert.equal(seen[later.peerId]?.source, "network");
    assert.ok(seen[later.peerId]!.lastSeen > seen[earlier.peerId]!.lastSeen);

    now += 60_000;
    const second = await createDhtNode(
      testNodeOptions({ dataDir, bootstrap: bootstrap.multiaddrs, clock: () => now, log }),
    );
    nodes.push(second);
    const dials = lines.find((line) => line.startsWith("start dials:")) ?? "";
    assert.ok(
      dials.indexOf(later.peerId) >= 0 &&
        dials.indexOf(later.peerId) < dials.indexOf(earlier.peerId),
      dials,
    );
    assert.ok(second.joinedThrough.includes(later.peerId), second.joinedThrough.join(", "));
    assert.ok(!second.joinedThrough.includes(bootstrap.peerId));
  } finally {
    await Promise.all(nodes.map((node) => node.stop()));
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("a node given join hints dials them on its next start, with no bootstrap list", async () => {
  const dataDir = await Deno.makeTempDir();
  const nodes: DhtNode[] = [];
  try {
    const hinted = await createDhtNode(testNodeOptions());
    nodes.push(hinted);
    const first = await createDhtNode(testNodeOptions({ dataDir }));
    nodes.push(first);
    assert.equal(first.peerBook.addJoinHints(hinted.multiaddrs, "hint:dimada"), 1);
    await first.stop();

    const second = await createDhtNode(testNodeOptions({ dataDir }));
    nodes.push(second);
    assert.deepEqual(second.joinedThrough, [hinted.peerId]);
    assert.equal(second.peerBook.remembered[0]?.source, "hint:dimada");
  } finally {
    await Promise.all(nodes.map((node) => node.stop()));
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("a damaged or oversized peers.json is logged and ignored, and replaced", async (t) => {
  for (
    const [name, bytes] of [
      ["corrupt", new TextEncoder().encode("{ not json")],
      ["oversized", new Uint8Array(1024 * 1024 + 1).fill(32)],
    ] as const
  ) {
    await t.step(name, async () => {
      const dataDir = await Deno.makeTempDir();
      const nodes: DhtNode[] = [];
      const lines: string[] = [];
      try {
        await Deno.writeFile(join(dataDir, "peers.json"), bytes);
        const peer = await createDhtNode(testNodeOptions());
        nodes.push(peer);
        const node = await createDhtNode(
          testNodeOptions({ dataDir, bootstrap: peer.multiaddrs, log: (l) => lines.push(l) }),
        );
        nodes.push(node);
        assert.equal(node.started, true);
        assert.ok(lines.some((l) => l.startsWith("ignoring the peer book")), lines.join("\n"));
        await node.stop();
        const saved = JSON.parse(await Deno.readTextFile(join(dataDir, "peers.json")));
        assert.deepEqual(
          saved.peers.map((p: { peerId: string }) => p.peerId),
          [peer.peerId],
        );
      } finally {
        await Promise.all(nodes.map((node) => node.stop()));
        await Deno.remove(dataDir, { recursive: true });
      }
    });
  }
});

Deno.test("a peer that does not speak this node's kad protocol is not remembered", async () => {
  const dataDir = await Deno.makeTempDir();
  const nodes: DhtNode[] = [];
  try {
    const other = await createDhtNode(testNodeOptions({ protocolPrefix: "/other" }));
    const same = await createDhtNode(testNodeOptions());
    nodes.push(other, same);
    const node = await createDhtNode(testNodeOptions({ dataDir }));
    nodes.push(node);
    await node.dial(other.multiaddrs[0]!);
    await node.dial(same.multiaddrs[0]!);
    // Identify runs after the connection opens.
    const until = Date.now() + 5_000;
    while (node.peerBook.remembered.length !== 1 && Date.now() < until) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await node.stop();
    const saved: { peers: RememberedPeer[] } = JSON.parse(
      await Deno.readTextFile(join(dataDir, "peers.json")),
    );
    assert.deepEqual(saved.peers.map((p) => p.peerId), [same.peerId]);
  } finally {
    await Promise.all(nodes.map((node) => node.stop()));
    await Deno.remove(dataDir, { recursive: true });
  }
});
