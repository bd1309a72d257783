/**
 * Renders the README's "DIM against other messengers" table from the
 * per-iteration times `bench/peers_bench.ts` leaves in `bench-peers.json`:
 * DIM's and libsignal's p50 from the same run and their ratio, against each
 * target. The Tox and OpenDHT rows are a dated reference (C and C++
 * programs outside the project, measured once on the same machine), with
 * the DIM bench that answers each.
 *
 * ```sh
 * deno task bench:peers
 * deno run --allow-read bench/peers_report.ts bench-peers.json
 * ```
 *
 * @example Render a report
 * ```ts
 * import assert from "node:assert/strict";
 * import { renderPeersReport } from "./peers_report.ts";
 *
 * const g = "ratchet encrypt + decrypt, 1 KiB, same chain";
 * const markdown = renderPeersReport({
 *   date: "2026-12-07T10:00:00Z",
 *   samples: { [`${g} / libsignal`]: [0.1, 0.1, 0.1], [`${g} / DIM`]: [0.08, 0.09, 0.09] },
 * });
 * assert.match(markdown, /\| 90 µs \| 100 µs \| 0\.90× \| ≤ 1\.0× \| met \|/);
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

interface LiveRow {
  readonly what: string;
  readonly group: string;
  readonly peer: string;
  readonly target: number;
}

const LIVE: readonly LiveRow[] = [
  {
    what: "ratchet encrypt + decrypt, 1 KiB, same chain, p50",
    group: "ratchet encrypt + decrypt, 1 KiB, same chain",
    peer: "libsignal-client 0.103 (Rust, N-API)",
    target: 1.0,
  },
  {
    what: "the same with a DH ratchet step every message",
    group: "the same with a DH ratchet step every message",
    peer: "libsignal",
    target: 1.5,
  },
  {
    what: "session setup + first message (DIM: X3DH)",
    group: "session setup + first message, 1 KiB",
    peer: "libsignal (PQXDH, which also does ML-KEM-1024)",
    target: 1.0,
  },
  {
    what: "sealed, sender-hidden message in a session (DIM: ratchet + HPKE envelope + Ed25519)",
    group: "sealed, sender-hidden message in a session, 1 KiB",
    peer: "libsignal sealed sender v1 + session",
    target: NaN,
  },
];

// Measured by hand on the same 2-core machine in December 2026 (issue 17): the
// peers are built from Debian packages, DIM's side comes from its benches.
const REFERENCE: readonly string[] = [
  "| 1 KiB message round trip, p50 (send → other side → ack) | `bench/chat_bench.ts` | Tox (c-toxcore 0.2.18, two instances on loopback, polled every 100 µs): 0.42 ms |",
  "| 2,000 × 1 KiB sent together, until every ack/receipt | `bench/chat_bench.ts` | Tox: 760–1,020 msg/s (receipts; Tox writes nothing to disk) |",
  "| 64 MiB file | `bench/transfer_bench.ts` | Tox: 3.2–6.1 MB/s |",
  "| DHT get, 20 nodes, p50 | `bench/dht_bench.ts` | OpenDHT 2.4 (C++, UDP), 20 nodes: 0.6 ms |",
  "| DHT put, 20 nodes, p50 | `bench/dht_bench.ts` | OpenDHT: 0.5–0.6 ms |",
];

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

function findSamples(data: PeersSamples, group: string, lead: string): readonly number[] {
  const key = Object.keys(data.samples).find((k) => k.startsWith(`${group} / ${lead}`));
  return key === undefined ? [] : data.samples[key]!;
}

/**
 * Renders the table in Markdown.
 *
 * @param data The JSON `bench/peers_bench.ts` wrote.
 * @returns Two tables: DIM against libsignal from the same run, then the
 *   dated reference rows.
 */
export function renderPeersReport(data: PeersSamples): string {
  const lines = [
    `DIM against libsignal, same run (${data.date.slice(0, 10)}), p50 of per-iteration times:`,
    "",
    "| what | DIM | libsignal, same run | DIM ÷ libsignal | target | |",
    "| --- | ---: | ---: | ---: | ---: | --- |",
  ];
  for (const row of LIVE) {
    const dim = p50(findSamples(data, row.group, "DIM"));
    const peer = p50(findSamples(data, row.group, "libsignal"));
    const ratio = dim / peer;
    const target = Number.isNaN(row.target) ? "—" : `≤ ${row.target.toFixed(1)}×`;
    const met = Number.isNaN(row.target) || Number.isNaN(ratio)
      ? ""
      : ratio <= row.target
      ? "met"
      : "missed";
    lines.push(
      `| ${row.what} | ${micros(dim)} | ${micros(peer)} | ${
        Number.isNaN(ratio) ? "—" : `${ratio.toFixed(2)}×`
      } | ${target} | ${met} |`,
    );
  }
  lines.push(
    "",
    "Reference, from issue 17 (measured once on the same 2-core machine, December 2026; C and C++ programs outside the project):",
    "",
    "| what | DIM's figure | peer |",
    "| --- | --- | --- |",
    ...REFERENCE,
  );
  return lines.join("\n");
}

if (import.meta.main) {
  const path = Deno.args[0] ?? "bench-peers.json";
  console.log(renderPeersReport(JSON.parse(await Deno.readTextFile(path)) as PeersSamples));
}
