import assert from "node:assert/strict";
import { hkdf } from "@noble/hashes/hkdf.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { Identity } from "../../lib/crypto/identity.ts";
import { SecretBox } from "../../lib/crypto/secret_box.ts";
import { SYNC_LIMIT } from "../../lib/crypto/_aead.ts";
import { StorageError } from "../../lib/errors.ts";
import { concat, utf8 } from "../../lib/platform/bytes.ts";

Deno.test("SecretBox: small and large values round-trip; altered bytes and other labels are refused", async () => {
  const box = await SecretBox.forIdentity(await Identity.generate());
  for (const size of [0, 300, SYNC_LIMIT, SYNC_LIMIT + 1, 20_000]) {
    const value = crypto.getRandomValues(new Uint8Array(size));
    const sealed = await box.seal("session:bob", value);
    assert.equal(sealed.length, 12 + size + 16);
    assert.deepEqual(await box.open("session:bob", sealed), value, `size ${size}`);
    await assert.rejects(box.open("session:eve", sealed), StorageError);
    const altered = new Uint8Array(sealed);
    altered[altered.length - 1]! ^= 1;
    await assert.rejects(box.open("session:bob", altered), StorageError);
  }
  await assert.rejects(box.open("session:bob", new Uint8Array(20)), StorageError);
});

Deno.test("SecretBox: a small value sealed with WebCrypto (as DIM sealed every value before) still opens", async () => {
  const identity = await Identity.generate();
  const seeds = identity.exportSeeds();
  const raw = hkdf(
    sha256,
    concat(seeds.signing, seeds.encryption),
    undefined,
    utf8("DIM-v1 local secrets"),
    32,
  );
  const key = await crypto.subtle.importKey("raw", raw, "AES-GCM", false, ["encrypt"]);
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const value = utf8("a session state from before");
  const ct = await crypto.subtle.encrypt(
    { name: "AES-GCM", iv, additionalData: utf8("session:bob") },
    key,
    value,
  );
  const box = await SecretBox.forIdentity(identity);
  assert.deepEqual(await box.open("session:bob", concat(iv, new Uint8Array(ct))), value);
});
