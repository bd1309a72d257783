// UPnP: the home router offers port mapping (tests/reach/_igd.ts in its
// namespace, mappings as nftables DNAT rules), the user behind it maps its
// port and is then dialed directly, with no relay in the connection.
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { chat, introduce, Scenario } from "./_driver.ts";
import { skipUnlessLab } from "./_lab.ts";

const IGD = fileURLToPath(new URL("./_igd.ts", import.meta.url));
const CONFIG = fileURLToPath(new URL("../../deno.json", import.meta.url));
let ignore = await skipUnlessLab();
if (!ignore && !(await Deno.stat(IGD).then(() => true, () => false))) {
  console.error("tests/reach/upnp_test.ts: skipped, no test gateway (tests/reach/_igd.ts)");
  ignore = true;
}

Deno.test({
  name: "reach: behind a router that offers UPnP, a user maps a port and is dialed directly",
  ignore,
  async fn() {
    await using s = await Scenario.create(2);
    const home = await s.lab.router("home");
    const igd = s.lab.spawn(home, [
      Deno.execPath(),
      "run",
      "--allow-all",
      "--quiet",
      `--config=${CONFIG}`,
      IGD,
      "--wan",
      home.wanDevice,
      "--external-ip",
      home.address,
      "--listen",
      home.lanAddress,
    ]);
    const ready = await igd.stdout.next();
    assert.match(String(ready.value), /"ready"/, igd.stderr);

    const alice = await s.user(await s.lab.publicHost("alice"), "alice");
    const bob = await s.user(await s.lab.hostBehind(home, "bob"), "bob", { upnp: true });
    const reach = await bob.waitReachability(
      (r) => r.status === "public" && r.mapped !== undefined,
      45_000,
      `"public" with a UPnP mapping`,
    );
    const mapped = reach.mapped!;
    assert.ok(mapped.startsWith(`/ip4/${home.address}/tcp/`), mapped);
    const added = await igd.stdout.next();
    assert.match(String(added.value), /"added"/);

    // Alice drops whatever bob opened to her and dials the mapped address
    // itself: a new connection, through the router's DNAT, inbound at bob.
    const address = mapped.includes("/p2p/") ? mapped : `${mapped}/p2p/${bob.peerId}`;
    await alice.call("hang-up", { peer: bob.peerId });
    const dialed = await alice.call<{ peer: string }>("dial", { address });
    assert.equal(dialed.peer, bob.peerId);
    const inbound = (await bob.status()).connections.filter((c) =>
      c.peer === alice.peerId && c.direction === "inbound"
    );
    assert.ok(
      inbound.some((c) => !c.address.includes("/p2p-circuit")),
      `bob was dialed directly: ${JSON.stringify(inbound)}`,
    );

    await introduce(alice, "alice", bob, "bob");
    await chat(alice, bob, "bob", 1, "warm-up");
    const r = await chat(alice, bob, "bob", 10, "mapped");
    console.log(`UPnP: send→display p50 ${r.p50.toFixed(0)} ms`);
    assert.ok(r.p50 <= 2000);
    const toBob = (await alice.status()).connections.filter((c) => c.peer === bob.peerId);
    assert.ok(toBob.length > 0, "alice is connected to bob");
    assert.deepEqual(toBob.filter((c) => c.address.includes("/p2p-circuit")), [], "no relay");
  },
});
