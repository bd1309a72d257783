/**
 * Where the session manager keeps its session states: sealed at rest under
 * the peer, the session and a save counter (`_save_counter.ts`), the last
 * one opened per peer cached, and the tags of incoming session frames
 * indexed (`_session_frame.ts`).
 *
 * @module
 */
import { constantTimeEqual, toHex } from "../platform/bytes.ts";
import type { RatchetState } from "../crypto/ratchet.ts";
import { decodeSession, encodeSession, expireSkippedKeys } from "../crypto/ratchet_session.ts";
import type { SecretBox } from "../crypto/secret_box.ts";
import type { SessionStorage, StoredSession } from "./storage.ts";
import type { SaveCounter } from "./_save_counter.ts";
import { type TagEntry, TagIndex } from "./_session_frame.ts";
import { MAX_OPENED_SESSION_STATES, SKIPPED_KEY_MAX_AGE_MS } from "./constants.ts";

/**
 * The associated data a state is sealed under: the peer, the session and
 * the save counter. Counter 0 is a state sealed before counters, under the
 * peer alone.
 */
function stateLabel(peer: string, sessionId: Uint8Array, counter: number): string {
  return counter === 0 ? `session:${peer}` : `session:${peer}:${toHex(sessionId)}:${counter}`;
}

/** Opens, seals and saves session states, and indexes their frame tags. */
export class SessionStates {
  readonly #sessions: SessionStorage;
  readonly #box: SecretBox;
  readonly #counter: SaveCounter;
  /**
   * The last state sealed for each peer, with its sealed bytes: a row that
   * holds exactly those bytes needs no decryption. States are never changed
   * in place, so a cached one cannot drift from its bytes.
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
    this.#index = undefined;
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
    const state = cached !== undefined && cached.counter === row.counter &&
        constantTimeEqual(cached.sessionId, row.sessionId) &&
        constantTimeEqual(cached.sealed, row.state)
      ? cached.state
      : decodeSession(
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
      encodeSession(state),
    );
    // Used only once a row with these bytes is read back, that is, committed.
    if (this.#opened.size >= MAX_OPENED_SESSION_STATES) this.#opened.clear();
    this.#opened.set(peer, { sessionId, counter, sealed, state });
    return { sealed, counter };
  }

  /** Saves a row (in the caller's transaction) and indexes the tags of its state. */
  commit(saved: StoredSession, state: RatchetState): void {
    this.#sessions.save(saved);
    this.#counter.saved(saved.counter);
    this.#index?.set(saved.peer, saved.sessionId, state);
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
