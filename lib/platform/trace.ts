/**
 * Named points along a message's path, timed by `bench/trace.ts`: each
 * {@linkcode tracePoint} call hands its name to the sink set with
 * {@linkcode setTraceSink}, and does nothing while none is set (the
 * default). Nothing is recorded or logged here.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { setTraceSink, tracePoint } from "./trace.ts";
 *
 * const seen: string[] = [];
 * setTraceSink((point) => seen.push(point));
 * tracePoint("send: start");
 * setTraceSink(undefined);
 * tracePoint("not seen");
 * assert.deepEqual(seen, ["send: start"]);
 * ```
 *
 * @module
 */

/** Receives each point's name as it is passed. */
export type TraceSink = (point: string) => void;

let sink: TraceSink | undefined;

/**
 * Sets where points go, or stops them (`undefined`).
 *
 * @param next The sink.
 */
export function setTraceSink(next: TraceSink | undefined): void {
  sink = next;
}

/**
 * Passes a point to the sink, if one is set.
 *
 * @param point Its name.
 */
export function tracePoint(point: string): void {
  sink?.(point);
}
