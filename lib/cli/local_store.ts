/**
 * The parts of a data directory the CLI reads and writes without going
 * online: contacts, the "last shown" mark of `dim inbox`, and a copy of the
 * user's public keys so `dim id` needs no passphrase.
 *
 * {@linkcode Messenger} only opens together with a DIM node; commands such
 * as `dim contact list` or `dim id` must work offline and quickly, so they
 * read the database here. The views match the messenger's `Contact` and
 * `ChatMessage`. Settings the CLI keeps in the database's meta table are
 * prefixed `cli.`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { LocalStore } from "./local_store.ts";
 *
 * const home = await Deno.makeTempDir();
 * const store = LocalStore.open(home);
 * assert.deepEqual(store.contacts(), []);
 * store.setLastShownSeq(7);
 * assert.equal(store.lastShownSeq(), 7);
 * store.close();
 * await Deno.remove(home, { recursive: true });
 * ```
 *
 * @module
 */
import { fromHex, toHex } from "../platform/bytes.ts";
import { encodeUserId, type PublicIdentity } from "../crypto/identity.ts";
import { type Contact, ContactBook } from "../contacts.ts";
import { type ChatMessage, chatMessage } from "../messenger.ts";
import type { StoredMessage } from "../messaging/storage.ts";
import { UserStore } from "../store/user_store.ts";
import { dataPaths } from "../platform/paths.ts";

const META_PUBLIC_IDENTITY = "cli.public_identity";
const META_LAST_SHOWN = "cli.inbox_last_shown_seq";
const META_DISPLAY_NAME = "display_name";

/**
 * The CLI's offline view of a data directory's database.
 *
 * @example Contacts and the "last shown" mark, without going online
 * ```ts
 * import assert from "node:assert/strict";
 * import { UnknownContactError } from "../messenger.ts";
 * import { LocalStore } from "./local_store.ts";
 *
 * const home = await Deno.makeTempDir();
 * {
 *   using store = LocalStore.open(home);
 *   assert.throws(() => store.contact("bob"), UnknownContactError);
 *   assert.equal(store.findContact("bob"), undefined);
 *   assert.equal(store.lastShownSeq(), 0);
 * }
 * await Deno.remove(home, { recursive: true });
 * ```
 */
export class LocalStore implements Disposable {
  readonly #db: UserStore;
  readonly #book: ContactBook;

  private constructor(db: UserStore) {
    this.#db = db;
    this.#book = new ContactBook(db.contacts);
  }

  /**
   * Opens the database of a data directory (creating it if needed).
   *
   * @param home The data directory, which must exist.
   * @returns The store.
   * @throws {StorageError} If the database is corrupt or unreadable.
   * @example
   * ```ts
   * import { LocalStore } from "./local_store.ts";
   *
   * const home = await Deno.makeTempDir();
   * LocalStore.open(home).close();
   * await Deno.remove(home, { recursive: true });
   * ```
   */
  static open(home: string): LocalStore {
    return new LocalStore(UserStore.open(dataPaths(home).database));
  }

  /**
   * The user's public keys as last saved, if the copy is consistent.
   *
   * @returns The public identity, or `undefined` if none was saved.
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { Identity } from "../crypto/identity.ts";
   * import { LocalStore } from "./local_store.ts";
   *
   * const home = await Deno.makeTempDir();
   * using store = LocalStore.open(home);
   * const me = await Identity.generate();
   * store.savePublicIdentity(me.public);
   * assert.equal(store.publicIdentity()?.id, me.id);
   * ```
   */
  publicIdentity(): PublicIdentity | undefined {
    const text = this.#db.settings.get(META_PUBLIC_IDENTITY);
    if (text === undefined) return undefined;
    try {
      const v = JSON.parse(text) as { id: string; signing: string; encryption: string };
      const signingPublicKey = fromHex(v.signing);
      const encryptionPublicKey = fromHex(v.encryption);
      // A copy that does not match its own ID is ignored; the keystore is the truth.
      if (encryptionPublicKey.length !== 32 || encodeUserId(signingPublicKey) !== v.id) {
        return undefined;
      }
      return { id: v.id, signingPublicKey, encryptionPublicKey };
    } catch {
      return undefined;
    }
  }

  /**
   * Saves a copy of the user's public keys.
   *
   * @param identity The public identity.
   */
  savePublicIdentity(identity: PublicIdentity): void {
    const text = JSON.stringify({
      id: identity.id,
      signing: toHex(identity.signingPublicKey),
      encryption: toHex(identity.encryptionPublicKey),
    });
    if (this.#db.settings.get(META_PUBLIC_IDENTITY) !== text) {
      this.#db.settings.set(META_PUBLIC_IDENTITY, text);
    }
  }

  /**
   * The display name in the user's card.
   *
   * @returns The name, or `undefined` if none is set.
   */
  displayName(): string | undefined {
    return this.#db.settings.get(META_DISPLAY_NAME);
  }

  /**
   * Sets the display name the user's card will carry.
   *
   * @param name The display name.
   */
  setDisplayName(name: string): void {
    this.#db.settings.set(META_DISPLAY_NAME, name);
  }

  /**
   * The local sequence number of the newest incoming message shown so far.
   *
   * @returns The number, 0 if none was shown.
   */
  lastShownSeq(): number {
    const n = Number(this.#db.settings.get(META_LAST_SHOWN) ?? 0);
    return Number.isSafeInteger(n) && n > 0 ? n : 0;
  }

  /**
   * Records that incoming messages up to `seq` were shown; never goes back.
   *
   * @param seq The local sequence number.
   */
  setLastShownSeq(seq: number): void {
    if (seq > this.lastShownSeq()) this.#db.settings.set(META_LAST_SHOWN, String(seq));
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
   * The safety number of the user and a contact, over the keys the network
   * shows now (the new ones, if they changed), as the messenger computes it.
   *
   * @param me The user's public identity.
   * @param nameOrId The contact.
   * @returns 60 digits in 12 groups.
   * @throws {UnknownContactError} If there is no such contact.
   */
  safetyNumber(me: PublicIdentity, nameOrId: string): string {
    return this.#book.safetyNumber(me, nameOrId);
  }

  /**
   * Marks a contact verified and, if their keys changed, pins the new keys,
   * as `Messenger.verifyContact` does.
   *
   * @param nameOrId The contact.
   * @returns The contact as it is now.
   * @throws {UnknownContactError} If there is no such contact.
   */
  verifyContact(nameOrId: string): Contact {
    return this.#book.verify(nameOrId);
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
   * Incoming messages stored after `seq`, from everyone, in arrival order.
   *
   * @param seq A local sequence number.
   * @returns The messages.
   */
  incomingSince(seq: number): ChatMessage[] {
    return this.#db.messages.incomingSince(seq).map((m) => this.#toChat(m));
  }

  /**
   * How many sent messages still wait for an acknowledgement.
   *
   * @returns The outbox length.
   */
  outboxLength(): number {
    return this.#db.outbox.list().length;
  }

  #toChat(m: StoredMessage): ChatMessage {
    return chatMessage(m, this.#db.contacts.getById(m.peer));
  }

  /** Closes the database. Idempotent. */
  close(): void {
    this.#db.close();
  }

  /** Same as {@linkcode LocalStore.close}. */
  [Symbol.dispose](): void {
    this.close();
  }
}
