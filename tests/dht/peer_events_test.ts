/**
 * The "peer seen" filter (lib/dht/_peer_events.ts) passes news and drops
 * repeats until they are due again.
 */
import assert from "node:assert/strict";
import { filterPeerEvents } from "../../lib/dht/_libp2p_internals.ts";
import { PeerEventFilter } from "../../lib/dht/_peer_events.ts";

function peer(id: number, ...addresses: number[]) {
  return {
    id: { toMultihash: () => ({ bytes: new Uint8Array([0, 4, 0, 0, 0, id]) }) },
    multiaddrs: addresses.map((a) => ({ bytes: new Uint8Array([4, 127, 0, 0, a]) })),
  };
}

Deno.test("a peer with the same addresses passes once per refresh interval", () => {
  let now = 0;
  const filter = new PeerEventFilter({ refreshMs: 100, maxEntries: 10, clock: () => now });
  assert.equal(filter.admit(peer(1, 1, 2)), true);
  assert.equal(filter.admit(peer(1, 2, 1)), false); // Same addresses, other order.
  assert.equal(filter.wouldAdmit(new Uint8Array([0, 4, 0, 0, 0, 1]), []), true);
  assert.equal(filter.admit(peer(1, 3)), true); // New addresses.
  assert.equal(filter.admit(peer(2, 3)), true); // Another peer.
  now = 100;
  assert.equal(filter.admit(peer(1, 3)), true); // Due again.
  assert.deepEqual(filter.stats, { dropped: 1, passed: 4 });
});

Deno.test("an installed filter drops repeated peer events and lets others through", () => {
  const filter = new PeerEventFilter({ refreshMs: 60_000, maxEntries: 2, clock: () => 0 });
  const target = new EventTarget();
  const seen: string[] = [];
  target.addEventListener("peer", () => seen.push("peer"));
  target.addEventListener("other", () => seen.push("other"));
  const remove = filterPeerEvents(target, filter);
  target.dispatchEvent(new CustomEvent("peer", { detail: peer(1, 1) }));
  target.dispatchEvent(new CustomEvent("peer", { detail: peer(1, 1) }));
  target.dispatchEvent(new CustomEvent("other", { detail: peer(1, 1) }));
  assert.deepEqual(seen, ["peer", "other"]);
  // Only two peers are remembered: the first is forgotten and passes again.
  target.dispatchEvent(new CustomEvent("peer", { detail: peer(2, 1) }));
  target.dispatchEvent(new CustomEvent("peer", { detail: peer(3, 1) }));
  target.dispatchEvent(new CustomEvent("peer", { detail: peer(1, 1) }));
  assert.equal(seen.length, 5);
  remove();
  target.dispatchEvent(new CustomEvent("peer", { detail: peer(1, 1) }));
  assert.equal(seen.length, 6);
});
