/**
 * The `dim` command line: a serverless, end-to-end encrypted messenger.
 *
 * ```sh
 * deno run -A cli.ts --help
 * deno task compile   # a single dist/dim binary
 * ```
 *
 * `main(args, io)` runs a command and returns its exit code (0 success,
 * 1 failure, 2 usage); run as a program, the code becomes the process's exit
 * code once the event loop has drained, so no pending write is cut off.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { main } from "./cli.ts";
 * import { memoryIo } from "./lib/cli/io.ts";
 *
 * const io = memoryIo();
 * assert.equal(await main(["--version"], io), 0);
 * assert.match(io.out, /^dim /);
 * ```
 *
 * @module
 */
import { main } from "./lib/cli/main.ts";

export { main };

if (import.meta.main) {
  // Set the code and let the event loop drain, so pending writes finish.
  Deno.exitCode = await main(Deno.args);
}
