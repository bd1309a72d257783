/**
 * Files left for later: a file of up to {@linkcode MAILBOX_FILE_MAX_SIZE}
 * (4 MiB) sent as sealed envelopes through the outbox, like messages, so
 * that it reaches a recipient who is offline now: directly if the recipient
 * is online, through the recipient's network mailbox otherwise.
 *
 * {@linkcode leaveFile} splits the file into a header (content type
 * {@linkcode FILE_HEADER_CONTENT_TYPE}) and chunks of
 * {@linkcode MAILBOX_FILE_CHUNK_SIZE} ({@linkcode FILE_CHUNK_CONTENT_TYPE}),
 * each one an ordinary outgoing message: sealed in the recipient's session
 * if there is one (else in the static envelope), bound to the recipient's
 * identity, kept in the outbox until acknowledged. The recipient stores
 * each part as it arrives (a history row that is never shown), and
 * {@linkcode MailboxFiles} puts a file together once its header and all its
 * chunks are in, checks its size and SHA-256, and writes it to the sink the
 * `accept` policy gives (the same policy as direct transfers: contacts only,
 * sanitised name, no overwrite); then the parts' bodies are cleared.
 *
 * ## Formats (version 1, integers big-endian)
 *
 * ```text
 * header = version u8 (= 1) | fileId (16) | size u64 | sha256 (32) | chunks u16
 *        | nameLength u16 | name (UTF-8, 1 to 255 bytes)
 * chunk  = version u8 (= 1) | fileId (16) | index u16 | data
 * ```
 *
 * `size` is at most {@linkcode MAILBOX_FILE_MAX_SIZE}; `chunks` is
 * ceil(size / {@linkcode MAILBOX_FILE_CHUNK_SIZE}); every chunk but the last
 * carries exactly that many bytes, and the last the rest. Decoding is
 * strict: a part that breaks a rule, or a file whose chunks do not add up to
 * its size and hash, is refused (`onFailed`) and its parts dropped.
 *
 * @example
 * ```ts ignore
 * const queued = await leaveFile((body, contentType) => service.send(bob, body, { contentType }),
 *   await fileSource("notes.pdf"));
 * const files = new MailboxFiles({ storage, accept: (offer) => fileSink(`/tmp/${offer.name}`) });
 * service.addEventListener("file-part", (e) => files.take(e.detail.incoming));
 * ```
 *
 * @module
 */
import { concat, constantTimeEqual, fromUtf8, toHex, utf8 } from "../platform/bytes.ts";
import { DimError, ProtocolError } from "../errors.ts";
import { decodeUserId } from "../crypto/identity.ts";
import type { StorageTransactions, StoredMessage } from "./storage.ts";
import type { IncomingMessage } from "./types.ts";
import {
  FILE_CHUNK_CONTENT_TYPE,
  FILE_HEADER_CONTENT_TYPE,
  MAILBOX_FILE_CHUNK_SIZE,
  MAILBOX_FILE_MAX_SIZE,
  MAILBOX_FILE_PENDING_BYTES,
} from "./constants.ts";
import { MAX_FILE_NAME_LENGTH, sanitizeFileName, TransferRefusedError } from "./file_wire.ts";
import type { FileSource } from "./file_send.ts";
import type { FileOffer, ReceivedFile } from "./file_receive.ts";

/** The format version of a mailbox file's parts. */
export const MAILBOX_FILE_VERSION = 1;

const ID_LENGTH = 16;
const HASH_LENGTH = 32;
const HEADER_FIXED = 1 + ID_LENGTH + 8 + HASH_LENGTH + 2 + 2;
const CHUNK_FIXED = 1 + ID_LENGTH + 2;

/** A mailbox file's header. */
export interface MailboxFileHeader {
  /** 16 random bytes naming the file. */
  readonly fileId: Uint8Array;
  /** The file name (sanitised when read). */
  readonly name: string;
  /** Its size in bytes. */
  readonly size: number;
  /** SHA-256 of its bytes. */
  readonly sha256: Uint8Array;
  /** How many chunks carry it. */
  readonly chunks: number;
}

/** One chunk of a mailbox file. */
export interface MailboxFileChunk {
  /** The file it belongs to. */
  readonly fileId: Uint8Array;
  /** Its place, from 0. */
  readonly index: number;
  /** Its bytes. */
  readonly data: Uint8Array;
}

/** How many chunks carry a file of `size` bytes. */
function chunksFor(size: number): number {
  return Math.ceil(size / MAILBOX_FILE_CHUNK_SIZE);
}

/**
 * Encodes a header's body.
 *
 * @param header The header.
 * @returns The body.
 * @throws {RangeError} If the size, chunk count or name is out of range.
 */
export function encodeFileHeader(header: MailboxFileHeader): Uint8Array {
  const name = utf8(header.name);
  if (
    header.fileId.length !== ID_LENGTH || header.sha256.length !== HASH_LENGTH ||
    !Number.isSafeInteger(header.size) || header.size < 0 ||
    header.size > MAILBOX_FILE_MAX_SIZE || header.chunks !== chunksFor(header.size) ||
    name.length === 0 || name.length > MAX_FILE_NAME_LENGTH
  ) {
    throw new RangeError("Cannot encode file header: a field is out of range");
  }
  const body = new Uint8Array(HEADER_FIXED + name.length);
  const view = new DataView(body.buffer);
  body[0] = MAILBOX_FILE_VERSION;
  body.set(header.fileId, 1);
  view.setBigUint64(1 + ID_LENGTH, BigInt(header.size));
  body.set(header.sha256, 1 + ID_LENGTH + 8);
  view.setUint16(1 + ID_LENGTH + 8 + HASH_LENGTH, header.chunks);
  view.setUint16(1 + ID_LENGTH + 8 + HASH_LENGTH + 2, name.length);
  body.set(name, HEADER_FIXED);
  return body;
}

/**
 * Decodes a header's body, strictly; the name comes back sanitised.
 *
 * @param body The body.
 * @returns The header.
 * @throws {ProtocolError} If it breaks a rule of the format.
 */
export function decodeFileHeader(body: Uint8Array): MailboxFileHeader {
  const bad = () => new ProtocolError("Cannot read file header: malformed");
  if (body.length < HEADER_FIXED + 1 || body[0] !== MAILBOX_FILE_VERSION) throw bad();
  const view = new DataView(body.buffer, body.byteOffset, body.length);
  const size = view.getBigUint64(1 + ID_LENGTH);
  const chunks = view.getUint16(1 + ID_LENGTH + 8 + HASH_LENGTH);
  const nameLength = view.getUint16(1 + ID_LENGTH + 8 + HASH_LENGTH + 2);
  if (
    size > BigInt(MAILBOX_FILE_MAX_SIZE) || chunks !== chunksFor(Number(size)) ||
    nameLength === 0 || nameLength > MAX_FILE_NAME_LENGTH ||
    body.length !== HEADER_FIXED + nameLength
  ) throw bad();
  let name: string;
  try {
    name = fromUtf8(body.subarray(HEADER_FIXED));
  } catch {
    throw bad();
  }
  return {
    fileId: body.slice(1, 1 + ID_LENGTH),
    name: sanitizeFileName(name),
    size: Number(size),
    sha256: body.slice(1 + ID_LENGTH + 8, 1 + ID_LENGTH + 8 + HASH_LENGTH),
    chunks,
  };
}

/**
 * Encodes a chunk's body.
 *
 * @param chunk The chunk.
 * @returns The body.
 * @throws {RangeError} If the ID, index or data length is out of range.
 */
export function encodeFileChunk(chunk: MailboxFileChunk): Uint8Array {
  if (
    chunk.fileId.length !== ID_LENGTH || !Number.isInteger(chunk.index) || chunk.index < 0 ||
    chunk.index >= chunksFor(MAILBOX_FILE_MAX_SIZE) || chunk.data.length === 0 ||
    chunk.data.length > MAILBOX_FILE_CHUNK_SIZE
  ) {
    throw new RangeError("Cannot encode file chunk: a field is out of range");
  }
  const head = new Uint8Array(CHUNK_FIXED);
  head[0] = MAILBOX_FILE_VERSION;
  head.set(chunk.fileId, 1);
  new DataView(head.buffer).setUint16(1 + ID_LENGTH, chunk.index);
  return concat(head, chunk.data);
}

/**
 * Decodes a chunk's body, strictly.
 *
 * @param body The body.
 * @returns The chunk.
 * @throws {ProtocolError} If it breaks a rule of the format.
 */
export function decodeFileChunk(body: Uint8Array): MailboxFileChunk {
  if (
    body.length <= CHUNK_FIXED || body.length > CHUNK_FIXED + MAILBOX_FILE_CHUNK_SIZE ||
    body[0] !== MAILBOX_FILE_VERSION
  ) {
    throw new ProtocolError("Cannot read file chunk: malformed");
  }
  const index = new DataView(body.buffer, body.byteOffset, body.length).getUint16(1 + ID_LENGTH);
  if (index >= chunksFor(MAILBOX_FILE_MAX_SIZE)) {
    throw new ProtocolError("Cannot read file chunk: malformed");
  }
  return { fileId: body.slice(1, 1 + ID_LENGTH), index, data: body.slice(CHUNK_FIXED) };
}

/** A file queued to be left for its recipient. */
export interface QueuedFile {
  /** The file ID, 32 hex digits. */
  readonly fileId: string;
  /** The sanitised name the recipient sees. */
  readonly name: string;
  /** Its size in bytes. */
  readonly bytes: number;
  /** SHA-256 of the file, hex. */
  readonly sha256: string;
  /**
   * The local sequence numbers of its parts in the outbox, header first:
   * the file has arrived once all are delivered, and is in the network
   * once all are stored there.
   */
  readonly parts: readonly number[];
}

/** Queues one part of a file as an outgoing message of `contentType`. */
export type SendPart = (body: Uint8Array, contentType: number) => Promise<StoredMessage>;

/**
 * Splits a file of at most {@linkcode MAILBOX_FILE_MAX_SIZE} into sealed
 * parts and queues them in the outbox, header first.
 *
 * @param send Queues one part for the recipient (`MessagingService.send`).
 * @param source The file.
 * @param options `signal`: gives up before the first part is queued.
 * @returns The queued file.
 * @throws {RangeError} If the file is larger than {@linkcode MAILBOX_FILE_MAX_SIZE}
 *   ("Cannot leave file … for later: …").
 * @throws {DimError} If the file is not as long as its source said.
 */
export async function leaveFile(
  send: SendPart,
  source: FileSource,
  options: { readonly signal?: AbortSignal } = {},
): Promise<QueuedFile> {
  const name = sanitizeFileName(source.name);
  if (source.size > MAILBOX_FILE_MAX_SIZE) {
    await source.stream.cancel().catch(() => {});
    throw new RangeError(
      `Cannot leave file ${name} for later: it is ${source.size} bytes, over the ` +
        `${MAILBOX_FILE_MAX_SIZE / (1024 * 1024)} MiB a file left in the network may have`,
    );
  }
  const bytes = new Uint8Array(await new Response(source.stream).arrayBuffer());
  if (bytes.length !== source.size) {
    throw new DimError(`Cannot leave file ${name} for later: it changed while it was read`);
  }
  options.signal?.throwIfAborted();
  const fileId = crypto.getRandomValues(new Uint8Array(ID_LENGTH));
  const sha256 = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  const chunks = chunksFor(bytes.length);
  const parts: number[] = [];
  const header = encodeFileHeader({ fileId, name, size: bytes.length, sha256, chunks });
  parts.push((await send(header, FILE_HEADER_CONTENT_TYPE)).seq);
  for (let index = 0; index < chunks; index++) {
    const data = bytes.subarray(
      index * MAILBOX_FILE_CHUNK_SIZE,
      (index + 1) * MAILBOX_FILE_CHUNK_SIZE,
    );
    parts.push((await send(encodeFileChunk({ fileId, index, data }), FILE_CHUNK_CONTENT_TYPE)).seq);
  }
  return { fileId: toHex(fileId), name, bytes: bytes.length, sha256: toHex(sha256), parts };
}

/** What {@linkcode MailboxFiles} reads and clears: the stored parts. */
export interface MailboxFileStore extends StorageTransactions {
  /** The history, where each part is a received message. */
  readonly messages: {
    /** Received messages of these content types from `peer` whose bodies are kept, oldest first. */
    incomingWithBody(peer: string, contentTypes: readonly number[]): StoredMessage[];
    /** Empties one message's body, keeping its row. */
    clearBody(seq: number): void;
  };
}

/** Options of {@linkcode MailboxFiles}. */
export interface MailboxFilesOptions {
  /** The stored parts. */
  readonly storage: MailboxFileStore;
  /**
   * Where to write a complete file, or `undefined` to refuse it: the same
   * policy as direct transfers' (`FileReceiverOptions.accept`). Its offer's
   * `remotePeer` is empty and its `chunkSize` is {@linkcode MAILBOX_FILE_CHUNK_SIZE}.
   * Default: refuse every file.
   */
  readonly accept?: (
    offer: FileOffer,
  ) => WritableStream<Uint8Array> | undefined | Promise<WritableStream<Uint8Array> | undefined>;
  /** Called once a file is written and committed. */
  readonly onReceived?: (file: ReceivedFile) => void;
  /** Called when a file is refused, damaged, or cannot be written. */
  readonly onFailed?: (error: unknown, offer: FileOffer | undefined) => void;
}

/** One file's stored parts, as far as they are in. */
interface FileParts {
  header?: { readonly row: StoredMessage; readonly value: MailboxFileHeader };
  readonly chunks: Map<number, Uint8Array>;
  readonly seqs: number[];
}

/** Puts files left in mailboxes together from their stored parts. */
export class MailboxFiles {
  readonly #options: MailboxFilesOptions;
  /** Senders whose parts are checked, and the check that runs for each. */
  readonly #checks = new Map<string, Promise<void>>();
  readonly #again = new Set<string>();

  /**
   * Makes the assembler; call {@linkcode MailboxFiles.take} with each stored part.
   *
   * @param options The storage, the policy and the callbacks.
   */
  constructor(options: MailboxFilesOptions) {
    this.#options = options;
  }

  /**
   * Takes a part that was just stored: checks the sender's parts once the
   * current task is done (the parts of one fetch are checked together).
   *
   * @param incoming The stored part.
   * @returns When the check is done (it never throws).
   */
  take(incoming: IncomingMessage): Promise<void> {
    return this.check(incoming.message.peer);
  }

  /**
   * Puts together every file of one sender whose parts are all stored, and
   * drops the parts of files that cannot be read.
   *
   * @param sender The sender's user ID.
   * @returns When done (it never throws; failures go to `onFailed`).
   */
  check(sender: string): Promise<void> {
    const running = this.#checks.get(sender);
    if (running !== undefined) {
      this.#again.add(sender);
      return running;
    }
    const run = (async () => {
      // After the current task: the other parts of the same batch are stored by then.
      await new Promise((r) => setTimeout(r, 0));
      do {
        this.#again.delete(sender);
        try {
          await this.#assemble(sender);
        } catch (err) {
          this.#options.onFailed?.(err, undefined);
        }
      } while (this.#again.has(sender));
    })().finally(() => this.#checks.delete(sender));
    this.#checks.set(sender, run);
    return run;
  }

  /** Waits for the checks that run. */
  async settled(): Promise<void> {
    while (this.#checks.size > 0) await Promise.allSettled([...this.#checks.values()]);
  }

  async #assemble(sender: string): Promise<void> {
    const { storage } = this.#options;
    const rows = storage.messages.incomingWithBody(sender, [
      FILE_HEADER_CONTENT_TYPE,
      FILE_CHUNK_CONTENT_TYPE,
    ]);
    const files = new Map<string, FileParts>();
    const drop: number[] = [];
    let pending = 0;
    // Newest first, so that over the budget the oldest parts go.
    for (const row of rows.toReversed()) {
      let fileId: string;
      try {
        if (row.contentType === FILE_HEADER_CONTENT_TYPE) {
          const value = decodeFileHeader(row.body);
          fileId = toHex(value.fileId);
          const file: FileParts = files.get(fileId) ?? { chunks: new Map(), seqs: [] };
          file.header ??= { row, value };
          file.seqs.push(row.seq);
          files.set(fileId, file);
        } else {
          const chunk = decodeFileChunk(row.body);
          fileId = toHex(chunk.fileId);
          const file: FileParts = files.get(fileId) ?? { chunks: new Map(), seqs: [] };
          if (!file.chunks.has(chunk.index)) file.chunks.set(chunk.index, chunk.data);
          file.seqs.push(row.seq);
          files.set(fileId, file);
        }
      } catch (err) {
        drop.push(row.seq);
        this.#options.onFailed?.(err, undefined);
        continue;
      }
      pending += row.body.length;
      if (pending > MAILBOX_FILE_PENDING_BYTES) drop.push(row.seq);
    }
    for (const [fileId, file] of files) {
      const header = file.header?.value;
      if (header === undefined || file.chunks.size < header.chunks) continue;
      const offer: FileOffer = {
        fileId,
        senderId: sender,
        senderSigningKey: decodeUserId(sender),
        name: header.name,
        size: header.size,
        chunkSize: MAILBOX_FILE_CHUNK_SIZE,
        timestamp: file.header!.row.sentAt,
        remotePeer: "",
      };
      try {
        await this.#save(offer, header, file.chunks);
      } catch (err) {
        this.#options.onFailed?.(err, offer);
      }
      drop.push(...file.seqs);
    }
    if (drop.length > 0) {
      storage.transaction(() => {
        for (const seq of new Set(drop)) storage.messages.clearBody(seq);
      }, { durable: false });
    }
  }

  /** Checks a complete file and writes it where the policy says. */
  async #save(
    offer: FileOffer,
    header: MailboxFileHeader,
    chunks: Map<number, Uint8Array>,
  ): Promise<void> {
    const parts: Uint8Array[] = [];
    for (let i = 0; i < header.chunks; i++) {
      const data = chunks.get(i);
      const expected = i + 1 < header.chunks
        ? MAILBOX_FILE_CHUNK_SIZE
        : header.size - i * MAILBOX_FILE_CHUNK_SIZE;
      if (data === undefined || data.length !== expected) {
        throw new TransferRefusedError("corrupt");
      }
      parts.push(data);
    }
    const bytes = concat(...parts);
    const sha256 = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
    if (bytes.length !== header.size || !constantTimeEqual(sha256, header.sha256)) {
      throw new TransferRefusedError("corrupt");
    }
    const sink = await this.#options.accept?.(offer);
    if (sink === undefined) throw new TransferRefusedError("refused");
    const writer = sink.getWriter();
    try {
      if (bytes.length > 0) await writer.write(bytes);
      await writer.close();
    } catch (err) {
      await writer.abort(err).catch(() => {});
      throw new TransferRefusedError("sink-failed", { cause: err });
    }
    this.#options.onReceived?.({
      fileId: offer.fileId,
      senderId: offer.senderId,
      name: offer.name,
      bytes: bytes.length,
      sha256: toHex(sha256),
      remotePeer: "",
    });
  }
}
