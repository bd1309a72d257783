/**
 * A DIM node without a user: it keeps the DHT alive, stores records,
 * keeps offline users' mailboxes, and relays for users behind NAT (circuit
 * relay v2, always offered: a storage node is meant to be run where it can
 * be dialed). `dim node` runs one; any user's messenger does the same work
 * besides its own.
 *
 * @example A bootstrap node on loopback
 * ```ts
 * import { createStorageNode } from "./storage_node.ts";
 *
 * const node = await createStorageNode({ listen: ["/ip4/127.0.0.1/tcp/0"] });
 * if (!node.addresses[0]?.includes("/p2p/")) throw new Error("no address");
 * await node.stop();
 * ```
 *
 * @module
 */
import { DEFAULT_LISTEN } from "./dht/constants.ts";
import { createDhtNode, type DhtNode, type DhtNodeOptions } from "./dht/node.ts";
import { MailboxServer, type MailboxServerOptions } from "./messaging/mailbox.ts";
import { dimSelector, dimValidator } from "./record/record.ts";
import { MailboxStore } from "./store/mailbox_store.ts";
import { type DataDirLock, lockDataDir } from "./platform/lock.ts";
import { dataPaths, ensureHome } from "./platform/paths.ts";

/** Options of {@linkcode createStorageNode}. */
export interface StorageNodeOptions {
  /** Data directory (node key, DHT records, mailboxes). Default: in memory. */
  readonly home?: string;
  /** Multiaddrs to listen on. Default `/ip4/0.0.0.0/tcp/0`. */
  readonly listen?: readonly string[];
  /** Multiaddrs (with `/p2p/`) of nodes to join through. */
  readonly bootstrap?: readonly string[];
  /**
   * Multiaddrs announced instead of the listen addresses, for a node behind
   * a forwarded port. Default: the listen addresses.
   */
  readonly announce?: readonly string[];
  /** CIDRs whose addresses count as public besides libp2p's rule. Default: none. */
  readonly publicNetworks?: readonly string[];
  /** Whether to ask a UPnP gateway for a port mapping. Default `false`. */
  readonly upnp?: boolean;
  /** Whether to find DIM peers on the local network over mDNS. Default `false`. */
  readonly lanDiscovery?: boolean;
  /** Extra options for the node (they win over the fields above). */
  readonly node?: Partial<DhtNodeOptions>;
  /** Options for the mailbox server. */
  readonly mailbox?: MailboxServerOptions;
}

/** A running storage node. */
export interface StorageNode extends AsyncDisposable {
  /** The DHT node. */
  readonly node: DhtNode;
  /** Its multiaddrs, with `/p2p/<peer id>`. */
  readonly addresses: string[];
  /** Stops serving and releases the data directory. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Starts a storage node: DHT server with DIM's record rules, mailbox
 * server, and circuit relay server (`relayServer: true`).
 *
 * @param options Where to keep state and how to connect.
 * @returns The running node.
 * @throws {StorageError} If the data directory is in use or unreadable.
 */
export async function createStorageNode(options: StorageNodeOptions = {}): Promise<StorageNode> {
  let lock: DataDirLock | undefined;
  let db: MailboxStore | undefined;
  let node: DhtNode | undefined;
  let mailbox: MailboxServer | undefined;
  try {
    if (options.home !== undefined) {
      await ensureHome(options.home);
      lock = lockDataDir(options.home);
    }
    // Only the mailboxes: a storage node keeps no user's tables, even in a
    // data directory a user shares.
    db = MailboxStore.open(
      options.home === undefined ? ":memory:" : dataPaths(options.home).database,
    );
    node = await createDhtNode({
      listen: options.listen ?? DEFAULT_LISTEN,
      bootstrap: options.bootstrap ?? [],
      ...(options.home === undefined ? {} : { dataDir: options.home }),
      validators: { dim: dimValidator },
      selectors: { dim: dimSelector },
      relayServer: true,
      // `dim node` always serves the DHT and relays, whatever a dial-back
      // check would say: it is deployed to be reachable.
      reachabilityCheck: false,
      ...(options.announce === undefined ? {} : { announce: options.announce }),
      ...(options.publicNetworks === undefined ? {} : { publicNetworks: options.publicNetworks }),
      ...(options.upnp === undefined ? {} : { upnp: options.upnp }),
      ...(options.lanDiscovery === undefined ? {} : { lanDiscovery: options.lanDiscovery }),
      ...options.node,
    });
    mailbox = new MailboxServer(db, options.mailbox);
    await mailbox.start(node);
  } catch (err) {
    await node?.stop().catch(() => {});
    db?.close();
    lock?.release();
    throw err;
  }
  const running = { node, db, mailbox, lock };
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    try {
      await running.mailbox.stop();
      await running.node.stop();
    } finally {
      running.db.close();
      running.lock?.release();
    }
  };
  return {
    node,
    get addresses() {
      return running.node.multiaddrs;
    },
    stop,
    [Symbol.asyncDispose]: stop,
  };
}
