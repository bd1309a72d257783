// Assertions shared by tests.
import { ok, strictEqual } from "node:assert/strict";

/** Checks that `promise` rejects with exactly `ErrorClass` (and `message`, if given). */
export async function assertRejects(
  promise: Promise<unknown>,
  ErrorClass: abstract new (...args: never[]) => Error,
  message?: string,
): Promise<Error> {
  try {
    await promise;
  } catch (err) {
    ok(err instanceof ErrorClass, `expected ${ErrorClass.name}, got ${err}`);
    strictEqual(err.constructor, ErrorClass);
    if (message !== undefined) strictEqual(err.message, message);
    return err;
  }
  throw new Error(`expected ${ErrorClass.name}, but it resolved`);
}
