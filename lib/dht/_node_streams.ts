/**
 * The connection, stream and peer-store work behind `DhtNode`'s `dial`,
 * `hangUp`, `dialProtocol`, `handle` and `knownPeers`, apart from the
 * node's public face (`node.ts`): the frame of a call that reaches a peer,
 * a stream opened on the relayed connection already open to a peer, and
 * every stream given a reliable iterator (`_libp2p_internals.ts`).
 *
 * @module
 */
import type { AbortOptions, Connection, PeerId, Stream } from "@libp2p/interface";
import type { Multiaddr } from "@multiformats/multiaddr";
import type { Libp2p } from "libp2p";
import type {
  DhtCallOptions,
  DhtHandleOptions,
  DhtPeer,
  DhtStream,
  DhtStreamHandler,
} from "./types.ts";
import type { Lifecycle } from "./_lifecycle.ts";
import { withReliableIteration } from "./_libp2p_internals.ts";
import { describe } from "./_peers.ts";
import { openRelayedStream, relayedConnection } from "./_relayed.ts";

/**
 * Runs a call that reaches a peer: only while the node is started, under
 * the node's and the caller's signals; a failure that is not an abort is
 * `fail`'s.
 *
 * @param life The node's lifecycle.
 * @param action What the call does, for messages.
 * @param options The caller's `signal`.
 * @param run The call.
 * @param fail Words a failure.
 * @returns What `run` returns.
 * @throws {DimError} If the node is not started.
 * @throws {Error} `fail`'s error, or the signal's reason if it aborted.
 */
export async function runConnected<T>(
  life: Lifecycle,
  action: string,
  options: DhtCallOptions,
  run: (signal: AbortSignal) => Promise<T>,
  fail: (cause: unknown) => Error,
): Promise<T> {
  life.assertStarted(action);
  const { signal, release } = life.scope(options.signal);
  try {
    return await run(signal);
  } catch (cause) {
    signal.throwIfAborted();
    throw fail(cause);
  } finally {
    release();
  }
}

/**
 * Opens a stream of `protocol` to a peer, on its relayed connection when
 * that is the only one open (libp2p would dial a second one), else as
 * libp2p dials.
 *
 * @param libp2p The node's libp2p.
 * @param peer The dial target (as `parseTarget` gives it).
 * @param protocol The protocol id.
 * @param signal Aborts the dial and the negotiation.
 * @returns The stream, with a reliable iterator.
 * @throws {Error} libp2p's dial and negotiation errors.
 */
export async function openStream(
  libp2p: Libp2p,
  peer: Multiaddr | Multiaddr[] | PeerId,
  protocol: string,
  signal: AbortSignal,
): Promise<DhtStream> {
  const options: AbortOptions & { runOnLimitedConnection: boolean } = {
    signal,
    runOnLimitedConnection: true,
  };
  const dial = () => libp2p.dialProtocol(peer, protocol, options);
  const relayed = relayedConnection(libp2p.getConnections(), peer);
  return withReliableIteration(
    relayed === undefined
      ? await dial()
      : await openRelayedStream(relayed, protocol, options, dial),
  );
}

/**
 * Registers a handler of incoming `protocol` streams: a handler that
 * throws is logged and aborts its stream only.
 *
 * @param libp2p The node's libp2p.
 * @param protocol The protocol id.
 * @param handler Called with each stream, the remote peer ID and address.
 * @param options Stream limits per connection.
 * @param log One-line diagnostics.
 * @returns When registered.
 * @throws {Error} If a handler is already registered for `protocol` (from libp2p).
 */
export async function serveProtocol(
  libp2p: Libp2p,
  protocol: string,
  handler: DhtStreamHandler,
  options: DhtHandleOptions,
  log: (message: string) => void,
): Promise<void> {
  await libp2p.handle(protocol, async (stream: Stream, connection: Connection) => {
    try {
      await handler(
        withReliableIteration(stream),
        connection.remotePeer.toString(),
        connection.remoteAddr.toString(),
      );
    } catch (cause) {
      log(`${protocol} handler failed for ${connection.remotePeer}: ${describe(cause)}`);
      stream.abort(cause instanceof Error ? cause : new Error(String(cause)));
    }
  }, { ...options, runOnLimitedConnection: true });
}

/**
 * The peer store's peers but this node, with their addresses.
 *
 * @param libp2p The node's libp2p.
 * @param signal Aborts the listing.
 * @returns The peers.
 * @throws {Error} If the datastore fails.
 */
export async function storedPeers(libp2p: Libp2p, signal?: AbortSignal): Promise<DhtPeer[]> {
  const self = libp2p.peerId.toString();
  const peers = await libp2p.peerStore.all(signal === undefined ? {} : { signal });
  return peers
    .filter((peer) => peer.id.toString() !== self)
    .map((peer) => ({
      peerId: peer.id.toString(),
      multiaddrs: peer.addresses.map(({ multiaddr }) => multiaddr.toString()),
    }));
}
