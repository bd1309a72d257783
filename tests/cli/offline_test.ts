/**
 * Nothing the user writes is lost: with no peer reachable, `dim send` queues
 * the message on this device (exit code 3, never "stored in the network"),
 * `dim status` shows it queued, and the next networked command that reaches
 * a peer sends it, once.
 */
import assert from "node:assert/strict";
import { EXIT_QUEUED } from "../../lib/cli/context.ts";
import {
  dim,
  LOOPBACK,
  net,
  openUser,
  pairUsers,
  startDim,
  storageNode,
  tempDir,
  until,
} from "./_helpers.ts";
import { nextMessages } from "../_support/network.ts";

/**
 * Alice's first message to Bob, delivered while both are online: Alice then
 * has a session with him.
 */
async function firstMessage(alice: string, bob: string, address: string): Promise<void> {
  const online = await openUser(bob, address);
  try {
    const sent = await dim(alice, ["send", "bob", "while online", ...net(address)]);
    assert.equal(sent.code, 0, sent.err);
    assert.equal((await nextMessages(online, 1))[0]?.text, "while online");
  } finally {
    await online.stop();
  }
}

/**
 * Alice and Bob, who added each other and have a session (Alice's first
 * message went through); then the only node Alice knows stops, and Bob is
 * not running: nobody answers her.
 */
async function pairedThenAlone(tmp: string): Promise<{ alice: string; bob: string }> {
  const first = await storageNode();
  const users = await pairUsers(tmp, first.address);
  await firstMessage(users.alice, users.bob, first.address);
  await first.stop();
  return users;
}

Deno.test("a message written with no network is queued (exit 3), shown queued, and sent once on the next start", async () => {
  await using tmp = await tempDir();
  const { alice, bob } = await pairedThenAlone(tmp.path);

  const queued = await dim(alice, ["send", "bob", "written offline", "--listen", LOOPBACK]);
  assert.equal(queued.code, EXIT_QUEUED, queued.err);
  assert.equal(EXIT_QUEUED, 3);
  assert.match(queued.out, /^⧗ queued: no peer answered, so DIM is offline\./);
  assert.match(queued.out, /goes the next time DIM connects/);
  assert.doesNotMatch(queued.out + queued.err, /stored in the network/);
  const json = await dim(alice, ["send", "bob", "--json", "--listen", LOOPBACK, "second"]);
  assert.equal(json.code, EXIT_QUEUED, json.err);
  assert.equal(JSON.parse(json.out).state, "queued");

  // Status still reports, the queue among it, then fails on the bootstrap node.
  const status = await dim(alice, ["status", "--json", "--listen", LOOPBACK]);
  assert.equal(status.code, 1);
  assert.match(status.err, /^error: cannot reach the bootstrap node /);
  const report = JSON.parse(status.out);
  assert.equal(report.outbox, 2);
  assert.equal(report.outboxStored, 0, "a copy on this device alone is not in the network");
  assert.equal(report.connections, 0);
  const text = await dim(alice, ["status", "--listen", LOOPBACK]);
  assert.match(text.out, /^Network: +offline/m);
  assert.match(text.out, /^Outbox: +2 waiting for acknowledgement \(2 queued on this device/m);

  // The network is back (another node), and Bob is online.
  await using second = await storageNode();
  const online = await openUser(bob, second.address);
  try {
    const back = await dim(alice, ["status", "--json", ...net(second.address)]);
    assert.equal(back.code, 0, back.err);
    assert.equal(JSON.parse(back.out).outbox, 0, "the queue went on start");
    const got = await nextMessages(online, 2);
    assert.deepEqual(got.map((m) => m.text), ["written offline", "second"]);
    const again = await dim(alice, ["status", "--json", ...net(second.address)]);
    assert.equal(JSON.parse(again.out).outbox, 0);
    await new Promise((r) => setTimeout(r, 500));
    const alices = online.profile.history("alice").map((m) => m.text);
    assert.deepEqual(alices, ["while online", "written offline", "second"], "each arrived once");
  } finally {
    await online.stop();
  }
});

Deno.test("inbox with no network shows the messages already here and says the mailbox was not checked", async () => {
  await using tmp = await tempDir();
  const { bob } = await pairedThenAlone(tmp.path);
  const shown = await dim(bob, ["inbox", "--all", "--listen", LOOPBACK]);
  assert.equal(shown.code, 0, shown.err);
  assert.match(
    shown.err,
    /offline: no peer answered, so your mailbox in the network was not checked/,
  );
  assert.match(shown.out, /while online/);
  const json = await dim(bob, ["inbox", "--all", "--json", "--listen", LOOPBACK]);
  assert.equal(json.code, 0, json.err);
  const report = JSON.parse(json.out);
  assert.equal(report.offline, true);
  assert.deepEqual(report.messages.map((m: { text: string }) => m.text), ["while online"]);
});

Deno.test("a first message written with no network waits unsealed, then goes with forward secrecy", async () => {
  await using tmp = await tempDir();
  const first = await storageNode();
  const { alice, bob } = await pairUsers(tmp.path, first.address);
  // Alice has no session with Bob, and nobody answers: his prekeys cannot be looked up.
  await first.stop();
  const queued = await dim(alice, [
    "send",
    "bob",
    "hello before any session",
    "--listen",
    LOOPBACK,
  ]);
  assert.equal(queued.code, EXIT_QUEUED, queued.err);
  assert.match(queued.out, /^⧗ queued: no peer answered/);
  const offline = await dim(alice, ["status", "--json", "--listen", LOOPBACK]);
  assert.equal(JSON.parse(offline.out).outbox, 1, "kept, not refused");

  // The network is back with Bob on it: the start seals it in a new session and sends it.
  await using second = await storageNode();
  const online = await openUser(bob, second.address);
  try {
    const back = await dim(alice, ["status", "--json", ...net(second.address)]);
    assert.equal(back.code, 0, back.err);
    assert.equal(JSON.parse(back.out).outbox, 0, "the queue went on start");
    const [got] = await nextMessages(online, 1);
    assert.equal(got?.text, "hello before any session");
    assert.equal(got?.protection, "ratchet", "never the static envelope for want of a lookup");
  } finally {
    await online.stop();
  }
});

Deno.test("chat with no network opens, shows history, queues what is typed and says it is offline", async () => {
  await using tmp = await tempDir();
  const { alice } = await pairedThenAlone(tmp.path);
  const earlier = await dim(alice, ["send", "bob", "from before", "--listen", LOOPBACK]);
  assert.equal(earlier.code, EXIT_QUEUED, earlier.err);

  const chat = startDim(alice, ["chat", "bob", "--listen", LOOPBACK], {
    terminal: { columns: 100, rows: 24 },
  });
  const io = chat.io;
  await until(() => io.out.includes("> "), 10_000, "the prompt");
  assert.match(io.out, /you: from before {2}⧗ queued on this device/);
  assert.match(io.out, /offline: no peer answered/);
  io.pushKeys("typed offline\r/quit\r");
  const done = await chat.done;
  assert.equal(done.code, 0, done.err);
  assert.match(io.out, /you: typed offline {2}⧗ queued on this device/);
  assert.match(io.out, /1 message queued on this device goes the next time DIM connects/);
  assert.doesNotMatch(io.out, /stored in the network/);
  const status = await dim(alice, ["status", "--json", "--listen", LOOPBACK]);
  assert.equal(JSON.parse(status.out).outbox, 2);
});
