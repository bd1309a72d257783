/**
 * Streamed, end-to-end encrypted file transfer between two online DIM users,
 * on its own protocol `/dim/file/1.0.0`, one libp2p stream per file: the
 * whole of it in one import. It lives in four modules:
 *
 * - file_wire.ts: the format (frames, limits, what is sealed and signed);
 * - file_send.ts: {@linkcode sendFile};
 * - file_receive.ts: {@linkcode FileReceiver};
 * - file_io.ts: {@linkcode fileSource} and {@linkcode fileSink}, files on disk;
 *
 * and its tunables are in constants.ts.
 *
 * The sender sets up one HPKE base-mode context (RFC 9180) to the
 * recipient's X25519 key per file and seals everything after it with that
 * context: the offer, every chunk and the end. HPKE's sequence numbers give
 * each seal a unique nonce and make the recipient open them strictly in
 * order, and each chunk's additional data names its file, its index and
 * whether it is the last one, so chunks cannot be reordered, dropped,
 * replayed from another file or cut short without the recipient noticing.
 * The offer is signed by the sender's identity key under the `file`
 * signature domain (and binds the recipient's key and HPKE's `enc`, so the
 * context belongs to the signer); the end carries the signed SHA-256 of the
 * whole plaintext, which the recipient checks before it presents the file,
 * and the recipient answers with a receipt signed by its own identity key.
 *
 * Neither side holds the file in memory: the sender reads a
 * `ReadableStream<Uint8Array>` chunk by chunk, and the recipient writes to a
 * `WritableStream<Uint8Array>` its policy callback returns, which it closes
 * (commits) only after the SHA-256 and the signature check out and aborts
 * (discards) on any failure. The recipient grants the sender a window of
 * chunks and returns a credit for every chunk written, so at most that many
 * chunks are ever in flight or buffered, whatever the transport's own
 * windows. A recipient refuses an offer over its size limits before it
 * reads a single chunk, and refuses every sender its `accept` callback does
 * not take.
 *
 * @example Send a file to a contact who accepts it
 * ```ts ignore
 * import { FileReceiver, fileSink, fileSource, sendFile } from "./file_transfer.ts";
 *
 * // Bob's side: accept files from Alice into ~/Downloads.
 * const receiver = new FileReceiver(bob, {
 *   accept: (offer) => offer.senderId === alice.id ? fileSink(`${downloads}/${offer.name}`) : undefined,
 *   onReceived: (file) => console.log(`got ${file.name}, sha256 ${file.sha256}`),
 * });
 * await receiver.start(bobTransport);
 *
 * // Alice's side.
 * const sent = await sendFile(aliceTransport, {
 *   identity: alice,
 *   recipient: { userId: bob.id, encryptionPublicKey: bob.encryptionPublicKey, peer: bobPeer },
 *   source: await fileSource("./holiday.jpg"),
 * });
 * console.log(`sent ${sent.bytes} bytes`);
 * ```
 *
 * @module
 */
export {
  DEFAULT_CHUNK_SIZE,
  DEFAULT_MAX_CHUNK_SIZE,
  DEFAULT_MAX_FILE_SIZE,
  MAX_CHUNK_SIZE,
  MIN_CHUNK_SIZE,
} from "./constants.ts";
export {
  FILE_ID_LENGTH,
  FILE_PROTOCOL,
  FILE_TRANSFER_VERSION,
  FileFrameType,
  MAX_FILE_NAME_LENGTH,
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
export { fileSink, fileSource } from "./file_io.ts";
export type { FileSinkOptions } from "./file_io.ts";
