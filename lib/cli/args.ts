/**
 * The command line of `dim`: every option any command knows, parsed once
 * with `node:util`'s `parseArgs`, so global options may come before or
 * after the command. Which options a command accepts is checked afterwards.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseCommandLine } from "./args.ts";
 *
 * const cl = parseCommandLine(["send", "bob", "hello", "--home", "/tmp/a"]);
 * assert.equal(cl.command, "send");
 * assert.deepEqual(cl.positionals, ["bob", "hello"]);
 * assert.equal(cl.values.home, "/tmp/a");
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";
import { UsageError } from "./errors.ts";

const OPTIONS = {
  home: { type: "string" },
  bootstrap: { type: "string", multiple: true },
  listen: { type: "string", multiple: true },
  json: { type: "boolean" },
  debug: { type: "boolean" },
  help: { type: "boolean", short: "h" },
  version: { type: "boolean", short: "V" },
  "passphrase-file": { type: "string" },
  timeout: { type: "string" },
  name: { type: "string" },
  force: { type: "boolean" },
  "weak-passphrase": { type: "boolean" },
  file: { type: "string" },
  confirm: { type: "boolean" },
  all: { type: "boolean" },
  limit: { type: "string" },
  announce: { type: "string", multiple: true },
} as const;

/** The name of an option, without its dashes. */
export type OptionName = keyof typeof OPTIONS;

/** The options every command accepts. */
export const GLOBAL_OPTIONS: readonly OptionName[] = [
  "home",
  "bootstrap",
  "listen",
  "json",
  "debug",
  "help",
  "version",
  "passphrase-file",
  "timeout",
];

/** The option values found on a command line. */
export interface OptionValues {
  /** `--home <dir>`. */
  readonly home?: string;
  /** `--bootstrap <multiaddr>`, repeatable. */
  readonly bootstrap?: string[];
  /** `--listen <multiaddr>`, repeatable. */
  readonly listen?: string[];
  /** `--json`. */
  readonly json?: boolean;
  /** `--debug`. */
  readonly debug?: boolean;
  /** `--help`, `-h`. */
  readonly help?: boolean;
  /** `--version`, `-V`. */
  readonly version?: boolean;
  /** `--passphrase-file <path>`. */
  readonly "passphrase-file"?: string;
  /** `--timeout <seconds>`. */
  readonly timeout?: string;
  /** `--name <display name>` (init). */
  readonly name?: string;
  /** `--force` (init). */
  readonly force?: boolean;
  /** `--weak-passphrase` (init): accept a passphrase that is easy to guess. */
  readonly "weak-passphrase"?: boolean;
  /** `--file <path>` (send). */
  readonly file?: string;
  /** `--confirm` (contact verify). */
  readonly confirm?: boolean;
  /** `--all` (inbox). */
  readonly all?: boolean;
  /** `--limit <n>` (chat, inbox). */
  readonly limit?: string;
  /** `--announce <multiaddr>` (node), repeatable. */
  readonly announce?: string[];
}

/** A parsed command line. */
export interface CommandLine {
  /** The command (the first positional argument), if any. */
  readonly command: string | undefined;
  /** The positional arguments after the command. */
  readonly positionals: readonly string[];
  /** The options. */
  readonly values: OptionValues;
  /** The options that were given, in order, by name. */
  readonly given: readonly OptionName[];
}

/**
 * Parses `dim`'s arguments. `--` ends the options, so a message may start
 * with a dash.
 *
 * @param args The arguments, without the program name.
 * @returns The command, its positional arguments and the options.
 * @throws {UsageError} For an unknown option or a missing option value.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseCommandLine } from "./args.ts";
 * import { UsageError } from "./errors.ts";
 *
 * assert.deepEqual(parseCommandLine(["send", "bob", "--", "-1"]).positionals, ["bob", "-1"]);
 * assert.throws(() => parseCommandLine(["--nope"]), UsageError);
 * ```
 */
export function parseCommandLine(args: readonly string[]): CommandLine {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...args],
      options: OPTIONS,
      allowPositionals: true,
      strict: true,
      tokens: true,
    });
  } catch (cause) {
    const message = cause instanceof Error ? cause.message : String(cause);
    const unknown = /^Unknown option '([^']+)'/.exec(message);
    if (unknown) throw new UsageError(`unknown option ${unknown[1]}`, { cause });
    const missing = /^Option '([^' ]+)[^']*' argument missing/.exec(message);
    if (missing) throw new UsageError(`option ${missing[1]} needs a value`, { cause });
    throw new UsageError(message.replace(/\.$/, "").toLowerCase(), { cause });
  }
  const [command, ...positionals] = parsed.positionals;
  const given = parsed.tokens.flatMap((t) => t.kind === "option" ? [t.name as OptionName] : []);
  return { command, positionals, values: parsed.values as OptionValues, given };
}

/**
 * Checks that a command was given only options it accepts.
 *
 * @param cl The parsed command line.
 * @param allowed The command's own options (global ones are always allowed).
 * @param usage The command's name, for the message.
 * @throws {UsageError} Naming the first option the command does not take.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkOptions, parseCommandLine } from "./args.ts";
 *
 * assert.throws(
 *   () => checkOptions(parseCommandLine(["id", "--force"]), [], "id"),
 *   /--force/,
 * );
 * ```
 */
export function checkOptions(
  cl: CommandLine,
  allowed: readonly OptionName[],
  usage: string,
): void {
  for (const name of cl.given) {
    if (!GLOBAL_OPTIONS.includes(name) && !allowed.includes(name)) {
      throw new UsageError(`dim ${usage} does not take --${name}`);
    }
  }
}

/**
 * Reads a positive number option such as `--timeout 30`.
 *
 * @param value The option's text, if given.
 * @param name The option's name, for the message.
 * @param fallback The value when the option is absent.
 * @returns The number.
 * @throws {UsageError} If the text is not a positive number.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { positiveNumber } from "./args.ts";
 *
 * assert.equal(positiveNumber("2.5", "timeout", 30), 2.5);
 * assert.equal(positiveNumber(undefined, "timeout", 30), 30);
 * assert.throws(() => positiveNumber("soon", "timeout", 30), /--timeout/);
 * ```
 */
export function positiveNumber(value: string | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) {
    throw new UsageError(`--${name} needs a positive number, not "${value}"`);
  }
  return n;
}
