/**
 * Which of a node's addresses go on the user's contact card, in which
 * order: a card holds at most {@linkcode MAX_ADDRESSES} addresses of at most
 * {@linkcode MAX_ADDRESS_LENGTH} bytes each, and a sender's libp2p dials a
 * card's addresses one after another, so an address nobody can dial costs
 * every sender a dial timeout.
 *
 * - Wildcard listen addresses (`/ip4/0.0.0.0/…`, `/ip6/::/…`), addresses
 *   over the length limit and repeats are left off.
 * - While the node is not known to be unreachable (`"unknown"` or
 *   `"public"`): the UPnP-mapped address first, then the direct addresses
 *   (public ones first, loopback last), then relay (`/p2p-circuit`)
 *   addresses, if any.
 * - While the node is `"private"` (a dial-back check found it not dialable
 *   from outside): the relay addresses first, taken in turn from each relay
 *   so that every relay is on the card, then the mapped address. Its direct
 *   addresses are left off: a sender outside cannot dial them, and libp2p
 *   tries private addresses before relayed ones, so each would delay every
 *   message by a dial timeout. (A private node with no relay yet lists its
 *   direct addresses, which at least peers on its own network can dial.)
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { cardAddresses } from "./card_addresses.ts";
 *
 * const relayed = "/ip4/198.51.100.1/tcp/4001/p2p/12D3KooWRelay/p2p-circuit/p2p/12D3KooWMe";
 * const direct = "/ip4/10.0.0.2/tcp/4001/p2p/12D3KooWMe";
 * const isPublic = (a: string) => !a.startsWith("/ip4/10.");
 * assert.deepEqual(cardAddresses([direct, relayed], { status: "private", isPublic }), [relayed]);
 * assert.deepEqual(
 *   cardAddresses([direct, relayed], { status: "unknown", isPublic }),
 *   [direct, relayed],
 * );
 * ```
 *
 * @module
 */
import { MAX_ADDRESS_LENGTH, MAX_ADDRESSES } from "../record/card.ts";

/** The marker of a relayed address. */
const CIRCUIT = "/p2p-circuit";

/** What {@linkcode cardAddresses} needs to know besides the addresses. */
export interface CardAddressOptions {
  /** The node's reachability: `"private"` puts relay addresses first and leaves direct ones off. */
  readonly status: "unknown" | "public" | "private";
  /** The address a UPnP gateway maps to this node, if any. */
  readonly mapped?: string | undefined;
  /** The node's peer ID, appended to a mapped address the node does not list itself. */
  readonly peerId?: string;
  /** Whether an address counts as public (the node's `publicNetworks` rule). */
  readonly isPublic: (address: string) => boolean;
  /** The most addresses returned. Default {@linkcode MAX_ADDRESSES}. */
  readonly max?: number;
}

/**
 * Picks and orders the addresses for a contact card (see the module doc).
 *
 * @param multiaddrs The node's addresses, each with `/p2p/<peer id>`.
 * @param options The node's reachability and the public-address rule.
 * @returns At most `max` distinct addresses, each short enough for a card.
 */
export function cardAddresses(
  multiaddrs: readonly string[],
  options: CardAddressOptions,
): string[] {
  const usable = [...new Set(multiaddrs)].filter((a) =>
    a.length <= MAX_ADDRESS_LENGTH && !a.includes("/0.0.0.0/") && !a.includes("/::/")
  );
  const mapped = mappedAddress(usable, options);
  const rest = usable.filter((a) => a !== mapped);
  const relayed = interleaveByRelay(rest.filter(isCircuit), options.isPublic);
  const direct = rest.filter((a) => !isCircuit(a));
  const rank = (a: string) => isLoopback(a) ? 2 : options.isPublic(a) ? 0 : 1;
  direct.sort((a, b) => rank(a) - rank(b));
  const mappedList = mapped === undefined ? [] : [mapped];
  const ordered = options.status === "private" && relayed.length > 0
    ? [...relayed, ...mappedList]
    : [...mappedList, ...direct, ...relayed];
  return ordered.slice(0, options.max ?? MAX_ADDRESSES);
}

/**
 * The peer ID of the relay in a `/p2p-circuit` address.
 *
 * @param address A multiaddr.
 * @returns The relay's peer ID, or `undefined` if the address is not relayed
 *   or names no relay.
 */
export function relayOf(address: string): string | undefined {
  const at = address.indexOf(CIRCUIT);
  if (at < 0) return undefined;
  return /\/p2p\/([^/]+)$/.exec(address.slice(0, at))?.[1];
}

function isCircuit(address: string): boolean {
  return address.includes(CIRCUIT);
}

function isLoopback(address: string): boolean {
  return address.startsWith("/ip4/127.") || address.startsWith("/ip6/::1/");
}

/** The mapped address as the node lists it, or as the gateway reported it. */
function mappedAddress(
  usable: readonly string[],
  options: CardAddressOptions,
): string | undefined {
  const mapped = options.mapped;
  if (mapped === undefined || mapped === "") return undefined;
  const listed = usable.find((a) => a === mapped || a.startsWith(`${mapped}/p2p/`));
  if (listed !== undefined) return listed;
  const full = mapped.includes("/p2p/") || options.peerId === undefined
    ? mapped
    : `${mapped}/p2p/${options.peerId}`;
  return full.length <= MAX_ADDRESS_LENGTH ? full : undefined;
}

/**
 * Relay addresses taken in turn from each relay (public transport addresses
 * of a relay before its private ones, loopback last), so that a card cut at
 * its limit still names every relay.
 */
function interleaveByRelay(
  relayed: readonly string[],
  isPublic: (address: string) => boolean,
): string[] {
  const byRelay = new Map<string, string[]>();
  for (const a of relayed) {
    const relay = relayOf(a) ?? "";
    byRelay.set(relay, [...(byRelay.get(relay) ?? []), a]);
  }
  const rank = (a: string) => {
    const hop = a.slice(0, a.indexOf(CIRCUIT));
    return isLoopback(hop) ? 2 : isPublic(hop) ? 0 : 1;
  };
  const queues = [...byRelay.values()].map((list) => list.sort((a, b) => rank(a) - rank(b)));
  const out: string[] = [];
  for (let i = 0; queues.some((q) => i < q.length); i++) {
    for (const q of queues) if (i < q.length) out.push(q[i]!);
  }
  return out;
}
