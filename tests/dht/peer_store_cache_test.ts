/**
 * The peer-store cache (lib/dht/_peer_store_cache.ts): reads come from the
 * cache, merges that change nothing are skipped, and every write that does
 * change something goes through and is seen by the next read.
 */
import assert from "node:assert/strict";
import { generateKeyPair } from "@libp2p/crypto/keys";
import type { Peer, PeerData, PeerId, PeerStore } from "@libp2p/interface";
import { peerIdFromPrivateKey } from "@libp2p/peer-id";
import { multiaddr } from "@multiformats/multiaddr";
import { installPeerStoreCache } from "../../lib/dht/_libp2p_internals.ts";
import { PeerStoreCache } from "../../lib/dht/_peer_store_cache.ts";

/** A peer store in a Map that counts its reads and writes. */
function fakeStore() {
  const peers = new Map<string, Peer>();
  const counts = { get: 0, write: 0 };
  const write = (id: PeerId, data: PeerData, replace: boolean): Promise<Peer> => {
    counts.write++;
    const old = peers.get(id.toString());
    const protocols = new Set(replace ? [] : old?.protocols ?? []);
    for (const protocol of data.protocols ?? []) protocols.add(protocol);
    const addresses = replace ? [] : [...old?.addresses ?? []];
    for (const address of data.multiaddrs ?? []) {
      if (!addresses.some((a) => a.multiaddr.equals(address))) {
        addresses.push({ multiaddr: address, isCertified: false });
      }
    }
    const peer = {
      id,
      addresses,
      protocols: [...protocols],
      metadata: new Map(),
      tags: new Map(),
    } as Peer;
    peers.set(id.toString(), peer);
    return Promise.resolve(peer);
  };
  const store = {
    get(id: PeerId) {
      counts.get++;
      const peer = peers.get(id.toString());
      return peer === undefined
        ? Promise.reject(Object.assign(new Error("not found"), { name: "NotFoundError" }))
        : Promise.resolve(peer);
    },
    getInfo: () => Promise.reject(new Error("replaced by the cache")),
    merge: (id: PeerId, data: PeerData) => write(id, data, false),
    patch: (id: PeerId, data: PeerData) => write(id, data, true),
    save: (id: PeerId, data: PeerData) => write(id, data, true),
    delete(id: PeerId) {
      counts.write++;
      peers.delete(id.toString());
      return Promise.resolve();
    },
    consumePeerRecord: () => Promise.resolve(false),
  } as unknown as PeerStore;
  return { store, counts };
}

Deno.test("reads are cached and merges that change nothing are skipped", async () => {
  const { store, counts } = fakeStore();
  let now = 0;
  const cache = new PeerStoreCache({ ttlMs: 1000, maxEntries: 10, clock: () => now });
  installPeerStoreCache(store, cache);
  const id = peerIdFromPrivateKey(await generateKeyPair("Ed25519"));
  const address = multiaddr("/ip4/127.0.0.1/tcp/4001");
  await store.merge(id, { protocols: ["/dim/kad/1.0.0"], multiaddrs: [address] });
  assert.equal(counts.write, 1);
  // The same protocol and address again: nothing to write.
  await store.merge(id, { protocols: ["/dim/kad/1.0.0"] });
  await store.merge(id, { multiaddrs: [multiaddr("/ip4/127.0.0.1/tcp/4001")] });
  assert.equal(counts.write, 1);
  assert.equal(cache.stats.skippedMerges, 2);
  assert.deepEqual((await store.get(id)).protocols, ["/dim/kad/1.0.0"]);
  assert.equal((await store.getInfo(id)).multiaddrs[0]!.toString(), address.toString());
  assert.equal(counts.get, 0);
  // News goes through and is read back.
  await store.merge(id, { protocols: ["/dim/msg/1.0.0"] });
  assert.equal(counts.write, 2);
  assert.deepEqual((await store.get(id)).protocols.sort(), ["/dim/kad/1.0.0", "/dim/msg/1.0.0"]);
  // After the time to live, the store is read and written again.
  now += 1000;
  await store.merge(id, { protocols: ["/dim/kad/1.0.0"] });
  assert.equal(counts.write, 3);
});

Deno.test("patch, save and delete replace or drop the cached copy", async () => {
  const { store, counts } = fakeStore();
  const cache = new PeerStoreCache({ ttlMs: 60_000, maxEntries: 10, clock: () => 0 });
  installPeerStoreCache(store, cache);
  const id = peerIdFromPrivateKey(await generateKeyPair("Ed25519"));
  await store.merge(id, { protocols: ["/a"] });
  await store.patch(id, { protocols: ["/b"] });
  assert.deepEqual((await store.get(id)).protocols, ["/b"]);
  await store.save(id, { protocols: ["/c"] });
  assert.deepEqual((await store.get(id)).protocols, ["/c"]);
  await store.delete(id);
  await assert.rejects(store.get(id), (err: unknown) => (err as Error).name === "NotFoundError");
  assert.equal(counts.get, 1);
});

Deno.test("a read that started before a write does not cache the older copy", async () => {
  const { store } = fakeStore();
  const cache = new PeerStoreCache({ ttlMs: 60_000, maxEntries: 10, clock: () => 0 });
  const id = peerIdFromPrivateKey(await generateKeyPair("Ed25519"));
  await store.merge(id, { protocols: ["/old"] });
  // A slow inner read: the write below overtakes it.
  const innerGet = store.get.bind(store);
  const gate = Promise.withResolvers<void>();
  store.get = async (peer: PeerId) => {
    const value = await innerGet(peer);
    await gate.promise;
    return value;
  };
  installPeerStoreCache(store, cache);
  const read = store.get(id);
  await store.patch(id, { protocols: ["/new"] });
  gate.resolve();
  assert.deepEqual((await read).protocols, ["/old"]);
  assert.deepEqual((await store.get(id)).protocols, ["/new"]);
});

Deno.test("the cache holds at most maxEntries peers", async () => {
  const { store } = fakeStore();
  const cache = new PeerStoreCache({ ttlMs: 60_000, maxEntries: 3, clock: () => 0 });
  installPeerStoreCache(store, cache);
  for (let i = 0; i < 5; i++) {
    await store.merge(peerIdFromPrivateKey(await generateKeyPair("Ed25519")), {
      protocols: ["/a"],
    });
  }
  assert.equal(cache.size, 3);
});

Deno.test("getInfo by the same PeerId object sees writes made through another", async () => {
  const { store } = fakeStore();
  const cache = new PeerStoreCache({ ttlMs: 60_000, maxEntries: 10, clock: () => 0 });
  installPeerStoreCache(store, cache);
  const key = await generateKeyPair("Ed25519");
  const asked = peerIdFromPrivateKey(key);
  const other = peerIdFromPrivateKey(key); // Equal, but another object.
  await store.merge(asked, { multiaddrs: [multiaddr("/ip4/127.0.0.1/tcp/1")] });
  assert.equal((await store.getInfo(asked)).multiaddrs.length, 1);
  await store.patch(other, { multiaddrs: [multiaddr("/ip4/127.0.0.1/tcp/2")] });
  const info = await store.getInfo(asked);
  assert.deepEqual(info.multiaddrs.map(String), ["/ip4/127.0.0.1/tcp/2"]);
});
