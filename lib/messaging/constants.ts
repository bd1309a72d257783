/**
 * The tunables of DIM's messaging layer, with their defaults, in one place:
 * the framing every stream protocol shares, and file transfer
 * (`/dim/file/1.0.0`).
 *
 * Sizes are in bytes, times in milliseconds. Options of `sendFile` and
 * `FileReceiver` override the ones that are per transfer or per receiver; the rest are fixed here. The limits a
 * wire format sets (field widths, a file name's 255 bytes) are not tunables
 * and stay with their format.
 *
 * @example Read a default
 * ```ts
 * import assert from "node:assert/strict";
 * import { DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE } from "./constants.ts";
 *
 * assert(DEFAULT_CHUNK_SIZE <= MAX_CHUNK_SIZE);
 * ```
 *
 * @module
 */
// --- Framing -----------------------------------------------------------------

/**
 * The largest frame `/dim/msg/1.0.0` and `/dim/mbox/1.0.0` accept: 1 MiB,
 * type byte included. The largest frame they carry is a mailbox answer
 * (ITEMS) of up to 64 envelopes, which the server cuts to fit; a reader
 * refuses a longer length prefix before it buffers a byte of the body, so a
 * hostile peer costs a receiver four bytes, not a megabyte.
 */
export const MAX_FRAME_LENGTH = 1024 * 1024;

/**
 * Frame bodies up to this length (1 KiB) are copied behind their 5-byte
 * header and sent as one piece: one `send` (one muxer frame) is cheaper than
 * two for small frames. A longer body is sent as it is after a separate
 * header, so a 1 MiB file chunk is never copied to be framed.
 */
export const INLINE_BODY_LENGTH = 1024;

// --- File transfer -----------------------------------------------------------

/**
 * The chunk size a sender uses unless told otherwise: 1 MiB. On loopback
 * (bench/transfer_bench.ts) 256 KiB chunks are about 15% slower and 64 KiB
 * chunks 40%, paying the per-chunk costs (an AES-GCM call, a frame, a
 * credit) more often. A recipient's window is counted in bytes
 * ({@linkcode DEFAULT_WINDOW_BYTES}), so bigger chunks do not make it hold
 * more.
 */
export const DEFAULT_CHUNK_SIZE: number = 1024 * 1024;

/**
 * The smallest chunk size a recipient accepts: 4 KiB. Every chunk costs the
 * recipient a frame, an AES-GCM call, a sink write and a credit, so a tiny
 * chunk size would let a sender make it do that work for every few bytes.
 */
export const MIN_CHUNK_SIZE: number = 4 * 1024;

/**
 * The largest chunk size this module handles at all: 4 MiB. It bounds the
 * largest frame a reader of `/dim/file/1.0.0` ever buffers (the chunk, its
 * 16-byte tag and the type byte), whatever a recipient's own limit.
 */
export const MAX_CHUNK_SIZE: number = 4 * 1024 * 1024;

/**
 * The largest chunk size a recipient accepts unless told otherwise: 1 MiB,
 * the default chunk size, so a default sender is always accepted and one
 * frame in memory is at most about 1 MiB.
 */
export const DEFAULT_MAX_CHUNK_SIZE: number = 1024 * 1024;

/**
 * The largest file a recipient accepts unless told otherwise: 4 GiB. Enough
 * for photos, documents and most videos; a recipient refuses a larger offer
 * before a single chunk arrives, and its `accept` policy sees the size of
 * the rest.
 */
export const DEFAULT_MAX_FILE_SIZE: number = 4 * 1024 * 1024 * 1024;

/**
 * Chunk bytes a recipient lets a sender have in flight (sent, not yet
 * credited), unless told a window in chunks: 2 MiB, two default chunks, so
 * one chunk is on the wire while the one before is written to the sink.
 * It bounds what a recipient buffers per transfer whatever the
 * transport's own windows.
 */
export const DEFAULT_WINDOW_BYTES = 2 * 1024 * 1024;

/**
 * The fewest chunks that window comes to, for chunks over half of
 * {@linkcode DEFAULT_WINDOW_BYTES}: with fewer than two, a sender would wait
 * for every chunk's credit before sending the next.
 */
export const MIN_DEFAULT_WINDOW = 2;

/**
 * The most chunks that window comes to, for small chunks: 64, so credits
 * (one frame per chunk) stay a small part of the traffic.
 */
export const MAX_DEFAULT_WINDOW = 64;

/**
 * Transfers a recipient serves at once unless told otherwise: 8. Each holds
 * up to its window in memory, so this bounds a receiver's buffers to about
 * 8 × 2 MiB; a sender over the limit is refused as busy and may try again.
 */
export const DEFAULT_MAX_CONCURRENT_TRANSFERS = 8;

/**
 * The longest wait for an offer to be accepted or refused: 2 minutes. The
 * recipient's policy may ask a person, who needs time to read and answer.
 */
export const DEFAULT_ACCEPT_TIMEOUT_MS = 120_000;

/**
 * The longest silence from the other side once a transfer runs: 30 s.
 * Every chunk and every credit resets it; a live peer writing to a slow
 * disk answers far more often, and one that stays silent this long has
 * gone, so its transfer (and the window it holds) is given up.
 */
export const DEFAULT_IDLE_TIMEOUT_MS = 30_000;

/**
 * Chunks a sender seals ahead of the one it is sending: 2. Sealing
 * (AES-GCM, on WebCrypto's thread) then overlaps the send of the chunk
 * before; more only hold more chunks in memory.
 */
export const SEAL_AHEAD = 2;
