/**
 * `dim send <name> <text>`: sends one message and exits once it is
 * delivered, or stored in the network for a recipient who is offline. When
 * no peer answers at all, the message is queued on this device (exit code
 * {@linkcode EXIT_QUEUED}) and goes the next time DIM connects.
 *
 * @module
 */
import { TransferRefusedError } from "../messaging/file_wire.ts";
import type { Messenger } from "../messenger/messenger.ts";
import type { ChatMessage } from "../profile/chat_message.ts";
import type { Contact } from "../profile/contacts.ts";
import { DaemonErrorCode, type DaemonSendFileResult, MAX_TIMEOUT_S } from "../daemon/protocol.ts";
import { fileResult } from "../daemon/_methods.ts";
import { type Context, EXIT_QUEUED, isOffline } from "./context.ts";
import { deadline } from "../platform/signals.ts";
import { CliError, UsageError } from "./errors.ts";
import { keyChangedWarning } from "./format.ts";
import { isDaemonError, viaRunningDim } from "./remote.ts";
import { type Spinner, startSpinner, withSpinner } from "./spinner.ts";

// A fresh look at the recipient's card, to catch a key change before sending.
const CARD_REFRESH_MS = 10_000;

/** Options of {@linkcode sendCommand}. */
export interface SendOptions {
  /**
   * `--file <path>`: send this file instead of a text: directly to a contact
   * who is online; left in the network for one who is not (up to 4 MiB);
   * else waiting on this device until both are online (exit code 3).
   */
  readonly file?: string | undefined;
}

/**
 * Sends `text` (the arguments after the name, joined by spaces) to a
 * contact, and waits up to `--timeout` for its delivery or its storage in
 * the network. Exit code 0 in both cases; 1 if neither happened in time (the
 * message then stays in the outbox, retried whenever dim runs). When no peer
 * answers at all (DIM is offline), the message is queued in the outbox
 * without waiting, and the exit code is {@linkcode EXIT_QUEUED} (3): it goes
 * on the next start of any networked dim command that reaches a peer.
 *
 * @param ctx The command's context.
 * @param args The contact's name, then the text.
 * @param options `file`: send this file instead of a text.
 * @returns The exit code.
 * @throws {UsageError} If the name or text is missing.
 * @throws {UnknownContactError} If there is no such contact.
 * @throws {CliError} If the contact's keys changed, or a file could not be sent.
 * @example
 * ```ts ignore
 * import { main } from "./main.ts";
 *
 * // Needs a reachable network and a contact named bob.
 * Deno.exitCode = await main(["send", "bob", "see you at eight"]);
 * ```
 */
export async function sendCommand(
  ctx: Context,
  args: readonly string[],
  options: SendOptions = {},
): Promise<number> {
  const [name, ...words] = args;
  if (name === undefined) throw new UsageError("missing <name> (usage: dim send <name> <text>)");
  if (options.file !== undefined) {
    if (words.length > 0) throw new UsageError("give either <text> or --file, not both");
    return await sendFileCommand(ctx, name, options.file);
  }
  const text = words.join(" ");
  if (text.trim() === "") throw new UsageError("missing <text> (usage: dim send <name> <text>)");

  // Fail fast, before unlocking and going online.
  const contact = await checkSendable(ctx, name);
  return await viaRunningDim(
    ctx,
    async (dim) => {
      const sent = await dim.send(contact.name, text).catch((err) => {
        throw isDaemonError(err, DaemonErrorCode.KeyChanged) ? keyChanged(ctx, contact.name) : err;
      });
      if (sent.offline) return queued(ctx, contact.name, sent.message);
      let final: ChatMessage | undefined;
      try {
        final = await withSpinner(
          ctx.io,
          `sending to ${contact.name}…`,
          () => dim.waitFor(sent.message.seq, { orStored: true, timeout: ctx.timeoutMs / 1000 }),
        );
      } catch (err) {
        if (isDaemonError(err, DaemonErrorCode.Offline)) {
          return queued(ctx, contact.name, sent.message);
        }
        if (!isDaemonError(err, DaemonErrorCode.Timeout)) throw err;
      }
      return sentReport(ctx, contact.name, sent.message, final);
    },
    async () => {
      const messenger = await ctx.openMessenger({ allowOffline: true });
      try {
        const contact = messenger.profile.contact(name);
        const offline = isOffline(messenger);
        if (!offline) await refreshCard(ctx, messenger, contact.id);
        if (messenger.profile.contact(name).keyChanged) throw keyChanged(ctx, contact.name);
        const sent = await messenger.send(contact.name, text);
        if (offline) return queued(ctx, contact.name, sent);
        const final = await waitSent(ctx, messenger, sent, `sending to ${contact.name}…`);
        sentReport(ctx, contact.name, sent, final);
        // Earlier messages queued for others go too before dim stops.
        await ctx.sendQueued(messenger);
        return 0;
      } finally {
        await messenger.stop();
      }
    },
  );
}

/** Says that a message is queued on this device: no peer answered. */
function queued(ctx: Context, to: string, sent: ChatMessage): number {
  // The only copy is on this device: never "stored in the network".
  if (ctx.json) {
    ctx.outJson({ to, seq: sent.seq, id: sent.id, state: "queued" });
  } else {
    ctx.out(
      `⧗ queued: no peer answered, so DIM is offline. The message to ${to} is ` +
        "kept on this device and goes the next time DIM connects (any dim command that " +
        "reaches the network sends it; do not send it again)",
    );
  }
  return EXIT_QUEUED;
}

/**
 * Says where a sent message is.
 *
 * @throws {CliError} If it was neither delivered nor stored in time (`final` undefined).
 */
function sentReport(
  ctx: Context,
  to: string,
  sent: ChatMessage,
  final: ChatMessage | undefined,
): number {
  const state = final?.state ?? "pending";
  if (ctx.json) {
    ctx.outJson({ to, seq: sent.seq, id: sent.id, state });
  } else if (state === "delivered") {
    ctx.out(`✓ delivered to ${to}`);
  } else if (state === "stored") {
    ctx.out(
      `⧗ ${to} is offline: the message is stored in the network, ` +
        "and will be delivered when they come online",
    );
  }
  if (final === undefined) {
    throw new CliError(
      `${to} could not be reached, nor the message stored in the network, within ` +
        `${ctx.timeoutMs / 1000} s; it stays in your outbox and is retried whenever dim runs ` +
        "(do not send it again)",
    );
  }
  return 0;
}

/** Fails on an unknown contact or one whose keys changed, offline. */
async function checkSendable(ctx: Context, name: string): Promise<Contact> {
  await using profile = await ctx.profile();
  const contact = profile.contact(name);
  if (contact.keyChanged) throw keyChanged(ctx, contact.name);
  return contact;
}

async function sendFileCommand(ctx: Context, name: string, path: string): Promise<number> {
  const contact = await checkSendable(ctx, name);
  try {
    const info = await Deno.stat(path);
    if (!info.isFile) throw new CliError(`not a file: ${path}`);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) throw new CliError(`no such file: ${path}`);
    throw err;
  }
  const what = `sending ${basename(path)} to ${contact.name}…`;
  let spinner: Spinner | undefined;
  const sending = () => spinner = startSpinner(ctx.io, what);
  const onProgress = (p: { bytes: number; total: number }) =>
    spinner?.update(`${what} ${progressText(p)}`);
  let sent: DaemonSendFileResult;
  // A file left in the network (contact offline, up to 4 MiB) is done for
  // this command once every part is stored there.
  let stored = true;
  try {
    sent = await viaRunningDim(
      ctx,
      // Accepting and each pause are bounded by the daemon too; this bounds the whole.
      async (dim) => {
        sending();
        const result = await dim.sendFile(contact.name, path, {
          onProgress,
          timeout: MAX_TIMEOUT_S,
        });
        stored = await allStored(
          result,
          (seq) =>
            dim.waitFor(seq, { orStored: true, timeout: ctx.timeoutMs / 1000 }).then(
              () => true,
              () => false,
            ),
        );
        return result;
      },
      async () => {
        const messenger = await ctx.openMessenger({ allowOffline: true });
        try {
          await refreshCard(ctx, messenger, contact.id);
          if (messenger.profile.contact(name).keyChanged) throw keyChanged(ctx, contact.name);
          sending();
          const result = fileResult(
            await messenger.deliverFile(contact.name, path, {
              acceptTimeoutMs: ctx.timeoutMs,
              idleTimeoutMs: ctx.timeoutMs,
              onProgress,
            }),
          );
          using d = deadline(ctx.timeoutMs);
          stored = !isOffline(messenger) &&
            await allStored(
              result,
              (seq) =>
                messenger.waitFor(seq, { orStored: true, signal: d.signal }).then(
                  () => true,
                  () => false,
                ),
            );
          return result;
        } finally {
          await messenger.stop();
        }
      },
    );
  } catch (err) {
    if (
      err instanceof TransferRefusedError || isDaemonError(err, DaemonErrorCode.TransferRefused)
    ) {
      throw new CliError(
        `${contact.name} did not take the file: ${err.message.replace(/^Cannot send file: /, "")}`,
        { cause: err },
      );
    }
    if (isDaemonError(err, DaemonErrorCode.KeyChanged)) throw keyChanged(ctx, contact.name);
    throw err;
  } finally {
    spinner?.stop();
  }
  const state = sent.how === "direct"
    ? "delivered"
    : sent.how === "mailbox" && stored
    ? "stored"
    : "queued";
  if (ctx.json) {
    ctx.outJson({
      to: contact.name,
      file: sent.name,
      bytes: sent.bytes,
      sha256: sent.sha256,
      fileId: sent.fileId,
      how: sent.how,
      state,
    });
  } else if (state === "delivered") {
    ctx.out(
      `✓ ${sent.name} (${sent.bytes} bytes) delivered to ${contact.name}, sha256 ${sent.sha256}`,
    );
  } else if (state === "stored") {
    ctx.out(
      `⧗ ${contact.name} is offline: ${sent.name} (${sent.bytes} bytes) is stored in the ` +
        `network and reaches ${contact.name} when they come online`,
    );
  } else if (sent.how === "mailbox") {
    ctx.out(
      `⧗ queued: ${sent.name} (${sent.bytes} bytes) is on this device only; it goes the next ` +
        "time DIM connects",
    );
  } else {
    ctx.out(
      `⧗ queued: ${contact.name} is offline, and ${sent.name} (${formatBytes(sent.bytes)}) is ` +
        `over the 4 MiB a file can leave in the network: it waits on this device and goes ` +
        `directly when you and ${contact.name} are online together (dim daemon keeps trying)`,
    );
  }
  return state === "queued" ? EXIT_QUEUED : 0;
}

// Whether every part of a file left in the network is stored there.
async function allStored(
  result: DaemonSendFileResult,
  stored: (seq: number) => Promise<boolean>,
): Promise<boolean> {
  if (result.how !== "mailbox") return true;
  const all = await Promise.all((result.parts ?? []).map(stored));
  return all.every(Boolean);
}

/**
 * How far a transfer is, in words.
 *
 * @param p Bytes so far and the size.
 * @returns For example `42% of 1.5 MiB`.
 */
export function progressText(p: { readonly bytes: number; readonly total: number }): string {
  const percent = p.total === 0 ? 100 : Math.floor((p.bytes / p.total) * 100);
  return `${percent}% of ${formatBytes(p.total)}`;
}

/**
 * A size in words.
 *
 * @param n Bytes.
 * @returns `812 bytes`, `3.4 KiB`, `1.5 MiB` or `2.0 GiB`.
 */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} bytes`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(1)} ${units[u]}`;
}

function basename(path: string): string {
  return path.replace(/\/+$/, "").split("/").at(-1) ?? path;
}

function keyChanged(ctx: Context, name: string): CliError {
  ctx.note(keyChangedWarning(name));
  return new CliError(`not sent: ${name}'s keys changed and must be verified again`);
}

/** Looks the card up again so a key change shows before sending; offline cards are fine. */
async function refreshCard(ctx: Context, messenger: Messenger, id: string): Promise<void> {
  using d = deadline(Math.min(ctx.timeoutMs, CARD_REFRESH_MS));
  await withSpinner(
    ctx.io,
    "looking up their contact card…",
    () => messenger.resolveCard(id, { fresh: true, signal: d.signal }).catch(() => {}),
  );
}

/**
 * Waits until a sent message is delivered or stored in the network.
 *
 * @returns The message in its new state, or `undefined` if the time ran out.
 */
async function waitSent(
  ctx: Context,
  messenger: Messenger,
  sent: ChatMessage,
  text: string,
): Promise<ChatMessage | undefined> {
  using d = deadline(ctx.timeoutMs);
  try {
    return await withSpinner(
      ctx.io,
      text,
      () => messenger.waitFor(sent.seq, { orStored: true, signal: d.signal }),
    );
  } catch (err) {
    if (d.signal.aborted) return undefined;
    throw err;
  }
}
