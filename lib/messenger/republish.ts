/**
 * Republishing the contact card when the node's addresses change, without
 * publishing on every change: a relay reservation made, lost or renewed, a
 * UPnP mapping, or a new reachability each fire an event, often several
 * within a few milliseconds (two relays reserved at once).
 *
 * {@linkcode Republisher} coalesces a burst into one publication: the first
 * change starts a quiet period of {@linkcode CARD_CHANGE_QUIET_MS}, and
 * changes within it join the same publication. Publications start at most
 * once per {@linkcode CARD_CHANGE_MIN_INTERVAL_MS}; a change during a
 * publication, or too soon after one, is published once the interval is
 * over, so the last addresses always reach the card.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Republisher } from "./republish.ts";
 *
 * let published = 0;
 * const r = new Republisher(async () => void published++, { quietMs: 10, minIntervalMs: 50 });
 * r.changed();
 * r.changed();
 * await new Promise((done) => setTimeout(done, 30));
 * assert.equal(published, 1);
 * r.stop();
 * ```
 *
 * @module
 */

/**
 * How long after an address change the card is published, gathering the
 * changes that come with it: reservations on two relays, and the
 * reachability change that caused them, arrive within about a second.
 */
export const CARD_CHANGE_QUIET_MS = 1_000;

/**
 * The least time between two publications caused by address changes. A
 * publication is a DHT put to 20 peers; a relay that flaps, or renewals that
 * re-announce an address, must not turn into a put storm, while a lost relay
 * (replaced within 10 s) still reaches the card within about 10 s.
 */
export const CARD_CHANGE_MIN_INTERVAL_MS = 10_000;

/**
 * The longest wait before a failed publication is tried again. A failure
 * is tried again after {@linkcode CARD_CHANGE_MIN_INTERVAL_MS}, and each
 * further failure in a row doubles that: a node
 * that lost the network retries a few times a minute at first, then every
 * five minutes, until a publication goes through.
 */
export const CARD_RETRY_MAX_MS = 5 * 60_000;

/** Options of {@linkcode Republisher}; the timers are injectable for tests. */
export interface RepublisherOptions {
  /** The quiet period. Default {@linkcode CARD_CHANGE_QUIET_MS}. */
  readonly quietMs?: number;
  /** The least time between publications. Default {@linkcode CARD_CHANGE_MIN_INTERVAL_MS}. */
  readonly minIntervalMs?: number;
  /** Clock in ms. Default `Date.now`. */
  readonly clock?: () => number;
  /** Starts a timer. Default `setTimeout`, unref'd so it never keeps the process alive. */
  readonly setTimer?: (run: () => void, ms: number) => unknown;
  /** Cancels a timer. Default `clearTimeout`. */
  readonly clearTimer?: (timer: unknown) => void;
}

/** Coalesces address changes into rate-limited card publications. */
export class Republisher {
  readonly #publish: () => Promise<void>;
  readonly #quietMs: number;
  readonly #minIntervalMs: number;
  readonly #clock: () => number;
  readonly #setTimer: (run: () => void, ms: number) => unknown;
  readonly #clearTimer: (timer: unknown) => void;
  #timer: unknown;
  #running = false;
  #again = false;
  #lastStart = -Infinity;
  #stopped = false;
  #failures = 0;

  /**
   * Makes a republisher; nothing happens until {@linkcode Republisher.changed}.
   *
   * @param publish Publishes the card; a failure is tried again, after
   *   an interval that doubles with each failure in a row (at most
   *   {@linkcode CARD_RETRY_MAX_MS}).
   * @param options The quiet period, the interval and the timers.
   */
  constructor(publish: () => Promise<void>, options: RepublisherOptions = {}) {
    this.#publish = publish;
    this.#quietMs = options.quietMs ?? CARD_CHANGE_QUIET_MS;
    this.#minIntervalMs = options.minIntervalMs ?? CARD_CHANGE_MIN_INTERVAL_MS;
    this.#clock = options.clock ?? Date.now;
    this.#setTimer = options.setTimer ?? ((run, ms) => {
      const id = setTimeout(run, ms);
      Deno.unrefTimer(id);
      return id;
    });
    this.#clearTimer = options.clearTimer ??
      ((t) => clearTimeout(t as ReturnType<typeof setTimeout>));
  }

  /** Whether a publication is waiting for its timer. */
  get pending(): boolean {
    return this.#timer !== undefined;
  }

  /** Notes a change: the card is published after the quiet period, within the rate limit. */
  changed(): void {
    if (this.#stopped) return;
    if (this.#running) {
      this.#again = true;
      return;
    }
    if (this.#timer !== undefined) return;
    const backoff = this.#failures === 0 ? 1 : 2 ** (this.#failures - 1);
    const interval = Math.min(this.#minIntervalMs * backoff, CARD_RETRY_MAX_MS);
    const wait = Math.max(this.#quietMs, this.#lastStart + interval - this.#clock());
    this.#timer = this.#setTimer(() => this.#fire(), wait);
  }

  /** Cancels a waiting publication; later changes are ignored. Idempotent. */
  stop(): void {
    this.#stopped = true;
    if (this.#timer !== undefined) this.#clearTimer(this.#timer);
    this.#timer = undefined;
  }

  #fire(): void {
    this.#timer = undefined;
    if (this.#stopped) return;
    this.#running = true;
    this.#lastStart = this.#clock();
    let publishing: Promise<void>;
    try {
      publishing = this.#publish();
    } catch (err) {
      publishing = Promise.reject(err);
    }
    publishing.then(
      () => this.#failures = 0,
      () => {
        this.#failures++;
        this.#again = true;
      },
    ).finally(() => {
      this.#running = false;
      if (this.#again) {
        this.#again = false;
        this.changed();
      }
    });
  }
}
