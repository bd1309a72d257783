import assert from "node:assert/strict";
import { CounterFile } from "../../lib/platform/counter_file.ts";

async function inTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("CounterFile writes atomically with mode 0600 and reads back", async () => {
  await inTempDir(async (dir) => {
    const file = new CounterFile(`${dir}/sessions.mark`);
    assert.equal(await file.read(), undefined);
    await file.write(0);
    assert.equal(await file.read(), 0);
    await file.write(Number.MAX_SAFE_INTEGER);
    assert.equal(await file.read(), Number.MAX_SAFE_INTEGER);
    if (Deno.build.os !== "windows") {
      assert.equal((await Deno.stat(file.path)).mode! & 0o777, 0o600);
    }
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["sessions.mark"]);
  });
});

Deno.test("CounterFile refuses what is not a counter", async (t) => {
  await inTempDir(async (dir) => {
    const file = new CounterFile(`${dir}/c`);
    for (
      const text of [
        "",
        "1000\n",
        "DIM counter 1\n",
        "DIM counter 1\n1000",
        "DIM counter 1\n01\n",
        "DIM counter 1\n-1\n",
        "DIM counter 1\n1e3\n",
        "DIM counter 2\n5\n",
        "DIM counter 1\n9007199254740992\n",
        "DIM counter 1\n5\n\n",
      ]
    ) {
      await t.step(JSON.stringify(text), async () => {
        await Deno.writeTextFile(file.path, text);
        await assert.rejects(file.read(), SyntaxError);
      });
    }
    await t.step("not UTF-8", async () => {
      await Deno.writeFile(file.path, new Uint8Array([0xff, 0xfe]));
      await assert.rejects(file.read(), SyntaxError);
    });
    await t.step("too long, before reading it all", async () => {
      await Deno.writeFile(file.path, new Uint8Array(1 << 20));
      await assert.rejects(file.read(), RangeError);
    });
    for (const value of [-1, 0.5, NaN, Number.MAX_SAFE_INTEGER + 1]) {
      await assert.rejects(file.write(value), RangeError);
    }
  });
});
