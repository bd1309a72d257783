import assert from "node:assert/strict";
import { Deadlines, IdleTimer } from "../../lib/platform/signals.ts";

Deno.test("a deadline signal times out on its own, and leaves nothing behind", async () => {
  const deadlines = new Deadlines();
  const signals = Array.from({ length: 1000 }, () => deadlines.signal(20));
  assert.equal(deadlines.size, 1000);
  await new Promise((r) => setTimeout(r, 60));
  assert.ok(signals.every((s) => s.aborted && (s.reason as DOMException).name === "TimeoutError"));
  assert.equal(deadlines.size, 0, "fired signals are forgotten");
});

Deno.test("abort() aborts every live signal with its reason, and later ones until restart()", () => {
  const deadlines = new Deadlines();
  const live = [deadlines.signal(60_000), deadlines.signal(60_000)];
  const reason = new Error("stopping");
  deadlines.abort(reason);
  assert.ok(live.every((s) => s.aborted && s.reason === reason));
  assert.equal(deadlines.size, 0);
  const late = deadlines.signal(60_000);
  assert.equal(late.reason, reason);
  deadlines.restart();
  const fresh = deadlines.signal(60_000);
  assert.equal(fresh.aborted, false);
  deadlines.abort(reason);
});

Deno.test("an idle timer aborts after its silence, and refresh() puts it off", async () => {
  const idle = new IdleTimer(40, () => new Error("silent"));
  await new Promise((r) => setTimeout(r, 25));
  idle.refresh();
  await new Promise((r) => setTimeout(r, 25));
  assert.equal(idle.signal.aborted, false, "refreshed");
  await new Promise((r) => setTimeout(r, 40));
  assert.equal((idle.signal.reason as Error).message, "silent");
  idle.release();
});

Deno.test("an idle timer follows its parent until release()", () => {
  const parent = new AbortController();
  const idle = new IdleTimer(60_000, () => new Error("silent"), parent.signal);
  const reason = new Error("stopping");
  parent.abort(reason);
  assert.equal(idle.signal.reason, reason);
  idle.release();

  const other = new AbortController();
  const released = new IdleTimer(60_000, () => new Error("silent"), other.signal);
  released.release();
  other.abort(reason);
  assert.equal(released.signal.aborted, false, "unhooked from the parent");
});

Deno.test("within() follows the caller's signal while the work runs, and lets go of it after", async () => {
  const deadlines = new Deadlines();
  const reason = new Error("gave up");
  const caller = new AbortController();
  const running = deadlines.within(
    60_000,
    caller.signal,
    (signal) =>
      new Promise((_resolve, reject) => {
        signal.addEventListener("abort", () => reject(signal.reason), { once: true });
      }),
  );
  caller.abort(reason);
  await assert.rejects(running, (err) => err === reason);

  const later = new AbortController();
  let used: AbortSignal | undefined;
  assert.equal(
    await deadlines.within(60_000, later.signal, (signal) => {
      used = signal;
      return Promise.resolve(7);
    }),
    7,
  );
  later.abort(reason);
  assert.equal(used?.aborted, false, "a finished call no longer follows the caller");

  let ran = false;
  await assert.rejects(
    deadlines.within(60_000, caller.signal, () => {
      ran = true;
      return Promise.resolve();
    }),
    (err) => err === reason,
  );
  assert.equal(ran, false, "an aborted caller's work does not start");
  deadlines.abort(new Error("done"));
});
