/**
 * `dim id`: the user's ID, fingerprint and a shareable `dim:` contact
 * string, offline. The profile keeps a copy of the public keys, so it needs
 * no passphrase; without that copy it unlocks the profile once, which saves
 * one.
 *
 * @module
 */
import { fingerprint } from "../crypto/safety_number.ts";
import type { PublicIdentity } from "../crypto/identity.ts";
import { contactString } from "../profile/contact_string.ts";
import { type Profile, ProfileLockedError } from "../profile/profile.ts";
import type { Context } from "./context.ts";
import { withSpinner } from "./spinner.ts";

/**
 * Prints the user's ID, fingerprint, display name and contact string (with
 * the configured bootstrap nodes, so whoever adds it can join the network).
 *
 * @param ctx The command's context.
 * @returns The exit code.
 * @throws {CliError} If there is no identity.
 * @throws {KeystoreError} If the keystore must be unlocked and the passphrase is wrong.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { main } from "./main.ts";
 * import { memoryIo } from "./io.ts";
 *
 * const home = await Deno.makeTempDir();
 * const env = { DIM_PASSPHRASE: "plum vortex quietly sings" };
 * assert.equal(await main(["--home", home, "init", "--name", "Ada"], memoryIo({ env })), 0);
 * const io = memoryIo();
 * assert.equal(await main(["--home", home, "id", "--json"], io), 0);
 * assert.match(JSON.parse(io.out).contact, /^dim:dim/);
 * await Deno.remove(home, { recursive: true });
 * ```
 */
export async function idCommand(ctx: Context): Promise<number> {
  const bootstrap = await ctx.bootstrap();
  await using profile = await ctx.profile();
  const me = await publicIdentity(ctx, profile);
  const result = {
    id: me.id,
    fingerprint: fingerprint(me),
    displayName: profile.displayName,
    contact: contactString(me.id, bootstrap),
  };
  if (ctx.json) {
    ctx.outJson(result);
    return 0;
  }
  ctx.out(`Name:         ${result.displayName}`);
  ctx.out(`ID:           ${result.id}`);
  ctx.out(`Fingerprint:  ${result.fingerprint}`);
  ctx.out(`Contact:      ${result.contact}`);
  return 0;
}

/**
 * The user's public keys: the profile's copy, else unlocked with the passphrase.
 *
 * @param ctx The command's context.
 * @param profile The open profile.
 * @returns The public identity.
 * @throws {KeystoreError} If the keystore must be unlocked and cannot be.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Context } from "./context.ts";
 * import { publicIdentity } from "./id.ts";
 * import { main } from "./main.ts";
 * import { memoryIo } from "./io.ts";
 *
 * const home = await Deno.makeTempDir();
 * const io = memoryIo({ env: { DIM_PASSPHRASE: "plum vortex quietly sings" } });
 * await main(["--home", home, "init", "--name", "Ada"], io);
 * const ctx = new Context(io, { home });
 * await using profile = await ctx.profile();
 * assert.match((await publicIdentity(ctx, profile)).id, /^dim/);
 * await Deno.remove(home, { recursive: true });
 * ```
 */
export async function publicIdentity(ctx: Context, profile: Profile): Promise<PublicIdentity> {
  const saved = knownIdentity(profile);
  if (saved !== undefined) return saved;
  const passphrase = await ctx.passphrase();
  await withSpinner(ctx.io, "unlocking…", () => profile.unlock(passphrase));
  return profile.publicIdentity;
}

/**
 * The user's public keys if the profile knows them without unlocking.
 *
 * @param profile The open profile.
 * @returns The public identity, or `undefined`.
 */
export function knownIdentity(profile: Profile): PublicIdentity | undefined {
  try {
    return profile.publicIdentity;
  } catch (err) {
    if (err instanceof ProfileLockedError) return undefined;
    throw err;
  }
}
