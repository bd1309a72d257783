/**
 * One process owns the data directory: while `dim daemon` runs, `dim status`,
 * `inbox`, `send`, `send --file` and `contact add/verify/remove` go through
 * its socket with the output and exit codes they have alone; an incoming
 * file's progress reaches subscribers as `fileProgress` with direction `in`.
 */
import assert from "node:assert/strict";
import { connectDaemon } from "../../lib/daemon/client.ts";
import type { DaemonNotification } from "../../lib/daemon/protocol.ts";
import { startDaemon } from "../daemon/_helpers.ts";
import { dim, initUser, LOOPBACK, net, pairUsers, storageNode, tempDir } from "./_helpers.ts";

Deno.test("commands go through a running daemon, with the output they have alone", async () => {
  await using r = await storageNode();
  await using tmp = await tempDir();
  const { alice, bob } = await pairUsers(tmp.path, r.address);
  const carol = `${tmp.path}/carol`;
  const carolId = await initUser(carol, "Carol", net(r.address));

  let viaDaemon: string[] = [];
  const aliceDaemon = await startDaemon(alice);
  const bobDaemon = await startDaemon(bob);
  let bobClient;
  try {
    bobClient = await connectDaemon(bob);
    const seen: DaemonNotification[] = [];
    const subscription = bobClient.subscribe();
    (async () => {
      for await (const n of subscription) seen.push(n);
    })();
    await subscription.ready;

    const status = await dim(alice, ["status", "--json"]);
    assert.equal(status.code, 0, status.err);
    const report = JSON.parse(status.out);
    assert.equal(report.peerId, JSON.parse(aliceDaemon.io.out).peerId);
    assert.ok(report.connections > 0);
    viaDaemon = Object.keys(report).sort();
    const statusText = await dim(alice, ["status"]);
    assert.equal(statusText.code, 0, statusText.err);
    assert.match(statusText.out, /^ID: {13}dim\w+ \(Alice\)$/m);
    assert.match(statusText.out, /^Outbox: {9}0 waiting for acknowledgement$/m);

    const sent = await dim(alice, ["send", "bob", "through the daemon"]);
    assert.equal(sent.code, 0, sent.err);
    assert.equal(sent.out, "✓ delivered to bob\n");
    const sentJson = await dim(alice, ["send", "bob", "again", "--json"]);
    assert.equal(sentJson.code, 0, sentJson.err);
    assert.deepEqual(Object.keys(JSON.parse(sentJson.out)), ["to", "seq", "id", "state"]);

    const inbox = await dim(bob, ["inbox", "--json"]);
    assert.equal(inbox.code, 0, inbox.err);
    const found = JSON.parse(inbox.out);
    assert.deepEqual(Object.keys(found), ["fetched", "offline", "messages"]);
    assert.deepEqual(found.messages.map((m: { text: string }) => m.text), [
      "through the daemon",
      "again",
    ]);
    // The mark moved: shown once.
    const again = await dim(bob, ["inbox"]);
    assert.equal(again.out, "No new messages.\n");

    const file = `${tmp.path}/notes.txt`;
    await Deno.writeTextFile(file, "x".repeat(300_000));
    const sentFile = await dim(alice, ["send", "bob", "--file", file]);
    assert.equal(sentFile.code, 0, sentFile.err);
    assert.match(
      sentFile.out,
      /^✓ notes\.txt \(300000 bytes\) delivered to bob, sha256 [0-9a-f]{64}\n$/,
    );
    assert.equal(await Deno.readTextFile(`${bob}/files/notes.txt`), "x".repeat(300_000));
    const incoming = seen.filter((n) => n.method === "fileProgress");
    assert.ok(incoming.length > 0, "no fileProgress");
    assert.ok(incoming.every((n) => n.params.direction === "in" && n.params.contact === "alice"));
    assert.equal(incoming.at(-1)!.params.bytes, 300_000);
    assert.ok(seen.some((n) => n.method === "file" && n.params.name === "notes.txt"));

    const added = await dim(alice, ["contact", "add", "carol", carolId]);
    assert.equal(added.code, 0, added.err);
    assert.match(added.out, /^Added carol \(Carol\)\n {2}ID: {11}dim/);
    assert.match(added.out, /Not verified yet/);
    const verified = await dim(alice, ["contact", "verify", "carol", "--confirm"]);
    assert.equal(verified.code, 0, verified.err);
    assert.match(verified.out, /carol is now verified\.\n$/);
    const removed = await dim(alice, ["contact", "remove", "carol"]);
    assert.equal(removed.code, 0, removed.err);
    assert.equal(removed.out, "Removed carol (your conversation history is kept).\n");
    const unknown = await dim(alice, ["send", "carol", "hi"]);
    assert.equal(unknown.code, 1);
  } finally {
    await bobClient?.close();
    assert.equal((await bobDaemon.stop()).code, 0);
    assert.equal((await aliceDaemon.stop()).code, 0);
  }

  // Alone, the same commands print the same report and lines.
  const alone = await dim(alice, ["status", "--json", "--listen", LOOPBACK]);
  assert.equal(alone.code, 0, alone.err);
  const report = JSON.parse(alone.out);
  assert.deepEqual(Object.keys(report).sort(), viaDaemon);
  assert.equal(report.contacts, 1);
  // Bob, offline now: a message is stored for him, exit 0, as through the daemon.
  const stored = await dim(alice, ["send", "bob", "later", "--listen", LOOPBACK]);
  assert.equal(stored.code, 0, stored.err);
  assert.match(stored.out, /bob is offline: the message is stored in the network/);
});
