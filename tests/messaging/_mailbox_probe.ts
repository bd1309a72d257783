/**
 * Looks into the network's mailboxes from outside, for the tests of the
 * copies senders leave there: which nodes hold a copy for a mailbox.
 */
import type { DhtNode } from "../../lib/dht/node.ts";
import type { DhtPeer } from "../../lib/dht/types.ts";
import { encodeFrame, FrameReader, FrameType, MAILBOX_PROTOCOL } from "../../lib/messaging/wire.ts";

/**
 * How many envelopes a node keeps in a mailbox (a FETCH, which deletes
 * nothing), or 0 if it does not answer.
 *
 * @param from The node that asks.
 * @param target The asked node: a multiaddr with its peer ID, or a peer.
 * @param mailbox The 32-byte mailbox address.
 * @returns The number of envelopes.
 */
export async function copiesOn(
  from: DhtNode,
  target: string | DhtPeer,
  mailbox: Uint8Array,
): Promise<number> {
  const signal = AbortSignal.timeout(3000);
  try {
    const stream = await from.dialProtocol(target, MAILBOX_PROTOCOL, { signal });
    try {
      stream.send(encodeFrame({ type: FrameType.Fetch, mailbox }));
      const reply = await new FrameReader(stream).next();
      await stream.close({ signal }).catch(() => {});
      return reply?.type === FrameType.Items ? reply.envelopes.length : 0;
    } catch (err) {
      stream.abort(err instanceof Error ? err : new Error(String(err)));
      throw err;
    }
  } catch {
    return 0;
  }
}

/**
 * The nodes, among `candidates`, that keep at least one envelope in a mailbox.
 *
 * @param from The node that asks.
 * @param candidates The nodes to ask, each with its addresses.
 * @param mailbox The 32-byte mailbox address.
 * @returns The candidates that hold a copy, in their order.
 */
export async function holdersOf<T extends { readonly addresses: readonly string[] }>(
  from: DhtNode,
  candidates: readonly T[],
  mailbox: Uint8Array,
): Promise<T[]> {
  const counts = await Promise.all(
    candidates.map((c) => copiesOn(from, c.addresses[0]!, mailbox)),
  );
  return candidates.filter((_, i) => counts[i]! > 0);
}
