/**
 * Ed25519 through `node:crypto` (lib/crypto/_keys.ts), which signs and
 * verifies every DIM signature: RFC 8032's test vectors, the same bytes as
 * WebCrypto both ways (so what was signed before still verifies), and every
 * tampered byte, a wrong key and a key that is not a point refused.
 */
import assert from "node:assert/strict";
import { ed25519Sign, ed25519SigningKey, ed25519Verify } from "../../lib/crypto/_keys.ts";
import { Identity, verifySignature } from "../../lib/crypto/identity.ts";
import { fromHex } from "../../lib/platform/bytes.ts";

// RFC 8032, section 7.1, tests 1 and 2.
const VECTORS = [
  {
    secret: "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
    public: "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
    message: "",
    signature: "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bac" +
      "c61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
  },
  {
    secret: "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
    public: "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
    message: "72",
    signature: "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e" +
      "458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
  },
];

Deno.test("Ed25519 signs and verifies RFC 8032's test vectors", () => {
  for (const v of VECTORS) {
    const signature = ed25519Sign(ed25519SigningKey(fromHex(v.secret)), fromHex(v.message));
    assert.deepEqual(signature, fromHex(v.signature));
    assert.equal(ed25519Verify(fromHex(v.public), fromHex(v.message), signature), true);
  }
});

Deno.test("Ed25519 refuses every tampered byte, another key and a key that is not a point", () => {
  const v = VECTORS[1]!;
  const key = fromHex(v.public);
  const message = fromHex(v.message);
  const signature = fromHex(v.signature);
  for (let i = 0; i < signature.length; i++) {
    const bad = signature.slice();
    bad[i]! ^= 0x01;
    assert.equal(ed25519Verify(key, message, bad), false, `signature byte ${i}`);
  }
  for (let i = 0; i < key.length; i++) {
    const bad = key.slice();
    bad[i]! ^= 0x01;
    assert.equal(ed25519Verify(bad, message, signature), false, `key byte ${i}`);
  }
  assert.equal(ed25519Verify(key, new Uint8Array([0x73]), signature), false);
  assert.equal(ed25519Verify(fromHex(VECTORS[0]!.public), message, signature), false);
  // y = 2 is not on the curve.
  const notAPoint = new Uint8Array(32);
  notAPoint[0] = 2;
  assert.equal(ed25519Verify(notAPoint, message, signature), false);
});

Deno.test("an identity's signatures are WebCrypto's bytes, and verify both ways", async () => {
  const me = await Identity.generate();
  const message = crypto.getRandomValues(new Uint8Array(100));
  const ours = await me.sign("ack", message);
  const prefixed = new Uint8Array([...new TextEncoder().encode("DIM-v1-sig/ack\0"), ...message]);
  const seed = me.exportSeeds().signing;
  const pkcs8 = new Uint8Array([
    ...fromHex("302e020100300506032b657004220420"),
    ...seed,
  ]);
  const webKey = await crypto.subtle.importKey("pkcs8", pkcs8, { name: "Ed25519" }, false, [
    "sign",
  ]);
  const theirs = new Uint8Array(await crypto.subtle.sign("Ed25519", webKey, prefixed));
  assert.deepEqual(ours, theirs, "the same signature (Ed25519 is deterministic)");
  const publicKey = await crypto.subtle.importKey(
    "raw",
    me.signingPublicKey,
    { name: "Ed25519" },
    false,
    ["verify"],
  );
  assert.equal(await crypto.subtle.verify("Ed25519", publicKey, ours, prefixed), true);
  assert.equal(await verifySignature("ack", me.signingPublicKey, message, theirs), true);
  assert.equal(await verifySignature("record", me.signingPublicKey, message, theirs), false);
});
