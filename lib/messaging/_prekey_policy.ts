/**
 * The session manager's rules for one-time prekeys that others may use
 * first: how many strangers may use up ({@linkcode PrekeyBudget}), and
 * which one a contact's retry takes ({@linkcode retryPrekeyChoice}).
 *
 * The budget is a token bucket of `burst` prekeys, one more every
 * `refillMs`.
 *
 * A first message names the one-time prekey its sender chose, and X3DH
 * needs it to open the message; the recipient decides only whether to
 * delete it afterwards. Within the budget a stranger's prekey is deleted
 * as usual; beyond it the prekey is kept and stays on offer, so a flood of
 * fresh identities neither empties the bundle nor makes it churn. Such a
 * session has the forward secrecy of X3DH with the signed prekey alone
 * until the prekey is used again and deleted. Contacts' first messages
 * never count.
 *
 * The bucket lives in memory: a restart gives strangers a new burst, which
 * costs at most `burst` prekeys per restart, and an attacker cannot cause
 * restarts.
 *
 * @module
 */

import { decodeX3dhHeader } from "../crypto/x3dh.ts";
import type { PrekeyBundle } from "../record/prekey.ts";

/** A token bucket of one-time prekeys for strangers. */
export class PrekeyBudget {
  readonly #burst: number;
  readonly #refillMs: number;
  #tokens: number;
  #at: number;

  /**
   * Makes a full bucket.
   *
   * @param burst Prekeys that may be used up at once, 0 or more.
   * @param refillMs Milliseconds per prekey added back; above 0.
   * @param now The time in ms.
   * @throws {RangeError} If `burst` is negative or `refillMs` is not above 0.
   */
  constructor(burst: number, refillMs: number, now: number) {
    if (!(burst >= 0) || !(refillMs > 0)) {
      throw new RangeError(
        `Cannot make a prekey budget: burst ${burst} or refill ${refillMs} ms is out of range`,
      );
    }
    this.#burst = burst;
    this.#refillMs = refillMs;
    this.#tokens = burst;
    this.#at = now;
  }

  #refill(now: number): void {
    if (now > this.#at) {
      this.#tokens = Math.min(this.#burst, this.#tokens + (now - this.#at) / this.#refillMs);
    }
    this.#at = now;
  }

  /**
   * Whether a stranger's first message may use up its one-time prekey now.
   *
   * @param now The time in ms.
   * @returns `true` if a whole prekey is left in the budget.
   */
  allows(now: number): boolean {
    this.#refill(now);
    return this.#tokens >= 1;
  }

  /**
   * Spends one prekey: call once the message that used it is stored.
   *
   * @param now The time in ms.
   */
  spend(now: number): void {
    this.#refill(now);
    this.#tokens = Math.max(0, this.#tokens - 1);
  }
}

/**
 * Which one-time prekey a new session should use after the peer answered
 * "no session" to the current one. If that is a session we started and the
 * peer never answered, the prekey it named may have been used first by
 * someone else (a stranger, between our lookup of the bundle and our
 * message). A bundle that still lists that prekey is no newer than the one
 * we used, and others of its prekeys may be used up as well: the new
 * session then takes none (X3DH with the signed prekey alone, which cannot
 * collide), so one retry is enough. A bundle that no longer lists it is
 * newer, and one of its prekeys is taken as usual.
 *
 * @param initialHeader The X3DH header of the current session if we
 *   started it and the peer has not answered, else `undefined`.
 * @param bundle The bundle found for the new session.
 * @returns `null` for no one-time prekey, `undefined` for one at random.
 */
export function retryPrekeyChoice(
  initialHeader: Uint8Array | undefined,
  bundle: PrekeyBundle,
): null | undefined {
  if (initialHeader === undefined) return undefined;
  let used: number | null;
  try {
    used = decodeX3dhHeader(initialHeader).oneTimePrekeyId;
  } catch {
    return undefined;
  }
  if (used === null) return undefined;
  return bundle.oneTimePrekeys.some((k) => k.id === used) ? null : undefined;
}
