/**
 * Deadlines for a service's calls: each signal aborts after its time, or
 * when the service stops, whichever comes first.
 *
 * The obvious `AbortSignal.any([stopping, AbortSignal.timeout(ms)])` leaks:
 * Deno (2.9) never frees what `AbortSignal.any` makes, about 370 bytes a
 * call, so a node that serves a million frames would keep hundreds of
 * megabytes. Here the service holds its live signals only weakly: a signal
 * that nobody refers to any more is collected with its timer, and `stop`
 * aborts the ones still in use.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Deadlines } from "./_deadlines.ts";
 *
 * const deadlines = new Deadlines();
 * const signal = deadlines.signal(60_000);
 * deadlines.abort(new Error("stopping"));
 * assert.equal(signal.aborted, true);
 * assert.equal(deadlines.signal(60_000).aborted, true);
 * deadlines.restart();
 * assert.equal(deadlines.signal(10).aborted, false);
 * ```
 *
 * @module
 */

/** The controller behind a signal, kept alive by the signal itself. */
const CONTROLLER = Symbol("controller");

interface Live {
  readonly ref: WeakRef<AbortController>;
  readonly timer: ReturnType<typeof setTimeout>;
}

/** Signals that time out, and all abort together on `abort()`. */
export class Deadlines {
  #live = new Set<Live>();
  #stopped: { reason: unknown } | undefined;
  #finalizer = new FinalizationRegistry<Live>((live) => {
    clearTimeout(live.timer);
    this.#live.delete(live);
  });

  /**
   * A signal that aborts with a `TimeoutError` after `ms`, or with the stop
   * reason if `abort` comes first.
   *
   * @param ms The time allowed, in milliseconds.
   * @returns The signal.
   */
  signal(ms: number): AbortSignal {
    const controller = new AbortController();
    if (this.#stopped !== undefined) {
      controller.abort(this.#stopped.reason);
      return controller.signal;
    }
    const ref = new WeakRef(controller);
    const timer = setTimeout(() => {
      this.#live.delete(live);
      ref.deref()?.abort(new DOMException("Signal timed out.", "TimeoutError"));
    }, ms);
    // A deadline must not keep a one-shot process alive.
    Deno.unrefTimer(timer);
    const live: Live = { ref, timer };
    this.#live.add(live);
    Object.defineProperty(controller.signal, CONTROLLER, { value: controller });
    this.#finalizer.register(controller.signal, live);
    return controller.signal;
  }

  /** How many signals are still waiting for their time (for tests and diagnostics). */
  get size(): number {
    return this.#live.size;
  }

  /**
   * Aborts every signal still waiting, and every one made from now on
   * until `restart()`.
   *
   * @param reason The abort reason.
   */
  abort(reason: unknown): void {
    this.#stopped = { reason };
    const live = [...this.#live];
    this.#live.clear();
    for (const { ref, timer } of live) {
      clearTimeout(timer);
      ref.deref()?.abort(reason);
    }
  }

  /** Makes live signals again after `abort()`. */
  restart(): void {
    this.#stopped = undefined;
  }
}
