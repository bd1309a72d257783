/**
 * A user's profile: the offline half of DIM. One data directory's identity
 * (in its encrypted keystore), database, contact book, message history and
 * settings, with no network. {@linkcode createMessenger} puts a network on a
 * profile.
 *
 * A profile opens without the passphrase: it then shows the user's public
 * keys (from a copy kept in the database), contacts and settings;
 * {@linkcode Profile.unlock} unlocks the identity for what needs the private
 * keys: a messenger, and the messages themselves, whose bodies are sealed at
 * rest with a key derived from the identity (see `HistoryBox`). Who wrote to
 * whom, when, and how far each message got stay readable while locked, in
 * the database; what they said does not. On its first unlock a profile
 * seals, in one transaction, the bodies an older DIM kept in the clear.
 *
 * @example Create a profile, then open it again without the passphrase
 * ```ts
 * import assert from "node:assert/strict";
 * import { createProfile, openProfile, ProfileLockedError } from "./profile.ts";
 *
 * const home = await Deno.makeTempDir();
 * const created = await createProfile({
 *   home,
 *   passphrase: "plum vortex quietly sings",
 *   displayName: "Ada",
 * });
 * const id = created.id;
 * await created.stop();
 *
 * {
 *   await using profile = await openProfile({ home, exclusive: false });
 *   assert.equal(profile.id, id);
 *   assert.equal(profile.displayName, "Ada");
 *   assert.equal(profile.locked, true);
 *   assert.deepEqual(profile.contacts(), []);
 *   assert.throws(() => profile.history("bob"), ProfileLockedError);
 * }
 * await Deno.remove(home, { recursive: true });
 * ```
 *
 * @module
 */
import { Identity, type PublicIdentity } from "../crypto/identity.ts";
import { createKeystore, unlockKeystore } from "../crypto/keystore.ts";
import { fingerprint } from "../crypto/safety_number.ts";
import { HistoryBox } from "../crypto/secret_box.ts";
import { DimError, KeystoreError } from "../errors.ts";
import { pathExists } from "../platform/atomic_file.ts";
import { type DataDirLock, lockDataDir } from "../platform/lock.ts";
import { dataPaths, ensureHome } from "../platform/paths.ts";
import type { StoredMessage } from "../messaging/storage.ts";
import { UserStore } from "../store/user_store.ts";
import { type ChatMessage, chatMessage } from "./chat_message.ts";
import { type Contact, ContactBook } from "./contacts.ts";
import { setProfileParts } from "./_internals.ts";
import { checkNewPassphrase } from "./passphrase.ts";
import {
  decodePublicIdentity,
  DEFAULT_DISPLAY_NAME,
  encodePublicIdentity,
  isReservedSetting,
  PROFILE_SETTINGS,
} from "./settings.ts";

/** Options of {@linkcode openProfile}. */
export interface OpenProfileOptions {
  /** The data directory (keystore, database). */
  readonly home: string;
  /** The keystore passphrase; without it the profile opens locked. */
  readonly passphrase?: string | undefined;
  /**
   * Whether to hold the data directory's lock while open, so no other DIM
   * process uses it. A profile opened with `false` takes the lock only for
   * the moment of each change to contacts or the display name, and cannot
   * carry a messenger. Default `true`.
   */
  readonly exclusive?: boolean;
}

/** Options of {@linkcode createProfile}. */
export interface CreateProfileOptions {
  /** The data directory; made (mode 0700) if missing. */
  readonly home: string;
  /**
   * The passphrase the new keystore is encrypted under. It must be hard to
   * guess (see `checkNewPassphrase`): a weak one is refused unless
   * `allowWeakPassphrase` is set.
   */
  readonly passphrase: string;
  /** The display name in the contact card. */
  readonly displayName: string;
  /**
   * Replace an existing identity. Contacts stay; the messages sealed under
   * the old identity are deleted, since the new one cannot open them.
   * Default `false`.
   */
  readonly force?: boolean;
  /**
   * Accept a passphrase that is easy to guess: the user insisted. Default
   * `false`.
   */
  readonly allowWeakPassphrase?: boolean;
}

/**
 * Thrown when what is asked needs the unlocked identity (its private keys, or
 * the history's key: message bodies are sealed at rest), or its public keys
 * are unknown, and the profile is locked.
 */
export class ProfileLockedError extends DimError {}

/**
 * Creates a new identity in `home` (keys, encrypted keystore, display name)
 * and opens its profile, unlocked and exclusive.
 *
 * @param options Where, the passphrase and the display name.
 * @returns The open profile; stop it when done.
 * @throws {KeystoreError} If an identity exists and `force` is not set.
 * @throws {WeakPassphraseError} If the passphrase is easy to guess and
 *   `allowWeakPassphrase` is not set; nothing is created.
 * @throws {StorageError} If the data directory is in use or unreadable.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createProfile } from "./profile.ts";
 *
 * const home = await Deno.makeTempDir();
 * {
 *   const passphrase = "plum vortex quietly sings";
 *   await using profile = await createProfile({ home, passphrase, displayName: "Ada" });
 *   assert.match(profile.id, /^dim/);
 *   assert.equal(profile.locked, false);
 * }
 * await Deno.remove(home, { recursive: true });
 * ```
 */
export async function createProfile(options: CreateProfileOptions): Promise<Profile> {
  await checkNewPassphrase(options.passphrase, {
    userInputs: [options.displayName],
    allowWeak: options.allowWeakPassphrase ?? false,
  });
  await ensureHome(options.home);
  const lock = lockDataDir(options.home);
  let store: UserStore | undefined;
  try {
    const identity = await Identity.generate();
    await createKeystore(dataPaths(options.home).identityKey, identity, options.passphrase, {
      force: options.force ?? false,
    });
    store = UserStore.open(dataPaths(options.home).database);
    // Sealed under an identity that is gone: nobody can read them any more.
    store.messages.deleteSealed();
    store.settings.set(PROFILE_SETTINGS.displayName, options.displayName);
    return new Profile(options.home, store, lock, identity);
  } catch (err) {
    store?.close();
    lock.release();
    throw err;
  }
}

/**
 * Opens the profile in `home`; with the passphrase, unlocked.
 *
 * @param options Where, the passphrase if any, and whether to hold the lock.
 * @returns The open profile; stop it when done.
 * @throws {KeystoreError} If there is no identity in `home`, or the passphrase is wrong.
 * @throws {StorageError} If the data directory is in use (when exclusive) or unreadable.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { KeystoreError } from "../errors.ts";
 * import { openProfile } from "./profile.ts";
 *
 * const home = await Deno.makeTempDir();
 * await assert.rejects(openProfile({ home }), KeystoreError);
 * await Deno.remove(home, { recursive: true });
 * ```
 */
export async function openProfile(options: OpenProfileOptions): Promise<Profile> {
  const exclusive = options.exclusive ?? true;
  const paths = dataPaths(options.home);
  if (exclusive) await ensureHome(options.home);
  const lock = exclusive ? lockDataDir(options.home) : undefined;
  let store: UserStore | undefined;
  try {
    let identity: Identity | undefined;
    if (options.passphrase !== undefined) {
      identity = await unlockKeystore(paths.identityKey, options.passphrase);
    } else if (!await pathExists(paths.identityKey)) {
      throw new KeystoreError("not-found", `Cannot open profile: no identity in ${options.home}`);
    }
    store = UserStore.open(paths.database);
    return new Profile(options.home, store, lock, identity);
  } catch (err) {
    store?.close();
    lock?.release();
    throw err;
  }
}

/**
 * One user's data directory, offline: identity, contacts, history and
 * settings. Made by {@linkcode createProfile} or {@linkcode openProfile}.
 */
export class Profile implements AsyncDisposable {
  /** The data directory. */
  readonly home: string;
  readonly #store: UserStore;
  readonly #book: ContactBook;
  readonly #lock: DataDirLock | undefined;
  #identity: Identity | undefined;
  #public: PublicIdentity | undefined;
  #stopped = false;

  /**
   * Use {@linkcode createProfile} or {@linkcode openProfile}.
   *
   * @param home The data directory.
   * @param store Its open database.
   * @param lock The held data-directory lock, if exclusive.
   * @param identity The unlocked identity, if any.
   * @ignore
   */
  constructor(
    home: string,
    store: UserStore,
    lock: DataDirLock | undefined,
    identity: Identity | undefined,
  ) {
    this.home = home;
    this.#store = store;
    this.#lock = lock;
    this.#book = new ContactBook(store.contacts);
    const saved = store.settings.get(PROFILE_SETTINGS.publicIdentity);
    this.#public = saved === undefined ? undefined : decodePublicIdentity(saved);
    if (identity !== undefined) this.#unlocked(identity);
    setProfileParts(this, {
      store,
      book: this.#book,
      exclusive: lock !== undefined,
      identity: () => {
        if (this.#identity === undefined) {
          throw new ProfileLockedError(`Cannot use the identity in ${home}: it is locked`);
        }
        return this.#identity;
      },
    });
  }

  #unlocked(identity: Identity): void {
    this.#identity = identity;
    this.#public = identity.public;
    const history = HistoryBox.forIdentity(identity);
    this.#store.messages.useKey(history);
    this.#store.groups.useKey(history);
    const text = encodePublicIdentity(identity.public);
    if (this.#store.settings.get(PROFILE_SETTINGS.publicIdentity) !== text) {
      this.#store.settings.set(PROFILE_SETTINGS.publicIdentity, text);
    }
    this.#sealHistory();
  }

  /**
   * Seals the bodies an older DIM kept in the clear, in one transaction. A
   * profile without the lock leaves them to the process that holds it, which
   * seals them when it unlocks.
   */
  #sealHistory(): void {
    if (!this.#store.messages.hasPlaintext()) return;
    if (this.#lock !== undefined) {
      this.#store.messages.sealPlaintext();
      return;
    }
    let lock: DataDirLock;
    try {
      lock = lockDataDir(this.home);
    } catch {
      return;
    }
    try {
      this.#store.messages.sealPlaintext();
    } finally {
      lock.release();
    }
  }

  /** Throws unless the history's key is here. */
  #readable(what: string): void {
    if (this.#identity === undefined) {
      throw new ProfileLockedError(
        `Cannot read ${what} in ${this.home}: messages are sealed, and the profile is locked`,
      );
    }
  }

  /**
   * Unlocks the identity (and refreshes the saved copy of its public keys).
   * Does nothing if it is unlocked already.
   *
   * @param passphrase The keystore passphrase.
   * @throws {KeystoreError} On a wrong passphrase or a damaged keystore.
   */
  async unlock(passphrase: string): Promise<void> {
    if (this.#identity !== undefined) return;
    this.#unlocked(await unlockKeystore(dataPaths(this.home).identityKey, passphrase));
  }

  /** Whether the private keys are out of reach (no passphrase given yet). */
  get locked(): boolean {
    return this.#identity === undefined;
  }

  /**
   * This user's public keys.
   *
   * @throws {ProfileLockedError} If the profile is locked and no copy of them is saved.
   */
  get publicIdentity(): PublicIdentity {
    if (this.#public === undefined) {
      throw new ProfileLockedError(
        `Cannot read the identity in ${this.home}: it is locked and no copy of its public keys is saved`,
      );
    }
    return this.#public;
  }

  /**
   * This user's ID.
   *
   * @throws {ProfileLockedError} If the profile is locked and no copy of the public keys is saved.
   */
  get id(): string {
    return this.publicIdentity.id;
  }

  /**
   * The short fingerprint of this user's keys.
   *
   * @returns Five groups of four hex digits.
   * @throws {ProfileLockedError} If the public keys are unknown.
   */
  fingerprint(): string {
    return fingerprint(this.publicIdentity);
  }

  /** The display name in this user's card. */
  get displayName(): string {
    return this.#store.settings.get(PROFILE_SETTINGS.displayName) ?? DEFAULT_DISPLAY_NAME;
  }

  /**
   * Sets the display name; the next card published carries it.
   *
   * @param name The display name.
   * @throws {StorageError} If the profile is not exclusive and another process holds the lock.
   */
  setDisplayName(name: string): void {
    this.#change(() => this.#store.settings.set(PROFILE_SETTINGS.displayName, name));
  }

  /**
   * An application's setting.
   *
   * @param name The setting's name (prefix your own, as the CLI does with `cli.`).
   * @returns Its value, or `undefined`.
   */
  getSetting(name: string): string | undefined {
    return this.#store.settings.get(name);
  }

  /**
   * Saves an application's setting.
   *
   * @param name The setting's name, not one of DIM's own.
   * @param value Its value.
   * @throws {RangeError} If the name is one DIM keeps itself.
   */
  setSetting(name: string, value: string): void {
    if (isReservedSetting(name)) {
      throw new RangeError(`Cannot set ${name}: it is one of DIM's own settings`);
    }
    this.#store.settings.set(name, value);
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

  /**
   * A contact by local name or user ID, if there is one.
   *
   * @param nameOrId The local name or user ID.
   * @returns The contact, or `undefined`.
   */
  findContact(nameOrId: string): Contact | undefined {
    return this.#book.find(nameOrId) && this.#book.contact(nameOrId);
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
   * @throws {StorageError} If the profile is not exclusive and another process holds the lock.
   */
  removeContact(name: string): boolean {
    return this.#change(() => this.#book.remove(name));
  }

  /**
   * The safety number of this user and a contact, to compare out of band,
   * over the keys the network shows now (the new ones, if they changed).
   *
   * @param nameOrId The contact.
   * @returns 60 digits in 12 groups.
   * @throws {UnknownContactError} If there is no such contact.
   * @throws {ProfileLockedError} If this user's public keys are unknown.
   */
  safetyNumber(nameOrId: string): string {
    return this.#book.safetyNumber(this.publicIdentity, nameOrId);
  }

  /**
   * Marks a contact verified; if their keys changed, accepts the new keys.
   *
   * @param nameOrId The contact.
   * @returns The contact as it is now.
   * @throws {UnknownContactError} If there is no such contact.
   * @throws {StorageError} If the profile is not exclusive and another process holds the lock.
   */
  verifyContact(nameOrId: string): Contact {
    return this.#change(() => this.#book.verify(nameOrId));
  }

  /**
   * The recent conversation with a contact or user ID, oldest first.
   *
   * @param nameOrId The contact or user ID.
   * @param options `limit`: how many (default 50).
   * @returns The messages.
   * @throws {ProfileLockedError} If the profile is locked.
   */
  history(nameOrId: string, options: { readonly limit?: number } = {}): ChatMessage[] {
    this.#readable("the history");
    const peer = this.#book.find(nameOrId)?.userId ?? nameOrId.trim().toLowerCase();
    return this.#store.messages.history(peer, options).map((m) => this.#toChat(m));
  }

  /**
   * Incoming messages stored after `seq`, from everyone, in arrival order.
   *
   * @param seq A local sequence number (0 for all).
   * @returns The messages.
   * @throws {ProfileLockedError} If the profile is locked.
   */
  incomingSince(seq: number): ChatMessage[] {
    this.#readable("messages");
    return this.#store.messages.incomingSince(seq).map((m) => this.#toChat(m));
  }

  /**
   * One message of the history.
   *
   * @param seq Its local sequence number.
   * @returns The message, or `undefined`.
   * @throws {ProfileLockedError} If the profile is locked.
   */
  message(seq: number): ChatMessage | undefined {
    this.#readable("a message");
    const m = this.#store.messages.get(seq);
    return m === undefined ? undefined : this.#toChat(m);
  }

  /**
   * The sent messages not yet acknowledged, oldest first.
   *
   * @returns The pending and offline-stored messages.
   * @throws {ProfileLockedError} If the profile is locked.
   */
  outbox(): ChatMessage[] {
    this.#readable("the outbox");
    return this.#store.outbox.list().flatMap((e) => {
      const m = this.#store.messages.get(e.messageSeq);
      return m ? [this.#toChat(m)] : [];
    });
  }

  #toChat(m: StoredMessage): ChatMessage {
    return chatMessage(m, this.#store.contacts.getById(m.peer));
  }

  /** A change a user makes: under the lock, taken for the moment if not held. */
  #change<T>(fn: () => T): T {
    if (this.#lock !== undefined) return fn();
    const lock = lockDataDir(this.home);
    try {
      return fn();
    } finally {
      lock.release();
    }
  }

  /** Closes the database and releases the data directory. Idempotent. */
  stop(): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    this.#stopped = true;
    this.#identity = undefined;
    try {
      this.#store.close();
    } finally {
      this.#lock?.release();
    }
    return Promise.resolve();
  }

  /** Same as {@linkcode Profile.stop}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}
