/**
 * The CLI's mark of the newest incoming message shown to the user, kept in
 * the profile's settings, so `dim inbox` and `dim chat` agree on what is new.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createProfile } from "../profile/profile.ts";
 * import { lastShownSeq, markShown } from "./marks.ts";
 *
 * const home = await Deno.makeTempDir();
 * {
 *   const passphrase = "plum vortex quietly sings";
 *   await using profile = await createProfile({ home, passphrase, displayName: "Ada" });
 *   assert.equal(lastShownSeq(profile), 0);
 *   markShown(profile, 7);
 *   markShown(profile, 3);
 *   assert.equal(lastShownSeq(profile), 7);
 * }
 * await Deno.remove(home, { recursive: true });
 * ```
 *
 * @module
 */
import type { Profile } from "../profile/profile.ts";

/** The setting that keeps the mark. */
export const LAST_SHOWN_SETTING = "cli.inbox_last_shown_seq";

/**
 * The local sequence number of the newest incoming message shown so far.
 *
 * @param profile The profile.
 * @returns The number, 0 if none was shown.
 */
export function lastShownSeq(profile: Profile): number {
  const n = Number(profile.getSetting(LAST_SHOWN_SETTING) ?? 0);
  return Number.isSafeInteger(n) && n > 0 ? n : 0;
}

/**
 * Records that incoming messages up to `seq` were shown; never goes back.
 *
 * @param profile The profile.
 * @param seq The local sequence number.
 */
export function markShown(profile: Profile, seq: number): void {
  if (seq > lastShownSeq(profile)) profile.setSetting(LAST_SHOWN_SETTING, String(seq));
}
