/**
 * No node is special: once their bootstrap node stops, two users who chatted
 * before still find each other through the peers they remember (each
 * other's nodes, on the ports they had) and chat directly.
 */
import assert from "node:assert/strict";
import { dim, LOOPBACK, pairUsers, startDim, storageNode, tempDir, until } from "./_helpers.ts";

Deno.test("with the bootstrap node stopped, two users who met before still chat directly", async () => {
  await using tmp = await tempDir();
  const bootstrap = await storageNode();
  const { alice, bob } = await pairUsers(tmp.path, bootstrap.address);
  // They chat once while the bootstrap node runs: each node meets the other.
  const before = startDim(bob, ["chat", "alice", "--listen", LOOPBACK], { endInput: false });
  await until(() => before.io.err.includes("Chatting with alice"), 10_000, "Bob's chat");
  const hello = await dim(alice, ["send", "bob", "hello", "--listen", LOOPBACK]);
  assert.equal(hello.code, 0, hello.err);
  await until(() => /alice \(unverified\): hello/.test(before.io.out), 10_000, "hello");
  before.io.pushLine(undefined);
  assert.equal((await before.done).code, 0);

  await bootstrap.stop();
  // Bob opens his chat first: nobody he knows answers yet, so it opens offline.
  const bobChat = startDim(bob, ["chat", "alice", "--listen", LOOPBACK], { endInput: false });
  await until(() => bobChat.io.err.includes("Chatting with alice"), 10_000, "Bob's chat");
  // Alice's chat gets in through Bob's node, which she remembers.
  const aliceChat = startDim(alice, ["chat", "bob", "--listen", LOOPBACK], { endInput: false });
  try {
    await until(() => aliceChat.io.err.includes("Chatting with bob"), 10_000, "Alice's chat");
    assert.doesNotMatch(aliceChat.io.err, /cannot reach the bootstrap node/);
    aliceChat.io.pushLine("node is down");
    await until(() => /alice \(unverified\): node is down/.test(bobChat.io.out), 15_000, "to Bob");
    await until(() => /delivered: node is down/.test(aliceChat.io.out), 5_000, "Alice's ✓");
    bobChat.io.pushLine("still here");
    await until(() => /bob \(unverified\): still here/.test(aliceChat.io.out), 15_000, "to Alice");
    await until(() => /delivered: still here/.test(bobChat.io.out), 5_000, "Bob's ✓");
  } finally {
    aliceChat.io.pushLine(undefined);
    bobChat.io.pushLine(undefined);
    const [a, b] = await Promise.all([aliceChat.done, bobChat.done]);
    assert.equal(a.code, 0, a.err);
    assert.equal(b.code, 0, b.err);
  }
});
