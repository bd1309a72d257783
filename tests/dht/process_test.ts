/**
 * DHT nodes in separate `deno` processes on loopback: a process that ran
 * nodes exits by itself after stopping them (the Deno event-loop fixes of
 * lib/dht/_deno_compat.ts), and three processes form one DHT.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const CONFIG = fileURLToPath(new URL("../../deno.json", import.meta.url));
const PERMISSIONS = ["--allow-net=127.0.0.1,0.0.0.0", "--allow-read", "--allow-env", "--allow-sys"];

/** A child `deno run` whose stdout is read one line at a time. */
class Child {
  readonly process: Deno.ChildProcess;
  readonly #lines: ReadableStreamDefaultReader<string>;
  readonly #stdin: WritableStreamDefaultWriter<Uint8Array>;
  #buffer = "";
  #ended = false;

  constructor(script: string, args: string[] = []) {
    this.process = new Deno.Command(Deno.execPath(), {
      args: ["run", "--quiet", "--config", CONFIG, ...PERMISSIONS, script, ...args],
      cwd: ROOT,
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    this.#lines = this.process.stdout.pipeThrough(new TextDecoderStream()).getReader();
    this.#stdin = this.process.stdin.getWriter();
  }

  /** The next stdout line parsed as JSON; fails after `timeoutMs`. */
  async next(timeoutMs = 20_000): Promise<Record<string, unknown>> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no output within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      while (true) {
        const newline = this.#buffer.indexOf("\n");
        if (newline >= 0) {
          const line = this.#buffer.slice(0, newline);
          this.#buffer = this.#buffer.slice(newline + 1);
          return JSON.parse(line);
        }
        if (this.#ended) throw new Error("the child closed its output");
        const { value, done } = await Promise.race([this.#lines.read(), timeout]);
        if (done) this.#ended = true;
        else this.#buffer += value;
      }
    } finally {
      clearTimeout(timer);
    }
  }

  /** Sends one JSON command line. */
  async send(command: Record<string, unknown>): Promise<void> {
    await this.#stdin.write(new TextEncoder().encode(JSON.stringify(command) + "\n"));
  }

  /** Closes stdin, drains stdout and waits for the exit; kills after `timeoutMs`. */
  async finish(timeoutMs = 20_000): Promise<Deno.CommandStatus> {
    await this.#stdin.close().catch(() => {});
    const killer = setTimeout(() => {
      try {
        this.process.kill("SIGKILL");
      } catch {
        // Already gone.
      }
    }, timeoutMs);
    try {
      while (!this.#ended) {
        const { done, value } = await this.#lines.read();
        if (done) this.#ended = true;
        else this.#buffer += value;
      }
      return await this.process.status;
    } finally {
      clearTimeout(killer);
    }
  }
}

Deno.test("a process that ran three nodes exits by itself within 2 s of stopping them", async () => {
  const child = new Child("tests/fixtures/dht_exit.ts");
  let status: Deno.CommandStatus | undefined;
  try {
    const ready = await child.next(60_000);
    assert.deepEqual(ready, { event: "ready", found: 3 });
    const stopped = await child.next();
    assert.equal(stopped.event, "stopped");
    const stopMs = stopped.stopMs as number;
    assert.ok(stopMs < 5000, `stop took ${stopMs} ms`);
    const stoppedAt = performance.now();
    status = await child.finish(stopMs + 10_000);
    const exitMs = performance.now() - stoppedAt;
    console.log(`  stop ${stopMs} ms, then exit ${exitMs.toFixed(0)} ms later`);
    assert.equal(status.code, 0);
    assert.equal(status.signal, null, "the process had to be killed");
    assert.ok(exitMs < 2000, `the process exited ${exitMs.toFixed(0)} ms after stopping`);
  } finally {
    if (status === undefined) await child.finish(1000);
  }
});

Deno.test("three deno processes on loopback form one DHT: one puts, another gets", async () => {
  const children: Child[] = [];
  try {
    const first = new Child("tests/fixtures/dht_peer.ts");
    children.push(first);
    const { multiaddrs } = await first.next(60_000) as { multiaddrs: string[] };
    const bootstrap = ["--bootstrap", multiaddrs[0]!];
    const writer = new Child("tests/fixtures/dht_peer.ts", bootstrap);
    const reader = new Child("tests/fixtures/dht_peer.ts", bootstrap);
    children.push(writer, reader);
    await Promise.all([writer.next(60_000), reader.next(60_000)]);

    await writer.send({ op: "put", key: "/test/across", seq: 42, payload: "between processes" });
    const put = await writer.next();
    assert.equal(put.ok, true, JSON.stringify(put));
    assert.ok((put.acks as number) >= 1, JSON.stringify(put));

    for (const child of [reader, first]) {
      await child.send({ op: "get", key: "/test/across" });
      assert.deepEqual(await child.next(), { ok: true, seq: 42, payload: "between processes" });
    }
    await reader.send({ op: "get", key: "/test/absent" });
    assert.deepEqual(await reader.next(), { ok: true, seq: null, payload: null });

    for (const child of children) await child.send({ op: "stop" });
    for (const child of children) assert.deepEqual(await child.next(), { ok: true, stopped: true });
    const statuses = await Promise.all(children.map((child) => child.finish(5000)));
    assert.deepEqual(statuses.map((status) => status.code), [0, 0, 0]);
  } finally {
    await Promise.all(children.map((child) => child.finish(1000)));
  }
});
