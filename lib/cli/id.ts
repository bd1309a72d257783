/**
 * `dim id`: the user's ID, fingerprint and a shareable `dim:` contact
 * string, offline. It reads the copy of the public keys kept in the
 * database, so it needs no passphrase; without that copy it unlocks the
 * keystore once and saves one.
 *
 * @module
 */
import { unlockKeystore } from "../crypto/keystore.ts";
import { fingerprint } from "../crypto/safety_number.ts";
import type { PublicIdentity } from "../crypto/identity.ts";
import { contactString } from "../messenger.ts";
import { dataPaths } from "../platform/paths.ts";
import type { Context } from "./context.ts";
import type { LocalStore } from "./local_store.ts";
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
 * const env = { DIM_PASSPHRASE: "pw" };
 * assert.equal(await main(["--home", home, "init", "--name", "Ada"], memoryIo({ env })), 0);
 * const io = memoryIo();
 * assert.equal(await main(["--home", home, "id", "--json"], io), 0);
 * assert.match(JSON.parse(io.out).contact, /^dim:dim/);
 * await Deno.remove(home, { recursive: true });
 * ```
 */
export async function idCommand(ctx: Context): Promise<number> {
  const bootstrap = await ctx.bootstrap();
  using store = await ctx.store();
  const me = await publicIdentity(ctx, store);
  const result = {
    id: me.id,
    fingerprint: fingerprint(me),
    displayName: store.displayName() ?? "",
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
 * The user's public keys: the saved copy, else from the unlocked keystore.
 *
 * @param ctx The command's context.
 * @param store The open store.
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
 * const io = memoryIo({ env: { DIM_PASSPHRASE: "pw" } });
 * await main(["--home", home, "init", "--name", "Ada"], io);
 * const ctx = new Context(io, { home });
 * using store = await ctx.store();
 * assert.match((await publicIdentity(ctx, store)).id, /^dim/);
 * await Deno.remove(home, { recursive: true });
 * ```
 */
export async function publicIdentity(ctx: Context, store: LocalStore): Promise<PublicIdentity> {
  const saved = store.publicIdentity();
  if (saved !== undefined) return saved;
  const passphrase = await ctx.passphrase();
  const identity = await withSpinner(
    ctx.io,
    "unlocking…",
    () => unlockKeystore(dataPaths(ctx.home).identityKey, passphrase),
  );
  store.savePublicIdentity(identity.public);
  return identity.public;
}
