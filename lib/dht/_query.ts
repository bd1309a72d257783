/**
 * The frame every networked call of a DHT node runs in
 * ({@linkcode runQuery}): one signal for the node's life, the caller's
 * signal and a time limit, and one wording of its failures.
 *
 * @module
 */
import { deadline, scopedSignal } from "../platform/signals.ts";
import { DimError, PeerUnreachableError } from "../errors.ts";
import { QUERY_TIMEOUT_MS } from "./constants.ts";
import { describe } from "./_peers.ts";

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
 * import { runQuery } from "./_query.ts";
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
