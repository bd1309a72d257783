/**
 * The local API of `dim daemon`: JSON-RPC 2.0 over a Unix domain socket in
 * the data directory (`<home>/dim.sock`, mode 0600), one JSON object per
 * line (UTF-8, ended by `\n`), each line at most {@linkcode MAX_LINE_BYTES}.
 * This module holds the wire's names, limits, error codes and the shapes of
 * params, results and notifications; `server.ts` serves it over a running
 * messenger and `client.ts` speaks it.
 *
 * A session, `>` from the client, `<` from the daemon:
 *
 * ```text
 * > {"jsonrpc":"2.0","id":1,"method":"hello"}
 * < {"jsonrpc":"2.0","id":1,"result":{"api":1,"version":"0.2.0","id":"dim1…","displayName":"Alice","peerId":"12D3KooW…"}}
 * > {"jsonrpc":"2.0","id":2,"method":"subscribe"}
 * < {"jsonrpc":"2.0","id":2,"result":{"subscribed":true}}
 * < {"jsonrpc":"2.0","method":"message","params":{"seq":7,"direction":"in","contact":"bob","text":"hi",…}}
 * ```
 *
 * Batches (a JSON array) are refused with {@linkcode DaemonErrorCode.InvalidRequest}.
 * Errors carry the standard JSON-RPC codes for malformed requests and the
 * DIM codes of {@linkcode DaemonErrorCode} for what went wrong in the messenger,
 * with a human message.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DAEMON_API_VERSION, DaemonErrorCode, MAX_LINE_BYTES } from "./protocol.ts";
 *
 * assert.equal(DAEMON_API_VERSION, 1);
 * assert.equal(DaemonErrorCode.MethodNotFound, -32601);
 * assert.equal(MAX_LINE_BYTES, 1024 * 1024);
 * ```
 *
 * @module
 */
import { DimError } from "../errors.ts";
import type { GroupInfo, VerifiedMember } from "../messenger/group_types.ts";
import type { ChatMessage } from "../profile/chat_message.ts";

/** The API version `hello` reports; a change that breaks clients bumps it. */
export const DAEMON_API_VERSION = 1;

/**
 * The longest line either side may send, in bytes, line end excluded: room
 * for a message of the largest size the messaging layer carries. A longer
 * request gets {@linkcode DaemonErrorCode.RequestTooLarge} and the connection is
 * closed, since the rest of it cannot be framed.
 */
export const MAX_LINE_BYTES = 1024 * 1024;

/**
 * How many clients may be connected at once; one more gets
 * {@linkcode DaemonErrorCode.TooManyClients} and is closed.
 */
export const MAX_CLIENTS = 64;

/**
 * How many bytes of replies and notifications may wait for one client
 * that does not read; past it the client is disconnected, so a stalled
 * subscriber never holds memory or the daemon.
 */
export const MAX_CLIENT_BACKLOG_BYTES = 4 * 1024 * 1024;

/**
 * How many requests of one client run at once; the daemon reads no more of
 * its lines until one finishes.
 */
export const MAX_CLIENT_REQUESTS = 16;

/** How long a networked method waits by default (`timeout` param), in seconds. */
export const DEFAULT_TIMEOUT_S = 30;

/** The longest `timeout` a request may ask for, in seconds. */
export const MAX_TIMEOUT_S = 3600;

/** The most messages `history` returns. */
export const MAX_HISTORY = 1000;

/**
 * The error codes: JSON-RPC 2.0's for malformed requests (−32700 to
 * −32600), DIM's in the server range −32000 to −32099.
 */
export const DaemonErrorCode = {
  /** The line is not JSON. */
  ParseError: -32700,
  /** Not a JSON-RPC 2.0 request object (a batch is refused with this code too). */
  InvalidRequest: -32600,
  /** No such method. */
  MethodNotFound: -32601,
  /** The params are missing, of the wrong type, or out of range. */
  InvalidParams: -32602,
  /** A bug in the daemon; the message says what. */
  InternalError: -32603,
  /** Another failure of the messenger; the message says what. */
  Failed: -32000,
  /** No contact of that name or ID. */
  UnknownContact: -32001,
  /** The contact's keys changed: verify them again (`verifyContact` with `confirm`). */
  KeyChanged: -32002,
  /** The contact or the network could not be reached (`sendFile` needs the recipient online). */
  PeerUnreachable: -32003,
  /** The recipient refused the file, or it arrived damaged. */
  TransferRefused: -32004,
  /** A user ID or contact string is malformed or mistyped. */
  InvalidId: -32005,
  /** The method ran out of time (its `timeout` param). */
  Timeout: -32006,
  /**
   * No peer answered: the message is kept on this device only and goes when
   * DIM connects (`waitFor` while offline; `dim send` exits 3 for it).
   */
  Offline: -32007,
  /** The line was longer than {@linkcode MAX_LINE_BYTES}; the connection is closed. */
  RequestTooLarge: -32008,
  /** {@linkcode MAX_CLIENTS} clients are connected; this one is closed. */
  TooManyClients: -32009,
  /** The daemon is stopping. */
  Stopping: -32010,
} as const;

/** One of the numbers of {@linkcode DaemonErrorCode}. */
export type DaemonErrorCodeValue = typeof DaemonErrorCode[keyof typeof DaemonErrorCode];

/** A JSON-RPC 2.0 request (with an `id`) or notification (without). */
export interface RpcRequest {
  /** Always `"2.0"`. */
  readonly jsonrpc: "2.0";
  /** The request's ID, echoed in the response; absent for a notification. */
  readonly id?: string | number | null;
  /** The method's name. */
  readonly method: string;
  /** The params: an object (by name) for every DIM method. */
  readonly params?: unknown;
}

/** The error object of a JSON-RPC 2.0 response. */
export interface RpcErrorObject {
  /** One of {@linkcode DaemonErrorCode}. */
  readonly code: number;
  /** What went wrong, for people. */
  readonly message: string;
  /** More about it, for programs (for `KeyChanged`: `{ contact }`). */
  readonly data?: unknown;
}

/** A JSON-RPC 2.0 response: `result` or `error`. */
export type RpcResponse =
  | { readonly jsonrpc: "2.0"; readonly id: string | number | null; readonly result: unknown }
  | {
    readonly jsonrpc: "2.0";
    readonly id: string | number | null;
    readonly error: RpcErrorObject;
  };

/** What `hello` (or `version`) returns. */
export interface DaemonHello {
  /** The API version, {@linkcode DAEMON_API_VERSION}. */
  readonly api: number;
  /** DIM's version. */
  readonly version: string;
  /** The user's ID. */
  readonly id: string;
  /** The user's display name. */
  readonly displayName: string;
  /** The node's libp2p peer ID. */
  readonly peerId: string;
}

/** What `send` returns. */
export interface DaemonSendResult {
  /** The stored message, state `"pending"` until it is delivered or stored in the network. */
  readonly message: ChatMessage;
  /**
   * Whether the node has no connection: the message is queued on this device
   * only and goes when DIM connects.
   */
  readonly offline: boolean;
}

/** What `sendGroup` returns. */
export interface DaemonSendGroupResult {
  /** The stored message, with `group.deliveredTo` of `group.members` (0 at first). */
  readonly message: ChatMessage;
  /** How many members it was queued for (its outbox entries, one per member). */
  readonly members: number;
  /** Whether the node has no connection: the message goes when DIM connects. */
  readonly offline: boolean;
}

/** A contact as the API shows it (the same fields as `dim contact list --json`). */
export interface DaemonContact {
  /** The local name. */
  readonly name: string;
  /** The user ID. */
  readonly id: string;
  /** The display name from their card. */
  readonly displayName: string;
  /** Short fingerprint of the pinned keys. */
  readonly fingerprint: string;
  /** Whether the safety number was confirmed. */
  readonly verified: boolean;
  /** Whether the network shows keys that differ from the pinned ones. */
  readonly keyChanged: boolean;
  /** When they were last seen (ISO 8601), or `null`. */
  readonly lastSeen: string | null;
}

/** What `verifyContact` returns. */
export interface DaemonVerifyResult extends DaemonContact {
  /** The safety number, 12 groups of 5 digits, to compare out of band. */
  readonly safetyNumber: string;
}

/**
 * What `sendFile` returns: `how` it went — `direct` once the recipient
 * signed its receipt; `mailbox`, left in the network in sealed parts (a file
 * of up to 4 MiB, recipient offline; `parts` are their outbox entries, for
 * `waitFor`); `queued`, waiting on the daemon's device until the two are
 * online together (a larger file, recipient offline).
 */
export interface DaemonSendFileResult {
  /** How the file went. */
  readonly how: "direct" | "mailbox" | "queued";
  /** The outbox entries of its parts (`mailbox` only). */
  readonly parts?: readonly number[];
  /** The file ID, 32 hex digits. */
  readonly fileId: string;
  /** The name the recipient was given. */
  readonly name: string;
  /** Bytes sent. */
  readonly bytes: number;
  /** SHA-256 of the file, hex. */
  readonly sha256: string;
}

/** What `inbox` returns (the same as `dim inbox --json`). */
export interface DaemonInbox {
  /** How many messages the mailbox fetch brought. */
  readonly fetched: number;
  /** Whether no peer answered, so the network mailbox was not checked. */
  readonly offline: boolean;
  /** The incoming messages not shown before (all of them with `all`), oldest first. */
  readonly messages: ChatMessage[];
}

/**
 * What `status` returns: what `dim status --json` reports. The fields below
 * are always there; the daemon adds the others of `dim status --json`
 * (bootstrap, joinedThrough, rememberedPeers, learnedBootstrap, lanDiscovery).
 */
export interface DaemonStatus {
  /** The user's ID. */
  readonly id: string;
  /** The user's display name. */
  readonly displayName: string;
  /** The node's peer ID. */
  readonly peerId: string;
  /** The node's addresses. */
  readonly addresses: readonly string[];
  /** Reachability (`status`: unknown, public or private) and its summary in words. */
  readonly reachability: { readonly status: string; readonly summary: string };
  /** Open connections; 0 means offline. */
  readonly connections: number;
  /** Connected peers. */
  readonly peers: number;
  /** Peers in the DHT routing table. */
  readonly routingTable: number;
  /** Sent messages not yet acknowledged. */
  readonly outbox: number;
  /** Of those, the ones stored in the network. */
  readonly outboxStored: number;
  /** How many contacts. */
  readonly contacts: number;
  /** The contacts whose keys changed. */
  readonly keyChanged: readonly string[];
}

/** The params of `fileProgress`: how far a file transfer is. */
export interface DaemonFileProgress {
  /** The `id` of the `sendFile` request, on the requester's copy only. */
  readonly request?: string | number | null;
  /** `"out"` for a file being sent, `"in"` for one being received. */
  readonly direction: "out" | "in";
  /** The contact's name (for `"in"`, the sender's user ID if they are no contact). */
  readonly contact: string;
  /** The file ID, 32 hex digits. */
  readonly fileId: string;
  /** The file name. */
  readonly name: string;
  /** Bytes so far. */
  readonly bytes: number;
  /** The file size. */
  readonly total: number;
}

/** The params of `file`: a file received, checked and saved. */
export interface DaemonFile {
  /** The sender's contact name, or `null`. */
  readonly contact: string | null;
  /** The sender's user ID. */
  readonly senderId: string;
  /** The file ID, 32 hex digits. */
  readonly fileId: string;
  /** The file name as sent (the saved name may carry ` (1)`). */
  readonly name: string;
  /** Its size. */
  readonly bytes: number;
  /** SHA-256 of the file, hex; the sender signed it. */
  readonly sha256: string;
  /** The directory it was saved in. */
  readonly dir: string;
}

/** The params of `fileFailed`: an incoming transfer that failed or was refused. */
export interface DaemonFileFailed {
  /** The file ID, if the offer was read (the same as its `fileProgress`). */
  readonly fileId: string | null;
  /** The sender's user ID, if the offer was read. */
  readonly senderId: string | null;
  /** The file name, if the offer was read. */
  readonly name: string | null;
  /** Why. */
  readonly error: string;
}

/**
 * A notification the daemon sends: after `subscribe`, `message` (an
 * incoming message), `sent` (a message this user sent, through any
 * client), `status` (an outgoing message changed state: delivered, or
 * stored in the network), `file`, `fileFailed` and
 * `fileProgress`; a group message's `message` carries its `group` (then
 * `peer` is who wrote it); the requester of a `sendFile` gets its `fileProgress`
 * without subscribing.
 */
export type DaemonNotification =
  | { readonly method: "message"; readonly params: ChatMessage }
  | { readonly method: "status"; readonly params: ChatMessage }
  | { readonly method: "sent"; readonly params: ChatMessage }
  | { readonly method: "fileProgress"; readonly params: DaemonFileProgress }
  | { readonly method: "file"; readonly params: DaemonFile }
  | { readonly method: "fileFailed"; readonly params: DaemonFileFailed };

/** The methods, their params and results. */
export interface DaemonMethods {
  /** The API version and who this is. */
  hello: { params: Record<string, never>; result: DaemonHello };
  /** Same as `hello`. */
  version: { params: Record<string, never>; result: DaemonHello };
  /** Sends a text message; returns once it is stored and queued. */
  send: { params: { contact: string; text: string }; result: DaemonSendResult };
  /**
   * Waits until a sent message is delivered (or stored in the network, with
   * `orStored`); `Offline` or `Timeout` when it does not happen in time.
   */
  waitFor: {
    params: { seq: number; orStored?: boolean; timeout?: number };
    result: ChatMessage;
  };
  /** Sends a file (absolute path) to a contact who is online; `fileProgress` meanwhile. */
  sendFile: {
    params: { contact: string; path: string; timeout?: number };
    result: DaemonSendFileResult;
  };
  /** The contacts. */
  listContacts: { params: Record<string, never>; result: DaemonContact[] };
  /** Finds a user's card in the network and pins their keys. */
  addContact: { params: { name: string; id: string; timeout?: number }; result: DaemonContact };
  /** The safety number; `confirm` marks the contact verified (accepting changed keys). */
  verifyContact: { params: { name: string; confirm?: boolean }; result: DaemonVerifyResult };
  /** Forgets a contact (the history stays). */
  removeContact: { params: { name: string }; result: { removed: boolean } };
  /** The newest `limit` messages with a contact (after `afterSeq`), oldest first. */
  history: {
    params: { contact: string; limit?: number; afterSeq?: number };
    result: ChatMessage[];
  };
  /** Fetches the mailbox and returns the incoming messages not shown before, marking them shown. */
  inbox: { params: { all?: boolean; timeout?: number }; result: DaemonInbox };
  /** Marks incoming messages up to `seq` as shown (as `dim chat` does when it shows them). */
  markShown: { params: { seq: number }; result: { lastShown: number } };
  /** What `dim status --json` reports. */
  status: { params: Record<string, never>; result: DaemonStatus };
  /** The groups this user is in or left. */
  listGroups: { params: Record<string, never>; result: GroupInfo[] };
  /** One group (by ID, ID prefix or name), its members marked contact or not. */
  groupInfo: { params: { group: string }; result: GroupInfo };
  /** Makes a group of this user (its admin) and contacts. */
  createGroup: { params: { name: string; members: string[] }; result: GroupInfo };
  /** Adds a contact to a group (as its admin); it reads nothing sent before. */
  addMember: { params: { group: string; contact: string }; result: GroupInfo };
  /** Removes a member (user ID or contact name) from a group (as its admin). */
  removeMember: { params: { group: string; member: string }; result: GroupInfo };
  /** A member's safety number; with `confirm`, marks the member verified. */
  verifyMember: {
    params: { group: string; member: string; confirm?: boolean };
    result: VerifiedMember;
  };
  /** Leaves a group; its history stays. */
  leaveGroup: { params: { group: string }; result: { left: true } };
  /** Sends a text to a group: encrypted once, one outbox entry per member. */
  sendGroup: { params: { group: string; text: string }; result: DaemonSendGroupResult };
  /** The newest `limit` messages of a group, oldest first, with who wrote each. */
  groupHistory: { params: { group: string; limit?: number }; result: ChatMessage[] };
  /** Starts the notifications of this connection. */
  subscribe: { params: Record<string, never>; result: { subscribed: true } };
  /** Stops them. */
  unsubscribe: { params: Record<string, never>; result: { subscribed: false } };
}

/** A method's name. */
export type DaemonMethod = keyof DaemonMethods;

/** Every method's name, in the order the README lists them. */
export const DAEMON_METHODS: readonly DaemonMethod[] = [
  "hello",
  "version",
  "send",
  "waitFor",
  "sendFile",
  "listContacts",
  "addContact",
  "verifyContact",
  "removeContact",
  "history",
  "inbox",
  "markShown",
  "status",
  "listGroups",
  "groupInfo",
  "createGroup",
  "addMember",
  "removeMember",
  "verifyMember",
  "leaveGroup",
  "sendGroup",
  "groupHistory",
  "subscribe",
  "unsubscribe",
];

/**
 * An error the daemon answered a request with.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DaemonError, DaemonErrorCode } from "./protocol.ts";
 *
 * const err = new DaemonError({ code: DaemonErrorCode.UnknownContact, message: "No contact carol" });
 * assert.equal(err.code, -32001);
 * assert.equal(err.message, "No contact carol");
 * ```
 */
export class DaemonError extends DimError {
  /** One of {@linkcode DaemonErrorCode}. */
  readonly code: number;
  /** The error's `data`, if any. */
  readonly data: unknown;

  /**
   * Makes the error from a response's error object.
   *
   * @param error The JSON-RPC error object.
   */
  constructor(error: RpcErrorObject) {
    super(error.message);
    this.code = error.code;
    this.data = error.data;
  }
}

/**
 * No daemon answers on the socket: none runs for this data directory (or a
 * stale socket file was left behind). Without one, commands open the data
 * directory themselves.
 */
export class DaemonNotRunningError extends DimError {}
