/**
 * The daemon's API on a test network: a client written without DIM's
 * library (Python, plain JSON lines) sees a message arrive and answers it;
 * the typed client of `mod.ts` sends, waits, reads history, verifies,
 * sends a file with progress and hears of one received.
 */
import assert from "node:assert/strict";
import {
  connectDaemon,
  createMessenger,
  DaemonError,
  DaemonErrorCode,
  type DaemonNotification,
  DaemonNotRunningError,
  openProfile,
} from "../../mod.ts";
import {
  dim,
  LOOPBACK,
  pairUsers,
  PASSPHRASE,
  storageNode,
  tempDir,
  until,
} from "../cli/_helpers.ts";
import { startDaemon } from "./_helpers.ts";

// A client that knows nothing of DIM: JSON lines over a Unix socket.
const PYTHON_CLIENT = `
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(45)
s.connect(sys.argv[1])
f = s.makefile("rwb")
def call(i, method, params=None):
    req = {"jsonrpc": "2.0", "id": i, "method": method}
    if params is not None: req["params"] = params
    f.write((json.dumps(req) + "\\n").encode()); f.flush()
    while True:
        msg = json.loads(f.readline())
        if msg.get("id") == i: return msg
hello = call(1, "hello")
contacts = call(2, "listContacts")
call(3, "subscribe")
print("subscribed", flush=True)
while True:
    msg = json.loads(f.readline())
    if msg.get("method") == "message": break
sent = call(4, "send", {"contact": msg["params"]["contact"], "text": "echo: " + msg["params"]["text"]})
print(json.dumps({"hello": hello, "contacts": contacts, "message": msg, "sent": sent}), flush=True)
`;

Deno.test("the daemon's API, from Python and from the typed client", async (t) => {
  await using tmp = await tempDir();
  await using node = await storageNode();
  const { alice, bob } = await pairUsers(tmp.path, node.address);
  const daemon = await startDaemon(alice);
  try {
    await t.step("a Python client subscribes, sees a message arrive and answers", async () => {
      const child = new Deno.Command("python3", {
        args: ["-c", PYTHON_CLIENT, daemon.socket],
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const errors = new Response(child.stderr).text();
      const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
      // Chunks need not end at lines: read up to the first line end.
      let head = "";
      while (!head.includes("\n")) {
        const r = await lines.read();
        if (r.done) break;
        head += r.value;
      }
      assert.equal(head.slice(0, head.indexOf("\n") + 1), "subscribed\n");
      let out = head.slice(head.indexOf("\n") + 1);
      const sent = await dim(bob, ["send", "alice", "hi from bob", "--listen", LOOPBACK]);
      assert.equal(sent.code, 0, sent.err);
      for (let r = await lines.read(); !r.done; r = await lines.read()) out += r.value;
      const { code } = await child.status;
      assert.equal(code, 0, await errors);
      const r = JSON.parse(out);
      assert.equal(r.hello.result.api, 1);
      assert.match(r.hello.result.id, /^dim/);
      assert.deepEqual(r.contacts.result.map((c: { name: string }) => c.name), ["bob"]);
      assert.equal(r.message.params.text, "hi from bob");
      assert.equal(r.message.params.contact, "bob");
      assert.equal(r.message.params.direction, "in");
      assert.equal(r.sent.result.message.text, "echo: hi from bob");
      assert.equal(r.sent.result.message.state, "pending");
      assert.match(daemon.io.err, /message \d+ from bob/);
    });

    // Bob online, with a download directory, for the rest.
    const bobDownloads = `${tmp.path}/bob-files`;
    await using bobM = await createMessenger(
      await openProfile({ home: bob, passphrase: PASSPHRASE }),
      { listen: [LOOPBACK], bootstrap: [node.address], downloadDir: bobDownloads },
    );

    await t.step("the typed client sends, waits, reads history, verifies", async () => {
      await using client = await connectDaemon(alice);
      assert.equal(client.hello.api, 1);
      assert.equal(client.hello.displayName, "Alice");
      const events = client.subscribe();
      await events.ready;
      const seen: DaemonNotification[] = [];
      const collecting = (async () => {
        for await (const n of events) seen.push(n);
      })();
      const { message, offline } = await client.send("bob", "typed hello");
      assert.equal(offline, false);
      const done = await client.waitFor(message.seq, { timeout: 30 });
      assert.equal(done.state, "delivered");
      await until(
        () => seen.some((n) => n.method === "status" && n.params.seq === message.seq),
        10_000,
        "the status notification",
      );
      const history = await client.history("bob", { limit: 10 });
      assert.equal(history.at(-1)?.text, "typed hello");
      assert.deepEqual(
        (await client.history("bob", { afterSeq: message.seq - 1 })).map((m) => m.seq),
        [message.seq],
      );
      const verify = await client.verifyContact("bob");
      assert.match(verify.safetyNumber, /^\d{5}( \d{5}){11}$/);
      assert.equal(verify.verified, false);
      assert.equal((await client.verifyContact("bob", { confirm: true })).verified, true);
      const status = await client.status();
      assert.equal(status.id, client.hello.id);
      assert.ok(status.connections > 0);
      const inbox = await client.inbox({ all: true, timeout: 10 });
      assert.ok(inbox.messages.some((m) => m.text === "hi from bob"));
      assert.deepEqual((await client.inbox({ timeout: 10 })).messages, []);
      await assert.rejects(
        client.addContact("me", client.hello.id),
        (e) => e instanceof DaemonError && e.code === DaemonErrorCode.InvalidParams,
      );
      await assert.rejects(
        client.send("carol", "x"),
        (e) => e instanceof DaemonError && e.code === DaemonErrorCode.UnknownContact,
      );
      assert.deepEqual(await client.removeContact("carol"), { removed: false });

      // Files both ways: progress to the sender, a `file` notification to the receiver.
      const path = `${tmp.path}/photo.bin`;
      await Deno.writeFile(path, crypto.getRandomValues(new Uint8Array(60_000)));
      const progress: number[] = [];
      const sent = await client.sendFile("bob", path, {
        onProgress: (p) => progress.push(p.bytes),
      });
      assert.equal(sent.bytes, 60_000);
      assert.equal(progress.at(-1), 60_000);
      assert.deepEqual(await Deno.readFile(`${bobDownloads}/photo.bin`), await Deno.readFile(path));
      await bobM.sendFile("alice", path);
      await until(() => seen.some((n) => n.method === "file"), 10_000, "the file notification");
      const file = seen.find((n) => n.method === "file")!.params as {
        contact: string;
        dir: string;
      };
      assert.equal(file.contact, "bob");
      assert.deepEqual(await Deno.readFile(`${file.dir}/photo.bin`), await Deno.readFile(path));

      await client.close();
      await collecting;
    });
  } finally {
    const run = await daemon.stop();
    assert.equal(run.code, 0, run.err);
  }
  await assert.rejects(connectDaemon(alice), DaemonNotRunningError);
});
