/**
 * Forward-secret sessions for the messaging layer: X3DH with prekeys from
 * the DHT to start a session, even to a user who is offline, and the Double
 * Ratchet for every message after it.
 *
 * A session this DIM starts encrypts its headers
 * (`lib/crypto/header_ratchet.ts`, X3DH header version 2). Until the peer
 * answers, the initiator's messages travel inside the signed HPKE envelope
 * (first contact stays hidden from mailbox nodes and authenticated), with
 * the body below (content type 0x80). Every later message of the session,
 * on either side, is a session frame (`_session_frame.ts`): no envelope and
 * no signature, only symmetric cryptography per message; the recipient
 * finds its session by the frame's tag, in an index of every session's
 * receiving header keys ({@linkcode SessionManager.decryptFrame}).
 *
 * A session stored by an older DIM (no header keys), or started by one
 * (X3DH header version 1), keeps the envelope for every message:
 *
 * ```text
 * sessionId (8) | initial message (X3DH header + ratchet message)   content type 0x80
 * sessionId (8) | ratchet message                                    content type 0x81
 * ```
 *
 * and the ratchet plaintext is `contentType u8 | body`. The session ID is the
 * first 8 bytes of SHA-256 of the encoded X3DH header, so both sides name a
 * session alike. The initiator sends the X3DH header with every message until
 * the peer answers.
 *
 * Policy:
 * - A session, once made with a peer, is always used for that peer: sending
 *   never falls back to the static-key envelope. Only a first contact whose
 *   prekeys cannot be found is sent with the static envelope, and each
 *   message says which protection it had.
 * - A one-time prekey is deleted only after the first message sealed with it
 *   has decrypted, and the bundle is then republished. Strangers' first
 *   messages delete at most 10, then one per 6 minutes; beyond that the
 *   prekey still opens the session but stays on offer. A sender whose
 *   prekey was used first retries without one (`_prekey_policy.ts`).
 * - When both users start a session at once, each keeps both for reading and
 *   both send on the one with the smaller ID, so they converge.
 * - Session states and prekeys are sealed at rest ({@linkcode SecretBox}),
 *   and a new state is saved in the same transaction as the message it
 *   encrypted or decrypted: the state is saved before the message is sent,
 *   and a failed decryption changes nothing.
 * - Keys of skipped messages expire after `SKIPPED_KEY_MAX_AGE_MS` (30
 *   days): they are dropped from a state whenever it is used or saved, so a
 *   message later than that no longer reads.
 * - Each saved state gets the next value of a save counter and is sealed
 *   with the peer, the session ID and that counter as associated data; a
 *   high-water mark of the counter is kept outside the database (`mark`),
 *   and a start that finds the database put back to an older copy drops
 *   every session rather than encrypt again under a used message key
 *   (`_save_counter.ts` tells how, and what it does not detect).
 *
 * @module
 */
import { sha256 } from "@noble/hashes/sha2.js";
import { compareBytes, concat, constantTimeEqual, equalBytes } from "../platform/bytes.ts";
import {
  headerRatchetDecrypt,
  headerRatchetEncrypt,
  initHeaderSender,
  startFirstSenderStep,
} from "../crypto/header_ratchet.ts";
import type { Identity } from "../crypto/identity.ts";
import { ratchetDecrypt, ratchetEncrypt, type RatchetState } from "../crypto/ratchet.ts";
import {
  decodeInitialMessage,
  decodeX3dhHeader,
  encodeInitialMessage,
  encodeX3dhHeader,
  initiateX3dh,
  X3DH_HEADER_VERSION_HE,
} from "../crypto/x3dh.ts";
import { DecryptionError, PeerUnreachableError } from "../errors.ts";
import { PrekeyBudget, retryPrekeyChoice } from "./_prekey_policy.ts";
import { type PrekeyBundle, toX3dhBundle } from "../record/prekey.ts";
import type { SignedRecord } from "../record/record.ts";
import type { SessionStorage, SettingsStorage, StoredSession } from "./storage.ts";
import type { SecretBox } from "../crypto/secret_box.ts";
import { SaveCounter, type SessionRollback } from "./_save_counter.ts";
import { SessionStates } from "./_session_states.ts";
import { SessionPrekeys } from "./_session_prekeys.ts";
import {
  decodeFramePlaintext,
  encodeFramePlaintext,
  frameTag,
  isSessionFrame,
  SESSION_FRAME_CONTEXT,
} from "./_session_frame.ts";
import {
  RESERVED_SENDING_KEYS,
  SESSION_MARK_INTERVAL,
  STRANGER_PREKEY_BURST,
  STRANGER_PREKEY_REFILL_MS,
} from "./constants.ts";

export type { SessionRollback } from "./_save_counter.ts";
export type {
  BundleFetcher,
  FrameResult,
  SessionManagerOptions,
  SessionPeer,
  SessionResult,
} from "./session_types.ts";
import type {
  BundleFetcher,
  FrameResult,
  SessionManagerOptions,
  SessionPeer,
  SessionResult,
} from "./session_types.ts";

/** Envelope content types that carry session messages. */
export const SessionContentType = { Initial: 0x80, Ratchet: 0x81 } as const;

const SESSION_ID_LENGTH = 8;

function sessionIdOf(headerBytes: Uint8Array): Uint8Array {
  return sha256(headerBytes).subarray(0, SESSION_ID_LENGTH);
}

/** Makes, keeps and uses the Double Ratchet sessions of one identity. */
export class SessionManager {
  readonly #identity: Identity;
  readonly #sessions: SessionStorage;
  readonly #settings: SettingsStorage;
  readonly #box: SecretBox;
  readonly #fetchBundle: BundleFetcher;
  readonly #clock: () => number;
  readonly #prekeys: SessionPrekeys;
  #tail: Promise<unknown> = Promise.resolve();
  #queued = 0;
  #idle: (() => void)[] = [];
  readonly #counter: SaveCounter;
  readonly #states: SessionStates;
  /** The start's check against the mark; every call of `lock` waits for it. */
  readonly #ready: Promise<SessionRollback | undefined>;

  /**
   * Makes the manager.
   *
   * @param deps The identity, where its sessions and prekeys are kept, its secret box, and how
   *   to find bundles.
   * @param options `clock`; `onPrekeysChanged`; `mark`, where the high-water mark is kept
   *   (the check against it starts at once, and {@linkcode SessionManager.whenReady} tells
   *   its result); `onRollback`; `markInterval`; the strangers' prekey budget.
   * @throws {RangeError} If the strangers' prekey budget is out of range.
   */
  constructor(
    deps: {
      readonly identity: Identity;
      readonly storage: {
        readonly sessions: SessionStorage;
        readonly settings: SettingsStorage;
      };
      readonly box: SecretBox;
      readonly fetchBundle: BundleFetcher;
    },
    options: SessionManagerOptions = {},
  ) {
    this.#identity = deps.identity;
    this.#sessions = deps.storage.sessions;
    this.#settings = deps.storage.settings;
    this.#box = deps.box;
    this.#fetchBundle = deps.fetchBundle;
    this.#clock = options.clock ?? Date.now;
    this.#prekeys = new SessionPrekeys({
      identity: deps.identity,
      settings: this.#settings,
      box: this.#box,
      strangers: new PrekeyBudget(
        options.strangerPrekeyBurst ?? STRANGER_PREKEY_BURST,
        options.strangerPrekeyRefillMs ?? STRANGER_PREKEY_REFILL_MS,
        this.#clock(),
      ),
      onChanged: options.onPrekeysChanged ?? (() => {}),
    });
    this.#counter = new SaveCounter(
      this.#settings,
      options.mark,
      options.markInterval ?? SESSION_MARK_INTERVAL,
    );
    this.#states = new SessionStates(this.#sessions, this.#box, this.#counter);
    this.#ready = this.#counter.check(() => {
      this.#states.reset();
      return this.#sessions.clear();
    }).then((rollback) => {
      if (rollback !== undefined) options.onRollback?.(rollback);
      return rollback;
    });
    // Its failure reaches every call of `lock`, and `whenReady`.
    this.#ready.catch(() => {});
  }

  /**
   * Resolves once the start's check of the database against the mark is
   * done (at once without a mark). Every call of
   * {@linkcode SessionManager.lock} waits for it too.
   *
   * @returns What was found if the database had been put back to an older
   *   copy (its sessions are then dropped), else `undefined`.
   * @throws {StorageError} If the sessions of a rolled-back database could
   *   not be dropped; no session is used then.
   */
  whenReady(): Promise<SessionRollback | undefined> {
    return this.#ready;
  }

  /**
   * Writes the exact mark: call at a clean stop, after the last message.
   * A failed write keeps the last mark, which stays at or below the
   * database's counter.
   *
   * @returns When the mark is written.
   */
  async close(): Promise<void> {
    await this.whenIdle();
    await this.#ready.catch(() => {});
    await this.lock(() => this.#release()).catch(() => {});
    await this.#counter.close();
  }

  /**
   * Saves each sending chain that is behind its reservation as it is, so the
   * next start skips no key. Not flushed: a state lost with the machine
   * leaves the reservation at rest, which is safe.
   */
  async #release(): Promise<void> {
    const now = this.#clock();
    for (const { peer, sessionId, state } of this.#states.releases()) {
      const row = this.#sessions.list(peer).find((r) => equalBytes(r.sessionId, sessionId));
      if (row === undefined) continue;
      const sealed = await this.#states.seal(peer, sessionId, state, now);
      this.#states.commit({ ...row, state: sealed.sealed, counter: sealed.counter }, state);
    }
  }

  /**
   * Runs `fn` after every earlier call has finished: session states and
   * prekeys change one message at a time.
   *
   * @param fn The work.
   * @returns What `fn` returns.
   */
  lock<T>(fn: () => Promise<T>): Promise<T> {
    this.#queued++;
    const start = () => this.#ready.then(fn);
    const run = this.#tail.then(start, start).finally(() => {
      if (--this.#queued > 0) return;
      const idle = this.#idle;
      this.#idle = [];
      for (const resolve of idle) resolve();
    });
    this.#tail = run.catch(() => {});
    return run;
  }

  /** Whether calls of {@linkcode SessionManager.lock} are running or waiting. */
  get busy(): boolean {
    return this.#queued > 0;
  }

  /**
   * Resolves once no call of {@linkcode SessionManager.lock} is running or waiting.
   *
   * @returns When the lock is idle.
   */
  whenIdle(): Promise<void> {
    if (this.#queued === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  /**
   * Creates the prekeys if there are none, rotates the signed prekey when it
   * is due, refills one-time prekeys, and signs the bundle to publish.
   *
   * @returns The signed `prekeys` record.
   */
  prekeyBundle(): Promise<SignedRecord> {
    return this.lock(() => this.#prekeys.bundle(this.#clock()));
  }

  /**
   * Whether any session with the peer exists.
   *
   * @param userId The peer's user ID.
   * @returns `true` if messages to them use a session.
   */
  hasSession(userId: string): boolean {
    return this.#sessions.list(userId).length > 0;
  }

  /**
   * Which one-time prekey a new session with a peer should use after the
   * peer answered "no session" to the current one: none if that session is
   * ours, unanswered, and named a prekey that `bundle` still lists (someone
   * may have used it first, and a bundle that lists it is not newer than the
   * one we used), so that one retry is enough. Call before the old sessions
   * are deleted.
   *
   * @param userId The peer.
   * @param bundle The bundle just found for the new session.
   * @returns `null` for no one-time prekey, or `undefined` for one at random.
   */
  retryPrekeyChoice(userId: string, bundle: PrekeyBundle): null | undefined {
    const row = this.#sessions.list(userId).find((r) => r.current);
    return retryPrekeyChoice(row?.initialHeader, bundle);
  }

  /**
   * Looks a peer's prekey bundle up in the network, session or not.
   *
   * @param userId The peer.
   * @param options `signal` for the lookup.
   * @returns The bundle, or `undefined` if none was found.
   */
  async lookupBundle(
    userId: string,
    options: { readonly signal: AbortSignal },
  ): Promise<PrekeyBundle | undefined> {
    try {
      return await this.#fetchBundle(userId, options);
    } catch {
      return undefined;
    }
  }

  /**
   * Looks a peer's prekey bundle up if there is no session with them yet,
   * to be passed to {@linkcode SessionManager.encrypt}. Call it outside the
   * lock: the lookup waits for the network, and the lock holds up every
   * other message, sent or received, meanwhile.
   *
   * @param userId The recipient.
   * @param options `signal` for the lookup.
   * @returns The bundle, `null` if none was found (or it is invalid), or
   *   `undefined` if a session exists (and no bundle is needed).
   * @throws {PeerUnreachableError} If the lookup could not ask any peer, or
   *   timed out: a first message must not lose its forward secrecy to a
   *   network outage.
   */
  async prepare(
    userId: string,
    options: { readonly signal: AbortSignal },
  ): Promise<PrekeyBundle | null | undefined> {
    if (this.hasSession(userId)) return undefined;
    try {
      return await this.#fetchBundle(userId, options) ?? null;
    } catch (cause) {
      // Not found is not the same as not looked up: a first message sealed
      // with no forward secrecy because the network was out of reach would
      // be a silent downgrade. It waits for the network instead.
      // A lookup the caller cut short ends with the caller's reason.
      if (options.signal.aborted && options.signal.reason?.name !== "TimeoutError") {
        throw options.signal.reason;
      }
      if (cause instanceof PeerUnreachableError || options.signal.aborted) {
        throw new PeerUnreachableError(
          `Cannot seal a first message to ${userId}: their prekeys cannot be looked up ` +
            "while no peer answers",
          { cause },
        );
      }
      return null;
    }
  }

  /**
   * Encrypts a message for a peer: in the current session, or in a new one
   * from their prekeys, or (first contact without prekeys) not at all, for
   * the static-key envelope. A session that encrypts its headers gives a
   * session frame (`frame`) once the peer has answered. Call inside
   * {@linkcode SessionManager.lock}.
   *
   * @param peer The recipient.
   * @param contentType The message's content type.
   * @param body The message.
   * @param options `signal` for the prekey lookup; `bundle`, the peer's
   *   bundle as {@linkcode SessionManager.prepare} found it (`null`: none
   *   found), so the lookup need not happen inside the lock;
   *   `oneTimePrekeyId`, the one-time prekey a new session uses (`null`:
   *   none; default: one of the bundle's at random), as
   *   {@linkcode SessionManager.retryPrekeyChoice} tells; `id` and
   *   `timestamp`, the message's ID (16 bytes, default random) and time
   *   (default now), which a frame carries as an envelope would.
   * @returns The envelope content type and body (or the frame), and the state to save.
   * @throws {RangeError} If `oneTimePrekeyId` is a number the bundle does not list.
   */
  async encrypt(
    peer: SessionPeer,
    contentType: number,
    body: Uint8Array,
    options: {
      readonly signal: AbortSignal;
      readonly bundle?: PrekeyBundle | null;
      readonly oneTimePrekeyId?: number | null | undefined;
      readonly id?: Uint8Array;
      readonly timestamp?: number;
    },
  ): Promise<SessionResult> {
    const now = this.#clock();
    const plaintext = concat(new Uint8Array([contentType]), body);
    let row = this.#sessions.list(peer.userId)[0];
    let state: RatchetState;
    if (row !== undefined) {
      state = await this.#states.open(row, now);
    } else {
      let bundle: PrekeyBundle | undefined;
      try {
        bundle = options.bundle === undefined
          ? await this.#fetchBundle(peer.userId, options)
          : options.bundle ?? undefined;
      } catch {
        bundle = undefined;
      }
      // A bundle whose keys are not the pinned ones is not this contact's.
      if (
        bundle === undefined ||
        !constantTimeEqual(bundle.signingPublicKey, peer.signingPublicKey) ||
        !constantTimeEqual(bundle.encryptionPublicKey, peer.encryptionPublicKey)
      ) {
        return { contentType, body, protection: "static", save: () => {} };
      }
      const choice = options.oneTimePrekeyId === undefined
        ? {}
        : { oneTimePrekeyId: options.oneTimePrekeyId };
      const x3dhBundle = toX3dhBundle(bundle, choice);
      const init = await initiateX3dh(this.#identity, x3dhBundle, { headerEncryption: true });
      const step = startFirstSenderStep(x3dhBundle.signedPrekey.publicKey);
      const header = encodeX3dhHeader(init.header);
      state = await initHeaderSender(
        init.sharedSecret,
        init.remoteRatchetKey,
        init.associatedData,
        {
          sending: init.headerKeys!.initiator,
          nextReceiving: init.headerKeys!.responder,
        },
        step,
      );
      row = {
        peer: peer.userId,
        sessionId: sessionIdOf(header),
        state: new Uint8Array(0),
        initialHeader: header,
        current: true,
        createdAt: now,
        usedAt: now,
        counter: 0,
      };
    }
    const id = options.id ?? crypto.getRandomValues(new Uint8Array(16));
    let next: RatchetState;
    let message: Uint8Array;
    let frame: Uint8Array | undefined;
    if (state.headerKeys === undefined) {
      ({ state: next, message } = await ratchetEncrypt(state, plaintext));
    } else if (row.initialHeader !== undefined) {
      const context = row.initialHeader;
      ({ state: next, message } = await headerRatchetEncrypt(state, plaintext, { id, context }));
    } else {
      const content = encodeFramePlaintext(options.timestamp ?? now, contentType, body);
      ({ state: next, message } = await headerRatchetEncrypt(state, content, {
        id,
        context: SESSION_FRAME_CONTEXT,
      }));
      frame = concat(SESSION_FRAME_CONTEXT, message);
    }
    const payload = row.initialHeader === undefined ? message : encodeInitialMessage({
      header: decodeX3dhHeader(row.initialHeader),
      message,
    });
    const kept = this.#keep(peer.userId, row, state, next, now);
    if (frame !== undefined) {
      return { contentType, body, frame, protection: "ratchet", ...kept };
    }
    const result = {
      contentType: row.initialHeader === undefined
        ? SessionContentType.Ratchet
        : SessionContentType.Initial,
      body: concat(row.sessionId, payload),
      protection: "ratchet" as const,
      ...kept,
    };
    const opens = row.initialHeader !== undefined && state.headerKeys !== undefined;
    return opens ? { ...result, opens: row.sessionId } : result;
  }

  /**
   * How an outgoing message's new state is kept: nothing to save when a
   * flushed save already reserved its key; otherwise sealed and saved, and
   * in a saved, current session the save reserves the chain's next keys
   * (usable once the caller reports the flush).
   */
  #keep(
    peer: string,
    row: StoredSession,
    state: RatchetState,
    next: RatchetState,
    now: number,
  ): Pick<SessionResult, "ready" | "save" | "reserved" | "flushed"> {
    const saved = row.state.length > 0 && row.current;
    const reservation = saved ? this.#states.reservation(peer, row.sessionId, state) : undefined;
    if (reservation?.durable === true) {
      this.#states.advance(peer, row.sessionId, next);
      return { reserved: true, save: () => {} };
    }
    const r = reservation ??
      (saved ? this.#states.reserve(peer, row.sessionId, next, RESERVED_SENDING_KEYS) : undefined);
    let saving: StoredSession | undefined;
    const ready = this.#states.seal(peer, row.sessionId, next, now).then((sealed) => {
      saving = {
        ...row,
        state: sealed.sealed,
        counter: sealed.counter,
        usedAt: now,
        current: true,
      };
    });
    const save = () => {
      if (saving === undefined) {
        throw new Error("Cannot save session: its state is not sealed yet");
      }
      this.#states.commit(saving, next);
    };
    if (r === undefined) return { ready, save };
    return { ready, save, flushed: () => void (r.durable = true) };
  }

  /**
   * Takes the peer's signed acknowledgement of a message that opened a
   * session (`SessionResult.opens`) as the peer's answer: the peer holds the
   * session, so the next messages in it are session frames, without the
   * X3DH header and the envelope. It becomes current only if none is (two
   * sessions started at once converge as the answers say). Call inside
   * {@linkcode SessionManager.lock} and a transaction.
   *
   * @param peer The peer who acknowledged.
   * @param sessionId The session the acknowledged message opened.
   */
  acknowledged(peer: string, sessionId: Uint8Array): void {
    const rows = this.#sessions.list(peer);
    const row = rows.find((r) => constantTimeEqual(r.sessionId, sessionId));
    if (row?.initialHeader?.[0] !== X3DH_HEADER_VERSION_HE) return;
    this.#sessions.save({
      ...row,
      initialHeader: undefined,
      current: row.current || !rows.some((r) => r.current),
    });
  }

  /**
   * Decrypts a session message from a peer whose envelope was verified.
   * A static-envelope message passes through, labelled "static". Call inside
   * {@linkcode SessionManager.lock}.
   *
   * @param sender The verified sender; `encryptionPublicKey` is their pinned
   *   key if they are a contact, else `undefined`.
   * @param contentType The envelope content type.
   * @param body The envelope body.
   * @returns The message's content type and plaintext, and the state to save.
   * @throws {DecryptionError} If it does not decrypt in any session.
   */
  async decrypt(
    sender: {
      readonly userId: string;
      readonly signingPublicKey: Uint8Array;
      readonly encryptionPublicKey?: Uint8Array | undefined;
    },
    contentType: number,
    body: Uint8Array,
  ): Promise<SessionResult> {
    if (contentType !== SessionContentType.Initial && contentType !== SessionContentType.Ratchet) {
      return { contentType, body, protection: "static", save: () => {} };
    }
    if (body.length <= SESSION_ID_LENGTH) throw new DecryptionError();
    const sessionId = body.subarray(0, SESSION_ID_LENGTH);
    const payload = body.subarray(SESSION_ID_LENGTH);
    const now = this.#clock();
    const rows = this.#sessions.list(sender.userId);
    let row = rows.find((r) => constantTimeEqual(r.sessionId, sessionId));
    let message: Uint8Array;
    let state: RatchetState;
    let context: Uint8Array | undefined;
    let savePrekeys = () => {};
    if (contentType === SessionContentType.Initial) {
      let initial;
      try {
        initial = decodeInitialMessage(payload);
      } catch {
        throw new DecryptionError();
      }
      const header = encodeX3dhHeader(initial.header);
      context = header;
      if (!constantTimeEqual(sessionIdOf(header), sessionId)) throw new DecryptionError();
      // The header's identity must be the envelope's signer, and the pinned key if known.
      if (
        !constantTimeEqual(initial.header.initiatorSigningKey, sender.signingPublicKey) ||
        (sender.encryptionPublicKey !== undefined &&
          !constantTimeEqual(initial.header.initiatorEncryptionKey, sender.encryptionPublicKey))
      ) throw new DecryptionError();
      message = initial.message;
      if (row !== undefined) {
        state = await this.#states.open(row, now);
      } else {
        const stranger = sender.encryptionPublicKey === undefined;
        const response = await this.#prekeys.respond(initial.header, stranger, now);
        state = response.state;
        savePrekeys = response.save;
        // The new session becomes current, unless it races one of ours that
        // the peer has not answered yet and that has the smaller ID.
        const mine = rows.find((r) => r.current);
        const keepMine = mine?.initialHeader !== undefined &&
          compareBytes(mine.sessionId, sessionId) < 0;
        row = {
          peer: sender.userId,
          sessionId: new Uint8Array(sessionId),
          state: new Uint8Array(0),
          initialHeader: undefined,
          current: !keepMine,
          createdAt: now,
          usedAt: now,
          counter: 0,
        };
      }
    } else {
      if (row === undefined) throw new DecryptionError();
      message = payload;
      state = await this.#states.open(row, now);
    }
    let next: RatchetState;
    let plaintext: Uint8Array;
    if (state.headerKeys === undefined) {
      ({ state: next, plaintext } = await ratchetDecrypt(state, message, { now }));
    } else {
      // Such a session's later messages come as frames; a copy is refused
      // as the original's key is gone (envelopes are deduplicated before).
      if (context === undefined) throw new DecryptionError();
      const result = await headerRatchetDecrypt(state, message, { context, now });
      if (result.gone) throw new DecryptionError();
      ({ state: next, plaintext } = result);
    }
    if (plaintext.length < 1) throw new DecryptionError();
    // A ratchet message in a session we started means the peer answered:
    // stop sending the X3DH header, and send in this session from now on.
    const answered = contentType === SessionContentType.Ratchet;
    const saved = await this.#saved(row, rows, next, answered, now);
    return {
      contentType: plaintext[0]!,
      body: plaintext.subarray(1),
      protection: "ratchet",
      save: () => {
        this.#states.commit(saved, next);
        savePrekeys();
      },
    };
  }

  /** The row to save after a message was received in it, its new state sealed. */
  async #saved(
    row: StoredSession,
    rows: readonly StoredSession[],
    state: RatchetState,
    answered: boolean,
    now: number,
  ): Promise<StoredSession> {
    const current = row.current || (answered && row.initialHeader !== undefined) ||
      (answered && !rows.some((r) => r.current));
    const sealed = await this.#states.seal(row.peer, row.sessionId, state, now);
    return {
      ...row,
      state: sealed.sealed,
      counter: sealed.counter,
      initialHeader: answered ? undefined : row.initialHeader,
      current,
      usedAt: now,
    };
  }

  /**
   * Whose session a frame's tag names, by the index alone (no decryption,
   * so the frame is not authenticated; none until the first frame has built
   * the index).
   *
   * @param frame The frame as received.
   * @returns The peer's user ID, if {@linkcode SessionManager.decryptFrame} would try it.
   */
  frameSender(frame: Uint8Array): string | undefined {
    return isSessionFrame(frame) ? this.#states.lookup(frameTag(frame))?.peer : undefined;
  }

  /**
   * Decrypts a session frame: finds its session by the frame's tag in the
   * index (an unknown tag is refused with no decryption tried; the index is
   * built from every stored session the first time), and decrypts it there.
   * Its sender is that session's peer. A frame whose key is gone is a copy
   * if `isDuplicate` says its ID is stored. Call inside
   * {@linkcode SessionManager.lock}.
   *
   * @param frame The frame as received.
   * @param isDuplicate Whether a message with this ID from this peer is stored.
   * @returns The message and the state to save, or `duplicate`.
   * @throws {DecryptionError} If the tag is unknown or the frame does not
   *   decrypt in its session; nothing changes then.
   */
  async decryptFrame(
    frame: Uint8Array,
    isDuplicate: (peer: string, id: Uint8Array) => boolean,
  ): Promise<FrameResult> {
    if (!isSessionFrame(frame)) throw new DecryptionError();
    const now = this.#clock();
    const index = await this.#states.tagIndex(now);
    const entry = index.get(frameTag(frame));
    if (entry === undefined) throw new DecryptionError();
    const rows = this.#sessions.list(entry.peer);
    const row = rows.find((r) => constantTimeEqual(r.sessionId, entry.sessionId));
    if (row === undefined) {
      index.delete(entry);
      throw new DecryptionError();
    }
    const state = await this.#states.open(row, now);
    const result = await headerRatchetDecrypt(state, frame.subarray(1), {
      context: SESSION_FRAME_CONTEXT,
      now,
    });
    if (result.gone) {
      if (isDuplicate(row.peer, result.id)) {
        return { duplicate: true, peer: row.peer, id: result.id };
      }
      throw new DecryptionError();
    }
    const content = decodeFramePlaintext(result.plaintext);
    if (content === undefined) throw new DecryptionError();
    const message = {
      duplicate: false,
      peer: row.peer,
      id: result.id,
      timestamp: content.timestamp,
      contentType: content.contentType,
      body: content.body,
      protection: "ratchet",
    } as const;
    // A message that only moves the receiving chain on may leave the state
    // unsaved for a while (see `_session_states.ts`).
    if (this.#states.canKeepReceived(row, state, result.state)) {
      return { ...message, save: () => this.#states.keepReceived(row, state, result.state) };
    }
    // A frame in a session we started means the peer answered.
    const saved = await this.#saved(row, rows, result.state, true, now);
    return { ...message, save: () => this.#states.commit(saved, result.state) };
  }
}
