/**
 * Record values a node has validated recently, so that the same value
 * under the same key is not checked again within
 * `VALIDATED_MEMORY_MS`: a get reads its own copy and hears the same
 * record from several peers, and every check of a DIM record is an Ed25519
 * signature verification (about 0.05–0.1 ms here).
 *
 * Only success is remembered, for the exact bytes of the value, one value
 * per key: a forged or altered record differs in its bytes and is always
 * checked, and a record that failed is checked again next time. A value
 * that is a DIM record is remembered no longer than it is accepted
 * (`acceptedUntil`), so an expired record is never taken from memory.
 *
 * @module
 */
import { equalBytes } from "../platform/bytes.ts";
import { acceptedUntil } from "../record/record.ts";
import { peerKey } from "./_lookup.ts";

/** What {@linkcode ValidatedRecords} remembers of one key. */
interface Entry {
  readonly value: Uint8Array;
  readonly until: number;
}

/**
 * A bounded memory of validated record values.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ValidatedRecords } from "./_validated.ts";
 *
 * let checks = 0;
 * const memo = new ValidatedRecords({ ms: 60_000, maxEntries: 10, clock: () => 0 });
 * const check = () => { checks++; return Promise.resolve(); };
 * const key = new Uint8Array([1]);
 * assert.equal(await memo.isValid(key, new Uint8Array([7]), check), true);
 * assert.equal(await memo.isValid(key, new Uint8Array([7]), check), true);
 * assert.equal(checks, 1);
 * ```
 */
export class ValidatedRecords {
  readonly #ms: number;
  readonly #maxEntries: number;
  readonly #clock: () => number;
  readonly #entries = new Map<string, Entry>();

  /**
   * @param options `ms`: how long a success is remembered; `maxEntries`:
   *   how many keys (the oldest is forgotten first); `clock`: ms since the epoch.
   */
  constructor(options: { ms: number; maxEntries: number; clock: () => number }) {
    this.#ms = options.ms;
    this.#maxEntries = options.maxEntries;
    this.#clock = options.clock;
  }

  /**
   * Whether `value` is valid under `key`: remembered, or checked now.
   *
   * @param key The key's bytes.
   * @param value The value.
   * @param check The namespace's validator; rejects if the value is invalid.
   * @returns True if the value is valid.
   */
  async isValid(
    key: Uint8Array,
    value: Uint8Array,
    check: (key: Uint8Array, value: Uint8Array) => Promise<void> | void,
  ): Promise<boolean> {
    if (this.knows(key, value)) return true;
    try {
      await check(key, value);
    } catch {
      return false;
    }
    this.remember(key, value);
    return true;
  }

  /**
   * Validators that take a value remembered as valid without checking it,
   * and remember each value they find valid.
   *
   * @param validators Validators by namespace.
   * @returns The same namespaces, each validator wrapped.
   */
  wrap<V extends (key: Uint8Array, value: Uint8Array) => Promise<void> | void>(
    validators: Readonly<Record<string, V>>,
  ): Record<string, (key: Uint8Array, value: Uint8Array) => Promise<void>> {
    return Object.fromEntries(
      Object.entries(validators).map(([namespace, validator]) => [
        namespace,
        async (key: Uint8Array, value: Uint8Array): Promise<void> => {
          if (this.knows(key, value)) return;
          await validator(key, value);
          this.remember(key, value);
        },
      ]),
    );
  }

  /**
   * Whether `value` was found valid under `key` less than `ms` ago.
   *
   * @param key The key's bytes.
   * @param value The value.
   * @returns True if it was.
   */
  knows(key: Uint8Array, value: Uint8Array): boolean {
    const entry = this.#entries.get(peerKey(key));
    return entry !== undefined && entry.until > this.#clock() && equalBytes(entry.value, value);
  }

  /**
   * Remembers that `value` was just found valid under `key`.
   *
   * @param key The key's bytes.
   * @param value The value (a copy is kept).
   */
  remember(key: Uint8Array, value: Uint8Array): void {
    const name = peerKey(key);
    this.#entries.delete(name);
    if (this.#entries.size >= this.#maxEntries) {
      this.#entries.delete(this.#entries.keys().next().value!);
    }
    const until = Math.min(this.#clock() + this.#ms, acceptedUntil(value) ?? Infinity);
    this.#entries.set(name, { value: value.slice(), until });
  }
}
