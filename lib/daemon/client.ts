/**
 * A typed client of a running `dim daemon`: it connects to the socket in the
 * data directory, checks the API version, and offers each method of the
 * local API as a typed call, and the notifications as an async iterable.
 *
 * @example An echo bot
 * ```ts ignore
 * import { connectDaemon } from "./client.ts";
 *
 * await using dim = await connectDaemon("/home/ada/.local/share/dim");
 * for await (const event of dim.subscribe()) {
 *   if (event.method !== "message" || event.params.contact === undefined) continue;
 *   await dim.send(event.params.contact, `echo: ${event.params.text}`);
 * }
 * ```
 *
 * @module
 */
import { resolve } from "node:path";
import { DimError } from "../errors.ts";
import { dataPaths } from "../platform/paths.ts";
import type { GroupInfo, VerifiedMember } from "../messenger/group_types.ts";
import type { ChatMessage } from "../profile/chat_message.ts";
import {
  DAEMON_API_VERSION,
  type DaemonContact,
  DaemonError,
  type DaemonFileProgress,
  type DaemonHello,
  type DaemonInbox,
  type DaemonMethod,
  type DaemonMethods,
  type DaemonNotification,
  DaemonNotRunningError,
  type DaemonSendFileResult,
  type DaemonSendGroupResult,
  type DaemonSendResult,
  type DaemonStatus,
  type DaemonVerifyResult,
  type RpcErrorObject,
} from "./protocol.ts";

/** The longest line the client accepts from the daemon (a long `history`), in bytes. */
export const MAX_REPLY_BYTES = 64 * 1024 * 1024;

/** How many notifications a subscription keeps unread before it drops the oldest. */
export const MAX_UNREAD_NOTIFICATIONS = 100_000;

/** Options of {@linkcode connectDaemon}. */
export interface ConnectDaemonOptions {
  /** Closes the client (and gives up connecting) when aborted. */
  readonly signal?: AbortSignal;
  /** The socket, if not `<home>/dim.sock`. */
  readonly path?: string;
}

/** Options of the networked calls: how long the daemon tries, in seconds (default 30). */
export interface DaemonTimeoutOptions {
  /** Seconds, at most 3600. */
  readonly timeout?: number;
}

/**
 * The notifications of {@linkcode DaemonClient.subscribe}: an async
 * iterable that ends when the connection closes, and a promise settled once
 * the daemon confirmed the subscription.
 */
export interface DaemonSubscription extends AsyncIterable<DaemonNotification> {
  /** Resolves once the daemon sends notifications; rejects if it refused. */
  readonly ready: Promise<void>;
}

let setHello: (client: DaemonClient, hello: DaemonHello) => void;

interface Pending {
  readonly resolve: (value: unknown) => void;
  readonly reject: (err: Error) => void;
  readonly onProgress?: ((progress: DaemonFileProgress) => void) | undefined;
}

/** An async queue of notifications; `end` finishes it. */
class NotificationQueue {
  readonly #items: DaemonNotification[] = [];
  #waiter: ((done: boolean) => void) | undefined;
  #ended: Error | true | undefined;

  push(n: DaemonNotification): void {
    if (this.#ended) return;
    if (this.#items.length >= MAX_UNREAD_NOTIFICATIONS) this.#items.shift();
    this.#items.push(n);
    this.#wake();
  }

  end(err?: Error): void {
    this.#ended ??= err ?? true;
    this.#wake();
  }

  #wake(): void {
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.(true);
  }

  async *drain(): AsyncGenerator<DaemonNotification> {
    while (true) {
      const item = this.#items.shift();
      if (item !== undefined) {
        yield item;
        continue;
      }
      if (this.#ended instanceof Error) throw this.#ended;
      if (this.#ended) return;
      await new Promise((r) => this.#waiter = r);
    }
  }
}

/**
 * A connection to a running daemon. Make one with {@linkcode connectDaemon};
 * close it when done.
 */
export class DaemonClient implements AsyncDisposable {
  static {
    setHello = (client, hello) => client.#hello = hello;
  }
  #hello: DaemonHello | undefined;
  readonly #conn: Deno.Conn;
  readonly #pending = new Map<number, Pending>();
  readonly #subscriptions = new Set<NotificationQueue>();
  #nextId = 1;
  #closed: Error | undefined;
  readonly #reading: Promise<void>;
  readonly #encoder = new TextEncoder();
  #writing: Promise<unknown> = Promise.resolve();

  /**
   * Use {@linkcode connectDaemon}.
   *
   * @ignore
   */
  constructor(conn: Deno.Conn) {
    this.#conn = conn;
    this.#reading = this.#read();
  }

  /**
   * What the daemon said to `hello` when the client connected: the API
   * version, DIM's version, the user's ID and name, the node's peer ID.
   */
  get hello(): DaemonHello {
    return this.#hello!;
  }

  /** Whether the connection is closed. */
  get closed(): boolean {
    return this.#closed !== undefined;
  }

  /**
   * Calls a method by name.
   *
   * @param method The method.
   * @param params Its params.
   * @param onProgress For `sendFile`: its `fileProgress` notifications.
   * @returns The result.
   * @throws {DaemonError} The daemon's error, with its code.
   * @throws {DimError} If the connection closed first.
   */
  call<M extends DaemonMethod>(
    method: M,
    params: DaemonMethods[M]["params"],
    onProgress?: (progress: DaemonFileProgress) => void,
  ): Promise<DaemonMethods[M]["result"]> {
    if (this.#closed) return Promise.reject(this.#closed);
    const id = this.#nextId++;
    const line = this.#encoder.encode(
      JSON.stringify({ jsonrpc: "2.0", id, method, params }) + "\n",
    );
    return new Promise((resolve, reject) => {
      this.#pending.set(id, {
        resolve: resolve as (value: unknown) => void,
        reject,
        onProgress,
      });
      this.#writing = this.#writing.then(() => this.#write(line)).catch((err) =>
        this.#shut(new DimError(`Cannot reach the daemon: ${(err as Error).message}`))
      );
    });
  }

  async #write(line: Uint8Array): Promise<void> {
    for (let off = 0; off < line.length;) off += await this.#conn.write(line.subarray(off));
  }

  /**
   * Sends a text message; it is stored and queued when this returns.
   *
   * @param contact The contact's name or ID.
   * @param text The message.
   * @returns The stored message and whether the daemon is offline.
   */
  send(contact: string, text: string): Promise<DaemonSendResult> {
    return this.call("send", { contact, text });
  }

  /**
   * Waits until a sent message is delivered, or stored in the network with `orStored`.
   *
   * @param seq The message's `seq`.
   * @param options `orStored`, `timeout` in seconds.
   * @returns The message in its new state.
   * @throws {DaemonError} `Offline` or `Timeout` if it does not happen in time.
   */
  waitFor(
    seq: number,
    options: DaemonTimeoutOptions & { readonly orStored?: boolean } = {},
  ): Promise<ChatMessage> {
    return this.call("waitFor", { seq, ...options });
  }

  /**
   * Sends a file to a contact who is online; returns once they signed its receipt.
   *
   * @param contact The contact.
   * @param path The file; a relative path is resolved against this process's directory.
   * @param options `onProgress`, `timeout` in seconds.
   * @returns What was sent.
   */
  sendFile(
    contact: string,
    path: string,
    options: DaemonTimeoutOptions & { readonly onProgress?: (p: DaemonFileProgress) => void } = {},
  ): Promise<DaemonSendFileResult> {
    const params = {
      contact,
      path: resolve(path),
      ...(options.timeout === undefined ? {} : { timeout: options.timeout }),
    };
    return this.call("sendFile", params, options.onProgress);
  }

  /**
   * The contacts.
   *
   * @returns Each contact.
   */
  listContacts(): Promise<DaemonContact[]> {
    return this.call("listContacts", {});
  }

  /**
   * Finds a user's card in the network and pins their keys.
   *
   * @param name The local name, one word.
   * @param id A user ID or `dim:` contact string.
   * @param options `timeout` in seconds.
   * @returns The new contact.
   */
  addContact(name: string, id: string, options: DaemonTimeoutOptions = {}): Promise<DaemonContact> {
    return this.call("addContact", { name, id, ...options });
  }

  /**
   * The safety number with a contact; `confirm` marks them verified.
   *
   * @param name The contact.
   * @param options `confirm`.
   * @returns The contact and the safety number.
   */
  verifyContact(
    name: string,
    options: { readonly confirm?: boolean } = {},
  ): Promise<DaemonVerifyResult> {
    return this.call("verifyContact", { name, ...options });
  }

  /**
   * Forgets a contact (the history stays).
   *
   * @param name The contact.
   * @returns Whether there was one.
   */
  removeContact(name: string): Promise<{ removed: boolean }> {
    return this.call("removeContact", { name });
  }

  /**
   * The conversation with a contact, oldest first.
   *
   * @param contact The contact.
   * @param options `limit` (default 50), `afterSeq`.
   * @returns The messages.
   */
  history(
    contact: string,
    options: { readonly limit?: number; readonly afterSeq?: number } = {},
  ): Promise<ChatMessage[]> {
    return this.call("history", { contact, ...options });
  }

  /**
   * Fetches the mailbox and returns the messages not shown before, marking them shown.
   *
   * @param options `all` to return every received message; `timeout` in seconds.
   * @returns What `dim inbox --json` prints.
   */
  inbox(options: DaemonTimeoutOptions & { readonly all?: boolean } = {}): Promise<DaemonInbox> {
    return this.call("inbox", { ...options });
  }

  /**
   * Marks incoming messages up to `seq` as shown.
   *
   * @param seq A message's `seq`.
   * @returns The mark now.
   */
  markShown(seq: number): Promise<{ lastShown: number }> {
    return this.call("markShown", { seq });
  }

  /**
   * What `dim status --json` reports.
   *
   * @returns The report.
   */
  status(): Promise<DaemonStatus> {
    return this.call("status", {});
  }

  /**
   * The groups this user is in or left.
   *
   * @returns Each group.
   */
  listGroups(): Promise<GroupInfo[]> {
    return this.call("listGroups", {});
  }

  /**
   * One group, its members marked "contact" or "group member, not a contact".
   *
   * @param group The group's ID, ID prefix or name.
   * @returns The group.
   */
  groupInfo(group: string): Promise<GroupInfo> {
    return this.call("groupInfo", { group });
  }

  /**
   * Makes a group of this user (its admin) and contacts.
   *
   * @param name The group's name (1 to 100 bytes).
   * @param members The contacts' names or IDs.
   * @returns The group.
   */
  createGroup(name: string, members: readonly string[]): Promise<GroupInfo> {
    return this.call("createGroup", { name, members: [...members] });
  }

  /**
   * Adds a contact to a group (as its admin); it reads nothing sent before.
   *
   * @param group The group.
   * @param contact The contact's name or ID.
   * @returns The group.
   */
  addMember(group: string, contact: string): Promise<GroupInfo> {
    return this.call("addMember", { group, contact });
  }

  /**
   * Removes a member from a group (as its admin).
   *
   * @param group The group.
   * @param member The member's user ID or contact name.
   * @returns The group.
   */
  removeMember(group: string, member: string): Promise<GroupInfo> {
    return this.call("removeMember", { group, member });
  }

  /**
   * A group member's safety number, to compare with theirs; with `confirm`,
   * marks the member verified (one who is not a contact is kept in the
   * group store).
   *
   * @param group The group.
   * @param member The member's user ID or contact name.
   * @param options `confirm`: the numbers matched.
   * @returns The member as `groupInfo` shows it, and the safety number.
   */
  verifyMember(
    group: string,
    member: string,
    options: { readonly confirm?: boolean } = {},
  ): Promise<VerifiedMember> {
    return this.call("verifyMember", { group, member, ...options });
  }

  /**
   * Leaves a group; its history stays.
   *
   * @param group The group.
   * @returns `{ left: true }` once the members are told (queued).
   */
  leaveGroup(group: string): Promise<{ left: true }> {
    return this.call("leaveGroup", { group });
  }

  /**
   * Sends a text to a group: encrypted once, one outbox entry per member.
   *
   * @param group The group.
   * @param text The text.
   * @returns The stored message and how many members it was queued for.
   */
  sendGroup(group: string, text: string): Promise<DaemonSendGroupResult> {
    return this.call("sendGroup", { group, text });
  }

  /**
   * A group's conversation, oldest first, with who wrote each message.
   *
   * @param group The group.
   * @param options `limit` (default 50).
   * @returns The messages.
   */
  groupHistory(group: string, options: { readonly limit?: number } = {}): Promise<ChatMessage[]> {
    return this.call("groupHistory", { group, ...options });
  }

  /**
   * The daemon's notifications: incoming messages, delivery states, files and
   * file progress, until the connection closes or the loop breaks. The
   * subscription starts at once; `ready` says when the daemon confirmed it.
   *
   * @returns The notifications.
   */
  subscribe(): DaemonSubscription {
    const inbox = new NotificationQueue();
    this.#subscriptions.add(inbox);
    if (this.#closed) inbox.end();
    const ready = this.#subscriptions.size > 1 || this.#closed
      ? Promise.resolve()
      : this.call("subscribe", {}).then(() => {});
    ready.catch((err) => inbox.end(err));
    const leave = () => {
      this.#subscriptions.delete(inbox);
      if (this.#subscriptions.size === 0 && !this.#closed) {
        this.call("unsubscribe", {}).catch(() => {});
      }
    };
    return {
      ready,
      async *[Symbol.asyncIterator]() {
        try {
          yield* inbox.drain();
        } finally {
          leave();
        }
      },
    };
  }

  /** Closes the connection: pending calls fail, subscriptions end. Idempotent. */
  async close(): Promise<void> {
    this.#shut(new DimError("Cannot call the daemon: the client is closed"));
    await this.#reading;
  }

  /** Same as {@linkcode DaemonClient.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #shut(reason: Error): void {
    if (this.#closed) return;
    this.#closed = reason;
    try {
      this.#conn.close();
    } catch {
      // Closed already.
    }
    for (const p of this.#pending.values()) p.reject(reason);
    this.#pending.clear();
    for (const s of this.#subscriptions) s.end();
  }

  async #read(): Promise<void> {
    const decoder = new TextDecoder();
    const buf = new Uint8Array(64 * 1024);
    let partial = "";
    try {
      while (!this.#closed) {
        const n = await this.#conn.read(buf);
        if (n === null) break;
        partial += decoder.decode(buf.subarray(0, n), { stream: true });
        if (partial.length > MAX_REPLY_BYTES) throw new DimError("a reply is too long");
        let nl: number;
        while ((nl = partial.indexOf("\n")) >= 0) {
          const line = partial.slice(0, nl);
          partial = partial.slice(nl + 1);
          if (line.trim() !== "") this.#dispatch(line);
        }
      }
      this.#shut(new DimError("Cannot call the daemon: it closed the connection"));
    } catch (err) {
      this.#shut(
        err instanceof DaemonError
          ? err
          : new DimError(`Cannot call the daemon: ${(err as Error).message}`, { cause: err }),
      );
    }
  }

  #dispatch(line: string): void {
    const msg = JSON.parse(line) as {
      id?: number | null;
      method?: string;
      params?: unknown;
      result?: unknown;
      error?: RpcErrorObject;
    };
    if (typeof msg.method === "string") {
      const n = { method: msg.method, params: msg.params } as DaemonNotification;
      if (n.method === "fileProgress" && typeof n.params.request === "number") {
        this.#pending.get(n.params.request)?.onProgress?.(n.params);
      }
      for (const s of this.#subscriptions) s.push(n);
      return;
    }
    if (msg.id === null || msg.id === undefined) {
      // Not about one request: the connection is refused or broken.
      if (msg.error) throw new DaemonError(msg.error);
      return;
    }
    const p = this.#pending.get(msg.id);
    if (p === undefined) return;
    this.#pending.delete(msg.id);
    if (msg.error) p.reject(new DaemonError(msg.error));
    else p.resolve(msg.result);
  }
}

/**
 * Connects to the daemon of a data directory and checks its API version.
 *
 * @param home The data directory (its socket is `<home>/dim.sock`).
 * @param options `signal` closes the client when aborted; `path` another socket.
 * @returns The client; close it when done.
 * @throws {DaemonNotRunningError} If no daemon listens there.
 * @throws {DaemonError} If the daemon refused the connection (too many
 *   clients, stopping) or speaks another API version.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { connectDaemon } from "./client.ts";
 * import { DaemonNotRunningError } from "./protocol.ts";
 *
 * const home = await Deno.makeTempDir();
 * await assert.rejects(connectDaemon(home), DaemonNotRunningError);
 * await Deno.remove(home);
 * ```
 */
export async function connectDaemon(
  home: string,
  options: ConnectDaemonOptions = {},
): Promise<DaemonClient> {
  const path = options.path ?? dataPaths(home).socket;
  options.signal?.throwIfAborted();
  let conn: Deno.UnixConn;
  try {
    conn = await Deno.connect({ transport: "unix", path });
  } catch (cause) {
    if (cause instanceof Deno.errors.NotFound || cause instanceof Deno.errors.ConnectionRefused) {
      throw new DaemonNotRunningError(`Cannot reach a dim daemon: nothing listens on ${path}`, {
        cause,
      });
    }
    throw new DimError(`Cannot connect to ${path}: ${(cause as Error).message}`, { cause });
  }
  const probe = new DaemonClient(conn);
  const onAbort = () => probe.close();
  options.signal?.addEventListener("abort", onAbort, { once: true });
  let hello: DaemonHello;
  try {
    hello = await probe.call("hello", {});
  } catch (err) {
    await probe.close();
    throw err;
  }
  if (hello.api !== DAEMON_API_VERSION) {
    await probe.close();
    throw new DaemonError({
      code: -32000,
      message:
        `Cannot use the daemon: it speaks API ${hello.api}, this client ${DAEMON_API_VERSION}`,
    });
  }
  setHello(probe, hello);
  return probe;
}
