// Carrier-grade NAT behind a home router, and a NAT with random port
// mapping: users there are still reachable through relays, live.
import assert from "node:assert/strict";
import { chat, duplicates, introduce, Scenario, waitCardRelayed, waitRelayed } from "./_driver.ts";
import { skipUnlessLab } from "./_lab.ts";

const ignore = await skipUnlessLab();

Deno.test({
  name: "reach: users behind double NAT and behind random port mapping are reached through relays",
  ignore,
  async fn() {
    await using s = await Scenario.create(2);
    const carrier = await s.lab.router("cgn", { lanNet: "100.64" });
    const home = await s.lab.router("home", { behind: carrier });
    const random = await s.lab.router("rnd", { randomPorts: true });
    const alice = await s.user(await s.lab.publicHost("alice"), "alice");
    const bob = await s.user(await s.lab.hostBehind(home, "bob"), "bob");
    const carol = await s.user(await s.lab.hostBehind(random, "carol"), "carol");
    await Promise.all([waitRelayed(bob), waitRelayed(carol)]);
    await waitCardRelayed(alice, bob);
    await waitCardRelayed(alice, carol);
    await introduce(alice, "alice", bob, "bob");
    await introduce(alice, "alice", carol, "carol");
    await introduce(bob, "bob", carol, "carol");

    const pairs = [
      [alice, bob, "bob"],
      [alice, carol, "carol"],
      [carol, bob, "bob"],
      [bob, carol, "carol"],
    ] as const;
    for (const [from, to, name] of pairs) {
      await chat(from, to, name, 1, `warm-up ${from.name}→${to.name}`);
    }
    const figures: string[] = [];
    for (const [from, to, name] of pairs) {
      const r = await chat(from, to, name, 10, `${from.name}→${to.name}`);
      figures.push(`${from.name}→${to.name} ${r.p50.toFixed(0)} ms`);
      assert.ok(r.p50 <= 2000, `${from.name}→${to.name} p50 ${r.p50} ms`);
    }
    console.log(`double NAT (bob), random ports (carol): send→display p50 ${figures.join(", ")}`);
    for (const p of [alice, bob, carol]) {
      assert.deepEqual(duplicates(p), [], `${p.name}: duplicates`);
      const viaMailbox = p.messages().filter((m) => m.via !== "direct").map((m) => m.text);
      assert.deepEqual(viaMailbox, [], `${p.name}: live, not via the mailbox`);
    }
  },
});
