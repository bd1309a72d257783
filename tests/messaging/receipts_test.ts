import assert from "node:assert/strict";
import { ProtocolError } from "../../lib/errors.ts";
import {
  decodeReceipt,
  encodeReceipt,
  ReceiptBatch,
  settlesWhenStored,
} from "../../lib/messaging/_receipts.ts";
import { RECEIPT_CONTENT_TYPE } from "../../lib/messaging/constants.ts";
import type { Messenger } from "../../lib/messenger/messenger.ts";
import { nextMessages, testNet } from "../_support/network.ts";

const hash = (n: number) => new Uint8Array(32).fill(n);

Deno.test("a receipt body round-trips and is decoded strictly", async (t) => {
  const body = encodeReceipt({ wantsAck: true, hashes: [hash(1), hash(2)] });
  const decoded = decodeReceipt(body);
  assert.equal(decoded.wantsAck, true);
  assert.deepEqual(decoded.hashes, [hash(1), hash(2)]);
  const final = encodeReceipt({ wantsAck: false, hashes: [hash(3)] });
  assert.equal(decodeReceipt(final).wantsAck, false);
  for (
    const [name, bad] of [
      ["empty", new Uint8Array(0)],
      ["unknown version", Uint8Array.of(2, 0, 0, 1, ...hash(1))],
      ["unknown flag", Uint8Array.of(1, 2, 0, 1, ...hash(1))],
      ["no hash", Uint8Array.of(1, 0, 0, 0)],
      ["trailing byte", Uint8Array.of(...body, 0)],
      ["short hash", body.subarray(0, body.length - 1)],
    ] as const
  ) {
    await t.step(`refuses ${name}`, () => {
      assert.throws(() => decodeReceipt(bad), ProtocolError);
    });
  }
  assert.throws(() => encodeReceipt({ wantsAck: true, hashes: [] }), RangeError);
});

Deno.test("receipts never answer receipts that want no acknowledgement", () => {
  const wanted = encodeReceipt({ wantsAck: true, hashes: [hash(1)] });
  const final = encodeReceipt({ wantsAck: false, hashes: [hash(2)] });
  assert.equal(settlesWhenStored({ contentType: RECEIPT_CONTENT_TYPE, body: wanted }), false);
  assert.equal(settlesWhenStored({ contentType: RECEIPT_CONTENT_TYPE, body: final }), true);
  assert.equal(settlesWhenStored({ contentType: 1, body: final }), false, "a text message");
  const batch = new ReceiptBatch();
  batch.add("dim-alice", hash(10), { contentType: 1, body: new Uint8Array([1]) });
  batch.add("dim-alice", hash(11), { contentType: RECEIPT_CONTENT_TYPE, body: wanted });
  batch.add("dim-alice", hash(12), { contentType: RECEIPT_CONTENT_TYPE, body: final });
  batch.add("dim-carol", hash(13), { contentType: RECEIPT_CONTENT_TYPE, body: final });
  const out = [...batch.receipts()].map(({ sender, body }) => ({
    sender,
    ...decodeReceipt(body),
  }));
  assert.deepEqual(out, [
    { sender: "dim-alice", wantsAck: true, hashes: [hash(10)] },
    { sender: "dim-alice", wantsAck: false, hashes: [hash(11)] },
  ]);
});

/** Waits until `check` holds, polling. */
async function until(what: string, check: () => boolean, ms = 40_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Counts the `message` events a messenger dispatches. */
function countMessages(m: Messenger): { readonly count: number } {
  const seen = { count: 0 };
  m.addEventListener("message", () => seen.count++);
  return seen;
}

Deno.test("a receipt reaches a sender who is never online with the recipient, and both outboxes empty", async () => {
  await using net = await testNet(2);
  const alice = await net.user("alice");
  const bob = await net.user("bob");
  await alice.addContact("bob", bob.id);
  await bob.addContact("alice", alice.id);
  const aliceId = alice.id;
  const bobId = bob.id;
  await bob.stop();

  // Alice writes while Bob is away: a copy waits in Bob's mailbox.
  const sent = await alice.send("bob", "while you were out");
  await alice.waitFor(sent.seq, { orStored: true, signal: AbortSignal.timeout(15_000) });
  await alice.stop();

  // Bob reads it while Alice is away: his receipt waits in Alice's mailbox.
  const bob2 = await net.reopen("bob");
  const [got] = await nextMessages(bob2, 1, 15_000);
  assert.equal(got?.text, "while you were out");
  assert.equal(got?.via, "mailbox");
  await until(
    "Bob's receipt stored for Alice",
    () => bob2.profile.outbox().length === 1 && bob2.profile.outbox()[0]!.state === "stored",
  );
  await bob2.stop();

  // Alice's outbox empties on her next start, and her answer to the
  // receipt waits in Bob's mailbox, not in her outbox.
  const alice2 = await net.reopen("alice");
  const aliceSaw = countMessages(alice2);
  await alice2.fetchMailbox({ signal: AbortSignal.timeout(15_000) });
  await until("Alice's outbox empty", () => alice2.profile.outbox().length === 0);
  assert.equal(alice2.profile.message(sent.seq)?.state, "delivered");
  assert.equal(aliceSaw.count, 0, "a receipt is not a message");
  assert.deepEqual(
    alice2.profile.history(bobId).map((m) => m.text),
    ["while you were out"],
    "Alice's history shows no receipt",
  );
  await alice2.stop();

  // Bob's own receipt is acknowledged on his next start.
  const bob3 = await net.reopen("bob");
  const bobSaw = countMessages(bob3);
  await bob3.fetchMailbox({ signal: AbortSignal.timeout(15_000) });
  await until("Bob's outbox empty", () => bob3.profile.outbox().length === 0);
  assert.equal(bobSaw.count, 0, "an answer to a receipt is not a message");
  assert.deepEqual(bob3.profile.history(aliceId).map((m) => m.text), ["while you were out"]);
  assert.deepEqual(bob3.profile.incomingSince(0).map((m) => m.text), ["while you were out"]);
});

Deno.test("a receipt delivered directly is acknowledged at once and makes no receipt of its own", async () => {
  await using net = await testNet(2);
  const alice = await net.user("alice");
  const bob = await net.user("bob");
  await alice.addContact("bob", bob.id);
  await bob.addContact("alice", alice.id);
  await bob.stop();
  const sent = await alice.send("bob", "hello");
  await alice.waitFor(sent.seq, { orStored: true, signal: AbortSignal.timeout(15_000) });

  // Both online: Bob's receipt goes straight to Alice.
  const bob2 = await net.reopen("bob");
  await nextMessages(bob2, 1, 15_000);
  await alice.waitFor(sent.seq, { signal: AbortSignal.timeout(15_000) });
  await until(
    "both outboxes empty",
    () => alice.profile.outbox().length === 0 && bob2.profile.outbox().length === 0,
  );
  // Nothing bounces between them afterwards.
  await new Promise((r) => setTimeout(r, 1000));
  assert.equal(alice.profile.outbox().length, 0);
  assert.equal(bob2.profile.outbox().length, 0);
  assert.deepEqual(alice.profile.history("bob").map((m) => m.text), ["hello"]);
});
