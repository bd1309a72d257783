/**
 * Looks into the network's mailboxes from outside, for the tests of the
 * copies senders leave there: which nodes hold a copy for a mailbox. A
 * FETCH must be signed by the mailbox owner, so the probe unlocks the
 * owner's keystore (a test user's, with the test passphrase).
 */
import type { DhtNode } from "../../lib/dht/node.ts";
import type { DhtPeer } from "../../lib/dht/types.ts";
import { unlockKeystore } from "../../lib/crypto/keystore.ts";
import type { Identity } from "../../lib/crypto/identity.ts";
import { mailboxAddress } from "../../lib/messaging/mailbox.ts";
import { dataPaths } from "../../lib/platform/paths.ts";
import {
  encodeFrame,
  FrameReader,
  FrameType,
  MAILBOX_PROTOCOL,
  mailboxRequestSignedBytes,
} from "../../lib/messaging/wire.ts";

/**
 * The identity of a test user of `testNet`, unlocked from its keystore.
 *
 * @param dir The test network's directory (`net.dir`).
 * @param name The user's name.
 * @returns The identity.
 */
export async function testIdentity(dir: string, name: string): Promise<Identity> {
  return await unlockKeystore(
    dataPaths(`${dir}/${name}`).identityKey,
    `${name}: plum vortex quietly sings`,
  );
}

/**
 * How many envelopes a node keeps in a mailbox (a signed FETCH, which
 * deletes nothing), or 0 if it does not answer.
 *
 * @param from The node that asks.
 * @param target The asked node: a multiaddr ending in its peer ID, or a peer.
 * @param owner The mailbox owner, who signs the FETCH.
 * @returns The number of envelopes.
 */
export async function copiesOn(
  from: DhtNode,
  target: string | DhtPeer,
  owner: Identity,
): Promise<number> {
  const signal = AbortSignal.timeout(3000);
  const node = typeof target === "string" ? target.split("/p2p/").at(-1)! : target.peerId;
  const mailbox = await mailboxAddress(owner.signingPublicKey);
  const request = {
    node,
    mailbox,
    timestamp: Date.now(),
    nonce: crypto.getRandomValues(new Uint8Array(16)),
  };
  const signature = await owner.sign(
    "mailbox",
    mailboxRequestSignedBytes({ type: FrameType.Fetch, ...request }),
  );
  try {
    const stream = await from.dialProtocol(target, MAILBOX_PROTOCOL, { signal });
    try {
      stream.send(encodeFrame({
        type: FrameType.Fetch,
        owner: owner.signingPublicKey,
        ...request,
        signature,
      }));
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
 * @param owner The mailbox owner.
 * @returns The candidates that hold a copy, in their order.
 */
export async function holdersOf<T extends { readonly addresses: readonly string[] }>(
  from: DhtNode,
  candidates: readonly T[],
  owner: Identity,
): Promise<T[]> {
  const counts = await Promise.all(
    candidates.map((c) => copiesOn(from, c.addresses[0]!, owner)),
  );
  return candidates.filter((_, i) => counts[i]! > 0);
}
