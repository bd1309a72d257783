// What does one more in-process DIM node cost in memory, and one more idle
// connection between two nodes?
//
// Target (issue "Transmission speed"): at most 5 MB RSS per added node.
//
// `Deno.bench` cannot report memory, and RSS is only meaningful after a
// garbage collection in a process that did nothing else. So every figure
// comes from a child process (`deno run --v8-flags=--expose-gc` of this
// file with `--phase …`): it loads the modules and starts and stops a pair
// of nodes (so code and caches are warm), collects garbage and reads RSS as
// its baseline; then it adds the nodes, waits until no new connection opens,
// collects garbage again and reads RSS. Phases:
//
// - `network <n>`: n DHT nodes with DIM's record rules (as `createStorageNode`
//   configures them) on 127.0.0.1, each bootstrapped from one or two
//   earlier ones, as in bench/dht_bench.ts. RSS per added node includes the
//   node's share of the connections its network opened (reported too).
// - `storage <n>`: the same with `createStorageNode` nodes, which also keep a
//   mailbox database (SQLite `:memory:`) each.
// - `connections`: 24 nodes that know nobody, then every pair connected
//   (276 connections): RSS per idle connection (both of its ends).
//
// Under `deno bench` this file runs the phases, prints the figures and one
// JSON line starting with `memory_bench`, and registers a group whose bench
// names carry them; what those benches time is starting and stopping one
// node (alone, and joining a 20-node network), the work each added node
// does. Run: deno bench -A bench/memory_bench.ts (about 45 s), or one phase:
// deno run -A --v8-flags=--expose-gc bench/memory_bench.ts --phase network 20
import { fileURLToPath } from "node:url";
import { createDhtNode, type DhtNode, type DhtNodeOptions } from "../lib/dht/mod.ts";
import { dimSelector, dimValidator } from "../lib/record/mod.ts";
import { createStorageNode } from "../lib/storage_node.ts";

const LOOPBACK = ["/ip4/127.0.0.1/tcp/0"];
const SETTLE_LIMIT_MS = 30_000;
const MB = 1024 * 1024;

/** What a phase prints, as one JSON line. */
interface PhaseResult {
  readonly phase: string;
  readonly count: number;
  readonly baselineRssMb: number;
  readonly rssMb: number;
  readonly rssPerItemMb: number;
  readonly heapPerItemMb: number;
  readonly connections: number;
  readonly buildMs: number;
}

function options(extra: Partial<DhtNodeOptions> = {}): DhtNodeOptions {
  return {
    listen: LOOPBACK,
    validators: { dim: dimValidator },
    selectors: { dim: dimSelector },
    inboundConnectionThreshold: 10_000,
    ...extra,
  };
}

function bootstrapFor(addresses: readonly string[]): string[] {
  const i = addresses.length;
  const out: string[] = [];
  if (i > 0) out.push(addresses[(i * 7) % i]!);
  if (i > 2) out.push(addresses[i - 1]!);
  return out;
}

async function collect(): Promise<Deno.MemoryUsage> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) throw new Error("Cannot measure memory: run with --v8-flags=--expose-gc");
  for (let i = 0; i < 4; i++) {
    gc();
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return Deno.memoryUsage();
}

async function settle(connections: () => number): Promise<void> {
  const deadline = performance.now() + SETTLE_LIMIT_MS;
  let last = -1;
  while (performance.now() < deadline) {
    const now = connections();
    if (now === last) return;
    last = now;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

/** The figures of a phase: memory per item over the baseline. */
function phaseResult(
  phase: string,
  items: number,
  base: Deno.MemoryUsage,
  after: Deno.MemoryUsage,
  connections: number,
  buildMs: number,
): PhaseResult {
  return {
    phase,
    count: items,
    baselineRssMb: round(base.rss / MB),
    rssMb: round(after.rss / MB),
    rssPerItemMb: round((after.rss - base.rss) / MB / items, 3),
    heapPerItemMb: round((after.heapUsed - base.heapUsed) / MB / items, 3),
    connections,
    buildMs: Math.round(buildMs),
  };
}

async function runPhase(phase: string, count: number): Promise<PhaseResult> {
  // Warm up: load and run the code once, so the baseline holds it.
  {
    const a = await createDhtNode(options());
    const b = await createDhtNode(options({ bootstrap: a.multiaddrs }));
    await b.stop();
    await a.stop();
  }
  const before = await collect();
  const started = performance.now();
  const nodes: DhtNode[] = [];
  const stops: (() => Promise<void>)[] = [];
  let items = count;
  if (phase === "network" || phase === "storage") {
    const addresses: string[] = [];
    for (let i = 0; i < count; i++) {
      const bootstrap = bootstrapFor(addresses);
      if (phase === "network") {
        const node = await createDhtNode(options({ bootstrap }));
        nodes.push(node);
        stops.push(() => node.stop());
      } else {
        const storage = await createStorageNode({
          listen: LOOPBACK,
          bootstrap,
          node: { inboundConnectionThreshold: 10_000 },
        });
        nodes.push(storage.node);
        stops.push(() => storage.stop());
      }
      addresses.push(nodes[i]!.multiaddrs[0]!);
    }
  } else if (phase === "connections") {
    for (let i = 0; i < count; i++) nodes.push(await createDhtNode(options()));
    const alone = await collect();
    for (let i = 0; i < count; i++) {
      for (let j = i + 1; j < count; j++) await nodes[i]!.dial(nodes[j]!.multiaddrs[0]!);
    }
    for (const node of nodes) stops.push(() => node.stop());
    items = (count * (count - 1)) / 2;
    await settle(() => nodes.reduce((sum, node) => sum + node.connections, 0));
    const after = await collect();
    const result = phaseResult(phase, items, alone, after, items, performance.now() - started);
    await Promise.all(stops.map((stop) => stop()));
    return result;
  } else {
    throw new TypeError(`Cannot run phase ${JSON.stringify(phase)}`);
  }
  const buildMs = Math.round(performance.now() - started);
  await settle(() => nodes.reduce((sum, node) => sum + node.connections, 0));
  const after = await collect();
  const connections = nodes.reduce((sum, node) => sum + node.connections, 0) / 2;
  await Promise.all(stops.map((stop) => stop()));
  return phaseResult(phase, items, before, after, connections, buildMs);
}

function round(value: number, digits = 1): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}

async function child(phase: string, count: number): Promise<PhaseResult | { error: string }> {
  const config = fileURLToPath(new URL("../deno.json", import.meta.url));
  const output = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--quiet",
      "--config",
      config,
      "--v8-flags=--expose-gc",
      "--allow-net=127.0.0.1",
      "--allow-read",
      "--allow-write",
      "--allow-env",
      "--allow-sys",
      fileURLToPath(import.meta.url),
      "--phase",
      phase,
      String(count),
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const line = new TextDecoder().decode(output.stdout).trim().split("\n").at(-1) ?? "";
  if (!output.success || !line.startsWith("{")) {
    return { error: new TextDecoder().decode(output.stderr).trim().split("\n")[0] ?? "failed" };
  }
  return JSON.parse(line) as PhaseResult;
}

if (import.meta.main) {
  const at = Deno.args.indexOf("--phase");
  const phase = at >= 0 ? Deno.args[at + 1] ?? "network" : "network";
  const count = at >= 0 ? Number(Deno.args[at + 2] ?? 20) : 20;
  console.log(JSON.stringify(await runPhase(phase, count)));
  // Nodes are stopped; end without waiting for the last timers.
  Deno.exit(0);
} else {
  const results = {
    network20: await child("network", 20),
    network100: await child("network", 100),
    storage20: await child("storage", 20),
    connections: await child("connections", 24),
  };
  const perNode = (r: PhaseResult | { error: string }) =>
    "error" in r
      ? `error: ${r.error}`
      : `${r.rssPerItemMb} MB (heap ${r.heapPerItemMb} MB, ${
        round((2 * r.connections) / r.count)
      } connection ends per node)`;
  console.log(`RSS per added node, 20-node network:  ${perNode(results.network20)}`);
  console.log(`RSS per added node, 100-node network: ${perNode(results.network100)}`);
  console.log(`RSS per added storage node, 20 nodes: ${perNode(results.storage20)}`);
  const c = results.connections;
  console.log(
    `RSS per idle connection (both ends):  ${
      "error" in c
        ? `error: ${c.error}`
        : `${round(c.rssPerItemMb * 1024)} KB (heap ${round(c.heapPerItemMb * 1024)} KB)`
    }`,
  );
  console.log(`memory_bench ${JSON.stringify(results)}`);

  const mb = (
    r: PhaseResult | { error: string },
  ) => ("error" in r ? "n/a" : `${r.rssPerItemMb} MB`);
  let network: DhtNode[] = [];
  Deno.bench({
    name: `start + stop a node alone [RSS/added node: ${mb(results.network20)} in a 20-node net]`,
    group: "memory",
    baseline: true,
    n: 20,
    warmup: 2,
    async fn() {
      const node = await createDhtNode(options());
      await node.stop();
    },
  });
  Deno.bench({
    name: `start + join + stop a node, 20 peers [RSS/added node: ${
      mb(results.network100)
    } in a 100-node net]`,
    group: "memory",
    n: 20,
    warmup: 2,
    async fn(b) {
      if (network.length === 0) {
        const addresses: string[] = [];
        for (let i = 0; i < 20; i++) {
          network.push(await createDhtNode(options({ bootstrap: bootstrapFor(addresses) })));
          addresses.push(network[i]!.multiaddrs[0]!);
        }
      }
      b.start();
      const node = await createDhtNode(options({ bootstrap: [network[0]!.multiaddrs[0]!] }));
      await node.stop();
      b.end();
    },
  });
  globalThis.addEventListener("unload", () => {
    const nodes = network;
    network = [];
    for (const node of nodes) void node.stop();
  });
}
