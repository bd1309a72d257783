// LAN discovery: users on one local network, with no bootstrap node at all,
// find each other over mDNS, add each other by ID and chat; a libp2p peer
// that answers DIM's mDNS service but does not speak DIM is dropped, and one
// on libp2p's usual service is never even found. mDNS runs only inside the
// lab's namespaces (one bridge, addresses from 198.18.0.0/15).
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { introduce, type Peer, Scenario } from "./_driver.ts";
import { type Host, Lab, type LabProcess, skipUnlessLab } from "./_lab.ts";
import { LAN_SERVICE_TAG } from "../../lib/dht/constants.ts";

const ignore = await skipUnlessLab();

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const CLI = fileURLToPath(new URL("../../cli.ts", import.meta.url));
const LAN_NODE = fileURLToPath(new URL("./_lan_node.ts", import.meta.url));

/** A host on the lab's bridge that can send multicast (it has no default route). */
async function lanHost(lab: Lab, name: string): Promise<Host> {
  const host = await lab.publicHost(name);
  await lab.exec(host, ["ip", "route", "add", "224.0.0.0/4", "dev", "eth0"]);
  return host;
}

/** Waits until `peer` has a connection to `other`. */
async function waitConnected(peer: Peer, other: Peer, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const { connections } = await peer.status();
    if (connections.some((c) => c.peer === other.peerId)) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${peer.name} never connected to ${other.name}\n${peer.describe()}`);
}

/**
 * Runs `dim --home <home> …args` in a host's namespace, with LAN discovery
 * as the CLI has it by default (`DIM_LAN` unset).
 */
async function dim(
  lab: Lab,
  host: Host,
  home: string,
  args: readonly string[],
): Promise<{ code: number; out: string; err: string }> {
  const r = await lab.exec(host, [
    "env",
    "-u",
    "DIM_LAN",
    "DIM_PASSPHRASE=quiet lantern mosses orbit under carol's window",
    "DIM_UPNP=off",
    "NO_COLOR=1",
    Deno.execPath(),
    "run",
    "--quiet",
    "-A",
    `--config=${ROOT}deno.json`,
    CLI,
    "--home",
    home,
    ...args,
  ], { check: false, timeoutMs: 40_000 });
  return { code: r.code, out: r.stdout, err: r.stderr };
}

Deno.test({
  name: "reach: two users on one LAN, no bootstrap, find each other over mDNS, add by ID and chat",
  ignore,
  async fn() {
    await using s = await Scenario.create(0);
    assert.deepEqual(s.bootstrap(), []);
    const [aliceHost, bobHost, carolHost] = [
      await lanHost(s.lab, "alice"),
      await lanHost(s.lab, "bob"),
      await lanHost(s.lab, "carol"),
    ];
    const alice = await s.user(aliceHost, "alice", { lanDiscovery: true });
    const bob = await s.user(bobHost, "bob", { lanDiscovery: true });
    await waitConnected(alice, bob);
    await waitConnected(bob, alice);

    // Cards resolve through the LAN peer: the only other node there is.
    await introduce(alice, "alice", bob, "bob");
    for (const [from, to, name] of [[alice, bob, "bob"], [bob, alice, "alice"]] as const) {
      const text = `${from.name} to ${to.name} over the LAN`;
      const { seq } = await from.call<{ seq: number }>("send", { to: name, text });
      const got = await to.waitUntil(
        () => to.messages().find((m) => m.text === text),
        15_000,
        `"${text}"`,
      );
      assert.equal(got.via, "direct");
      await from.waitEvent(
        (e) => e.event === "status" && e.seq === seq && e.state === "delivered",
        15_000,
        `"delivered" for "${text}"`,
      );
    }

    // The CLI has LAN discovery on by default: a third user, with no
    // bootstrap node either, adds alice by ID and writes to her.
    const home = `${s.dir}/carol`;
    const init = await dim(s.lab, carolHost, home, ["init", "--name", "carol"]);
    assert.equal(init.code, 0, init.err);
    const listen = ["--listen", `/ip4/${carolHost.address}/tcp/0`];
    const added = await dim(s.lab, carolHost, home, [
      ...listen,
      "contact",
      "add",
      "alice",
      alice.userId,
    ]);
    assert.equal(added.code, 0, added.err);
    const sent = await dim(s.lab, carolHost, home, [
      ...listen,
      "send",
      "alice",
      "hello from carol",
    ]);
    assert.equal(sent.code, 0, sent.err);
    await alice.waitUntil(
      () => alice.messages().find((m) => m.text === "hello from carol"),
      15_000,
      "carol's message",
    );
    const status = await dim(s.lab, carolHost, home, [...listen, "status", "--json"]);
    assert.equal(status.code, 0, status.err);
    const report = JSON.parse(status.out);
    assert.equal(report.lanDiscovery, true);
    assert.ok(
      report.joinedThrough.some((p: string) => p === alice.peerId || p === bob.peerId),
      `joined through the LAN peers: ${status.out}`,
    );
  },
});

/** A `_lan_node.ts` process and the JSON lines it wrote. */
class LanNode {
  readonly process: LabProcess;
  readonly events: Record<string, unknown>[] = [];
  readonly ready: Promise<string>;

  constructor(lab: Lab, host: Host, config: Record<string, unknown>) {
    const process = lab.spawn(host, [
      Deno.execPath(),
      "run",
      "--allow-all",
      "--quiet",
      `--config=${ROOT}deno.json`,
      LAN_NODE,
      JSON.stringify({ listen: `/ip4/${host.address}/tcp/0`, ...config }),
    ]);
    this.process = process;
    (async () => {
      for await (const line of process.stdout) {
        try {
          this.events.push(JSON.parse(line));
        } catch { /* not ours */ }
      }
    })().catch(() => {});
    this.ready = this.until((e) => e.event === "ready", 30_000, "ready").then((e) =>
      String(e.peerId)
    );
  }

  /** Waits until an event matches. */
  async until(
    match: (e: Record<string, unknown>) => boolean,
    timeoutMs: number,
    what: string,
  ): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const e = this.events.find(match);
      if (e) return e;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`no ${what} within ${timeoutMs} ms\n${this.process.stderr}`);
  }
}

Deno.test({
  name: "reach: a LAN peer that does not speak DIM is dropped; other mDNS services are never found",
  ignore,
  async fn() {
    await using lab = await Lab.create();
    const [dimHost, plainHost, otherHost] = [
      await lanHost(lab, "dim"),
      await lanHost(lab, "plain"),
      await lanHost(lab, "other"),
    ];
    // A libp2p peer answering DIM's service, and one on libp2p's usual service.
    const plain = new LanNode(lab, plainHost, { mode: "plain", serviceTag: LAN_SERVICE_TAG });
    const other = new LanNode(lab, otherHost, { mode: "plain" });
    const [plainId, otherId] = [await plain.ready, await other.ready];
    const dim = new LanNode(lab, dimHost, { mode: "dim" });
    const dimId = await dim.ready;

    await dim.until(
      (e) => e.event === "log" && String(e.message).includes(`${plainId} does not speak`),
      15_000,
      "the plain peer dropped",
    );
    // The DIM node did dial it (and then hung up).
    await plain.until((e) => e.event === "connection" && e.peer === dimId, 5_000, "a connection");
    const from = dim.events.length;
    const state = await dim.until(
      (e) => dim.events.indexOf(e) >= from && e.event === "state",
      5_000,
      "the state after the drop",
    );
    assert.ok(!(state.peers as string[]).includes(plainId), "hung up");
    assert.ok(!(state.known as string[]).includes(plainId), "removed from the peer store");
    assert.deepEqual(state.lan, [], "not kept as a LAN peer");
    // `other` queries every second and the DIM node queried at start: had
    // either answered the other's service, they would have met by now.
    assert.ok(!dim.events.some((e) => JSON.stringify(e).includes(otherId)), "other never found");
    assert.ok(!other.events.some((e) => e.event === "connection"), "other never dialed");
  },
});
