/**
 * How the outbox seals: a message's envelope, or its session frame as the
 * session gives it; queued messages sealed again in order (in a new
 * session, or once the recipient's prekeys can be looked up); and the
 * acknowledgements of envelopes that opened a session taken as the
 * recipient's answer, after which the session's messages are frames.
 *
 * @module
 */
import { toHex } from "../platform/bytes.ts";
import { sealEnvelope } from "../crypto/envelope.ts";
import { decodeUserId } from "../crypto/identity.ts";
import { ProtocolError } from "../errors.ts";
import { envelopeHash } from "./mailbox.ts";
import type { OutboxStore } from "./outbox.ts";
import type { SessionManager, SessionPeer, SessionResult } from "./sessions.ts";
import { type DeferredCommits, isUnsealed, type OutboxEntry } from "./storage.ts";
import type { MessageRecipient } from "./types.ts";
import type { ServiceContext } from "./_context.ts";

/** The most envelopes `#opening` remembers; past it, it forgets them all (they are rare). */
const MAX_OPENING = 10_000;

/** Seals for the outbox. */
export class Sealer {
  readonly #ctx: ServiceContext;
  readonly #storage: OutboxStore;
  /**
   * The envelopes that open a session the recipient has not answered, by
   * hash: an acknowledgement of one answers the session. In memory only: after
   * a restart, the recipient's first message answers it instead.
   */
  #opening = new Map<string, Uint8Array>();

  /**
   * @param ctx The service's shared context.
   * @param storage The outbox's storage.
   */
  constructor(ctx: ServiceContext, storage: OutboxStore) {
    this.#ctx = ctx;
    this.#storage = storage;
  }

  /**
   * Seals a conversation's queued messages that wait to be sealed (see
   * `Outbox`'s `#queueUnsealed`), in order, now that the recipient's prekeys may be
   * looked up; durable before it returns.
   *
   * @throws {PeerUnreachableError} If the prekeys still cannot be looked up.
   */
  async sealQueued(recipient: string, signal: AbortSignal): Promise<void> {
    const sessions = this.#ctx.sessions;
    const contact = this.#storage.contacts.getById(recipient);
    if (sessions === undefined || contact === undefined) {
      throw new ProtocolError(`Cannot seal a queued message: ${recipient} is not a contact`);
    }
    const peer = {
      userId: recipient,
      signingPublicKey: decodeUserId(recipient),
      encryptionPublicKey: contact.encryptionPublicKey,
    };
    const bundle = await sessions.prepare(recipient, { signal });
    await sessions.lock(async () => {
      const queue = this.#storage.outbox.list().filter((e) =>
        e.recipient === recipient && isUnsealed(e)
      );
      await this.reseal(peer, queue, bundle === undefined ? { signal } : { signal, bundle });
    });
  }

  /**
   * Seals queued messages again, in order, each saved with its new session
   * state; durable when it returns. Call inside the session lock.
   *
   * @param peer The recipient.
   * @param entries Their outbox entries.
   * @param options For `SessionManager.encrypt`.
   * @param check Refuses a sealing (throws) before it is saved.
   */
  async reseal(
    peer: SessionPeer,
    entries: readonly OutboxEntry[],
    options: Parameters<SessionManager["encrypt"]>[3],
    check: (sealed: SessionResult) => void = () => {},
  ): Promise<void> {
    const sessions = this.#ctx.sessions!;
    // The queue's new envelopes and states share one commit and flush.
    const deferred: DeferredCommits = {};
    try {
      for (const entry of entries) {
        const message = this.#storage.messages.get(entry.messageSeq);
        if (message === undefined) continue;
        const sealed = await sessions.encrypt(peer, message.contentType, message.body, {
          ...options,
          id: message.id,
          timestamp: message.sentAt,
        });
        check(sealed);
        const { envelope, hash } = await this.seal(peer, sealed, message.id, message.sentAt);
        this.#storage.transaction(() => {
          sealed.save();
          this.#storage.outbox.replaceEnvelope(entry.messageSeq, envelope, hash, this.#ctx.clock());
          if (sealed.protection !== message.protection) {
            this.#storage.messages.setProtection(entry.messageSeq, sealed.protection);
          }
        }, { durable: false, deferred });
      }
    } finally {
      // What was saved is flushed before anything is sent, even if one failed.
      this.#storage.sync(deferred);
    }
  }

  /** Notes an envelope that opens a session (`SessionResult.opens`). */
  #opens(sealed: SessionResult, hash: Uint8Array): void {
    if (sealed.opens === undefined) return;
    if (this.#opening.size >= MAX_OPENING) this.#opening.clear();
    this.#opening.set(toHex(hash), sealed.opens);
  }

  /**
   * Takes the acknowledgements of envelopes that opened sessions as the
   * recipient's answer: the next messages go as session frames.
   */
  answered(recipient: string, hashes: readonly Uint8Array[]): void {
    const sessions = this.#ctx.sessions;
    const opened: Uint8Array[] = [];
    for (const hash of hashes) {
      const key = toHex(hash);
      const sessionId = this.#opening.get(key);
      if (sessionId === undefined) continue;
      this.#opening.delete(key);
      opened.push(sessionId);
    }
    if (sessions === undefined || opened.length === 0) return;
    this.#ctx.track(sessions.lock(() =>
      Promise.resolve(this.#storage.transaction(() => {
        for (const sessionId of opened) sessions.acknowledged(recipient, sessionId);
      }, { durable: false }))
    ));
  }

  /**
   * Seals a message's envelope (a session frame needs none) and hashes it;
   * the session state, if any, is sealed for storage meanwhile
   * (`sealed.ready`). An envelope that opens a session is noted, for
   * {@linkcode Sealer.answered}.
   */
  async seal(
    recipient: MessageRecipient,
    sealed: SessionResult,
    id: Uint8Array,
    timestamp: number,
  ): Promise<{ envelope: Uint8Array; hash: Uint8Array }> {
    if (sealed.frame !== undefined) {
      const [hash] = await Promise.all([envelopeHash(sealed.frame), sealed.ready]);
      return { envelope: sealed.frame, hash };
    }
    const [envelope] = await Promise.all([
      sealEnvelope(this.#ctx.identity, {
        signingPublicKey: decodeUserId(recipient.userId),
        encryptionPublicKey: recipient.encryptionPublicKey,
      }, {
        body: sealed.body,
        contentType: sealed.contentType,
        id,
        timestamp,
      }),
      sealed.ready,
    ]);
    const hash = await envelopeHash(envelope);
    this.#opens(sealed, hash);
    return { envelope, hash };
  }
}
