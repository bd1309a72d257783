/**
 * What the parts of the messaging service (outbox, inbox, mailbox client)
 * share: the identity, the network, the sessions, the resolved tunables,
 * and the service's lifetime: whether it runs, the deadlines that all abort
 * when it stops, the streams it resets then, and the background tasks it
 * waits for. The service makes one and hands it to each part.
 *
 * @example
 * ```ts ignore
 * const context = new ServiceContext(deps, options, (detail) => service.dispatch(detail));
 * context.running = true;
 * context.track(outbox.flush());
 * ```
 *
 * @module
 */
import type { Identity } from "../crypto/identity.ts";
import {
  DEFAULT_ATTEMPT_TIMEOUT_MS,
  DEFAULT_MAILBOX_POLL_MS,
  DEFAULT_MAILBOX_RECHECK_MS,
  DEFAULT_MAILBOX_REPLICAS,
  DEFAULT_MAILBOX_TTL_MS,
  DEFAULT_MESSAGE_BURST,
  DEFAULT_MESSAGES_PER_SECOND,
  DEFAULT_OUTBOX_INTERVAL_MS,
  DEFAULT_RETRY_BASE_MS,
  DEFAULT_RETRY_MAX_MS,
  DEFAULT_STREAM_IDLE_TIMEOUT_MS,
} from "./constants.ts";
import type { MessageStream } from "./mailbox.ts";
import type { SessionManager } from "./sessions.ts";
import type {
  MessagingEventDetail,
  MessagingOptions,
  MessagingTransport,
  RecipientResolver,
  WrapOpener,
} from "./types.ts";
import { Deadlines } from "../platform/signals.ts";

/** The tunables of {@linkcode MessagingOptions} that have a default, resolved. */
export type ResolvedOptions = Required<
  Omit<MessagingOptions, "mailboxLimits" | "inboxLimits" | "clock" | "onPeerError">
>;

/** What the service's parts share. */
export class ServiceContext {
  /** This user's identity. */
  readonly identity: Identity;
  /** The network. */
  readonly transport: MessagingTransport;
  /** Finds a recipient's node. */
  readonly resolve: RecipientResolver;
  /** Forward-secret sessions; without them every message uses the static envelope. */
  readonly sessions: SessionManager | undefined;
  /** Recognizes wraps before envelopes are opened (see {@linkcode WrapOpener}). */
  readonly openWrap: WrapOpener;
  /**
   * The pinned encryption key of a sender who is not a contact but whose
   * key is known otherwise (a group member's, from the signed membership):
   * sessions check it as a contact's, and its first ones are not a stranger's.
   */
  readonly knownKey: (userId: string) => Uint8Array | undefined;
  /** Clock in ms. */
  readonly clock: () => number;
  /** Receives errors that concern one peer. */
  readonly onPeerError: (error: unknown) => void;
  /** Reports a message, a delivery or a stored copy. */
  readonly emit: (detail: MessagingEventDetail) => void;
  /** The tunables. */
  readonly options: ResolvedOptions;
  /** Whether the service runs: set by the service's `start` and `stop`. */
  running = false;
  /** Every call's deadline; all abort when the service stops. */
  readonly deadlines: Deadlines = new Deadlines();
  /** The open streams, reset when the service stops. */
  readonly streams: Set<MessageStream> = new Set();
  readonly #tasks = new Set<Promise<unknown>>();

  /**
   * @param deps The identity, the network, the resolver and the sessions.
   * @param options The service's tunables.
   * @param emit Dispatches the service's events.
   */
  constructor(
    deps: {
      readonly identity: Identity;
      readonly transport: MessagingTransport;
      readonly resolve: RecipientResolver;
      readonly sessions?: SessionManager | undefined;
      readonly openWrap?: WrapOpener | undefined;
      readonly knownKey?: ((userId: string) => Uint8Array | undefined) | undefined;
    },
    options: MessagingOptions,
    emit: (detail: MessagingEventDetail) => void,
  ) {
    this.identity = deps.identity;
    this.transport = deps.transport;
    this.resolve = deps.resolve;
    this.sessions = deps.sessions;
    this.openWrap = deps.openWrap ?? (() => undefined);
    this.knownKey = deps.knownKey ?? (() => undefined);
    this.clock = options.clock ?? Date.now;
    this.onPeerError = options.onPeerError ?? (() => {});
    this.emit = emit;
    this.options = {
      attemptTimeoutMs: options.attemptTimeoutMs ?? DEFAULT_ATTEMPT_TIMEOUT_MS,
      retryBaseMs: options.retryBaseMs ?? DEFAULT_RETRY_BASE_MS,
      retryMaxMs: options.retryMaxMs ?? DEFAULT_RETRY_MAX_MS,
      outboxIntervalMs: options.outboxIntervalMs ?? DEFAULT_OUTBOX_INTERVAL_MS,
      mailboxPollMs: options.mailboxPollMs ?? DEFAULT_MAILBOX_POLL_MS,
      mailboxReplicas: options.mailboxReplicas ?? DEFAULT_MAILBOX_REPLICAS,
      mailboxTtlMs: options.mailboxTtlMs ?? DEFAULT_MAILBOX_TTL_MS,
      mailboxRecheckMs: options.mailboxRecheckMs ?? DEFAULT_MAILBOX_RECHECK_MS,
      rateBurst: options.rateBurst ?? DEFAULT_MESSAGE_BURST,
      ratePerSecond: options.ratePerSecond ?? DEFAULT_MESSAGES_PER_SECOND,
      idleTimeoutMs: options.idleTimeoutMs ?? DEFAULT_STREAM_IDLE_TIMEOUT_MS,
    };
  }

  /**
   * A signal that aborts after `ms` or when the service stops.
   *
   * @param ms The time allowed.
   * @returns The signal.
   */
  signal(ms: number): AbortSignal {
    return this.deadlines.signal(ms);
  }

  /**
   * Runs `fn` under a signal that aborts after `ms`, when the service
   * stops, or when the caller's signal aborts.
   *
   * @param ms The time allowed.
   * @param caller The caller's signal, if any.
   * @param fn The work.
   * @returns What `fn` returns.
   */
  within<T>(
    ms: number,
    caller: AbortSignal | undefined,
    fn: (signal: AbortSignal) => Promise<T>,
  ): Promise<T> {
    return this.deadlines.within(ms, caller, fn);
  }

  /**
   * Runs `p` in the background: its failure goes to `onPeerError`, and
   * {@linkcode ServiceContext.settled} waits for it.
   *
   * @param p The task.
   */
  track(p: Promise<unknown>): void {
    const t = p.catch((err) => this.onPeerError(err)).finally(() => this.#tasks.delete(t));
    this.#tasks.add(t);
  }

  /**
   * Resolves once every background task running now has ended.
   *
   * @returns When they have.
   */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.#tasks]);
  }
}
