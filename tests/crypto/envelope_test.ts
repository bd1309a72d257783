import { deepStrictEqual, notDeepStrictEqual, ok, strictEqual } from "node:assert/strict";
import { assertRejects } from "../_support/assert.ts";
import { concat, u32, u64, utf8 } from "../../lib/platform/bytes.ts";
import {
  ENVELOPE_ID_LENGTH,
  ENVELOPE_VERSION,
  type EnvelopeRecipient,
  MAX_BODY_LENGTH,
  MAX_ENVELOPE_LENGTH,
  MIN_ENVELOPE_LENGTH,
  openEnvelope,
  sealEnvelope,
} from "../../lib/crypto/envelope.ts";
import { openBase, setupBaseS } from "../../lib/crypto/hpke.ts";
import { Identity, type SignatureDomain } from "../../lib/crypto/identity.ts";
import { DecryptionError, EncryptionError, OutdatedVersionError } from "../../lib/errors.ts";

const DECRYPTION_MESSAGE = new DecryptionError().message;
const AAD = new Uint8Array([ENVELOPE_VERSION]);
/** HPKE's info for an envelope to the owner of `signingKey`. */
const info = (signingKey: Uint8Array) => concat(utf8("DIM-v2 envelope"), signingKey);

const alice = await Identity.generate();
const bob = await Identity.generate();
const mallory = await Identity.generate();

/** The one failure openEnvelope() may show: same class, same message, no cause. */
async function assertUniformRejection(promise: Promise<unknown>): Promise<void> {
  const err = await assertRejects(promise, DecryptionError, DECRYPTION_MESSAGE);
  strictEqual(err.cause, undefined);
}

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

interface InnerFields {
  senderSigningKey: Uint8Array;
  id: Uint8Array;
  timestamp: number;
  contentType: number;
  bodyLength: number;
  body: Uint8Array;
}

/** The inner plaintext without its signature, written straight from the wire format. */
function innerWithoutSignature(f: InnerFields): Uint8Array {
  return concat(
    f.senderSigningKey,
    f.id,
    u64(f.timestamp),
    new Uint8Array([f.contentType]),
    u32(f.bodyLength),
    f.body,
  );
}

function fields(body: Uint8Array, overrides: Partial<InnerFields> = {}): InnerFields {
  return {
    senderSigningKey: alice.signingPublicKey,
    id: new Uint8Array(ENVELOPE_ID_LENGTH).fill(3),
    timestamp: 1_700_000_000_000,
    contentType: 1,
    bodyLength: body.length,
    body,
    ...overrides,
  };
}

/**
 * Builds an envelope with the HPKE layer directly, signed by `signer` for
 * `domain`, so tests can make envelopes `sealEnvelope` never would. It is
 * sealed to `recipient`'s X25519 key; the identity named in HPKE's info and
 * in the signature is `recipient`'s unless `infoNames` or `signatureNames`
 * say otherwise.
 */
async function craftEnvelope(
  recipient: EnvelopeRecipient,
  inner: Uint8Array,
  signer: Identity,
  domain: SignatureDomain,
  names: { readonly infoNames?: Uint8Array; readonly signatureNames?: Uint8Array } = {},
): Promise<Uint8Array> {
  const { enc, context } = await setupBaseS(recipient.encryptionPublicKey, {
    info: info(names.infoNames ?? recipient.signingPublicKey),
  });
  const signature = await signer.sign(
    domain,
    concat(
      AAD,
      names.signatureNames ?? recipient.signingPublicKey,
      recipient.encryptionPublicKey,
      enc,
      inner,
    ),
  );
  const ciphertext = await context.seal(concat(inner, signature), AAD);
  return concat(AAD, enc, ciphertext);
}

/** An envelope of version 1, as DIM wrote it before the recipient's identity was bound. */
async function versionOneEnvelope(recipientKey: Uint8Array, inner: Uint8Array) {
  const v1 = new Uint8Array([1]);
  const { enc, context } = await setupBaseS(recipientKey, { info: utf8("DIM-v1 envelope") });
  const signature = await alice.sign("envelope", concat(recipientKey, enc, inner));
  return concat(v1, enc, await context.seal(concat(inner, signature), v1));
}

/** Re-seals an inner plaintext (signature included) under a fresh `enc`. */
async function reseal(recipient: EnvelopeRecipient, plaintext: Uint8Array): Promise<Uint8Array> {
  const { enc, context } = await setupBaseS(recipient.encryptionPublicKey, {
    info: info(recipient.signingPublicKey),
  });
  return concat(AAD, enc, await context.seal(plaintext, AAD));
}

/** Opens the HPKE layer of an envelope the way its recipient can, without checking it. */
function openInner(recipient: Identity, envelope: Uint8Array): Promise<Uint8Array> {
  return openBase(
    { privateKey: recipient.encryptionPrivateKey, publicKey: recipient.encryptionPublicKey },
    { enc: envelope.subarray(1, 33), ciphertext: envelope.subarray(33) },
    { info: info(recipient.signingPublicKey), aad: AAD },
  );
}

Deno.test("openEnvelope() returns what sealEnvelope() sealed, with the verified sender", async () => {
  const body = utf8("Hello Bob, it's Alice.");
  const id = crypto.getRandomValues(new Uint8Array(16));
  const sealed = await sealEnvelope(alice, bob, {
    body,
    contentType: 7,
    id,
    timestamp: 1_712_345_678_901,
  });
  const opened = await openEnvelope(bob, sealed);
  deepStrictEqual(opened.body, body);
  deepStrictEqual(opened.id, id);
  strictEqual(opened.timestamp, 1_712_345_678_901);
  strictEqual(opened.contentType, 7);
  deepStrictEqual(opened.senderSigningKey, alice.signingPublicKey);
  strictEqual(opened.senderId, alice.id);
});

Deno.test("sealEnvelope() defaults to a random id, the current time and content type 0", async () => {
  const before = Date.now();
  const a = await openEnvelope(
    bob,
    await sealEnvelope(alice, bob, { body: utf8("a") }),
  );
  const b = await openEnvelope(
    bob,
    await sealEnvelope(alice, bob, { body: utf8("b") }),
  );
  const after = Date.now();
  strictEqual(a.id.length, ENVELOPE_ID_LENGTH);
  notDeepStrictEqual(a.id, b.id);
  ok(a.timestamp >= before && a.timestamp <= after);
  strictEqual(a.contentType, 0);
});

Deno.test("timestamps and content types round trip at their limits", async (t) => {
  for (const [timestamp, contentType] of [[0, 0], [Number.MAX_SAFE_INTEGER, 255]] as const) {
    await t.step(`timestamp ${timestamp}, content type ${contentType}`, async () => {
      const sealed = await sealEnvelope(alice, bob, {
        body: utf8("x"),
        timestamp,
        contentType,
      });
      const opened = await openEnvelope(bob, sealed);
      strictEqual(opened.timestamp, timestamp);
      strictEqual(opened.contentType, contentType);
    });
  }
});

Deno.test("an empty body and a body of MAX_BODY_LENGTH round trip", async () => {
  const empty = await openEnvelope(
    bob,
    await sealEnvelope(alice, bob, { body: new Uint8Array(0) }),
  );
  strictEqual(empty.body.length, 0);
  const body = new Uint8Array(MAX_BODY_LENGTH).fill(0x5a);
  const sealed = await sealEnvelope(alice, bob, { body });
  strictEqual(sealed.length, MAX_ENVELOPE_LENGTH);
  deepStrictEqual((await openEnvelope(bob, sealed)).body, body);
});

Deno.test("openEnvelope() rejects an envelope addressed to someone else", async () => {
  const sealed = await sealEnvelope(alice, bob, { body: utf8("for Bob") });
  await assertUniformRejection(openEnvelope(mallory, sealed));
  await assertUniformRejection(openEnvelope(alice, sealed));
});

Deno.test("openEnvelope() rejects every single-bit flip with the same message", async () => {
  const sealed = await sealEnvelope(alice, bob, {
    body: new Uint8Array(16).fill(1),
  });
  let flips = 0;
  for (let bit = 0; bit < sealed.length * 8; bit++) {
    const flipped = new Uint8Array(sealed);
    flipped[bit >> 3]! ^= 1 << (bit & 7);
    await assertUniformRejection(openEnvelope(bob, flipped));
    flips++;
  }
  strictEqual(flips, sealed.length * 8);
  // And the original still opens: the failures came from the flips.
  strictEqual((await openEnvelope(bob, sealed)).body.length, 16);
});

Deno.test("openEnvelope() rejects every truncation", async () => {
  const sealed = await sealEnvelope(alice, bob, { body: utf8("truncate me") });
  for (let length = 0; length < sealed.length; length++) {
    await assertUniformRejection(openEnvelope(bob, sealed.subarray(0, length)));
  }
});

Deno.test("openEnvelope() rejects a trailing byte and oversized input", async () => {
  const sealed = await sealEnvelope(alice, bob, { body: utf8("exact") });
  await assertUniformRejection(openEnvelope(bob, concat(sealed, new Uint8Array([0]))));
  const oversized = new Uint8Array(MAX_ENVELOPE_LENGTH + 1);
  oversized[0] = ENVELOPE_VERSION;
  await assertUniformRejection(openEnvelope(bob, oversized));
  await assertUniformRejection(openEnvelope(bob, new Uint8Array(16 * 1024 * 1024)));
});

Deno.test("openEnvelope() rejects an unknown version", async () => {
  const sealed = await sealEnvelope(alice, bob, { body: utf8("v2") });
  for (const version of [0, 3, 255]) {
    const other = new Uint8Array(sealed);
    other[0] = version;
    await assertUniformRejection(openEnvelope(bob, other));
  }
});

Deno.test("openEnvelope() refuses a version 1 envelope, saying the sender runs an older DIM", async () => {
  strictEqual(ENVELOPE_VERSION, 2);
  const sealed = await versionOneEnvelope(
    bob.encryptionPublicKey,
    innerWithoutSignature(fields(utf8("from an older DIM"))),
  );
  const err = await assertRejects(
    openEnvelope(bob, sealed),
    OutdatedVersionError,
    "Cannot open message: the sender runs an older DIM (envelope version 1, " +
      "this DIM reads version 2 only); ask them to update DIM",
  );
  ok(err instanceof DecryptionError, "callers that treat unreadable envelopes alike still do");
  strictEqual(err instanceof OutdatedVersionError && err.version, 1);
  // Only one that could be an envelope: a short one is just unreadable.
  await assertUniformRejection(openEnvelope(bob, sealed.subarray(0, MIN_ENVELOPE_LENGTH - 1)));
});

Deno.test("openEnvelope() rejects an envelope for another identity sealed to the opener's key", async () => {
  // Mallory's card: her user ID, Bob's X25519 key. Alice writes to "Mallory".
  const card = {
    signingPublicKey: mallory.signingPublicKey,
    encryptionPublicKey: bob.encryptionPublicKey,
  };
  const toMallory = await sealEnvelope(alice, card, { body: utf8("for Mallory only") });
  // Mallory forwards the bytes to Bob, who holds the X25519 key.
  await assertUniformRejection(openEnvelope(bob, toMallory));
  // Mallory, who named herself, cannot open it either: she lacks the key.
  await assertUniformRejection(openEnvelope(mallory, toMallory));
});

Deno.test("openEnvelope() checks the recipient's identity in HPKE's info and in the signature, each", async () => {
  const inner = innerWithoutSignature(fields(utf8("which Bob?")));
  // Either binding alone refuses the envelope.
  const infoOnly = await craftEnvelope(bob, inner, alice, "envelope", {
    signatureNames: mallory.signingPublicKey,
  });
  await assertUniformRejection(openEnvelope(bob, infoOnly));
  const signatureOnly = await craftEnvelope(bob, inner, alice, "envelope", {
    infoNames: mallory.signingPublicKey,
  });
  await assertUniformRejection(openEnvelope(bob, signatureOnly));
  // Both naming Bob: it opens (the helper is sound).
  const both = await craftEnvelope(bob, inner, alice, "envelope");
  strictEqual((await openEnvelope(bob, both)).senderId, alice.id);
});

Deno.test("openEnvelope() accepts a crafted envelope that follows the wire format", async () => {
  // Validates the crafting helpers the next tests rely on.
  const body = utf8("crafted");
  const sealed = await craftEnvelope(
    bob,
    innerWithoutSignature(fields(body)),
    alice,
    "envelope",
  );
  const opened = await openEnvelope(bob, sealed);
  deepStrictEqual(opened.body, body);
  strictEqual(opened.senderId, alice.id);
  strictEqual(opened.timestamp, 1_700_000_000_000);
});

Deno.test("openEnvelope() rejects a signature made for another domain", async () => {
  const inner = innerWithoutSignature(fields(utf8("signed as a record")));
  for (const domain of ["record", "ack", "prekey", "mailbox"] as const) {
    const sealed = await craftEnvelope(bob, inner, alice, domain);
    await assertUniformRejection(openEnvelope(bob, sealed));
  }
});

Deno.test("openEnvelope() rejects a sender key that did not make the signature", async () => {
  // Mallory signs but names Alice as the sender.
  const inner = innerWithoutSignature(fields(utf8("I am Alice")));
  const sealed = await craftEnvelope(bob, inner, mallory, "envelope");
  await assertUniformRejection(openEnvelope(bob, sealed));
});

Deno.test("openEnvelope() rejects a bodyLength that does not match the body exactly", async () => {
  const body = utf8("twelve bytes");
  for (const bodyLength of [body.length - 1, body.length + 1, 0, 0xffffffff]) {
    // Correctly signed and sealed: only the strict decoding can catch it.
    const inner = innerWithoutSignature(fields(body, { bodyLength }));
    const sealed = await craftEnvelope(bob, inner, alice, "envelope");
    await assertUniformRejection(openEnvelope(bob, sealed));
  }
});

Deno.test("openEnvelope() rejects a signed message re-sealed to a different recipient", async () => {
  // Alice writes to Mallory; Mallory forwards Alice's signed words to Bob.
  const toMallory = await sealEnvelope(alice, mallory, {
    body: utf8("only for you"),
  });
  const plaintext = await openInner(mallory, toMallory);
  await assertUniformRejection(openEnvelope(bob, await reseal(bob, plaintext)));
});

Deno.test("openEnvelope() rejects a signed message re-sealed under a new enc to the same recipient", async () => {
  const original = await sealEnvelope(alice, bob, { body: utf8("once") });
  const plaintext = await openInner(bob, original);
  await assertUniformRejection(openEnvelope(bob, await reseal(bob, plaintext)));
});

Deno.test("a sealed envelope shows an observer neither the sender nor the body", async () => {
  const body = utf8("the meeting is at noon, bring the documents");
  const id = new Uint8Array(ENVELOPE_ID_LENGTH).fill(0xab);
  const sealed = await sealEnvelope(alice, bob, { body, id });
  ok(!contains(sealed, alice.signingPublicKey), "sender signing key visible");
  ok(!contains(sealed, alice.encryptionPublicKey), "sender encryption key visible");
  ok(!contains(sealed, utf8(alice.id)), "sender id visible");
  ok(!contains(sealed, bob.encryptionPublicKey), "recipient key visible");
  ok(!contains(sealed, bob.signingPublicKey), "recipient signing key visible");
  for (let i = 0; i + 8 <= body.length; i++) {
    ok(!contains(sealed, body.subarray(i, i + 8)), "body visible");
  }
  ok(!contains(sealed, id.subarray(0, 8)), "message id visible");
});

Deno.test("sealEnvelope() rejects invalid input with EncryptionError", async (t) => {
  const key = bob;
  const to = (encryptionPublicKey: Uint8Array, signingPublicKey = bob.signingPublicKey) => ({
    signingPublicKey,
    encryptionPublicKey,
  });
  const cases: [string, () => Promise<unknown>][] = [
    [
      "a body over MAX_BODY_LENGTH",
      () => sealEnvelope(alice, key, { body: new Uint8Array(MAX_BODY_LENGTH + 1) }),
    ],
    ["a 15-byte id", () => sealEnvelope(alice, key, { body: utf8("x"), id: new Uint8Array(15) })],
    ["a 17-byte id", () => sealEnvelope(alice, key, { body: utf8("x"), id: new Uint8Array(17) })],
    ["content type 256", () => sealEnvelope(alice, key, { body: utf8("x"), contentType: 256 })],
    ["content type -1", () => sealEnvelope(alice, key, { body: utf8("x"), contentType: -1 })],
    ["content type 1.5", () => sealEnvelope(alice, key, { body: utf8("x"), contentType: 1.5 })],
    ["a negative timestamp", () => sealEnvelope(alice, key, { body: utf8("x"), timestamp: -1 })],
    ["a fractional timestamp", () => sealEnvelope(alice, key, { body: utf8("x"), timestamp: 0.5 })],
    [
      "a 31-byte recipient key",
      () => sealEnvelope(alice, to(bob.encryptionPublicKey.subarray(0, 31)), { body: utf8("x") }),
    ],
    [
      "a low-order recipient key",
      () => sealEnvelope(alice, to(new Uint8Array(32)), { body: utf8("x") }),
    ],
    [
      "a 31-byte recipient signing key",
      () =>
        sealEnvelope(alice, to(bob.encryptionPublicKey, bob.signingPublicKey.subarray(1)), {
          body: utf8("x"),
        }),
    ],
  ];
  for (const [name, seal] of cases) {
    await t.step(name, async () => {
      await assertRejects(seal(), EncryptionError);
    });
  }
});

Deno.test("the body limit message names the limit", async () => {
  await assertRejects(
    sealEnvelope(alice, bob, { body: new Uint8Array(MAX_BODY_LENGTH + 1) }),
    EncryptionError,
    `Cannot seal envelope: body is ${
      MAX_BODY_LENGTH + 1
    } bytes, over the limit of ${MAX_BODY_LENGTH}`,
  );
});
