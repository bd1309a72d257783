/**
 * The chat's input line on a raw terminal: it decodes key bytes (UTF-8,
 * escape sequences), edits the line, and draws it — without touching the
 * terminal itself, so the chat can print incoming messages above it and
 * redraw it, and tests can drive it with bytes.
 *
 * Keys: printable text inserts; Backspace and Delete remove; ← → Home End,
 * Ctrl-A, Ctrl-E move; Ctrl-U clears; Ctrl-W removes a word; Enter submits;
 * Ctrl-C quits; Ctrl-D quits on an empty line; Tab completes with the
 * editor's completer (the chat's `/file` paths), or inserts a space.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { LineEditor } from "./line_editor.ts";
 *
 * const editor = new LineEditor("> ");
 * const keys = new TextEncoder().encode("helo\x1b[D\x1b[Dl\r");
 * assert.deepEqual(editor.feed(keys), [{ type: "line", text: "hello" }]);
 * assert.equal(editor.text, "");
 * ```
 *
 * @module
 */

/** What a key press asks the chat to do. */
export type EditorEvent =
  | { readonly type: "line"; readonly text: string }
  | { readonly type: "quit"; readonly key: "ctrl-c" | "ctrl-d" }
  | { readonly type: "options"; readonly options: readonly string[] };

/**
 * What a completer proposes: replace the last `replace` characters (code
 * points) before the cursor with `text`.
 */
export interface EditorCompletion {
  /** How many characters (code points) before the cursor to replace. */
  readonly replace: number;
  /** What to put there. */
  readonly text: string;
  /** When there are several matches: their names, shown when Tab makes no progress. */
  readonly options: readonly string[];
}

/**
 * Completes the text before the cursor, or `undefined` when it has nothing
 * to offer (Tab then inserts a space).
 */
export type Completer = (before: string) => EditorCompletion | undefined;

type EscapeState = "none" | "esc" | "csi" | "ss3";

/**
 * An editable input line with a prompt.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { LineEditor } from "./line_editor.ts";
 *
 * const editor = new LineEditor("> ");
 * editor.feed(new TextEncoder().encode("hi"));
 * assert.equal(editor.text, "hi");
 * assert.equal(editor.render(80), "\r\x1b[2K> hi\r\x1b[4C");
 * ```
 */
export class LineEditor {
  /** The prompt drawn before the text. */
  readonly prompt: string;
  #chars: string[] = [];
  #cursor = 0;
  #decoder = new TextDecoder("utf-8", { fatal: false });
  #escape: EscapeState = "none";
  #params = "";
  #pasting = false;
  readonly #complete: Completer | undefined;

  /**
   * Makes an empty line.
   *
   * @param prompt The prompt, drawn before the text. Default `"> "`.
   * @param options `complete`: what Tab does.
   */
  constructor(prompt = "> ", options: { readonly complete?: Completer } = {}) {
    this.prompt = prompt;
    this.#complete = options.complete;
  }

  /** The text typed so far. */
  get text(): string {
    return this.#chars.join("");
  }

  /** The cursor's position, in characters from the start of the text. */
  get cursor(): number {
    return this.#cursor;
  }

  /**
   * Applies key bytes from the terminal.
   *
   * @param bytes What the terminal sent; a sequence may span calls.
   * @returns The submitted lines and quit requests, in order.
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { LineEditor } from "./line_editor.ts";
   *
   * const editor = new LineEditor();
   * assert.deepEqual(editor.feed(new TextEncoder().encode("ab\x7f")), []);
   * assert.equal(editor.text, "a");
   * assert.deepEqual(editor.feed(new Uint8Array([3])), [{ type: "quit", key: "ctrl-c" }]);
   * ```
   */
  feed(bytes: Uint8Array): EditorEvent[] {
    const events: EditorEvent[] = [];
    for (const ch of this.#decoder.decode(bytes, { stream: true })) {
      const event = this.#key(ch);
      if (event) events.push(event);
    }
    return events;
  }

  #key(ch: string): EditorEvent | undefined {
    switch (this.#escape) {
      case "esc":
        this.#escape = ch === "[" ? "csi" : ch === "O" ? "ss3" : "none";
        this.#params = "";
        return undefined;
      case "ss3":
        this.#escape = "none";
        this.#sequence(ch, "");
        return undefined;
      case "csi":
        if (/[\x40-\x7e]/.test(ch)) {
          this.#escape = "none";
          this.#sequence(ch, this.#params);
        } else if (this.#params.length < 16) this.#params += ch;
        return undefined;
    }
    const code = ch.codePointAt(0)!;
    switch (code) {
      case 0x1b:
        this.#escape = "esc";
        return undefined;
      case 0x0d:
      case 0x0a: {
        if (this.#pasting) {
          this.#insert(" ");
          return undefined;
        }
        const text = this.text;
        this.#chars = [];
        this.#cursor = 0;
        return { type: "line", text };
      }
      case 0x03:
        return { type: "quit", key: "ctrl-c" };
      case 0x04:
        if (this.#chars.length === 0) return { type: "quit", key: "ctrl-d" };
        this.#deleteAt(this.#cursor);
        return undefined;
      case 0x7f:
      case 0x08:
        if (this.#cursor > 0) this.#deleteAt(--this.#cursor);
        return undefined;
      case 0x01:
        this.#cursor = 0;
        return undefined;
      case 0x05:
        this.#cursor = this.#chars.length;
        return undefined;
      case 0x02:
        this.#cursor = Math.max(0, this.#cursor - 1);
        return undefined;
      case 0x06:
        this.#cursor = Math.min(this.#chars.length, this.#cursor + 1);
        return undefined;
      case 0x15:
        this.#chars.splice(0, this.#cursor);
        this.#cursor = 0;
        return undefined;
      case 0x0b:
        this.#chars.splice(this.#cursor);
        return undefined;
      case 0x17: {
        let start = this.#cursor;
        while (start > 0 && this.#chars[start - 1] === " ") start--;
        while (start > 0 && this.#chars[start - 1] !== " ") start--;
        this.#chars.splice(start, this.#cursor - start);
        this.#cursor = start;
        return undefined;
      }
      case 0x09:
        return this.#tab();
    }
    if (code < 0x20 || (code >= 0x80 && code < 0xa0)) return undefined;
    this.#insert(ch);
    return undefined;
  }

  #tab(): EditorEvent | undefined {
    const before = this.#chars.slice(0, this.#cursor).join("");
    const found = this.#pasting ? undefined : this.#complete?.(before);
    if (found === undefined) {
      this.#insert(" ");
      return undefined;
    }
    const start = Math.max(0, this.#cursor - found.replace);
    const replaced = this.#chars.slice(start, this.#cursor).join("");
    const text = [...found.text];
    this.#chars.splice(start, this.#cursor - start, ...text);
    this.#cursor = start + text.length;
    return found.text === replaced && found.options.length > 0
      ? { type: "options", options: found.options }
      : undefined;
  }

  #sequence(final: string, params: string): void {
    switch (final) {
      case "D":
        this.#cursor = Math.max(0, this.#cursor - 1);
        return;
      case "C":
        this.#cursor = Math.min(this.#chars.length, this.#cursor + 1);
        return;
      case "H":
        this.#cursor = 0;
        return;
      case "F":
        this.#cursor = this.#chars.length;
        return;
      case "~":
        if (params === "1" || params === "7") this.#cursor = 0;
        else if (params === "4" || params === "8") this.#cursor = this.#chars.length;
        else if (params === "3") this.#deleteAt(this.#cursor);
        else if (params === "200") this.#pasting = true;
        else if (params === "201") this.#pasting = false;
        return;
    }
  }

  #insert(ch: string): void {
    this.#chars.splice(this.#cursor++, 0, ch);
  }

  #deleteAt(i: number): void {
    if (i < this.#chars.length) this.#chars.splice(i, 1);
  }

  /**
   * The bytes that redraw the input row: return to its start, clear it, and
   * write the prompt and as much of the text around the cursor as fits.
   *
   * @param columns The terminal's width.
   * @returns The escape sequence and text to write.
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { LineEditor } from "./line_editor.ts";
   *
   * const editor = new LineEditor("> ");
   * editor.feed(new TextEncoder().encode("abcdefghij"));
   * assert.equal(editor.render(8), "\r\x1b[2K> ghij\r\x1b[6C");
   * ```
   */
  render(columns: number): string {
    const room = Math.max(1, columns - this.prompt.length - 1);
    const start = this.#cursor < room ? 0 : this.#cursor - room + 1;
    const visible = this.#chars.slice(start, start + room).join("");
    const col = this.prompt.length + this.#cursor - start;
    return `\r\x1b[2K${this.prompt}${visible}\r${col > 0 ? `\x1b[${col}C` : ""}`;
  }
}
