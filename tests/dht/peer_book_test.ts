/**
 * The peer book's rules, on an injected clock: when a peer was seen and on
 * how many occasions, how it was learned, which peers it forgets first,
 * join hints, the learned bootstrap list's rules against poisoning, and
 * its file format.
 */
import assert from "node:assert/strict";
import { networkOf, PeerBook } from "../../lib/dht/_peer_book.ts";
import {
  JOIN_HINT_SOURCES,
  LEARNED_BOOTSTRAP_CAP,
  LEARNED_STALE_MS,
  PEER_BOOK_CAPACITY,
  PEER_OCCASION_GAP_MS,
} from "../../lib/dht/constants.ts";

const SELF = "12D3KooWSelf";
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

function book(bootstrap: readonly string[] = []) {
  const clock = { now: 1_000_000 };
  return { clock, book: new PeerBook({ self: SELF, bootstrap, clock: () => clock.now }) };
}

function at(ip: string, peerId: string): string {
  return `/ip4/${ip}/tcp/4001/p2p/${peerId}`;
}

/** Sees `peerId` dialled on `address` three times over two hours: it then qualifies. */
function seeQualified(
  b: PeerBook,
  clock: { now: number },
  peerId: string,
  address: string,
): void {
  for (let i = 0; i < 3; i++) {
    b.seen(peerId, { dialed: address });
    clock.now += HOUR;
  }
}

Deno.test("seen() records first and last seen, and counts occasions at least the gap apart", () => {
  const { clock, book: b } = book();
  const start = clock.now;
  b.seen("12D3KooWA", { dialed: at("198.51.100.1", "12D3KooWA") });
  clock.now += PEER_OCCASION_GAP_MS - 1;
  b.seen("12D3KooWA");
  let [peer] = b.remembered;
  assert.equal(peer?.occasions, 1);
  assert.equal(peer?.firstSeen, start);
  assert.equal(peer?.lastSeen, clock.now);
  clock.now += PEER_OCCASION_GAP_MS;
  b.seen("12D3KooWA");
  [peer] = b.remembered;
  assert.equal(peer?.occasions, 2);
  assert.deepEqual(peer?.multiaddrs, [at("198.51.100.1", "12D3KooWA")]);
  // A clock set back is no new occasion and does not move lastSeen back.
  const last = clock.now;
  clock.now -= 3 * HOUR;
  b.seen("12D3KooWA");
  assert.equal(b.remembered[0]?.occasions, 2);
  assert.equal(b.remembered[0]?.lastSeen, last);
});

Deno.test("remembered peers are listed most recently seen first; this node never", () => {
  const { clock, book: b } = book();
  for (const id of ["12D3KooWA", "12D3KooWB", "12D3KooWC"]) {
    b.seen(id);
    clock.now += MINUTE;
  }
  b.seen(SELF);
  b.seen("12D3KooWA");
  assert.deepEqual(b.remembered.map((p) => p.peerId), ["12D3KooWA", "12D3KooWC", "12D3KooWB"]);
});

Deno.test("a peer's source is the bootstrap list, the newest hint naming it, or the network", () => {
  const { book: b } = book(["12D3KooWBoot"]);
  b.addJoinHints([at("198.51.100.2", "12D3KooWHinted")], "hint:dimold");
  b.addJoinHints([at("198.51.100.3", "12D3KooWHinted")], "contact:dimnew");
  b.seen("12D3KooWBoot");
  b.seen("12D3KooWHinted");
  b.seen("12D3KooWStranger");
  const sources = Object.fromEntries(b.remembered.map((p) => [p.peerId, p.source]));
  assert.deepEqual(sources, {
    "12D3KooWBoot": "bootstrap",
    "12D3KooWHinted": "contact:dimnew",
    "12D3KooWStranger": "network",
  });
});

Deno.test("announced addresses follow the dialled one, direct before relayed, wildcards left off", () => {
  const { book: b } = book();
  const dialed = at("198.51.100.1", "12D3KooWA");
  b.seen("12D3KooWA", { dialed });
  b.announced("12D3KooWA", [
    "/ip4/198.51.100.9/tcp/1/p2p/12D3KooWR/p2p-circuit",
    "/ip4/0.0.0.0/tcp/4001",
    "/ip4/10.0.0.1/tcp/4001",
  ]);
  assert.deepEqual(b.remembered[0]?.multiaddrs, [
    dialed,
    "/ip4/10.0.0.1/tcp/4001/p2p/12D3KooWA",
    "/ip4/198.51.100.9/tcp/1/p2p/12D3KooWR/p2p-circuit/p2p/12D3KooWA",
  ]);
  // Nothing is remembered of a peer only announced, never connected to.
  b.announced("12D3KooWUnknown", ["/ip4/10.0.0.2/tcp/1"]);
  assert.equal(b.remembered.length, 1);
});

Deno.test("beyond its capacity the book forgets the least recently seen, never a learned bootstrap peer", () => {
  const { clock, book: b } = book();
  seeQualified(b, clock, "12D3KooWOld", at("198.51.100.1", "12D3KooWOld"));
  assert.equal(b.learnedBootstrap.length, 1);
  for (let i = 0; i < PEER_BOOK_CAPACITY; i++) {
    clock.now += 1;
    b.seen(`12D3KooWP${i}`);
  }
  const ids = b.remembered.map((p) => p.peerId);
  assert.equal(ids.length, PEER_BOOK_CAPACITY);
  assert.ok(ids.includes("12D3KooWOld"), "the learned peer is kept");
  assert.ok(!ids.includes("12D3KooWP0"), "the least recently seen other peer is forgotten");
  assert.ok(ids.includes("12D3KooWP1"));
});

Deno.test("the learned bootstrap list", async (t) => {
  await t.step("takes a peer dialled on three occasions over at least an hour", () => {
    const { clock, book: b } = book();
    seeQualified(b, clock, "12D3KooWA", at("198.51.100.1", "12D3KooWA"));
    assert.deepEqual(b.learnedBootstrap.map((p) => p.peerId), ["12D3KooWA"]);
  });

  await t.step("does not take a peer seen once, however long it stayed connected", () => {
    const { clock, book: b } = book();
    b.seen("12D3KooWA", { dialed: at("198.51.100.1", "12D3KooWA") });
    for (let i = 0; i < 20; i++) {
      clock.now += 30_000;
      b.seen("12D3KooWA"); // Still connected: touched, no new occasion.
    }
    assert.equal(b.remembered[0]?.occasions, 1);
    assert.deepEqual(b.learnedBootstrap, []);
  });

  await t.step("does not take occasions within less than an hour", () => {
    const { clock, book: b } = book();
    for (let i = 0; i < 5; i++) {
      b.seen("12D3KooWA", { dialed: at("198.51.100.1", "12D3KooWA") });
      clock.now += PEER_OCCASION_GAP_MS;
    }
    assert.equal(b.remembered[0]?.occasions, 5);
    assert.ok(b.remembered[0]!.lastSeen - b.remembered[0]!.firstSeen < HOUR);
    assert.deepEqual(b.learnedBootstrap, []);
  });

  await t.step("does not take a peer only reached through a relay, or that only dialled in", () => {
    const { clock, book: b } = book();
    const relayed = "/ip4/198.51.100.9/tcp/1/p2p/12D3KooWR/p2p-circuit/p2p/12D3KooWA";
    seeQualified(b, clock, "12D3KooWA", relayed);
    for (let i = 0; i < 3; i++, clock.now += HOUR) b.seen("12D3KooWInbound");
    assert.deepEqual(b.learnedBootstrap, []);
  });

  await t.step("a flood of peers on one /16 gets two places", () => {
    const { clock, book: b } = book();
    for (let i = 0; i < 10; i++) {
      const id = `12D3KooWSame${i}`;
      // Each from another contact, so that only the network rule applies.
      b.addJoinHints([at(`203.0.${i}.1`, id)], `contact:dimuser${i}`);
      seeQualified(b, clock, id, at(`203.0.${i}.1`, id));
    }
    assert.equal(b.learnedBootstrap.length, 2);
  });

  await t.step("IPv6 peers are grouped by /48", () => {
    const { clock, book: b } = book();
    for (let i = 0; i < 4; i++) {
      const id = `12D3KooWSix${i}`;
      b.addJoinHints([`/ip6/2001:db8:1:${i}::1/tcp/1/p2p/${id}`], `hint:dimuser${i}`);
      seeQualified(b, clock, id, `/ip6/2001:db8:1:${i}::1/tcp/1/p2p/${id}`);
    }
    assert.equal(b.learnedBootstrap.length, 2);
  });

  await t.step("a flood of peers from one source gets two places", () => {
    const { clock, book: b } = book();
    const addresses = Array.from({ length: 3 }, (_, i) => at(`10${i}.1.0.1`, `12D3KooWH${i}`));
    b.addJoinHints(addresses, "hint:dimmallory");
    for (let i = 0; i < 10; i++) {
      const id = `12D3KooWNet${i}`;
      seeQualified(b, clock, id, at(`${20 + i}.1.0.1`, id));
    }
    for (let i = 0; i < 3; i++) seeQualified(b, clock, `12D3KooWH${i}`, addresses[i]!);
    const sources = b.learnedBootstrap.map((p) => p.source);
    assert.equal(sources.filter((s) => s === "network").length, 2);
    assert.equal(sources.filter((s) => s === "hint:dimmallory").length, 2);
    assert.equal(sources.length, 4);
  });

  await t.step(
    "holds at most the cap; a newcomer replaces the least recently seen stale member",
    () => {
      const { clock, book: b } = book();
      const ids: string[] = [];
      for (let i = 0; i < LEARNED_BOOTSTRAP_CAP; i++) {
        const id = `12D3KooWM${i}`;
        ids.push(id);
        b.addJoinHints([at(`${30 + i}.1.0.1`, id)], `contact:dimm${i}`);
        seeQualified(b, clock, id, at(`${30 + i}.1.0.1`, id));
      }
      assert.equal(b.learnedBootstrap.length, LEARNED_BOOTSTRAP_CAP);
      b.addJoinHints([at("90.1.0.1", "12D3KooWNew")], "contact:dimnew");
      seeQualified(b, clock, "12D3KooWNew", at("90.1.0.1", "12D3KooWNew"));
      assert.ok(!b.learnedBootstrap.some((p) => p.peerId === "12D3KooWNew"), "the list is full");

      // Members 0..7 were last seen in that order; all but 5 and 6 are seen again.
      clock.now += LEARNED_STALE_MS;
      for (const id of ids.filter((_, i) => i !== 5 && i !== 6)) b.seen(id);
      for (let i = 0; i < 3; i++, clock.now += HOUR) b.seen("12D3KooWNew");
      const learned = b.learnedBootstrap.map((p) => p.peerId);
      assert.ok(learned.includes("12D3KooWNew"));
      assert.ok(!learned.includes("12D3KooWM5"), "the least recently seen stale member gave way");
      assert.ok(learned.includes("12D3KooWM6"));
      assert.equal(learned.length, LEARNED_BOOTSTRAP_CAP);
    },
  );

  await t.step("forgetting a peer takes it off the list", () => {
    const { clock, book: b } = book();
    seeQualified(b, clock, "12D3KooWA", at("198.51.100.1", "12D3KooWA"));
    b.forget("12D3KooWA");
    assert.deepEqual(b.learnedBootstrap, []);
    assert.deepEqual(b.remembered, []);
  });
});

Deno.test("join hints: bounded per source, replaced per source, oldest source forgotten", () => {
  const { clock, book: b } = book();
  const many = Array.from({ length: 5 }, (_, i) => at(`198.51.100.${i}`, `12D3KooWX${i}`));
  assert.equal(b.addJoinHints(many, "hint:dimada"), 3);
  assert.equal(
    b.addJoinHints(["/ip4/198.51.100.1/tcp/1", at("198.51.100.2", SELF), "nonsense"], "hint:x"),
    0,
    "no /p2p/ part, this node's own, unparsable",
  );
  clock.now += 1;
  b.addJoinHints([many[4]!], "hint:dimada");
  assert.deepEqual(b.hints.map((h) => h.multiaddrs), [[many[4]]]);
  for (let i = 0; i < JOIN_HINT_SOURCES; i++) {
    clock.now += 1;
    b.addJoinHints([at("198.51.100.7", `12D3KooWS${i}`)], `contact:dimc${i}`);
  }
  assert.equal(b.hints.length, JOIN_HINT_SOURCES);
  assert.ok(!b.hints.some((h) => h.source === "hint:dimada"), "the oldest source is forgotten");
  assert.equal(b.hints[0]?.source, `contact:dimc${JOIN_HINT_SOURCES - 1}`);
  assert.throws(
    () => b.addJoinHints(many, "network" as "hint:x"),
    (err: unknown) => err instanceof TypeError && /Cannot add join hints/.test(err.message),
  );
});

Deno.test("the book survives a round trip through its JSON, and a damaged one changes nothing", () => {
  const { clock, book: b } = book(["12D3KooWBoot"]);
  seeQualified(b, clock, "12D3KooWA", at("198.51.100.1", "12D3KooWA"));
  b.seen("12D3KooWBoot");
  b.addJoinHints([at("198.51.100.5", "12D3KooWH")], "hint:dimada");
  const json = JSON.parse(JSON.stringify(b));

  const copy = book().book;
  copy.restore(json);
  assert.deepEqual(copy.remembered, b.remembered);
  assert.deepEqual(copy.learnedBootstrap, b.learnedBootstrap);
  assert.deepEqual(copy.hints, b.hints);

  for (
    const damaged of [
      null,
      [],
      { ...json, version: 2 },
      { ...json, peers: [{ ...json.peers[0], occasions: 0 }] },
      { ...json, peers: [{ ...json.peers[0], multiaddrs: Array(5).fill("/ip4/1.2.3.4") }] },
      { ...json, peers: [{ ...json.peers[0], source: "mallory" }] },
      { ...json, hints: [{ ...json.hints[0], multiaddrs: ["/ip4/1.2.3.4/tcp/1"] }] },
      { ...json, learned: Array(LEARNED_BOOTSTRAP_CAP + 1).fill("12D3KooWA") },
    ]
  ) {
    assert.throws(() => copy.restore(damaged), TypeError, JSON.stringify(damaged));
  }
  assert.deepEqual(copy.remembered, b.remembered, "a refused file changes nothing");
});

Deno.test("networkOf groups IPv4 by /16, IPv6 by /48 and DNS by name", () => {
  assert.equal(networkOf("/ip4/203.0.113.7/tcp/1"), "ip4:203.0");
  assert.equal(networkOf("/ip6/2001:db8:1:2::1/tcp/1"), "ip6:2001:db8:1");
  assert.equal(networkOf("/ip6/2001:0db8:0001::/tcp/1"), "ip6:2001:db8:1");
  assert.equal(networkOf("/ip6/::1/tcp/1"), "ip6:0:0:0");
  assert.equal(networkOf("/dns4/Node.Example.org/tcp/1"), "dns:node.example.org");
  assert.equal(networkOf("/unix/tmp%2Fsock"), undefined);
  assert.equal(networkOf("nonsense"), undefined);
});
