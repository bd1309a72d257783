/**
 * A reader for libp2p 3 streams that always ends.
 *
 * The async iterator of `@libp2p/utils` 7.4.1 (`AbstractMessageStream`)
 * ends on a `close` or `remoteCloseWrite` event only. If the remote closes
 * its writable end while data is still buffered and before the local side
 * starts iterating, `remoteCloseWrite` has already fired, the buffered data
 * is then delivered and the stream emits `end` — which that iterator does
 * not listen for — so a reader whose own writable end is still open waits
 * for ever. Seen with a handler that sends a reply and closes, read by a
 * dialler that had not closed its side yet. Yamux can also handle the FIN
 * before the data of the same frame, so `end` fires while the data is still
 * to come, and once that data is read the readable end closes with no
 * event at all.
 *
 * {@linkcode readStream} also ends on `end`, and when it finds the readable
 * end closed after delivering a chunk; `withReliableIteration`
 * (`_libp2p_internals.ts`) installs it as the iterator of a stream DIM
 * hands to its callers.
 *
 * It also holds the sender back when the reader falls behind: past
 * {@linkcode READ_AHEAD_BYTES} received and not yet read, it pauses the
 * stream, so the muxer stops granting the sender window (yamux sends its
 * window updates as data arrives, read or not), and resumes it once the
 * reader has caught up. Without the pause, whatever a peer sends piles up
 * here, however slowly the protocol above reads.
 *
 * @module
 */
import type { Stream } from "@libp2p/interface";

/**
 * Bytes received and not yet read past which a stream is paused: 256 KiB,
 * yamux's initial stream window, so a sender that keeps writing is held to
 * about twice that before the reader catches up.
 */
export const READ_AHEAD_BYTES = 256 * 1024;

/** A chunk as libp2p streams deliver it. */
export type StreamChunk = Stream extends AsyncIterable<infer T> ? T : never;

interface DataEvent extends Event {
  readonly data: StreamChunk;
}

interface CloseEvent extends Event {
  readonly error?: Error;
}

/**
 * Iterates the data a stream receives until the remote closes its writable
 * end, the stream closes, or it fails (then it throws the stream's error).
 *
 * @param stream The stream.
 * @returns The chunks, in order.
 */
export async function* readStream(stream: Stream): AsyncGenerator<StreamChunk, void, undefined> {
  if (stream.readStatus !== "readable" && stream.readStatus !== "paused") return;
  const queue: StreamChunk[] = [];
  let queued = 0;
  let paused = false;
  let ended = false;
  let failure: Error | undefined;
  let wake: (() => void) | undefined;
  const notify = (): void => {
    const resolve = wake;
    wake = undefined;
    resolve?.();
  };
  const onMessage = (event: Event): void => {
    const chunk = (event as DataEvent).data;
    queue.push(chunk);
    queued += chunk.byteLength;
    if (!paused && queued > READ_AHEAD_BYTES && stream.readStatus === "readable") {
      paused = true;
      stream.pause();
    }
    notify();
  };
  const onClose = (event: Event): void => {
    ended = true;
    failure = (event as CloseEvent).error;
    notify();
  };
  const onEnd = (): void => {
    ended = true;
    notify();
  };
  const events = stream as unknown as EventTarget;
  // Adding the `message` listener makes the stream deliver its buffer.
  events.addEventListener("message", onMessage);
  events.addEventListener("close", onClose);
  events.addEventListener("remoteCloseWrite", onEnd);
  events.addEventListener("end", onEnd);
  try {
    while (true) {
      const chunk = queue.shift();
      if (chunk !== undefined) {
        queued -= chunk.byteLength;
        // Resumed once half the limit is read: not after every chunk.
        if (paused && queued <= READ_AHEAD_BYTES / 2) {
          paused = false;
          if (stream.readStatus === "paused") stream.resume();
        }
        yield chunk;
        continue;
      }
      if (failure !== undefined) throw failure;
      // The stream may close its readable end without an event of its own.
      if (ended || readClosed(stream)) return;
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
    }
  } finally {
    events.removeEventListener("message", onMessage);
    events.removeEventListener("close", onClose);
    events.removeEventListener("remoteCloseWrite", onEnd);
    events.removeEventListener("end", onEnd);
  }
}

// A function, so the compiler does not narrow the status from an earlier check.
function readClosed(stream: Stream): boolean {
  return stream.readStatus === "closed";
}
