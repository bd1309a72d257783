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
// The floor group times one hop in the 20-node network, between two of its
// nodes, on a stream kept open: a raw echo of 64 bytes on a protocol of its
// own, and one kad GET_VALUE request (the server reads its datastore) as
// DIM's lookups send it. A get or put costs about its sequential hops
// times this.
//
// Run: deno bench -A bench/dht_bench.ts (two to three minutes on 2 cores);
// DIM_BENCH_SIZES=20 builds only the 20-node networks (one number, or
// several separated by commas).
import { Identity } from "../lib/crypto/identity.ts";
import { createDhtNode, type DhtNode } from "../lib/dht/mod.ts";
import { libp2pOf } from "../lib/dht/node.ts";
import { KadClient } from "../lib/dht/_kad_client.ts";
import { KadMessageType } from "../lib/dht/_kad_wire.ts";
import { dimSelector, dimValidator, signCard } from "../lib/record/mod.ts";

const SIZES: readonly number[] = (Deno.env.get("DIM_BENCH_SIZES") ?? "20,100")
  .split(",").map((size) => Number(size.trim()));
const FLOOR_RUNS = { n: 600, warmup: 200 } as const;
const ECHO_PROTOCOL = "/dim-bench/echo/1.0.0";
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
  readonly op: "get" | "put" | "floor";
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

function samples(
  op: Samples["op"],
  size: number,
  warmup: number,
  name = `${op}, ${size} nodes`,
): Samples {
  const entry = { name, op, size, warmup, ms: [], requests: [] };
  results.push(entry);
  return entry;
}

// One hop between two nodes of the smallest network, on kept streams.
{
  const size = SIZES[0]!;
  let hop: { echo: () => Promise<void>; kad: () => Promise<void> } | undefined;
  const setUp = async () => {
    const { nodes, keys } = await network(size);
    const [server, client] = [nodes[1]!, nodes[size - 2]!];
    await server.handle(ECHO_PROTOCOL, async (stream) => {
      for await (const chunk of stream) stream.send(chunk.subarray());
      await stream.close();
    });
    const stream = await client.dialProtocol(server.multiaddrs[0]!, ECHO_PROTOCOL);
    const chunks = stream[Symbol.asyncIterator]();
    const payload = new Uint8Array(64);
    const kad = new KadClient(libp2pOf(client), {
      protocol: client.protocol,
      maxMessageBytes: 1 << 20,
      timeoutMs: 5000,
      idleMs: 60_000,
    });
    const serverId = libp2pOf(server).peerId;
    const key = new TextEncoder().encode(keys[0]!);
    return {
      echo: async () => {
        stream.send(payload);
        let got = 0;
        while (got < payload.length) {
          const { value, done } = await chunks.next();
          if (done) throw new Error("echo stream ended");
          got += value.byteLength;
        }
      },
      kad: async () => {
        await kad.request(serverId, () => [], {
          type: KadMessageType.GET_VALUE,
          key,
        }, AbortSignal.timeout(5000));
      },
    };
  };
  for (const which of ["echo", "kad"] as const) {
    const name = which === "echo"
      ? `one hop, raw echo, ${size} nodes`
      : `one hop, kad GET_VALUE, ${size} nodes`;
    const record = samples("floor", size, FLOOR_RUNS.warmup, name);
    Deno.bench({
      name,
      group: "floor",
      ...FLOOR_RUNS,
      async fn(b) {
        hop ??= await setUp();
        b.start();
        const started = performance.now();
        await hop[which]();
        const elapsed = performance.now() - started;
        b.end();
        record.ms.push(elapsed);
        record.requests.push(1);
      },
    });
  }
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
