// Circuit relay v2 between DIM nodes on loopback: a node forced "private"
// reserves on relays, is dialled through its /p2p-circuit address, runs DIM
// protocol handlers over the relayed connection, and replaces a relay that
// stops; kad-dht runs in client mode meanwhile.
import assert from "node:assert/strict";
import { createDhtNode, type DhtNode, forceReachability, libp2pOf } from "../../lib/dht/node.ts";
import { LOOPBACK } from "./_helpers.ts";

const ECHO = "/dim/test-echo/1.0.0";

async function waitFor(what: string, ok: () => boolean, ms = 8_000): Promise<number> {
  const start = Date.now();
  while (!ok()) {
    if (Date.now() - start > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return Date.now() - start;
}

function relayNode(
  bootstrap: readonly string[] = [],
  relayLimits: { bytes?: number } = {},
): Promise<DhtNode> {
  return createDhtNode({
    listen: LOOPBACK,
    bootstrap,
    relayServer: true,
    reachabilityCheck: false,
    relayLimits,
  });
}

Deno.test("a private node reserves on relays and is dialled through a circuit", async () => {
  await using r1 = await relayNode();
  await using r2 = await relayNode(r1.multiaddrs);
  await using a = await createDhtNode({
    listen: LOOPBACK,
    bootstrap: [...r1.multiaddrs, ...r2.multiaddrs],
    reachabilityCheck: false,
    relays: 2,
  });
  await using b = await createDhtNode({ listen: LOOPBACK, reachabilityCheck: false });
  const events: string[][] = [];
  a.addEventListener("addresses", (e) => events.push((e as CustomEvent<string[]>).detail));
  const reach: string[] = [];
  a.addEventListener("reachability", (e) => reach.push((e as CustomEvent).detail.status));

  await a.handle(ECHO, async (stream, peerId) => {
    assert.equal(peerId, b.peerId);
    for await (const chunk of stream) stream.send(chunk.subarray());
    await stream.close();
  });
  assert.equal(a.reachability.status, "unknown");
  await forceReachability(a, "private");
  assert.deepEqual(reach, ["private"]);
  assert.equal(libp2pOf(a).services.dht.getMode(), "client");
  await waitFor("two reservations", () => a.reachability.relays.length === 2);
  assert.deepEqual(new Set(a.reachability.relays), new Set([r1.peerId, r2.peerId]));
  const circuits = a.multiaddrs.filter((m) => m.includes("/p2p-circuit"));
  assert.ok(circuits.length >= 2, `circuit addresses: ${a.multiaddrs.join(" ")}`);
  assert.ok(circuits.every((m) => m.endsWith(`/p2p-circuit/p2p/${a.peerId}`)));
  assert.ok(events.some((list) => list.some((m) => m.includes("/p2p-circuit"))));

  // B knows A only by a circuit address through R1.
  const viaR1 = circuits.find((m) => m.includes(`/p2p/${r1.peerId}/p2p-circuit`))!;
  const stream = await b.dialProtocol(viaR1, ECHO);
  stream.send(new Uint8Array([1, 2, 3]));
  await stream.close();
  const echoed: number[] = [];
  for await (const chunk of stream) echoed.push(...chunk.subarray());
  assert.deepEqual(echoed, [1, 2, 3]);
  const connection = libp2pOf(b).getConnections(libp2pOf(a).peerId)[0]!;
  assert.ok(connection.remoteAddr.toString().includes("/p2p-circuit"));
  assert.ok(connection.limits !== undefined, "a relayed connection is limited");

  // More streams to A go over the same relayed connection, whatever
  // address or peer ID names A, instead of a new relayed connection each.
  for (const target of [viaR1, a.peerId, { peerId: a.peerId, multiaddrs: circuits }]) {
    const again = await b.dialProtocol(target, ECHO);
    again.send(new Uint8Array([4]));
    await again.close();
    for await (const _ of again);
  }
  assert.deepEqual(libp2pOf(b).getConnections(libp2pOf(a).peerId).map((c) => c.id), [
    connection.id,
  ]);

  // Back to unknown: reservations are given up, kad-dht serves again.
  await forceReachability(a, "unknown");
  assert.equal(a.reachability.relays.length, 0);
  assert.ok(!a.multiaddrs.some((m) => m.includes("/p2p-circuit")));
  assert.equal(libp2pOf(a).services.dht.getMode(), "server");
});

Deno.test("past a relayed connection's byte budget the relay resets it, and the next stream dials a fresh one", async () => {
  await using r = await relayNode([], { bytes: 64 * 1024 });
  await using a = await createDhtNode({
    listen: LOOPBACK,
    bootstrap: r.multiaddrs,
    reachabilityCheck: false,
    relays: 1,
  });
  await using b = await createDhtNode({ listen: LOOPBACK, reachabilityCheck: false });
  await a.handle(ECHO, async (stream) => {
    for await (const chunk of stream) stream.send(chunk.subarray());
    await stream.close();
  });
  await forceReachability(a, "private");
  await waitFor("a reservation", () => a.reachability.relays.length === 1);
  const circuit = a.multiaddrs.find((m) => m.includes("/p2p-circuit"))!;
  const echo = async (bytes: number): Promise<number> => {
    const stream = await b.dialProtocol(circuit, ECHO);
    stream.send(new Uint8Array(bytes).fill(7));
    await stream.close();
    let got = 0;
    for await (const chunk of stream) got += chunk.byteLength;
    // A reset ends the stream early, without an error on this side.
    if (got !== bytes) throw new Error(`echo cut short at ${got} bytes`);
    return got;
  };
  // 10 round trips of 16 KiB (320 KiB through the relay) on a 64 KiB budget:
  // the relay resets a connection several times; a retry after a reset, as
  // DIM's outbox makes, gets through on a fresh connection.
  const connections = new Set<string>();
  for (let i = 0; i < 10; i++) {
    let got = 0;
    for (let attempt = 0; attempt < 3 && got === 0; attempt++) {
      got = await echo(16 * 1024).catch(() => 0);
    }
    assert.equal(got, 16 * 1024);
    for (const c of libp2pOf(b).getConnections(libp2pOf(a).peerId)) {
      assert.ok(c.remoteAddr.toString().includes("/p2p-circuit"), "only relayed connections");
      connections.add(c.id);
    }
  }
  assert.ok(connections.size >= 3, `relayed connections used: ${connections.size}`);
});

Deno.test("a relay that stops is replaced within 10 s", async () => {
  await using r1 = await relayNode();
  await using r2 = await relayNode(r1.multiaddrs);
  await using r3 = await relayNode(r1.multiaddrs);
  await using a = await createDhtNode({
    listen: LOOPBACK,
    bootstrap: [...r1.multiaddrs, ...r2.multiaddrs, ...r3.multiaddrs],
    reachabilityCheck: false,
    relays: 2,
  });
  await forceReachability(a, "private");
  await waitFor("two reservations", () => a.reachability.relays.length === 2);
  const [lost] = a.reachability.relays;
  const stopped = [r1, r2, r3].find((r) => r.peerId === lost)!;
  await stopped.stop();
  const ms = await waitFor(
    "a replacement",
    () => a.reachability.relays.length === 2 && !a.reachability.relays.includes(lost!),
    10_000,
  );
  assert.ok(ms < 10_000);
  assert.ok(!a.multiaddrs.some((m) => m.includes(`/p2p/${lost}/p2p-circuit`)));
});

Deno.test("a node without relayServer offers no hop protocol while unknown", async () => {
  await using n = await createDhtNode({ listen: LOOPBACK, reachabilityCheck: false });
  const protocols = libp2pOf(n).getProtocols();
  assert.ok(!protocols.includes("/libp2p/circuit/relay/0.2.0/hop"));
  await forceReachability(n, "public");
  assert.ok(libp2pOf(n).getProtocols().includes("/libp2p/circuit/relay/0.2.0/hop"));
  await using off = await createDhtNode({
    listen: LOOPBACK,
    reachabilityCheck: false,
    relayServer: false,
  });
  await forceReachability(off, "public");
  assert.ok(!libp2pOf(off).getProtocols().includes("/libp2p/circuit/relay/0.2.0/hop"));
});

Deno.test("upnp: a mapped port is announced and released on stop", async () => {
  const { assembleNode } = await import("../../lib/dht/create.ts");
  const { DhtNode } = await import("../../lib/dht/node.ts");
  let released = 0;
  const portMapper = {
    map: (request: { internalPort: number }) =>
      Promise.resolve({
        externalIp: "203.0.113.7",
        externalPort: request.internalPort + 1,
        leaseSeconds: 3600,
        renew: () => Promise.resolve(),
        release: () => {
          released++;
          return Promise.resolve();
        },
      }),
  };
  const node = new DhtNode(
    await assembleNode({ listen: LOOPBACK, upnp: true, reachabilityCheck: false }, { portMapper }),
  );
  const addresses = new Promise<string[]>((resolve) =>
    node.addEventListener("addresses", (e) => resolve((e as CustomEvent<string[]>).detail))
  );
  await node.start();
  const port = Number(/tcp\/(\d+)/.exec(node.multiaddrs[0]!)![1]);
  const mapped = `/ip4/203.0.113.7/tcp/${port + 1}`;
  assert.ok((await addresses).includes(`${mapped}/p2p/${node.peerId}`));
  assert.equal(node.reachability.mapped, mapped);
  await node.stop();
  assert.equal(released, 1);
});
