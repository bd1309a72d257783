/**
 * A new identity's passphrase must be hard to guess: weak ones are refused
 * on the library's create call, with the reason, and nothing is created
 * unless the caller insists.
 */
import assert from "node:assert/strict";
import { WeakPassphraseError } from "../../lib/errors.ts";
import {
  checkNewPassphrase,
  MIN_PASSPHRASE_SCORE,
  passphraseStrength,
} from "../../lib/profile/passphrase.ts";
import { createProfile } from "../../lib/profile/profile.ts";

Deno.test("weak passphrases are refused with zxcvbn's reason; strong ones pass", async () => {
  for (const weak of ["abc", "pw", "password1", "qwertyuiop", "aaaaaaaaaaaa", "hunter2hunter2"]) {
    await assert.rejects(
      checkNewPassphrase(weak),
      (err) =>
        err instanceof WeakPassphraseError && err.score < MIN_PASSPHRASE_SCORE &&
        /too easy to guess \(strength \d of 4, at least 3 is needed\)/.test(err.message),
      weak,
    );
  }
  for (const strong of ["plum vortex quietly sings", "correct horse", "Tr0ub4dor&3"]) {
    await checkNewPassphrase(strong);
  }
  // The user's own name is no secret.
  assert.ok((await passphraseStrength("Adalovelace", ["Adalovelace"])).score < 3);
  // Insisting accepts anything non-empty; very long input is estimated by its beginning.
  await checkNewPassphrase("abc", { allowWeak: true });
  await assert.rejects(checkNewPassphrase("a".repeat(10_000)), WeakPassphraseError);
});

Deno.test("createProfile refuses a weak passphrase and creates nothing, unless told to allow it", async () => {
  const home = await Deno.makeTempDir();
  try {
    await assert.rejects(
      createProfile({ home, passphrase: "letmein", displayName: "Ada" }),
      WeakPassphraseError,
    );
    await assert.rejects(Deno.stat(`${home}/identity.key`), Deno.errors.NotFound);
    const profile = await createProfile({
      home,
      passphrase: "letmein",
      displayName: "Ada",
      allowWeakPassphrase: true,
    });
    assert.match(profile.id, /^dim/);
    await profile.stop();
  } finally {
    await Deno.remove(home, { recursive: true });
  }
});
