/**
 * The timers of the messaging layer's calls, as abort signals, in two
 * kinds:
 *
 * - {@linkcode Deadlines}: a fixed time per call (a request, an answer),
 *   each signal aborting after its time or when the service stops,
 *   whichever comes first, or (`within`) when the caller's signal aborts.
 * - {@linkcode IdleTimer}: a time without progress (a file transfer), one
 *   signal rearmed on every step, aborting after that much silence or when
 *   its parent signal aborts.
 *
 * Neither uses `AbortSignal.any`: Deno (2.9) never frees what it makes,
 * about 370 bytes a call, so a node that serves a million frames (or
 * transfers) would keep hundreds of megabytes. `Deadlines` holds its live
 * signals only weakly, so a signal nobody refers to any more is collected
 * with its timer, and `abort` aborts the ones still in use; `within` and an
 * `IdleTimer` hook onto the caller's or the parent signal with a listener
 * they remove when done.
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
 * deadlines.abort(new Error("done"));
 * ```
 *
 * @example An idle timer, rearmed on progress
 * ```ts
 * import assert from "node:assert/strict";
 * import { IdleTimer } from "./_deadlines.ts";
 *
 * const stopping = new AbortController();
 * const idle = new IdleTimer(30_000, () => new Error("silent"), stopping.signal);
 * idle.refresh(); // after each chunk
 * stopping.abort(new Error("stopping"));
 * assert.equal(idle.signal.aborted, true);
 * idle.release();
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
    return this.#controller(ms).signal;
  }

  #controller(ms: number): AbortController {
    const controller = new AbortController();
    if (this.#stopped !== undefined) {
      controller.abort(this.#stopped.reason);
      return controller;
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
    return controller;
  }

  /**
   * Runs `fn` under a signal that aborts after `ms`, on `abort()`, or when
   * the caller's `signal` aborts, whichever comes first. The caller's
   * signal is followed by a listener removed when `fn` settles, not by
   * `AbortSignal.any` (see the module doc): a caller may pass one
   * long-lived signal to many calls.
   *
   * @param ms The time allowed, in milliseconds.
   * @param caller The caller's signal, if any; if it has aborted, `fn`
   *   does not run.
   * @param fn The work, given the signal.
   * @returns What `fn` returns.
   * @throws {unknown} The caller's abort reason, if it aborted before `fn` ran.
   */
  async within<T>(
    ms: number,
    caller: AbortSignal | undefined,
    fn: (signal: AbortSignal) => Promise<T>,
  ): Promise<T> {
    if (caller === undefined) return await fn(this.signal(ms));
    caller.throwIfAborted();
    const controller = this.#controller(ms);
    const onAbort = () => controller.abort(caller.reason);
    caller.addEventListener("abort", onAbort, { once: true });
    try {
      return await fn(controller.signal);
    } finally {
      caller.removeEventListener("abort", onAbort);
    }
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

/**
 * An abort signal that fires after `ms` without a `refresh()`: one timer
 * per transfer, rearmed on progress, instead of a timeout signal per frame.
 */
export class IdleTimer {
  readonly #controller = new AbortController();
  readonly #ms: number;
  readonly #reason: () => Error;
  readonly #parent: AbortSignal | undefined;
  readonly #onParentAbort = () => this.#controller.abort(this.#parent!.reason);
  #timer: ReturnType<typeof setTimeout> | undefined;

  /**
   * Starts the clock.
   *
   * @param ms The silence allowed.
   * @param reason The error the signal aborts with when it comes.
   * @param parent A signal that aborts this one too (the caller's, or the
   *   receiver stopping). Linked by a listener that `release()` removes, not
   *   by `AbortSignal.any`, which Deno never frees (a few hundred bytes a
   *   call, for every transfer and every stream a peer opens).
   */
  constructor(ms: number, reason: () => Error, parent?: AbortSignal) {
    this.#ms = ms;
    this.#reason = reason;
    this.#parent = parent;
    if (parent?.aborted) this.#onParentAbort();
    else parent?.addEventListener("abort", this.#onParentAbort, { once: true });
    this.refresh();
  }

  /** The signal: aborted by silence, or by the parent. */
  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** Restarts the clock, after progress. */
  refresh(): void {
    if (this.#controller.signal.aborted) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#controller.abort(this.#reason()), this.#ms);
  }

  /** Stops the clock; the parent can still abort the signal. */
  clear(): void {
    clearTimeout(this.#timer);
  }

  /** Stops the clock and unhooks from the parent: call it when done. */
  release(): void {
    this.clear();
    this.#parent?.removeEventListener("abort", this.#onParentAbort);
  }
}
