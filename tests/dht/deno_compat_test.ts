/**
 * The timeout-signal fix of lib/dht/_deno_compat.ts: signals that are
 * listened to still fire when nothing else refers to them (also through
 * `AbortSignal.any`), and those nobody listens to are collected, with their
 * timers, long before they would fire. Checked in a child process that can
 * force garbage collection.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";

const COMPAT = new URL("../../lib/dht/_deno_compat.ts", import.meta.url).href;

const SCRIPT = `
const { applyDenoCompat } = await import(${JSON.stringify(COMPAT)});
applyDenoCompat();
const fired = { timeout: false, composite: false, onabort: false, removed: false };
(() => {
  AbortSignal.timeout(50).addEventListener("abort", () => { fired.timeout = true; });
  AbortSignal.any([AbortSignal.timeout(50)]).addEventListener("abort", () => { fired.composite = true; });
  AbortSignal.timeout(50).onabort = () => { fired.onabort = true; };
  const listener = () => { fired.removed = true; };
  const signal = AbortSignal.timeout(50);
  signal.addEventListener("abort", listener);
  signal.removeEventListener("abort", listener);
})();
for (let i = 0; i < 5; i++) { gc(); await new Promise((r) => setTimeout(r, 5)); }
await new Promise((r) => setTimeout(r, 150));
gc();
const before = Deno.memoryUsage().heapUsed;
for (let i = 0; i < 50000; i++) {
  const signal = AbortSignal.timeout(60000);
  const listener = () => {};
  signal.addEventListener("abort", listener);
  signal.removeEventListener("abort", listener);
}
for (let i = 0; i < 5; i++) { gc(); await new Promise((r) => setTimeout(r, 20)); }
const grownMb = (Deno.memoryUsage().heapUsed - before) / 1e6;
console.log(JSON.stringify({ fired, grownMb }));
Deno.exit(0);
`;

Deno.test("timeout signals fire when listened to and are collected when not", async () => {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--v8-flags=--expose-gc", SCRIPT],
    cwd: fileURLToPath(new URL("../../", import.meta.url)),
    stdout: "piped",
    stderr: "inherit",
  }).output();
  assert.equal(output.code, 0);
  const { fired, grownMb } = JSON.parse(new TextDecoder().decode(output.stdout));
  assert.deepEqual(fired, { timeout: true, composite: true, onabort: true, removed: false });
  // Deno's own timeout signals would hold about 30 MB here until they fired.
  assert.ok(grownMb < 10, `heap grew ${grownMb} MB`);
});

Deno.test("a timeout signal aborts with a TimeoutError and rejects bad delays", async () => {
  const { applyDenoCompat } = await import("../../lib/dht/_deno_compat.ts");
  applyDenoCompat();
  const signal = AbortSignal.timeout(10);
  // The timer is unref'd, as in Node.js: something else must keep Deno up.
  const keepAlive = setTimeout(() => {}, 1000);
  await new Promise((resolve) => signal.addEventListener("abort", resolve, { once: true }));
  clearTimeout(keepAlive);
  assert.equal(signal.reason.name, "TimeoutError");
  assert.throws(() => AbortSignal.timeout(-1), TypeError);
  const controller = new AbortController();
  const composite = AbortSignal.any([controller.signal, AbortSignal.timeout(60_000)]);
  controller.abort(new Error("first"));
  assert.equal(composite.aborted, true);
  assert.equal(composite.reason.message, "first");
});
