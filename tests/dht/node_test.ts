/**
 * The DhtNode API on a few loopback nodes: lifecycle, errors, streams,
 * events, and stop() under load. Every node listens on 127.0.0.1 only.
 */
import assert from "node:assert/strict";
import { sha256 } from "@noble/hashes/sha2.js";
import { peerIdFromString } from "@libp2p/peer-id";
import { compareBytes } from "../../lib/platform/bytes.ts";
import { createDhtNode, type DhtNode, type DhtStream, libp2pOf } from "../../lib/dht/node.ts";
import {
  DimError,
  InvalidRecordError,
  PeerUnreachableError,
  ProtocolError,
} from "../../lib/errors.ts";
import { Identity } from "../../lib/crypto/identity.ts";
import { dimSelector, dimValidator, openCard, signCard } from "../../lib/record/mod.ts";
import {
  LOOPBACK,
  seqOf,
  startNetwork,
  stopAll,
  testNodeOptions,
  testRecord,
  waitForFullTables,
} from "./_helpers.ts";

/** A loopback address on which nothing listens (the port of a stopped node). */
async function deadAddress(): Promise<string> {
  const node = await createDhtNode(testNodeOptions());
  const address = node.multiaddrs[0]!;
  await node.stop();
  return address;
}

Deno.test("start() and stop() are idempotent and a stopped node cannot restart", async () => {
  const node = await createDhtNode(testNodeOptions({ start: false }));
  assert.equal(node.started, false);
  await Promise.all([node.start(), node.start()]);
  assert.equal(node.started, true);
  assert.match(
    node.multiaddrs[0]!,
    new RegExp(`^/ip4/127\\.0\\.0\\.1/tcp/\\d+/p2p/${node.peerId}$`),
  );
  assert.equal(node.protocol, "/dim/kad/1.0.0");
  await Promise.all([node.stop(), node.stop()]);
  await node.stop();
  assert.equal(node.started, false);
  await assert.rejects(
    node.start(),
    (err: unknown) =>
      err instanceof DimError && err.message === "Cannot start DHT node: it has been stopped",
  );
  await assert.rejects(node.put("/test/a", testRecord(1)), DimError);
});

Deno.test("a node that was never started stops cleanly", async () => {
  const node = await createDhtNode(testNodeOptions({ start: false }));
  await node.stop();
  assert.equal(node.started, false);
});

Deno.test("createDhtNode rejects malformed options", async () => {
  await assert.rejects(createDhtNode({ listen: ["not a multiaddr"] }), TypeError);
  await assert.rejects(
    createDhtNode({ listen: LOOPBACK, bootstrap: ["/ip4/127.0.0.1/tcp/1"] }),
    (err: unknown) => err instanceof TypeError && /no \/p2p\//.test(err.message),
  );
  await assert.rejects(
    createDhtNode({ listen: LOOPBACK, validators: { "a/b": () => Promise.resolve() } }),
    TypeError,
  );
  await assert.rejects(createDhtNode({ listen: LOOPBACK, protocolPrefix: "dim" }), TypeError);
  await assert.rejects(
    createDhtNode({ listen: LOOPBACK, inboundConnectionThreshold: 0 }),
    RangeError,
  );
  await assert.rejects(createDhtNode({ listen: LOOPBACK, quorum: -1 }), RangeError);
});

Deno.test("put and get check the key, the namespace and the value", async () => {
  await using node = await createDhtNode(testNodeOptions());
  await assert.rejects(node.put("no-namespace", testRecord(1)), TypeError);
  await assert.rejects(node.put("/test", testRecord(1)), TypeError);
  await assert.rejects(
    node.put("/other/a", testRecord(1)),
    (err: unknown) =>
      err instanceof TypeError && /no validator for namespace other/.test(err.message),
  );
  await assert.rejects(node.get("/other/a"), TypeError);
  await assert.rejects(
    node.put("/test/a", new Uint8Array([1])),
    (err: unknown) =>
      err instanceof InvalidRecordError && /not valid under its key/.test(err.message),
  );
});

Deno.test("a lone node keeps its own records and says when nobody can be asked", async () => {
  await using node = await createDhtNode(testNodeOptions());
  assert.equal(await node.put("/test/lone", testRecord(3)), 0);
  assert.equal(seqOf(await node.get("/test/lone")), 3);
  assert.equal(seqOf(await node.getLocal("/test/lone")), 3);
  await assert.rejects(
    node.get("/test/missing"),
    (err: unknown) =>
      err instanceof PeerUnreachableError && /not connected to any DHT peer/.test(err.message),
  );
});

Deno.test("get of a key nobody holds returns undefined when peers answer", async () => {
  const nodes = await startNetwork(3);
  try {
    assert.equal(await nodes[2]!.get("/test/nobody"), undefined);
  } finally {
    await stopAll(nodes);
  }
});

Deno.test("failed bootstrap dials are logged, and fatal only with requireBootstrap", async () => {
  const dead = await deadAddress();
  const logs: string[] = [];
  const node = await createDhtNode(
    testNodeOptions({ bootstrap: [dead], log: (message) => logs.push(message) }),
  );
  assert.equal(node.started, true);
  assert.ok(logs.some((line) => line.startsWith(`could not dial ${dead}`)), logs.join("\n"));
  await node.stop();

  const strict = await createDhtNode(
    testNodeOptions({ bootstrap: [dead], requireBootstrap: true, start: false }),
  );
  await assert.rejects(
    strict.start(),
    (err: unknown) =>
      err instanceof PeerUnreachableError &&
      err.message === "Cannot start DHT node: none of the 1 bootstrap peers answered",
  );
  assert.equal(strict.started, false);
});

Deno.test("one good bootstrap peer is enough with requireBootstrap", async () => {
  const dead = await deadAddress();
  await using a = await createDhtNode(testNodeOptions());
  await using b = await createDhtNode(
    testNodeOptions({ bootstrap: [dead, a.multiaddrs[0]!], requireBootstrap: true }),
  );
  assert.deepEqual(b.peers, [a.peerId]);
  assert.equal(b.routingTableSize, 1);
});

Deno.test("dial failures are errors of the call, never of the process", async () => {
  const dead = await deadAddress();
  await using node = await createDhtNode(testNodeOptions());
  await assert.rejects(node.dial(dead), PeerUnreachableError);
  await assert.rejects(node.dialProtocol(dead, "/test/echo/1.0.0"), PeerUnreachableError);
  await assert.rejects(node.dial("garbage"), TypeError);
  await assert.rejects(node.dialProtocol("garbage", "/test/echo/1.0.0"), TypeError);
  assert.equal(node.started, true);
});

Deno.test("streams: echo, unsupported protocol, and a failing handler", async () => {
  await using a = await createDhtNode(testNodeOptions());
  await using b = await createDhtNode(testNodeOptions());
  await a.handle("/test/echo/1.0.0", async (stream, peerId) => {
    assert.equal(peerId, b.peerId);
    for await (const chunk of stream) {
      if (!stream.send(chunk.subarray())) await stream.onDrain();
    }
    await stream.close();
  });
  await a.handle("/test/fail/1.0.0", () => {
    throw new Error("handler bug");
  });

  const stream = await b.dialProtocol(a.multiaddrs[0]!, "/test/echo/1.0.0");
  stream.send(new TextEncoder().encode("ping"));
  await stream.close();
  let echoed = "";
  for await (const chunk of stream) echoed += new TextDecoder().decode(chunk.subarray());
  assert.equal(echoed, "ping");

  await assert.rejects(
    b.dialProtocol(a.peerId, "/test/unknown/1.0.0"),
    (err: unknown) => err instanceof ProtocolError && /does not support it/.test(err.message),
  );

  const failing = await b.dialProtocol(a.peerId, "/test/fail/1.0.0");
  for await (const _ of failing) {
    // The handler's failure ends the stream.
  }
  // The node and its other protocols carry on.
  const again = await b.dialProtocol(a.peerId, "/test/echo/1.0.0");
  again.send(new Uint8Array([1]));
  await again.close();
  for await (const _ of again) {
    // Drain the echo.
  }
  await a.unhandle("/test/echo/1.0.0");
  await assert.rejects(b.dialProtocol(a.peerId, "/test/echo/1.0.0"), ProtocolError);
});

Deno.test("dialProtocol reaches a DhtPeer by its addresses, or a peer ID via the DHT", async () => {
  const nodes = await startNetwork(3);
  try {
    const [a, b, c] = nodes as [DhtNode, DhtNode, DhtNode];
    for (const node of nodes) {
      await node.handle("/test/id/1.0.0", async (stream) => {
        stream.send(new TextEncoder().encode(node.peerId));
        await stream.close();
      });
    }
    const read = async (stream: DhtStream) => {
      let text = "";
      for await (const chunk of stream) text += new TextDecoder().decode(chunk.subarray());
      return text;
    };
    // Addresses with and without /p2p/ are both accepted.
    const bare = a.multiaddrs[0]!.replace(`/p2p/${a.peerId}`, "");
    assert.equal(
      await read(await b.dialProtocol({ peerId: a.peerId, multiaddrs: [bare] }, "/test/id/1.0.0")),
      a.peerId,
    );
    await assert.rejects(
      b.dialProtocol({ peerId: a.peerId, multiaddrs: [c.multiaddrs[0]!] }, "/test/id/1.0.0"),
      TypeError,
    );
    // `c` was bootstrapped from others; by peer ID alone it still finds `a`.
    assert.equal(await read(await c.dialProtocol(a.peerId, "/test/id/1.0.0")), a.peerId);
    assert.equal(
      await read(await c.dialProtocol({ peerId: b.peerId, multiaddrs: [] }, "/test/id/1.0.0")),
      b.peerId,
    );
  } finally {
    await stopAll(nodes);
  }
});

Deno.test("a reply sent and closed before the dialler reads is read to its end", async () => {
  // libp2p 3.3's own stream iterator waits for ever here (see lib/dht/_stream.ts).
  await using a = await createDhtNode(testNodeOptions());
  await using b = await createDhtNode(testNodeOptions());
  await a.handle("/test/hello/1.0.0", async (stream) => {
    stream.send(new TextEncoder().encode("hello"));
    await stream.close();
  });
  const stream = await b.dialProtocol(a.multiaddrs[0]!, "/test/hello/1.0.0");
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal(stream.remoteWriteStatus, "closed");
  const chunks: string[] = [];
  for await (const chunk of stream) chunks.push(new TextDecoder().decode(chunk.subarray()));
  assert.deepEqual(chunks, ["hello"]);
  await stream.close();
});

Deno.test("peer:connect and peer:disconnect events carry the peer ID", async () => {
  await using a = await createDhtNode(testNodeOptions());
  const b = await createDhtNode(testNodeOptions());
  const seen: string[] = [];
  const connected = Promise.withResolvers<void>();
  const disconnected = Promise.withResolvers<void>();
  a.addEventListener("peer:connect", (event) => {
    seen.push(`connect ${(event as CustomEvent<string>).detail}`);
    connected.resolve();
  });
  a.addEventListener("peer:disconnect", (event) => {
    seen.push(`disconnect ${(event as CustomEvent<string>).detail}`);
    disconnected.resolve();
  });
  await b.dial(a.multiaddrs[0]!);
  await connected.promise;
  assert.equal(a.connections, 1);
  assert.deepEqual(a.peers, [b.peerId]);
  await b.stop();
  await disconnected.promise;
  assert.deepEqual(seen, [`connect ${b.peerId}`, `disconnect ${b.peerId}`]);
});

Deno.test("an aborted signal aborts a call with its reason", async () => {
  await using node = await createDhtNode(testNodeOptions());
  const reason = new Error("caller gave up");
  await assert.rejects(
    node.get("/test/a", { signal: AbortSignal.abort(reason) }),
    (err: unknown) => err === reason,
  );
  await assert.rejects(
    node.put("/test/a", testRecord(1), { signal: AbortSignal.abort(reason) }),
    (err: unknown) => err === reason,
  );
});

Deno.test("getClosestPeers and knownPeers list the other nodes", async () => {
  const nodes = await startNetwork(4);
  try {
    await waitForFullTables(nodes);
    const others = nodes.slice(1).map((node) => node.peerId).sort();
    const closest = await nodes[0]!.getClosestPeers("/test/anything");
    assert.deepEqual(closest.map((peer) => peer.peerId).sort(), others);
    assert.ok(closest.every((peer) => peer.multiaddrs.length > 0));
    const known = await nodes[0]!.knownPeers();
    assert.deepEqual(known.map((peer) => peer.peerId).sort(), others);
  } finally {
    await stopAll(nodes);
  }
});

Deno.test("getClosestPeers ranks peers nearest first, this node among them with includeSelf", async () => {
  const nodes = await startNetwork(4);
  try {
    await waitForFullTables(nodes);
    const key = new TextEncoder().encode("/test/ranked");
    const position = (peerId: string) => sha256(peerIdFromString(peerId).toMultihash().bytes);
    const target = sha256(key);
    const distance = (peerId: string) => position(peerId).map((b, i) => b ^ target[i]!);
    const everyone = nodes.map((node) => node.peerId)
      .sort((a, b) => compareBytes(distance(a), distance(b)));
    const ranked = await nodes[0]!.getClosestPeers(key, { includeSelf: true });
    assert.deepEqual(ranked.map((peer) => peer.peerId), everyone);
    assert.deepEqual(ranked.find((peer) => peer.peerId === nodes[0]!.peerId)?.multiaddrs, []);
    const without = await nodes[0]!.getClosestPeers(key);
    assert.deepEqual(
      without.map((peer) => peer.peerId),
      everyone.filter((id) => id !== nodes[0]!.peerId),
    );
  } finally {
    await stopAll(nodes);
  }
});

Deno.test("stop() returns within 5 s with an open stream and a pending query", async () => {
  const a = await createDhtNode(testNodeOptions());
  const silent = await createDhtNode(testNodeOptions());
  const b = await createDhtNode(
    testNodeOptions({ bootstrap: [a.multiaddrs[0]!, silent.multiaddrs[0]!] }),
  );
  try {
    // `silent` stops answering DHT requests: it reads them and never replies.
    await libp2pOf(silent).unhandle(silent.protocol);
    await libp2pOf(silent).handle(silent.protocol, async (stream) => {
      for await (const _ of stream) {
        // Swallow the request.
      }
    });
    // `b` keeps DHT streams open for reuse, served by the handler they were
    // opened with: drop them, so that `b` asks `silent` on a new stream.
    await b.hangUp(silent.peerId);
    await a.handle("/test/hold/1.0.0", async (stream) => {
      for await (const _ of stream) {
        // Keep the stream open until the connection goes.
      }
    });
    const held = await b.dialProtocol(a.peerId, "/test/hold/1.0.0");
    held.send(new Uint8Array([1]));

    const pending = b.get("/test/never");
    const outcome = pending.then(() => "resolved", (err: unknown) => err);
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(await Promise.race([outcome, Promise.resolve("pending")]), "pending");

    const started = performance.now();
    await b.stop();
    const elapsed = performance.now() - started;
    assert.ok(elapsed < 5000, `stop() took ${elapsed.toFixed(0)} ms`);
    const err = await outcome;
    assert.ok(err instanceof DOMException && err.name === "AbortError", String(err));
  } finally {
    await stopAll([a, b, silent]);
  }
});

Deno.test("DIM contact cards under /dim/card/ with dimValidator and dimSelector", async () => {
  const nodes = await startNetwork(4, {
    validators: { dim: dimValidator },
    selectors: { dim: dimSelector },
  });
  try {
    const alice = await Identity.generate();
    const card = (seq: number) =>
      signCard(alice, {
        displayName: "Alice",
        peerId: nodes[0]!.peerId,
        addresses: [nodes[0]!.multiaddrs[0]!],
        seq,
      });
    const first = await card(1);
    const second = await card(2);
    await nodes[0]!.put(first.key, first.bytes);
    await nodes[0]!.put(second.key, second.bytes);
    const found = await nodes[3]!.get(second.key);
    assert.ok(found !== undefined);
    const opened = await openCard(found, { key: second.key });
    assert.equal(opened.seq, 2);
    assert.equal(opened.displayName, "Alice");

    // Replaying the first card is refused everywhere, and forged bytes are invalid.
    await assert.rejects(nodes[1]!.put(first.key, first.bytes), InvalidRecordError);
    const forged = second.bytes.slice();
    forged[forged.length - 1]! ^= 1;
    await assert.rejects(nodes[2]!.put(second.key, forged), InvalidRecordError);
    assert.equal((await openCard((await nodes[2]!.get(second.key))!, { key: second.key })).seq, 2);
  } finally {
    await stopAll(nodes);
  }
});

Deno.test("a get refuses a forged card from a peer while it remembers the genuine one as valid", async () => {
  const nodes = await startNetwork(4, {
    validators: { dim: dimValidator },
    selectors: { dim: dimSelector },
  });
  // A peer that stores and serves anything under /dim/.
  const liar = await createDhtNode(testNodeOptions({
    bootstrap: [nodes[0]!.multiaddrs[0]!],
    validators: { dim: () => Promise.resolve() },
    selectors: { dim: dimSelector },
  }));
  try {
    await waitForFullTables([...nodes, liar]);
    const alice = await Identity.generate();
    const card = (seq: number) =>
      signCard(alice, { displayName: "Alice", peerId: nodes[0]!.peerId, addresses: [], seq });
    const genuine = await card(1);
    await nodes[0]!.put(genuine.key, genuine.bytes);
    assert.equal(await nodes[0]!.settled(5_000), true);
    const reader = nodes[3]!;
    assert.equal((await openCard((await reader.get(genuine.key))!, { key: genuine.key })).seq, 1);
    // A newer card with a broken signature: the liar keeps it, honest peers refuse it.
    const forged = (await card(2)).bytes.slice();
    forged[forged.length - 1]! ^= 1;
    await liar.put(genuine.key, forged);
    assert.equal(await liar.settled(5_000), true);
    assert.deepEqual(await liar.getLocal(genuine.key), forged);
    // Asked with every peer heard (quorum 0), the reader still returns the genuine card.
    for (const quorum of [0, 3]) {
      const found = await reader.get(genuine.key, { quorum });
      assert.equal((await openCard(found!, { key: genuine.key })).seq, 1, `quorum ${quorum}`);
    }
    for (const node of nodes) {
      assert.equal(
        (await openCard((await node.getLocal(genuine.key))!, { key: genuine.key })).seq,
        1,
      );
    }
  } finally {
    await stopAll([...nodes, liar]);
  }
});
