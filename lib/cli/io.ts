/**
 * The terminal the CLI talks to, injectable so commands are tested without
 * spawning a process.
 *
 * @module
 */

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
}

const encoder = new TextEncoder();

function writeAll(fd: { writeSync(p: Uint8Array): number }, text: string): void {
  const bytes = encoder.encode(text);
  let off = 0;
  while (off < bytes.length) off += fd.writeSync(bytes.subarray(off));
}

let stdinLines: AsyncIterator<string> | undefined;

async function readStdinLine(): Promise<string | undefined> {
  if (stdinLines === undefined) {
    stdinLines = Deno.stdin.readable
      .pipeThrough(new TextDecoderStream())
      .pipeThrough(lineSplitter())[Symbol.asyncIterator]();
  }
  const { value, done } = await stdinLines.next();
  return done ? undefined : value;
}

/** Splits a text stream into lines (without their line ends). */
export function lineSplitter(): TransformStream<string, string> {
  let pending = "";
  return new TransformStream<string, string>({
    transform(chunk, controller) {
      pending += chunk;
      let i: number;
      while ((i = pending.indexOf("\n")) >= 0) {
        controller.enqueue(pending.slice(0, i).replace(/\r$/, ""));
        pending = pending.slice(i + 1);
      }
    },
    flush(controller) {
      if (pending.length > 0) controller.enqueue(pending);
    },
  });
}

/**
 * The real process: Deno's stdout, stderr, env and stdin.
 *
 * @returns The io for `main`.
 */
export function denoIo(): CliIo {
  return {
    stdout: (t) => writeAll(Deno.stdout, t),
    stderr: (t) => writeAll(Deno.stderr, t),
    env: (name) => Deno.env.get(name),
    stdinIsTerminal: Deno.stdin.isTerminal(),
    stderrIsTerminal: Deno.stderr.isTerminal(),
    readLine: async (prompt) => {
      if (prompt) writeAll(Deno.stderr, prompt);
      return await readStdinLine();
    },
    readSecret: async (prompt) => {
      if (!Deno.stdin.isTerminal()) return await readStdinLine();
      writeAll(Deno.stderr, prompt);
      Deno.stdin.setRaw(true);
      try {
        const bytes: number[] = [];
        const buf = new Uint8Array(64);
        const done = () => new TextDecoder().decode(new Uint8Array(bytes));
        for (;;) {
          const n = await Deno.stdin.read(buf);
          if (n === null) return bytes.length > 0 ? done() : undefined;
          for (const b of buf.subarray(0, n)) {
            if (b === 13 || b === 10) return done();
            if (b === 3) throw new Deno.errors.Interrupted("interrupted");
            if (b === 4 && bytes.length === 0) return undefined;
            if (b === 127 || b === 8) {
              // Drop one whole UTF-8 character: continuation bytes are 10xxxxxx.
              while (bytes.length > 0 && (bytes.pop()! & 0xc0) === 0x80);
            } else if (b >= 32) bytes.push(b);
          }
        }
      } finally {
        Deno.stdin.setRaw(false);
        writeAll(Deno.stderr, "\n");
      }
    },
  };
}
