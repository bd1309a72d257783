/**
 * Shared pieces of the DHT tests: a "/test" record namespace whose values
 * are `seq (u32, big-endian) | payload`, and a loopback network of nodes.
 *
 * @module
 */
import type { Stream } from "@libp2p/interface";
import {
  createDhtNode,
  type DhtNode,
  type DhtNodeOptions,
  type DhtStream,
} from "../../lib/dht/node.ts";

/** Loopback only: tests never listen on other interfaces. */
export const LOOPBACK = ["/ip4/127.0.0.1/tcp/0"] as const;

/** Encodes a test record: a sequence number, then the payload. */
export function testRecord(seq: number, payload: string | Uint8Array = ""): Uint8Array {
  const body = typeof payload === "string" ? new TextEncoder().encode(payload) : payload;
  const out = new Uint8Array(4 + body.length);
  new DataView(out.buffer).setUint32(0, seq);
  out.set(body, 4);
  return out;
}

/** Reads the sequence number of a test record. */
export function seqOf(value: Uint8Array | undefined): number | undefined {
  if (value === undefined || value.length < 4) return undefined;
  return new DataView(value.buffer, value.byteOffset, value.byteLength).getUint32(0);
}

/** Reads the payload of a test record as text. */
export function payloadOf(value: Uint8Array | undefined): string | undefined {
  return value === undefined ? undefined : new TextDecoder().decode(value.subarray(4));
}

/** Accepts any value of at least 4 bytes. */
export const testValidators = {
  test: (_key: Uint8Array, value: Uint8Array): Promise<void> =>
    value.length >= 4 ? Promise.resolve() : Promise.reject(new Error("test record too short")),
};

/** Picks the highest sequence number; the first of equals wins. */
export const testSelectors = {
  test: (_key: Uint8Array, records: Uint8Array[]): number => {
    let best = 0;
    for (let i = 1; i < records.length; i++) {
      if ((seqOf(records[i]) ?? -1) > (seqOf(records[best]) ?? -1)) best = i;
    }
    return best;
  },
};

/** Options every test node shares. */
export function testNodeOptions(extra: DhtNodeOptions = {}): DhtNodeOptions {
  return {
    listen: LOOPBACK,
    validators: testValidators,
    selectors: testSelectors,
    ...extra,
  };
}

/**
 * Starts `count` nodes; each after the first is bootstrapped from one or two
 * earlier ones (chosen by a fixed pattern, so runs are repeatable).
 */
export async function startNetwork(
  count: number,
  extra: DhtNodeOptions = {},
): Promise<DhtNode[]> {
  const nodes: DhtNode[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const bootstrap: string[] = [];
      if (i > 0) bootstrap.push(nodes[(i * 7) % i]!.multiaddrs[0]!);
      if (i > 2 && i % 2 === 0) bootstrap.push(nodes[i - 1]!.multiaddrs[0]!);
      nodes.push(await createDhtNode(testNodeOptions({ ...extra, bootstrap })));
    }
  } catch (err) {
    await stopAll(nodes);
    throw err;
  }
  return nodes;
}

/**
 * Waits until every node has all the others in its routing table (small
 * networks only), so a query from any node reaches every other.
 */
export async function waitForFullTables(
  nodes: readonly DhtNode[],
  timeoutMs = 5000,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (nodes.some((node) => node.routingTableSize < nodes.length - 1)) {
    if (performance.now() > deadline) {
      throw new Error(`routing tables still partial: ${nodes.map((n) => n.routingTableSize)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * The libp2p stream a {@linkcode DhtStream} is (DIM hands out libp2p
 * streams under a narrower type), for tests that speak kad frames on it.
 */
export function rawStream(stream: DhtStream): Stream {
  return stream as unknown as Stream;
}

/** Stops every node, in parallel. */
export async function stopAll(nodes: readonly DhtNode[]): Promise<void> {
  await Promise.all(nodes.map((node) => node.stop()));
}

/** The median of some numbers. */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? NaN;
}
