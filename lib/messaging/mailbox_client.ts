/**
 * The mailbox client: leaves copies of messages for users who cannot be
 * reached in their network mailboxes, and fetches this user's own.
 *
 * A user's mailbox address is SHA-256("DIM-v1-mailbox\0" || signing key).
 * A sender whose delivery failed stores the envelopes on the
 * `mailboxReplicas` nodes closest to the recipient's address in the DHT
 * ({@linkcode MailboxClient.storeOffline}). The recipient asks twice as many
 * of the closest nodes on start and periodically
 * ({@linkcode MailboxClient.fetch}), stores what it can read through the
 * inbox, flushes, sends each sender a signed receipt, and deletes the
 * copies with requests signed by its identity key. The nodes closest to an
 * address are remembered for {@linkcode CLOSEST_CACHE_MS}; when this node
 * is among them it answers its own requests.
 *
 * @example
 * ```ts ignore
 * const client = new MailboxClient({ context, server, storage, receive: (e) => inbox.receive(e) });
 * await client.start();
 * const arrived = await client.fetch({ refresh: true, signal: AbortSignal.timeout(30_000) });
 * ```
 *
 * @module
 */
import { toHex } from "../platform/bytes.ts";
import { openEnvelope } from "../crypto/envelope.ts";
import { decodeUserId } from "../crypto/identity.ts";
import { ProtocolError } from "../errors.ts";
import { raceSignal as race } from "race-signal";
import type { StorageTransactions } from "./storage.ts";
import { envelopeHash, mailboxAddress, type MailboxServer } from "./mailbox.ts";
import type { FetchMailboxOptions, IncomingMessage, PeerTarget } from "./types.ts";
import { CLOSEST_CACHE_ENTRIES, CLOSEST_CACHE_MS } from "./constants.ts";
import type { ServiceContext } from "./_context.ts";
import {
  deleteSignedBytes,
  type Frame,
  FrameReader,
  FrameType,
  MAILBOX_PROTOCOL,
  MAX_DELETE_ITEMS,
  MESSAGE_PROTOCOL,
  StoreStatus,
  writeFrame,
} from "./wire.ts";

/** Stores one envelope fetched from the mailbox, as the inbox does (`Inbox.receive`). */
export type ReceiveEnvelope = (
  envelope: Uint8Array,
) => Promise<IncomingMessage | "duplicate" | "unreadable">;

/** Stores copies in other users' mailboxes and fetches this user's own. */
export class MailboxClient {
  readonly #ctx: ServiceContext;
  readonly #server: Pick<MailboxServer, "answer">;
  readonly #storage: Pick<StorageTransactions, "sync">;
  readonly #receive: ReceiveEnvelope;
  #mailbox: Uint8Array | undefined;
  #closest = new Map<string, { peers: PeerTarget[]; at: number }>();

  /**
   * @param deps The service's shared context; the mailbox server that
   *   answers this node's own requests; the storage, flushed before any
   *   copy is deleted; and `receive`, which stores a fetched envelope.
   */
  constructor(deps: {
    readonly context: ServiceContext;
    readonly server: Pick<MailboxServer, "answer">;
    readonly storage: Pick<StorageTransactions, "sync">;
    readonly receive: ReceiveEnvelope;
  }) {
    this.#ctx = deps.context;
    this.#server = deps.server;
    this.#storage = deps.storage;
    this.#receive = deps.receive;
  }

  /** Derives this user's mailbox address; `fetch` does nothing before. */
  async start(): Promise<void> {
    this.#mailbox = await mailboxAddress(this.#ctx.identity.signingPublicKey);
  }

  /**
   * The nodes closest to a mailbox address. A lookup costs a DHT query
   * across the network, so the answer is kept for a few minutes; a caller
   * that found them all unreachable asks again with `fresh`.
   */
  async #closestTo(
    mailbox: Uint8Array,
    count: number,
    fresh = false,
    caller?: AbortSignal,
  ): Promise<PeerTarget[]> {
    const key = `${toHex(mailbox)}/${count}`;
    const cached = this.#closest.get(key);
    if (!fresh && cached && this.#ctx.clock() - cached.at < CLOSEST_CACHE_MS) return cached.peers;
    const peers = await this.#ctx.within(
      this.#ctx.options.attemptTimeoutMs * 2,
      caller,
      (signal) => this.#ctx.transport.closestPeers(mailbox, { signal, count }),
    );
    if (this.#closest.size > CLOSEST_CACHE_ENTRIES) this.#closest.clear();
    this.#closest.set(key, { peers, at: this.#ctx.clock() });
    return peers;
  }

  /**
   * Stores envelopes on the nodes closest to the recipient's mailbox.
   *
   * A copy this node keeps itself (it is among the closest, or the only
   * node it knows, when it is alone) is kept, but does not count: the
   * message is "in the network" only once another node holds it, and until
   * then it stays queued here and is mailed again on the next failure.
   *
   * @param recipient The recipient's user ID.
   * @param envelopes The sealed envelopes.
   * @returns For each envelope, whether at least one other node took it.
   */
  async storeOffline(recipient: string, envelopes: readonly Uint8Array[]): Promise<boolean[]> {
    const mailbox = await mailboxAddress(decodeUserId(recipient));
    // Fresh each time: storing is rare, and must reach the nodes the
    // recipient will ask.
    const peers = await this.#closestTo(mailbox, this.#ctx.options.mailboxReplicas, true);
    const expiresAt = this.#ctx.clock() + this.#ctx.options.mailboxTtlMs;
    const self = this.#ctx.transport.peerId;
    return await Promise.all(envelopes.map(async (envelope) => {
      const results = await Promise.allSettled(
        peers.map((p) => this.#request(p, { type: FrameType.Store, mailbox, expiresAt, envelope })),
      );
      return results.some((r, i) =>
        peers[i]!.peerId !== self &&
        r.status === "fulfilled" && r.value.type === FrameType.StoreResult &&
        (r.value.status === StoreStatus.Stored || r.value.status === StoreStatus.Duplicate)
      );
    }));
  }

  /** One mailbox request frame, one answer frame; this node answers its own. */
  async #request(peer: PeerTarget, frame: Frame, caller?: AbortSignal): Promise<Frame> {
    if (peer.peerId === this.#ctx.transport.peerId) return await this.#server.answer(frame);
    return await this.#ctx.within(this.#ctx.options.attemptTimeoutMs, caller, async (signal) => {
      const stream = await this.#ctx.transport.openStream(peer, MAILBOX_PROTOCOL, { signal });
      this.#ctx.streams.add(stream);
      try {
        await writeFrame(stream, frame, signal);
        const reply = await race(new FrameReader(stream).next(), signal);
        if (reply === undefined) throw new ProtocolError("Cannot complete request: no answer");
        await stream.close({ signal }).catch(() => {});
        return reply;
      } catch (err) {
        stream.abort(err instanceof Error ? err : new Error(String(err)));
        throw err;
      } finally {
        this.#ctx.streams.delete(stream);
      }
    });
  }

  /**
   * Fetches this user's messages from the network mailbox, stores the new
   * ones, sends receipts and deletes the fetched copies.
   *
   * @param options `refresh`: look the mailbox's nodes up again instead of
   *   using the ones found in the last few minutes; `signal`: give up.
   * @returns How many new messages arrived.
   * @throws {unknown} The signal's reason if it aborts before the fetched
   *   messages are stored (none is, and the copies stay for the next fetch).
   */
  async fetch(options: FetchMailboxOptions = {}): Promise<number> {
    if (!this.#ctx.running || this.#mailbox === undefined) return 0;
    const { refresh = false, signal: caller } = options;
    const mailbox = this.#mailbox;
    let reached = 0;
    const peers = await this.#closestTo(
      mailbox,
      this.#ctx.options.mailboxReplicas * 2,
      refresh,
      caller,
    );
    const held = new Map<string, { envelope: Uint8Array; hash: Uint8Array; peers: PeerTarget[] }>();
    await Promise.all(peers.map(async (peer) => {
      try {
        const reply = await this.#request(peer, { type: FrameType.Fetch, mailbox }, caller);
        if (reply.type !== FrameType.Items) return;
        reached++;
        for (const envelope of reply.envelopes) {
          const hash = await envelopeHash(envelope);
          const key = toHex(hash);
          const entry = held.get(key) ?? { envelope, hash, peers: [] };
          entry.peers.push(peer);
          held.set(key, entry);
        }
      } catch (err) {
        // The caller's giving up is no peer's failure.
        if (!caller?.aborted) this.#ctx.onPeerError(err);
      }
    }));
    caller?.throwIfAborted();
    // Only this node answered: the cached neighbourhood is stale.
    if (reached <= 1 && !refresh) this.#closest.clear();
    const fresh: IncomingMessage[] = [];
    const stored: { envelope: Uint8Array; hash: Uint8Array }[] = [];
    // A session's first message may come after its followers: what could not
    // be read is tried again while other messages still open sessions (a few
    // passes, so junk in the mailbox costs a bounded amount of work).
    let pending = [...held.values()];
    for (let pass = 0, progress = true; progress && pending.length > 0 && pass < 3; pass++) {
      progress = false;
      const unreadable = [];
      for (const item of pending) {
        const result = await this.#receive(item.envelope);
        if (result === "unreadable") {
          unreadable.push(item);
          continue;
        }
        progress = true;
        stored.push(item);
        if (result !== "duplicate") fresh.push(result);
      }
      pending = unreadable;
    }
    // Stored and flushed before any sender hears of it or any copy is deleted.
    this.#storage.sync();
    // Show them in the senders' order.
    fresh.sort((a, b) => a.message.sentAt - b.message.sentAt);
    for (const incoming of fresh) this.#ctx.emit({ type: "message", incoming });
    // Receipts tell senders at once; the outbox retry would find out later
    // anyway. None for a copy that could not be read: the sender keeps it.
    for (const { envelope, hash } of stored) this.#ctx.track(this.#sendReceipt(envelope, hash));
    // Unreadable copies go too: no later fetch could read them either.
    await this.#deleteFromMailboxes(mailbox, [...held.values()], caller);
    return fresh.length;
  }

  async #sendReceipt(envelope: Uint8Array, hash: Uint8Array): Promise<void> {
    let sender: string;
    try {
      sender = (await openEnvelope(this.#ctx.identity, envelope)).senderId;
    } catch {
      return;
    }
    const signal = this.#ctx.signal(this.#ctx.options.attemptTimeoutMs);
    const target = await this.#ctx.resolve(sender, { signal });
    const stream = await this.#ctx.transport.openStream(target, MESSAGE_PROTOCOL, { signal });
    try {
      const signature = await this.#ctx.identity.sign("ack", hash);
      await writeFrame(stream, { type: FrameType.Receipt, envelopeHash: hash, signature }, signal);
      await stream.close({ signal });
    } catch (err) {
      stream.abort(err instanceof Error ? err : new Error(String(err)));
      throw err;
    }
  }

  async #deleteFromMailboxes(
    mailbox: Uint8Array,
    items: { hash: Uint8Array; peers: PeerTarget[] }[],
    caller: AbortSignal | undefined,
  ): Promise<void> {
    const byPeer = new Map<string, { peer: PeerTarget; hashes: Uint8Array[] }>();
    for (const item of items) {
      for (const peer of item.peers) {
        const e = byPeer.get(peer.peerId) ?? { peer, hashes: [] };
        e.hashes.push(item.hash);
        byPeer.set(peer.peerId, e);
      }
    }
    await Promise.all([...byPeer.values()].map(async ({ peer, hashes }) => {
      for (let i = 0; i < hashes.length; i += MAX_DELETE_ITEMS) {
        const part = hashes.slice(i, i + MAX_DELETE_ITEMS);
        const timestamp = this.#ctx.clock();
        const signature = await this.#ctx.identity.sign(
          "mailbox",
          deleteSignedBytes(mailbox, timestamp, part),
        );
        try {
          await this.#request(peer, {
            type: FrameType.Delete,
            mailbox,
            owner: this.#ctx.identity.signingPublicKey,
            timestamp,
            hashes: part,
            signature,
          }, caller);
        } catch (err) {
          // Given up: the copies left are deleted by a later fetch.
          if (caller?.aborted) return;
          this.#ctx.onPeerError(err);
        }
      }
    }));
  }
}
