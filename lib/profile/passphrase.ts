/**
 * How strong a new passphrase is, and the rule a new identity's passphrase
 * must meet.
 *
 * The passphrase is all that protects the keystore on disk: whoever copies
 * the data directory can try guesses offline, as fast as argon2id allows. So
 * a new identity's passphrase must be hard to guess by the estimate of
 * zxcvbn (`@zxcvbn-ts/core`, with its common and English dictionaries: it
 * knows common passwords, names, words, keyboard patterns, dates, repeats
 * and l33t substitutions). The rule: a score of at least
 * {@linkcode MIN_PASSPHRASE_SCORE} of 4, which zxcvbn gives to passphrases
 * it estimates at more than 10^8 guesses (about four random words, or a
 * long and unusual sentence). The user's display name counts as a known
 * word. A weaker passphrase is refused unless the caller insists
 * (`allowWeak`): the CLI's `--weak-passphrase`, the library's
 * `allowWeakPassphrase`.
 *
 * Only the first {@linkcode MAX_CHECKED_LENGTH} characters are estimated
 * (zxcvbn's time grows with the length): a longer passphrase is at least as
 * strong as its beginning.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { WeakPassphraseError } from "../errors.ts";
 * import { checkNewPassphrase } from "./passphrase.ts";
 *
 * await checkNewPassphrase("plum vortex quietly sings");
 * await assert.rejects(checkNewPassphrase("abc"), WeakPassphraseError);
 * await checkNewPassphrase("abc", { allowWeak: true }); // the caller insists
 * ```
 *
 * @module
 */
import { ZxcvbnFactory } from "@zxcvbn-ts/core";
import * as common from "@zxcvbn-ts/language-common";
import * as english from "@zxcvbn-ts/language-en";
import { WeakPassphraseError } from "../errors.ts";

/** The lowest zxcvbn score (0 to 4) a new passphrase may have. */
export const MIN_PASSPHRASE_SCORE = 3;
/** How many characters of a passphrase are estimated. */
export const MAX_CHECKED_LENGTH = 100;

/** The strength zxcvbn estimates for a passphrase. */
export interface PassphraseStrength {
  /** 0 (guessed at once) to 4 (very hard to guess). */
  readonly score: number;
  /** Why it is weak, if zxcvbn says; empty otherwise. */
  readonly warning: string;
  /** How to make it stronger. */
  readonly suggestions: readonly string[];
}

/** Options of {@linkcode checkNewPassphrase}. */
export interface CheckPassphraseOptions {
  /** Words the user is known by (display name…): guessing them is free. */
  readonly userInputs?: readonly string[];
  /** Accept a weak passphrase anyway: the user insisted. Default `false`. */
  readonly allowWeak?: boolean;
}

let estimator: ZxcvbnFactory | undefined;

// Built on first use: loading the dictionaries takes a few hundred ms.
function zxcvbn(): ZxcvbnFactory {
  estimator ??= new ZxcvbnFactory({
    dictionary: { ...common.dictionary, ...english.dictionary },
    graphs: common.adjacencyGraphs,
    translations: english.translations,
  });
  return estimator;
}

/**
 * Estimates a passphrase's strength.
 *
 * @param passphrase The passphrase.
 * @param userInputs Words the user is known by.
 * @returns Its score, with zxcvbn's warning and suggestions.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { passphraseStrength } from "./passphrase.ts";
 *
 * assert.equal((await passphraseStrength("password1")).score, 0);
 * ```
 */
export async function passphraseStrength(
  passphrase: string,
  userInputs: readonly string[] = [],
): Promise<PassphraseStrength> {
  const checked = [...passphrase].slice(0, MAX_CHECKED_LENGTH).join("");
  const result = await zxcvbn().check(checked, [...userInputs]);
  return {
    score: result.score,
    warning: result.feedback.warning ?? "",
    suggestions: result.feedback.suggestions,
  };
}

/**
 * Checks that a new identity's passphrase is hard enough to guess (see the
 * module documentation for the rule).
 *
 * @param passphrase The new passphrase.
 * @param options `userInputs` (the display name…) and `allowWeak`.
 * @returns When it passes (or the caller insisted).
 * @throws {WeakPassphraseError} If it scores below {@linkcode MIN_PASSPHRASE_SCORE},
 *   with zxcvbn's reason and advice in the message.
 */
export async function checkNewPassphrase(
  passphrase: string,
  options: CheckPassphraseOptions = {},
): Promise<void> {
  if (options.allowWeak === true) return;
  const { score, warning, suggestions } = await passphraseStrength(
    passphrase,
    options.userInputs,
  );
  if (score >= MIN_PASSPHRASE_SCORE) return;
  const why = [warning, ...suggestions].filter((s) => s !== "").join(" ");
  throw new WeakPassphraseError(
    score,
    `Cannot use this passphrase: it is too easy to guess (strength ${score} of 4, at least ` +
      `${MIN_PASSPHRASE_SCORE} is needed), and anyone who copies your data directory could try ` +
      `guesses offline.${why === "" ? "" : ` ${why}`} Use four or more random words, ` +
      "or a long sentence of your own.",
  );
}
