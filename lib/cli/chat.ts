/**
 * `dim chat <name>`: the interactive conversation.
 *
 * On a terminal, the input line is edited in raw mode (see
 * {@linkcode LineEditor}); incoming messages are printed above it and the
 * prompt and the text being typed are redrawn, so typing is never broken.
 * Each sent line shows its state — `… sending`, `✓ delivered`, `⧗ queued
 * for offline delivery` — updated in place from the messenger's `status`
 * events. Slash commands: `/quit`, `/help`, `/verify`, `/history`, and
 * `/file <path>`, which sends a file with a progress line (Tab completes the
 * path; see `path_complete.ts` for spaces). Incoming files show their
 * progress and where they were saved.
 *
 * While it runs, the chat serves the local API on `<home>/dim.sock` as
 * `dim daemon` does, so `dim send` and the other commands work meanwhile;
 * when a daemon already holds the data directory, the chat attaches to it
 * through that API instead (see `chat_backend.ts`).
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
import type { ChatMessage } from "../profile/chat_message.ts";
import { KeyChangedError } from "../profile/contacts.ts";
import type { Context } from "./context.ts";
import { deadline } from "../platform/signals.ts";
import {
  AttachedChat,
  type ChatBackend,
  type ChatContact,
  type ChatFile,
  type ChatFileFailure,
  type ChatFileProgress,
  LocalChat,
} from "./chat_backend.ts";
import { describeError } from "./errors.ts";
import { keyChangedWarning, messageLine, stateMark } from "./format.ts";
import { type ChatUi, PlainUi, TerminalUi } from "./chat_ui.ts";
import { completeFileArg, listDir, readFileArg } from "./path_complete.ts";
import { runningDim, serveLocalApi } from "./remote.ts";
import { formatBytes, progressText } from "./send.ts";

/** Options of {@linkcode chatCommand}. */
export interface ChatOptions {
  /** How many past messages to show on open. Default 20. */
  readonly limit?: number;
  /** DIM's version, for the local API's `hello`. */
  readonly version?: string;
}

/** How often a progress line is redrawn, at most, in ms. */
const PROGRESS_MS = 200;

const DEFAULT_HISTORY = 20;

const HELP_LINES = [
  "Type a message and press Enter to send it. Commands:",
  "  /verify           show the safety number to compare with your contact",
  "  /verify confirm   mark the contact verified once the numbers match",
  "  /history [n]      show the last n messages (default 20)",
  "  /file <path>      send a file (Tab completes; spaces as is, quoted, or as \\ )",
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
  const limit = options.limit ?? DEFAULT_HISTORY;
  const dim = await runningDim(ctx);
  if (dim !== undefined) {
    // A daemon holds the data directory: this chat is a view of it.
    try {
      const backend = new AttachedChat(dim, (await dim.status()).connections === 0);
      return await new ChatSession(ctx, backend, await backend.contact(name), chatUi(ctx))
        .run(limit);
    } finally {
      await dim.close();
    }
  }
  const messenger = await ctx.openMessenger({ allowOffline: true });
  let server;
  try {
    server = await serveLocalApi(ctx, messenger, { version: options.version ?? "unknown" })
      .catch((err) => {
        ctx.note(
          `note: other dim commands cannot use ${ctx.home} while this chat runs: ` +
            describeError(err).message,
        );
        return undefined;
      });
    const backend = new LocalChat(messenger);
    return await new ChatSession(ctx, backend, await backend.contact(name), chatUi(ctx)).run(limit);
  } finally {
    await server?.close();
    await messenger.stop();
  }
}

function chatUi(ctx: Context): ChatUi {
  const terminal = ctx.io.terminal;
  if (terminal === undefined || !ctx.io.stdinIsTerminal || ctx.json) return new PlainUi(ctx.io);
  const home = ctx.io.env("HOME");
  return new TerminalUi(
    ctx.io,
    terminal,
    (before) => completeFileArg(before, { list: listDir, home }),
  );
}

/** One conversation: what is shown, what was sent, what still waits. */
class ChatSession {
  readonly #ctx: Context;
  readonly #backend: ChatBackend;
  #contact: ChatContact;
  readonly #ui: ChatUi;
  /** Sent or shown outgoing messages whose line can be updated, by seq. */
  readonly #handles = new Map<number, number>();
  /** Messages sent in this session not yet delivered or stored in the network. */
  readonly #pending = new Set<number>();
  readonly #shown = new Set<number>();
  /** Files being sent in this session. */
  readonly #sending = new Set<Promise<void>>();
  /** The progress lines of incoming files, by file ID. */
  readonly #incoming = new Map<string, { handle: number; drawn: number }>();
  #drained: (() => void) | undefined;
  #warnedKeyChange = false;
  #ended = false;
  /** No peer is connected: what is sent stays on this device for now. */
  #offline = false;
  readonly #stop = new AbortController();

  constructor(ctx: Context, backend: ChatBackend, contact: ChatContact, ui: ChatUi) {
    this.#ctx = ctx;
    this.#backend = backend;
    this.#contact = contact;
    this.#ui = ui;
  }

  async run(limit: number): Promise<number> {
    const offSignal = this.#ctx.io.onSignal?.(() => this.#ui.interrupt());
    const unlisten = this.#backend.listen({
      message: (m) => this.#message(m),
      status: (m) => this.#status(m),
      sent: (m) => {
        // Sent by another command through this chat or the daemon it is attached to.
        if (m.peer === this.#contact.id && !this.#shown.has(m.seq)) this.#display(m);
      },
      fileProgress: (p) => this.#fileProgress(p),
      file: (f) => this.#file(f),
      fileFailed: (f) => this.#fileFailed(f),
      connected: () => this.#connected(),
      disconnected: () => this.#disconnected(),
    });
    this.#offline = this.#backend.offline;
    try {
      await this.#open(limit);
      if (this.#offline) {
        this.#info(
          "offline: no peer answered. What you type is queued on this device and goes " +
            "when DIM connects.",
        );
      }
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
      unlisten();
      this.#ui.close();
    }
  }

  /** A line for the person (interactive), or a diagnostic (plain), or a JSON event. */
  #info(line: string): void {
    if (this.#ctx.json) this.#ctx.outJson({ type: "info", text: line });
    else if (this.#ui.interactive) this.#ui.print(line);
    else this.#ctx.note(line);
  }

  async #open(limit: number): Promise<void> {
    const c = this.#contact;
    const trust = c.keyChanged
      ? "⚠ KEYS CHANGED"
      : c.verified
      ? "verified ✓"
      : "not verified (type /verify)";
    this.#info(
      `Chatting with ${c.name}${c.displayName ? ` (${c.displayName})` : ""} — ${trust}. ` +
        "Type /help for commands, /quit to leave." +
        (this.#backend.attached ? " (Through the running dim daemon.)" : ""),
    );
    if (c.keyChanged) this.#warnKeyChange();
    if (!this.#ui.interactive) return;
    const unseen = await this.#backend.unseen();
    const fromThem = unseen.filter((m) => m.peer === c.id).length;
    const history = await this.#backend.history(c.name, Math.max(limit, fromThem));
    if (history.length > 0) {
      this.#ui.print(
        `── last ${history.length === 1 ? "message" : `${history.length} messages`} ──`,
      );
    }
    for (const m of history) this.#show(m);
    const others = unseen.filter((m) => m.peer !== c.id && !this.#shown.has(m.seq));
    if (others.length > 0) this.#ui.print(`── ${others.length} new from others ──`);
    for (const m of others) this.#show(m);
    if (history.length > 0 || others.length > 0) this.#ui.print("──");
    const last = unseen.at(-1);
    if (last !== undefined) this.#backend.markShown(last.seq);
  }

  #connected(): void {
    if (!this.#offline || this.#ended) return;
    this.#offline = false;
    const n = this.#pending.size;
    this.#info(`back online${n > 0 ? `: sending ${n} queued message${n === 1 ? "" : "s"}` : ""}`);
  }

  #disconnected(): void {
    if (this.#offline || this.#ended) return;
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

  #fileProgress(p: ChatFileProgress): void {
    if (this.#ended || !this.#ui.interactive) return;
    const line = `📎 receiving ${printable(p.name)} from ${p.from}… ${progressText(p)}`;
    const seen = this.#incoming.get(p.fileId);
    if (seen === undefined) {
      this.#incoming.set(p.fileId, { handle: this.#ui.print(line), drawn: Date.now() });
    } else if (Date.now() - seen.drawn >= PROGRESS_MS) {
      seen.drawn = Date.now();
      this.#ui.update(seen.handle, line);
    }
  }

  #file(f: ChatFile): void {
    if (this.#ended) return;
    if (this.#ctx.json) {
      this.#ctx.outJson({ type: "file", ...f });
      return;
    }
    const line = `📎 ${f.from} sent ${printable(f.name)} (${f.bytes} bytes), saved in ${f.dir}`;
    this.#finishIncoming(f.fileId, line);
  }

  #fileFailed(f: ChatFileFailure): void {
    if (this.#ended) return;
    if (this.#ctx.json) {
      this.#ctx.outJson({ type: "fileFailed", ...f });
      return;
    }
    const what = f.name === null ? "an incoming file" : printable(f.name);
    const line = `✗ ${what}${
      f.from === null ? "" : ` from ${f.from}`
    } was not received: ${f.error}`;
    this.#finishIncoming(f.fileId, line);
  }

  #finishIncoming(fileId: string | null, line: string): void {
    const seen = fileId === null ? undefined : this.#incoming.get(fileId);
    if (fileId !== null) this.#incoming.delete(fileId);
    if (seen !== undefined && this.#ui.interactive) this.#ui.update(seen.handle, line);
    else this.#ui.print(line);
  }

  #show(m: ChatMessage): void {
    this.#shown.add(m.seq);
    const handle = this.#ui.print(this.#line(m));
    if (m.direction === "out" && m.state !== "delivered") this.#handles.set(m.seq, handle);
  }

  #message(m: ChatMessage): void {
    if (this.#ended || this.#shown.has(m.seq)) return;
    if (this.#ctx.json) {
      this.#ctx.outJson({ type: "message", ...m });
    } else if (this.#ui.interactive) {
      this.#show(m);
      this.#backend.markShown(m.seq);
    } else {
      this.#ui.print(this.#line(m));
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
      await this.#backend.refreshKeys(this.#contact.id, signal);
      this.#contact = await this.#backend.contact(this.#contact.name);
    } catch {
      // Offline or not found: sending will queue, and the outbox looks again.
      return;
    }
    if (!this.#ended && this.#contact.keyChanged) this.#warnKeyChange();
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
      try {
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
            await this.#verify(args[0]);
            return undefined;
          case "/history":
            await this.#history(args[0]);
            return undefined;
          case "/file":
            this.#sendFile(trimmed.slice(command.length));
            return undefined;
          default:
            this.#info(`unknown command ${command} (type /help)`);
            return undefined;
        }
      } catch (err) {
        this.#info(`✗ ${describeError(err).message}`);
        return undefined;
      }
    }
    await this.#send(trimmed.startsWith("//") ? line.trimStart().slice(1) : line);
    return undefined;
  }

  async #send(text: string): Promise<void> {
    let m: ChatMessage;
    try {
      m = await this.#backend.send(this.#contact.name, text);
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
    this.#offline = this.#backend.offline;
    // The `sent` event may have shown it already.
    if (!this.#shown.has(m.seq)) this.#display(m);
    else this.#pending.add(m.seq);
  }

  // Shows a message this user sent, and follows its state.
  #display(m: ChatMessage): void {
    if (this.#ended) return;
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

  /** `/file <path>`: sends in the background, with a progress line. */
  #sendFile(arg: string): void {
    const path = readFileArg(arg, this.#ctx.io.env("HOME"));
    if (path === "") {
      this.#info("usage: /file <path> (Tab completes the path)");
      return;
    }
    const name = printable(path.replace(/\/+$/, "").split("/").at(-1) ?? path);
    const to = this.#contact.name;
    const handle = this.#ui.interactive ? this.#ui.print(`📎 sending ${name} to ${to}…`) : -1;
    const say = (line: string) => {
      if (this.#ended) return;
      if (handle >= 0) this.#ui.update(handle, line);
      else this.#info(line);
    };
    let drawn = 0;
    const task = (async () => {
      const info = await Deno.stat(path).catch(() => undefined);
      if (info === undefined || !info.isFile) {
        say(`✗ ${name} not sent: ${info === undefined ? "no such file" : "not a file"}: ${path}`);
        return;
      }
      try {
        const sent = await this.#backend.sendFile(to, path, {
          signal: this.#stop.signal,
          onProgress: (p) => {
            if (!this.#ui.interactive || Date.now() - drawn < PROGRESS_MS) return;
            drawn = Date.now();
            this.#ui.update(handle, `📎 sending ${name} to ${to}… ${progressText(p)}`);
          },
        });
        if (this.#ctx.json) {
          this.#ctx.outJson({ type: "fileSent", to, ...sent });
          return;
        }
        const what = `${printable(sent.name)} (${formatBytes(sent.bytes)})`;
        say(
          sent.how === "direct"
            ? `📎 ✓ ${what} delivered to ${to}`
            : sent.how === "mailbox"
            ? `📎 ⧗ ${to} is offline: ${what} goes through the network mailbox and arrives when ${to} is back`
            : `📎 ⧗ ${to} is offline: ${what} is over 4 MiB and waits on this device until ` +
              `you are both online`,
        );
      } catch (err) {
        say(`✗ ${name} not sent: ${describeError(err).message}`);
      }
    })();
    this.#sending.add(task);
    task.finally(() => {
      this.#sending.delete(task);
      if (this.#pending.size === 0 && this.#sending.size === 0) this.#drained?.();
    });
  }

  async #verify(arg: string | undefined): Promise<void> {
    const c = await this.#backend.contact(this.#contact.name);
    if (arg === "confirm") {
      this.#contact = await this.#backend.verify(c.name);
      this.#warnedKeyChange = false;
      this.#info(`${c.name} is now verified.`);
      return;
    }
    if (arg !== undefined) {
      this.#info("usage: /verify, or /verify confirm");
      return;
    }
    const groups = (await this.#backend.safetyNumber(c.name)).split(" ");
    this.#info(`Safety number with ${c.name} (${c.verified ? "verified" : "not verified"}):`);
    for (let i = 0; i < groups.length; i += 4) {
      this.#info(`    ${groups.slice(i, i + 4).join(" ")}`);
    }
    this.#info(
      `Compare it with what ${c.name} sees, in person or on a call; if it matches, /verify confirm`,
    );
  }

  async #history(arg: string | undefined): Promise<void> {
    const n = arg === undefined ? DEFAULT_HISTORY : Number(arg);
    if (!Number.isSafeInteger(n) || n <= 0) {
      this.#info("usage: /history [number of messages]");
      return;
    }
    const history = await this.#backend.history(this.#contact.name, n);
    if (history.length === 0) this.#info("no messages yet");
    for (const m of history) {
      if (this.#ctx.json) this.#ctx.outJson({ type: "history", ...m });
      else this.#show(m);
    }
  }

  /** Waits for this session's messages and files to be delivered or stored in the network. */
  async #drain(): Promise<void> {
    const n = this.#pending.size;
    const files = this.#sending.size;
    if (n === 0 && files === 0) return;
    const s = (k: number, word: string) => `${k} ${word}${k === 1 ? "" : "s"}`;
    if (this.#backend.attached && files === 0) {
      this.#info(`the dim daemon keeps sending ${s(n, "message")} after this chat`);
      return;
    }
    if (this.#offline && files === 0) {
      this.#info(
        `${s(n, "message")} queued on this device go${n === 1 ? "es" : ""} the next time DIM ` +
          "connects",
      );
      return;
    }
    const what = [...(n > 0 ? [s(n, "message")] : []), ...(files > 0 ? [s(files, "file")] : [])];
    this.#info(
      `waiting for ${what.join(" and ")} to be delivered or stored in the network…` +
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
    // Files are waited for without the time limit: a large one takes its time.
    await Promise.race([
      files > 0 ? Promise.all([drained, ...this.#sending]) : drained,
      ...(files > 0 ? [] : [timedOut]),
      this.#ui.interrupted,
    ]);
    const left = this.#pending.size;
    if (left > 0 && !this.#backend.attached) {
      this.#info(
        `${s(left, "message")} not yet delivered stay${
          left === 1 ? "s" : ""
        } in your outbox, and will be retried the next time dim runs`,
      );
    }
  }
}

/** A name from the network, with control characters made visible. */
function printable(name: string): string {
  // deno-lint-ignore no-control-regex
  return name.replace(/[\x00-\x1f\x7f-\x9f]/g, "\uFFFD");
}
