/**
 * Relay reservations while a node is not publicly reachable: the choice of
 * relays ({@linkcode chooseRelays}, without sockets) and the
 * {@linkcode RelayKeeper}, which holds `relays` reservations through the
 * circuit-relay transport's reservation store.
 *
 * **Choice.** Candidates are peers of the peer store that speak the hop
 * protocol (identify told us), not only the bootstrap list; peers the node
 * is connected to come first, relays that recently failed are skipped, and
 * the picks are spread over /24s (IPv6: /48s), the subnets of relays
 * already held counting as taken. With too few candidates the keeper asks
 * the node to look around the DHT (a lookup of a random key connects to new
 * peers, whose protocols identify then reports).
 *
 * **Keeping.** The transport renews each reservation before it expires. A
 * reservation ends when its connection closes (the relay stopped or went
 * away), its renewal fails, or the relay misses `RELAY_MAX_MISSED_PINGS`
 * pings in a row (the keeper then closes the connection): the keeper
 * removes its addresses and reserves on another relay at once, and a tick
 * every `RELAY_TICK_MS` fills any gap, so a lost relay is replaced within
 * 10 s. When the node turns public the keeper gives every reservation up.
 *
 * @module
 */
import type { PeerId } from "@libp2p/interface";
import { peerIdFromString } from "@libp2p/peer-id";
import { multiaddr } from "@multiformats/multiaddr";
import type { Libp2p } from "libp2p";
import type { Ping } from "@libp2p/ping";
import {
  RELAY_MAX_MISSED_PINGS,
  RELAY_PING_INTERVAL_MS,
  RELAY_PING_TIMEOUT_MS,
  RELAY_RETRY_BACKOFF_MS,
  RELAY_TICK_MS,
} from "./constants.ts";
import type { RelayInternals } from "./_libp2p_internals.ts";
import { describe } from "./_peers.ts";
import { ipOf, pickSpread, subnetOf } from "./public_networks.ts";

/** The circuit relay v2 hop protocol, which relays serve. */
export const HOP_PROTOCOL = "/libp2p/circuit/relay/0.2.0/hop";

/** A peer that could serve as a relay. */
export interface RelayCandidate {
  /** Its peer ID. */
  readonly peerId: string;
  /** Its IP address (of the open connection, else of a known address), if any. */
  readonly ip?: string;
  /** Whether the node is connected to it. */
  readonly connected: boolean;
}

/**
 * Chooses relays to reserve on; see the module documentation.
 *
 * @param candidates Peers that speak the hop protocol, in the order found.
 * @param held The relays (peer ID and IP address) already held.
 * @param want How many more to choose.
 * @param skip Peer IDs not to choose (recently failed).
 * @returns The chosen peer IDs, best first.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { chooseRelays } from "./_relays.ts";
 *
 * const picked = chooseRelays([
 *   { peerId: "a", ip: "198.18.0.1", connected: true },
 *   { peerId: "b", ip: "198.18.0.2", connected: true },
 *   { peerId: "c", ip: "198.18.7.1", connected: false },
 * ], [], 2, new Set());
 * assert.deepEqual(picked, ["a", "c"]);
 * ```
 */
export function chooseRelays(
  candidates: readonly RelayCandidate[],
  held: readonly { readonly peerId: string; readonly ip?: string }[],
  want: number,
  skip: ReadonlySet<string>,
): string[] {
  if (want <= 0) return [];
  const heldIds = new Set(held.map((relay) => relay.peerId));
  const taken = new Set(
    held.flatMap((relay) => relay.ip === undefined ? [] : [subnetOf(relay.ip)]),
  );
  const open = candidates.filter((c) => !heldIds.has(c.peerId) && !skip.has(c.peerId));
  const rank = (c: RelayCandidate) =>
    (c.ip !== undefined && taken.has(subnetOf(c.ip)) ? 2 : 0) + (c.connected ? 0 : 1);
  const ranked = open.map((c, i) => ({ c, i })).sort((x, y) => rank(x.c) - rank(y.c) || x.i - y.i)
    .map(({ c }) => c);
  // Subnets already held go last: pick spread over the fresh ones first.
  const fresh = ranked.filter((c) => c.ip === undefined || !taken.has(subnetOf(c.ip)));
  const stale = ranked.filter((c) => c.ip !== undefined && taken.has(subnetOf(c.ip)));
  const subnet = (c: RelayCandidate) => c.ip === undefined ? undefined : subnetOf(c.ip);
  return [...pickSpread(fresh, subnet, want), ...stale].slice(0, want).map((c) => c.peerId);
}

/** What the keeper needs of the node. */
export interface RelayKeeperInit {
  /** The libp2p node, with a ping service. */
  readonly libp2p: Libp2p<{ ping: Ping }>;
  /** The circuit-relay internals. */
  readonly relay: RelayInternals;
  /** How many reservations to hold. */
  readonly count: number;
  /** Looks around the DHT for more peers (a lookup of a random key). */
  readonly discover: (signal: AbortSignal) => Promise<void>;
  /** Called when the held relays or their addresses change. */
  readonly onChange: () => void;
  /** The clock, in ms. */
  readonly clock: () => number;
  /** One-line diagnostics. */
  readonly log: (message: string) => void;
}

interface Held {
  readonly peer: PeerId;
  readonly ip: string | undefined;
  readonly addrs: readonly string[];
  missed: number;
}

const ADDRESS_TTL_MS = 365 * 24 * 60 * 60 * 1000;
const DISCOVER_INTERVAL_MS = 30_000;

/** Holds relay reservations while active; see the module documentation. */
export class RelayKeeper {
  readonly #init: RelayKeeperInit;
  readonly #held = new Map<string, Held>();
  readonly #backoff = new Map<string, number>();
  #active = false;
  #filling: Promise<void> | undefined;
  #tick: ReturnType<typeof setInterval> | undefined;
  #ping: ReturnType<typeof setInterval> | undefined;
  #lastDiscover = -Infinity;
  #controller = new AbortController();
  readonly #onRemoved = (event: Event): void => {
    const relay = (event as CustomEvent<{ relay: PeerId }>).detail?.relay;
    if (relay === undefined || !this.#held.has(relay.toString())) return;
    this.#init.log(`relay ${relay} lost its reservation; replacing it`);
    this.#forget(relay.toString());
    this.#fill();
  };

  /**
   * @param init The node's parts.
   */
  constructor(init: RelayKeeperInit) {
    this.#init = init;
    init.relay.store.addEventListener("relay:removed", this.#onRemoved);
  }

  /** The relays held, by peer ID. */
  get relays(): string[] {
    return [...this.#held.keys()];
  }

  /** The circuit addresses of the reservations held, without this node's `/p2p/` part. */
  get addresses(): string[] {
    return [...this.#held.values()].flatMap((held) => held.addrs);
  }

  /** Whether the keeper holds (or seeks) reservations. */
  get active(): boolean {
    return this.#active;
  }

  /**
   * Starts or stops holding reservations.
   *
   * @param active Whether to hold them.
   */
  setActive(active: boolean): void {
    if (active === this.#active) return;
    this.#active = active;
    if (active) {
      this.#controller = new AbortController();
      this.#tick = setInterval(() => this.#fill(), RELAY_TICK_MS);
      this.#ping = setInterval(() => void this.#pingAll(), RELAY_PING_INTERVAL_MS);
      Deno.unrefTimer(this.#tick);
      Deno.unrefTimer(this.#ping);
      this.#fill();
      return;
    }
    this.#controller.abort();
    clearInterval(this.#tick);
    clearInterval(this.#ping);
    for (const peer of [...this.#held.keys()]) this.#release(peer);
  }

  /**
   * Stops for good: gives up the reservations and the event listener.
   *
   * @returns When any fill in progress has settled.
   */
  async close(): Promise<void> {
    this.setActive(false);
    this.#init.relay.store.removeEventListener("relay:removed", this.#onRemoved);
    await this.#filling;
  }

  #fill(): void {
    if (!this.#active || this.#filling !== undefined) return;
    this.#filling = this.#fillOnce(this.#controller.signal)
      .catch((cause) => this.#init.log(`relay reservations: ${describe(cause)}`))
      .finally(() => {
        this.#filling = undefined;
      });
  }

  async #fillOnce(signal: AbortSignal): Promise<void> {
    const want = this.#init.count - this.#held.size;
    if (want <= 0) return;
    const now = this.#init.clock();
    for (const [peer, until] of this.#backoff) if (until <= now) this.#backoff.delete(peer);
    let chosen = chooseRelays(await this.#candidates(), this.#heldList(), want, this.#skip());
    if (chosen.length < want && now - this.#lastDiscover >= DISCOVER_INTERVAL_MS) {
      this.#lastDiscover = now;
      await this.#init.discover(signal).catch(() => {});
      chosen = chooseRelays(await this.#candidates(), this.#heldList(), want, this.#skip());
    }
    for (const peerId of chosen) {
      if (signal.aborted || this.#held.size >= this.#init.count) return;
      await this.#reserve(peerId, signal);
    }
  }

  #skip(): Set<string> {
    return new Set([...this.#backoff.keys(), this.#init.libp2p.peerId.toString()]);
  }

  #heldList(): { peerId: string; ip?: string }[] {
    return [...this.#held.entries()].map(([peerId, held]) =>
      held.ip === undefined ? { peerId } : { peerId, ip: held.ip }
    );
  }

  async #candidates(): Promise<RelayCandidate[]> {
    const { libp2p } = this.#init;
    const peers = await libp2p.peerStore.all({
      filters: [(peer) => peer.protocols.includes(HOP_PROTOCOL)],
    });
    return peers.map((peer) => {
      const connection = libp2p.getConnections(peer.id).find((c) =>
        !c.remoteAddr.toString().includes("/p2p-circuit")
      );
      const ip = ipOf(connection?.remoteAddr.toString() ?? "") ??
        peer.addresses.map(({ multiaddr }) => ipOf(multiaddr.toString())).find((ip) =>
          ip !== undefined
        );
      const base = { peerId: peer.id.toString(), connected: connection !== undefined };
      return ip === undefined ? base : { ...base, ip };
    });
  }

  async #reserve(peerId: string, signal: AbortSignal): Promise<void> {
    const peer = peerIdFromString(peerId);
    try {
      const { details } = await this.#init.relay.store.addRelay(peer, "configured");
      if (signal.aborted) {
        this.#held.set(peerId, { peer, ip: undefined, addrs: [], missed: 0 });
        this.#release(peerId);
        return;
      }
      const connection = this.#init.libp2p.getConnections(peer)[0];
      const addrs = [
        ...new Set(details.reservation.addrs.map((bytes) => `${multiaddr(bytes)}/p2p-circuit`)),
      ];
      const ip = ipOf(connection?.remoteAddr.toString() ?? "");
      this.#held.set(peerId, { peer, ip, addrs, missed: 0 });
      for (const address of addrs) {
        this.#init.relay.addressManager.confirmObservedAddr(multiaddr(address), {
          type: "observed",
          ttl: ADDRESS_TTL_MS,
        });
      }
      this.#init.log(`reserved a relay slot on ${peerId}`);
      this.#init.onChange();
    } catch (cause) {
      this.#backoff.set(peerId, this.#init.clock() + RELAY_RETRY_BACKOFF_MS);
      this.#init.log(`cannot reserve a relay slot on ${peerId}: ${describe(cause)}`);
    }
  }

  async #pingAll(): Promise<void> {
    const { libp2p } = this.#init;
    await Promise.all([...this.#held.entries()].map(async ([peerId, held]) => {
      try {
        await libp2p.services.ping.ping(held.peer, {
          signal: AbortSignal.timeout(RELAY_PING_TIMEOUT_MS),
        });
        held.missed = 0;
      } catch {
        held.missed++;
        if (held.missed < RELAY_MAX_MISSED_PINGS || !this.#held.has(peerId)) return;
        this.#init.log(`relay ${peerId} missed ${held.missed} pings; dropping it`);
        this.#release(peerId);
        this.#backoff.set(peerId, this.#init.clock() + RELAY_RETRY_BACKOFF_MS);
        await libp2p.hangUp(held.peer).catch(() => {});
        this.#fill();
      }
    }));
  }

  // Gives a reservation up: stops its renewal and withdraws its addresses.
  #release(peerId: string): void {
    const held = this.#held.get(peerId);
    if (held === undefined) return;
    const { store } = this.#init.relay;
    const reservation = store.reservations.get(held.peer);
    if (reservation !== undefined) {
      clearTimeout(reservation.timeout);
      store.reservations.delete(held.peer);
    }
    this.#forget(peerId);
  }

  #forget(peerId: string): void {
    const held = this.#held.get(peerId);
    if (held === undefined) return;
    this.#held.delete(peerId);
    for (const address of held.addrs) {
      this.#init.relay.addressManager.removeObservedAddr(multiaddr(address));
    }
    this.#init.onChange();
  }
}
