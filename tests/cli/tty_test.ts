/**
 * End to end under a pseudo-terminal: two real `dim chat` processes, each
 * in its own tmux session (on a private tmux socket), talk through a storage node
 * on 127.0.0.1. A line typed on one appears on the other within 2 s without
 * breaking the line being typed there, the sender sees "✓ delivered", and
 * `/quit` exits 0.
 */
import assert from "node:assert/strict";
import { dim, initUser, LOOPBACK, net, storageNode, tempDir } from "./_helpers.ts";
import { dimCommand, HAVE_TMUX, Tmux } from "./_tmux.ts";

Deno.test({
  name: "two dim chat processes under a terminal: live delivery, typed line kept, /quit exits 0",
  ignore: !HAVE_TMUX,
  fn: async () => {
    await using r = await storageNode();
    await using tmp = await tempDir();
    const alice = `${tmp.path}/alice`;
    const bob = `${tmp.path}/bob`;
    await initUser(alice, "Alice", net(r.address));
    await initUser(bob, "Bob", net(r.address));
    const id = async (home: string) => JSON.parse((await dim(home, ["id", "--json"])).out).id;
    const [aliceId, bobId] = [await id(alice), await id(bob)];
    assert.equal(
      (await dim(alice, ["contact", "add", "bob", bobId, "--listen", LOOPBACK])).code,
      0,
    );
    assert.equal(
      (await dim(bob, ["contact", "add", "alice", aliceId, "--listen", LOOPBACK])).code,
      0,
    );

    await using tmux = new Tmux();
    await tmux.start("alice", dimCommand(alice, ["chat", "bob"]));
    await tmux.start("bob", dimCommand(bob, ["chat", "alice"]));
    // Each chat prints its header once it is online with its card published.
    await tmux.waitFor("alice", /Chatting with bob \(Bob\)[^]*\n> *$/m, 20_000);
    await tmux.waitFor("bob", /Chatting with alice \(Alice\)[^]*\n> *$/m, 20_000);

    await tmux.type("bob", "half a thou");
    await tmux.waitFor("bob", /^> half a thou$/m, 2000);

    const typed = performance.now();
    await tmux.type("alice", "hello from alice", true);
    const bobScreen = await tmux.waitFor("bob", /alice \(unverified\): hello from alice/, 2000);
    const ms = performance.now() - typed;
    assert.ok(ms < 2000, `took ${ms} ms`);
    // The incoming line went above; Bob's half-typed line is intact on the input row.
    const lines = bobScreen.trimEnd().split("\n");
    assert.match(lines.at(-2)!, /alice \(unverified\): hello from alice$/);
    assert.equal(lines.at(-1), "> half a thou");
    await tmux.waitFor("alice", /you: hello from alice {2}✓ delivered/, 5000);

    await tmux.type("bob", "ght", true);
    await tmux.waitFor("alice", /bob \(unverified\): half a thought/, 2000);
    await tmux.waitFor("bob", /you: half a thought {2}✓ delivered/, 5000);

    await tmux.type("alice", "/quit", true);
    await tmux.type("bob", "/quit", true);
    await tmux.waitFor("alice", /^EXIT=0$/m, 10_000);
    await tmux.waitFor("bob", /^EXIT=0$/m, 10_000);
  },
});
