/**
 * The decision rule of DIM's reachability check, without sockets: the
 * results of dial-backs, one per checking peer, kept for
 * `REACH_RESULT_TTL_MS`, and {@linkcode decideReachability} over them.
 *
 * - **public**: at least `REACH_PUBLIC_SUCCESSES` (2) distinct peers
 *   dialled the node back on a public address (`isPublicAddress`, with the
 *   node's `publicNetworks`);
 * - **private**: at least `REACH_PRIVATE_FAILURES` (2) distinct peers
 *   failed to dial it back and none succeeded, on any address;
 * - otherwise no decision: the node keeps its status (at first "unknown").
 *   A dial-back that succeeded on a non-public address (loopback, a LAN)
 *   is a success that is not public: it keeps a node from "private" but
 *   cannot make it "public", so loopback tests, the demo and LANs stay
 *   "unknown" and behave as before.
 *
 * A peer's newer result replaces its older one; refusals (rate limit, busy)
 * are not results.
 *
 * @module
 */

/** The outcome of one peer's dial-back. */
export type ReachOutcome = "public" | "reachable" | "failed";

/** The thresholds of the rule. */
export interface ReachRule {
  /** Distinct public successes that make a node public. */
  readonly publicSuccesses: number;
  /** Distinct failures, with no success, that make a node private. */
  readonly privateFailures: number;
  /** How long a result counts. */
  readonly ttlMs: number;
}

/** Dial-back results by checking peer, each with its time. */
export class ReachVotes {
  readonly #rule: ReachRule;
  readonly #votes = new Map<string, { outcome: ReachOutcome; at: number }>();
  readonly #maxEntries: number;

  /**
   * @param rule The thresholds.
   * @param maxEntries The most peers remembered (the oldest result goes first).
   */
  constructor(rule: ReachRule, maxEntries = 64) {
    this.#rule = rule;
    this.#maxEntries = maxEntries;
  }

  /**
   * Records a peer's result, replacing its earlier one.
   *
   * @param peer The checking peer's ID.
   * @param outcome What its dial-back gave.
   * @param now The time, in ms.
   */
  add(peer: string, outcome: ReachOutcome, now: number): void {
    this.#votes.delete(peer);
    this.#votes.set(peer, { outcome, at: now });
    while (this.#votes.size > this.#maxEntries) {
      this.#votes.delete(this.#votes.keys().next().value!);
    }
  }

  /** Forgets every result (after the node's addresses changed). */
  clear(): void {
    this.#votes.clear();
  }

  /**
   * The peers whose results still count.
   *
   * @param now The time, in ms.
   * @returns Their IDs.
   */
  peers(now: number): string[] {
    this.#prune(now);
    return [...this.#votes.keys()];
  }

  /**
   * Applies the rule to the results that still count.
   *
   * @param now The time, in ms.
   * @returns "public", "private", or `undefined` when they do not decide.
   */
  decide(now: number): "public" | "private" | undefined {
    this.#prune(now);
    return decideReachability([...this.#votes.values()].map((vote) => vote.outcome), this.#rule);
  }

  #prune(now: number): void {
    for (const [peer, vote] of this.#votes) {
      if (now - vote.at > this.#rule.ttlMs) this.#votes.delete(peer);
    }
  }
}

/**
 * The rule itself, over one outcome per distinct peer; see the module
 * documentation.
 *
 * @param outcomes One outcome per peer.
 * @param rule The thresholds.
 * @returns "public", "private", or `undefined` when they do not decide.
 */
export function decideReachability(
  outcomes: readonly ReachOutcome[],
  rule: Pick<ReachRule, "publicSuccesses" | "privateFailures">,
): "public" | "private" | undefined {
  const count = (outcome: ReachOutcome) => outcomes.filter((o) => o === outcome).length;
  if (count("public") >= rule.publicSuccesses) return "public";
  if (count("public") + count("reachable") === 0 && count("failed") >= rule.privateFailures) {
    return "private";
  }
  return undefined;
}

/**
 * A rate limiter by key: a key may pass once per interval. It remembers at
 * most `maxEntries` keys (the oldest are forgotten first), so a flood of new
 * keys costs bounded memory.
 */
export class IntervalLimiter {
  readonly #intervalMs: number;
  readonly #maxEntries: number;
  readonly #last = new Map<string, number>();

  /**
   * @param intervalMs How long a key waits between two passes.
   * @param maxEntries How many keys are remembered.
   */
  constructor(intervalMs: number, maxEntries: number) {
    this.#intervalMs = intervalMs;
    this.#maxEntries = maxEntries;
  }

  /**
   * Whether every key may pass now; if so, records the pass for all of them.
   *
   * @param keys The keys (a peer ID, an IP address).
   * @param now The time, in ms.
   * @returns Whether they pass.
   */
  pass(keys: readonly string[], now: number): boolean {
    for (const key of keys) {
      const last = this.#last.get(key);
      if (last !== undefined && now - last < this.#intervalMs) return false;
    }
    for (const key of keys) {
      this.#last.delete(key);
      this.#last.set(key, now);
    }
    while (this.#last.size > this.#maxEntries) {
      this.#last.delete(this.#last.keys().next().value!);
    }
    return true;
  }
}
