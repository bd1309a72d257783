/**
 * `dim` as a real process (`deno run -A cli.ts …`): one-shot commands exit
 * by themselves as soon as their work is done — no event loop left hanging
 * and no `Deno.exit` — and `dim node` runs until SIGTERM or SIGINT, then
 * stops cleanly with exit code 0.
 */
import assert from "node:assert/strict";
import {
  CLI,
  dim,
  initUser,
  LOOPBACK,
  net,
  ROOT,
  runCli,
  storageNode,
  tempDir,
} from "./_helpers.ts";

// Deno's start-up and the passphrase's key derivation take about a second;
// a command that waited for an idle event loop would take far longer.
const EXIT_WITHIN_MS = 8000;

Deno.test("one-shot commands exit by themselves, promptly, with the right code", async (t) => {
  await using r = await storageNode();
  await using tmp = await tempDir();
  const alice = `${tmp.path}/alice`;
  const bob = `${tmp.path}/bob`;
  await initUser(alice, "Alice", net(r.address));
  await initUser(bob, "Bob", net(r.address));
  const bobId = JSON.parse((await dim(bob, ["id", "--json"])).out).id;
  assert.equal((await dim(alice, ["contact", "add", "bob", bobId, "--listen", LOOPBACK])).code, 0);

  const cases: [string, string[], number, RegExp][] = [
    ["id", ["--home", alice, "id", "--json"], 0, /"id":"dim/],
    ["send (stored offline)", ["--home", alice, "send", "bob", "hi", "--listen", LOOPBACK], 0, /⧗/],
    ["inbox", ["--home", bob, "inbox", "--listen", LOOPBACK], 0, /alice|unknown dim.*: hi/],
    ["status", ["--home", alice, "status", "--json", "--listen", LOOPBACK], 0, /"outbox":/],
    ["a usage error", ["--home", alice, "send"], 2, /^$/],
    ["an unknown contact", ["--home", alice, "send", "carol", "hi"], 1, /^$/],
  ];
  for (const [name, args, code, out] of cases) {
    await t.step(name, async () => {
      const run = await runCli(args, { timeoutMs: 30_000 });
      assert.equal(run.code, code, run.err);
      assert.match(run.out, out);
      assert.ok(run.ms < EXIT_WITHIN_MS, `${name} took ${Math.round(run.ms)} ms to exit`);
    });
  }
});

Deno.test("dim node prints its addresses, serves the network, and stops cleanly on SIGTERM and SIGINT", async (t) => {
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    await t.step(signal, async () => {
      await using tmp = await tempDir();
      const child = new Deno.Command(Deno.execPath(), {
        args: ["run", "--quiet", "-A", CLI, "--home", `${tmp.path}/node`, "node", "--json"]
          .concat(["--listen", LOOPBACK]),
        cwd: ROOT,
        env: { DIM_UPNP: "off", DIM_LAN: "off" },
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const killer = setTimeout(() => child.kill("SIGKILL"), 30_000);
      try {
        const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
        let text = "";
        while (!text.includes("\n")) {
          const { value, done } = await reader.read();
          if (done) break;
          text += value;
        }
        const info = JSON.parse(text.split("\n")[0]!);
        assert.match(info.addresses[0], /^\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\/12D3KooW/);

        // It is a working bootstrap node: a user joins through it.
        const user = `${tmp.path}/user`;
        await initUser(user, "User");
        const status = await dim(user, ["status", "--json", ...net(info.addresses[0])]);
        assert.equal(status.code, 0, status.err);
        assert.equal(JSON.parse(status.out).routingTable, 1);

        const stopAt = performance.now();
        child.kill(signal);
        while (!(await reader.read()).done);
        const { code } = await child.status;
        const ms = performance.now() - stopAt;
        assert.equal(code, 0);
        assert.ok(ms < 6000, `stopping took ${Math.round(ms)} ms`);
        const err = await new Response(child.stderr).text();
        assert.doesNotMatch(err, /error/i);
      } finally {
        clearTimeout(killer);
      }
    });
  }
});
