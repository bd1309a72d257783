/**
 * Churn: while nodes leave and join continuously, two users chat both ways.
 * No message is lost or duplicated, and both users' cards stay resolvable
 * from nodes that just joined.
 */
import assert from "node:assert/strict";
import { recordKey } from "../../lib/record/record.ts";
import { createStorageNode, type StorageNode } from "../../lib/storage_node.ts";
import { FAST_MESSAGING, testNet } from "../_support/network.ts";
import { figure, LOOPBACK, Random, size, sleep, until } from "../hostile/_support.ts";

const SECONDS = size(15, 60);
/** Nodes in all: the stable storage nodes, two users, and the ones that come and go. */
const NODES = size(8, 20);
const STABLE = size(2, 3);

Deno.test({
  name: "churn: nodes leave and join while two users chat; nothing lost or duplicated",
  async fn() {
    await using net = await testNet(STABLE);
    const slow = { messaging: { ...FAST_MESSAGING, mailboxPollMs: 1000 } };
    const alice = await net.user("alice", slow);
    const bob = await net.user("bob", slow);
    await alice.addContact("bob", bob.id);
    await bob.addContact("alice", alice.id);
    const rnd = new Random();
    const churners: StorageNode[] = [];
    const join = async () => {
      const live = [...net.storageNodes, ...churners];
      churners.push(
        await createStorageNode({ listen: LOOPBACK, bootstrap: [rnd.pick(live).addresses[0]!] }),
      );
    };
    try {
      for (let i = 0; i < NODES - STABLE - 2; i++) await join();
      let running = true;
      let joins = 0;
      let leaves = 0;
      const cards = { tried: 0, resolved: 0 };
      const churn = (async () => {
        while (running) {
          await sleep(300 + rnd.int(700));
          const leaving = churners.splice(rnd.int(churners.length), 1)[0];
          if (leaving !== undefined) {
            await leaving.stop();
            leaves++;
          }
          await join();
          joins++;
          // A node that just joined finds both cards.
          const newest = churners[churners.length - 1]!;
          for (const id of [alice.id, bob.id]) {
            cards.tried++;
            const found = await newest.node.get(recordKey("card", id), {
              signal: AbortSignal.timeout(10_000),
            }).catch(() => undefined);
            if (found !== undefined) cards.resolved++;
          }
        }
      })();
      const sent = { alice: [] as string[], bob: [] as string[] };
      const chat = (async () => {
        for (let i = 0; running && i < 100_000; i++) {
          sent.alice.push(`a${i}`);
          await alice.send("bob", `a${i}`);
          sent.bob.push(`b${i}`);
          await bob.send("alice", `b${i}`);
          await sleep(300);
        }
      })();
      await sleep(SECONDS * 1000);
      running = false;
      await Promise.all([churn, chat]);
      await until(
        "both outboxes empty",
        () => alice.profile.outbox().length === 0 && bob.profile.outbox().length === 0,
        60_000,
      );
      await sleep(500);
      const texts = (m: typeof alice, peer: string) =>
        m.profile.history(peer, { limit: 1_000_000 }).filter((x) => x.direction === "in").map((x) =>
          x.text
        );
      const atBob = texts(bob, alice.id);
      const atAlice = texts(alice, bob.id);
      const lost = [
        ...sent.alice.filter((t) => !atBob.includes(t)),
        ...sent.bob.filter((t) => !atAlice.includes(t)),
      ];
      const duplicated = [...atBob, ...atAlice].length - new Set([...atBob, ...atAlice]).size;
      figure("churn", {
        seed: rnd.seed,
        seconds: SECONDS,
        nodes: NODES,
        joins,
        leaves,
        messages: sent.alice.length + sent.bob.length,
        lost: lost.length,
        duplicated,
        cardLookups: cards.tried,
        cardsResolved: cards.resolved,
      });
      assert.deepEqual(lost, []);
      assert.equal(duplicated, 0);
      assert.deepEqual(atBob, sent.alice, "Bob got Alice's messages in order");
      assert.deepEqual(atAlice, sent.bob, "Alice got Bob's messages in order");
      assert.equal(cards.resolved, cards.tried, "every card lookup from a new node succeeded");
      assert.ok(joins >= SECONDS / 2, `only ${joins} joins`);
    } finally {
      for (const r of churners) await r.stop();
    }
  },
});
