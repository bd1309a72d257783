/**
 * The `dim` command line.
 *
 * ```sh
 * deno run -A cli.ts --help
 * ```
 *
 * @module
 */
import { main } from "./lib/cli/main.ts";

if (import.meta.main) {
  // Set the code and let the event loop drain, so pending writes finish.
  Deno.exitCode = await main(Deno.args);
}
