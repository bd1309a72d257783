import { deepStrictEqual, notDeepStrictEqual, ok, strictEqual, throws } from "node:assert/strict";
import { assertRejects } from "../_support/assert.ts";
import { concat, fromHex, toHex, utf8 } from "../../lib/platform/bytes.ts";
import {
  computeNonce,
  deriveExporterSecret,
  deriveSecretKey,
  MAX_SEQUENCE,
  type Mode,
  type Psk,
  setupRecipient,
  setupSender,
} from "../../lib/crypto/_hpke_schedule.ts";
import {
  deriveKeyPair,
  generateKeyPair,
  HPKE_ENC_LENGTH,
  HPKE_TAG_LENGTH,
  type HpkeKeyPair,
  openBase,
  sealBase,
  setupBaseR,
  setupBaseS,
} from "../../lib/crypto/hpke.ts";
import { DecryptionError, EncryptionError } from "../../lib/errors.ts";

const DECRYPTION_MESSAGE = new DecryptionError().message;

// --- RFC 9180 Appendix A.1 vectors ------------------------------------------

type Fields = Record<string, string>;

interface VectorSection {
  name: string;
  setup: Fields;
  encryptions: Fields[];
  exports: Fields[];
}

/** Parses one `~~~` block into records separated by blank lines; values may wrap. */
function parseBlock(block: string): Fields[] {
  const records: Fields[] = [];
  let current: Fields = {};
  let lastKey: string | undefined;
  for (const line of block.split("\n")) {
    const text = line.trim();
    if (text === "") {
      if (Object.keys(current).length > 0) records.push(current);
      current = {};
      lastKey = undefined;
      continue;
    }
    const match = /^([A-Za-z_ ]+):\s*(.*)$/.exec(text);
    if (match !== null) {
      lastKey = match[1]!;
      current[lastKey] = match[2]!;
    } else if (lastKey !== undefined) {
      current[lastKey] += text;
    } else {
      throw new SyntaxError(`Cannot parse vector line: ${text}`);
    }
  }
  if (Object.keys(current).length > 0) records.push(current);
  return records;
}

function parseVectors(text: string): VectorSection[] {
  const sections: VectorSection[] = [];
  for (const chunk of text.split(/^### /m).slice(1)) {
    const name = chunk.slice(0, chunk.indexOf(" Setup Information"));
    const blocks = [...chunk.matchAll(/~~~\n([\s\S]*?)~~~/g)].map((m) => parseBlock(m[1]!));
    strictEqual(blocks.length, 3, `section ${name} has setup, encryptions and exports`);
    sections.push({
      name,
      setup: blocks[0]![0]!,
      encryptions: blocks[1]!,
      exports: blocks[2]!,
    });
  }
  return sections;
}

const VECTORS = parseVectors(
  await Deno.readTextFile(
    new URL("./vectors/rfc9180-a1-x25519-sha256-aes128gcm.txt", import.meta.url),
  ),
);

function field(fields: Fields, key: string): Uint8Array<ArrayBuffer> {
  const value = fields[key];
  if (value === undefined) throw new Error(`vector lacks ${key}`);
  return fromHex(value);
}

function hexField(fields: Fields, key: string): string {
  return toHex(field(fields, key));
}

Deno.test("the vector file has all four modes with encryptions and exports", () => {
  deepStrictEqual(VECTORS.map((v) => v.name), ["Base", "PSK", "Auth", "AuthPSK"]);
  for (const v of VECTORS) {
    strictEqual(v.encryptions.length, 6, v.name);
    strictEqual(v.exports.length, 3, v.name);
  }
});

Deno.test("HPKE matches every RFC 9180 A.1 vector", async (t) => {
  for (const v of VECTORS) {
    await t.step(`${v.name} mode`, async () => {
      const s = v.setup;
      const mode = Number(s.mode) as Mode;

      // DeriveKeyPair, byte for byte.
      const pairs: Record<string, HpkeKeyPair> = {};
      for (const who of ["E", "R", "S"]) {
        if (s[`ikm${who}`] === undefined) continue;
        const ikm = field(s, `ikm${who}`);
        strictEqual(toHex(deriveSecretKey(ikm)), hexField(s, `sk${who}m`), `sk${who}m`);
        const pair = await deriveKeyPair(ikm);
        strictEqual(toHex(pair.publicKey), hexField(s, `pk${who}m`), `pk${who}m`);
        pairs[who] = pair;
      }
      const psk: Psk | undefined = s.psk === undefined
        ? undefined
        : { key: field(s, "psk"), id: field(s, "psk_id") };
      const info = field(s, "info");

      const sender = await setupSender({
        mode,
        recipientPublicKey: pairs.R!.publicKey,
        info,
        ephemeral: pairs.E,
        psk,
        sender: pairs.S,
      });
      const recipient = await setupRecipient({
        mode,
        enc: sender.enc,
        recipient: pairs.R!,
        info,
        psk,
        senderPublicKey: pairs.S?.publicKey,
      });

      strictEqual(toHex(sender.enc), hexField(s, "enc"), "enc");
      for (const side of [sender, recipient]) {
        strictEqual(toHex(side.sharedSecret), hexField(s, "shared_secret"), "shared_secret");
        const k = side.schedule;
        strictEqual(toHex(k.keyScheduleContext), hexField(s, "key_schedule_context"));
        strictEqual(toHex(k.secret), hexField(s, "secret"), "secret");
        strictEqual(toHex(k.key), hexField(s, "key"), "key");
        strictEqual(toHex(k.baseNonce), hexField(s, "base_nonce"), "base_nonce");
        strictEqual(toHex(deriveExporterSecret(k)), hexField(s, "exporter_secret"));
      }

      // The vectors list some sequence numbers; the ones between were sealed
      // with the same plaintext and aad "Count-<seq>".
      const bySeq = new Map(v.encryptions.map((e) => [Number(e["sequence number"]), e]));
      const lastSeq = Math.max(...bySeq.keys());
      const pt = field(v.encryptions[0]!, "pt");
      for (let seq = 0; seq <= lastSeq; seq++) {
        const aad = utf8(`Count-${seq}`);
        const listed = bySeq.get(seq);
        if (listed !== undefined) {
          strictEqual(
            toHex(computeNonce(sender.schedule.baseNonce, seq)),
            hexField(listed, "nonce"),
          );
          deepStrictEqual(field(listed, "aad"), aad);
          deepStrictEqual(field(listed, "pt"), pt);
        }
        const ct = await sender.context.seal(pt, aad);
        if (listed !== undefined) strictEqual(toHex(ct), hexField(listed, "ct"), `ct ${seq}`);
        deepStrictEqual(await recipient.context.open(ct, aad), pt, `open ${seq}`);
      }

      for (const e of v.exports) {
        const exporterContext = field(e, "exporter_context");
        const length = Number(e.L);
        const expected = hexField(e, "exported_value");
        strictEqual(toHex(sender.context.export(exporterContext, length)), expected);
        strictEqual(toHex(recipient.context.export(exporterContext, length)), expected);
      }
    });
  }
});

Deno.test("setupBaseS() and openBase() reproduce the base-mode vector through the public API", async () => {
  const s = VECTORS[0]!.setup;
  const first = VECTORS[0]!.encryptions[0]!;
  const ephemeral = await deriveKeyPair(field(s, "ikmE"));
  const recipient = await deriveKeyPair(field(s, "ikmR"));
  const info = field(s, "info");
  const aad = field(first, "aad");

  const { enc, context } = await setupBaseS(recipient.publicKey, { info, ephemeral });
  strictEqual(toHex(enc), hexField(s, "enc"));
  strictEqual(toHex(await context.seal(field(first, "pt"), aad)), hexField(first, "ct"));

  const opened = await openBase(recipient, { enc, ciphertext: field(first, "ct") }, { info, aad });
  deepStrictEqual(opened, field(first, "pt"));

  const sealed = await sealBase(recipient.publicKey, field(first, "pt"), { info, aad, ephemeral });
  strictEqual(toHex(sealed.ciphertext), hexField(first, "ct"));
});

// --- Behaviour ----------------------------------------------------------------

const INFO = utf8("DIM test");
const AAD = utf8("header");

Deno.test("sealBase() output opens with openBase() and has the documented lengths", async () => {
  const bob = await generateKeyPair();
  const pt = utf8("a message for Bob");
  const sealed = await sealBase(bob.publicKey, pt, { info: INFO, aad: AAD });
  strictEqual(sealed.enc.length, HPKE_ENC_LENGTH);
  strictEqual(sealed.ciphertext.length, pt.length + HPKE_TAG_LENGTH);
  deepStrictEqual(await openBase(bob, sealed, { info: INFO, aad: AAD }), pt);
});

Deno.test("openBase() rejects a wrong key, info or aad with the uniform DecryptionError", async () => {
  const bob = await generateKeyPair();
  const eve = await generateKeyPair();
  const sealed = await sealBase(bob.publicKey, utf8("secret"), { info: INFO, aad: AAD });
  await assertRejects(
    openBase(eve, sealed, { info: INFO, aad: AAD }),
    DecryptionError,
    DECRYPTION_MESSAGE,
  );
  // Eve's private key with Bob's public key: the kem_context matches, the DH does not.
  await assertRejects(
    openBase({ privateKey: eve.privateKey, publicKey: bob.publicKey }, sealed, {
      info: INFO,
      aad: AAD,
    }),
    DecryptionError,
    DECRYPTION_MESSAGE,
  );
  await assertRejects(
    openBase(bob, sealed, { info: utf8("other"), aad: AAD }),
    DecryptionError,
    DECRYPTION_MESSAGE,
  );
  await assertRejects(openBase(bob, sealed, { info: INFO }), DecryptionError, DECRYPTION_MESSAGE);
});

Deno.test("openBase() rejects every single-bit flip of enc and ciphertext", async () => {
  const bob = await generateKeyPair();
  const sealed = await sealBase(bob.publicKey, utf8("flip me"), { info: INFO });
  const wire = concat(sealed.enc, sealed.ciphertext);
  for (let bit = 0; bit < wire.length * 8; bit++) {
    const flipped = new Uint8Array(wire);
    flipped[bit >> 3]! ^= 1 << (bit & 7);
    const enc = flipped.subarray(0, HPKE_ENC_LENGTH);
    const ciphertext = flipped.subarray(HPKE_ENC_LENGTH);
    await assertRejects(
      openBase(bob, { enc, ciphertext }, { info: INFO }),
      DecryptionError,
      DECRYPTION_MESSAGE,
    );
  }
});

Deno.test("openBase() rejects every truncation of enc and ciphertext", async () => {
  const bob = await generateKeyPair();
  const sealed = await sealBase(bob.publicKey, utf8("cut me"), { info: INFO });
  for (let n = 0; n < sealed.ciphertext.length; n++) {
    const ciphertext = sealed.ciphertext.subarray(0, n);
    await assertRejects(
      openBase(bob, { enc: sealed.enc, ciphertext }, { info: INFO }),
      DecryptionError,
      DECRYPTION_MESSAGE,
    );
  }
  for (let n = 0; n < HPKE_ENC_LENGTH; n++) {
    const enc = sealed.enc.subarray(0, n);
    await assertRejects(
      openBase(bob, { enc, ciphertext: sealed.ciphertext }, { info: INFO }),
      DecryptionError,
      DECRYPTION_MESSAGE,
    );
  }
});

// Low-order X25519 points: the DH output with any private key is all zeros
// (RFC 7748 §6.1), which RFC 9180 §7.1.4 requires rejecting.
const LOW_ORDER_POINTS = [
  new Uint8Array(32),
  fromHex("0100000000000000000000000000000000000000000000000000000000000000"),
  fromHex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
];

Deno.test("setupBaseS() rejects low-order and wrong-length recipient keys with EncryptionError", async () => {
  for (const point of LOW_ORDER_POINTS) {
    await assertRejects(setupBaseS(point), EncryptionError);
  }
  for (const length of [0, 31, 33]) {
    await assertRejects(setupBaseS(new Uint8Array(length).fill(9)), EncryptionError);
  }
});

Deno.test("setupBaseR() rejects a low-order enc with the uniform DecryptionError", async () => {
  const bob = await generateKeyPair();
  for (const point of LOW_ORDER_POINTS) {
    await assertRejects(setupBaseR(point, bob), DecryptionError, DECRYPTION_MESSAGE);
  }
});

Deno.test("a context seals a sequence that opens in order and not out of order", async () => {
  const bob = await generateKeyPair();
  const { enc, context } = await setupBaseS(bob.publicKey, { info: INFO });
  // Started together: each seal still takes its own sequence number.
  const cts = await Promise.all([1, 2, 3].map((n) => context.seal(new Uint8Array([n]))));
  notDeepStrictEqual(cts[0]!.subarray(1), cts[1]!.subarray(1));

  const outOfOrder = await setupBaseR(enc, bob, { info: INFO });
  await assertRejects(outOfOrder.open(cts[1]!), DecryptionError, DECRYPTION_MESSAGE);

  const receiver = await setupBaseR(enc, bob, { info: INFO });
  // A forged message does not advance the sequence.
  await assertRejects(receiver.open(new Uint8Array(20)), DecryptionError, DECRYPTION_MESSAGE);
  const opened = await Promise.all(cts.map((ct) => receiver.open(ct)));
  deepStrictEqual(opened.map((pt) => pt[0]), [1, 2, 3]);
});

Deno.test("computeNonce() refuses to go past the message limit", () => {
  const base = new Uint8Array(12);
  strictEqual(toHex(computeNonce(base, 0x0102)), "000000000000000000000102");
  // 2^53 - 2, the last sequence number allowed.
  strictEqual(toHex(computeNonce(base, MAX_SEQUENCE - 1)), "00000000001ffffffffffffe");
  throws(() => computeNonce(base, MAX_SEQUENCE), RangeError);
  throws(() => computeNonce(base, -1), RangeError);
});

Deno.test("export() derives the same secret on both sides and checks its length", async () => {
  const bob = await generateKeyPair();
  const { enc, context } = await setupBaseS(bob.publicKey, { info: INFO });
  const receiver = await setupBaseR(enc, bob, { info: INFO });
  deepStrictEqual(context.export(utf8("x"), 8160), receiver.export(utf8("x"), 8160));
  notDeepStrictEqual(context.export(utf8("x"), 32), context.export(utf8("y"), 32));
  for (const length of [0, -1, 1.5, 8161]) {
    throws(() => context.export(utf8("x"), length), RangeError);
  }
});

Deno.test("deriveKeyPair() is deterministic and rejects short ikm", async () => {
  const ikm = new Uint8Array(32).fill(7);
  const a = await deriveKeyPair(ikm);
  const b = await deriveKeyPair(ikm);
  deepStrictEqual(a.publicKey, b.publicKey);
  strictEqual(a.privateKey.extractable, false);
  await assertRejects(deriveKeyPair(new Uint8Array(31)), RangeError);
});

Deno.test("generateKeyPair() gives non-extractable, distinct keys", async () => {
  const a = await generateKeyPair();
  const b = await generateKeyPair();
  strictEqual(a.privateKey.extractable, false);
  notDeepStrictEqual(a.publicKey, b.publicKey);
});

Deno.test("contexts and key pairs print no key material", async () => {
  const bob = await generateKeyPair();
  const { enc, context } = await setupBaseS(bob.publicKey, { info: INFO });
  const receiver = await setupBaseR(enc, bob, { info: INFO });
  strictEqual(Deno.inspect(context), "HpkeSenderContext");
  strictEqual(Deno.inspect(receiver), "HpkeRecipientContext");
  strictEqual(JSON.stringify(context), "{}");
  strictEqual(JSON.stringify(receiver), "{}");
  ok(!Deno.inspect(bob).includes("privateKey: Uint8Array"));
});

Deno.test("every seal uses a fresh ephemeral key, also when many run at once", async () => {
  const bob = await generateKeyPair();
  const pt = utf8("hi");
  const sealed = [
    ...await Promise.all(
      Array.from({ length: 50 }, () => sealBase(bob.publicKey, pt, { info: INFO })),
    ),
  ];
  for (let i = 0; i < 50; i++) sealed.push(await sealBase(bob.publicKey, pt, { info: INFO }));
  strictEqual(new Set(sealed.map((s) => toHex(s.enc))).size, sealed.length);
  for (const s of sealed) deepStrictEqual(await openBase(bob, s, { info: INFO }), pt);
});
