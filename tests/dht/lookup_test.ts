/**
 * DIM's lookup (lib/dht/_lookup.ts) on a simulated network: when a value
 * lookup may end early, that a closer peer is always heard first, that
 * paths stay disjoint, and that a slow peer does not stall it.
 */
import assert from "node:assert/strict";
import type { KadPeer } from "../../lib/dht/_kad_wire.ts";
import { kadId } from "../../lib/dht/_distance.ts";
import { compareBytes as compareDistance } from "../../lib/platform/bytes.ts";
import { lookup, type LookupAnswer, type LookupOptions, peerKey } from "../../lib/dht/_lookup.ts";

const encoder = new TextEncoder();
const KEY = kadId(encoder.encode("/test/key"));

interface SimPeer extends KadPeer {
  readonly name: string;
  readonly distance: Uint8Array;
}

function xor(a: Uint8Array, b: Uint8Array): Uint8Array {
  return a.map((byte, i) => byte ^ (b[i] ?? 0));
}

/** `count` peers with made-up multihashes, closest to KEY first: p0, p1, … */
function peers(count: number): SimPeer[] {
  const out: { id: Uint8Array; distance: Uint8Array }[] = [];
  for (let i = 0; i < count; i++) {
    const id = new Uint8Array([0x00, 0x24, ...encoder.encode(`peer-${i}`.padEnd(36, "."))]);
    out.push({ id, distance: xor(kadId(id), KEY) });
  }
  out.sort((a, b) => compareDistance(a.distance, b.distance));
  return out.map((peer, rank) => ({ ...peer, addrs: [], name: `p${rank}` }));
}

const SELF = new Uint8Array([0x00, 0x24, ...encoder.encode("self".padEnd(36, "."))]);
const higherFirstByte = (values: Uint8Array[]): number =>
  values.reduce((best, v, i) => ((v[0] ?? 0) > (values[best]![0] ?? 0) ? i : best), 0);

/**
 * Runs a lookup over `network`: every peer knows all of `knows(peer)` and
 * names the 20 of them closest to KEY; `values` says what each holds.
 */
async function run(
  network: SimPeer[],
  start: SimPeer[],
  extra: Partial<LookupOptions<SimPeer>> = {},
  values: ReadonlyMap<string, Uint8Array> = new Map(),
  knows: (peer: SimPeer) => SimPeer[] = () => network,
) {
  const asked: string[] = [];
  const byKey = new Map(network.map((p) => [peerKey(p.id), p]));
  const result = await lookup<SimPeer>({
    target: KEY,
    self: SELF,
    start,
    k: 20,
    paths: 10,
    concurrency: 1,
    ask: (peer): Promise<LookupAnswer> => {
      const sim = byKey.get(peerKey(peer.id))!;
      asked.push(sim.name);
      const closer = knows(sim).filter((p) => p !== sim).slice(0, 20);
      const value = values.get(sim.name);
      return Promise.resolve(value === undefined ? { closer } : { closer, value });
    },
    ...extra,
  });
  return { result, asked };
}

Deno.test("a value lookup ends once the closest peers agree and nothing closer is pending", async () => {
  const network = peers(60);
  const values = new Map(network.map((p) => [p.name, new Uint8Array([7])]));
  const quorum = { count: 3, select: higherFirstByte };
  const { result, asked } = await run(network, network.slice(0, 20), { quorum }, values);
  assert.equal(result.early, true);
  // The three closest, on three paths; the others could not change the outcome.
  assert.equal(result.asked, 3);
  assert.deepEqual(asked.sort(), ["p0", "p1", "p2"]);
});

Deno.test("a value lookup widens when a close peer fails or disagrees", async () => {
  const network = peers(60);
  const values = new Map(network.map((p) => [p.name, new Uint8Array([7])]));
  values.delete("p1"); // Holds nothing.
  values.set("p2", new Uint8Array([6])); // Holds an older value.
  const quorum = { count: 3, select: higherFirstByte };
  const { result, asked } = await run(network, network.slice(0, 20), { quorum }, values);
  assert.equal(result.early, true);
  assert.deepEqual(asked.sort(), ["p0", "p1", "p2", "p3", "p4"]);
});

Deno.test("a closer peer named in an answer is asked before the lookup ends", async () => {
  const network = peers(60);
  // The starting peers leave out the two closest; answers name them.
  const start = network.slice(2, 22);
  const values = new Map(network.map((p) => [p.name, new Uint8Array([1])]));
  values.set("p0", new Uint8Array([2])); // Only the closest holds the newer value.
  const quorum = { count: 3, select: higherFirstByte };
  const { result, asked } = await run(network, start, { quorum }, values);
  assert.ok(asked.includes("p0") && asked.includes("p1"), asked.join());
  const best = result.responses.find((r) => r.peer.id === network[0]!.id)?.value;
  assert.deepEqual(best, new Uint8Array([2]));
});

Deno.test("a settling peer lookup ends once the closest peers answered and nothing closer is pending", async () => {
  const network = peers(60);
  const { result, asked } = await run(network, network.slice(0, 20), { settle: 3 });
  assert.equal(result.early, true);
  assert.deepEqual(asked.sort(), ["p0", "p1", "p2"]);
  assert.deepEqual(result.responses.map((r) => r.peer.id), network.slice(0, 3).map((p) => p.id));
});

Deno.test("a settling peer lookup asks closer peers an answer names before it ends", async () => {
  const network = peers(60);
  // The starting peers leave out the two closest; answers name them.
  const { result, asked } = await run(network, network.slice(2, 22), { settle: 3 });
  assert.equal(result.early, true);
  assert.ok(asked.includes("p0") && asked.includes("p1"), asked.join());
  assert.deepEqual(
    result.responses.slice(0, 3).map((r) => r.peer.id),
    network.slice(0, 3).map((p) => p.id),
  );
});

Deno.test("agreeing answers from too few paths do not end a lookup early", async () => {
  const network = peers(6);
  // Dealt by rank to 3 paths: p0 and p3 on path 0, p1 and p4 on 1, p2 and p5 on 2.
  const values = new Map([
    ["p0", new Uint8Array([5])],
    ["p3", new Uint8Array([5])],
    ["p1", new Uint8Array([5])],
  ]);
  const quorum = { count: 3, select: higherFirstByte };
  const { result } = await run(network, network, { quorum, paths: 3 }, values);
  assert.equal(result.early, false);
  assert.equal(result.asked, 6);
});

Deno.test("without a quorum every path runs until its closest peers have answered", async () => {
  const network = peers(40);
  // Starting far away, with peers that each know only their neighbours in
  // the ranking, the lookup walks in until it has heard the 20 closest.
  const start = network.slice(30);
  const knows = (peer: SimPeer) => {
    const rank = network.indexOf(peer);
    return network.slice(Math.max(0, rank - 5), rank + 5);
  };
  const { result, asked } = await run(network, start, {}, new Map(), knows);
  assert.equal(result.early, false);
  // No peer is asked twice: paths are disjoint.
  assert.equal(new Set(asked).size, asked.length);
  for (const peer of network.slice(0, 20)) assert.ok(asked.includes(peer.name), peer.name);
  for (let i = 1; i < result.responses.length; i++) {
    assert.ok(
      compareDistance(result.responses[i - 1]!.distance, result.responses[i]!.distance) < 0,
    );
  }
});

Deno.test("this node is never asked, and failed peers are counted", async () => {
  const network = peers(10);
  const selfPeer: SimPeer = { id: SELF, addrs: [], name: "self", distance: xor(kadId(SELF), KEY) };
  const result = await lookup<SimPeer>({
    target: KEY,
    self: SELF,
    start: [selfPeer, ...network],
    k: 20,
    paths: 2,
    concurrency: 2,
    ask: (peer) => {
      assert.notEqual(peerKey(peer.id), peerKey(SELF));
      return peer.id === network[0]!.id
        ? Promise.reject(new Error("unreachable"))
        : Promise.resolve({ closer: [] });
    },
  });
  assert.equal(result.asked, 10);
  assert.equal(result.failed, 1);
  assert.equal(result.responses.length, 9);
});

Deno.test("a peer that never answers costs a lookup straggleMs, not a stalled path", async () => {
  const network = peers(30);
  const values = new Map(network.map((p) => [p.name, new Uint8Array([3])]));
  const byKey = new Map(network.map((p) => [peerKey(p.id), p]));
  const stuck = Promise.withResolvers<LookupAnswer>();
  const started = performance.now();
  const result = await lookup<SimPeer>({
    target: KEY,
    self: SELF,
    start: network.slice(0, 20),
    k: 20,
    paths: 4,
    concurrency: 1,
    straggleMs: 30,
    quorum: { count: 3, select: higherFirstByte },
    ask: (peer) => {
      const sim = byKey.get(peerKey(peer.id))!;
      // The closest peer hangs: the lookup cannot wait for it for ever.
      if (sim === network[0]) return stuck.promise;
      return Promise.resolve({ closer: [], value: values.get(sim.name)! });
    },
  });
  const elapsed = performance.now() - started;
  assert.equal(result.early, true);
  assert.ok(elapsed < 1000, `took ${elapsed} ms`);
  stuck.resolve({ closer: [] });
});

Deno.test("an aborted lookup rejects with the signal's reason", async () => {
  const reason = new Error("stop");
  const controller = new AbortController();
  const network = peers(5);
  const pending = lookup<SimPeer>({
    target: KEY,
    self: SELF,
    start: network,
    k: 20,
    paths: 1,
    concurrency: 1,
    signal: controller.signal,
    ask: (_peer, signal) =>
      new Promise((_, reject) => signal.addEventListener("abort", () => reject(signal.reason))),
  });
  controller.abort(reason);
  await assert.rejects(pending, (err: unknown) => err === reason);
  assert.throws(
    () =>
      lookup({
        target: KEY,
        self: SELF,
        start: [],
        k: 0,
        paths: 1,
        concurrency: 1,
        ask: () => Promise.resolve({ closer: [] }),
      }),
    RangeError,
  );
});
