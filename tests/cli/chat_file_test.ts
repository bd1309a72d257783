/**
 * `dim chat` under a pseudo-terminal (tmux), with the other commands working
 * meanwhile: `dim send` and `dim send --file` go through the chat's socket;
 * `/file` sends a file whose name has a space, its path completed by Tab;
 * an incoming file shows where it was saved. And a chat attached to a
 * running `dim daemon` sends and receives through it.
 */
import assert from "node:assert/strict";
import { connectDaemon } from "../../lib/daemon/client.ts";
import type { DaemonNotification } from "../../lib/daemon/protocol.ts";
import { startDaemon } from "../daemon/_helpers.ts";
import { dim, pairUsers, storageNode, tempDir, until } from "./_helpers.ts";
import { dimCommand, HAVE_TMUX, Tmux } from "./_tmux.ts";

Deno.test({
  name: "dim send and send --file while dim chat runs; /file with a space, Tab-completed",
  ignore: !HAVE_TMUX,
  fn: async () => {
    await using r = await storageNode();
    await using tmp = await tempDir();
    const { alice, bob } = await pairUsers(tmp.path, r.address);
    const docs = `${tmp.path}/docs`;
    await Deno.mkdir(docs);
    await Deno.writeTextFile(`${docs}/my photo.txt`, "a picture, in words");
    await Deno.writeTextFile(`${docs}/report.txt`, "r".repeat(50_000));

    const bobDaemon = await startDaemon(bob);
    await using tmux = new Tmux();
    try {
      await tmux.start("alice", dimCommand(alice, ["chat", "bob"]));
      await tmux.waitFor("alice", /Chatting with bob \(Bob\)[^]*\n> *$/m, 20_000);

      // Another terminal: the chat holds the data directory and serves its socket.
      const sent = await dim(alice, ["send", "bob", "from another terminal"]);
      assert.equal(sent.code, 0, sent.err);
      assert.equal(sent.out, "✓ delivered to bob\n");
      // The chat window shows it too.
      await tmux.waitFor("alice", /you: from another terminal/, 5000);
      const file = await dim(alice, ["send", "bob", "--file", `${docs}/report.txt`]);
      assert.equal(file.code, 0, file.err);
      assert.match(file.out, /^✓ report\.txt \(50000 bytes\) delivered to bob/);

      // /file: Tab completes "my ph" to the escaped name; Enter sends it.
      await tmux.type("alice", `/file ${docs}/my ph`);
      await tmux.key("alice", "Tab");
      await tmux.waitFor("alice", /^> \/file .*\/docs\/my\\ photo\.txt$/m, 3000);
      await tmux.key("alice", "Enter");
      await tmux.waitFor("alice", /📎 ✓ my photo\.txt \(19 bytes\) delivered to bob/, 15_000);
      assert.equal(await Deno.readTextFile(`${bob}/files/my photo.txt`), "a picture, in words");

      // A file from Bob: the chat says who sent it and where it was saved.
      await using bobClient = await connectDaemon(bob);
      await bobClient.sendFile("alice", `${docs}/my photo.txt`);
      await tmux.waitFor(
        "alice",
        new RegExp(`📎 bob sent my photo\\.txt \\(19 bytes\\), saved in ${alice}/files`),
        10_000,
      );
      await tmux.type("alice", "/quit", true);
      await tmux.waitFor("alice", /^EXIT=0$/m, 15_000);
    } finally {
      assert.equal((await bobDaemon.stop()).code, 0);
    }
  },
});

Deno.test({
  name: "dim chat attached to a running daemon sends and receives through it",
  ignore: !HAVE_TMUX,
  fn: async () => {
    await using r = await storageNode();
    await using tmp = await tempDir();
    const { alice, bob } = await pairUsers(tmp.path, r.address);
    const file = `${tmp.path}/big file.bin`;
    await Deno.writeFile(file, new Uint8Array(3 * 1024 * 1024).fill(7));

    const aliceDaemon = await startDaemon(alice);
    const bobDaemon = await startDaemon(bob);
    await using tmux = new Tmux();
    try {
      await using bobClient = await connectDaemon(bob);
      const seen: DaemonNotification[] = [];
      const subscription = bobClient.subscribe();
      (async () => {
        for await (const n of subscription) seen.push(n);
      })();
      await subscription.ready;

      await tmux.start("alice", dimCommand(alice, ["chat", "bob"]));
      await tmux.waitFor("alice", /Through the running dim daemon\.[^]*\n> *$/m, 20_000);
      await tmux.type("alice", "hello through the daemon", true);
      await until(
        () =>
          seen.some((n) => n.method === "message" && n.params.text === "hello through the daemon"),
        10_000,
        "Bob to receive Alice's message",
      );
      await tmux.waitFor("alice", /you: hello through the daemon {2}✓ delivered/, 10_000);

      await bobClient.send("alice", "and back to the chat");
      await tmux.waitFor("alice", /bob \(unverified\): and back to the chat/, 10_000);

      // A file from Bob: its progress, then where it was saved.
      await bobClient.sendFile("alice", file);
      await tmux.waitFor(
        "alice",
        new RegExp(`📎 bob sent big file\\.bin \\(3145728 bytes\\), saved in ${alice}/files`),
        15_000,
      );
      await tmux.type("alice", "/quit", true);
      await tmux.waitFor("alice", /^EXIT=0$/m, 10_000);
      // The daemon stays: a command still goes through it.
      const status = await dim(alice, ["status", "--json"]);
      assert.equal(status.code, 0, status.err);
    } finally {
      assert.equal((await bobDaemon.stop()).code, 0);
      assert.equal((await aliceDaemon.stop()).code, 0);
    }
  },
});
