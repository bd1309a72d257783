/**
 * A DIM node without a user: it keeps the DHT alive, stores records, and
 * keeps offline users' mailboxes. `dim node` runs one; any user's messenger
 * does the same work besides its own.
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
  /** Extra options for the node. */
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
 * Starts a storage node: DHT server with DIM's record rules, and mailbox server.
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
