import assert from "node:assert/strict";
import { concat, u32, u64 } from "../../lib/platform/bytes.ts";
import { Identity } from "../../lib/crypto/identity.ts";
import { generatePrekey, initiateX3dh, respondX3dh, signPrekey } from "../../lib/crypto/x3dh.ts";
import {
  DEFAULT_PREKEY_TTL_MS,
  openPrekeyBundle,
  PREKEY_RECORD_TYPE,
  signPrekeyBundle,
  toX3dhBundle,
} from "../../lib/record/prekey.ts";
import {
  consumeOneTimePrekey,
  createPrekeySecrets,
  MAX_ONE_TIME_PREKEYS,
  refillOneTimePrekeys,
} from "../../lib/record/prekey_secrets.ts";
import { MAX_RECORD_SIZE, recordKey, signRecord } from "../../lib/record/record.ts";

const NOW = 1_700_000_000_000;
const DAY = 24 * 60 * 60 * 1000;

const alice = await Identity.generate();
const bob = await Identity.generate();
const mallory = await Identity.generate();
const secrets = await createPrekeySecrets(bob, { oneTimePrekeyCount: 3, now: NOW - DAY });
const bobKey = recordKey(PREKEY_RECORD_TYPE, bob.id);

/** Whether `needle` occurs anywhere in `haystack`. */
function contains(haystack: Uint8Array, needle: Uint8Array): boolean {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) {
      if (haystack[i + j] !== needle[j]) continue outer;
    }
    return true;
  }
  return false;
}

function invalid(message: RegExp): { name: string; message: RegExp } {
  return { name: "InvalidRecordError", message };
}

interface RawPayload {
  version?: number;
  encryptionKey?: Uint8Array;
  spkId?: number;
  spkPublicKey?: Uint8Array;
  spkCreatedAt?: number;
  spkSignature?: Uint8Array;
  oneTime?: { id: number; publicKey: Uint8Array }[];
  count?: number;
  trailing?: Uint8Array;
}

// A payload written field by field from the format, signed as a valid
// record by `signer`, so that the payload checks are what must reject it.
async function rawBundle(fields: RawPayload, signer: Identity = bob): Promise<Uint8Array> {
  const spk = secrets.signedPrekeys[0]!;
  const oneTime = fields.oneTime ?? secrets.oneTimePrekeys;
  const payload = concat(
    new Uint8Array([fields.version ?? 1]),
    fields.encryptionKey ?? bob.encryptionPublicKey,
    u32(fields.spkId ?? spk.id),
    fields.spkPublicKey ?? spk.publicKey,
    u64(fields.spkCreatedAt ?? spk.createdAt),
    fields.spkSignature ?? spk.signature,
    new Uint8Array([fields.count ?? oneTime.length]),
    ...oneTime.map((k) => concat(u32(k.id), k.publicKey)),
    fields.trailing ?? new Uint8Array(),
  );
  const record = await signRecord(signer, {
    type: PREKEY_RECORD_TYPE,
    seq: 1,
    payload,
    issuedAt: NOW,
  });
  return record.bytes;
}

Deno.test("a prekey bundle round-trips through its record", async () => {
  const record = await signPrekeyBundle(bob, secrets, { now: NOW });
  assert.equal(record.key, bobKey);
  assert.equal(record.seq, NOW);
  assert.equal(record.expiresAt - record.issuedAt, DEFAULT_PREKEY_TTL_MS);
  const bundle = await openPrekeyBundle(record.bytes, { key: bobKey, now: NOW });
  const spk = secrets.signedPrekeys[0]!;
  assert.equal(bundle.id, bob.id);
  assert.deepEqual(bundle.signingPublicKey, bob.signingPublicKey);
  assert.deepEqual(bundle.encryptionPublicKey, bob.encryptionPublicKey);
  assert.deepEqual(bundle.signedPrekey, {
    id: spk.id,
    publicKey: spk.publicKey,
    createdAt: spk.createdAt,
    signature: spk.signature,
  });
  assert.deepEqual(
    bundle.oneTimePrekeys,
    secrets.oneTimePrekeys.map(({ id, publicKey }) => ({ id, publicKey })),
  );
  // No private key is anywhere in the record.
  for (const k of [spk, ...secrets.oneTimePrekeys]) {
    assert(!contains(record.bytes, k.privateKey));
  }
});

Deno.test("every single-bit flip of a prekey record is rejected", async () => {
  const record = await signPrekeyBundle(bob, secrets, { now: NOW });
  for (let bit = 0; bit < record.bytes.length * 8; bit++) {
    const flipped = new Uint8Array(record.bytes);
    flipped[bit >> 3]! ^= 0x80 >> (bit & 7);
    await assert.rejects(
      openPrekeyBundle(flipped, { key: bobKey, now: NOW }),
      { name: "InvalidRecordError" },
      `bit ${bit}`,
    );
  }
});

Deno.test("every single-bit flip of the signed prekey's own signature is rejected", async () => {
  // The record signature is valid each time: only the prekey signature is wrong.
  const { signature } = secrets.signedPrekeys[0]!;
  for (let bit = 0; bit < signature.length * 8; bit++) {
    const flipped = new Uint8Array(signature);
    flipped[bit >> 3]! ^= 0x80 >> (bit & 7);
    await assert.rejects(
      openPrekeyBundle(await rawBundle({ spkSignature: flipped }), { key: bobKey, now: NOW }),
      invalid(/the signed prekey's signature is invalid/),
      `bit ${bit}`,
    );
  }
});

Deno.test("the signed prekey must be signed by the record's owner for its ID and key", async (t) => {
  const spk = secrets.signedPrekeys[0]!;
  const cases: [string, RawPayload, Identity?][] = [
    ["another ID", { spkId: spk.id + 1 }],
    ["another public key", { spkPublicKey: (await generatePrekey(0)).publicKey }],
    ["signed by someone else", { spkSignature: await signPrekey(mallory, spk) }],
    ["someone else's prekey in their own record", {}, mallory],
  ];
  for (const [name, fields, signer] of cases) {
    await t.step(name, async () => {
      const bytes = await rawBundle(fields, signer);
      await assert.rejects(
        openPrekeyBundle(bytes, { now: NOW }),
        invalid(/the signed prekey's signature is invalid/),
      );
    });
  }
});

Deno.test("the payload is decoded strictly", async (t) => {
  const [first, second] = secrets.oneTimePrekeys;
  const cases: [string, RawPayload, RegExp][] = [
    ["an unknown payload version", { version: 2 }, /unknown payload version 2/],
    ["a truncated one-time prekey list", { count: 4 }, /malformed \(input is truncated\)/],
    ["trailing bytes", { trailing: new Uint8Array(1) }, /malformed \(trailing bytes\)/],
    ["more than the maximum of one-time prekeys", {
      count: MAX_ONE_TIME_PREKEYS + 1,
    }, /too many one-time prekeys/],
    ["a repeated one-time prekey ID", {
      oneTime: [first!, { ...second!, id: first!.id }],
    }, /listed twice/],
    ["a repeated one-time public key", {
      oneTime: [first!, { ...second!, publicKey: first!.publicKey }],
    }, /listed twice/],
    ["a one-time prekey equal to the signed prekey", {
      oneTime: [{ id: 99, publicKey: secrets.signedPrekeys[0]!.publicKey }],
    }, /listed twice/],
    ["a signed prekey newer than the record", { spkCreatedAt: NOW + 1 }, /newer than the record/],
  ];
  for (const [name, fields, message] of cases) {
    await t.step(name, async () => {
      await assert.rejects(
        openPrekeyBundle(await rawBundle(fields), { key: bobKey, now: NOW }),
        invalid(message),
      );
    });
  }
});

Deno.test("a record of another type, owner or time is refused", async () => {
  const card = await signRecord(bob, { type: "card", seq: 1, payload: new Uint8Array() });
  await assert.rejects(openPrekeyBundle(card), invalid(/not a prekey bundle/));
  const record = await signPrekeyBundle(bob, secrets, { now: NOW });
  await assert.rejects(
    openPrekeyBundle(record, { key: recordKey(PREKEY_RECORD_TYPE, alice.id), now: NOW }),
    invalid(/does not belong/),
  );
  await assert.rejects(
    openPrekeyBundle(record, { now: NOW + DEFAULT_PREKEY_TTL_MS + DAY }),
    invalid(/expired/),
  );
});

Deno.test("a bundle of the maximum size fits in a record; one more prekey does not", async () => {
  const full = await createPrekeySecrets(bob, { now: NOW });
  assert.equal(full.oneTimePrekeys.length, MAX_ONE_TIME_PREKEYS);
  const record = await signPrekeyBundle(bob, full, { now: NOW });
  assert(record.bytes.length <= MAX_RECORD_SIZE);
  assert.equal((await openPrekeyBundle(record, { now: NOW })).oneTimePrekeys.length, 100);
  const extra = await refillOneTimePrekeys(
    { ...full, oneTimePrekeys: full.oneTimePrekeys.slice(1) },
    { count: MAX_ONE_TIME_PREKEYS },
  );
  await assert.rejects(
    signPrekeyBundle(bob, {
      ...extra,
      oneTimePrekeys: [...extra.oneTimePrekeys, full.oneTimePrekeys[0]!],
    }),
    RangeError,
  );
  await assert.rejects(createPrekeySecrets(bob, { oneTimePrekeyCount: 101 }), RangeError);
});

Deno.test("a bundle drives X3DH end to end", async () => {
  const record = await signPrekeyBundle(bob, secrets, { now: NOW });
  const bundle = await openPrekeyBundle(record.bytes, { key: bobKey, now: NOW });
  const sent = await initiateX3dh(alice, toX3dhBundle(bundle));
  assert.notEqual(sent.header.oneTimePrekeyId, null);
  const got = await respondX3dh(bob, sent.header, secrets);
  assert.deepEqual(got.sharedSecret, sent.sharedSecret);
  const after = consumeOneTimePrekey(secrets, got.consumeOneTimePrekeyId!);
  assert.equal(after.oneTimePrekeys.length, secrets.oneTimePrekeys.length - 1);
  assert.equal(secrets.oneTimePrekeys.length, 3); // the input is unchanged
});

Deno.test("toX3dhBundle picks a listed one-time prekey, a given one, or none", async () => {
  const bundle = await openPrekeyBundle(await signPrekeyBundle(bob, secrets, { now: NOW }), {
    now: NOW,
  });
  const ids = new Set(secrets.oneTimePrekeys.map((k) => k.id));
  const picked = new Set<number>();
  for (let i = 0; i < 64; i++) picked.add(toX3dhBundle(bundle).oneTimePrekey!.id);
  for (const id of picked) assert(ids.has(id));
  assert(picked.size > 1, "the choice is not random");
  assert.equal(toX3dhBundle(bundle, { oneTimePrekeyId: 2 }).oneTimePrekey?.id, 2);
  assert.equal("oneTimePrekey" in toX3dhBundle(bundle, { oneTimePrekeyId: null }), false);
  assert.throws(() => toX3dhBundle(bundle, { oneTimePrekeyId: 77 }), RangeError);
  const empty = await openPrekeyBundle(
    await signPrekeyBundle(bob, { ...secrets, oneTimePrekeys: [] }, { now: NOW }),
    { now: NOW },
  );
  assert.equal(toX3dhBundle(empty).oneTimePrekey, undefined);
});
