/**
 * `dim node`: a long-running bootstrap and storage node without a user. It
 * keeps the DHT alive, stores records and offline users' mailboxes, relays
 * for users behind NAT, prints its multiaddrs, and runs until SIGINT or
 * SIGTERM, then stops cleanly. `--announce` gives the addresses others
 * should dial when they differ from the listen addresses (a port forwarded
 * by hand); the settings' public networks, UPnP (unless `DIM_UPNP=off`) and
 * LAN discovery (unless `DIM_LAN=off`) apply as for a user's node.
 *
 * @module
 */
import { createStorageNode } from "../storage_node.ts";
import { checkMultiaddr } from "./config.ts";
import type { Context } from "./context.ts";
import { CliError } from "./errors.ts";
import { withSpinner } from "./spinner.ts";

/**
 * Runs a storage node in the data directory (its own peer key, records and
 * mailboxes live there) until the process is told to stop.
 *
 * @param ctx The command's context; `--listen` picks the addresses (use a
 *   fixed port, such as `/ip4/0.0.0.0/tcp/4001`, for a bootstrap node).
 * @param options `announce`: the multiaddrs to announce instead of the
 *   listen addresses.
 * @returns The exit code, once stopped.
 * @throws {UsageError} If an `--announce` address is malformed.
 * @throws {StorageError} If another dim process uses the data directory.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { main } from "./main.ts";
 * import { memoryIo } from "./io.ts";
 *
 * const home = await Deno.makeTempDir();
 * // No UPnP or mDNS on the machine's network from an example.
 * const io = memoryIo({ env: { DIM_UPNP: "off", DIM_LAN: "off" } });
 * const running = main(["--home", home, "node", "--listen", "/ip4/127.0.0.1/tcp/0", "--json"], io);
 * while (!io.out.includes("\n")) await new Promise((r) => setTimeout(r, 20));
 * assert.match(JSON.parse(io.out).addresses[0], /\/p2p\//);
 * io.signal("SIGTERM");
 * assert.equal(await running, 0);
 * await Deno.remove(home, { recursive: true });
 * ```
 */
export async function nodeCommand(
  ctx: Context,
  options: { readonly announce?: readonly string[] | undefined } = {},
): Promise<number> {
  const onSignal = ctx.io.onSignal;
  if (onSignal === undefined) throw new CliError("cannot run a node here: no signals to stop it");
  const listen = await ctx.listen();
  const bootstrap = await ctx.bootstrap();
  const announce = (options.announce ?? []).map((a) => checkMultiaddr(a, { peer: false }));
  const publicNetworks = await ctx.publicNetworks();
  const upnp = await ctx.upnp();
  const lanDiscovery = await ctx.lanDiscovery();
  const home = ctx.home;
  const debug = ctx.options.debug ?? false;
  const server = await withSpinner(ctx.io, "starting the node…", () =>
    createStorageNode({
      home,
      listen,
      bootstrap,
      ...(announce.length > 0 ? { announce } : {}),
      publicNetworks,
      upnp,
      lanDiscovery,
      node: debug ? { log: (m: string) => ctx.note(`debug: ${m}`) } : {},
    }));
  try {
    if (ctx.json) {
      ctx.outJson({ peerId: server.node.peerId, addresses: server.addresses, home });
    } else {
      ctx.out(`DIM node ${server.node.peerId} running in ${home}`);
      ctx.out("Its addresses (give one to others as --bootstrap):");
      for (const a of server.addresses) ctx.out(`  ${a}`);
      ctx.note("Press Ctrl-C to stop.");
    }
    const signal = await new Promise<string>((resolve) => {
      // Signal listeners do not keep the process alive; this timer does.
      const keepAlive = setInterval(() => {}, 60_000);
      const off = onSignal((s) => {
        clearInterval(keepAlive);
        off();
        resolve(s);
      });
    });
    if (!ctx.json) ctx.note(`${signal}: stopping…`);
  } finally {
    await server.stop();
  }
  if (!ctx.json) ctx.note("stopped");
  return 0;
}
