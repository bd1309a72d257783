/**
 * The high-level messenger a program opens: one identity, its encrypted
 * keystore, its database and its DIM node, with contacts, sending and a
 * stream of incoming messages.
 *
 * @example Two users on one machine
 * ```ts ignore
 * import { Messenger } from "./messenger.ts";
 *
 * const alice = await Messenger.create({ home: "/tmp/alice", passphrase: "pw-a", displayName: "Alice" });
 * const bob = await Messenger.create({
 *   home: "/tmp/bob", passphrase: "pw-b", displayName: "Bob", bootstrap: alice.addresses,
 * });
 * await alice.addContact("bob", bob.id);
 * await alice.send("bob", "hello");
 * for await (const m of bob.messages()) {
 *   console.log(m.text);
 *   break;
 * }
 * await alice.close();
 * await bob.close();
 * ```
 *
 * @module
 */
import { sha256 } from "@noble/hashes/sha2.js";
import delay from "delay";
import { peerIdFromString } from "@libp2p/peer-id";
import { compareBytes, constantTimeEqual, fromUtf8, toHex, utf8 } from "./platform/bytes.ts";
import { decodeUserId, Identity, type PublicIdentity } from "./crypto/identity.ts";
import { createKeystore, unlockKeystore } from "./crypto/keystore.ts";
import { fingerprint } from "./crypto/safety_number.ts";
import { type Contact, ContactBook, UnknownContactError } from "./contacts.ts";
import { createDhtNode, type DhtNode, type DhtNodeOptions } from "./dht/node.ts";
import { DimError, InvalidIdError, KeystoreError, PeerUnreachableError } from "./errors.ts";
import {
  type MessagingOptions,
  MessagingService,
  type MessagingTransport,
  type PeerTarget,
} from "./messaging/service.ts";
import { CARD_RECORD_TYPE, type ContactCard, openCard, signCard } from "./record/card.ts";
import { dimSelector, dimValidator, recordKey } from "./record/record.ts";
import type { MessageProtection, MessageState, StoredMessage } from "./messaging/storage.ts";
import type { StoredContact } from "./store/contact_store.ts";
import { UserStore } from "./store/user_store.ts";
import { SecretBox } from "./crypto/secret_box.ts";
import { type FileOffer, FileReceiver } from "./messaging/file_receive.ts";
import { sendFile, type SendFileOptions, type SentFile } from "./messaging/file_send.ts";
import { fileSink, fileSource } from "./messaging/file_io.ts";
import { SessionManager } from "./messaging/sessions.ts";
import { openPrekeyBundle, PREKEY_RECORD_TYPE } from "./record/prekey.ts";
import { type DataDirLock, lockDataDir } from "./platform/lock.ts";
import { dataPaths, ensureHome } from "./platform/paths.ts";

/** Content type of a UTF-8 text message. */
export const TEXT_CONTENT_TYPE = 1;

/** Options of {@linkcode Messenger.open}. */
export interface MessengerOptions {
  /** The data directory (keystore, database, node key). */
  readonly home: string;
  /** The keystore passphrase. */
  readonly passphrase: string;
  /** Multiaddrs to listen on. Default `/ip4/0.0.0.0/tcp/0`. */
  readonly listen?: readonly string[];
  /** Multiaddrs (with `/p2p/`) of nodes to join through. */
  readonly bootstrap?: readonly string[];
  /** Clock in ms. Default `Date.now`. */
  readonly clock?: () => number;
  /** Tunables of the messaging layer. */
  readonly messaging?: MessagingOptions;
  /** Extra options for the DIM node. */
  readonly node?: Partial<DhtNodeOptions>;
  /** Whether to publish the contact card on open. Default `true`. */
  readonly publish?: boolean;
  /**
   * Where files from contacts are saved. Default: none, and every incoming
   * file is refused. Files from unknown senders, or from contacts whose keys
   * changed, are always refused.
   */
  readonly downloadDir?: string;
  /** The largest file accepted, in bytes. Default 4 GiB. */
  readonly maxFileSize?: number;
}

/** Options of {@linkcode Messenger.create}. */
export interface CreateMessengerOptions extends MessengerOptions {
  /** The display name in the contact card. */
  readonly displayName: string;
  /** Replace an existing identity. Default `false`. */
  readonly force?: boolean;
}

/** A message in a conversation. */
export interface ChatMessage {
  /** Local sequence number. */
  readonly seq: number;
  /** Hex message ID. */
  readonly id: string;
  /** Whether it was sent or received. */
  readonly direction: "in" | "out";
  /** The other party's user ID. */
  readonly peer: string;
  /** The contact's local name, if the peer is a contact. */
  readonly contact: string | undefined;
  /** Whether the peer is a contact whose safety number was confirmed. */
  readonly verified: boolean;
  /** The text (for text messages). */
  readonly text: string;
  /** The sender's timestamp (ms). */
  readonly sentAt: number;
  /** Delivery state. */
  readonly state: MessageState;
  /** How it travelled. */
  readonly via: string;
  /**
   * How its content was protected: "ratchet" (a forward-secret session) or
   * "static" (sealed to the recipient's long-term key: the first contact with
   * a user whose prekeys could not be found).
   */
  readonly protection: MessageProtection;
}

/** Thrown when a contact's keys in the network differ from the pinned ones. */
export class KeyChangedError extends DimError {}

const CARD_REPUBLISH_MS = 6 * 3600 * 1000;
/** The database setting that keeps the sequence number of the last card signed. */
const CARD_SEQ_META = "card_seq";
const CARD_CACHE_MS = 30_000;
const CARD_LOOKUP_ATTEMPTS = 2;
const CARD_LOOKUP_RETRY_MS = 250;

/** Incoming messages kept for `messages()` while no iterator waits. */
const MAX_QUEUED_MESSAGES = 10_000;

function parseContactString(text: string): { id: string; bootstrap: string[] } {
  // IDs are case-insensitive when typed; the canonical form is lower case.
  const trimmed = text.trim();
  if (!/^dim:/i.test(trimmed)) return { id: trimmed.toLowerCase(), bootstrap: [] };
  let url: URL;
  try {
    url = new URL(trimmed);
  } catch (cause) {
    throw new InvalidIdError("Cannot parse contact string: it is not a valid dim: URI", { cause });
  }
  return { id: url.pathname.toLowerCase(), bootstrap: url.searchParams.getAll("bootstrap") };
}

/**
 * Makes a `dim:` contact string that carries a user ID and, optionally,
 * addresses to join the network through.
 *
 * @param id The user ID.
 * @param bootstrap Multiaddrs to include.
 * @returns The contact string.
 */
export function contactString(id: string, bootstrap: readonly string[] = []): string {
  const params = new URLSearchParams();
  for (const b of bootstrap) params.append("bootstrap", b);
  const q = params.toString();
  return `dim:${id}${q ? `?${q}` : ""}`;
}

/** One user's DIM: identity, database, node and messaging. */
export class Messenger extends EventTarget implements AsyncDisposable {
  readonly #identity: Identity;
  readonly #db: UserStore;
  readonly #node: DhtNode;
  readonly #service: MessagingService;
  readonly #book: ContactBook;
  readonly #files: FileReceiver;
  readonly #sessions: SessionManager;
  readonly #lock: DataDirLock;
  readonly #clock: () => number;
  #displayName: string;
  #cards = new Map<string, { card: ContactCard; at: number }>();
  #republish: ReturnType<typeof setInterval> | undefined;
  #closed = false;
  #queue: ChatMessage[] = [];
  #waiters: ((m: ChatMessage | undefined) => void)[] = [];

  private constructor(
    identity: Identity,
    db: UserStore,
    node: DhtNode,
    lock: DataDirLock,
    box: SecretBox,
    options: MessengerOptions,
  ) {
    super();
    this.#identity = identity;
    this.#db = db;
    this.#node = node;
    this.#lock = lock;
    this.#clock = options.clock ?? Date.now;
    this.#book = new ContactBook(db.contacts);
    this.#files = new FileReceiver(identity, {
      accept: (offer) => this.#acceptFile(offer, options.downloadDir),
      onReceived: (file) => this.dispatchEvent(new CustomEvent("file", { detail: file })),
      onFailed: (error, offer) =>
        this.dispatchEvent(new CustomEvent("file-failed", { detail: { error, offer } })),
      ...(options.maxFileSize === undefined ? {} : { maxFileSize: options.maxFileSize }),
    });
    this.#displayName = db.settings.get("display_name") ?? "DIM user";
    this.#sessions = new SessionManager(
      {
        identity,
        storage: db,
        box,
        fetchBundle: (id, o) => this.#fetchBundle(id, o),
      },
      {
        clock: this.#clock,
        onPrekeysChanged: () => this.publishPrekeys().catch(() => {}),
      },
    );
    this.#service = new MessagingService(
      {
        identity,
        storage: db,
        transport: transportFor(node),
        resolve: (id, o) => this.#resolvePeer(id, o),
        sessions: this.#sessions,
      },
      { clock: this.#clock, ...options.messaging },
    );
    this.#service.addEventListener("message", (e) => {
      const d = (e as CustomEvent).detail;
      if (d.type !== "message") return;
      const m = this.#toChat(d.incoming.message);
      this.dispatchEvent(new CustomEvent("message", { detail: m }));
      const w = this.#waiters.shift();
      if (w) w(m);
      else {
        // Programs that only listen to events never drain the queue; the
        // history keeps everything anyway.
        if (this.#queue.length >= MAX_QUEUED_MESSAGES) this.#queue.shift();
        this.#queue.push(m);
      }
    });
    for (const type of ["delivered", "stored"] as const) {
      this.#service.addEventListener(type, (e) => {
        const d = (e as CustomEvent).detail as { seq: number };
        const row = this.#db.messages.get(d.seq);
        if (row) this.dispatchEvent(new CustomEvent("status", { detail: this.#toChat(row) }));
      });
    }
  }

  /**
   * Creates a new identity in `home`, then opens it.
   *
   * @param options Where, the passphrase and the display name.
   * @returns The open messenger.
   * @throws {KeystoreError} If an identity exists and `force` is not set.
   */
  static async create(options: CreateMessengerOptions): Promise<Messenger> {
    await ensureHome(options.home);
    const paths = dataPaths(options.home);
    const lock = lockDataDir(options.home);
    let db: UserStore | undefined;
    try {
      const identity = await Identity.generate();
      await createKeystore(paths.identityKey, identity, options.passphrase, {
        force: options.force ?? false,
      });
      db = UserStore.open(paths.database);
      db.settings.set("display_name", options.displayName);
      return await Messenger.#launch(identity, db, lock, options);
    } catch (err) {
      db?.close();
      lock.release();
      throw err;
    }
  }

  /**
   * Unlocks the identity in `home`, opens the database, starts the node,
   * publishes the contact card and starts messaging.
   *
   * @param options Where, the passphrase, and network options.
   * @returns The open messenger.
   * @throws {KeystoreError} On a missing identity or wrong passphrase.
   * @throws {StorageError} If the data directory is in use or unreadable.
   */
  static async open(options: MessengerOptions): Promise<Messenger> {
    await ensureHome(options.home);
    const paths = dataPaths(options.home);
    const lock = lockDataDir(options.home);
    let db: UserStore | undefined;
    try {
      const identity = await unlockKeystore(paths.identityKey, options.passphrase);
      db = UserStore.open(paths.database);
      return await Messenger.#launch(identity, db, lock, options);
    } catch (err) {
      db?.close();
      lock.release();
      throw err;
    }
  }

  /** Starts the node and messaging for an unlocked identity; stops the node on failure. */
  static async #launch(
    identity: Identity,
    db: UserStore,
    lock: DataDirLock,
    options: MessengerOptions,
  ): Promise<Messenger> {
    const node = await createDhtNode({
      listen: options.listen ?? ["/ip4/0.0.0.0/tcp/0"],
      bootstrap: options.bootstrap ?? [],
      dataDir: options.home,
      validators: { dim: dimValidator },
      selectors: { dim: dimSelector },
      ...(options.clock ? { clock: options.clock } : {}),
      ...options.node,
    });
    try {
      const box = await SecretBox.forIdentity(identity);
      const messenger = new Messenger(identity, db, node, lock, box, options);
      await messenger.#service.start();
      await messenger.#files.start(transportFor(node));
      if (options.publish ?? true) {
        await messenger.publishCard().catch(() => {});
        messenger.#republish = setInterval(
          () => messenger.publishCard().catch(() => {}),
          CARD_REPUBLISH_MS,
        );
        Deno.unrefTimer(messenger.#republish as unknown as number);
        messenger.#service.fetchMailbox(true).catch(() => {});
      }
      return messenger;
    } catch (err) {
      await node.stop().catch(() => {});
      throw err;
    }
  }

  /** This user's ID. */
  get id(): string {
    return this.#identity.id;
  }

  /** This user's public keys. */
  get identity(): PublicIdentity {
    return this.#identity.public;
  }

  /** The display name in this user's card. */
  get displayName(): string {
    return this.#displayName;
  }

  /** The DIM node. */
  get node(): DhtNode {
    return this.#node;
  }

  /** The node's multiaddrs, each with `/p2p/<peer id>`. */
  get addresses(): string[] {
    return this.#node.multiaddrs;
  }

  /**
   * The short fingerprint of this user's keys.
   *
   * @returns Five groups of four hex digits.
   */
  fingerprint(): string {
    return fingerprint(this.#identity.public);
  }

  /**
   * Signs and publishes this user's contact card in the DHT.
   *
   * @param options `signal` to abort.
   */
  async publishCard(options: { readonly signal?: AbortSignal } = {}): Promise<void> {
    const now = this.#clock();
    // Storage nodes keep the card with the highest sequence number: after the
    // clock was set back, a card numbered by the clock alone would be refused
    // everywhere and the old addresses served until the clock caught up.
    const seq = Math.max(now, Number(this.#db.settings.get(CARD_SEQ_META) ?? 0) + 1);
    const record = await signCard(this.#identity, {
      displayName: this.#displayName,
      peerId: this.#node.peerId,
      addresses: publicAddresses(this.#node.multiaddrs),
      now,
      seq,
    });
    this.#db.settings.set(CARD_SEQ_META, String(seq));
    await this.#node.put(record.key, record.bytes, options);
    await this.publishPrekeys(options);
  }

  /**
   * Publishes this user's prekey bundle (rotating and refilling prekeys as
   * due), so others can start forward-secret sessions, even while this user
   * is offline.
   *
   * @param options `signal` to abort.
   */
  async publishPrekeys(options: { readonly signal?: AbortSignal } = {}): Promise<void> {
    const record = await this.#sessions.prekeyBundle();
    await this.#node.put(record.key, record.bytes, options);
  }

  async #fetchBundle(id: string, options: { readonly signal: AbortSignal }) {
    const key = recordKey(PREKEY_RECORD_TYPE, decodeUserId(id));
    const bytes = await this.#node.get(key, { signal: options.signal });
    if (bytes === undefined) return undefined;
    return await openPrekeyBundle(bytes, { key, now: this.#clock() });
  }

  /**
   * Looks a user's card up in the DHT and checks it.
   *
   * @param id The user ID.
   * @param options `signal` to abort; `fresh` to skip the 30-second cache.
   * @returns The card with the highest valid sequence number.
   * @throws {InvalidIdError} If the ID is malformed.
   * @throws {PeerUnreachableError} If no valid card is found.
   */
  async resolveCard(
    id: string,
    options: { readonly signal?: AbortSignal; readonly fresh?: boolean } = {},
  ): Promise<ContactCard> {
    const key = recordKey(CARD_RECORD_TYPE, decodeUserId(id));
    const cached = this.#cards.get(id);
    if (cached && !options.fresh && this.#clock() - cached.at < CARD_CACHE_MS) return cached.card;
    let bytes: Uint8Array | undefined;
    let failure: unknown;
    // A lookup that meets only peers who just left, or starts from a routing
    // table still filling, can miss; a second lookup takes other paths.
    for (let attempt = 0; attempt < CARD_LOOKUP_ATTEMPTS && bytes === undefined; attempt++) {
      if (attempt > 0) {
        await delay(CARD_LOOKUP_RETRY_MS, options.signal ? { signal: options.signal } : {});
      }
      try {
        bytes = await this.#node.get(key, options.signal ? { signal: options.signal } : {});
      } catch (cause) {
        options.signal?.throwIfAborted();
        failure = cause;
      }
    }
    if (bytes === undefined) {
      throw new PeerUnreachableError(
        `Cannot find ${id}: no card in the network`,
        failure === undefined ? undefined : { cause: failure },
      );
    }
    const card = await openCard(bytes, { key, now: this.#clock() });
    this.#cards.set(id, { card, at: this.#clock() });
    this.#noteCard(card);
    return card;
  }

  #noteCard(card: ContactCard): void {
    const row = this.#db.contacts.getById(card.id);
    if (row === undefined || card.seq < (row.cardSeq ?? 0)) return;
    const changed = !constantTimeEqual(row.encryptionPublicKey, card.encryptionPublicKey);
    this.#db.contacts.upsert({
      ...row,
      displayName: card.displayName,
      peerId: card.peerId,
      addresses: card.addresses,
      cardSeq: card.seq,
      changedEncryptionKey: changed ? card.encryptionPublicKey : undefined,
    });
  }

  async #resolvePeer(id: string, options: { readonly signal: AbortSignal }): Promise<PeerTarget> {
    const card = await this.resolveCard(id, options);
    return { peerId: card.peerId, addresses: card.addresses };
  }

  /**
   * Finds a user's card and pins their keys under a local name (trust on first use).
   *
   * @param name The local name.
   * @param idOrUri A user ID or `dim:` contact string.
   * @param options `signal` to abort.
   * @returns The new contact.
   * @throws {InvalidIdError} If the ID is malformed or mistyped.
   * @throws {PeerUnreachableError} If the card cannot be found.
   */
  async addContact(
    name: string,
    idOrUri: string,
    options: { readonly signal?: AbortSignal } = {},
  ): Promise<Contact> {
    const { id, bootstrap } = parseContactString(idOrUri);
    decodeUserId(id);
    if (name.trim() === "" || /\s/.test(name)) {
      throw new InvalidIdError("Cannot add contact: the name must be one word");
    }
    const byName = this.#db.contacts.get(name);
    if (byName !== undefined && byName.userId !== id) {
      throw new DimError(`Cannot add contact: the name "${name}" is taken by another user`);
    }
    const byId = this.#db.contacts.getById(id);
    if (byId !== undefined && byId.name !== name) {
      throw new DimError(`Cannot add contact: this user is already saved as "${byId.name}"`);
    }
    for (const addr of bootstrap) await this.#node.dial(addr, options).catch(() => {});
    // Resolving also records a key change for an existing contact; the
    // pinned keys themselves change only through verifyContact.
    const card = await this.resolveCard(id, options);
    if (byId !== undefined) return this.contact(name);
    this.#db.contacts.upsert({
      name,
      userId: id,
      signingPublicKey: card.signingPublicKey,
      encryptionPublicKey: card.encryptionPublicKey,
      displayName: card.displayName,
      peerId: card.peerId,
      addresses: card.addresses,
      cardSeq: card.seq,
      verified: false,
      addedAt: this.#clock(),
    });
    return this.contact(name);
  }

  /**
   * A contact by local name or user ID.
   *
   * @param nameOrId The local name or user ID.
   * @returns The contact.
   * @throws {UnknownContactError} If there is none.
   */
  contact(nameOrId: string): Contact {
    return this.#book.contact(nameOrId);
  }

  #row(nameOrId: string): StoredContact {
    return this.#book.row(nameOrId);
  }

  /**
   * All contacts, by name.
   *
   * @returns The contacts.
   */
  contacts(): Contact[] {
    return this.#book.list();
  }

  /**
   * Forgets a contact (the history stays).
   *
   * @param name The local name.
   * @returns Whether a contact was removed.
   */
  removeContact(name: string): boolean {
    return this.#book.remove(name);
  }

  /**
   * The safety number of this user and a contact, to compare out of band.
   *
   * @param nameOrId The contact.
   * @returns 60 digits in 12 groups.
   * @throws {UnknownContactError} If there is no such contact.
   */
  safetyNumber(nameOrId: string): string {
    return this.#book.safetyNumber(this.#identity.public, nameOrId);
  }

  /**
   * Marks a contact verified; if their keys changed, accepts the new keys.
   *
   * @param nameOrId The contact.
   * @returns The contact as it is now.
   * @throws {UnknownContactError} If there is no such contact.
   */
  verifyContact(nameOrId: string): Contact {
    return this.#book.verify(nameOrId);
  }

  /**
   * Sends a file to a contact who is online, streamed and encrypted chunk by
   * chunk; returns once the recipient has verified the whole file and signed
   * a receipt. Files never go through the network mailbox.
   *
   * @param nameOrId The contact.
   * @param path The file to send.
   * @param options `signal`, progress callback, chunk size and timeouts.
   * @returns What was sent, with its SHA-256 and the recipient's receipt.
   * @throws {UnknownContactError} If there is no such contact.
   * @throws {KeyChangedError} If the contact's keys changed and were not re-verified.
   * @throws {TransferRefusedError} If the recipient refused or the file arrived damaged.
   * @throws {PeerUnreachableError} If the contact is not online.
   */
  async sendFile(
    nameOrId: string,
    path: string,
    options: SendFileOptions = {},
  ): Promise<SentFile> {
    const row = this.#row(nameOrId);
    if (row.changedEncryptionKey !== undefined) {
      throw new KeyChangedError(
        `Cannot send to ${row.name}: their keys changed; verify them again (dim contact verify ${row.name})`,
      );
    }
    const peer = await this.#resolvePeer(row.userId, {
      signal: options.signal ?? AbortSignal.timeout(30_000),
    });
    return await sendFile(transportFor(this.#node), {
      identity: this.#identity,
      recipient: { userId: row.userId, encryptionPublicKey: row.encryptionPublicKey, peer },
      source: await fileSource(path),
    }, options);
  }

  async #acceptFile(
    offer: FileOffer,
    dir: string | undefined,
  ): Promise<WritableStream<Uint8Array> | undefined> {
    const contact = this.#db.contacts.getById(offer.senderId);
    if (dir === undefined || contact === undefined) return undefined;
    if (contact.changedEncryptionKey !== undefined) return undefined;
    await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
    return fileSink(await freeName(dir, offer.name));
  }

  /**
   * Sends a text message to a contact. It is stored and queued at once, then
   * delivered directly or through the network mailbox; watch `status` events.
   *
   * @param nameOrId The contact.
   * @param text The message.
   * @returns The stored message (state "pending").
   * @throws {UnknownContactError} If there is no such contact.
   * @throws {KeyChangedError} If the contact's keys changed and were not re-verified.
   */
  async send(nameOrId: string, text: string): Promise<ChatMessage> {
    const row = this.#row(nameOrId);
    if (row.changedEncryptionKey !== undefined) {
      throw new KeyChangedError(
        `Cannot send to ${row.name}: their keys changed; verify them again (dim contact verify ${row.name})`,
      );
    }
    const stored = await this.#service.send(
      { userId: row.userId, encryptionPublicKey: row.encryptionPublicKey },
      utf8(text),
      TEXT_CONTENT_TYPE,
    );
    return this.#toChat(stored);
  }

  /**
   * Waits until a sent message is delivered (or stored offline, if `orStored`).
   *
   * @param seq The message's local sequence number.
   * @param options `signal` to stop waiting; `orStored` to accept a mailbox copy.
   * @returns The message in its new state.
   */
  waitFor(
    seq: number,
    options: { readonly signal?: AbortSignal; readonly orStored?: boolean } = {},
  ): Promise<ChatMessage> {
    const done = (state: MessageState) =>
      state === "delivered" || (options.orStored === true && state === "stored");
    return new Promise((resolve, reject) => {
      const check = (event?: Event) => {
        // Each status event names one message: only its own costs a read.
        const about = (event as CustomEvent<ChatMessage> | undefined)?.detail?.seq;
        if (about !== undefined && about !== seq) return;
        const row = this.#db.messages.get(seq);
        if (row && done(row.state)) {
          cleanup();
          resolve(this.#toChat(row));
        }
      };
      const onAbort = () => {
        cleanup();
        reject(options.signal?.reason);
      };
      const cleanup = () => {
        this.removeEventListener("status", check);
        options.signal?.removeEventListener("abort", onAbort);
      };
      this.addEventListener("status", check);
      options.signal?.addEventListener("abort", onAbort, { once: true });
      check();
    });
  }

  /**
   * Fetches pending messages from the network mailbox now.
   *
   * @returns How many new messages arrived.
   */
  fetchMailbox(): Promise<number> {
    return this.#service.fetchMailbox(true);
  }

  /**
   * The recent conversation with a contact or user ID, oldest first.
   *
   * @param nameOrId The contact or user ID.
   * @param options `limit`: how many (default 50).
   * @returns The messages.
   */
  history(nameOrId: string, options: { readonly limit?: number } = {}): ChatMessage[] {
    const peer = this.#book.find(nameOrId)?.userId ?? nameOrId.trim().toLowerCase();
    return this.#db.messages.history(peer, options).map((m) => this.#toChat(m));
  }

  /**
   * The messages not yet acknowledged, oldest first.
   *
   * @returns The pending and offline-stored messages.
   */
  outbox(): ChatMessage[] {
    return this.#db.outbox.list().flatMap((e) => {
      const m = this.#db.messages.get(e.messageSeq);
      return m ? [this.#toChat(m)] : [];
    });
  }

  /**
   * Incoming messages as they arrive, until the messenger closes.
   *
   * @returns An async iterable of messages.
   */
  async *messages(): AsyncGenerator<ChatMessage> {
    while (!this.#closed) {
      const next = this.#queue.shift() ??
        await new Promise<ChatMessage | undefined>((r) => this.#waiters.push(r));
      if (next === undefined) return;
      yield next;
    }
  }

  #toChat(m: StoredMessage): ChatMessage {
    return chatMessage(m, this.#db.contacts.getById(m.peer));
  }

  /** Stops messaging and the node, closes the database and releases the data directory. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#republish !== undefined) clearInterval(this.#republish);
    for (const w of this.#waiters.splice(0)) w(undefined);
    try {
      await this.#files.stop();
      await this.#service.stop();
      await this.#node.stop();
    } finally {
      this.#db.close();
      this.#lock.release();
    }
  }

  /** Same as {@linkcode Messenger.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/**
 * A stored message as the messenger shows it.
 *
 * @param m The stored message.
 * @param contact The contact it is with, if any.
 * @returns The message; non-text content gets a placeholder text.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { chatMessage } from "./messenger.ts";
 * const m = chatMessage({
 *   seq: 1, id: new Uint8Array(16), peer: "dimx", direction: "in", sentAt: 0, receivedAt: 0,
 *   contentType: 1, body: new TextEncoder().encode("hi"), state: "received", via: "direct",
 *   protection: "ratchet",
 * }, undefined);
 * assert.equal(m.text, "hi");
 * assert.equal(m.contact, undefined);
 * ```
 */
export function chatMessage(m: StoredMessage, contact: StoredContact | undefined): ChatMessage {
  let text: string;
  if (m.contentType !== TEXT_CONTENT_TYPE) {
    text = `[a message of content type ${m.contentType}, which this dim cannot show]`;
  } else {
    try {
      text = fromUtf8(m.body);
    } catch {
      text = "\uFFFD";
    }
  }
  return {
    seq: m.seq,
    id: toHex(m.id),
    direction: m.direction,
    peer: m.peer,
    contact: contact?.name,
    verified: contact?.verified ?? false,
    text,
    sentAt: m.sentAt,
    state: m.state,
    via: m.via,
    protection: m.protection,
  };
}

/** A path in `dir` for `name` that does not exist yet: `name`, `stem (1).ext`, … */
async function freeName(dir: string, name: string): Promise<string> {
  const dot = name.lastIndexOf(".");
  const stem = dot > 0 ? name.slice(0, dot) : name;
  const ext = dot > 0 ? name.slice(dot) : "";
  for (let i = 0; i < 1000; i++) {
    const candidate = `${dir}/${i === 0 ? name : `${stem.slice(0, 200)} (${i})${ext}`}`;
    try {
      await Deno.lstat(candidate);
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return candidate;
      throw err;
    }
  }
  throw new DimError(`Cannot save file ${name}: too many files of that name in ${dir}`);
}

/** Drops wildcard addresses, which no peer can dial. */
function publicAddresses(addrs: readonly string[]): string[] {
  return addrs.filter((a) => !a.includes("/0.0.0.0/") && !a.includes("/::/")).slice(0, 16);
}

/** The XOR distance of a peer from a key in Kademlia's key space. */
function kadDistance(peerId: string, keyHash: Uint8Array): Uint8Array {
  const peerHash = sha256(peerIdFromString(peerId).toMultihash().bytes);
  return peerHash.map((b, i) => b ^ keyHash[i]!);
}

/**
 * Adapts a DIM node to the transport the messaging layer needs.
 *
 * @param node The node.
 * @returns The transport.
 */
export function transportFor(node: DhtNode): MessagingTransport {
  return {
    get peerId() {
      return node.peerId;
    },
    handle: (protocol, handler) =>
      node.handle(protocol, (stream, remotePeer) => handler(stream, remotePeer)),
    unhandle: (protocol) => node.unhandle(protocol),
    openStream: (peer, protocol, options) =>
      node.dialProtocol({ peerId: peer.peerId, multiaddrs: peer.addresses }, protocol, options),
    closestPeers: async (key, options) => {
      // Sorted by distance here, with this node among them, so sender and
      // recipient pick the same nodes whatever order the query met them in.
      const keyHash = sha256(key);
      const found = await node.getClosestPeers(key, options);
      const peers = [...found.map((p) => ({ peerId: p.peerId, addresses: p.multiaddrs })), {
        peerId: node.peerId,
        addresses: [] as readonly string[],
      }];
      return peers
        .map((p) => ({ p, d: kadDistance(p.peerId, keyHash) }))
        .sort((a, b) => compareBytes(a.d, b.d))
        .slice(0, options.count)
        .map(({ p }) => p);
    },
  };
}

export { KeystoreError, UnknownContactError };
export type { Contact };
