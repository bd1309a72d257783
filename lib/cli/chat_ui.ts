/**
 * Where `dim chat` prints and reads: a raw-mode terminal with the line
 * editor at the bottom and messages printed above it ({@linkcode TerminalUi}),
 * or plain lines for pipes, scripts and `--json` ({@linkcode PlainUi}).
 *
 * @module
 */
import type { CliIo, TerminalInput } from "./io.ts";
import { type Completer, LineEditor } from "./line_editor.ts";

/** Where the chat prints and reads. */
export interface ChatUi {
  /** Whether a person is typing (a terminal): lines can be updated in place. */
  readonly interactive: boolean;
  /** Resolves when the user interrupts (Ctrl-C or a signal). */
  readonly interrupted: Promise<void>;
  /** Prints a line; returns a handle for {@linkcode ChatUi.update}. */
  print(line: string): number;
  /** Replaces a printed line, or prints the new text if it cannot. */
  update(handle: number, line: string): void;
  /** The next input line, or `undefined` to quit. */
  next(): Promise<string | undefined>;
  /** Interrupts: `next()` and `interrupted` resolve. */
  interrupt(): void;
  /** Restores the terminal. */
  close(): void;
}

/** An async queue of input lines; `undefined` means quit. */
class LineQueue {
  #items: (string | undefined)[] = [];
  #waiters: ((v: string | undefined) => void)[] = [];
  push(v: string | undefined): void {
    const w = this.#waiters.shift();
    if (w) w(v);
    else this.#items.push(v);
  }
  next(): Promise<string | undefined> {
    if (this.#items.length > 0) return Promise.resolve(this.#items.shift());
    return new Promise((r) => this.#waiters.push(r));
  }
}

/** The raw-mode terminal: a line editor at the bottom, messages above it. */
export class TerminalUi implements ChatUi {
  readonly interactive = true;
  readonly interrupted: Promise<void>;
  readonly #io: CliIo;
  readonly #terminal: TerminalInput;
  readonly #editor: LineEditor;
  readonly #queue = new LineQueue();
  readonly #rows: number[] = [];
  #interrupt!: () => void;
  #closed = false;

  constructor(io: CliIo, terminal: TerminalInput, complete: Completer) {
    this.#io = io;
    this.#terminal = terminal;
    this.#editor = new LineEditor("> ", { complete });
    this.interrupted = new Promise((r) => this.#interrupt = r);
    terminal.setRaw(true);
    // Bracketed paste: a pasted newline does not send half a paste.
    io.stdout("\x1b[?2004h");
    this.#draw();
    this.#pump().catch(() => this.interrupt());
  }

  async #pump(): Promise<void> {
    for (;;) {
      const bytes = await this.#terminal.read();
      if (bytes === undefined || this.#closed) {
        this.#queue.push(undefined);
        return;
      }
      for (const event of this.#editor.feed(bytes)) {
        if (event.type === "line") this.#queue.push(event.text);
        else if (event.type === "options") this.print(event.options.join("  "));
        else {
          if (event.key === "ctrl-c") this.#interrupt();
          this.#queue.push(undefined);
        }
      }
      this.#draw();
    }
  }

  #columns(): number {
    return Math.max(10, this.#terminal.size().columns);
  }

  #draw(): void {
    if (!this.#closed) this.#io.stdout(this.#editor.render(this.#columns()));
  }

  print(line: string): number {
    if (this.#closed) return -1;
    const columns = this.#columns();
    const rows = line.split("\n").reduce(
      (n, part) => n + Math.max(1, Math.ceil(width(part) / columns)),
      0,
    );
    this.#io.stdout(`\r\x1b[2K${line.replaceAll("\n", "\r\n")}\r\n`);
    this.#draw();
    this.#rows.push(rows);
    return this.#rows.length - 1;
  }

  update(handle: number, line: string): void {
    if (this.#closed) return;
    const own = this.#rows[handle];
    const { columns, rows } = this.#terminal.size();
    const up = this.#rows.slice(handle).reduce((a, b) => a + b, 0);
    if (own === 1 && !line.includes("\n") && width(line) < columns && up < rows) {
      // Up to the line, rewrite it, back down to the input row.
      this.#io.stdout(`\x1b[${up}A\r\x1b[2K${line}\x1b[${up}B`);
      this.#draw();
    } else {
      this.print(line);
    }
  }

  next(): Promise<string | undefined> {
    return this.#queue.next();
  }

  interrupt(): void {
    this.#interrupt();
    this.#queue.push(undefined);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#io.stdout("\r\x1b[2K\x1b[?2004l");
    this.#terminal.setRaw(false);
  }
}

/** Lines in, lines out: for pipes, scripts and `--json`. */
export class PlainUi implements ChatUi {
  readonly interactive = false;
  readonly interrupted: Promise<void>;
  readonly #io: CliIo;
  #interrupt!: () => void;

  constructor(io: CliIo) {
    this.#io = io;
    this.interrupted = new Promise((r) => this.#interrupt = r);
  }

  print(line: string): number {
    this.#io.stdout(line + "\n");
    return -1;
  }

  update(_handle: number, line: string): void {
    this.print(line);
  }

  next(): Promise<string | undefined> {
    return Promise.race([this.#io.readLine(""), this.interrupted.then(() => undefined)]);
  }

  interrupt(): void {
    this.#interrupt();
  }

  close(): void {}
}

function width(text: string): number {
  let n = 0;
  for (const _ of text) n++;
  return n;
}
