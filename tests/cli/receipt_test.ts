import assert from "node:assert/strict";
import { dim, LOOPBACK, pairUsers, storageNode, tempDir } from "./_helpers.ts";

/** `dim status --json` of a home: its outbox counts. */
async function outbox(home: string): Promise<{ outbox: number; outboxStored: number }> {
  const run = await dim(home, ["status", "--json", "--listen", LOOPBACK]);
  assert.equal(run.code, 0, run.err);
  const { outbox, outboxStored } = JSON.parse(run.out);
  return { outbox, outboxStored };
}

Deno.test("receipts: with one-shot commands only, never online together, both outboxes end empty", async () => {
  await using r = await storageNode();
  await using tmp = await tempDir();
  const { alice, bob } = await pairUsers(tmp.path, r.address);

  // Bob is offline: Alice's message waits in his mailbox.
  const sent = await dim(alice, ["send", "bob", "while you were out", "--listen", LOOPBACK]);
  assert.equal(sent.code, 0, sent.err);
  assert.match(sent.out, /^⧗ bob is offline: the message is stored in the network/);
  assert.deepEqual(await outbox(alice), { outbox: 1, outboxStored: 1 });

  // Alice is offline: Bob reads it, and his receipt waits in her mailbox.
  const read = await dim(bob, ["inbox", "--json", "--listen", LOOPBACK]);
  assert.equal(read.code, 0, read.err);
  assert.deepEqual(
    JSON.parse(read.out).messages.map((m: { text: string }) => m.text),
    ["while you were out"],
  );
  assert.deepEqual(await outbox(bob), { outbox: 1, outboxStored: 1 }, "the receipt, stored");

  // Alice's next command empties her outbox; the receipt is not a message.
  const aliceInbox = await dim(alice, ["inbox", "--json", "--listen", LOOPBACK]);
  assert.equal(aliceInbox.code, 0, aliceInbox.err);
  assert.deepEqual(JSON.parse(aliceInbox.out).messages, []);
  assert.deepEqual(await outbox(alice), { outbox: 0, outboxStored: 0 });

  // Bob's next command empties his.
  const bobInbox = await dim(bob, ["inbox", "--json", "--listen", LOOPBACK]);
  assert.equal(bobInbox.code, 0, bobInbox.err);
  assert.deepEqual(JSON.parse(bobInbox.out).messages, []);
  assert.deepEqual(await outbox(bob), { outbox: 0, outboxStored: 0 });

  // Neither history shows a receipt.
  const history = await dim(bob, ["inbox", "--all", "--json", "--listen", LOOPBACK]);
  assert.deepEqual(
    JSON.parse(history.out).messages.map((m: { text: string }) => m.text),
    ["while you were out"],
  );
});
