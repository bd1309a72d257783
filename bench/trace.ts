// Where does a chat round trip's time go, step by step? Alice sends bob one
// message of 1 KiB at a time and waits for its acknowledgement (as the round
// trip of bench/chat_bench.ts: two real messengers in this process, SQLite
// files, TCP on loopback), with a timestamp at each point the messaging
// layer passes (lib/platform/trace.ts) and at each socket write and read.
// After WARM_UP round trips, it times ROUND_TRIPS more and prints the median
// of each step (from one point to the next) and of the whole round trip.
// Both users share one JavaScript thread, so the steps follow each other
// as the thread ran them.
//
// Run: deno run -A bench/trace.ts
import net from "node:net";
import { setTraceSink } from "../lib/platform/trace.ts";
import { deliver, openChatPair } from "./_chat_pair.ts";

const WARM_UP = 1000;
const ROUND_TRIPS = 400;

const marks: [string, number][] = [];
let armed = false;
const mark = (point: string) => {
  if (armed) marks.push([point, performance.now()]);
};
setTraceSink(mark);

// The sockets under libp2p: one write per batch of frames (lib/dht/_coalesce.ts),
// one "data" event per read.
type SocketMethods = {
  write(this: net.Socket, ...args: unknown[]): boolean;
  emit(this: net.Socket, event: string | symbol, ...args: unknown[]): boolean;
};
const socket = net.Socket.prototype as unknown as SocketMethods;
const write = socket.write;
socket.write = function (...args) {
  const chunk = args[0] as { byteLength?: number } | undefined;
  mark(`network: ${chunk?.byteLength ?? "?"} bytes written`);
  return write.apply(this, args);
};
const emit = socket.emit;
socket.emit = function (event, ...args) {
  if (event === "data") mark("network: read");
  return emit.call(this, event, ...args);
};

const pair = await openChatPair("dim-trace-");
try {
  await deliver(pair.alice, "bob", WARM_UP);
  const steps = new Map<string, number[]>();
  const totals: number[] = [];
  for (let i = 0; i < ROUND_TRIPS; i++) {
    marks.length = 0;
    armed = true;
    const start = performance.now();
    await deliver(pair.alice, "bob", 1);
    const end = performance.now();
    armed = false;
    totals.push(end - start);
    let previous: [string, number] = ["start", start];
    for (
      const point of [...marks, ["send: acknowledged (waitFor resolved)", end] as [string, number]]
    ) {
      const step = `${previous[0]} → ${point[0]}`;
      const times = steps.get(step) ?? [];
      times.push(point[1] - previous[1]);
      steps.set(step, times);
      previous = point;
    }
  }
  const median = (values: number[]) => values.sort((a, b) => a - b)[values.length >> 1]!;
  const us = (ms: number) => `${Math.round(ms * 1000)} µs`;
  console.log(`| step (in order) | median | in round trips |`);
  console.log(`| --- | ---: | ---: |`);
  for (const [step, times] of steps) {
    // Steps that happen in fewer than a quarter of the round trips are
    // interleavings (a timer, a deferred commit), not the path.
    if (times.length < ROUND_TRIPS / 4) continue;
    console.log(`| ${step} | ${us(median(times))} | ${times.length} |`);
  }
  console.log(`| **round trip** | **${us(median(totals))}** | ${ROUND_TRIPS} |`);
} finally {
  setTraceSink(undefined);
  await Promise.all([pair.alice.stop(), pair.bob.stop()]);
  await Deno.remove(pair.dir, { recursive: true }).catch(() => {});
}
