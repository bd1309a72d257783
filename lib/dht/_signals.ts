/**
 * The signal and deadline helpers of DIM's DHT node, in one place: a
 * signal scoped to one call, a deadline whose timer is always cleared, a
 * bounded wait (on the `delay` package), and the frame every networked
 * call of a node runs in ({@linkcode runQuery}).
 *
 * @module
 */
import delay, { clearDelay } from "delay";
import { DimError, PeerUnreachableError } from "../errors.ts";
import { QUERY_TIMEOUT_MS } from "./constants.ts";
import { describe } from "./_peers.ts";

/** A signal and the function that detaches it from its sources. */
export interface ScopedSignal {
  /** Aborts when the first source does, until `release()`. */
  readonly signal: AbortSignal;
  /** Detaches the signal from its sources. */
  release(): void;
}

/**
 * A signal that follows `sources` only until `release()`. libp2p keeps
 * listeners on the signals it is given after a call returns; a caller's
 * signal that fires later (a timeout, a shutdown) must not reach them, or
 * their promises reject with nobody listening. (`AbortSignal.any` would
 * keep them attached for the life of the sources.)
 *
 * @param sources The signals to follow; an aborted one aborts it at once.
 * @returns The signal and its `release`.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { scopedSignal } from "./_signals.ts";
 *
 * const outer = new AbortController();
 * const scoped = scopedSignal([outer.signal]);
 * scoped.release();
 * outer.abort();
 * assert.equal(scoped.signal.aborted, false);
 * ```
 */
export function scopedSignal(sources: readonly AbortSignal[]): ScopedSignal {
  const controller = new AbortController();
  const onAbort = (event: Event) => controller.abort((event.target as AbortSignal).reason);
  const attached: AbortSignal[] = [];
  for (const source of sources) {
    if (source.aborted) {
      controller.abort(source.reason);
      break;
    }
    source.addEventListener("abort", onAbort, { once: true });
    attached.push(source);
  }
  return {
    signal: controller.signal,
    release() {
      for (const source of attached) source.removeEventListener("abort", onAbort);
    },
  };
}

/** A signal that aborts after a time, and the function that cancels its timer. */
export interface Deadline {
  /** Aborts with a `TimeoutError` after the time. */
  readonly signal: AbortSignal;
  /** Cancels the timer. */
  clear(): void;
}

/**
 * A timeout signal whose timer is always cleared, so nothing lingers.
 *
 * @param ms The time, in milliseconds.
 * @returns The signal and its `clear`.
 * @example
 * ```ts
 * import { deadline } from "./_signals.ts";
 *
 * const timeout = deadline(1000);
 * timeout.clear();
 * ```
 */
export function deadline(ms: number): Deadline {
  const controller = new AbortController();
  const id = setTimeout(() => {
    controller.abort(new DOMException(`Timed out after ${ms} ms`, "TimeoutError"));
  }, ms);
  return { signal: controller.signal, clear: () => clearTimeout(id) };
}

/**
 * Waits for `task` to settle, at most `ms` milliseconds and until `signal`
 * aborts; never rejects.
 *
 * @param task The work.
 * @param ms The longest wait.
 * @param signal Ends the wait early.
 * @returns `true` if `task` settled (fulfilled or rejected) in time, `false` otherwise.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { settlesWithin } from "./_signals.ts";
 *
 * assert.equal(await settlesWithin(Promise.resolve(), 100), true);
 * assert.equal(await settlesWithin(new Promise(() => {}), 10), false);
 * ```
 */
export async function settlesWithin(
  task: Promise<unknown>,
  ms: number,
  signal?: AbortSignal,
): Promise<boolean> {
  const wait = delay(ms, signal === undefined ? {} : { signal });
  try {
    return await Promise.race([
      task.then(() => true, () => true),
      wait.then(() => false, () => false),
    ]);
  } finally {
    clearDelay(wait);
  }
}

/**
 * Runs one networked call of a node under a signal that ends with the
 * node (`signals[0]`), the caller's signal and {@linkcode QUERY_TIMEOUT_MS},
 * and words its failure: a timeout or an unexpected error becomes a
 * {@linkcode PeerUnreachableError}, an abort rethrows the signal's reason,
 * DIM's own errors and `TypeError`s pass unchanged.
 *
 * @param action What the call does, for messages ("get record").
 * @param signals The node's stop signal, then the caller's (if any).
 * @param run The call.
 * @returns What `run` returns.
 * @throws {PeerUnreachableError} If the call times out or fails unexpectedly.
 * @throws {unknown} The reason of an aborted signal.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { runQuery } from "./_signals.ts";
 *
 * assert.equal(await runQuery("add", [new AbortController().signal], () => Promise.resolve(2)), 2);
 * ```
 */
export async function runQuery<T>(
  action: string,
  signals: readonly (AbortSignal | undefined)[],
  run: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const timeout = deadline(QUERY_TIMEOUT_MS);
  const [stop, caller] = signals;
  const { signal, release } = scopedSignal([
    timeout.signal,
    ...signals.filter((s): s is AbortSignal => s !== undefined),
  ]);
  try {
    signal.throwIfAborted();
    return await run(signal);
  } catch (cause) {
    if (timeout.signal.aborted && !stop?.aborted && !caller?.aborted) {
      throw new PeerUnreachableError(
        `Cannot ${action}: no result within ${QUERY_TIMEOUT_MS} ms`,
        { cause },
      );
    }
    if (signal.aborted) throw signal.reason;
    if (cause instanceof DimError || cause instanceof TypeError) throw cause;
    throw new PeerUnreachableError(`Cannot ${action}: ${describe(cause)}`, { cause });
  } finally {
    release();
    timeout.clear();
  }
}
