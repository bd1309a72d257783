import assert from "node:assert/strict";
import { concat } from "../../lib/platform/bytes.ts";
import { Identity } from "../../lib/crypto/identity.ts";
import { initiateX3dh, respondX3dh } from "../../lib/crypto/x3dh.ts";
import { openPrekeyBundle, signPrekeyBundle, toX3dhBundle } from "../../lib/record/prekey.ts";
import {
  consumeOneTimePrekey,
  createPrekeySecrets,
  decodePrekeySecrets,
  encodePrekeySecrets,
  MAX_PREKEY_SECRETS_LENGTH,
  MAX_SIGNED_PREKEYS,
  type PrekeySecrets,
  refillOneTimePrekeys,
  rotateSignedPrekey,
  SIGNED_PREKEY_GRACE_MS,
} from "../../lib/record/prekey_secrets.ts";

const NOW = 1_700_000_000_000;
const DAY = 24 * 60 * 60 * 1000;

const alice = await Identity.generate();
const bob = await Identity.generate();
const secrets = await createPrekeySecrets(bob, { oneTimePrekeyCount: 3, now: NOW - DAY });

Deno.test("rotation keeps retired signed prekeys for the grace period only", async () => {
  const day0 = await createPrekeySecrets(bob, { oneTimePrekeyCount: 0, now: 0 });
  const day7 = await rotateSignedPrekey(bob, day0, { now: 7 * DAY });
  assert.deepEqual(day7.signedPrekeys.map((k) => k.retiredAt), [null, 7 * DAY]);
  assert.equal(day0.signedPrekeys[0]!.retiredAt, null); // the input is unchanged

  // Alice fetched the day-0 bundle; her first message arrives on day 10.
  const oldBundle = await openPrekeyBundle(await signPrekeyBundle(bob, day0, { now: 0 }), {
    now: 0,
  });
  const sent = await initiateX3dh(alice, toX3dhBundle(oldBundle));
  assert.deepEqual(
    (await respondX3dh(bob, sent.header, day7)).sharedSecret,
    sent.sharedSecret,
  );

  // After the grace period the day-0 prekey is gone, and so is the message.
  const later = await rotateSignedPrekey(bob, day7, {
    now: 7 * DAY + SIGNED_PREKEY_GRACE_MS + 1,
  });
  assert.deepEqual(later.signedPrekeys.map((k) => k.id), [
    day7.signedPrekeys[0]!.id + 1,
    day7.signedPrekeys[0]!.id,
  ]);
  await assert.rejects(respondX3dh(bob, sent.header, later), {
    name: "KeyAgreementError",
  });

  // However often it rotates, at most MAX_SIGNED_PREKEYS are kept.
  let many: PrekeySecrets = day0;
  for (let i = 1; i <= MAX_SIGNED_PREKEYS + 3; i++) {
    many = await rotateSignedPrekey(bob, many, { now: i });
  }
  assert.equal(many.signedPrekeys.length, MAX_SIGNED_PREKEYS);
  // And the bundle always publishes the current one.
  const bundle = await openPrekeyBundle(await signPrekeyBundle(bob, many, { now: 100 }), {
    now: 100,
  });
  assert.equal(bundle.signedPrekey.id, many.signedPrekeys[0]!.id);
});

Deno.test("one-time prekeys are refilled with fresh IDs and consumed by ID", async () => {
  const used = consumeOneTimePrekey(secrets, secrets.oneTimePrekeys[0]!.id);
  assert.equal(consumeOneTimePrekey(used, 12345), used);
  const refilled = await refillOneTimePrekeys(used, { count: 5 });
  assert.equal(refilled.oneTimePrekeys.length, 5);
  const ids = [...refilled.signedPrekeys, ...refilled.oneTimePrekeys].map((k) => k.id);
  assert.equal(new Set(ids).size, ids.length);
  assert(ids.every((id) => id < refilled.nextId));
  assert.equal(await refillOneTimePrekeys(refilled, { count: 5 }), refilled);
  await assert.rejects(refillOneTimePrekeys({ ...used, nextId: 0xffffffff }, { count: 5 }), {
    name: "RangeError",
    message: /exhausted/,
  });
});

Deno.test("prekey secrets round-trip through their strict encoding", async (t) => {
  const rotated = await rotateSignedPrekey(bob, secrets, { now: NOW });
  const bytes = encodePrekeySecrets(rotated);
  await t.step("round trip", () => {
    assert.deepEqual(decodePrekeySecrets(bytes), rotated);
  });
  await t.step("every truncation and trailing bytes", () => {
    for (let n = 0; n < bytes.length; n++) {
      assert.throws(() => decodePrekeySecrets(bytes.subarray(0, n)), SyntaxError, `length ${n}`);
    }
    assert.throws(() => decodePrekeySecrets(concat(bytes, new Uint8Array(1))), {
      name: "SyntaxError",
      message: /trailing bytes/,
    });
  });
  await t.step("an unknown version and an oversized input", () => {
    const changed = new Uint8Array(bytes);
    changed[0] = 2;
    assert.throws(() => decodePrekeySecrets(changed), { message: /unknown version 2/ });
    assert.throws(() => decodePrekeySecrets(new Uint8Array(MAX_PREKEY_SECRETS_LENGTH + 1)), {
      name: "SyntaxError",
      message: /too long/,
    });
  });
  await t.step("inconsistent contents", () => {
    const cases: [string, PrekeySecrets, RegExp][] = [
      ["a repeated ID", {
        ...rotated,
        oneTimePrekeys: [rotated.oneTimePrekeys[0]!, rotated.oneTimePrekeys[0]!],
      }, /repeated/],
      ["an ID not below nextId", { ...rotated, nextId: 2 }, /not below nextId/],
      ["a retired prekey first", {
        ...rotated,
        signedPrekeys: [...rotated.signedPrekeys].reverse(),
      }, /only the first/],
    ];
    for (const [name, value, message] of cases) {
      assert.throws(() => decodePrekeySecrets(encodePrekeySecrets(value)), {
        name: "SyntaxError",
        message,
      }, name);
    }
  });
});
