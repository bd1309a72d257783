/**
 * A small UPnP Internet gateway for tests: answers SSDP `M-SEARCH`, serves
 * a device description with one WANIPConnection:1 service, and implements
 * `GetExternalIPAddress`, `AddPortMapping` and `DeletePortMapping`.
 *
 * Two ways to use it:
 *
 * - In-process ({@linkcode startIgd}), on 127.0.0.1 with an in-memory
 *   backend and hooks that make it answer badly: `tests/platform/upnp_test.ts`.
 * - As a program inside a router namespace of the lab (`tests/reach/_lab.ts`),
 *   where each mapping is an nftables DNAT rule. Debian's `miniupnpd`
 *   cannot serve there: it refuses port forwarding when its external address
 *   is reserved, and the lab's internet is 198.18.0.0/15.
 *
 * ```sh
 * ip netns exec dimlab-…-home deno run -A tests/reach/_igd.ts \
 *   --wan wan --external-ip 198.18.101.1 --listen 192.168.1.1
 * ```
 *
 * The program creates the table `ip dim_igd` with a nat prerouting chain at
 * start; each mapping adds `iifname "<wan>" tcp dport <ext> dnat to
 * <client>:<port>` to it, a deletion or an expired lease removes that rule,
 * and SIGTERM, SIGINT or the end of stdin (a pipe) delete the table and exit 0. (The
 * router's forward filter must accept `ct status dnat`, as the lab's does.)
 * It writes one JSON line to stdout per event: `{"event":"ready",
 * "location":…}` first, then `added`, `deleted`, `expired` with the mapping.
 *
 * It refuses to run outside a namespace made with `ip netns add` (`ip netns
 * identify` names none in the host's own): it binds and sends only inside
 * namespaces a test made.
 *
 * @module
 */
import dgram from "node:dgram";
import { parseArgs } from "node:util";
import { SEARCH_TARGETS, SSDP_ADDRESS, SSDP_PORT } from "../../lib/platform/_ssdp.ts";

/** The one connection service this gateway offers. */
export const SERVICE_TYPE = "urn:schemas-upnp-org:service:WANIPConnection:1";
const DESCRIPTION_PATH = "/rootDesc.xml";
const CONTROL_PATH = "/ctl/IPConn";
/** A request body this gateway reads at most (a SOAP request is under 1 KiB). */
const MAX_REQUEST_BYTES = 16 * 1024;

/** A port mapping held by the gateway. */
export interface IgdMapping {
  readonly externalPort: number;
  readonly protocol: "TCP" | "UDP";
  readonly internalClient: string;
  readonly internalPort: number;
  readonly description: string;
  readonly leaseSeconds: number;
}

/** Where mappings take effect: nftables in a namespace, or nowhere (tests). */
export interface IgdBackend {
  /** Puts a mapping in place. */
  add(mapping: IgdMapping): Promise<void>;
  /** Takes a mapping away. */
  remove(mapping: IgdMapping): Promise<void>;
}

/** Options of {@linkcode startIgd}. */
export interface IgdOptions {
  /** The LAN address to serve HTTP and SSDP on. */
  readonly listen: string;
  /** What `GetExternalIPAddress` answers (changeable later through `igd.externalIp`). */
  readonly externalIp: string;
  /** HTTP port; default 0 (any). */
  readonly httpPort?: number;
  /** SSDP port; default 1900; 0 (any) for tests. */
  readonly ssdpPort?: number;
  /** Also answer searches sent to the multicast group (binds 0.0.0.0: namespaces only). */
  readonly multicast?: boolean;
  /** Where mappings take effect; default nowhere. */
  readonly backend?: IgdBackend;
  /** Called on each mapping event. */
  readonly onEvent?: (event: "added" | "deleted" | "expired", mapping: IgdMapping) => void;
  /**
   * Answers an HTTP request instead of the gateway when it returns a
   * response (tests of bad gateways); `body` is the request's, already read.
   */
  readonly respond?: (
    request: Request,
    action: string | undefined,
    closing: AbortSignal,
    body: string,
  ) => Response | undefined | Promise<Response | undefined>;
  /** The SSDP answer to send instead of the right one. */
  readonly ssdpAnswer?: (location: string, st: string) => string | Uint8Array;
  /** The device description to serve instead of the right one. */
  readonly description?: (controlPath: string) => string;
}

/** A running gateway. */
export interface Igd {
  /** The URL of its description. */
  readonly location: string;
  /** Its SSDP port. */
  readonly ssdpPort: number;
  /** The mappings in place, by `<protocol>:<external port>`. */
  readonly mappings: ReadonlyMap<string, IgdMapping>;
  /** What `GetExternalIPAddress` answers. */
  externalIp: string;
  /** Aborts when `close()` starts (hooks that stall wait for it). */
  readonly closing: AbortSignal;
  /** Removes every mapping and stops answering. */
  close(): Promise<void>;
}

/**
 * Starts the gateway.
 *
 * @param options Where to listen, what to answer, where mappings go.
 * @returns The running gateway.
 */
export async function startIgd(options: IgdOptions): Promise<Igd> {
  const backend = options.backend ?? { add: async () => {}, remove: async () => {} };
  const mappings = new Map<string, IgdMapping>();
  const leases = new Map<string, ReturnType<typeof setTimeout>>();
  const closing = new AbortController();
  let externalIp = options.externalIp;

  const drop = async (key: string, event: "deleted" | "expired") => {
    const mapping = mappings.get(key);
    if (mapping === undefined) return;
    clearTimeout(leases.get(key));
    leases.delete(key);
    mappings.delete(key);
    await backend.remove(mapping);
    options.onEvent?.(event, mapping);
  };

  const soapAction = async (action: string, args: Map<string, string>): Promise<Response> => {
    if (action === "GetExternalIPAddress") {
      return soapAnswer(action, { NewExternalIPAddress: externalIp });
    }
    const protocol = args.get("NewProtocol");
    const externalPort = port(args.get("NewExternalPort"));
    if ((protocol !== "TCP" && protocol !== "UDP") || externalPort === undefined) {
      return soapFault(402, "Invalid Args");
    }
    const key = `${protocol}:${externalPort}`;
    if (action === "DeletePortMapping") {
      if (!mappings.has(key)) return soapFault(714, "NoSuchEntryInArray");
      await drop(key, "deleted");
      return soapAnswer(action, {});
    }
    if (action !== "AddPortMapping") return soapFault(401, "Invalid Action");
    const internalPort = port(args.get("NewInternalPort"));
    const internalClient = args.get("NewInternalClient") ?? "";
    const leaseSeconds = Number(args.get("NewLeaseDuration") ?? "x");
    if (
      internalPort === undefined || !/^\d+\.\d+\.\d+\.\d+$/.test(internalClient) ||
      !Number.isInteger(leaseSeconds) || leaseSeconds < 0
    ) {
      return soapFault(402, "Invalid Args");
    }
    const old = mappings.get(key);
    if (old !== undefined && old.internalClient !== internalClient) {
      return soapFault(718, "ConflictInMappingEntry");
    }
    if (old !== undefined) await drop(key, "deleted");
    const mapping: IgdMapping = {
      externalPort,
      protocol,
      internalClient,
      internalPort,
      description: args.get("NewPortMappingDescription") ?? "",
      leaseSeconds,
    };
    await backend.add(mapping);
    mappings.set(key, mapping);
    if (leaseSeconds > 0) {
      leases.set(key, setTimeout(() => drop(key, "expired"), leaseSeconds * 1000));
    }
    options.onEvent?.("added", mapping);
    return soapAnswer(action, {});
  };

  const handler = async (request: Request): Promise<Response> => {
    const url = new URL(request.url);
    const action = /#(\w+)"?$/.exec(request.headers.get("soapaction") ?? "")?.[1];
    const body = request.method === "POST" ? await request.text() : "";
    if (body.length > MAX_REQUEST_BYTES) return new Response("too large", { status: 413 });
    const custom = await options.respond?.(request, action, closing.signal, body);
    if (custom !== undefined) return custom;
    if (request.method === "GET" && url.pathname === DESCRIPTION_PATH) {
      const xml = options.description?.(CONTROL_PATH) ?? description(CONTROL_PATH);
      return new Response(xml, { headers: { "content-type": 'text/xml; charset="utf-8"' } });
    }
    if (request.method !== "POST" || url.pathname !== CONTROL_PATH || action === undefined) {
      return new Response("not found", { status: 404 });
    }
    const args = new Map<string, string>();
    for (const m of body.matchAll(/<(New\w+)>([^<]*)<\/\1>/g)) args.set(m[1]!, unescape(m[2]!));
    return await soapAction(action, args);
  };

  const server = Deno.serve({
    hostname: options.listen,
    port: options.httpPort ?? 0,
    signal: closing.signal,
    onListen: () => {},
  }, handler);
  const location = `http://${options.listen}:${server.addr.port}${DESCRIPTION_PATH}`;

  const socket = dgram.createSocket({ type: "udp4", reuseAddr: true });
  socket.on("message", (message: Uint8Array, from: { address: string; port: number }) => {
    const text = new TextDecoder().decode(message);
    if (!text.startsWith("M-SEARCH * HTTP/1.1\r\n")) return;
    const st = /^ST:\s*(.+)$/im.exec(text)?.[1]?.trim() ?? "";
    if (st !== "ssdp:all" && !SEARCH_TARGETS.includes(st)) return;
    const answer = options.ssdpAnswer?.(location, st) ??
      `HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nEXT:\r\nST: ${st}\r\n` +
        `USN: uuid:00000000-0000-4000-8000-00000000d1a0::${st}\r\n` +
        `SERVER: Deno/2 UPnP/1.1 DIM-test-IGD/1\r\nLOCATION: ${location}\r\n\r\n`;
    const bytes = typeof answer === "string" ? new TextEncoder().encode(answer) : answer;
    socket.send(bytes, from.port, from.address);
  });
  await new Promise<void>((resolve, reject) => {
    socket.once("error", reject);
    const address = options.multicast ? "0.0.0.0" : options.listen;
    socket.bind({ address, port: options.ssdpPort ?? SSDP_PORT }, () => {
      socket.off("error", reject);
      socket.on("error", () => {});
      if (options.multicast) socket.addMembership(SSDP_ADDRESS, options.listen);
      resolve();
    });
  });

  let closed: Promise<void> | undefined;
  return {
    location,
    ssdpPort: socket.address().port,
    mappings,
    get externalIp() {
      return externalIp;
    },
    set externalIp(ip: string) {
      externalIp = ip;
    },
    closing: closing.signal,
    close() {
      closed ??= (async () => {
        closing.abort();
        socket.close();
        await server.finished;
        for (const key of [...mappings.keys()]) await drop(key, "deleted");
      })();
      return closed;
    },
  };
}

/** The device description: an InternetGatewayDevice with one WANIPConnection:1. */
export function description(controlPath: string, serviceType = SERVICE_TYPE): string {
  const service = (type: string, id: string, control: string) =>
    `<service><serviceType>${type}</serviceType><serviceId>urn:upnp-org:serviceId:${id}` +
    `</serviceId><controlURL>${control}</controlURL><eventSubURL>/evt/${id}</eventSubURL>` +
    `<SCPDURL>/${id}.xml</SCPDURL></service>`;
  const device = (type: string, name: string, inner: string) =>
    `<device><deviceType>urn:schemas-upnp-org:device:${type}</deviceType>` +
    `<friendlyName>${name}</friendlyName><manufacturer>DIM tests</manufacturer>` +
    `<modelName>test IGD</modelName><UDN>uuid:dim-test-${type.replace(/\W/g, "")}</UDN>` +
    `${inner}</device>`;
  const wanConnection = device(
    "WANConnectionDevice:1",
    "WAN connection",
    `<serviceList>${service(serviceType, "WANIPConn1", controlPath)}</serviceList>`,
  );
  const wan = device(
    "WANDevice:1",
    "WAN",
    `<serviceList>${
      service(
        "urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1",
        "WANCommonIFC1",
        "/ctl/CmnIfCfg",
      )
    }</serviceList><deviceList>${wanConnection}</deviceList>`,
  );
  return `<?xml version="1.0"?>\r\n<root xmlns="urn:schemas-upnp-org:device-1-0">` +
    `<specVersion><major>1</major><minor>1</minor></specVersion>` +
    device("InternetGatewayDevice:1", "DIM test gateway", `<deviceList>${wan}</deviceList>`) +
    `</root>\r\n`;
}

/** A SOAP answer carrying `values`. */
export function soapAnswer(action: string, values: Record<string, string>): Response {
  const inner = Object.entries(values).map(([k, v]) => `<${k}>${v}</${k}>`).join("");
  return xmlResponse(
    200,
    `<u:${action}Response xmlns:u="${SERVICE_TYPE}">${inner}</u:${action}Response>`,
  );
}

/** A SOAP fault with a UPnP error code. */
export function soapFault(code: number, text: string): Response {
  return xmlResponse(
    500,
    `<s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail>` +
      `<UPnPError xmlns="urn:schemas-upnp-org:control-1-0"><errorCode>${code}</errorCode>` +
      `<errorDescription>${text}</errorDescription></UPnPError></detail></s:Fault>`,
  );
}

function xmlResponse(status: number, body: string): Response {
  return new Response(
    `<?xml version="1.0"?>\r\n<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" ` +
      `s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>${body}</s:Body>` +
      `</s:Envelope>\r\n`,
    { status, headers: { "content-type": 'text/xml; charset="utf-8"' } },
  );
}

function port(text: string | undefined): number | undefined {
  const n = Number(text);
  return /^\d{1,5}$/.test(text ?? "") && n >= 1 && n <= 65535 ? n : undefined;
}

function unescape(text: string): string {
  return text.replace(
    /&(lt|gt|amp|quot|apos|#\d+);/g,
    (_, e: string) =>
      e.startsWith("#")
        ? String.fromCodePoint(Number(e.slice(1)))
        : ({ lt: "<", gt: ">", amp: "&", quot: '"', apos: "'" } as Record<string, string>)[e]!,
  );
}

/** Runs `nft` with `args` (and `stdin`), returning its stdout; throws on failure. */
async function nft(args: readonly string[], stdin?: string): Promise<string> {
  const child = new Deno.Command("nft", {
    args: [...args],
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(10_000),
  }).spawn();
  if (stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(stdin));
    await writer.close();
  }
  const out = await child.output();
  if (!out.success) {
    throw new Error(`nft ${args.join(" ")}: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
  return new TextDecoder().decode(out.stdout);
}

/**
 * Mappings as nftables DNAT rules in a table of their own, `ip <table>`.
 *
 * @param wan The outside interface: only packets coming in on it are forwarded.
 * @param table The table's name.
 * @returns The backend, and `start`/`stop` that create and delete the table.
 */
export function nftBackend(
  wan: string,
  table = "dim_igd",
): IgdBackend & { start(): Promise<void>; stop(): Promise<void> } {
  if (!/^[\w.-]{1,15}$/.test(wan) || !/^\w{1,32}$/.test(table)) {
    throw new TypeError(`Cannot use interface ${wan} or table ${table}`);
  }
  const handles = new Map<string, string>();
  const key = (m: IgdMapping) => `${m.protocol}:${m.externalPort}`;
  return {
    async start() {
      await nft(["delete", "table", "ip", table]).catch(() => {});
      // Before the lab's own nat chain (priority dstnat = -100), so the mapping wins.
      await nft(
        ["-f", "-"],
        `table ip ${table} {\n  chain prerouting {\n` +
          `    type nat hook prerouting priority -101; policy accept;\n  }\n}\n`,
      );
    },
    async stop() {
      handles.clear();
      await nft(["delete", "table", "ip", table]).catch(() => {});
    },
    async add(m) {
      const proto = m.protocol.toLowerCase();
      const out = await nft([
        "--echo",
        "--handle",
        "add",
        "rule",
        "ip",
        table,
        "prerouting",
        "iifname",
        wan,
        proto,
        "dport",
        String(m.externalPort),
        "dnat",
        "to",
        `${m.internalClient}:${m.internalPort}`,
      ]);
      const handle = /# handle (\d+)/.exec(out)?.[1];
      if (handle === undefined) throw new Error(`nft printed no rule handle: ${out.trim()}`);
      handles.set(key(m), handle);
    },
    async remove(m) {
      const handle = handles.get(key(m));
      if (handle === undefined) return;
      handles.delete(key(m));
      await nft(["delete", "rule", "ip", table, "prerouting", "handle", handle]);
    },
  };
}

/**
 * The name of the network namespace this process runs in, if it is one made
 * with `ip netns add` (as the lab's are); undefined in the host's own.
 */
async function namedNamespace(): Promise<string | undefined> {
  try {
    const out = await new Deno.Command("ip", { args: ["netns", "identify"], stderr: "null" })
      .output();
    const name = new TextDecoder().decode(out.stdout).trim();
    return out.success && name !== "" ? name : undefined;
  } catch {
    return undefined;
  }
}

async function main(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      wan: { type: "string" },
      "external-ip": { type: "string" },
      listen: { type: "string" },
      "http-port": { type: "string", default: "0" },
      "ssdp-port": { type: "string", default: String(SSDP_PORT) },
      table: { type: "string", default: "dim_igd" },
    },
  });
  const { wan, listen } = values;
  const externalIp = values["external-ip"];
  if (wan === undefined || listen === undefined || externalIp === undefined) {
    console.error("usage: _igd.ts --wan IFACE --external-ip A.B.C.D --listen A.B.C.D");
    return 2;
  }
  if (await namedNamespace() === undefined) {
    console.error("error: _igd.ts runs only inside a network namespace a test made");
    return 1;
  }
  const backend = nftBackend(wan, values.table);
  await backend.start();
  const print = (line: object) => console.log(JSON.stringify(line));
  let igd: Igd;
  try {
    igd = await startIgd({
      listen,
      externalIp,
      httpPort: Number(values["http-port"]),
      ssdpPort: Number(values["ssdp-port"]),
      multicast: true,
      backend,
      onEvent: (event, mapping) => print({ event, ...mapping }),
    });
  } catch (err) {
    await backend.stop();
    throw err;
  }
  print({ event: "ready", location: igd.location, ssdpPort: igd.ssdpPort });
  const stopped = Promise.withResolvers<string>();
  for (const sig of ["SIGTERM", "SIGINT"] as const) {
    Deno.addSignalListener(sig, () => stopped.resolve(sig));
  }
  // A pipe's end means the test let go (the lab closes stdin, then kills);
  // /dev/null or a terminal is no such signal.
  const stdin = await Deno.stat("/proc/self/fd/0").catch(() => undefined);
  if (stdin?.isFifo || stdin?.isSocket) {
    (async () => {
      for await (const _ of Deno.stdin.readable) { /* until the end of stdin */ }
      stopped.resolve("end of stdin");
    })().catch(() => stopped.resolve("stdin failed"));
  }
  await stopped.promise;
  await igd.close().catch((err) => console.error(`error: ${err}`));
  await backend.stop();
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
