/**
 * Twenty real nodes in one process, over TCP on 127.0.0.1: values put from
 * one node are found from others, also after 30% of the nodes stop.
 * Latencies are printed, not asserted.
 */
import assert from "node:assert/strict";
import {
  median,
  payloadOf,
  seqOf,
  startNetwork,
  stopAll,
  testRecord,
  waitForFullTables,
} from "./_helpers.ts";

const NODES = 20;

Deno.test("a value put from any of 20 nodes is found from others", async () => {
  const nodes = await startNetwork(NODES);
  try {
    const putTimes: number[] = [];
    for (let i = 0; i < NODES; i++) {
      const started = performance.now();
      await nodes[i]!.put(`/test/value-${i}`, testRecord(i, `from node ${i}`));
      putTimes.push(performance.now() - started);
    }
    const getTimes: number[] = [];
    for (let i = 0; i < NODES; i++) {
      // Three readers per value, each a different distance from the writer.
      for (const offset of [1, 7, 13]) {
        const reader = nodes[(i + offset) % NODES]!;
        const started = performance.now();
        const value = await reader.get(`/test/value-${i}`);
        getTimes.push(performance.now() - started);
        assert.equal(seqOf(value), i);
        assert.equal(payloadOf(value), `from node ${i}`);
      }
    }
    console.log(
      `  ${NODES} nodes, default settings: put p50 ${median(putTimes).toFixed(1)} ms, ` +
        `get p50 ${median(getTimes).toFixed(1)} ms (${getTimes.length} gets)`,
    );
  } finally {
    await stopAll(nodes);
  }
});

Deno.test("every value is still found after 30% of 20 nodes stop", async () => {
  const nodes = await startNetwork(NODES);
  const stopped = new Set<number>();
  try {
    for (let i = 0; i < NODES; i++) {
      await nodes[i]!.put(`/test/survivor-${i}`, testRecord(i));
    }
    // Stop 6 nodes spread over the network, writers among them.
    for (const i of [0, 3, 7, 10, 14, 17]) {
      stopped.add(i);
      await nodes[i]!.stop();
    }
    const survivors = nodes.filter((_, i) => !stopped.has(i));
    for (let i = 0; i < NODES; i++) {
      const reader = survivors[i % survivors.length]!;
      assert.equal(seqOf(await reader.get(`/test/survivor-${i}`)), i);
    }
  } finally {
    await stopAll(nodes);
  }
});

Deno.test("tuned lookups: put and get p50 with alpha 3, one path and a quorum of 3", async () => {
  const nodes = await startNetwork(NODES, { queryConcurrency: 3, disjointPaths: 1, quorum: 3 });
  try {
    const putTimes: number[] = [];
    const getTimes: number[] = [];
    for (let i = 0; i < NODES; i++) {
      const started = performance.now();
      await nodes[i]!.put(`/test/tuned-${i}`, testRecord(i));
      putTimes.push(performance.now() - started);
    }
    for (let round = 0; round < 2; round++) {
      for (let i = 0; i < NODES; i++) {
        const reader = nodes[(i + 5 + round) % NODES]!;
        const started = performance.now();
        const value = await reader.get(`/test/tuned-${i}`);
        getTimes.push(performance.now() - started);
        assert.equal(seqOf(value), i);
      }
    }
    console.log(
      `  ${NODES} nodes, alpha 3 / 1 path / quorum 3: put p50 ${median(putTimes).toFixed(1)} ms, ` +
        `get p50 ${median(getTimes).toFixed(1)} ms (${getTimes.length} gets)`,
    );
  } finally {
    await stopAll(nodes);
  }
});

Deno.test("a get among 20 nodes asks the three closest peers when they agree", async () => {
  const nodes = await startNetwork(NODES);
  try {
    await waitForFullTables(nodes);
    for (let i = 0; i < 5; i++) await nodes[i]!.put(`/test/paths-${i}`, testRecord(i));
    for (let i = 0; i < 5; i++) {
      const reader = nodes[i + 10]!;
      const before = reader.stats;
      assert.equal(seqOf(await reader.get(`/test/paths-${i}`)), i);
      const sent = reader.stats.requests - before.requests;
      // Every node knows every other: the three closest, on three of the
      // ten paths, agree, and no closer peer exists.
      assert.equal(sent, 3);
    }
    // Asking the same peers again reuses the streams the first gets opened.
    const reader = nodes[10]!;
    const before = reader.stats;
    await reader.get("/test/paths-0");
    assert.equal(reader.stats.streams - before.streams, 0);
    assert.equal(reader.stats.reused - before.reused, 3);
  } finally {
    await stopAll(nodes);
  }
});
