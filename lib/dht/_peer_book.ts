/**
 * The peer book: what a node remembers of the peers it was connected to
 * (when it first and last saw each, on how many separate occasions, a few
 * addresses, and how it learned of it), the join hints it was given, and
 * the learned bootstrap list it grows from them. `start()` (`_join.ts`)
 * dials the learned bootstrap peers, hinted peers and the most recently
 * seen peers beside the configured bootstrap peers, so that one stopped
 * bootstrap node does not keep a node out.
 *
 * The learned bootstrap list is dialled on every start, so it is what an
 * attacker would want to fill. A peer joins it only if all of these hold
 * (see `constants.ts` for the numbers):
 *
 * - this node itself dialled it on a direct address (not `/p2p-circuit`,
 *   not an address the peer only announced);
 * - it was seen on at least `LEARNED_MIN_OCCASIONS` separate occasions
 *   (`PEER_OCCASION_GAP_MS` apart), spread over at least
 *   `LEARNED_MIN_SPAN_MS`: it stayed reachable for a while;
 * - at most `LEARNED_PER_NETWORK` members share its network (IPv4 /16,
 *   IPv6 /48, or DNS name) and at most `LEARNED_PER_SOURCE` its source
 *   (the configuration, one contact's card or hint, or the network);
 * - the list has room, or a member unseen for `LEARNED_STALE_MS` gives
 *   way (the least recently seen first).
 *
 * {@linkcode PeerBook} holds the rules and is pure (the clock is
 * injected); `PeerBookKeeper` (`_peer_book_keeper.ts`) feeds it from
 * libp2p's events and keeps it in `peers.json`.
 *
 * @module
 */
import { multiaddr } from "@multiformats/multiaddr";
import {
  JOIN_HINT_SOURCES,
  JOIN_HINTS_PER_SOURCE,
  LEARNED_BOOTSTRAP_CAP,
  LEARNED_MIN_OCCASIONS,
  LEARNED_MIN_SPAN_MS,
  LEARNED_PER_NETWORK,
  LEARNED_PER_SOURCE,
  LEARNED_STALE_MS,
  PEER_BOOK_ADDRESS_LENGTH,
  PEER_BOOK_ADDRESSES,
  PEER_BOOK_CAPACITY,
  PEER_OCCASION_GAP_MS,
} from "./constants.ts";
import type {
  JoinHint,
  JoinHintSource,
  PeerBookView,
  PeerSource,
  RememberedPeer,
} from "./types.ts";
import { peerIdOf } from "./_peers.ts";

/** What a peer book needs to know of its node. */
export interface PeerBookInit {
  /** The node's own peer ID, never remembered. */
  readonly self: string;
  /** The peer IDs of the configured bootstrap peers (their source is `"bootstrap"`). */
  readonly bootstrap: readonly string[];
  /** The clock, in ms since the epoch. */
  readonly clock: () => number;
}

/** What one connection tells of a peer. */
export interface Sighting {
  /** The direct address this node dialled it on, if it did. */
  readonly dialed?: string | undefined;
  /** Other addresses it was reached on. */
  readonly addresses?: readonly string[];
}

interface Entry {
  readonly peerId: string;
  addresses: string[];
  dialed: string | undefined;
  readonly firstSeen: number;
  lastSeen: number;
  occasions: number;
  readonly source: PeerSource;
}

interface Hint extends JoinHint {
  readonly peerIds: readonly string[];
}

const SOURCE = /^(?:hint|contact|mailbox):\S{1,128}$/;
const PEER_ID = /^[A-Za-z0-9]{1,128}$/;
const FILE_VERSION = 1;

/**
 * The peer book's rules over its entries; see the module documentation.
 *
 * @example A peer seen three times over two hours is learned
 * ```ts
 * import assert from "node:assert/strict";
 * import { PeerBook } from "./_peer_book.ts";
 *
 * let now = 0;
 * const book = new PeerBook({ self: "12D3KooWMe", bootstrap: [], clock: () => now });
 * const dialed = "/ip4/198.51.100.7/tcp/4001/p2p/12D3KooWPeer";
 * for (let i = 0; i < 3; i++, now += 60 * 60_000) book.seen("12D3KooWPeer", { dialed });
 * assert.deepEqual(book.learnedBootstrap.map((p) => p.peerId), ["12D3KooWPeer"]);
 * ```
 */
export class PeerBook {
  readonly #init: PeerBookInit;
  readonly #bootstrap: ReadonlySet<string>;
  #entries = new Map<string, Entry>();
  #learned = new Set<string>();
  // Insertion order is recency: an updated source is deleted and set again.
  #hints = new Map<JoinHintSource, Hint>();
  #version = 0;

  /**
   * @param init The node's peer ID, its bootstrap peers and the clock.
   */
  constructor(init: PeerBookInit) {
    this.#init = init;
    this.#bootstrap = new Set(init.bootstrap);
  }

  /** Bumped on every change worth writing. */
  get version(): number {
    return this.#version;
  }

  /** The remembered peers, most recently seen first. */
  get remembered(): RememberedPeer[] {
    return [...this.#entries.values()].sort(byLastSeen).map(toRemembered);
  }

  /** The learned bootstrap peers, most recently seen first. */
  get learnedBootstrap(): RememberedPeer[] {
    return [...this.#learned].map((id) => this.#entries.get(id)!).sort(byLastSeen).map(
      toRemembered,
    );
  }

  /** The join hints, newest first. */
  get hints(): JoinHint[] {
    return [...this.#hints.values()].reverse().map(({ source, multiaddrs, at }) => ({
      source,
      multiaddrs,
      at,
    }));
  }

  /** A read-only view with `addJoinHints`, for `DhtNode.peerBook`. */
  get view(): PeerBookView {
    // deno-lint-ignore no-this-alias
    const book = this;
    return Object.freeze({
      get remembered() {
        return book.remembered;
      },
      get learnedBootstrap() {
        return book.learnedBootstrap;
      },
      get hints() {
        return book.hints;
      },
      addJoinHints: (multiaddrs: readonly string[], source: JoinHintSource) =>
        book.addJoinHints(multiaddrs, source),
    });
  }

  /**
   * Records that the node is connected to a peer now: a new entry, or a
   * later sighting (another occasion if the peer was out of sight for
   * `PEER_OCCASION_GAP_MS`). Then forgets the least recently seen peer
   * beyond the capacity, and checks the peer against the learned list's rules.
   *
   * @param peerId The peer ID.
   * @param sighting The addresses the connection tells of.
   */
  seen(peerId: string, sighting: Sighting = {}): void {
    if (peerId === this.#init.self) return;
    const now = this.#init.clock();
    const dialed = sighting.dialed === undefined ? undefined : keepable(sighting.dialed, peerId);
    let entry = this.#entries.get(peerId);
    if (entry === undefined) {
      entry = {
        peerId,
        addresses: [],
        dialed: undefined,
        firstSeen: now,
        lastSeen: now,
        occasions: 1,
        source: this.#sourceOf(peerId),
      };
      this.#entries.set(peerId, entry);
    } else {
      if (now - entry.lastSeen >= PEER_OCCASION_GAP_MS) entry.occasions++;
      entry.lastSeen = Math.max(entry.lastSeen, now);
    }
    if (dialed !== undefined && !isCircuit(dialed)) entry.dialed = dialed;
    const reached = (sighting.addresses ?? []).map((a) => keepable(a, peerId));
    entry.addresses = firstUnique([entry.dialed, ...reached, ...entry.addresses]);
    this.#version++;
    this.#evict();
    this.#promote(entry);
  }

  /**
   * Records the addresses a peer announced (identify), keeping the one this
   * node dialled first. Only for a peer already remembered.
   *
   * @param peerId The peer ID.
   * @param multiaddrs Its listen addresses.
   */
  announced(peerId: string, multiaddrs: readonly string[]): void {
    const entry = this.#entries.get(peerId);
    if (entry === undefined) return;
    const listed = multiaddrs.map((a) => keepable(a, peerId)).filter((a) => !isWildcard(a));
    // Direct addresses before relayed ones: a relay may be gone by the next start.
    const ordered = [...listed.filter((a) => !isCircuit(a)), ...listed.filter(isCircuit)];
    const addresses = firstUnique([entry.dialed, ...ordered, ...entry.addresses]);
    if (addresses.join(" ") === entry.addresses.join(" ")) return;
    entry.addresses = addresses;
    this.#version++;
  }

  /**
   * Forgets a peer, for one that turned out not to speak DIM's protocol.
   *
   * @param peerId The peer ID.
   */
  forget(peerId: string): void {
    if (!this.#entries.delete(peerId)) return;
    this.#learned.delete(peerId);
    this.#version++;
  }

  /**
   * Adds join hints; see {@linkcode PeerBookView.addJoinHints}.
   *
   * @param multiaddrs Multiaddrs, each ending in `/p2p/<peer id>`.
   * @param source Who vouched for them.
   * @returns How many addresses were kept.
   * @throws {TypeError} If `source` is not `hint:<id>`, `contact:<id>` or `mailbox:<id>`.
   */
  addJoinHints(multiaddrs: readonly string[], source: JoinHintSource): number {
    if (typeof source !== "string" || !SOURCE.test(source)) {
      throw new TypeError(
        `Cannot add join hints: the source ${
          JSON.stringify(source)
        } is not hint:<id> or contact:<id>`,
      );
    }
    const kept: string[] = [];
    const peerIds: string[] = [];
    for (const address of multiaddrs) {
      if (kept.length >= JOIN_HINTS_PER_SOURCE) break;
      const parsed = parseHint(address);
      if (parsed === undefined || parsed.peerId === this.#init.self) continue;
      if (kept.includes(parsed.address)) continue;
      kept.push(parsed.address);
      peerIds.push(parsed.peerId);
    }
    if (kept.length === 0) return 0;
    const old = this.#hints.get(source);
    this.#hints.delete(source);
    this.#hints.set(source, { source, multiaddrs: kept, peerIds, at: this.#init.clock() });
    if (old === undefined || old.multiaddrs.join(" ") !== kept.join(" ")) this.#version++;
    while (this.#hints.size > JOIN_HINT_SOURCES) {
      this.#hints.delete(this.#hints.keys().next().value!);
    }
    return kept.length;
  }

  /**
   * The book as the JSON `peers.json` holds.
   *
   * @returns A plain object for `JSON.stringify`.
   */
  toJSON(): PeerBookFile {
    return {
      version: FILE_VERSION,
      peers: [...this.#entries.values()].map((entry) => ({
        ...toRemembered(entry),
        ...(entry.dialed === undefined ? {} : { dialed: entry.dialed }),
      })),
      learned: [...this.#learned],
      hints: this.hints.reverse(),
    };
  }

  /**
   * Replaces the book's contents with what a `peers.json` held, all or
   * nothing.
   *
   * @param value The parsed JSON.
   * @throws {TypeError} If it is not a peer book of this version, or breaks a limit.
   */
  restore(value: unknown): void {
    const file = checkFile(value);
    const entries = new Map<string, Entry>();
    for (const peer of file.peers) {
      if (peer.peerId === this.#init.self) continue;
      entries.set(peer.peerId, {
        peerId: peer.peerId,
        addresses: [...peer.multiaddrs],
        dialed: peer.dialed,
        firstSeen: peer.firstSeen,
        lastSeen: peer.lastSeen,
        occasions: peer.occasions,
        source: peer.source,
      });
    }
    const hints = new Map<JoinHintSource, Hint>();
    for (const hint of file.hints) {
      const parsed = hint.multiaddrs.map(parseHint);
      if (parsed.some((p) => p === undefined)) fail("a hint address has no /p2p/ part");
      hints.set(hint.source, { ...hint, peerIds: parsed.map((p) => p!.peerId) });
    }
    this.#entries = entries;
    this.#learned = new Set(file.learned.filter((id) => entries.has(id)));
    this.#hints = hints;
    this.#version++;
  }

  #sourceOf(peerId: string): PeerSource {
    if (this.#bootstrap.has(peerId)) return "bootstrap";
    for (const hint of [...this.#hints.values()].reverse()) {
      if (hint.peerIds.includes(peerId)) return hint.source;
    }
    return "network";
  }

  // Forgets the least recently seen peers beyond the capacity; learned
  // bootstrap peers are kept (there are few of them).
  #evict(): void {
    if (this.#entries.size <= PEER_BOOK_CAPACITY) return;
    const candidates = [...this.#entries.values()]
      .filter((entry) => !this.#learned.has(entry.peerId))
      .sort((a, b) => a.lastSeen - b.lastSeen);
    for (const entry of candidates) {
      if (this.#entries.size <= PEER_BOOK_CAPACITY) break;
      this.#entries.delete(entry.peerId);
    }
  }

  #promote(entry: Entry): void {
    if (this.#learned.has(entry.peerId) || !qualifies(entry)) return;
    const network = networkOf(entry.dialed!);
    if (network === undefined) return;
    const members = [...this.#learned].map((id) => this.#entries.get(id)!);
    const fits = (others: readonly Entry[]) =>
      others.filter((m) => m.source === entry.source).length < LEARNED_PER_SOURCE &&
      others.filter((m) => networkOf(m.dialed!) === network).length < LEARNED_PER_NETWORK;
    if (members.length < LEARNED_BOOTSTRAP_CAP && fits(members)) {
      this.#learned.add(entry.peerId);
      return;
    }
    const now = this.#init.clock();
    const stale = members
      .filter((m) => now - m.lastSeen >= LEARNED_STALE_MS)
      .sort((a, b) => a.lastSeen - b.lastSeen);
    for (const member of stale) {
      const others = members.filter((m) => m !== member);
      if (others.length < LEARNED_BOOTSTRAP_CAP && fits(others)) {
        this.#learned.delete(member.peerId);
        this.#learned.add(entry.peerId);
        return;
      }
    }
  }
}

/** The JSON of `peers.json`. */
export interface PeerBookFile {
  /** The format's version, 1. */
  readonly version: number;
  /** The remembered peers, with the address each was last dialled on directly. */
  readonly peers: readonly (RememberedPeer & { readonly dialed?: string })[];
  /** The peer IDs of the learned bootstrap peers. */
  readonly learned: readonly string[];
  /** The join hints, oldest first. */
  readonly hints: readonly JoinHint[];
}

/**
 * Whether a peer has earned a place on the learned list, rules of
 * connection history only (the network and source rules need the list).
 */
function qualifies(entry: Entry): boolean {
  return entry.dialed !== undefined && !isCircuit(entry.dialed) &&
    entry.occasions >= LEARNED_MIN_OCCASIONS &&
    entry.lastSeen - entry.firstSeen >= LEARNED_MIN_SPAN_MS;
}

/**
 * The network an address is on, for the spread rule: `ip4:a.b` (its
 * /16), `ip6:` and its first three groups (its /48), or `dns:` and the name.
 *
 * @param address A multiaddr.
 * @returns The network, or `undefined` for an address of none of these kinds.
 */
export function networkOf(address: string): string | undefined {
  let first: { name: string; value?: string | undefined } | undefined;
  try {
    first = multiaddr(address).getComponents()[0];
  } catch {
    return undefined;
  }
  const value = first?.value;
  if (value === undefined) return undefined;
  switch (first!.name) {
    case "ip4":
      return `ip4:${value.split(".").slice(0, 2).join(".")}`;
    case "ip6": {
      const groups = expandIpv6(value);
      return groups === undefined ? undefined : `ip6:${groups.slice(0, 3).join(":")}`;
    }
    case "dns":
    case "dns4":
    case "dns6":
    case "dnsaddr":
      return `dns:${value.toLowerCase()}`;
    default:
      return undefined;
  }
}

function expandIpv6(text: string): string[] | undefined {
  const [head, tail, ...rest] = text.split("::");
  if (rest.length > 0 || head === undefined) return undefined;
  const left = head === "" ? [] : head.split(":");
  const right = tail === undefined || tail === "" ? [] : tail.split(":");
  const missing = 8 - left.length - right.length;
  if (missing < 0 || (tail === undefined && missing !== 0)) return undefined;
  return [...left, ...Array(missing).fill("0"), ...right].map((g) =>
    g.toLowerCase().replace(/^0+(?=.)/, "")
  );
}

function isCircuit(address: string): boolean {
  return address.includes("/p2p-circuit");
}

function isWildcard(address: string): boolean {
  return address.startsWith("/ip4/0.0.0.0/") || address.startsWith("/ip6/::/");
}

// The address as kept: ending in /p2p/<peer id> (`firstUnique` drops one too long).
function keepable(address: string, peerId: string): string {
  return address.endsWith(`/p2p/${peerId}`) ? address : `${address}/p2p/${peerId}`;
}

function firstUnique(addresses: readonly (string | undefined)[]): string[] {
  const out: string[] = [];
  for (const address of addresses) {
    if (address === undefined || address.length > PEER_BOOK_ADDRESS_LENGTH) continue;
    if (!out.includes(address)) out.push(address);
    if (out.length >= PEER_BOOK_ADDRESSES) break;
  }
  return out;
}

function parseHint(address: string): { address: string; peerId: string } | undefined {
  if (typeof address !== "string" || address.length > PEER_BOOK_ADDRESS_LENGTH) return undefined;
  try {
    const parsed = multiaddr(address);
    const peerId = peerIdOf(parsed);
    return peerId === undefined ? undefined : { address: parsed.toString(), peerId };
  } catch {
    return undefined;
  }
}

function byLastSeen(a: Entry, b: Entry): number {
  return b.lastSeen - a.lastSeen;
}

function toRemembered(entry: Entry): RememberedPeer {
  return Object.freeze({
    peerId: entry.peerId,
    multiaddrs: Object.freeze([...entry.addresses]),
    firstSeen: entry.firstSeen,
    lastSeen: entry.lastSeen,
    occasions: entry.occasions,
    source: entry.source,
  });
}

function fail(what: string): never {
  throw new TypeError(`Cannot read peer book: ${what}`);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isTime(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

function checkAddresses(value: unknown, max: number): string[] {
  if (!Array.isArray(value) || value.length > max) fail(`expected at most ${max} addresses`);
  for (const address of value) {
    if (typeof address !== "string" || !address.startsWith("/")) fail("an address is malformed");
    if (address.length > PEER_BOOK_ADDRESS_LENGTH) fail("an address is too long");
  }
  return value as string[];
}

function checkSource(value: unknown): PeerSource {
  if (value === "bootstrap" || value === "network") return value;
  if (typeof value === "string" && SOURCE.test(value)) return value as JoinHintSource;
  return fail("a source is malformed");
}

// Checks a parsed peers.json strictly: one bad field and none of it is used.
function checkFile(value: unknown): PeerBookFile {
  if (!isObject(value)) fail("not an object");
  if (value.version !== FILE_VERSION) fail(`unknown version ${JSON.stringify(value.version)}`);
  const { peers, learned, hints } = value;
  if (!Array.isArray(peers) || peers.length > PEER_BOOK_CAPACITY) fail("too many peers");
  if (!Array.isArray(learned) || learned.length > LEARNED_BOOTSTRAP_CAP) fail("bad learned list");
  if (!Array.isArray(hints) || hints.length > JOIN_HINT_SOURCES) fail("too many hints");
  const checkedPeers = peers.map((peer: unknown) => {
    if (!isObject(peer) || typeof peer.peerId !== "string" || !PEER_ID.test(peer.peerId)) {
      fail("a peer ID is malformed");
    }
    const { firstSeen, lastSeen, occasions, dialed } = peer;
    if (!isTime(firstSeen) || !isTime(lastSeen) || lastSeen < firstSeen) fail("bad times");
    if (!isTime(occasions) || occasions < 1) fail("bad occasions");
    if (dialed !== undefined && (typeof dialed !== "string" || dialed.length > 256)) {
      fail("bad dialled address");
    }
    return {
      peerId: peer.peerId,
      multiaddrs: checkAddresses(peer.multiaddrs, PEER_BOOK_ADDRESSES),
      firstSeen,
      lastSeen,
      occasions,
      source: checkSource(peer.source),
      ...(dialed === undefined ? {} : { dialed: dialed as string }),
    };
  });
  for (const id of learned) if (typeof id !== "string") fail("bad learned list");
  const checkedHints = hints.map((hint: unknown): JoinHint => {
    if (!isObject(hint) || !isTime(hint.at)) fail("a hint is malformed");
    const source = checkSource(hint.source);
    if (source === "bootstrap" || source === "network") fail("a hint's source is malformed");
    return {
      source,
      multiaddrs: checkAddresses(hint.multiaddrs, JOIN_HINTS_PER_SOURCE),
      at: hint.at,
    };
  });
  return { version: FILE_VERSION, peers: checkedPeers, learned, hints: checkedHints };
}
