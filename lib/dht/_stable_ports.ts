/**
 * A node with a data directory keeps its TCP ports across runs.
 *
 * A listen address with port 0 (the default, `/ip4/0.0.0.0/tcp/0`) makes
 * the system pick a free port, a new one on every start: then the address a
 * contact's card, a peer's store or a learned bootstrap list holds for this
 * node is dead after each restart, and only nodes with fixed ports (bootstrap
 * nodes) can be found again when the bootstrap node is gone. So the port the
 * system picked is kept in `ports.json` beside the node key, and the next
 * start listens on it again when it is free (else on a new one, which is
 * then kept). A listen address with a port of its own is left alone.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { multiaddr } from "@multiformats/multiaddr";
 * import { StablePorts } from "./_stable_ports.ts";
 *
 * const dir = await Deno.makeTempDir();
 * const ports = new StablePorts(dir, [multiaddr("/ip4/127.0.0.1/tcp/0")]);
 * assert.equal(String((await ports.listen())[0]), "/ip4/127.0.0.1/tcp/0");
 * await ports.remember([multiaddr("/ip4/127.0.0.1/tcp/40123/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN")]);
 * const again = await new StablePorts(dir, [multiaddr("/ip4/127.0.0.1/tcp/0")]).listen();
 * assert.match(String(again[0]), /^\/ip4\/127\.0\.0\.1\/tcp\/(40123|0)$/);
 * await Deno.remove(dir, { recursive: true });
 * ```
 *
 * @module
 */
import { join } from "node:path";
import { type Multiaddr, multiaddr } from "@multiformats/multiaddr";
import { readFileBounded, writeFileAtomic } from "../platform/atomic_file.ts";
import { fromUtf8, utf8 } from "../platform/bytes.ts";

/** The file, in a node's data directory, of the ports it listened on. */
export const NODE_PORTS_FILE = "ports.json";
/** The largest `ports.json` read; a longer one is ignored. */
const MAX_PORTS_FILE_BYTES = 4096;

/** Keeps the ports of one node's port-0 listen addresses; see the module documentation. */
export class StablePorts {
  readonly #dataDir: string;
  readonly #listen: readonly Multiaddr[];
  #saved = "";

  /**
   * @param dataDir The node's data directory.
   * @param listen The configured listen addresses.
   */
  constructor(dataDir: string, listen: readonly Multiaddr[]) {
    this.#dataDir = dataDir;
    this.#listen = listen;
  }

  /**
   * The addresses to listen on: each port-0 TCP address with the port kept
   * from the last run, if it is free now.
   *
   * @returns The listen addresses.
   */
  async listen(): Promise<Multiaddr[]> {
    const kept = await this.#read();
    return this.#listen.map((address) => {
      const port = kept[address.toString()];
      const tcp = portZero(address);
      if (port === undefined || tcp === undefined || !isFree(tcp.host, port)) return address;
      return multiaddr(`/${tcp.family}/${tcp.host}/tcp/${port}`);
    });
  }

  /**
   * Keeps the ports the node listens on now, for its next start. Only a
   * family (IPv4, IPv6) with a single port-0 listen address is kept: with
   * more, which port is whose cannot be told from the node's addresses.
   * A failure to write is not an error: the next start picks a new port.
   *
   * @param addresses The node's addresses now.
   */
  async remember(addresses: readonly Multiaddr[]): Promise<void> {
    const kept: Record<string, number> = {};
    for (const family of ["ip4", "ip6"] as const) {
      const zero = this.#listen.filter((a) => portZero(a)?.family === family);
      if (zero.length !== 1) continue;
      const ports = new Set(
        addresses.flatMap((a) => {
          const tcp = directTcp(a);
          return tcp?.family === family ? [tcp.port] : [];
        }),
      );
      if (ports.size === 1) kept[zero[0]!.toString()] = [...ports][0]!;
    }
    const text = JSON.stringify({ version: 1, ports: kept });
    if (Object.keys(kept).length === 0 || text === this.#saved) return;
    try {
      await writeFileAtomic(join(this.#dataDir, NODE_PORTS_FILE), utf8(text), { mode: 0o600 });
      this.#saved = text;
    } catch {
      // Not kept: the next start listens on a new port, as without a data directory.
    }
  }

  async #read(): Promise<Record<string, number>> {
    try {
      const bytes = await readFileBounded(
        join(this.#dataDir, NODE_PORTS_FILE),
        MAX_PORTS_FILE_BYTES,
      );
      if (bytes === undefined) return {};
      const value = JSON.parse(fromUtf8(bytes)) as { version?: unknown; ports?: unknown };
      if (value?.version !== 1 || typeof value.ports !== "object" || value.ports === null) {
        return {};
      }
      const kept: Record<string, number> = {};
      for (const [address, port] of Object.entries(value.ports)) {
        if (Number.isInteger(port) && port > 0 && port < 65536) kept[address] = port;
      }
      return kept;
    } catch {
      return {}; // Unreadable or damaged: a new port, which is then kept.
    }
  }
}

interface Tcp {
  readonly family: "ip4" | "ip6";
  readonly host: string;
  readonly port: number;
}

function directTcp(address: Multiaddr): Tcp | undefined {
  const parts = address.toString().split("/");
  const [, family, host, transport, port] = parts;
  if (family !== "ip4" && family !== "ip6") return undefined;
  if (transport !== "tcp" || host === undefined || parts.includes("p2p-circuit")) return undefined;
  const number = Number(port);
  return Number.isInteger(number) ? { family, host, port: number } : undefined;
}

function portZero(address: Multiaddr): Tcp | undefined {
  const tcp = directTcp(address);
  const bare = tcp !== undefined && address.toString() === `/${tcp.family}/${tcp.host}/tcp/0`;
  return bare ? tcp : undefined;
}

// Whether a port can be listened on now. Another program may take it before
// libp2p does: then the start fails as it would on any taken port.
function isFree(host: string, port: number): boolean {
  try {
    Deno.listen({ hostname: host, port, transport: "tcp" }).close();
    return true;
  } catch {
    return false;
  }
}
