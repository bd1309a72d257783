/**
 * The raw-stream baseline of the chat benches: 1 KiB frames on a bare
 * libp2p stream, each answered by a 4-byte acknowledgement. The responder
 * side is {@linkcode echoFrames} (a protocol handler), the sender side a
 * {@linkcode RawLink}; {@linkcode Acks} counts what comes back.
 *
 * @module
 */
import type { DhtStream } from "../lib/dht/types.ts";

/** The protocol of the raw baseline. */
export const ECHO_PROTOCOL = "/dim-bench/ack/1.0.0";

/** One frame: a 4-byte length, then 1 KiB. */
export const FRAME: Uint8Array<ArrayBuffer> = new Uint8Array(4 + 1024);
new DataView(FRAME.buffer).setUint32(0, 1024);

/** What an {@linkcode Acks} reads: a stream of byte chunks. */
export type AckSource = AsyncIterable<Uint8Array | { subarray(): Uint8Array }>;

/** Counts the acknowledgements arriving on a stream. */
export class Acks {
  #bytes = 0;
  #waiting: { count: number; resolve: () => void } | undefined;

  /**
   * Starts reading `stream` until it ends or is reset.
   *
   * @param stream The stream the acknowledgements come on.
   */
  constructor(stream: AckSource) {
    (async () => {
      for await (const chunk of stream) {
        this.#bytes += chunk instanceof Uint8Array ? chunk.length : chunk.subarray().length;
        if (this.#waiting !== undefined && this.#bytes >= this.#waiting.count * 4) {
          this.#waiting.resolve();
          this.#waiting = undefined;
        }
      }
    })().catch(() => {
      // The stream is reset when the bench ends or replaces the connection.
    });
  }

  /**
   * Resolves once `count` acknowledgements arrived in all.
   *
   * @param count How many.
   * @returns When they have.
   */
  until(count: number): Promise<void> {
    if (this.#bytes >= count * 4) return Promise.resolve();
    return new Promise((resolve) => (this.#waiting = { count, resolve }));
  }
}

/**
 * The responder of {@linkcode ECHO_PROTOCOL}: answers every whole frame that
 * arrives with a 4-byte acknowledgement, until the stream ends.
 *
 * @param stream The incoming stream.
 */
export async function echoFrames(stream: DhtStream): Promise<void> {
  let pending = 0;
  for await (const chunk of stream) {
    pending += chunk.subarray().length;
    while (pending >= FRAME.length) {
      pending -= FRAME.length;
      stream.send(new Uint8Array(4));
    }
  }
  await stream.close();
}

/** The sender's side of the raw baseline: frames out, acknowledgements counted. */
export class RawLink {
  readonly #stream: DhtStream;
  readonly #acks: Acks;
  #sent = 0;

  /**
   * @param stream An open {@linkcode ECHO_PROTOCOL} stream.
   */
  constructor(stream: DhtStream) {
    this.#stream = stream;
    this.#acks = new Acks(stream);
  }

  /**
   * Sends `count` frames back to back (waiting for the stream to drain when
   * its buffer is full), then waits until every one is acknowledged.
   *
   * @param count How many frames.
   * @returns When the last acknowledgement arrived.
   */
  async frames(count: number): Promise<void> {
    for (let i = 0; i < count; i++) {
      if (!this.#stream.send(FRAME)) await this.#stream.onDrain();
    }
    this.#sent += count;
    await this.#acks.until(this.#sent);
  }

  /** Resets the stream. */
  abort(): void {
    this.#stream.abort(new Error("bench over"));
  }
}
