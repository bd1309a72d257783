// Whole-network behaviour with 20 real nodes on 127.0.0.1.
import assert from "node:assert/strict";
import type { Messenger } from "../../lib/messenger/messenger.ts";
import { nextMessages, testNet } from "../_support/network.ts";

const USERS = 16;
const STORAGE_NODES = 4;

async function resolveAll(from: Messenger, ids: readonly string[]): Promise<string[]> {
  const failed: string[] = [];
  for (const id of ids) {
    try {
      const card = await from.resolveCard(id, { fresh: true, signal: AbortSignal.timeout(10_000) });
      if (card.id !== id) failed.push(id);
    } catch {
      failed.push(id);
    }
  }
  return failed;
}

Deno.test({
  name: "20 nodes: every card resolves from other nodes, a message arrives once, and 30% can leave",
  async fn(t) {
    await using net = await testNet(STORAGE_NODES);
    const users: Messenger[] = [];
    // Default mailbox polling: sixteen users polling every second would measure the poll.
    const slow = { messaging: { mailboxPollMs: 30_000 } };
    for (let i = 0; i < USERS; i++) users.push(await net.user(`u${i}`, slow));
    const ids = users.map((u) => u.id);

    await t.step("each node resolves the cards of five others, covering every card", async () => {
      const failures = await Promise.all(
        users.map((u, i) => resolveAll(u, [1, 2, 3, 4, 5].map((k) => ids[(i + k) % USERS]!))),
      );
      assert.deepEqual(failures.flat(), []);
    });

    await t.step("A → B direct message is delivered exactly once with an ack", async () => {
      const [a, b] = [users[0]!, users[USERS - 1]!];
      await a.addContact("b", b.id);
      const sent = await a.send("b", "across the network");
      const [got] = await nextMessages(b, 1);
      assert.equal(got?.text, "across the network");
      assert.equal(
        (await a.waitFor(sent.seq, { signal: AbortSignal.timeout(5000) })).state,
        "delivered",
      );
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(b.profile.history(a.id).length, 1);
    });

    await t.step("after 30% of the nodes stop, every published card still resolves", async () => {
      // 6 of 20: two storage nodes and four users (their cards must survive them).
      const leaving = [...users.slice(1, 5)];
      for (const u of leaving) await u.stop();
      for (const r of net.storageNodes.slice(2)) await r.stop();
      const survivor = users[USERS - 1]!;
      assert.deepEqual(await resolveAll(survivor, ids), []);
    });
  },
});
