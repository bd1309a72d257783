/**
 * A fixture script run as its own `deno` process, whose JSON stdout lines
 * are collected as they come, and which a test can SIGKILL at any moment.
 *
 * @module
 */
import { fileURLToPath } from "node:url";

export const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const CONFIG = fileURLToPath(new URL("../../deno.json", import.meta.url));

/** A running fixture process. */
export class Child {
  readonly process: Deno.ChildProcess;
  /** Every JSON line printed so far. */
  readonly lines: Record<string, unknown>[] = [];
  readonly #stdin: WritableStreamDefaultWriter<Uint8Array>;
  readonly #reading: Promise<void>;
  #exited = false;

  /**
   * Starts `deno run` on a fixture with all permissions it needs and no type check.
   *
   * @param script The fixture, relative to the repository root.
   * @param args Its arguments.
   */
  constructor(script: string, args: string[]) {
    this.process = new Deno.Command(Deno.execPath(), {
      args: ["run", "--quiet", "--no-check", "--config", CONFIG, "-A", script, ...args],
      cwd: ROOT,
      stdin: "piped",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    this.#stdin = this.process.stdin.getWriter();
    const stdout = this.process.stdout;
    this.#reading = (async () => {
      let buffer = "";
      try {
        for await (const text of stdout.pipeThrough(new TextDecoderStream())) {
          buffer += text;
          let newline: number;
          while ((newline = buffer.indexOf("\n")) >= 0) {
            const line = buffer.slice(0, newline).trim();
            buffer = buffer.slice(newline + 1);
            if (line.startsWith("{")) {
              try {
                this.lines.push(JSON.parse(line));
              } catch { /* a line cut by SIGKILL */ }
            }
          }
        }
      } catch { /* the pipe broke when the process was killed */ }
    })();
    this.process.status.then(() => this.#exited = true);
  }

  /** Whether the process has ended. */
  get exited(): boolean {
    return this.#exited;
  }

  /** Waits until a line matches, or fails after `ms` (or if the process ends first). */
  async waitFor(
    what: string,
    match: (line: Record<string, unknown>) => boolean,
    ms = 30_000,
  ): Promise<Record<string, unknown>> {
    const deadline = performance.now() + ms;
    for (;;) {
      const line = this.lines.find(match);
      if (line !== undefined) return line;
      if (this.#exited) throw new Error(`the child ended before ${what}`);
      if (performance.now() > deadline) throw new Error(`no ${what} within ${ms} ms`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Kills it with SIGKILL and waits for it to be gone. */
  async kill(): Promise<void> {
    try {
      this.process.kill("SIGKILL");
    } catch { /* already gone */ }
    await this.#finish();
  }

  /** Closes its standard input (it then closes cleanly) and waits; kills after `ms`. */
  async stop(ms = 15_000): Promise<Deno.CommandStatus> {
    await this.#stdin.close().catch(() => {});
    const timer = setTimeout(() => {
      try {
        this.process.kill("SIGKILL");
      } catch { /* gone */ }
    }, ms);
    try {
      return await this.#finish();
    } finally {
      clearTimeout(timer);
    }
  }

  async #finish(): Promise<Deno.CommandStatus> {
    await this.#stdin.close().catch(() => {});
    const status = await this.process.status;
    await this.#reading;
    return status;
  }
}
