// How do DHT put and get latency grow from 20 to 100 nodes, and how many
// DHT requests does one operation send?
//
// Targets (issue "Transmission speed"): get p50 at 100 nodes at most 1.6x
// the p50 at 20 nodes, and get p50 at 20 nodes at most 20 ms on loopback.
//
// Every node runs in this process, on 127.0.0.1, with DIM's record rules
// (dimValidator / dimSelector, as `createStorageNode` configures them) and signed
// contact cards as records. Each network is built by starting nodes one by
// one, each bootstrapped from one or two earlier ones; then every node runs
// one lookup of a random key, so routing tables fill as they would over a
// few minutes of use, and the bench waits until no new connection opens.
// Only one network exists at a time (an idle 100-node network in the same
// process slowed the 20-node figures by 10-35%), so the 20- and 100-node
// networks are each built twice: once for the get group, once for puts.
//
// Each group's baseline is the 20-node network. `deno bench` reports
// mean and p75/p99; at the end this file prints p50 and p90 of the same
// samples, the 100/20 ratios, and requests per operation (DHT requests the
// operating node sent, from `DhtNode.stats`), as a table and as one JSON
// line starting with `dht_bench`.
//
// Run: deno bench -A bench/dht_bench.ts (two to three minutes on 2 cores)
import { Identity } from "../lib/crypto/identity.ts";
import { createDhtNode, type DhtNode } from "../lib/dht/mod.ts";
import { dimSelector, dimValidator, signCard } from "../lib/record/mod.ts";

const SIZES = [20, 100] as const;
/** Records put while building a network, then read by the get benches. */
const GET_KEYS = 40;
/** Owners whose cards the put benches republish, each with a higher seq. */
const PUT_OWNERS = 10;
const GET_RUNS = { n: 600, warmup: 200 } as const;
const PUT_RUNS = { n: 60, warmup: 6 } as const;
const WARM_UP_ROUNDS = 4;
const SETTLE_LIMIT_MS = 60_000;

interface Network {
  readonly size: number;
  readonly nodes: DhtNode[];
  readonly keys: string[];
}

interface Samples {
  readonly name: string;
  readonly op: "get" | "put";
  readonly size: number;
  readonly warmup: number;
  readonly ms: number[];
  readonly requests: number[];
}

const getOwners = await Promise.all(Array.from({ length: GET_KEYS }, () => Identity.generate()));
const putOwners = await Promise.all(Array.from({ length: PUT_OWNERS }, () => Identity.generate()));
let putSeq = 1;
let current: Network | undefined;
const results: Samples[] = [];

async function network(size: number): Promise<Network> {
  if (current?.size === size) return current;
  if (current !== undefined) await Promise.all(current.nodes.map((node) => node.stop()));
  current = undefined;
  const nodes: DhtNode[] = [];
  for (let i = 0; i < size; i++) {
    const bootstrap: string[] = [];
    if (i > 0) bootstrap.push(nodes[(i * 7) % i]!.multiaddrs[0]!);
    if (i > 2) bootstrap.push(nodes[i - 1]!.multiaddrs[0]!);
    nodes.push(
      await createDhtNode({
        listen: ["/ip4/127.0.0.1/tcp/0"],
        bootstrap,
        validators: { dim: dimValidator },
        selectors: { dim: dimSelector },
        // Every node dials from 127.0.0.1: allow them all in one second.
        inboundConnectionThreshold: 10 * size,
        // Room for a connection to every other node.
        maxConnections: Math.max(300, 2 * size),
      }),
    );
  }
  // Lookups of random keys fill the routing tables, as a few minutes of
  // use would: until nearly every node knows nearly every other.
  for (let round = 0; round < WARM_UP_ROUNDS; round++) {
    const sizes = nodes.map((node) => node.routingTableSize).sort((a, b) => a - b);
    if (sizes[Math.floor(size / 10)]! >= 0.9 * (size - 1)) break;
    await Promise.all(
      nodes.map((node) => node.getClosestPeers(crypto.getRandomValues(new Uint8Array(32)))),
    );
  }
  const deadline = performance.now() + SETTLE_LIMIT_MS;
  let connections = -1;
  while (performance.now() < deadline) {
    const now = nodes.reduce((sum, node) => sum + node.connections, 0);
    if (now === connections) break;
    connections = now;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  const keys: string[] = [];
  for (const [i, owner] of getOwners.entries()) {
    const writer = nodes[(i * 7) % size]!;
    const card = await signCard(owner, {
      displayName: `owner ${i}`,
      peerId: writer.peerId,
      addresses: [],
    });
    await writer.put(card.key, card.bytes);
    keys.push(card.key);
  }
  current = { size, nodes, keys };
  return current;
}

function samples(op: "get" | "put", size: number, warmup: number): Samples {
  const entry = { name: `${op}, ${size} nodes`, op, size, warmup, ms: [], requests: [] };
  results.push(entry);
  return entry;
}

for (const size of SIZES) {
  const record = samples("get", size, GET_RUNS.warmup);
  let call = 0;
  Deno.bench({
    name: record.name,
    group: "get",
    baseline: size === SIZES[0],
    ...GET_RUNS,
    async fn(b) {
      const { nodes, keys } = await network(size);
      const i = call++;
      const reader = nodes[(i * 13 + 5) % size]!;
      const key = keys[i % keys.length]!;
      const before = reader.stats.requests;
      b.start();
      const started = performance.now();
      const value = await reader.get(key);
      const elapsed = performance.now() - started;
      b.end();
      if (value === undefined) throw new Error(`get ${key} found nothing`);
      record.ms.push(elapsed);
      record.requests.push(reader.stats.requests - before);
    },
  });
}

for (const size of SIZES) {
  const record = samples("put", size, PUT_RUNS.warmup);
  let call = 0;
  Deno.bench({
    name: record.name,
    group: "put",
    baseline: size === SIZES[0],
    ...PUT_RUNS,
    async fn(b) {
      const { nodes } = await network(size);
      const i = call++;
      const writer = nodes[(i * 17 + 3) % size]!;
      const owner = putOwners[i % PUT_OWNERS]!;
      const card = await signCard(owner, {
        displayName: "republished",
        peerId: writer.peerId,
        addresses: [],
        seq: putSeq++,
      });
      const before = writer.stats.requests;
      b.start();
      const started = performance.now();
      const acks = await writer.put(card.key, card.bytes);
      const elapsed = performance.now() - started;
      b.end();
      if (acks === 0) throw new Error(`put ${card.key} reached no peer`);
      // The put returned at its write quorum; its background replicas end
      // here, untimed, so they do not slow the next put's measurement.
      if (!(await writer.settled())) throw new Error(`put ${card.key}: replicas unfinished`);
      record.ms.push(elapsed);
      record.requests.push(writer.stats.requests - before);
    },
  });
}

function quantile(values: readonly number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}

globalThis.addEventListener("unload", () => {
  const rows = results.filter((r) => r.ms.length > r.warmup).map((r) => {
    const ms = r.ms.slice(r.warmup);
    const requests = r.requests.slice(r.warmup);
    return {
      name: r.name,
      op: r.op,
      nodes: r.size,
      samples: ms.length,
      p50: round(quantile(ms, 0.5)),
      p90: round(quantile(ms, 0.9)),
      requestsPerOp: round(requests.reduce((a, b) => a + b, 0) / requests.length),
    };
  });
  if (rows.length === 0) return;
  const ratio = (op: string) => {
    const small = rows.find((r) => r.op === op && r.nodes === SIZES[0]);
    const large = rows.find((r) => r.op === op && r.nodes === SIZES[1]);
    return small && large ? round(large.p50 / small.p50) : null;
  };
  console.log("\n| operation | p50 ms | p90 ms | DHT requests / op | samples |");
  console.log("| --- | --- | --- | --- | --- |");
  for (const r of rows) {
    console.log(`| ${r.name} | ${r.p50} | ${r.p90} | ${r.requestsPerOp} | ${r.samples} |`);
  }
  console.log(
    `get p50 100/20: ${ratio("get")}x (target <= 1.6x); put p50 100/20: ${ratio("put")}x`,
  );
  console.log(
    `dht_bench ${JSON.stringify({ rows, getRatio: ratio("get"), putRatio: ratio("put") })}`,
  );
});

function round(value: number): number {
  return Math.round(value * 100) / 100;
}
