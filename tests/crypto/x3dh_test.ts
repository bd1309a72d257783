import assert from "node:assert/strict";
import { hkdf } from "@noble/hashes/hkdf.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { concat, u32, utf8 } from "../../lib/platform/bytes.ts";
import { importX25519Private } from "../../lib/crypto/_keys.ts";
import { Identity } from "../../lib/crypto/identity.ts";
import {
  initReceiver,
  initSender,
  ratchetDecrypt,
  ratchetEncrypt,
} from "../../lib/crypto/ratchet.ts";
import {
  decodeInitialMessage,
  decodeX3dhHeader,
  encodeInitialMessage,
  encodeX3dhHeader,
  generatePrekey,
  initiateX3dh,
  KeyAgreementError,
  type PrekeyKeyPair,
  respondX3dh,
  type SignedPrekey,
  signPrekey,
  verifyPrekeySignature,
  X3DH_HEADER_MAX_LENGTH,
  X3DH_HEADER_MIN_LENGTH,
  type X3dhBundle,
  type X3dhHeader,
} from "../../lib/crypto/x3dh.ts";
import { DecryptionError, ProtocolError } from "../../lib/errors.ts";

const alice = await Identity.generate();
const bob = await Identity.generate();
const mallory = await Identity.generate();
const spk = await generatePrekey(10);
const spkSigned: SignedPrekey = { ...spk, signature: await signPrekey(bob, spk) };

function bundle(opk?: PrekeyKeyPair): X3dhBundle {
  return {
    signingPublicKey: bob.signingPublicKey,
    encryptionPublicKey: bob.encryptionPublicKey,
    signedPrekey: spkSigned,
    ...(opk === undefined ? {} : { oneTimePrekey: { id: opk.id, publicKey: opk.publicKey } }),
  };
}

function rejectsAgreement(message: RegExp): { name: string; message: RegExp } {
  return { name: "KeyAgreementError", message };
}

async function rawDh(
  privateKey: CryptoKey | Uint8Array,
  publicKey: Uint8Array,
): Promise<Uint8Array> {
  const priv = privateKey instanceof Uint8Array
    ? await importX25519Private(privateKey)
    : privateKey;
  const pub = await crypto.subtle.importKey(
    "raw",
    new Uint8Array(publicKey),
    { name: "X25519" },
    true,
    [],
  );
  return new Uint8Array(await crypto.subtle.deriveBits({ name: "X25519", public: pub }, priv, 256));
}

Deno.test("both sides derive the same SK and AD, with and without a one-time prekey", async (t) => {
  for (const withOpk of [true, false]) {
    await t.step(withOpk ? "with a one-time prekey" : "without one", async () => {
      const opk = await generatePrekey(11);
      const sent = await initiateX3dh(alice, bundle(withOpk ? opk : undefined));
      assert.equal(sent.header.oneTimePrekeyId, withOpk ? 11 : null);
      assert.equal(sent.header.signedPrekeyId, 10);
      assert.deepEqual(sent.remoteRatchetKey, spk.publicKey);
      const got = await respondX3dh(bob, sent.header, {
        signedPrekeys: [spk],
        oneTimePrekeys: [opk],
      });
      assert.equal(sent.sharedSecret.length, 32);
      assert.deepEqual(got.sharedSecret, sent.sharedSecret);
      assert.deepEqual(got.associatedData, sent.associatedData);
      assert.equal(got.consumeOneTimePrekeyId, withOpk ? 11 : null);
      assert.deepEqual(got.ownRatchetKeyPair, {
        privateKey: spk.privateKey,
        publicKey: spk.publicKey,
      });
      assert.deepEqual(got.initiator, {
        signingPublicKey: alice.signingPublicKey,
        encryptionPublicKey: alice.encryptionPublicKey,
      });
    });
  }
});

Deno.test("SK is HKDF over F || DH1 || DH2 || DH3 || DH4 with DIM's info, AD the four keys", async () => {
  const opk = await generatePrekey(11);
  const sent = await initiateX3dh(alice, bundle(opk));
  // Recompute from Bob's side with raw DH: the spec, written out.
  const ek = sent.header.ephemeralKey;
  const dh1 = await rawDh(spk.privateKey, alice.encryptionPublicKey);
  const dh2 = await rawDh(bob.encryptionPrivateKey, ek);
  const dh3 = await rawDh(spk.privateKey, ek);
  const dh4 = await rawDh(opk.privateKey, ek);
  const f = new Uint8Array(32).fill(0xff);
  const expected = hkdf(
    sha256,
    concat(f, dh1, dh2, dh3, dh4),
    new Uint8Array(32),
    utf8("DIM-v1 X3DH"),
    32,
  );
  assert.deepEqual(sent.sharedSecret, new Uint8Array(expected));
  assert.deepEqual(
    sent.associatedData,
    concat(
      alice.signingPublicKey,
      alice.encryptionPublicKey,
      bob.signingPublicKey,
      bob.encryptionPublicKey,
    ),
  );
});

Deno.test("every single-bit flip of the signed prekey's signature makes the initiator abort", async () => {
  const { signature } = spkSigned;
  for (let bit = 0; bit < signature.length * 8; bit++) {
    const flipped = new Uint8Array(signature);
    flipped[bit >> 3]! ^= 0x80 >> (bit & 7);
    const forged = { ...bundle(), signedPrekey: { ...spkSigned, signature: flipped } };
    await assert.rejects(
      initiateX3dh(alice, forged),
      rejectsAgreement(/the signed prekey's signature is invalid/),
      `bit ${bit}`,
    );
  }
});

Deno.test("the initiator aborts on any signed prekey its owner did not sign", async (t) => {
  const cases: [string, X3dhBundle][] = [
    ["a flipped bit of the public key", {
      ...bundle(),
      signedPrekey: {
        ...spkSigned,
        publicKey: spkSigned.publicKey.map((b, i) => (i === 5 ? b ^ 1 : b)),
      },
    }],
    ["another ID", { ...bundle(), signedPrekey: { ...spkSigned, id: 11 } }],
    ["a signature by someone else", {
      ...bundle(),
      signedPrekey: { ...spkSigned, signature: await signPrekey(mallory, spk) },
    }],
    ["a signature for another domain", {
      ...bundle(),
      signedPrekey: {
        ...spkSigned,
        signature: await bob.sign("record", concat(u32(spk.id), spk.publicKey)),
      },
    }],
    ["a signature over the key without its ID", {
      ...bundle(),
      signedPrekey: { ...spkSigned, signature: await bob.sign("prekey", spk.publicKey) },
    }],
    ["another signing key for the responder", {
      ...bundle(),
      signingPublicKey: mallory.signingPublicKey,
    }],
    ["a truncated signature", {
      ...bundle(),
      signedPrekey: { ...spkSigned, signature: spkSigned.signature.subarray(1) },
    }],
  ];
  for (const [name, forged] of cases) {
    await t.step(name, async () => {
      await assert.rejects(initiateX3dh(alice, forged), rejectsAgreement(/signature is invalid/));
    });
  }
  await t.step("verifyPrekeySignature agrees", async () => {
    assert(await verifyPrekeySignature(bob.signingPublicKey, spkSigned));
    assert(!(await verifyPrekeySignature(mallory.signingPublicKey, spkSigned)));
    assert(!(await verifyPrekeySignature(bob.signingPublicKey, { ...spkSigned, id: -1 })));
  });
});

Deno.test("low-order and all-zero keys are refused on both sides", async (t) => {
  const lowOrder = [new Uint8Array(32), new Uint8Array([1, ...new Uint8Array(31)])];
  for (const [i, key] of lowOrder.entries()) {
    await t.step(`a signed prekey of low order (${i})`, async () => {
      const bad = { id: 3, publicKey: key };
      const signedPrekey = { ...bad, signature: await signPrekey(bob, bad) };
      await assert.rejects(initiateX3dh(alice, { ...bundle(), signedPrekey }), KeyAgreementError);
    });
    await t.step(`a one-time prekey of low order (${i})`, async () => {
      await assert.rejects(
        initiateX3dh(alice, { ...bundle(), oneTimePrekey: { id: 4, publicKey: key } }),
        KeyAgreementError,
      );
    });
    await t.step(`an ephemeral key of low order (${i})`, async () => {
      const sent = await initiateX3dh(alice, bundle());
      await assert.rejects(
        respondX3dh(bob, { ...sent.header, ephemeralKey: key }, {
          signedPrekeys: [spk],
          oneTimePrekeys: [],
        }),
        KeyAgreementError,
      );
    });
  }
});

Deno.test("an unknown signed prekey, or a wrong or missing one-time prekey, fails", async (t) => {
  const opk = await generatePrekey(11);
  const other = await generatePrekey(12);
  const sent = await initiateX3dh(alice, bundle(opk));
  const all = { signedPrekeys: [spk], oneTimePrekeys: [opk, other] };

  await t.step("a retired or never issued signed prekey", async () => {
    await assert.rejects(
      respondX3dh(bob, sent.header, { ...all, signedPrekeys: [] }),
      rejectsAgreement(/the signed prekey is unknown or retired/),
    );
  });
  await t.step("a one-time prekey already used", async () => {
    await assert.rejects(
      respondX3dh(bob, sent.header, { ...all, oneTimePrekeys: [other] }),
      rejectsAgreement(/the one-time prekey is unknown or already used/),
    );
  });
  await t.step("a header naming another one-time prekey derives another secret", async () => {
    const got = await respondX3dh(bob, { ...sent.header, oneTimePrekeyId: 12 }, all);
    assert.notDeepEqual(got.sharedSecret, sent.sharedSecret);
  });
  await t.step("a header that drops the one-time prekey derives another secret", async () => {
    const got = await respondX3dh(bob, { ...sent.header, oneTimePrekeyId: null }, all);
    assert.notDeepEqual(got.sharedSecret, sent.sharedSecret);
    assert.equal(got.consumeOneTimePrekeyId, null);
  });
  await t.step("a header naming another initiator derives another secret", async () => {
    const got = await respondX3dh(bob, {
      ...sent.header,
      initiatorEncryptionKey: mallory.encryptionPublicKey,
    }, all);
    assert.notDeepEqual(got.sharedSecret, sent.sharedSecret);
  });
  await t.step("a header claiming another signing key changes AD", async () => {
    const got = await respondX3dh(bob, {
      ...sent.header,
      initiatorSigningKey: mallory.signingPublicKey,
    }, all);
    assert.deepEqual(got.sharedSecret, sent.sharedSecret);
    assert.notDeepEqual(got.associatedData, sent.associatedData);
  });
});

/** Bob's side as the messaging layer will run it: OPK deleted only on success. */
async function receiveInitial(
  bytes: Uint8Array,
  store: { signedPrekeys: PrekeyKeyPair[]; oneTimePrekeys: PrekeyKeyPair[] },
): Promise<string> {
  const { header, message } = decodeInitialMessage(bytes);
  const r = await respondX3dh(bob, header, store);
  const { plaintext } = await ratchetDecrypt(
    initReceiver(r.sharedSecret, r.ownRatchetKeyPair, r.associatedData),
    message,
  );
  if (r.consumeOneTimePrekeyId !== null) {
    store.oneTimePrekeys = store.oneTimePrekeys.filter((k) => k.id !== r.consumeOneTimePrekeyId);
  }
  return new TextDecoder().decode(plaintext);
}

Deno.test("a one-time prekey is consumed only once the first message decrypts", async () => {
  const opk = await generatePrekey(11);
  const store = { signedPrekeys: [spk], oneTimePrekeys: [opk] };
  const sent = await initiateX3dh(alice, bundle(opk));
  const state = await initSender(sent.sharedSecret, sent.remoteRatchetKey, sent.associatedData);
  const { message } = await ratchetEncrypt(state, new TextEncoder().encode("hello Bob"));
  const genuine = encodeInitialMessage({ header: sent.header, message });

  // A forged first message under the same header fails, and the prekey stays.
  const forged = new Uint8Array(genuine);
  forged[forged.length - 1]! ^= 1;
  await assert.rejects(receiveInitial(forged, store), DecryptionError);
  assert.equal(store.oneTimePrekeys.length, 1);

  assert.equal(await receiveInitial(genuine, store), "hello Bob");
  assert.equal(store.oneTimePrekeys.length, 0);
  // A replay of the first message can no longer start a session.
  await assert.rejects(receiveInitial(genuine, store), KeyAgreementError);
});

Deno.test("X3DH starts a ratchet in which Bob can answer", async () => {
  const sent = await initiateX3dh(alice, bundle());
  let aliceState = await initSender(sent.sharedSecret, sent.remoteRatchetKey, sent.associatedData);
  const first = await ratchetEncrypt(aliceState, new TextEncoder().encode("hi"));
  aliceState = first.state;
  const got = await respondX3dh(bob, sent.header, { signedPrekeys: [spk], oneTimePrekeys: [] });
  const opened = await ratchetDecrypt(
    initReceiver(got.sharedSecret, got.ownRatchetKeyPair, got.associatedData),
    first.message,
  );
  const reply = await ratchetEncrypt(opened.state, new TextEncoder().encode("hi Alice"));
  const back = await ratchetDecrypt(aliceState, reply.message);
  assert.equal(new TextDecoder().decode(back.plaintext), "hi Alice");
});

Deno.test("the X3DH header round-trips and is decoded strictly", async (t) => {
  const opk = await generatePrekey(0xffffffff);
  const withOpk = (await initiateX3dh(alice, bundle(opk))).header;
  const without = (await initiateX3dh(alice, bundle())).header;

  await t.step("round trip", () => {
    for (const header of [withOpk, without]) {
      const bytes = encodeX3dhHeader(header);
      assert.equal(
        bytes.length,
        header.oneTimePrekeyId === null ? X3DH_HEADER_MIN_LENGTH : X3DH_HEADER_MAX_LENGTH,
      );
      assert.deepEqual(decodeX3dhHeader(bytes), header);
    }
  });
  await t.step("every truncation and trailing bytes", () => {
    const bytes = encodeX3dhHeader(withOpk);
    for (let n = 0; n < bytes.length; n++) {
      assert.throws(() => decodeX3dhHeader(bytes.subarray(0, n)), ProtocolError, `length ${n}`);
    }
    const without = encodeX3dhHeader({ ...withOpk, oneTimePrekeyId: null });
    assert.throws(() => decodeX3dhHeader(concat(without, new Uint8Array(1))), {
      name: "ProtocolError",
      message: /trailing bytes/,
    });
    assert.throws(() => decodeX3dhHeader(concat(bytes, new Uint8Array(1))), ProtocolError);
  });
  await t.step("an unknown version or flag", () => {
    const bytes = encodeX3dhHeader(without);
    for (
      const [index, value, pattern] of [[0, 3, /unknown version/], [
        bytes.length - 1,
        2,
        /flag/,
      ]] as const
    ) {
      const changed = new Uint8Array(bytes);
      changed[index] = value;
      assert.throws(() => decodeX3dhHeader(changed), { name: "ProtocolError", message: pattern });
    }
  });
  await t.step("encoding refuses bad fields", () => {
    assert.throws(
      () => encodeX3dhHeader({ ...without, ephemeralKey: new Uint8Array(31) }),
      TypeError,
    );
    assert.throws(() => encodeX3dhHeader({ ...without, signedPrekeyId: 2 ** 32 }), RangeError);
    assert.throws(() => encodeX3dhHeader({ ...without, oneTimePrekeyId: -1 }), RangeError);
  });
});

Deno.test("initial messages round-trip and are bounded", async () => {
  const header: X3dhHeader = (await initiateX3dh(alice, bundle())).header;
  const state = await initSender(new Uint8Array(32), spk.publicKey, new Uint8Array());
  const { message } = await ratchetEncrypt(state, new Uint8Array(3));
  const bytes = encodeInitialMessage({ header, message });
  assert.deepEqual(decodeInitialMessage(bytes), { header, message });
  assert.throws(() => decodeInitialMessage(bytes.subarray(0, bytes.length - 4)), {
    name: "ProtocolError",
    message: /ratchet message length out of range/,
  });
  assert.throws(() => decodeInitialMessage(bytes.subarray(0, 50)), ProtocolError);
  assert.throws(() => encodeInitialMessage({ header, message: new Uint8Array(10) }), RangeError);
});
