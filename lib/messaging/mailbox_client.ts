/**
 * The mailbox client: leaves copies of messages for users who cannot be
 * reached in their network mailboxes, and fetches this user's own.
 *
 * A user's mailbox address is SHA-256("DIM-v1-mailbox\0" || signing key).
 * A sender whose delivery failed stores the envelopes on the
 * `mailboxReplicas` nodes closest to the recipient's address in the DHT
 * ({@linkcode MailboxClient.storeOffline}), and, while the message is not
 * delivered, stores it again now and then
 * ({@linkcode MailboxClient.recheck}): the closest nodes are looked up
 * afresh and asked to store it, except the ones this client saw take it
 * (it remembers, per envelope, which nodes hold a copy until when), so a
 * copy whose holders left the network is stored on the nodes that replaced
 * them, where the recipient will look. The recipient asks twice as many
 * of the closest nodes on start and periodically
 * ({@linkcode MailboxClient.fetch}) with FETCH requests signed by its
 * identity key for each node, stores what it can read through the inbox,
 * flushes, queues a sealed receipt for each sender that is a contact in its
 * outbox (see `_receipts.ts`: it reaches the sender directly or through the
 * sender's own mailbox, and is kept until acknowledged), sends a bare
 * signed receipt directly to a stranger or for a copy it had already, and
 * deletes every copy it fetched, readable or not, with one signed DELETE
 * per node: a mailbox
 * full of junk is cleared in one round, and a node that says more is
 * waiting is asked again at once. The nodes closest to an
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
import { isSessionFrame } from "./_session_frame.ts";
import { decodeUserId } from "../crypto/identity.ts";
import { ProtocolError } from "../errors.ts";
import { raceSignal as race } from "race-signal";
import type { OutboxEntry, OutboxStorage, StorageTransactions } from "./storage.ts";
import { envelopeHash, mailboxAddress, type MailboxServer } from "./mailbox.ts";
import { isControlContentType, ReceiptBatch } from "./_receipts.ts";
import type { FetchMailboxOptions, IncomingMessage, PeerTarget } from "./types.ts";
import {
  CLOSEST_CACHE_ENTRIES,
  CLOSEST_CACHE_MS,
  MAILBOX_FETCH_MAX_ROUNDS,
  MAILBOX_HOLDERS_MAX_MESSAGES,
  MAILBOX_RECHECK_MAX_MESSAGES,
  MAILBOX_RECHECK_MAX_RECIPIENTS,
  MAILBOX_STORE_PARALLEL,
} from "./constants.ts";
import type { ServiceContext } from "./_context.ts";
import {
  type Frame,
  FrameReader,
  FrameType,
  MAILBOX_NONCE_LENGTH,
  MAILBOX_PROTOCOL,
  MailboxRefusal,
  mailboxRequestSignedBytes,
  MAX_DELETE_ITEMS,
  MAX_FETCH_ITEMS,
  MAX_FRAME_LENGTH,
  MESSAGE_PROTOCOL,
  StoreStatus,
  writeFrame,
} from "./wire.ts";

/** A fetched envelope, its hash, and the nodes that returned it. */
interface Fetched {
  readonly envelope: Uint8Array;
  readonly hash: Uint8Array;
  readonly peers: PeerTarget[];
}

/** Stores one envelope fetched from the mailbox, as the inbox does (`Inbox.receive`). */
export type ReceiveEnvelope = (
  envelope: Uint8Array,
) => Promise<IncomingMessage | "duplicate" | "unreadable">;

/**
 * Queues sealed receipts in the outbox. `canSeal` says whether a sender can
 * get one (a contact, whose key is pinned); `send` queues one receipt's
 * body for it.
 */
export interface ReceiptQueue {
  /** Whether a sealed receipt can be queued for this sender. */
  canSeal(sender: string): boolean;
  /** Seals and queues a receipt body for a sender; durable when it resolves. */
  send(sender: string, body: Uint8Array): Promise<unknown>;
}

/**
 * What the mailbox client keeps and reads: transactions and flushes, and
 * the outbox entries whose copies it checks.
 */
export interface MailboxClientStore extends StorageTransactions {
  /** The outbox, whose copies in the network are checked and stored again. */
  readonly outbox: Pick<OutboxStorage, "storedOfflineBefore" | "markStoredOffline" | "recipientOf">;
}

/** Stores copies in other users' mailboxes and fetches this user's own. */
export class MailboxClient {
  readonly #ctx: ServiceContext;
  readonly #server: Pick<MailboxServer, "answer">;
  readonly #storage: MailboxClientStore;
  readonly #receive: ReceiveEnvelope;
  readonly #receipts: ReceiptQueue | undefined;
  #mailbox: Uint8Array | undefined;
  #closest = new Map<string, { peers: PeerTarget[]; at: number }>();
  /**
   * The nodes seen taking a copy of an envelope, by the envelope's hash, and
   * until when each keeps it: those need not be asked again. Only this
   * run's STOREs are known; a node that answered "duplicate" keeps a copy
   * of unknown age, and is asked again on the next call.
   */
  #holders = new Map<string, Map<string, number>>();
  /** Whether a check of the copies in the network runs: one at a time. */
  #rechecking = false;

  /**
   * @param deps The service's shared context; the mailbox server that
   *   answers this node's own requests; the storage, flushed before any
   *   copy is deleted, with the outbox whose copies are checked;
   *   `receive`, which stores a fetched envelope; and `receipts`, which
   *   queues sealed receipts (without it, every receipt is a bare one sent
   *   directly, and lost if the sender is offline).
   */
  constructor(deps: {
    readonly context: ServiceContext;
    readonly server: Pick<MailboxServer, "answer">;
    readonly storage: MailboxClientStore;
    readonly receive: ReceiveEnvelope;
    readonly receipts?: ReceiptQueue;
  }) {
    this.#ctx = deps.context;
    this.#server = deps.server;
    this.#storage = deps.storage;
    this.#receive = deps.receive;
    this.#receipts = deps.receipts;
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
   * Stores envelopes on the nodes closest to the recipient's mailbox, now,
   * except on the ones this client saw take them and keep them past the
   * next check (the service's `mailboxRecheckMs`). The same call stores a
   * first copy and checks an old one: a holder that left the network is no
   * longer among the closest, and its successor is asked.
   *
   * A copy this node keeps itself (it is among the closest, or the only
   * node it knows, when it is alone) is kept, but does not count: the
   * message is "in the network" only once another node holds it, and until
   * then it stays queued here and is mailed again on the next failure.
   *
   * @param recipient The recipient's user ID.
   * @param envelopes The sealed envelopes.
   * @param options `signal`: gives up (what was stored stays stored).
   * @returns For each envelope, whether at least one other node among the
   *   closest took it, holds it, or is known to hold it.
   * @throws {unknown} The signal's reason if it aborts during the lookup.
   */
  async storeOffline(
    recipient: string,
    envelopes: readonly Uint8Array[],
    options: { readonly signal?: AbortSignal } = {},
  ): Promise<boolean[]> {
    const mailbox = await mailboxAddress(decodeUserId(recipient));
    // Fresh each time: storing is rare, and must reach the nodes the
    // recipient will ask.
    const peers = await this.#closestTo(
      mailbox,
      this.#ctx.options.mailboxReplicas,
      true,
      options.signal,
    );
    const now = this.#ctx.clock();
    const expiresAt = now + this.#ctx.options.mailboxTtlMs;
    // A copy that expires before the next check is asked for again: the
    // holder answers "duplicate" while it has it, and takes it anew after.
    const keptUntil = now + this.#ctx.options.mailboxRecheckMs;
    const self = this.#ctx.transport.peerId;
    const storeOne = async (envelope: Uint8Array): Promise<boolean> => {
      const key = toHex(await envelopeHash(envelope));
      const holders = this.#holders.get(key) ?? new Map<string, number>();
      const known = (p: PeerTarget) =>
        p.peerId !== self && (holders.get(p.peerId) ?? 0) > keptUntil;
      const ask = peers.filter((p) => !known(p));
      const results = await Promise.allSettled(
        ask.map((p) =>
          this.#request(p, { type: FrameType.Store, mailbox, expiresAt, envelope }, options.signal)
        ),
      );
      results.forEach((r, i) => {
        const peer = ask[i]!.peerId;
        if (peer === self) return;
        const status = r.status === "fulfilled" && r.value.type === FrameType.StoreResult
          ? r.value.status
          : undefined;
        if (status === StoreStatus.Stored) holders.set(peer, expiresAt);
        // Held, since a time this run may not know: asked again next time.
        else if (status === StoreStatus.Duplicate) holders.set(peer, holders.get(peer) ?? now);
        else holders.delete(peer);
      });
      if (holders.size > 0) this.#remember(key, holders);
      else this.#holders.delete(key);
      return peers.some((p) => p.peerId !== self && holders.has(p.peerId));
    };
    // A long queue goes a few envelopes at a time, not as one request per
    // envelope and node at once.
    const held: boolean[] = [];
    for (let i = 0; i < envelopes.length; i += MAILBOX_STORE_PARALLEL) {
      held.push(...await Promise.all(envelopes.slice(i, i + MAILBOX_STORE_PARALLEL).map(storeOne)));
    }
    return held;
  }

  /**
   * Checks the copies left for messages not yet acknowledged, and stores
   * them again on the nodes now closest to their recipients' mailboxes that
   * do not hold them (see {@linkcode MailboxClient.storeOffline}): a copy
   * whose holders left the network reaches the nodes the recipient will
   * ask. A message confirmed held gets the time in the outbox
   * (`markStoredOffline`); one that no other node holds keeps its old time,
   * and is among the first of the next check.
   *
   * The work is bounded: the messages whose copies were confirmed longest
   * ago, at most {@linkcode MAILBOX_RECHECK_MAX_MESSAGES} of them for at
   * most {@linkcode MAILBOX_RECHECK_MAX_RECIPIENTS} recipients, one lookup
   * per recipient, one recipient after the other. One check runs at a time;
   * a call while one runs returns 0 at once.
   *
   * @param options `all`: every message with a copy in the network, however
   *   recently confirmed (after a start), instead of the ones confirmed
   *   more than `mailboxRecheckMs` ago; `signal`: gives up.
   * @returns How many messages were found held by another node.
   * @throws {unknown} The signal's reason if it aborts.
   */
  async recheck(
    options: { readonly all?: boolean; readonly signal?: AbortSignal } = {},
  ): Promise<number> {
    if (!this.#ctx.running || this.#rechecking) return 0;
    this.#rechecking = true;
    try {
      const now = this.#ctx.clock();
      const before = options.all === true ? now : now - this.#ctx.options.mailboxRecheckMs;
      const byRecipient = new Map<string, OutboxEntry[]>();
      for (
        const entry of this.#storage.outbox.storedOfflineBefore(
          before,
          MAILBOX_RECHECK_MAX_MESSAGES,
        )
      ) {
        const queue = byRecipient.get(entry.recipient);
        if (queue !== undefined) queue.push(entry);
        else if (byRecipient.size < MAILBOX_RECHECK_MAX_RECIPIENTS) {
          byRecipient.set(entry.recipient, [entry]);
        }
      }
      let held = 0;
      for (const [recipient, queue] of byRecipient) {
        if (!this.#ctx.running) break;
        let stored: boolean[];
        try {
          stored = await this.storeOffline(recipient, queue.map((e) => e.envelope), options);
        } catch (err) {
          options.signal?.throwIfAborted();
          this.#ctx.onPeerError(err);
          continue;
        }
        const at = this.#ctx.clock();
        held += this.#storage.transaction(() => {
          let marked = 0;
          queue.forEach((entry, i) => {
            // Not if it was delivered, or sealed again in a new session, meanwhile.
            if (!stored[i] || this.#storage.outbox.recipientOf(entry.envelopeHash) === undefined) {
              return;
            }
            this.#storage.outbox.markStoredOffline(entry.messageSeq, at);
            marked++;
          });
          return marked;
          // Lost in a crash, a mark costs one more check.
        }, { durable: false });
      }
      return held;
    } finally {
      this.#rechecking = false;
    }
  }

  /** Remembers an envelope's holders, within {@linkcode MAILBOX_HOLDERS_MAX_MESSAGES}. */
  #remember(key: string, holders: Map<string, number>): void {
    if (!this.#holders.has(key) && this.#holders.size >= MAILBOX_HOLDERS_MAX_MESSAGES) {
      this.#holders.clear();
    }
    this.#holders.set(key, holders);
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
   * ones, sends receipts and deletes the fetched copies. A node that says
   * more copies wait than one answer holds is asked again once those are
   * deleted, up to {@linkcode MAILBOX_FETCH_MAX_ROUNDS} rounds.
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
    let peers = await this.#closestTo(
      mailbox,
      this.#ctx.options.mailboxReplicas * 2,
      refresh,
      caller,
    );
    let arrived = 0;
    // What could not be read yet: tried again after the next round, whose
    // copies may start the sessions they belong to (bounded, as junk may be).
    let unread: Fetched[] = [];
    const handled = new Set<string>();
    for (let round = 0; round < MAILBOX_FETCH_MAX_ROUNDS && peers.length > 0; round++) {
      const { held, more, reached, holders } = await this.#fetchRound(mailbox, peers, caller);
      if (round === 0) {
        if (holders.length > 0) this.#ctx.emit({ type: "mailbox", holders });
        // Only this node answered: the cached neighbourhood is stale.
        if (reached <= 1 && !refresh) this.#closest.clear();
      }
      const fresh = [...held.values()].filter((item) => !handled.has(toHex(item.hash)));
      for (const item of fresh) handled.add(toHex(item.hash));
      const last = round + 1 === MAILBOX_FETCH_MAX_ROUNDS || more.length === 0;
      const result = await this.#take([...fresh, ...unread], caller);
      arrived += result.arrived;
      unread = last ? [] : keepSome(result.unread);
      // Unreadable copies go too: the client keeps them for the next round,
      // and no later fetch could read them once this one has given up.
      await this.#deleteFromMailboxes(mailbox, [...held.values()], caller);
      peers = more;
    }
    return arrived;
  }

  /** One FETCH of every node in `peers`, the copies merged by hash. */
  async #fetchRound(
    mailbox: Uint8Array,
    peers: readonly PeerTarget[],
    caller: AbortSignal | undefined,
  ): Promise<
    { held: Map<string, Fetched>; more: PeerTarget[]; reached: number; holders: PeerTarget[] }
  > {
    const held = new Map<string, Fetched>();
    const more: PeerTarget[] = [];
    const holders: PeerTarget[] = [];
    let reached = 0;
    await Promise.all(peers.map(async (peer) => {
      try {
        const reply = await this.#request(
          peer,
          await this.#signed(FrameType.Fetch, peer, mailbox),
          caller,
        );
        if (reply.type === FrameType.Refused) throw refusedError(reply.code);
        if (reply.type !== FrameType.Items) return;
        reached++;
        if (peer.peerId !== this.#ctx.transport.peerId) holders.push(peer);
        if (reply.more) more.push(peer);
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
    return { held, more, reached, holders };
  }

  /**
   * Stores what can be read, flushes, shows the new messages and sends
   * receipts.
   */
  async #take(
    items: readonly Fetched[],
    caller: AbortSignal | undefined,
  ): Promise<{ arrived: number; unread: Fetched[] }> {
    const fresh: IncomingMessage[] = [];
    const stored: Fetched[] = [];
    const batch = new ReceiptBatch();
    const bare: Fetched[] = [];
    // A session's first message may come after its followers: what could not
    // be read is tried again while other messages still open sessions (a few
    // passes, so junk in the mailbox costs a bounded amount of work).
    let pending = [...items];
    try {
      for (let pass = 0, progress = true; progress && pending.length > 0 && pass < 3; pass++) {
        caller?.throwIfAborted();
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
          if (result === "duplicate") {
            bare.push(item);
            continue;
          }
          fresh.push(result);
          const sender = result.message.peer;
          if (this.#receipts?.canSeal(sender)) batch.add(sender, item.hash, result.message);
          else bare.push(item);
        }
        pending = unreadable;
      }
      // Stored and flushed before any sender hears of it or any copy is deleted.
      this.#storage.sync();
    } finally {
      // Whatever was stored is passed on, even when a later item or the
      // flush failed: fetched again, it would be a duplicate, not passed on.
      // In the senders' order.
      fresh.sort((a, b) => a.message.sentAt - b.message.sentAt);
      for (const incoming of fresh) this.#ctx.emit({ type: "message", incoming });
    }
    // None for a copy that could not be read: the sender keeps it. Sealed
    // receipts are queued before the copies are deleted, so a one-shot
    // command leaves with them in its outbox.
    await this.#queueReceipts(batch);
    // A stranger's, or a copy stored before: a bare receipt, directly, if
    // the sender is online (the outbox retry would find out later anyway).
    for (const { envelope, hash } of bare) this.#ctx.track(this.#sendReceipt(envelope, hash));
    return { arrived: fresh.filter((m) => !isControl(m)).length, unread: pending };
  }

  /** Seals and queues the receipts of a fetch; one that fails is reported, not thrown. */
  async #queueReceipts(batch: ReceiptBatch): Promise<void> {
    const receipts = this.#receipts;
    if (receipts === undefined) return;
    for (const { sender, body } of batch.receipts()) {
      try {
        await receipts.send(sender, body);
      } catch (err) {
        this.#ctx.onPeerError(err);
      }
    }
  }

  /** A FETCH, or a DELETE of `hashes`, signed by this user for one node. */
  async #signed(
    type: typeof FrameType.Fetch | typeof FrameType.Delete,
    peer: PeerTarget,
    mailbox: Uint8Array,
    hashes: readonly Uint8Array[] = [],
  ): Promise<Frame> {
    const timestamp = this.#ctx.clock();
    const nonce = crypto.getRandomValues(new Uint8Array(MAILBOX_NONCE_LENGTH));
    const request = { node: peer.peerId, mailbox, timestamp, nonce };
    const owner = this.#ctx.identity.signingPublicKey;
    if (type === FrameType.Fetch) {
      const signature = await this.#ctx.identity.sign(
        "mailbox",
        mailboxRequestSignedBytes({ type, ...request }),
      );
      return { type, owner, ...request, signature };
    }
    const signature = await this.#ctx.identity.sign(
      "mailbox",
      mailboxRequestSignedBytes({ type, ...request, hashes }),
    );
    return { type, owner, ...request, hashes, signature };
  }

  async #sendReceipt(envelope: Uint8Array, hash: Uint8Array): Promise<void> {
    let sender: string | undefined;
    try {
      // A session frame's sender is the peer of the session its tag names.
      sender = isSessionFrame(envelope)
        ? this.#ctx.sessions?.frameSender(envelope)
        : (this.#ctx.openWrap(envelope) ??
          await openEnvelope(this.#ctx.identity, envelope)).senderId;
    } catch {
      return;
    }
    if (sender === undefined) return;
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
    items: readonly { hash: Uint8Array; peers: PeerTarget[] }[],
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
    // A FETCH answer's copies fit in one DELETE: one request per node.
    await Promise.all([...byPeer.values()].map(async ({ peer, hashes }) => {
      for (let i = 0; i < hashes.length; i += MAX_DELETE_ITEMS) {
        const part = hashes.slice(i, i + MAX_DELETE_ITEMS);
        try {
          const reply = await this.#request(
            peer,
            await this.#signed(FrameType.Delete, peer, mailbox, part),
            caller,
          );
          if (reply.type === FrameType.Refused) throw refusedError(reply.code);
        } catch (err) {
          // Given up: the copies left are deleted by a later fetch.
          if (caller?.aborted) return;
          this.#ctx.onPeerError(err);
        }
      }
    }));
  }
}

/** The error a refused FETCH or DELETE is reported as. */
function refusedError(code: number): ProtocolError {
  const why = code === MailboxRefusal.Stale
    ? "its time is too far from the node's clock, or the node was flooded"
    : code === MailboxRefusal.Replayed
    ? "the node has served it already"
    : "the node did not accept the owner's signature";
  return new ProtocolError(`Cannot use mailbox: the request was refused (${why})`);
}

/**
 * The unreadable copies kept for the next round: the first that fit in one
 * answer's worth of memory ({@linkcode MAX_FETCH_ITEMS} copies, a frame).
 */
function keepSome(items: readonly Fetched[]): Fetched[] {
  const kept: Fetched[] = [];
  let bytes = 0;
  for (const item of items) {
    if (kept.length >= MAX_FETCH_ITEMS || bytes + item.envelope.length > MAX_FRAME_LENGTH) break;
    bytes += item.envelope.length;
    kept.push(item);
  }
  return kept;
}

/** Whether a fetched message is the messaging layer's own (a receipt, a file part). */
function isControl(incoming: IncomingMessage): boolean {
  return isControlContentType(incoming.message.contentType);
}
