/**
 * Malformed, forged and stale records sent straight to storage nodes with
 * raw kad-dht PUT_VALUE messages: none is ever stored, and the owner's
 * newest card is what every node serves.
 */
import assert from "node:assert/strict";
import { Libp2pRecord } from "@libp2p/record";
import { concat, u64 } from "../../lib/platform/bytes.ts";
import { Identity } from "../../lib/crypto/identity.ts";
import { unlockKeystore } from "../../lib/crypto/keystore.ts";
import type { DhtNode } from "../../lib/dht/node.ts";
import { encodeKadMessage, KadMessageType } from "../../lib/dht/_kad_wire.ts";
import { InvalidRecordError } from "../../lib/errors.ts";
import { signCard } from "../../lib/record/card.ts";
import { PREKEY_RECORD_TYPE } from "../../lib/record/prekey.ts";
import { decodeRecord, MAX_RECORD_SIZE, recordKey, signRecord } from "../../lib/record/record.ts";
import { testNet } from "../_support/network.ts";
import {
  attackerNode,
  describeSeen,
  figure,
  pool,
  Random,
  rawExchange,
  size,
  watchRejections,
} from "./_support.ts";

const RECORDS = size(500, 10_000);
const encoder = new TextEncoder();

/** A raw PUT_VALUE of `value` under `key`; whether the storage node acknowledged it. */
async function rawPut(
  from: DhtNode,
  to: string,
  key: Uint8Array,
  value: Uint8Array,
): Promise<boolean> {
  const record = new Libp2pRecord(key, value, new Date()).serialize();
  const message = encodeKadMessage({ type: KadMessageType.PUT_VALUE, key, record });
  const { outcome } = await rawExchange(from, to, from.protocol, message);
  return outcome === "answered";
}

type Mutation = (value: Uint8Array, key: Uint8Array, r: Random) => [Uint8Array, Uint8Array];

Deno.test("malformed and forged records sent to a storage node are never stored", async () => {
  using watch = watchRejections();
  await using net = await testNet(2);
  const alice = await net.user("alice");
  const bob = await net.user("bob");
  const storage = net.storageNodes[0]!;
  const attacker = await attackerNode(net.bootstrap());
  try {
    const rnd = new Random();
    const mallory = await Identity.generate();
    const cardKey = recordKey("card", alice.id);
    const card = await storage.node.get(cardKey);
    const prekeys = await storage.node.get(recordKey(PREKEY_RECORD_TYPE, alice.id));
    assert.ok(card !== undefined && prekeys !== undefined);
    const malloryCard = await signCard(mallory, {
      displayName: "alice",
      peerId: alice.node.peerId,
      addresses: [],
    });
    const seeds: [Uint8Array, Uint8Array][] = [
      [card, encoder.encode(cardKey)],
      [prekeys, encoder.encode(recordKey(PREKEY_RECORD_TYPE, alice.id))],
    ];
    const aliceKey = encoder.encode(cardKey);
    const mutations: Record<string, Mutation> = {
      flip: (v, k, r) => {
        const out = v.slice();
        for (let n = 1 + r.int(4); n > 0; n--) out[r.int(out.length)]! ^= 1 << r.int(8);
        return [out, k];
      },
      truncate: (v, k, r) => [v.slice(0, r.int(v.length)), k],
      append: (v, k, r) => [concat(v, r.bytes(1 + r.int(64))), k],
      // A higher sequence number, still carrying the old signature.
      bumpSeq: (v, k, r) => {
        const out = v.slice();
        const at = 2 + out[1]! + 32;
        out.set(u64(decodeRecord(v).seq + 1 + r.int(1000)), at);
        return [out, k];
      },
      otherOwner: (_v, _k) => [malloryCard.bytes, aliceKey],
      otherKey: (
        v,
        _k,
        r,
      ) => [v, encoder.encode(`/dim/card/dim${r.bytes(29).join("").slice(0, 58)}`)],
      wrongType: (
        v,
        k,
      ) => [v, encoder.encode(new TextDecoder().decode(k).replace(/\/dim\/\w+\//, "/dim/note/"))],
      noNamespace: (v, _k, r) => [v, r.bytes(1 + r.int(40))],
      otherNamespace: (
        v,
        k,
      ) => [v, encoder.encode(new TextDecoder().decode(k).replace("/dim/", "/ipns/"))],
      random: (_v, k, r) => [r.bytes(r.int(600)), k],
      oversize: (v, k, r) => [concat(v, r.bytes(MAX_RECORD_SIZE)), k],
      empty: (_v, k) => [new Uint8Array(0), k],
    };
    const names = Object.keys(mutations);
    const accepted: string[] = [];
    let skipped = 0;
    await pool(RECORDS, 16, async () => {
      const [value, key] = rnd.pick(seeds);
      const name = rnd.pick(names);
      const [mValue, mKey] = mutations[name]!(value, key, rnd);
      if (
        mValue.length === value.length && mValue.every((b, i) => b === value[i]) &&
        mKey.length === key.length && mKey.every((b, i) => b === key[i])
      ) {
        skipped++; // A mutation that changed nothing is the valid record itself.
        return;
      }
      if (await rawPut(attacker, storage.addresses[0]!, mKey, mValue)) accepted.push(name);
    });
    // node.put of invalid values is refused before anything is sent.
    let localRefused = 0;
    for (const [name, mutation] of Object.entries(mutations)) {
      if (["noNamespace", "otherNamespace"].includes(name)) continue;
      const [value, key] = mutation(card, aliceKey, rnd);
      try {
        await attacker.put(new TextDecoder().decode(key), value);
      } catch (err) {
        if (err instanceof InvalidRecordError || err instanceof TypeError) localRefused++;
      }
    }
    figure("fuzz-records", {
      seed: rnd.seed,
      records: RECORDS,
      accepted: accepted.length,
      unchanged: skipped,
      localPutsRefused: localRefused,
      unhandled: watch.seen.length,
    });
    assert.deepEqual(accepted, [], "no invalid record was acknowledged");
    assert.equal(localRefused, names.length - 2);
    // The storage node still holds and serves Alice's card, and Bob gets it.
    assert.deepEqual(await storage.node.getLocal(cardKey), card);
    assert.equal((await bob.resolveCard(alice.id, { fresh: true })).seq, decodeRecord(card).seq);
    assert.deepEqual(watch.seen, [], describeSeen(watch.seen));
  } finally {
    await attacker.stop();
  }
});

Deno.test("forged, unbound, older and expired cards are refused by every storage node", async () => {
  await using net = await testNet(3);
  const alice = await net.user("alice");
  const bob = await net.user("bob");
  const attacker = await attackerNode(net.bootstrap());
  try {
    const identity = await unlockKeystore(
      `${net.dir}/alice/identity.key`,
      "alice: plum vortex quietly sings",
    );
    const key = recordKey("card", alice.id);
    const keyBytes = encoder.encode(key);
    const base = { displayName: "alice", peerId: alice.node.peerId, addresses: alice.addresses };
    const now = Date.now();
    const older = await signCard(identity, { ...base, seq: now - 60_000, now: now - 60_000 });
    const newer = await signCard(identity, { ...base, seq: now + 1, now: now + 1 });
    assert.equal(await alice.node.put(key, newer.bytes) >= 0, true);
    const mallory = await Identity.generate();
    const forgedPayload = newer.bytes.slice();
    // Mallory's address in Alice's card, under Alice's (now wrong) signature.
    forgedPayload[forgedPayload.length - 70]! ^= 0xff;
    const attacks: Record<string, Uint8Array> = {
      "a bad signature": forgedPayload,
      "a key not bound to its owner": (await signCard(mallory, { ...base, seq: now + 5 })).bytes,
      "a lower sequence number (a valid old card replayed)": older.bytes,
      "an expired card": (await signRecord(identity, {
        type: "card",
        seq: now + 10,
        payload: decodeRecord(newer.bytes).payload,
        issuedAt: now - 3 * 24 * 3600_000,
        ttlMs: 24 * 3600_000,
      })).bytes,
    };
    const storage = [...net.storageNodes.map((r) => r.node), bob.node];
    const results: Record<string, number> = {};
    for (const [what, value] of Object.entries(attacks)) {
      let acks = 0;
      for (const node of storage) {
        if (await rawPut(attacker, node.multiaddrs[0]!, keyBytes, value)) acks++;
      }
      results[what] = acks;
    }
    figure(
      "stale-records",
      Object.fromEntries(
        Object.entries(results).map(([k, v]) => [k.split(" ").slice(1, 3).join("-"), v]),
      ),
    );
    for (const [what, acks] of Object.entries(results)) {
      assert.equal(acks, 0, `${what}: acknowledged by ${acks} storage nodes`);
    }
    for (const node of storage) {
      assert.equal(decodeRecord((await node.getLocal(key))!).seq, newer.seq, "stored copy");
    }
    // Served as current everywhere: a fresh lookup, and the attacker's own get.
    assert.equal((await bob.resolveCard(alice.id, { fresh: true })).seq, newer.seq);
    assert.equal(decodeRecord((await attacker.get(key))!).seq, newer.seq);
  } finally {
    await attacker.stop();
  }
});
