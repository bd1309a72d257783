/**
 * How a starting node picks the remembered peers it dials beside its
 * bootstrap peers, and that it is online as soon as any of them answers,
 * with libp2p replaced by a scripted dialler.
 */
import assert from "node:assert/strict";
import type { PeerId } from "@libp2p/interface";
import { generateKeyPair } from "@libp2p/crypto/keys";
import { peerIdFromPrivateKey } from "@libp2p/peer-id";
import { type Multiaddr, multiaddr } from "@multiformats/multiaddr";
import { joinCandidates, type JoinInit, joinNetwork } from "../../lib/dht/_join.ts";
import type { RememberedPeer } from "../../lib/dht/types.ts";
import { PeerUnreachableError } from "../../lib/errors.ts";
import { JOIN_HINT_PEERS, RECONNECT_PEER_LIMIT } from "../../lib/dht/constants.ts";

function remembered(peerId: string, lastSeen: number, multiaddrs?: string[]): RememberedPeer {
  return {
    peerId,
    multiaddrs: multiaddrs ?? [`/ip4/198.51.100.1/tcp/1/p2p/${peerId}`],
    firstSeen: 0,
    lastSeen,
    occasions: 1,
    source: "network",
  };
}

Deno.test("joinCandidates: learned, then hinted, then most recently seen, then the peer store", () => {
  const hint = (id: string) => `/ip4/203.0.113.1/tcp/1/p2p/${id}`;
  const candidates = joinCandidates(
    {
      learnedBootstrap: [remembered("L1", 5)],
      hints: [
        { source: "hint:dimb", multiaddrs: [hint("H2"), hint("L1")], at: 2 },
        { source: "contact:dima", multiaddrs: [hint("H1"), hint("Boot")], at: 1 },
      ],
      remembered: [
        remembered("R2", 9),
        remembered("L1", 5),
        remembered("NoAddress", 4, []),
        remembered("R1", 3),
      ],
    },
    [
      { peerId: "R1", multiaddrs: ["/ip4/10.0.0.1/tcp/1"] },
      { peerId: "S1", multiaddrs: ["/ip4/10.0.0.2/tcp/1"] },
      { peerId: "S2", multiaddrs: [] },
      { peerId: "Me", multiaddrs: ["/ip4/10.0.0.3/tcp/1"] },
    ],
    new Set(["Me", "Boot"]),
  );
  assert.deepEqual(
    candidates.map((c) => `${c.peerId}:${c.reason}`),
    ["L1:learned", "H2:hint", "H1:hint", "R2:recent", "R1:recent", "S1:known"],
  );
  assert.deepEqual(candidates[1]?.multiaddrs, [hint("H2")]);
  assert.deepEqual(candidates.at(-1)?.multiaddrs, [], "a peer-store peer is dialled by ID");
});

Deno.test("joinCandidates: at most the limit, and a few hinted peers", () => {
  const hints = Array.from({ length: 10 }, (_, i) => ({
    source: `hint:dim${i}` as const,
    multiaddrs: [`/ip4/203.0.113.1/tcp/1/p2p/H${i}`],
    at: 10 - i,
  }));
  const recent = Array.from({ length: 40 }, (_, i) => remembered(`R${i}`, 100 - i));
  const candidates = joinCandidates(
    { learnedBootstrap: [], hints, remembered: recent },
    [],
    new Set(),
  );
  assert.equal(candidates.length, RECONNECT_PEER_LIMIT);
  assert.equal(candidates.filter((c) => c.reason === "hint").length, JOIN_HINT_PEERS);
  assert.equal(candidates[JOIN_HINT_PEERS]?.peerId, "R0");
});

/** A scripted libp2p: each peer answers after its delay, or never (until the dial is aborted). */
async function fakeJoin(
  answers: Record<string, number | "never">,
  bootstrap: readonly string[],
  book: JoinInit["book"],
  requireBootstrap = false,
) {
  const self = peerIdFromPrivateKey(await generateKeyPair("Ed25519"));
  const stop = new AbortController();
  const dialled: string[] = [];
  const joined: string[] = [];
  const tasks: Promise<unknown>[] = [];
  const peerOf = (target: Multiaddr | Multiaddr[] | PeerId): string => {
    const address = Array.isArray(target) ? target[0]! : target;
    return "toMultihash" in address
      ? address.toString()
      : address.getComponents().findLast((c) => c.name === "p2p")!.value!;
  };
  const init: JoinInit = {
    libp2p: {
      peerId: self,
      getConnections: () => [],
      dial: ((target: Multiaddr | Multiaddr[] | PeerId, options: { signal: AbortSignal }) => {
        const peer = peerOf(target);
        dialled.push(peer);
        const after = answers[peer] ?? 0;
        return new Promise((resolve, reject) => {
          const fail = () => reject(new Error("dial aborted"));
          options.signal.addEventListener("abort", fail, { once: true });
          if (after === "never") return;
          setTimeout(() => {
            options.signal.removeEventListener("abort", fail);
            if (after < 0) reject(new Error("connection refused"));
            else resolve({ remotePeer: { toString: () => peer } });
          }, Math.abs(after));
        });
      }) as unknown as JoinInit["libp2p"]["dial"],
    },
    bootstrap: bootstrap.map((id) => multiaddr(`/ip4/192.0.2.1/tcp/1/p2p/${id}`)),
    requireBootstrap,
    records: { lookup: () => Promise.resolve([]) } as unknown as JoinInit["records"],
    routingTableSize: () => joined.length,
    joined: (peerId) => joined.push(peerId),
    book,
    knownPeers: () => Promise.resolve([]),
    dialSignal: stop.signal,
    track: (task) => tasks.push(task),
    log: () => {},
  };
  const started = performance.now();
  try {
    await joinNetwork(init, new AbortController().signal);
    return { dialled, joined, ms: performance.now() - started };
  } finally {
    stop.abort();
    await Promise.all(tasks);
  }
}

const ID_A = "12D3KooWAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
const ID_B = "12D3KooWBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";
const ID_DEAD = "12D3KooWDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDD";

Deno.test("joinNetwork: online as soon as a remembered peer answers, while the bootstrap dial hangs", async () => {
  const result = await fakeJoin(
    { [ID_DEAD]: "never", [ID_A]: 20, [ID_B]: "never" },
    [ID_DEAD],
    { learnedBootstrap: [], hints: [], remembered: [remembered(ID_A, 2), remembered(ID_B, 1)] },
    true,
  );
  assert.deepEqual(result.dialled, [ID_DEAD, ID_A, ID_B]);
  assert.deepEqual(result.joined, [ID_A]);
  assert.ok(result.ms < 2_000, `took ${result.ms} ms`);
});

Deno.test("joinNetwork: with requireBootstrap, no answer at all is a PeerUnreachableError", async () => {
  await assert.rejects(
    fakeJoin(
      { [ID_DEAD]: -5, [ID_A]: -5 },
      [ID_DEAD],
      { learnedBootstrap: [], hints: [], remembered: [remembered(ID_A, 2)] },
      true,
    ),
    (err: unknown) =>
      err instanceof PeerUnreachableError &&
      /none of the 1 bootstrap peers answered, nor any of 1 peers known before/.test(err.message),
  );
});
