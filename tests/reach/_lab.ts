/**
 * A small internet inside the test, built from Linux network namespaces:
 * one "internet" namespace with a bridge, public hosts on it (addresses from
 * the benchmarking range 198.18.0.0/15 only), NAT routers (nftables
 * masquerade on the outside interface, a forward filter that lets in only
 * answers), hosts behind them on RFC 1918 addresses, and carrier-grade NAT in
 * front of a home router. Programs run inside a host's namespace as child
 * processes (`ip netns exec NAME …`) with their output captured.
 *
 * Everything a lab makes is named `dimlab-<pid>-…`; {@linkcode Lab.close}
 * removes it (also on a failed test, and on SIGINT/SIGTERM), and a new lab
 * first removes what labs of dead processes left behind. It needs root,
 * `ip` and `nft`: {@linkcode labUnavailable} says why not, for a one-line skip.
 *
 * @module
 */

/** Every namespace of every lab starts with this. */
const PREFIX = "dimlab-";
/** The most namespaces one lab makes (a bound on what a failing test can leave). */
const MAX_NAMESPACES = 24;
/** How long one `ip`/`nft` command may take. */
const COMMAND_TIMEOUT_MS = 10_000;
/** How long a stopped child process gets before it is killed. */
const STOP_GRACE_MS = 3000;
/** Lines of a child's stderr kept for error reports. */
const STDERR_LINES = 200;

/** The internet's subnet: the benchmarking range, which no real network routes. */
export const INTERNET_CIDR = "198.18.0.0/15";

/** Output of a finished command. */
export interface Exec {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs a command to its end, with a time limit.
 *
 * @param args Program and arguments.
 * @param options `check` (default true) throws on a non-zero exit; `stdin` text.
 * @returns Exit code and output.
 * @throws {Error} If the command fails (with `check`) or takes too long.
 */
export async function exec(
  args: readonly string[],
  options: { readonly check?: boolean; readonly stdin?: string; readonly timeoutMs?: number } = {},
): Promise<Exec> {
  const cmd = new Deno.Command(args[0]!, {
    args: args.slice(1),
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(options.timeoutMs ?? COMMAND_TIMEOUT_MS),
  });
  const child = cmd.spawn();
  if (options.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(options.stdin));
    await w.close();
  }
  const out = await child.output();
  const result = {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
  if ((options.check ?? true) && result.code !== 0) {
    throw new Error(`${args.join(" ")} exited with ${result.code}: ${result.stderr.trim()}`);
  }
  return result;
}

/**
 * Why the lab cannot run here, or undefined if it can: it needs Linux, root,
 * and the `ip` and `nft` programs.
 *
 * @returns A reason in a few words, or undefined.
 */
export async function labUnavailable(): Promise<string | undefined> {
  if (Deno.build.os !== "linux") return "needs Linux network namespaces";
  if (Deno.uid() !== 0) return "needs root (network namespaces, nftables)";
  for (const tool of ["ip", "nft"]) {
    try {
      await exec([tool, "-V"], { timeoutMs: 5000 });
    } catch {
      return `needs the \`${tool}\` program (apt-get install ${
        tool === "ip" ? "iproute2" : "nftables"
      })`;
    }
  }
  return undefined;
}

/**
 * Whether the tests of a file must be skipped because the lab cannot run
 * here; the first file to ask says why, in one line on stderr.
 *
 * @returns `ignore` for `Deno.test`.
 */
export async function skipUnlessLab(): Promise<boolean> {
  const reason = await labUnavailable();
  // One line for the whole run, said by the first file (each test file has
  // its own module instance; the environment is the process's).
  if (reason !== undefined && Deno.env.get(SKIP_SAID) === undefined) {
    Deno.env.set(SKIP_SAID, "1");
    console.error(`tests/reach: skipped, the NAT lab ${reason}`);
  }
  return reason !== undefined;
}
const SKIP_SAID = "DIM_REACH_SKIP_SAID";

/** A process started in a namespace. */
export class LabProcess {
  readonly #child: Deno.ChildProcess;
  readonly #stderr: string[] = [];
  readonly #stderrDone: Promise<void>;
  readonly #lines: AsyncGenerator<string>;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  /** The process's exit status, once it has exited. */
  readonly status: Promise<Deno.CommandStatus>;
  #exited = false;

  /** The host it runs on. */
  readonly host: Host;

  /** @ignore */
  constructor(host: Host, child: Deno.ChildProcess) {
    this.host = host;
    this.#child = child;
    this.#writer = child.stdin.getWriter();
    this.status = child.status.then((s) => {
      this.#exited = true;
      return s;
    });
    this.#lines = lines(child.stdout);
    this.#stderrDone = (async () => {
      for await (const line of lines(child.stderr)) {
        this.#stderr.push(line);
        if (this.#stderr.length > STDERR_LINES) this.#stderr.shift();
      }
    })().catch(() => {});
  }

  /** The process ID (of `ip netns exec`, which execs the program). */
  get pid(): number {
    return this.#child.pid;
  }

  /** Whether it has exited. */
  get exited(): boolean {
    return this.#exited;
  }

  /** The last lines it wrote to stderr. */
  get stderr(): string {
    return this.#stderr.join("\n");
  }

  /** Its stdout, line by line (one reader only). */
  get stdout(): AsyncGenerator<string> {
    return this.#lines;
  }

  /**
   * Writes one line to its stdin.
   *
   * @param line Text without the newline.
   */
  async writeLine(line: string): Promise<void> {
    await this.#writer.write(new TextEncoder().encode(line + "\n"));
  }

  /**
   * Sends a signal (SIGKILL kills it at once: "the relay's machine died").
   *
   * @param signal The signal.
   */
  kill(signal: Deno.Signal = "SIGKILL"): void {
    if (this.#exited) return;
    try {
      this.#child.kill(signal);
    } catch { /* already gone */ }
  }

  /** Closes its stdin, waits a little, then kills it; resolves when it has exited. */
  async stop(): Promise<Deno.CommandStatus> {
    await this.#writer.close().catch(() => {});
    const timer = setTimeout(() => this.kill("SIGKILL"), STOP_GRACE_MS);
    try {
      const s = await this.status;
      await this.#stderrDone;
      return s;
    } finally {
      clearTimeout(timer);
      // Unread stdout must not hold resources past the test.
      await this.#lines.return(undefined).catch(() => {});
    }
  }
}

async function* lines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let rest = "";
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  try {
    while (true) {
      const { value, done } = await reader.read();
      if (done) break;
      rest += value;
      let i;
      while ((i = rest.indexOf("\n")) >= 0) {
        yield rest.slice(0, i);
        rest = rest.slice(i + 1);
      }
    }
    if (rest) yield rest;
  } finally {
    await reader.cancel().catch(() => {});
  }
}

/** A machine of the lab: one network namespace with one outside interface. */
export interface Host {
  /** Its short name in the test. */
  readonly name: string;
  /** Its namespace. */
  readonly ns: string;
  /** Its IPv4 address on its own network (public for public hosts, RFC 1918 behind a NAT). */
  readonly address: string;
  /** The lab it belongs to. */
  readonly lab: Lab;
}

/** A NAT router: a host with a LAN behind it. */
export interface Router extends Host {
  /** The address of its LAN side, the gateway of the hosts behind it. */
  readonly lanAddress: string;
  /** The LAN's first three octets, e.g. "192.168.3". */
  readonly lanPrefix: string;
  /** Its LAN bridge's name in its namespace. */
  readonly lanDevice: string;
  /** Its outside interface's name. */
  readonly wanDevice: string;
}

/** Options of {@linkcode Lab.router}. */
export interface RouterOptions {
  /** `masquerade random,fully-random`: a new random port for every flow. */
  readonly randomPorts?: boolean;
  /**
   * The router in front of this one (carrier-grade NAT): this router's
   * outside interface is on that router's LAN. Default: on the internet.
   */
  readonly behind?: Router;
  /** The LAN's first two octets. Default "192.168" (a carrier's is "100.64"). */
  readonly lanNet?: string;
}

/**
 * One test's internet. Create with {@linkcode Lab.create}, dispose at the end
 * (`await using lab = await Lab.create()`).
 */
export class Lab implements AsyncDisposable {
  /** This lab's namespace prefix, `dimlab-<pid>-<n>-`. */
  readonly prefix: string;
  readonly #internet: string;
  readonly #namespaces: string[] = [];
  readonly #processes: LabProcess[] = [];
  readonly #onSignal = () => {
    this.close().finally(() => Deno.exit(130));
  };
  #links = 0;
  #publicHosts = 0;
  #lans = 0;
  #closed: Promise<void> | undefined;
  static #count = 0;

  private constructor(prefix: string) {
    this.prefix = prefix;
    this.#internet = `${prefix}net`;
  }

  /**
   * Makes the internet namespace and its bridge, after removing what labs of
   * dead processes left behind.
   *
   * @returns The lab.
   */
  static async create(): Promise<Lab> {
    await removeStale();
    const lab = new Lab(`${PREFIX}${Deno.pid}-${Lab.#count++}-`);
    for (const sig of ["SIGINT", "SIGTERM"] as const) {
      Deno.addSignalListener(sig, lab.#onSignal);
    }
    try {
      await lab.#addNamespace(lab.#internet);
      await lab.#ip(lab.#internet, "link", "add", "br0", "type", "bridge");
      await lab.#ip(lab.#internet, "link", "set", "br0", "up");
    } catch (err) {
      await lab.close();
      throw err;
    }
    return lab;
  }

  /** The namespaces it made so far. */
  get namespaces(): readonly string[] {
    return this.#namespaces;
  }

  async #addNamespace(ns: string): Promise<void> {
    if (this.#closed) throw new Error("The lab is closed");
    if (this.#namespaces.length >= MAX_NAMESPACES) {
      throw new Error(`A lab makes at most ${MAX_NAMESPACES} namespaces`);
    }
    await exec(["ip", "netns", "add", ns]);
    this.#namespaces.push(ns);
    await this.#ip(ns, "link", "set", "lo", "up");
  }

  #ip(ns: string, ...args: string[]): Promise<Exec> {
    return exec(["ip", "-n", ns, ...args]);
  }

  /**
   * Runs a command in a namespace to its end.
   *
   * @param host Where.
   * @param args Program and arguments.
   * @param options `check`: throw on a non-zero exit (default true); `stdin`.
   * @returns Its exit code and output.
   */
  exec(
    host: Host,
    args: readonly string[],
    options: { readonly check?: boolean; readonly stdin?: string; readonly timeoutMs?: number } =
      {},
  ): Promise<Exec> {
    return exec(["ip", "netns", "exec", host.ns, ...args], options);
  }

  /**
   * Loads an nftables ruleset into a host's namespace.
   *
   * @param host Where.
   * @param ruleset nft script text.
   */
  async nft(host: Host, ruleset: string): Promise<void> {
    await this.exec(host, ["nft", "-f", "-"], { stdin: ruleset });
  }

  /** Connects a new namespace to a bridge in another one by a veth pair. */
  async #plug(ns: string, device: string, segmentNs: string, bridge: string): Promise<void> {
    const outer = `v${this.#links++}`;
    await this.#ip(
      segmentNs,
      "link",
      "add",
      outer,
      "type",
      "veth",
      "peer",
      "name",
      device,
      "netns",
      ns,
    );
    await this.#ip(segmentNs, "link", "set", outer, "master", bridge, "up");
    await this.#ip(ns, "link", "set", device, "up");
  }

  /**
   * A host on the internet, with an address of its own /24 in 198.18.0.0/15.
   *
   * @param name Its short name.
   * @returns The host.
   */
  async publicHost(name: string): Promise<Host> {
    const n = ++this.#publicHosts;
    const host = { name, ns: `${this.prefix}${name}`, address: `198.18.${n}.10`, lab: this };
    await this.#addNamespace(host.ns);
    await this.#plug(host.ns, "eth0", this.#internet, "br0");
    await this.#ip(host.ns, "addr", "add", `${host.address}/15`, "dev", "eth0");
    return host;
  }

  /**
   * A NAT router: its outside interface on the internet (or on the LAN of the
   * router given as `behind`), masquerade there, and a forward filter that
   * lets in only answers (and what a port mapping forwards).
   *
   * @param name Its short name.
   * @param options Port mapping behaviour and what is in front of it.
   * @returns The router.
   */
  async router(name: string, options: RouterOptions = {}): Promise<Router> {
    const ns = `${this.prefix}${name}`;
    const k = ++this.#lans;
    const lanPrefix = `${options.lanNet ?? "192.168"}.${k}`;
    await this.#addNamespace(ns);
    let address: string;
    if (options.behind) {
      address = await this.#behind(options.behind, ns, "wan");
    } else {
      address = `198.18.${100 + k}.1`;
      await this.#plug(ns, "wan", this.#internet, "br0");
      await this.#ip(ns, "addr", "add", `${address}/15`, "dev", "wan");
    }
    await this.#ip(ns, "link", "add", "lan", "type", "bridge");
    await this.#ip(ns, "addr", "add", `${lanPrefix}.1/24`, "dev", "lan");
    await this.#ip(ns, "link", "set", "lan", "up");
    await exec(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    const router: Router = {
      name,
      ns,
      address,
      lab: this,
      lanAddress: `${lanPrefix}.1`,
      lanPrefix,
      lanDevice: "lan",
      wanDevice: "wan",
    };
    await this.nft(router, natRuleset(options.randomPorts ?? false));
    return router;
  }

  /** Plugs a namespace into a router's LAN; returns its address there. */
  async #behind(router: Router, ns: string, device: string): Promise<string> {
    const used = this.#hostsOn.get(router.ns) ?? 10;
    this.#hostsOn.set(router.ns, used + 1);
    const address = `${router.lanPrefix}.${used}`;
    await this.#plug(ns, device, router.ns, router.lanDevice);
    await this.#ip(ns, "addr", "add", `${address}/24`, "dev", device);
    await this.#ip(ns, "route", "add", "default", "via", router.lanAddress);
    return address;
  }
  readonly #hostsOn = new Map<string, number>();

  /**
   * A host on a router's LAN, with a private address and the router as its gateway.
   *
   * @param router The router.
   * @param name Its short name.
   * @returns The host.
   */
  async hostBehind(router: Router, name: string): Promise<Host> {
    const ns = `${this.prefix}${name}`;
    await this.#addNamespace(ns);
    const address = await this.#behind(router, ns, "eth0");
    return { name, ns, address, lab: this };
  }

  /**
   * Starts a program in a host's namespace, stdin/stdout piped, stderr kept.
   * The lab kills it on close.
   *
   * @param host Where.
   * @param args Program and arguments.
   * @param env Extra environment variables.
   * @returns The running process.
   */
  spawn(host: Host, args: readonly string[], env: Record<string, string> = {}): LabProcess {
    if (this.#closed) throw new Error("The lab is closed");
    const child = new Deno.Command("ip", {
      args: ["netns", "exec", host.ns, ...args],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1", ...env },
    }).spawn();
    const p = new LabProcess(host, child);
    this.#processes.push(p);
    return p;
  }

  /**
   * Cuts a host off: from now on its namespace drops every packet in and out
   * (its processes keep running; open connections go silent, as behind a
   * hostile or broken relay).
   *
   * @param host The host.
   */
  async blackhole(host: Host): Promise<void> {
    await this.nft(
      host,
      `table inet dimlab_blackhole {
  chain input { type filter hook input priority -100; policy drop; iifname "lo" accept; }
  chain output { type filter hook output priority -100; policy drop; oifname "lo" accept; }
}
`,
    );
  }

  /**
   * Undoes {@linkcode Lab.blackhole}.
   *
   * @param host The host.
   */
  async restore(host: Host): Promise<void> {
    await this.exec(host, ["nft", "delete", "table", "inet", "dimlab_blackhole"], { check: false });
  }

  /**
   * Kills every process it started and removes every namespace it made
   * (which removes their interfaces and rules). Idempotent; never throws.
   */
  close(): Promise<void> {
    this.#closed ??= this.#close();
    return this.#closed;
  }

  async #close(): Promise<void> {
    for (const sig of ["SIGINT", "SIGTERM"] as const) {
      try {
        Deno.removeSignalListener(sig, this.#onSignal);
      } catch { /* not added */ }
    }
    for (const p of this.#processes) p.kill("SIGKILL");
    await Promise.all(this.#processes.map((p) => p.stop().catch(() => {})));
    for (const ns of [...this.#namespaces].reverse()) await removeNamespace(ns);
    this.#namespaces.length = 0;
  }

  /** Same as {@linkcode Lab.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** The router's rules: masquerade out of `wan`; forward only answers and what the LAN sends. */
function natRuleset(randomPorts: boolean): string {
  // A port mapping (tests/reach/_igd.ts) adds dnat rules to nat/prerouting;
  // the forward filter lets DNATed flows through.
  return `table ip nat {
  chain prerouting { type nat hook prerouting priority dstnat; policy accept; }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "wan" masquerade${randomPorts ? " random,fully-random" : ""}
  }
}
table ip filter {
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    ct status dnat accept
    iifname "lan" accept
  }
}
`;
}

/** Kills what still runs in a namespace and removes it. */
async function removeNamespace(ns: string): Promise<void> {
  const pids = await exec(["ip", "netns", "pids", ns], { check: false });
  for (const pid of pids.stdout.split(/\s+/).filter(Boolean)) {
    try {
      Deno.kill(Number(pid), "SIGKILL");
    } catch { /* gone */ }
  }
  await exec(["ip", "netns", "del", ns], { check: false });
}

/** Removes namespaces of labs whose process has exited. */
async function removeStale(): Promise<void> {
  const list = await exec(["ip", "netns", "list"], { check: false });
  for (const line of list.stdout.split("\n")) {
    const ns = line.split(" ")[0] ?? "";
    const m = /^dimlab-(\d+)-/.exec(ns);
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid !== Deno.pid && !alive(pid)) await removeNamespace(ns);
  }
}

function alive(pid: number): boolean {
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch {
    return false;
  }
}

/** Names of all namespaces of all labs (for the cleanup check). */
export async function labNamespaces(): Promise<string[]> {
  const list = await exec(["ip", "netns", "list"], { check: false });
  return list.stdout.split("\n").map((l) => l.split(" ")[0] ?? "").filter((n) =>
    n.startsWith(PREFIX)
  );
}
