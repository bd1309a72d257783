/**
 * LAN discovery: DIM nodes on one local network find each other with no
 * bootstrap node at all, over mDNS (`@libp2p/mdns`), as Briar and Jami do.
 *
 * A node with `lanDiscovery` on runs {@linkcode lanDiscovery} as a libp2p
 * service. Every {@linkcode LAN_QUERY_INTERVAL_MS} it multicasts a query
 * for DIM's own service, {@linkcode LAN_SERVICE_TAG} (so other libp2p
 * programs on the LAN are neither asked nor found), and it answers others'
 * queries with its peer ID and its private (LAN) addresses. Those queries
 * and answers are all it sends on the LAN, to 224.0.0.251 port 5353.
 *
 * What an answer names is not trusted: {@linkcode LanPeers} dials the peer
 * on at most {@linkcode LAN_MAX_ADDRESSES} of its private, non-loopback TCP
 * addresses, lets identify run, and keeps it only if it lists DIM's kad
 * protocol (kad-dht then takes it into the routing table, and cards and
 * messages flow through it); otherwise it hangs up, removes the peer from
 * the peer store and leaves it alone for {@linkcode LAN_REJECT_MS}. Answers
 * handled per minute, checks started per minute, checks at once and LAN
 * peers kept are all bounded (`constants.ts`), and no answer or peer,
 * however malformed, throws out of here: the worst a LAN host can do is
 * be ignored.
 *
 * At start, a node that no bootstrap or remembered peer answered waits up
 * to {@linkcode LAN_JOIN_WAIT_MS} for a DIM peer on the LAN
 * ({@linkcode LanDiscovery.join}).
 *
 * @module
 */
// @ts-types="./_mdns.d.ts"
import { mdns, type MulticastDNSComponents } from "@libp2p/mdns";
import type {
  Connection,
  IdentifyResult,
  PeerDiscovery,
  PeerId,
  PeerInfo,
  PeerStore,
  Startable,
} from "@libp2p/interface";
import { isLoopback, isPrivate } from "@libp2p/utils";
import type { Multiaddr } from "@multiformats/multiaddr";
import { PeerUnreachableError } from "../errors.ts";
import {
  JOIN_TIMEOUT_MS,
  LAN_CHECK_TIMEOUT_MS,
  LAN_CHECKS_PER_MINUTE,
  LAN_EVENTS_PER_MINUTE,
  LAN_JOIN_WAIT_MS,
  LAN_MAX_ADDRESSES,
  LAN_MAX_CHECKS,
  LAN_MAX_PEERS,
  LAN_MEMORY,
  LAN_QUERY_INTERVAL_MS,
  LAN_REJECT_MS,
  LAN_RETRY_MS,
  LAN_SERVICE_TAG,
} from "./constants.ts";
import { describe } from "./_peers.ts";
import { deadline, scopedSignal } from "../platform/signals.ts";

const MINUTE_MS = 60_000;

/** What {@linkcode LanPeers} does to a peer; the libp2p node, or a fake in tests. */
export interface LanHost {
  /**
   * Connects to a peer (or reuses a connection) and tells which protocols
   * it speaks, as identify reported them.
   *
   * @param peer The peer.
   * @param addresses Where to dial it, each ending in `/p2p/<peer>`.
   * @param signal Aborts the dial and the wait for identify.
   * @returns Its protocols; empty if identify said nothing in time.
   * @throws {Error} If it cannot be dialed (nothing to undo then).
   */
  protocolsOf(peer: PeerId, addresses: Multiaddr[], signal: AbortSignal): Promise<string[]>;
  /**
   * Hangs up on a peer and removes it from the peer store.
   *
   * @param peer The peer.
   */
  drop(peer: PeerId): Promise<void>;
}

/** Settings of {@linkcode LanPeers}; the defaults are `constants.ts`'s. */
export interface LanPeersInit {
  /** The protocol a peer must speak to be kept: the node's kad protocol. */
  readonly protocol: string;
  /** This node's peer ID, never checked. */
  readonly self: string;
  /** The clock, in ms. Default `Date.now`. */
  readonly clock?: () => number;
  /** One-line diagnostics. */
  readonly log?: (message: string) => void;
  /** Default {@linkcode LAN_EVENTS_PER_MINUTE}. */
  readonly eventsPerMinute?: number;
  /** Default {@linkcode LAN_CHECKS_PER_MINUTE}. */
  readonly checksPerMinute?: number;
  /** Default {@linkcode LAN_MAX_CHECKS}. */
  readonly maxChecks?: number;
  /** Default {@linkcode LAN_MAX_PEERS}. */
  readonly maxPeers?: number;
  /** Default {@linkcode LAN_CHECK_TIMEOUT_MS}. */
  readonly checkTimeoutMs?: number;
}

/** A count of events in the current minute, refusing past a cap. */
class PerMinute {
  readonly #cap: number;
  readonly #clock: () => number;
  #start = -Infinity;
  #count = 0;

  constructor(cap: number, clock: () => number) {
    this.#cap = cap;
    this.#clock = clock;
  }

  /** Counts one event; false if the minute's cap is reached. */
  take(): boolean {
    const now = this.#clock();
    if (now - this.#start >= MINUTE_MS) {
      this.#start = now;
      this.#count = 0;
    }
    if (this.#count >= this.#cap) return false;
    this.#count++;
    return true;
  }
}

/**
 * The addresses of an mDNS answer worth dialing: TCP on a private,
 * non-loopback IP address (a LAN peer is not on this machine's loopback,
 * and a LAN host must not make this node dial its own local services nor
 * hosts on the internet), at most {@linkcode LAN_MAX_ADDRESSES}, each
 * ending in `/p2p/<peer>`.
 *
 * @param peer The peer the answer names.
 * @param addresses The addresses it gives.
 * @returns The addresses to dial; empty if none qualifies.
 */
export function lanAddresses(peer: PeerId, addresses: readonly Multiaddr[]): Multiaddr[] {
  const out: Multiaddr[] = [];
  for (const address of addresses) {
    if (out.length >= LAN_MAX_ADDRESSES) break;
    try {
      const names = address.getComponents().map((c) => c.name);
      if (names.length !== 2 || (names[0] !== "ip4" && names[0] !== "ip6")) continue;
      if (names[1] !== "tcp") continue;
      if (!isPrivate(address) || isLoopback(address)) continue;
      out.push(address.encapsulate(`/p2p/${peer}`));
    } catch {
      // An address that does not take apart is skipped.
    }
  }
  return out;
}

/**
 * The peers mDNS found: which to check, checking them, and which are kept.
 * See the module documentation.
 */
export class LanPeers {
  readonly #host: LanHost;
  readonly #protocol: string;
  readonly #self: string;
  readonly #clock: () => number;
  readonly #log: (message: string) => void;
  readonly #events: PerMinute;
  readonly #checksPerMinute: PerMinute;
  readonly #maxChecks: number;
  readonly #maxPeers: number;
  readonly #checkTimeoutMs: number;
  readonly #checking = new Set<string>();
  readonly #kept = new Set<string>();
  /** Peers not to check again before a time (rejected or unreachable), oldest first. */
  readonly #quiet = new Map<string, number>();
  readonly #tasks = new Set<Promise<void>>();
  readonly #waiters = new Set<() => void>();
  #closing = new AbortController();
  #ignored = 0;

  /**
   * @param host What checking a peer does.
   * @param init The protocol to require, this node's ID, limits.
   */
  constructor(host: LanHost, init: LanPeersInit) {
    this.#host = host;
    this.#protocol = init.protocol;
    this.#self = init.self;
    this.#clock = init.clock ?? Date.now;
    this.#log = init.log ?? (() => {});
    this.#events = new PerMinute(init.eventsPerMinute ?? LAN_EVENTS_PER_MINUTE, this.#clock);
    this.#checksPerMinute = new PerMinute(
      init.checksPerMinute ?? LAN_CHECKS_PER_MINUTE,
      this.#clock,
    );
    this.#maxChecks = init.maxChecks ?? LAN_MAX_CHECKS;
    this.#maxPeers = init.maxPeers ?? LAN_MAX_PEERS;
    this.#checkTimeoutMs = init.checkTimeoutMs ?? LAN_CHECK_TIMEOUT_MS;
  }

  /** The peer IDs of the DIM peers found on the LAN and still connected. */
  get peers(): string[] {
    return [...this.#kept];
  }

  /** How many answers were ignored for a limit (events or checks per minute, checks at once, peers kept). */
  get ignored(): number {
    return this.#ignored;
  }

  /**
   * Handles one peer an mDNS answer named: checks it in the background
   * unless it is this node, kept already, being checked, left alone for
   * now, or a limit is reached. Never throws.
   *
   * @param info The peer and its addresses, as `@libp2p/mdns` parsed them.
   */
  discovered(info: PeerInfo): void {
    try {
      this.#discovered(info);
    } catch (cause) {
      this.#log(`LAN: ignored an mDNS answer: ${describe(cause)}`);
    }
  }

  #discovered(info: PeerInfo): void {
    if (this.#closing.signal.aborted) return;
    if (!this.#events.take()) return this.#ignore();
    const id = info.id.toString();
    if (id === this.#self || this.#kept.has(id) || this.#checking.has(id)) return;
    const until = this.#quiet.get(id);
    if (until !== undefined) {
      if (this.#clock() < until) return;
      this.#quiet.delete(id);
    }
    if (this.#checking.size >= this.#maxChecks || this.#kept.size >= this.#maxPeers) {
      return this.#ignore();
    }
    const addresses = lanAddresses(info.id, info.multiaddrs);
    if (addresses.length === 0) return;
    if (!this.#checksPerMinute.take()) return this.#ignore();
    this.#checking.add(id);
    const task = this.#check(info.id, id, addresses).finally(() => {
      this.#checking.delete(id);
      this.#tasks.delete(task);
    });
    this.#tasks.add(task);
  }

  #ignore(): void {
    // Logged once per hundred, so a flood does not flood the log too.
    if (this.#ignored++ % 100 === 0) {
      this.#log(`LAN: mDNS answers ignored for a limit: ${this.#ignored}`);
    }
  }

  async #check(peer: PeerId, id: string, addresses: Multiaddr[]): Promise<void> {
    const timeout = deadline(this.#checkTimeoutMs);
    const scoped = scopedSignal([this.#closing.signal, timeout.signal]);
    let protocols: string[];
    try {
      protocols = await this.#host.protocolsOf(peer, addresses, scoped.signal);
    } catch (cause) {
      if (!this.#closing.signal.aborted) {
        this.#log(`LAN: could not dial ${id}: ${describe(cause)}`);
        this.#leaveAlone(id, LAN_RETRY_MS);
      }
      return;
    } finally {
      scoped.release();
      timeout.clear();
    }
    if (this.#closing.signal.aborted) return;
    if (protocols.includes(this.#protocol)) {
      this.#kept.add(id);
      this.#log(`LAN: found DIM peer ${id}`);
      for (const wake of this.#waiters) wake();
      return;
    }
    this.#log(`LAN: ${id} does not speak ${this.#protocol}: dropped`);
    this.#leaveAlone(id, LAN_REJECT_MS);
    try {
      await this.#host.drop(peer);
    } catch (cause) {
      this.#log(`LAN: could not drop ${id}: ${describe(cause)}`);
    }
  }

  #leaveAlone(id: string, ms: number): void {
    this.#quiet.delete(id);
    this.#quiet.set(id, this.#clock() + ms);
    while (this.#quiet.size > LAN_MEMORY) {
      const oldest = this.#quiet.keys().next().value;
      if (oldest === undefined) break;
      this.#quiet.delete(oldest);
    }
  }

  /**
   * Forgets a kept peer that disconnected, so that it is checked again
   * when found again and frees its place.
   *
   * @param id The peer ID.
   */
  lost(id: string): void {
    this.#kept.delete(id);
  }

  /**
   * Waits until a DIM peer has been found on the LAN.
   *
   * @param ms The longest wait.
   * @param signal Aborts the wait.
   * @returns Whether one was found.
   */
  async waitForPeer(ms: number, signal?: AbortSignal): Promise<boolean> {
    if (this.#kept.size > 0) return true;
    const timeout = deadline(ms);
    const scoped = scopedSignal([
      timeout.signal,
      this.#closing.signal,
      ...(signal ? [signal] : []),
    ]);
    let wake = () => {};
    try {
      await new Promise<void>((resolve) => {
        wake = resolve;
        this.#waiters.add(wake);
        scoped.signal.addEventListener("abort", () => resolve(), { once: true });
        if (scoped.signal.aborted) resolve();
      });
    } finally {
      this.#waiters.delete(wake);
      scoped.release();
      timeout.clear();
    }
    return this.#kept.size > 0;
  }

  /**
   * Stops checking: aborts the checks in progress and waits for them.
   *
   * @returns When every check has ended.
   */
  async close(): Promise<void> {
    this.#closing.abort();
    await Promise.allSettled([...this.#tasks]);
    this.#kept.clear();
  }

  /** Makes a closed instance usable again (a libp2p service may be started again). */
  reopen(): void {
    if (this.#closing.signal.aborted) this.#closing = new AbortController();
  }
}

/** The libp2p components {@linkcode LanDiscovery} uses. */
export interface LanComponents extends MulticastDNSComponents {
  /** This node's peer ID. */
  readonly peerId: PeerId;
  /** To read a peer's protocols and forget a peer. */
  readonly peerStore: Pick<PeerStore, "get" | "delete">;
  /** To dial and hang up. */
  readonly connectionManager: {
    openConnection(target: Multiaddr[], options: { signal: AbortSignal }): Promise<Connection>;
    closeConnections(peer: PeerId): Promise<void>;
  };
  /** libp2p's events: `peer:identify`, `peer:disconnect`. */
  readonly events: EventTarget;
}

/** Settings of {@linkcode lanDiscovery}. */
export interface LanDiscoveryInit {
  /** The node's kad protocol, which a LAN peer must speak to be kept. */
  readonly protocol: string;
  /** One-line diagnostics. */
  readonly log: (message: string) => void;
  /** The clock, in ms. */
  readonly clock: () => number;
  /**
   * Makes the discovery source; default `@libp2p/mdns` with DIM's service
   * tag. Tests pass one that sends nothing.
   */
  readonly discovery?: (components: LanComponents) => PeerDiscovery;
}

/** What {@linkcode LanDiscovery.join} needs of the node. */
export interface LanJoin {
  /** The node's open connections now. */
  readonly connections: () => number;
  /** The node's routing table size now. */
  readonly routingTableSize: () => number;
  /** Called with each LAN peer found by the end of the join. */
  readonly joined: (peerId: string) => void;
  /** Whether the node must fail when neither bootstrap nor LAN peers answer. */
  readonly requireBootstrap: boolean;
  /** Its bootstrap peers. */
  readonly bootstrap: readonly unknown[];
}

/** The LAN discovery service of a node; see the module documentation. */
export class LanDiscovery implements Startable {
  readonly #components: LanComponents;
  readonly #peers: LanPeers;
  readonly #source: PeerDiscovery & Partial<Startable>;
  readonly #log: (message: string) => void;
  #started = false;
  readonly #onPeer = (event: CustomEvent<PeerInfo>): void => {
    this.#peers.discovered(event.detail);
  };
  readonly #onDisconnect = (event: Event): void => {
    this.#peers.lost(String((event as CustomEvent<PeerId>).detail));
  };

  /**
   * Use {@linkcode lanDiscovery}.
   *
   * @param components libp2p's components.
   * @param init The protocol, log and clock.
   */
  constructor(components: LanComponents, init: LanDiscoveryInit) {
    this.#components = components;
    this.#log = init.log;
    this.#peers = new LanPeers(libp2pHost(components), {
      protocol: init.protocol,
      self: components.peerId.toString(),
      clock: init.clock,
      log: init.log,
    });
    this.#source = (init.discovery ?? defaultDiscovery)(components);
  }

  /** The peer IDs of the DIM peers found on the LAN and still connected. */
  get peers(): string[] {
    return this.#peers.peers;
  }

  /** Whether the service runs. */
  isStarted(): boolean {
    return this.#started;
  }

  /** Does nothing: discovery starts once the node listens ({@linkcode afterStart}). */
  start(): void {}

  /**
   * Starts asking and answering on the LAN. A failure (no multicast route,
   * port 5353 refused, no permission to list the network interfaces) is
   * logged, and the node runs without LAN discovery.
   *
   * @returns When started.
   */
  async afterStart(): Promise<void> {
    if (this.#started) return;
    // multicast-dns lists the interfaces from a socket event, where a
    // permission error would end the process.
    if (
      Deno.permissions.querySync({ name: "sys", kind: "networkInterfaces" }).state !== "granted"
    ) {
      this.#log("LAN: mDNS needs --allow-sys=networkInterfaces; LAN discovery is off");
      return;
    }
    this.#started = true;
    this.#peers.reopen();
    this.#source.addEventListener("peer", this.#onPeer);
    this.#components.events.addEventListener("peer:disconnect", this.#onDisconnect);
    try {
      await this.#source.start?.();
    } catch (cause) {
      this.#log(`LAN: mDNS did not start: ${describe(cause)}`);
    }
  }

  /**
   * Stops asking and answering, and aborts the checks in progress.
   *
   * @returns When stopped.
   */
  async stop(): Promise<void> {
    if (!this.#started) return;
    this.#started = false;
    this.#source.removeEventListener("peer", this.#onPeer);
    this.#components.events.removeEventListener("peer:disconnect", this.#onDisconnect);
    try {
      await this.#source.stop?.();
    } catch (cause) {
      this.#log(`LAN: mDNS did not stop cleanly: ${describe(cause)}`);
    }
    await this.#peers.close();
  }

  /**
   * The LAN's part of a node's start: when the start dials reached nobody,
   * waits up to {@linkcode LAN_JOIN_WAIT_MS} for a DIM peer on the LAN,
   * then for it to enter the routing table; reports the LAN peers found.
   *
   * @param init What it needs of the node.
   * @param signal Aborts the wait.
   * @returns When done.
   * @throws {PeerUnreachableError} If `requireBootstrap` is set, there are
   *   bootstrap peers, and the node has no connection at all.
   * @throws {DOMException} If `signal` is aborted.
   */
  async join(init: LanJoin, signal: AbortSignal): Promise<void> {
    const alone = this.#started && init.connections() === 0;
    if (alone && await this.#peers.waitForPeer(LAN_JOIN_WAIT_MS, signal)) {
      const until = performance.now() + JOIN_TIMEOUT_MS;
      while (init.routingTableSize() === 0 && performance.now() < until) {
        signal.throwIfAborted();
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    }
    signal.throwIfAborted();
    for (const peer of this.#peers.peers) init.joined(peer);
    if (init.requireBootstrap && init.bootstrap.length > 0 && init.connections() === 0) {
      throw new PeerUnreachableError(
        `Cannot start DHT node: none of the ${init.bootstrap.length} bootstrap peers answered, ` +
          "nor any peer known before or found on the local network",
      );
    }
  }
}

/**
 * The LAN discovery service for `createLibp2p`'s `services`.
 *
 * @param init The kad protocol a LAN peer must speak, the log and clock.
 * @returns The service factory.
 */
export function lanDiscovery(init: LanDiscoveryInit): (components: LanComponents) => LanDiscovery {
  return (components) => new LanDiscovery(components, init);
}

function defaultDiscovery(components: LanComponents): PeerDiscovery {
  return mdns({ serviceTag: LAN_SERVICE_TAG, interval: LAN_QUERY_INTERVAL_MS })(components);
}

/** A {@linkcode LanHost} on libp2p's components. */
function libp2pHost(components: LanComponents): LanHost {
  const known = async (peer: PeerId): Promise<string[]> => {
    try {
      return (await components.peerStore.get(peer)).protocols;
    } catch {
      return []; // Not in the peer store (yet).
    }
  };
  return {
    async protocolsOf(peer, addresses, signal) {
      // Listening first: identify may finish before the dial resolves.
      const identified = identifyOf(components.events, peer, signal);
      try {
        await components.connectionManager.openConnection(addresses, { signal });
        // A peer connected before (it dialed this node) was identified then.
        const before = await known(peer);
        if (before.length > 0) return before;
        return (await identified.result) ?? await known(peer);
      } finally {
        identified.cancel();
      }
    },
    async drop(peer) {
      await components.connectionManager.closeConnections(peer);
      await components.peerStore.delete(peer);
    },
  };
}

/** The protocols the next identify of `peer` reports; undefined once `signal` aborts. */
function identifyOf(
  events: EventTarget,
  peer: PeerId,
  signal: AbortSignal,
): { result: Promise<string[] | undefined>; cancel: () => void } {
  let cancel = () => {};
  const result = new Promise<string[] | undefined>((resolve) => {
    const onIdentify = (event: Event) => {
      const detail = (event as CustomEvent<IdentifyResult>).detail;
      if (detail.peerId.equals(peer)) finish(detail.protocols);
    };
    const onAbort = () => finish(undefined);
    const finish = (value: string[] | undefined) => {
      cancel();
      resolve(value);
    };
    cancel = () => {
      events.removeEventListener("peer:identify", onIdentify);
      signal.removeEventListener("abort", onAbort);
    };
    events.addEventListener("peer:identify", onIdentify);
    signal.addEventListener("abort", onAbort, { once: true });
    if (signal.aborted) finish(undefined);
  });
  return { result, cancel };
}
