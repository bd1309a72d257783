/**
 * DIM's messaging layer: the wire protocols `/dim/msg/1.0.0` and
 * `/dim/mbox/2.0.0`, the service that sends with a persistent outbox and
 * signed acknowledgements, and the mailbox server that keeps sealed
 * envelopes for offline users. What it keeps (messages, the outbox,
 * sessions, mailbox copies) goes through the storage interfaces it defines
 * ({@linkcode MessagingStorage}), which DIM's SQLite store implements.
 *
 * @example Encode a frame
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeFrame, encodeFrame, FrameType } from "./mod.ts";
 *
 * const frame = encodeFrame({ type: FrameType.Nack, code: 2 });
 * assert.deepEqual(decodeFrame(frame.subarray(4)), { type: FrameType.Nack, code: 2 });
 * ```
 *
 * @module
 */
export {
  decodeFrame,
  encodeFrame,
  FrameReader,
  FrameType,
  MAILBOX_NONCE_LENGTH,
  MAILBOX_PROTOCOL,
  MailboxRefusal,
  mailboxRequestSignedBytes,
  MAX_DELETE_ITEMS,
  MAX_FETCH_ITEMS,
  MAX_FRAME_LENGTH,
  MESSAGE_PROTOCOL,
  NackCode,
  StoreStatus,
} from "./wire.ts";
export type { Frame, MailboxRequest, StreamChunk } from "./wire.ts";
export { DEFAULT_MAILBOX_LIMITS, mailboxAddress, MailboxServer } from "./mailbox.ts";
export type {
  MailboxLimits,
  MailboxRequester,
  MailboxServerOptions,
  MessageStream,
  StreamHost,
} from "./mailbox.ts";
export { DEFAULT_INBOX_LIMITS } from "./inbox.ts";
export type { InboxLimits } from "./inbox.ts";
export { MessagingService } from "./service.ts";
export type {
  FetchMailboxOptions,
  FlushOutboxOptions,
  IncomingMessage,
  MessageRecipient,
  MessagingEventDetail,
  MessagingOptions,
  MessagingTransport,
  PeerTarget,
  RecipientResolver,
  SendOptions,
  WrapOpener,
} from "./types.ts";
export {
  DEFAULT_ATTEMPT_TIMEOUT_MS,
  DEFAULT_CHUNK_SIZE,
  DEFAULT_MAX_CHUNK_SIZE,
  DEFAULT_MAX_FILE_SIZE,
  DELETE_SKEW_MS,
  FILE_CHUNK_CONTENT_TYPE,
  FILE_HEADER_CONTENT_TYPE,
  GROUP_CHANGE_CONTENT_TYPE,
  GROUP_ENVELOPE_CONTENT_TYPE,
  GROUP_MESSAGE_CONTENT_TYPE,
  MAILBOX_FILE_CHUNK_SIZE,
  MAILBOX_FILE_MAX_SIZE,
  MAX_CHUNK_SIZE,
  MIN_CHUNK_SIZE,
  RECEIPT_CONTENT_TYPE,
  SEND_WINDOW,
  SENDER_KEY_CONTENT_TYPE,
} from "./constants.ts";
export {
  FILE_PROTOCOL,
  FileFrameType,
  sanitizeFileName,
  TransferRefusedError,
} from "./file_wire.ts";
export type { RefusalReason, TransferProgress } from "./file_wire.ts";
export { sendFile } from "./file_send.ts";
export type {
  FileRecipient,
  FileSigner,
  FileSource,
  FileTransfer,
  FileTransport,
  SendFileOptions,
  SentFile,
} from "./file_send.ts";
export { FileReceiver } from "./file_receive.ts";
export type { FileOffer, FileReceiverOptions, ReceivedFile } from "./file_receive.ts";
export {
  decodeFileChunk,
  decodeFileHeader,
  encodeFileChunk,
  encodeFileHeader,
  leaveFile,
  MAILBOX_FILE_VERSION,
  MailboxFiles,
} from "./file_mailbox.ts";
export type {
  MailboxFileChunk,
  MailboxFileHeader,
  MailboxFilesOptions,
  MailboxFileStore,
  QueuedFile,
  SendPart,
} from "./file_mailbox.ts";
export { fileSink, fileSource } from "./file_io.ts";
export type { FileSinkOptions } from "./file_io.ts";
// The base class of TransferRefusedError.
export { DimError } from "../errors.ts";
export type {
  ContactLookup,
  DeferredCommits,
  HistoryStorage,
  MailboxCopy,
  MailboxPutOutcome,
  MailboxQuota,
  MailboxStorage,
  MailboxStorer,
  MessageDirection,
  MessageProtection,
  MessageState,
  MessagingStorage,
  NewIncomingMessage,
  NewMailboxCopy,
  NewOutgoingMessage,
  OutboxEntry,
  OutboxStorage,
  SessionMarkStorage,
  SessionStorage,
  SettingsStorage,
  StorageTransactions,
  StoredMessage,
  StoredSession,
  TransactionOptions,
} from "./storage.ts";
export { SessionContentType, SessionManager } from "./sessions.ts";
export type {
  BundleFetcher,
  FrameResult,
  SessionManagerOptions,
  SessionPeer,
  SessionResult,
  SessionRollback,
} from "./sessions.ts";
// Record- and crypto-layer types in the signatures of SessionManager and BundleFetcher.
export type { PrekeyBundle, SignedRecord } from "../record/mod.ts";
export type { IdentityKeys, PublicPrekey, SignedPrekey } from "../crypto/mod.ts";
