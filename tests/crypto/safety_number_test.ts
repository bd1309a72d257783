import assert from "node:assert/strict";
import { concat, utf8 } from "../../lib/platform/bytes.ts";
import { Identity, type PublicIdentity } from "../../lib/crypto/identity.ts";
import {
  fingerprint,
  SAFETY_NUMBER_ITERATIONS,
  safetyNumber,
} from "../../lib/crypto/safety_number.ts";

const alice = await Identity.generate();
const bob = await Identity.generate();

function seed(byte: number): Uint8Array {
  return new Uint8Array(32).fill(byte);
}

// The construction as specified, computed with WebCrypto SHA-512 and BigInt
// arithmetic, independently of the module under test.
async function referenceDigits(p: PublicIdentity): Promise<string> {
  const keys = concat(p.signingPublicKey, p.encryptionPublicKey);
  let hash = new Uint8Array(
    await crypto.subtle.digest("SHA-512", concat(new Uint8Array([0, 0]), keys, utf8(p.id))),
  );
  for (let i = 0; i < 5200; i++) {
    hash = new Uint8Array(await crypto.subtle.digest("SHA-512", concat(hash, keys)));
  }
  let digits = "";
  for (let chunk = 0; chunk < 6; chunk++) {
    let value = 0n;
    for (const byte of hash.subarray(chunk * 5, chunk * 5 + 5)) {
      value = (value << 8n) | BigInt(byte);
    }
    digits += (value % 100000n).toString().padStart(5, "0");
  }
  return digits;
}

Deno.test("safetyNumber() matches the specified construction", async () => {
  assert.equal(SAFETY_NUMBER_ITERATIONS, 5200);
  const halves = [await referenceDigits(alice.public), await referenceDigits(bob.public)].sort();
  const expected = halves.join("").replace(/(\d{5})(?=\d)/g, "$1 ");
  assert.equal(safetyNumber(alice.public, bob.public), expected);
});

Deno.test("safetyNumber() is the same on both sides", () => {
  assert.equal(
    safetyNumber(alice.public, bob.public),
    safetyNumber(bob.public, alice.public),
  );
});

Deno.test("safetyNumber() is 60 digits in 12 groups of 5", () => {
  const number = safetyNumber(alice.public, bob.public);
  assert.match(number, /^\d{5}( \d{5}){11}$/);
  assert.equal(number.replaceAll(" ", "").length, 60);
});

Deno.test("safetyNumber() changes when either key of either side changes", async (t) => {
  const a = await Identity.fromSeeds({ signing: seed(1), encryption: seed(2) });
  const b = await Identity.fromSeeds({ signing: seed(3), encryption: seed(4) });
  const base = safetyNumber(a.public, b.public);
  const variants: Record<string, [PublicIdentity, PublicIdentity]> = {
    "the first party's signing key": [
      (await Identity.fromSeeds({ signing: seed(5), encryption: seed(2) })).public,
      b.public,
    ],
    "the first party's encryption key": [
      (await Identity.fromSeeds({ signing: seed(1), encryption: seed(5) })).public,
      b.public,
    ],
    "the second party's signing key": [
      a.public,
      (await Identity.fromSeeds({ signing: seed(5), encryption: seed(4) })).public,
    ],
    "the second party's encryption key": [
      a.public,
      (await Identity.fromSeeds({ signing: seed(3), encryption: seed(5) })).public,
    ],
  };
  for (const [what, [x, y]] of Object.entries(variants)) {
    await t.step(what, () => {
      assert.notEqual(safetyNumber(x, y), base);
    });
  }
});

Deno.test("safetyNumber() rejects a user ID that is not the signing key's", () => {
  const mismatched: PublicIdentity = { ...alice.public, id: bob.id };
  assert.throws(() => safetyNumber(mismatched, bob.public), {
    name: "InvalidIdError",
    message: /^Cannot compute safety number: the user ID does not belong to the signing key$/,
  });
  assert.throws(() => safetyNumber(alice.public, { ...bob.public, id: "dimnotanid" }), {
    name: "InvalidIdError",
  });
});

Deno.test("safetyNumber() rejects keys of the wrong length", () => {
  const short: PublicIdentity = { ...alice.public, encryptionPublicKey: new Uint8Array(31) };
  assert.throws(() => safetyNumber(short, bob.public), {
    name: "TypeError",
    message: /must be 32 bytes/,
  });
});

Deno.test("fingerprint() is stable and 5 groups of 4 hex digits", async () => {
  const shown = fingerprint(alice.public);
  assert.match(shown, /^[0-9a-f]{4}( [0-9a-f]{4}){4}$/);
  const restored = await Identity.fromSeeds(alice.exportSeeds());
  assert.equal(fingerprint(restored.public), shown);
});

Deno.test("fingerprint() is the first 10 bytes of the labelled SHA-256", async () => {
  const digest = new Uint8Array(
    await crypto.subtle.digest(
      "SHA-256",
      concat(utf8("DIM-v1-fingerprint\0"), alice.signingPublicKey, alice.encryptionPublicKey),
    ),
  );
  const hex = Array.from(digest.subarray(0, 10), (b) => b.toString(16).padStart(2, "0")).join("");
  assert.equal(fingerprint(alice.public), hex.replace(/(.{4})(?=.)/g, "$1 "));
});

Deno.test("fingerprint() differs when either key differs", async () => {
  const a = await Identity.fromSeeds({ signing: seed(1), encryption: seed(2) });
  const otherSigning = await Identity.fromSeeds({ signing: seed(3), encryption: seed(2) });
  const otherEncryption = await Identity.fromSeeds({ signing: seed(1), encryption: seed(3) });
  const base = fingerprint(a.public);
  assert.notEqual(fingerprint(otherSigning.public), base);
  assert.notEqual(fingerprint(otherEncryption.public), base);
  assert.throws(() => fingerprint({ ...a.public, id: bob.id }), { name: "InvalidIdError" });
});
