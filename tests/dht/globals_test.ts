/**
 * Importing lib/dht/mod.ts changes no global; making the first node
 * applies the Deno fixes of lib/dht/_deno_compat.ts, once. Checked in a
 * fresh process, since another test may already have made a node here.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";

const MOD = new URL("../../lib/dht/mod.ts", import.meta.url).href;

const SCRIPT = `
const timeout = AbortSignal.timeout;
const any = AbortSignal.any;
const add = AbortSignal.prototype.addEventListener;
const unref = BroadcastChannel.prototype.unref;
const { createDhtNode } = await import(${JSON.stringify(MOD)});
const afterImport = {
  timeout: AbortSignal.timeout === timeout,
  any: AbortSignal.any === any,
  addEventListener: AbortSignal.prototype.addEventListener === add,
  unref: BroadcastChannel.prototype.unref === unref,
};
const node = await createDhtNode({ listen: ["/ip4/127.0.0.1/tcp/0"] });
const patched = AbortSignal.timeout;
await node.stop();
const again = await createDhtNode({ listen: ["/ip4/127.0.0.1/tcp/0"] });
await again.stop();
console.log(JSON.stringify({
  afterImport,
  afterNode: {
    timeout: patched !== timeout,
    unref: typeof BroadcastChannel.prototype.unref === "function",
    once: AbortSignal.timeout === patched,
  },
}));
`;

Deno.test("importing mod.ts changes no global; the first node applies the Deno fixes", async () => {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["eval", SCRIPT],
    cwd: fileURLToPath(new URL("../../", import.meta.url)),
    stdout: "piped",
    stderr: "inherit",
  }).output();
  assert.equal(output.code, 0);
  const result = JSON.parse(new TextDecoder().decode(output.stdout).trim().split("\n").at(-1)!);
  assert.deepEqual(result.afterImport, {
    timeout: true,
    any: true,
    addEventListener: true,
    unref: true,
  });
  assert.deepEqual(result.afterNode, { timeout: true, unref: true, once: true });
});
