import assert from "node:assert/strict";
import { concat, u32 } from "../../lib/platform/bytes.ts";
import { Identity } from "../../lib/crypto/identity.ts";
import {
  decodeRatchetMessage,
  generateRatchetKeyPair,
  initReceiver,
  initSender,
  MAX_ASSOCIATED_DATA_LENGTH,
  MAX_RATCHET_PLAINTEXT_LENGTH,
  MAX_SKIP,
  MAX_SKIPPED_KEYS,
  RATCHET_HEADER_LENGTH,
  RATCHET_OVERHEAD,
  ratchetDecrypt,
  ratchetEncrypt,
  type RatchetState,
  TooManySkippedMessagesError,
} from "../../lib/crypto/ratchet.ts";
import {
  decodeSession,
  encodeSession,
  MAX_SESSION_LENGTH,
} from "../../lib/crypto/ratchet_session.ts";
import {
  decodeInitialMessage,
  encodeInitialMessage,
  generatePrekey,
  initiateX3dh,
  KeyAgreementError,
  type PrekeyKeyPair,
  respondX3dh,
  signPrekey,
} from "../../lib/crypto/x3dh.ts";
import { DecryptionError, EncryptionError, ProtocolError } from "../../lib/errors.ts";

const DECRYPTION_MESSAGE = new DecryptionError().message;
const AD = new TextEncoder().encode("alice-then-bob identities");
const text = (s: string): Uint8Array => new TextEncoder().encode(s);
const str = (b: Uint8Array): string => new TextDecoder().decode(b);

/** A fresh pair of sessions from a random shared secret, as X3DH would give. */
async function pair(): Promise<{ alice: RatchetState; bob: RatchetState }> {
  const sk = crypto.getRandomValues(new Uint8Array(32));
  const prekey = await generateRatchetKeyPair();
  return { alice: await initSender(sk, prekey.publicKey, AD), bob: initReceiver(sk, prekey, AD) };
}

/** Rejects with exactly `ErrorClass`, carrying the uniform decryption message. */
async function assertDecryptFails(
  promise: Promise<unknown>,
  ErrorClass: typeof DecryptionError = DecryptionError,
): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert(err instanceof DecryptionError, `expected a DecryptionError, got ${err}`);
    assert.equal(err.constructor, ErrorClass);
    assert.equal(err.message, DECRYPTION_MESSAGE);
    return true;
  });
}

/** A small deterministic PRNG (mulberry32), for a reproducible shuffle. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function shuffle<T>(items: T[], seed: number): T[] {
  const random = prng(seed);
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/** A copy of `message` with header fields replaced (the tag no longer matches). */
function withHeader(
  message: Uint8Array,
  fields: { ratchetKey?: Uint8Array; pn?: number; n?: number },
): Uint8Array {
  const { header } = decodeRatchetMessage(message);
  return concat(
    message.subarray(0, 1),
    fields.ratchetKey ?? header.ratchetKey,
    u32(fields.pn ?? header.previousChainLength),
    u32(fields.n ?? header.messageNumber),
    message.subarray(RATCHET_HEADER_LENGTH),
  );
}

/** The state as a proxy that records which of its fields are read. */
function watched(state: RatchetState): { state: RatchetState; reads: Set<PropertyKey> } {
  const reads = new Set<PropertyKey>();
  const proxy = new Proxy(state, {
    get(target, prop, receiver) {
      reads.add(prop);
      return Reflect.get(target, prop, receiver);
    },
  });
  return { state: proxy, reads };
}

// The fields no key can be derived without.
const KEY_FIELDS = ["rootKey", "sendingRatchetKey", "sendingChainKey", "receivingChainKey"];

Deno.test("a conversation decrypts in both directions across DH ratchet steps", async () => {
  let { alice, bob } = await pair();
  for (let round = 0; round < 4; round++) {
    for (let i = 0; i < 3; i++) {
      const sent = await ratchetEncrypt(alice, text(`a${round}.${i}`));
      alice = sent.state;
      const got = await ratchetDecrypt(bob, sent.message);
      bob = got.state;
      assert.equal(str(got.plaintext), `a${round}.${i}`);
    }
    const sent = await ratchetEncrypt(bob, text(`b${round}`));
    bob = sent.state;
    const got = await ratchetDecrypt(alice, sent.message);
    alice = got.state;
    assert.equal(str(got.plaintext), `b${round}`);
  }
  assert.equal(alice.skippedMessageKeys.length, 0);
  assert.equal(bob.skippedMessageKeys.length, 0);
});

Deno.test("the header carries the ratchet key, PN and N, and the message its overhead", async () => {
  let { alice, bob } = await pair();
  const first = await ratchetEncrypt(alice, new Uint8Array(10));
  alice = first.state;
  assert.equal(first.message.length, 10 + RATCHET_OVERHEAD);
  const second = await ratchetEncrypt(alice, new Uint8Array());
  const { header } = decodeRatchetMessage(second.message);
  assert.deepEqual(header.ratchetKey, alice.sendingRatchetKey.publicKey);
  assert.equal(header.messageNumber, 1);
  assert.equal(header.previousChainLength, 0);
  bob = (await ratchetDecrypt(bob, first.message)).state;
  const reply = await ratchetEncrypt(bob, new Uint8Array());
  assert.equal(decodeRatchetMessage(reply.message).header.previousChainLength, 0);
});

Deno.test("a responder cannot send before it has received a message", async () => {
  const { bob } = await pair();
  await assert.rejects(ratchetEncrypt(bob, text("hi")), {
    name: "EncryptionError",
    message: "Cannot encrypt: the session has not received a message yet",
  });
});

Deno.test("ratchetEncrypt refuses an oversized plaintext and an exhausted chain", async () => {
  const { alice } = await pair();
  await assert.rejects(
    ratchetEncrypt(alice, new Uint8Array(MAX_RATCHET_PLAINTEXT_LENGTH + 1)),
    EncryptionError,
  );
  await assert.rejects(ratchetEncrypt({ ...alice, sendingCount: 0xffffffff }, new Uint8Array()), {
    name: "EncryptionError",
    message: "Cannot encrypt: the sending chain is exhausted",
  });
});

Deno.test("ratchetEncrypt and ratchetDecrypt never change the state they are given", async () => {
  const { alice, bob } = await pair();
  const aliceBefore = encodeSession(alice);
  const bobBefore = encodeSession(bob);
  const sent = await ratchetEncrypt(alice, text("x"));
  await ratchetDecrypt(bob, sent.message);
  assert.deepEqual(encodeSession(alice), aliceBefore);
  assert.deepEqual(encodeSession(bob), bobBefore);
});

Deno.test("every single-bit flip of a message is rejected and leaves the session usable", async (t) => {
  let { alice, bob } = await pair();

  await t.step("the first message of a session", async () => {
    const sent = await ratchetEncrypt(alice, text("first message"));
    const before = encodeSession(bob);
    for (let bit = 0; bit < sent.message.length * 8; bit++) {
      const flipped = new Uint8Array(sent.message);
      flipped[bit >> 3]! ^= 0x80 >> (bit & 7);
      await assert.rejects(ratchetDecrypt(bob, flipped), DecryptionError, `bit ${bit}`);
    }
    assert.deepEqual(encodeSession(bob), before);
    const got = await ratchetDecrypt(bob, sent.message);
    assert.equal(str(got.plaintext), "first message");
    alice = sent.state;
    bob = got.state;
  });

  await t.step("a message in the middle of a conversation", async () => {
    const reply = await ratchetEncrypt(bob, text("reply"));
    alice = (await ratchetDecrypt(alice, reply.message)).state;
    const sent = await ratchetEncrypt(alice, text("steady state"));
    const next = await ratchetEncrypt(sent.state, text("next"));
    for (let bit = 0; bit < sent.message.length * 8; bit++) {
      const flipped = new Uint8Array(sent.message);
      flipped[bit >> 3]! ^= 0x80 >> (bit & 7);
      await assert.rejects(ratchetDecrypt(bob, flipped), DecryptionError, `bit ${bit}`);
      // The session is untouched: the genuine message still decrypts.
      assert.equal(str((await ratchetDecrypt(bob, sent.message)).plaintext), "steady state");
    }
    const got = await ratchetDecrypt(bob, sent.message);
    assert.equal(str((await ratchetDecrypt(got.state, next.message)).plaintext), "next");
  });
});

Deno.test("malformed messages are rejected with the uniform error", async () => {
  const { alice, bob } = await pair();
  const { message } = await ratchetEncrypt(alice, text("x"));
  await assertDecryptFails(ratchetDecrypt(bob, message.subarray(0, RATCHET_OVERHEAD - 1)));
  await assertDecryptFails(ratchetDecrypt(bob, new Uint8Array([2, ...message.subarray(1)])));
  await assertDecryptFails(ratchetDecrypt(bob, withHeader(message, { n: 0xffffffff })));
  assert.throws(() => decodeRatchetMessage(message.subarray(0, 10)), ProtocolError);
  assert.throws(() => decodeRatchetMessage(new Uint8Array([0, ...message.subarray(1)])), {
    name: "ProtocolError",
    message: /^Cannot decode ratchet message: /,
  });
});

Deno.test("1,000 messages in a seeded random order each decrypt exactly once", async () => {
  let { alice, bob } = await pair();
  const messages: { text: string; message: Uint8Array }[] = [];
  const send = async (label: string): Promise<void> => {
    const sent = await ratchetEncrypt(alice, text(label));
    alice = sent.state;
    messages.push({ text: label, message: sent.message });
  };
  // Two sending chains: 500 messages, a reply from Bob, 500 more.
  for (let i = 0; i < 500; i++) await send(`one.${i}`);
  const firstGot = await ratchetDecrypt(bob, messages[0]!.message);
  bob = firstGot.state;
  const reply = await ratchetEncrypt(bob, text("reply"));
  bob = reply.state;
  alice = (await ratchetDecrypt(alice, reply.message)).state;
  for (let i = 0; i < 500; i++) await send(`two.${i}`);
  assert.equal(messages.length, 1000);

  const seen = new Set<string>([str(firstGot.plaintext)]);
  for (const { text: label, message } of shuffle(messages.slice(1), 0xd1d)) {
    const got = await ratchetDecrypt(bob, message);
    bob = got.state;
    assert.equal(str(got.plaintext), label);
    assert(!seen.has(label));
    seen.add(label);
  }
  assert.equal(seen.size, 1000);
  assert.equal(bob.skippedMessageKeys.length, 0);

  // Every one of them again: each is refused, and nothing changes.
  const settled = encodeSession(bob);
  for (const { message } of messages) await assertDecryptFails(ratchetDecrypt(bob, message));
  assert.deepEqual(encodeSession(bob), settled);
});

Deno.test("duplicates are rejected, in order and out of order", async () => {
  let { alice, bob } = await pair();
  const sent: Uint8Array[] = [];
  for (let i = 0; i < 3; i++) {
    const out = await ratchetEncrypt(alice, text(`m${i}`));
    alice = out.state;
    sent.push(out.message);
  }
  bob = (await ratchetDecrypt(bob, sent[0]!)).state;
  await assertDecryptFails(ratchetDecrypt(bob, sent[0]!));
  bob = (await ratchetDecrypt(bob, sent[2]!)).state; // skips m1
  assert.equal(bob.skippedMessageKeys.length, 1);
  bob = (await ratchetDecrypt(bob, sent[1]!)).state; // uses the skipped key
  assert.equal(bob.skippedMessageKeys.length, 0);
  await assertDecryptFails(ratchetDecrypt(bob, sent[1]!));
  await assertDecryptFails(ratchetDecrypt(bob, sent[2]!));
});

Deno.test("a jump of exactly MAX_SKIP is accepted", async () => {
  let { alice, bob } = await pair();
  let last: Uint8Array | undefined;
  for (let i = 0; i <= MAX_SKIP; i++) {
    const out = await ratchetEncrypt(alice, text(`m${i}`));
    alice = out.state;
    last = out.message;
  }
  const got = await ratchetDecrypt(bob, last!);
  assert.equal(str(got.plaintext), `m${MAX_SKIP}`);
  assert.equal(got.state.skippedMessageKeys.length, MAX_SKIP);
});

Deno.test("a jump past MAX_SKIP is rejected before any key is derived", async (t) => {
  let { alice, bob } = await pair();
  const first = await ratchetEncrypt(alice, text("m0"));
  alice = first.state;
  const fresh = bob;
  bob = (await ratchetDecrypt(bob, first.message)).state; // Nr = 1 on Alice's chain
  const next = (await ratchetEncrypt(alice, text("m1"))).message;
  const stranger = (await generateRatchetKeyPair()).publicKey;

  const cases: [string, RatchetState, Uint8Array, typeof DecryptionError][] = [
    [
      "N past the bound in the current chain",
      bob,
      withHeader(next, { n: 1 + MAX_SKIP + 1 }),
      TooManySkippedMessagesError,
    ],
    [
      "N past the bound in a new chain",
      fresh,
      withHeader(next, { n: MAX_SKIP + 1 }),
      TooManySkippedMessagesError,
    ],
    [
      "PN past the bound when the chain ends",
      bob,
      withHeader(next, { ratchetKey: stranger, pn: 1 + MAX_SKIP + 1, n: 0 }),
      TooManySkippedMessagesError,
    ],
    [
      "a counter at the u32 limit",
      bob,
      withHeader(next, { n: 0xfffffffe }),
      TooManySkippedMessagesError,
    ],
    [
      "N below the chain's position (a duplicate)",
      bob,
      withHeader(next, { n: 0 }),
      DecryptionError,
    ],
    [
      "PN below the old chain's position",
      bob,
      withHeader(next, { ratchetKey: stranger, pn: 0, n: 0 }),
      DecryptionError,
    ],
  ];
  for (const [name, state, message, ErrorClass] of cases) {
    await t.step(name, async () => {
      const before = encodeSession(state);
      const { state: proxy, reads } = watched(state);
      await assertDecryptFails(ratchetDecrypt(proxy, message), ErrorClass);
      for (const field of KEY_FIELDS) assert(!reads.has(field), `${field} was read`);
      assert.deepEqual(encodeSession(state), before);
    });
  }

  await t.step("a genuine message still decrypts afterwards", async () => {
    assert.equal(str((await ratchetDecrypt(bob, next)).plaintext), "m1");
  });
});

Deno.test("at most MAX_SKIPPED_KEYS skipped keys are kept, the oldest evicted first", async () => {
  let { alice, bob } = await pair();
  const stranded: Uint8Array[] = [];
  // Three of Alice's chains in each of which Bob receives only the last of
  // MAX_SKIP + 1 messages: 3 × MAX_SKIP skipped keys.
  for (let chain = 0; chain < 3; chain++) {
    let last: Uint8Array | undefined;
    for (let i = 0; i <= MAX_SKIP; i++) {
      const out = await ratchetEncrypt(alice, text(`c${chain}.${i}`));
      alice = out.state;
      if (i === 0) stranded.push(out.message);
      last = out.message;
    }
    bob = (await ratchetDecrypt(bob, last!)).state;
    const reply = await ratchetEncrypt(bob, text("ack"));
    bob = reply.state;
    alice = (await ratchetDecrypt(alice, reply.message)).state;
  }
  assert.equal(bob.skippedMessageKeys.length, MAX_SKIPPED_KEYS);
  await assertDecryptFails(ratchetDecrypt(bob, stranded[0]!)); // evicted
  assert.equal(str((await ratchetDecrypt(bob, stranded[1]!)).plaintext), "c1.0");
  assert.equal(str((await ratchetDecrypt(bob, stranded[2]!)).plaintext), "c2.0");
});

Deno.test("a session survives encodeSession and decodeSession mid-conversation", async () => {
  let { alice, bob } = await pair();
  const held: Uint8Array[] = [];
  for (let i = 0; i < 4; i++) {
    const out = await ratchetEncrypt(alice, text(`m${i}`));
    alice = out.state;
    if (i % 2 === 0) held.push(out.message);
    else bob = (await ratchetDecrypt(bob, out.message)).state;
  }
  assert.equal(bob.skippedMessageKeys.length, 2);
  alice = decodeSession(encodeSession(alice));
  bob = decodeSession(encodeSession(bob));
  assert.deepEqual(decodeSession(encodeSession(bob)), bob);

  for (const [i, message] of held.entries()) {
    const got = await ratchetDecrypt(bob, message);
    bob = got.state;
    assert.equal(str(got.plaintext), `m${2 * i}`);
  }
  assert.equal(bob.skippedMessageKeys.length, 0);
  await assertDecryptFails(ratchetDecrypt(bob, held[0]!));
  const reply = await ratchetEncrypt(bob, text("back"));
  assert.equal(str((await ratchetDecrypt(alice, reply.message)).plaintext), "back");
});

Deno.test("decodeSession is strict", async (t) => {
  let { alice, bob } = await pair();
  for (let i = 0; i < 3; i++) {
    const out = await ratchetEncrypt(alice, text(`m${i}`));
    alice = out.state;
    if (i === 2) bob = (await ratchetDecrypt(bob, out.message)).state;
  }
  const bytes = encodeSession(bob);
  assert.equal(bob.skippedMessageKeys.length, 2);
  const invalid = (message: RegExp) => ({ name: "SyntaxError", message });

  await t.step("every truncation", () => {
    for (let n = 0; n < bytes.length; n++) {
      assert.throws(() => decodeSession(bytes.subarray(0, n)), SyntaxError, `length ${n}`);
    }
  });
  await t.step("trailing bytes", () => {
    assert.throws(() => decodeSession(concat(bytes, new Uint8Array(1))), invalid(/trailing/));
  });
  await t.step("unknown versions", () => {
    for (const version of [0, 4, 255]) {
      const changed = new Uint8Array(bytes);
      changed[0] = version;
      assert.throws(() => decodeSession(changed), invalid(/unknown version/));
    }
  });
  await t.step("an input over the size limit, before parsing", () => {
    assert.throws(() => decodeSession(new Uint8Array(MAX_SESSION_LENGTH + 1)), invalid(/longer/));
  });
  await t.step("a presence flag other than 0 or 1", () => {
    const changed = new Uint8Array(bytes);
    changed[97] = 2;
    assert.throws(() => decodeSession(changed), invalid(/presence flag/));
  });
  await t.step("a count without its chain", () => {
    const receiver = initReceiver(new Uint8Array(32), alice.sendingRatchetKey, AD);
    const changed = encodeSession(receiver);
    changed[1 + 96 + 2 + 4 + 3] = 1; // Nr's low byte
    assert.throws(() => decodeSession(changed), invalid(/without a receiving chain/));
  });
  await t.step("a repeated skipped key", () => {
    const entry = bob.skippedMessageKeys[0]!;
    const doubled = encodeSession({ ...bob, skippedMessageKeys: [entry, entry] });
    assert.throws(() => decodeSession(doubled), invalid(/repeated/));
  });
  await t.step("associated data over the limit", () => {
    assert.throws(
      () =>
        encodeSession({ ...bob, associatedData: new Uint8Array(MAX_ASSOCIATED_DATA_LENGTH + 1) }),
      RangeError,
    );
  });
});

Deno.test("initSender rejects unusable remote keys and bad inputs", async () => {
  const sk = new Uint8Array(32).fill(9);
  await assert.rejects(initSender(sk, new Uint8Array(32), AD), RangeError);
  await assert.rejects(initSender(sk, new Uint8Array(31), AD), TypeError);
  await assert.rejects(initSender(new Uint8Array(16), new Uint8Array(32).fill(9), AD), TypeError);
  await assert.rejects(
    initSender(sk, (await generateRatchetKeyPair()).publicKey, new Uint8Array(2000)),
    RangeError,
  );
});

Deno.test("a message naming a low-order ratchet key is rejected uniformly", async () => {
  let { alice, bob } = await pair();
  const first = await ratchetEncrypt(alice, text("m0"));
  alice = first.state;
  bob = (await ratchetDecrypt(bob, first.message)).state;
  const next = (await ratchetEncrypt(alice, text("m1"))).message;
  for (const key of [new Uint8Array(32), new Uint8Array([1, ...new Uint8Array(31)])]) {
    await assertDecryptFails(ratchetDecrypt(bob, withHeader(next, { ratchetKey: key, pn: 1 })));
  }
});

// --- Forward secrecy and post-compromise security, from X3DH on --------------

interface Conversation {
  alice: Identity;
  bob: Identity;
  aliceState: RatchetState;
  bobState: RatchetState;
  bobPrekeys: { signedPrekeys: PrekeyKeyPair[]; oneTimePrekeys: PrekeyKeyPair[] };
  initial: Uint8Array;
}

/** Alice starts a session with Bob through X3DH; Bob consumes the one-time prekey. */
async function converse(): Promise<Conversation> {
  const alice = await Identity.generate();
  const bob = await Identity.generate();
  const spk = await generatePrekey(1);
  const opk = await generatePrekey(2);
  const bobPrekeys = { signedPrekeys: [spk], oneTimePrekeys: [opk] };
  const x = await initiateX3dh(alice, {
    ...bob.public,
    signedPrekey: { ...spk, signature: await signPrekey(bob, spk) },
    oneTimePrekey: opk,
  });
  let aliceState = await initSender(x.sharedSecret, x.remoteRatchetKey, x.associatedData);
  const first = await ratchetEncrypt(aliceState, text("hello Bob"));
  aliceState = first.state;
  const initial = encodeInitialMessage({ header: x.header, message: first.message });

  const { header, message } = decodeInitialMessage(initial);
  const r = await respondX3dh(bob, header, bobPrekeys);
  const opened = await ratchetDecrypt(
    initReceiver(r.sharedSecret, r.ownRatchetKeyPair, r.associatedData),
    message,
  );
  assert.equal(str(opened.plaintext), "hello Bob");
  bobPrekeys.oneTimePrekeys = bobPrekeys.oneTimePrekeys.filter(
    (k) => k.id !== r.consumeOneTimePrekeyId,
  );
  return { alice, bob, aliceState, bobState: opened.state, bobPrekeys, initial };
}

Deno.test("forward secrecy: a full leak does not open earlier messages", async () => {
  const c = await converse();
  const recordedToBob: Uint8Array[] = [];
  const recordedToAlice: Uint8Array[] = [];
  let { aliceState, bobState } = c;
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < 2; i++) {
      const sent = await ratchetEncrypt(aliceState, text(`a${round}.${i}`));
      aliceState = sent.state;
      recordedToBob.push(sent.message);
      bobState = (await ratchetDecrypt(bobState, sent.message)).state;
    }
    const sent = await ratchetEncrypt(bobState, text(`b${round}`));
    bobState = sent.state;
    recordedToAlice.push(sent.message);
    aliceState = (await ratchetDecrypt(aliceState, sent.message)).state;
  }

  // The leak: both identities' private keys, both sessions, Bob's prekeys.
  const leakedBob = await Identity.fromSeeds(c.bob.exportSeeds());
  const aliceCopy = decodeSession(encodeSession(aliceState));
  const bobCopy = decodeSession(encodeSession(bobState));

  for (const message of recordedToBob) await assertDecryptFails(ratchetDecrypt(bobCopy, message));
  for (const message of recordedToAlice) {
    await assertDecryptFails(ratchetDecrypt(aliceCopy, message));
  }

  // The first message: with both identity keys and the signed prekey in
  // hand, DH1 to DH3 can be redone, but the one-time prekey is gone and
  // without DH4 the secret is a different one.
  const { header, message } = decodeInitialMessage(c.initial);
  await assert.rejects(respondX3dh(leakedBob, header, c.bobPrekeys), KeyAgreementError);
  const withoutOpk = await respondX3dh(
    leakedBob,
    { ...header, oneTimePrekeyId: null },
    c.bobPrekeys,
  );
  await assertDecryptFails(
    ratchetDecrypt(
      initReceiver(
        withoutOpk.sharedSecret,
        withoutOpk.ownRatchetKeyPair,
        withoutOpk.associatedData,
      ),
      message,
    ),
  );
  await assertDecryptFails(ratchetDecrypt(bobCopy, message));
});

Deno.test("post-compromise security: one round trip with fresh keys locks a leaked state out", async () => {
  let { aliceState, bobState } = await converse();
  // The leak happens right after Bob received Alice's message.
  let attackerAlice = decodeSession(encodeSession(aliceState));
  let attackerBob = decodeSession(encodeSession(bobState));
  const leakedAlice = attackerAlice;
  const leakedBob = attackerBob;

  // m1, Bob to Alice, is sent on keys the leak contains; so is Alice's
  // answer m2 (its DH uses Bob's leaked ratchet key). A passive attacker
  // following along reads both.
  const m1 = await ratchetEncrypt(bobState, text("m1"));
  bobState = m1.state;
  aliceState = (await ratchetDecrypt(aliceState, m1.message)).state;
  attackerAlice = (await ratchetDecrypt(attackerAlice, m1.message)).state;
  const m2 = await ratchetEncrypt(aliceState, text("m2"));
  aliceState = m2.state;
  bobState = (await ratchetDecrypt(bobState, m2.message)).state;
  attackerBob = (await ratchetDecrypt(attackerBob, m2.message)).state;

  // Each side has now sent once since the leak, and each has a ratchet key
  // made after it: from here on nothing is readable.
  for (let i = 3; i < 7; i++) {
    const fromBob = i % 2 === 1;
    const sender = fromBob ? bobState : aliceState;
    const sent = await ratchetEncrypt(sender, text(`m${i}`));
    if (fromBob) {
      bobState = sent.state;
      aliceState = (await ratchetDecrypt(aliceState, sent.message)).state;
      await assertDecryptFails(ratchetDecrypt(attackerAlice, sent.message));
      await assertDecryptFails(ratchetDecrypt(leakedAlice, sent.message));
      await assertDecryptFails(ratchetDecrypt(attackerBob, sent.message));
    } else {
      aliceState = sent.state;
      bobState = (await ratchetDecrypt(bobState, sent.message)).state;
      await assertDecryptFails(ratchetDecrypt(attackerBob, sent.message));
      await assertDecryptFails(ratchetDecrypt(leakedBob, sent.message));
      await assertDecryptFails(ratchetDecrypt(attackerAlice, sent.message));
    }
  }
});
