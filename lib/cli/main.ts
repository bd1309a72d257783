/**
 * The runner of the `dim` CLI: owns argv, exit codes and the terminal, and
 * calls the library for everything else.
 *
 * Exit codes: 0 success, 1 failure, 2 usage error.
 *
 * @module
 */
import denoJson from "../../deno.json" with { type: "json" };
import { type CliIo, denoIo } from "./io.ts";

/** DIM's version, from deno.json. */
export const VERSION: string = denoJson.version;

const HELP = `dim ${VERSION} — serverless, end-to-end encrypted instant messaging

Usage: dim [global options] <command> [options]

Commands:
  init (keygen)             create your identity (asks for a passphrase)
  id                        show your user ID, fingerprint and contact string
  contact add <name> <id>   find a contact's card in the network and pin its keys
  contact verify <name>     show the safety number to compare out of band
  contact list              list contacts
  contact remove <name>     forget a contact
  send <name> <text>        send one message and exit
  inbox                     fetch and show pending messages
  chat <name>               interactive chat
  status                    peers, addresses and DHT health
  node                      run a long-lived bootstrap node

Global options:
  --home <dir>              data directory (default: $DIM_HOME, else $XDG_DATA_HOME/dim)
  --bootstrap <multiaddr>   a node to join through (repeatable)
  --listen <multiaddr>      address to listen on (repeatable)
  --json                    machine-readable output
  --debug                   stack traces on errors
  -h, --help                show help
  -V, --version             show the version
`;

/**
 * Runs the CLI.
 *
 * @param args The command-line arguments (without the program name).
 * @param io The terminal; the real process by default.
 * @returns The exit code: 0 success, 1 failure, 2 usage error.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { main } from "./main.ts";
 * let out = "";
 * const code = await main(["--version"], {
 *   stdout: (t) => out += t, stderr: () => {}, env: () => undefined,
 *   stdinIsTerminal: false, stderrIsTerminal: false,
 *   readLine: () => Promise.resolve(undefined), readSecret: () => Promise.resolve(undefined),
 * });
 * assert(code === 0 && out.startsWith("dim "));
 * ```
 */
export function main(args: readonly string[], io: CliIo = denoIo()): Promise<number> {
  if (args.length === 0 || args.includes("--help") || args.includes("-h")) {
    io.stdout(HELP);
    return Promise.resolve(args.length === 0 ? 2 : 0);
  }
  if (args.includes("--version") || args.includes("-V")) {
    io.stdout(`dim ${VERSION}\n`);
    return Promise.resolve(0);
  }
  io.stderr(`error: unknown command "${args[0]}" (see dim --help)\n`);
  return Promise.resolve(2);
}
