/**
 * `dim daemon`: keeps the user's node online — live delivery, mailbox
 * polling, relaying where reachable, republishing the contact card and
 * prekeys — and serves the local JSON-RPC API on `<home>/dim.sock` for
 * other programs, until SIGINT or SIGTERM; then it closes the socket and
 * stops the messenger, so everything is flushed. It logs one line per
 * notable event to stderr (never a message's text).
 *
 * @module
 */
import type { Messenger } from "../messenger/messenger.ts";
import type { Context } from "./context.ts";
import { CliError } from "./errors.ts";
import type { CliIo } from "./io.ts";
import { serveLocalApi } from "./remote.ts";

/**
 * Runs the daemon until the process is told to stop.
 *
 * @param ctx The command's context (`--listen`, `--bootstrap`, the passphrase).
 * @param options `version`: DIM's version, for the API's `hello`.
 * @returns The exit code, 0 once stopped.
 * @throws {CliError} If there is no identity, or nothing can stop it (no signals).
 * @throws {StorageError} If another dim process uses the data directory.
 * @throws {DimError} If the socket cannot be made.
 * @example
 * ```ts ignore
 * import { main } from "./main.ts";
 *
 * // Runs until SIGINT or SIGTERM.
 * Deno.exitCode = await main(["daemon"]);
 * ```
 */
export async function daemonCommand(
  ctx: Context,
  options: { readonly version: string },
): Promise<number> {
  const onSignal = ctx.io.onSignal;
  if (onSignal === undefined) throw new CliError("cannot run a daemon here: no signals to stop it");
  const log = (line: string) => ctx.note(`${new Date().toISOString()} ${line}`);
  const bootstrap = await ctx.bootstrap();
  const lanDiscovery = await ctx.lanDiscovery();
  await ctx.requireIdentity();
  // Asked before the handler below exists, so Ctrl-C at the prompt still ends dim.
  await ctx.passphrase();
  // From here on a signal stops the daemon, even one that comes while it
  // starts (a service manager may stop it at any time): it stops once started.
  const stop = stopRequest(onSignal);
  try {
    // Offline at first is fine: the node keeps trying, and what is sent is queued.
    const messenger = await ctx.openMessenger({ allowOffline: true });
    try {
      await serve(ctx, messenger, { ...options, bootstrap, lanDiscovery, log, stop: stop.signal });
    } finally {
      await messenger.stop();
    }
  } finally {
    stop.off();
  }
  log("stopped");
  return 0;
}

// The first SIGINT or SIGTERM, and how to stop listening for them.
function stopRequest(
  onSignal: NonNullable<CliIo["onSignal"]>,
): { readonly signal: Promise<string>; readonly off: () => void } {
  let off = () => {};
  const signal = new Promise<string>((resolve) => {
    // Signal listeners do not keep the process alive; this timer does.
    const keepAlive = setInterval(() => {}, 60_000);
    const unhook = onSignal((s) => {
      clearInterval(keepAlive);
      unhook();
      resolve(s);
    });
    off = () => {
      clearInterval(keepAlive);
      unhook();
    };
  });
  return { signal, off };
}

// Serves the API over the running messenger until `stop` settles.
async function serve(
  ctx: Context,
  messenger: Messenger,
  options: {
    readonly version: string;
    readonly bootstrap: readonly string[];
    readonly lanDiscovery: boolean;
    readonly log: (line: string) => void;
    readonly stop: Promise<string>;
  },
): Promise<void> {
  const { log } = options;
  // Only the changes between online and offline, not every peer.
  let online = messenger.node.connections > 0;
  const onConnect = () => {
    if (online) return;
    online = true;
    log("online: connected to the network");
  };
  const onDisconnect = () => {
    if (!online || messenger.node.connections > 0) return;
    online = false;
    log("offline: no connection left; what is sent is queued until DIM connects");
  };
  // The messenger holds the data directory's lock: a socket there now is stale.
  const server = await serveLocalApi(ctx, messenger, { version: options.version, log });
  messenger.node.addEventListener("peer:connect", onConnect);
  messenger.node.addEventListener("peer:disconnect", onDisconnect);
  try {
    if (ctx.json) {
      ctx.outJson({
        id: messenger.id,
        peerId: messenger.node.peerId,
        socket: server.path,
        addresses: messenger.addresses,
      });
    }
    log(
      `dim daemon for ${messenger.id} (${messenger.profile.displayName}) running, ` +
        `${online ? "online" : "offline for now"}; API on ${server.path}`,
    );
    log(`${await options.stop}: stopping…`);
  } finally {
    messenger.node.removeEventListener("peer:connect", onConnect);
    messenger.node.removeEventListener("peer:disconnect", onDisconnect);
    await server.close();
  }
}
