import assert from "node:assert/strict";
import { concat } from "../../lib/platform/bytes.ts";
import {
  generateRatchetKeyPair,
  initReceiver,
  initSender,
  ratchetDecrypt,
  ratchetEncrypt,
  type RatchetState,
} from "../../lib/crypto/ratchet.ts";
import {
  decodeSession,
  encodeSession,
  expireSkippedKeys,
  SESSION_VERSION,
} from "../../lib/crypto/ratchet_session.ts";
import { DecryptionError } from "../../lib/errors.ts";

const AD = new TextEncoder().encode("alice-then-bob identities");
const DAY = 24 * 3600 * 1000;
const ENTRY_V1 = 32 + 4 + 32;
const ENTRY_V2 = 32 + 4 + 8 + 32;

/**
 * Bob after reading Alice's messages 2 (on day 1) and 4 (on day 3) of 0..4:
 * messages 0 and 1 were skipped on day 1, 3 on day 3. Also returns the
 * messages Bob has not read.
 */
async function bobWithSkippedKeys(): Promise<
  { bob: RatchetState; late: Map<number, Uint8Array> }
> {
  const sk = crypto.getRandomValues(new Uint8Array(32));
  const prekey = await generateRatchetKeyPair();
  let alice = await initSender(sk, prekey.publicKey, AD);
  let bob = initReceiver(sk, prekey, AD);
  const late = new Map<number, Uint8Array>();
  for (let i = 0; i < 5; i++) {
    const out = await ratchetEncrypt(alice, new Uint8Array([i]));
    alice = out.state;
    if (i === 2 || i === 4) {
      bob = (await ratchetDecrypt(bob, out.message, { now: (i === 2 ? 1 : 3) * DAY })).state;
    } else late.set(i, out.message);
  }
  return { bob, late };
}

/** The version-1 encoding of a state: version 1, and no times in the skipped entries. */
function encodeVersion1(state: RatchetState): Uint8Array {
  const v2 = encodeSession(state);
  const count = state.skippedMessageKeys.length;
  const head = v2.slice(0, v2.length - count * ENTRY_V2);
  head[0] = 1;
  const entries = state.skippedMessageKeys.map((e) => {
    const entry = new Uint8Array(ENTRY_V1);
    entry.set(e.ratchetKey);
    new DataView(entry.buffer).setUint32(32, e.messageNumber);
    entry.set(e.messageKey, 36);
    return entry;
  });
  return concat(head, ...entries);
}

Deno.test("decodeSession(encodeSession()) keeps when each skipped key was stored (version 2)", async () => {
  const { bob } = await bobWithSkippedKeys();
  assert.deepEqual(bob.skippedMessageKeys.map((e) => [e.messageNumber, e.storedAt]), [
    [0, DAY],
    [1, DAY],
    [3, 3 * DAY],
  ]);
  const bytes = encodeSession(bob);
  assert.equal(bytes[0], SESSION_VERSION);
  assert.equal(SESSION_VERSION, 2);
  assert.deepEqual(decodeSession(bytes), bob);
});

Deno.test("a version-1 session is still read, its skipped keys stored at decode time, and written as version 2", async () => {
  const { bob, late } = await bobWithSkippedKeys();
  const v1 = encodeVersion1(bob);
  assert.equal(v1[0], 1);
  const read = decodeSession(v1, { now: 10 * DAY });
  assert.deepEqual(read.skippedMessageKeys.map((e) => e.storedAt), [10 * DAY, 10 * DAY, 10 * DAY]);
  assert.deepEqual(read, {
    ...bob,
    skippedMessageKeys: bob.skippedMessageKeys.map((e) => ({ ...e, storedAt: 10 * DAY })),
  });
  // Without `now`, decode time is the clock's.
  const before = Date.now();
  const stamped = decodeSession(v1).skippedMessageKeys[0]!.storedAt;
  assert.ok(stamped >= before && stamped <= Date.now());
  // It still reads the late messages, and is written back as version 2.
  const got = await ratchetDecrypt(read, late.get(1)!);
  assert.deepEqual(got.plaintext, new Uint8Array([1]));
  assert.equal(encodeSession(got.state)[0], 2);
});

Deno.test("decodeSession refuses malformed version-2 encodings", async (t) => {
  const { bob } = await bobWithSkippedKeys();
  const bytes = encodeSession(bob);
  const invalid = (message: RegExp) => ({ name: "SyntaxError", message });
  await t.step("every truncation", () => {
    for (let n = 0; n < bytes.length; n++) {
      assert.throws(() => decodeSession(bytes.subarray(0, n)), SyntaxError, `length ${n}`);
    }
  });
  await t.step("trailing bytes", () => {
    assert.throws(() => decodeSession(concat(bytes, new Uint8Array(1))), invalid(/trailing/));
  });
  await t.step("a version-2 body under version 1 (and the reverse) does not parse", () => {
    const relabelled = new Uint8Array(bytes);
    relabelled[0] = 1;
    assert.throws(() => decodeSession(relabelled), SyntaxError);
    const v1 = encodeVersion1(bob);
    v1[0] = 2;
    assert.throws(() => decodeSession(v1), SyntaxError);
  });
  await t.step("a skipped key's time beyond 2^53", () => {
    const changed = new Uint8Array(bytes);
    const firstEntry = bytes.length - bob.skippedMessageKeys.length * ENTRY_V2;
    changed[firstEntry + 36] = 0xff; // storedAt's high byte
    assert.throws(() => decodeSession(changed), invalid(/out of range/));
  });
  await t.step("unknown versions", () => {
    for (const version of [0, 4, 255]) {
      const changed = new Uint8Array(bytes);
      changed[0] = version;
      assert.throws(() => decodeSession(changed), invalid(/unknown version/));
    }
  });
  await t.step("encodeSession refuses a time that cannot be written", () => {
    for (const storedAt of [-1, 0.5, Number.MAX_SAFE_INTEGER + 2, NaN]) {
      const entry = { ...bob.skippedMessageKeys[0]!, storedAt };
      assert.throws(() => encodeSession({ ...bob, skippedMessageKeys: [entry] }), RangeError);
    }
  });
});

Deno.test("expireSkippedKeys drops the keys stored before the limit, and only those", async () => {
  const { bob, late } = await bobWithSkippedKeys();
  assert.equal(expireSkippedKeys(bob, DAY), bob, "nothing older: the same state");
  const expired = expireSkippedKeys(bob, DAY + 1);
  assert.deepEqual(expired.skippedMessageKeys.map((e) => e.messageNumber), [3]);
  assert.equal(bob.skippedMessageKeys.length, 3, "the input is not changed");
  // The expired messages fail like any undecryptable one; the kept one reads.
  await assert.rejects(ratchetDecrypt(expired, late.get(0)!), DecryptionError);
  await assert.rejects(ratchetDecrypt(expired, late.get(1)!), DecryptionError);
  const got = await ratchetDecrypt(expired, late.get(3)!);
  assert.deepEqual(got.plaintext, new Uint8Array([3]));
  assert.equal(expireSkippedKeys(bob, 4 * DAY).skippedMessageKeys.length, 0);
});
