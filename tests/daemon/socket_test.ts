/**
 * `dim daemon`'s socket without a network: its mode, a stale socket file,
 * removal at the end, a clean exit on SIGTERM (in this process and as a
 * process of its own), and clients that send garbage, huge lines, floods,
 * never read, or hang up mid-request, while the daemon keeps serving.
 */
import assert from "node:assert/strict";
import { CLI, initUser, LOOPBACK, ROOT, tempDir, TEST_ENV, until } from "../cli/_helpers.ts";
import { DaemonErrorCode, MAX_CLIENTS, MAX_LINE_BYTES } from "../../lib/daemon/protocol.ts";
import { LineClient, startDaemon } from "./_helpers.ts";

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

// A socket file with nobody behind it, as a daemon that was killed leaves.
async function staleSocket(path: string): Promise<void> {
  const script = `import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.bind(sys.argv[1])\n`;
  const { code } = await new Deno.Command("python3", { args: ["-c", script, path] }).output();
  assert.equal(code, 0);
}

Deno.test("dim daemon removes a stale socket, serves on mode 0600, removes it on SIGTERM", async () => {
  await using tmp = await tempDir();
  const home = `${tmp.path}/ada`;
  await initUser(home, "Ada");
  await staleSocket(`${home}/dim.sock`);
  const daemon = await startDaemon(home);
  assert.equal(daemon.socket, `${home}/dim.sock`);
  const info = await Deno.lstat(daemon.socket);
  assert.ok(info.isSocket);
  assert.equal(info.mode! & 0o777, 0o600);
  const client = await LineClient.connect(daemon.socket);
  const hello = await client.request(1, "hello");
  assert.equal((hello.result as { api: number }).api, 1);
  client.close();
  const run = await daemon.stop();
  assert.equal(run.code, 0, run.err);
  assert.match(run.err, /SIGTERM: stopping/);
  assert.match(run.err, /stopped\n$/);
  assert.equal(await exists(daemon.socket), false);
});

Deno.test("dim daemon as a process exits by itself on SIGTERM", async () => {
  await using tmp = await tempDir();
  const home = `${tmp.path}/ada`;
  await initUser(home, "Ada");
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", "-A", CLI, "--home", home, "daemon", "--listen", LOOPBACK, "--json"],
    cwd: ROOT,
    env: { ...TEST_ENV, NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const first = await reader.read();
  reader.releaseLock();
  const cancel = child.stdout.cancel().catch(() => {});
  assert.equal(JSON.parse(first.value!).socket, `${home}/dim.sock`);
  child.kill("SIGTERM");
  const killer = setTimeout(() => child.kill("SIGKILL"), 15_000);
  const status = await child.status;
  clearTimeout(killer);
  await cancel;
  assert.equal(status.code, 0);
  assert.equal(await exists(`${home}/dim.sock`), false);
});

Deno.test("garbage, huge lines, floods, stalled readers and hang-ups leave the daemon serving", async (t) => {
  await using tmp = await tempDir();
  const home = `${tmp.path}/ada`;
  await initUser(home, "Ada");
  const daemon = await startDaemon(home);
  const socket = daemon.socket;
  try {
    await t.step("malformed requests get JSON-RPC errors on the same connection", async () => {
      const c = await LineClient.connect(socket);
      const cases: [string | Uint8Array, number, unknown][] = [
        ["garbage\n", DaemonErrorCode.ParseError, null],
        [new Uint8Array([0xff, 0xfe, 0x7b, 0x0a]), DaemonErrorCode.ParseError, null],
        ["[]\n", DaemonErrorCode.InvalidRequest, null],
        ['[{"jsonrpc":"2.0","id":1,"method":"hello"}]\n', DaemonErrorCode.InvalidRequest, null],
        ["42\n", DaemonErrorCode.InvalidRequest, null],
        ['{"jsonrpc":"1.0","id":3,"method":"hello"}\n', DaemonErrorCode.InvalidRequest, 3],
        ['{"jsonrpc":"2.0","id":{},"method":"hello"}\n', DaemonErrorCode.InvalidRequest, null],
        ['{"jsonrpc":"2.0","id":4,"method":"frobnicate"}\n', DaemonErrorCode.MethodNotFound, 4],
        ['{"jsonrpc":"2.0","id":5,"method":"toString"}\n', DaemonErrorCode.MethodNotFound, 5],
        [
          '{"jsonrpc":"2.0","id":6,"method":"send","params":[1]}\n',
          DaemonErrorCode.InvalidParams,
          6,
        ],
        [
          '{"jsonrpc":"2.0","id":7,"method":"send","params":{"contact":5}}\n',
          DaemonErrorCode.InvalidParams,
          7,
        ],
        [
          '{"jsonrpc":"2.0","id":8,"method":"send","params":{"contact":"nobody","text":"x"}}\n',
          DaemonErrorCode.UnknownContact,
          8,
        ],
        [
          '{"jsonrpc":"2.0","id":9,"method":"history","params":{"contact":"nobody"}}\n',
          DaemonErrorCode.UnknownContact,
          9,
        ],
      ];
      for (const [line, code, id] of cases) {
        await c.write(line);
        const reply = await c.line();
        assert.equal((reply?.error as { code: number } | undefined)?.code, code, String(line));
        assert.equal(reply?.id, id);
      }
      // A notification (no id) gets no reply; blank lines are skipped.
      await c.write('{"jsonrpc":"2.0","method":"hello"}\n\n  \n');
      assert.equal((await c.request(10, "hello")).id, 10);
      c.close();
    });

    await t.step("a line over the cap gets an error, then the connection closes", async () => {
      const c = await LineClient.connect(socket);
      const writing = c.write("x".repeat(MAX_LINE_BYTES + 100_000)).catch(() => {});
      const reply = await c.line();
      assert.equal((reply?.error as { code: number }).code, DaemonErrorCode.RequestTooLarge);
      assert.equal(await c.line(), undefined);
      await writing;
      c.close();
    });

    await t.step("thousands of pipelined requests are all answered", async () => {
      const c = await LineClient.connect(socket);
      const n = 3000;
      let batch = "";
      for (let i = 1; i <= n; i++) batch += `{"jsonrpc":"2.0","id":${i},"method":"hello"}\n`;
      const writing = c.write(batch);
      const seen = new Set<unknown>();
      for (let i = 0; i < n; i++) seen.add((await c.line())?.id);
      await writing;
      assert.equal(seen.size, n);
      c.close();
    });

    await t.step("hang-ups mid-request and mid-line", async () => {
      for (let i = 0; i < 20; i++) {
        const c = await LineClient.connect(socket);
        await c.write('{"jsonrpc":"2.0","id":1,"method":"inbox"}\n{"jsonrpc":"2.0","id":2,"met');
        c.close();
      }
    });

    await t.step("a client that never reads is disconnected", async () => {
      const c = await LineClient.connect(socket);
      await c.request(1, "subscribe");
      const line = '{"jsonrpc":"2.0","id":2,"method":"status"}\n';
      // Replies pile up past the backlog cap; writing fails once it is cut off.
      const flood = (async () => {
        for (let i = 0; i < 400; i++) await c.write(line.repeat(100));
      })().catch(() => {});
      await until(() => daemon.io.err.includes("does not read"), 30_000, "the disconnect");
      c.close();
      await flood;
    });

    await t.step(`client ${MAX_CLIENTS + 1} is refused; the others are served`, async () => {
      const clients = await Promise.all(
        Array.from({ length: MAX_CLIENTS }, () => LineClient.connect(socket)),
      );
      // Each is counted once the daemon accepted it: a request proves it.
      await Promise.all(clients.map((c, i) => c.request(i, "hello")));
      const extra = await LineClient.connect(socket);
      const refused = await extra.line();
      assert.equal((refused?.error as { code: number }).code, DaemonErrorCode.TooManyClients);
      assert.equal(await extra.line(), undefined);
      extra.close();
      for (const c of clients) c.close();
    });

    await t.step("and after all that, a new client is served", async () => {
      // The daemon counts the 64 out as it sees them hang up.
      await until(
        () => (daemon.io.err.match(/disconnected/g) ?? []).length >= MAX_CLIENTS + 23,
        10_000,
        "the hang-ups",
      );
      const c = await LineClient.connect(socket);
      const reply = await c.request(1, "listContacts");
      assert.deepEqual(reply.result, []);
      c.close();
    });
  } finally {
    const run = await daemon.stop();
    assert.equal(run.code, 0, run.err);
  }
});
