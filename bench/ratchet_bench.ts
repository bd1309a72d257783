// What does forward secrecy cost per message? A Double Ratchet message
// (encrypt + decrypt) against the static-key envelope (seal + open), which
// has none; and what persisting a session after each message costs.
// Run: deno bench bench/ratchet_bench.ts
import { openEnvelope, sealEnvelope } from "../lib/crypto/envelope.ts";
import { Identity } from "../lib/crypto/identity.ts";
import {
  generateRatchetKeyPair,
  initReceiver,
  initSender,
  MAX_SKIP,
  ratchetDecrypt,
  ratchetEncrypt,
  type RatchetState,
} from "../lib/crypto/ratchet.ts";
import { decodeSession, encodeSession } from "../lib/crypto/ratchet_session.ts";
import {
  headerRatchetDecrypt,
  headerRatchetEncrypt,
  initHeaderReceiver,
  initHeaderSender,
} from "../lib/crypto/header_ratchet.ts";
import { generatePrekey, initiateX3dh, respondX3dh, signPrekey } from "../lib/crypto/x3dh.ts";

// --- Setup, outside every timed part ----------------------------------------

const alice = await Identity.generate();
const bob = await Identity.generate();
const body = crypto.getRandomValues(new Uint8Array(1024));
const ad = new Uint8Array(128);

async function sessionPair(): Promise<{ a: RatchetState; b: RatchetState }> {
  const sk = crypto.getRandomValues(new Uint8Array(32));
  const prekey = await generateRatchetKeyPair();
  let a = await initSender(sk, prekey.publicKey, ad);
  let b = initReceiver(sk, prekey, ad);
  // One round trip so both sides can send.
  const first = await ratchetEncrypt(a, body);
  a = first.state;
  b = (await ratchetDecrypt(b, first.message)).state;
  const reply = await ratchetEncrypt(b, body);
  b = reply.state;
  a = (await ratchetDecrypt(a, reply.message)).state;
  return { a, b };
}

/** The same with encrypted headers (what DIM's sessions use), after one round trip. */
async function headerPair(): Promise<{ a: RatchetState; b: RatchetState }> {
  const sk = crypto.getRandomValues(new Uint8Array(32));
  const hka = crypto.getRandomValues(new Uint8Array(32));
  const nhkb = crypto.getRandomValues(new Uint8Array(32));
  const prekey = await generateRatchetKeyPair();
  let a = await initHeaderSender(sk, prekey.publicKey, ad, { sending: hka, nextReceiving: nhkb });
  let b = initHeaderReceiver(sk, prekey, ad, { nextSending: nhkb, nextReceiving: hka });
  const first = await headerRatchetEncrypt(a, body, { id });
  a = first.state;
  b = await headerOpen(b, first.message);
  const reply = await headerRatchetEncrypt(b, body, { id });
  b = reply.state;
  a = await headerOpen(a, reply.message);
  return { a, b };
}

const id = new Uint8Array(16);
async function headerOpen(state: RatchetState, message: Uint8Array): Promise<RatchetState> {
  const got = await headerRatchetDecrypt(state, message);
  if (got.gone) throw new Error("the message key is gone");
  return got.state;
}

const steady = await sessionPair();
const headerSteady = await headerPair();
const pingPong = await sessionPair();
// A session holding the most skipped keys it may: the worst case to persist.
const full = await (async () => {
  let { a, b } = await sessionPair();
  for (let chain = 0; chain < 2; chain++) {
    let last: Uint8Array | undefined;
    for (let i = 0; i <= MAX_SKIP; i++) {
      const out = await ratchetEncrypt(a, body.subarray(0, 16));
      a = out.state;
      last = out.message;
    }
    b = (await ratchetDecrypt(b, last!)).state;
    const reply = await ratchetEncrypt(b, body.subarray(0, 16));
    b = reply.state;
    a = (await ratchetDecrypt(a, reply.message)).state;
  }
  return b;
})();
const fullBytes = encodeSession(full);
const smallBytes = encodeSession(steady.b);

const spk = await generatePrekey(1);
const spkSigned = { ...spk, signature: await signPrekey(bob, spk) };
const opk = await generatePrekey(2);

// --- 1 KiB message ---------------------------------------------------------

Deno.bench({
  name: "static-key envelope: seal + open",
  group: "1 KiB message",
  baseline: true,
  fn: async () => {
    const sealed = await sealEnvelope(alice, bob, { body });
    await openEnvelope(bob, sealed);
  },
});

Deno.bench({
  name: "ratchet: encrypt + decrypt, same chain",
  group: "1 KiB message",
  fn: async () => {
    const sent = await ratchetEncrypt(steady.a, body);
    steady.a = sent.state;
    steady.b = (await ratchetDecrypt(steady.b, sent.message)).state;
  },
});

Deno.bench({
  name: "ratchet with encrypted headers: encrypt + decrypt, same chain",
  group: "1 KiB message",
  fn: async () => {
    const sent = await headerRatchetEncrypt(headerSteady.a, body, { id });
    headerSteady.a = sent.state;
    headerSteady.b = await headerOpen(headerSteady.b, sent.message);
  },
});

Deno.bench({
  name: "ratchet: encrypt + decrypt, DH ratchet step every message",
  group: "1 KiB message",
  fn: async () => {
    // The direction alternates, so every decrypt meets a new ratchet key.
    const sent = await ratchetEncrypt(pingPong.a, body);
    const got = await ratchetDecrypt(pingPong.b, sent.message);
    pingPong.a = got.state;
    pingPong.b = sent.state;
  },
});

// --- Session setup ----------------------------------------------------------

Deno.bench({
  name: "X3DH with a one-time prekey: initiate + respond",
  group: "session setup",
  baseline: true,
  fn: async () => {
    const sent = await initiateX3dh(alice, {
      ...bob.public,
      signedPrekey: spkSigned,
      oneTimePrekey: opk,
    });
    await respondX3dh(bob, sent.header, { signedPrekeys: [spk], oneTimePrekeys: [opk] });
  },
});

// --- Persisting a session after each message ---------------------------------

Deno.bench({
  name: "encodeSession + decodeSession, no skipped keys",
  group: "persist session",
  baseline: true,
  fn: () => {
    decodeSession(encodeSession(steady.b));
  },
});

Deno.bench({
  name: `encodeSession + decodeSession, ${full.skippedMessageKeys.length} skipped keys`,
  group: "persist session",
  fn: () => {
    decodeSession(encodeSession(full));
  },
});

console.log(
  `session sizes: ${smallBytes.length} bytes without skipped keys, ${fullBytes.length} bytes full`,
);
