/**
 * The memory of validated record values (lib/dht/_validated.ts): a value
 * is checked once per key within its time, a different or failed value is
 * always checked, and the memory is bounded.
 */
import assert from "node:assert/strict";
import { Identity } from "../../lib/crypto/identity.ts";
import { ValidatedRecords } from "../../lib/dht/_validated.ts";
import { CLOCK_SKEW_TOLERANCE_MS, signRecord, validateRecord } from "../../lib/record/record.ts";

const key = (n: number) => new Uint8Array([47, n]);

Deno.test("a value found valid is not checked again for the same key, until its time is up", async () => {
  let now = 0;
  const memo = new ValidatedRecords({ ms: 1000, maxEntries: 10, clock: () => now });
  const checked: number[] = [];
  const check = (_key: Uint8Array, value: Uint8Array) => {
    checked.push(value[0]!);
    if (value[0] === 9) throw new Error("forged");
  };
  const value = new Uint8Array([1, 2, 3]);
  assert.equal(await memo.isValid(key(1), value, check), true);
  assert.equal(await memo.isValid(key(1), new Uint8Array([1, 2, 3]), check), true);
  assert.deepEqual(checked, [1]);
  // Changing the caller's bytes afterwards changes nothing remembered.
  value[0] = 9;
  assert.equal(await memo.isValid(key(1), value, check), false);
  // The same bytes under another key, another value, and a failed value are checked.
  assert.equal(await memo.isValid(key(2), new Uint8Array([1, 2, 3]), check), true);
  assert.equal(await memo.isValid(key(1), new Uint8Array([9]), check), false);
  assert.equal(await memo.isValid(key(1), new Uint8Array([9]), check), false);
  assert.deepEqual(checked, [1, 9, 1, 9, 9]);
  now = 1000;
  assert.equal(await memo.isValid(key(2), new Uint8Array([1, 2, 3]), check), true);
  assert.deepEqual(checked, [1, 9, 1, 9, 9, 1]);
});

Deno.test("wrapped validators remember what they accept and still refuse the rest", async () => {
  const memo = new ValidatedRecords({ ms: 60_000, maxEntries: 2, clock: () => 0 });
  let calls = 0;
  const { dim } = memo.wrap({
    dim: (_key: Uint8Array, value: Uint8Array) => {
      calls++;
      if (value[0] === 0) throw new Error("invalid");
    },
  });
  await dim!(key(1), new Uint8Array([1]));
  await dim!(key(1), new Uint8Array([1]));
  assert.equal(calls, 1);
  assert.equal(memo.knows(key(1), new Uint8Array([1])), true);
  await assert.rejects(dim!(key(1), new Uint8Array([0])));
  await assert.rejects(dim!(key(1), new Uint8Array([0])));
  assert.equal(calls, 3);
  // At most two keys: the oldest is forgotten.
  memo.remember(key(2), new Uint8Array([2]));
  memo.remember(key(3), new Uint8Array([3]));
  assert.equal(memo.knows(key(1), new Uint8Array([1])), false);
  assert.equal(memo.knows(key(3), new Uint8Array([3])), true);
});

Deno.test("a record is remembered no longer than it is accepted: an expired one is checked again, and refused", async () => {
  const owner = await Identity.generate();
  const signed = await signRecord(owner, {
    type: "card",
    seq: 1,
    payload: new Uint8Array([1]),
    ttlMs: 60_000,
  });
  const deadline = signed.expiresAt + CLOCK_SKEW_TOLERANCE_MS;
  let now = deadline - 1_000;
  const memo = new ValidatedRecords({ ms: 60_000, maxEntries: 10, clock: () => now });
  const key = new TextEncoder().encode(signed.key);
  const check = async (k: Uint8Array, v: Uint8Array) => {
    await validateRecord(k, v, { now });
  };
  assert.equal(await memo.isValid(key, signed.bytes, check), true);
  now = deadline - 1;
  assert.equal(memo.knows(key, signed.bytes), true);
  now = deadline;
  assert.equal(memo.knows(key, signed.bytes), false);
  assert.equal(await memo.isValid(key, signed.bytes, check), false);
});
