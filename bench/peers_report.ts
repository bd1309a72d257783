/**
 * Renders the README's "DIM against other messengers" table (issue 17) from
 * one run of `deno task bench:peers`: DIM's figures, each against its
 * baseline from the same run where one exists (libsignal for the session
 * crypto, a raw libp2p stream and one flush for chat, one raw hop for the
 * DHT), the target, and whether it was met. Tox's and OpenDHT's figures
 * are a dated reference column (C and C++ programs outside the project,
 * measured once on the same machine for issue 17).
 *
 * Its inputs: the per-iteration times `bench/peers_bench.ts` leaves in
 * `bench-peers.json`, and the JSON lines that `bench/chat_bench.ts`,
 * `bench/chat_process_bench.ts` and `bench/dht_bench.ts` print
 * (`chat_bench {…}`, `chat_process_bench {…}`, `dht_bench {…}`), read from
 * a file or from stdin, which is passed through to stderr as it comes. A
 * row whose bench did not run shows "—", and a note under the table says
 * which are missing.
 *
 * ```sh
 * deno task bench:peers
 * deno bench -A bench/chat_bench.ts | deno run --allow-read bench/peers_report.ts bench-peers.json
 * deno run --allow-read bench/peers_report.ts bench-peers.json bench-output.log
 * ```
 *
 * @example Render a report
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseBenchLines, renderPeersReport } from "./peers_report.ts";
 *
 * const g = "ratchet encrypt + decrypt, 1 KiB, same chain";
 * const chat = { rows: [
 *   { id: "roundtrip.raw", p50: 0.14, per: 1 },
 *   { id: "roundtrip.flush", p50: 0.09, per: 1 },
 *   { id: "roundtrip.dim", p50: 0.8, per: 1 },
 *   { id: "burst2000.raw", p50: 100, per: 2000 },
 *   { id: "burst2000.dim", p50: 1250, per: 2000 },
 * ] };
 * const markdown = renderPeersReport(
 *   {
 *     date: "2026-12-07T10:00:00Z",
 *     samples: { [`${g} / libsignal`]: [0.1, 0.1, 0.1], [`${g} / DIM`]: [0.08, 0.09, 0.09] },
 *   },
 *   parseBenchLines(`noise\nchat_bench ${JSON.stringify(chat)}\n`),
 * );
 * assert.match(markdown, /\| 90 µs \| libsignal 100 µs \| 0\.90× \| ≤ 1\.0× libsignal \| met \|/);
 * assert.match(
 *   markdown,
 *   /\| 0\.80 ms \| raw stream 0\.14 ms; one flush 0\.09 ms; raw \+ 2 flushes 0\.32 ms \| 5\.71× \| ≤ 1\.0 ms \| met \|/,
 * );
 * assert.match(markdown, /\| 1,600 msg\/s \| raw stream 20,000 frames\/s \| 12\.50× \| ≥ 2,000 msg\/s \| missed \|/);
 * assert.match(markdown, /two processes.*\| — \|/);
 * ```
 *
 * @module
 */

/** What `bench/peers_bench.ts` writes: per-iteration times in ms, by "group / name". */
export interface PeersSamples {
  /** When the bench ran (ISO 8601). */
  readonly date: string;
  /** Per-iteration times in milliseconds, keyed "group / bench name". */
  readonly samples: Readonly<Record<string, readonly number[]>>;
}

/** One row of a bench's JSON line: at least its key or name and its p50 in ms. */
export interface LineRow {
  /** The chat benches' key, e.g. `"roundtrip.dim"`. */
  readonly id?: string;
  /** The DHT bench's name, e.g. `"one hop, raw echo, 20 nodes"`. */
  readonly name?: string;
  /** The DHT bench's operation: `"get"`, `"put"`, `"floor"`. */
  readonly op?: string;
  /** The DHT bench's network size. */
  readonly nodes?: number;
  /** Items one iteration moves (the chat benches). */
  readonly per?: number;
  /** Median time of an iteration, ms. */
  readonly p50: number;
}

/** The JSON lines of one run, by the bench that printed them. */
export interface BenchLines {
  /** `bench/chat_bench.ts`: both users in one process. */
  readonly chat_bench?: { readonly rows: readonly LineRow[] };
  /** `bench/chat_process_bench.ts`: the users in two processes. */
  readonly chat_process_bench?: { readonly rows: readonly LineRow[] };
  /** `bench/dht_bench.ts`. */
  readonly dht_bench?: { readonly rows: readonly LineRow[] };
}

const TAGS = ["chat_bench", "chat_process_bench", "dht_bench"] as const;

/**
 * Finds the benches' JSON lines in their output (the last of each kind).
 *
 * @param output What the benches printed (colour codes and other lines are passed over).
 * @returns The lines found.
 */
export function parseBenchLines(output: string): BenchLines {
  const found: Record<string, unknown> = {};
  // deno bench colours its output even into a pipe.
  // deno-lint-ignore no-control-regex
  const plain = output.replaceAll(/\x1b\[[0-9;]*m/g, "");
  for (const line of plain.split("\n")) {
    const match = /^(\w+) (\{.*\})\s*$/.exec(line);
    if (match === null || !(TAGS as readonly string[]).includes(match[1]!)) continue;
    try {
      const parsed = JSON.parse(match[2]!);
      if (Array.isArray(parsed?.rows)) found[match[1]!] = parsed;
    } catch {
      // A line cut short: as if missing.
    }
  }
  return found as BenchLines;
}

/** What a row's target bounds, and how. */
type Target =
  | { readonly kind: "ratio"; readonly max: number }
  | { readonly kind: "ms"; readonly max: number }
  | { readonly kind: "rate"; readonly min: number };

interface Cells {
  readonly dim: string;
  readonly baseline: string;
  readonly ratio: number;
  /** What the target is checked against: a ratio, ms, or msg/s. */
  readonly measured: number;
  /** Which bench to run when the figures are missing. */
  readonly source: string;
}

interface Row {
  readonly what: string;
  readonly target: Target | undefined;
  readonly reference: string;
  readonly cells: (data: PeersSamples | undefined, lines: BenchLines) => Cells;
}

/** The median of per-iteration times, or `NaN` for none. */
function p50(ms: readonly number[] | undefined): number {
  if (ms === undefined || ms.length === 0) return NaN;
  const sorted = [...ms].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function micros(ms: number): string {
  return Number.isNaN(ms) ? "—" : `${Math.round(ms * 1000).toLocaleString("en-US")} µs`;
}

function millis(ms: number): string {
  return Number.isNaN(ms) ? "—" : `${ms.toFixed(2)} ms`;
}

function rate(perSecond: number, unit: string): string {
  return Number.isNaN(perSecond)
    ? "—"
    : `${Math.round(perSecond).toLocaleString("en-US")} ${unit}/s`;
}

function findSamples(
  data: PeersSamples | undefined,
  group: string,
  lead: string,
): readonly number[] {
  if (data === undefined) return [];
  const key = Object.keys(data.samples).find((k) => k.startsWith(`${group} / ${lead}`));
  return key === undefined ? [] : data.samples[key]!;
}

function lineRow(
  lines: BenchLines,
  tag: keyof BenchLines,
  match: (row: LineRow) => boolean,
): LineRow | undefined {
  return lines[tag]?.rows.find(match);
}

/** A crypto row: DIM against libsignal from `bench/peers_bench.ts`. */
function crypto(group: string) {
  return (data: PeersSamples | undefined): Cells => {
    const dim = p50(findSamples(data, group, "DIM"));
    const peer = p50(findSamples(data, group, "libsignal"));
    return {
      dim: micros(dim),
      baseline: Number.isNaN(peer) ? "—" : `libsignal ${micros(peer)}`,
      ratio: dim / peer,
      measured: dim / peer,
      source: "bench/peers_bench.ts",
    };
  };
}

/**
 * A chat round trip: DIM against the raw stream, one flush (measured by
 * `bench/chat_bench.ts`, on the same disk for both rows) and the floor of
 * a durable round trip, the raw stream plus two flushes (the sender's before
 * the message leaves, the recipient's before it acknowledges).
 */
function roundTrip(tag: "chat_bench" | "chat_process_bench") {
  return (_: PeersSamples | undefined, lines: BenchLines): Cells => {
    const ms = (from: keyof BenchLines, id: string) =>
      lineRow(lines, from, (r) => r.id === id)?.p50 ?? NaN;
    const dim = ms(tag, "roundtrip.dim");
    const raw = ms(tag, "roundtrip.raw");
    const flush = ms("chat_bench", "roundtrip.flush");
    const baseline = [
      Number.isNaN(raw) ? undefined : `raw stream ${millis(raw)}`,
      Number.isNaN(flush) ? undefined : `one flush ${millis(flush)}`,
      Number.isNaN(raw + flush) ? undefined : `raw + 2 flushes ${millis(raw + 2 * flush)}`,
    ].filter((s) => s !== undefined);
    return {
      dim: millis(dim),
      baseline: baseline.length === 0 ? "—" : baseline.join("; "),
      ratio: dim / raw,
      measured: dim,
      source: `bench/${tag}.ts`,
    };
  };
}

/** 2,000 messages sent together: DIM's msg/s against raw frames/s. */
function burst(tag: "chat_bench" | "chat_process_bench") {
  return (_: PeersSamples | undefined, lines: BenchLines): Cells => {
    const perSecond = (id: string) => {
      const row = lineRow(lines, tag, (r) => r.id === id);
      return row === undefined ? NaN : (row.per ?? 1) / row.p50 * 1000;
    };
    const [dim, raw] = [perSecond("burst2000.dim"), perSecond("burst2000.raw")];
    return {
      dim: rate(dim, "msg"),
      baseline: Number.isNaN(raw) ? "—" : `raw stream ${rate(raw, "frames")}`,
      ratio: raw / dim,
      measured: dim,
      source: `bench/${tag}.ts`,
    };
  };
}

/** A DHT operation at 20 nodes, against one raw hop where measured. */
function dht(op: "get" | "put") {
  return (_: PeersSamples | undefined, lines: BenchLines): Cells => {
    const find = (o: string, name?: string) =>
      lineRow(
        lines,
        "dht_bench",
        (r) =>
          r.op === o && r.nodes === 20 && (name === undefined || r.name?.includes(name) === true),
      )?.p50 ?? NaN;
    const dim = find(op);
    const hop = find("floor", "raw echo");
    return {
      dim: millis(dim),
      baseline: Number.isNaN(hop) ? "—" : `one raw hop ${millis(hop)}`,
      ratio: dim / hop,
      measured: dim,
      source: "bench/dht_bench.ts",
    };
  };
}

const TOX = "Tox (c-toxcore 0.2.18, two instances on loopback, polled every 100 µs)";

const ROWS: readonly Row[] = [
  {
    what: "1 KiB message round trip, p50 (send → other side → ack), one process",
    target: { kind: "ms", max: 1.0 },
    reference: `${TOX}: 0.42 ms (DIM then: 2.29–2.72 ms)`,
    cells: roundTrip("chat_bench"),
  },
  {
    what: "the same, two processes",
    target: { kind: "ms", max: 1.0 },
    reference: "",
    cells: roundTrip("chat_process_bench"),
  },
  {
    what: "2,000 × 1 KiB sent together, until every ack, one process",
    target: { kind: "rate", min: 2000 },
    reference: "Tox: 760–1,020 msg/s (receipts; Tox writes nothing to disk; DIM then: 953 msg/s)",
    cells: burst("chat_bench"),
  },
  {
    what: "the same, two processes",
    target: { kind: "rate", min: 2000 },
    reference: "",
    cells: burst("chat_process_bench"),
  },
  {
    what: "ratchet encrypt + decrypt, 1 KiB, same chain, p50",
    target: { kind: "ratio", max: 1.0 },
    reference: "",
    cells: crypto("ratchet encrypt + decrypt, 1 KiB, same chain"),
  },
  {
    what: "the same with a DH ratchet step every message",
    target: { kind: "ratio", max: 1.5 },
    reference: "",
    cells: crypto("the same with a DH ratchet step every message"),
  },
  {
    what: "session setup + first message (libsignal: PQXDH, which also does ML-KEM-1024)",
    target: { kind: "ratio", max: 1.0 },
    reference: "",
    cells: crypto("session setup + first message, 1 KiB"),
  },
  {
    what: "sealed, sender-hidden message in a session (libsignal: sealed sender v1)",
    target: undefined,
    reference: "",
    cells: crypto("sealed, sender-hidden message in a session, 1 KiB"),
  },
  {
    what: "DHT get, 20 nodes, p50",
    target: { kind: "ms", max: 0.7 },
    reference: "OpenDHT 2.4 (C++, UDP), 20 nodes: 0.6 ms (DIM then: 0.86 ms)",
    cells: dht("get"),
  },
  {
    what: "DHT put, 20 nodes, p50",
    target: { kind: "ms", max: 2.0 },
    reference: "OpenDHT: 0.5–0.6 ms (DIM then: 6.18 ms)",
    cells: dht("put"),
  },
];

function describe(target: Target | undefined): string {
  if (target === undefined) return "—";
  switch (target.kind) {
    case "ratio":
      return `≤ ${target.max.toFixed(1)}× libsignal`;
    case "ms":
      return `≤ ${target.max.toFixed(1)} ms`;
    case "rate":
      return `≥ ${target.min.toLocaleString("en-US")} msg/s`;
  }
}

function verdict(target: Target | undefined, measured: number): string {
  if (target === undefined) return "";
  if (Number.isNaN(measured)) return "not run";
  const met = target.kind === "rate" ? measured >= target.min : measured <= target.max;
  return met ? "met" : "missed";
}

/**
 * Renders the table in Markdown.
 *
 * @param data The JSON `bench/peers_bench.ts` wrote, if it ran.
 * @param lines The other benches' JSON lines ({@linkcode parseBenchLines}).
 * @returns The table, a line on what "DIM ÷ baseline" means, and a note
 *   naming the benches whose figures are missing, if any.
 */
export function renderPeersReport(
  data: PeersSamples | undefined,
  lines: BenchLines = {},
): string {
  const date = data?.date.slice(0, 10) ?? new Date().toISOString().slice(0, 10);
  const out = [
    `DIM against other messengers: one run of \`deno task bench:peers\` (${date}), p50 of per-iteration times; the reference column is from issue 17 (measured once on the same 2-core machine, December 2026).`,
    "",
    "| what | DIM, this run | baseline, same run | DIM ÷ baseline | target | | reference (issue 17, Dec. 2026) |",
    "| --- | ---: | ---: | ---: | ---: | --- | --- |",
  ];
  const missing = new Set<string>();
  for (const row of ROWS) {
    const cells = row.cells(data, lines);
    if (cells.dim === "—") missing.add(cells.source);
    const ratio = Number.isFinite(cells.ratio) ? `${cells.ratio.toFixed(2)}×` : "—";
    out.push(
      `| ${row.what} | ${cells.dim} | ${cells.baseline} | ${ratio} | ${describe(row.target)} | ${
        verdict(row.target, cells.measured)
      } | ${row.reference} |`,
    );
  }
  out.push(
    "",
    "DIM ÷ baseline is a ratio of times (for throughput, of time per message): how many times slower than the baseline. The 64 MiB file row of issue 17 (Tox: 3.2–6.1 MB/s) comes from `bench/transfer_bench.ts`, which this task does not run.",
  );
  if (missing.size > 0) {
    out.push("", `Missing from this run (not run, or failed): ${[...missing].join(", ")}.`);
  }
  return out.join("\n");
}

/** Reads stdin to its end, passing it through to stderr as it comes. */
async function passThrough(): Promise<string> {
  const decoder = new TextDecoder();
  let text = "";
  for await (const chunk of Deno.stdin.readable) {
    Deno.stderr.writeSync(chunk);
    text += decoder.decode(chunk, { stream: true });
  }
  return text;
}

if (import.meta.main) {
  const [path = "bench-peers.json", log] = Deno.args;
  const output = log !== undefined
    ? await Deno.readTextFile(log)
    : Deno.stdin.isTerminal()
    ? ""
    : await passThrough();
  let data: PeersSamples | undefined;
  try {
    data = JSON.parse(await Deno.readTextFile(path)) as PeersSamples;
  } catch (err) {
    console.error(`${path}: ${err instanceof Error ? err.message : err}`);
  }
  const markdown = renderPeersReport(data, parseBenchLines(output));
  console.log(markdown);
  // A bench that failed in the pipe fails the task.
  if (markdown.includes("\nMissing from this run")) Deno.exitCode = 1;
}
