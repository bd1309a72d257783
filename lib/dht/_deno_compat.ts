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
 *    Also as in Node.js, a timeout signal that has no `abort` listener and
 *    that nothing refers to any more is garbage collected, and its timer
 *    cleared, before it fires. Deno's own keeps every timeout signal (and
 *    what its listeners hold) until it fires: libp2p makes a 10 s timeout
 *    signal for every stream and DHT message, so a busy node held tens of
 *    thousands of them, a quarter of its heap. A signal with listeners, or
 *    a composite made by `AbortSignal.any` from one, still fires.
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

// Timeout signals (and composites of them) that have `abort` listeners:
// held here so that they fire even if nothing else refers to them.
const listened = new Set<AbortSignal>();
const TRACKED = Symbol("dim.denoCompat.tracked");
const SOURCES = Symbol("dim.denoCompat.sources");

type Listener = EventListenerOrEventListenerObject | null;

// Makes `signal` stay reachable while it has abort listeners and has not
// fired, as Node.js does for timeout signals.
function trackListeners(signal: AbortSignal): void {
  const listeners = new Set<unknown>();
  const add = signal.addEventListener;
  const remove = signal.removeEventListener;
  const update = (): void => {
    if (listeners.size > 0 && !signal.aborted) listened.add(signal);
    else listened.delete(signal);
  };
  const proto = Object.getOwnPropertyDescriptor(AbortSignal.prototype, "onabort");
  Object.defineProperties(signal, {
    [TRACKED]: { value: true },
    addEventListener: {
      configurable: true,
      writable: true,
      value: function (type: string, listener: Listener, options?: unknown): void {
        add.call(
          this,
          type,
          listener as EventListenerOrEventListenerObject,
          options as AddEventListenerOptions,
        );
        if (type === "abort" && listener !== null) {
          listeners.add(listener);
          update();
        }
      },
    },
    removeEventListener: {
      configurable: true,
      writable: true,
      value: function (type: string, listener: Listener, options?: unknown): void {
        remove.call(
          this,
          type,
          listener as EventListenerOrEventListenerObject,
          options as EventListenerOptions,
        );
        if (type === "abort" && listeners.delete(listener)) update();
      },
    },
    onabort: {
      configurable: true,
      get(): unknown {
        return proto?.get?.call(signal);
      },
      set(handler: unknown): void {
        proto?.set?.call(signal, handler);
        if (typeof handler === "function") listeners.add(ON_ABORT);
        else listeners.delete(ON_ABORT);
        update();
      },
    },
  });
  add.call(signal, "abort", () => listened.delete(signal), { once: true });
}

const ON_ABORT = Symbol("onabort");

function patchAbortSignalTimeout(): void {
  const timers = denoTimers();
  if (timers === undefined) return;
  const holder = AbortSignal as unknown as Record<PropertyKey, unknown>;
  if (holder[PATCHED] === true) return;
  // A timer whose signal was collected is cleared.
  const finalizer = new FinalizationRegistry<number>((id) => clearTimeout(id));
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
      const signal = controller.signal;
      // The signal keeps its controller alive; the timer holds the signal
      // only weakly, so a signal nobody listens to or refers to any more is
      // collected, with its timer, instead of living until it fires.
      Object.defineProperty(signal, SOURCES, { value: controller });
      const ref = new WeakRef(signal);
      const id = setTimeout(() => {
        const target = ref.deref();
        if (target === undefined) return;
        (target as unknown as Record<symbol, AbortController>)[SOURCES]!.abort(
          new DOMException("Signal timed out.", "TimeoutError"),
        );
      }, delay);
      // Deno's global setTimeout returns a number (Node typings say otherwise).
      timers.unrefTimer(id as unknown as number);
      finalizer.register(signal, id as unknown as number);
      trackListeners(signal);
      return signal;
    },
  });
  // A composite of a timeout signal refers to it strongly, and is itself
  // kept while it has listeners, so `AbortSignal.any([…, timeout])` fires.
  const any = AbortSignal.any.bind(AbortSignal);
  Object.defineProperty(AbortSignal, "any", {
    configurable: true,
    writable: true,
    enumerable: false,
    value: function (signals: Iterable<AbortSignal>): AbortSignal {
      const sources = [...signals];
      const composite = any(sources);
      const tracked = sources.filter((source) =>
        (source as unknown as Record<symbol, unknown>)[TRACKED] === true
      );
      if (tracked.length > 0 && !composite.aborted) {
        Object.defineProperty(composite, SOURCES, { value: tracked });
        trackListeners(composite);
      }
      return composite;
    },
  });
  Object.defineProperty(AbortSignal, PATCHED, { value: true });
}

patchBroadcastChannelUnref();
patchAbortSignalTimeout();
