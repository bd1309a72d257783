/**
 * DIM's kad client (lib/dht/_kad_client.ts): requests to one peer share a
 * stream, a stream the server dropped is replaced once, and a request that
 * gets no answer times out.
 */
import assert from "node:assert/strict";
import { KadClient } from "../../lib/dht/_kad_client.ts";
import { encodeKadMessage, KadMessageType, KadStreamReader } from "../../lib/dht/_kad_wire.ts";
import { createDhtNode, type DhtNode, libp2pOf } from "../../lib/dht/node.ts";
import { rawStream, testNodeOptions } from "./_helpers.ts";

const PROTOCOL = "/test/kad-echo/1.0.0";

function client(node: DhtNode, timeoutMs = 5000): KadClient {
  return new KadClient(libp2pOf(node), {
    protocol: PROTOCOL,
    maxMessageBytes: 1 << 20,
    timeoutMs,
    idleMs: 5000,
  });
}

/** Serves PROTOCOL: echoes each request, closing the stream after `answers`. */
async function serve(node: DhtNode, answers = Infinity): Promise<void> {
  await node.handle(PROTOCOL, async (stream) => {
    const reader = new KadStreamReader(rawStream(stream), 1 << 20);
    try {
      for (let i = 0; i < answers; i++) {
        const request = await reader.next();
        stream.send(
          encodeKadMessage({ type: request.type, ...(request.key ? { key: request.key } : {}) }),
        );
      }
    } catch {
      // The client closed the stream.
    } finally {
      await reader.cancel();
      await stream.close();
    }
  });
}

Deno.test("requests to one peer are sent on one stream", async () => {
  await using server = await createDhtNode(testNodeOptions());
  await using node = await createDhtNode(testNodeOptions());
  await serve(server);
  const kad = client(node);
  const to = libp2pOf(server).peerId;
  const addresses = () => libp2pOf(server).getMultiaddrs();
  for (let i = 0; i < 3; i++) {
    const answer = await kad.request(to, addresses, {
      type: KadMessageType.FIND_NODE,
      key: new Uint8Array([i]),
    }, AbortSignal.timeout(5000));
    assert.deepEqual([...answer.key!], [i]);
  }
  assert.deepEqual(kad.stats, { requests: 3, streams: 1, reused: 2 });
  assert.equal(kad.idleStreams, 1);
  await kad.close();
  assert.equal(kad.idleStreams, 0);
  await assert.rejects(
    kad.request(to, addresses, { type: 4 }, new AbortController().signal),
    (err: unknown) => (err as Error).name === "AbortError",
  );
});

Deno.test("a request on a stream the server closed is sent again on a new one", async () => {
  await using server = await createDhtNode(testNodeOptions());
  await using node = await createDhtNode(testNodeOptions());
  await serve(server, 1);
  const kad = client(node);
  const to = libp2pOf(server).peerId;
  const addresses = () => libp2pOf(server).getMultiaddrs();
  await kad.request(to, addresses, { type: 4 }, AbortSignal.timeout(5000));
  await new Promise((resolve) => setTimeout(resolve, 50));
  const answer = await kad.request(to, addresses, { type: 1 }, AbortSignal.timeout(5000));
  assert.equal(answer.type, 1);
  assert.equal(kad.stats.streams, 2);
  await kad.close();
});

Deno.test("a request that gets no answer times out, and an aborted one rejects at once", async () => {
  await using server = await createDhtNode(testNodeOptions());
  await using node = await createDhtNode(testNodeOptions());
  await server.handle(PROTOCOL, async (stream) => {
    for await (const _ of stream) {
      // Read and never answer.
    }
  });
  const kad = client(node, 300);
  const to = libp2pOf(server).peerId;
  const started = performance.now();
  await assert.rejects(
    kad.request(
      to,
      () => libp2pOf(server).getMultiaddrs(),
      { type: 4 },
      new AbortController().signal,
    ),
    (err: unknown) => (err as Error).name === "TimeoutError",
  );
  const elapsed = performance.now() - started;
  assert.ok(elapsed >= 290 && elapsed < 2000, `timed out after ${elapsed} ms`);
  const reason = new Error("caller gave up");
  await assert.rejects(
    kad.request(to, () => [], { type: 4 }, AbortSignal.abort(reason)),
    (err: unknown) => err === reason,
  );
  await kad.close();
});

Deno.test("requests sent together share one stream and write, and are answered in order", async () => {
  await using server = await createDhtNode(testNodeOptions());
  await using node = await createDhtNode(testNodeOptions());
  // The server answers the first request, then closes: the first answer
  // still arrives, and the second request fails (a new stream is tried
  // only when a reused one fails).
  await serve(server, 1);
  const kad = client(node);
  const to = libp2pOf(server).peerId;
  const addresses = () => libp2pOf(server).getMultiaddrs();
  const [first, second] = kad.requestAll(to, addresses, [
    { type: KadMessageType.FIND_NODE, key: new Uint8Array([1]) },
    { type: KadMessageType.PUT_VALUE, key: new Uint8Array([2]) },
  ], AbortSignal.timeout(5000));
  assert.deepEqual([...(await first!).key!], [1]);
  await assert.rejects(second!);
  await kad.close();

  await using other = await createDhtNode(testNodeOptions());
  await serve(other);
  const again = client(node);
  const answers = await Promise.all(
    again.requestAll(libp2pOf(other).peerId, () => libp2pOf(other).getMultiaddrs(), [
      { type: KadMessageType.FIND_NODE, key: new Uint8Array([1]) },
      { type: KadMessageType.PUT_VALUE, key: new Uint8Array([2]) },
      { type: KadMessageType.GET_VALUE, key: new Uint8Array([3]) },
    ], AbortSignal.timeout(5000)),
  );
  assert.deepEqual(answers.map((a) => [a.type, a.key![0]]), [[4, 1], [0, 2], [1, 3]]);
  assert.deepEqual(again.stats, { requests: 3, streams: 1, reused: 0 });
  await again.close();
});
