/**
 * LAN discovery's rules (lib/dht/_lan.ts) without a network: which
 * addresses of an mDNS answer are dialed, which peers are kept or dropped,
 * the limits, and the service on fake libp2p components. Nothing here sends
 * mDNS; the real thing runs in tests/reach/lan_test.ts, inside namespaces.
 */
import assert from "node:assert/strict";
import { generateKeyPair } from "@libp2p/crypto/keys";
import type { Connection, PeerDiscovery, PeerId, PeerInfo } from "@libp2p/interface";
import { peerIdFromPrivateKey } from "@libp2p/peer-id";
import { type Multiaddr, multiaddr } from "@multiformats/multiaddr";
import { PeerUnreachableError } from "../../lib/errors.ts";
import {
  LAN_MAX_ADDRESSES,
  LAN_REJECT_MS,
  LAN_RETRY_MS,
  LAN_SERVICE_TAG,
} from "../../lib/dht/constants.ts";
import {
  lanAddresses,
  type LanComponents,
  LanDiscovery,
  type LanHost,
  LanPeers,
} from "../../lib/dht/_lan.ts";

const KAD = "/dim/kad/1.0.0";
const LAN = "/ip4/192.168.1.20/tcp/4001";

async function newPeer(): Promise<PeerId> {
  return peerIdFromPrivateKey(await generateKeyPair("Ed25519"));
}

function info(id: PeerId, addresses: readonly string[] = [LAN]): PeerInfo {
  return { id, multiaddrs: addresses.map((a) => multiaddr(a)) };
}

/** Waits until `check` holds, polling. */
async function until(check: () => boolean, what: string, ms = 2_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A host whose peers speak what `speaks` says; records dials and drops. */
class FakeHost implements LanHost {
  readonly dialed: { peer: string; addresses: string[] }[] = [];
  readonly dropped: string[] = [];
  readonly speaks = new Map<string, string[]>();
  /** Dials wait for this when set. */
  gate: Promise<void> | undefined;
  /** Dials fail when set. */
  unreachable = false;

  async protocolsOf(peer: PeerId, addresses: Multiaddr[], signal: AbortSignal): Promise<string[]> {
    this.dialed.push({ peer: peer.toString(), addresses: addresses.map(String) });
    if (this.gate) {
      await Promise.race([
        this.gate,
        new Promise((_, reject) => signal.addEventListener("abort", () => reject(signal.reason))),
      ]);
    }
    if (this.unreachable) throw new Error("connection refused");
    return this.speaks.get(peer.toString()) ?? ["/ipfs/id/1.0.0"];
  }

  drop(peer: PeerId): Promise<void> {
    this.dropped.push(peer.toString());
    return Promise.resolve();
  }
}

Deno.test("an mDNS answer is dialed only on private, non-loopback TCP addresses, a few at most", async () => {
  const peer = await newPeer();
  const given = [
    "/ip4/8.8.8.8/tcp/4001", // the internet
    "/ip4/127.0.0.1/tcp/4001", // this machine
    "/ip6/::1/tcp/4001",
    "/ip4/192.168.1.20/udp/4001/quic-v1",
    "/dns4/example.lan/tcp/4001",
    "/ip4/192.168.1.20/tcp/4001/p2p/12D3KooWRelay/p2p-circuit",
    "/ip4/192.168.1.20/tcp/4001",
    "/ip6/fd00::20/tcp/4001",
    ...Array.from({ length: 10 }, (_, i) => `/ip4/10.0.0.${i + 1}/tcp/4001`),
  ].map((a) => multiaddr(a));
  const kept = lanAddresses(peer, given).map(String);
  assert.equal(kept.length, LAN_MAX_ADDRESSES);
  assert.deepEqual(kept.slice(0, 3), [
    `/ip4/192.168.1.20/tcp/4001/p2p/${peer}`,
    `/ip6/fd00::20/tcp/4001/p2p/${peer}`,
    `/ip4/10.0.0.1/tcp/4001/p2p/${peer}`,
  ]);
  assert.deepEqual(lanAddresses(peer, [multiaddr("/ip4/93.184.216.34/tcp/1")]), []);
});

Deno.test("a LAN peer that speaks DIM's kad protocol is kept; one that does not is dropped and left alone", async () => {
  let now = 1_000_000;
  const self = await newPeer();
  const [dim, plain] = [await newPeer(), await newPeer()];
  const host = new FakeHost();
  host.speaks.set(dim.toString(), ["/ipfs/id/1.0.0", KAD]);
  const logs: string[] = [];
  const peers = new LanPeers(host, {
    protocol: KAD,
    self: self.toString(),
    clock: () => now,
    log: (m) => logs.push(m),
  });
  peers.discovered(info(self));
  peers.discovered(info(dim));
  peers.discovered(info(plain));
  await until(() => host.dropped.length === 1 && peers.peers.length === 1, "both checks");
  assert.deepEqual(peers.peers, [dim.toString()]);
  assert.deepEqual(host.dropped, [plain.toString()]);
  assert.deepEqual(host.dialed.map((d) => d.peer), [dim.toString(), plain.toString()]);
  assert.ok(logs.some((l) => l.includes(`${plain} does not speak ${KAD}: dropped`)), logs.join());

  // Answers every 10 s: the kept peer and the dropped one are not dialed again…
  peers.discovered(info(dim));
  peers.discovered(info(plain));
  now += LAN_REJECT_MS - 1;
  peers.discovered(info(plain));
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(host.dialed.length, 2);
  // …until the dropped one's quiet time is over, or the kept one disconnects.
  now += 1;
  peers.lost(dim.toString());
  peers.discovered(info(plain));
  peers.discovered(info(dim));
  await until(() => host.dialed.length === 4, "the checks again");
  await peers.close();
});

Deno.test("a LAN peer that cannot be dialed is tried again after a while, and dropping nothing", async () => {
  let now = 0;
  const peer = await newPeer();
  const host = new FakeHost();
  host.unreachable = true;
  const peers = new LanPeers(host, { protocol: KAD, self: "me", clock: () => now });
  peers.discovered(info(peer));
  await until(() => host.dialed.length === 1, "the dial");
  await new Promise((r) => setTimeout(r, 20));
  peers.discovered(info(peer));
  assert.equal(host.dialed.length, 1);
  now += LAN_RETRY_MS;
  host.unreachable = false;
  host.speaks.set(peer.toString(), [KAD]);
  peers.discovered(info(peer));
  await until(() => peers.peers.length === 1, "the peer kept");
  assert.deepEqual(host.dropped, []);
  await peers.close();
});

Deno.test("LAN discovery is bounded: checks at once, checks and answers per minute, peers kept", async (t) => {
  const many = await Promise.all(Array.from({ length: 12 }, () => newPeer()));

  await t.step("checks at once", async () => {
    const host = new FakeHost();
    let open = () => {};
    host.gate = new Promise((resolve) => open = resolve);
    const peers = new LanPeers(host, { protocol: KAD, self: "me", maxChecks: 3 });
    for (const p of many) peers.discovered(info(p));
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(host.dialed.length, 3);
    assert.equal(peers.ignored, many.length - 3);
    open();
    await peers.close();
  });

  await t.step("checks per minute", async () => {
    let now = 0;
    const host = new FakeHost();
    const peers = new LanPeers(host, {
      protocol: KAD,
      self: "me",
      clock: () => now,
      checksPerMinute: 5,
      maxChecks: 100,
    });
    for (const p of many) peers.discovered(info(p));
    await until(() => host.dropped.length === 5, "five checks");
    for (const p of many) peers.discovered(info(p));
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(host.dialed.length, 5);
    now += 60_000;
    for (const p of many) peers.discovered(info(p));
    await until(() => host.dialed.length === 10, "five more the next minute");
    await peers.close();
  });

  await t.step("answers per minute", async () => {
    let now = 0;
    const host = new FakeHost();
    const peers = new LanPeers(host, {
      protocol: KAD,
      self: "me",
      clock: () => now,
      eventsPerMinute: 4,
    });
    // The same kept peer answering over and over uses the minute's budget.
    host.speaks.set(many[0]!.toString(), [KAD]);
    peers.discovered(info(many[0]!));
    await until(() => peers.peers.length === 1, "the first peer kept");
    for (let i = 0; i < 3; i++) peers.discovered(info(many[0]!));
    peers.discovered(info(many[1]!));
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(host.dialed.length, 1);
    now += 60_000;
    peers.discovered(info(many[1]!));
    await until(() => host.dialed.length === 2, "the new peer checked the next minute");
    await peers.close();
  });

  await t.step("peers kept", async () => {
    const host = new FakeHost();
    for (const p of many) host.speaks.set(p.toString(), [KAD]);
    const peers = new LanPeers(host, { protocol: KAD, self: "me", maxPeers: 2, maxChecks: 1 });
    for (const p of many) {
      peers.discovered(info(p));
      await new Promise((r) => setTimeout(r, 5));
    }
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(peers.peers.length, 2);
    assert.equal(host.dialed.length, 2);
    await peers.close();
  });
});

Deno.test("a misbehaving LAN peer or host never throws out of LAN discovery", async () => {
  const host = new FakeHost();
  host.drop = () => Promise.reject(new Error("already gone"));
  const logs: string[] = [];
  const peers = new LanPeers(host, { protocol: KAD, self: "me", log: (m) => logs.push(m) });
  const strange = [
    { id: { toString: () => "12D3KooWx" }, multiaddrs: "not a list" },
    { id: undefined, multiaddrs: [] },
    { id: { toString: () => "12D3KooWy" }, multiaddrs: [{ getComponents: () => null }] },
  ] as unknown as PeerInfo[];
  for (const s of strange) peers.discovered(s);
  const plain = await newPeer();
  peers.discovered(info(plain));
  await until(() => logs.some((l) => l.includes("could not drop")), "the failed drop logged");
  assert.ok(logs.some((l) => l.startsWith("LAN: ignored an mDNS answer")), logs.join("\n"));
  await peers.close();
});

Deno.test("waiting for a LAN peer ends when one is kept, or after the time given", async () => {
  const host = new FakeHost();
  const peers = new LanPeers(host, { protocol: KAD, self: "me" });
  assert.equal(await peers.waitForPeer(30), false);
  const peer = await newPeer();
  host.speaks.set(peer.toString(), [KAD]);
  const waiting = peers.waitForPeer(5_000);
  peers.discovered(info(peer));
  assert.equal(await waiting, true);
  assert.equal(await peers.waitForPeer(0), true);
  await peers.close();
});

Deno.test("closing stops the checks in progress", async () => {
  const host = new FakeHost();
  host.gate = new Promise(() => {});
  const peers = new LanPeers(host, { protocol: KAD, self: "me" });
  peers.discovered(info(await newPeer()));
  await until(() => host.dialed.length === 1, "the dial");
  await peers.close();
  assert.deepEqual(host.dropped, []);
  assert.deepEqual(peers.peers, []);
});

/** libp2p's components, faked: identify answers after each dial with `speaks`. */
async function fakeComponents(speaks: Map<string, string[]>) {
  const events = new EventTarget();
  const self = await newPeer();
  const closed: string[] = [];
  const deleted: string[] = [];
  const source = Object.assign(new EventTarget(), {
    started: 0,
    stopped: 0,
    start() {
      this.started++;
    },
    stop() {
      this.stopped++;
    },
  });
  const components: LanComponents = {
    peerId: self,
    addressManager: { getAddresses: () => [] },
    logger: { forComponent: () => Object.assign(() => {}, { enabled: false }) } as never,
    events,
    peerStore: {
      get: () => Promise.reject(new Error("not found")),
      delete: (peer: PeerId) => {
        deleted.push(peer.toString());
        return Promise.resolve();
      },
    },
    connectionManager: {
      openConnection(target: Multiaddr[]) {
        const id = target[0]!.getComponents().findLast((c) => c.name === "p2p")!.value!;
        const peerId = { equals: (other: PeerId) => other.toString() === id };
        // identify runs once the connection is open.
        setTimeout(() =>
          events.dispatchEvent(
            new CustomEvent("peer:identify", {
              detail: { peerId, protocols: speaks.get(id) ?? [] },
            }),
          ), 5);
        return Promise.resolve({} as Connection);
      },
      closeConnections(peer: PeerId) {
        closed.push(peer.toString());
        return Promise.resolve();
      },
    },
  };
  return { components, events, closed, deleted, source };
}

Deno.test("the LAN service dials what mDNS finds, keeps DIM peers and forgets the others", async () => {
  const speaks = new Map<string, string[]>();
  const { components, events, closed, deleted, source } = await fakeComponents(speaks);
  const logs: string[] = [];
  const lan = new LanDiscovery(components, {
    protocol: KAD,
    log: (m) => logs.push(m),
    clock: Date.now,
    discovery: () => source as unknown as PeerDiscovery,
  });
  await lan.afterStart();
  assert.equal(source.started, 1);
  const [dim, plain] = [await newPeer(), await newPeer()];
  speaks.set(dim.toString(), [KAD]);
  speaks.set(plain.toString(), ["/ipfs/kad/1.0.0"]);
  for (const p of [dim, plain]) source.dispatchEvent(new CustomEvent("peer", { detail: info(p) }));
  await until(() => lan.peers.length === 1 && deleted.length === 1, "both checked");
  assert.deepEqual(lan.peers, [dim.toString()]);
  assert.deepEqual([closed, deleted], [[plain.toString()], [plain.toString()]]);

  // A node whose start dials reached nobody: the LAN peer counts.
  const joined: string[] = [];
  await lan.join({
    connections: () => 1,
    routingTableSize: () => 1,
    joined: (p) => joined.push(p),
    requireBootstrap: true,
    bootstrap: ["/ip4/198.51.100.1/tcp/4001/p2p/12D3KooWBoot"],
  }, new AbortController().signal);
  assert.deepEqual(joined, [dim.toString()]);

  events.dispatchEvent(new CustomEvent("peer:disconnect", { detail: dim }));
  assert.deepEqual(lan.peers, []);
  await lan.stop();
  assert.equal(source.stopped, 1);
  assert.equal(LAN_SERVICE_TAG, "_dim._udp.local");
});

Deno.test("a node that reached nobody, bootstrap nor LAN, fails to join when it requires bootstrap", async () => {
  const { components, source } = await fakeComponents(new Map());
  const lan = new LanDiscovery(components, {
    protocol: KAD,
    log: () => {},
    clock: Date.now,
    discovery: () => source as unknown as PeerDiscovery,
  });
  await lan.afterStart();
  const init = {
    connections: () => 0,
    routingTableSize: () => 0,
    joined: () => {},
    requireBootstrap: true,
    bootstrap: ["/ip4/198.51.100.1/tcp/4001/p2p/12D3KooWBoot"],
  };
  const started = performance.now();
  await assert.rejects(
    lan.join(init, new AbortController().signal),
    (err: Error) =>
      err instanceof PeerUnreachableError &&
      /none of the 1 bootstrap peers answered, nor any peer known before or found on the local network/
        .test(err.message),
  );
  assert.ok(performance.now() - started >= 2_900, "waited for a LAN peer");
  await lan.stop();
});
