/**
 * The CLI's settings file, `config.json` in the data directory: the
 * bootstrap nodes to join through and the addresses to listen on, so they
 * need not be typed on every command (`--bootstrap` and `--listen` on the
 * command line replace what the file says); and, when set, the networks
 * that count as public and whether to ask the router for a UPnP port
 * mapping (default on; the environment variable `DIM_UPNP=off` turns it off
 * whatever the file says) and whether to look for DIM peers on the local
 * network over mDNS (default on; `DIM_LAN=off` turns it off).
 *
 * ```json
 * { "bootstrap": ["/ip4/203.0.113.7/tcp/4001/p2p/12D3KooW…"], "listen": [],
 *   "publicNetworks": ["198.18.0.0/15"], "upnp": false, "lanDiscovery": false }
 * ```
 *
 * @example Write and read the settings
 * ```ts
 * import assert from "node:assert/strict";
 * import { readConfig, writeConfig } from "./config.ts";
 *
 * const home = await Deno.makeTempDir();
 * assert.deepEqual(await readConfig(home), { bootstrap: [], listen: [] });
 * await writeConfig(home, { bootstrap: [], listen: ["/ip4/0.0.0.0/tcp/4001"] });
 * assert.deepEqual((await readConfig(home)).listen, ["/ip4/0.0.0.0/tcp/4001"]);
 * await Deno.remove(home, { recursive: true });
 * ```
 *
 * @module
 */
import { isIP } from "node:net";
import { join } from "node:path";
import { multiaddr } from "@multiformats/multiaddr";
import { StorageError } from "../errors.ts";
import { readFileBounded, writeFileAtomic } from "../platform/atomic_file.ts";
import { ensureHome } from "../platform/paths.ts";
import { UsageError } from "./errors.ts";

/** The name of the settings file in the data directory. */
export const CONFIG_FILE = "config.json";

// A settings file is a few lines; anything far larger is not one.
const MAX_CONFIG_BYTES = 64 * 1024;

/** The CLI's settings. */
export interface CliConfig {
  /** Multiaddrs, with `/p2p/<peer id>`, of nodes to join the network through. */
  readonly bootstrap: readonly string[];
  /** Multiaddrs to listen on; empty for the default. */
  readonly listen: readonly string[];
  /**
   * CIDRs whose addresses count as public besides libp2p's rule (for a
   * deployment on a private network). Absent: none.
   */
  readonly publicNetworks?: readonly string[];
  /** Whether to ask the router for a UPnP port mapping. Absent: yes. */
  readonly upnp?: boolean;
  /** Whether to find DIM peers on the local network over mDNS. Absent: yes. */
  readonly lanDiscovery?: boolean;
}

/**
 * Reads the settings of a data directory; a missing file gives empty settings.
 *
 * @param home The data directory.
 * @returns The settings.
 * @throws {StorageError} If the file cannot be read or is not valid settings.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readConfig } from "./config.ts";
 *
 * const home = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${home}/config.json`, "{ nope");
 * await assert.rejects(readConfig(home), /not valid JSON/);
 * await Deno.remove(home, { recursive: true });
 * ```
 */
export async function readConfig(home: string): Promise<CliConfig> {
  const path = join(home, CONFIG_FILE);
  let bytes: Uint8Array | undefined;
  try {
    bytes = await readFileBounded(path, MAX_CONFIG_BYTES);
  } catch (cause) {
    if (cause instanceof RangeError) {
      throw new StorageError(`Cannot read settings ${path}: the file is too large`, { cause });
    }
    throw cause;
  }
  if (bytes === undefined) return { bootstrap: [], listen: [] };
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder().decode(bytes));
  } catch (cause) {
    throw new StorageError(`Cannot read settings ${path}: the file is not valid JSON`, { cause });
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new StorageError(`Cannot read settings ${path}: expected a JSON object`);
  }
  const record = value as Record<string, unknown>;
  const upnp = flag(record, "upnp", path);
  const lanDiscovery = flag(record, "lanDiscovery", path);
  return {
    bootstrap: stringList(record.bootstrap, "bootstrap", path),
    listen: stringList(record.listen, "listen", path),
    ...(record.publicNetworks === undefined
      ? {}
      : { publicNetworks: stringList(record.publicNetworks, "publicNetworks", path) }),
    ...(upnp === undefined ? {} : { upnp }),
    ...(lanDiscovery === undefined ? {} : { lanDiscovery }),
  };
}

function flag(record: Record<string, unknown>, field: string, path: string): boolean | undefined {
  const value = record[field];
  if (value !== undefined && typeof value !== "boolean") {
    throw new StorageError(`Cannot read settings ${path}: "${field}" must be true or false`);
  }
  return value;
}

function stringList(value: unknown, field: string, path: string): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value) || !value.every((v) => typeof v === "string")) {
    throw new StorageError(`Cannot read settings ${path}: "${field}" must be a list of strings`);
  }
  return value;
}

/**
 * Writes the settings of a data directory atomically (mode `0o600`),
 * creating the directory if needed.
 *
 * @param home The data directory.
 * @param config The settings.
 * @returns When the file is durably written.
 * @throws {StorageError} If it cannot be written.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readConfig, writeConfig } from "./config.ts";
 *
 * const home = `${await Deno.makeTempDir()}/dim`;
 * await writeConfig(home, { bootstrap: [], listen: [] });
 * assert.deepEqual(await readConfig(home), { bootstrap: [], listen: [] });
 * ```
 */
export async function writeConfig(home: string, config: CliConfig): Promise<void> {
  await ensureHome(home);
  const text = JSON.stringify(
    {
      bootstrap: config.bootstrap,
      listen: config.listen,
      // Written only when set, so the file of a user who never set them stays as it was.
      ...(config.publicNetworks?.length ? { publicNetworks: config.publicNetworks } : {}),
      ...(config.upnp === undefined ? {} : { upnp: config.upnp }),
      ...(config.lanDiscovery === undefined ? {} : { lanDiscovery: config.lanDiscovery }),
    },
    null,
    2,
  );
  await writeFileAtomic(join(home, CONFIG_FILE), new TextEncoder().encode(text + "\n"));
}

/**
 * Checks a multiaddr given on the command line or in the settings.
 *
 * @param address The multiaddr.
 * @param options `peer`: whether it must end in `/p2p/<peer id>` (bootstrap nodes).
 * @returns The address, trimmed.
 * @throws {UsageError} If it does not parse, or lacks a required peer ID.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkMultiaddr } from "./config.ts";
 *
 * assert.equal(checkMultiaddr(" /ip4/127.0.0.1/tcp/0 ", { peer: false }), "/ip4/127.0.0.1/tcp/0");
 * assert.throws(() => checkMultiaddr("/ip4/127.0.0.1/tcp/4001", { peer: true }), /p2p/);
 * ```
 */
export function checkMultiaddr(address: string, options: { readonly peer: boolean }): string {
  const text = address.trim();
  let components: { name: string }[];
  try {
    components = multiaddr(text).getComponents();
  } catch (cause) {
    throw new UsageError(
      `"${text}" is not a multiaddr (expected something like /ip4/192.0.2.1/tcp/4001${
        options.peer ? "/p2p/12D3KooW…" : ""
      })`,
      { cause },
    );
  }
  if (options.peer && !components.some((c) => c.name === "p2p")) {
    throw new UsageError(`bootstrap address "${text}" needs its node's /p2p/<peer id> part`);
  }
  return text;
}

/**
 * Checks a network given as a CIDR (`198.18.0.0/15`, `2001:db8::/32`).
 *
 * @param cidr The network.
 * @returns The network, trimmed.
 * @throws {UsageError} If it is not an IPv4 or IPv6 address with a prefix length in range.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkCidr } from "./config.ts";
 *
 * assert.equal(checkCidr("198.18.0.0/15"), "198.18.0.0/15");
 * assert.throws(() => checkCidr("198.18.0.0/33"), /not a network/);
 * ```
 */
export function checkCidr(cidr: string): string {
  const text = cidr.trim();
  const [address = "", prefix, ...rest] = text.split("/");
  const family = isIP(address);
  const bits = Number(prefix);
  if (
    family === 0 || rest.length > 0 || prefix === undefined || !/^\d{1,3}$/.test(prefix) ||
    bits > (family === 4 ? 32 : 128)
  ) {
    throw new UsageError(
      `"${text}" is not a network (expected a CIDR such as 198.18.0.0/15 or 2001:db8::/32)`,
    );
  }
  return text;
}
