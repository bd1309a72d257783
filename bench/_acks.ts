/**
 * Counts the 4-byte acknowledgements a raw baseline's echo handler sends
 * back on a stream, so a bench can wait for the first `count` of them.
 *
 * @module
 */

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
