/**
 * The life of a DHT node as a small state machine: `new` → `starting` →
 * `started` → `stopping` → `stopped`, with an idempotent `start()` and
 * `stop()`, a stop signal that aborts every call in progress, per-call
 * signals scoped to the node, and background work that `stop()` waits for
 * (briefly). A node that fails to start is stopped; a stopped node cannot
 * start again.
 *
 * @module
 */
import { DimError } from "../errors.ts";
import { type ScopedSignal, scopedSignal, settlesWithin } from "../platform/signals.ts";

/** A node's state. */
export type NodeState = "new" | "starting" | "started" | "stopping" | "stopped";

/** What a {@linkcode Lifecycle} runs. */
export interface LifecycleHooks {
  /** Starts the node; aborted by the caller's signal or a stop. */
  start(signal: AbortSignal): Promise<void>;
  /** Stops a node that was started (or starting); the stop signal has fired. */
  stop(): Promise<void>;
  /** Runs last on every stop, even of a node never started, and even if `stop` failed. */
  release(): void;
}

/**
 * The state machine; see the module documentation.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Lifecycle } from "./_lifecycle.ts";
 *
 * const life = new Lifecycle({ start: async () => {}, stop: async () => {}, release() {} });
 * await Promise.all([life.start(), life.start()]);
 * assert.equal(life.state, "started");
 * await life.stop();
 * await life.stop();
 * assert.equal(life.state, "stopped");
 * ```
 */
export class Lifecycle {
  readonly #hooks: LifecycleHooks;
  #state: NodeState = "new";
  #starting: Promise<void> | undefined;
  #stopping: Promise<void> | undefined;
  #stopController = new AbortController();
  readonly #background = new Set<Promise<unknown>>();

  /**
   * @param hooks What starting and stopping do.
   */
  constructor(hooks: LifecycleHooks) {
    this.#hooks = hooks;
  }

  /** The current state. */
  get state(): NodeState {
    return this.#state;
  }

  /** Fires when the node starts stopping. */
  get stopSignal(): AbortSignal {
    return this.#stopController.signal;
  }

  /**
   * Starts once; later calls share the first one's outcome.
   *
   * @param signal Aborts the start (the node is then stopped).
   * @returns When started.
   * @throws {DimError} If the node has been stopped.
   */
  start(signal?: AbortSignal): Promise<void> {
    if (this.#state === "started") return Promise.resolve();
    if (this.#state === "starting" && this.#starting !== undefined) return this.#starting;
    if (this.#state !== "new") {
      return Promise.reject(new DimError("Cannot start DHT node: it has been stopped"));
    }
    this.#state = "starting";
    this.#starting = this.#start(signal).then(
      () => {
        if (this.#state === "starting") this.#state = "started";
      },
      async (cause) => {
        // A stop() already in progress waits for this promise: do not wait for it back.
        if (this.#stopping === undefined) {
          this.#stopping = this.#stop(false);
          await this.#stopping;
        }
        throw cause;
      },
    );
    return this.#starting;
  }

  /**
   * Stops once; later calls share the first one's outcome.
   *
   * @returns When stopped.
   */
  stop(): Promise<void> {
    this.#stopping ??= this.#stop(true);
    return this.#stopping;
  }

  /**
   * A signal for one call: it follows the stop signal and `signal`.
   *
   * @param signal The caller's signal.
   * @returns The scoped signal; release it when the call ends.
   */
  scope(signal?: AbortSignal): ScopedSignal {
    return scopedSignal(signal === undefined ? [this.stopSignal] : [this.stopSignal, signal]);
  }

  /**
   * Throws unless the node is started.
   *
   * @param action What the caller wanted, for the message.
   * @throws {DimError} If the node is not started.
   */
  assertStarted(action: string): void {
    if (this.#state !== "started") {
      throw new DimError(`Cannot ${action}: the DHT node is ${this.#state}`);
    }
  }

  /**
   * Keeps background work for stop to wait for.
   *
   * @param task The work.
   */
  track(task: Promise<unknown>): void {
    const tracked = task.finally(() => this.#background.delete(tracked));
    this.#background.add(tracked);
  }

  /**
   * Waits for the background work, at most `ms`.
   *
   * @param ms The longest wait.
   * @returns Whether it all settled.
   */
  settleBackground(ms: number): Promise<boolean> {
    return settlesWithin(Promise.allSettled([...this.#background]), ms);
  }

  async #start(signal: AbortSignal | undefined): Promise<void> {
    this.#stopController = new AbortController();
    const scoped = this.scope(signal);
    try {
      await this.#hooks.start(scoped.signal);
    } finally {
      scoped.release();
    }
  }

  async #stop(waitForStart: boolean): Promise<void> {
    const wasNew = this.#state === "new";
    this.#state = "stopping";
    this.#stopController.abort(new DOMException("The DHT node is stopping", "AbortError"));
    try {
      if (!wasNew) {
        if (waitForStart) await this.#starting?.catch(() => {});
        await this.#hooks.stop();
      }
    } finally {
      this.#state = "stopped";
      this.#hooks.release();
    }
  }
}
