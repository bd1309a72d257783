/**
 * The messaging service: sends sealed envelopes and waits for signed
 * acknowledgements, keeps every unacknowledged message in a persistent
 * outbox and retries it with backoff, leaves a copy in the recipient's
 * network mailbox when the recipient cannot be reached, receives, verifies,
 * deduplicates and stores incoming messages, and serves other users'
 * mailboxes within quotas.
 *
 * This module is the coordinator: it makes the parts, wires them together
 * and runs their loops.
 *
 * - the outbox (`outbox.ts`): sealing, the persistent outbox, group
 *   commit, pipelined delivery over kept streams, retries and backoff;
 * - the inbox (`inbox.ts`): the `/dim/msg/1.0.0` handler, which stores
 *   what arrives together with one flush before it acknowledges any of it;
 * - the mailbox client (`mailbox_client.ts`): copies left on the nodes
 *   closest to a recipient's mailbox, and fetching this user's own;
 * - the mailbox server (`mailbox.ts`): the mailboxes this node keeps for
 *   others.
 *
 * It talks to the network through the small {@linkcode MessagingTransport}
 * interface, so it can run over a DIM node or anything else that opens
 * streams, and keeps what it must through the storage interfaces of
 * `storage.ts`, each part given only the ones it needs.
 *
 * Delivery guarantees: a message is acknowledged only after its row is
 * committed and flushed to the recipient's storage; the sender removes it
 * from its outbox only on an acknowledgement signed by the recipient's
 * identity key over the envelope's SHA-256. Envelopes are deduplicated by
 * (sender, message ID), which is persistent, so a replay is never stored
 * twice. Each conversation's outbox is sent strictly in order over one
 * stream, with up to `SEND_WINDOW` (64) envelopes awaiting their
 * acknowledgements.
 *
 * @example Send a message and wait for its acknowledgement
 * ```ts ignore
 * import { MessagingService } from "./service.ts";
 *
 * const service = new MessagingService({ identity, storage, transport, resolve, sessions });
 * await service.start();
 * service.addEventListener("delivered", (e) => console.log("delivered", e.detail.seq));
 * const message = await service.send(bob, new TextEncoder().encode("hello"), {
 *   signal: AbortSignal.timeout(10_000),
 * });
 * await service.stop();
 * ```
 *
 * @module
 */
import type { Identity } from "../crypto/identity.ts";
import { DimError } from "../errors.ts";
import type { MessagingStorage, StoredMessage } from "./storage.ts";
import { MailboxServer, type MessageStream } from "./mailbox.ts";
import type { SessionManager } from "./sessions.ts";
import { Inbox } from "./inbox.ts";
import { Outbox } from "./outbox.ts";
import { MailboxClient } from "./mailbox_client.ts";
import type {
  FetchMailboxOptions,
  FlushOutboxOptions,
  MessageRecipient,
  MessagingEventDetail,
  MessagingOptions,
  MessagingTransport,
  RecipientResolver,
  SendOptions,
  WrapOpener,
} from "./types.ts";
import { ServiceContext } from "./_context.ts";
import { MESSAGE_PROTOCOL } from "./wire.ts";
import { RECEIPT_CONTENT_TYPE } from "./constants.ts";
import { decodeReceipt, isControlContentType } from "./_receipts.ts";

/**
 * Sends and receives DIM messages for one identity over a transport.
 * Dispatches `CustomEvent<MessagingEventDetail>` events named `message`,
 * `delivered`, `stored`, `mailbox` and `file-part` (a part of a file left
 * in a mailbox, for `MailboxFiles`). Receipts and file parts never come as
 * `message`.
 */
export class MessagingService extends EventTarget {
  readonly #ctx: ServiceContext;
  readonly #transport: MessagingTransport;
  readonly #mailboxServer: MailboxServer;
  readonly #inbox: Inbox;
  readonly #outbox: Outbox;
  readonly #mailboxes: MailboxClient;
  #timers: ReturnType<typeof setInterval>[] = [];

  /**
   * Makes the service; call `start()` to serve and send.
   *
   * @param deps The identity, its storage, the transport and a resolver for recipients' nodes.
   * @param options Tunables.
   */
  constructor(
    deps: {
      readonly identity: Identity;
      readonly storage: MessagingStorage;
      readonly transport: MessagingTransport;
      readonly resolve: RecipientResolver;
      /** Forward-secret sessions; without it every message uses the static envelope. */
      readonly sessions?: SessionManager;
      /** Recognizes wraps before envelopes are opened (a group's, from the layer above). */
      readonly openWrap?: WrapOpener;
      /**
       * The pinned encryption key of a sender who is not a contact (a group
       * member's): checked as a contact's, and not counted as a stranger's.
       */
      readonly knownKey?: (userId: string) => Uint8Array | undefined;
    },
    options: MessagingOptions = {},
  ) {
    super();
    const ctx = new ServiceContext(deps, options, (detail) => this.#emit(detail));
    this.#ctx = ctx;
    this.#transport = deps.transport;
    const storage = deps.storage;
    this.#mailboxServer = new MailboxServer(storage.mailboxes, {
      clock: ctx.clock,
      idleTimeoutMs: ctx.options.idleTimeoutMs,
      onPeerError: ctx.onPeerError,
      ...(options.mailboxLimits ? { limits: options.mailboxLimits } : {}),
    });
    this.#inbox = new Inbox({
      context: ctx,
      storage,
      limits: options.inboxLimits,
      onReceipt: (hash, signature) => this.#outbox.acknowledgeReceipt(hash, signature),
    });
    this.#mailboxes = new MailboxClient({
      context: ctx,
      server: this.#mailboxServer,
      storage,
      receive: (envelope) => this.#inbox.receive(envelope),
      receipts: {
        canSeal: (sender) => storage.contacts.getById(sender) !== undefined,
        send: (sender, body) => {
          const contact = storage.contacts.getById(sender);
          if (contact === undefined) return Promise.resolve();
          const recipient = { userId: sender, encryptionPublicKey: contact.encryptionPublicKey };
          return this.#outbox.send(recipient, body, { contentType: RECEIPT_CONTENT_TYPE });
        },
      },
    });
    this.#outbox = new Outbox({
      context: ctx,
      storage,
      storeOffline: (recipient, envelopes) => this.#mailboxes.storeOffline(recipient, envelopes),
    });
  }

  /** Registers the protocol handlers and starts the outbox and mailbox loops. Idempotent. */
  async start(): Promise<void> {
    const ctx = this.#ctx;
    if (ctx.running) return;
    ctx.running = true;
    ctx.deadlines.restart();
    await this.#mailboxes.start();
    await this.#transport.handle(
      MESSAGE_PROTOCOL,
      (stream: MessageStream, peer: string, address?: string) =>
        ctx.track(this.#inbox.serve(stream, peer, address)),
    );
    await this.#mailboxServer.start(this.#transport);
    this.#every(ctx.options.outboxIntervalMs, () => this.flushOutbox());
    this.#every(ctx.options.mailboxPollMs, () => this.fetchMailbox());
    this.#every(ctx.options.mailboxRecheckMs, () => this.recheckMailboxCopies());
    // What was queued in an earlier run goes now, whatever backoff it was
    // left with: a new start is a new chance that the network is there.
    // Then the copies left in the network for what is still queued are
    // checked: their holders may have left while this node was away.
    ctx.track(this.#flushThenRecheck());
  }

  async #flushThenRecheck(): Promise<void> {
    await this.flushOutbox({ all: true }).catch(this.#ctx.onPeerError);
    await this.recheckMailboxCopies({ all: true });
  }

  /** Stops handlers and loops, aborts what is in flight. Idempotent. */
  async stop(): Promise<void> {
    const ctx = this.#ctx;
    if (!ctx.running) return;
    ctx.running = false;
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [];
    ctx.deadlines.abort(new DimError("Cannot continue: the messenger is stopping"));
    this.#outbox.stop();
    for (const s of ctx.streams) s.abort(new Error("stopping"));
    await Promise.allSettled([
      this.#transport.unhandle(MESSAGE_PROTOCOL),
      this.#mailboxServer.stop(),
    ]);
    await ctx.settled();
  }

  #every(ms: number, fn: () => Promise<unknown>): void {
    const id = setInterval(() => this.#ctx.track(fn()), ms);
    // Deno's timers are numbers; the loops must not keep a one-shot process alive.
    Deno.unrefTimer(id as unknown as number);
    this.#timers.push(id);
  }

  #emit(detail: MessagingEventDetail): void {
    // The layer's own messages are never shown: a receipt empties the
    // outbox, a file part goes to whoever assembles mailbox files.
    if (detail.type === "message" && isControlContentType(detail.incoming.message.contentType)) {
      const message = detail.incoming.message;
      if (message.contentType !== RECEIPT_CONTENT_TYPE) {
        const part = { type: "file-part", incoming: detail.incoming } as const;
        this.dispatchEvent(new CustomEvent(part.type, { detail: part }));
        return;
      }
      try {
        this.#outbox.acknowledgeHashes(message.peer, decodeReceipt(message.body).hashes);
      } catch (err) {
        this.#ctx.onPeerError(err);
      }
      return;
    }
    this.dispatchEvent(new CustomEvent(detail.type, { detail }));
  }

  /**
   * Seals `body` for a recipient, stores it in the history and the outbox,
   * flushes, and starts delivering it. Messages sent together share their
   * flushes.
   *
   * @param recipient The recipient's user ID and X25519 key.
   * @param body The message body.
   * @param options `contentType`: the envelope content type (default 1,
   *   UTF-8 text); `signal`: gives up before the message is stored (the
   *   recipient's prekeys are looked up first for a new session). Once
   *   stored, the message is the outbox's to deliver, signal or not.
   * @returns The stored message (state "pending").
   * @throws {unknown} The signal's reason, if it aborts before the message is stored.
   * @throws {StorageError} If the message cannot be stored.
   */
  send(
    recipient: MessageRecipient,
    body: Uint8Array,
    options: SendOptions = {},
  ): Promise<StoredMessage> {
    return this.#outbox.send(recipient, body, options);
  }

  /**
   * Queues bytes sealed for each recipient by a layer above (a group
   * message's wraps, which start and are sized as envelopes) as messages'
   * envelopes: stored with `body` in the history and the outbox (one
   * transaction, one flush), and delivered, acknowledged and left in
   * mailboxes as any envelope.
   *
   * @param wraps Each recipient with its sealed bytes.
   * @param body What the history keeps (and what a new session would seal
   *   again if a recipient cannot read its wrap).
   * @param contentType The history's content type.
   * @returns The stored messages (state "pending"), in the order given.
   */
  sendWrapped(
    wraps: readonly { readonly recipient: MessageRecipient; readonly wrap: Uint8Array }[],
    body: Uint8Array,
    contentType: number,
  ): Promise<StoredMessage[]> {
    return this.#outbox.sendWrapped(wraps, body, contentType);
  }

  /**
   * Tries every outbox entry that is due now: one worker per conversation
   * sends its queue in order over one stream. The service also does this
   * every `outboxIntervalMs`.
   *
   * @param options `signal`: stops waiting (the attempts go on); `all`:
   *   every queued conversation now, even one waiting out a backoff.
   * @returns When the attempts have finished.
   * @throws {unknown} The signal's reason, if it aborts first.
   */
  flushOutbox(options: FlushOutboxOptions = {}): Promise<void> {
    return this.#outbox.flush(options);
  }

  /**
   * Checks the copies left in the network for messages not yet
   * acknowledged, and stores them again on the nodes now closest to their
   * recipients' mailboxes that do not hold them (a holder may have left the
   * network). The service does this every `mailboxRecheckMs` and once
   * after each start. At most a few recipients and a few dozen messages per
   * call, those confirmed longest ago first.
   *
   * @param options `all`: every message with a copy in the network, not
   *   only those confirmed more than `mailboxRecheckMs` ago (default
   *   `false`); `signal`: gives up.
   * @returns How many messages were found held by another node (0 if the
   *   service is not started, or a check is running).
   * @throws {unknown} The signal's reason, if it aborts.
   */
  recheckMailboxCopies(
    options: { readonly all?: boolean; readonly signal?: AbortSignal } = {},
  ): Promise<number> {
    return this.#mailboxes.recheck(options);
  }

  /**
   * Fetches this user's messages from the network mailbox, stores the new
   * ones, sends receipts and deletes the fetched copies. The service also
   * does this every `mailboxPollMs`.
   *
   * @param options `refresh`: look the mailbox's nodes up again instead of
   *   using the ones found in the last few minutes (default `false`);
   *   `signal`: gives up.
   * @returns How many new messages arrived (0 if the service is not started).
   * @throws {unknown} The signal's reason, if it aborts before the fetched
   *   messages are stored (none is, and the copies stay for the next fetch).
   */
  fetchMailbox(options: FetchMailboxOptions = {}): Promise<number> {
    return this.#mailboxes.fetch(options);
  }
}
