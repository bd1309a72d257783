/**
 * A node with a data directory listens on the same port after a restart,
 * so the addresses its peers and contacts remember still reach it; a taken
 * port or a damaged `ports.json` costs a new port, never the start.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { createDhtNode, type DhtNode } from "../../lib/dht/node.ts";
import { NODE_PORTS_FILE } from "../../lib/dht/_stable_ports.ts";
import { testNodeOptions } from "./_helpers.ts";

function portOf(node: DhtNode): number {
  const address = node.multiaddrs.find((a) => a.startsWith("/ip4/127.0.0.1/tcp/"));
  assert.ok(address, `no loopback address in ${node.multiaddrs}`);
  return Number(address.split("/")[4]);
}

Deno.test("a restarted node listens on its last port, or a new one when that is taken", async () => {
  const dataDir = await Deno.makeTempDir();
  const nodes: DhtNode[] = [];
  let blocker: Deno.TcpListener | undefined;
  try {
    const first = await createDhtNode(testNodeOptions({ dataDir }));
    nodes.push(first);
    const port = portOf(first);
    await first.stop();
    if (Deno.build.os !== "windows") {
      assert.equal((await Deno.stat(join(dataDir, NODE_PORTS_FILE))).mode! & 0o777, 0o600);
    }

    const second = await createDhtNode(testNodeOptions({ dataDir }));
    nodes.push(second);
    assert.equal(portOf(second), port, "the same port as before");
    assert.equal(second.peerId, first.peerId);
    await second.stop();

    // Another program holds the port now: the node starts on a new one, and keeps that.
    blocker = Deno.listen({ hostname: "127.0.0.1", port });
    const third = await createDhtNode(testNodeOptions({ dataDir }));
    nodes.push(third);
    const moved = portOf(third);
    assert.notEqual(moved, port);
    await third.stop();
    const fourth = await createDhtNode(testNodeOptions({ dataDir }));
    nodes.push(fourth);
    assert.equal(portOf(fourth), moved);
  } finally {
    blocker?.close();
    await Promise.all(nodes.map((node) => node.stop()));
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("a damaged ports.json is ignored; a fixed listen port is left alone", async () => {
  const dataDir = await Deno.makeTempDir();
  const nodes: DhtNode[] = [];
  try {
    for (const junk of ["{not json", '{"version":1,"ports":{"/ip4/127.0.0.1/tcp/0":99999}}']) {
      await Deno.writeTextFile(join(dataDir, NODE_PORTS_FILE), junk);
      const node = await createDhtNode(testNodeOptions({ dataDir }));
      nodes.push(node);
      assert.ok(portOf(node) > 0 && portOf(node) < 65536);
      await node.stop();
    }
    // A free port, named in the listen address: used as given, not replaced.
    const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const fixed = (probe.addr as Deno.NetAddr).port;
    probe.close();
    const node = await createDhtNode(
      testNodeOptions({ dataDir, listen: [`/ip4/127.0.0.1/tcp/${fixed}`] }),
    );
    nodes.push(node);
    assert.equal(portOf(node), fixed);
  } finally {
    await Promise.all(nodes.map((node) => node.stop()));
    await Deno.remove(dataDir, { recursive: true });
  }
});
