// What does DIM's envelope cost over the raw primitives it is built from?
// Target: seal + open of an envelope costs at most 1.5x the sum of its raw
// steps, measured in the same run. Run: deno bench bench/crypto_bench.ts
import { expand, extract } from "@noble/hashes/hkdf.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { openEnvelope, sealEnvelope } from "../lib/crypto/envelope.ts";
import { openBase, sealBase } from "../lib/crypto/hpke.ts";
import { Identity } from "../lib/crypto/identity.ts";

const KIB = 1024;
const SIZES = [1 * KIB, 64 * KIB] as const;

// --- Setup, outside every timed part ----------------------------------------

const alice = await Identity.generate();
const bob = await Identity.generate();
// More than the 256 recipient keys the HPKE layer keeps imported.
const strangers = await Promise.all(Array.from({ length: 512 }, () => Identity.generate()));
const bobKeyPair = { privateKey: bob.encryptionPrivateKey, publicKey: bob.encryptionPublicKey };

const x25519 = { name: "X25519" } as const;
const recipient = await crypto.subtle.generateKey(x25519, false, ["deriveBits"]) as CryptoKeyPair;
const signer = await crypto.subtle.generateKey({ name: "Ed25519" }, false, [
  "sign",
  "verify",
]) as CryptoKeyPair;
const aesKey = await crypto.subtle.importKey(
  "raw",
  crypto.getRandomValues(new Uint8Array(16)),
  { name: "AES-GCM" },
  false,
  ["encrypt", "decrypt"],
);
const iv = new Uint8Array(12);
const salt = new Uint8Array(0);
const hkdfInfo = new TextEncoder().encode("bench");
const rawX25519Public = new Uint8Array(await crypto.subtle.exportKey("raw", recipient.publicKey));
const rawEd25519Public = new Uint8Array(await crypto.subtle.exportKey("raw", signer.publicKey));
const rawAesKey = crypto.getRandomValues(new Uint8Array(16));

function body(size: number): Uint8Array<ArrayBuffer> {
  return crypto.getRandomValues(new Uint8Array(size));
}

/** HKDF-SHA256 extract + expand of a 32-byte DH output to a 16-byte key. */
function hkdf(ikm: ArrayBuffer): Uint8Array {
  return expand(sha256, extract(sha256, new Uint8Array(ikm), salt), hkdfInfo, 16);
}

/**
 * The raw steps one envelope needs, in the order it takes them and with
 * every key already imported. Sender: ephemeral X25519 keygen, DH, HKDF,
 * Ed25519 sign, AES-128-GCM encrypt. Recipient: DH, HKDF, AES-128-GCM
 * decrypt, Ed25519 verify. Sequential, as in a real exchange: the recipient
 * cannot start before the sender is done.
 */
async function rawSteps(message: Uint8Array<ArrayBuffer>, sign: boolean): Promise<void> {
  const ephemeral = await crypto.subtle.generateKey(x25519, false, ["deriveBits"]) as CryptoKeyPair;
  hkdf(
    await crypto.subtle.deriveBits(
      { name: "X25519", public: recipient.publicKey },
      ephemeral.privateKey,
      256,
    ),
  );
  const signature = sign
    ? await crypto.subtle.sign("Ed25519", signer.privateKey, message)
    : undefined;
  const ciphertext = await crypto.subtle.encrypt({ name: "AES-GCM", iv }, aesKey, message);
  hkdf(
    await crypto.subtle.deriveBits(
      { name: "X25519", public: ephemeral.publicKey },
      recipient.privateKey,
      256,
    ),
  );
  await crypto.subtle.decrypt({ name: "AES-GCM", iv }, aesKey, ciphertext);
  if (signature !== undefined) {
    await crypto.subtle.verify("Ed25519", signer.publicKey, signature, message);
  }
}

// --- The question: envelope vs its raw steps ---------------------------------

for (const size of SIZES) {
  const message = body(size);
  const group = `envelope ${size / KIB} KiB`;
  Deno.bench({
    name: `raw steps (X25519 keygen + 2 DH + 2 HKDF + AES-GCM enc/dec + Ed25519 sign/verify), ${
      size / KIB
    } KiB`,
    group,
    baseline: true,
    // An async function, not an arrow returning a promise: Deno.bench only
    // awaits functions it sees are async.
    async fn() {
      await rawSteps(message, true);
    },
  });
  Deno.bench({
    name: `sealEnvelope + openEnvelope, ${size / KIB} KiB`,
    group,
    async fn() {
      await openEnvelope(
        bob,
        await sealEnvelope(alice, bob, { body: message }),
      );
    },
  });
  if (size === 1 * KIB) {
    // The sender keeps recently used recipient keys imported; cycling through
    // more recipients than it keeps shows the cost without that cache.
    let next = 0;
    Deno.bench({
      name: "sealEnvelope + openEnvelope, 1 KiB, a new recipient each time",
      group,
      async fn() {
        const to = strangers[next++ % strangers.length]!;
        await openEnvelope(
          to,
          await sealEnvelope(alice, to, { body: message }),
        );
      },
    });
  }
}

// --- Where the difference goes: HPKE alone ----------------------------------

{
  const message = body(1 * KIB);
  Deno.bench({
    name: "raw steps (X25519 keygen + 2 DH + 2 HKDF + AES-GCM enc/dec), 1 KiB",
    group: "hpke 1 KiB",
    baseline: true,
    async fn() {
      await rawSteps(message, false);
    },
  });
  Deno.bench({
    name: "sealBase + openBase, 1 KiB",
    group: "hpke 1 KiB",
    async fn() {
      await openBase(bobKeyPair, await sealBase(bob.encryptionPublicKey, message));
    },
  });
}

// --- Each raw step alone ------------------------------------------------------

{
  const message = body(1 * KIB);
  const dhOutput = crypto.getRandomValues(new Uint8Array(32)).buffer;
  const ciphertext = await crypto.subtle.encrypt({ name: "AES-GCM", iv }, aesKey, message);
  const signature = await crypto.subtle.sign("Ed25519", signer.privateKey, message);
  const steps: [string, () => unknown][] = [
    ["X25519 generateKey", () => crypto.subtle.generateKey(x25519, false, ["deriveBits"])],
    [
      "X25519 deriveBits",
      () =>
        crypto.subtle.deriveBits(
          { name: "X25519", public: recipient.publicKey },
          recipient.privateKey,
          256,
        ),
    ],
    ["HKDF-SHA256 extract + expand (noble)", () => hkdf(dhOutput)],
    [
      "AES-128-GCM encrypt 1 KiB",
      () => crypto.subtle.encrypt({ name: "AES-GCM", iv }, aesKey, message),
    ],
    [
      "AES-128-GCM decrypt 1 KiB",
      () => crypto.subtle.decrypt({ name: "AES-GCM", iv }, aesKey, ciphertext),
    ],
    ["Ed25519 sign 1 KiB", () => crypto.subtle.sign("Ed25519", signer.privateKey, message)],
    [
      "Ed25519 verify 1 KiB",
      () => crypto.subtle.verify("Ed25519", signer.publicKey, signature, message),
    ],
    // Steps the envelope takes that the raw baseline leaves out.
    [
      "X25519 importKey raw public",
      () => crypto.subtle.importKey("raw", rawX25519Public, x25519, true, []),
    ],
    [
      "AES-GCM importKey raw",
      () => crypto.subtle.importKey("raw", rawAesKey, { name: "AES-GCM" }, false, ["encrypt"]),
    ],
    [
      "Ed25519 importKey raw public",
      () => crypto.subtle.importKey("raw", rawEd25519Public, { name: "Ed25519" }, true, ["verify"]),
    ],
  ];
  for (const [name, step] of steps) {
    Deno.bench({
      name,
      group: "raw steps",
      async fn() {
        await step();
      },
    });
  }
}

// --- Keystore unlock ---------------------------------------------------------
// What does unlocking cost over the argon2id derivation it is built on?
{
  const { argon2idAsync } = await import("@noble/hashes/argon2.js");
  const { createKeystore, DEFAULT_ARGON2_PARAMS, unlockKeystore } = await import(
    "../lib/crypto/keystore.ts"
  );
  const dir = await Deno.makeTempDir({ prefix: "dim-bench-" });
  const path = `${dir}/identity.key`;
  await createKeystore(path, alice, "bench passphrase");
  const salt = crypto.getRandomValues(new Uint8Array(16));
  Deno.bench({
    name: "argon2id alone (19 MiB, t=2, p=1)",
    group: "keystore unlock",
    baseline: true,
    n: 10,
    warmup: 2,
    async fn() {
      await argon2idAsync("bench passphrase", salt, {
        m: DEFAULT_ARGON2_PARAMS.memoryKib,
        t: DEFAULT_ARGON2_PARAMS.iterations,
        p: DEFAULT_ARGON2_PARAMS.parallelism,
        dkLen: 32,
      });
    },
  });
  Deno.bench({
    name: "unlockKeystore (default parameters)",
    group: "keystore unlock",
    n: 10,
    warmup: 2,
    async fn() {
      await unlockKeystore(path, "bench passphrase");
    },
  });
}
