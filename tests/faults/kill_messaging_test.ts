/**
 * `kill -9` the sender while it sends and the receiver while it receives,
 * round after round, each user a separate `deno` process: in the end every
 * message is delivered, in the recipient's history exactly once, and the
 * sender's outbox is empty.
 */
import assert from "node:assert/strict";
import { unlockKeystore } from "../../lib/crypto/keystore.ts";
import { HistoryBox } from "../../lib/crypto/secret_box.ts";
import { createMessenger } from "../../lib/messenger/messenger.ts";
import { createProfile } from "../../lib/profile/profile.ts";
import { createStorageNode } from "../../lib/storage_node.ts";
import { UserStore } from "../../lib/store/user_store.ts";
import { figure, LOOPBACK, Random, size, sleep } from "../hostile/_support.ts";
import { Child } from "./_child.ts";

const ROUNDS = size(3, 20);
const COUNT = size(60, 300);

Deno.test({
  name: "kill -9 of sender and receiver mid-flight: every message delivered exactly once",
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "dim-kill-" });
    const node = await createStorageNode({ listen: LOOPBACK });
    const children = new Set<Child>();
    try {
      const bootstrap = node.addresses[0]!;
      // Both identities exist, and each has the other as a contact.
      const make = async (name: string) =>
        await createMessenger(
          await createProfile({
            home: `${dir}/${name}`,
            passphrase: `${name}: plum vortex quietly sings`,
            displayName: name,
          }),
          { listen: LOOPBACK, bootstrap: [bootstrap] },
        );
      const alice = await make("alice");
      const bob = await make("bob");
      await alice.addContact("bob", bob.id);
      await bob.addContact("alice", alice.id);
      const [aliceId, bobId] = [alice.id, bob.id];
      await alice.stop();
      await bob.stop();

      const start = (name: "alice" | "bob") => {
        const role = name === "alice" ? ["--send", "bob", "--count", String(COUNT)] : ["--receive"];
        const child = new Child("tests/fixtures/messenger_peer.ts", [
          "--home",
          `${dir}/${name}`,
          "--passphrase",
          `${name}: plum vortex quietly sings`,
          "--bootstrap",
          bootstrap,
          ...role,
        ]);
        children.add(child);
        return child;
      };
      const rnd = new Random();
      let sender = start("alice");
      let receiver = start("bob");
      let kills = 0;
      const started = performance.now();
      for (let round = 0; round < ROUNDS; round++) {
        await Promise.all([
          sender.waitFor("ready", (l) => l.ready === true, 60_000),
          receiver.waitFor("ready", (l) => l.ready === true, 60_000),
        ]);
        await sleep(200 + rnd.int(1500));
        const which = rnd.int(3); // 0: sender, 1: receiver, 2: both
        if (which !== 1) {
          await sender.kill();
          children.delete(sender);
          kills++;
        }
        if (which !== 0) {
          await receiver.kill();
          children.delete(receiver);
          kills++;
        }
        await sleep(rnd.int(500));
        if (which !== 1) sender = start("alice");
        if (which !== 0) receiver = start("bob");
      }
      // The last runs go on undisturbed until everything is acknowledged.
      await sender.waitFor("all delivered", (l) => l.done === true, 90_000);
      const seconds = (performance.now() - started) / 1000;
      await Promise.all([...children].map((c) => c.stop()));
      children.clear();

      using sent = UserStore.open(`${dir}/alice/dim.db`);
      using got = UserStore.open(`${dir}/bob/dim.db`);
      // Message bodies are sealed at rest with a key of each identity.
      for (const [db, name] of [[sent, "alice"], [got, "bob"]] as const) {
        const identity = await unlockKeystore(
          `${dir}/${name}/identity.key`,
          `${name}: plum vortex quietly sings`,
        );
        db.messages.useKey(HistoryBox.forIdentity(identity));
      }
      const outgoing = sent.messages.history(bobId, { limit: 1_000_000 });
      const incoming = got.messages.history(aliceId, { limit: 1_000_000 });
      const text = (b: Uint8Array) => new TextDecoder().decode(b);
      const counts = new Map<string, number>();
      for (const m of incoming) counts.set(text(m.body), (counts.get(text(m.body)) ?? 0) + 1);
      const expected = Array.from({ length: COUNT }, (_, i) => `n${i + 1}`);
      const lost = expected.filter((t) => !counts.has(t));
      const duplicated = [...counts].filter(([, n]) => n > 1).map(([t]) => t);
      figure("kill-messaging", {
        seed: rnd.seed,
        rounds: ROUNDS,
        kills,
        messages: COUNT,
        lost: lost.length,
        duplicated: duplicated.length,
        outboxLeft: sent.outbox.list().length,
        seconds: seconds.toFixed(0),
      });
      assert.deepEqual(lost, [], "lost messages");
      assert.deepEqual(duplicated, [], "duplicated messages");
      assert.equal(incoming.length, COUNT);
      assert.deepEqual(sent.outbox.list(), [], "the sender's outbox is empty");
      assert.equal(outgoing.length, COUNT, "each message was sent once");
      assert.ok(outgoing.every((m) => m.state === "delivered"), "and acknowledged");
    } finally {
      await Promise.all([...children].map((c) => c.kill()));
      await node.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
