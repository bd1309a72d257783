/**
 * Files that wait on the sender's device: a file too large to leave in the
 * network (over `MAILBOX_FILE_MAX_SIZE`) for a contact who is offline is
 * queued here, and sent directly as soon as the two are online together.
 *
 * The queue keeps the file's path with the size and SHA-256 it had when it
 * was queued; at each attempt the file is read again, and one that changed
 * or is gone fails for good with that reason rather than sending something
 * the user did not choose. An attempt that cannot reach the contact is
 * tried again with backoff (1 min doubling to 30 min), and at once when the
 * node reaches a peer after being alone. One file is sent at a time. Entries
 * are kept in the user's database (`file_queue`), so the queue survives
 * restarts: `dim daemon` or any networked command keeps it going.
 *
 * @example
 * ```ts ignore
 * const queue = new FileQueue({ store, send, clock: Date.now, onEvent: console.log });
 * const entry = await queue.add("dimbob…", "/home/ada/big.iso");
 * queue.start();
 * ```
 *
 * @module
 */
import { basename, resolve } from "node:path";
import { toHex } from "../platform/bytes.ts";
import { fileHash } from "../messaging/file_wire.ts";
import type { QueuedFile, SentFile } from "../messaging/mod.ts";
import { PeerUnreachableError } from "../errors.ts";
import type { FileQueueEntry, FileQueueStore } from "../store/file_queue_store.ts";

/** The first retry of a file that could not reach its contact, in ms. */
export const FILE_QUEUE_RETRY_BASE_MS = 60_000;
/** The longest wait between retries, in ms. */
export const FILE_QUEUE_RETRY_MAX_MS = 30 * 60_000;

/**
 * How {@linkcode Messenger.deliverFile} delivered a file: `direct` to the
 * contact online; `mailbox`, left in the network in sealed parts (a file of
 * up to `MAILBOX_FILE_MAX_SIZE`, contact offline); `queued`, waiting on this
 * device until the two are online together (a larger file, contact offline).
 */
export type FileDelivery =
  | { readonly how: "direct"; readonly sent: SentFile }
  | { readonly how: "mailbox"; readonly file: QueuedFile }
  | { readonly how: "queued"; readonly entry: FileQueueEntry };

/** What the queue tells of its files. */
export type FileQueueEvent =
  | { readonly type: "file-queued"; readonly entry: FileQueueEntry }
  | { readonly type: "file-sent"; readonly entry: FileQueueEntry; readonly sent: SentFile }
  | { readonly type: "file-deferred"; readonly entry: FileQueueEntry; readonly error: string }
  | { readonly type: "file-given-up"; readonly entry: FileQueueEntry; readonly error: string };

/** What a {@linkcode FileQueue} needs. */
export interface FileQueueInit {
  /** The table. */
  readonly store: FileQueueStore;
  /**
   * Sends a file directly to a contact now.
   *
   * @throws {PeerUnreachableError} If the contact is not online.
   */
  readonly send: (entry: FileQueueEntry, signal: AbortSignal) => Promise<SentFile>;
  /** The clock, in ms. */
  readonly clock: () => number;
  /** Told of each file's progress through the queue. */
  readonly onEvent: (event: FileQueueEvent) => void;
}

/** Files waiting until their contact is online; see the module documentation. */
export class FileQueue {
  readonly #init: FileQueueInit;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #running: Promise<void> | undefined;
  #again = false;
  /** `retryNow()` was asked while a run was going on. */
  #retryAfterRun = false;
  #stopped = false;
  readonly #abort = new AbortController();
  /** The recipients with files waiting, read once, then kept up to date. */
  #recipients: Set<string> | undefined;

  /**
   * @param init The table, the sender, the clock and the event sink.
   */
  constructor(init: FileQueueInit) {
    this.#init = init;
  }

  /**
   * Queues a file for a contact: reads it once for its size and SHA-256.
   *
   * @param recipient The contact's user ID.
   * @param path The file.
   * @returns The entry, due at once.
   * @throws {Deno.errors.NotFound} If the file does not exist.
   * @throws {TypeError} If it is not a regular file.
   */
  async add(recipient: string, path: string): Promise<FileQueueEntry> {
    const absolute = resolve(path);
    const { bytes, sha256 } = await measure(absolute);
    const entry = this.#init.store.add({
      fileId: toHex(crypto.getRandomValues(new Uint8Array(16))),
      recipient,
      path: absolute,
      name: basename(absolute),
      bytes,
      sha256,
      queuedAt: this.#init.clock(),
    });
    this.#recipients?.add(recipient);
    this.#init.onEvent({ type: "file-queued", entry });
    this.kick();
    return entry;
  }

  /**
   * Whether files wait for a contact; answered from memory, so it may be
   * asked for every incoming message.
   *
   * @param recipient The contact's user ID.
   * @returns `true` if at least one does.
   */
  hasWaitingFor(recipient: string): boolean {
    this.#recipients ??= new Set(this.#init.store.waiting().map((e) => e.recipient));
    return this.#recipients.has(recipient);
  }

  /** The files still waiting, oldest first. */
  get waiting(): FileQueueEntry[] {
    return this.#init.store.waiting();
  }

  /** Starts trying the due files, now and whenever one comes due. Idempotent. */
  start(): void {
    this.kick();
  }

  /**
   * Tries every waiting file now, backoff or not (the node reached a peer
   * after being alone: the contact may be back).
   */
  retryNow(): void {
    if (this.#stopped) return;
    this.#init.store.retryNow(this.#init.clock());
    // An attempt going on may still defer its file: the run after it
    // makes every file due again.
    if (this.#running !== undefined) this.#retryAfterRun = true;
    this.kick();
  }

  /** Runs the due files unless a run is going on (then it runs again after). */
  kick(): void {
    if (this.#stopped) return;
    if (this.#running !== undefined) {
      this.#again = true;
      return;
    }
    this.#running = this.#run().finally(() => {
      this.#running = undefined;
      if (this.#again && !this.#stopped) {
        this.#again = false;
        if (this.#retryAfterRun) this.#init.store.retryNow(this.#init.clock());
        this.#retryAfterRun = false;
        this.kick();
      } else {
        this.#schedule();
      }
    });
  }

  /**
   * Stops trying; a file being sent is aborted and stays queued.
   *
   * @returns When the current attempt has ended.
   */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#abort.abort(new DOMException("The messenger is stopping", "AbortError"));
    await this.#running?.catch(() => {});
  }

  async #run(): Promise<void> {
    for (const entry of this.#init.store.due(this.#init.clock())) {
      if (this.#stopped) return;
      await this.#attempt(entry);
    }
    // Files were sent or given up: read who still waits again when asked.
    this.#recipients = undefined;
  }

  async #attempt(entry: FileQueueEntry): Promise<void> {
    const { store, clock, onEvent } = this.#init;
    let current: { bytes: number; sha256: Uint8Array };
    try {
      current = await measure(entry.path);
    } catch (err) {
      return this.#giveUp(entry, `cannot read ${entry.path}: ${message(err)}`);
    }
    if (current.bytes !== entry.bytes || toHex(current.sha256) !== toHex(entry.sha256)) {
      return this.#giveUp(entry, `${entry.path} changed since it was queued; queue it again`);
    }
    try {
      const sent = await this.#init.send(entry, this.#abort.signal);
      store.finish(entry.fileId, "sent", clock(), "");
      onEvent({ type: "file-sent", entry: store.get(entry.fileId)!, sent });
    } catch (err) {
      if (this.#stopped) return;
      const error = message(err);
      if (!(err instanceof PeerUnreachableError)) {
        // Refused by the recipient, or the file failed on the way: not the network's fault.
        return this.#giveUp(entry, error);
      }
      const wait = Math.min(
        FILE_QUEUE_RETRY_MAX_MS,
        FILE_QUEUE_RETRY_BASE_MS * 2 ** entry.attempts,
      );
      store.defer(entry.fileId, clock() + wait, error);
      onEvent({ type: "file-deferred", entry: store.get(entry.fileId)!, error });
    }
  }

  #giveUp(entry: FileQueueEntry, error: string): void {
    this.#init.store.finish(entry.fileId, "failed", this.#init.clock(), error);
    this.#init.onEvent({
      type: "file-given-up",
      entry: this.#init.store.get(entry.fileId)!,
      error,
    });
  }

  #schedule(): void {
    if (this.#stopped) return;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    const next = this.#init.store.waiting().reduce(
      (soonest, e) => Math.min(soonest, e.nextAttemptAt),
      Infinity,
    );
    if (next === Infinity) return;
    const wait = Math.max(0, Math.min(next - this.#init.clock(), FILE_QUEUE_RETRY_MAX_MS));
    const timer = setTimeout(() => this.kick(), wait);
    // A waiting file does not keep a one-shot command's process alive.
    Deno.unrefTimer(timer as unknown as number);
    this.#timer = timer;
  }
}

async function measure(path: string): Promise<{ bytes: number; sha256: Uint8Array }> {
  const file = await Deno.open(path, { read: true });
  try {
    const info = await file.stat();
    if (!info.isFile) throw new TypeError(`${path} is not a regular file`);
    const hash = fileHash();
    let bytes = 0;
    for await (const chunk of file.readable) {
      hash.update(chunk);
      bytes += chunk.length;
    }
    return { bytes, sha256: hash.digest() };
  } finally {
    try {
      file.close();
    } catch {
      // Closed by the readable at its end.
    }
  }
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
