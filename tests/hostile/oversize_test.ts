/**
 * Oversized input is refused from its length prefix: a peer announcing a
 * 1 GiB frame on `/dim/msg/1.0.0` or `/dim/mbox/1.0.0` has its stream reset
 * after the node has read four bytes, without the node buffering what
 * follows; a kad-dht message announcing 1 GiB is reset too (kad-dht bounds
 * it by its 4 MiB read buffer, not by the prefix); a record over 10 KiB is
 * refused before it is parsed.
 */
import assert from "node:assert/strict";
import { Libp2pRecord } from "@libp2p/record";
import { concat, u32 } from "../../lib/platform/bytes.ts";
import type { DhtNode } from "../../lib/dht/node.ts";
import { encodeKadMessage, KadMessageType } from "../../lib/dht/_kad_wire.ts";
import { FrameType, MAILBOX_PROTOCOL, MESSAGE_PROTOCOL } from "../../lib/messaging/wire.ts";
import { MAX_RECORD_SIZE } from "../../lib/record/record.ts";
import { createStorageNode } from "../../lib/storage_node.ts";
import { nextMessages, testNet } from "../_support/network.ts";
import {
  attackerNode,
  describeSeen,
  figure,
  LOOPBACK,
  rawExchange,
  rssMiB,
  watchRejections,
} from "./_support.ts";

const GIB = 1 << 30;
const CHUNK = new Uint8Array(64 * 1024).fill(0x41);

/**
 * Announces a `GIB`-byte message with `prefix`, then streams filler until the
 * stream fails or `capBytes` were queued.
 *
 * @returns How many bytes were queued before the reset, and whether it came.
 */
async function announceHuge(
  from: DhtNode,
  to: string,
  protocol: string,
  prefix: Uint8Array,
  capBytes: number,
): Promise<{ sent: number; reset: boolean; ms: number }> {
  const started = performance.now();
  const signal = AbortSignal.timeout(15_000);
  const stream = await from.dialProtocol(to, protocol, { signal });
  let sent = 0;
  let reset = false;
  const ended = (async () => {
    try {
      for await (const _ of stream) { /* nothing is expected back */ }
    } catch {
      reset = true;
    }
  })();
  // A reset stream may still accept send() calls: its status tells.
  const open = () => !reset && stream.status === "open";
  try {
    if (!stream.send(prefix)) await stream.onDrain({ signal });
    while (sent < capBytes && open()) {
      if (!stream.send(CHUNK)) await stream.onDrain({ signal });
      sent += CHUNK.length;
      // Let the muxer run, or send() only queues here.
      await new Promise((resolve) => setTimeout(resolve, 0));
    }
  } catch {
    reset = true;
  }
  if (stream.status !== "open") reset = true;
  stream.abort(new Error("done"));
  await ended;
  return { sent, reset, ms: Math.round(performance.now() - started) };
}

Deno.test("a peer announcing a 1 GiB frame or kad message has its stream reset; the node allocates nothing", async () => {
  using watch = watchRejections();
  await using net = await testNet();
  const alice = await net.user("alice");
  const bob = await net.user("bob");
  await alice.addContact("bob", bob.id);
  const attacker = await attackerNode(net.bootstrap());
  try {
    const to = bob.addresses[0]!;
    const huge = concat(u32(GIB), new Uint8Array([FrameType.Envelope]));
    const rssBefore = rssMiB();
    const results: Record<string, { sent: number; reset: boolean; ms: number }> = {};
    for (let round = 0; round < 3; round++) {
      results.msg = await announceHuge(attacker, to, MESSAGE_PROTOCOL, huge, 64 << 20);
      results.mbox = await announceHuge(attacker, to, MAILBOX_PROTOCOL, huge, 64 << 20);
      // kad-dht: a varint length of 1 GiB, then filler.
      const varint = encodeKadMessage({ type: KadMessageType.PUT_VALUE }).subarray(0, 0);
      const kadPrefix = concat(varint, new Uint8Array([0x80, 0x80, 0x80, 0x80, 0x04]));
      results.kad = await announceHuge(attacker, to, attacker.protocol, kadPrefix, 64 << 20);
    }
    const rssAfter = rssMiB();
    figure("oversize", {
      msgSentBeforeResetKiB: Math.round(results.msg!.sent / 1024),
      mboxSentBeforeResetKiB: Math.round(results.mbox!.sent / 1024),
      kadSentBeforeResetKiB: Math.round(results.kad!.sent / 1024),
      msgResetMs: results.msg!.ms,
      kadResetMs: results.kad!.ms,
      rssGrowthMiB: Math.round(rssAfter - rssBefore),
      unhandled: watch.seen.length,
    });
    for (const [name, r] of Object.entries(results)) assert.ok(r.reset, `${name} stream reset`);
    // DIM's protocols refuse from the prefix: what got through is what was in
    // flight (socket and muxer window), not what the node kept.
    assert.ok(
      results.msg!.sent <= 4 << 20,
      `msg: ${results.msg!.sent} bytes sent before the reset`,
    );
    assert.ok(results.mbox!.sent <= 4 << 20, `mbox: ${results.mbox!.sent} bytes before the reset`);
    // kad-dht reads up to its 4 MiB buffer before it refuses.
    assert.ok(results.kad!.sent <= 16 << 20, `kad: ${results.kad!.sent} bytes before the reset`);
    assert.ok(rssAfter - rssBefore < 64, `RSS grew ${Math.round(rssAfter - rssBefore)} MiB`);
    assert.deepEqual(watch.seen, [], describeSeen(watch.seen));
    // Bob still serves his contacts.
    await alice.send("bob", "still there?");
    assert.equal((await nextMessages(bob, 1, 5000))[0]?.text, "still there?");
  } finally {
    await attacker.stop();
  }
});

Deno.test("a record over 10 KiB is refused by a storage node before it is parsed", async () => {
  const relay = await createStorageNode({ listen: LOOPBACK });
  const attacker = await attackerNode([relay.addresses[0]!]);
  try {
    const key = new TextEncoder().encode(`/dim/card/dim${"a".repeat(58)}`);
    for (const length of [MAX_RECORD_SIZE + 1, 1 << 20]) {
      const value = new Uint8Array(length).fill(1);
      const record = new Libp2pRecord(key, value, new Date()).serialize();
      const { outcome } = await rawExchange(
        attacker,
        relay.addresses[0]!,
        attacker.protocol,
        encodeKadMessage({ type: KadMessageType.PUT_VALUE, key, record }),
      );
      assert.equal(outcome, "reset", `a ${length}-byte record was not refused`);
    }
    assert.equal(await relay.node.getLocal(new TextDecoder().decode(key)), undefined);
  } finally {
    await attacker.stop();
    await relay.stop();
  }
});
