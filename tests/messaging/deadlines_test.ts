import assert from "node:assert/strict";
import { Deadlines } from "../../lib/messaging/_deadlines.ts";

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
