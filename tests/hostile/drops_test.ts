/**
 * Peers that drop connections mid-handshake or mid-stream: raw TCP
 * connections to a node's port that write part of a handshake or garbage
 * and close, and libp2p streams aborted in the middle of a frame. The node
 * stays up, keeps serving its contacts over open connections, and accepts
 * new peers once the storm is over.
 */
import assert from "node:assert/strict";
import { concat, u32, utf8 } from "../../lib/platform/bytes.ts";
import { sealEnvelope } from "../../lib/crypto/envelope.ts";
import { Identity } from "../../lib/crypto/identity.ts";
import { encodeFrame, FrameType, MESSAGE_PROTOCOL } from "../../lib/messaging/wire.ts";
import { chattingPair, nextMessages, testNet } from "../_support/network.ts";
import {
  attackerNode,
  describeSeen,
  figure,
  pool,
  Random,
  rssMiB,
  size,
  sleep,
  watchRejections,
} from "./_support.ts";

const DROPS = size(100, 1_000);

/** The partial openings a dropping peer writes before it closes. */
function opening(rnd: Random): Uint8Array {
  const mss = utf8("\x13/multistream/1.0.0\n");
  const noise = utf8("\x07/noise\n");
  switch (rnd.int(6)) {
    case 0:
      return new Uint8Array(0);
    case 1:
      return mss.subarray(0, 1 + rnd.int(mss.length - 1));
    case 2:
      return concat(mss, noise);
    case 3:
      // multistream-select done, then a partial Noise XX first message.
      return concat(mss, noise, new Uint8Array([0, 32]), rnd.bytes(rnd.int(32)));
    case 4:
      return concat(mss, noise, rnd.bytes(1 + rnd.int(2000)));
    default:
      return rnd.bytes(1 + rnd.int(4000));
  }
}

Deno.test("a node survives peers that drop mid-handshake and mid-frame, and keeps serving", async () => {
  using watch = watchRejections();
  await using net = await testNet();
  const { alice, bob } = await chattingPair(net, "before");
  const port = Number(/\/tcp\/(\d+)\//.exec(bob.addresses[0]!)![1]);
  const rnd = new Random();
  const rssBefore = rssMiB();

  // Alice writes every 200 ms over her open connection throughout.
  let running = true;
  const sent: string[] = [];
  const probe = (async () => {
    for (let i = 0; running && i < 10_000; i++) {
      sent.push(`during ${i}`);
      await alice.send("bob", `during ${i}`);
      await sleep(200);
    }
  })();

  // Raw TCP: connect, write part of a handshake or garbage, close; at about
  // 80 a second, under the 100 a second libp2p takes from one address, so
  // each one reaches the handshake.
  let tcpRefused = 0;
  const tcpStarted = performance.now();
  await pool(DROPS, 4, async () => {
    let conn: Deno.TcpConn;
    try {
      conn = await Deno.connect({ hostname: "127.0.0.1", port });
    } catch {
      tcpRefused++;
      return;
    }
    try {
      const bytes = opening(rnd);
      if (bytes.length > 0) await conn.write(bytes).catch(() => 0);
      if (rnd.int(2) === 0) await sleep(rnd.int(20));
    } finally {
      conn.close();
    }
    await sleep(50);
  });
  const tcpSeconds = (performance.now() - tcpStarted) / 1000;

  // libp2p streams aborted in the middle of a frame, and connections cut
  // mid-frame. The raw storm used up this IP's inbound connections for a
  // second (libp2p refuses more than 100 a second from one address).
  await sleep(1100);
  const attacker = await attackerNode(net.bootstrap());
  let streamsOpened = 0;
  try {
    const mallory = await Identity.generate();
    const envelope = await sealEnvelope(mallory, bob.profile.publicIdentity, {
      body: new Uint8Array(2000),
      contentType: 1,
    });
    const frame = encodeFrame({ type: FrameType.Envelope, envelope });
    await pool(DROPS, 4, async (i) => {
      try {
        const stream = await attacker.dialProtocol(bob.addresses[0]!, MESSAGE_PROTOCOL, {
          signal: AbortSignal.timeout(5000),
        });
        streamsOpened++;
        const cut = 1 + rnd.int(frame.length - 1);
        stream.send(
          i % 3 === 0 ? concat(u32(1 << 20), frame.subarray(4, cut)) : frame.subarray(0, cut),
        );
        await sleep(rnd.int(5));
        if (i % 10 === 9) await attacker.hangUp(bob.node.peerId).catch(() => {});
        else stream.abort(new Error("dropped mid-frame"));
      } catch {
        // A dial racing a hang-up may fail: that is the point.
      }
    });
  } finally {
    await attacker.stop();
  }
  running = false;
  await probe;
  const got = await nextMessages(bob, sent.length, 10_000);
  const rssAfter = rssMiB();

  // A peer Bob never met can still reach him once the storm is over.
  await sleep(1100); // the per-IP inbound connection window
  const carol = await net.user("carol");
  await carol.addContact("bob", bob.id);
  await carol.send("bob", "new peer");
  const [fromCarol] = await nextMessages(bob, 1, 10_000);

  figure("drops", {
    tcpDrops: DROPS,
    tcpPerSecond: Math.round(DROPS / tcpSeconds),
    tcpRefused,
    streamDrops: DROPS,
    streamsOpened,
    contactMessages: sent.length,
    contactDelivered: got.length,
    rssGrowthMiB: Math.round(rssAfter - rssBefore),
    unhandled: watch.seen.length,
  });
  assert.deepEqual(got.map((m) => m.text), sent, "every contact message arrived, in order");
  assert.equal(fromCarol?.text, "new peer");
  assert.ok(streamsOpened > DROPS / 2, `only ${streamsOpened} streams opened`);
  assert.ok(rssAfter - rssBefore < 150, `RSS grew ${Math.round(rssAfter - rssBefore)} MiB`);
  assert.deepEqual(watch.seen, [], describeSeen(watch.seen));
});
