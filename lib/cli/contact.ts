/**
 * `dim contact add|verify|list|remove`: the address book. Adding a contact
 * looks their card up in the network and pins their keys (trust on first
 * use); verifying shows the safety number to compare out of band and, once
 * confirmed, marks them verified. Listing, verifying and removing work
 * offline.
 *
 * @module
 */
import { PeerUnreachableError } from "../errors.ts";
import { contactString, parseContactString } from "../profile/contact_string.ts";
import type { Contact } from "../profile/contacts.ts";
import type { DaemonContact } from "../daemon/protocol.ts";
import { contactInfo } from "../daemon/_methods.ts";
import { checkMultiaddr, writeConfig } from "./config.ts";
import type { Context } from "./context.ts";
import { deadline } from "../platform/signals.ts";
import { CliError, UsageError } from "./errors.ts";
import { formatTime, keyChangedWarning, trustLabel } from "./format.ts";
import { knownIdentity, publicIdentity } from "./id.ts";
import { isDaemonError, UNREACHED_CODES, viaRunningDim } from "./remote.ts";
import { withSpinner } from "./spinner.ts";

/** Options of {@linkcode contactCommand}. */
export interface ContactOptions {
  /** `--confirm` (verify): mark the contact verified without asking. */
  readonly confirm?: boolean | undefined;
}

/**
 * Runs `dim contact <subcommand> …`.
 *
 * @param ctx The command's context.
 * @param args The subcommand and its arguments.
 * @param options `confirm` for `verify`.
 * @returns The exit code.
 * @throws {UsageError} For a wrong subcommand or argument count.
 * @throws {InvalidIdError} For a malformed or mistyped ID.
 * @throws {UnknownContactError} For an unknown name.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { main } from "./main.ts";
 * import { memoryIo } from "./io.ts";
 *
 * const home = await Deno.makeTempDir();
 * const env = { DIM_PASSPHRASE: "plum vortex quietly sings" };
 * await main(["--home", home, "init", "--name", "Ada"], memoryIo({ env }));
 * const io = memoryIo({ env });
 * assert.equal(await main(["--home", home, "contact", "list", "--json"], io), 0);
 * assert.deepEqual(JSON.parse(io.out), []);
 * await Deno.remove(home, { recursive: true });
 * ```
 */
export async function contactCommand(
  ctx: Context,
  args: readonly string[],
  options: ContactOptions = {},
): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === undefined) {
    throw new UsageError("dim contact needs a subcommand: add, verify, list or remove");
  }
  if (options.confirm && sub !== "verify") {
    throw new UsageError("--confirm only goes with dim contact verify");
  }
  switch (sub) {
    case "add":
      return await add(ctx, expect(rest, ["name", "id-or-contact-string"], "add"));
    case "verify":
      return await verify(ctx, expect(rest, ["name"], "verify")[0]!, options.confirm ?? false);
    case "list":
    case "ls":
      expect(rest, [], "list");
      return await list(ctx);
    case "remove":
    case "rm":
      return await remove(ctx, expect(rest, ["name"], "remove")[0]!);
    default:
      throw new UsageError(
        `unknown subcommand "contact ${sub}" (expected add, verify, list or remove)`,
      );
  }
}

function expect(args: readonly string[], names: readonly string[], sub: string): string[] {
  if (args.length !== names.length) {
    const usage = `dim contact ${sub}${names.map((n) => ` <${n}>`).join("")}`;
    throw new UsageError(
      args.length < names.length
        ? `missing <${names[args.length]}> (usage: ${usage})`
        : `too many arguments (usage: ${usage})`,
    );
  }
  return [...args];
}

/** Splits a user ID or `dim:` contact string, checking the ID's checksum and the addresses. */
function parseContact(text: string): { id: string; bootstrap: string[] } {
  const { id, bootstrap } = parseContactString(text);
  return { id, bootstrap: bootstrap.map((a) => checkMultiaddr(a, { peer: true })) };
}

function checkContactName(name: string): void {
  if (name.trim() === "" || /\s/.test(name)) {
    throw new UsageError(`the contact name must be one word, not "${name}"`);
  }
  if (name.startsWith("dim") && name.length > 40) {
    throw new UsageError("the first argument is the name you give the contact, then their ID");
  }
}

async function add(ctx: Context, [name, idOrUri]: string[]): Promise<number> {
  checkContactName(name!);
  const { id, bootstrap: carried } = parseContact(idOrUri!);
  const configured = await ctx.bootstrap();
  {
    await using profile = await ctx.profile();
    if (knownIdentity(profile)?.id === id) throw new CliError("that is your own ID");
    const byName = profile.findContact(name!);
    if (byName !== undefined && byName.id !== id) {
      throw new CliError(
        `you already have a contact named ${name} with another ID; ` +
          `remove it first (dim contact remove ${name}) or choose another name`,
      );
    }
    if (byName !== undefined) {
      // Adding again must not re-pin keys: a key change is accepted only by verifying.
      ctx.note(`${name} is already a contact`);
      if (byName.keyChanged) ctx.note(keyChangedWarning(byName.name));
      showContact(ctx, byName);
      return 0;
    }
    const byId = profile.findContact(id);
    if (byId !== undefined) {
      throw new CliError(`that ID is already your contact ${byId.name}`);
    }
  }
  const unreached = (err: unknown) => {
    const hint = configured.length === 0 && carried.length === 0
      ? " (no bootstrap nodes are configured: use --bootstrap, or a contact string that carries one)"
      : " (they may not have gone online yet since creating their identity)";
    return new CliError(`cannot find a contact card for ${id} in the network${hint}`, {
      cause: err,
    });
  };
  const what = `looking up the contact card of ${id.slice(0, 16)}…`;
  const contact = await viaRunningDim(
    ctx,
    async (dim) => {
      try {
        return fromDaemon(
          await withSpinner(
            ctx.io,
            what,
            () =>
              dim.addContact(name!, contactString(id, carried), { timeout: ctx.timeoutMs / 1000 }),
          ),
        );
      } catch (err) {
        if (isDaemonError(err, ...UNREACHED_CODES)) throw unreached(err);
        throw err;
      }
    },
    async () => {
      const messenger = await ctx.openMessenger({ bootstrap: carried });
      try {
        using d = deadline(ctx.timeoutMs);
        const contact = await withSpinner(
          ctx.io,
          what,
          () => messenger.addContact(name!, contactString(id, carried), { signal: d.signal }),
        );
        await ctx.sendQueued(messenger);
        return contact;
      } catch (err) {
        if (err instanceof PeerUnreachableError || isTimeout(err)) throw unreached(err);
        throw err;
      } finally {
        await messenger.stop();
      }
    },
  );
  if (configured.length === 0 && carried.length > 0) {
    const config = await ctx.config();
    await writeConfig(ctx.home, { ...config, bootstrap: carried });
    if (!ctx.json) ctx.note(`saved ${carried.join(", ")} as your bootstrap node (you had none)`);
  }
  if (ctx.json) {
    ctx.outJson(contactInfo(contact));
    return 0;
  }
  ctx.out(`Added ${contact.name}${contact.displayName ? ` (${contact.displayName})` : ""}`);
  showContact(ctx, contact);
  ctx.out(
    `Not verified yet: compare safety numbers with ${contact.name} in person or on a call ` +
      `(dim contact verify ${contact.name}).`,
  );
  return 0;
}

/** A contact as the running dim's API gave it. */
function fromDaemon(c: DaemonContact): Contact {
  return {
    name: c.name,
    id: c.id,
    displayName: c.displayName,
    fingerprint: c.fingerprint,
    verified: c.verified,
    keyChanged: c.keyChanged,
    lastSeen: c.lastSeen === null ? 0 : Date.parse(c.lastSeen),
  };
}

function isTimeout(err: unknown): boolean {
  return err instanceof DOMException && err.name === "TimeoutError";
}

function showContact(ctx: Context, c: Contact): void {
  if (ctx.json) {
    ctx.outJson(contactInfo(c));
    return;
  }
  ctx.out(`  ID:           ${c.id}`);
  ctx.out(`  Fingerprint:  ${c.fingerprint}`);
  ctx.out(`  Trust:        ${trustLabel(c)}`);
}

async function verify(ctx: Context, name: string, confirm: boolean): Promise<number> {
  let contact: Contact;
  let number: string;
  {
    await using profile = await ctx.profile();
    contact = profile.contact(name);
    await publicIdentity(ctx, profile);
    number = profile.safetyNumber(name);
  }
  if (contact.keyChanged) ctx.note(keyChangedWarning(contact.name));
  let accept = confirm;
  if (!ctx.json) {
    const groups = number.split(" ");
    ctx.out(
      `Safety number with ${contact.name}${
        contact.displayName ? ` (${contact.displayName})` : ""
      }:`,
    );
    ctx.out("");
    for (let i = 0; i < groups.length; i += 4) ctx.out(`    ${groups.slice(i, i + 4).join(" ")}`);
    ctx.out("");
    ctx.out(`Their fingerprint: ${contact.fingerprint}`);
    ctx.out(
      `It must match what ${contact.name} sees on their side (dim contact verify <your name>). ` +
        "Compare it in person or on a call, not over DIM itself.",
    );
    if (!confirm && ctx.io.stdinIsTerminal && (!contact.verified || contact.keyChanged)) {
      const answer = await ctx.io.readLine(`Does it match? Mark ${contact.name} verified [y/N] `);
      accept = /^y(es)?$/i.test(answer?.trim() ?? "");
    }
  }
  if (accept) {
    contact = await viaRunningDim(
      ctx,
      async (dim) => fromDaemon(await dim.verifyContact(name, { confirm: true })),
      async () => {
        // A profile opened offline takes the data directory's lock for the change.
        await using profile = await ctx.profile();
        return profile.verifyContact(name);
      },
    );
  }
  if (ctx.json) {
    ctx.outJson({ ...contactInfo(contact), safetyNumber: number });
  } else if (accept) {
    ctx.out(`${contact.name} is now verified.`);
  } else if (!contact.verified || contact.keyChanged) {
    ctx.out(`Once it matches: dim contact verify ${contact.name} --confirm`);
  }
  return 0;
}

async function list(ctx: Context): Promise<number> {
  await using profile = await ctx.profile();
  const contacts = profile.contacts();
  if (ctx.json) {
    ctx.outJson(contacts.map(contactInfo));
    return 0;
  }
  if (contacts.length === 0) {
    ctx.note("no contacts yet: add one with dim contact add <name> <id>");
    return 0;
  }
  const rows = contacts.map((c) => [
    c.name,
    c.displayName,
    trustLabel(c),
    c.lastSeen === 0 ? "never" : formatTime(c.lastSeen),
    c.id,
  ]);
  const header = ["NAME", "DISPLAY NAME", "TRUST", "LAST SEEN", "ID"];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  for (const row of [header, ...rows]) {
    ctx.out(row.map((cell, i) => i === row.length - 1 ? cell : cell.padEnd(widths[i]!)).join("  "));
  }
  for (const c of contacts) if (c.keyChanged) ctx.note(keyChangedWarning(c.name));
  return 0;
}

async function remove(ctx: Context, name: string): Promise<number> {
  let contact: Contact;
  {
    await using profile = await ctx.profile();
    contact = profile.contact(name);
  }
  await viaRunningDim(
    ctx,
    async (dim) => void await dim.removeContact(contact.name),
    async () => {
      // A profile opened offline takes the data directory's lock for the change.
      await using profile = await ctx.profile();
      profile.removeContact(contact.name);
    },
  );
  if (ctx.json) ctx.outJson({ removed: contact.name, id: contact.id });
  else ctx.out(`Removed ${contact.name} (your conversation history is kept).`);
  return 0;
}
