/**
 * What `dim chat` talks to: its own messenger ({@linkcode LocalChat}, when
 * the chat holds the data directory), or a running `dim daemon` through the
 * local API ({@linkcode AttachedChat}, when the daemon holds it). The chat
 * shows the same things either way.
 *
 * @module
 */
import type { DaemonClient } from "../daemon/client.ts";
import { DaemonErrorCode, type DaemonFile, type DaemonFileFailed } from "../daemon/protocol.ts";
import { fileResult } from "../daemon/_methods.ts";
import type { FileOffer, ReceivedFile, TransferProgress } from "../messaging/mod.ts";
import type { Messenger } from "../messenger/messenger.ts";
import type { ChatMessage } from "../profile/chat_message.ts";
import { KeyChangedError, UnknownContactError } from "../profile/contacts.ts";
import { isOffline } from "./context.ts";
import { lastShownSeq, markShown } from "./marks.ts";
import { isDaemonError } from "./remote.ts";

/** A contact as the chat needs it. */
export interface ChatContact {
  /** The local name. */
  readonly name: string;
  /** The user ID. */
  readonly id: string;
  /** The display name from their card. */
  readonly displayName: string;
  /** Whether the safety number was confirmed. */
  readonly verified: boolean;
  /** Whether the network shows keys that differ from the pinned ones. */
  readonly keyChanged: boolean;
}

/** How far a file is: `from` is the sender's contact name, or user ID. */
export interface ChatFileProgress {
  /** The file ID. */
  readonly fileId: string;
  /** The sender. */
  readonly from: string;
  /** The file name. */
  readonly name: string;
  /** Bytes so far. */
  readonly bytes: number;
  /** The size. */
  readonly total: number;
}

/** A file received and saved. */
export interface ChatFile {
  /** The file ID. */
  readonly fileId: string;
  /** The sender's contact name, or user ID. */
  readonly from: string;
  /** The sender's user ID. */
  readonly senderId: string;
  /** SHA-256 of the file, hex; the sender signed it. */
  readonly sha256: string;
  /** The file name as sent. */
  readonly name: string;
  /** Its size. */
  readonly bytes: number;
  /** The directory it was saved in. */
  readonly dir: string;
}

/** An incoming file that failed. */
export interface ChatFileFailure {
  /** The file ID, if the offer was read. */
  readonly fileId: string | null;
  /** The sender, if the offer was read. */
  readonly from: string | null;
  /** The file name, if the offer was read. */
  readonly name: string | null;
  /** Why. */
  readonly error: string;
}

/** What the chat is told while it runs. */
export interface ChatEvents {
  /** An incoming message. */
  message(m: ChatMessage): void;
  /** A sent message changed state. */
  status(m: ChatMessage): void;
  /** A message this user sent, from this chat or another command. */
  sent(m: ChatMessage): void;
  /** An incoming file's progress. */
  fileProgress(p: ChatFileProgress): void;
  /** A file received and saved. */
  file(f: ChatFile): void;
  /** An incoming file failed. */
  fileFailed(f: ChatFileFailure): void;
  /** A peer connected after none was. */
  connected(): void;
  /** The last peer went away. */
  disconnected(): void;
}

/** What {@linkcode ChatBackend.sendFile} returns. */
export interface ChatSentFile {
  /**
   * `direct`: delivered; `mailbox`: left in the network (contact offline);
   * `queued`: waiting on this device until both are online.
   */
  readonly how: "direct" | "mailbox" | "queued";
  /** The name the recipient was given. */
  readonly name: string;
  /** Bytes sent. */
  readonly bytes: number;
  /** SHA-256, hex. */
  readonly sha256: string;
}

/** The messenger side of the chat. */
export interface ChatBackend {
  /** Whether this chat is attached to a running daemon. */
  readonly attached: boolean;
  /** Whether no peer is connected: what is sent is queued on this device. */
  readonly offline: boolean;
  /** Starts the events; returns how to stop them. */
  listen(events: ChatEvents): () => void;
  /** A contact by name or user ID. */
  contact(nameOrId: string): Promise<ChatContact>;
  /** The incoming messages not shown before, oldest first. */
  unseen(): Promise<ChatMessage[]>;
  /** The newest `limit` messages with a contact, oldest first. */
  history(name: string, limit: number): Promise<ChatMessage[]>;
  /** Marks incoming messages up to `seq` shown. */
  markShown(seq: number): void;
  /** Sends a message; throws `KeyChangedError` when the keys changed. */
  send(name: string, text: string): Promise<ChatMessage>;
  /** Sends a file: directly, left in the network, or queued (see `Messenger.deliverFile`). */
  sendFile(
    name: string,
    path: string,
    options: { readonly signal: AbortSignal; readonly onProgress: (p: TransferProgress) => void },
  ): Promise<ChatSentFile>;
  /** The safety number with a contact. */
  safetyNumber(name: string): Promise<string>;
  /** Marks a contact verified. */
  verify(name: string): Promise<ChatContact>;
  /** Looks the contact's card up again, to see a key change. */
  refreshKeys(id: string, signal: AbortSignal): Promise<void>;
}

/** The chat's own messenger: the chat holds the data directory. */
export class LocalChat implements ChatBackend {
  readonly attached = false;
  readonly #messenger: Messenger;

  /**
   * Wraps a running messenger.
   *
   * @param messenger The messenger.
   */
  constructor(messenger: Messenger) {
    this.#messenger = messenger;
  }

  get offline(): boolean {
    return isOffline(this.#messenger);
  }

  listen(events: ChatEvents): () => void {
    const messenger = this.#messenger;
    const profile = messenger.profile;
    const from = (id: string) => profile.findContact(id)?.name ?? id;
    const dir = `${profile.home}/files`;
    let stopped = false;
    const handlers: [EventTarget, string, (e: Event) => void][] = [
      [messenger, "status", (e) => events.status((e as CustomEvent<ChatMessage>).detail)],
      [messenger, "sent", (e) => events.sent((e as CustomEvent<ChatMessage>).detail)],
      [messenger, "file", (e) => {
        const f = (e as CustomEvent<ReceivedFile>).detail;
        const { fileId, senderId, name, bytes, sha256 } = f;
        events.file({ fileId, from: from(senderId), senderId, sha256, name, bytes, dir });
      }],
      [messenger, "file-progress", (e) => {
        const p = (e as CustomEvent<TransferProgress & { senderId: string }>).detail;
        events.fileProgress({ ...p, from: from(p.senderId) });
      }],
      [messenger, "file-failed", (e) => {
        const d = (e as CustomEvent<{ error: unknown; offer?: FileOffer }>).detail;
        events.fileFailed({
          fileId: d.offer?.fileId ?? null,
          from: d.offer === undefined ? null : from(d.offer.senderId),
          name: d.offer?.name ?? null,
          error: d.error instanceof Error ? d.error.message : String(d.error),
        });
      }],
      [messenger.node, "peer:connect", () => events.connected()],
      [messenger.node, "peer:disconnect", () => {
        if (isOffline(messenger)) events.disconnected();
      }],
    ];
    for (const [target, type, fn] of handlers) target.addEventListener(type, fn);
    (async () => {
      for await (const m of messenger.messages()) {
        if (stopped) return;
        events.message(m);
      }
    })().catch(() => {});
    return () => {
      stopped = true;
      for (const [target, type, fn] of handlers) target.removeEventListener(type, fn);
    };
  }

  contact(nameOrId: string): Promise<ChatContact> {
    return Promise.resolve(this.#messenger.profile.contact(nameOrId));
  }

  unseen(): Promise<ChatMessage[]> {
    const profile = this.#messenger.profile;
    return Promise.resolve(profile.incomingSince(lastShownSeq(profile)));
  }

  history(name: string, limit: number): Promise<ChatMessage[]> {
    return Promise.resolve(this.#messenger.profile.history(name, { limit }));
  }

  markShown(seq: number): void {
    markShown(this.#messenger.profile, seq);
  }

  send(name: string, text: string): Promise<ChatMessage> {
    return this.#messenger.send(name, text);
  }

  sendFile(
    name: string,
    path: string,
    options: { readonly signal: AbortSignal; readonly onProgress: (p: TransferProgress) => void },
  ): Promise<ChatSentFile> {
    return this.#messenger.deliverFile(name, path, options).then(fileResult);
  }

  safetyNumber(name: string): Promise<string> {
    return Promise.resolve(this.#messenger.profile.safetyNumber(name));
  }

  verify(name: string): Promise<ChatContact> {
    return Promise.resolve(this.#messenger.profile.verifyContact(name));
  }

  async refreshKeys(id: string, signal: AbortSignal): Promise<void> {
    await this.#messenger.resolveCard(id, { fresh: true, signal });
  }
}

/** How long the chat lets an attached daemon check the mailbox on open, in seconds. */
const ATTACH_INBOX_TIMEOUT_S = 5;

/**
 * A chat over a running daemon's API: the daemon holds the data directory
 * and stays online after the chat ends. It learns that the daemon is
 * offline from `send` (and online again from a delivery or a message).
 */
export class AttachedChat implements ChatBackend {
  readonly attached = true;
  readonly #dim: DaemonClient;
  #offline: boolean;
  #events: ChatEvents | undefined;

  /**
   * Wraps a client of the daemon.
   *
   * @param dim The client.
   * @param offline Whether the daemon has no connection now (its `status`).
   */
  constructor(dim: DaemonClient, offline: boolean) {
    this.#dim = dim;
    this.#offline = offline;
  }

  get offline(): boolean {
    return this.#offline;
  }

  #online(online: boolean): void {
    if (online === !this.#offline) return;
    this.#offline = !online;
    if (online) this.#events?.connected();
    else this.#events?.disconnected();
  }

  listen(events: ChatEvents): () => void {
    this.#events = events;
    const subscription = this.#dim.subscribe();
    let stopped = false;
    (async () => {
      for await (const n of subscription) {
        if (stopped) return;
        switch (n.method) {
          case "message":
            this.#online(true);
            events.message(n.params);
            break;
          case "status":
            if (n.params.state === "delivered" || n.params.state === "stored") this.#online(true);
            events.status(n.params);
            break;
          case "sent":
            events.sent(n.params);
            break;
          case "fileProgress":
            // Files others send through the daemon are theirs to watch.
            if (n.params.direction === "in") {
              events.fileProgress({ ...n.params, from: n.params.contact });
            }
            break;
          case "file":
            events.file(fromDaemonFile(n.params));
            break;
          case "fileFailed":
            events.fileFailed(fromDaemonFailure(n.params));
            break;
        }
      }
    })().catch(() => {});
    return () => {
      stopped = true;
      this.#events = undefined;
    };
  }

  async contact(nameOrId: string): Promise<ChatContact> {
    const contacts = await this.#dim.listContacts();
    const found = contacts.find((c) => c.name === nameOrId) ??
      contacts.find((c) => c.id === nameOrId);
    if (found === undefined) throw new UnknownContactError(`Cannot find contact "${nameOrId}"`);
    return found;
  }

  async unseen(): Promise<ChatMessage[]> {
    // The daemon checks its mailbox first, and marks them shown.
    return (await this.#dim.inbox({ timeout: ATTACH_INBOX_TIMEOUT_S })).messages;
  }

  history(name: string, limit: number): Promise<ChatMessage[]> {
    return this.#dim.history(name, { limit });
  }

  markShown(seq: number): void {
    this.#dim.markShown(seq).catch(() => {});
  }

  async send(name: string, text: string): Promise<ChatMessage> {
    try {
      const sent = await this.#dim.send(name, text);
      this.#online(!sent.offline);
      return sent.message;
    } catch (err) {
      if (isDaemonError(err, DaemonErrorCode.KeyChanged)) {
        const contact = await this.contact(name);
        throw new KeyChangedError({ name: contact.name, userId: contact.id }, { cause: err });
      }
      throw err;
    }
  }

  sendFile(
    name: string,
    path: string,
    options: { readonly signal: AbortSignal; readonly onProgress: (p: TransferProgress) => void },
  ): Promise<ChatSentFile> {
    // Closing the client when the chat ends cancels it; the daemon bounds each wait.
    return this.#dim.sendFile(name, path, { onProgress: options.onProgress, timeout: 3600 });
  }

  async safetyNumber(name: string): Promise<string> {
    return (await this.#dim.verifyContact(name)).safetyNumber;
  }

  verify(name: string): Promise<ChatContact> {
    return this.#dim.verifyContact(name, { confirm: true });
  }

  refreshKeys(): Promise<void> {
    // The daemon's outbox looks at cards itself before sending.
    return Promise.resolve();
  }
}

function fromDaemonFile(f: DaemonFile): ChatFile {
  return {
    fileId: f.fileId,
    from: f.contact ?? f.senderId,
    senderId: f.senderId,
    sha256: f.sha256,
    name: f.name,
    bytes: f.bytes,
    dir: f.dir,
  };
}

function fromDaemonFailure(f: DaemonFileFailed): ChatFileFailure {
  return {
    fileId: f.fileId,
    from: f.senderId,
    name: f.name,
    error: f.error,
  };
}
