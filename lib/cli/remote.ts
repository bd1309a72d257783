/**
 * One process owns a data directory: when a `dim daemon` or a `dim chat`
 * holds it, the other commands go through the local API it serves on
 * `<home>/dim.sock` instead of failing on the directory's lock. This module
 * finds that process ({@linkcode runningDim}) and serves the API from a
 * command that holds the directory ({@linkcode serveLocalApi}).
 *
 * The order: a command tries the lock first; if it is free, the command
 * opens the directory itself as it always did; if another process holds
 * it, the command connects to the socket; if nothing answers there, it says
 * so.
 *
 * @module
 */
import { connectDaemon, type DaemonClient } from "../daemon/client.ts";
import { DaemonError, DaemonErrorCode, DaemonNotRunningError } from "../daemon/protocol.ts";
import { type DaemonServer, serveDaemon } from "../daemon/server.ts";
import type { Messenger } from "../messenger/messenger.ts";
import { lockDataDir } from "../platform/lock.ts";
import { dataPaths } from "../platform/paths.ts";
import type { Context } from "./context.ts";
import { CliError } from "./errors.ts";
import { lastShownSeq, markShown } from "./marks.ts";
import { statusReport } from "./status.ts";

/**
 * The running dim that holds the data directory, connected, or `undefined`
 * when the directory is free (or cannot be locked for another reason, which
 * the command then reports when it opens the directory itself).
 *
 * @param ctx The command's context.
 * @returns A client of the daemon or chat that holds the directory; close it when done.
 * @throws {CliError} If another process holds the directory and serves no API
 *   (an older dim, `dim node`, or a daemon still starting).
 * @throws {DaemonError} If the daemon refused the connection.
 */
export async function runningDim(ctx: Context): Promise<DaemonClient | undefined> {
  const home = ctx.home;
  try {
    lockDataDir(home).release();
    return undefined;
  } catch (err) {
    if (!(err instanceof Error) || !/another dim process/.test(err.message)) return undefined;
  }
  try {
    return await connectDaemon(home);
  } catch (err) {
    if (!(err instanceof DaemonNotRunningError)) throw err;
    throw new CliError(
      `cannot use data directory ${home}: another dim process is using it, and no dim daemon ` +
        `or dim chat answers on ${dataPaths(home).socket} (one still starting, or dim node?): ` +
        "try again in a moment, or stop it",
      { cause: err },
    );
  }
}

/**
 * Runs a command through the running dim that holds the data directory, or
 * on its own when the directory is free.
 *
 * @param ctx The command's context.
 * @param remote What to do through the running dim's API.
 * @param local What to do alone (the command as it always ran).
 * @returns What either returned.
 * @throws Whatever they throw, and what {@linkcode runningDim} throws.
 */
export async function viaRunningDim<T>(
  ctx: Context,
  remote: (dim: DaemonClient) => Promise<T>,
  local: () => Promise<T>,
): Promise<T> {
  const dim = await runningDim(ctx);
  if (dim === undefined) return await local();
  try {
    return await remote(dim);
  } finally {
    await dim.close();
  }
}

/**
 * Whether an error is the daemon's answer with one of the codes.
 *
 * @param err What was thrown.
 * @param codes `DaemonErrorCode` values.
 * @returns Whether it is a {@linkcode DaemonError} with one of them.
 */
export function isDaemonError(err: unknown, ...codes: number[]): err is DaemonError {
  return err instanceof DaemonError && codes.includes(err.code);
}

/** The codes of a networked call that found nobody or ran out of time. */
export const UNREACHED_CODES: readonly number[] = [
  DaemonErrorCode.PeerUnreachable,
  DaemonErrorCode.Timeout,
];

/**
 * Serves the local API over a messenger this command opened, as
 * `dim daemon` does, so other commands can use the data directory meanwhile.
 *
 * @param ctx The command's context (bootstrap nodes and LAN discovery for `status`).
 * @param messenger The running messenger; it holds the data directory.
 * @param options DIM's version for `hello`; `log` for the server's lines.
 * @returns The server; close it before stopping the messenger.
 * @throws {DimError} If the socket cannot be made.
 */
export async function serveLocalApi(
  ctx: Context,
  messenger: Messenger,
  options: { readonly version: string; readonly log?: (line: string) => void },
): Promise<DaemonServer> {
  const bootstrap = await ctx.bootstrap();
  const lanDiscovery = await ctx.lanDiscovery();
  const home = messenger.profile.home;
  return await serveDaemon(messenger, {
    path: dataPaths(home).socket,
    version: options.version,
    status: () => statusReport(messenger, { bootstrap, lanDiscovery }),
    shown: {
      get: () => lastShownSeq(messenger.profile),
      mark: (seq) => markShown(messenger.profile, seq),
    },
    downloadDir: `${home}/files`,
    ...(options.log === undefined ? {} : { log: options.log }),
  });
}
