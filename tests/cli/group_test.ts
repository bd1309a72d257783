/**
 * `dim group`, `dim send @<group>` and `dim chat @<group>` against a
 * messenger opened on the other user's data directory.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  dim,
  initUser,
  LOOPBACK,
  net,
  openUser,
  pairUsers,
  startDim,
  storageNode,
  tempDir,
  until,
} from "./_helpers.ts";
import { startDaemon } from "../daemon/_helpers.ts";
import { nextMessages } from "../_support/network.ts";

Deno.test("dim group create, info, send @group, and chat @group with who wrote each line", async () => {
  await using r = await storageNode();
  await using tmp = await tempDir();
  const { alice, bob } = await pairUsers(tmp.path, r.address);
  const online = await openUser(bob, r.address);
  try {
    const made = await dim(alice, [
      "group",
      "create",
      "hikers",
      "bob",
      "--json",
      "--listen",
      LOOPBACK,
    ]);
    assert.equal(made.code, 0, made.err);
    const g = JSON.parse(made.out);
    assert.equal(g.name, "hikers");
    assert.equal(g.members.length, 2);
    await until(() => online.groups().length === 1, 15_000, "bob's group");
    const sent = await dim(alice, ["send", "@hikers", "hello", "group", "--listen", LOOPBACK]);
    assert.equal(sent.code, 0, sent.err);
    assert.match(sent.out, /queued for 1 members of hikers/);
    const [got] = await nextMessages(online, 1);
    assert.equal(got?.text, "hello group");
    assert.equal(got?.group?.name, "hikers");
    await online.sendGroup("hikers", "hi from bob");
    await new Promise((r) => setTimeout(r, 500));
    const info = await dim(alice, ["group", "info", "hikers", "--listen", LOOPBACK]);
    assert.equal(info.code, 0, info.err);
    assert.match(info.out, /^hikers {2}\([0-9a-f]{32}\) {2}\[admin\]/);
    assert.match(info.out, /bob {2}\(contact\)/);
    const list = await dim(alice, ["group", "list", "--listen", LOOPBACK]);
    assert.match(list.out, /hikers {2}[0-9a-f]{32} {2}2 members/);
    // Bob's message waits in Alice's mailbox until one of her runs fetches it.
    const end = Date.now() + 30_000;
    for (;;) {
      const shown = await dim(alice, ["chat", "@hikers", "--listen", LOOPBACK]);
      if (shown.out.includes("bob: hi from bob")) break;
      assert.ok(Date.now() < end, `bob's message never reached alice: ${shown.out} ${shown.err}`);
      await new Promise((r) => setTimeout(r, 500));
    }
    // The chat shows the history, sends each input line, and ends with the input.
    const chat = await dim(alice, ["chat", "@hikers", "--listen", LOOPBACK], {
      lines: ["one more"],
    });
    assert.equal(chat.code, 0, chat.err);
    assert.match(chat.out, /you: hello group {2}\(delivered to 1 of 1\)/);
    assert.match(chat.out, /bob: hi from bob/);
    assert.match(chat.out, /you: one more/);
    const [more] = await nextMessages(online, 1);
    assert.equal(more?.text, "one more");
  } finally {
    await online.stop();
  }
});

Deno.test("with a dim daemon running, dim group, send @group and chat @group go through it", async () => {
  await using r = await storageNode();
  await using tmp = await tempDir();
  const { alice, bob } = await pairUsers(tmp.path, r.address);
  const online = await openUser(bob, r.address);
  const daemon = await startDaemon(alice);
  try {
    const made = await dim(alice, ["group", "create", "runners", "bob", "--json"]);
    assert.equal(made.code, 0, made.err);
    assert.equal(JSON.parse(made.out).members.length, 2);
    await until(() => online.groups().length === 1, 15_000, "bob's group");
    const list = await dim(alice, ["group", "list"]);
    assert.equal(list.code, 0, list.err);
    assert.match(list.out, /runners {2}[0-9a-f]{32} {2}2 members/);
    const sent = await dim(alice, ["send", "@runners", "through", "the", "daemon"]);
    assert.equal(sent.code, 0, sent.err);
    assert.equal((await nextMessages(online, 1))[0]?.text, "through the daemon");
    // The chat attaches to the daemon: history, a line sent, a line received.
    const chat = startDim(alice, ["chat", "@runners"], {
      lines: ["and the chat"],
      endInput: false,
    });
    await until(() => /you: through the daemon/.test(chat.io.out), 10_000, "the history");
    const [got] = await nextMessages(online, 1);
    assert.equal(got?.text, "and the chat");
    await online.sendGroup("runners", "bob here");
    await until(() => /bob: bob here/.test(chat.io.out), 15_000, "bob's line in the chat");
    chat.io.pushLine(undefined);
    assert.equal((await chat.done).code, 0);
  } finally {
    assert.equal((await daemon.stop()).code, 0);
    await online.stop();
  }
});

Deno.test("dim group verify shows a member's safety number and --confirm marks a member who is not a contact verified", async () => {
  await using r = await storageNode();
  await using tmp = await tempDir();
  const { alice, bob } = await pairUsers(tmp.path, r.address);
  await initUser(`${tmp.path}/carol`, "Carol", net(r.address));
  const bobOnline = await openUser(bob, r.address);
  const carol = await openUser(`${tmp.path}/carol`, r.address);
  try {
    await bobOnline.addContact("carol", carol.id);
    await bobOnline.createGroup("climbers", ["alice", "carol"]);
    await until(() => carol.groups().length === 1, 15_000, "carol's group");
    // Alice (offline until each command) gets the group from her mailbox.
    const end = Date.now() + 30_000;
    for (;;) {
      const info = await dim(alice, ["group", "info", "climbers", "--listen", LOOPBACK]);
      if (info.code === 0) break;
      assert.ok(Date.now() < end, `the group never reached alice: ${info.err}`);
      await new Promise((r) => setTimeout(r, 500));
    }
    const aliceId = JSON.parse((await dim(alice, ["id", "--json"])).out).id;
    const shown = await dim(alice, ["group", "verify", "climbers", carol.id, "--listen", LOOPBACK]);
    assert.equal(shown.code, 0, shown.err);
    assert.match(shown.out, /group member, not a contact/);
    const theirs = await carol.groupChats.safetyNumber("climbers", aliceId);
    assert.ok(shown.out.includes(theirs.split(" ").slice(0, 4).join(" ")), shown.out);
    const asJson = await dim(alice, ["group", "verify", "climbers", carol.id, "--json"]);
    assert.equal(JSON.parse(asJson.out).safetyNumber, theirs);
    assert.equal(JSON.parse(asJson.out).verified, false);
    const confirmed = await dim(alice, [
      "group",
      "verify",
      "climbers",
      carol.id,
      "--confirm",
      "--listen",
      LOOPBACK,
    ]);
    assert.equal(confirmed.code, 0, confirmed.err);
    assert.match(confirmed.out, /is verified/);
    const info = await dim(alice, ["group", "info", "climbers", "--listen", LOOPBACK]);
    assert.match(info.out, /\(group member, not a contact, verified\)/);
    // --confirm goes with verify only.
    assert.equal((await dim(alice, ["group", "list", "--confirm"])).code, 2);
  } finally {
    await carol.stop();
    await bobOnline.stop();
  }
});
