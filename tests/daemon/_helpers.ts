/**
 * Shared pieces of the daemon tests: a `dim daemon` run in this process,
 * and a raw line client over the socket that knows nothing of DIM.
 *
 * @module
 */
import type { MemoryIo } from "../../lib/cli/io.ts";
import { LOOPBACK, type Run, startDim, until } from "../cli/_helpers.ts";

/** A daemon started with `main`; `stop()` raises SIGTERM and waits for its exit. */
export interface RunningDaemon {
  readonly io: MemoryIo;
  readonly socket: string;
  stop(): Promise<Run>;
}

/** Starts `dim daemon` for `home` (listening on loopback) and waits until its socket is up. */
export async function startDaemon(
  home: string,
  extra: readonly string[] = [],
): Promise<RunningDaemon> {
  const { io, done } = startDim(home, ["daemon", "--listen", LOOPBACK, "--json", ...extra]);
  let ended = false;
  done.finally(() => ended = true);
  await until(() => io.out.includes("\n") || ended, 30_000, "the daemon to listen");
  if (ended) throw new Error(`the daemon ended: ${(await done).err}`);
  const socket = JSON.parse(io.out).socket as string;
  return {
    io,
    socket,
    stop: () => {
      io.signal("SIGTERM");
      return done;
    },
  };
}

/** A client that speaks plain JSON lines over the socket. */
export class LineClient {
  readonly conn: Deno.UnixConn;
  #buffer = "";
  readonly #decoder = new TextDecoder();
  readonly #encoder = new TextEncoder();

  private constructor(conn: Deno.UnixConn) {
    this.conn = conn;
  }

  /** Connects to the socket. */
  static async connect(path: string): Promise<LineClient> {
    return new LineClient(await Deno.connect({ transport: "unix", path }));
  }

  /** Writes raw bytes or text. */
  async write(data: string | Uint8Array): Promise<void> {
    const bytes = typeof data === "string" ? this.#encoder.encode(data) : data;
    for (let off = 0; off < bytes.length;) off += await this.conn.write(bytes.subarray(off));
  }

  /** Reads one line as JSON; `undefined` when the daemon closed the connection. */
  async line(): Promise<Record<string, unknown> | undefined> {
    const buf = new Uint8Array(65536);
    while (!this.#buffer.includes("\n")) {
      const n = await this.conn.read(buf).catch(() => null);
      if (n === null) return undefined;
      this.#buffer += this.#decoder.decode(buf.subarray(0, n), { stream: true });
    }
    const i = this.#buffer.indexOf("\n");
    const line = this.#buffer.slice(0, i);
    this.#buffer = this.#buffer.slice(i + 1);
    return JSON.parse(line);
  }

  /** Sends a request and reads the next line that answers it. */
  async request(id: number, method: string, params?: unknown): Promise<Record<string, unknown>> {
    await this.write(JSON.stringify({ jsonrpc: "2.0", id, method, params }) + "\n");
    while (true) {
      const reply = await this.line();
      if (reply === undefined) throw new Error("the daemon closed the connection");
      if (reply.id === id) return reply;
    }
  }

  /** Closes the connection. */
  close(): void {
    try {
      this.conn.close();
    } catch {
      // Closed already.
    }
  }
}
