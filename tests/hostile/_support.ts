/**
 * Shared pieces of the hostile-peer and fault tests: the two sizes (short
 * under `deno task test`, long under `deno task test:stress`), a seeded
 * random source, a watch on unhandled rejections, memory readings, raw
 * libp2p streams from an attacker node, and the one-line figures every
 * test prints.
 *
 * @module
 */
import { createDhtNode, type DhtNode } from "../../lib/dht/node.ts";
import type { MessageStream } from "../../lib/messaging/mailbox.ts";
import { dimSelector, dimValidator } from "../../lib/record/record.ts";

/** Whether the long version runs (`DIM_STRESS=1`, as `deno task test:stress` sets). */
export const STRESS = Deno.env.get("DIM_STRESS") === "1";

/** The short or the long size of a test. */
export function size(short: number, long: number): number {
  return STRESS ? long : short;
}

/** Loopback only: no test listens on or dials any other address. */
export const LOOPBACK = ["/ip4/127.0.0.1/tcp/0"];

/**
 * Prints one figure line, `FIGURE <name> key=value …`, so runs can be
 * compared and the README quoted.
 */
export function figure(name: string, values: Record<string, string | number | boolean>): void {
  const parts = Object.entries(values).map(([k, v]) => `${k}=${v}`);
  console.log(`FIGURE ${name}${STRESS ? " (long)" : ""} ${parts.join(" ")}`);
}

/**
 * A small, fast, seeded generator (mulberry32), so a failing fuzz run can be
 * repeated with `DIM_FUZZ_SEED=<seed>`.
 */
export class Random {
  #state: number;
  /** The seed this generator started from. */
  readonly seed: number;

  /**
   * @param seed The seed; default `DIM_FUZZ_SEED` or a random one.
   */
  constructor(seed?: number) {
    const fromEnv = Number(Deno.env.get("DIM_FUZZ_SEED"));
    this.seed = seed ??
      (Number.isInteger(fromEnv) && fromEnv > 0
        ? fromEnv
        : crypto.getRandomValues(new Uint32Array(1))[0]!);
    this.#state = this.seed >>> 0;
  }

  /** A float in [0, 1). */
  next(): number {
    let t = (this.#state += 0x6d2b79f5) >>> 0;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** One of the items. */
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }

  /** `n` random bytes. */
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.int(256);
    return out;
  }
}

/** What {@linkcode watchRejections} saw. */
export interface RejectionWatch extends Disposable {
  /** The unhandled rejections and uncaught errors so far. */
  readonly seen: unknown[];
}

/**
 * Records every unhandled promise rejection and uncaught error from now
 * until disposal, and keeps them from ending the process, so a test can
 * fail on them with a count instead of dying.
 *
 * @returns The watch; dispose of it to stop watching.
 */
export function watchRejections(): RejectionWatch {
  const seen: unknown[] = [];
  const onRejection = (event: PromiseRejectionEvent) => {
    event.preventDefault();
    seen.push(event.reason);
  };
  const onError = (event: ErrorEvent) => {
    event.preventDefault();
    seen.push(event.error);
  };
  globalThis.addEventListener("unhandledrejection", onRejection);
  globalThis.addEventListener("error", onError);
  return {
    seen,
    [Symbol.dispose]() {
      globalThis.removeEventListener("unhandledrejection", onRejection);
      globalThis.removeEventListener("error", onError);
    },
  };
}

/** Describes what a rejection watch saw, for an assertion message. */
export function describeSeen(seen: readonly unknown[]): string {
  return seen.slice(0, 5).map((e) => e instanceof Error ? `${e.name}: ${e.message}` : String(e))
    .join("; ");
}

/** The process's resident set size, in MiB. */
export function rssMiB(): number {
  return Deno.memoryUsage().rss / (1024 * 1024);
}

/**
 * The heap still in use after a full garbage collection, in MiB: what a
 * leak keeps. `undefined` unless the tests run with `--v8-flags=--expose-gc`
 * (the `test` and `test:stress` tasks do).
 */
export async function retainedHeapMiB(): Promise<number | undefined> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) return undefined;
  gc();
  // Finalizers (timers of collected signals, say) run between collections.
  await new Promise((r) => setTimeout(r, 50));
  gc();
  return Deno.memoryUsage().heapUsed / (1024 * 1024);
}

/** Waits `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `check` every 50 ms until it is true, or fails after `ms`. */
export async function until(
  what: string,
  check: () => boolean | Promise<boolean>,
  ms = 10_000,
): Promise<void> {
  const deadline = performance.now() + ms;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`timed out after ${ms} ms: ${what}`);
    await sleep(50);
  }
}

/** A DIM DHT node that plays the attacker: it speaks DIM's protocols with raw bytes. */
export async function attackerNode(bootstrap: readonly string[] = []): Promise<DhtNode> {
  return await createDhtNode({
    listen: LOOPBACK,
    bootstrap,
    validators: { dim: dimValidator },
    selectors: { dim: dimSelector },
  });
}

/** How a raw exchange ended, seen from the attacker. */
export type Outcome = "answered" | "closed" | "reset" | "timeout" | "unreachable";

/**
 * Opens a stream of `protocol` from `from` to `to`, writes `bytes`, closes
 * its writing side, and reads until the other side ends the stream or
 * `timeoutMs` passes.
 *
 * @returns How it ended and the bytes received.
 */
export async function rawExchange(
  from: DhtNode,
  to: string,
  protocol: string,
  bytes: Uint8Array,
  timeoutMs = 3000,
): Promise<{ outcome: Outcome; received: number }> {
  const signal = AbortSignal.timeout(timeoutMs);
  let stream: MessageStream;
  try {
    stream = await from.dialProtocol(to, protocol, { signal });
  } catch {
    return { outcome: "unreachable", received: 0 };
  }
  let received = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const work = (async (): Promise<Outcome> => {
      if (bytes.length > 0 && !stream.send(bytes)) await stream.onDrain({ signal });
      await stream.close({ signal }).catch(() => {});
      for await (const chunk of stream) {
        received += chunk instanceof Uint8Array ? chunk.length : chunk.subarray().length;
      }
      return received > 0 ? "answered" : "closed";
    })();
    const timeout = new Promise<Outcome>((resolve) => {
      timer = setTimeout(() => resolve("timeout"), timeoutMs);
    });
    const outcome = await Promise.race([work.catch((): Outcome => "reset"), timeout]);
    if (outcome === "timeout") stream.abort(new Error("fuzz: timeout"));
    await work.catch(() => {});
    return { outcome: outcome === "reset" && received > 0 ? "answered" : outcome, received };
  } finally {
    clearTimeout(timer);
  }
}

/** Runs `task` for each index in `[0, count)` with `concurrency` workers. */
export async function pool(
  count: number,
  concurrency: number,
  task: (index: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < count) await task(next++);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
}

/** Percentile `p` (0–100) of some numbers. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}
