/**
 * The logger DIM gives libp2p: silent unless the `DEBUG` environment
 * variable asks for libp2p's debug output.
 *
 * libp2p's default logger (`@libp2p/logger`, on `weald`) builds three
 * `debug` instances for every scoped logger, and every new stream gets
 * scoped loggers from yamux and multistream-select; each instance asks
 * whether stderr is a terminal. With logging off, that was about 10% of
 * the CPU time a DHT request costs. DIM's own diagnostics go through the
 * node's `log` option instead.
 *
 * @module
 */
import type { ComponentLogger, Logger } from "@libp2p/interface";

function silent(): Logger {
  const log = (() => {}) as unknown as Logger;
  log.error = () => {};
  log.trace = () => {};
  log.enabled = false;
  log.newScope = () => log;
  return log;
}

const SILENT_LOGGER: Logger = silent();

/**
 * A {@linkcode ComponentLogger} whose loggers do nothing.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SILENT_COMPONENT_LOGGER } from "./_logger.ts";
 *
 * const log = SILENT_COMPONENT_LOGGER.forComponent("libp2p:demo");
 * log("never shown");
 * assert.equal(log.enabled, false);
 * ```
 */
export const SILENT_COMPONENT_LOGGER: ComponentLogger = Object.freeze({
  forComponent: (_name: string): Logger => SILENT_LOGGER,
});

/**
 * Whether libp2p's own debug output was asked for: `DEBUG` is set, names
 * something libp2p logs under, and the process may read it (no prompt).
 *
 * @returns `true` to keep libp2p's default logger.
 * @example
 * ```ts
 * import { libp2pDebugRequested } from "./_logger.ts";
 *
 * console.log(libp2pDebugRequested() ? "libp2p debug output on" : "libp2p quiet");
 * ```
 */
export function libp2pDebugRequested(): boolean {
  const deno = (globalThis as { Deno?: typeof Deno }).Deno;
  if (deno === undefined) return false;
  try {
    const status = deno.permissions.querySync({ name: "env", variable: "DEBUG" });
    if (status.state !== "granted") return false;
    const value = deno.env.get("DEBUG") ?? "";
    return /libp2p|\*/.test(value);
  } catch {
    return false;
  }
}
