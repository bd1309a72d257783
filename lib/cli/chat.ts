/**
 * `dim chat <name>`: the interactive conversation.
 *
 * On a terminal, the input line is edited in raw mode (see
 * {@linkcode LineEditor}); incoming messages are printed above it and the
 * prompt and the text being typed are redrawn, so typing is never broken.
 * Each sent line shows its state — `… sending`, `✓ delivered`, `⧗ queued
 * for offline delivery` — updated in place from the messenger's `status`
 * events. Slash commands: `/quit`, `/help`, `/verify`, `/history`.
 *
 * When stdin is not a terminal (or with `--json`), each input line is sent
 * as a message and incoming messages are printed one per line; at the end of
 * input the chat waits until the messages it sent are delivered or stored in
 * the network (up to `--timeout`), then exits.
 *
 * With no peer reachable the chat opens anyway: it says it is offline, shows
 * the history, and queues what is typed on this device (`⧗ queued on this
 * device`); when a peer connects it says it is back online and the queue
 * goes. Quitting while offline does not wait: the queue goes the next time
 * DIM connects.
 *
 * @module
 */
import type { ReceivedFile } from "../messaging/file_receive.ts";
import type { Messenger } from "../messenger/messenger.ts";
import type { ChatMessage } from "../profile/chat_message.ts";
import { type Contact, KeyChangedError } from "../profile/contacts.ts";
import type { Profile } from "../profile/profile.ts";
import { type Context, isOffline } from "./context.ts";
import { deadline } from "../platform/signals.ts";
import { describeError } from "./errors.ts";
import { keyChangedWarning, messageLine, stateMark } from "./format.ts";
import type { CliIo, TerminalInput } from "./io.ts";
import { LineEditor } from "./line_editor.ts";
import { lastShownSeq, markShown } from "./marks.ts";

/** Options of {@linkcode chatCommand}. */
export interface ChatOptions {
  /** How many past messages to show on open. Default 20. */
  readonly limit?: number;
}

const DEFAULT_HISTORY = 20;

const HELP_LINES = [
  "Type a message and press Enter to send it. Commands:",
  "  /verify           show the safety number to compare with your contact",
  "  /verify confirm   mark the contact verified once the numbers match",
  "  /history [n]      show the last n messages (default 20)",
  "  /help             show this help",
  "  /quit             leave (also Ctrl-D on an empty line, or Ctrl-C)",
  "Start a message with // to send a line that begins with /.",
];

/**
 * Opens a conversation with a contact until the user quits or the input ends.
 *
 * @param ctx The command's context.
 * @param name The contact's local name or user ID.
 * @param options How much history to show.
 * @returns The exit code: 0 once the chat ends.
 * @throws {UnknownContactError} If there is no such contact.
 * @throws {CliError} If there is no identity or the network cannot be joined.
 * @example
 * ```ts ignore
 * import { main } from "./main.ts";
 *
 * // Needs a terminal (or lines on stdin) and a contact named bob.
 * Deno.exitCode = await main(["chat", "bob"]);
 * ```
 */
export async function chatCommand(
  ctx: Context,
  name: string,
  options: ChatOptions = {},
): Promise<number> {
  {
    // Fail fast on an unknown name, before unlocking and going online.
    await using profile = await ctx.profile();
    profile.contact(name);
  }
  const messenger = await ctx.openMessenger({ allowOffline: true });
  try {
    const contact = messenger.profile.contact(name);
    const terminal = ctx.io.terminal;
    const ui: ChatUi = terminal !== undefined && ctx.io.stdinIsTerminal && !ctx.json
      ? new TerminalUi(ctx.io, terminal)
      : new PlainUi(ctx.io);
    const session = new ChatSession(ctx, messenger, contact, ui);
    return await session.run(options.limit ?? DEFAULT_HISTORY);
  } finally {
    await messenger.stop();
  }
}

/** Where the chat prints and reads. */
interface ChatUi {
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
class TerminalUi implements ChatUi {
  readonly interactive = true;
  readonly interrupted: Promise<void>;
  readonly #io: CliIo;
  readonly #terminal: TerminalInput;
  readonly #editor = new LineEditor("> ");
  readonly #queue = new LineQueue();
  readonly #rows: number[] = [];
  #interrupt!: () => void;
  #closed = false;

  constructor(io: CliIo, terminal: TerminalInput) {
    this.#io = io;
    this.#terminal = terminal;
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
class PlainUi implements ChatUi {
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

/** One conversation: what is shown, what was sent, what still waits. */
class ChatSession {
  readonly #ctx: Context;
  readonly #messenger: Messenger;
  readonly #profile: Profile;
  readonly #contact: Contact;
  readonly #ui: ChatUi;
  /** Sent or shown outgoing messages whose line can be updated, by seq. */
  readonly #handles = new Map<number, number>();
  /** Messages sent in this session not yet delivered or stored in the network. */
  readonly #pending = new Set<number>();
  readonly #shown = new Set<number>();
  #drained: (() => void) | undefined;
  #warnedKeyChange = false;
  #ended = false;
  /** No peer is connected: what is sent stays on this device for now. */
  #offline = false;
  readonly #stop = new AbortController();

  constructor(
    ctx: Context,
    messenger: Messenger,
    contact: Contact,
    ui: ChatUi,
  ) {
    this.#ctx = ctx;
    this.#messenger = messenger;
    this.#profile = messenger.profile;
    this.#contact = contact;
    this.#ui = ui;
  }

  async run(limit: number): Promise<number> {
    const offSignal = this.#ctx.io.onSignal?.(() => this.#ui.interrupt());
    const onStatus = (e: Event) => this.#status((e as CustomEvent<ChatMessage>).detail);
    this.#messenger.addEventListener("status", onStatus);
    const onFile = (e: Event) => this.#file((e as CustomEvent<ReceivedFile>).detail);
    this.#messenger.addEventListener("file", onFile);
    const node = this.#messenger.node;
    const onConnect = () => this.#connected();
    const onDisconnect = () => this.#disconnected();
    node.addEventListener("peer:connect", onConnect);
    node.addEventListener("peer:disconnect", onDisconnect);
    this.#offline = isOffline(this.#messenger);
    try {
      this.#open(limit);
      if (this.#offline) {
        this.#info(
          "offline: no peer answered. What you type is queued on this device and goes " +
            "when DIM connects.",
        );
      }
      this.#receive().catch(() => {});
      this.#refreshKeys().catch(() => {});
      for (;;) {
        const line = await this.#ui.next();
        if (line === undefined || await this.#input(line) === "quit") break;
      }
      await this.#drain();
      return 0;
    } finally {
      this.#ended = true;
      this.#stop.abort();
      offSignal?.();
      this.#messenger.removeEventListener("status", onStatus);
      this.#messenger.removeEventListener("file", onFile);
      node.removeEventListener("peer:connect", onConnect);
      node.removeEventListener("peer:disconnect", onDisconnect);
      this.#ui.close();
    }
  }

  /** A line for the person (interactive), or a diagnostic (plain), or a JSON event. */
  #info(line: string): void {
    if (this.#ctx.json) this.#ctx.outJson({ type: "info", text: line });
    else if (this.#ui.interactive) this.#ui.print(line);
    else this.#ctx.note(line);
  }

  #open(limit: number): void {
    const c = this.#contact;
    const unseen = this.#profile.incomingSince(lastShownSeq(this.#profile));
    const trust = c.keyChanged
      ? "⚠ KEYS CHANGED"
      : c.verified
      ? "verified ✓"
      : "not verified (type /verify)";
    this.#info(
      `Chatting with ${c.name}${c.displayName ? ` (${c.displayName})` : ""} — ${trust}. ` +
        "Type /help for commands, /quit to leave.",
    );
    if (c.keyChanged) this.#warnKeyChange();
    if (!this.#ui.interactive) return;
    const fromThem = unseen.filter((m) => m.peer === c.id).length;
    const history = this.#profile.history(c.name, { limit: Math.max(limit, fromThem) });
    if (history.length > 0) {
      this.#ui.print(
        `── last ${history.length === 1 ? "message" : `${history.length} messages`} ──`,
      );
    }
    for (const m of history) this.#show(m);
    const others = unseen.filter((m) => m.peer !== c.id);
    if (others.length > 0) this.#ui.print(`── ${others.length} new from others ──`);
    for (const m of others) this.#show(m);
    if (history.length > 0 || others.length > 0) this.#ui.print("──");
    const last = unseen.at(-1);
    if (last !== undefined) markShown(this.#profile, last.seq);
  }

  #connected(): void {
    if (!this.#offline || this.#ended) return;
    this.#offline = false;
    const n = this.#pending.size;
    this.#info(`back online${n > 0 ? `: sending ${n} queued message${n === 1 ? "" : "s"}` : ""}`);
  }

  #disconnected(): void {
    if (this.#offline || this.#ended || !isOffline(this.#messenger)) return;
    this.#offline = true;
    this.#info("offline: no peer connected. What you type is queued on this device.");
  }

  #line(m: ChatMessage): string {
    let line = messageLine(m);
    // Not "sending" while nobody is there to send to.
    if (this.#offline && m.state === "pending") {
      line = line.replace(stateMark("pending"), "⧗ queued on this device");
    }
    // Someone else writing in this conversation's window is labelled as such.
    return m.direction === "in" && m.peer !== this.#contact.id
      ? line.replace("] ", "] ✉ from ")
      : line;
  }

  #file(f: ReceivedFile): void {
    if (this.#ctx.json) {
      this.#ctx.outJson({ type: "file", ...f });
      return;
    }
    const from = this.#profile.findContact(f.senderId)?.name ?? f.senderId;
    // deno-lint-ignore no-control-regex
    const name = f.name.replace(/[\x00-\x1f\x7f-\x9f]/g, "\uFFFD");
    this.#ui.print(`📎 ${from} sent ${name} (${f.bytes} bytes), saved in ${this.#ctx.home}/files`);
  }

  #show(m: ChatMessage): void {
    this.#shown.add(m.seq);
    const handle = this.#ui.print(this.#line(m));
    if (m.direction === "out" && m.state !== "delivered") this.#handles.set(m.seq, handle);
  }

  async #receive(): Promise<void> {
    for await (const m of this.#messenger.messages()) {
      if (this.#ended) return;
      if (this.#shown.has(m.seq)) continue;
      if (this.#ctx.json) {
        this.#ctx.outJson({ type: "message", ...m });
      } else if (this.#ui.interactive) {
        this.#show(m);
        markShown(this.#profile, m.seq);
      } else {
        this.#ui.print(this.#line(m));
      }
    }
  }

  #status(m: ChatMessage): void {
    if (m.state === "delivered" || m.state === "stored") {
      if (this.#pending.delete(m.seq) && this.#pending.size === 0) this.#drained?.();
    }
    if (this.#ended) return;
    const handle = this.#handles.get(m.seq);
    if (handle === undefined) return;
    if (m.state === "delivered") this.#handles.delete(m.seq);
    if (this.#ctx.json) this.#ctx.outJson({ type: "status", ...m });
    else if (this.#ui.interactive) this.#ui.update(handle, this.#line(m));
    else this.#ui.print(`${stateMark(m.state)}: ${m.text}`);
  }

  async #refreshKeys(): Promise<void> {
    using d = deadline(Math.min(this.#ctx.timeoutMs, 10_000));
    const signal = AbortSignal.any([d.signal, this.#stop.signal]);
    try {
      await this.#messenger.resolveCard(this.#contact.id, { fresh: true, signal });
    } catch {
      // Offline or not found: sending will queue, and the outbox looks again.
      return;
    }
    if (!this.#ended && this.#profile.contact(this.#contact.name).keyChanged) {
      this.#warnKeyChange();
    }
  }

  #warnKeyChange(): void {
    if (this.#warnedKeyChange) return;
    this.#warnedKeyChange = true;
    this.#info(keyChangedWarning(this.#contact.name));
    this.#info("(here: /verify to see the new safety number, /verify confirm to accept it)");
  }

  async #input(line: string): Promise<"quit" | undefined> {
    const trimmed = line.trim();
    if (trimmed === "") return undefined;
    if (trimmed.startsWith("/") && !trimmed.startsWith("//")) {
      const [command, ...args] = trimmed.split(/\s+/);
      switch (command) {
        case "/quit":
        case "/exit":
        case "/q":
          return "quit";
        case "/help":
        case "/?":
          for (const l of HELP_LINES) this.#info(l);
          return undefined;
        case "/verify":
          this.#verify(args[0]);
          return undefined;
        case "/history":
          this.#history(args[0]);
          return undefined;
        default:
          this.#info(`unknown command ${command} (type /help)`);
          return undefined;
      }
    }
    await this.#send(trimmed.startsWith("//") ? line.trimStart().slice(1) : line);
    return undefined;
  }

  async #send(text: string): Promise<void> {
    let m: ChatMessage;
    try {
      m = await this.#messenger.send(this.#contact.name, text);
    } catch (err) {
      if (err instanceof KeyChangedError) {
        this.#warnedKeyChange = false;
        this.#warnKeyChange();
        this.#info(`✗ not sent: ${text}`);
      } else {
        this.#info(`✗ not sent: ${describeError(err).message}`);
      }
      return;
    }
    this.#pending.add(m.seq);
    this.#shown.add(m.seq);
    if (this.#ctx.json) {
      this.#handles.set(m.seq, -1);
      this.#ctx.outJson({ type: "sent", ...m });
    } else if (this.#ui.interactive) {
      this.#handles.set(m.seq, this.#ui.print(this.#line(m)));
    } else {
      this.#handles.set(m.seq, -1);
    }
  }

  #verify(arg: string | undefined): void {
    const c = this.#profile.contact(this.#contact.name);
    if (arg === "confirm") {
      this.#profile.verifyContact(c.name);
      this.#warnedKeyChange = false;
      this.#info(`${c.name} is now verified.`);
      return;
    }
    if (arg !== undefined) {
      this.#info("usage: /verify, or /verify confirm");
      return;
    }
    const groups = this.#profile.safetyNumber(c.name).split(" ");
    this.#info(`Safety number with ${c.name} (${c.verified ? "verified" : "not verified"}):`);
    for (let i = 0; i < groups.length; i += 4) {
      this.#info(`    ${groups.slice(i, i + 4).join(" ")}`);
    }
    this.#info(
      `Compare it with what ${c.name} sees, in person or on a call; if it matches, /verify confirm`,
    );
  }

  #history(arg: string | undefined): void {
    const n = arg === undefined ? DEFAULT_HISTORY : Number(arg);
    if (!Number.isSafeInteger(n) || n <= 0) {
      this.#info("usage: /history [number of messages]");
      return;
    }
    const history = this.#profile.history(this.#contact.name, { limit: n });
    if (history.length === 0) this.#info("no messages yet");
    for (const m of history) {
      if (this.#ctx.json) this.#ctx.outJson({ type: "history", ...m });
      else this.#show(m);
    }
  }

  /** Waits for this session's messages to be delivered or stored in the network. */
  async #drain(): Promise<void> {
    if (this.#pending.size === 0) return;
    const n = this.#pending.size;
    if (this.#offline) {
      this.#info(
        `${n} message${n === 1 ? "" : "s"} queued on this device go${
          n === 1 ? "es" : ""
        } the next time DIM connects`,
      );
      return;
    }
    this.#info(
      `waiting for ${n} message${n === 1 ? "" : "s"} to be delivered or stored in the network…` +
        (this.#ui.interactive ? " (Ctrl-C to leave them queued)" : ""),
    );
    using d = deadline(this.#ctx.timeoutMs);
    const drained = new Promise<void>((r) => this.#drained = r);
    const timedOut = new Promise<void>((r) =>
      d.signal.addEventListener("abort", () => r(), { once: true })
    );
    if (this.#ui.interactive) {
      // Keys typed while waiting are ignored; Ctrl-C interrupts.
      (async () => {
        while (await this.#ui.next() !== undefined);
      })();
    }
    await Promise.race([drained, timedOut, this.#ui.interrupted]);
    const left = this.#pending.size;
    if (left > 0) {
      this.#info(
        `${left} message${left === 1 ? "" : "s"} not yet delivered stay${
          left === 1 ? "s" : ""
        } in your outbox, and will be retried the next time dim runs`,
      );
    }
  }
}
