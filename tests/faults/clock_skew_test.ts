/**
 * One user's clock is 10 minutes fast or slow (the records' stated
 * tolerance, CLOCK_SKEW_TOLERANCE_MS): cards and prekeys still validate both
 * ways, messages flow both ways directly and through mailboxes, and the
 * skewed user's signed mailbox DELETEs are still accepted.
 */
import assert from "node:assert/strict";
import { copiesOn, testIdentity } from "../messaging/_mailbox_probe.ts";
import { CLOCK_SKEW_TOLERANCE_MS } from "../../lib/record/record.ts";
import { FAST_MESSAGING, nextMessages, testNet } from "../_support/network.ts";
import { attackerNode, figure, sleep } from "../hostile/_support.ts";

for (const skew of [CLOCK_SKEW_TOLERANCE_MS, -CLOCK_SKEW_TOLERANCE_MS]) {
  const label = `${skew > 0 ? "+" : "-"}${Math.abs(skew) / 60_000} min`;
  Deno.test(`a clock ${label} off: cards, prekeys, messages and mailboxes still work`, async () => {
    await using net = await testNet();
    const clock = () => Date.now() + skew;
    const opts = { clock, messaging: { ...FAST_MESSAGING, clock } };
    const alice = await net.user("alice", opts);
    // Bob retries rarely, so his offline message has to go through the mailboxes.
    const bob = await net.user("bob", {
      messaging: { ...FAST_MESSAGING, retryBaseMs: 60_000, retryMaxMs: 120_000 },
    });
    await alice.addContact("bob", bob.id);
    await bob.addContact("alice", alice.id);
    // Both ways, directly; the first messages start sessions from the prekeys.
    await alice.send("bob", "from the skewed clock");
    const [atBob] = await nextMessages(bob, 1);
    await bob.send("alice", "to the skewed clock");
    const [atAlice] = await nextMessages(alice, 1);
    assert.equal(atBob?.protection, "ratchet");
    assert.equal(atAlice?.protection, "ratchet");

    // Through the mailbox, to the skewed user, who then deletes the copies.
    await alice.stop();
    const sent = await bob.send("alice", "while you were away");
    await bob.waitFor(sent.seq, { orStored: true, signal: AbortSignal.timeout(10_000) });
    const alice2 = await net.reopen("alice", opts);
    const [offline] = await nextMessages(alice2, 1, 15_000);
    assert.equal(offline?.via, "mailbox");
    await sleep(500);
    const attacker = await attackerNode(net.bootstrap());
    let left = -1;
    try {
      // A FETCH signed by Alice (with the right clock), which deletes nothing.
      const aliceKey = await testIdentity(net.dir, "alice");
      left = await copiesOn(attacker, net.storageNodes[0]!.addresses[0]!, aliceKey);
    } finally {
      await attacker.stop();
    }
    figure("clock-skew", {
      skewMinutes: skew / 60_000,
      direct: 2,
      viaMailbox: offline ? 1 : 0,
      mailboxCopiesLeft: left,
    });
    assert.equal(left, 0, "the skewed user's signed DELETE was accepted");
    assert.equal((await bob.resolveCard(alice.id, { fresh: true })).id, alice.id);
  });
}

Deno.test("a user whose clock was set back 10 minutes restarts: the new card still replaces the old", async () => {
  await using net = await testNet();
  const alice = await net.user("alice");
  const bob = await net.user("bob");
  const before = await bob.resolveCard(alice.id, { fresh: true });
  await alice.stop();
  const clock = () => Date.now() - CLOCK_SKEW_TOLERANCE_MS;
  const alice2 = await net.reopen("alice", { clock, messaging: { ...FAST_MESSAGING, clock } });
  const after = await bob.resolveCard(alice.id, { fresh: true });
  figure("clock-set-back", { oldSeq: before.seq, newSeq: after.seq });
  assert.ok(after.seq > before.seq, "a newer card");
  assert.deepEqual(after.addresses, alice2.addresses.filter((a) => !a.includes("/0.0.0.0/")));
});
