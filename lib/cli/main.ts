/**
 * The runner of the `dim` CLI: owns argv, exit codes and the terminal, and
 * calls the commands, which call the library.
 *
 * Exit codes: 0 success, 1 failure, 2 usage error, 3 queued (`dim send`
 * reached no peer: the message waits on this device). Results go to stdout,
 * diagnostics to stderr; a failure is one line `error: …` (with the stack
 * under `--debug`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { main } from "./main.ts";
 * import { memoryIo } from "./io.ts";
 *
 * const io = memoryIo();
 * assert.equal(await main(["frobnicate"], io), 2);
 * assert.match(io.err, /^error: unknown command "frobnicate"/);
 * ```
 *
 * @module
 */
import denoJson from "../../deno.json" with { type: "json" };
import {
  checkOptions,
  type CommandLine,
  type OptionName,
  parseCommandLine,
  positiveNumber,
} from "./args.ts";
import { chatCommand } from "./chat.ts";
import { configCommand } from "./config_command.ts";
import { contactCommand } from "./contact.ts";
import { groupChatCommand, groupCommand, groupSendCommand } from "./group.ts";
import { Context, type GlobalOptions } from "./context.ts";
import { daemonCommand } from "./daemon.ts";
import { describeError, UsageError } from "./errors.ts";
import { idCommand } from "./id.ts";
import { inboxCommand } from "./inbox.ts";
import { initCommand } from "./init.ts";
import { type CliIo, denoIo } from "./io.ts";
import { nodeCommand } from "./node.ts";
import { sendCommand } from "./send.ts";
import { statusCommand } from "./status.ts";

/** DIM's version, from deno.json. */
export const VERSION: string = denoJson.version;

interface CommandSpec {
  readonly name: string;
  readonly aliases?: readonly string[];
  readonly usage: string;
  readonly summary: string;
  readonly details: string;
  readonly options: readonly OptionName[];
  readonly run: (ctx: Context, cl: CommandLine) => Promise<number>;
}

function positionals(cl: CommandLine, min: number, max: number, usage: string): string[] {
  const n = cl.positionals.length;
  if (n < min) throw new UsageError(`missing arguments (usage: ${usage})`);
  if (n > max) throw new UsageError(`too many arguments (usage: ${usage})`);
  return [...cl.positionals];
}

const COMMANDS: readonly CommandSpec[] = [
  {
    name: "init",
    aliases: ["keygen"],
    usage: "dim init [--name <display name>] [--force] [--weak-passphrase]",
    summary: "create your identity (asks for a passphrase twice)",
    details: `Creates your keys and stores them encrypted under a passphrase in the data
directory. Nothing goes online unless --bootstrap is given (or already
configured): then your contact card is published once.

Options:
  --name <display name>     the name your contacts see (asked on a terminal)
  --force                   replace an existing identity
  --passphrase-file <path>  read the passphrase from a file (or set DIM_PASSPHRASE)
  --weak-passphrase         accept a passphrase that is easy to guess (not advised:
                            it is all that protects your keys on disk)
  --bootstrap, --listen     also saved in the settings (config.json)

The passphrase must be hard to guess: a zxcvbn strength of at least 3 of 4,
about four random words or a long sentence of your own.`,
    options: ["name", "force", "weak-passphrase"],
    run: (ctx, cl) => {
      positionals(cl, 0, 0, "dim init");
      return initCommand(ctx, {
        name: cl.values.name,
        force: cl.values.force,
        weakPassphrase: cl.values["weak-passphrase"],
      });
    },
  },
  {
    name: "id",
    usage: "dim id",
    summary: "show your user ID, fingerprint and contact string",
    details: `Prints your user ID, the fingerprint of your keys, and a dim: contact string
that carries your bootstrap nodes, to share with the people you talk to.
Works offline and needs no passphrase.`,
    options: [],
    run: (ctx, cl) => {
      positionals(cl, 0, 0, "dim id");
      return idCommand(ctx);
    },
  },
  {
    name: "contact",
    aliases: ["contacts"],
    usage: "dim contact add|verify|list|remove …",
    summary: "manage contacts",
    details: `  dim contact add <name> <id-or-contact-string>
      find their contact card in the network, pin their keys, show the fingerprint
  dim contact verify <name> [--confirm]
      show the safety number to compare out of band; --confirm marks them
      verified (and accepts changed keys)
  dim contact list
      verified or not, last seen; changed keys are flagged
  dim contact remove <name>
      forget a contact (the history stays)
dim contact alone lists the contacts.`,
    options: ["confirm"],
    run: (ctx, cl) =>
      contactCommand(ctx, cl.positionals.length === 0 ? ["list"] : cl.positionals, {
        confirm: cl.values.confirm,
      }),
  },
  {
    name: "send",
    usage: "dim send <name> <text>",
    summary: "send one message and exit",
    details: `Sends one message and exits once it is delivered, or stored in the network
for a contact who is offline (it says which). Exit code 1 if neither happened
within --timeout seconds (default 30): the message then stays queued and is
retried whenever dim runs. Exit code 3 if no peer answered at all (DIM is
offline): the message is queued on this device only, and goes by itself the
next time any dim command reaches the network. Use -- before a text that
starts with a dash.

Options:
  --file <path>             send a file to a contact who is online`,
    options: ["file"],
    run: (ctx, cl) => {
      const [to, ...words] = cl.positionals;
      if (to?.startsWith("@") && cl.values.file === undefined) {
        if (words.join(" ").trim() === "") {
          throw new UsageError("missing <text> (usage: dim send @<group> <text>)");
        }
        return groupSendCommand(ctx, to.slice(1), words.join(" "));
      }
      return sendCommand(ctx, cl.positionals, { file: cl.values.file });
    },
  },
  {
    name: "group",
    aliases: ["groups"],
    usage: "dim group create|add|remove|leave|list|info|verify …",
    summary: "manage group chats",
    details: `  dim group create <name> <contact>…
      make a group of you (its admin) and these contacts
  dim group add <group> <contact>
      add a contact (admins only); they read nothing sent before
  dim group remove <group> <member>
      remove a member (admins only); every member then changes its keys
  dim group leave <group>
      leave the group (its history stays)
  dim group list
      your groups
  dim group info <group>
      members and admins; members who are not your contacts are marked
      "group member, not a contact"
  dim group verify <group> <member> [--confirm]
      show a member's safety number to compare out of band; --confirm marks
      them verified (members who are not your contacts too)
Send with dim send @<group> <text>; chat with dim chat @<group>.`,
    options: ["confirm"],
    run: (ctx, cl) => groupCommand(ctx, cl.positionals, { confirm: cl.values.confirm }),
  },
  {
    name: "inbox",
    usage: "dim inbox [--all]",
    summary: "fetch and show new messages",
    details: `Goes online, fetches your mailbox from the network, shows the messages that
arrived since they were last shown, and exits.

Options:
  --all                     show every received message again`,
    options: ["all"],
    run: (ctx, cl) => {
      positionals(cl, 0, 0, "dim inbox");
      return inboxCommand(ctx, { all: cl.values.all });
    },
  },
  {
    name: "chat",
    usage: "dim chat <name>",
    summary: "interactive chat",
    details: `Shows recent history, then incoming messages as they arrive, while you type.
Each sent message shows "… sending", "✓ delivered" or "⧗ queued for offline
delivery". Commands: /file <path> (sends a file with a progress line; Tab
completes the path, spaces typed as is, quoted, or escaped with \ as Tab
does), /verify, /history, /help, /quit. Incoming files show their progress
and where they were saved. With no peer reachable the chat opens anyway, says
it is offline, and queues what you type on this device ("⧗ queued on this
device") until DIM connects.

While the chat runs, other dim commands (send, inbox, status, contact) go
through it; when dim daemon runs, the chat attaches to the daemon.

When stdin is not a terminal, each input line is sent as a message and
incoming messages are printed; at the end of input dim waits until the sent
messages are delivered or stored in the network, then exits. (Without
DIM_PASSPHRASE or --passphrase-file, the first input line is the passphrase.)

Options:
  --limit <n>               how many past messages to show (default 20)`,
    options: ["limit"],
    run: (ctx, cl) => {
      const [name] = positionals(cl, 1, 1, "dim chat <name>");
      if (name!.startsWith("@")) {
        return groupChatCommand(ctx, name!.slice(1), {
          limit: positiveNumber(cl.values.limit, "limit", 20),
        });
      }
      return chatCommand(ctx, name!, {
        limit: positiveNumber(cl.values.limit, "limit", 20),
        version: VERSION,
      });
    },
  },
  {
    name: "status",
    usage: "dim status",
    summary: "reachability, relays, peers, addresses, DHT and outbox",
    details: `Goes online and shows whether your node can be dialed from outside, and when
that was last checked: "public", "behind NAT via relays <peer IDs>" (with the
relays' addresses), "mapped by UPnP <address>", or "unknown" (not checked
yet, or no peer to check with); then its addresses (relayed ones included),
peers, DHT routing table size, and how many sent messages still wait for
acknowledgement.`,
    options: [],
    run: (ctx, cl) => {
      positionals(cl, 0, 0, "dim status");
      return statusCommand(ctx);
    },
  },
  {
    name: "daemon",
    usage: "dim daemon",
    summary: "stay online and serve the local API until Ctrl-C",
    details: `Keeps your node online — messages are delivered live, the mailbox is polled,
your contact card and prekeys stay published — and serves a local JSON-RPC
API on the socket dim.sock in the data directory (mode 0600), for bots,
bridges and scripts. Logs one line per notable event to stderr and runs until
SIGINT or SIGTERM, then stops cleanly. With --json it prints its user ID, peer
ID, socket and addresses as one JSON line on stdout once it listens.

Any program running as your user can act as you through the socket. For an
unattended daemon, give the passphrase with --passphrase-file from a file only
the service can read (systemd credentials), not one beside the keys: see the
README ("Daemon and local API").`,
    options: [],
    run: (ctx, cl) => {
      positionals(cl, 0, 0, "dim daemon");
      return daemonCommand(ctx, { version: VERSION });
    },
  },
  {
    name: "node",
    usage: "dim node [--listen <multiaddr>] [--announce <multiaddr>]…",
    summary: "run a bootstrap/storage/relay node until Ctrl-C",
    details: `Runs a node without a user: it keeps the DHT alive, stores records and the
mailboxes of offline users, and relays for users behind NAT. It prints its
addresses (give one to others as --bootstrap) and runs until SIGINT or
SIGTERM. Use a fixed port for a bootstrap node, e.g. --listen
/ip4/0.0.0.0/tcp/4001; its peer ID is kept in the data directory (--home).

Options:
  --announce <multiaddr>    the address others dial, when it is not a listen
                            address (a port forwarded by hand to this machine,
                            e.g. /ip4/203.0.113.7/tcp/4001); repeatable`,
    options: ["announce"],
    run: (ctx, cl) => {
      positionals(cl, 0, 0, "dim node");
      return nodeCommand(ctx, { announce: cl.values.announce });
    },
  },
  {
    name: "config",
    usage:
      "dim config [bootstrap|listen <multiaddr>… | public-networks <cidr>… | upnp|lan-discovery on|off]",
    summary: "show or change the settings",
    details:
      `  dim config                          show the settings (config.json in the data directory)
  dim config bootstrap <multiaddr>…   set the bootstrap nodes (none: clear them)
  dim config listen <multiaddr>…      set the listen addresses (none: the default)
  dim config public-networks <cidr>…  networks whose addresses count as public, besides
                                      the usual rule (for a private deployment such as
                                      198.18.0.0/15; none: clear them)
  dim config upnp on|off              ask the router for a port mapping (default on;
                                      DIM_UPNP=off in the environment overrides it)
  dim config lan-discovery on|off     find DIM peers on the local network over mDNS
                                      (default on; DIM_LAN=off overrides it)`,
    options: [],
    run: (ctx, cl) => configCommand(ctx, cl.positionals),
  },
];

const GLOBAL_HELP = `Global options:
  --home <dir>              data directory (default: $DIM_HOME, else $XDG_DATA_HOME/dim,
                            else ~/.local/share/dim)
  --bootstrap <multiaddr>   a node to join through (repeatable; default: dim config)
  --listen <multiaddr>      address to listen on (repeatable; default /ip4/0.0.0.0/tcp/0)
  --passphrase-file <path>  read the passphrase from a file (or set DIM_PASSPHRASE)
  --timeout <seconds>       how long to wait for the network (default 30)
  --json                    machine-readable output
  --debug                   stack traces and network diagnostics on stderr
  -h, --help                show help
  -V, --version             show the version

Environment: DIM_HOME (data directory), DIM_PASSPHRASE (passphrase),
DIM_UPNP=off|on (UPnP port mapping; default: dim config upnp, else on),
DIM_LAN=off|on (LAN discovery over mDNS; default: dim config lan-discovery, else on)`;

const HELP = `dim ${VERSION} — serverless, end-to-end encrypted instant messaging

Usage: dim [options] <command> [arguments]

Commands:
  init (keygen)             create your identity (asks for a passphrase twice)
  id                        show your user ID, fingerprint and contact string
  contact add <name> <id>   find a contact's card in the network and pin its keys
  contact verify <name>     show the safety number to compare out of band
  contact list              list contacts: verified or not, last seen
  contact remove <name>     forget a contact
  send <name> <text>        send one message and exit
  inbox                     fetch and show new messages
  chat <name>               interactive chat
  group create <name> <contact>…   make a group; add|remove|leave|list|info
  send @<group> <text>      send to a group; chat @<group> to chat in it
  status                    reachability, relays, peers, addresses, DHT, outbox
  daemon                    stay online and serve the local API until Ctrl-C
  node                      run a bootstrap/storage/relay node until Ctrl-C
  config                    show or change the settings (bootstrap, listen,
                            public-networks, upnp, lan-discovery)

${GLOBAL_HELP}

Run dim <command> --help for a command's details. Exit codes: 0 success,
1 failure, 2 usage error, 3 queued (dim send reached no peer: the message
waits on this device and goes the next time dim connects).
`;

function commandHelp(spec: CommandSpec): string {
  return `Usage: ${spec.usage}\n\n${spec.summary[0]!.toUpperCase()}${
    spec.summary.slice(1)
  }.\n\n${spec.details}\n\n${GLOBAL_HELP}\n`;
}

function findCommand(name: string): CommandSpec | undefined {
  return COMMANDS.find((c) => c.name === name || c.aliases?.includes(name));
}

function globalOptions(cl: CommandLine): GlobalOptions {
  const v = cl.values;
  return {
    home: v.home,
    bootstrap: v.bootstrap ?? [],
    listen: v.listen ?? [],
    json: v.json ?? false,
    debug: v.debug ?? false,
    passphraseFile: v["passphrase-file"],
    timeoutSeconds: positiveNumber(v.timeout, "timeout", 30),
  };
}

function report(io: CliIo, err: unknown, debug: boolean, command: string | undefined): number {
  const { code, message } = describeError(err);
  io.stderr(`error: ${message}\n`);
  if (code === 2) io.stderr(`(see dim ${command ? `${command} ` : ""}--help)\n`);
  if (debug) {
    let e: unknown = err;
    for (let depth = 0; e !== undefined && depth < 8; depth++) {
      io.stderr(`${depth === 0 ? "" : "caused by: "}${e instanceof Error ? e.stack : String(e)}\n`);
      e = e instanceof Error ? e.cause : undefined;
    }
  }
  return code;
}

/**
 * Runs the CLI.
 *
 * @param args The command-line arguments (without the program name).
 * @param io The terminal; the real process by default.
 * @returns The exit code: 0 success, 1 failure, 2 usage error, 3 queued.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { main } from "./main.ts";
 * import { memoryIo } from "./io.ts";
 *
 * const io = memoryIo();
 * assert.equal(await main(["--version"], io), 0);
 * assert.ok(io.out.startsWith("dim "));
 * assert.equal(await main(["send", "--help"], io), 0);
 * assert.match(io.out, /Usage: dim send/);
 * ```
 */
export async function main(args: readonly string[], io: CliIo = denoIo()): Promise<number> {
  let cl: CommandLine;
  try {
    cl = parseCommandLine(args);
  } catch (err) {
    return report(io, err, args.includes("--debug"), undefined);
  }
  const debug = cl.values.debug ?? false;
  if (cl.values.version) {
    io.stdout(cl.values.json ? `${JSON.stringify({ version: VERSION })}\n` : `dim ${VERSION}\n`);
    return 0;
  }
  let command = cl.command;
  if (command === "help") {
    command = cl.positionals[0];
    if (command === undefined) {
      io.stdout(HELP);
      return 0;
    }
    cl = { ...cl, values: { ...cl.values, help: true } };
  }
  if (command === undefined) {
    if (cl.values.help) {
      io.stdout(HELP);
      return 0;
    }
    io.stderr(HELP);
    return 2;
  }
  const spec = findCommand(command);
  if (spec === undefined) {
    return report(io, new UsageError(`unknown command "${command}"`), debug, undefined);
  }
  if (cl.values.help) {
    io.stdout(commandHelp(spec));
    return 0;
  }
  try {
    checkOptions(cl, spec.options, spec.name);
    const ctx = new Context(io, globalOptions(cl));
    return await spec.run(ctx, cl);
  } catch (err) {
    return report(io, err, debug, spec.name);
  } finally {
    await io.releaseInput?.();
  }
}
