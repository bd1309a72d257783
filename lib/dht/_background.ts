/**
 * The replicas a put finishes after it has returned: each runs under its
 * own signal (not the caller's, whose call has ended, nor the node's stop
 * signal, which fires before the node waits for them), bounded by a time
 * limit, and the node can wait for all of them, boundedly, before it stops.
 *
 * @module
 */
import { deadline, settlesWithin } from "../platform/signals.ts";

/**
 * Work a node runs after the call that started it has returned (from the
 * next timer turn), and waits for (boundedly) before it stops.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { BackgroundWork } from "./_background.ts";
 *
 * const work = new BackgroundWork(1000);
 * let done = false;
 * work.run(async () => {
 *   await new Promise((resolve) => setTimeout(resolve, 10));
 *   done = true;
 * });
 * assert.equal(await work.settled(500), true);
 * assert.equal(done, true);
 * ```
 */
export class BackgroundWork {
  readonly #limitMs: number;
  readonly #tasks = new Set<Promise<unknown>>();
  readonly #controller = new AbortController();

  /**
   * @param limitMs The longest one task may run before its signal aborts.
   */
  constructor(limitMs: number) {
    this.#limitMs = limitMs;
  }

  /** How many tasks are running. */
  get running(): number {
    return this.#tasks.size;
  }

  /**
   * Starts a task; its failure is the task's to report (it is swallowed here).
   *
   * @param task The work, given a signal that aborts at the time limit or
   *   on {@linkcode BackgroundWork.abort}.
   */
  run(task: (signal: AbortSignal) => Promise<unknown>): void {
    const limit = deadline(this.#limitMs);
    const signal = AbortSignal.any([limit.signal, this.#controller.signal]);
    // Started from a timer, not a microtask: the call that started it
    // returns to its caller first (a put's background lookup sends a dozen
    // requests, a fraction of a millisecond of socket writes, before its
    // first await).
    const tracked: Promise<unknown> = new Promise((resolve) => setTimeout(resolve, 0))
      .then(() => task(signal))
      .catch(() => {})
      .finally(() => {
        limit.clear();
        this.#tasks.delete(tracked);
      });
    this.#tasks.add(tracked);
  }

  /**
   * Waits until every task has ended (tasks started meanwhile included),
   * at most `ms`.
   *
   * @param ms The longest wait.
   * @returns Whether every task ended in time.
   */
  async settled(ms: number): Promise<boolean> {
    const until = performance.now() + ms;
    while (this.#tasks.size > 0) {
      const left = until - performance.now();
      if (left <= 0) return false;
      if (!(await settlesWithin(Promise.allSettled([...this.#tasks]), left))) return false;
    }
    return true;
  }

  /** Aborts every task's signal, now and for tasks started later. */
  abort(): void {
    this.#controller.abort(new DOMException("The DHT node is stopping", "AbortError"));
  }
}
