/**
 * `dim status`: goes online and reports the node's health — reachability
 * (public, behind NAT via which relays, or mapped by UPnP, and how long ago
 * that was checked), peers, addresses, whether LAN discovery is on, DHT
 * routing table, and messages still waiting in the outbox.
 *
 * @module
 */
import type { Reachability } from "../dht/types.ts";
import { relayOf } from "../messenger/card_addresses.ts";
import type { Messenger } from "../messenger/messenger.ts";
import { type Context, unreachable } from "./context.ts";
import { viaRunningDim } from "./remote.ts";

/** The reachability part of `dim status --json`. */
export interface ReachabilityReport {
  /** `"unknown"`, `"public"` or `"private"` (behind NAT). */
  readonly status: Reachability["status"];
  /** The same in words, with its age, as the text output shows it. */
  readonly summary: string;
  /** When it was last checked (ISO 8601), or `null` if never. */
  readonly checkedAt: string | null;
  /** Seconds since it was last checked, or `null` if never. */
  readonly ageSeconds: number | null;
  /** The relays holding a reservation for this node, and their addresses. */
  readonly relays: readonly { readonly peerId: string; readonly addresses: string[] }[];
  /** The address a UPnP gateway maps to this node, or `null`. */
  readonly mapped: string | null;
}

/**
 * How long ago something happened, in words.
 *
 * @param ms The time since then, in ms.
 * @returns `just now`, `42 s ago`, `5 min ago`, `3 h ago` or `2 days ago`.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatAge } from "./status.ts";
 *
 * assert.equal(formatAge(300), "just now");
 * assert.equal(formatAge(5 * 60_000 + 1), "5 min ago");
 * assert.equal(formatAge(50 * 3_600_000), "2 days ago");
 * ```
 */
export function formatAge(ms: number): string {
  const s = Math.floor(Math.max(0, ms) / 1000);
  if (s < 1) return "just now";
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 48 * 3600) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86_400)} days ago`;
}

/**
 * A node's reachability in words, with its age.
 *
 * @param reach The node's reachability.
 * @param now The current time in ms.
 * @returns For example `behind NAT via relays 12D3KooWa…, 12D3KooWb… (checked 3 min ago)`.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { describeReachability } from "./status.ts";
 *
 * assert.equal(
 *   describeReachability({ status: "public", checkedAt: 0, relays: [] }, 120_000),
 *   "public (checked 2 min ago)",
 * );
 * assert.equal(describeReachability({ status: "unknown", relays: [] }, 0), "unknown (not checked yet)");
 * ```
 */
export function describeReachability(reach: Reachability, now: number): string {
  let words: string;
  if (reach.status === "private") {
    words = reach.relays.length > 0
      ? `behind NAT via relays ${reach.relays.join(", ")}`
      : "behind NAT, no relay reserved yet";
    if (reach.mapped !== undefined) words += `; mapped by UPnP ${reach.mapped}`;
  } else if (reach.mapped !== undefined) {
    words = `mapped by UPnP ${reach.mapped}`;
  } else {
    words = reach.status;
  }
  const age = reach.checkedAt === undefined
    ? "not checked yet"
    : `checked ${formatAge(now - reach.checkedAt)}`;
  return `${words} (${age})`;
}

/**
 * The reachability part of `dim status --json`: the node's reachability,
 * its age, and each relay with the addresses this node is reached through it
 * at (from the node's `/p2p-circuit` addresses).
 *
 * @param reach The node's reachability.
 * @param multiaddrs The node's addresses.
 * @param now The current time in ms.
 * @returns The report.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { reachabilityReport } from "./status.ts";
 *
 * const relay = "12D3KooWRelay";
 * const report = reachabilityReport(
 *   { status: "private", checkedAt: 1_000, relays: [relay] },
 *   [`/ip4/198.51.100.1/tcp/4001/p2p/${relay}/p2p-circuit/p2p/12D3KooWMe`],
 *   61_000,
 * );
 * assert.equal(report.ageSeconds, 60);
 * assert.deepEqual(report.relays, [{ peerId: relay, addresses: ["/ip4/198.51.100.1/tcp/4001"] }]);
 * ```
 */
export function reachabilityReport(
  reach: Reachability,
  multiaddrs: readonly string[],
  now: number,
): ReachabilityReport {
  const relays = reach.relays.map((peerId) => {
    const addresses = new Set<string>();
    for (const a of multiaddrs) {
      if (relayOf(a) !== peerId) continue;
      addresses.add(a.slice(0, a.indexOf("/p2p-circuit")).replace(`/p2p/${peerId}`, ""));
    }
    return { peerId, addresses: [...addresses] };
  });
  return {
    status: reach.status,
    summary: describeReachability(reach, now),
    checkedAt: reach.checkedAt === undefined ? null : new Date(reach.checkedAt).toISOString(),
    ageSeconds: reach.checkedAt === undefined
      ? null
      : Math.max(0, Math.floor((now - reach.checkedAt) / 1000)),
    relays,
    mapped: reach.mapped ?? null,
  };
}

/** What `dim status` reports (its `--json` output). */
export interface StatusReport {
  /** The user's ID. */
  readonly id: string;
  /** The user's display name. */
  readonly displayName: string;
  /** The node's peer ID. */
  readonly peerId: string;
  /** The node's addresses, relayed ones included. */
  readonly addresses: readonly string[];
  /** The bootstrap nodes used. */
  readonly bootstrap: readonly string[];
  /** The peer IDs of the peers that answered the node's start dials. */
  readonly joinedThrough: readonly string[];
  /** How many peers the node remembers having met (its peer book); `dim status` always says. */
  readonly rememberedPeers?: number;
  /**
   * The peer IDs of its learned bootstrap peers, dialled on every start
   * beside the configured ones; `dim status` always says.
   */
  readonly learnedBootstrap?: readonly string[];
  /**
   * Whether the node looks for DIM peers on the local network (mDNS);
   * `dim status` always says.
   */
  readonly lanDiscovery?: boolean;
  /** Reachability, its age and the relays. */
  readonly reachability: ReachabilityReport;
  /** Open connections. */
  readonly connections: number;
  /** Connected peers. */
  readonly peers: number;
  /** Peers in the DHT routing table. */
  readonly routingTable: number;
  /** Sent messages not yet acknowledged. */
  readonly outbox: number;
  /** Of those, the ones stored in the network. */
  readonly outboxStored: number;
  /**
   * Files over 4 MiB waiting on this device until their contact is online
   * (absent from reports of older versions).
   */
  readonly filesWaiting?: readonly {
    readonly name: string;
    readonly to: string;
    readonly bytes: number;
    readonly attempts: number;
    readonly lastError: string;
  }[];
  /** How many contacts. */
  readonly contacts: number;
  /** The contacts whose keys changed. */
  readonly keyChanged: readonly string[];
}

/**
 * The text output of `dim status`.
 *
 * @param report The report.
 * @returns The lines, without line ends.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { statusLines } from "./status.ts";
 *
 * const lines = statusLines({
 *   id: "dimabc", displayName: "Ada", peerId: "12D3KooWMe", addresses: [], bootstrap: [], joinedThrough: [],
 *   reachability: {
 *     status: "public", summary: "public (checked just now)", checkedAt: null,
 *     ageSeconds: 0, relays: [], mapped: null,
 *   },
 *   connections: 0, peers: 0, routingTable: 0, outbox: 0, outboxStored: 0, contacts: 0,
 *   keyChanged: [],
 * });
 * assert.ok(lines.includes("Reachability:   public (checked just now)"));
 * ```
 */
export function statusLines(report: StatusReport): string[] {
  const lines: string[] = [];
  const list = (label: string, items: readonly string[], none: string) => {
    lines.push(`${label.padEnd(16)}${items[0] ?? none}`);
    for (const item of items.slice(1)) lines.push(`${"".padEnd(16)}${item}`);
  };
  lines.push(`ID:             ${report.id} (${report.displayName})`);
  lines.push(`Peer ID:        ${report.peerId}`);
  lines.push(`Reachability:   ${report.reachability.summary}`);
  if (report.reachability.relays.length > 0) {
    list(
      "Relays:",
      report.reachability.relays.map((r) =>
        r.addresses.length > 0 ? `${r.peerId} at ${r.addresses.join(", ")}` : r.peerId
      ),
      "",
    );
  }
  list("Addresses:", report.addresses, "(nothing)");
  list("Bootstrap:", report.bootstrap, "(none configured)");
  list("Joined through:", report.joinedThrough, "(nobody answered)");
  if (report.rememberedPeers !== undefined) {
    const learned = report.learnedBootstrap?.length ?? 0;
    lines.push(
      `Remembered:     ${report.rememberedPeers} peers, ${learned} learned as bootstrap peers`,
    );
  }
  if (report.lanDiscovery !== undefined) {
    lines.push(
      `LAN discovery:  ${report.lanDiscovery ? "on (mDNS; dim config lan-discovery off)" : "off"}`,
    );
  }
  lines.push(`Peers:          ${report.peers} connected (${report.connections} connections)`);
  if (report.connections === 0) {
    lines.push("Network:        offline: no peer answered; what you send is queued here");
  }
  lines.push(`DHT:            ${report.routingTable} peers in the routing table`);
  // What is not in the network yet has its only copy on this device.
  const queued = report.outbox - report.outboxStored;
  const parts = [
    ...(report.outboxStored > 0 ? [`${report.outboxStored} stored in the network`] : []),
    ...(queued > 0 ? [`${queued} queued on this device until DIM connects`] : []),
  ];
  lines.push(
    `Outbox:         ${report.outbox} waiting for acknowledgement` +
      (parts.length > 0 ? ` (${parts.join(", ")})` : ""),
  );
  if (report.filesWaiting !== undefined && report.filesWaiting.length > 0) {
    list(
      "Files waiting:",
      report.filesWaiting.map((f) =>
        `${f.name} (${f.bytes} bytes) for ${f.to}, until you are both online`
      ),
      "",
    );
  }
  lines.push(
    `Contacts:       ${report.contacts}` +
      (report.keyChanged.length > 0
        ? ` (⚠ KEYS CHANGED: ${report.keyChanged.join(", ")} — run dim contact verify)`
        : ""),
  );
  return lines;
}

/**
 * What a running messenger's node sees, as `dim status --json` reports it
 * (`dim daemon` answers its `status` method with it too).
 *
 * @param messenger The running messenger.
 * @param options The bootstrap nodes used and whether LAN discovery is on.
 * @returns The report.
 */
export function statusReport(
  messenger: Messenger,
  options: { readonly bootstrap: readonly string[]; readonly lanDiscovery: boolean },
): StatusReport {
  const node = messenger.node;
  const outbox = messenger.profile.outbox();
  const addresses = messenger.addresses;
  const contacts = messenger.profile.contacts();
  return {
    id: messenger.id,
    displayName: messenger.profile.displayName,
    peerId: node.peerId,
    addresses,
    bootstrap: options.bootstrap,
    joinedThrough: node.joinedThrough,
    rememberedPeers: node.peerBook.remembered.length,
    learnedBootstrap: node.peerBook.learnedBootstrap.map((peer) => peer.peerId),
    lanDiscovery: options.lanDiscovery,
    reachability: reachabilityReport(node.reachability, addresses, Date.now()),
    connections: node.connections,
    peers: node.peers.length,
    routingTable: node.routingTableSize,
    outbox: outbox.length,
    outboxStored: outbox.filter((m) => m.state === "stored").length,
    filesWaiting: messenger.queuedFiles.map((f) => ({
      name: f.name,
      to: contacts.find((c) => c.id === f.recipient)?.name ?? f.recipient,
      bytes: f.bytes,
      attempts: f.attempts,
      lastError: f.lastError,
    })),
    contacts: contacts.length,
    keyChanged: contacts.filter((c) => c.keyChanged).map((c) => c.name),
  };
}

/**
 * Joins the network, publishes the contact card, prints what the node sees
 * and exits. When no peer answers, it still prints what it knows (the
 * outbox's queued messages among it), then fails if bootstrap nodes were
 * configured.
 *
 * @param ctx The command's context.
 * @returns The exit code.
 * @throws {CliError} If there is no identity, or no peer answered though
 *   bootstrap nodes are configured (after printing the report).
 * @example
 * ```ts ignore
 * import { main } from "./main.ts";
 *
 * // Opens a DIM node.
 * Deno.exitCode = await main(["status", "--json"]);
 * ```
 */
export async function statusCommand(ctx: Context): Promise<number> {
  const report = await viaRunningDim(
    ctx,
    // The running dim's node: what it reports is what `dim status` alone would.
    async (dim) => await dim.status() as unknown as StatusReport,
    async () => {
      const bootstrap = await ctx.bootstrap();
      const lanDiscovery = await ctx.lanDiscovery();
      const messenger = await ctx.openMessenger({ allowOffline: true });
      try {
        // Messages queued while offline go now; the report then shows where they are.
        await ctx.sendQueued(messenger);
        return statusReport(messenger, { bootstrap, lanDiscovery });
      } finally {
        await messenger.stop();
      }
    },
  );
  if (ctx.json) ctx.outJson(report);
  else for (const line of statusLines(report)) ctx.out(line);
  if (report.connections === 0 && report.bootstrap.length > 0) throw unreachable(report.bootstrap);
  return 0;
}
