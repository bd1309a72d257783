// LAN discovery in the CLI: on by default, `dim config lan-discovery off`,
// `DIM_LAN=off` (which every CLI test sets), and what `dim status` says. No
// test here starts a node with LAN discovery on: that runs only inside the
// network namespaces of tests/reach/lan_test.ts.
import assert from "node:assert/strict";
import { Context } from "../../lib/cli/context.ts";
import { memoryIo } from "../../lib/cli/io.ts";
import { statusLines } from "../../lib/cli/status.ts";
import { dim, tempDir, TEST_ENV } from "./_helpers.ts";

Deno.test("dim config lan-discovery turns LAN discovery off and on; it is on by default", async () => {
  await using tmp = await tempDir();
  const home = tmp.path;
  let shown = JSON.parse((await dim(home, ["config", "--json"])).out);
  assert.equal(shown.lanDiscovery, true);
  assert.match((await dim(home, ["config"])).out, /lan-discovery: on \(the default\)/);

  assert.equal((await dim(home, ["config", "lan-discovery", "off"])).code, 0);
  shown = JSON.parse((await dim(home, ["config", "--json"])).out);
  assert.equal(shown.lanDiscovery, false);
  assert.match((await dim(home, ["config"])).out, /lan-discovery: off/);
  const file = JSON.parse(await Deno.readTextFile(`${home}/config.json`));
  assert.deepEqual(file, { bootstrap: [], listen: [], lanDiscovery: false });

  assert.equal((await dim(home, ["config", "lan-discovery", "on"])).code, 0);
  assert.equal(JSON.parse((await dim(home, ["config", "--json"])).out).lanDiscovery, true);
  const bad = await dim(home, ["config", "lan-discovery", "maybe"]);
  assert.equal(bad.code, 2);
  assert.match(bad.err, /error: dim config lan-discovery takes on or off/);

  await Deno.writeTextFile(`${home}/config.json`, '{ "lanDiscovery": "yes" }');
  const broken = await dim(home, ["config"]);
  assert.equal(broken.code, 1);
  assert.match(broken.err, /"lanDiscovery" must be true or false/);
});

Deno.test("DIM_LAN overrides the setting, must be on or off, and every CLI test sets it off", async () => {
  await using tmp = await tempDir();
  const home = tmp.path;
  assert.equal(TEST_ENV.DIM_LAN, "off");
  const ctx = (env: Record<string, string>) => new Context(memoryIo({ env }), { home });
  assert.equal(await ctx({}).lanDiscovery(), true);
  assert.equal(await ctx({ DIM_LAN: "" }).lanDiscovery(), true);
  assert.equal(await ctx({ DIM_LAN: "off" }).lanDiscovery(), false);
  await assert.rejects(ctx({ DIM_LAN: "sometimes" }).lanDiscovery(), /DIM_LAN must be on or off/);
  await dim(home, ["config", "lan-discovery", "off"]);
  assert.equal(await ctx({}).lanDiscovery(), false);
  assert.equal(await ctx({ DIM_LAN: "on" }).lanDiscovery(), true);
});

Deno.test("dim status says whether LAN discovery is on", () => {
  const report = {
    id: "dimabc",
    displayName: "Ada",
    peerId: "12D3KooWMe",
    addresses: [],
    bootstrap: [],
    joinedThrough: ["12D3KooWLanPeer"],
    reachability: {
      status: "unknown" as const,
      summary: "unknown (not checked yet)",
      checkedAt: null,
      ageSeconds: null,
      relays: [],
      mapped: null,
    },
    connections: 1,
    peers: 1,
    routingTable: 1,
    outbox: 0,
    outboxStored: 0,
    contacts: 0,
    keyChanged: [],
  };
  const on = statusLines({ ...report, lanDiscovery: true });
  assert.ok(on.includes("LAN discovery:  on (mDNS; dim config lan-discovery off)"), on.join("\n"));
  assert.ok(statusLines({ ...report, lanDiscovery: false }).includes("LAN discovery:  off"));
  assert.ok(!statusLines(report).some((l) => l.startsWith("LAN discovery:")));
});
