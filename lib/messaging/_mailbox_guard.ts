/**
 * What the mailbox server remembers about who asks: the origin (storing
 * address) of a remote peer, for quotas and rates per address, and the
 * signed FETCH and DELETE requests it served, so none is served twice.
 *
 * @module
 */
import { toHex } from "../platform/bytes.ts";
import { ipOf, ipToBytes } from "../dht/public_networks.ts";

/**
 * The origin of a remote peer: its IPv4 address, or its IPv6 /64 (one
 * subscriber's usual allotment), from the connection's remote multiaddr. A
 * peer reached through a relay counts under the relay (which limits its
 * own circuits per address). Without an address the peer is its own origin.
 *
 * @param remoteAddress The connection's remote multiaddr, if known.
 * @param remotePeer The remote peer ID.
 * @returns A key such as `ip4:192.0.2.1` or `ip6:20010db800000001/64`.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { originOf } from "./_mailbox_guard.ts";
 *
 * assert.equal(originOf("/ip4/192.0.2.1/tcp/4001", "p"), "ip4:192.0.2.1");
 * assert.equal(originOf("/ip6/2001:db8:0:1:2:3:4:5/tcp/1", "p"), "ip6:20010db800000001/64");
 * assert.equal(originOf(undefined, "p"), "peer:p");
 * ```
 */
export function originOf(remoteAddress: string | undefined, remotePeer: string): string {
  if (remoteAddress === undefined) return `peer:${remotePeer}`;
  const relay = remoteAddress.match(/\/p2p\/([^/]+)\/p2p-circuit/);
  if (relay !== null) return `relay:${relay[1]}`;
  const ip = ipOf(remoteAddress);
  if (ip === undefined) return `peer:${remotePeer}`;
  const bytes = ipToBytes(ip);
  if (bytes.length !== 16) return `ip4:${ip}`;
  return `ip6:${toHex(bytes.subarray(0, 8))}/64`;
}

/** What {@linkcode SeenRequests.admit} decides. */
export type Admission = "fresh" | "replayed" | "stale";

/**
 * The signed requests a node has served within their validity window, so
 * each is served once. Bounded: past `max` it forgets the oldest half, and
 * from then on refuses as stale every request no newer than the newest it
 * forgot, so a forgotten request still cannot come back.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SeenRequests } from "./_mailbox_guard.ts";
 *
 * const seen = new SeenRequests(2, 60_000);
 * assert.equal(seen.admit("a", 1000, 1000), "fresh");
 * assert.equal(seen.admit("a", 1000, 1001), "replayed");
 * ```
 */
export class SeenRequests {
  readonly #seen = new Map<string, number>();
  #floor = -Infinity;

  /**
   * @param max The most requests remembered.
   * @param windowMs How far a request's time may be from the clock.
   */
  constructor(readonly max: number, readonly windowMs: number) {}

  /** How many requests are remembered. */
  get size(): number {
    return this.#seen.size;
  }

  /**
   * Records a request whose signature checked out, if it is new.
   *
   * @param key The request's identity (mailbox and nonce).
   * @param timestamp The request's time (ms), already within the window.
   * @param now The current time (ms).
   * @returns "fresh" (serve it), "replayed" or "stale" (refuse it).
   */
  admit(key: string, timestamp: number, now: number): Admission {
    if (timestamp <= this.#floor) return "stale";
    if (this.#seen.has(key)) return "replayed";
    if (this.#seen.size >= this.max) this.#forget(now);
    if (timestamp <= this.#floor) return "stale";
    this.#seen.set(key, timestamp);
    return "fresh";
  }

  #forget(now: number): void {
    // Out of the window, a request is refused for its time anyway.
    for (const [key, at] of this.#seen) {
      if (at < now - this.windowMs) this.#seen.delete(key);
    }
    if (this.#seen.size < this.max) return;
    const times = [...this.#seen.values()].sort((a, b) => a - b);
    const cut = times[Math.floor(times.length / 2)]!;
    for (const [key, at] of this.#seen) if (at <= cut) this.#seen.delete(key);
    this.#floor = Math.max(this.#floor, cut);
  }
}
