/**
 * `dim group …`, `dim send @<group> <text>` and `dim chat @<group>`: group
 * chats from the command line. When a `dim daemon` or `dim chat` holds the
 * data directory, each command goes through its local API; otherwise it
 * opens the messenger (going online if it can), does its work, waits a
 * moment for what it queued to leave (as `dim send` does), and stops.
 *
 * @module
 */
import type { Messenger } from "../messenger/messenger.ts";
import type { GroupInfo, VerifiedMember } from "../messenger/groups.ts";
import type { ChatMessage } from "../profile/chat_message.ts";
import type { Context } from "./context.ts";
import { UsageError } from "./errors.ts";
import { viaRunningDim } from "./remote.ts";
import { formatTime } from "./format.ts";

const GROUP_USAGE = "dim group create|add|remove|leave|list|info|verify …";

/**
 * Runs `fn` with an open messenger, then sends what was queued and stops.
 * With `fetch`, what waits in the mailbox (changes, keys, messages) is
 * fetched and handled first.
 */
async function withMessenger<T>(
  ctx: Context,
  fn: (m: Messenger) => Promise<T>,
  options: { readonly fetch?: boolean } = {},
): Promise<T> {
  const messenger = await ctx.openMessenger({ allowOffline: true });
  try {
    if (options.fetch === true && messenger.node.connections > 0) {
      await messenger.fetchMailbox({ signal: AbortSignal.timeout(ctx.timeoutMs) }).catch(() => {});
      await messenger.groupChats.settled();
    }
    const result = await fn(messenger);
    await ctx.sendQueued(messenger);
    return result;
  } finally {
    await messenger.stop();
  }
}

/** The group calls a command makes, on a messenger or through a running dim. */
interface GroupOps {
  create(name: string, members: readonly string[]): Promise<GroupInfo>;
  add(group: string, contact: string): Promise<GroupInfo>;
  remove(group: string, member: string): Promise<GroupInfo>;
  leave(group: string): Promise<unknown>;
  list(): Promise<GroupInfo[]>;
  info(group: string): Promise<GroupInfo>;
  verify(group: string, member: string, confirm: boolean): Promise<VerifiedMember>;
  send(group: string, text: string): Promise<ChatMessage>;
}

// Runs `fn` through a running dim (daemon or chat) if one holds the data
// directory, else on a messenger of its own.
function withGroups<T>(
  ctx: Context,
  fn: (ops: GroupOps) => Promise<T>,
  options: { readonly fetch?: boolean } = {},
): Promise<T> {
  return viaRunningDim(
    ctx,
    (dim) =>
      fn({
        create: (name, members) => dim.createGroup(name, members),
        add: (group, contact) => dim.addMember(group, contact),
        remove: (group, member) => dim.removeMember(group, member),
        leave: (group) => dim.leaveGroup(group),
        list: () => dim.listGroups(),
        info: (group) => dim.groupInfo(group),
        verify: (group, member, confirm) => dim.verifyMember(group, member, { confirm }),
        send: async (group, text) => (await dim.sendGroup(group, text)).message,
      }),
    () =>
      withMessenger(ctx, (m) =>
        fn({
          create: (name, members) => m.createGroup(name, members),
          add: (group, contact) => m.addMember(group, contact),
          remove: (group, member) => m.removeMember(group, member),
          leave: (group) => m.leave(group),
          list: () => Promise.resolve(m.groups()),
          info: (group) => Promise.resolve(m.group(group)),
          verify: (group, member, confirm) => m.verifyMember(group, member, { confirm }),
          send: (group, text) => m.sendGroup(group, text),
        }), options),
  );
}

function describe(ctx: Context, g: GroupInfo): void {
  if (ctx.json) {
    ctx.outJson(g);
    return;
  }
  ctx.out(`${g.name}  (${g.id})${g.left ? "  [left]" : ""}${g.admin ? "  [admin]" : ""}`);
  for (const m of g.members) {
    const name = m.self ? "you" : m.contact ?? m.id;
    const tags = [m.admin ? "admin" : "", m.self ? "" : m.label, m.verified ? "verified" : ""]
      .filter((t) => t !== "");
    ctx.out(`  ${name}${tags.length > 0 ? `  (${tags.join(", ")})` : ""}`);
  }
}

function showVerified(ctx: Context, m: VerifiedMember): void {
  if (ctx.json) {
    ctx.outJson(m);
    return;
  }
  const name = m.contact ?? m.id;
  ctx.out(`Safety number with ${name} (${m.label}):`);
  ctx.out("");
  const groups = m.safetyNumber.split(" ");
  for (let i = 0; i < groups.length; i += 4) ctx.out(`    ${groups.slice(i, i + 4).join(" ")}`);
  ctx.out("");
  if (m.verified) ctx.out(`${name} is verified.`);
  else {
    ctx.out(
      "It must match what they see on their side (dim group verify <group> <your ID>). " +
        "Compare it in person or on a call; then run this again with --confirm.",
    );
  }
}

/**
 * One line of a group conversation: when, who wrote it, the text, and for
 * a sent message how many members it reached.
 *
 * @param m The message.
 * @returns The line.
 */
export function groupLine(m: ChatMessage): string {
  const who = m.direction === "out" ? "you" : m.contact ?? m.peer.slice(0, 16);
  const count = m.direction === "out" && m.group?.members !== undefined
    ? `  (delivered to ${m.group.deliveredTo ?? 0} of ${m.group.members})`
    : "";
  return `[${formatTime(m.sentAt)}] ${who}: ${m.text}${count}`;
}

/**
 * `dim group <sub> …`.
 *
 * @param ctx The CLI context.
 * @param args `create <name> <contact>…`, `add <group> <contact>`,
 *   `remove <group> <member>`, `leave <group>`, `list`, `info <group>`,
 *   `verify <group> <member>`.
 * @param options `confirm` for `verify`: mark the member verified.
 * @returns The exit code.
 * @throws {UsageError} On a missing or unknown argument.
 */
export function groupCommand(
  ctx: Context,
  args: readonly string[],
  options: { readonly confirm?: boolean | undefined } = {},
): Promise<number> {
  const [sub = "list", ...rest] = args;
  if (options.confirm && sub !== "verify") {
    throw new UsageError("--confirm only goes with dim group verify");
  }
  const need = (n: number, usage: string) => {
    if (rest.length < n) throw new UsageError(`missing arguments (usage: ${usage})`);
  };
  switch (sub) {
    case "create":
      need(2, "dim group create <name> <contact>…");
      return withGroups(ctx, async (g) => {
        describe(ctx, await g.create(rest[0]!, rest.slice(1)));
        return 0;
      });
    case "add":
      need(2, "dim group add <group> <contact>");
      return withGroups(ctx, async (g) => {
        describe(ctx, await g.add(rest[0]!, rest[1]!));
        return 0;
      });
    case "remove":
      need(2, "dim group remove <group> <member>");
      return withGroups(ctx, async (g) => {
        describe(ctx, await g.remove(rest[0]!, rest[1]!));
        return 0;
      });
    case "leave":
      need(1, "dim group leave <group>");
      return withGroups(ctx, async (g) => {
        await g.leave(rest[0]!);
        if (!ctx.json) ctx.out(`left ${rest[0]}`);
        return 0;
      });
    case "list":
      return withGroups(ctx, async (ops) => {
        const groups = await ops.list();
        if (ctx.json) ctx.outJson(groups);
        else if (groups.length === 0) ctx.out("no groups");
        else {
          for (const g of groups) {
            ctx.out(`${g.name}  ${g.id}  ${g.members.length} members${g.left ? "  [left]" : ""}`);
          }
        }
        return 0;
      }, { fetch: true });
    case "info":
      need(1, "dim group info <group>");
      return withGroups(ctx, async (g) => {
        describe(ctx, await g.info(rest[0]!));
        return 0;
      }, { fetch: true });
    case "verify":
      need(2, "dim group verify <group> <member> [--confirm]");
      return withGroups(ctx, async (g) => {
        showVerified(ctx, await g.verify(rest[0]!, rest[1]!, options.confirm ?? false));
        return 0;
      }, { fetch: true });
    default:
      throw new UsageError(`unknown subcommand ${sub} (usage: ${GROUP_USAGE})`);
  }
}

/**
 * `dim send @<group> <text>`.
 *
 * @param ctx The CLI context.
 * @param group The group's name or ID (without the `@`).
 * @param text The text.
 * @returns The exit code.
 */
export function groupSendCommand(ctx: Context, group: string, text: string): Promise<number> {
  return withGroups(ctx, async (g) => {
    const sent = await g.send(group, text);
    // The copies go while dim waits for the queue (sendQueued).
    if (ctx.json) ctx.outJson({ group: sent.group, seq: sent.seq, id: sent.id });
    else ctx.out(`queued for ${sent.group?.members ?? 0} members of ${sent.group?.name}`);
    return 0;
  }, { fetch: true });
}

/**
 * `dim chat @<group>`: the group's last messages (who wrote each, delivery
 * counts of sent ones), then each input line is sent and each incoming
 * group message printed, until the input ends.
 *
 * @param ctx The CLI context.
 * @param group The group's name or ID (without the `@`).
 * @param options `limit`: past messages shown.
 * @returns The exit code.
 */
export function groupChatCommand(
  ctx: Context,
  group: string,
  options: { readonly limit?: number } = {},
): Promise<number> {
  const limit = options.limit ?? 20;
  // Prints the header and history, then sends each input line until the input ends.
  const converse = async (
    g: GroupInfo,
    history: readonly ChatMessage[],
    send: (text: string) => Promise<ChatMessage>,
  ): Promise<number> => {
    ctx.out(`— ${g.name}: ${g.members.length} members —`);
    for (const line of history) ctx.out(groupLine(line));
    for (;;) {
      const line = await ctx.io.readLine("");
      if (line === undefined) break;
      if (line.trim() === "") continue;
      ctx.out(groupLine(await send(line)));
    }
    return 0;
  };
  return viaRunningDim(
    ctx,
    async (dim) => {
      const g = await dim.groupInfo(group);
      const subscription = dim.subscribe();
      (async () => {
        for await (const n of subscription) {
          if (n.method === "message" && n.params.group?.id === g.id) ctx.out(groupLine(n.params));
        }
      })().catch(() => {});
      const history = await dim.groupHistory(g.id, { limit });
      return await converse(g, history, async (text) => (await dim.sendGroup(g.id, text)).message);
    },
    () =>
      withMessenger(ctx, async (m) => {
        const g = m.group(group);
        const onMessage = (e: Event) => {
          const msg = (e as CustomEvent<ChatMessage>).detail;
          if (msg.group?.id === g.id) ctx.out(groupLine(msg));
        };
        m.addEventListener("message", onMessage);
        try {
          return await converse(g, m.groupHistory(g.id, { limit }), (text) =>
            m.sendGroup(g.id, text));
        } finally {
          m.removeEventListener("message", onMessage);
        }
      }, { fetch: true }),
  );
}
