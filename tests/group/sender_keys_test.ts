import assert from "node:assert/strict";
import { DecryptionError, TooManySkippedMessagesError } from "../../lib/errors.ts";
import { MAX_GROUP_SKIP } from "../../lib/group/constants.ts";
import {
  createSenderChain,
  decodeDistribution,
  DISTRIBUTION_LENGTH,
  encodeDistribution,
  expireSkippedGroupKeys,
  groupDecrypt,
  groupEncrypt,
  receiverChainFrom,
  type SenderChain,
} from "../../lib/group/sender_keys.ts";

const GROUP = new Uint8Array(16).fill(9);
const ALICE = new Uint8Array(32).fill(1);
const text = (s: string) => new TextEncoder().encode(s);

async function sendMany(chain: SenderChain, n: number) {
  const messages: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    const out = await groupEncrypt(chain, ALICE, { body: text(`m${i}`) });
    chain = out.chain;
    messages.push(out.message);
  }
  return { chain, messages };
}

Deno.test("sender keys: out of order and skipped messages read within bounds, each once", async () => {
  const start = await createSenderChain(GROUP, 0);
  let bob = receiverChainFrom(decodeDistribution(encodeDistribution(start)), ALICE);
  const { messages } = await sendMany(start, 6);
  for (const i of [3, 0, 5, 1, 4, 2]) {
    const out = await groupDecrypt(bob, messages[i]!);
    bob = out.chain;
    assert.equal(new TextDecoder().decode(out.plaintext.body), `m${i}`);
  }
  assert.equal(bob.skipped.length, 0);
  for (const m of messages) await assert.rejects(groupDecrypt(bob, m), DecryptionError);
});

Deno.test("sender keys: a jump over MAX_GROUP_SKIP is refused before any key is derived", async () => {
  const start = await createSenderChain(GROUP, 0);
  const bob = receiverChainFrom(decodeDistribution(encodeDistribution(start)), ALICE);
  const far = await groupEncrypt({ ...start, iteration: MAX_GROUP_SKIP + 1 }, ALICE, {
    body: text("x"),
  });
  await assert.rejects(groupDecrypt(bob, far.message), TooManySkippedMessagesError);
});

Deno.test("sender keys: forward secrecy, a later chain state reads no earlier message", async () => {
  const start = await createSenderChain(GROUP, 0);
  const { chain, messages } = await sendMany(start, 3);
  // Someone who gets the sender's chain (or a distribution) now: nothing before it reads.
  const late = receiverChainFrom(decodeDistribution(encodeDistribution(chain)), ALICE);
  for (const m of messages) await assert.rejects(groupDecrypt(late, m), DecryptionError);
  // A reader's chain after message 1 holds no key of messages 0 and 1.
  let bob = receiverChainFrom(decodeDistribution(encodeDistribution(start)), ALICE);
  bob = (await groupDecrypt(bob, messages[0]!)).chain;
  bob = (await groupDecrypt(bob, messages[1]!)).chain;
  assert.notDeepEqual(bob.chainKey, start.chainKey);
  await assert.rejects(groupDecrypt(bob, messages[0]!), DecryptionError);
  await assert.rejects(groupDecrypt(bob, messages[1]!), DecryptionError);
});

Deno.test("sender keys: skipped keys expire", async () => {
  const start = await createSenderChain(GROUP, 0);
  let bob = receiverChainFrom(decodeDistribution(encodeDistribution(start)), ALICE);
  const { messages } = await sendMany(start, 3);
  bob = (await groupDecrypt(bob, messages[2]!, { now: 1000 })).chain;
  assert.equal(bob.skipped.length, 2);
  bob = expireSkippedGroupKeys(bob, 1000 + 31 * 24 * 3600 * 1000);
  assert.equal(bob.skipped.length, 0);
  await assert.rejects(groupDecrypt(bob, messages[0]!), DecryptionError);
});

Deno.test("sender keys: another member cannot write as the sender, nor alter a message", async () => {
  const alice = await createSenderChain(GROUP, 0);
  const bob = receiverChainFrom(decodeDistribution(encodeDistribution(alice)), ALICE);
  // Mallory holds Alice's chain key (every member does) but not her chain's signing key.
  const mallory = await createSenderChain(GROUP, 0);
  const forged = await groupEncrypt({ ...mallory, chainKey: alice.chainKey }, ALICE, {
    body: text("from alice, honest"),
  });
  await assert.rejects(groupDecrypt(bob, forged.message), DecryptionError);
  const { message } = await groupEncrypt(alice, ALICE, { body: text("hi") });
  for (const at of [0, 5, 20, 60, 80, message.length - 1]) {
    const bad = message.slice();
    bad[at]! ^= 0x10;
    await assert.rejects(groupDecrypt(bob, bad), DecryptionError);
  }
});

Deno.test("sender keys: distributions decode strictly", () => {
  const bytes = new Uint8Array(DISTRIBUTION_LENGTH);
  bytes[0] = 1;
  decodeDistribution(bytes);
  for (let n = 0; n < bytes.length; n++) {
    assert.throws(() => decodeDistribution(bytes.subarray(0, n)), SyntaxError);
  }
  assert.throws(() => decodeDistribution(new Uint8Array([...bytes, 0])), SyntaxError);
  assert.throws(() => decodeDistribution(new Uint8Array([2, ...bytes.subarray(1)])), SyntaxError);
});
