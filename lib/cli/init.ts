/**
 * `dim init` (alias `keygen`): creates the user's profile offline — keys,
 * encrypted keystore, display name — and, when bootstrap nodes are known,
 * goes online once to publish the contact card.
 *
 * @module
 */
import { pathExists } from "../platform/atomic_file.ts";
import { dataPaths } from "../platform/paths.ts";
import { MAX_DISPLAY_NAME_BYTES } from "../record/card.ts";
import { contactString } from "../profile/contact_string.ts";
import { checkNewPassphrase } from "../profile/passphrase.ts";
import { createProfile } from "../profile/profile.ts";
import { type CliConfig, writeConfig } from "./config.ts";
import type { Context } from "./context.ts";
import { CliError, describeError } from "./errors.ts";

/** Options of {@linkcode initCommand}. */
export interface InitOptions {
  /** The display name in the contact card; asked on a terminal if absent. */
  readonly name?: string | undefined;
  /** Replace an existing identity. */
  readonly force?: boolean | undefined;
  /** Accept a passphrase that is easy to guess (`--weak-passphrase`). */
  readonly weakPassphrase?: boolean | undefined;
}

/**
 * Creates the identity in the data directory. The passphrase is typed twice
 * with no echo, or given by `DIM_PASSPHRASE` or `--passphrase-file`.
 * `--bootstrap` and `--listen` given here are saved in the settings.
 *
 * @param ctx The command's context.
 * @param options The display name and `force`.
 * @returns The exit code.
 * @throws {CliError} If an identity exists and `force` is not set, or the passphrase is missing.
 * @throws {StorageError} If another dim process uses the data directory.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { main } from "./main.ts";
 * import { memoryIo } from "./io.ts";
 *
 * const home = await Deno.makeTempDir();
 * const io = memoryIo({ env: { DIM_PASSPHRASE: "plum vortex quietly sings" } });
 * assert.equal(await main(["--home", home, "init", "--name", "Ada", "--json"], io), 0);
 * assert.match(JSON.parse(io.out).id, /^dim/);
 * await Deno.remove(home, { recursive: true });
 * ```
 */
export async function initCommand(ctx: Context, options: InitOptions): Promise<number> {
  const home = ctx.home;
  const paths = dataPaths(home);
  if (!options.force && await pathExists(paths.identityKey)) {
    throw new CliError(
      `an identity already exists in ${home}; keep it, or replace it with --force ` +
        `(its contacts stay, its message history is deleted since the new identity cannot open ` +
        `it, and people must add your new ID)`,
    );
  }
  // Check the addresses before asking anything.
  const bootstrap = await ctx.bootstrap();
  const listenGiven = (ctx.options.listen ?? []).length > 0;
  const listen = listenGiven ? await ctx.listen() : (await ctx.config()).listen;
  const givenName = options.name === undefined ? undefined : checkName(options.name);
  const allowWeak = options.weakPassphrase ?? false;
  const passphrase = await ctx.newPassphrase((typed) =>
    checkNewPassphrase(typed, {
      userInputs: givenName === undefined ? [] : [givenName],
      allowWeak,
    })
  );
  const displayName = givenName ?? await askName(ctx);

  let id: string;
  let shown: string;
  {
    // The new profile holds the data directory's lock while the settings are written.
    await using profile = await createProfile({
      home,
      passphrase,
      displayName,
      force: options.force ?? false,
      allowWeakPassphrase: allowWeak,
    });
    id = profile.id;
    shown = profile.fingerprint();
    if ((ctx.options.bootstrap ?? []).length > 0 || listenGiven) {
      const config: CliConfig = { bootstrap, listen };
      await writeConfig(home, config);
    }
  }

  const contact = contactString(id, bootstrap);
  let published = false;
  if (bootstrap.length > 0) {
    try {
      const messenger = await ctx.openMessenger();
      await messenger.stop();
      published = true;
    } catch (err) {
      ctx.note(
        `warning: your identity is saved, but your contact card could not be published yet ` +
          `(${describeError(err).message}); it will be, the next time dim goes online`,
      );
    }
  }
  if (ctx.json) {
    ctx.outJson({ home, id, fingerprint: shown, displayName, contact, published });
    return 0;
  }
  ctx.out(`Created your DIM identity in ${home}`);
  ctx.out(`  Name:         ${displayName}`);
  ctx.out(`  ID:           ${id}`);
  ctx.out(`  Fingerprint:  ${shown}`);
  ctx.out(`  Contact:      ${contact}`);
  ctx.out(
    published
      ? "Your contact card is published. Share your ID or contact string with the people you talk to."
      : "Share your ID or contact string with the people you talk to; your card is published " +
        "the first time dim goes online (for example dim status).",
  );
  return 0;
}

async function askName(ctx: Context): Promise<string> {
  if (ctx.io.stdinIsTerminal) {
    const typed = await ctx.io.readLine("Display name (shown to your contacts): ");
    if (typed !== undefined && typed.trim() !== "") return checkName(typed);
  }
  return checkName(ctx.io.env("USER") || "DIM user");
}

function checkName(name: string): string {
  const trimmed = name.trim();
  if (trimmed === "") throw new CliError("the display name must not be empty", { exitCode: 2 });
  if (new TextEncoder().encode(trimmed).length > MAX_DISPLAY_NAME_BYTES) {
    throw new CliError(`the display name is too long (${MAX_DISPLAY_NAME_BYTES} bytes at most)`, {
      exitCode: 2,
    });
  }
  // deno-lint-ignore no-control-regex
  if (/[\x00-\x1f\x7f]/.test(trimmed)) {
    throw new CliError("the display name must not contain control characters", { exitCode: 2 });
  }
  return trimmed;
}
