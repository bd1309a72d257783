/**
 * The networked commands through `main(args, io)`, on a storage node on 127.0.0.1:
 * contact add, send (delivered and stored offline), inbox, and chat both
 * without a terminal and on a simulated raw terminal. The other side is a
 * messenger opened on the same data directory the CLI created (`openUser`).
 */
import assert from "node:assert/strict";
import { EXIT_QUEUED } from "../../lib/cli/context.ts";
import { Identity } from "../../lib/crypto/identity.ts";
import { createMessenger } from "../../lib/messenger/messenger.ts";
import { openProfile } from "../../lib/profile/profile.ts";
import {
  dim,
  initUser,
  LOOPBACK,
  net,
  openUser,
  pairUsers,
  PASSPHRASE,
  startDim,
  storageNode,
  tempDir,
  until,
} from "./_helpers.ts";
import { nextMessages } from "../_support/network.ts";

Deno.test("contact add finds the card in the DHT, pins the keys and shows the fingerprint", async () => {
  await using r = await storageNode();
  await using tmp = await tempDir();
  const alice = `${tmp.path}/alice`;
  const bob = `${tmp.path}/bob`;
  await initUser(alice, "Alice");
  // Bob's init goes online once and publishes his card.
  await initUser(bob, "Bob", net(r.address));
  const bobId = JSON.parse((await dim(bob, ["id", "--json"])).out);

  // Alice has no bootstrap node: the contact string carries Bob's.
  const added = await dim(alice, ["contact", "add", "bob", bobId.contact, "--listen", LOOPBACK]);
  assert.equal(added.code, 0, added.err);
  assert.match(added.out, /^Added bob \(Bob\)\n/);
  assert.match(added.out, new RegExp(`Fingerprint: +${bobId.fingerprint}`));
  assert.match(added.out, /Trust: +not verified/);
  assert.match(added.err, /saved .* as your bootstrap node/);
  const config = JSON.parse(await Deno.readTextFile(`${alice}/config.json`));
  assert.deepEqual(config.bootstrap, [r.address]);

  const again = await dim(alice, ["contact", "add", "bob", bobId.id]);
  assert.equal(again.code, 0);
  assert.match(again.err, /bob is already a contact/);
  const clash = await dim(alice, ["contact", "add", "bob", (await Identity.generate()).id]);
  assert.equal(clash.code, 1);
  assert.match(clash.err, /already have a contact named bob with another ID/);

  const list = JSON.parse((await dim(alice, ["contact", "list", "--json"])).out);
  assert.equal(list.length, 1);
  assert.equal(list[0].id, bobId.id);
  assert.equal(list[0].fingerprint, bobId.fingerprint);

  // Both sides see the same safety number.
  const aliceId = JSON.parse((await dim(alice, ["id", "--json"])).out).id;
  assert.equal(
    (await dim(bob, ["contact", "add", "alice", aliceId, "--listen", LOOPBACK])).code,
    0,
  );
  const a = JSON.parse((await dim(alice, ["contact", "verify", "bob", "--json"])).out);
  const b = JSON.parse((await dim(bob, ["contact", "verify", "alice", "--json"])).out);
  assert.equal(a.safetyNumber, b.safetyNumber);
});

Deno.test("contact add of an ID with no card in the network is one line, exit 1", async () => {
  await using r = await storageNode();
  await using tmp = await tempDir();
  await initUser(tmp.path, "Alice", net(r.address));
  const nobody = (await Identity.generate()).id;
  const run = await dim(tmp.path, ["contact", "add", "nobody", nobody, "--timeout", "5"]);
  assert.equal(run.code, 1);
  assert.match(
    run.err,
    new RegExp(`^error: cannot find a contact card for ${nobody} in the network`),
  );
  assert.equal(run.err.trimEnd().split("\n").length, 1);
  assert.deepEqual(JSON.parse((await dim(tmp.path, ["contact", "list", "--json"])).out), []);
});

Deno.test("send exits once delivered, or once stored for an offline contact; inbox shows new messages once", async () => {
  await using r = await storageNode();
  await using tmp = await tempDir();
  const { alice, bob } = await pairUsers(tmp.path, r.address);

  const online = await openUser(bob, r.address);
  try {
    const sent = await dim(alice, ["send", "bob", "hello", "bob", "--json", "--listen", LOOPBACK]);
    assert.equal(sent.code, 0, sent.err);
    assert.equal(JSON.parse(sent.out).state, "delivered");
    const [got] = await nextMessages(online, 1);
    assert.equal(got?.text, "hello bob");
    const text = await dim(alice, ["send", "--listen", LOOPBACK, "bob", "--", "-1 for that"]);
    assert.equal(text.out, "✓ delivered to bob\n");
  } finally {
    await online.stop();
  }

  const stored = await dim(alice, ["send", "bob", "are you there?", "--listen", LOOPBACK]);
  assert.equal(stored.code, 0, stored.err);
  assert.match(stored.out, /^⧗ bob is offline: the message is stored in the network/);
  const status = JSON.parse((await dim(alice, ["status", "--json", "--listen", LOOPBACK])).out);
  assert.equal(status.outbox, 1);
  assert.equal(status.outboxStored, 1);
  assert.ok(status.routingTable >= 1);
  assert.ok(status.addresses.every((a: string) => a.includes("/ip4/127.0.0.1/")));
  // On loopback no peer can check from outside: reachability stays as it was loaded.
  assert.ok(["unknown", "public", "private"].includes(status.reachability.status));
  assert.equal(typeof status.reachability.summary, "string");
  assert.ok(Array.isArray(status.reachability.relays));
  const shown = await dim(alice, ["status", "--listen", LOOPBACK]);
  assert.equal(shown.code, 0, shown.err);
  assert.match(shown.out, /^Reachability: {3}(public|unknown|behind NAT|mapped by UPnP)/m);

  const inbox = await dim(bob, ["inbox", "--listen", LOOPBACK]);
  assert.equal(inbox.code, 0, inbox.err);
  const lines = inbox.out.trimEnd().split("\n");
  assert.deepEqual(lines.map((l) => l.replace(/^\[[^\]]+\] /, "")), [
    "alice (unverified): hello bob",
    "alice (unverified): -1 for that",
    "alice (unverified): are you there?",
  ]);
  const again = await dim(bob, ["inbox", "--json", "--listen", LOOPBACK]);
  assert.deepEqual(JSON.parse(again.out).messages, []);
  const all = await dim(bob, ["inbox", "--all", "--json", "--listen", LOOPBACK]);
  assert.equal(JSON.parse(all.out).messages.length, 3);
});

Deno.test("chat without a terminal sends each line, prints incoming ones, and exits at the end of input once delivered", async () => {
  await using r = await storageNode();
  await using tmp = await tempDir();
  const { alice, bob } = await pairUsers(tmp.path, r.address);
  const online = await openUser(bob, r.address);
  try {
    const chat = startDim(alice, ["chat", "bob", "--listen", LOOPBACK], {
      lines: ["one", "two"],
      endInput: false,
    });
    const got = await nextMessages(online, 2);
    assert.deepEqual(got.map((m) => m.text), ["one", "two"]);
    await online.send("alice", "three");
    await until(() => /bob \(unverified\): three/.test(chat.io.out), 5000, "Bob's message");
    await until(() => /delivered: two/.test(chat.io.out), 5000, "the second ✓");
    chat.io.pushLine("four");
    // The end of input while "four" is in flight: the chat waits for it, then exits.
    chat.io.pushLine(undefined);
    const done = await chat.done;
    assert.equal(done.code, 0, done.err);
    assert.match(done.out, /^\[[^\]]+\] bob \(unverified\): three$/m);
    for (const t of ["one", "two", "four"]) {
      assert.match(done.out, new RegExp(`✓ delivered: ${t}\n`));
    }
    assert.match(done.err, /Chatting with bob \(Bob\)/);
    assert.equal((await nextMessages(online, 1))[0]?.text, "four");
  } finally {
    await online.stop();
  }
});

Deno.test("chat --json prints one JSON event per line", async () => {
  await using r = await storageNode();
  await using tmp = await tempDir();
  const { alice, bob } = await pairUsers(tmp.path, r.address);
  const online = await openUser(bob, r.address);
  try {
    const chat = startDim(alice, ["chat", "bob", "--json", "--listen", LOOPBACK], {
      lines: ["hi"],
      endInput: false,
    });
    await nextMessages(online, 1);
    await online.send("alice", "hello yourself");
    await until(() => chat.io.out.includes("hello yourself"), 5000, "Bob's message");
    chat.io.pushLine(undefined);
    const done = await chat.done;
    assert.equal(done.code, 0, done.err);
    const events = done.out.trimEnd().split("\n").map((l) => JSON.parse(l));
    const types = events.map((e) => e.type);
    assert.ok(types.includes("sent") && types.includes("status") && types.includes("message"));
    assert.equal(events.find((e) => e.type === "message").text, "hello yourself");
    assert.equal(events.find((e) => e.type === "status").state, "delivered");
  } finally {
    await online.stop();
  }
});

Deno.test("chat on a raw terminal: live messages keep the typed line, states update in place, Ctrl-C quits", async () => {
  await using r = await storageNode();
  await using tmp = await tempDir();
  const { alice, bob } = await pairUsers(tmp.path, r.address);
  const online = await openUser(bob, r.address);
  try {
    // A message from before the chat, fetched by `dim inbox`.
    const old = await online.send("alice", "an old message");
    await online.waitFor(old.seq, { orStored: true, signal: AbortSignal.timeout(10_000) });
    assert.match((await dim(alice, ["inbox", "--listen", LOOPBACK])).out, /an old message/);
    const chat = startDim(alice, ["chat", "bob", "--listen", LOOPBACK], {
      terminal: { columns: 80, rows: 24 },
    });
    const io = chat.io;
    await until(() => io.out.includes("> "), 10_000, "the prompt");
    assert.ok(io.raw, "raw mode while chatting");
    assert.match(io.out, /Chatting with bob \(Bob\) — not verified/);
    assert.match(io.out, /── last message ──\r\n[^]*?\] bob \(unverified\): an old message\r\n/);

    io.pushKeys("half a li");
    await until(() => io.out.endsWith("> half a li\r\x1b[11C"), 2000, "the typed text");
    await online.send("alice", "interrupting!");
    // The incoming line is printed above, then the prompt and the typed text are redrawn.
    await until(
      // deno-lint-ignore no-control-regex
      () => /bob \(unverified\): interrupting!\r\n\r\x1b\[2K> half a li\r\x1b\[11C$/.test(io.out),
      5000,
      "the incoming line and the redrawn input",
    );

    io.pushKeys("ne\r");
    await until(() => /you: half a line {2}… sending/.test(io.out), 2000, "the sent line");
    assert.equal((await nextMessages(online, 1))[0]?.text, "half a line");
    // Updated in place: up one row, rewritten, back down.
    await until(
      // deno-lint-ignore no-control-regex
      () => /\x1b\[1A\r\x1b\[2K\[[^\]]+\] you: half a line {2}✓ delivered\x1b\[1B/.test(io.out),
      5000,
      "the ✓ in place",
    );

    io.pushKeys("/verify\r");
    await until(() => io.out.includes("Safety number with bob"), 2000, "the safety number");
    io.pushKeys("/nope\r");
    await until(() => io.out.includes("unknown command /nope"), 2000, "the unknown command");
    io.pushKeys("\x03");
    const done = await chat.done;
    assert.equal(done.code, 0, done.err);
    assert.equal(io.raw, false, "the terminal is restored");
  } finally {
    await online.stop();
  }
});

Deno.test("chat /quit waits for messages in flight; an offline contact's are queued", async () => {
  await using r = await storageNode();
  await using tmp = await tempDir();
  const { alice } = await pairUsers(tmp.path, r.address);
  // Bob is offline: the message is stored in the network.
  const chat = startDim(alice, ["chat", "bob", "--listen", LOOPBACK], {
    terminal: { columns: 80, rows: 24 },
  });
  const io = chat.io;
  await until(() => io.out.includes("> "), 10_000, "the prompt");
  io.pushKeys("are you there?\r/quit\r");
  const done = await chat.done;
  assert.equal(done.code, 0, done.err);
  assert.match(io.out, /you: are you there\? {2}⧗ queued for offline delivery/);
});

Deno.test("init with a bootstrap node publishes the card, asking the passphrase only twice", async () => {
  await using r = await storageNode();
  await using tmp = await tempDir();
  const run = await dim(tmp.path, ["init", "--name", "Ada", "--json", ...net(r.address)], {
    env: { DIM_PASSPHRASE: "" },
    secrets: ["typed twice", "typed twice"],
  });
  assert.equal(run.code, 0, run.err);
  assert.equal(JSON.parse(run.out).published, true);
  assert.equal(run.err, "New passphrase: \nRepeat the passphrase: \n");
  // Anyone on the network now finds the card.
  await using other = await tempDir();
  await initUser(other.path, "Bob", net(r.address));
  const added = await dim(other.path, ["contact", "add", "ada", JSON.parse(run.out).id]);
  assert.equal(added.code, 0, added.err);
});

Deno.test("send --file streams a file to an online contact; offline, leaves a small one in the network and queues a large one", async () => {
  await using r = await storageNode();
  await using tmp = await tempDir();
  const { alice, bob } = await pairUsers(tmp.path, r.address);
  const path = `${tmp.path}/notes.txt`;
  const data = new TextEncoder().encode("a file from alice\n".repeat(5000));
  await Deno.writeFile(path, data);

  const online = await createMessenger(await openProfile({ home: bob, passphrase: PASSPHRASE }), {
    listen: [LOOPBACK],
    bootstrap: [r.address],
    downloadDir: `${bob}/files`,
  });
  try {
    const sent = await dim(alice, ["send", "bob", "--file", path, "--json", "--listen", LOOPBACK]);
    assert.equal(sent.code, 0, sent.err);
    const out = JSON.parse(sent.out);
    assert.equal(out.bytes, data.length);
    assert.deepEqual(await Deno.readFile(`${bob}/files/notes.txt`), data);
  } finally {
    await online.stop();
  }
  // Bob offline: a small file is left in the network; a file over 4 MiB waits on this device.
  const offline = await dim(alice, ["send", "bob", "--file", path, "--listen", LOOPBACK]);
  assert.equal(offline.code, 0, offline.err);
  assert.match(
    offline.out,
    /^⧗ bob is offline: notes\.txt \(90000 bytes\) is stored in the network/,
  );
  const big = `${tmp.path}/big.bin`;
  await Deno.writeFile(big, new Uint8Array(4 * 1024 * 1024 + 1));
  const queued = await dim(alice, ["send", "bob", "--file", big, "--json", "--listen", LOOPBACK]);
  assert.equal(queued.code, EXIT_QUEUED, queued.err);
  assert.equal(JSON.parse(queued.out).state, "queued");
  assert.equal(JSON.parse(queued.out).how, "queued");
  const status = await dim(alice, ["status", "--listen", LOOPBACK]);
  assert.match(
    status.out,
    /^Files waiting: +big\.bin \(4194305 bytes\) for bob, until you are both online$/m,
  );
  const missing = await dim(alice, ["send", "bob", "--file", `${tmp.path}/nope`]);
  assert.equal(missing.code, 1);
  assert.match(missing.err, /error: no such file: /);
});

Deno.test("with the bootstrap node stopped, dim status gets in through a peer it knew", async () => {
  await using tmp = await tempDir();
  const bootstrap = await storageNode();
  await using other = await storageNode();
  await other.node.dial(bootstrap.address);
  const home = `${tmp.path}/ada`;
  await initUser(home, "Ada", net(bootstrap.address));
  const before = JSON.parse((await dim(home, ["status", "--json", ...net(bootstrap.address)])).out);
  assert.ok(before.joinedThrough.includes(bootstrap.node.peerId));
  await bootstrap.stop();

  const after = await dim(home, ["status", "--json", ...net(bootstrap.address)]);
  assert.equal(after.code, 0, after.err);
  assert.deepEqual(JSON.parse(after.out).joinedThrough, [other.node.peerId]);
  const shown = await dim(home, ["status", ...net(bootstrap.address)]);
  assert.match(shown.out, new RegExp(`^Joined through: ${other.node.peerId}$`, "m"));
});

Deno.test("contact add keeps a dim: string's bootstrap address as a join hint; status joins through it once the bootstrap node is gone", async () => {
  await using tmp = await tempDir();
  const bootstrap = await storageNode();
  await using hinted = await storageNode();
  await hinted.node.dial(bootstrap.address);
  const alice = `${tmp.path}/alice`;
  const bob = `${tmp.path}/bob`;
  await initUser(alice, "Alice", net(bootstrap.address));
  await initUser(bob, "Bob", net(bootstrap.address));
  const bobId = JSON.parse((await dim(bob, ["id", "--json", "--bootstrap", hinted.address])).out);
  const added = await dim(alice, [
    "contact",
    "add",
    "bob",
    bobId.contact,
    ...net(bootstrap.address),
  ]);
  assert.equal(added.code, 0, added.err);
  const book = JSON.parse(await Deno.readTextFile(`${alice}/peers.json`));
  const hints = Object.fromEntries(
    book.hints.map((h: { source: string; multiaddrs: string[] }) => [h.source, h.multiaddrs]),
  );
  assert.deepEqual(hints[`hint:${bobId.id}`], [hinted.address]);
  assert.ok(hints[`contact:${bobId.id}`]?.length > 0, "Bob's card addresses are hints too");

  await bootstrap.stop();
  const after = await dim(alice, ["status", "--json", ...net(bootstrap.address)]);
  assert.equal(after.code, 0, after.err);
  const report = JSON.parse(after.out);
  assert.ok(report.joinedThrough.includes(hinted.node.peerId), after.out);
  assert.ok(report.rememberedPeers >= 2, `remembered ${report.rememberedPeers}`);
  assert.deepEqual(report.learnedBootstrap, []);
  const shown = await dim(alice, ["status", ...net(bootstrap.address)]);
  assert.match(shown.out, /^Remembered: +\d+ peers, 0 learned as bootstrap peers$/m);
  assert.match(shown.out, /^Joined through: /m);
});
