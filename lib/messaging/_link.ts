/**
 * The two small pieces of the outbox's delivery loop: a conversation's
 * outgoing stream ({@linkcode Link}), kept between deliveries for
 * {@linkcode LINK_IDLE_MS} with its replies read ahead, and the wake-up call
 * that hands a running delivery the messages sent meanwhile
 * ({@linkcode Wake}).
 *
 * @example
 * ```ts ignore
 * const link = new Link(stream, context.streams);
 * link.idle(LINK_IDLE_MS, () => links.delete(recipient));
 * ```
 *
 * @module
 */
import { LINK_IDLE_MS, SEND_WINDOW } from "./constants.ts";
import type { MessageStream } from "./mailbox.ts";
import { FrameQueue } from "./wire.ts";

/** A wake-up call for a running delivery, which remembers one that came early. */
export class Wake {
  requested = false;
  #resolve: (() => void) | undefined;

  /** Wakes the delivery, or tells it to look again when it next waits. */
  wake(): void {
    this.requested = true;
    const resolve = this.#resolve;
    this.#resolve = undefined;
    resolve?.();
  }

  /**
   * Resolves at the next `wake()`, at once if one came since `requested`
   * was cleared.
   *
   * @returns When woken.
   */
  wait(): Promise<void> {
    if (this.requested) return Promise.resolve();
    return new Promise((resolve) => (this.#resolve = resolve));
  }
}

/** A conversation's outgoing stream, with its replies read ahead. */
export class Link {
  readonly stream: MessageStream;
  readonly replies: FrameQueue;
  /** Envelopes acknowledged on this stream. */
  acknowledged = 0;
  readonly #streams: Set<MessageStream>;
  #timer: ReturnType<typeof setTimeout> | undefined;

  /**
   * @param stream The conversation's stream.
   * @param streams The service's open streams, which this one joins until disposed.
   */
  constructor(stream: MessageStream, streams: Set<MessageStream>) {
    this.stream = stream;
    this.replies = new FrameQueue(stream, { capacity: SEND_WINDOW });
    this.#streams = streams;
    streams.add(stream);
  }

  /** Closes the stream after `ms` unless taken back with `keep()` first. */
  idle(ms: number, onClose: () => void): void {
    this.keep();
    const timer = setTimeout(() => {
      onClose();
      this.dispose();
    }, ms);
    // An idle stream must not keep a one-shot process alive.
    Deno.unrefTimer(timer);
    this.#timer = timer;
  }

  /** Takes an idle stream back for more messages: its timer stops. */
  keep(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** Closes the stream, or resets it if `error` is given. */
  dispose(error?: unknown): void {
    this.keep();
    this.#streams.delete(this.stream);
    if (error === undefined) {
      this.stream.close({ signal: AbortSignal.timeout(LINK_IDLE_MS) }).catch(() => {});
    } else {
      this.stream.abort(error instanceof Error ? error : new Error(String(error)));
    }
  }
}
