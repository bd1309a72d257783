/**
 * `dim config`: shows or changes the settings file of the data directory.
 *
 * ```sh
 * dim config                              # show
 * dim config bootstrap /ip4/…/p2p/12D3…   # set the bootstrap nodes (none: clear)
 * dim config listen /ip4/0.0.0.0/tcp/4001 # set the listen addresses (none: default)
 * ```
 *
 * @module
 */
import { checkMultiaddr, type CliConfig, CONFIG_FILE, readConfig, writeConfig } from "./config.ts";
import { type Context, DEFAULT_LISTEN } from "./context.ts";
import { UsageError } from "./errors.ts";

/**
 * Shows the settings, or replaces the bootstrap or listen list.
 *
 * @param ctx The command's context.
 * @param args Nothing (show), or `bootstrap`/`listen` and the new list.
 * @returns The exit code.
 * @throws {UsageError} For an unknown key or a malformed multiaddr.
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
  } else if (key !== undefined && key !== "show") {
    throw new UsageError(`unknown setting "${key}" (expected bootstrap or listen)`);
  } else if (values.length > 0) {
    throw new UsageError("dim config show takes no arguments");
  }
  if (ctx.json) {
    ctx.outJson({ file: `${home}/${CONFIG_FILE}`, ...config });
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
  return 0;
}
