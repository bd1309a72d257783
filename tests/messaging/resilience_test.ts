/**
 * No node is special (issue 15, part 4): a network of 20 storage nodes, all
 * joined through the first, keeps working after that first bootstrap node
 * and then three random others stop. Cards published before resolve, a
 * direct message arrives, and a message left for an offline user reaches
 * them through the mailbox after they come back, although one of the
 * nodes that held its copy was among the stopped ones: the sender's
 * mailbox check stored it again on the nodes now closest.
 *
 * The three are drawn with a seeded generator (`DIM_FUZZ_SEED` repeats a
 * run), one of them among the copy's holders.
 */
import assert from "node:assert/strict";
import { mailboxAddress } from "../../lib/messaging/mailbox.ts";
import type { MessagingOptions } from "../../lib/messaging/types.ts";
import type { StorageNode } from "../../lib/storage_node.ts";
import { FAST_MESSAGING, nextMessages, testNet } from "../_support/network.ts";
import { figure, Random, until } from "../hostile/_support.ts";
import { copiesOn, holdersOf, testIdentity } from "./_mailbox_probe.ts";

const NODES = 20;
const REPLICAS = 3;
/** Fast retries, and a mailbox check twice a second instead of every 10 minutes. */
const MESSAGING: MessagingOptions = {
  ...FAST_MESSAGING,
  mailboxRecheckMs: 500,
  mailboxReplicas: REPLICAS,
};

Deno.test({
  name:
    "20 nodes: after the first bootstrap node and three random others stop, cards resolve, a message arrives directly and one through the mailbox",
  async fn(t) {
    const started = performance.now();
    const rnd = new Random();
    await using net = await testNet(NODES);
    // Everyone joins through the first node only.
    const bootstrap = [net.storageNodes[0]!.addresses[0]!];
    const user = (name: string, messaging = MESSAGING) => net.user(name, { bootstrap, messaging });
    // Alice retries directly only after a minute: her message to Carol has
    // to go through the mailbox.
    const alice = await user("alice", { ...MESSAGING, retryBaseMs: 60_000, retryMaxMs: 120_000 });
    const bob = await user("bob");
    const carol = await user("carol");
    const dave = await user("dave");
    const users = [alice, bob, carol, dave];
    const ids = users.map((u) => u.id);
    const built = performance.now();

    await alice.addContact("carol", carol.id);
    const mailbox = await mailboxAddress(carol.profile.publicIdentity.signingPublicKey);
    const carolKey = await testIdentity(net.dir, "carol");
    await carol.stop();
    const sent = await alice.send("carol", "kept by the network");
    await alice.waitFor(sent.seq, { orStored: true, signal: AbortSignal.timeout(10_000) });
    const holders = await holdersOf(alice.node, net.storageNodes, carolKey);
    assert.ok(holders.length > 0, "the copy is on storage nodes");

    const [first, ...others] = net.storageNodes as [StorageNode, ...StorageNode[]];
    const stopped = [first, ...pickThree(rnd, others, holders)];
    for (const node of stopped) await node.stop();
    const live = net.storageNodes.filter((n) => !stopped.includes(n));
    const stoppedHolders = holders.filter((h) => stopped.includes(h)).length;
    assert.ok(stoppedHolders > 0, "a holder of the copy is among the stopped");

    await t.step("cards published before the stops resolve, also for a new contact", async () => {
      const added = await dave.addContact("carol", carol.id, {
        signal: AbortSignal.timeout(10_000),
      });
      assert.equal(added.id, carol.id);
      for (const id of ids) {
        const card = await bob.resolveCard(id, {
          fresh: true,
          signal: AbortSignal.timeout(10_000),
        });
        assert.equal(card.id, id);
      }
    });

    await t.step("a direct message is delivered with its acknowledgement", async () => {
      await bob.addContact("dave", dave.id, { signal: AbortSignal.timeout(10_000) });
      const direct = await bob.send("dave", "after the stops");
      const [got] = await nextMessages(dave, 1);
      assert.equal(got?.text, "after the stops");
      assert.equal(got?.via, "direct");
      const done = await bob.waitFor(direct.seq, { signal: AbortSignal.timeout(10_000) });
      assert.equal(done.state, "delivered");
    });

    let repairedIn = 0;
    await t.step("the sender's check stores the copy on every node now closest", async () => {
      const since = performance.now();
      await until("the closest nodes hold the copy", async () => {
        const closest = (await alice.node.getClosestPeers(mailbox, {
          includeSelf: true,
          signal: AbortSignal.timeout(5000),
        })).slice(0, REPLICAS).filter((p) => p.peerId !== alice.node.peerId);
        if (closest.length === 0) return false;
        const copies = await Promise.all(closest.map((p) => copiesOn(alice.node, p, carolKey)));
        return copies.every((n) => n > 0);
      }, 20_000);
      repairedIn = Math.round(performance.now() - since);
    });
    const newHolders = (await holdersOf(alice.node, live, carolKey))
      .filter((n) => !holders.includes(n)).length;

    await t.step(
      "the offline user, back after the sender left, gets it from the mailbox",
      async () => {
        await alice.stop();
        // Carol knows only the stopped bootstrap node: she joins through the
        // peers she remembers.
        const carol2 = await net.reopen("carol", { bootstrap, messaging: MESSAGING });
        const [got] = await nextMessages(carol2, 1, 20_000);
        assert.equal(got?.text, "kept by the network");
        assert.equal(got?.via, "mailbox");
      },
    );

    figure("no-node-is-special", {
      seed: rnd.seed,
      nodes: NODES,
      users: users.length,
      stopped: stopped.length,
      holders: holders.length,
      stoppedHolders,
      newHolders,
      repairMs: repairedIn,
      buildMs: Math.round(built - started),
      totalMs: Math.round(performance.now() - started),
    });
  },
});

/** Three of `nodes` at random, at least one of them among `holders` (unless none is). */
function pickThree(
  rnd: Random,
  nodes: readonly StorageNode[],
  holders: readonly StorageNode[],
): StorageNode[] {
  const pool = [...nodes];
  const take = (from: readonly StorageNode[]) => {
    const node = rnd.pick(from);
    pool.splice(pool.indexOf(node), 1);
    return node;
  };
  const held = pool.filter((n) => holders.includes(n));
  const chosen = held.length > 0 ? [take(held)] : [];
  while (chosen.length < 3) chosen.push(take(pool));
  return chosen;
}
