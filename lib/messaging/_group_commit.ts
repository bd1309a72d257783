/**
 * The outbox's group commit: messages sealed while a flush is pending are
 * stored in transactions deferred to one commit (`TransactionOptions.deferred`),
 * which their shared flush makes and flushes, once no other message is being
 * sealed (up to {@linkcode SEND_WINDOW} messages, or {@linkcode GROUP_COMMIT_MS}).
 * Each message waits for its own group's flush, so a failed commit or flush
 * fails exactly the messages it carried.
 *
 * @module
 */
import type { DeferredCommits, StorageTransactions } from "./storage.ts";
import type { SessionManager } from "./sessions.ts";
import { GROUP_COMMIT_MS, SEND_WINDOW } from "./constants.ts";

/** The messages stored since the last flush: one deferred commit, and its outcome. */
export class FlushGroup {
  /** The mark of the group's deferred transactions. */
  readonly deferred: DeferredCommits = {};
  /** Messages waiting for the flush. */
  waiting = 0;
  /** Whether a message of the group may leave before the flush (its key is reserved). */
  reserved = false;
  /** Settles once the group is committed and flushed, or failed to be. */
  readonly done: Promise<void>;
  resolve!: () => void;
  reject!: (err: unknown) => void;
  /** Settles once the group is committed (its flush may still run), or failed to be. */
  readonly committed: Promise<void>;
  commit!: () => void;
  #failCommit!: (err: unknown) => void;

  constructor() {
    this.done = new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    this.committed = new Promise((resolve, reject) => {
      this.commit = resolve;
      this.#failCommit = reject;
    });
    // Each message awaits it; a group flushed with none waiting is no error.
    this.done.catch(() => {});
    this.committed.catch(() => {});
  }

  /** The group failed: not committed, or not flushed. */
  fail(err: unknown): void {
    this.#failCommit(err);
    this.reject(err);
  }
}

/** Stores messages in groups that share one commit and flush. */
export class GroupCommit {
  readonly #storage: StorageTransactions;
  readonly #sessions: () => SessionManager | undefined;
  #group: FlushGroup | undefined;

  /**
   * @param storage Where the messages are stored.
   * @param sessions The session manager whose lock the sealing holds, if any.
   */
  constructor(storage: StorageTransactions, sessions: () => SessionManager | undefined) {
    this.#storage = storage;
    this.#sessions = sessions;
  }

  /**
   * Runs `fn` in a transaction deferred to the current group's commit.
   *
   * @param fn The writes.
   * @param reserved Whether the message stored may leave before the flush.
   * @returns What `fn` returned, and the group to wait for with {@linkcode GroupCommit.flushed}.
   */
  store<T>(fn: () => T, reserved = false): { readonly value: T; readonly group: FlushGroup } {
    const group = this.#group ??= new FlushGroup();
    const value = this.#storage.transaction(fn, { durable: false, deferred: group.deferred });
    if (reserved) group.reserved = true;
    return { value, group };
  }

  /**
   * Commits and flushes a group once no other message is being sealed:
   * messages sent together share one commit and flush, at most
   * SEND_WINDOW of them.
   *
   * @param group The group a message was stored in.
   * @returns When the group's messages are durable.
   * @throws {StorageError} If their commit or flush failed.
   */
  flushed(group: FlushGroup): Promise<void> {
    // Flushed already, by the others of its group.
    if (group !== this.#group) return group.done;
    group.waiting++;
    const sessions = this.#sessions();
    if (sessions?.busy && group.waiting < SEND_WINDOW) {
      if (group.waiting === 1) {
        // Not longer than GROUP_COMMIT_MS, though, however long the others take.
        const timer = setTimeout(() => this.#flushNow(group), GROUP_COMMIT_MS);
        sessions.whenIdle().then(() => {
          clearTimeout(timer);
          this.#flushNow(group);
        });
      }
    } else {
      this.#flushNow(group);
    }
    return group.done;
  }

  /**
   * Commits and flushes a group, unless it was already. A group with a
   * message whose key is reserved is flushed on another thread where the
   * storage can: that message is on its way meanwhile, and the next group
   * is sealed. The others wait for the flush anyway, which this thread
   * learns of sooner when it makes it itself (`fdatasync` of 8 KiB here:
   * 90–100 µs on this thread, 234 µs through Deno's `FsFile.syncData` with
   * the thread idle meanwhile).
   */
  #flushNow(group: FlushGroup): void {
    if (group !== this.#group) return;
    this.#group = undefined;
    if (group.reserved && this.#storage.syncAsync !== undefined) {
      // The deferred commit is made before syncAsync returns; a failed one
      // is in the group's mark by then.
      const flushing = this.#storage.syncAsync(group.deferred);
      const lost = group.deferred.lost;
      if (lost === undefined) group.commit();
      flushing.then(group.resolve, (err) => group.fail(lost ?? err));
      return;
    }
    try {
      this.#storage.sync(group.deferred);
    } catch (err) {
      group.fail(err);
      return;
    }
    group.commit();
    group.resolve();
  }
}
