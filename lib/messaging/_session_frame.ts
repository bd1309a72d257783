/**
 * Session frames: the wire form of a message in an established session
 * that encrypts its headers, sent in place of an envelope (no HPKE, no
 * signature), and the index by which a recipient finds the session of one.
 *
 * ```text
 * frame     = kind u8 (= 0xD1) | tag (16) | nonce (12) | sealed header (72) | ciphertext
 * plaintext = timestamp u64 | contentType u8 | body
 * ```
 *
 * `tag | nonce | sealed header | ciphertext` is a message of
 * `lib/crypto/header_ratchet.ts` (its `context` is the kind byte; its
 * sealed header carries the message ID). The kind byte differs from every
 * envelope version (and group wraps start with the envelope version), so a
 * recipient and a mailbox node tell the forms apart by the first byte. The
 * tag is pseudorandom, names a header key of the session and changes with
 * each DH ratchet step: a node that stores frames learns nothing of their
 * sender, only which frames share a sending chain.
 *
 * @module
 */
import { constantTimeEqual, Reader, toHex, u64 } from "../platform/bytes.ts";
import { MAX_BODY_LENGTH } from "../crypto/envelope.ts";
import {
  HEADER_RATCHET_OVERHEAD,
  receivingTags,
  SESSION_TAG_LENGTH,
} from "../crypto/header_ratchet.ts";
import type { RatchetState } from "../crypto/ratchet.ts";

/** The first byte of a session frame: no envelope version (1, 2, …) is this high. */
export const SESSION_FRAME_KIND = 0xd1;
/** The kind byte as the ratchet's context, bound into every seal of a frame. */
export const SESSION_FRAME_CONTEXT: Uint8Array = new Uint8Array([SESSION_FRAME_KIND]);
/** What a frame's plaintext holds before its body: timestamp and content type. */
const PLAINTEXT_HEADER_LENGTH = 8 + 1;
/** The shortest session frame (an empty body). */
export const MIN_SESSION_FRAME_LENGTH: number = 1 + HEADER_RATCHET_OVERHEAD +
  PLAINTEXT_HEADER_LENGTH;
/** The longest session frame (a body of `MAX_BODY_LENGTH`). */
export const MAX_SESSION_FRAME_LENGTH: number = MIN_SESSION_FRAME_LENGTH + MAX_BODY_LENGTH;

/**
 * Whether bytes have the shape of a session frame: its kind and a length in
 * range. Says nothing of who sent it.
 *
 * @param bytes Bytes received where an envelope may come.
 * @returns `true` if they may be a session frame.
 */
export function isSessionFrame(bytes: Uint8Array): boolean {
  return bytes[0] === SESSION_FRAME_KIND && bytes.length >= MIN_SESSION_FRAME_LENGTH &&
    bytes.length <= MAX_SESSION_FRAME_LENGTH;
}

/** The tag of a session frame (its bytes 1 to 16). */
export function frameTag(frame: Uint8Array): Uint8Array {
  return frame.subarray(1, 1 + SESSION_TAG_LENGTH);
}

/** A frame's plaintext: `timestamp u64 | contentType u8 | body`. */
export function encodeFramePlaintext(
  timestamp: number,
  contentType: number,
  body: Uint8Array,
): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(PLAINTEXT_HEADER_LENGTH + body.length);
  out.set(u64(timestamp));
  out[8] = contentType;
  out.set(body, PLAINTEXT_HEADER_LENGTH);
  return out;
}

/** Reads a frame's plaintext, or `undefined` if it is too short. */
export function decodeFramePlaintext(
  plaintext: Uint8Array,
): { timestamp: number; contentType: number; body: Uint8Array } | undefined {
  if (plaintext.length < PLAINTEXT_HEADER_LENGTH) return undefined;
  const r = new Reader(plaintext.subarray(0, 8));
  return {
    timestamp: r.u64(),
    contentType: plaintext[8]!,
    body: plaintext.subarray(PLAINTEXT_HEADER_LENGTH),
  };
}

/** Where a tag leads: a peer's session. */
export interface TagEntry {
  /** The peer's user ID. */
  readonly peer: string;
  /** The session's ID. */
  readonly sessionId: Uint8Array;
}

/**
 * The tags incoming frames may carry, each to its session, in memory: every
 * receiving header key of every session that encrypts its headers. Kept up
 * to date on every save of a state; an entry whose session is gone is
 * dropped when a frame finds it.
 */
export class TagIndex {
  readonly #byTag = new Map<string, TagEntry>();
  readonly #bySession = new Map<string, string[]>();
  /**
   * What each session's tags were computed from: a new state that shares
   * its header keys and skipped keys (as most do) has the same tags.
   */
  readonly #from = new Map<string, { keys: unknown; skipped: unknown }>();

  /** How many tags are indexed. */
  get size(): number {
    return this.#byTag.size;
  }

  /**
   * The session a tag names, or `undefined`.
   *
   * @param tag The 16-byte tag.
   * @returns The peer and session ID.
   */
  get(tag: Uint8Array): TagEntry | undefined {
    return this.#byTag.get(toHex(tag));
  }

  /**
   * Indexes a session's tags as its new state has them, replacing its old ones.
   *
   * @param peer The peer.
   * @param sessionId The session.
   * @param state Its state (a state without header keys has no tags).
   */
  set(peer: string, sessionId: Uint8Array, state: RatchetState): void {
    const key = `${peer}:${toHex(sessionId)}`;
    const from = this.#from.get(key);
    if (from?.keys === state.headerKeys && from?.skipped === state.skippedMessageKeys) return;
    for (const tag of this.#bySession.get(key) ?? []) this.#byTag.delete(tag);
    const tags = receivingTags(state).map((t) => toHex(t.tag));
    if (tags.length === 0) {
      this.#bySession.delete(key);
      this.#from.delete(key);
      return;
    }
    this.#from.set(key, { keys: state.headerKeys, skipped: state.skippedMessageKeys });
    const entry = { peer, sessionId: new Uint8Array(sessionId) };
    for (const tag of tags) this.#byTag.set(tag, entry);
    this.#bySession.set(key, tags);
  }

  /**
   * Forgets a session's tags.
   *
   * @param entry The session.
   */
  delete(entry: TagEntry): void {
    const key = `${entry.peer}:${toHex(entry.sessionId)}`;
    for (const tag of this.#bySession.get(key) ?? []) {
      const at = this.#byTag.get(tag);
      if (at !== undefined && constantTimeEqual(at.sessionId, entry.sessionId)) {
        this.#byTag.delete(tag);
      }
    }
    this.#bySession.delete(key);
    this.#from.delete(key);
  }
}
