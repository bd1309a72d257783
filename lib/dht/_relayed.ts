/**
 * Streams to a peer reached only through a circuit relay. libp2p reuses only
 * unlimited connections for a new stream, so to such a peer it would dial a
 * second relayed connection for every stream (7.9 ms and 11 ms of the
 * relay's CPU, against 0.9 ms for a stream on the open one); DIM opens the
 * stream on the relayed connection it has. A relay that went silent leaves
 * its connection open, so a stream that cannot be opened on it in time
 * closes it and dials afresh (through another relay, if the target lists
 * one) in the same call.
 *
 * @module
 */
import type { AbortOptions, Connection, PeerId, Stream } from "@libp2p/interface";
import type { Multiaddr } from "@multiformats/multiaddr";
import { deadline, scopedSignal } from "../platform/signals.ts";
import { RELAY_STREAM_OPEN_TIMEOUT_MS } from "./constants.ts";
import { peerIdOf } from "./_peers.ts";

/**
 * The open relayed connection to the peer a dial target names, when there
 * is no direct one to it.
 *
 * @param connections The node's open connections.
 * @param peer The dial target (as `parseTarget` gives it).
 * @returns The relayed connection, or `undefined` when libp2p should dial.
 */
export function relayedConnection(
  connections: readonly Connection[],
  peer: Multiaddr | Multiaddr[] | PeerId,
): Connection | undefined {
  const first = Array.isArray(peer) ? peer[0] : peer;
  const peerId = first === undefined
    ? undefined
    : "toMultihash" in first
    ? first.toString()
    : peerIdOf(first);
  if (peerId === undefined) return undefined;
  const open = connections.filter((c) => c.remotePeer.toString() === peerId && c.status === "open");
  if (open.some((c) => c.limits === undefined)) return undefined;
  return open[0];
}

/**
 * Opens a stream on a relayed connection. If the peer does not answer within
 * {@linkcode RELAY_STREAM_OPEN_TIMEOUT_MS}, or opening fails for any reason
 * but the peer not speaking the protocol, the connection is closed and
 * `dial` opens the stream on a fresh connection instead.
 *
 * @param connection The relayed connection.
 * @param protocol The protocol.
 * @param options `signal`: the caller's.
 * @param dial Opens the stream by dialing the peer afresh.
 * @returns The stream.
 * @throws {unknown} What opening the stream threw, or what `dial` throws.
 */
export async function openRelayedStream(
  connection: Connection,
  protocol: string,
  options: AbortOptions,
  dial: () => Promise<Stream>,
): Promise<Stream> {
  const timeout = deadline(RELAY_STREAM_OPEN_TIMEOUT_MS);
  const { signal, release } = scopedSignal(
    options.signal === undefined ? [timeout.signal] : [timeout.signal, options.signal],
  );
  try {
    return await connection.newStream(protocol, { signal, runOnLimitedConnection: true });
  } catch (cause) {
    if ((cause as Error | undefined)?.name === "UnsupportedProtocolError") throw cause;
    options.signal?.throwIfAborted();
    connection.abort(new Error("Cannot open a stream over the relay: closing its connection"));
    return await dial();
  } finally {
    release();
    timeout.clear();
  }
}
