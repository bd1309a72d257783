/**
 * The settings a profile keeps in its database (the `meta` table), each
 * name defined once here, and the copy of the user's public keys that lets
 * a profile show who it is without the passphrase.
 *
 * The stored names are those DIM 0.1 wrote, so data directories made by it
 * open unchanged (the public-keys copy keeps its old `cli.` name).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity } from "../crypto/identity.ts";
 * import { decodePublicIdentity, encodePublicIdentity } from "./settings.ts";
 *
 * const me = await Identity.generate();
 * assert.equal(decodePublicIdentity(encodePublicIdentity(me.public))?.id, me.id);
 * assert.equal(decodePublicIdentity("{}"), undefined);
 * ```
 *
 * @module
 */
import { fromHex, toHex } from "../platform/bytes.ts";
import { encodeUserId, type PublicIdentity } from "../crypto/identity.ts";

/** The names of the settings DIM itself keeps in a profile. */
export const PROFILE_SETTINGS = Object.freeze(
  {
    /** The display name in the user's contact card. */
    displayName: "display_name",
    /** The sequence number of the last contact card signed. */
    cardSeq: "card_seq",
    /** A copy of the user's public keys (JSON), so no passphrase is needed to show them. */
    publicIdentity: "cli.public_identity",
  } as const,
);

/** The display name of a profile that has none saved. */
export const DEFAULT_DISPLAY_NAME = "DIM user";

/**
 * Whether a setting name is one DIM keeps itself, which applications must
 * not overwrite through {@linkcode Profile.setSetting}.
 *
 * @param name The setting name.
 * @returns `true` for DIM's own settings.
 */
export function isReservedSetting(name: string): boolean {
  return (Object.values(PROFILE_SETTINGS) as string[]).includes(name);
}

/**
 * Encodes the copy of a public identity kept in the settings.
 *
 * @param identity The public identity.
 * @returns The JSON text.
 */
export function encodePublicIdentity(identity: PublicIdentity): string {
  return JSON.stringify({
    id: identity.id,
    signing: toHex(identity.signingPublicKey),
    encryption: toHex(identity.encryptionPublicKey),
  });
}

/**
 * Decodes a saved copy of a public identity; a copy that does not match its
 * own ID is ignored (the keystore is the truth).
 *
 * @param text The JSON text.
 * @returns The public identity, or `undefined` if the copy is unusable.
 */
export function decodePublicIdentity(text: string): PublicIdentity | undefined {
  try {
    const v = JSON.parse(text) as { id: string; signing: string; encryption: string };
    const signingPublicKey = fromHex(v.signing);
    const encryptionPublicKey = fromHex(v.encryption);
    if (encryptionPublicKey.length !== 32 || encodeUserId(signingPublicKey) !== v.id) {
      return undefined;
    }
    return { id: v.id, signingPublicKey, encryptionPublicKey };
  } catch {
    return undefined;
  }
}
