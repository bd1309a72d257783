/**
 * Makes js-libp2p let a Deno process exit once its node has stopped.
 * Imported for its side effect, before anything from libp2p.
 *
 * Two Node.js behaviours that libp2p relies on differ in Deno (2.9):
 *
 * 1. `mortice`, the peer store's lock, opens a process-wide
 *    `BroadcastChannel` and calls `channel.unref?.()`. Deno's
 *    `BroadcastChannel` has no `unref`, so the channel holds the event loop
 *    for ever and the process never exits. Deno keeps an internal method on
 *    the prototype, under a symbol whose description is
 *    `refBroadcastChannel`; `unref()` is defined here as that method called
 *    with `false`.
 * 2. `AbortSignal.timeout()` never keeps a Node.js process alive, but in Deno
 *    its timer is ref'd while the signal has `abort` listeners. kad-dht's
 *    RPC handler leaves a listener on a 10 s timeout signal after each
 *    incoming stream ends, so a process that served DHT requests lingered
 *    up to 10 s after `stop()`. `AbortSignal.timeout` is replaced here by
 *    one whose timer is unref'd, as in Node.js. Programs that rely on a
 *    timeout signal alone to keep Deno running must hold a timer or other
 *    work of their own.
 *
 * Each fix applies only where it is needed (Deno, and only if the method is
 * missing or not yet replaced), so importing this module elsewhere does
 * nothing.
 *
 * @module
 */

const PATCHED = Symbol.for("dim.denoCompat.abortSignalTimeout");

interface DenoTimers {
  unrefTimer(id: number): void;
}

function denoTimers(): DenoTimers | undefined {
  const deno = (globalThis as { Deno?: { unrefTimer?: unknown } }).Deno;
  return typeof deno?.unrefTimer === "function" ? deno as DenoTimers : undefined;
}

function patchBroadcastChannelUnref(): void {
  if (typeof BroadcastChannel !== "function") return;
  const proto = BroadcastChannel.prototype as unknown as Record<PropertyKey, unknown>;
  if (typeof proto.unref === "function") return;
  const refSymbol = Object.getOwnPropertySymbols(proto).find((symbol) =>
    symbol.description === "refBroadcastChannel"
  );
  if (refSymbol === undefined) return;
  const ref = proto[refSymbol];
  if (typeof ref !== "function") return;
  Object.defineProperty(proto, "unref", {
    configurable: true,
    writable: true,
    enumerable: false,
    value: function unref(this: BroadcastChannel): void {
      ref.call(this, false);
    },
  });
}

function patchAbortSignalTimeout(): void {
  const timers = denoTimers();
  if (timers === undefined) return;
  const holder = AbortSignal as unknown as Record<PropertyKey, unknown>;
  if (holder[PATCHED] === true) return;
  Object.defineProperty(AbortSignal, "timeout", {
    configurable: true,
    writable: true,
    enumerable: false,
    value: function timeout(milliseconds: number): AbortSignal {
      const delay = Number(milliseconds);
      if (!Number.isFinite(delay) || delay < 0) {
        throw new TypeError(`Cannot create a timeout signal: ${milliseconds} is not a valid delay`);
      }
      const controller = new AbortController();
      const id = setTimeout(() => {
        controller.abort(new DOMException("Signal timed out.", "TimeoutError"));
      }, delay);
      // Deno's global setTimeout returns a number (Node typings say otherwise).
      timers.unrefTimer(id as unknown as number);
      return controller.signal;
    },
  });
  Object.defineProperty(AbortSignal, PATCHED, { value: true });
}

patchBroadcastChannelUnref();
patchAbortSignalTimeout();
