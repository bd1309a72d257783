/**
 * Per-iteration times of the chat benches, for p50 and p99 (`deno bench`
 * reports mean, p75 and p99 only), and their summary: a Markdown table on
 * stderr and one JSON line on stdout, `<tag> {"rows": […]}`, which
 * `bench/peers_report.ts` reads.
 *
 * @module
 */

/** A bench's summary, as the JSON line carries it. */
export interface TimedRow {
  /** A short stable key the report looks rows up by, e.g. `"roundtrip.dim"`. */
  readonly id: string;
  /** The bench group. */
  readonly group: string;
  /** The bench name. */
  readonly name: string;
  /** Iterations measured (warm-up left out). */
  readonly n: number;
  /** Items (messages, frames) one iteration moves. */
  readonly per: number;
  /** Median time of an iteration, ms. */
  readonly p50: number;
  /** 99th percentile, ms. */
  readonly p99: number;
}

/** How many times `deno bench` runs a bench: measured, and before that to warm up. */
export interface Runs {
  /** Iterations measured. */
  readonly n: number;
  /** Iterations before, not measured. */
  readonly warmup: number;
}

const samples: { id: string; group: string; name: string; n: number; per: number; ms: number[] }[] =
  [];

/**
 * Declares a `Deno.bench` whose every iteration's time is also recorded.
 *
 * @param id The row's key in the summary.
 * @param group The bench group.
 * @param name The bench name.
 * @param runs Iterations measured and to warm up.
 * @param per Items one iteration moves (for items/s).
 * @param work One iteration.
 * @param baseline Whether it is the group's baseline.
 */
export function timedBench(
  id: string,
  group: string,
  name: string,
  runs: Runs,
  per: number,
  work: () => Promise<void>,
  baseline = false,
): void {
  const entry = { id, group, name, n: runs.n, per, ms: [] as number[] };
  samples.push(entry);
  Deno.bench({
    name,
    group,
    baseline,
    ...runs,
    async fn() {
      const start = performance.now();
      await work();
      entry.ms.push(performance.now() - start);
    },
  });
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? NaN;
}

/**
 * Summarizes every bench that ran.
 *
 * @returns One row per bench with samples.
 */
export function timedRows(): TimedRow[] {
  const rows: TimedRow[] = [];
  for (const { id, group, name, n, per, ms } of samples) {
    // The harness also calls fn while warming up: keep the last n runs.
    const sorted = ms.slice(-n).sort((a, b) => a - b);
    if (sorted.length === 0) continue;
    const round = (x: number) => Math.round(x * 1000) / 1000;
    rows.push({
      id,
      group,
      name,
      n: sorted.length,
      per,
      p50: round(percentile(sorted, 0.5)),
      p99: round(percentile(sorted, 0.99)),
    });
  }
  return rows;
}

/**
 * Prints the summary: the table on stderr, the JSON line on stdout.
 *
 * @param tag The JSON line's first word (the bench's name).
 * @param extra More fields for the JSON line.
 */
export function printTimed(tag: string, extra: Record<string, unknown> = {}): void {
  const rows = timedRows();
  const lines = [
    "",
    "| bench | iterations | p50 | p99 | per item (p50) | items/s (p50) |",
    "| --- | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const { name, n, per, p50, p99 } of rows) {
    lines.push(
      `| ${name} | ${n} | ${p50.toFixed(3)} ms | ${p99.toFixed(3)} ms | ${
        (p50 / per).toFixed(3)
      } ms | ${(per / p50 * 1000).toFixed(0)} |`,
    );
  }
  console.error(lines.join("\n"));
  console.log(`${tag} ${JSON.stringify({ date: new Date().toISOString(), ...extra, rows })}`);
}
