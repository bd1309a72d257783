/**
 * `main(args, io)` with a scripted terminal, offline: usage errors, help,
 * identity creation, passphrases, one-line errors for a wrong passphrase, a
 * locked or corrupt data directory, and the offline contact commands.
 */
import assert from "node:assert/strict";
import { Context } from "../../lib/cli/context.ts";
import { main } from "../../lib/cli/main.ts";
import {
  describeReachability,
  formatAge,
  reachabilityReport,
  statusLines,
  type StatusReport,
} from "../../lib/cli/status.ts";
import { memoryIo } from "../../lib/cli/io.ts";
import { Identity } from "../../lib/crypto/identity.ts";
import { UserStore } from "../../lib/store/user_store.ts";
import { lockDataDir } from "../../lib/platform/lock.ts";
import { dim, initUser, PASSPHRASE, tempDir, TEST_ENV } from "./_helpers.ts";

/** Asserts stderr is exactly one `error: …` line, and returns it. */
function oneErrorLine(err: string): string {
  const lines = err.trimEnd().split("\n").filter((l) =>
    !l.startsWith("(see dim") && !/^(New|Repeat the) passphrase: $/.test(l)
  );
  assert.equal(lines.length, 1, `expected one line, got:\n${err}`);
  assert.match(lines[0]!, /^error: /);
  return lines[0]!;
}

Deno.test("usage errors exit 2 with one line and a hint", async (t) => {
  const cases: [string[], RegExp][] = [
    [["frobnicate"], /unknown command "frobnicate"/],
    [["--frob"], /unknown option --frob/],
    [["id", "--force"], /dim id does not take --force/],
    [["id", "extra"], /too many arguments/],
    [["chat"], /missing arguments/],
    [["send"], /missing <name>/],
    [["send", "bob"], /missing <text>/],
    [["contact", "frob"], /unknown subcommand "contact frob"/],
    [["contact", "add", "bob"], /missing <id-or-contact-string>/],
    [["contact", "list", "--confirm"], /--confirm only goes with dim contact verify/],
    [["--home"], /option --home needs a value/],
    [["status", "--timeout", "soon"], /--timeout needs a positive number/],
    [["status", "--bootstrap", "nonsense"], /is not a multiaddr/],
    [["status", "--bootstrap", "/ip4/127.0.0.1/tcp/4001"], /needs its node's \/p2p\//],
    [["config", "colour", "blue"], /unknown setting "colour"/],
  ];
  await using tmp = await tempDir();
  const home = tmp.path;
  await initUser(home, "Ada");
  for (const [args, message] of cases) {
    await t.step(args.join(" ") || "(nothing)", async () => {
      const run = await dim(home, args);
      assert.equal(run.code, 2, run.err);
      assert.match(oneErrorLine(run.err), message);
      assert.match(run.err, /\(see dim /);
      assert.equal(run.out, "");
    });
  }
});

Deno.test("no arguments prints the help on stderr and exits 2", async () => {
  const io = memoryIo({ env: TEST_ENV });
  assert.equal(await main([], io), 2);
  assert.match(io.err, /Usage: dim/);
  assert.equal(io.out, "");
});

Deno.test("--help on every command and --version exit 0 on stdout", async (t) => {
  for (
    const command of [
      "init",
      "keygen",
      "id",
      "contact",
      "send",
      "inbox",
      "chat",
      "status",
      "daemon",
      "node",
    ]
  ) {
    await t.step(command, async () => {
      const io = memoryIo({ env: TEST_ENV });
      assert.equal(await main([command, "--help"], io), 0);
      assert.match(io.out, /^Usage: dim /);
      assert.match(io.out, /--home <dir>/);
      assert.equal(io.err, "");
    });
  }
  await t.step("help <command>", async () => {
    const io = memoryIo({ env: TEST_ENV });
    assert.equal(await main(["help", "send"], io), 0);
    assert.match(io.out, /Usage: dim send <name> <text>/);
  });
  await t.step("--version and --version --json", async () => {
    const io = memoryIo({ env: TEST_ENV });
    assert.equal(await main(["--version"], io), 0);
    assert.match(io.out, /^dim \d+\.\d+\.\d+\n$/);
    const json = memoryIo({ env: TEST_ENV });
    assert.equal(await main(["--version", "--json"], json), 0);
    assert.match(JSON.parse(json.out).version, /^\d/);
  });
});

Deno.test("init then id shows the same ID, fingerprint and contact string, offline", async () => {
  await using tmp = await tempDir();
  const home = tmp.path;
  const init = await dim(home, ["init", "--name", "Ada Lovelace"]);
  assert.equal(init.code, 0, init.err);
  assert.match(init.out, /Created your DIM identity/);
  const id = /ID: +(dim\w+)/.exec(init.out)?.[1];
  assert.ok(id);

  // No passphrase needed: the public keys are kept in the database.
  const shown = await dim(home, ["id", "--json"], { env: { DIM_PASSPHRASE: "" } });
  assert.equal(shown.code, 0, shown.err);
  const json = JSON.parse(shown.out);
  assert.equal(json.id, id);
  assert.equal(json.displayName, "Ada Lovelace");
  assert.match(json.fingerprint, /^([0-9a-f]{4} ){4}[0-9a-f]{4}$/);
  assert.equal(json.contact, `dim:${id}`);

  const text = await dim(home, ["id"]);
  assert.match(text.out, new RegExp(`ID: +${id}`));
  assert.match(text.out, new RegExp(`Fingerprint: +${json.fingerprint}`));
});

Deno.test("init --json parses, and init --bootstrap saves the settings and carries them in the contact string", async () => {
  await using tmp = await tempDir();
  const home = tmp.path;
  const peer = "12D3KooWLft9H7kDJsGDWAAa7ibs7pjqRV8oA9pfLudYvjUkLftV";
  // A bootstrap node that is down: the identity is still created, with a warning.
  const address = `/ip4/127.0.0.1/tcp/1/p2p/${peer}`;
  const run = await dim(home, [
    "init",
    "--name",
    "Ada",
    "--json",
    "--bootstrap",
    address,
    "--listen",
    "/ip4/127.0.0.1/tcp/0",
  ]);
  assert.equal(run.code, 0, run.err);
  const json = JSON.parse(run.out);
  assert.equal(json.published, false);
  assert.match(
    run.err,
    /^warning: your identity is saved, but your contact card could not be published/,
  );
  assert.equal(json.contact, `dim:${json.id}?bootstrap=${encodeURIComponent(address)}`);
  const config = JSON.parse(await Deno.readTextFile(`${home}/config.json`));
  assert.deepEqual(config, { bootstrap: [address], listen: ["/ip4/127.0.0.1/tcp/0"] });

  const id = await dim(home, ["id", "--json"]);
  assert.equal(JSON.parse(id.out).contact, json.contact);
  const shown = await dim(home, ["config", "--json"]);
  assert.deepEqual(JSON.parse(shown.out).bootstrap, [address]);
});

Deno.test("init refuses to overwrite an identity without --force, and keeps it", async () => {
  await using tmp = await tempDir();
  const home = tmp.path;
  const first = await initUser(home, "Ada");
  const before = await Deno.readFile(`${home}/identity.key`);
  const again = await dim(home, ["init", "--name", "Eve"]);
  assert.equal(again.code, 1);
  assert.match(oneErrorLine(again.err), /an identity already exists in .*--force/);
  assert.deepEqual(await Deno.readFile(`${home}/identity.key`), before);

  const forced = await dim(home, ["init", "--name", "Ada 2", "--force", "--json"]);
  assert.equal(forced.code, 0, forced.err);
  assert.notEqual(JSON.parse(forced.out).id, first);
  const id = await dim(home, ["id", "--json"]);
  assert.equal(JSON.parse(id.out).id, JSON.parse(forced.out).id);
});

Deno.test("init asks for the passphrase twice and refuses a mismatch", async () => {
  await using tmp = await tempDir();
  const home = tmp.path;
  const mismatch = await dim(home, ["init", "--name", "Ada"], {
    env: { DIM_PASSPHRASE: "" },
    secrets: ["one passphrase", "another one"],
  });
  assert.equal(mismatch.code, 1);
  assert.match(oneErrorLine(mismatch.err), /passphrases do not match/);
  await assert.rejects(Deno.stat(`${home}/identity.key`), Deno.errors.NotFound);

  const none = await dim(home, ["init", "--name", "Ada"], { env: { DIM_PASSPHRASE: "" } });
  assert.equal(none.code, 1);
  assert.match(oneErrorLine(none.err), /no passphrase given/);

  const typed = await dim(home, ["init", "--name", "Ada"], {
    env: { DIM_PASSPHRASE: "" },
    secrets: ["typed twice", "typed twice"],
  });
  assert.equal(typed.code, 0, typed.err);
  assert.match(typed.err, /New passphrase: \nRepeat the passphrase: \n/);
  // The typed passphrase unlocks it.
  const wrong = await dim(home, ["contact", "verify", "nobody"], {
    env: { DIM_PASSPHRASE: "" },
    secrets: ["typed twice"],
  });
  assert.match(wrong.err, /cannot find contact "nobody"/);
});

Deno.test("--passphrase-file is read without its line end", async () => {
  await using tmp = await tempDir();
  const home = tmp.path;
  const file = `${home}.pass`;
  await Deno.writeTextFile(file, "from a file\n");
  try {
    const run = await dim(home, ["init", "--name", "Ada", "--passphrase-file", file], {
      env: { DIM_PASSPHRASE: "" },
    });
    assert.equal(run.code, 0, run.err);
    // Remove the saved public keys so `id` must unlock the keystore.
    const db = UserStore.open(`${home}/dim.db`);
    db.settings.set("cli.public_identity", "{}");
    db.close();
    const ok = await dim(home, ["id", "--passphrase-file", file], { env: { DIM_PASSPHRASE: "" } });
    assert.equal(ok.code, 0, ok.err);
    const db2 = UserStore.open(`${home}/dim.db`);
    db2.settings.set("cli.public_identity", "{}");
    db2.close();
    const wrong = await dim(home, ["id"], { env: { DIM_PASSPHRASE: "from a file\n" } });
    assert.equal(wrong.code, 1);
    const empty = `${home}.empty`;
    await Deno.writeTextFile(empty, "\n");
    const none = await dim(home, ["id", "--passphrase-file", empty], {
      env: { DIM_PASSPHRASE: "" },
    });
    assert.match(oneErrorLine(none.err), /passphrase file .* is empty/);
    await Deno.remove(empty);
  } finally {
    await Deno.remove(file);
  }
});

Deno.test("a wrong passphrase is one line, exit 1, and changes nothing", async () => {
  await using tmp = await tempDir();
  const home = tmp.path;
  await initUser(home, "Ada");
  const db = UserStore.open(`${home}/dim.db`);
  db.settings.set("cli.public_identity", "{}");
  db.close();
  const before = await Deno.readFile(`${home}/identity.key`);
  for (const args of [["id"], ["status"]]) {
    const run = await dim(home, args, { env: { DIM_PASSPHRASE: "not it" } });
    assert.equal(run.code, 1);
    assert.equal(oneErrorLine(run.err), "error: cannot unlock your identity: wrong passphrase");
    assert.equal(run.out, "");
  }
  assert.deepEqual(await Deno.readFile(`${home}/identity.key`), before);
});

Deno.test("--debug adds the stack trace after the error line", async () => {
  await using tmp = await tempDir();
  const home = tmp.path;
  await initUser(home, "Ada");
  const run = await dim(home, ["status", "--debug"], { env: { DIM_PASSPHRASE: "not it" } });
  assert.equal(run.code, 1);
  const [first, ...rest] = run.err.split("\n");
  assert.equal(first, "error: cannot unlock your identity: wrong passphrase");
  assert.match(rest.join("\n"), /KeystoreError.*\n\s+at /);
});

Deno.test("commands without an identity say to run dim init", async () => {
  await using tmp = await tempDir();
  const home = tmp.path;
  for (const args of [["id"], ["send", "bob", "hi"], ["contact", "list"], ["chat", "bob"]]) {
    const run = await dim(home, args);
    assert.equal(run.code, 1);
    assert.match(oneErrorLine(run.err), /no identity in .*: run `dim init` first/);
  }
});

Deno.test("a data directory in use by another dim process is one line, exit 1", async () => {
  await using tmp = await tempDir();
  const home = tmp.path;
  await initUser(home, "Ada");
  const lock = lockDataDir(home);
  try {
    for (const args of [["status"], ["init", "--force", "--name", "X"]]) {
      const run = await dim(home, args);
      assert.equal(run.code, 1);
      assert.match(oneErrorLine(run.err), /another dim process is using it/);
    }
  } finally {
    lock.release();
  }
});

Deno.test("a damaged identity file or database is one line, exit 1, and left as it was", async (t) => {
  await t.step("identity file", async () => {
    await using tmp = await tempDir();
    const home = tmp.path;
    await initUser(home, "Ada");
    const junk = new TextEncoder().encode("this is not a keystore");
    await Deno.writeFile(`${home}/identity.key`, junk);
    const run = await dim(home, ["status"]);
    assert.equal(run.code, 1);
    assert.match(oneErrorLine(run.err), /the identity file is damaged: it is not a DIM keystore/);
    assert.deepEqual(await Deno.readFile(`${home}/identity.key`), junk);
  });
  await t.step("database", async () => {
    await using tmp = await tempDir();
    const home = tmp.path;
    await initUser(home, "Ada");
    await Deno.remove(`${home}/dim.db-wal`).catch(() => {});
    await Deno.remove(`${home}/dim.db-shm`).catch(() => {});
    const junk = new Uint8Array(8192).fill(0x5a);
    await Deno.writeFile(`${home}/dim.db`, junk);
    const run = await dim(home, ["contact", "list"]);
    assert.equal(run.code, 1);
    assert.match(oneErrorLine(run.err), /database .*corrupt/);
    assert.deepEqual(await Deno.readFile(`${home}/dim.db`), junk);
  });
  await t.step("settings file", async () => {
    await using tmp = await tempDir();
    const home = tmp.path;
    await initUser(home, "Ada");
    await Deno.writeTextFile(`${home}/config.json`, "{ not json");
    const run = await dim(home, ["id"]);
    assert.equal(run.code, 1);
    assert.match(oneErrorLine(run.err), /config\.json: the file is not valid JSON/);
  });
});

Deno.test("contact add with a mistyped ID fails on its checksum before going online", async () => {
  await using tmp = await tempDir();
  const home = tmp.path;
  await initUser(home, "Ada");
  const other = (await Identity.generate()).id;
  // Change one character in the middle of the ID.
  const i = 20;
  const typo = other.slice(0, i) + (other[i] === "a" ? "b" : "a") + other.slice(i + 1);
  // An unreachable bootstrap node: if the command went online it would say so instead.
  const peer = "12D3KooWLft9H7kDJsGDWAAa7ibs7pjqRV8oA9pfLudYvjUkLftV";
  for (const idOrUri of [typo, `dim:${typo}`]) {
    const run = await dim(home, [
      "contact",
      "add",
      "bob",
      idOrUri,
      "--bootstrap",
      `/ip4/127.0.0.1/tcp/1/p2p/${peer}`,
    ]);
    assert.equal(run.code, 1);
    assert.equal(
      oneErrorLine(run.err),
      "error: cannot parse user ID: checksum mismatch (is it mistyped?)",
    );
  }
  const short = await dim(home, ["contact", "add", "bob", "dimabc"]);
  assert.match(oneErrorLine(short.err), /expected 61 characters/);
  const self = await dim(home, [
    "contact",
    "add",
    "me",
    JSON.parse((await dim(home, ["id", "--json"])).out).id,
  ]);
  assert.match(oneErrorLine(self.err), /that is your own ID/);
  const name = await dim(home, ["contact", "add", "two words", other]);
  assert.equal(name.code, 2);
});

Deno.test("send to an unknown contact fails at once, before unlocking", async () => {
  await using tmp = await tempDir();
  const home = tmp.path;
  await initUser(home, "Ada");
  const run = await dim(home, ["send", "nobody", "hello"], { env: { DIM_PASSPHRASE: "" } });
  assert.equal(run.code, 1);
  assert.equal(oneErrorLine(run.err), 'error: cannot find contact "nobody"');
  const file = await dim(home, ["send", "nobody", "--file", "/etc/hostname"]);
  assert.equal(file.code, 1);
  assert.equal(oneErrorLine(file.err), 'error: cannot find contact "nobody"');
});

Deno.test("an unreachable bootstrap node is one line, exit 1", async () => {
  await using tmp = await tempDir();
  const home = tmp.path;
  await initUser(home, "Ada");
  const peer = "12D3KooWLft9H7kDJsGDWAAa7ibs7pjqRV8oA9pfLudYvjUkLftV";
  const address = `/ip4/127.0.0.1/tcp/1/p2p/${peer}`;
  const run = await dim(home, [
    "status",
    "--bootstrap",
    address,
    "--listen",
    "/ip4/127.0.0.1/tcp/0",
  ]);
  assert.equal(run.code, 1);
  assert.equal(
    oneErrorLine(run.err),
    `error: cannot reach the bootstrap node ${address}: check the address and that the node is running`,
  );
});

Deno.test("contact list, verify and remove work offline; key changes are loud", async () => {
  await using tmp = await tempDir();
  const home = tmp.path;
  await initUser(home, "Ada");
  const bob = await Identity.generate();
  const carol = await Identity.generate();
  // Contacts as `contact add` leaves them (that needs a network: see network_test.ts).
  const db = UserStore.open(`${home}/dim.db`);
  for (const [name, who] of [["bob", bob], ["carol", carol]] as const) {
    db.contacts.upsert({
      name,
      userId: who.id,
      signingPublicKey: who.signingPublicKey,
      encryptionPublicKey: who.encryptionPublicKey,
      displayName: name.toUpperCase(),
      addedAt: Date.now(),
    });
  }
  db.close();

  const list = await dim(home, ["contact", "list", "--json"]);
  assert.equal(list.code, 0, list.err);
  const contacts = JSON.parse(list.out);
  assert.deepEqual(contacts.map((c: { name: string }) => c.name), ["bob", "carol"]);
  assert.equal(contacts[0].verified, false);
  assert.equal(contacts[0].lastSeen, null);
  const table = await dim(home, ["contact", "list"]);
  assert.match(table.out, /^NAME +DISPLAY NAME +TRUST +LAST SEEN +ID\n/);
  assert.match(table.out, new RegExp(`bob +BOB +not verified +never +${bob.id}`));

  const shown = await dim(home, ["contact", "verify", "bob"]);
  assert.equal(shown.code, 0, shown.err);
  assert.match(shown.out, /Safety number with bob \(BOB\):\n\n( {4}(\d{5} ){3}\d{5}\n){3}/);
  assert.match(shown.out, /dim contact verify bob --confirm/);
  const json = JSON.parse((await dim(home, ["contact", "verify", "bob", "--json"])).out);
  assert.match(json.safetyNumber, /^(\d{5} ){11}\d{5}$/);
  assert.equal(json.verified, false);

  const confirmed = await dim(home, ["contact", "verify", "bob", "--confirm"]);
  assert.equal(confirmed.code, 0, confirmed.err);
  assert.match(confirmed.out, /bob is now verified/);
  assert.match((await dim(home, ["contact", "list"])).out, /bob +BOB +verified/);

  // Bob's card now shows another encryption key than the pinned one.
  const other = await Identity.generate();
  const db2 = UserStore.open(`${home}/dim.db`);
  db2.contacts.upsert({
    ...db2.contacts.get("bob")!,
    changedEncryptionKey: other.encryptionPublicKey,
  });
  db2.close();
  const changed = await dim(home, ["contact", "list"]);
  assert.match(changed.out, /bob +BOB +⚠ KEYS CHANGED/);
  assert.match(changed.err, /WARNING: bob's keys have CHANGED/);
  const send = await dim(home, ["send", "bob", "hello"]);
  assert.equal(send.code, 1);
  assert.match(send.err, /WARNING: bob's keys have CHANGED/);
  assert.match(send.err, /error: not sent: bob's keys changed and must be verified again/);
  const verify = await dim(home, ["contact", "verify", "bob", "--confirm", "--json"]);
  const accepted = JSON.parse(verify.out);
  assert.equal(accepted.keyChanged, false);
  assert.equal(accepted.verified, true);
  assert.notEqual(accepted.safetyNumber, json.safetyNumber, "the number covers the new key");

  const removed = await dim(home, ["contact", "remove", "carol"]);
  assert.equal(removed.code, 0, removed.err);
  assert.match(removed.out, /Removed carol/);
  const again = await dim(home, ["contact", "remove", "carol"]);
  assert.equal(again.code, 1);
  assert.equal(oneErrorLine(again.err), 'error: cannot find contact "carol"');
  const left = JSON.parse((await dim(home, ["contact", "list", "--json"])).out);
  assert.deepEqual(left.map((c: { name: string }) => c.name), ["bob"]);
});

Deno.test("contact verify asks on a terminal and marks verified on yes", async () => {
  await using tmp = await tempDir();
  const home = tmp.path;
  await initUser(home, "Ada");
  const bob = await Identity.generate();
  const db = UserStore.open(`${home}/dim.db`);
  db.contacts.upsert({
    name: "bob",
    userId: bob.id,
    signingPublicKey: bob.signingPublicKey,
    encryptionPublicKey: bob.encryptionPublicKey,
  });
  db.close();
  const no = await dim(home, ["contact", "verify", "bob"], { stdinIsTerminal: true, lines: [""] });
  assert.match(no.err, /Does it match\? Mark bob verified \[y\/N\]/);
  assert.doesNotMatch(no.out, /now verified/);
  const yes = await dim(home, ["contact", "verify", "bob"], {
    stdinIsTerminal: true,
    lines: ["y"],
  });
  assert.match(yes.out, /bob is now verified/);
});

Deno.test("dim config sets and clears the bootstrap and listen lists", async () => {
  await using tmp = await tempDir();
  const home = tmp.path;
  const peer = "12D3KooWLft9H7kDJsGDWAAa7ibs7pjqRV8oA9pfLudYvjUkLftV";
  const address = `/ip4/192.0.2.1/tcp/4001/p2p/${peer}`;
  assert.equal((await dim(home, ["config", "bootstrap", address])).code, 0);
  assert.equal((await dim(home, ["config", "listen", "/ip4/0.0.0.0/tcp/4001"])).code, 0);
  let shown = JSON.parse((await dim(home, ["config", "--json"])).out);
  assert.deepEqual([shown.bootstrap, shown.listen], [[address], ["/ip4/0.0.0.0/tcp/4001"]]);
  assert.equal((await dim(home, ["config", "bootstrap"])).code, 0);
  shown = JSON.parse((await dim(home, ["config", "--json"])).out);
  assert.deepEqual(shown.bootstrap, []);
  const bad = await dim(home, ["config", "bootstrap", "/ip4/192.0.2.1/tcp/4001"]);
  assert.equal(bad.code, 2);
});

Deno.test("every --json output parses as JSON", async () => {
  await using tmp = await tempDir();
  const home = tmp.path;
  await initUser(home, "Ada");
  for (const args of [["id"], ["contact", "list"], ["config"]]) {
    const run = await dim(home, [...args, "--json"]);
    assert.equal(run.code, 0, run.err);
    assert.doesNotThrow(() => JSON.parse(run.out), args.join(" "));
    assert.equal(run.out.trimEnd().split("\n").length, 1);
  }
  assert.equal(PASSPHRASE.length > 0, true);
});

Deno.test("dim config sets the public networks and UPnP, and refuses what is not a network", async () => {
  await using tmp = await tempDir();
  const home = tmp.path;
  assert.equal(
    (await dim(home, ["config", "public-networks", "198.18.0.0/15", "2001:db8::/32"])).code,
    0,
  );
  assert.equal((await dim(home, ["config", "upnp", "off"])).code, 0);
  let shown = JSON.parse((await dim(home, ["config", "--json"])).out);
  assert.deepEqual(shown.publicNetworks, ["198.18.0.0/15", "2001:db8::/32"]);
  assert.equal(shown.upnp, false);
  const text = await dim(home, ["config"]);
  assert.match(text.out, /public-networks: 198\.18\.0\.0\/15, 2001:db8::\/32/);
  assert.match(text.out, /upnp: +off/);
  const file = JSON.parse(await Deno.readTextFile(`${home}/config.json`));
  assert.deepEqual(file, {
    bootstrap: [],
    listen: [],
    publicNetworks: ["198.18.0.0/15", "2001:db8::/32"],
    upnp: false,
  });
  assert.equal((await dim(home, ["config", "upnp", "on"])).code, 0);
  assert.equal((await dim(home, ["config", "public-networks"])).code, 0);
  shown = JSON.parse((await dim(home, ["config", "--json"])).out);
  assert.deepEqual([shown.publicNetworks, shown.upnp], [[], true]);
  for (
    const [args, message] of [
      [["public-networks", "198.18.0.0/33"], /"198\.18\.0\.0\/33" is not a network/],
      [["public-networks", "198.18.0.0"], /is not a network/],
      [["public-networks", "example.com/8"], /is not a network/],
      [["upnp", "maybe"], /takes on or off/],
    ] as const
  ) {
    const bad = await dim(home, ["config", ...args]);
    assert.equal(bad.code, 2, args.join(" "));
    assert.match(oneErrorLine(bad.err), message);
  }
});

Deno.test("DIM_UPNP must be on or off, and dim node --announce takes multiaddrs only", async () => {
  await using tmp = await tempDir();
  const home = tmp.path;
  // The helpers force DIM_UPNP=off, so the variable is read through a context here.
  const ctx = new Context(memoryIo({ env: { DIM_UPNP: "sometimes" } }), { home });
  await assert.rejects(ctx.upnp(), /DIM_UPNP must be on or off, not "sometimes"/);
  const off = new Context(memoryIo({ env: { DIM_UPNP: "off" } }), { home });
  assert.equal(await off.upnp(), false);
  assert.equal(await new Context(memoryIo({ env: {} }), { home }).upnp(), true);
  await dim(home, ["config", "upnp", "off"]);
  assert.equal(await new Context(memoryIo({ env: {} }), { home }).upnp(), false);
  assert.equal(await new Context(memoryIo({ env: { DIM_UPNP: "on" } }), { home }).upnp(), true);

  const bad = await dim(home, ["node", "--listen", "/ip4/127.0.0.1/tcp/0", "--announce", "nope"]);
  assert.equal(bad.code, 2);
  assert.match(oneErrorLine(bad.err), /"nope" is not a multiaddr/);
  const elsewhere = await dim(home, ["status", "--announce", "/ip4/192.0.2.1/tcp/4001"]);
  assert.equal(elsewhere.code, 2);
  assert.match(oneErrorLine(elsewhere.err), /dim status does not take --announce/);
});

Deno.test("dim status shows reachability with its age, the relays and their addresses", async (t) => {
  const now = Date.UTC(2026, 11, 6, 12, 0, 0);
  const relayA = "12D3KooWRelayA";
  const relayB = "12D3KooWRelayB";
  const me = "12D3KooWMe";
  const addresses = [
    `/ip4/198.18.0.1/tcp/4001/p2p/${relayA}/p2p-circuit/p2p/${me}`,
    `/ip4/198.18.1.1/tcp/4001/p2p/${relayB}/p2p-circuit/p2p/${me}`,
    `/ip6/2001:db8::1/tcp/4001/p2p/${relayB}/p2p-circuit/p2p/${me}`,
  ];
  const base: Omit<StatusReport, "reachability"> = {
    id: "dimabc",
    displayName: "Ada",
    peerId: me,
    addresses,
    bootstrap: [],
    joinedThrough: [],
    connections: 3,
    peers: 2,
    routingTable: 2,
    outbox: 0,
    outboxStored: 0,
    contacts: 1,
    keyChanged: [],
  };

  await t.step("ages in words", () => {
    assert.deepEqual(
      [0, 42_000, 5 * 60_000, 3 * 3_600_000, 3 * 86_400_000].map(formatAge),
      ["just now", "42 s ago", "5 min ago", "3 h ago", "3 days ago"],
    );
  });
  await t.step("behind NAT: the relays' IDs, then each with its addresses", () => {
    const reach = {
      status: "private" as const,
      checkedAt: now - 180_000,
      relays: [relayA, relayB],
    };
    const report = reachabilityReport(reach, addresses, now);
    assert.deepEqual(report, {
      status: "private",
      summary: `behind NAT via relays ${relayA}, ${relayB} (checked 3 min ago)`,
      checkedAt: "2026-12-06T11:57:00.000Z",
      ageSeconds: 180,
      relays: [
        { peerId: relayA, addresses: ["/ip4/198.18.0.1/tcp/4001"] },
        { peerId: relayB, addresses: ["/ip4/198.18.1.1/tcp/4001", "/ip6/2001:db8::1/tcp/4001"] },
      ],
      mapped: null,
    });
    const lines = statusLines({ ...base, reachability: report });
    assert.deepEqual(lines.slice(2, 5), [
      `Reachability:   behind NAT via relays ${relayA}, ${relayB} (checked 3 min ago)`,
      `Relays:         ${relayA} at /ip4/198.18.0.1/tcp/4001`,
      `                ${relayB} at /ip4/198.18.1.1/tcp/4001, /ip6/2001:db8::1/tcp/4001`,
    ]);
    assert.equal(lines[5], `Addresses:      ${addresses[0]}`);
    // --json writes the same report as one line.
    assert.deepEqual(
      JSON.parse(JSON.stringify({ ...base, reachability: report })).reachability,
      report,
    );
  });
  await t.step("public, mapped by UPnP, unknown", () => {
    assert.equal(
      describeReachability({ status: "public", checkedAt: now - 7_200_000, relays: [] }, now),
      "public (checked 2 h ago)",
    );
    const mapped = {
      status: "public" as const,
      checkedAt: now,
      relays: [],
      mapped: "/ip4/198.18.0.21/tcp/40001",
    };
    assert.equal(
      describeReachability(mapped, now),
      "mapped by UPnP /ip4/198.18.0.21/tcp/40001 (checked just now)",
    );
    assert.equal(reachabilityReport(mapped, [], now).mapped, "/ip4/198.18.0.21/tcp/40001");
    const unknown = reachabilityReport({ status: "unknown", relays: [] }, [], now);
    assert.deepEqual(
      [unknown.summary, unknown.checkedAt, unknown.ageSeconds, unknown.relays],
      ["unknown (not checked yet)", null, null, []],
    );
    const lines = statusLines({ ...base, addresses: [], reachability: unknown });
    assert.ok(lines.includes("Reachability:   unknown (not checked yet)"));
    assert.ok(!lines.some((l) => l.startsWith("Relays:")));
    assert.ok(lines.includes("Addresses:      (nothing)"));
    assert.equal(
      describeReachability({ status: "private", checkedAt: now, relays: [] }, now),
      "behind NAT, no relay reserved yet (checked just now)",
    );
  });
});
