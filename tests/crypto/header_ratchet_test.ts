import assert from "node:assert/strict";
import { DecryptionError, TooManySkippedMessagesError } from "../../lib/errors.ts";
import { generateRatchetKeyPair, type RatchetState } from "../../lib/crypto/ratchet.ts";
import {
  HEADER_RATCHET_OVERHEAD,
  headerRatchetDecrypt,
  headerRatchetEncrypt,
  headerTrialCount,
  initHeaderReceiver,
  initHeaderSender,
  receivingTags,
  sessionTag,
  startFirstSenderStep,
} from "../../lib/crypto/header_ratchet.ts";
import { decodeSession, encodeSession } from "../../lib/crypto/ratchet_session.ts";
import { Identity } from "../../lib/crypto/identity.ts";
import {
  decodeInitialMessage,
  encodeInitialMessage,
  generatePrekey,
  initiateX3dh,
  respondX3dh,
  signPrekey,
} from "../../lib/crypto/x3dh.ts";

const utf8 = (s: string) => new TextEncoder().encode(s);
const text = (b: Uint8Array) => new TextDecoder().decode(b);
const newId = () => crypto.getRandomValues(new Uint8Array(16));

async function pair(): Promise<{ alice: RatchetState; bob: RatchetState }> {
  const sk = crypto.getRandomValues(new Uint8Array(32));
  const hka = crypto.getRandomValues(new Uint8Array(32));
  const nhkb = crypto.getRandomValues(new Uint8Array(32));
  const ad = utf8("alice|bob");
  const prekey = await generateRatchetKeyPair();
  return {
    alice: await initHeaderSender(sk, prekey.publicKey, ad, { sending: hka, nextReceiving: nhkb }),
    bob: initHeaderReceiver(sk, prekey, ad, { nextSending: nhkb, nextReceiving: hka }),
  };
}

async function send(state: RatchetState, body: string) {
  const id = newId();
  const out = await headerRatchetEncrypt(state, utf8(body), { id });
  return { state: out.state, message: out.message, id };
}

async function read(state: RatchetState, message: Uint8Array) {
  const got = await headerRatchetDecrypt(state, message);
  assert(!got.gone, "the message key should be there");
  return got;
}

Deno.test("header ratchet: messages round-trip both ways across DH steps", async () => {
  let { alice, bob } = await pair();
  for (let round = 0; round < 4; round++) {
    for (let i = 0; i < 3; i++) {
      const sent = await send(alice, `a${round}.${i}`);
      alice = sent.state;
      const got = await read(bob, sent.message);
      bob = got.state;
      assert.equal(text(got.plaintext), `a${round}.${i}`);
      assert.deepEqual(got.id, sent.id);
    }
    const reply = await send(bob, `b${round}`);
    bob = reply.state;
    const back = await read(alice, reply.message);
    alice = back.state;
    assert.equal(text(back.plaintext), `b${round}`);
  }
});

Deno.test("header ratchet: the tag stays within a sending chain and changes with each DH step", async () => {
  let { alice, bob } = await pair();
  const a1 = await send(alice, "1");
  const a2 = await send(a1.state, "2");
  alice = a2.state;
  assert.deepEqual(a1.message.subarray(0, 16), a2.message.subarray(0, 16));
  bob = (await read(bob, a1.message)).state;
  bob = (await read(bob, a2.message)).state;
  const b1 = await send(bob, "r");
  alice = (await read(alice, b1.message)).state;
  const a3 = await send(alice, "3");
  assert.notDeepEqual(a3.message.subarray(0, 16), a1.message.subarray(0, 16));
  // The recipient's index names it before it arrives.
  assert(receivingTags(b1.state).some((t) => t.tag.every((b, i) => b === a3.message[i])));
  assert.equal(a3.message.length, 1 + HEADER_RATCHET_OVERHEAD);
});

Deno.test("header ratchet: out-of-order and skipped messages across DH steps", async () => {
  let { alice, bob } = await pair();
  const first = [];
  for (let i = 0; i < 4; i++) {
    const sent = await send(alice, `a${i}`);
    alice = sent.state;
    first.push(sent);
  }
  // Bob reads the last of the chain first, and answers.
  bob = (await read(bob, first[3]!.message)).state;
  assert.equal(bob.skippedMessageKeys.length, 3);
  const reply = await send(bob, "r");
  bob = reply.state;
  alice = (await read(alice, reply.message)).state;
  // Alice's next chain: Bob gets its second message before its first.
  const second = [];
  for (let i = 0; i < 2; i++) {
    const sent = await send(alice, `c${i}`);
    alice = sent.state;
    second.push(sent);
  }
  bob = (await read(bob, second[1]!.message)).state;
  for (const sent of [first[1]!, second[0]!, first[0]!, first[2]!]) {
    const got = await read(bob, sent.message);
    bob = got.state;
    assert.deepEqual(got.id, sent.id);
  }
  assert.equal(bob.skippedMessageKeys.length, 0);
});

Deno.test("header ratchet: a copy is recognized by its ID, in the current chain and an earlier one", async () => {
  let { alice, bob } = await pair();
  const a1 = await send(alice, "1");
  alice = a1.state;
  bob = (await read(bob, a1.message)).state;
  const copy = await headerRatchetDecrypt(bob, a1.message);
  assert(copy.gone);
  assert.deepEqual(copy.id, a1.id);
  // After a round trip Bob's receiving chain has moved on; the copy is still known.
  const r = await send(bob, "r");
  bob = r.state;
  alice = (await read(alice, r.message)).state;
  const a2 = await send(alice, "2");
  bob = (await read(bob, a2.message)).state;
  const late = await headerRatchetDecrypt(bob, a1.message);
  assert(late.gone);
  assert.deepEqual(late.id, a1.id);
});

Deno.test("header ratchet: every tampered byte is refused and the state is unchanged", async () => {
  const { alice, bob } = await pair();
  const sent = await send(alice, "hello");
  const before = encodeSession(bob);
  for (let i = 0; i < sent.message.length; i++) {
    const changed = new Uint8Array(sent.message);
    changed[i]! ^= 0x01;
    await assert.rejects(headerRatchetDecrypt(bob, changed), DecryptionError, `byte ${i}`);
  }
  // A different context (another frame kind, say) is refused too.
  await assert.rejects(
    headerRatchetDecrypt(bob, sent.message, { context: new Uint8Array([1]) }),
    DecryptionError,
  );
  await assert.rejects(headerRatchetDecrypt(bob, sent.message.subarray(0, 50)), DecryptionError);
  assert.deepEqual(encodeSession(bob), before);
  assert.equal(text((await read(bob, sent.message)).plaintext), "hello");
});

Deno.test("header ratchet: an unknown tag is refused without any decryption", async () => {
  const { alice } = await pair();
  const other = await pair();
  const sent = await send(alice, "not for you");
  const trials = headerTrialCount();
  await assert.rejects(headerRatchetDecrypt(other.bob, sent.message), DecryptionError);
  assert.equal(headerTrialCount(), trials);
  const junk = crypto.getRandomValues(new Uint8Array(200));
  await assert.rejects(headerRatchetDecrypt(other.bob, junk), DecryptionError);
  assert.equal(headerTrialCount(), trials);
});

Deno.test("header ratchet: a known tag costs exactly one header decryption", async () => {
  const { alice, bob } = await pair();
  const sent = await send(alice, "x");
  const forged = new Uint8Array(sent.message);
  forged[40]! ^= 1; // inside the sealed header
  const trials = headerTrialCount();
  await assert.rejects(headerRatchetDecrypt(bob, forged), DecryptionError);
  assert.equal(headerTrialCount(), trials + 1);
});

Deno.test("header ratchet: a jump beyond MAX_SKIP is refused before any key is derived", async () => {
  let { alice, bob } = await pair();
  const first = await send(alice, "0");
  alice = first.state;
  bob = (await read(bob, first.message)).state;
  const far = await headerRatchetEncrypt({ ...alice, sendingCount: 1002 }, utf8("far"), {
    id: newId(),
  });
  await assert.rejects(headerRatchetDecrypt(bob, far.message), TooManySkippedMessagesError);
});

Deno.test("header ratchet: a state with header keys survives its storage encoding", async () => {
  let { alice, bob } = await pair();
  const a = await send(alice, "1");
  const b = await send(a.state, "2");
  alice = b.state;
  bob = (await read(bob, b.message)).state;
  const r = await send(bob, "r");
  bob = r.state;
  alice = (await read(alice, r.message)).state;
  for (const state of [alice, bob]) {
    const bytes = encodeSession(state);
    assert.equal(bytes[0], 3);
    assert.deepEqual(decodeSession(bytes), state);
  }
  const got = await read(decodeSession(encodeSession(bob)), a.message);
  assert.equal(text(got.plaintext), "1");
  assert.deepEqual(receivingTags(decodeSession(encodeSession(bob))), receivingTags(bob));
});

Deno.test("X3DH version 2 gives both sides the same header keys; version 1 gives none", async () => {
  const alice = await Identity.generate();
  const bob = await Identity.generate();
  const spk = await generatePrekey(1);
  const bundle = {
    ...bob.public,
    signedPrekey: { ...spk, signature: await signPrekey(bob, spk) },
  };
  const sent = await initiateX3dh(alice, bundle, { headerEncryption: true });
  assert.equal(sent.header.headerEncryption, true);
  const got = await respondX3dh(bob, sent.header, { signedPrekeys: [spk], oneTimePrekeys: [] });
  assert.deepEqual(got.headerKeys, sent.headerKeys);
  assert.notDeepEqual(sent.headerKeys!.initiator, sent.headerKeys!.responder);
  assert.notDeepEqual(sent.headerKeys!.initiator, sent.sharedSecret);

  let a = await initHeaderSender(sent.sharedSecret, sent.remoteRatchetKey, sent.associatedData, {
    sending: sent.headerKeys!.initiator,
    nextReceiving: sent.headerKeys!.responder,
  });
  let b = initHeaderReceiver(got.sharedSecret, got.ownRatchetKeyPair, got.associatedData, {
    nextSending: got.headerKeys!.responder,
    nextReceiving: got.headerKeys!.initiator,
  });
  const first = await headerRatchetEncrypt(a, utf8("hi"), { id: newId() });
  a = first.state;
  const initial = encodeInitialMessage({ header: sent.header, message: first.message });
  assert.equal(initial[0], 2);
  const decoded = decodeInitialMessage(initial);
  assert.equal(decoded.header.headerEncryption, true);
  b = (await read(b, decoded.message)).state;
  const reply = await headerRatchetEncrypt(b, utf8("yo"), { id: newId() });
  assert.deepEqual(reply.message.subarray(0, 16), sessionTag(sent.headerKeys!.responder));
  assert.equal(text((await read(a, reply.message)).plaintext), "yo");

  const old = await initiateX3dh(alice, bundle);
  assert.equal(old.header.headerEncryption, undefined);
  assert.equal(old.headerKeys, undefined);
  const oldGot = await respondX3dh(bob, old.header, { signedPrekeys: [spk], oneTimePrekeys: [] });
  assert.equal(oldGot.headerKeys, undefined);
});

Deno.test("a first ratchet step started before the key agreement gives a session the responder reads; one for another key is not used", async () => {
  const alice = await Identity.generate();
  const bob = await Identity.generate();
  const spk = await generatePrekey(1);
  const signedPrekey = { ...spk, signature: await signPrekey(bob, spk) };
  for (const remote of [signedPrekey.publicKey, (await generatePrekey(9)).publicKey]) {
    const step = startFirstSenderStep(remote);
    const sent = await initiateX3dh(alice, { ...bob.public, signedPrekey }, {
      headerEncryption: true,
    });
    const a0 = await initHeaderSender(
      sent.sharedSecret,
      sent.remoteRatchetKey,
      sent.associatedData,
      {
        sending: sent.headerKeys!.initiator,
        nextReceiving: sent.headerKeys!.responder,
      },
      step,
    );
    const reused = a0.sendingRatchetKey.publicKey === step.keyPair.publicKey;
    assert.equal(reused, remote === signedPrekey.publicKey);
    const first = await headerRatchetEncrypt(a0, utf8("hello"), { id: newId() });
    const got = await respondX3dh(bob, sent.header, { signedPrekeys: [spk], oneTimePrekeys: [] });
    const b0 = initHeaderReceiver(got.sharedSecret, got.ownRatchetKeyPair, got.associatedData, {
      nextSending: got.headerKeys!.responder,
      nextReceiving: got.headerKeys!.initiator,
    });
    const opened = await headerRatchetDecrypt(b0, first.message);
    assert.ok(!opened.gone);
    assert.equal(text(opened.plaintext), "hello");
  }
});

Deno.test("a first ratchet step started for a forged prekey is dropped with the failed key agreement", async () => {
  const alice = await Identity.generate();
  const bob = await Identity.generate();
  const mallory = await Identity.generate();
  const spk = await generatePrekey(1);
  const forged = { ...spk, signature: await signPrekey(mallory, spk) };
  startFirstSenderStep(forged.publicKey);
  await assert.rejects(
    initiateX3dh(alice, { ...bob.public, signedPrekey: forged }, { headerEncryption: true }),
  );
});
