// DIM's reachability check: the wire format, the decision rule, the public
// address rule, the relay choice (no sockets), then the dial-back protocol
// on loopback: its verdicts, persistence, and its refusal of hostile requests.
import assert from "node:assert/strict";
import { join } from "node:path";
import { multiaddr } from "@multiformats/multiaddr";
import {
  createDhtNode,
  type DhtNode,
  isPublicAddress,
  NODE_REACH_FILE,
  REACH_PROTOCOL,
  readReachability,
} from "../../lib/dht/mod.ts";
import { libp2pOf } from "../../lib/dht/node.ts";
import { decideReachability, IntervalLimiter, ReachVotes } from "../../lib/dht/_reach_rule.ts";
import { decodeReach, encodeReach, ReachStatus, readReach } from "../../lib/dht/_reach_wire.ts";
import { chooseRelays } from "../../lib/dht/_relays.ts";
import { readStream } from "../../lib/dht/_stream.ts";
import { ipFromBytes, ipToBytes, subnetOf } from "../../lib/dht/public_networks.ts";
import { LOOPBACK } from "./_helpers.ts";

const nonce = new Uint8Array(16).fill(7);

Deno.test("reach wire: round trips and strict decoding", async () => {
  for (
    const message of [
      { type: "request", nonce, ports: [1, 4001, 65535] },
      { type: "dial-back", nonce },
      { type: "ack" },
      { type: "result", status: ReachStatus.Ok, port: 4001, ip: ipToBytes("198.18.0.5") },
      { type: "result", status: ReachStatus.DialFailed, port: 0, ip: new Uint8Array(0) },
    ] as const
  ) {
    const frame = encodeReach(message);
    assert.deepEqual(decodeReach(frame.subarray(2)), message);
    assert.deepEqual(await readReach([frame.subarray(0, 1), frame.subarray(1)]), message);
  }
  const bad = [
    [],
    [9],
    [3, 0], // trailing byte
    [2, 1, 2], // short nonce
    [1, ...nonce, 0], // no ports
    [1, ...nonce, 5, 0, 1, 0, 2, 0, 3, 0, 4, 0, 5], // too many ports
    [1, ...nonce, 1, 0, 0], // port 0
    [4, 0, 0, 1, 3, 1, 2, 3], // IP of 3 bytes
    [4, 9, 0, 1, 0], // unknown status
  ];
  for (const body of bad) assert.throws(() => decodeReach(new Uint8Array(body)), SyntaxError);
  await assert.rejects(readReach([new Uint8Array([0xff, 0xff])]), /too long/);
  await assert.rejects(readReach([new Uint8Array([0, 1, 3, 0])]), /after the frame/);
  await assert.rejects(readReach([new Uint8Array([0, 2, 3])]), /ended early/);
  assert.throws(() => encodeReach({ type: "request", nonce, ports: [] }), RangeError);
});

Deno.test("reach rule: two public successes, or two failures and no success", () => {
  const rule = { publicSuccesses: 2, privateFailures: 2 };
  assert.equal(decideReachability(["public", "public"], rule), "public");
  assert.equal(decideReachability(["public", "public", "failed"], rule), "public");
  assert.equal(decideReachability(["public", "failed", "failed"], rule), undefined);
  assert.equal(decideReachability(["failed", "failed"], rule), "private");
  assert.equal(decideReachability(["reachable", "failed", "failed"], rule), undefined);
  assert.equal(decideReachability(["reachable", "reachable"], rule), undefined);
  assert.equal(decideReachability(["failed"], rule), undefined);

  const votes = new ReachVotes({ ...rule, ttlMs: 1_000 });
  votes.add("a", "failed", 0);
  votes.add("a", "failed", 10); // one peer counts once
  assert.equal(votes.decide(10), undefined);
  votes.add("b", "failed", 20);
  assert.equal(votes.decide(20), "private");
  votes.add("b", "public", 30); // a newer result replaces the older
  assert.equal(votes.decide(30), undefined);
  assert.equal(votes.decide(1_015), undefined); // "a" expired
  assert.deepEqual(votes.peers(1_015), ["b"]);

  const limiter = new IntervalLimiter(1_000, 2);
  assert.ok(limiter.pass(["peer:x", "ip:1"], 0));
  assert.ok(!limiter.pass(["peer:y", "ip:1"], 500)); // same IP, new peer ID
  assert.ok(limiter.pass(["peer:x", "ip:1"], 1_000));
});

Deno.test("isPublicAddress: libp2p's rule widened by publicNetworks", () => {
  assert.ok(isPublicAddress("/ip4/1.1.1.1/tcp/1"));
  assert.ok(isPublicAddress("/ip6/2606:4700::1111/tcp/1"));
  for (const private_ of ["127.0.0.1", "10.1.2.3", "192.168.1.1", "198.18.0.5", "100.64.0.1"]) {
    assert.ok(!isPublicAddress(`/ip4/${private_}/tcp/1`), private_);
  }
  assert.ok(isPublicAddress("/ip4/198.19.255.1/tcp/1", ["198.18.0.0/15"]));
  assert.ok(!isPublicAddress("/ip4/198.51.100.1/tcp/1", ["198.18.0.0/15"]));
  assert.ok(isPublicAddress("/ip6/2001:db8::5/tcp/1", ["2001:db8::/32"]));
  assert.ok(!isPublicAddress("/ip4/1.1.1.1/tcp/1/p2p-circuit"));
  assert.ok(!isPublicAddress("/dns4/example.com/tcp/1"));
  assert.throws(() => isPublicAddress("/ip4/1.1.1.1/tcp/1", ["1.2.3.4/33"]), TypeError);
  assert.throws(() => isPublicAddress("/ip4/1.1.1.1/tcp/1", ["nonsense"]), TypeError);
  assert.equal(ipFromBytes(ipToBytes("2001:db8::1")), "2001:db8:0:0:0:0:0:1");
  assert.equal(subnetOf("198.18.3.4"), "198.18.3.0/24");
});

Deno.test("chooseRelays: connected first, spread over /24s, skipping failed and held", () => {
  const candidates = [
    { peerId: "a1", ip: "198.18.1.1", connected: true },
    { peerId: "a2", ip: "198.18.1.2", connected: true },
    { peerId: "b1", ip: "198.18.2.1", connected: false },
    { peerId: "c1", ip: "198.18.3.1", connected: true },
    { peerId: "x", connected: true },
    { peerId: "c2", ip: "198.18.3.2", connected: true },
  ];
  assert.deepEqual(chooseRelays(candidates, [], 2, new Set()), ["a1", "c1"]);
  assert.deepEqual(chooseRelays(candidates, [], 3, new Set(["c1"])), ["a1", "c2", "b1"]);
  // A held relay's /24 counts as taken: b1, though not connected, before c2.
  const held = [{ peerId: "c1", ip: "198.18.3.1" }];
  assert.deepEqual(chooseRelays(candidates, held, 2, new Set(["a1", "a2"])), ["b1", "x"]);
  assert.deepEqual(chooseRelays(candidates, held, 3, new Set(["a1", "a2"])), ["b1", "x", "c2"]);
  assert.deepEqual(chooseRelays(candidates, [], 0, new Set()), []);
  assert.deepEqual(chooseRelays(candidates.slice(0, 2), [], 2, new Set()), ["a1", "a2"]);
});

function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

function onReachability(node: DhtNode): Promise<string> {
  return new Promise((resolve) =>
    node.addEventListener(
      "reachability",
      (event) => resolve((event as CustomEvent).detail.status),
      { once: true },
    )
  );
}

Deno.test("dial-back on loopback: public, private, and kept in reach.json", async () => {
  await using b = await createDhtNode({ listen: LOOPBACK, reachabilityCheck: false });
  await using c = await createDhtNode({ listen: LOOPBACK, reachabilityCheck: false });
  const bootstrap = [...b.multiaddrs, ...c.multiaddrs];
  // 127.0.0.0/8 counted public: B and C dial A back, so A is public.
  await using a = await createDhtNode({
    listen: LOOPBACK,
    bootstrap,
    publicNetworks: ["127.0.0.0/8"],
  });
  assert.equal(await onReachability(a), "public");
  assert.ok(a.reachability.checkedAt! > Date.now() - 10_000);

  // A node announcing a port nobody listens on is private, and says so on its next start.
  // (New checkers: B and C dial 127.0.0.1 back once a minute.)
  await using d = await createDhtNode({ listen: LOOPBACK, reachabilityCheck: false });
  await using e = await createDhtNode({ listen: LOOPBACK, reachabilityCheck: false });
  const dataDir = await Deno.makeTempDir();
  try {
    const announce = [`/ip4/127.0.0.1/tcp/${closedPort()}`];
    const n = await createDhtNode({
      listen: LOOPBACK,
      bootstrap: [...d.multiaddrs, ...e.multiaddrs],
      announce,
      dataDir,
    });
    assert.equal(await onReachability(n), "private");
    assert.equal(libp2pOf(n).services.dht.getMode(), "client");
    await n.stop();
    const kept = await readReachability(dataDir);
    assert.equal(kept?.status, "private");
    const again = await createDhtNode({ listen: LOOPBACK, dataDir, start: false });
    await again.start();
    assert.equal(again.reachability.status, "private");
    assert.equal(again.reachability.checkedAt, kept?.checkedAt);
    assert.equal(libp2pOf(again).services.dht.getMode(), "client");
    await again.stop();
    await Deno.writeTextFile(join(dataDir, NODE_REACH_FILE), "{not json");
    assert.equal(await readReachability(dataDir), undefined);
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("dial-back refuses hostile requests", async () => {
  await using checker = await createDhtNode({ listen: LOOPBACK, reachabilityCheck: false });
  await using victim = await createDhtNode({ listen: LOOPBACK, reachabilityCheck: false });
  await using asker = await createDhtNode({ listen: LOOPBACK, reachabilityCheck: false });
  const victimDialBacks: string[] = [];
  libp2pOf(victim).addEventListener("connection:open", (event) => {
    victimDialBacks.push(event.detail.remotePeer.toString());
  });
  const target = multiaddr(checker.multiaddrs[0]!);
  const ask = async (frame: Uint8Array) => {
    const stream = await libp2pOf(asker).dialProtocol(target, REACH_PROTOCOL);
    stream.send(frame);
    return await readReach(readStream(stream));
  };

  // Malformed and oversized requests end the stream, with no answer.
  await assert.rejects(ask(new Uint8Array([0, 1, 9])));
  await assert.rejects(ask(new Uint8Array([0xff, 0xff, ...new Uint8Array(70)])));

  // A request naming another node's port: the checker dials only the asker's own
  // peer ID on the asker's IP, so Noise fails and the victim is never reached by it.
  const victimPort = Number(/tcp\/(\d+)/.exec(victim.multiaddrs[0]!)![1]);
  const answer = await ask(encodeReach({ type: "request", nonce, ports: [victimPort] }));
  assert.deepEqual(answer, {
    type: "result",
    status: ReachStatus.DialFailed,
    port: 0,
    ip: new Uint8Array(0),
  });
  assert.ok(!victimDialBacks.includes(checker.peerId));
  assert.equal(libp2pOf(victim).getConnections(libp2pOf(checker).peerId).length, 0);

  // Once a minute per peer and per IP address.
  const again = await ask(encodeReach({ type: "request", nonce, ports: [victimPort] }));
  assert.equal(again.type === "result" && again.status, ReachStatus.Refused);

  // A dial-back message no request of this node asked for is refused.
  const stream = await libp2pOf(checker).dialProtocol(
    multiaddr(asker.multiaddrs[0]!),
    REACH_PROTOCOL,
  );
  stream.send(encodeReach({ type: "dial-back", nonce }));
  await assert.rejects(readReach(readStream(stream)));
});
