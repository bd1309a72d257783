// The lab itself: NAT behaves like a home router's, and nothing is left behind.
import assert from "node:assert/strict";
import { type Host, Lab, labNamespaces, type LabProcess, skipUnlessLab } from "./_lab.ts";

const ignore = await skipUnlessLab();

const SERVER = `
const l = Deno.listen({ hostname: "0.0.0.0", port: Number(Deno.args[0]) });
console.log("listening");
for await (const c of l) {
  const a = c.remoteAddr;
  console.log(a.hostname + ":" + a.port);
  c.close();
}`;

const CLIENT = `
const c = await Deno.connect({ hostname: Deno.args[0], port: Number(Deno.args[1]) });
const a = c.localAddr;
console.log(a.hostname + ":" + a.port);
c.close();`;

/** A TCP server in `host` that prints the address of every client. */
async function server(lab: Lab, host: Host, port: number): Promise<LabProcess> {
  const p = lab.spawn(host, ["deno", "eval", SERVER, String(port)]);
  const first = await p.stdout.next();
  assert.equal(first.value, "listening", p.stderr);
  return p;
}

/** Connects from `host` to address:port; the local address, or undefined on failure. */
async function connect(
  lab: Lab,
  host: Host,
  address: string,
  port: number,
): Promise<string | undefined> {
  const r = await lab.exec(host, ["timeout", "5", "deno", "eval", CLIENT, address, String(port)], {
    check: false,
  });
  return r.code === 0 ? r.stdout.trim() : undefined;
}

Deno.test({
  name: "lab: a host behind NAT reaches the internet under the router's address; nobody dials in",
  ignore,
  async fn() {
    let prefix = "";
    {
      await using lab = await Lab.create();
      prefix = lab.prefix;
      const pub = await lab.publicHost("pub");
      const router = await lab.router("home");
      const bob = await lab.hostBehind(router, "bob");
      assert.match(pub.address, /^198\.1[89]\./);
      assert.match(bob.address, /^192\.168\./);

      const srv = await server(lab, pub, 7000);
      const local = await connect(lab, bob, pub.address, 7000);
      assert.ok(local, "bob reaches the public host");
      const seen = await srv.stdout.next();
      assert.equal(seen.value?.split(":")[0], router.address, "the public host sees the router");

      const bobSrv = await server(lab, bob, 7001);
      assert.equal(await connect(lab, pub, bob.address, 7001), undefined, "no route to a LAN");
      assert.equal(await connect(lab, pub, router.address, 7001), undefined, "no port forward");
      await bobSrv.stop();
      await srv.stop();
    }
    const left = (await labNamespaces()).filter((n) => n.startsWith(prefix));
    assert.deepEqual(left, [], "every namespace of the lab is gone");
  },
});

Deno.test({
  name: "lab: carrier-grade NAT in front of a home router, and random port mapping",
  ignore,
  async fn() {
    await using lab = await Lab.create();
    const pub = await lab.publicHost("pub");
    const carrier = await lab.router("cgn", { lanNet: "100.64" });
    const home = await lab.router("home", { behind: carrier });
    const carol = await lab.hostBehind(home, "carol");
    const random = await lab.router("rnd", { randomPorts: true });
    const dave = await lab.hostBehind(random, "dave");
    assert.match(home.address, /^100\.64\./);

    const srv = await server(lab, pub, 7000);
    assert.ok(await connect(lab, carol, pub.address, 7000), "through two NATs");
    assert.equal((await srv.stdout.next()).value?.split(":")[0], carrier.address);

    // Random mapping: the port the server sees is not the client's own.
    let differs = 0;
    for (let i = 0; i < 3; i++) {
      const local = await connect(lab, dave, pub.address, 7000);
      assert.ok(local);
      const seen = (await srv.stdout.next()).value!;
      assert.equal(seen.split(":")[0], random.address);
      if (seen.split(":")[1] !== local.split(":")[1]) differs++;
    }
    assert.ok(differs >= 2, "masquerade random,fully-random picks new ports");

    const blocked = await lab.publicHost("other");
    await lab.blackhole(pub);
    assert.equal(await connect(lab, blocked, pub.address, 7000), undefined, "a blackholed host");
    await lab.restore(pub);
    assert.ok(await connect(lab, blocked, pub.address, 7000), "restored");
  },
});
