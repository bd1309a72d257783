/**
 * What every command shares: the terminal, the global options, the data
 * directory and its settings, the passphrase, and opening the messenger.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Context } from "./context.ts";
 * import { memoryIo } from "./io.ts";
 *
 * const io = memoryIo({ env: { DIM_PASSPHRASE: "pw" } });
 * const ctx = new Context(io, { home: "/tmp/dim-example" });
 * assert.equal(ctx.home, "/tmp/dim-example");
 * assert.equal(await ctx.passphrase(), "pw");
 * ```
 *
 * @module
 */
import { DEFAULT_LISTEN } from "../dht/constants.ts";
import { pathExists } from "../platform/atomic_file.ts";
import { dataPaths, resolveHome } from "../platform/paths.ts";
import { PeerUnreachableError, WeakPassphraseError } from "../errors.ts";
import { createMessenger, type Messenger, sessionRollbackMessage } from "../messenger/messenger.ts";
import { openProfile, type Profile } from "../profile/profile.ts";
import { checkCidr, checkMultiaddr, type CliConfig, readConfig } from "./config.ts";
import { CliError, describeError, UsageError } from "./errors.ts";
import type { CliIo } from "./io.ts";
import { deadline } from "../platform/signals.ts";
import { withSpinner } from "./spinner.ts";

/** The environment variable holding the passphrase, for scripts. */
export const PASSPHRASE_ENV_VAR = "DIM_PASSPHRASE";

/**
 * The environment variable that turns UPnP port mapping off (`off`) or on
 * (`on`) whatever the settings say. Tests set it to `off`, so that no test
 * sends SSDP multicast on the host's real interfaces.
 */
export const UPNP_ENV_VAR = "DIM_UPNP";

/**
 * The environment variable that turns LAN discovery (mDNS) off (`off`) or
 * on (`on`) whatever the settings say. Tests set it to `off`, so that no
 * test sends mDNS on the host's real interfaces.
 */
export const LAN_ENV_VAR = "DIM_LAN";

/** How long networked waits last by default, in seconds. */
export const DEFAULT_TIMEOUT_S = 30;

/**
 * The exit code of a command that kept what the user wrote but could not
 * reach any peer: `dim send` queued the message on this device, and it goes
 * the next time DIM connects. Not a failure (1) nor a usage error (2).
 */
export const EXIT_QUEUED = 3;

/** How many times `dim init` asks again for a new passphrase that is too weak. */
export const NEW_PASSPHRASE_TRIES = 3;

/** Where a node listens unless told otherwise. */
export { DEFAULT_LISTEN };

/** The options every command takes. */
export interface GlobalOptions {
  /** `--home`: the data directory. Default: `DIM_HOME`, XDG, `~/.local/share/dim`. */
  readonly home?: string | undefined;
  /** `--bootstrap`: replaces the settings' bootstrap nodes when not empty. */
  readonly bootstrap?: readonly string[];
  /** `--listen`: replaces the settings' listen addresses when not empty. */
  readonly listen?: readonly string[];
  /** `--json`: machine-readable output. */
  readonly json?: boolean;
  /** `--debug`: stack traces and network diagnostics. */
  readonly debug?: boolean;
  /** `--passphrase-file`: read the passphrase from this file. */
  readonly passphraseFile?: string | undefined;
  /** `--timeout`: how long networked waits last, in seconds. Default 30. */
  readonly timeoutSeconds?: number;
}

/**
 * One command's view of the process and its options.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Context } from "./context.ts";
 * import { memoryIo } from "./io.ts";
 *
 * const ctx = new Context(memoryIo({ env: { DIM_HOME: "/srv/dim" } }), { json: true });
 * assert.equal(ctx.home, "/srv/dim");
 * assert.equal(ctx.timeoutMs, 30_000);
 * await assert.rejects(ctx.requireIdentity(), /no identity in \/srv\/dim/);
 * ```
 */
export class Context {
  /** The terminal. */
  readonly io: CliIo;
  /** The global options. */
  readonly options: GlobalOptions;
  #config: Promise<CliConfig> | undefined;
  #passphrase: string | undefined;

  /**
   * Makes a context.
   *
   * @param io The terminal.
   * @param options The global options.
   */
  constructor(io: CliIo, options: GlobalOptions = {}) {
    this.io = io;
    this.options = options;
  }

  /**
   * The data directory.
   *
   * @throws {StorageError} If no option or variable says where it is.
   */
  get home(): string {
    return resolveHome({ home: this.options.home, env: { get: (n) => this.io.env(n) } });
  }

  /** Whether output is JSON. */
  get json(): boolean {
    return this.options.json ?? false;
  }

  /** How long networked waits last, in ms. */
  get timeoutMs(): number {
    return (this.options.timeoutSeconds ?? DEFAULT_TIMEOUT_S) * 1000;
  }

  /**
   * Writes a line of results to stdout.
   *
   * @param line The line, without its line end.
   */
  out(line: string): void {
    this.io.stdout(line + "\n");
  }

  /**
   * Writes one JSON value on one line to stdout.
   *
   * @param value The value.
   */
  outJson(value: unknown): void {
    this.io.stdout(JSON.stringify(value) + "\n");
  }

  /**
   * Writes a diagnostic line to stderr.
   *
   * @param line The line, without its line end.
   */
  note(line: string): void {
    this.io.stderr(line + "\n");
  }

  /**
   * The settings file of the data directory (read once).
   *
   * @returns The settings.
   * @throws {StorageError} If the file is unreadable or malformed.
   */
  config(): Promise<CliConfig> {
    this.#config ??= readConfig(this.home);
    return this.#config;
  }

  /**
   * The bootstrap nodes: `--bootstrap` if given, else the settings'.
   *
   * @returns The multiaddrs.
   * @throws {UsageError} If one is malformed.
   */
  async bootstrap(): Promise<string[]> {
    const given = this.options.bootstrap ?? [];
    const list = given.length > 0 ? given : (await this.config()).bootstrap;
    return list.map((a) => checkMultiaddr(a, { peer: true }));
  }

  /**
   * The listen addresses: `--listen` if given, else the settings', else all interfaces.
   *
   * @returns The multiaddrs.
   * @throws {UsageError} If one is malformed.
   */
  async listen(): Promise<string[]> {
    const given = this.options.listen ?? [];
    const list = given.length > 0 ? given : (await this.config()).listen;
    return (list.length > 0 ? list : DEFAULT_LISTEN).map((a) => checkMultiaddr(a, { peer: false }));
  }

  /**
   * The networks that count as public besides libp2p's rule, from the settings.
   *
   * @returns The CIDRs.
   * @throws {UsageError} If one is malformed.
   */
  async publicNetworks(): Promise<string[]> {
    return ((await this.config()).publicNetworks ?? []).map(checkCidr);
  }

  /**
   * Whether to ask the router for a UPnP port mapping: `DIM_UPNP` (`on` or
   * `off`) if set, else the settings' `upnp`, else yes.
   *
   * @returns Whether UPnP is on.
   * @throws {UsageError} If `DIM_UPNP` is neither `on` nor `off`.
   */
  async upnp(): Promise<boolean> {
    return this.#onOff(UPNP_ENV_VAR) ?? (await this.config()).upnp ?? true;
  }

  /**
   * Whether to look for DIM peers on the local network over mDNS: `DIM_LAN`
   * (`on` or `off`) if set, else the settings' `lanDiscovery`, else yes.
   *
   * @returns Whether LAN discovery is on.
   * @throws {UsageError} If `DIM_LAN` is neither `on` nor `off`.
   */
  async lanDiscovery(): Promise<boolean> {
    return this.#onOff(LAN_ENV_VAR) ?? (await this.config()).lanDiscovery ?? true;
  }

  // An on/off environment variable; undefined when unset or empty.
  #onOff(name: string): boolean | undefined {
    const env = this.io.env(name);
    if (env === "off") return false;
    if (env === "on") return true;
    if (env !== undefined && env !== "") {
      throw new UsageError(`${name} must be on or off, not "${env}"`);
    }
    return undefined;
  }

  /**
   * Fails unless the data directory holds an identity.
   *
   * @throws {CliError} Suggesting `dim init` if there is none.
   */
  async requireIdentity(): Promise<void> {
    const home = this.home;
    if (!await pathExists(dataPaths(home).identityKey)) {
      throw new CliError(`no identity in ${home}: run \`dim init\` first (or pass --home)`);
    }
  }

  /**
   * Opens the profile of the data directory offline and locked, without
   * holding the directory's lock (a running dim may hold it), for commands
   * that need no network. The data directory must hold an identity.
   *
   * @returns The profile; stop it when done.
   * @throws {CliError} If there is no identity.
   * @throws {StorageError} If the database is unreadable.
   */
  async profile(): Promise<Profile> {
    await this.requireIdentity();
    return await openProfile({ home: this.home, exclusive: false });
  }

  /**
   * The passphrase of the identity: `DIM_PASSPHRASE`, else
   * `--passphrase-file`, else asked once with no echo.
   *
   * @returns The passphrase.
   * @throws {CliError} If none can be had.
   */
  async passphrase(): Promise<string> {
    if (this.#passphrase !== undefined) return this.#passphrase;
    const given = await this.#givenPassphrase();
    if (given !== undefined) return given;
    const typed = await this.io.readSecret(`Passphrase for ${this.home}: `);
    if (typed === undefined || typed === "") throw noPassphrase();
    return this.#passphrase = typed;
  }

  /**
   * A passphrase for a new identity: `DIM_PASSPHRASE`, else
   * `--passphrase-file`, else typed twice with no echo. `check` judges it
   * (strength): a typed one it refuses is asked again, up to
   * {@linkcode NEW_PASSPHRASE_TRIES} times, with its reason.
   *
   * @param check Rejects a passphrase that may not be used, with the reason.
   * @returns The passphrase.
   * @throws {CliError} If none is given or the two do not match.
   * @throws {WeakPassphraseError} If `check` refuses a given passphrase, or
   *   the last one typed.
   */
  async newPassphrase(check: (passphrase: string) => Promise<void> = async () => {}): Promise<
    string
  > {
    const given = await this.#givenPassphrase();
    if (given !== undefined) {
      await check(given);
      return given;
    }
    let first: string | undefined;
    for (let tries = 1;; tries++) {
      first = await this.io.readSecret("New passphrase: ");
      if (first === undefined || first === "") throw noPassphrase();
      try {
        await check(first);
        break;
      } catch (err) {
        if (!(err instanceof WeakPassphraseError) || tries === NEW_PASSPHRASE_TRIES) throw err;
        this.io.stderr(`${describeError(err).message}\n`);
      }
    }
    const second = await this.io.readSecret("Repeat the passphrase: ");
    if (second !== first) {
      throw new CliError("the two passphrases do not match; nothing was created");
    }
    // Asked once per command: going online right after `init` must not ask again.
    return this.#passphrase = first;
  }

  async #givenPassphrase(): Promise<string | undefined> {
    const env = this.io.env(PASSPHRASE_ENV_VAR);
    if (env !== undefined && env !== "") return env;
    const file = this.options.passphraseFile;
    if (file === undefined) return undefined;
    let text: string;
    try {
      text = await Deno.readTextFile(file);
    } catch (cause) {
      throw new CliError(`cannot read the passphrase file ${file}: ${(cause as Error).message}`, {
        cause,
      });
    }
    // One trailing line end is the file's, not the passphrase's.
    const passphrase = text.replace(/\r?\n$/, "");
    if (passphrase === "") throw new CliError(`the passphrase file ${file} is empty`);
    return passphrase;
  }

  /**
   * Unlocks the profile and starts the messenger on it: joins through the
   * bootstrap nodes and the peers known from earlier runs (failing if none
   * answers, unless `allowOffline`; a DIM peer found on the local network
   * counts), with the settings' public networks, UPnP and LAN discovery
   * unless turned off, publishes the contact card and starts messaging.
   * Shows a spinner meanwhile on a terminal.
   *
   * @param options `bootstrap`: nodes to use when none are configured or
   *   given; `allowOffline`: start even when no peer answers (see
   *   {@linkcode isOffline}), for commands that keep what the user writes.
   * @returns The running messenger; stop it when done.
   * @throws {CliError} If there is no identity, or no peer answers and
   *   `allowOffline` is not set.
   * @throws {UsageError} If a setting, `DIM_UPNP` or `DIM_LAN` is malformed.
   * @throws {KeystoreError} On a wrong passphrase or damaged identity file.
   * @throws {StorageError} If another dim process uses the data directory.
   */
  async openMessenger(
    options: { readonly bootstrap?: readonly string[]; readonly allowOffline?: boolean } = {},
  ): Promise<Messenger> {
    await this.requireIdentity();
    const configured = await this.bootstrap();
    const bootstrap = configured.length > 0 ? configured : [...(options.bootstrap ?? [])];
    const listen = await this.listen();
    const publicNetworks = await this.publicNetworks();
    const upnp = await this.upnp();
    const lanDiscovery = await this.lanDiscovery();
    const passphrase = await this.passphrase();
    const debug = this.options.debug ?? false;
    const log = (m: string) => this.io.stderr(`debug: ${m}\n`);
    let messenger: Messenger;
    try {
      messenger = await withSpinner(
        this.io,
        bootstrap.length > 0 || lanDiscovery ? "unlocking and joining the network…" : "unlocking…",
        async () =>
          await createMessenger(await openProfile({ home: this.home, passphrase }), {
            listen,
            bootstrap,
            publicNetworks,
            upnp,
            lanDiscovery,
            onSessionRollback: (rollback) =>
              this.note(`warning: ${sessionRollbackMessage(this.home, rollback)}`),
            // Files from verified or pinned contacts land here; strangers are refused.
            downloadDir: `${this.home}/files`,
            node: {
              requireBootstrap: bootstrap.length > 0 && options.allowOffline !== true,
              ...(debug ? { log } : {}),
            },
            ...(debug ? { messaging: { onPeerError: (e) => log(String(e)) } } : {}),
          }),
      );
    } catch (err) {
      if (err instanceof PeerUnreachableError) throw unreachable(bootstrap, err);
      throw err;
    }
    if (bootstrap.length === 0 && !this.json && messenger.node.connections === 0) {
      this.note(
        "note: no bootstrap nodes configured" +
          (lanDiscovery ? " and no DIM peer found on the local network" : "") +
          ", so this node is on its own " +
          "(use --bootstrap <multiaddr>, or dim config bootstrap <multiaddr>)",
      );
    }
    return messenger;
  }

  /**
   * Gives messages queued in earlier runs (on this device only, not yet in
   * the network) time to go before a short command stops its messenger: the
   * outbox tries them as soon as the messenger starts, and this waits until
   * each is delivered or stored in the network, at most
   * {@linkcode QUEUED_WAIT_MS} (or `--timeout` if shorter). Does nothing
   * offline or with nothing queued.
   *
   * @param messenger The running messenger.
   * @returns How many of them are still only on this device.
   */
  async sendQueued(messenger: Messenger): Promise<number> {
    const queued = messenger.profile.outbox().filter((m) => m.state === "pending");
    if (queued.length === 0 || isOffline(messenger)) return queued.length;
    using d = deadline(Math.min(this.timeoutMs, QUEUED_WAIT_MS));
    await withSpinner(
      this.io,
      `sending ${queued.length} queued message${queued.length === 1 ? "" : "s"}…`,
      () =>
        Promise.allSettled(
          queued.map((m) => messenger.waitFor(m.seq, { orStored: true, signal: d.signal })),
        ),
    );
    return messenger.profile.outbox().filter((m) => m.state === "pending").length;
  }
}

/**
 * How long a short command waits for messages queued in earlier runs before
 * it stops (see {@linkcode Context.sendQueued}), in ms: one delivery attempt
 * and one mailbox store, with room to spare.
 */
export const QUEUED_WAIT_MS = 15_000;

/**
 * Whether a messenger opened with `allowOffline` reached nobody: no peer,
 * bootstrap or known from an earlier run, answered its start dials, and no
 * peer dialed it meanwhile. With no bootstrap node configured and no peer
 * remembered, a node is offline too.
 *
 * @param messenger The running messenger.
 * @returns Whether it has no connection.
 */
export function isOffline(messenger: Messenger): boolean {
  return messenger.node.connections === 0;
}

/**
 * The error of a command that needs the network when nobody answered.
 *
 * @param bootstrap The bootstrap nodes tried.
 * @param cause What the node threw, if anything.
 * @returns The error to throw.
 */
export function unreachable(bootstrap: readonly string[], cause?: unknown): CliError {
  if (bootstrap.length === 0) {
    return new CliError(
      "no peer answered and no bootstrap node is configured " +
        "(use --bootstrap <multiaddr>, or dim config bootstrap <multiaddr>)",
      { cause },
    );
  }
  return new CliError(
    `cannot reach ${bootstrap.length === 1 ? "the bootstrap node" : "any of the bootstrap nodes"} ${
      bootstrap.join(", ")
    }: check the address and that the node is running`,
    { cause },
  );
}

function noPassphrase(): CliError {
  return new CliError(
    `no passphrase given: type it at the prompt, set ${PASSPHRASE_ENV_VAR}, or use --passphrase-file`,
  );
}
