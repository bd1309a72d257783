// Two users behind NAT and the relay between them, for bench/relay_bench.ts.
//
// The relay is a storage node (`createStorageNode`: DHT, mailboxes, circuit
// relay v2 with DIM's limits) listening on 127.0.0.1. Alice and Bob are real
// `Messenger`s that listen on nothing, as if each sat behind a NAT that drops
// every inbound connection: they dial out to the relay only, are forced
// "private" (so they are DHT clients, reserve a slot on the relay and put
// only `/p2p-circuit` addresses on their cards), and can reach each other
// only through the relay. `assertRelayedOnly` checks that.
import { forceReachability, libp2pOf } from "../lib/dht/node.ts";
import type { DhtNode } from "../lib/dht/node.ts";
import { createMessenger, type Messenger } from "../lib/messenger/messenger.ts";
import { createProfile } from "../lib/profile/profile.ts";
import { createStorageNode, type StorageNode } from "../lib/storage_node.ts";

/** The relay, the two users and the folder that holds their homes (remove it when done). */
export interface RelayPair {
  readonly dir: string;
  readonly relay: StorageNode;
  readonly alice: Messenger;
  readonly bob: Messenger;
}

/** The libp2p connections between two nodes, as seen from `from`. */
export function connectionsBetween(from: DhtNode, to: DhtNode) {
  return libp2pOf(from).getConnections(libp2pOf(to).peerId);
}

/**
 * Throws unless every connection between `a` and `b` runs through a relay
 * (its remote address has `/p2p-circuit`), on both sides, and there is at
 * least one.
 */
export function assertRelayedOnly(a: DhtNode, b: DhtNode): void {
  for (const [from, to] of [[a, b], [b, a]] as const) {
    const open = connectionsBetween(from, to).filter((c) => c.status === "open");
    if (open.length === 0) throw new Error("no connection between the two users");
    for (const c of open) {
      const remote = c.remoteAddr.toString();
      if (!remote.includes("/p2p-circuit")) {
        throw new Error(`a direct connection between the two users: ${remote}`);
      }
    }
  }
}

/** Waits until `ok()` holds, polling every 20 ms. */
export async function until(what: string, ok: () => boolean, ms = 15_000): Promise<void> {
  const deadline = performance.now() + ms;
  while (!ok()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** A node's circuit address through `relay`. */
export function circuitAddress(node: DhtNode, relay: DhtNode): string {
  const address = node.multiaddrs.find((m) => m.includes(`/p2p/${relay.peerId}/p2p-circuit/`));
  if (address === undefined) throw new Error(`no circuit address: ${node.multiaddrs.join(" ")}`);
  return address;
}

/**
 * Starts the relay, then Alice and Bob behind it, makes them contacts and
 * sends one message (X3DH, and the relayed connection, set up before any
 * timed part). Bob saves files to `<dir>/downloads` and reads what arrives
 * as a chat would.
 */
export async function openRelayPair(prefix: string): Promise<RelayPair> {
  const dir = await Deno.makeTempDir({ prefix });
  const relay = await createStorageNode({
    listen: ["/ip4/127.0.0.1/tcp/0"],
    // Every peer here dials from 127.0.0.1: lift the per-IP rate of new connections.
    node: { inboundConnectionThreshold: 10_000 },
  });
  await Deno.mkdir(`${dir}/downloads`);
  const user = async (name: string) => {
    const profile = await createProfile({
      home: `${dir}/${name}`,
      passphrase: `${name}: plum vortex quietly sings`,
      displayName: name,
    });
    const messenger = await createMessenger(profile, {
      listen: [],
      bootstrap: relay.addresses,
      relays: 1,
      relayServer: false,
      node: { reachabilityCheck: false },
      downloadDir: `${dir}/downloads`,
    });
    await forceReachability(messenger.node, "private");
    await until(`${name}'s reservation`, () => messenger.node.reachability.relays.length === 1);
    // The card must list the circuit address before the other side looks it up.
    await messenger.publishCard();
    return messenger;
  };
  const alice = await user("alice");
  const bob = await user("bob");
  await alice.addContact("bob", bob.id);
  await bob.addContact("alice", alice.id);
  (async () => {
    for await (const _ of bob.messages());
  })().catch(() => {});
  const first = await alice.send("bob", "hello through the relay");
  await alice.waitFor(first.seq, { signal: AbortSignal.timeout(30_000) });
  assertRelayedOnly(alice.node, bob.node);
  return { dir, relay, alice, bob };
}
