/**
 * Turns the JSON of `deno bench --json` into Markdown: one table per bench
 * group (per file), with each bench's avg, p75 and p99, its speed against
 * the group's baseline (baseline time ÷ its time, so higher is faster) and
 * the difference of averages, and a throughput where the bench name says
 * how much one iteration moves: a byte size at the end ("…, 64 MiB") gives
 * MB/s, a count of messages or frames ("100 messages of 1 KiB") gives items/s.
 *
 * ```sh
 * deno bench -A --json bench/crypto_bench.ts | deno run -A bench/report.ts
 * deno bench -A --json bench/transfer_bench.ts > transfer.json && deno run -A bench/report.ts transfer.json
 * ```
 *
 * @example Render a report
 * ```ts
 * import assert from "node:assert/strict";
 * import { renderReport } from "./report.ts";
 *
 * const stats = (avg: number) => ({ n: 10, min: avg, max: avg, avg, p75: avg, p99: avg });
 * const markdown = renderReport({
 *   version: 1,
 *   benches: [
 *     { origin: "file:///b.ts", group: "copy", name: "raw, 64 MiB", baseline: true, results: [{ ok: stats(100e6) }] },
 *     { origin: "file:///b.ts", group: "copy", name: "sealed, 64 MiB", baseline: false, results: [{ ok: stats(200e6) }] },
 *   ],
 * });
 * assert.match(markdown, /\| sealed, 64 MiB \| 200\.0 ms \| 200\.0 ms \| 200\.0 ms \| 0\.50× \| \+100\.0 ms \| 336 MB\/s \|/);
 * ```
 *
 * @module
 */

/** The statistics Deno reports for a bench that ran; times in nanoseconds. */
export interface BenchStats {
  /** Iterations measured. */
  readonly n: number;
  /** Fastest iteration. */
  readonly min: number;
  /** Slowest iteration. */
  readonly max: number;
  /** Mean time per iteration. */
  readonly avg: number;
  /** 75th percentile. */
  readonly p75: number;
  /** 99th percentile. */
  readonly p99: number;
}

/** One bench in the JSON of `deno bench --json` (Deno 2.9, format version 1). */
export interface BenchEntry {
  /** The URL of the bench file. */
  readonly origin: string;
  /** The `group` option, or `null`. */
  readonly group: string | null;
  /** The bench name. */
  readonly name: string;
  /** Whether it is its group's baseline. */
  readonly baseline: boolean;
  /** One result: `ok` with statistics, or `failed` with the error. */
  readonly results: readonly ({ readonly ok: BenchStats } | { readonly failed: unknown })[];
}

/** The JSON document `deno bench --json` writes. */
export interface BenchReport {
  /** Format version (1). */
  readonly version: number;
  /** For example "Deno/2.9.6 x86_64-unknown-linux-gnu". */
  readonly runtime?: string;
  /** The CPU model. */
  readonly cpu?: string;
  /** Every bench, in the order they were declared. */
  readonly benches: readonly BenchEntry[];
}

const UNITS: Record<string, number> = {
  B: 1,
  KiB: 1024,
  MiB: 1024 ** 2,
  GiB: 1024 ** 3,
  KB: 1e3,
  MB: 1e6,
  GB: 1e9,
};
const SIZE_AT_END = /(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB|KB|MB|GB)\s*\)?$/;
const COUNT = /\b(\d+)\s+(messages|frames|items|records|operations)\b/;

/** Time in nanoseconds, in the unit that reads best. */
function formatTime(ns: number): string {
  if (ns >= 1e9) return `${(ns / 1e9).toFixed(2)} s`;
  if (ns >= 1e6) return `${(ns / 1e6).toFixed(1)} ms`;
  if (ns >= 1e3) return `${(ns / 1e3).toFixed(1)} µs`;
  return `${ns.toFixed(0)} ns`;
}

function formatDelta(ns: number): string {
  return `${ns < 0 ? "−" : "+"}${formatTime(Math.abs(ns))}`;
}

/** How much one iteration of a bench moves, from its name. */
function throughput(name: string, avgNs: number): string {
  const size = SIZE_AT_END.exec(name);
  const count = COUNT.exec(name);
  if (count !== null) {
    const perSecond = Number(count[1]) / (avgNs / 1e9);
    return `${perSecond.toFixed(perSecond < 100 ? 1 : 0)} ${count[2]}/s`;
  }
  if (size !== null) {
    const bytes = Number(size[1]) * UNITS[size[2]!]!;
    const mbPerSecond = bytes / 1e6 / (avgNs / 1e9);
    return `${mbPerSecond.toFixed(mbPerSecond < 10 ? 2 : 0)} MB/s`;
  }
  return "";
}

function escapeCell(text: string): string {
  return text.replaceAll("|", "\\|");
}

/**
 * Renders the Markdown report of a `deno bench --json` document.
 *
 * @param report The parsed JSON.
 * @returns Markdown: a heading and a table per group.
 * @throws {TypeError} If `report` has no `benches` list.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { renderReport } from "./report.ts";
 * const md = renderReport({ version: 1, benches: [] });
 * assert.match(md, /no benches/);
 * ```
 */
export function renderReport(report: BenchReport): string {
  if (!Array.isArray(report?.benches)) {
    throw new TypeError("Cannot render report: expected the JSON of `deno bench --json`");
  }
  const lines: string[] = [];
  if (report.runtime !== undefined || report.cpu !== undefined) {
    lines.push(`${report.runtime ?? "unknown runtime"} on ${report.cpu ?? "unknown CPU"}`, "");
  }
  if (report.benches.length === 0) return [...lines, "(no benches)"].join("\n");

  const groups = new Map<string, BenchEntry[]>();
  for (const bench of report.benches) {
    const key = `${bench.origin}\0${bench.group ?? ""}`;
    const list = groups.get(key) ?? [];
    list.push(bench);
    groups.set(key, list);
  }
  for (const benches of groups.values()) {
    const first = benches[0]!;
    const file = first.origin.replace(/^.*\//, "");
    lines.push(`### ${first.group ?? "(no group)"} — ${file}`, "");
    const ok = benches.flatMap((b) => {
      const result = b.results[0];
      return result !== undefined && "ok" in result ? [{ bench: b, stats: result.ok }] : [];
    });
    const reference = ok.find((b) => b.bench.baseline) ??
      [...ok].sort((a, b) => a.stats.avg - b.stats.avg)[0];
    const referenceNote = reference?.bench.baseline ? "baseline" : "fastest";
    lines.push(
      "| bench | avg | p75 | p99 | speed vs baseline | Δ avg | throughput |",
      "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    );
    for (const bench of benches) {
      const result = bench.results[0];
      if (result === undefined || !("ok" in result)) {
        const why = result !== undefined && "failed" in result
          ? String(result.failed)
          : "no result";
        lines.push(
          `| ${escapeCell(bench.name)} | failed: ${escapeCell(why.split("\n")[0]!)} | | | | | |`,
        );
        continue;
      }
      const s = result.ok;
      const isReference = reference?.bench === bench;
      const speed = reference === undefined
        ? ""
        : isReference
        ? `1.00× (${referenceNote})`
        : `${(reference.stats.avg / s.avg).toFixed(2)}×`;
      const delta = reference === undefined || isReference
        ? ""
        : formatDelta(s.avg - reference.stats.avg);
      lines.push(
        `| ${escapeCell(bench.name)} | ${formatTime(s.avg)} | ${formatTime(s.p75)} | ${
          formatTime(s.p99)
        } | ${speed} | ${delta} | ${throughput(bench.name, s.avg)} |`,
      );
    }
    lines.push("");
  }
  return lines.join("\n");
}

/** Finds the JSON document in `deno bench --json` output, even with other lines around it. */
function parseBenchJson(text: string): BenchReport {
  try {
    return JSON.parse(text) as BenchReport;
  } catch {
    const start = text.search(/^\{\s*$/m);
    const end = text.lastIndexOf("}");
    if (start === -1 || end <= start) {
      throw new SyntaxError("Cannot read bench results: no JSON document in the input");
    }
    return JSON.parse(text.slice(start, end + 1)) as BenchReport;
  }
}

if (import.meta.main) {
  const path = Deno.args[0];
  const text = path === undefined || path === "-"
    ? await new Response(Deno.stdin.readable).text()
    : await Deno.readTextFile(path);
  try {
    console.log(renderReport(parseBenchJson(text)));
  } catch (err) {
    console.error(`error: ${err instanceof Error ? err.message : String(err)}`);
    Deno.exit(1);
  }
}
