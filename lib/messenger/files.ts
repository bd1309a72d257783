/**
 * A messenger's files: those it receives (directly, or put together from
 * parts left in its mailbox) and those it sends — directly to a contact who
 * is online, in sealed parts through the network for one who is not (up to
 * `MAILBOX_FILE_MAX_SIZE`), or waiting on this device until the two are
 * online together (`file_queue.ts`). `Messenger`'s file methods are these.
 *
 * @module
 */
import delay from "delay";
import { PeerUnreachableError } from "../errors.ts";
import type { Identity } from "../crypto/identity.ts";
import type { DhtNode } from "../dht/node.ts";
import {
  FileReceiver,
  fileSource,
  type IncomingMessage,
  leaveFile,
  MAILBOX_FILE_MAX_SIZE,
  MailboxFiles,
  type MessagingService,
  type QueuedFile,
  sendFile,
  type SendFileOptions,
  type SentFile,
} from "../messaging/mod.ts";
import type { ContactBook } from "../profile/contacts.ts";
import type { UserStore } from "../store/user_store.ts";
import type { FileQueueEntry } from "../store/file_queue_store.ts";
import type { Cards, SignalOptions } from "./cards.ts";
import { downloadSink } from "./downloads.ts";
import { type FileDelivery, FileQueue } from "./file_queue.ts";
import { transportFor } from "./transport.ts";

/** How long sending a file looks for an online recipient when given no signal. */
const FILE_PEER_LOOKUP_MS = 30_000;
/** Direct attempts before a file goes the slow way (left in the network, or queued). */
const DIRECT_ATTEMPTS = 2;
/** The pause between them, in ms. */
const DIRECT_RETRY_MS = 500;

/** What {@linkcode MessengerFiles} needs from its messenger. */
export interface MessengerFilesInit {
  /** The user's identity. */
  readonly identity: () => Identity;
  /** The contacts. */
  readonly book: ContactBook;
  /** The user's database. */
  readonly store: UserStore;
  /** The node. */
  readonly node: DhtNode;
  /** Cards, to find a contact's node. */
  readonly cards: Cards;
  /** The messaging service, to queue a file's parts like messages. */
  readonly service: Pick<MessagingService, "send">;
  /** The clock, in ms. */
  readonly clock: () => number;
  /** Where received files go. */
  readonly downloadDir: string | undefined;
  /** The largest file accepted directly. */
  readonly maxFileSize: number | undefined;
  /** Dispatches the messenger's file events. */
  readonly dispatch: (type: string, detail: unknown) => void;
}

/** A messenger's files; see the module documentation. */
export class MessengerFiles {
  readonly #init: MessengerFilesInit;
  readonly #receiver: FileReceiver;
  readonly #mailbox: MailboxFiles;
  readonly #queue: FileQueue;

  /**
   * @param init The messenger's parts.
   */
  constructor(init: MessengerFilesInit) {
    this.#init = init;
    const { book, dispatch, downloadDir } = init;
    const failed = (error: unknown, offer: unknown) => dispatch("file-failed", { error, offer });
    this.#receiver = new FileReceiver(init.identity(), {
      accept: (offer) => downloadSink(offer, book, downloadDir),
      // `file-progress`: how far an incoming file is ({ fileId, name, bytes, total, senderId }).
      onProgress: (progress) => dispatch("file-progress", progress),
      onReceived: (file) => dispatch("file", file),
      onFailed: failed,
      ...(init.maxFileSize === undefined ? {} : { maxFileSize: init.maxFileSize }),
    });
    // Announced like direct files: `file` and `file-failed` events.
    this.#mailbox = new MailboxFiles({
      storage: init.store,
      accept: (offer) => downloadSink(offer, book, downloadDir),
      onReceived: (file) => dispatch("file", file),
      onFailed: failed,
    });
    // `queued-file`: a file waiting on this device was queued, sent, deferred or given up.
    this.#queue = new FileQueue({
      store: init.store.fileQueue,
      send: (entry, signal) =>
        this.#send(
          entry.recipient,
          entry.path,
          { signal },
          AbortSignal.any([signal, AbortSignal.timeout(FILE_PEER_LOOKUP_MS)]),
        ),
      clock: init.clock,
      onEvent: (event) => dispatch("queued-file", event),
    });
  }

  /** Starts receiving files and sending the queued ones. */
  async start(): Promise<void> {
    await this.#receiver.start(transportFor(this.#init.node));
    this.#queue.start();
  }

  /** Tries the queued files now (the node reached a peer after being alone). */
  retryQueued(): void {
    this.#queue.retryNow();
  }

  /**
   * Tries the files queued for a contact now, if there are any (the contact
   * just wrote). Asks no database for a contact with none.
   *
   * @param userId The contact's user ID.
   */
  retryQueuedFor(userId: string): void {
    if (this.#queue.hasWaitingFor(userId)) this.#queue.retryNow();
  }

  /**
   * Takes a part of a file left in the mailbox.
   *
   * @param incoming The part, as it arrived.
   */
  takePart(incoming: IncomingMessage): void {
    this.#mailbox.take(incoming);
  }

  /** Files waiting on this device until their contact is online, oldest first. */
  get queued(): FileQueueEntry[] {
    return this.#queue.waiting;
  }

  /**
   * Sends a file to a contact who is online; see `Messenger.sendFile`.
   *
   * @param nameOrId The contact.
   * @param path The file.
   * @param options Signal, progress, chunk size and timeouts.
   * @returns What was sent.
   */
  send(nameOrId: string, path: string, options: SendFileOptions = {}): Promise<SentFile> {
    const lookup = options.signal ?? AbortSignal.timeout(FILE_PEER_LOOKUP_MS);
    return this.#send(nameOrId, path, options, lookup);
  }

  /**
   * Leaves a file of up to 4 MiB in the network; see `Messenger.sendFileLater`.
   *
   * @param nameOrId The contact.
   * @param path The file.
   * @param options `signal`.
   * @returns The queued file.
   */
  async sendLater(
    nameOrId: string,
    path: string,
    options: SignalOptions = {},
  ): Promise<QueuedFile> {
    const row = this.#init.book.sendable(nameOrId);
    const recipient = { userId: row.userId, encryptionPublicKey: row.encryptionPublicKey };
    return await leaveFile(
      (body, contentType) =>
        this.#init.service.send(recipient, body, {
          contentType,
          ...(options.signal ? { signal: options.signal } : {}),
        }),
      await fileSource(path),
      options,
    );
  }

  /**
   * Sends a file however the contact can get it; see `Messenger.deliverFile`.
   *
   * @param nameOrId The contact.
   * @param path The file.
   * @param options As for `send`.
   * @returns How it went.
   */
  async deliver(
    nameOrId: string,
    path: string,
    options: SendFileOptions = {},
  ): Promise<FileDelivery> {
    // Twice before the contact counts as offline: one failed dial or stream
    // (a reset, a busy moment) must not send the file the slow way.
    for (let attempt = 1;; attempt++) {
      try {
        return { how: "direct", sent: await this.send(nameOrId, path, options) };
      } catch (err) {
        if (!(err instanceof PeerUnreachableError) || options.signal?.aborted) throw err;
        if (attempt === DIRECT_ATTEMPTS) break;
      }
      await delay(DIRECT_RETRY_MS, options.signal ? { signal: options.signal } : {});
    }
    if ((await Deno.stat(path)).size <= MAILBOX_FILE_MAX_SIZE) {
      return { how: "mailbox", file: await this.sendLater(nameOrId, path, options) };
    }
    const row = this.#init.book.sendable(nameOrId);
    return { how: "queued", entry: await this.#queue.add(row.userId, path) };
  }

  /** Stops sending queued files and receiving; a queued file stays queued. */
  async stop(): Promise<void> {
    await this.#queue.stop();
    await this.#receiver.stop();
  }

  /** Resolves once the mailbox parts taken so far are handled. */
  settled(): Promise<void> {
    return this.#mailbox.settled();
  }

  // Looks the contact's node up under `lookup`, then sends under `options`.
  async #send(
    nameOrId: string,
    path: string,
    options: SendFileOptions,
    lookup: AbortSignal,
  ): Promise<SentFile> {
    const row = this.#init.book.sendable(nameOrId);
    const peer = await this.#init.cards.resolvePeer(row.userId, { signal: lookup });
    return await sendFile(transportFor(this.#init.node), {
      identity: this.#init.identity(),
      recipient: { userId: row.userId, encryptionPublicKey: row.encryptionPublicKey, peer },
      source: await fileSource(path),
    }, options);
  }
}
