/**
 * Where the session manager keeps its session states: sealed at rest under
 * the peer, the session and a save counter (`_save_counter.ts`), the last
 * one opened per peer cached, and the tags of incoming session frames
 * indexed (`_session_frame.ts`).
 *
 * A message key must never be used twice, so a sent message's state must
 * be on disk before the message leaves. Rather than flush a state for each
 * message, the state at rest reserves the next keys of the sending chain
 * ({@linkcode Reservation}): it is saved with the chain already
 * `RESERVED_SENDING_KEYS` messages ahead. Once that save is flushed, the
 * chain's next messages need no save of their own and leave as soon as
 * they are committed; the live state is kept here, ahead of the row. A
 * state read back from disk (after a crash, or once evicted from memory)
 * resumes at the reservation's end, past every key that may have been
 * used; a clean stop saves the live chains (`releases`), so nothing is
 * skipped then.
 *
 * A received message is stored and flushed before it is acknowledged, but
 * the state it leaves need not be saved with it when it only moved the
 * current receiving chain on (`keepReceived`): up to
 * `UNSAVED_RECEIVED_MESSAGES - 1` such messages in a row are kept in the
 * live state alone, and the next save of the session (any message that
 * changes more, a message sent, the limit, a clean stop) writes them with
 * it. A state read back from disk then stands a few messages back in that
 * chain: the peer's next message makes it derive the keys of the messages
 * between, which it already stored; they are kept as skipped keys (a copy
 * of one of those messages decrypts again and is dropped as a duplicate by
 * its ID) and expire as any skipped key does.
 *
 * @module
 */
import { constantTimeEqual, equalBytes, toHex } from "../platform/bytes.ts";
import { chainKeyAfter } from "../crypto/_ratchet_kdf.ts";
import type { RatchetState } from "../crypto/ratchet.ts";
import { decodeSession, encodeSession, expireSkippedKeys } from "../crypto/ratchet_session.ts";
import type { SecretBox } from "../crypto/secret_box.ts";
import type { SessionStorage, StoredSession } from "./storage.ts";
import type { SaveCounter } from "./_save_counter.ts";
import { type TagEntry, TagIndex } from "./_session_frame.ts";
import {
  MAX_OPENED_SESSION_STATES,
  SKIPPED_KEY_MAX_AGE_MS,
  UNSAVED_RECEIVED_MESSAGES,
} from "./constants.ts";

/**
 * The associated data a state is sealed under: the peer, the session and
 * the save counter. Counter 0 is a state sealed before counters, under the
 * peer alone.
 */
function stateLabel(peer: string, sessionId: Uint8Array, counter: number): string {
  return counter === 0 ? `session:${peer}` : `session:${peer}:${toHex(sessionId)}:${counter}`;
}

/**
 * The keys of a sending chain reserved at rest: the saved state's chain
 * stands at message `until`, so messages numbered below it may leave before
 * their own commit is flushed, once the save that made the reservation is.
 */
export interface Reservation {
  readonly sessionId: Uint8Array;
  /** The sending chain's ratchet key (public): a DH step starts a new chain. */
  readonly chain: Uint8Array;
  /** The number of the first message key not reserved. */
  readonly until: number;
  /** The chain key at `until`, which the saved state holds. */
  readonly chainKey: Uint8Array;
  /** Whether the save that made it is flushed. */
  durable: boolean;
}

/** Opens, seals and saves session states, and indexes their frame tags. */
export class SessionStates {
  readonly #sessions: SessionStorage;
  readonly #box: SecretBox;
  readonly #counter: SaveCounter;
  /**
   * The last state sealed for each peer, with its sealed bytes: a row that
   * holds exactly those bytes needs no decryption. The state is the live
   * one: the same as the bytes, or ahead of them in a reserved sending
   * chain (`advance`).
   */
  #opened = new Map<
    string,
    {
      readonly sessionId: Uint8Array;
      readonly counter: number;
      readonly sealed: Uint8Array;
      readonly state: RatchetState;
    }
  >();
  /** The tags of incoming frames, read from every stored session at the first frame. */
  #index: TagIndex | undefined;
  /** Each peer's reservation in its current session's sending chain. */
  #reserved = new Map<string, Reservation>();
  /**
   * The peers whose live state (in `#opened`) is ahead of its row by
   * received messages kept unsaved (`keepReceived`), and how many.
   */
  #unsaved = new Map<string, number>();

  /**
   * @param sessions Where the rows are kept.
   * @param box Seals states at rest.
   * @param counter The save counter each sealing takes the next value of.
   */
  constructor(sessions: SessionStorage, box: SecretBox, counter: SaveCounter) {
    this.#sessions = sessions;
    this.#box = box;
    this.#counter = counter;
  }

  /** Forgets every cached state and tag (the sessions were dropped). */
  reset(): void {
    this.#opened.clear();
    this.#reserved.clear();
    this.#unsaved.clear();
    this.#index = undefined;
  }

  /**
   * Whether the state after a received message may stay in memory only,
   * ahead of its row ({@linkcode SessionStates.keepReceived}): the message
   * only moved the current receiving chain on by one (no DH step, no
   * skipped key stored or used), the live state is the row's, the session
   * is current and answered, and fewer than `UNSAVED_RECEIVED_MESSAGES - 1`
   * messages are unsaved in it already (and at most half the cache's worth
   * of peers have any).
   *
   * @param row The session's row, as the message was decrypted in it.
   * @param before The live state the message was decrypted with.
   * @param after The state after it.
   */
  canKeepReceived(row: StoredSession, before: RatchetState, after: RatchetState): boolean {
    const cached = this.#opened.get(row.peer);
    const unsaved = this.#unsaved.get(row.peer) ?? 0;
    return cached !== undefined && this.#holds(cached, row) && row.current &&
      row.initialHeader === undefined && unsaved + 1 < UNSAVED_RECEIVED_MESSAGES &&
      (unsaved > 0 || this.#unsaved.size < MAX_OPENED_SESSION_STATES / 2) &&
      after.receivingCount === before.receivingCount + 1 &&
      after.headerKeys === before.headerKeys &&
      after.skippedMessageKeys.length === before.skippedMessageKeys.length &&
      before.receivingRatchetKey !== null && after.receivingRatchetKey !== null &&
      equalBytes(after.receivingRatchetKey, before.receivingRatchetKey);
  }

  /**
   * Keeps the state after a received message as the live one, ahead of its
   * row, which is not saved. Call under the session lock, once the message
   * is stored, and only when {@linkcode SessionStates.canKeepReceived} said
   * so in the same turn of the lock.
   *
   * @param row The session's row, as the message was decrypted in it.
   * @param before The live state the message was decrypted with.
   * @param after The state after it.
   */
  keepReceived(row: StoredSession, before: RatchetState, after: RatchetState): void {
    const cached = this.#opened.get(row.peer);
    if (cached === undefined || !this.canKeepReceived(row, before, after)) {
      throw new Error("Cannot keep a received message's state unsaved: the session changed");
    }
    this.#opened.set(row.peer, { ...cached, state: after });
    this.#unsaved.set(row.peer, (this.#unsaved.get(row.peer) ?? 0) + 1);
  }

  /** Whether a cached entry was sealed for exactly this row. */
  #holds(
    cached: {
      readonly sessionId: Uint8Array;
      readonly counter: number;
      readonly sealed: Uint8Array;
    },
    row: StoredSession,
  ): boolean {
    return cached.counter === row.counter && constantTimeEqual(cached.sessionId, row.sessionId) &&
      constantTimeEqual(cached.sealed, row.state);
  }

  /**
   * The reservation that covers the next message of a state's sending
   * chain, if one does.
   *
   * @param peer The peer.
   * @param sessionId The session.
   * @param state The live state, before the message.
   */
  reservation(peer: string, sessionId: Uint8Array, state: RatchetState): Reservation | undefined {
    const r = this.#reserved.get(peer);
    return r !== undefined && this.#sameChain(r, sessionId, state) &&
        state.sendingCount < r.until
      ? r
      : undefined;
  }

  /**
   * Reserves the next keys of a state's sending chain from the message just
   * encrypted on: the next sealing of the session saves the chain at the
   * reservation's end.
   *
   * @param peer The peer.
   * @param sessionId The session.
   * @param state The live state after the message.
   * @param count How many keys, the message's own included.
   */
  reserve(peer: string, sessionId: Uint8Array, state: RatchetState, count: number): Reservation {
    const until = state.sendingCount - 1 + count;
    const reservation: Reservation = {
      sessionId,
      chain: state.sendingRatchetKey.publicKey,
      until,
      chainKey: chainKeyAfter(state.sendingChainKey!, until - state.sendingCount),
      durable: false,
    };
    this.#reserved.set(peer, reservation);
    return reservation;
  }

  /**
   * The live state after a message whose key was reserved: kept in memory
   * only, ahead of the row (which holds the reservation's end).
   */
  advance(peer: string, sessionId: Uint8Array, state: RatchetState): void {
    const cached = this.#opened.get(peer);
    if (cached !== undefined && equalBytes(cached.sessionId, sessionId)) {
      this.#opened.set(peer, { ...cached, state });
    }
  }

  /**
   * The live states whose sending chains are behind their reservations, to
   * be saved as they are at a clean stop; forgets the reservations.
   *
   * @returns The peers, sessions and live states.
   */
  releases(): { peer: string; sessionId: Uint8Array; state: RatchetState }[] {
    const out = [];
    for (const [peer, r] of this.#reserved) {
      const cached = this.#opened.get(peer);
      if (
        cached !== undefined && this.#sameChain(r, cached.sessionId, cached.state) &&
        cached.state.sendingCount < r.until
      ) {
        out.push({ peer, sessionId: cached.sessionId, state: cached.state });
      }
    }
    // And those with received messages kept unsaved.
    for (const peer of this.#unsaved.keys()) {
      const cached = this.#opened.get(peer);
      if (cached !== undefined && !out.some((o) => o.peer === peer)) {
        out.push({ peer, sessionId: cached.sessionId, state: cached.state });
      }
    }
    this.#reserved.clear();
    this.#unsaved.clear();
    return out;
  }

  #sameChain(r: Reservation, sessionId: Uint8Array, state: RatchetState): boolean {
    return equalBytes(r.sessionId, sessionId) &&
      equalBytes(r.chain, state.sendingRatchetKey.publicKey) && state.sendingChainKey !== null;
  }

  /** A live state as it is saved: its sending chain at the end of its reservation, if any. */
  #atRest(peer: string, sessionId: Uint8Array, state: RatchetState): RatchetState {
    const r = this.#reserved.get(peer);
    if (r === undefined || !equalBytes(r.sessionId, sessionId)) return state;
    if (!this.#sameChain(r, sessionId, state)) {
      // A DH step started a new chain: the reservation ended with the old one.
      this.#reserved.delete(peer);
      return state;
    }
    return r.until > state.sendingCount
      ? { ...state, sendingChainKey: r.chainKey, sendingCount: r.until }
      : state;
  }

  /**
   * The state of a row, without the skipped keys that have expired by `now`.
   *
   * @throws {DecryptionError} If the sealed state does not open.
   * @throws {SyntaxError} If it opens to no valid state.
   */
  async open(row: StoredSession, now: number): Promise<RatchetState> {
    const cached = this.#opened.get(row.peer);
    // The cached state is this row's only if the row is the one it was sealed for.
    const state = cached !== undefined && this.#holds(cached, row) ? cached.state : decodeSession(
      await this.#box.open(stateLabel(row.peer, row.sessionId, row.counter), row.state),
      { now },
    );
    return expireSkippedKeys(state, now - SKIPPED_KEY_MAX_AGE_MS);
  }

  /** Seals a state under the next save counter, which the row must keep. */
  async seal(
    peer: string,
    sessionId: Uint8Array,
    state: RatchetState,
    now: number,
  ): Promise<{ readonly sealed: Uint8Array; readonly counter: number }> {
    const counter = this.#counter.next();
    state = expireSkippedKeys(state, now - SKIPPED_KEY_MAX_AGE_MS);
    const sealed = await this.#box.seal(
      stateLabel(peer, sessionId, counter),
      encodeSession(this.#atRest(peer, sessionId, state)),
    );
    return { sealed, counter };
  }

  /**
   * Saves a row (in the caller's transaction), indexes the tags of its
   * state, and keeps that state as the live one: the row's bytes need no
   * decryption while they are the ones stored. The live state may be ahead
   * of them in its sending chain (see the module).
   *
   * @param saved The row, with the state sealed by {@linkcode SessionStates.seal}.
   * @param state The live state `saved` holds.
   */
  commit(saved: StoredSession, state: RatchetState): void {
    this.#sessions.save(saved);
    this.#counter.saved(saved.counter);
    this.#index?.set(saved.peer, saved.sessionId, state);
    if (this.#opened.size >= MAX_OPENED_SESSION_STATES) {
      // The states ahead of their rows by unsaved received messages stay.
      for (const peer of this.#opened.keys()) {
        if (this.#unsaved.has(peer)) continue;
        this.#opened.delete(peer);
        this.#reserved.delete(peer);
      }
    }
    // What the live state had kept unsaved is saved with it now (or, for
    // another session of the peer, given up as a crash would).
    this.#unsaved.delete(saved.peer);
    this.#opened.set(saved.peer, {
      sessionId: saved.sessionId,
      counter: saved.counter,
      sealed: saved.state,
      state,
    });
  }

  /** The session a tag names, if the index is built and has it. */
  lookup(tag: Uint8Array): TagEntry | undefined {
    return this.#index?.get(tag);
  }

  /**
   * The tag index, built from every stored session the first time. Call
   * under the session lock, so no save runs while it is built.
   */
  async tagIndex(now: number): Promise<TagIndex> {
    if (this.#index !== undefined) return this.#index;
    const index = new TagIndex();
    for (const row of this.#sessions.listAll()) {
      try {
        index.set(row.peer, row.sessionId, await this.open(row, now));
      } catch {
        // A state that does not open has no tags: its frames are refused.
      }
    }
    this.#index = index;
    return index;
  }
}
