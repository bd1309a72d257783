/**
 * A spinner on stderr for long waits (DHT lookups, dialing), drawn only
 * when stderr is a terminal so scripts and logs never see it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { withSpinner } from "./spinner.ts";
 *
 * let err = "";
 * const value = await withSpinner({ stderr: (t) => err += t, stderrIsTerminal: false }, "waiting", () =>
 *   Promise.resolve(42));
 * assert.equal(value, 42);
 * assert.equal(err, "");
 * ```
 *
 * @module
 */

const FRAMES = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];
const FRAME_MS = 80;
// Below this, a wait is not worth drawing: the spinner would only flicker.
const DELAY_MS = 150;

/** Where a spinner draws. */
export interface SpinnerOutput {
  /** Writes to stderr. */
  readonly stderr: (text: string) => void;
  /** Whether stderr is a terminal; the spinner draws nothing otherwise. */
  readonly stderrIsTerminal: boolean;
}

/** A running spinner. */
export interface Spinner extends Disposable {
  /**
   * Changes the text shown next to the spinner.
   *
   * @param text The new text.
   */
  update(text: string): void;
  /** Erases the spinner. Idempotent. */
  stop(): void;
}

/**
 * Starts a spinner with `text`; it appears after a short delay, so quick
 * work shows nothing.
 *
 * @param out Where to draw.
 * @param text What is being waited for.
 * @returns The spinner; stop it (or dispose of it) when the wait is over.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { startSpinner } from "./spinner.ts";
 *
 * let err = "";
 * const spinner = startSpinner({ stderr: (t) => err += t, stderrIsTerminal: true }, "looking up");
 * await new Promise((r) => setTimeout(r, 300));
 * spinner.stop();
 * assert.match(err, /looking up/);
 * assert.ok(err.endsWith("\r\x1b[2K"));
 * ```
 */
export function startSpinner(out: SpinnerOutput, text: string): Spinner {
  let current = text;
  let frame = 0;
  let drawn = false;
  let interval: ReturnType<typeof setInterval> | undefined;
  let delay: ReturnType<typeof setTimeout> | undefined;
  const draw = () => {
    out.stderr(`\r\x1b[2K${FRAMES[frame++ % FRAMES.length]} ${current}`);
    drawn = true;
  };
  if (out.stderrIsTerminal) {
    delay = setTimeout(() => {
      delay = undefined;
      draw();
      interval = setInterval(draw, FRAME_MS);
    }, DELAY_MS);
  }
  const stop = () => {
    if (delay !== undefined) clearTimeout(delay);
    if (interval !== undefined) clearInterval(interval);
    delay = interval = undefined;
    if (drawn) out.stderr("\r\x1b[2K");
    drawn = false;
  };
  return {
    update(next) {
      current = next;
      if (drawn) draw();
    },
    stop,
    [Symbol.dispose]: stop,
  };
}

/**
 * Runs `work` with a spinner showing `text`, and erases it afterwards.
 *
 * @param out Where to draw.
 * @param text What is being waited for.
 * @param work The wait.
 * @returns What `work` returned.
 * @throws Whatever `work` throws.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { withSpinner } from "./spinner.ts";
 *
 * const out = { stderr: () => {}, stderrIsTerminal: true };
 * await assert.rejects(withSpinner(out, "failing", () => Promise.reject(new Error("no"))), /no/);
 * ```
 */
export async function withSpinner<T>(
  out: SpinnerOutput,
  text: string,
  work: () => Promise<T>,
): Promise<T> {
  using _spinner = startSpinner(out, text);
  return await work();
}
