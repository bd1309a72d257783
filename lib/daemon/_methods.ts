/**
 * The methods of the daemon's API over a running messenger: each checks
 * its params, calls the messenger or its profile, and returns a JSON value;
 * failures become JSON-RPC error objects in {@linkcode rpcError}.
 *
 * @module
 */
import { isAbsolute } from "node:path";
import { DimError, InvalidIdError, PeerUnreachableError } from "../errors.ts";
import { TransferRefusedError } from "../messaging/mod.ts";
import { MAX_GROUP_MEMBERS } from "../group/constants.ts";
import type { GroupInfo, VerifiedMember } from "../messenger/group_types.ts";
import type { Messenger } from "../messenger/messenger.ts";
import type { FileDelivery } from "../messenger/file_queue.ts";
import { toHex } from "../platform/bytes.ts";
import type { ChatMessage } from "../profile/chat_message.ts";
import { parseContactString } from "../profile/contact_string.ts";
import { type Contact, KeyChangedError, UnknownContactError } from "../profile/contacts.ts";
import { deadline } from "../platform/signals.ts";
import {
  DAEMON_API_VERSION,
  type DaemonContact,
  DaemonErrorCode,
  type DaemonFileProgress,
  type DaemonHello,
  type DaemonInbox,
  type DaemonSendFileResult,
  type DaemonSendGroupResult,
  type DaemonSendResult,
  type DaemonStatus,
  type DaemonVerifyResult,
  DEFAULT_TIMEOUT_S,
  MAX_HISTORY,
  MAX_TIMEOUT_S,
  type RpcErrorObject,
} from "./protocol.ts";

/** How many of the newest messages `history` with `afterSeq` looks through. */
const HISTORY_SCAN = 10_000;

/** A failure with its JSON-RPC code, thrown by a method. */
export class RpcFault extends Error {
  /** The code. */
  readonly code: number;
  /** The error's data, if any. */
  readonly data: unknown;

  /**
   * Makes the fault.
   *
   * @param code One of `DaemonErrorCode`.
   * @param message What went wrong.
   * @param data More for programs.
   */
  constructor(code: number, message: string, data?: unknown) {
    super(message);
    this.code = code;
    this.data = data;
  }
}

/** The mark of the newest incoming message shown to the user (the CLI's, shared with `dim inbox`). */
export interface ShownMark {
  /**
   * The mark.
   *
   * @returns The local sequence number, 0 if nothing was shown.
   */
  get(): number;
  /**
   * Moves the mark forward (never back).
   *
   * @param seq The local sequence number.
   */
  mark(seq: number): void;
}

/** What the methods need besides the messenger. */
export interface MethodHost {
  /** The running messenger. */
  readonly messenger: Messenger;
  /** DIM's version, for `hello`. */
  readonly version: string;
  /** Builds what `status` returns. */
  readonly status: () => DaemonStatus | Promise<DaemonStatus>;
  /** The inbox's mark. */
  readonly shown: ShownMark;
  /** Where received files are saved, for the `file` notification. */
  readonly downloadDir: string;
  /** Sends a `fileProgress` notification for a request (to it and to subscribers). */
  readonly progress: (call: Call, info: DaemonFileProgress) => void;
}

/** One request being served. */
export interface Call {
  /** The request's ID. */
  readonly id: string | number | null;
  /** Aborts when the client goes away or the daemon stops. */
  readonly signal: AbortSignal;
}

/** A method: params in, JSON out. */
export type Method = (params: Params, call: Call) => unknown;

/** The params object of a request, checked to be a plain object. */
export type Params = Readonly<Record<string, unknown>>;

/**
 * Checks a request's `params`: absent or an object (by name).
 *
 * @param params The `params` member.
 * @returns The params object.
 * @throws {RpcFault} `InvalidParams` for an array or a scalar.
 */
export function paramsObject(params: unknown): Params {
  if (params === undefined || params === null) return {};
  if (typeof params !== "object" || Array.isArray(params)) {
    throw new RpcFault(DaemonErrorCode.InvalidParams, "params must be an object (by name)");
  }
  return params as Params;
}

function invalid(message: string): RpcFault {
  return new RpcFault(DaemonErrorCode.InvalidParams, message);
}

function text(p: Params, name: string): string {
  const v = p[name];
  if (typeof v !== "string" || v === "") throw invalid(`${name} must be a non-empty string`);
  return v;
}

function flag(p: Params, name: string): boolean {
  const v = p[name];
  if (v === undefined) return false;
  if (typeof v !== "boolean") throw invalid(`${name} must be true or false`);
  return v;
}

function count(p: Params, name: string, fallback: number, max: number): number {
  const v = p[name];
  if (v === undefined) return fallback;
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0 || v > max) {
    throw invalid(`${name} must be a whole number from 0 to ${max}`);
  }
  return v;
}

function names(p: Params, name: string): string[] {
  const v = p[name];
  if (
    !Array.isArray(v) || v.length === 0 || v.length >= MAX_GROUP_MEMBERS ||
    !v.every((x) => typeof x === "string" && x !== "")
  ) {
    throw invalid(`${name} must be a list of 1 to ${MAX_GROUP_MEMBERS - 1} contact names or IDs`);
  }
  return v as string[];
}

/** The `timeout` param in ms: seconds, default 30, at most an hour. */
function timeoutMs(p: Params): number {
  const v = p.timeout;
  if (v === undefined) return DEFAULT_TIMEOUT_S * 1000;
  if (typeof v !== "number" || !(v > 0) || v > MAX_TIMEOUT_S) {
    throw invalid(`timeout must be a number of seconds above 0, at most ${MAX_TIMEOUT_S}`);
  }
  return v * 1000;
}

/**
 * A contact as the API shows it.
 *
 * @param c The contact.
 * @returns The fields of `dim contact list --json`.
 */
export function contactInfo(c: Contact): DaemonContact {
  return {
    name: c.name,
    id: c.id,
    displayName: c.displayName,
    fingerprint: c.fingerprint,
    verified: c.verified,
    keyChanged: c.keyChanged,
    lastSeen: c.lastSeen === 0 ? null : new Date(c.lastSeen).toISOString(),
  };
}

// Runs `task` under the request's signal and a timeout; the timeout's error
// wins, so the client learns it was the time.
async function timed<T>(
  call: Call,
  ms: number,
  task: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  using d = deadline(ms);
  return await task(AbortSignal.any([d.signal, call.signal]));
}

/**
 * The methods by name.
 *
 * @param host The messenger and what else the methods need.
 * @returns A method for each name of `DAEMON_METHODS`.
 */
export function daemonMethods(host: MethodHost): Readonly<Record<string, Method>> {
  const { messenger } = host;
  const profile = messenger.profile;
  // Throws UnknownContactError with the library's message.
  const known = (name: string): Contact => profile.contact(name);
  const hello = (): DaemonHello => ({
    api: DAEMON_API_VERSION,
    version: host.version,
    id: messenger.id,
    displayName: profile.displayName,
    peerId: messenger.node.peerId,
  });
  return {
    hello,
    version: hello,
    send: async (p, call): Promise<DaemonSendResult> => {
      const message = await messenger.send(text(p, "contact"), text(p, "text"), {
        signal: call.signal,
      });
      return { message, offline: messenger.node.connections === 0 };
    },
    waitFor: async (p, call): Promise<ChatMessage> => {
      const seq = count(p, "seq", -1, Number.MAX_SAFE_INTEGER);
      const m = profile.message(seq);
      if (m === undefined || m.direction !== "out") {
        throw invalid(`no sent message ${seq}`);
      }
      const ms = timeoutMs(p);
      const orStored = flag(p, "orStored");
      try {
        return await timed(call, ms, (signal) => messenger.waitFor(seq, { orStored, signal }));
      } catch (err) {
        if (call.signal.aborted) throw err;
        const now = profile.message(seq);
        if (messenger.node.connections === 0) {
          throw new RpcFault(
            DaemonErrorCode.Offline,
            "no peer answered: the message is queued on this device and goes when DIM connects",
            now,
          );
        }
        throw new RpcFault(
          DaemonErrorCode.Timeout,
          `message ${seq} is still ${now?.state ?? "unknown"} after ${ms / 1000} s`,
          now,
        );
      }
    },
    sendFile: async (p, call): Promise<DaemonSendFileResult> => {
      const contact = known(text(p, "contact"));
      const path = text(p, "path");
      if (!isAbsolute(path)) throw invalid("path must be absolute (the daemon has its own cwd)");
      const ms = timeoutMs(p);
      let last = 0;
      const delivery = await timed(call, ms, (signal) =>
        messenger.deliverFile(contact.name, path, {
          signal,
          onProgress: (t) => {
            // At most ten a second, and always the last.
            const now = Date.now();
            if (t.bytes < t.total && now - last < 100) return;
            last = now;
            host.progress(call, { direction: "out", contact: contact.name, ...t });
          },
        }));
      return fileResult(delivery);
    },
    listContacts: () => profile.contacts().map(contactInfo),
    addContact: async (p, call): Promise<DaemonContact> => {
      const name = text(p, "name");
      const id = text(p, "id");
      if (parseContactString(id).id === messenger.id) throw invalid("that is your own ID");
      const ms = timeoutMs(p);
      const c = await timed(call, ms, (signal) => messenger.addContact(name, id, { signal }));
      return contactInfo(c);
    },
    verifyContact: (p): DaemonVerifyResult => {
      const name = known(text(p, "name")).name;
      const safetyNumber = profile.safetyNumber(name);
      const c = flag(p, "confirm") ? profile.verifyContact(name) : profile.contact(name);
      return { ...contactInfo(c), safetyNumber };
    },
    removeContact: (p) => ({ removed: profile.removeContact(text(p, "name")) }),
    history: (p): ChatMessage[] => {
      const contact = known(text(p, "contact"));
      const limit = count(p, "limit", 50, MAX_HISTORY);
      if (p.afterSeq === undefined) return profile.history(contact.id, { limit });
      const after = count(p, "afterSeq", 0, Number.MAX_SAFE_INTEGER);
      // The profile reads the newest first; a client paging forward is near the end.
      return profile.history(contact.id, { limit: HISTORY_SCAN }).filter((m) => m.seq > after)
        .slice(0, limit);
    },
    inbox: async (p, call): Promise<DaemonInbox> => {
      const all = flag(p, "all");
      const ms = timeoutMs(p);
      const offline = messenger.node.connections === 0;
      let fetched = 0;
      if (!offline) {
        // Out of time, what arrived so far is shown.
        fetched = await timed(call, ms, (signal) => messenger.fetchMailbox({ signal }))
          .catch((err) => {
            if (call.signal.aborted) throw err;
            return 0;
          });
      }
      const messages = profile.incomingSince(all ? 0 : host.shown.get());
      const last = messages.at(-1);
      if (last !== undefined) host.shown.mark(last.seq);
      return { fetched, offline, messages };
    },
    markShown: (p) => {
      host.shown.mark(count(p, "seq", 0, Number.MAX_SAFE_INTEGER));
      return { lastShown: host.shown.get() };
    },
    status: () => host.status(),
    ...groupMethods(messenger),
  };
}

/** The group methods (see `lib/messenger/groups.ts`): local, each queues what it sends. */
function groupMethods(messenger: Messenger): Readonly<Record<string, Method>> {
  return {
    listGroups: (): GroupInfo[] => messenger.groups(),
    groupInfo: (p): GroupInfo => messenger.group(text(p, "group")),
    createGroup: (p): Promise<GroupInfo> =>
      messenger.createGroup(text(p, "name"), names(p, "members")),
    addMember: (p): Promise<GroupInfo> => messenger.addMember(text(p, "group"), text(p, "contact")),
    removeMember: (p): Promise<GroupInfo> =>
      messenger.removeMember(text(p, "group"), text(p, "member")),
    verifyMember: (p): Promise<VerifiedMember> =>
      messenger.verifyMember(text(p, "group"), text(p, "member"), { confirm: flag(p, "confirm") }),
    leaveGroup: async (p): Promise<{ left: true }> => {
      await messenger.leave(text(p, "group"));
      return { left: true };
    },
    sendGroup: async (p): Promise<DaemonSendGroupResult> => {
      const message = await messenger.sendGroup(text(p, "group"), text(p, "text"))
        .catch((err) => {
          throw err instanceof RangeError ? invalid(err.message) : err;
        });
      const members = message.group?.members ?? 0;
      return { message, members, offline: messenger.node.connections === 0 };
    },
    groupHistory: (p): ChatMessage[] =>
      messenger.groupHistory(text(p, "group"), { limit: count(p, "limit", 50, MAX_HISTORY) }),
  };
}

/**
 * The JSON-RPC error object for what a method threw.
 *
 * @param err What was thrown.
 * @returns The code, a message for people, and data for some.
 */
export function rpcError(err: unknown): RpcErrorObject {
  const message = err instanceof Error ? err.message : String(err);
  if (err instanceof RpcFault) {
    return err.data === undefined
      ? { code: err.code, message }
      : { code: err.code, message, data: err.data };
  }
  if (err instanceof UnknownContactError) return { code: DaemonErrorCode.UnknownContact, message };
  if (err instanceof KeyChangedError) {
    return {
      code: DaemonErrorCode.KeyChanged,
      message: `${message}: compare the safety number again (verifyContact with confirm)`,
      data: { contact: err.contact },
    };
  }
  if (err instanceof PeerUnreachableError) {
    return { code: DaemonErrorCode.PeerUnreachable, message };
  }
  if (err instanceof TransferRefusedError) {
    return { code: DaemonErrorCode.TransferRefused, message, data: { reason: err.reason } };
  }
  if (err instanceof InvalidIdError) return { code: DaemonErrorCode.InvalidId, message };
  if (err instanceof DOMException && err.name === "TimeoutError") {
    return { code: DaemonErrorCode.Timeout, message };
  }
  if (err instanceof DOMException && err.name === "AbortError") {
    return { code: DaemonErrorCode.Stopping, message: "the request was cancelled" };
  }
  if (err instanceof DimError) return { code: DaemonErrorCode.Failed, message };
  return { code: DaemonErrorCode.InternalError, message };
}

/**
 * A file's delivery as the API tells it.
 *
 * @param delivery What `Messenger.deliverFile` returned.
 * @returns The `sendFile` result.
 */
export function fileResult(delivery: FileDelivery): DaemonSendFileResult {
  switch (delivery.how) {
    case "direct": {
      const { fileId, name, bytes, sha256 } = delivery.sent;
      return { how: "direct", fileId, name, bytes, sha256 };
    }
    case "mailbox": {
      const { fileId, name, bytes, sha256, parts } = delivery.file;
      return { how: "mailbox", fileId, name, bytes, sha256, parts: [...parts] };
    }
    case "queued": {
      const { fileId, name, bytes, sha256 } = delivery.entry;
      return { how: "queued", fileId, name, bytes, sha256: toHex(sha256) };
    }
  }
}
