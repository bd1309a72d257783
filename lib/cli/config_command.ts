/**
 * `dim config`: shows or changes the settings file of the data directory.
 *
 * ```sh
 * dim config                              # show
 * dim config bootstrap /ip4/…/p2p/12D3…   # set the bootstrap nodes (none: clear)
 * dim config listen /ip4/0.0.0.0/tcp/4001 # set the listen addresses (none: default)
 * dim config public-networks 198.18.0.0/15 # networks that count as public (none: clear)
 * dim config upnp off                     # no UPnP port mapping (on: the default)
 * dim config lan-discovery off            # no mDNS on the local network (on: the default)
 * ```
 *
 * @module
 */
import {
  checkCidr,
  checkMultiaddr,
  type CliConfig,
  CONFIG_FILE,
  readConfig,
  writeConfig,
} from "./config.ts";
import { type Context, DEFAULT_LISTEN } from "./context.ts";
import { UsageError } from "./errors.ts";

/**
 * Shows the settings, or replaces the bootstrap, listen or public-networks
 * list, or turns UPnP or LAN discovery on or off.
 *
 * @param ctx The command's context.
 * @param args Nothing (show), or `bootstrap`/`listen`/`public-networks` and
 *   the new list, or `upnp` or `lan-discovery` and `on` or `off`.
 * @returns The exit code.
 * @throws {UsageError} For an unknown key, a malformed multiaddr or network.
 * @throws {StorageError} If the file cannot be read or written.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { main } from "./main.ts";
 * import { memoryIo } from "./io.ts";
 *
 * const home = await Deno.makeTempDir();
 * assert.equal(await main(["--home", home, "config", "listen", "/ip4/0.0.0.0/tcp/4001"], memoryIo()), 0);
 * const io = memoryIo();
 * assert.equal(await main(["--home", home, "config", "--json"], io), 0);
 * assert.deepEqual(JSON.parse(io.out).listen, ["/ip4/0.0.0.0/tcp/4001"]);
 * await Deno.remove(home, { recursive: true });
 * ```
 */
export async function configCommand(ctx: Context, args: readonly string[]): Promise<number> {
  const home = ctx.home;
  const [key, ...values] = args;
  let config: CliConfig = await readConfig(home);
  if (key === "bootstrap") {
    config = { ...config, bootstrap: values.map((v) => checkMultiaddr(v, { peer: true })) };
    await writeConfig(home, config);
  } else if (key === "listen") {
    config = { ...config, listen: values.map((v) => checkMultiaddr(v, { peer: false })) };
    await writeConfig(home, config);
  } else if (key === "public-networks") {
    config = { ...config, publicNetworks: values.map(checkCidr) };
    await writeConfig(home, config);
  } else if (key === "upnp" || key === "lan-discovery") {
    if (values.length !== 1 || (values[0] !== "on" && values[0] !== "off")) {
      throw new UsageError(`dim config ${key} takes on or off`);
    }
    const on = values[0] === "on";
    config = key === "upnp" ? { ...config, upnp: on } : { ...config, lanDiscovery: on };
    await writeConfig(home, config);
  } else if (key !== undefined && key !== "show") {
    throw new UsageError(
      `unknown setting "${key}" (expected bootstrap, listen, public-networks, upnp or lan-discovery)`,
    );
  } else if (values.length > 0) {
    throw new UsageError("dim config show takes no arguments");
  }
  if (ctx.json) {
    ctx.outJson({
      file: `${home}/${CONFIG_FILE}`,
      ...config,
      publicNetworks: config.publicNetworks ?? [],
      upnp: config.upnp ?? true,
      lanDiscovery: config.lanDiscovery ?? true,
    });
    return 0;
  }
  ctx.out(`Settings in ${home}/${CONFIG_FILE}:`);
  ctx.out(
    `  bootstrap: ${config.bootstrap.length ? config.bootstrap.join("\n             ") : "(none)"}`,
  );
  ctx.out(
    `  listen:    ${
      config.listen.length
        ? config.listen.join("\n             ")
        : `(default ${DEFAULT_LISTEN[0]})`
    }`,
  );
  const networks = config.publicNetworks ?? [];
  ctx.out(
    `  public-networks: ${networks.length ? networks.join(", ") : "(none: libp2p's rule alone)"}`,
  );
  ctx.out(`  upnp:      ${config.upnp === false ? "off" : "on (the default)"}`);
  ctx.out(`  lan-discovery: ${config.lanDiscovery === false ? "off" : "on (the default)"}`);
  return 0;
}
