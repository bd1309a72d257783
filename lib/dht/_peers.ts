/**
 * Peer IDs and multiaddrs as DIM's DHT node reads them: from the options
 * and calls of a node (strings, checked, with "Cannot …" errors) and from
 * kad answers (multihash and multiaddr bytes); and one-line descriptions of
 * errors for the node's log and messages.
 *
 * @module
 */
import type { PeerId } from "@libp2p/interface";
import { peerIdFromMultihash, peerIdFromString } from "@libp2p/peer-id";
import { multiaddr } from "@multiformats/multiaddr";
import type { Multiaddr } from "@multiformats/multiaddr";
import { PeerUnreachableError, ProtocolError } from "../errors.ts";
import type { KadPeer } from "./_kad_wire.ts";
import type { DhtPeer } from "./types.ts";

/** A starting peer of a lookup: from the routing table, with its PeerId at hand. */
export interface StartPeer extends KadPeer {
  /** The peer, as a libp2p peer ID. */
  readonly peerId: PeerId;
}

/** The PeerId of a lookup peer, built from its multihash unless at hand. */
export function toPeerId(peer: KadPeer | StartPeer): PeerId {
  if ("peerId" in peer) return peer.peerId;
  return peerIdFromMultihash(decodeMultihash(peer.id));
}

type Multihash = Parameters<typeof peerIdFromMultihash>[0];

function decodeMultihash(bytes: Uint8Array): Multihash {
  let offset = 0;
  const read = (): number => {
    let value = 0;
    for (let shift = 0; shift < 28; shift += 7) {
      const byte = bytes[offset++];
      if (byte === undefined) throw new ProtocolError("Cannot decode peer ID: truncated");
      value |= (byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) return value;
    }
    throw new ProtocolError("Cannot decode peer ID: varint too long");
  };
  const code = read();
  const size = read();
  if (bytes.length - offset !== size) throw new ProtocolError("Cannot decode peer ID: bad length");
  return { code, size, digest: bytes.subarray(offset), bytes } as unknown as Multihash;
}

/** The addresses of a peer named in an answer, each ending in `/p2p/<id>`. */
export function dialAddresses(peer: KadPeer): Multiaddr[] {
  if (peer.addrs.length === 0) return [];
  const id = toPeerId(peer).toString();
  const out: Multiaddr[] = [];
  for (const bytes of peer.addrs) {
    try {
      const address = multiaddr(bytes);
      out.push(peerIdOf(address) === undefined ? address.encapsulate(`/p2p/${id}`) : address);
    } catch {
      // Skip an address that does not parse.
    }
  }
  return out;
}

/** Parses a multiaddr; a malformed one is a TypeError "Cannot <action> …". */
export function parseMultiaddr(address: string, action: string): Multiaddr {
  try {
    return multiaddr(address);
  } catch (cause) {
    throw new TypeError(`Cannot ${action} ${JSON.stringify(address)}: not a multiaddr`, {
      cause,
    });
  }
}

/** What a stream is opened to: a peer ID, a multiaddr, or a peer's addresses. */
export function parseTarget(target: string | DhtPeer): Multiaddr | Multiaddr[] | PeerId {
  if (typeof target !== "string") {
    const peerId = parseTarget(target.peerId);
    if (!("toMultihash" in peerId)) {
      throw new TypeError(`Cannot open a stream: ${target.peerId} is not a peer ID`);
    }
    if (target.multiaddrs.length === 0) return peerId;
    return target.multiaddrs.map((address) => {
      const parsed = parseMultiaddr(address, "open a stream to");
      const named = peerIdOf(parsed);
      if (named === undefined) return parsed.encapsulate(`/p2p/${target.peerId}`);
      if (named !== target.peerId) {
        throw new TypeError(
          `Cannot open a stream to ${target.peerId}: ${address} names another peer`,
        );
      }
      return parsed;
    });
  }
  if (target.startsWith("/")) return parseMultiaddr(target, "open a stream to");
  try {
    return peerIdFromString(target);
  } catch (cause) {
    throw new TypeError(
      `Cannot open a stream to ${JSON.stringify(target)}: neither a peer ID nor a multiaddr`,
      { cause },
    );
  }
}

/** The peer ID a multiaddr names in its last `/p2p/` part, if any. */
export function peerIdOf(address: Multiaddr): string | undefined {
  return address.getComponents().findLast((c) => c.name === "p2p")?.value;
}

/** One line for an error: its name and message (the first of an AggregateError's). */
export function describe(cause: unknown): string {
  if (cause instanceof AggregateError && cause.errors.length > 0) {
    return describe(cause.errors[0]);
  }
  return cause instanceof Error ? `${cause.name}: ${cause.message}` : String(cause);
}

/**
 * The error of a failed attempt to open a `protocol` stream to `target`:
 * a {@linkcode ProtocolError} if the peer does not support the protocol, a
 * {@linkcode PeerUnreachableError} otherwise.
 */
export function streamError(target: string | DhtPeer, protocol: string, cause: unknown): Error {
  if ((cause as { name?: unknown } | null)?.name === "UnsupportedProtocolError") {
    return new ProtocolError(`Cannot open ${protocol} stream: the peer does not support it`, {
      cause,
    });
  }
  const peer = typeof target === "string" ? target : target.peerId;
  return new PeerUnreachableError(
    `Cannot open ${protocol} stream to ${peer}: ${describe(cause)}`,
    { cause },
  );
}
