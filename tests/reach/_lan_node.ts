/**
 * A node for the LAN discovery tests, run inside a lab namespace
 * (`ip netns exec NS deno run -A tests/reach/_lan_node.ts '<config JSON>'`):
 *
 * - `{ "mode": "dim", "listen": "…" }`: a DIM DHT node with `lanDiscovery`
 *   on, no bootstrap. stdout: `ready` (peerId), `log` (message: the node's
 *   diagnostics), and every 200 ms `state` (peers: connected peer IDs,
 *   lan: the LAN peers kept, known: the peer store's peer IDs).
 * - `{ "mode": "plain", "listen": "…", "serviceTag": "…" }`: a libp2p node
 *   that speaks no DIM protocol (TCP, Noise, Yamux, identify) with mDNS on
 *   the given service tag. stdout: `ready` (peerId), `connection` (peer)
 *   for every connection opened, either way.
 *
 * Closing stdin stops it.
 *
 * @module
 */
import { identify } from "@libp2p/identify";
// @ts-types="../../lib/dht/_mdns.d.ts"
import { mdns } from "@libp2p/mdns";
import { noise } from "@libp2p/noise";
import { tcp } from "@libp2p/tcp";
import { yamux } from "@libp2p/yamux";
import { createLibp2p } from "libp2p";
import { createDhtNode, libp2pOf } from "../../lib/dht/node.ts";
import type { LanDiscovery } from "../../lib/dht/_lan.ts";

const config = JSON.parse(Deno.args[0] ?? "{}") as {
  readonly mode: "dim" | "plain";
  readonly listen: string;
  readonly serviceTag?: string;
};
const encoder = new TextEncoder();
function event(name: string, fields: Record<string, unknown> = {}): void {
  Deno.stdout.writeSync(encoder.encode(JSON.stringify({ event: name, ...fields }) + "\n"));
}

let stop: () => Promise<void>;
if (config.mode === "dim") {
  const node = await createDhtNode({
    listen: [config.listen],
    lanDiscovery: true,
    reachabilityCheck: false,
    log: (message) => event("log", { message }),
  });
  event("ready", { peerId: node.peerId });
  const lan = (libp2pOf(node).services as { lan?: LanDiscovery }).lan;
  const timer = setInterval(async () => {
    const known = (await node.knownPeers()).map((p) => p.peerId);
    event("state", { peers: node.peers, lan: lan?.peers ?? [], known });
  }, 200);
  stop = async () => {
    clearInterval(timer);
    await node.stop();
  };
} else {
  const node = await createLibp2p({
    addresses: { listen: [config.listen] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    peerDiscovery: [mdns({ serviceTag: config.serviceTag ?? "_p2p._udp.local", interval: 1000 })],
    services: { identify: identify() },
  });
  node.addEventListener("connection:open", (e) => {
    event("connection", { peer: e.detail.remotePeer.toString() });
  });
  event("ready", { peerId: node.peerId.toString() });
  stop = async () => await node.stop();
}

for await (const _ of Deno.stdin.readable) { /* runs until stdin closes */ }
await stop();
Deno.exit(0);
