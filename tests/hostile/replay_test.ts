/**
 * Replayed envelopes, sent straight to the recipient and stored again in
 * its mailboxes, before and after the recipient restarts, are never shown
 * twice; and every message says whether its sender is a contact and
 * whether that contact is verified.
 */
import assert from "node:assert/strict";
import { mailboxAddress } from "../../lib/messaging/mailbox.ts";
import {
  encodeFrame,
  FrameType,
  MAILBOX_PROTOCOL,
  MESSAGE_PROTOCOL,
} from "../../lib/messaging/wire.ts";
import type { Messenger } from "../../lib/messenger/messenger.ts";
import { UserStore } from "../../lib/store/user_store.ts";
import { FAST_MESSAGING, nextMessages, testNet } from "../_support/network.ts";
import { attackerNode, figure, rawExchange, sleep } from "./_support.ts";

const REPLAYS = 5;

Deno.test("a replayed envelope is shown once, before and after the recipient restarts", async () => {
  await using net = await testNet(2);
  const alice = await net.user("alice", {
    messaging: { ...FAST_MESSAGING, retryBaseMs: 60_000, retryMaxMs: 120_000 },
  });
  const bob = await net.user("bob");
  await alice.addContact("bob", bob.id);
  await bob.stop();
  const sent = await alice.send("bob", "only once");
  await alice.waitFor(sent.seq, { orStored: true, signal: AbortSignal.timeout(10_000) });
  // What an eavesdropper on the wire or a mailbox node holds: the sealed envelope.
  let envelope: Uint8Array;
  {
    using db = UserStore.open(`${net.dir}/alice/dim.db`);
    envelope = db.outbox.list()[0]!.envelope;
  }
  const mailbox = await mailboxAddress(bob.profile.publicIdentity.signingPublicKey);
  const attacker = await attackerNode(net.bootstrap());
  const shown: string[] = [];
  const replayAt = async (m: Messenger) => {
    const outcomes: string[] = [];
    for (let i = 0; i < REPLAYS; i++) {
      outcomes.push(
        (await rawExchange(
          attacker,
          m.addresses[0]!,
          MESSAGE_PROTOCOL,
          encodeFrame({ type: FrameType.Envelope, envelope }),
        )).outcome,
      );
      for (const node of net.storageNodes) {
        await rawExchange(
          attacker,
          node.addresses[0]!,
          MAILBOX_PROTOCOL,
          encodeFrame({
            type: FrameType.Store,
            mailbox,
            expiresAt: Date.now() + 3600_000,
            envelope,
          }),
        );
      }
    }
    await m.fetchMailbox();
    await sleep(300);
    return outcomes;
  };
  try {
    const bob2 = await net.reopen("bob");
    bob2.addEventListener("message", (e) => shown.push((e as CustomEvent).detail.text));
    const [first] = await nextMessages(bob2, 1);
    assert.equal(first?.text, "only once");
    const before = await replayAt(bob2);
    assert.ok(before.every((o) => o === "answered"), "a replay is acknowledged again");
    await bob2.stop();

    const bob3 = await net.reopen("bob");
    bob3.addEventListener("message", (e) => shown.push((e as CustomEvent).detail.text));
    await bob3.fetchMailbox();
    const after = await replayAt(bob3);
    const history = bob3.profile.history(alice.id).filter((m) => m.text === "only once");
    figure("replay", {
      replaysDirect: 2 * REPLAYS,
      replaysViaMailbox: 2 * REPLAYS * net.storageNodes.length,
      shown: shown.length,
      inHistory: history.length,
    });
    assert.ok(after.every((o) => o === "answered"));
    assert.deepEqual(shown, ["only once"], "shown once in all");
    assert.equal(history.length, 1, "stored once");
    await alice.waitFor(sent.seq, { signal: AbortSignal.timeout(10_000) });
  } finally {
    await attacker.stop();
  }
});

Deno.test("messages say whether the sender is a contact, and whether verified", async () => {
  await using net = await testNet();
  const alice = await net.user("alice");
  const bob = await net.user("bob");
  const mallory = await net.user("mallory");
  await alice.addContact("bob", bob.id);
  await mallory.addContact("bob", bob.id);
  await alice.send("bob", "from a stranger");
  assert.deepEqual(
    (await nextMessages(bob, 1)).map((m) => [m.contact, m.verified, m.peer]),
    [[undefined, false, alice.id]],
  );
  await bob.addContact("alice", alice.id);
  await alice.send("bob", "from a contact");
  await mallory.send("bob", "from another stranger");
  const two = await nextMessages(bob, 2);
  const byText = Object.fromEntries(two.map((m) => [m.text, [m.contact, m.verified]]));
  assert.deepEqual(byText["from a contact"], ["alice", false]);
  assert.deepEqual(byText["from another stranger"], [undefined, false]);
  bob.profile.verifyContact("alice");
  await alice.send("bob", "from a verified contact");
  const [verified] = await nextMessages(bob, 1);
  assert.deepEqual([verified?.contact, verified?.verified], ["alice", true]);
});
