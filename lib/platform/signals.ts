/**
 * Abort signals with time limits, for every layer, in one place:
 *
 * - {@linkcode scopedSignal}: a signal that follows other signals only
 *   until `release()`.
 * - {@linkcode deadline}: a timeout signal whose timer is always cleared.
 * - {@linkcode settlesWithin}: a bounded wait that never rejects.
 * - {@linkcode Deadlines}: a fixed time per call (a request, an answer),
 *   each signal aborting after its time or when its owner stops, whichever
 *   comes first, or (`within`) when the caller's signal aborts.
 * - {@linkcode IdleTimer}: a time without progress (a file transfer), one
 *   signal rearmed on every step, aborting after that much silence or when
 *   its parent signal aborts.
 *
 * None uses `AbortSignal.any`: Deno (2.9) never frees what it makes, about
 * 370 bytes a call, so a node that serves a million frames (or transfers)
 * would keep hundreds of megabytes; and libp2p keeps listeners on the
 * signals it is given after a call returns, so a caller's signal that fires
 * later must not reach them. Each helper hooks onto its sources with a
 * listener it removes when done. `Deadlines` holds its live signals only
 * weakly, so a signal nobody refers to any more is collected with its
 * timer, and `abort` aborts the ones still in use.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Deadlines } from "./signals.ts";
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
 * import { IdleTimer } from "./signals.ts";
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
import delay, { clearDelay } from "delay";

/**
 * Makes `source` abort `controller` with its reason, until the returned
 * function is called; an aborted source aborts it at once.
 */
function follow(source: AbortSignal, controller: AbortController): () => void {
  if (source.aborted) {
    controller.abort(source.reason);
    return () => {};
  }
  const onAbort = () => controller.abort(source.reason);
  source.addEventListener("abort", onAbort, { once: true });
  return () => source.removeEventListener("abort", onAbort);
}

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
 * import { scopedSignal } from "./signals.ts";
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
  const unhooks: (() => void)[] = [];
  for (const source of sources) {
    if (controller.signal.aborted) break;
    unhooks.push(follow(source, controller));
  }
  return {
    signal: controller.signal,
    release() {
      for (const unhook of unhooks) unhook();
    },
  };
}

/** A signal that aborts after a time, and the function that cancels its timer. */
export interface Deadline extends Disposable {
  /** Aborts with a `TimeoutError` after the time. */
  readonly signal: AbortSignal;
  /** Cancels the timer (as disposing of it does). */
  clear(): void;
}

/**
 * A timeout signal whose timer is always cleared, so nothing lingers.
 * Unlike `AbortSignal.timeout` (which DIM's node makes unref'd), its timer
 * keeps the event loop alive: a one-shot command waiting only on the
 * network must not be ended by an idle event loop.
 *
 * @param ms The time, in milliseconds.
 * @returns The signal and its `clear`; disposing of it clears it too.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { deadline } from "./signals.ts";
 *
 * using timeout = deadline(10);
 * await new Promise((r) => timeout.signal.addEventListener("abort", r));
 * assert.match(String(timeout.signal.reason), /timed out after 10 ms/);
 * ```
 */
export function deadline(ms: number): Deadline {
  const controller = new AbortController();
  const time = ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`;
  const id = setTimeout(() => {
    controller.abort(new DOMException(`timed out after ${time}`, "TimeoutError"));
  }, ms);
  const clear = () => clearTimeout(id);
  return { signal: controller.signal, clear, [Symbol.dispose]: clear };
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
 * import { settlesWithin } from "./signals.ts";
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
    const unhook = follow(caller, controller);
    try {
      return await fn(controller.signal);
    } finally {
      unhook();
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
  readonly #unhook: () => void;
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
    this.#unhook = parent === undefined ? () => {} : follow(parent, this.#controller);
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
    this.#unhook();
  }
}
