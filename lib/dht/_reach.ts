/**
 * A node's reach, in one place: its reachability (DIM's dial-back check,
 * `_reach_protocol.ts`, decided by `_reach_rule.ts`), what follows from it,
 * and the last known value on disk.
 *
 * | status | kad-dht | relay reservations (`_relays.ts`) | hop server with `"auto"` |
 * | --- | --- | --- | --- |
 * | unknown | server | none | off |
 * | public | server | none | on |
 * | private | client | `relays` of them | off |
 *
 * Checks run `REACH_FIRST_CHECK_MS` after start, then every
 * `REACH_RECHECK_MS` once decided, sooner (from `REACH_RETRY_MS`, doubling)
 * while undecided, and again soon after the node's own direct addresses
 * change. With a data directory the value (status, `checkedAt`, relays,
 * mapped address) is kept in `reach.json` and loaded at start.
 *
 * UPnP: with a port mapper, while the node is not public, the TCP listen
 * port is mapped, the external address announced (`mapped`) and the
 * reachability checked again.
 *
 * @module
 */
import { join } from "node:path";
import type { Connection } from "@libp2p/interface";
import { multiaddr } from "@multiformats/multiaddr";
import { readFileBounded, writeFileAtomic } from "../platform/atomic_file.ts";
import { fromUtf8, utf8 } from "../platform/bytes.ts";
import {
  MAX_REACH_FILE_BYTES,
  NODE_REACH_FILE,
  REACH_CHECK_PEERS,
  REACH_FIRST_CHECK_MS,
  REACH_PRIVATE_FAILURES,
  REACH_PROTOCOL,
  REACH_PUBLIC_SUCCESSES,
  REACH_RECHECK_MS,
  REACH_RESULT_TTL_MS,
  REACH_RETRY_MS,
} from "./constants.ts";
import type { Reachability } from "./types.ts";
import { describe } from "./_peers.ts";
import { ipOf, pickSpread, subnetOf } from "./public_networks.ts";
import { isIndirect, type ReachProtocol } from "./_reach_protocol.ts";
import { ReachVotes } from "./_reach_rule.ts";
import type { RelayKeeper } from "./_relays.ts";
import type { RelayServerSwitch } from "./_relay_server.ts";

/**
 * A UPnP port mapper, as the node uses one (`lib/platform/upnp.ts`'s
 * `PortMapper` fits). The integration point for `upnp: true`.
 */
export interface NodePortMapper {
  /** Maps a local TCP port; rejects when no gateway maps it. */
  map(request: { readonly internalPort: number; readonly signal?: AbortSignal }): Promise<{
    readonly externalIp: string;
    readonly externalPort: number;
    readonly leaseSeconds: number;
    renew(options?: { readonly signal?: AbortSignal }): Promise<void>;
    release(options?: { readonly signal?: AbortSignal }): Promise<void>;
  }>;
}

/** What {@linkcode Reach} needs of the node. */
export interface ReachInit {
  /** The libp2p calls it makes. */
  readonly libp2p: {
    getConnections(): Connection[];
    getMultiaddrs(): { toString(): string }[];
    readonly peerStore: {
      get(peer: Connection["remotePeer"]): Promise<{ protocols: string[] }>;
    };
  };
  /** kad-dht's mode switch. */
  readonly kad: { setMode(mode: "client" | "server"): Promise<void> };
  /** The dial-back protocol. */
  readonly protocol: ReachProtocol;
  /** The relay keeper. */
  readonly keeper: RelayKeeper;
  /** The hop server's switch, if the node has a relay server. */
  readonly server: RelayServerSwitch | undefined;
  /** The `relayServer` option. */
  readonly relayServer: boolean | "auto";
  /** Whether the dial-back check runs. */
  readonly check: boolean;
  /** Where `reach.json` lives, if anywhere. */
  readonly dataDir: string | undefined;
  /** The UPnP port mapper, if `upnp` is on. */
  readonly portMapper: NodePortMapper | undefined;
  /** Called with the new value when the reachability changes. */
  readonly onReachability: (value: Reachability) => void;
  /** Called when the announced addresses may have changed. */
  readonly onAddresses: () => void;
  /** The clock, in ms. */
  readonly clock: () => number;
  /** One-line diagnostics. */
  readonly log: (message: string) => void;
}

type Status = Reachability["status"];

/** A node's reach; see the module documentation. */
export class Reach {
  readonly #init: ReachInit;
  readonly #votes = new ReachVotes({
    publicSuccesses: REACH_PUBLIC_SUCCESSES,
    privateFailures: REACH_PRIVATE_FAILURES,
    ttlMs: REACH_RESULT_TTL_MS,
  });
  #status: Status = "unknown";
  #checkedAt: number | undefined;
  #mapped: string | undefined;
  #mapping: Awaited<ReturnType<NodePortMapper["map"]>> | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #retries = 0;
  #controller = new AbortController();
  #work: Promise<void> = Promise.resolve();
  #saved = "";
  #ports = "";

  /**
   * @param init The node's parts.
   */
  constructor(init: ReachInit) {
    this.#init = init;
  }

  /** The current value. */
  get value(): Reachability {
    return {
      status: this.#status,
      ...(this.#checkedAt === undefined ? {} : { checkedAt: this.#checkedAt }),
      relays: this.#init.keeper.relays,
      ...(this.#mapped === undefined ? {} : { mapped: this.#mapped }),
    };
  }

  /**
   * The node's addresses: its own, then the `/p2p-circuit` addresses of its
   * reservations and its mapped address, each ending in `/p2p/<peerId>`.
   *
   * @param own The libp2p node's addresses.
   * @param peerId The node's peer ID.
   * @returns The addresses, without duplicates.
   */
  announced(own: readonly string[], peerId: string): string[] {
    const self = `/p2p/${peerId}`;
    const extra = [...this.#init.keeper.addresses, this.#mapped ?? []].flat();
    return [
      ...new Set([
        ...own,
        ...extra.map((address) => address.endsWith(self) ? address : `${address}${self}`),
      ]),
    ];
  }

  /** The UPnP-mapped multiaddr, if any. */
  get mapped(): string | undefined {
    return this.#mapped;
  }

  /**
   * Loads the last known value (when checking), applies it, serves the
   * protocol and schedules the first check.
   *
   * @returns When done.
   */
  async start(): Promise<void> {
    if (this.#init.check) await this.#load();
    await this.#init.protocol.start();
    await this.#apply();
    this.#ports = this.#directPorts().join(",");
    if (this.#init.check) this.#schedule(REACH_FIRST_CHECK_MS);
    if (this.#init.portMapper !== undefined && this.#status !== "public") {
      this.#run(() => this.#map());
    }
  }

  /**
   * Stops checking, gives up reservations and the mapping.
   *
   * @returns When done.
   */
  async stop(): Promise<void> {
    this.#controller.abort();
    clearTimeout(this.#timer);
    await this.#work;
    await this.#init.keeper.close();
    await this.#mapping?.release({ signal: AbortSignal.timeout(1_000) }).catch(() => {});
    await this.#init.protocol.stop().catch(() => {});
  }

  /**
   * Sets the status without a check (for tests), as a check would.
   *
   * @param status The status.
   * @returns When applied.
   */
  async force(status: Status): Promise<void> {
    await this.#set(status);
  }

  /** Tells it the node's addresses changed: a new direct address is checked again soon. */
  addressesChanged(): void {
    const ports = this.#directPorts().join(",");
    if (ports === this.#ports) return;
    this.#ports = ports;
    this.#votes.clear();
    this.#retries = 0;
    if (this.#init.check && !this.#controller.signal.aborted) this.#schedule(REACH_FIRST_CHECK_MS);
  }

  /** Saves the value (relays changed). */
  relaysChanged(): void {
    this.#run(() => this.#save());
  }

  #schedule(ms: number): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#run(() => this.#check()), ms);
    Deno.unrefTimer(this.#timer);
  }

  // Runs work one at a time, never throwing.
  #run(work: () => Promise<void>): void {
    this.#work = this.#work.then(() => this.#controller.signal.aborted ? undefined : work())
      .catch((cause) => this.#init.log(`reach: ${describe(cause)}`));
  }

  async #check(): Promise<void> {
    const signal = this.#controller.signal;
    const ports = this.#directPorts();
    const checkers = ports.length === 0 ? [] : await this.#checkers();
    const outcomes = await Promise.all(
      checkers.map(async (connection) => ({
        peer: connection.remotePeer.toString(),
        outcome: await this.#init.protocol.ask(connection, ports, signal),
      })),
    );
    if (signal.aborted) return;
    const now = this.#init.clock();
    for (const { peer, outcome } of outcomes) {
      if (outcome !== undefined) this.#votes.add(peer, outcome, now);
    }
    const decision = this.#votes.decide(now);
    if (decision === undefined) {
      this.#schedule(Math.min(REACH_RECHECK_MS, REACH_RETRY_MS * 2 ** this.#retries++));
      return;
    }
    this.#retries = 0;
    this.#schedule(REACH_RECHECK_MS);
    await this.#set(decision);
  }

  // Direct connections to peers that speak the protocol, spread over subnets, unasked first.
  async #checkers(): Promise<Connection[]> {
    const asked = new Set(this.#votes.peers(this.#init.clock()));
    const seen = new Set<string>();
    const usable: Connection[] = [];
    for (const connection of this.#init.libp2p.getConnections()) {
      const peer = connection.remotePeer.toString();
      if (seen.has(peer) || isIndirect(connection) || connection.status !== "open") continue;
      seen.add(peer);
      const protocols = await this.#init.libp2p.peerStore.get(connection.remotePeer)
        .then((p) => p.protocols, () => [] as string[]);
      if (protocols.includes(REACH_PROTOCOL)) usable.push(connection);
    }
    const ordered = [
      ...usable.filter((c) => !asked.has(c.remotePeer.toString())),
      ...usable.filter((c) => asked.has(c.remotePeer.toString())),
    ];
    return pickSpread(ordered, (c) => {
      const ip = ipOf(c.remoteAddr.toString());
      return ip === undefined ? undefined : subnetOf(ip);
    }, REACH_CHECK_PEERS);
  }

  // The TCP ports of this node's direct addresses (announced or listening), and the mapped one.
  #directPorts(): number[] {
    const ports = new Set<number>();
    const addresses = this.#init.libp2p.getMultiaddrs().map(String);
    if (this.#mapped !== undefined) addresses.unshift(this.#mapped);
    for (const address of addresses) {
      if (address.includes("/p2p-circuit")) continue;
      const match = /\/tcp\/(\d+)/.exec(address);
      if (match !== null && match[1] !== "0") ports.add(Number(match[1]));
    }
    return [...ports];
  }

  async #set(status: Status): Promise<void> {
    const changed = status !== this.#status;
    this.#status = status;
    this.#checkedAt = this.#init.clock();
    await this.#apply();
    if (changed) {
      this.#init.log(`reachability: ${status}`);
      this.#init.onReachability(this.value);
    }
    await this.#save();
    if (status !== "public" && this.#init.portMapper !== undefined && this.#mapping === undefined) {
      await this.#map();
    }
  }

  async #apply(): Promise<void> {
    const status = this.#status;
    await this.#init.kad.setMode(status === "private" ? "client" : "server");
    const offer = this.#init.relayServer === true ||
      (this.#init.relayServer === "auto" && status === "public");
    await this.#init.server?.set(offer);
    this.#init.keeper.setActive(status === "private");
  }

  async #map(): Promise<void> {
    const mapper = this.#init.portMapper;
    const port = this.#directPorts()[0];
    if (mapper === undefined || port === undefined || this.#mapping !== undefined) return;
    try {
      const mapping = await mapper.map({ internalPort: port, signal: this.#controller.signal });
      this.#mapping = mapping;
      this.#mapped = `/ip4/${mapping.externalIp}/tcp/${mapping.externalPort}`;
      multiaddr(this.#mapped);
      this.#init.log(`UPnP: mapped ${this.#mapped} to port ${port}`);
      this.#init.onAddresses();
      this.#init.onReachability(this.value);
      await this.#save();
      this.#votes.clear();
      if (this.#init.check) this.#schedule(REACH_FIRST_CHECK_MS);
      if (mapping.leaseSeconds > 0) this.#renewLater(mapping.leaseSeconds * 500);
    } catch (cause) {
      this.#init.log(`UPnP: no mapping: ${describe(cause)}`);
    }
  }

  #renewLater(ms: number): void {
    const timer = setTimeout(() => {
      this.#run(async () => {
        try {
          await this.#mapping?.renew({ signal: this.#controller.signal });
          if (this.#mapping !== undefined) this.#renewLater(ms);
        } catch (cause) {
          this.#init.log(`UPnP: renewal failed: ${describe(cause)}`);
          this.#mapping = undefined;
          this.#mapped = undefined;
          this.#init.onAddresses();
          await this.#save();
        }
      });
    }, ms);
    Deno.unrefTimer(timer);
    this.#controller.signal.addEventListener("abort", () => clearTimeout(timer), { once: true });
  }

  async #load(): Promise<void> {
    const value = await readReachability(this.#init.dataDir);
    if (value === undefined) return;
    this.#status = value.status;
    if (value.checkedAt !== undefined) this.#checkedAt = value.checkedAt;
    this.#saved = JSON.stringify(value);
  }

  async #save(): Promise<void> {
    if (this.#init.dataDir === undefined) return;
    const text = JSON.stringify(this.value);
    if (text === this.#saved) return;
    this.#saved = text;
    await writeFileAtomic(join(this.#init.dataDir, NODE_REACH_FILE), utf8(text));
  }
}

/**
 * Reads the last known reachability a node kept in its data directory
 * (`reach.json`), for `dim status` and the node's own start.
 *
 * @param dataDir The node's data directory, or `undefined`.
 * @returns The value, or `undefined` if there is none or it is unreadable.
 * @example
 * ```ts
 * import { readReachability } from "./_reach.ts";
 *
 * const dir = await Deno.makeTempDir();
 * console.assert((await readReachability(dir)) === undefined);
 * await Deno.remove(dir);
 * ```
 */
export async function readReachability(
  dataDir: string | undefined,
): Promise<Reachability | undefined> {
  if (dataDir === undefined) return undefined;
  let value: Partial<Record<keyof Reachability, unknown>>;
  try {
    const bytes = await readFileBounded(join(dataDir, NODE_REACH_FILE), MAX_REACH_FILE_BYTES);
    if (bytes === undefined) return undefined;
    value = JSON.parse(fromUtf8(bytes));
  } catch {
    return undefined;
  }
  const { status, checkedAt, relays, mapped } = value ?? {};
  if (status !== "unknown" && status !== "public" && status !== "private") return undefined;
  return {
    status,
    ...(typeof checkedAt === "number" && Number.isFinite(checkedAt) ? { checkedAt } : {}),
    relays: Array.isArray(relays) ? relays.filter((r) => typeof r === "string").slice(0, 16) : [],
    ...(typeof mapped === "string" && mapped.length <= 256 ? { mapped } : {}),
  };
}
