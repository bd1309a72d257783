/**
 * Keeps a node's {@linkcode PeerBook} (`_peer_book.ts`): feeds it from
 * libp2p's `peer:connect` events (with the address this node dialled, for
 * an outbound connection) and `peer:identify` events (the addresses a peer
 * announces; a peer that does not speak DIM's kad protocol is forgotten),
 * and keeps it in `peers.json` in the data directory, mode 0600, written
 * at most every `PEER_BOOK_WRITE_MS` and once on stop, never once per
 * connection. A damaged or oversized file is logged and ignored, never
 * fatal; without a data directory the book lives in memory only.
 *
 * @module
 */
import { join } from "node:path";
import type { IdentifyResult, PeerId } from "@libp2p/interface";
import type { Multiaddr } from "@multiformats/multiaddr";
import type { Libp2p } from "libp2p";
import { readFileBounded, writeFileAtomic } from "../platform/atomic_file.ts";
import { MAX_PEERS_FILE_BYTES, NODE_PEERS_FILE, PEER_BOOK_WRITE_MS } from "./constants.ts";
import { PeerBook } from "./_peer_book.ts";
import { describe, peerIdOf } from "./_peers.ts";

/** How many peers that do not speak DIM's protocol are remembered as such, per run. */
const STRANGERS = 1024;

/** What {@linkcode PeerBookKeeper} works with. */
export interface PeerBookKeeperInit {
  /** The libp2p node, for its peer ID, events and connections. */
  readonly libp2p: Pick<
    Libp2p,
    "addEventListener" | "removeEventListener" | "getConnections" | "getPeers" | "peerId"
  >;
  /** The configured bootstrap peers (their source is `"bootstrap"`). */
  readonly bootstrap: readonly Multiaddr[];
  /** The kad protocol id: a peer that does not speak it is forgotten. */
  readonly protocol: string;
  /** The data directory; without one the book is kept in memory only. */
  readonly dataDir: string | undefined;
  /** The clock, in ms since the epoch. */
  readonly clock: () => number;
  /** One-line diagnostics. */
  readonly log: (message: string) => void;
}

/**
 * Feeds a {@linkcode PeerBook} from libp2p's events and keeps it in
 * `peers.json`; see the module documentation.
 */
export class PeerBookKeeper {
  /** The book. */
  readonly book: PeerBook;
  readonly #init: PeerBookKeeperInit;
  readonly #path: string | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #writing: Promise<void> = Promise.resolve();
  #written = 0;
  #attached = false;
  // Peers whose identify did not list DIM's protocol: not remembered again
  // when they are still connected at the next write.
  readonly #strangers = new Set<string>();

  readonly #onConnect = (event: CustomEvent<PeerId>): void => {
    const peerId = event.detail.toString();
    let dialed: string | undefined;
    const addresses: string[] = [];
    // Only what this node dialled is an address to dial again: an inbound
    // connection's remote port is the peer's ephemeral one.
    for (const connection of this.#init.libp2p.getConnections(event.detail)) {
      if (connection.direction !== "outbound") continue;
      const address = connection.remoteAddr.toString();
      if (connection.limits === undefined && !address.includes("/p2p-circuit")) dialed ??= address;
      addresses.push(address);
    }
    if (this.#strangers.has(peerId)) return;
    this.book.seen(peerId, { dialed, addresses });
    this.#schedule();
  };

  readonly #onIdentify = (event: CustomEvent<IdentifyResult>): void => {
    const { peerId, protocols, listenAddrs } = event.detail;
    if (!protocols.includes(this.#init.protocol)) {
      this.book.forget(peerId.toString());
      this.#strangers.add(peerId.toString());
      if (this.#strangers.size > STRANGERS) {
        this.#strangers.delete(this.#strangers.values().next().value!);
      }
    } else {
      this.book.announced(peerId.toString(), listenAddrs.map(String));
    }
    this.#schedule();
  };

  /**
   * @param init The libp2p node, its bootstrap peers, protocol, data directory and clock.
   */
  constructor(init: PeerBookKeeperInit) {
    this.#init = init;
    this.book = new PeerBook({
      self: init.libp2p.peerId.toString(),
      bootstrap: init.bootstrap.flatMap((address) => peerIdOf(address) ?? []),
      clock: init.clock,
    });
    this.#path = init.dataDir === undefined ? undefined : join(init.dataDir, NODE_PEERS_FILE);
  }

  /**
   * Reads `peers.json`, if any; a damaged or oversized one is logged and
   * ignored (the next write replaces it).
   *
   * @returns When the book holds what the file held.
   */
  async load(): Promise<void> {
    if (this.#path === undefined) return;
    try {
      const bytes = await readFileBounded(this.#path, MAX_PEERS_FILE_BYTES);
      if (bytes === undefined) return;
      this.book.restore(JSON.parse(new TextDecoder().decode(bytes)));
      this.#written = this.book.version;
    } catch (cause) {
      this.#init.log(`ignoring the peer book ${this.#path}: ${describe(cause)}`);
    }
  }

  /** Starts listening to libp2p's connections. */
  attach(): void {
    if (this.#attached) return;
    this.#attached = true;
    this.#init.libp2p.addEventListener("peer:connect", this.#onConnect);
    this.#init.libp2p.addEventListener("peer:identify", this.#onIdentify);
  }

  /**
   * Stops listening, notes the peers still connected as seen now, and
   * writes the book (never throws: a failed write is logged).
   *
   * @returns When the book is written.
   */
  async close(): Promise<void> {
    if (this.#attached) {
      this.#attached = false;
      this.#init.libp2p.removeEventListener("peer:connect", this.#onConnect);
      this.#init.libp2p.removeEventListener("peer:identify", this.#onIdentify);
      this.#touchConnected();
    }
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#write();
  }

  #touchConnected(): void {
    for (const peer of this.#init.libp2p.getPeers()) {
      if (!this.#strangers.has(peer.toString())) this.book.seen(peer.toString());
    }
  }

  #schedule(): void {
    if (this.#path === undefined || this.#timer !== undefined || !this.#attached) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#touchConnected();
      void this.#write();
    }, PEER_BOOK_WRITE_MS);
    Deno.unrefTimer(this.#timer as unknown as number);
  }

  // One write at a time, each of the book as it is then.
  #write(): Promise<void> {
    this.#writing = this.#writing.then(async () => {
      const path = this.#path;
      const version = this.book.version;
      if (path === undefined || version === this.#written) return;
      try {
        const bytes = new TextEncoder().encode(JSON.stringify(this.book));
        await writeFileAtomic(path, bytes, { mode: 0o600 });
        this.#written = version;
      } catch (cause) {
        this.#init.log(`cannot write the peer book: ${describe(cause)}`);
      }
    });
    return this.#writing;
  }
}
