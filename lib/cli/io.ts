/**
 * The terminal the CLI talks to, injectable so commands are tested without
 * spawning a process: {@linkcode denoIo} is the real process, and
 * {@linkcode memoryIo} a scripted one that records what was written.
 *
 * @example Run a command against a scripted terminal
 * ```ts
 * import assert from "node:assert/strict";
 * import { main } from "./main.ts";
 * import { memoryIo } from "./io.ts";
 *
 * const io = memoryIo();
 * assert.equal(await main(["--version"], io), 0);
 * assert.match(io.out, /^dim \d/);
 * ```
 *
 * @module
 */

/** Raw keyboard input and the size of the terminal, for the interactive chat. */
export interface TerminalInput {
  /**
   * Switches raw mode: no echo, no line buffering, Ctrl-C arrives as a byte.
   *
   * @param raw Whether to enable raw mode.
   */
  setRaw(raw: boolean): void;
  /**
   * Reads the next bytes the keyboard sent.
   *
   * @returns The bytes, or `undefined` at the end of input.
   */
  read(): Promise<Uint8Array | undefined>;
  /**
   * The terminal's size now.
   *
   * @returns Columns and rows.
   */
  size(): { readonly columns: number; readonly rows: number };
}

/** A signal the CLI reacts to. */
export type CliSignal = "SIGINT" | "SIGTERM";

/** What the CLI needs from its process. */
export interface CliIo {
  /** Writes results (no newline added). */
  readonly stdout: (text: string) => void;
  /** Writes diagnostics (no newline added). */
  readonly stderr: (text: string) => void;
  /** Reads environment variables. */
  readonly env: (name: string) => string | undefined;
  /** Whether stdin is an interactive terminal. */
  readonly stdinIsTerminal: boolean;
  /** Whether stderr is an interactive terminal (spinners, progress bars). */
  readonly stderrIsTerminal: boolean;
  /** Reads one line of input with echo off, or `undefined` at end of input. */
  readonly readSecret: (prompt: string) => Promise<string | undefined>;
  /** Reads one line of input, or `undefined` at end of input. */
  readonly readLine: (prompt: string) => Promise<string | undefined>;
  /** Raw keyboard input, when stdin and stdout are both a terminal. */
  readonly terminal?: TerminalInput;
  /**
   * Calls `handler` on SIGINT or SIGTERM until the returned function is called.
   * A registration does not keep the process alive.
   */
  readonly onSignal?: (handler: (signal: CliSignal) => void) => () => void;
  /** Abandons any pending read of stdin, so the process can exit. */
  readonly releaseInput?: () => Promise<void>;
}

const encoder = new TextEncoder();

function writeAll(fd: { writeSync(p: Uint8Array): number }, text: string): void {
  const bytes = encoder.encode(text);
  let off = 0;
  while (off < bytes.length) off += fd.writeSync(bytes.subarray(off));
}

/**
 * Reads stdin on demand: nothing is read ahead of a caller, so no read is
 * left pending when nobody waits, and a pending one can be cancelled.
 */
class StdinReader {
  #reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  #buffered = new Uint8Array(0);
  #ended = false;

  async chunk(): Promise<Uint8Array | undefined> {
    if (this.#buffered.length > 0) {
      const out = this.#buffered;
      this.#buffered = new Uint8Array(0);
      return out;
    }
    if (this.#ended) return undefined;
    this.#reader ??= Deno.stdin.readable.getReader();
    const { value, done } = await this.#reader.read();
    if (done) {
      this.#ended = true;
      return undefined;
    }
    return value;
  }

  unread(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    const merged = new Uint8Array(bytes.length + this.#buffered.length);
    merged.set(bytes);
    merged.set(this.#buffered, bytes.length);
    this.#buffered = merged;
  }

  async line(): Promise<string | undefined> {
    const parts: Uint8Array[] = [];
    for (;;) {
      const chunk = await this.chunk();
      if (chunk === undefined) {
        return parts.length === 0 ? undefined : decodeLine(parts);
      }
      const nl = chunk.indexOf(10);
      if (nl < 0) {
        parts.push(chunk);
        continue;
      }
      parts.push(chunk.subarray(0, nl));
      this.unread(chunk.subarray(nl + 1));
      return decodeLine(parts);
    }
  }

  async cancel(): Promise<void> {
    this.#ended = true;
    const reader = this.#reader;
    this.#reader = undefined;
    await reader?.cancel().catch(() => {});
  }
}

function decodeLine(parts: Uint8Array[]): string {
  const length = parts.reduce((n, p) => n + p.length, 0);
  const all = new Uint8Array(length);
  let off = 0;
  for (const p of parts) {
    all.set(p, off);
    off += p.length;
  }
  return new TextDecoder().decode(all).replace(/\r$/, "");
}

/**
 * Reads a secret on a terminal in raw mode: no echo, backspace removes one
 * character, Ctrl-C interrupts, Ctrl-D on an empty line is the end of input.
 */
async function readSecretRaw(
  stdin: StdinReader,
  setRaw: (raw: boolean) => void,
): Promise<string | undefined> {
  setRaw(true);
  try {
    const bytes: number[] = [];
    const done = () => new TextDecoder().decode(new Uint8Array(bytes));
    for (;;) {
      const chunk = await stdin.chunk();
      if (chunk === undefined) return bytes.length > 0 ? done() : undefined;
      for (let i = 0; i < chunk.length; i++) {
        const b = chunk[i]!;
        if (b === 13 || b === 10) {
          stdin.unread(chunk.subarray(i + 1));
          return done();
        }
        if (b === 3) throw new Deno.errors.Interrupted("interrupted");
        if (b === 4 && bytes.length === 0) return undefined;
        if (b === 127 || b === 8) {
          // Drop one whole UTF-8 character: continuation bytes are 10xxxxxx.
          while (bytes.length > 0 && (bytes.pop()! & 0xc0) === 0x80);
        } else if (b >= 32) bytes.push(b);
      }
    }
  } finally {
    setRaw(false);
  }
}

/**
 * The real process: Deno's stdout, stderr, env, stdin and signals.
 *
 * @returns The io for `main`.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { denoIo } from "./io.ts";
 *
 * const io = denoIo();
 * assert.equal(typeof io.stdinIsTerminal, "boolean");
 * await io.releaseInput?.();
 * ```
 */
export function denoIo(): CliIo {
  const stdin = new StdinReader();
  const stdinIsTerminal = Deno.stdin.isTerminal();
  const setRaw = (raw: boolean) => Deno.stdin.setRaw(raw);
  const terminal: TerminalInput | undefined = stdinIsTerminal && Deno.stdout.isTerminal()
    ? {
      setRaw,
      read: () => stdin.chunk(),
      size: () => {
        try {
          return Deno.consoleSize();
        } catch {
          return { columns: 80, rows: 24 };
        }
      },
    }
    : undefined;
  return {
    stdout: (t) => writeAll(Deno.stdout, t),
    stderr: (t) => writeAll(Deno.stderr, t),
    env: (name) => Deno.env.get(name),
    stdinIsTerminal,
    stderrIsTerminal: Deno.stderr.isTerminal(),
    readLine: async (prompt) => {
      if (prompt) writeAll(Deno.stderr, prompt);
      return await stdin.line();
    },
    readSecret: async (prompt) => {
      if (!stdinIsTerminal) return await stdin.line();
      writeAll(Deno.stderr, prompt);
      try {
        return await readSecretRaw(stdin, setRaw);
      } finally {
        writeAll(Deno.stderr, "\n");
      }
    },
    ...(terminal ? { terminal } : {}),
    onSignal: (handler) => {
      const signals: CliSignal[] = Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM"];
      const listeners = signals.map((s) => [s, () => handler(s)] as const);
      for (const [s, l] of listeners) Deno.addSignalListener(s, l);
      return () => {
        for (const [s, l] of listeners) Deno.removeSignalListener(s, l);
      };
    },
    releaseInput: () => stdin.cancel(),
  };
}

/** Options of {@linkcode memoryIo}. */
export interface MemoryIoOptions {
  /** Environment variables. Default none. */
  readonly env?: Readonly<Record<string, string>>;
  /** Answers to secret prompts, in order; then end of input. Default none. */
  readonly secrets?: readonly string[];
  /** Input lines, in order. Default none. */
  readonly lines?: readonly string[];
  /** Whether input ends after `lines`; if not, {@linkcode MemoryIo.pushLine} adds more. Default `true`. */
  readonly endInput?: boolean;
  /** Whether stdin claims to be a terminal. Default `false`. */
  readonly stdinIsTerminal?: boolean;
  /** Whether stderr claims to be a terminal. Default `false`. */
  readonly stderrIsTerminal?: boolean;
  /** Simulates a raw terminal of this size, fed by {@linkcode MemoryIo.pushKeys}. Default none. */
  readonly terminal?: { readonly columns: number; readonly rows: number };
}

/** A scripted {@linkcode CliIo} that records its output. */
export interface MemoryIo extends CliIo {
  /** Everything written to stdout so far. */
  readonly out: string;
  /** Everything written to stderr so far. */
  readonly err: string;
  /**
   * Adds an input line, or ends the input with `undefined`.
   *
   * @param line The line without its line end, or `undefined`.
   */
  pushLine(line: string | undefined): void;
  /**
   * Types keys on the simulated terminal (`"\r"` is Enter, `"\x03"` Ctrl-C).
   *
   * @param keys The bytes, as text.
   */
  pushKeys(keys: string): void;
  /**
   * Sends a signal to the handlers registered with `onSignal`.
   *
   * @param signal The signal.
   */
  signal(signal: CliSignal): void;
  /** Whether the simulated terminal is in raw mode now. */
  readonly raw: boolean;
}

/** An async queue: `undefined` ends it. */
class Queue<T> {
  #items: (T | undefined)[] = [];
  #waiters: ((v: T | undefined) => void)[] = [];
  #ended = false;
  push(item: T | undefined): void {
    if (this.#ended) return;
    if (item === undefined) this.#ended = true;
    const w = this.#waiters.shift();
    if (w) w(item);
    else this.#items.push(item);
    if (this.#ended) { for (const w of this.#waiters.splice(0)) w(undefined); }
  }
  next(): Promise<T | undefined> {
    if (this.#items.length > 0) return Promise.resolve(this.#items.shift());
    if (this.#ended) return Promise.resolve(undefined);
    return new Promise((r) => this.#waiters.push(r));
  }
}

/**
 * A scripted terminal for tests and examples: it records stdout and stderr
 * and answers prompts from the given lines.
 *
 * @param options Environment, input, and what claims to be a terminal.
 * @returns The io, with `out` and `err` holding what was written.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { memoryIo } from "./io.ts";
 *
 * const io = memoryIo({ env: { DIM_HOME: "/tmp/x" }, lines: ["hi"] });
 * assert.equal(io.env("DIM_HOME"), "/tmp/x");
 * assert.equal(await io.readLine(""), "hi");
 * assert.equal(await io.readLine(""), undefined);
 * io.stdout("done\n");
 * assert.equal(io.out, "done\n");
 * ```
 */
export function memoryIo(options: MemoryIoOptions = {}): MemoryIo {
  let out = "";
  let err = "";
  let raw = false;
  const env = options.env ?? {};
  const secrets = [...(options.secrets ?? [])];
  const lines = new Queue<string>();
  for (const l of options.lines ?? []) lines.push(l);
  if (options.endInput ?? true) lines.push(undefined);
  const keys = new Queue<Uint8Array>();
  const handlers = new Set<(s: CliSignal) => void>();
  const size = options.terminal;
  return {
    stdout: (t) => out += t,
    stderr: (t) => err += t,
    env: (name) => env[name],
    stdinIsTerminal: options.stdinIsTerminal ?? size !== undefined,
    stderrIsTerminal: options.stderrIsTerminal ?? false,
    readSecret: (prompt) => {
      // The real terminal ends the line after a secret, since no echo did.
      err += `${prompt}\n`;
      return Promise.resolve(secrets.shift());
    },
    readLine: (prompt) => {
      err += prompt;
      return lines.next();
    },
    ...(size
      ? {
        terminal: {
          setRaw: (r: boolean) => raw = r,
          read: () => keys.next(),
          size: () => size,
        },
      }
      : {}),
    onSignal: (handler) => {
      handlers.add(handler);
      return () => handlers.delete(handler);
    },
    releaseInput: () => {
      lines.push(undefined);
      keys.push(undefined);
      return Promise.resolve();
    },
    get out() {
      return out;
    },
    get err() {
      return err;
    },
    get raw() {
      return raw;
    },
    pushLine: (line) => lines.push(line),
    pushKeys: (text) => keys.push(encoder.encode(text)),
    signal: (s) => {
      for (const h of [...handlers]) h(s);
    },
  };
}
