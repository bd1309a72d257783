/**
 * The sending side of `/dim/file/1.0.0`: {@linkcode sendFile} offers a file
 * to an online recipient, streams it in sealed chunks under the window of
 * credits the recipient grants, and waits for its signed receipt.
 *
 * The file is read, hashed and sealed chunk by chunk (at most
 * {@linkcode SEAL_AHEAD} chunks ahead of the one being sent), and never
 * more than the recipient's window of chunks is in flight, so memory use
 * does not depend on the file's size. The format is in file_wire.ts.
 *
 * @example Send a file to a contact
 * ```ts ignore
 * import { sendFile } from "./file_send.ts";
 * import { fileSource } from "./file_io.ts";
 *
 * const sent = await sendFile(transport, {
 *   identity: alice,
 *   recipient: { userId: bob.id, encryptionPublicKey: bob.encryptionPublicKey, peer: bobPeer },
 *   source: await fileSource("./report.pdf"),
 * }, { onProgress: (p) => console.log(`${p.bytes}/${p.total}`) });
 * console.log(sent.sha256);
 * ```
 *
 * @module
 */
import { raceSignal as race } from "race-signal";
import { Uint8ArrayList } from "uint8arraylist";
import { concat, toHex } from "../platform/bytes.ts";
import { HPKE_TAG_LENGTH, type HpkeSenderContext, setupBaseS } from "../crypto/hpke.ts";
import { decodeUserId, verifySignature } from "../crypto/identity.ts";
import { DimError, PeerUnreachableError, ProtocolError } from "../errors.ts";
import { IdleTimer } from "../platform/signals.ts";
import {
  DEFAULT_ACCEPT_TIMEOUT_MS,
  DEFAULT_CHUNK_SIZE,
  DEFAULT_IDLE_TIMEOUT_MS,
  MAX_CHUNK_SIZE,
  MIN_CHUNK_SIZE,
  SEAL_AHEAD,
} from "./constants.ts";
import {
  checkTimeout,
  chunkAad,
  chunkCount,
  chunkLength,
  decodeCount,
  decodeRefusal,
  encodeOffer,
  encodeOfferBody,
  endAad,
  endSignedBytes,
  FILE_ID_LENGTH,
  FILE_PROTOCOL,
  FileFrameType,
  fileHash,
  hpkeInfo,
  MAX_CONTROL_FRAME_LENGTH,
  OFFER_AAD,
  offerSignedBytes,
  receiptSignedBytes,
  sanitizeFileName,
  SIGNATURE_DOMAIN,
  SIGNATURE_LENGTH,
  type TransferProgress,
} from "./file_wire.ts";
import { RawFrameReader, writeRawFrame } from "./framing.ts";
import type { MessageStream } from "./mailbox.ts";
import type { PeerTarget } from "./types.ts";

/** What the file transfer needs from the network to send. */
export interface FileTransport {
  /**
   * Opens a stream of `protocol` to a peer.
   *
   * @param peer The peer.
   * @param protocol The protocol ID.
   * @param options `signal` aborts the dial.
   * @returns The stream.
   */
  openStream(
    peer: PeerTarget,
    protocol: string,
    options: { readonly signal: AbortSignal },
  ): Promise<MessageStream>;
}

/** The recipient of a file: who they are and where their node is. */
export interface FileRecipient {
  /** The recipient's user ID; its key verifies the receipt. */
  readonly userId: string;
  /** The recipient's raw 32-byte X25519 key, to which the file is sealed. */
  readonly encryptionPublicKey: Uint8Array;
  /** The recipient's node. */
  readonly peer: PeerTarget;
}

/** A file to send, as a stream of its bytes. */
export interface FileSource {
  /** The file name shown to the recipient; sanitised with {@linkcode sanitizeFileName}. */
  readonly name: string;
  /** The exact size in bytes; the stream must yield exactly this many. */
  readonly size: number;
  /** The bytes. It is read once and cancelled if the transfer fails. */
  readonly stream: ReadableStream<Uint8Array>;
}

/** What {@linkcode sendFile} needs of the sender's identity (an `Identity` has it). */
export interface FileSigner {
  /** The sender's Ed25519 key, named in the offer. */
  readonly signingPublicKey: Uint8Array;
  /**
   * Signs a message under a signature domain; file transfer uses `"file"`.
   *
   * @param domain The domain.
   * @param message What to sign.
   * @returns The 64-byte Ed25519 signature.
   */
  sign(domain: "file", message: Uint8Array): Promise<Uint8Array>;
}

/** Who sends what to whom, for {@linkcode sendFile}. */
export interface FileTransfer {
  /** The sender's identity; it signs the offer and the end. */
  readonly identity: FileSigner;
  /** The recipient. */
  readonly recipient: FileRecipient;
  /** The file. */
  readonly source: FileSource;
}

/** Options of {@linkcode sendFile}. */
export interface SendFileOptions {
  /** Chunk size in bytes, {@linkcode MIN_CHUNK_SIZE} to {@linkcode MAX_CHUNK_SIZE}. Default {@linkcode DEFAULT_CHUNK_SIZE}. */
  readonly chunkSize?: number;
  /** Aborts the transfer: the stream is reset and the recipient discards what it got. */
  readonly signal?: AbortSignal;
  /** Called after each chunk is handed to the stream. */
  readonly onProgress?: (progress: TransferProgress) => void;
  /** Longest wait for the recipient to accept or refuse (ms). Default {@linkcode DEFAULT_ACCEPT_TIMEOUT_MS}. */
  readonly acceptTimeoutMs?: number;
  /** Longest silence from the recipient once it accepted (ms). Default {@linkcode DEFAULT_IDLE_TIMEOUT_MS}. */
  readonly idleTimeoutMs?: number;
  /** When the offer was made, in ms since the epoch. Default `Date.now()`. */
  readonly timestamp?: number;
}

/** What {@linkcode sendFile} returns once the recipient signed its receipt. */
export interface SentFile {
  /** The file ID, 32 hex digits. */
  readonly fileId: string;
  /** The (sanitised) name the recipient was given. */
  readonly name: string;
  /** Bytes sent. */
  readonly bytes: number;
  /** SHA-256 of the file, hex. */
  readonly sha256: string;
  /** The recipient's Ed25519 signature over the receipt. */
  readonly receipt: Uint8Array;
}

/** Cuts a byte stream into exact-length pieces, copying only pieces that straddle. */
class Chunker {
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly #buffer = new Uint8ArrayList();
  #done = false;

  constructor(stream: ReadableStream<Uint8Array>) {
    this.#reader = stream.getReader();
  }

  async #fill(n: number): Promise<boolean> {
    while (this.#buffer.byteLength < n && !this.#done) {
      const { value, done } = await this.#reader.read();
      if (done) {
        this.#done = true;
        break;
      }
      if (!(value instanceof Uint8Array)) {
        throw new TypeError("Cannot send file: the source must yield Uint8Array chunks");
      }
      this.#buffer.append(value);
    }
    return this.#buffer.byteLength >= n;
  }

  /** Exactly `n` bytes, or a `RangeError` if the source ends first. */
  async take(n: number): Promise<Uint8Array> {
    if (!(await this.#fill(n))) {
      throw new RangeError("Cannot send file: the source has fewer bytes than its size");
    }
    const out = this.#buffer.subarray(0, n);
    this.#buffer.consume(n);
    return out;
  }

  /** Checks that the source has nothing left, then releases it. */
  async finish(): Promise<void> {
    if (await this.#fill(1)) {
      throw new RangeError("Cannot send file: the source has more bytes than its size");
    }
    this.#reader.releaseLock();
  }

  /** Stops reading the source, on failure. */
  cancel(reason: unknown): void {
    this.#reader.cancel(reason).catch(() => {});
  }
}

/** Wakes every waiter on `notify()`. */
class Notifier {
  #waiters: (() => void)[] = [];

  wait(): Promise<void> {
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  notify(): void {
    for (const wake of this.#waiters.splice(0)) wake();
  }
}

function checkSource(source: FileSource, chunkSize: number): void {
  if (!Number.isSafeInteger(source.size) || source.size < 0) {
    throw new RangeError(`Cannot send file: size ${source.size} is not a byte count`);
  }
  if (
    !Number.isSafeInteger(chunkSize) || chunkSize < MIN_CHUNK_SIZE || chunkSize > MAX_CHUNK_SIZE
  ) {
    throw new RangeError(
      `Cannot send file: chunk size must be ${MIN_CHUNK_SIZE} to ${MAX_CHUNK_SIZE} bytes`,
    );
  }
}

/**
 * Sends a file to an online recipient on `/dim/file/1.0.0` and waits for
 * its signed receipt. The file is read, hashed, sealed and sent chunk by
 * chunk, with at most the recipient's window of chunks in flight, so memory
 * use does not depend on the file's size.
 *
 * @param transport Opens the stream to the recipient's node.
 * @param transfer The sender's identity, the recipient and the file.
 * @param options Chunk size, `signal`, progress callback and timeouts.
 * @returns The file ID, name, size and SHA-256, and the recipient's receipt.
 * @throws {TransferRefusedError} If the recipient refused the file or
 *   abandoned it (for example because a check failed).
 * @throws {RangeError} If the size or chunk size is out of range, or the
 *   source yields more or fewer bytes than its size.
 * @throws {TypeError} If the source yields something other than `Uint8Array`s.
 * @throws {InvalidIdError} If the recipient's user ID is malformed.
 * @throws {EncryptionError} If the recipient's key is not a usable X25519 key.
 * @throws {ProtocolError} On a malformed answer or a receipt whose signature
 *   does not verify.
 * @throws {PeerUnreachableError} If the recipient cannot be reached or goes silent.
 * @throws {DOMException} If `signal` aborts (its reason is thrown as is).
 * @example
 * ```ts ignore
 * import { sendFile } from "./file_send.ts";
 * import { fileSource } from "./file_io.ts";
 *
 * const sent = await sendFile(transport, {
 *   identity: alice,
 *   recipient: { userId: bob.id, encryptionPublicKey: bob.encryptionPublicKey, peer: bobPeer },
 *   source: await fileSource("./report.pdf"),
 * }, { onProgress: (p) => console.log(`${p.bytes}/${p.total}`) });
 * console.log(sent.sha256);
 * ```
 */
export async function sendFile(
  transport: FileTransport,
  transfer: FileTransfer,
  options: SendFileOptions = {},
): Promise<SentFile> {
  const { identity, recipient, source } = transfer;
  const chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
  let chunker: Chunker | undefined;
  let stream: MessageStream | undefined;
  // Until the recipient accepts (its policy may ask a person), the accept
  // timeout applies; after that, the idle timeout.
  const offering = new IdleTimer(
    checkTimeout(options.acceptTimeoutMs ?? DEFAULT_ACCEPT_TIMEOUT_MS, "acceptTimeoutMs"),
    () => new PeerUnreachableError("Cannot send file: the recipient did not answer the offer"),
    options.signal,
  );
  try {
    const idleMs = checkTimeout(options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS, "idleTimeoutMs");
    checkSource(source, chunkSize);
    const recipientSigningKey = decodeUserId(recipient.userId);
    options.signal?.throwIfAborted();
    chunker = new Chunker(source.stream);
    const signal = offering.signal;

    const { size } = source;
    const name = sanitizeFileName(source.name);
    const fileId = crypto.getRandomValues(new Uint8Array(FILE_ID_LENGTH));
    const recipientKey = recipient.encryptionPublicKey;
    const recipientKeys = {
      signingPublicKey: recipientSigningKey,
      encryptionPublicKey: recipientKey,
    };
    const { enc, context } = await setupBaseS(recipientKey, {
      info: hpkeInfo(recipientSigningKey),
    });
    const offer = encodeOffer({
      fileId,
      senderSigningKey: identity.signingPublicKey,
      size,
      chunkSize,
      timestamp: options.timestamp ?? Date.now(),
      name,
    });
    const offerSignature = await identity.sign(
      SIGNATURE_DOMAIN,
      offerSignedBytes(recipientKeys, enc, offer),
    );
    const sealedOffer = await context.seal(concat(offer, offerSignature), OFFER_AAD);

    stream = await transport.openStream(recipient.peer, FILE_PROTOCOL, { signal });
    const opened = stream;
    const reader = new RawFrameReader(opened);
    await writeRawFrame(opened, FileFrameType.Offer, encodeOfferBody(enc, sealedOffer), signal);
    const answer = await race(reader.next(MAX_CONTROL_FRAME_LENGTH), signal);
    if (answer?.type === FileFrameType.Refuse) throw decodeRefusal(answer.body);
    if (answer?.type !== FileFrameType.Accept) {
      throw new ProtocolError("Cannot send file: the recipient did not accept or refuse");
    }
    const window = decodeCount(answer.body, 2);
    if (window === 0) throw new ProtocolError("Cannot send file: the recipient's window is empty");
    offering.clear();
    const sending = new IdleTimer(
      idleMs,
      () => new PeerUnreachableError("Cannot send file: the recipient went silent"),
      options.signal,
    );
    try {
      return await streamChunks(opened, reader, {
        identity,
        recipientSigningKey,
        recipientKey,
        enc,
        context,
        fileId,
        name,
        size,
        chunkSize,
        window,
        chunker,
        idle: sending,
        signal: sending.signal,
        onProgress: options.onProgress,
      });
    } finally {
      sending.release();
    }
  } catch (err) {
    if (chunker === undefined) source.stream.cancel(err).catch(() => {});
    else chunker.cancel(err);
    stream?.abort(err instanceof Error ? err : new Error(String(err)));
    if (options.signal?.aborted && err === options.signal.reason) throw err;
    if (err instanceof DimError || err instanceof RangeError || err instanceof TypeError) throw err;
    // The stream failed under us (reset, connection lost): say so in DIM's terms.
    throw new PeerUnreachableError("Cannot send file: the stream to the recipient failed", {
      cause: err,
    });
  } finally {
    offering.release();
  }
}

interface ChunkStreaming {
  readonly identity: FileSigner;
  readonly recipientSigningKey: Uint8Array;
  readonly recipientKey: Uint8Array;
  readonly enc: Uint8Array;
  readonly context: HpkeSenderContext;
  readonly fileId: Uint8Array;
  readonly name: string;
  readonly size: number;
  readonly chunkSize: number;
  readonly window: number;
  readonly chunker: Chunker;
  readonly idle: IdleTimer;
  readonly signal: AbortSignal;
  readonly onProgress: ((progress: TransferProgress) => void) | undefined;
}

/** The accepted part of a send: chunks under the credit window, the end, the receipt. */
async function streamChunks(
  stream: MessageStream,
  reader: RawFrameReader,
  t: ChunkStreaming,
): Promise<SentFile> {
  const fileIdHex = toHex(t.fileId);
  const count = chunkCount(t.size, t.chunkSize);
  const hash = fileHash();
  const changed = new Notifier();
  let credits = t.window;
  let failure: unknown;
  let receipt: Uint8Array | undefined;
  let listening = true;

  // The recipient's frames (credits, a refusal, the receipt), read as they
  // come while the chunks go out.
  const control = (async () => {
    try {
      for (;;) {
        const frame = await reader.next(MAX_CONTROL_FRAME_LENGTH);
        if (frame === undefined) {
          throw new ProtocolError("Cannot send file: the recipient closed the stream");
        }
        t.idle.refresh();
        if (frame.type === FileFrameType.Credit) {
          credits += decodeCount(frame.body, 4);
          if (credits > t.window) throw new ProtocolError("Cannot send file: credit over window");
        } else if (frame.type === FileFrameType.Refuse) {
          throw decodeRefusal(frame.body);
        } else if (frame.type === FileFrameType.Receipt) {
          if (frame.body.length !== SIGNATURE_LENGTH) {
            throw new ProtocolError("Cannot send file: malformed receipt");
          }
          receipt = frame.body;
          return;
        } else {
          throw new ProtocolError("Cannot send file: unexpected frame from the recipient");
        }
        changed.notify();
      }
    } catch (err) {
      failure = err;
    } finally {
      listening = false;
      changed.notify();
    }
  })();

  const until = async (ready: () => boolean): Promise<void> => {
    while (!ready()) {
      if (failure !== undefined) throw failure;
      if (!listening) throw new ProtocolError("Cannot send file: the recipient stopped early");
      await race(changed.wait(), t.signal);
    }
  };

  try {
    const sealing: Promise<Uint8Array>[] = [];
    let sent = 0;
    let bytes = 0;
    const sendNext = async () => {
      const ciphertext = await sealing.shift()!;
      await until(() => credits > 0);
      credits--;
      await writeRawFrame(stream, FileFrameType.Chunk, ciphertext, t.signal);
      t.idle.refresh();
      bytes += ciphertext.length - HPKE_TAG_LENGTH;
      sent++;
      t.onProgress?.({ fileId: fileIdHex, name: t.name, bytes, total: t.size });
    };
    for (let i = 0; i < count; i++) {
      const plaintext = await race(t.chunker.take(chunkLength(i, t.size, t.chunkSize)), t.signal);
      hash.update(plaintext);
      // Sequence numbers are taken when `seal` is called, so the chunks are
      // sealed in order even though they are awaited later.
      const sealed = t.context.seal(plaintext, chunkAad(t.fileId, i, i === count - 1));
      // Awaited in turn below; this only keeps a failure that is never
      // awaited (the transfer failed first) from being reported as unhandled.
      sealed.catch(() => {});
      sealing.push(sealed);
      if (sealing.length > SEAL_AHEAD) await sendNext();
    }
    await race(t.chunker.finish(), t.signal);
    while (sent < count) await sendNext();

    const digest = hash.digest();
    const endSignature = await t.identity.sign(
      SIGNATURE_DOMAIN,
      endSignedBytes(
        { signingPublicKey: t.recipientSigningKey, encryptionPublicKey: t.recipientKey },
        t.enc,
        { fileId: t.fileId, size: t.size, hash: digest },
      ),
    );
    const end = await t.context.seal(concat(digest, endSignature), endAad(t.fileId, count));
    await writeRawFrame(stream, FileFrameType.End, end, t.signal);
    await until(() => receipt !== undefined);
    const signed = receiptSignedBytes(
      t.identity.signingPublicKey,
      t.recipientKey,
      t.enc,
      t.fileId,
      t.size,
      digest,
    );
    if (!(await verifySignature(SIGNATURE_DOMAIN, t.recipientSigningKey, signed, receipt!))) {
      throw new ProtocolError("Cannot send file: the receipt's signature does not verify");
    }
    await stream.close({ signal: t.signal }).catch(() => {});
    return { fileId: fileIdHex, name: t.name, bytes, sha256: toHex(digest), receipt: receipt! };
  } finally {
    if (listening) stream.abort(new Error("file transfer ended"));
    await control;
  }
}
