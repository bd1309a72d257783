import type { Selectors, Validators } from "@libp2p/kad-dht";
import assert from "node:assert/strict";
import { concat, u32, u64, utf8 } from "../../lib/platform/bytes.ts";
import { Identity } from "../../lib/crypto/identity.ts";
import {
  CLOCK_SKEW_TOLERANCE_MS,
  compareRecords,
  decodeRecord,
  DEFAULT_RECORD_TTL_MS,
  dimSelector,
  dimValidator,
  isNewer,
  MAX_RECORD_LIFETIME_MS,
  MAX_RECORD_SIZE,
  recordKey,
  type RecordSigner,
  selectRecord,
  signRecord,
  validateRecord,
} from "../../lib/record/record.ts";

const NOW = 1_700_000_000_000;
const HOUR = 60 * 60 * 1000;
const PAYLOAD = new Uint8Array([0xd1, 0x0d, 0x1e]);

const alice = await Identity.generate();
const bob = await Identity.generate();

function invalid(message: RegExp): { name: string; message: RegExp } {
  return { name: "InvalidRecordError", message };
}

interface RawFields {
  version?: number;
  type?: string;
  owner?: Uint8Array;
  seq?: number;
  issuedAt?: number;
  expiresAt?: number;
  payload?: Uint8Array;
}

// Builds and signs an encoding field by field, so that structural checks can
// be tested on records whose signature is valid.
async function rawRecord(signer: Identity, fields: RawFields = {}): Promise<Uint8Array> {
  const type = utf8(fields.type ?? "note");
  const payload = fields.payload ?? PAYLOAD;
  const unsigned = concat(
    new Uint8Array([fields.version ?? 1, type.length]),
    type,
    fields.owner ?? signer.signingPublicKey,
    u64(fields.seq ?? 1),
    u64(fields.issuedAt ?? NOW),
    u64(fields.expiresAt ?? NOW + HOUR),
    u32(payload.length),
    payload,
  );
  return concat(unsigned, await signer.sign("record", unsigned));
}

function note(
  identity: RecordSigner,
  seq: number,
  extra: { issuedAt?: number; ttlMs?: number } = {},
) {
  return signRecord(identity, { type: "note", seq, payload: PAYLOAD, issuedAt: NOW, ...extra });
}

Deno.test("signRecord() and validateRecord() round-trip every field", async () => {
  const signed = await signRecord(alice, {
    type: "card",
    seq: 42,
    payload: PAYLOAD,
    issuedAt: NOW,
    ttlMs: HOUR,
  });
  const checked = await validateRecord(`/dim/card/${alice.id}`, signed.bytes, { now: NOW });
  assert.equal(checked.type, "card");
  assert.deepEqual(checked.owner, alice.signingPublicKey);
  assert.equal(checked.ownerId, alice.id);
  assert.equal(checked.key, `/dim/card/${alice.id}`);
  assert.equal(checked.seq, 42);
  assert.equal(checked.issuedAt, NOW);
  assert.equal(checked.expiresAt, NOW + HOUR);
  assert.deepEqual(checked.payload, PAYLOAD);
  assert.deepEqual(checked.bytes, signed.bytes);
  assert.deepEqual(checked.signature, signed.signature);
});

Deno.test("signRecord() writes the canonical layout", async () => {
  const signed = await note(alice, 0x0102);
  assert.deepEqual(
    signed.bytes,
    await rawRecord(alice, { seq: 0x0102, expiresAt: NOW + DEFAULT_RECORD_TTL_MS }),
  );
  assert.equal(signed.bytes.length, 1 + 1 + 4 + 32 + 8 + 8 + 8 + 4 + PAYLOAD.length + 64);
});

Deno.test("validateRecord() accepts the key as bytes", async () => {
  const signed = await note(alice, 1);
  const record = await validateRecord(utf8(signed.key), signed.bytes, { now: NOW });
  assert.equal(record.seq, 1);
});

Deno.test("validateRecord() rejects every single-bit flip of a record", async () => {
  const signed = await note(alice, 3);
  const bytes = signed.bytes;
  for (let i = 0; i < bytes.length * 8; i++) {
    const flipped = bytes.slice();
    flipped[i >> 3]! ^= 1 << (i & 7);
    await assert.rejects(validateRecord(signed.key, flipped, { now: NOW }), {
      name: "InvalidRecordError",
    }, `bit ${i} flipped was accepted`);
  }
});

Deno.test("validateRecord() rejects another user's record under one's key", async () => {
  const bobs = await note(bob, 99);
  await assert.rejects(
    validateRecord(`/dim/note/${alice.id}`, bobs.bytes, { now: NOW }),
    invalid(/^Cannot accept record: the key does not belong to the record's owner/),
  );
});

Deno.test("validateRecord() rejects a record naming one owner but signed by another", async () => {
  const impostor: RecordSigner = {
    signingPublicKey: alice.signingPublicKey,
    sign: (domain, message) => bob.sign(domain, message),
  };
  const forged = await note(impostor, 99);
  await assert.rejects(
    validateRecord(`/dim/note/${alice.id}`, forged.bytes, { now: NOW }),
    invalid(/^Cannot accept record: the signature is invalid$/),
  );
});

Deno.test("validateRecord() rejects a signature made for another domain", async () => {
  const envelopeSigner: RecordSigner = {
    signingPublicKey: alice.signingPublicKey,
    sign: (_domain, message) => alice.sign("envelope", message),
  };
  const misused = await note(envelopeSigner, 1);
  await assert.rejects(
    validateRecord(misused.key, misused.bytes, { now: NOW }),
    invalid(/the signature is invalid/),
  );
});

Deno.test("validateRecord() rejects a key of another type or form", async (t) => {
  const signed = await note(alice, 1);
  const keys = {
    "another type": `/dim/card/${alice.id}`,
    "another namespace": `/pk/note/${alice.id}`,
    "upper-case user ID": `/dim/note/${alice.id.toUpperCase()}`,
    "an extra segment": `/dim/note/${alice.id}/x`,
    "no type": `/dim/${alice.id}`,
    "an empty key": "",
  };
  for (const [what, key] of Object.entries(keys)) {
    await t.step(what, async () => {
      await assert.rejects(
        validateRecord(key, signed.bytes, { now: NOW }),
        invalid(/the key does not belong/),
      );
    });
  }
  await t.step("a key that is not UTF-8", async () => {
    await assert.rejects(
      validateRecord(new Uint8Array([0x2f, 0xff]), signed.bytes, { now: NOW }),
      invalid(/the key is not UTF-8/),
    );
  });
});

Deno.test("validateRecord() accepts an expired record only within the clock-skew tolerance", async () => {
  const signed = await note(alice, 1, { ttlMs: HOUR });
  const expiresAt = NOW + HOUR;
  await validateRecord(signed.key, signed.bytes, { now: expiresAt });
  await validateRecord(signed.key, signed.bytes, { now: expiresAt + CLOCK_SKEW_TOLERANCE_MS - 1 });
  await assert.rejects(
    validateRecord(signed.key, signed.bytes, { now: expiresAt + CLOCK_SKEW_TOLERANCE_MS }),
    invalid(/^Cannot accept record: it has expired$/),
  );
});

Deno.test("validateRecord() rejects a record issued too far in the future", async () => {
  const signed = await note(alice, 1);
  await validateRecord(signed.key, signed.bytes, { now: NOW - CLOCK_SKEW_TOLERANCE_MS });
  await assert.rejects(
    validateRecord(signed.key, signed.bytes, { now: NOW - CLOCK_SKEW_TOLERANCE_MS - 1 }),
    invalid(/^Cannot accept record: it is issued in the future$/),
  );
});

Deno.test("validateRecord() uses the current time by default", async () => {
  const fresh = await signRecord(alice, { type: "note", seq: 1, payload: PAYLOAD });
  await validateRecord(fresh.key, fresh.bytes);
  const stale = await note(alice, 1);
  await assert.rejects(validateRecord(stale.key, stale.bytes), invalid(/expired/));
});

Deno.test("validateRecord() rejects an oversized record before parsing it", async () => {
  const huge = new Uint8Array(MAX_RECORD_SIZE + 1);
  huge[0] = 1;
  await assert.rejects(
    validateRecord(`/dim/note/${alice.id}`, huge),
    invalid(/^Cannot decode record: 10241 bytes exceeds the 10240-byte limit$/),
  );
});

Deno.test("signRecord() fills a record up to exactly the size limit and no further", async () => {
  const overhead = 1 + 1 + 4 + 32 + 8 + 8 + 8 + 4 + 64;
  const payload = new Uint8Array(MAX_RECORD_SIZE - overhead);
  const full = await signRecord(alice, { type: "note", seq: 1, payload, issuedAt: NOW });
  assert.equal(full.bytes.length, MAX_RECORD_SIZE);
  await validateRecord(full.key, full.bytes, { now: NOW });
  await assert.rejects(
    signRecord(alice, { type: "note", seq: 1, payload: new Uint8Array(payload.length + 1) }),
    { name: "RangeError", message: /over the 10240-byte limit/ },
  );
});

Deno.test("decodeRecord() rejects malformed encodings", async (t) => {
  const good = await rawRecord(alice);
  const cases: Record<string, [Uint8Array | Promise<Uint8Array>, RegExp]> = {
    "a trailing byte": [concat(good, new Uint8Array([0])), /trailing bytes/],
    "a missing byte": [good.subarray(0, good.length - 1), /truncated/],
    "an empty input": [new Uint8Array(), /truncated/],
    "an unknown version": [rawRecord(alice, { version: 2 }), /unknown version 2$/],
    "version 0": [rawRecord(alice, { version: 0 }), /unknown version 0$/],
    "an empty type": [rawRecord(alice, { type: "" }), /not a valid record type/],
    "an upper-case type": [rawRecord(alice, { type: "Note" }), /not a valid record type/],
    "a type of 33 characters": [rawRecord(alice, { type: "a".repeat(33) }), /not a valid/],
    "a non-ASCII type": [rawRecord(alice, { type: "nöte" }), /not a valid record type/],
    "a type that is not UTF-8": [
      (async () => {
        const b = await rawRecord(alice, { type: "note" });
        b[2] = 0xff;
        return b;
      })(),
      /not a valid record type/,
    ],
    "a payload length past the end": [
      (() => {
        const b = good.slice();
        b[1 + 1 + 4 + 32 + 24] = 0xff;
        return b;
      })(),
      /truncated/,
    ],
    "expiry equal to issue time": [rawRecord(alice, { expiresAt: NOW }), /expires before/],
    "expiry before issue time": [rawRecord(alice, { expiresAt: NOW - 1 }), /expires before/],
    "a lifetime over the maximum": [
      rawRecord(alice, { expiresAt: NOW + MAX_RECORD_LIFETIME_MS + 1 }),
      /lifetime exceeds/,
    ],
  };
  for (const [what, [bytes, message]] of Object.entries(cases)) {
    await t.step(`decodeRecord() and validateRecord() reject ${what}`, async () => {
      const input = await bytes;
      assert.throws(() => decodeRecord(input), invalid(message));
      await assert.rejects(
        validateRecord(`/dim/note/${alice.id}`, input, { now: NOW }),
        invalid(message),
      );
    });
  }
  await t.step("a lifetime of exactly the maximum is accepted", async () => {
    const bytes = await rawRecord(alice, { expiresAt: NOW + MAX_RECORD_LIFETIME_MS });
    await validateRecord(`/dim/note/${alice.id}`, bytes, { now: NOW });
  });
});

Deno.test("signRecord() rejects bad inputs", async (t) => {
  const cases: Record<string, [Parameters<typeof signRecord>[1], string, RegExp]> = {
    "an invalid type": [{ type: "no/slash", seq: 1, payload: PAYLOAD }, "TypeError", /record type/],
    "a negative seq": [{ type: "note", seq: -1, payload: PAYLOAD }, "RangeError", /seq/],
    "a fractional seq": [{ type: "note", seq: 1.5, payload: PAYLOAD }, "RangeError", /seq/],
    "a zero TTL": [{ type: "note", seq: 1, payload: PAYLOAD, ttlMs: 0 }, "RangeError", /ttlMs/],
    "a TTL over the maximum": [
      { type: "note", seq: 1, payload: PAYLOAD, ttlMs: MAX_RECORD_LIFETIME_MS + 1 },
      "RangeError",
      /ttlMs/,
    ],
    "a negative issue time": [
      { type: "note", seq: 1, payload: PAYLOAD, issuedAt: -1 },
      "RangeError",
      /issuedAt/,
    ],
  };
  for (const [what, [options, name, message]] of Object.entries(cases)) {
    await t.step(what, async () => {
      await assert.rejects(signRecord(alice, options), { name, message });
    });
  }
});

Deno.test("recordKey() derives the same key from a signing key or a user ID", () => {
  const expected = `/dim/card/${alice.id}`;
  assert.equal(recordKey("card", alice.signingPublicKey), expected);
  assert.equal(recordKey("card", ` ${alice.id.toUpperCase()} `), expected);
  assert.throws(() => recordKey("Card", alice.id), { name: "TypeError" });
  assert.throws(
    () => recordKey("card", alice.id.slice(0, -1) + (alice.id.endsWith("a") ? "b" : "a")),
    { name: "InvalidIdError" },
  );
  assert.throws(() => recordKey("card", new Uint8Array(31)), { name: "TypeError" });
});

Deno.test("selectRecord() prefers the higher sequence number", async () => {
  const v1 = await note(alice, 1, { ttlMs: 2 * HOUR });
  const v2 = await note(alice, 2, { ttlMs: HOUR });
  assert.equal(selectRecord([v1.bytes, v2.bytes]), 1);
  assert.equal(selectRecord([v2.bytes, v1.bytes]), 0);
});

Deno.test("selectRecord() breaks a sequence tie by the later expiry", async () => {
  const short = await note(alice, 5, { ttlMs: HOUR });
  const long = await note(alice, 5, { ttlMs: 2 * HOUR });
  assert.equal(selectRecord([long.bytes, short.bytes]), 0);
  assert.equal(selectRecord([short.bytes, long.bytes]), 1);
});

function* permutations<T>(items: readonly T[]): Generator<T[]> {
  if (items.length <= 1) {
    yield [...items];
    return;
  }
  for (let i = 0; i < items.length; i++) {
    const rest = [...items.slice(0, i), ...items.slice(i + 1)];
    for (const tail of permutations(rest)) yield [items[i]!, ...tail];
  }
}

Deno.test("selectRecord() gives the same answer for every order of its inputs", async () => {
  const candidates = [
    (await note(alice, 1, { ttlMs: 3 * HOUR })).bytes,
    (await note(alice, 2, { ttlMs: HOUR })).bytes,
    // Same seq and expiry: only the deterministic byte-order tie-break separates them.
    (await signRecord(alice, {
      type: "note",
      seq: 2,
      payload: utf8("a"),
      issuedAt: NOW,
      ttlMs: 2 * HOUR,
    })).bytes,
    (await signRecord(alice, {
      type: "note",
      seq: 2,
      payload: utf8("b"),
      issuedAt: NOW,
      ttlMs: 2 * HOUR,
    })).bytes,
    new Uint8Array([1, 2, 3]),
  ];
  const winners = new Set<Uint8Array>();
  let orders = 0;
  for (const order of permutations(candidates)) {
    winners.add(order[selectRecord(order)]!);
    orders++;
  }
  assert.equal(orders, 120);
  assert.equal(winners.size, 1);
  // The payloads "a" and "b" are the first difference: the greater encoding wins.
  assert.equal([...winners][0], candidates[3]);
});

Deno.test("selectRecord() never picks an entry that does not decode", async () => {
  const valid = await note(alice, 1);
  const garbage = [
    new Uint8Array(),
    new Uint8Array(MAX_RECORD_SIZE + 1).fill(0xff),
    concat(valid.bytes, new Uint8Array([0])),
    (() => {
      const b = valid.bytes.slice();
      b[0] = 9;
      return b;
    })(),
  ];
  assert.equal(selectRecord([...garbage, valid.bytes]), garbage.length);
  assert.equal(selectRecord([valid.bytes, ...garbage]), 0);
  assert.throws(() => selectRecord(garbage), invalid(/none of the 4 candidates decodes/));
  assert.throws(() => selectRecord([]), { name: "RangeError" });
});

Deno.test("compareRecords() is antisymmetric and zero only for identical encodings", async () => {
  const a = await note(alice, 1);
  const b = await note(alice, 2);
  assert.ok(compareRecords(b, a) > 0);
  assert.ok(compareRecords(a, b) < 0);
  assert.equal(compareRecords(a, a), 0);
});

Deno.test("isNewer() refuses to go backwards", async () => {
  const v1 = await note(alice, 1);
  const v2 = await note(alice, 2);
  assert.equal(isNewer(v2.bytes, v1.bytes), true);
  assert.equal(isNewer(v1.bytes, v2.bytes), false);
  assert.equal(isNewer(v2.bytes, v2.bytes), false);
  assert.equal(isNewer(new Uint8Array([1]), v1.bytes), false);
  assert.equal(isNewer(v1.bytes, new Uint8Array([1])), true);
});

Deno.test("dimValidator() and dimSelector() fit kad-dht's shapes", async () => {
  const v1 = await signRecord(alice, { type: "note", seq: 1, payload: PAYLOAD });
  const v2 = await signRecord(alice, { type: "note", seq: 2, payload: PAYLOAD });
  const key = utf8(v1.key);
  const validators: Validators = { dim: dimValidator };
  const selectors: Selectors = { dim: dimSelector };
  await validators.dim!(key, v1.bytes);
  await assert.rejects(
    async () => await validators.dim!(utf8(`/dim/note/${bob.id}`), v1.bytes),
    invalid(/key/),
  );
  assert.equal(selectors.dim!(key, [v1.bytes, v2.bytes]), 1);
  await assert.rejects(
    dimValidator(key, v1.bytes, { signal: AbortSignal.abort() }),
    { name: "AbortError" },
  );
});
