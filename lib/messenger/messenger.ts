/**
 * The messenger: a {@linkcode Profile} on the network. It starts a DIM node
 * in the profile's data directory, publishes the user's contact card and
 * prekeys, and sends and receives messages and files; contacts, history and
 * settings stay the profile's (`messenger.profile`).
 *
 * @example Two users on one machine
 * ```ts ignore
 * import { createProfile } from "../profile/profile.ts";
 * import { createMessenger } from "./messenger.ts";
 *
 * const alice = await createMessenger(
 *   await createProfile({
 *     home: "/tmp/alice",
 *     passphrase: "plum vortex quietly sings",
 *     displayName: "Alice",
 *   }),
 * );
 * const bob = await createMessenger(
 *   await createProfile({
 *     home: "/tmp/bob",
 *     passphrase: "amber kettle drifts north",
 *     displayName: "Bob",
 *   }),
 *   { bootstrap: alice.addresses },
 * );
 * await alice.addContact("bob", bob.id);
 * await alice.send("bob", "hello");
 * for await (const m of bob.messages()) {
 *   console.log(m.text);
 *   break;
 * }
 * await alice.stop();
 * await bob.stop();
 * ```
 *
 * @module
 */
import { join } from "node:path";
import { utf8 } from "../platform/bytes.ts";
import { CounterFile } from "../platform/counter_file.ts";
import { SecretBox } from "../crypto/secret_box.ts";
import { DEFAULT_LISTEN } from "../dht/constants.ts";
import { isPublicAddress } from "../dht/public_networks.ts";
import { createDhtNode, type DhtNode } from "../dht/node.ts";
import { DimError } from "../errors.ts";
import {
  type MessagingEventDetail,
  MessagingService,
  type QueuedFile,
  type SendFileOptions,
  type SentFile,
  SessionManager,
  type SessionRollback,
} from "../messaging/mod.ts";
import type { ContactCard } from "../record/card.ts";
import { dimSelector, dimValidator } from "../record/record.ts";
import { type ChatMessage, chatMessage, TEXT_CONTENT_TYPE } from "../profile/chat_message.ts";
import { parseContactString } from "../profile/contact_string.ts";
import type { Contact } from "../profile/contacts.ts";
import type { Profile } from "../profile/profile.ts";
import { type ProfileParts, profileParts } from "../profile/_internals.ts";
import { CARD_REPUBLISH_MS, Cards, type SignalOptions } from "./cards.ts";
import type { FileDelivery } from "./file_queue.ts";
import { MessengerFiles } from "./files.ts";
import { type GroupChats, type GroupInfo, MessengerGroups, type VerifiedMember } from "./groups.ts";
import type { FileQueueEntry } from "../store/file_queue_store.ts";
import { Republisher } from "./republish.ts";
import { type MessengerOptions, reachOptions } from "./options.ts";
import { transportFor } from "./transport.ts";

export type { SignalOptions } from "./cards.ts";
export type { MessengerOptions } from "./options.ts";
export type { GroupChats, GroupInfo, GroupMember, VerifiedMember } from "./groups.ts";

/** Incoming messages kept for `messages()` while no iterator waits. */
const MAX_QUEUED_MESSAGES = 10_000;
/**
 * The file in the data directory that keeps the high-water mark of session
 * saves, outside `dim.db` (see `SessionManager`): a separate small file, not
 * the keystore, since rewriting the keystore needs the passphrase-derived
 * key, and the mark needs no secrecy, only to be elsewhere than `dim.db`.
 */
const SESSION_MARK_FILE = "sessions.mark";

/**
 * Says what a session rollback found and did, for people.
 *
 * @param home The data directory.
 * @param rollback What the start found.
 * @returns One sentence.
 */
export function sessionRollbackMessage(home: string, rollback: SessionRollback): string {
  const { saves, mark, dropped } = rollback;
  return `${home}/dim.db is older than its session mark (${saves} saves, mark ` +
    `${mark ?? "missing"}): it was put back to an older copy. ${dropped} sessions were ` +
    "dropped so that no message key is used twice; the next message to each contact starts " +
    "a new session.";
}

/**
 * Starts a messenger on a profile: the DIM node in the profile's data
 * directory (joining through `bootstrap`), messaging, file reception, and,
 * unless `publish` is false, the contact card and a first mailbox fetch.
 *
 * The messenger takes the profile over: stopping the messenger, or a failed
 * start, stops the profile too.
 *
 * @param profile An unlocked profile, opened exclusive.
 * @param options Network options.
 * @returns The running messenger; stop it when done.
 * @throws {ProfileLockedError} If the profile is locked.
 * @throws {TypeError} If the profile was opened with `exclusive: false`.
 * @throws {PeerUnreachableError} If the node must join through bootstrap nodes and none answers.
 */
export async function createMessenger(
  profile: Profile,
  options: MessengerOptions = {},
): Promise<Messenger> {
  let node: DhtNode | undefined;
  try {
    const parts = profileParts(profile);
    if (!parts.exclusive) {
      throw new TypeError("Cannot start a messenger on a profile opened with exclusive: false");
    }
    const box = await SecretBox.forIdentity(parts.identity());
    node = await createDhtNode({
      listen: options.listen ?? DEFAULT_LISTEN,
      bootstrap: options.bootstrap ?? [],
      dataDir: profile.home,
      validators: { dim: dimValidator },
      selectors: { dim: dimSelector },
      ...(options.clock ? { clock: options.clock } : {}),
      ...reachOptions(options),
      ...options.node,
    });
    const messenger = new Messenger(profile, node, box, options);
    await messenger.start();
    return messenger;
  } catch (err) {
    await node?.stop().catch(() => {});
    await profile.stop();
    throw err;
  }
}

/**
 * One user's DIM online: their profile, node, messaging and file transfer.
 * Its events (`CustomEvent`s): `message`, `sent` (a message this user just
 * sent) and `status` (a `ChatMessage` each), `file` (a `ReceivedFile`),
 * `file-failed` (`{ error, offer }`), `file-progress` (an incoming file's
 * `TransferProgress` with its `senderId`) and `queued-file` (a
 * `FileQueueEvent`).
 */
export class Messenger extends EventTarget implements AsyncDisposable {
  /** The offline half: identity, contacts, history, settings. */
  readonly profile: Profile;
  readonly #parts: ProfileParts;
  readonly #node: DhtNode;
  readonly #service: MessagingService;
  /** Files received and sent, left in mailboxes or queued on this device. */
  readonly #files: MessengerFiles;
  /** Group chats. */
  readonly #groups: MessengerGroups;
  readonly #sessions: SessionManager;
  readonly #cards: Cards;
  readonly #clock: () => number;
  readonly #publish: boolean;
  #republish: ReturnType<typeof setInterval> | undefined;
  readonly #onAddresses: Republisher;
  readonly #addressListener = () => this.#onAddresses.changed();
  /** Whether the node has no connection: what is queued waits for the first peer. */
  #alone = false;
  readonly #connectListener = () => {
    if (!this.#alone || this.#stopped) return;
    this.#alone = false;
    // Back in touch with the network: the queue goes now, not after its backoff.
    this.#service.flushOutbox({ all: true }).catch(() => {});
    this.#service.fetchMailbox({ refresh: true }).catch(() => {});
    // Copies left in mailboxes before may have lost their holders meanwhile.
    this.#service.recheckMailboxCopies({ all: true }).catch(() => {});
    this.#files.retryQueued();
  };
  readonly #disconnectListener = () => {
    if (this.#node.connections === 0) this.#alone = true;
  };
  #started: Promise<void> | undefined;
  #stopped = false;
  #queue: ChatMessage[] = [];
  #waiters: ((m: ChatMessage | undefined) => void)[] = [];
  /**
   * The calls of {@linkcode Messenger.waitFor} waiting, by message: a status
   * event reaches only its message's, so thousands of waits cost no more
   * per event than one.
   */
  #statusWaiters = new Map<number, Set<(m: ChatMessage) => void>>();
  /** Each signal that `waitFor` calls wait with: one abort listener for all of them. */
  #abortWaiters = new WeakMap<AbortSignal, Set<() => void>>();

  /**
   * Use {@linkcode createMessenger}.
   *
   * @ignore
   */
  constructor(profile: Profile, node: DhtNode, box: SecretBox, options: MessengerOptions) {
    super();
    this.profile = profile;
    this.#parts = profileParts(profile);
    const { store, book } = this.#parts;
    const identity = this.#parts.identity();
    this.#node = node;
    this.#clock = options.clock ?? Date.now;
    this.#publish = options.publish ?? true;
    const publicNetworks = options.node?.publicNetworks ?? options.publicNetworks ?? [];
    this.#cards = new Cards({
      identity,
      node,
      book,
      settings: store.settings,
      displayName: () => profile.displayName,
      prekeyBundle: () => this.#sessions.prekeyBundle(),
      clock: this.#clock,
      isPublic: (address) => isPublicAddress(address, publicNetworks),
    });
    this.#onAddresses = new Republisher(() => this.publishCard());
    this.#sessions = new SessionManager(
      {
        identity,
        storage: store,
        box,
        fetchBundle: (id, o) => this.#cards.fetchBundle(id, o),
      },
      {
        clock: this.#clock,
        onPrekeysChanged: () => this.#cards.prekeysUsed(),
        // Beside dim.db, outside it: a copy of dim.db put back alone is found out.
        mark: new CounterFile(join(profile.home, SESSION_MARK_FILE)),
        // Said only when there was something to drop (not for a new, empty dim.db).
        onRollback: (rollback) => {
          if (rollback.dropped === 0) return;
          if (options.onSessionRollback !== undefined) return options.onSessionRollback(rollback);
          console.warn(`warning: ${sessionRollbackMessage(profile.home, rollback)}`);
        },
      },
    );
    this.#service = new MessagingService(
      {
        identity,
        storage: store,
        transport: transportFor(node),
        resolve: (id, o) => this.#cards.resolvePeer(id, o),
        sessions: this.#sessions,
        openWrap: (bytes) => this.#groups.openWrap(bytes),
        knownKey: (userId) => this.#groups.memberKey(userId),
      },
      { clock: this.#clock, ...options.messaging },
    );
    this.#files = new MessengerFiles({
      identity: () => this.#parts.identity(),
      book,
      store,
      node,
      cards: this.#cards,
      service: this.#service,
      clock: this.#clock,
      downloadDir: options.downloadDir,
      maxFileSize: options.maxFileSize,
      dispatch: (type, detail) => this.dispatchEvent(new CustomEvent(type, { detail })),
    });
    this.#groups = new MessengerGroups({
      identity: () => this.#parts.identity(),
      store,
      book,
      service: this.#service,
      clock: this.#clock,
      onMessage: (m) => this.#push(m),
    });
    this.#service.addEventListener("message", (e) => {
      const d = (e as CustomEvent).detail;
      if (d.type !== "message") return;
      const m = chatMessage(d.incoming.message, store.contacts.getById(d.incoming.message.peer));
      // Someone just wrote: files waiting for them may go now.
      this.#files.retryQueuedFor(m.peer);
      this.#push(m);
    });
    // The layer's own content types: group changes, keys and messages, or file parts.
    this.#service.addEventListener("file-part", (e) => {
      const d = (e as CustomEvent).detail as MessagingEventDetail;
      if (d.type === "file-part" && !this.#groups.take(d.incoming)) {
        this.#files.takePart(d.incoming);
      }
    });
    // The nodes keeping this user's mailbox: join candidates on a later start.
    this.#service.addEventListener("mailbox", (e) => {
      const d = (e as CustomEvent).detail as MessagingEventDetail;
      if (d.type !== "mailbox") return;
      const addresses = d.holders.flatMap(({ peerId, addresses }) =>
        addresses.filter((a) => !a.includes("/p2p-circuit")).slice(0, 1).map((a) =>
          a.endsWith(`/p2p/${peerId}`) ? a : `${a}/p2p/${peerId}`
        )
      );
      if (addresses.length > 0) node.peerBook.addJoinHints(addresses, `mailbox:${this.id}`);
    });
    for (const type of ["delivered", "stored"] as const) {
      this.#service.addEventListener(type, (e) => {
        const d = (e as CustomEvent).detail as { seq: number };
        const m = this.profile.message(d.seq);
        if (m === undefined) return;
        this.dispatchEvent(new CustomEvent("status", { detail: m }));
        for (const check of this.#statusWaiters.get(m.seq) ?? []) check(m);
      });
    }
  }

  /**
   * Starts messaging and file reception; unless `publish` was false,
   * publishes the card (and keeps it published) and fetches the mailbox.
   * {@linkcode createMessenger} has called it already. Idempotent.
   *
   * @throws {DimError} If the messenger was stopped.
   */
  start(): Promise<void> {
    if (this.#stopped) return Promise.reject(new DimError("Cannot start a stopped messenger"));
    this.#started ??= this.#start();
    return this.#started;
  }

  #push(m: ChatMessage): void {
    this.dispatchEvent(new CustomEvent("message", { detail: m }));
    const w = this.#waiters.shift();
    if (w) w(m);
    else {
      // Programs that only listen to events never drain the queue; the
      // history keeps everything anyway.
      if (this.#queue.length >= MAX_QUEUED_MESSAGES) this.#queue.shift();
      this.#queue.push(m);
    }
  }

  async #start(): Promise<void> {
    this.#alone = this.#node.connections === 0;
    await this.#groups.load();
    this.#node.addEventListener("peer:connect", this.#connectListener);
    this.#node.addEventListener("peer:disconnect", this.#disconnectListener);
    await this.#service.start();
    await this.#files.start();
    if (!this.#publish) return;
    // New relay addresses, a UPnP mapping or a new reachability change what
    // the card should list (see card_addresses.ts). Listening before the
    // first publication: a change while it runs (the first reachability
    // check, the first reservations) is published after it.
    for (const type of ["addresses", "reachability"]) {
      this.#node.addEventListener(type, this.#addressListener);
    }
    await this.publishCard().catch(() => {});
    this.#republish = setInterval(() => this.publishCard().catch(() => {}), CARD_REPUBLISH_MS);
    Deno.unrefTimer(this.#republish as unknown as number);
    this.#service.fetchMailbox({ refresh: true }).catch(() => {});
  }

  /** This user's ID (the profile's). */
  get id(): string {
    return this.profile.id;
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
   * Signs and publishes this user's contact card in the DHT, then the prekey bundle.
   *
   * @param options `signal` to abort.
   */
  publishCard(options: SignalOptions = {}): Promise<void> {
    return this.#cards.publishCard(options);
  }

  /**
   * Publishes this user's prekey bundle (rotating and refilling prekeys as
   * due), so others can start forward-secret sessions, even while this user
   * is offline.
   *
   * @param options `signal` to abort.
   */
  publishPrekeys(options: SignalOptions = {}): Promise<void> {
    return this.#cards.publishPrekeys(options);
  }

  /**
   * Looks a user's card up in the DHT and checks it; a contact's newer card
   * updates the contact (and records a key change).
   *
   * @param id The user ID.
   * @param options `signal` to abort; `fresh` to skip the 30-second cache.
   * @returns The card with the highest valid sequence number.
   * @throws {InvalidIdError} If the ID is malformed.
   * @throws {PeerUnreachableError} If no valid card is found.
   */
  resolveCard(
    id: string,
    options: SignalOptions & { readonly fresh?: boolean } = {},
  ): Promise<ContactCard> {
    return this.#cards.resolveCard(id, options);
  }

  /**
   * Finds a user's card and pins their keys under a local name (trust on first use).
   *
   * @param name The local name.
   * @param idOrUri A user ID or `dim:` contact string (whose addresses are dialled
   *   first, and kept as join hints of the node).
   * @param options `signal` to abort.
   * @returns The new contact.
   * @throws {InvalidIdError} If the ID is malformed or mistyped, or the name is not one word.
   * @throws {DimError} If the name or the user is saved for someone else.
   * @throws {PeerUnreachableError} If the card cannot be found.
   */
  async addContact(name: string, idOrUri: string, options: SignalOptions = {}): Promise<Contact> {
    const { id, bootstrap } = parseContactString(idOrUri);
    const existing = this.#parts.book.checkNew(name, id);
    // Before the dials, so that the node remembers where it learned of these
    // peers; they are dialled on later starts too, a few at most.
    if (bootstrap.length > 0) this.#node.peerBook.addJoinHints(bootstrap, `hint:${id}`);
    for (const addr of bootstrap) await this.#node.dial(addr, options).catch(() => {});
    // Resolving also records a key change for an existing contact; the
    // pinned keys themselves change only through verifyContact.
    const card = await this.resolveCard(id, options);
    if (existing !== undefined) return this.profile.contact(name);
    const contact = this.#parts.book.pin(name, card, this.#clock());
    this.#cards.rememberNode(card);
    return contact;
  }

  /**
   * Sends a text message to a contact. It is stored and queued at once, then
   * delivered directly or through the network mailbox; watch `status` events.
   *
   * @param nameOrId The contact.
   * @param text The message.
   * @param options `signal` to abort before the message is stored.
   * @returns The stored message (state "pending").
   * @throws {UnknownContactError} If there is no such contact.
   * @throws {KeyChangedError} If the contact's keys changed and were not verified again.
   */
  async send(nameOrId: string, text: string, options: SignalOptions = {}): Promise<ChatMessage> {
    const row = this.#parts.book.sendable(nameOrId);
    const stored = await this.#service.send(
      { userId: row.userId, encryptionPublicKey: row.encryptionPublicKey },
      utf8(text),
      { contentType: TEXT_CONTENT_TYPE, ...(options.signal ? { signal: options.signal } : {}) },
    );
    const sent = chatMessage(stored, row);
    this.dispatchEvent(new CustomEvent("sent", { detail: sent }));
    return sent;
  }

  /**
   * Sends a file to a contact who is online, streamed and encrypted chunk by
   * chunk; returns once the recipient has verified the whole file and signed
   * a receipt. It never goes through the network mailbox: to leave a file
   * of up to 4 MiB for a contact who is offline, see
   * {@linkcode Messenger.sendFileLater}.
   *
   * @param nameOrId The contact.
   * @param path The file to send.
   * @param options `signal`, progress callback, chunk size and timeouts.
   * @returns What was sent, with its SHA-256 and the recipient's receipt.
   * @throws {UnknownContactError} If there is no such contact.
   * @throws {KeyChangedError} If the contact's keys changed and were not verified again.
   * @throws {TransferRefusedError} If the recipient refused or the file arrived damaged.
   * @throws {PeerUnreachableError} If the contact is not online.
   */
  sendFile(nameOrId: string, path: string, options: SendFileOptions = {}): Promise<SentFile> {
    return this.#files.send(nameOrId, path, options);
  }

  /**
   * Sends a file however the contact can get it: directly when they are
   * online (as {@linkcode Messenger.sendFile}); otherwise a file of up to
   * `MAILBOX_FILE_MAX_SIZE` (4 MiB) is left in the network (as
   * {@linkcode Messenger.sendFileLater}), and a larger one waits on this
   * device and goes directly once the two are online together (`queued-file`
   * events tell of it; {@linkcode Messenger.queuedFiles} lists what waits).
   *
   * @param nameOrId The contact.
   * @param path The file.
   * @param options As for {@linkcode Messenger.sendFile}.
   * @returns How it went: `direct`, `mailbox` or `queued`.
   * @throws {UnknownContactError} If there is no such contact.
   * @throws {KeyChangedError} If the contact's keys changed and were not verified again.
   * @throws {TransferRefusedError} If the contact refused the file.
   */
  deliverFile(
    nameOrId: string,
    path: string,
    options: SendFileOptions = {},
  ): Promise<FileDelivery> {
    return this.#files.deliver(nameOrId, path, options);
  }

  /** Files waiting on this device until their contact is online, oldest first. */
  get queuedFiles(): FileQueueEntry[] {
    return this.#files.queued;
  }

  /**
   * Leaves a file of up to 4 MiB (`MAILBOX_FILE_MAX_SIZE`) for a
   * contact, online or not: it is split into sealed parts queued in the
   * outbox like messages, delivered directly when the contact is online and
   * left in their network mailbox otherwise, and put together, checked
   * (SHA-256) and saved in their download directory when all parts are in
   * (`file` event there). The sender sees each part in its outbox until it
   * is acknowledged: `waitFor(part, { orStored: true })` for every one of
   * `parts` says the file is in the network; `waitFor(part)` that it arrived.
   *
   * @param nameOrId The contact.
   * @param path The file.
   * @param options `signal` to abort before the first part is queued.
   * @returns The queued file, with its parts' sequence numbers.
   * @throws {UnknownContactError} If there is no such contact.
   * @throws {KeyChangedError} If the contact's keys changed and were not verified again.
   * @throws {RangeError} If the file is larger than 4 MiB: send it with
   *   {@linkcode Messenger.sendFile} while the contact is online.
   */
  sendFileLater(nameOrId: string, path: string, options: SignalOptions = {}): Promise<QueuedFile> {
    return this.#files.sendLater(nameOrId, path, options);
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
    options: SignalOptions & { readonly orStored?: boolean } = {},
  ): Promise<ChatMessage> {
    const done = (m: ChatMessage | undefined) =>
      m !== undefined &&
      (m.state === "delivered" || (options.orStored === true && m.state === "stored"));
    const signal = options.signal;
    // Each status event gives its message as it was just read: only the
    // first check reads it.
    const now = this.profile.message(seq);
    if (done(now)) return Promise.resolve(now!);
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise((resolve, reject) => {
      const check = (m: ChatMessage) => {
        if (!done(m)) return;
        cleanup();
        resolve(m);
      };
      const onAbort = () => {
        cleanup();
        reject(signal?.reason);
      };
      const checks = this.#statusWaiters.get(seq) ?? new Set();
      this.#statusWaiters.set(seq, checks);
      checks.add(check);
      const aborts = signal === undefined ? undefined : this.#abortsOf(signal);
      aborts?.add(onAbort);
      const cleanup = () => {
        checks.delete(check);
        if (checks.size === 0 && this.#statusWaiters.get(seq) === checks) {
          this.#statusWaiters.delete(seq);
        }
        aborts?.delete(onAbort);
      };
    });
  }

  /** The abort callbacks of `waitFor` calls waiting with `signal`, which calls them all. */
  #abortsOf(signal: AbortSignal): Set<() => void> {
    let aborts = this.#abortWaiters.get(signal);
    if (aborts === undefined) {
      const all = aborts = new Set();
      this.#abortWaiters.set(signal, all);
      signal.addEventListener("abort", () => {
        for (const onAbort of [...all]) onAbort();
      }, { once: true });
    }
    return aborts;
  }

  /**
   * Fetches pending messages from the network mailbox now.
   *
   * @param options `refresh`: look the mailbox's nodes up again (default
   *   `true`); `signal` to abort.
   * @returns How many new messages arrived.
   */
  fetchMailbox(
    options: SignalOptions & { readonly refresh?: boolean } = {},
  ): Promise<number> {
    return this.#service.fetchMailbox({
      refresh: options.refresh ?? true,
      ...(options.signal ? { signal: options.signal } : {}),
    });
  }

  // Groups: the calls are MessengerGroups' (groups.ts), which documents them.

  /** Makes a group of this user (its admin) and contacts; see {@linkcode MessengerGroups.create}. */
  createGroup(name: string, contacts: readonly string[]): Promise<GroupInfo> {
    return this.#groups.create(name, contacts);
  }

  /** Adds a contact to a group (as its admin); it reads nothing sent before. */
  addMember(group: string, contact: string): Promise<GroupInfo> {
    return this.#groups.addMember(group, contact);
  }

  /** Removes a member (as an admin); every remaining member rotates its key. */
  removeMember(group: string, member: string): Promise<GroupInfo> {
    return this.#groups.removeMember(group, member);
  }

  /** Leaves a group (its ID or name); its history stays. */
  leave(group: string): Promise<void> {
    return this.#groups.leave(group);
  }

  /** The groups this user is in or left. */
  groups(): GroupInfo[] {
    return this.#groups.list();
  }

  /** One group, its members marked "contact" or "group member, not a contact". */
  group(group: string): GroupInfo {
    return this.#groups.group(group);
  }

  /**
   * A group member's safety number; with `confirm`, marks the member
   * verified (one who is not a contact in the group store, sealed); see
   * {@linkcode MessengerGroups.verifyMember}.
   */
  verifyMember(
    group: string,
    member: string,
    options: { readonly confirm?: boolean } = {},
  ): Promise<VerifiedMember> {
    return this.#groups.verifyMember(group, member, options);
  }

  /** Sends a text to a group: encrypted once; `group.deliveredTo` of `group.members`. */
  sendGroup(group: string, text: string): Promise<ChatMessage> {
    return this.#groups.send(group, text);
  }

  /** A group's conversation, oldest first (`limit`, default 50), with who wrote each message. */
  groupHistory(group: string, options: { readonly limit?: number } = {}): ChatMessage[] {
    return this.#groups.history(group, options);
  }

  /** The group chats' parts beyond these calls: deliveries per member, safety numbers. */
  get groupChats(): GroupChats {
    return this.#groups;
  }

  /**
   * Incoming messages as they arrive, until the messenger stops.
   *
   * @returns An async iterable of messages.
   */
  async *messages(): AsyncGenerator<ChatMessage> {
    while (!this.#stopped) {
      const next = this.#queue.shift() ??
        await new Promise<ChatMessage | undefined>((r) => this.#waiters.push(r));
      if (next === undefined) return;
      yield next;
    }
  }

  /**
   * Stops messaging and the node, then the profile (closing the database and
   * releasing the data directory). Idempotent.
   */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    if (this.#republish !== undefined) clearInterval(this.#republish);
    this.#onAddresses.stop();
    this.#cards.stop();
    for (const type of ["addresses", "reachability"]) {
      this.#node.removeEventListener(type, this.#addressListener);
    }
    this.#node.removeEventListener("peer:connect", this.#connectListener);
    this.#node.removeEventListener("peer:disconnect", this.#disconnectListener);
    for (const w of this.#waiters.splice(0)) w(undefined);
    try {
      await this.#files.stop();
      await this.#service.stop();
      await this.#files.settled();
      // Group messages already acknowledged are stored before the store closes.
      await this.#groups.settled();
      // The exact mark, now that no state changes any more.
      await this.#sessions.close();
      await this.#node.stop();
    } finally {
      await this.profile.stop();
    }
  }

  /** Same as {@linkcode Messenger.stop}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}
