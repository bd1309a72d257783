/**
 * The receiving side of `/dim/file/1.0.0`: a {@linkcode FileReceiver}
 * serves the protocol for one identity. It opens each offer, refuses one
 * over its size limits before it reads a single chunk, asks its `accept`
 * policy where to write the file (refusing every sender the policy does
 * not take), then receives, checks and commits it and signs a receipt.
 *
 * The recipient grants the sender a window of chunks and returns a credit
 * for every chunk written, so at most that many chunks are ever in flight
 * or buffered, whatever the transport's own windows. It writes to the
 * `WritableStream<Uint8Array>` its policy returns, which it closes
 * (commits) only after the SHA-256 and the signature check out and aborts
 * (discards) on any failure. An offer must name this receiver's own
 * identity: one made for another user is unreadable, even if it was sealed
 * to this receiver's X25519 key. The format is in file_wire.ts.
 *
 * @example Accept files from one contact
 * ```ts ignore
 * import { FileReceiver } from "./file_receive.ts";
 * import { fileSink } from "./file_io.ts";
 *
 * await using receiver = new FileReceiver(bob, {
 *   accept: (offer) => offer.senderId === alice.id ? fileSink(`/tmp/${offer.name}`) : undefined,
 *   onReceived: (file) => console.log(`${file.name}: ${file.bytes} bytes`),
 * });
 * await receiver.start(transport);
 * ```
 *
 * @module
 */
import { raceSignal as race } from "race-signal";
import { constantTimeEqual, toHex, u16, u32 } from "../platform/bytes.ts";
import { HPKE_TAG_LENGTH, type HpkeRecipientContext, setupBaseR } from "../crypto/hpke.ts";
import { encodeUserId, type Identity, verifySignature } from "../crypto/identity.ts";
import { DecryptionError, DimError, OutdatedVersionError, ProtocolError } from "../errors.ts";
import { IdleTimer } from "../platform/signals.ts";
import {
  DEFAULT_ACCEPT_TIMEOUT_MS,
  DEFAULT_IDLE_TIMEOUT_MS,
  DEFAULT_MAX_CHUNK_SIZE,
  DEFAULT_MAX_CONCURRENT_TRANSFERS,
  DEFAULT_MAX_FILE_SIZE,
  DEFAULT_WINDOW_BYTES,
  MAX_CHUNK_SIZE,
  MAX_DEFAULT_WINDOW,
  MIN_CHUNK_SIZE,
  MIN_DEFAULT_WINDOW,
} from "./constants.ts";
import {
  checkTimeout,
  chunkAad,
  chunkCount,
  chunkLength,
  decodeOffer,
  decodeOfferBody,
  encodeRefusal,
  END_BODY_LENGTH,
  endAad,
  endSignedBytes,
  FILE_PROTOCOL,
  FileFrameType,
  fileHash,
  HASH_LENGTH,
  hpkeInfo,
  MAX_OFFER_FRAME_LENGTH,
  MAX_WINDOW,
  maxChunkFrameLength,
  OFFER_AAD,
  offerSignedBytes,
  receiptSignedBytes,
  type RefusalReason,
  sanitizeFileName,
  SIGNATURE_DOMAIN,
  type TransferProgress,
  TransferRefusedError,
} from "./file_wire.ts";
import { RawFrameReader, writeRawFrame } from "./framing.ts";
import type { MessageStream, StreamHost } from "./mailbox.ts";

/** An offer as the recipient's policy sees it: signed by `senderId`, not yet transferred. */
export interface FileOffer {
  /** The file ID, 32 hex digits. */
  readonly fileId: string;
  /** The sender's verified user ID. */
  readonly senderId: string;
  /** The sender's verified Ed25519 key. */
  readonly senderSigningKey: Uint8Array;
  /** The file name, sanitised: no path separators, control characters, "." or "..". */
  readonly name: string;
  /** The announced size in bytes (the transfer fails unless exactly this many arrive). */
  readonly size: number;
  /** The sender's chunk size. */
  readonly chunkSize: number;
  /** The sender's claimed time of the offer (ms since the epoch; not checked). */
  readonly timestamp: number;
  /** The libp2p peer ID the offer came from. */
  readonly remotePeer: string;
}

/** A file the recipient received, checked and committed. */
export interface ReceivedFile {
  /** The file ID, 32 hex digits. */
  readonly fileId: string;
  /** The sender's verified user ID. */
  readonly senderId: string;
  /** The sanitised file name. */
  readonly name: string;
  /** Bytes received. */
  readonly bytes: number;
  /** SHA-256 of the file, hex; the sender signed it. */
  readonly sha256: string;
  /** The libp2p peer ID it came from. */
  readonly remotePeer: string;
}

/** Options of {@linkcode FileReceiver}. */
export interface FileReceiverOptions {
  /**
   * The policy: returns where to write an offered file, or `undefined` to
   * refuse it. Only called for offers within the size limits whose
   * signature verified. The sink is closed only once the whole file checked
   * out, and aborted on any failure, so a sink that writes to a temporary
   * name and renames on close (like `fileSink`) never shows a partial file.
   * Default: refuse every offer, so a receiver accepts only the senders its
   * policy names.
   */
  readonly accept?: (
    offer: FileOffer,
    options: { readonly signal: AbortSignal },
  ) => WritableStream<Uint8Array> | undefined | Promise<WritableStream<Uint8Array> | undefined>;
  /** Called after each chunk is written. */
  readonly onProgress?: (progress: TransferProgress & { readonly senderId: string }) => void;
  /** Called for each file received, after its sink was closed. */
  readonly onReceived?: (file: ReceivedFile) => void;
  /** Called for each transfer that failed or was refused, with the offer if it was read. */
  readonly onFailed?: (error: unknown, offer: FileOffer | undefined) => void;
  /** The largest file accepted (bytes). Default {@linkcode DEFAULT_MAX_FILE_SIZE}. */
  readonly maxFileSize?: number;
  /** The largest chunk size accepted (bytes, at most {@linkcode MAX_CHUNK_SIZE}). Default {@linkcode DEFAULT_MAX_CHUNK_SIZE}. */
  readonly maxChunkSize?: number;
  /**
   * Chunks the sender may have in flight. Default: as many of the offer's
   * chunks as fit in {@linkcode DEFAULT_WINDOW_BYTES}, 2 to 64.
   */
  readonly window?: number;
  /** Transfers served at once; more are refused as busy. Default {@linkcode DEFAULT_MAX_CONCURRENT_TRANSFERS}. */
  readonly maxConcurrent?: number;
  /** Longest wait for `accept` to decide (ms). Default {@linkcode DEFAULT_ACCEPT_TIMEOUT_MS}. */
  readonly acceptTimeoutMs?: number;
  /** Longest silence from the sender (ms). Default {@linkcode DEFAULT_IDLE_TIMEOUT_MS}. */
  readonly idleTimeoutMs?: number;
}

function quietly(callback: () => void): void {
  try {
    callback();
  } catch {
    // A caller's callback failed; the transfer goes on.
  }
}

/** Thrown inside the receiver to refuse with a code; never leaves this module as is. */
class Refusal extends Error {
  constructor(readonly reason: RefusalReason, readonly error: unknown) {
    super(reason);
  }
}

interface OpenedOffer {
  readonly offer: FileOffer;
  readonly fileId: Uint8Array;
  readonly enc: Uint8Array;
  readonly context: HpkeRecipientContext;
}

/**
 * Serves `/dim/file/1.0.0` for one identity: opens offers, asks the
 * `accept` policy where to write each file, and receives, checks and
 * commits it. Without an `accept` callback every offer is refused.
 *
 * @example Accept files from one contact
 * ```ts ignore
 * import { FileReceiver } from "./file_receive.ts";
 * import { fileSink } from "./file_io.ts";
 *
 * await using receiver = new FileReceiver(bob, {
 *   accept: (offer) => offer.senderId === alice.id ? fileSink(`/tmp/${offer.name}`) : undefined,
 *   onReceived: (file) => console.log(`${file.name}: ${file.bytes} bytes`),
 * });
 * await receiver.start(transport);
 * ```
 */
export class FileReceiver implements AsyncDisposable {
  readonly #identity: Identity;
  readonly #accept: NonNullable<FileReceiverOptions["accept"]>;
  readonly #onProgress: FileReceiverOptions["onProgress"];
  readonly #onReceived: (file: ReceivedFile) => void;
  readonly #onFailed: (error: unknown, offer: FileOffer | undefined) => void;
  readonly #maxFileSize: number;
  readonly #maxChunkSize: number;
  readonly #window: number | undefined;
  readonly #maxConcurrent: number;
  readonly #acceptMs: number;
  readonly #idleMs: number;
  #host: StreamHost | undefined;
  #stopping = new AbortController();
  #active = new Set<Promise<void>>();

  /**
   * Makes a receiver; call `start()` to serve.
   *
   * @param identity Whose files: its X25519 key opens them (only offers that
   *   name its identity), its Ed25519 key signs receipts.
   * @param options The `accept` policy, callbacks and limits.
   * @throws {RangeError} If a limit is out of range.
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { Identity } from "../crypto/identity.ts";
   * import { FileReceiver } from "./file_receive.ts";
   * const bob = await Identity.generate();
   * assert.throws(() => new FileReceiver(bob, { window: 0 }), RangeError);
   * ```
   */
  constructor(identity: Identity, options: FileReceiverOptions = {}) {
    this.#identity = identity;
    this.#accept = options.accept ?? (() => undefined);
    // The callbacks report; one that throws must not break a transfer.
    const { onProgress, onReceived, onFailed } = options;
    this.#onProgress = onProgress && ((p) => quietly(() => onProgress(p)));
    this.#onReceived = (file) => quietly(() => onReceived?.(file));
    this.#onFailed = (error, offer) => quietly(() => onFailed?.(error, offer));
    this.#maxFileSize = options.maxFileSize ?? DEFAULT_MAX_FILE_SIZE;
    this.#maxChunkSize = options.maxChunkSize ?? DEFAULT_MAX_CHUNK_SIZE;
    this.#window = options.window;
    this.#maxConcurrent = options.maxConcurrent ?? DEFAULT_MAX_CONCURRENT_TRANSFERS;
    this.#acceptMs = checkTimeout(
      options.acceptTimeoutMs ?? DEFAULT_ACCEPT_TIMEOUT_MS,
      "acceptTimeoutMs",
    );
    this.#idleMs = checkTimeout(options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS, "idleTimeoutMs");
    if (!Number.isSafeInteger(this.#maxFileSize) || this.#maxFileSize < 0) {
      throw new RangeError("Cannot make file receiver: maxFileSize must be a byte count");
    }
    if (
      !Number.isSafeInteger(this.#maxChunkSize) || this.#maxChunkSize < MIN_CHUNK_SIZE ||
      this.#maxChunkSize > MAX_CHUNK_SIZE
    ) {
      throw new RangeError(
        `Cannot make file receiver: maxChunkSize must be ${MIN_CHUNK_SIZE} to ${MAX_CHUNK_SIZE}`,
      );
    }
    if (
      this.#window !== undefined &&
      (!Number.isSafeInteger(this.#window) || this.#window < 1 || this.#window > MAX_WINDOW)
    ) {
      throw new RangeError(`Cannot make file receiver: window must be 1 to ${MAX_WINDOW}`);
    }
    if (!Number.isSafeInteger(this.#maxConcurrent) || this.#maxConcurrent < 1) {
      throw new RangeError("Cannot make file receiver: maxConcurrent must be at least 1");
    }
  }

  /**
   * Registers the protocol handler. Idempotent.
   *
   * @param host The node (or transport) to serve on.
   * @returns When the handler is registered.
   * @example
   * ```ts ignore
   * await receiver.start(transportFor(node));
   * ```
   */
  async start(host: StreamHost): Promise<void> {
    if (this.#host !== undefined) return;
    this.#host = host;
    this.#stopping = new AbortController();
    await host.handle(FILE_PROTOCOL, (stream, remotePeer) => {
      const served = this.#serve(stream, remotePeer).finally(() => this.#active.delete(served));
      this.#active.add(served);
      return served;
    });
  }

  /**
   * Removes the handler and aborts the transfers in progress, whose sinks
   * are aborted (so nothing partial is committed). Idempotent.
   *
   * @returns When every transfer has ended.
   * @example
   * ```ts ignore
   * await receiver.stop();
   * ```
   */
  async stop(): Promise<void> {
    const host = this.#host;
    if (host === undefined) return;
    this.#host = undefined;
    this.#stopping.abort(new DimError("Cannot receive file: the receiver is stopping"));
    await host.unhandle(FILE_PROTOCOL).catch(() => {});
    await Promise.allSettled([...this.#active]);
  }

  /**
   * Same as {@linkcode FileReceiver.stop}.
   *
   * @returns When every transfer has ended.
   */
  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  async #refuse(stream: MessageStream, reason: RefusalReason, signal: AbortSignal): Promise<void> {
    await writeRawFrame(stream, FileFrameType.Refuse, encodeRefusal(reason), signal).catch(
      () => {},
    );
    await stream.close({ signal }).catch(() => {});
  }

  async #openOffer(body: Uint8Array, remotePeer: string): Promise<OpenedOffer> {
    try {
      const { enc, sealed } = decodeOfferBody(body);
      // Opened with this identity's own keys: an offer made for another
      // identity does not open, even one sealed to this X25519 key.
      const context = await setupBaseR(enc, {
        privateKey: this.#identity.encryptionPrivateKey,
        publicKey: this.#identity.encryptionPublicKey,
      }, { info: hpkeInfo(this.#identity.signingPublicKey) });
      const fields = decodeOffer(await context.open(sealed, OFFER_AAD));
      const signed = offerSignedBytes(this.#identity, enc, fields.unsigned);
      if (
        !(await verifySignature(
          SIGNATURE_DOMAIN,
          fields.senderSigningKey,
          signed,
          fields.signature,
        ))
      ) {
        throw new SyntaxError("signature");
      }
      const offer: FileOffer = {
        fileId: toHex(fields.fileId),
        senderId: encodeUserId(fields.senderSigningKey),
        senderSigningKey: fields.senderSigningKey,
        name: sanitizeFileName(fields.name),
        size: fields.size,
        chunkSize: fields.chunkSize,
        timestamp: fields.timestamp,
        remotePeer,
      };
      return { offer, fileId: fields.fileId, enc: enc.slice(), context };
    } catch (err) {
      // An older version says so: its version byte is in the clear anyway.
      if (err instanceof OutdatedVersionError) throw err;
      // One uniform failure: which check failed must not leak.
      throw new DecryptionError();
    }
  }

  async #serve(stream: MessageStream, remotePeer: string): Promise<void> {
    const accepting = new IdleTimer(
      this.#idleMs,
      () => new ProtocolError("Cannot receive file: the sender sent no offer"),
      this.#stopping.signal,
    );
    let signal = accepting.signal;
    let idle: IdleTimer | undefined;
    let offer: FileOffer | undefined;
    let writer: WritableStreamDefaultWriter<Uint8Array> | undefined;
    let committed = false;
    try {
      // This transfer is not in the set yet.
      if (this.#active.size >= this.#maxConcurrent) {
        throw new Refusal("busy", new TransferRefusedError("busy"));
      }
      const reader = new RawFrameReader(stream);
      const first = await race(reader.next(MAX_OFFER_FRAME_LENGTH), signal);
      if (first?.type !== FileFrameType.Offer) {
        throw new ProtocolError("Cannot receive file: expected an offer");
      }
      let opened: OpenedOffer;
      try {
        opened = await this.#openOffer(first.body, remotePeer);
      } catch (err) {
        throw new Refusal("unreadable", err);
      }
      offer = opened.offer;
      const { size, chunkSize } = offer;
      if (
        size > this.#maxFileSize || chunkSize > this.#maxChunkSize || chunkSize < MIN_CHUNK_SIZE
      ) {
        throw new Refusal("too-large", new TransferRefusedError("too-large"));
      }

      // The policy may ask a person: it gets its own, longer deadline.
      accepting.clear();
      const deciding = new IdleTimer(
        this.#acceptMs,
        () => new ProtocolError("Cannot receive file: no decision on the offer in time"),
        this.#stopping.signal,
      );
      let decided = false;
      try {
        const decideSignal = deciding.signal;
        const sink = await race(
          Promise.resolve().then(() => this.#accept(offer!, { signal: decideSignal })),
          decideSignal,
        );
        decided = true;
        if (sink !== undefined) {
          writer = sink.getWriter();
          await race(writer.ready, decideSignal);
        }
      } catch (err) {
        throw new Refusal(decided ? "sink-failed" : "refused", err);
      } finally {
        deciding.release();
      }
      if (writer === undefined) throw new Refusal("refused", new TransferRefusedError("refused"));

      idle = new IdleTimer(
        this.#idleMs,
        () => new ProtocolError("Cannot receive file: the sender went silent"),
        this.#stopping.signal,
      );
      signal = idle.signal;
      const window = this.#window ??
        Math.min(
          MAX_DEFAULT_WINDOW,
          Math.max(MIN_DEFAULT_WINDOW, Math.ceil(DEFAULT_WINDOW_BYTES / offer.chunkSize)),
        );
      await writeRawFrame(stream, FileFrameType.Accept, u16(window), signal);
      const received = await this.#receiveChunks(stream, reader, opened, writer, idle, signal);

      try {
        await race(writer.close(), signal);
      } catch (err) {
        throw new Refusal("sink-failed", err);
      }
      committed = true;
      this.#onReceived({
        fileId: offer.fileId,
        senderId: offer.senderId,
        name: offer.name,
        bytes: size,
        sha256: toHex(received),
        remotePeer,
      });
      // The file is complete whatever happens to the receipt: a sender that
      // misses it reports a failure and may send again.
      const signature = await this.#identity.sign(
        SIGNATURE_DOMAIN,
        receiptSignedBytes(
          offer.senderSigningKey,
          this.#identity.encryptionPublicKey,
          opened.enc,
          opened.fileId,
          size,
          received,
        ),
      );
      await writeRawFrame(stream, FileFrameType.Receipt, signature, signal);
      await stream.close({ signal }).catch(() => {});
    } catch (thrown) {
      let err = thrown instanceof Refusal ? thrown.error : thrown;
      if (this.#stopping.signal.aborted || signal.aborted) {
        // Stopped or timed out: not a verdict on the file; the sender sees the reset.
        err = this.#stopping.signal.aborted ? this.#stopping.signal.reason : signal.reason;
      } else if (thrown instanceof Refusal) {
        await this.#refuse(stream, thrown.reason, signal);
      }
      if (writer !== undefined && !committed) await writer.abort(err).catch(() => {});
      stream.abort(err instanceof Error ? err : new Error(String(err)));
      if (!committed) this.#onFailed(err, offer);
    } finally {
      accepting.release();
      idle?.release();
    }
  }

  /** Receives, opens, hashes and writes every chunk, then checks the end; the SHA-256. */
  async #receiveChunks(
    stream: MessageStream,
    reader: RawFrameReader,
    opened: OpenedOffer,
    writer: WritableStreamDefaultWriter<Uint8Array>,
    idle: IdleTimer,
    signal: AbortSignal,
  ): Promise<Uint8Array> {
    const { offer, fileId, context } = opened;
    const { size, chunkSize } = offer;
    const count = chunkCount(size, chunkSize);
    const hash = fileHash();
    // Opening (AES-GCM) and hashing overlap the sink's write of the chunk
    // before, which is why the write is awaited one chunk late.
    let writing: Promise<void> = Promise.resolve();
    for (let i = 0; i < count; i++) {
      const frame = await race(reader.next(maxChunkFrameLength(chunkSize)), signal);
      if (frame?.type !== FileFrameType.Chunk) {
        throw new Refusal(
          "corrupt",
          new ProtocolError("Cannot receive file: the stream ended before the last chunk"),
        );
      }
      idle.refresh();
      const expected = chunkLength(i, size, chunkSize) + HPKE_TAG_LENGTH;
      let plain: Uint8Array;
      try {
        if (frame.body.length !== expected) throw new SyntaxError("chunk length");
        plain = await context.open(frame.body, chunkAad(fileId, i, i === count - 1));
      } catch (err) {
        throw new Refusal("corrupt", new DecryptionError({ cause: err }));
      }
      hash.update(plain);
      try {
        await race(writing, signal);
      } catch (err) {
        throw new Refusal("sink-failed", err);
      }
      const total = i * chunkSize + plain.length;
      writing = writer.write(plain).then(async () => {
        await writeRawFrame(stream, FileFrameType.Credit, u32(1), signal);
        this.#onProgress?.({
          fileId: offer.fileId,
          name: offer.name,
          bytes: total,
          total: size,
          senderId: offer.senderId,
        });
      });
      // Awaited at the next chunk; this only keeps a failure that is never
      // awaited (the transfer failed first) from being reported as unhandled.
      writing.catch(() => {});
    }
    try {
      await race(writing, signal);
    } catch (err) {
      throw new Refusal("sink-failed", err);
    }

    const frame = await race(reader.next(1 + END_BODY_LENGTH), signal);
    if (frame?.type !== FileFrameType.End) {
      throw new Refusal("corrupt", new ProtocolError("Cannot receive file: expected the end"));
    }
    const digest = hash.digest();
    try {
      if (frame.body.length !== END_BODY_LENGTH) throw new SyntaxError("end length");
      const end = await context.open(frame.body, endAad(fileId, count));
      const claimed = end.subarray(0, HASH_LENGTH);
      const signature = end.subarray(HASH_LENGTH);
      const signed = endSignedBytes(this.#identity, opened.enc, {
        fileId,
        size,
        hash: claimed,
      });
      if (
        !constantTimeEqual(claimed, digest) ||
        !(await verifySignature(SIGNATURE_DOMAIN, offer.senderSigningKey, signed, signature))
      ) {
        throw new SyntaxError("end");
      }
    } catch (err) {
      throw new Refusal("corrupt", new DecryptionError({ cause: err }));
    }
    return digest;
  }
}
