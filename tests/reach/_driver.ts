/**
 * The tests' side of tests/reach/_peer.ts: starts DIM peers in the lab's
 * namespaces and talks to them in typed calls, keeping every event they
 * report (with its time) for the assertions.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { type Host, INTERNET_CIDR, Lab, type LabProcess } from "./_lab.ts";
import type { MessagingOptions } from "../../lib/messaging/mod.ts";

const PEER = fileURLToPath(new URL("./_peer.ts", import.meta.url));
const ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** How long a peer may take to start (deno start, node start, joining, card). */
const START_TIMEOUT_MS = 60_000;
/** How long a command may take unless a call says otherwise. */
const CALL_TIMEOUT_MS = 30_000;
/** The port storage nodes listen on. */
const STORAGE_PORT = 4001;

/** What a peer is told at start (argv[0], JSON). */
export interface PeerConfig {
  /** A storage node (DHT, mailboxes, relay) or a user. */
  readonly role: "storage" | "user";
  /** Data directory. */
  readonly home: string;
  /** The user's display name and passphrase seed. */
  readonly name: string;
  /** Open the existing profile in `home` instead of creating one. */
  readonly reopen?: boolean;
  readonly listen: readonly string[];
  readonly bootstrap: readonly string[];
  /** Networks counted as public (the lab's 198.18.0.0/15). */
  readonly publicNetworks: readonly string[];
  /** UPnP port mapping (only inside the lab's namespaces). */
  readonly upnp?: boolean;
  /** LAN discovery over mDNS (only inside the lab's namespaces). */
  readonly lanDiscovery?: boolean;
  /** Relay reservations to keep while private. */
  readonly relays?: number;
  /** Messaging tunables. */
  readonly messaging?: MessagingOptions;
  /** Where received files go. */
  readonly downloadDir?: string;
}

/** The node's reachability as the DHT node reports it (the contract of issue 14). */
export interface Reachability {
  readonly status: "unknown" | "public" | "private";
  readonly checkedAt?: number;
  readonly relays: readonly string[];
  readonly mapped?: string;
}

/** One connection of a peer's node. */
export interface ConnectionInfo {
  readonly peer: string;
  readonly address: string;
  readonly limited: boolean;
  readonly direction: "inbound" | "outbound";
}

/** What `status` answers. */
export interface PeerStatus {
  readonly peerId: string;
  readonly userId?: string;
  readonly addresses: string[];
  readonly reachability?: Reachability;
  readonly connections: ConnectionInfo[];
}

/** An event a peer reported. */
export interface PeerEvent {
  readonly event: string;
  /** When, in ms since the epoch (one clock for all namespaces). */
  readonly at: number;
  readonly [key: string]: unknown;
}

/** A received message. */
export interface MessageEvent extends PeerEvent {
  readonly event: "message";
  readonly from: string;
  readonly text: string;
  readonly id: string;
  readonly via: string;
}

/** A DIM peer running in a namespace. */
export class Peer {
  readonly name: string;
  readonly host: Host;
  readonly process: LabProcess;
  readonly config: PeerConfig;
  /** Every event so far, oldest first. */
  readonly events: PeerEvent[] = [];
  /** Lines that were not JSON. */
  readonly noise: string[] = [];
  #next = 1;
  readonly #replies = new Map<number, (r: Record<string, unknown>) => void>();
  readonly #waiters = new Set<() => void>();
  #ready: PeerStatus | undefined;
  readonly #reading: Promise<void>;

  private constructor(name: string, host: Host, process: LabProcess, config: PeerConfig) {
    this.name = name;
    this.host = host;
    this.process = process;
    this.config = config;
    this.#reading = this.#read();
  }

  /**
   * Starts a peer and waits for its `ready` event.
   *
   * @param lab The lab.
   * @param host Where it runs.
   * @param name Its name in the test (display name, passphrase).
   * @param config What to start.
   * @returns The running peer.
   */
  static async start(lab: Lab, host: Host, name: string, config: PeerConfig): Promise<Peer> {
    const process = lab.spawn(host, [
      Deno.execPath(),
      "run",
      "--allow-all",
      "--quiet",
      `--config=${ROOT}deno.json`,
      PEER,
      JSON.stringify(config),
    ]);
    const peer = new Peer(name, host, process, config);
    const ready = await peer.waitEvent((e) => e.event === "ready", START_TIMEOUT_MS, "ready");
    peer.#ready = ready as unknown as PeerStatus;
    return peer;
  }

  async #read(): Promise<void> {
    for await (const line of this.process.stdout) {
      let obj: Record<string, unknown>;
      try {
        obj = JSON.parse(line);
      } catch {
        this.noise.push(line);
        continue;
      }
      if (typeof obj.reply === "number") {
        this.#replies.get(obj.reply)?.(obj);
        this.#replies.delete(obj.reply);
      } else if (typeof obj.event === "string") {
        this.events.push(obj as PeerEvent);
      }
      for (const w of this.#waiters) w();
    }
    for (const w of this.#waiters) w();
  }

  /** Its libp2p peer ID. */
  get peerId(): string {
    return this.#ready!.peerId;
  }

  /** Its user ID (users only). */
  get userId(): string {
    return this.#ready!.userId!;
  }

  /** The addresses it had at start. */
  get startAddresses(): string[] {
    return this.#ready!.addresses;
  }

  /** What went wrong, for assertion messages: its last stderr lines. */
  describe(): string {
    return `${this.name} (${this.host.ns}) stderr:\n${this.process.stderr.slice(-3000)}`;
  }

  /**
   * Sends a command and waits for its reply.
   *
   * @param cmd The command.
   * @param args Its fields.
   * @param timeoutMs How long to wait.
   * @returns The reply's fields.
   * @throws {Error} If the peer answers with an error, exits, or takes too long.
   */
  async call<T = Record<string, unknown>>(
    cmd: string,
    args: Record<string, unknown> = {},
    timeoutMs = CALL_TIMEOUT_MS,
  ): Promise<T> {
    const id = this.#next++;
    const reply = new Promise<Record<string, unknown>>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#replies.delete(id);
        reject(new Error(`${this.name}: ${cmd} got no answer in ${timeoutMs} ms`));
      }, timeoutMs);
      this.#replies.set(id, (r) => {
        clearTimeout(timer);
        resolve(r);
      });
      this.process.status.then(() => {
        if (!this.#replies.has(id)) return;
        clearTimeout(timer);
        this.#replies.delete(id);
        reject(new Error(`${this.name} exited during ${cmd}\n${this.describe()}`));
      });
    });
    await this.process.writeLine(JSON.stringify({ id, cmd, ...args }));
    const r = await reply;
    if (r.ok !== true) throw new Error(`${this.name}: ${cmd} failed: ${r.error}`);
    return r as T;
  }

  /**
   * Waits for an event (one already received counts).
   *
   * @param match Which event.
   * @param timeoutMs How long to wait.
   * @param what Its description for the timeout error.
   * @param from Only events after this index of {@linkcode Peer.events}.
   * @returns The event.
   * @throws {Error} On timeout or if the peer exits.
   */
  waitEvent(
    match: (e: PeerEvent) => boolean,
    timeoutMs: number,
    what: string,
    from = 0,
  ): Promise<PeerEvent> {
    return this.waitUntil(() => this.events.slice(from).find(match), timeoutMs, what);
  }

  /**
   * Waits until `check` returns something other than undefined, re-checking
   * on every line the peer writes and every 200 ms.
   *
   * @param check The condition.
   * @param timeoutMs How long to wait.
   * @param what Its description for the timeout error.
   * @returns What `check` returned.
   */
  waitUntil<T>(check: () => T | undefined, timeoutMs: number, what: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let done = false;
      const finish = (err: Error | undefined, value?: T) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        clearInterval(poll);
        this.#waiters.delete(test);
        if (err) reject(err);
        else resolve(value as T);
      };
      const test = () => {
        let v: T | undefined;
        try {
          v = check();
        } catch (err) {
          return finish(err as Error);
        }
        if (v !== undefined) finish(undefined, v);
        else if (this.process.exited) {
          finish(new Error(`${this.name} exited while waiting for ${what}\n${this.describe()}`));
        }
      };
      const timer = setTimeout(
        () =>
          finish(new Error(`${this.name}: no ${what} within ${timeoutMs} ms\n${this.describe()}`)),
        timeoutMs,
      );
      const poll = setInterval(test, 200);
      this.#waiters.add(test);
      test();
    });
  }

  /** Its current status. */
  status(): Promise<PeerStatus> {
    return this.call<PeerStatus>("status");
  }

  /** The messages it received so far. */
  messages(): MessageEvent[] {
    return this.events.filter((e): e is MessageEvent => e.event === "message");
  }

  /**
   * Waits until its reachability satisfies `match` (polling its status).
   *
   * @param match The condition.
   * @param timeoutMs How long to wait.
   * @param what Its description for the timeout error.
   * @returns The reachability.
   */
  async waitReachability(
    match: (r: Reachability) => boolean,
    timeoutMs: number,
    what: string,
  ): Promise<Reachability> {
    const deadline = Date.now() + timeoutMs;
    let last: Reachability | undefined;
    while (Date.now() < deadline) {
      last = (await this.status()).reachability;
      if (last && match(last)) return last;
      await new Promise((r) => setTimeout(r, 250));
    }
    throw new Error(
      `${this.name}: reachability never became ${what} in ${timeoutMs} ms; last: ${
        JSON.stringify(last)
      }`,
    );
  }

  /** Stops it cleanly (stdin command, then its exit). */
  async stop(): Promise<void> {
    if (!this.process.exited) {
      await this.call("stop", {}, 20_000).catch(() => {});
    }
    await this.process.stop();
    await this.#reading.catch(() => {});
  }

  /** Kills it at once, as a machine that died. */
  async kill(): Promise<void> {
    this.process.kill("SIGKILL");
    await this.process.stop();
    await this.#reading.catch(() => {});
  }
}

/** Options of {@linkcode Scenario.user}. */
export interface UserOptions {
  readonly reopen?: boolean;
  readonly upnp?: boolean;
  readonly lanDiscovery?: boolean;
  readonly relays?: number;
  readonly messaging?: MessagingOptions;
}

/**
 * A lab with DIM on it: public storage nodes (which relay), users on public
 * hosts or behind routers, data directories in one temporary directory.
 * Dispose it at the end: peers stopped, namespaces and files removed.
 */
export class Scenario implements AsyncDisposable {
  readonly lab: Lab;
  readonly dir: string;
  readonly storage: Peer[] = [];
  readonly #peers: Peer[] = [];

  private constructor(lab: Lab, dir: string) {
    this.lab = lab;
    this.dir = dir;
  }

  /**
   * A lab with `storageNodes` public storage nodes, each on its own /24.
   *
   * @param storageNodes How many.
   * @returns The scenario.
   */
  static async create(storageNodes: number): Promise<Scenario> {
    const lab = await Lab.create();
    const dir = await Deno.makeTempDir({ prefix: "dim-reach-" });
    const s = new Scenario(lab, dir);
    try {
      for (let i = 1; i <= storageNodes; i++) {
        const host = await lab.publicHost(`s${i}`);
        s.storage.push(await s.startStorage(host, `s${i}`));
      }
    } catch (err) {
      await s.close();
      throw err;
    }
    return s;
  }

  /** Bootstrap addresses: the first two storage nodes. */
  bootstrap(): string[] {
    return this.storage.slice(0, 2).map((p) =>
      `/ip4/${p.host.address}/tcp/${STORAGE_PORT}/p2p/${p.peerId}`
    );
  }

  /**
   * Starts a storage node on a host (also to restart one).
   *
   * @param host Where.
   * @param name Its name.
   * @returns The peer.
   */
  async startStorage(host: Host, name: string): Promise<Peer> {
    const peer = await Peer.start(this.lab, host, name, {
      role: "storage",
      home: `${this.dir}/${name}`,
      name,
      listen: [`/ip4/${host.address}/tcp/${STORAGE_PORT}`],
      bootstrap: this.bootstrap(),
      publicNetworks: [INTERNET_CIDR],
    });
    this.#peers.push(peer);
    return peer;
  }

  /**
   * Starts a user's messenger on a host.
   *
   * @param host Where (a public host or one behind a router).
   * @param name The user's name.
   * @param options Reopen an existing profile, UPnP, relays, messaging tunables.
   * @returns The peer.
   */
  async user(host: Host, name: string, options: UserOptions = {}): Promise<Peer> {
    const home = `${this.dir}/${name}`;
    const peer = await Peer.start(this.lab, host, name, {
      role: "user",
      home,
      name,
      listen: [`/ip4/${host.address}/tcp/0`],
      bootstrap: this.bootstrap(),
      publicNetworks: [INTERNET_CIDR],
      downloadDir: `${home}-downloads`,
      ...options,
    });
    this.#peers.push(peer);
    return peer;
  }

  /** Stops every peer, then removes the lab and the files. */
  async close(): Promise<void> {
    await Promise.all(this.#peers.map((p) => p.stop().catch(() => {})));
    await this.lab.close();
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }

  /** Same as {@linkcode Scenario.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** The median of some numbers. */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/**
 * Waits until a user behind NAT knows it is not dialable and holds relay
 * reservations.
 *
 * @param user The user.
 * @param relays How many reservations at least.
 * @param timeoutMs How long to wait.
 * @returns Its reachability.
 */
export function waitRelayed(user: Peer, relays = 1, timeoutMs = 45_000): Promise<Reachability> {
  return user.waitReachability(
    (r) => r.status === "private" && r.relays.length >= relays,
    timeoutMs,
    `"private" with ${relays} relay reservation(s)`,
  );
}

/**
 * Waits until `viewer` finds `target`'s card in the DHT listing a relay
 * (`/p2p-circuit`) address.
 *
 * @param viewer Who looks.
 * @param target Whose card.
 * @param timeoutMs How long to wait.
 * @returns The card's addresses.
 */
export async function waitCardRelayed(
  viewer: Peer,
  target: Peer,
  timeoutMs = 30_000,
): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  let last: string[] | string = "no card";
  while (Date.now() < deadline) {
    try {
      const card = await viewer.call<{ addresses: string[] }>("card", { contact: target.userId });
      last = card.addresses;
      if (last.some((a) => a.includes("/p2p-circuit"))) return last;
    } catch (err) {
      last = String(err);
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(
    `${viewer.name} never saw a relay address in ${target.name}'s card; last: ${
      JSON.stringify(last)
    }`,
  );
}

/** What {@linkcode chat} measured. */
export interface ChatResult {
  /** Send-to-display time of each message, ms, in sending order. */
  readonly latencies: number[];
  /** The median of `latencies`. */
  readonly p50: number;
  /** The sender's sequence numbers. */
  readonly seqs: number[];
}

/**
 * `from` sends `count` texts to its contact `to` (named `toName` in its
 * book), `gapMs` apart; waits until every one is displayed at `to` and
 * reported "delivered" at `from`.
 *
 * @param from Sender.
 * @param to Recipient.
 * @param toName The recipient's name in the sender's contacts.
 * @param count How many.
 * @param tag Text prefix, unique in the test.
 * @param options `gapMs` between sends (default 150), `timeoutMs` to wait for all,
 *   `onSent` after each send.
 * @returns Latencies and their median.
 */
export async function chat(
  from: Peer,
  to: Peer,
  toName: string,
  count: number,
  tag: string,
  options: {
    readonly gapMs?: number;
    readonly timeoutMs?: number;
    /** Called after each send (the index), e.g. to break something mid-chat. */
    readonly onSent?: (i: number) => Promise<void> | void;
  } = {},
): Promise<ChatResult> {
  const sent: { text: string; seq: number; sentAt: number }[] = [];
  for (let i = 0; i < count; i++) {
    const text = `${tag} #${i}`;
    const r = await from.call<{ seq: number; sentAt: number }>("send", { to: toName, text });
    sent.push({ text, seq: r.seq, sentAt: r.sentAt });
    await options.onSent?.(i);
    await new Promise((r) => setTimeout(r, options.gapMs ?? 150));
  }
  const timeoutMs = options.timeoutMs ?? 30_000;
  const shown = (text: string) => to.messages().find((m) => m.text === text);
  await to.waitUntil(
    () => sent.every((s) => shown(s.text)) || undefined,
    timeoutMs,
    `all ${count} "${tag}" messages (got ${sent.filter((s) => shown(s.text)).length})`,
  );
  const delivered = (seq: number) =>
    from.events.some((e) => e.event === "status" && e.seq === seq && e.state === "delivered");
  await from.waitUntil(
    () => sent.every((s) => delivered(s.seq)) || undefined,
    timeoutMs,
    `"delivered" for all ${count} "${tag}" messages`,
  );
  const latencies = sent.map((s) => shown(s.text)!.at - s.sentAt);
  return { latencies, p50: median(latencies), seqs: sent.map((s) => s.seq) };
}

/**
 * Messages shown more than once at a peer (by message ID or by text).
 *
 * @param peer The recipient.
 * @returns The duplicated texts (empty if none).
 */
export function duplicates(peer: Peer): string[] {
  const ids = new Set<string>();
  const texts = new Set<string>();
  const twice: string[] = [];
  for (const m of peer.messages()) {
    if (ids.has(m.id) || texts.has(m.text)) twice.push(m.text);
    ids.add(m.id);
    texts.add(m.text);
  }
  return twice;
}

/**
 * Makes two users contacts of each other (each looks the other's card up).
 *
 * @param a One user.
 * @param aName Its name in b's book.
 * @param b The other.
 * @param bName Its name in a's book.
 */
export async function introduce(a: Peer, aName: string, b: Peer, bName: string): Promise<void> {
  await a.call("add-contact", { name: bName, contact: b.userId }, 60_000);
  await b.call("add-contact", { name: aName, contact: a.userId }, 60_000);
}
