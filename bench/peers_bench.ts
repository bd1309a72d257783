// DIM's session crypto against libsignal-client (Signal's Rust library
// through N-API), in the same run and by the same per-iteration loop: each
// group's baseline is libsignal, and each iteration does the same protocol
// work on both sides (a sender's encrypt and a recipient's decrypt).
//
// Run: deno task bench:peers (this bench, then bench/peers_report.ts renders
// the README's table from the per-iteration times it leaves in
// bench-peers.json, or in $DIM_BENCH_PEERS_OUT).
//
// libsignal-client is a bench-only dependency: nothing under lib/ imports it.
// Its stores are the in-memory ones below, so its figures, like DIM's, leave
// out persistence. libsignal's native code runs its crypto on the calling
// thread; its stores are called back as promises, as an app's would be.
import {
  type Direction,
  IdentityChange,
  IdentityKeyPair,
  IdentityKeyStore,
  KEMKeyPair,
  KyberPreKeyRecord,
  KyberPreKeyStore,
  PreKeyBundle,
  PreKeyRecord,
  PreKeySignalMessage,
  PreKeyStore,
  PrivateKey,
  processPreKeyBundle,
  ProtocolAddress,
  type PublicKey,
  sealedSenderDecryptMessage,
  sealedSenderEncryptMessage,
  SenderCertificate,
  ServerCertificate,
  type SessionRecord,
  SessionStore,
  signalDecrypt,
  signalDecryptPreKey,
  signalEncrypt,
  SignalMessage,
  SignedPreKeyRecord,
  SignedPreKeyStore,
} from "@signalapp/libsignal-client";
import { Identity } from "../lib/crypto/identity.ts";
import {
  headerRatchetDecrypt,
  headerRatchetEncrypt,
  initHeaderReceiver,
  initHeaderSender,
  startFirstSenderStep,
} from "../lib/crypto/header_ratchet.ts";
import type { RatchetState } from "../lib/crypto/ratchet.ts";
import {
  decodeInitialMessage,
  encodeInitialMessage,
  encodeX3dhHeader,
  generatePrekey,
  initiateX3dh,
  respondX3dh,
  signPrekey,
} from "../lib/crypto/x3dh.ts";

const N = Number(Deno.env.get("DIM_BENCH_N") ?? 2000);
const WARMUP = Math.min(200, N);
const body = crypto.getRandomValues(new Uint8Array(1024));

// --- Per-iteration times, for p50 ---------------------------------------------

const samples: Record<string, number[]> = {};

function bench(group: string, name: string, baseline: boolean, work: () => Promise<void>): void {
  const ms: number[] = [];
  samples[`${group} / ${name}`] = ms;
  Deno.bench({
    name,
    group,
    baseline,
    n: N,
    warmup: WARMUP,
    async fn() {
      const start = performance.now();
      await work();
      ms.push(performance.now() - start);
    },
  });
}

// --- libsignal: in-memory stores -----------------------------------------------

class Sessions extends SessionStore {
  #records = new Map<string, SessionRecord>();
  saveSession(name: ProtocolAddress, record: SessionRecord): Promise<void> {
    this.#records.set(name.toString(), record);
    return Promise.resolve();
  }
  getSession(name: ProtocolAddress): Promise<SessionRecord | null> {
    return Promise.resolve(this.#records.get(name.toString()) ?? null);
  }
  getExistingSessions(addresses: ProtocolAddress[]): Promise<SessionRecord[]> {
    return Promise.resolve(addresses.map((a) => this.#records.get(a.toString())!));
  }
}

class Identities extends IdentityKeyStore {
  #known = new Map<string, PublicKey>();
  constructor(readonly pair: IdentityKeyPair, readonly registrationId: number) {
    super();
  }
  getIdentityKey(): Promise<PrivateKey> {
    return Promise.resolve(this.pair.privateKey);
  }
  getLocalRegistrationId(): Promise<number> {
    return Promise.resolve(this.registrationId);
  }
  saveIdentity(name: ProtocolAddress, key: PublicKey): Promise<IdentityChange> {
    const old = this.#known.get(name.toString());
    this.#known.set(name.toString(), key);
    return Promise.resolve(
      old === undefined || old.equals(key)
        ? IdentityChange.NewOrUnchanged
        : IdentityChange.ReplacedExisting,
    );
  }
  isTrustedIdentity(_name: ProtocolAddress, _key: PublicKey, _d: Direction): Promise<boolean> {
    return Promise.resolve(true);
  }
  getIdentity(name: ProtocolAddress): Promise<PublicKey | null> {
    return Promise.resolve(this.#known.get(name.toString()) ?? null);
  }
}

// Prekeys are never consumed here, so that every iteration can start a new
// session from the same bundle (a new base key each time).
class Prekeys extends PreKeyStore {
  constructor(readonly record: PreKeyRecord) {
    super();
  }
  savePreKey(): Promise<void> {
    return Promise.resolve();
  }
  getPreKey(): Promise<PreKeyRecord> {
    return Promise.resolve(this.record);
  }
  removePreKey(): Promise<void> {
    return Promise.resolve();
  }
}
class SignedPrekeys extends SignedPreKeyStore {
  constructor(readonly record: SignedPreKeyRecord) {
    super();
  }
  saveSignedPreKey(): Promise<void> {
    return Promise.resolve();
  }
  getSignedPreKey(): Promise<SignedPreKeyRecord> {
    return Promise.resolve(this.record);
  }
}
class KyberPrekeys extends KyberPreKeyStore {
  constructor(readonly record: KyberPreKeyRecord) {
    super();
  }
  saveKyberPreKey(): Promise<void> {
    return Promise.resolve();
  }
  getKyberPreKey(): Promise<KyberPreKeyRecord> {
    return Promise.resolve(this.record);
  }
  markKyberPreKeyUsed(): Promise<void> {
    return Promise.resolve();
  }
}

interface SignalUser {
  readonly uuid: string;
  readonly address: ProtocolAddress;
  readonly identity: Identities;
  readonly sessions: Sessions;
  readonly prekeys: Prekeys;
  readonly signedPrekeys: SignedPrekeys;
  readonly kyberPrekeys: KyberPrekeys;
  readonly bundle: PreKeyBundle;
}

function signalUser(uuid: string, registrationId: number): SignalUser {
  const pair = IdentityKeyPair.generate();
  const prekey = PrivateKey.generate();
  const signed = PrivateKey.generate();
  const signedSig = pair.privateKey.sign(signed.getPublicKey().serialize());
  const kyber = KEMKeyPair.generate();
  const kyberSig = pair.privateKey.sign(kyber.getPublicKey().serialize());
  const now = Date.now();
  return {
    uuid,
    address: ProtocolAddress.new(uuid, 1),
    identity: new Identities(pair, registrationId),
    sessions: new Sessions(),
    prekeys: new Prekeys(PreKeyRecord.new(1, prekey.getPublicKey(), prekey)),
    signedPrekeys: new SignedPrekeys(
      SignedPreKeyRecord.new(2, now, signed.getPublicKey(), signed, signedSig),
    ),
    kyberPrekeys: new KyberPrekeys(KyberPreKeyRecord.new(3, now, kyber, kyberSig)),
    bundle: PreKeyBundle.new(
      registrationId,
      1,
      1,
      prekey.getPublicKey(),
      2,
      signed.getPublicKey(),
      signedSig,
      pair.publicKey,
      3,
      kyber.getPublicKey(),
      kyberSig,
    ),
  };
}

const sa = signalUser("9d0652a3-dcc3-4d11-975f-74d61598733f", 11);
const sb = signalUser("796abedb-ca4e-4f18-8803-1fde5b921f9f", 22);

async function signalSend(from: SignalUser, to: SignalUser, plaintext: Uint8Array<ArrayBuffer>) {
  return await signalEncrypt(plaintext, to.address, from.address, from.sessions, from.identity);
}

/** Starts a libsignal session a → b (PQXDH) and delivers its first message. */
async function signalSetup(a: SignalUser, b: SignalUser): Promise<void> {
  await processPreKeyBundle(b.bundle, b.address, a.address, a.sessions, a.identity);
  const first = await signalSend(a, b, body);
  await signalDecryptPreKey(
    PreKeySignalMessage.deserialize(first.serialize()),
    a.address,
    b.address,
    b.sessions,
    b.identity,
    b.prekeys,
    b.signedPrekeys,
    b.kyberPrekeys,
  );
}

async function signalDeliver(a: SignalUser, b: SignalUser): Promise<void> {
  const sent = await signalSend(a, b, body);
  const bytes = sent.serialize();
  const plaintext = sent.type() === 3 // a PreKeySignalMessage until b has answered
    ? await signalDecryptPreKey(
      PreKeySignalMessage.deserialize(bytes),
      a.address,
      b.address,
      b.sessions,
      b.identity,
      b.prekeys,
      b.signedPrekeys,
      b.kyberPrekeys,
    )
    : await signalDecrypt(
      SignalMessage.deserialize(bytes),
      a.address,
      b.address,
      b.sessions,
      b.identity,
    );
  if (plaintext.length !== body.length) throw new Error("libsignal: wrong plaintext");
}

// One round trip, so that both sides' sessions are established.
await signalSetup(sa, sb);
await signalDeliver(sb, sa);
await signalDeliver(sa, sb);

// Sealed sender v1: a trust root signs a server certificate, which signs the
// sender's certificate; the recipient checks the chain.
const trustRoot = PrivateKey.generate();
const serverKey = PrivateKey.generate();
const serverCert = ServerCertificate.new(1, serverKey.getPublicKey(), trustRoot);
const senderCert = SenderCertificate.new(
  sa.uuid,
  null,
  1,
  sa.identity.pair.publicKey,
  Date.now() + 86_400_000,
  serverCert,
  serverKey,
);

// --- DIM ------------------------------------------------------------------------

const alice = await Identity.generate();
const bob = await Identity.generate();
const spk = await generatePrekey(1);
const spkSigned = { ...spk, signature: await signPrekey(bob, spk) };
const opk = await generatePrekey(2);

// DIM's sessions encrypt their headers (lib/crypto/header_ratchet.ts): what
// each DIM row measures is the ratchet DIM's sessions use.
const FRAME_KIND = new Uint8Array([0xd1]); // a session frame's kind byte, its seals' context

async function encrypt(state: RatchetState, context = FRAME_KIND) {
  return await headerRatchetEncrypt(state, body, {
    id: crypto.getRandomValues(new Uint8Array(16)),
    context,
  });
}

async function decrypt(state: RatchetState, message: Uint8Array, context = FRAME_KIND) {
  const got = await headerRatchetDecrypt(state, message, { context });
  if (got.gone || got.plaintext.length !== body.length) throw new Error("DIM: wrong plaintext");
  return got.state;
}

async function dimSetup(): Promise<{ a: RatchetState; b: RatchetState }> {
  // As the session manager does.
  const sent = await initiateX3dh(alice, {
    ...bob.public,
    signedPrekey: spkSigned,
    oneTimePrekey: opk,
  }, { headerEncryption: true });
  const step = startFirstSenderStep(spkSigned.publicKey);
  const a0 = await initHeaderSender(sent.sharedSecret, sent.remoteRatchetKey, sent.associatedData, {
    sending: sent.headerKeys!.initiator,
    nextReceiving: sent.headerKeys!.responder,
  }, step);
  const header = encodeX3dhHeader(sent.header);
  const first = await encrypt(a0, header);
  const wire = encodeInitialMessage({ header: sent.header, message: first.message });
  const initial = decodeInitialMessage(wire);
  const got = await respondX3dh(bob, initial.header, {
    signedPrekeys: [spk],
    oneTimePrekeys: [opk],
  });
  const b0 = initHeaderReceiver(got.sharedSecret, got.ownRatchetKeyPair, got.associatedData, {
    nextSending: got.headerKeys!.responder,
    nextReceiving: got.headerKeys!.initiator,
  });
  return {
    a: first.state,
    b: await decrypt(b0, initial.message, encodeX3dhHeader(initial.header)),
  };
}

async function dimPair(): Promise<{ a: RatchetState; b: RatchetState }> {
  let { a, b } = await dimSetup();
  const reply = await encrypt(b);
  b = reply.state;
  a = await decrypt(a, reply.message);
  return { a, b };
}

const steady = await dimPair();
const pingPong = await dimPair();
const sealed = await dimPair();

// --- Groups ---------------------------------------------------------------------

const SAME = "ratchet encrypt + decrypt, 1 KiB, same chain";
bench(SAME, "libsignal", true, () => signalDeliver(sa, sb));
bench(SAME, "DIM (header-encrypted ratchet)", false, async () => {
  const sent = await encrypt(steady.a);
  steady.a = sent.state;
  steady.b = await decrypt(steady.b, sent.message);
});

// The direction alternates, so every decrypt meets a new ratchet key and
// performs a DH ratchet step (and the next encrypt uses the new chain).
const STEP = "the same with a DH ratchet step every message";
let signalTurn = false;
bench(STEP, "libsignal", true, async () => {
  signalTurn = !signalTurn;
  await (signalTurn ? signalDeliver(sb, sa) : signalDeliver(sa, sb));
});
bench(STEP, "DIM (header-encrypted ratchet)", false, async () => {
  const sent = await encrypt(pingPong.a);
  const got = await decrypt(pingPong.b, sent.message);
  pingPong.a = got;
  pingPong.b = sent.state;
});

const SETUP = "session setup + first message, 1 KiB";
bench(SETUP, "libsignal (PQXDH: X25519 + ML-KEM-1024)", true, () => signalSetup(sa, sb));
bench(SETUP, "DIM (X3DH with a one-time prekey)", false, async () => {
  await dimSetup();
});

// Both hide the sender from the server that relays the message: libsignal
// with sealed sender (an X25519 DH and a sender certificate per message),
// DIM with the session frame, whose header is sealed under the session's
// header key (symmetric only; the recipient finds the session by the
// frame's tag). The first messages of a DIM session still travel in the
// signed HPKE envelope (as the setup row's), the later ones as measured here.
const SEALED = "sealed, sender-hidden message in a session, 1 KiB";
bench(SEALED, "libsignal (sealed sender v1 + session)", true, async () => {
  const wire = await sealedSenderEncryptMessage(
    body,
    sb.address,
    senderCert,
    sa.sessions,
    sa.identity,
  );
  const got = await sealedSenderDecryptMessage(
    wire,
    trustRoot.getPublicKey(),
    Date.now(),
    null,
    sb.uuid,
    1,
    sb.sessions,
    sb.identity,
    sb.prekeys,
    sb.signedPrekeys,
    sb.kyberPrekeys,
  );
  if (got.message().length !== body.length) throw new Error("libsignal: wrong plaintext");
});
bench(SEALED, "DIM (session frame: header-encrypted ratchet, no envelope)", false, async () => {
  const sent = await encrypt(sealed.a);
  sealed.a = sent.state;
  const frame = new Uint8Array(1 + sent.message.length);
  frame.set(FRAME_KIND);
  frame.set(sent.message, 1);
  sealed.b = await decrypt(sealed.b, frame.subarray(1));
});

// --- Per-iteration times out, for bench/peers_report.ts --------------------------

globalThis.addEventListener("unload", () => {
  const path = Deno.env.get("DIM_BENCH_PEERS_OUT") ?? "bench-peers.json";
  // The harness also calls fn while warming up: keep the last N runs.
  const kept = Object.fromEntries(Object.entries(samples).map(([k, ms]) => [k, ms.slice(-N)]));
  Deno.writeTextFileSync(
    path,
    JSON.stringify({ date: new Date().toISOString(), deno: Deno.version.deno, samples: kept }),
  );
});
