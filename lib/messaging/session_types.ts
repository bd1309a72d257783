/**
 * The types of the session manager's API ({@link "./sessions.ts"}, which
 * re-exports them): what a peer offers, what encrypting or decrypting
 * gives, and the manager's options.
 *
 * @module
 */
import type { PrekeyBundle } from "../record/prekey.ts";
import type { MessageProtection, SessionMarkStorage } from "./storage.ts";
import type { SessionRollback } from "./_save_counter.ts";

/** What a peer's public identity must offer for a session. */
export interface SessionPeer {
  /** The peer's user ID. */
  readonly userId: string;
  /** Their Ed25519 key. */
  readonly signingPublicKey: Uint8Array;
  /** Their pinned X25519 key. */
  readonly encryptionPublicKey: Uint8Array;
}

/** An encrypted or decrypted message, with the session change to save with it. */
export interface SessionResult {
  /** The envelope's (outgoing) or the message's (incoming) content type. */
  readonly contentType: number;
  /** The envelope body (outgoing) or the plaintext (incoming). */
  readonly body: Uint8Array;
  /** How the content is protected. */
  readonly protection: MessageProtection;
  /** Writes the new session state; call it inside the transaction that stores the message. */
  readonly save: () => void;
  /**
   * An outgoing message's whole wire form when it is a session frame, sent
   * in place of an envelope; `contentType` and `body` are then the message's own.
   */
  readonly frame?: Uint8Array;
  /**
   * An outgoing message's session ID when it opens a session that encrypts
   * its headers and the peer has not answered: the peer's signed
   * acknowledgement of it is an answer (`SessionManager.acknowledged`).
   */
  readonly opens?: Uint8Array;
  /**
   * Resolves once `save` may be called: the new state is still being sealed
   * when an outgoing message is returned, so the sealing can overlap the
   * envelope's. Absent when it is ready at once.
   */
  readonly ready?: Promise<void>;
  /**
   * An outgoing message whose key a flushed save already reserved: it may
   * leave once committed, before its flush (the session has nothing to save).
   */
  readonly reserved?: boolean;
  /**
   * Call once the message's commit is flushed: the next messages of its
   * sending chain may then leave before their own flushes.
   */
  readonly flushed?: () => void;
}

/** Options of `SessionManager`. */
export interface SessionManagerOptions {
  /** The time in ms. Default `Date.now`. */
  readonly clock?: () => number;
  /**
   * Called when the prekey bundle should be republished: once per used
   * one-time prekey, so gather the calls (as the messenger does, see
   * `PREKEY_REPUBLISH_MIN_INTERVAL_MS`).
   */
  readonly onPrekeysChanged?: () => void;
  /** One-time prekeys strangers may use up at once. Default `STRANGER_PREKEY_BURST` (10). */
  readonly strangerPrekeyBurst?: number;
  /** Ms per prekey strangers may use up after that. Default `STRANGER_PREKEY_REFILL_MS` (6 min). */
  readonly strangerPrekeyRefillMs?: number;
  /**
   * Where the high-water mark of the save counter is kept, outside the
   * database. Without it, a database put back to an older copy is not
   * detected (the states are still bound to their session and counter).
   */
  readonly mark?: SessionMarkStorage;
  /** Called once if the start finds the database put back and drops its sessions. */
  readonly onRollback?: (rollback: SessionRollback) => void;
  /** Saves between two writes of the mark. Default `SESSION_MARK_INTERVAL` (1,000). */
  readonly markInterval?: number;
}

/** What `SessionManager.decryptFrame` finds in a session frame. */
export type FrameResult =
  | (SessionResult & {
    /** Not a copy. */
    readonly duplicate: false;
    /** The sender: the peer of the session the frame's tag names. */
    readonly peer: string;
    /** The message ID. */
    readonly id: Uint8Array;
    /** The sender's timestamp (ms). */
    readonly timestamp: number;
  })
  | {
    /** A copy of a message already stored: acknowledge it again, store nothing. */
    readonly duplicate: true;
    /** The sender. */
    readonly peer: string;
    /** The message ID. */
    readonly id: Uint8Array;
  };

/** Finds a user's prekey bundle in the network, or `undefined`. */
export type BundleFetcher = (
  userId: string,
  options: { readonly signal: AbortSignal },
) => Promise<PrekeyBundle | undefined>;
