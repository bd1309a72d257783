/**
 * How the CLI turns a failure into one line on stderr and an exit code:
 * 2 for a usage error, 1 for anything else.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { describeError, UsageError } from "./errors.ts";
 *
 * const d = describeError(new UsageError("missing <name>"));
 * assert.deepEqual(d, { code: 2, message: "missing <name>" });
 * ```
 *
 * @module
 */
import { DimError, KeystoreError, WeakPassphraseError } from "../errors.ts";
import { KeyChangedError } from "../profile/contacts.ts";

/**
 * A failure the CLI reports as it is, with its exit code.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { CliError, describeError } from "./errors.ts";
 *
 * const err = new CliError("the two passphrases do not match");
 * assert.deepEqual(describeError(err), { code: 1, message: err.message });
 * ```
 */
export class CliError extends Error {
  /** The process exit code: 1 failure, 2 usage. */
  readonly exitCode: number;
  /**
   * Makes an error with a message meant for the user.
   *
   * @param message One line, lower case, no trailing period.
   * @param options `exitCode` (default 1) and `cause`.
   */
  constructor(message: string, options: ErrorOptions & { readonly exitCode?: number } = {}) {
    super(message, options);
    this.name = new.target.name;
    this.exitCode = options.exitCode ?? 1;
  }
}

/**
 * The command line is wrong: exit code 2.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { CliError, UsageError } from "./errors.ts";
 *
 * const err = new UsageError("missing <name>");
 * assert.ok(err instanceof CliError);
 * assert.equal(err.exitCode, 2);
 * ```
 */
export class UsageError extends CliError {
  /**
   * Makes a usage error.
   *
   * @param message What is wrong with the command line.
   * @param options `cause`, if any.
   */
  constructor(message: string, options: ErrorOptions = {}) {
    super(message, { ...options, exitCode: 2 });
  }
}

/** A failure as the user sees it. */
export interface ErrorDescription {
  /** The exit code. */
  readonly code: number;
  /** One line, without the `error: ` prefix. */
  readonly message: string;
}

/**
 * Describes any thrown value as one line and an exit code.
 *
 * @param err What was thrown.
 * @returns The exit code and the line to print.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { KeystoreError } from "../errors.ts";
 * import { describeError } from "./errors.ts";
 *
 * const d = describeError(new KeystoreError("wrong-passphrase", "Cannot unlock keystore: wrong"));
 * assert.equal(d.code, 1);
 * assert.match(d.message, /wrong passphrase/);
 * ```
 */
export function describeError(err: unknown): ErrorDescription {
  if (err instanceof CliError) return { code: err.exitCode, message: oneLine(err.message) };
  if (err instanceof KeystoreError) return { code: 1, message: keystoreMessage(err) };
  if (err instanceof KeyChangedError) {
    return {
      code: 1,
      message: `not sent: ${err.contact}'s keys changed and must be verified again ` +
        `(dim contact verify ${err.contact})`,
    };
  }
  if (err instanceof WeakPassphraseError) {
    return {
      code: 1,
      message: `${userMessage(err.message)} (To use it anyway: dim init --weak-passphrase.)`,
    };
  }
  // DIM's own errors are thrown on purpose, with messages written for people.
  if (err instanceof DimError) return { code: 1, message: userMessage(err.message) };
  if (err instanceof Deno.errors.Interrupted) return { code: 1, message: "interrupted" };
  if (err instanceof Deno.errors.NotCapable || err instanceof Deno.errors.PermissionDenied) {
    return { code: 1, message: userMessage(err.message) };
  }
  if (err instanceof Error) {
    return { code: 1, message: `${userMessage(err.message)} (run with --debug for details)` };
  }
  return { code: 1, message: oneLine(String(err)) };
}

function keystoreMessage(err: KeystoreError): string {
  switch (err.code) {
    case "wrong-passphrase":
      return "cannot unlock your identity: wrong passphrase";
    case "not-found":
      return "no identity here: run `dim init` first";
    case "exists":
      return "an identity already exists here (use --force to replace it)";
    case "io":
      return `cannot read or write the identity file: ${userMessage(err.message)}`;
    default:
      return `the identity file is damaged: ${
        userMessage(err.message.replace(/^Cannot [^:]*: /, ""))
      }`;
  }
}

/**
 * Turns a library message ("Cannot add contact: …") into the CLI's style:
 * one line, starting lower case.
 */
function userMessage(message: string): string {
  const line = oneLine(message);
  // Lower the first letter only when it starts an ordinary word, not "ID" or "DHT".
  return /^[A-Z][a-z]/.test(line) ? line[0]!.toLowerCase() + line.slice(1) : line;
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, " ").trim();
}
