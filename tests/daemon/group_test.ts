/**
 * The daemon's group methods through the typed client: a group made over
 * the API, a message each way (the incoming one as a `message`
 * notification with its `group`), history, info, a member verified, bad
 * params, leaving.
 */
import assert from "node:assert/strict";
import {
  connectDaemon,
  createMessenger,
  DaemonError,
  DaemonErrorCode,
  type DaemonNotification,
  openProfile,
} from "../../mod.ts";
import { LOOPBACK, pairUsers, PASSPHRASE, storageNode, tempDir, until } from "../cli/_helpers.ts";
import { startDaemon } from "./_helpers.ts";

Deno.test("the daemon's group methods, from the typed client", async () => {
  await using tmp = await tempDir();
  await using node = await storageNode();
  const { alice, bob } = await pairUsers(tmp.path, node.address);
  const daemon = await startDaemon(alice);
  try {
    await using bobM = await createMessenger(
      await openProfile({ home: bob, passphrase: PASSPHRASE }),
      { listen: [LOOPBACK], bootstrap: [node.address] },
    );
    const bobGot = bobM.messages()[Symbol.asyncIterator]();
    await using client = await connectDaemon(alice);
    const events = client.subscribe();
    await events.ready;
    const seen: DaemonNotification[] = [];
    const collecting = (async () => {
      for await (const n of events) seen.push(n);
    })();

    const group = await client.createGroup("friends", ["bob"]);
    assert.equal(group.name, "friends");
    assert.equal(group.admin, true);
    assert.deepEqual(group.members.map((m) => m.label).sort(), ["contact", "you"]);
    assert.deepEqual((await client.listGroups()).map((g) => g.id), [group.id]);
    assert.equal((await client.groupInfo("friends")).id, group.id);
    assert.equal((await client.groupInfo(group.id.slice(0, 8))).name, "friends");

    const sent = await client.sendGroup("friends", "hello group");
    assert.equal(sent.members, 1);
    assert.equal(sent.offline, false);
    assert.equal(sent.message.group?.id, group.id);
    assert.equal(sent.message.text, "hello group");
    const got = await bobGot.next();
    assert.equal(got.value?.text, "hello group");
    assert.equal(got.value?.group?.id, group.id);

    await until(() => bobM.groups().length === 1, 10_000, "bob to join");
    await bobM.groupChats.settled();
    await bobM.sendGroup(group.id, "hi from bob");
    await until(
      () => seen.some((n) => n.method === "message" && n.params.text === "hi from bob"),
      15_000,
      "the group message notification",
    );
    const note = seen.find((n) => n.method === "message" && n.params.text === "hi from bob")!;
    const m = note.params as { group?: { id: string; name: string }; peer: string };
    assert.deepEqual(m.group, { id: group.id, name: "friends" });
    assert.equal(m.peer, bobM.id);

    const history = await client.groupHistory("friends", { limit: 10 });
    assert.deepEqual(history.map((x) => x.text), ["hello group", "hi from bob"]);
    let deliveredTo: number | undefined;
    for (let i = 0; i < 150 && deliveredTo !== 1; i++) {
      deliveredTo = (await client.groupHistory("friends")).at(0)?.group?.deliveredTo;
      if (deliveredTo !== 1) await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(deliveredTo, 1, "the delivery count");

    await assert.rejects(
      client.createGroup("nobody", []),
      (e) => e instanceof DaemonError && e.code === DaemonErrorCode.InvalidParams,
    );
    await assert.rejects(
      client.createGroup("strangers", ["carol"]),
      (e) => e instanceof DaemonError && e.code === DaemonErrorCode.UnknownContact,
    );
    await assert.rejects(
      client.groupInfo("no such group"),
      (e) => e instanceof DaemonError && e.code === DaemonErrorCode.Failed,
    );
    await assert.rejects(
      client.sendGroup("friends", "x".repeat(20_000)),
      (e) => e instanceof DaemonError && e.code === DaemonErrorCode.InvalidParams,
    );

    // A member's safety number, then confirmed (Bob is a contact: verified as one).
    const aliceId = group.members.find((x) => x.self)!.id;
    const v = await client.verifyMember("friends", "bob");
    assert.equal(v.id, bobM.id);
    assert.equal(v.verified, false);
    assert.equal(v.safetyNumber, await bobM.groupChats.safetyNumber("friends", aliceId));
    assert.equal((await client.verifyMember("friends", bobM.id, { confirm: true })).verified, true);
    assert.equal(
      (await client.groupInfo("friends")).members.find((x) => x.id === bobM.id)?.verified,
      true,
    );
    await assert.rejects(
      client.verifyMember("friends", "nobody"),
      (e) => e instanceof DaemonError && e.code === DaemonErrorCode.Failed,
    );

    assert.deepEqual(await client.leaveGroup("friends"), { left: true });
    assert.equal((await client.listGroups()).at(0)?.left, true);
    await until(
      () => bobM.group(group.id).members.length === 1,
      15_000,
      "bob to see alice leave",
    );
    await client.close();
    await collecting;
  } finally {
    const run = await daemon.stop();
    assert.equal(run.code, 0, run.err);
  }
});
