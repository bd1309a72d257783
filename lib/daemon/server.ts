/**
 * The daemon's socket server: serves the local API of `protocol.ts` over a
 * running {@linkcode Messenger} on a Unix domain socket in the data
 * directory. Call it once the messenger holds the data directory's lock, so
 * that a socket file found there is stale and can be removed.
 *
 * The socket is made readable and writable by its owner only (mode 0600)
 * right after it is bound; nothing listens on the network. Any process of
 * the same user can still connect and act as the user.
 *
 * One client cannot harm the others: each line is capped
 * ({@linkcode MAX_LINE_BYTES}), each client runs at most
 * {@linkcode MAX_CLIENT_REQUESTS} requests at once, what waits to be written
 * to a client is capped ({@linkcode MAX_CLIENT_BACKLOG_BYTES}: one that does
 * not read is disconnected), and at most {@linkcode MAX_CLIENTS} are
 * connected.
 *
 * @example
 * ```ts ignore
 * import { serveDaemon } from "./server.ts";
 *
 * // `messenger` is running, from createMessenger.
 * const server = await serveDaemon(messenger, {
 *   path: `${messenger.profile.home}/dim.sock`,
 *   status: () => ({ ... }),
 * });
 * // … until told to stop:
 * await server.close();
 * await messenger.stop();
 * ```
 *
 * @module
 */
import { DimError } from "../errors.ts";
import type { Messenger } from "../messenger/messenger.ts";
import type { ChatMessage } from "../profile/chat_message.ts";
import type { ReceivedFile, TransferProgress } from "../messaging/mod.ts";
import {
  type Call,
  daemonMethods,
  type Method,
  type MethodHost,
  paramsObject,
  rpcError,
  type ShownMark,
} from "./_methods.ts";
import {
  DaemonErrorCode,
  type DaemonFileProgress,
  type DaemonStatus,
  MAX_CLIENT_BACKLOG_BYTES,
  MAX_CLIENT_REQUESTS,
  MAX_CLIENTS,
  MAX_LINE_BYTES,
} from "./protocol.ts";

export type { ShownMark } from "./_methods.ts";

/** The permission bits of the socket: its owner only. */
export const SOCKET_MODE = 0o600;

/** How long {@linkcode DaemonServer.close} waits for requests to end, in ms. */
export const CLOSE_WAIT_MS = 3_000;

/** Options of {@linkcode serveDaemon}. */
export interface ServeDaemonOptions {
  /** The socket's path (`dataPaths(home).socket`). */
  readonly path: string;
  /** Builds what `status` returns (the CLI's `dim status --json` report). */
  readonly status: () => DaemonStatus | Promise<DaemonStatus>;
  /** The mark of messages shown, for `inbox`. Default: one kept in memory, from 0. */
  readonly shown?: ShownMark;
  /** DIM's version, for `hello`. Default `"unknown"`. */
  readonly version?: string;
  /** Where the messenger saves received files, for the `file` notification. */
  readonly downloadDir?: string;
  /** One line per notable event (no message text). Default: nothing. */
  readonly log?: (line: string) => void;
  /** At most this many clients. Default {@linkcode MAX_CLIENTS}. */
  readonly maxClients?: number;
  /** The longest request line, in bytes. Default {@linkcode MAX_LINE_BYTES}. */
  readonly maxLineBytes?: number;
  /** What may wait to be written to one client, in bytes. Default {@linkcode MAX_CLIENT_BACKLOG_BYTES}. */
  readonly maxBacklogBytes?: number;
}

/** A running daemon server; {@linkcode DaemonServer.close} it before stopping the messenger. */
export interface DaemonServer extends AsyncDisposable {
  /** The socket's path. */
  readonly path: string;
  /** How many clients are connected now. */
  readonly clients: number;
  /** Stops listening, disconnects every client and removes the socket file. Idempotent. */
  close(): Promise<void>;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** One connected client. */
class Client {
  readonly conn: Deno.Conn;
  readonly abort = new AbortController();
  subscribed = false;
  #queue: Uint8Array[] = [];
  #backlog = 0;
  #writing = false;
  #closed = false;
  readonly #maxBacklog: number;
  readonly #onClose: (why: string | undefined) => void;

  constructor(
    conn: Deno.Conn,
    maxBacklog: number,
    onClose: (why: string | undefined) => void,
  ) {
    this.conn = conn;
    this.#maxBacklog = maxBacklog;
    this.#onClose = onClose;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Queues one JSON value as a line; a client too far behind is disconnected. */
  send(value: unknown): void {
    if (this.#closed) return;
    const line = encoder.encode(JSON.stringify(value) + "\n");
    // One reply of any size may wait alone; more may not pile up.
    if (this.#backlog > 0 && this.#backlog + line.length > this.#maxBacklog) {
      this.close("it does not read what it is sent");
      return;
    }
    this.#queue.push(line);
    this.#backlog += line.length;
    if (!this.#writing) this.#drain();
  }

  async #drain(): Promise<void> {
    this.#writing = true;
    try {
      for (let line = this.#queue.shift(); line !== undefined; line = this.#queue.shift()) {
        for (let off = 0; off < line.length;) off += await this.conn.write(line.subarray(off));
        this.#backlog -= line.length;
      }
    } catch {
      this.close(undefined);
    } finally {
      this.#writing = false;
    }
  }

  /** Closes the connection and cancels its requests. Idempotent. */
  close(why: string | undefined): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#queue = [];
    this.abort.abort(new DOMException("the client went away", "AbortError"));
    try {
      this.conn.close();
    } catch {
      // Closed already.
    }
    this.#onClose(why);
  }
}

/**
 * Serves the local API of a running messenger on a Unix domain socket.
 *
 * @param messenger The running messenger; it must hold the data directory's lock.
 * @param options The socket's path, the `status` builder, the inbox mark, limits, the log.
 * @returns The server, listening.
 * @throws {DimError} If the socket cannot be made (the path is taken by
 *   something that is not a socket, is too long, or the directory is not writable).
 */
export async function serveDaemon(
  messenger: Messenger,
  options: ServeDaemonOptions,
): Promise<DaemonServer> {
  const { path } = options;
  const log = options.log ?? (() => {});
  const maxClients = options.maxClients ?? MAX_CLIENTS;
  const maxLine = options.maxLineBytes ?? MAX_LINE_BYTES;
  const maxBacklog = options.maxBacklogBytes ?? MAX_CLIENT_BACKLOG_BYTES;
  const downloadDir = options.downloadDir ?? `${messenger.profile.home}/files`;
  await removeStaleSocket(path);
  let listener: Deno.UnixListener;
  try {
    listener = Deno.listen({ transport: "unix", path });
    // Deno binds it 0755 (after the umask); only the owner may connect.
    await Deno.chmod(path, SOCKET_MODE);
  } catch (cause) {
    throw new DimError(`Cannot listen on ${path}: ${(cause as Error).message}`, { cause });
  }
  const clients = new Set<Client>();
  const running = new Set<Promise<void>>();
  let next = 0;
  let closing: Promise<void> | undefined;

  const progress = (call: Call, info: DaemonFileProgress) => {
    for (const c of clients) {
      if (c.abort.signal === call.signal) {
        c.send({ jsonrpc: "2.0", method: "fileProgress", params: { request: call.id, ...info } });
      } else if (c.subscribed) c.send({ jsonrpc: "2.0", method: "fileProgress", params: info });
    }
  };
  let shownSeq = 0;
  const shown: ShownMark = options.shown ?? {
    get: () => shownSeq,
    mark: (seq) => void (shownSeq = Math.max(shownSeq, seq)),
  };
  const host: MethodHost = {
    messenger,
    version: options.version ?? "unknown",
    status: options.status,
    shown,
    downloadDir,
    progress,
  };
  const methods = daemonMethods(host);

  const notify = (method: string, params: unknown) => {
    for (const c of clients) if (c.subscribed) c.send({ jsonrpc: "2.0", method, params });
  };
  const onMessage = (e: Event) => {
    const m = (e as CustomEvent<ChatMessage>).detail;
    log(`message ${m.seq} from ${m.contact ?? m.peer}`);
    notify("message", m);
  };
  const onSent = (e: Event) => notify("sent", (e as CustomEvent<ChatMessage>).detail);
  const onStatus = (e: Event) => {
    const m = (e as CustomEvent<ChatMessage>).detail;
    log(`message ${m.seq} to ${m.contact ?? m.peer}: ${m.state}`);
    notify("status", m);
  };
  const onFile = (e: Event) => {
    const f = (e as CustomEvent<ReceivedFile>).detail;
    const contact = messenger.profile.findContact(f.senderId)?.name ?? null;
    log(`file ${f.name} (${f.bytes} bytes) from ${contact ?? f.senderId}`);
    notify("file", {
      contact,
      senderId: f.senderId,
      fileId: f.fileId,
      name: f.name,
      bytes: f.bytes,
      sha256: f.sha256,
      dir: downloadDir,
    });
  };
  const onFileFailed = (e: Event) => {
    const d = (e as CustomEvent<
      { error: unknown; offer?: { fileId: string; senderId: string; name: string } }
    >).detail;
    const error = d.error instanceof Error ? d.error.message : String(d.error);
    log(`an incoming file failed: ${error}`);
    notify("fileFailed", {
      fileId: d.offer?.fileId ?? null,
      senderId: d.offer?.senderId ?? null,
      name: d.offer?.name ?? null,
      error,
    });
  };
  // Incoming files' progress, at most ten a second per file, and always the last.
  const progressSent = new Map<string, number>();
  const onFileProgress = (e: Event) => {
    const p = (e as CustomEvent<TransferProgress & { senderId: string }>).detail;
    const now = Date.now();
    const done = p.bytes >= p.total;
    if (!done && now - (progressSent.get(p.fileId) ?? 0) < 100) return;
    if (done) progressSent.delete(p.fileId);
    else progressSent.set(p.fileId, now);
    const info: DaemonFileProgress = {
      direction: "in",
      contact: messenger.profile.findContact(p.senderId)?.name ?? p.senderId,
      fileId: p.fileId,
      name: p.name,
      bytes: p.bytes,
      total: p.total,
    };
    notify("fileProgress", info);
  };
  const events: [string, (e: Event) => void][] = [
    ["message", onMessage],
    ["status", onStatus],
    ["sent", onSent],
    ["file", onFile],
    ["file-failed", onFileFailed],
    ["file-progress", onFileProgress],
  ];
  for (const [type, fn] of events) messenger.addEventListener(type, fn);

  const track = (task: Promise<void>) => {
    running.add(task);
    task.finally(() => running.delete(task));
  };

  const accept = async () => {
    while (true) {
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch {
        return; // Closed.
      }
      const n = ++next;
      if (closing !== undefined || clients.size >= maxClients) {
        const busy = closing !== undefined
          ? { code: DaemonErrorCode.Stopping, message: "the daemon is stopping" }
          : {
            code: DaemonErrorCode.TooManyClients,
            message: `${maxClients} clients are connected`,
          };
        track(refuse(conn, busy));
        continue;
      }
      const client = new Client(conn, maxBacklog, (why) => {
        clients.delete(client);
        log(`client ${n} disconnected${why ? `: ${why}` : ""}`);
      });
      clients.add(client);
      log(`client ${n} connected (${clients.size} now)`);
      track(serveClient(client));
    }
  };

  const serveClient = async (client: Client) => {
    const inFlight = new Set<Promise<void>>();
    const reader = new LineReader(client.conn, maxLine);
    try {
      while (!client.closed) {
        const line = await reader.next();
        if (line === undefined) break;
        if (line === TOO_LONG) {
          client.send({
            jsonrpc: "2.0",
            id: null,
            error: {
              code: DaemonErrorCode.RequestTooLarge,
              message: `a request line is longer than ${maxLine} bytes`,
            },
          });
          // Let the error go out before closing.
          await waitDrained(client);
          client.close("its request was too large");
          break;
        }
        while (inFlight.size >= MAX_CLIENT_REQUESTS) await Promise.race(inFlight);
        const task = handle(client, line).catch(() => {});
        inFlight.add(task);
        task.finally(() => inFlight.delete(task));
      }
    } catch {
      // A reset connection ends like a closed one.
    }
    await Promise.allSettled(inFlight);
    client.close(undefined);
  };

  const handle = async (client: Client, line: Uint8Array) => {
    const reply = (id: string | number | null, body: { result: unknown } | { error: unknown }) =>
      client.send({ jsonrpc: "2.0", id, ...body });
    let request: unknown;
    try {
      request = JSON.parse(decoder.decode(line));
    } catch {
      return reply(null, { error: { code: DaemonErrorCode.ParseError, message: "not JSON" } });
    }
    if (Array.isArray(request)) {
      return reply(null, {
        error: {
          code: DaemonErrorCode.InvalidRequest,
          message: "batches are not supported: send one request per line",
        },
      });
    }
    const r = request as Record<string, unknown> | null;
    const id = r !== null && typeof r === "object" ? r.id : undefined;
    const validId = id === undefined || id === null || typeof id === "string" ||
      (typeof id === "number" && Number.isFinite(id));
    if (
      r === null || typeof r !== "object" || r.jsonrpc !== "2.0" || typeof r.method !== "string" ||
      !validId
    ) {
      return reply(validId ? (id ?? null) as string | number | null : null, {
        error: { code: DaemonErrorCode.InvalidRequest, message: "not a JSON-RPC 2.0 request" },
      });
    }
    const method: Method | undefined = Object.hasOwn(methods, r.method)
      ? methods[r.method]
      : r.method === "subscribe"
      ? () => {
        client.subscribed = true;
        return { subscribed: true };
      }
      : r.method === "unsubscribe"
      ? () => {
        client.subscribed = false;
        return { subscribed: false };
      }
      : undefined;
    const call: Call = { id: (id ?? null) as string | number | null, signal: client.abort.signal };
    let body: { result: unknown } | { error: unknown };
    if (method === undefined) {
      body = {
        error: {
          code: DaemonErrorCode.MethodNotFound,
          message: `no method ${JSON.stringify(r.method)}`,
        },
      };
    } else {
      try {
        body = { result: (await method(paramsObject(r.params), call)) ?? null };
      } catch (err) {
        const error = rpcError(err);
        if (error.code === DaemonErrorCode.InternalError) {
          log(`internal error in ${r.method}: ${error.message}`);
        }
        body = { error };
      }
    }
    // A notification (no id) gets no reply, not even an error.
    if (id !== undefined) reply(call.id, body);
  };

  const accepting = accept();
  log(`listening on ${path}`);

  const close = (): Promise<void> => {
    closing ??= (async () => {
      for (const [type, fn] of events) messenger.removeEventListener(type, fn);
      try {
        listener.close();
      } catch {
        // Closed already.
      }
      await accepting;
      for (const c of [...clients]) c.close("the daemon is stopping");
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        Promise.allSettled([...running]),
        new Promise((r) => timer = setTimeout(r, CLOSE_WAIT_MS)),
      ]);
      clearTimeout(timer);
      await Deno.remove(path).catch(() => {});
      log("socket closed");
    })();
    return closing;
  };

  return {
    path,
    get clients() {
      return clients.size;
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

// Removes a socket file left by a daemon that died; anything else at the path is kept.
async function removeStaleSocket(path: string): Promise<void> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.lstat(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return;
    throw new DimError(`Cannot use ${path}: ${(err as Error).message}`, { cause: err });
  }
  if (info.isSocket !== true) {
    throw new DimError(`Cannot listen on ${path}: something that is not a socket is there`);
  }
  await Deno.remove(path);
}

// Tells a client it cannot be served, and hangs up.
async function refuse(conn: Deno.Conn, error: { code: number; message: string }): Promise<void> {
  try {
    const line = encoder.encode(JSON.stringify({ jsonrpc: "2.0", id: null, error }) + "\n");
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      conn.write(line),
      new Promise((r) => timer = setTimeout(r, 1000)),
    ]);
    clearTimeout(timer);
  } catch {
    // Gone already.
  } finally {
    try {
      conn.close();
    } catch {
      // Closed already.
    }
  }
}

async function waitDrained(client: Client): Promise<void> {
  for (let i = 0; i < 50 && !client.closed; i++) {
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** What {@linkcode LineReader.next} returns for a line over the cap. */
const TOO_LONG = Symbol("too long");

/** Splits a connection's bytes into lines, refusing one over the cap before it is whole. */
class LineReader {
  readonly #conn: Deno.Conn;
  readonly #max: number;
  readonly #buf = new Uint8Array(64 * 1024);
  #parts: Uint8Array[] = [];
  #partBytes = 0;
  #ready: Uint8Array[] = [];

  constructor(conn: Deno.Conn, max: number) {
    this.#conn = conn;
    this.#max = max;
  }

  /** The next non-blank line, without its end; `undefined` at the end; TOO_LONG over the cap. */
  async next(): Promise<Uint8Array | undefined | typeof TOO_LONG> {
    while (true) {
      const line = this.#ready.shift();
      if (line !== undefined) {
        if (line.length > this.#max) return TOO_LONG;
        if (!isBlank(line)) return line;
        continue;
      }
      if (this.#partBytes > this.#max) return TOO_LONG;
      const n = await this.#conn.read(this.#buf);
      if (n === null) return undefined;
      let start = 0;
      for (let i = 0; i < n; i++) {
        if (this.#buf[i] !== 0x0a) continue;
        this.#ready.push(this.#take(this.#buf.subarray(start, i)));
        start = i + 1;
      }
      if (start < n) {
        this.#parts.push(this.#buf.slice(start, n));
        this.#partBytes += n - start;
      }
    }
  }

  // The buffered start of a line, with its end.
  #take(end: Uint8Array): Uint8Array {
    if (this.#parts.length === 0) return end.slice();
    const line = new Uint8Array(this.#partBytes + end.length);
    let off = 0;
    for (const p of this.#parts) {
      line.set(p, off);
      off += p.length;
    }
    line.set(end, off);
    this.#parts = [];
    this.#partBytes = 0;
    return line;
  }
}

function isBlank(line: Uint8Array): boolean {
  return line.every((b) => b === 0x20 || b === 0x09 || b === 0x0d);
}
