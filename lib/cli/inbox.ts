/**
 * `dim inbox`: goes online, fetches the network mailbox, shows the
 * messages received since the last time they were shown, and exits.
 *
 * @module
 */
import type { ChatMessage } from "../profile/chat_message.ts";
import type { Profile } from "../profile/profile.ts";
import { type Context, isOffline } from "./context.ts";
import type { Messenger } from "../messenger/messenger.ts";
import { deadline } from "../platform/signals.ts";
import { keyChangedWarning, messageLine } from "./format.ts";
import { lastShownSeq, markShown } from "./marks.ts";
import { withSpinner } from "./spinner.ts";

/** Options of {@linkcode inboxCommand}. */
export interface InboxOptions {
  /** `--all`: show every received message again, not only new ones. */
  readonly all?: boolean | undefined;
}

/**
 * Fetches the mailbox and prints new incoming messages, oldest first, then
 * remembers that they were shown (in the database, so `dim chat` and the
 * next `dim inbox` agree). With no peer answering, it shows the messages
 * already on this device and says the network mailbox was not checked
 * (`"offline": true` with `--json`).
 *
 * @param ctx The command's context.
 * @param options `all` to show everything again.
 * @returns The exit code.
 * @throws {CliError} If there is no identity.
 * @example
 * ```ts ignore
 * import { main } from "./main.ts";
 *
 * // Needs a reachable network.
 * Deno.exitCode = await main(["inbox", "--json"]);
 * ```
 */
export async function inboxCommand(ctx: Context, options: InboxOptions = {}): Promise<number> {
  // Offline, the messages already here are still shown, and the mailbox is not checked.
  const messenger = await ctx.openMessenger({ allowOffline: true });
  const offline = isOffline(messenger);
  try {
    const fetched = offline ? 0 : await fetchMailbox(ctx, messenger);
    if (offline) {
      ctx.note(
        "offline: no peer answered, so your mailbox in the network was not checked; " +
          "showing the messages already on this device",
      );
    }
    // The messenger's profile is unlocked: message bodies are sealed at rest.
    return show(ctx, messenger.profile, options, { fetched, offline });
  } finally {
    await messenger.stop();
  }
}

// Fetches the network mailbox, sends what was queued, and says how many arrived.
async function fetchMailbox(ctx: Context, messenger: Messenger): Promise<number> {
  using d = deadline(ctx.timeoutMs);
  const aborted = new Promise<number>((resolve) =>
    d.signal.addEventListener("abort", () => resolve(0), { once: true })
  );
  const fetched = await withSpinner(
    ctx.io,
    "checking your mailbox in the network…",
    () =>
      Promise.race([
        // Out of time, what arrived so far is shown.
        messenger.fetchMailbox({ signal: d.signal }).catch((err) => {
          if (d.signal.aborted) return 0;
          throw err;
        }),
        aborted,
      ]),
  );
  await ctx.sendQueued(messenger);
  return fetched;
}

function show(
  ctx: Context,
  profile: Profile,
  options: InboxOptions,
  found: { readonly fetched: number; readonly offline: boolean },
): number {
  const since = options.all ? 0 : lastShownSeq(profile);
  const messages: ChatMessage[] = profile.incomingSince(since);
  const last = messages.at(-1);
  if (last !== undefined) markShown(profile, last.seq);
  const senders = new Set(messages.map((m) => m.contact));
  for (const c of profile.contacts()) {
    if (c.keyChanged && senders.has(c.name)) ctx.note(keyChangedWarning(c.name));
  }
  if (ctx.json) {
    ctx.outJson({ ...found, messages });
    return 0;
  }
  if (messages.length === 0) {
    ctx.out("No new messages.");
    return 0;
  }
  const now = Date.now();
  for (const m of messages) ctx.out(messageLine(m, now));
  return 0;
}
