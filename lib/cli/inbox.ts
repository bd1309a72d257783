/**
 * `dim inbox`: goes online, fetches the network mailbox, shows the
 * messages received since the last time they were shown, and exits.
 *
 * @module
 */
import type { ChatMessage } from "../profile/chat_message.ts";
import { type Context, isOffline } from "./context.ts";
import type { Messenger } from "../messenger/messenger.ts";
import { deadline } from "../platform/signals.ts";
import { keyChangedWarning, messageLine } from "./format.ts";
import { lastShownSeq, markShown } from "./marks.ts";
import { viaRunningDim } from "./remote.ts";
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
  return await viaRunningDim(
    ctx,
    async (dim) => {
      const found = await withSpinner(
        ctx.io,
        "checking your mailbox in the network…",
        () => dim.inbox({ all: options.all ?? false, timeout: ctx.timeoutMs / 1000 }),
      );
      if (found.offline) offlineNote(ctx);
      return show(ctx, found, await dim.listContacts());
    },
    async () => {
      // Offline, the messages already here are still shown, and the mailbox is not checked.
      const messenger = await ctx.openMessenger({ allowOffline: true });
      const offline = isOffline(messenger);
      try {
        const fetched = offline ? 0 : await fetchMailbox(ctx, messenger);
        if (offline) offlineNote(ctx);
        // The messenger's profile is unlocked: message bodies are sealed at rest.
        const profile = messenger.profile;
        const messages = profile.incomingSince(options.all ? 0 : lastShownSeq(profile));
        const last = messages.at(-1);
        if (last !== undefined) markShown(profile, last.seq);
        return show(ctx, { fetched, offline, messages }, profile.contacts());
      } finally {
        await messenger.stop();
      }
    },
  );
}

function offlineNote(ctx: Context): void {
  ctx.note(
    "offline: no peer answered, so your mailbox in the network was not checked; " +
      "showing the messages already on this device",
  );
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

// Prints what was found (already marked shown).
function show(
  ctx: Context,
  found: { readonly fetched: number; readonly offline: boolean; readonly messages: ChatMessage[] },
  contacts: readonly { readonly name: string; readonly keyChanged: boolean }[],
): number {
  const { messages } = found;
  const senders = new Set(messages.map((m) => m.contact));
  for (const c of contacts) {
    if (c.keyChanged && senders.has(c.name)) ctx.note(keyChangedWarning(c.name));
  }
  if (ctx.json) {
    ctx.outJson({ fetched: found.fetched, offline: found.offline, messages });
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
