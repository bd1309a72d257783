/**
 * Makes js-libp2p let a Deno process exit once its node has stopped.
 * Importing this module changes nothing: {@linkcode applyDenoCompat}
 * changes two globals, and `createDhtNode` calls it before it makes the
 * first node (libp2p only touches them once a node exists).
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
 * missing or not yet replaced), so calling it elsewhere does nothing.
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
// On a tracked signal: the set of its abort listeners.
const LISTENERS = Symbol.for("dim.denoCompat.listeners");
const SOURCES = Symbol.for("dim.denoCompat.sources");
const ON_ABORT = Symbol("onabort");

type Listener = EventListenerOrEventListenerObject | null;
type Tracked = AbortSignal & { [LISTENERS]?: Set<unknown> };

function listenersOf(signal: AbortSignal): Set<unknown> | undefined {
  return (signal as Tracked)[LISTENERS];
}

function update(signal: AbortSignal, listeners: Set<unknown>): void {
  if (listeners.size > 0 && !signal.aborted) listened.add(signal);
  else listened.delete(signal);
}

// Makes every tracked signal stay reachable while it has abort listeners
// and has not fired, as Node.js does for timeout signals. One wrapper on
// the prototype, not closures on each signal: libp2p makes thousands.
function patchListenerTracking(): void {
  const proto = AbortSignal.prototype as unknown as Record<PropertyKey, unknown>;
  if (proto[LISTENERS] === true) return;
  const add = AbortSignal.prototype.addEventListener;
  const remove = AbortSignal.prototype.removeEventListener;
  const onabort = Object.getOwnPropertyDescriptor(AbortSignal.prototype, "onabort");
  Object.defineProperties(AbortSignal.prototype, {
    [LISTENERS]: { value: true },
    addEventListener: {
      configurable: true,
      writable: true,
      value: function (this: AbortSignal, type: string, listener: Listener, options?: unknown) {
        add.call(
          this,
          type,
          listener as EventListenerOrEventListenerObject,
          options as AddEventListenerOptions,
        );
        const listeners = listenersOf(this);
        if (listeners instanceof Set && type === "abort" && listener !== null) {
          listeners.add(listener);
          update(this, listeners);
        }
      },
    },
    removeEventListener: {
      configurable: true,
      writable: true,
      value: function (this: AbortSignal, type: string, listener: Listener, options?: unknown) {
        remove.call(
          this,
          type,
          listener as EventListenerOrEventListenerObject,
          options as EventListenerOptions,
        );
        const listeners = listenersOf(this);
        if (listeners instanceof Set && type === "abort" && listeners.delete(listener)) {
          update(this, listeners);
        }
      },
    },
    ...(onabort?.set === undefined ? {} : {
      onabort: {
        configurable: true,
        get(this: AbortSignal): unknown {
          return onabort.get?.call(this);
        },
        set(this: AbortSignal, handler: unknown): void {
          onabort.set!.call(this, handler);
          const listeners = listenersOf(this);
          if (!(listeners instanceof Set)) return;
          if (typeof handler === "function") listeners.add(ON_ABORT);
          else listeners.delete(ON_ABORT);
          update(this, listeners);
        },
      },
    }),
  });
}

function trackListeners(signal: AbortSignal): void {
  Object.defineProperty(signal, LISTENERS, { value: new Set<unknown>() });
}

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
        listened.delete(target);
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
      const tracked = sources.filter((source) => listenersOf(source) instanceof Set);
      if (tracked.length > 0 && !composite.aborted) {
        Object.defineProperty(composite, SOURCES, { value: tracked });
        trackListeners(composite);
        composite.addEventListener("abort", () => listened.delete(composite), { once: true });
        // That listener is ours: it must not keep the composite reachable.
        listenersOf(composite)!.clear();
        listened.delete(composite);
      }
      return composite;
    },
  });
  Object.defineProperty(AbortSignal, PATCHED, { value: true });
}

let applied = false;

/**
 * Applies both fixes, process-wide: gives `BroadcastChannel.prototype` an
 * `unref()`, and replaces `AbortSignal.timeout`, `AbortSignal.any` and the
 * listener methods of `AbortSignal.prototype` (see the module
 * documentation). Calling it again does nothing; outside Deno it does
 * nothing.
 *
 * @example
 * ```ts
 * import { applyDenoCompat } from "./_deno_compat.ts";
 *
 * applyDenoCompat();
 * applyDenoCompat();
 * ```
 */
export function applyDenoCompat(): void {
  if (applied) return;
  applied = true;
  patchBroadcastChannelUnref();
  if (denoTimers() !== undefined) patchListenerTracking();
  patchAbortSignalTimeout();
}
