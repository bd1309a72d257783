/**
 * A UPnP IGD port-mapping client of DIM's own: asks the home router to
 * forward a TCP port to this machine, so a node behind NAT can be dialed
 * directly.
 *
 * Why not `@libp2p/upnp-nat`: it decides by libp2p's rule that a reserved
 * external address (198.18.0.0/15, 100.64.0.0/10, …) means a double NAT and
 * refuses it, even when configured; DIM decides what counts as public itself
 * (its public-networks setting), so the caller passes `isPublic`. The IGD
 * client it builds on (`@achingbrain/nat-port-mapper`) reads answers without
 * a size limit and brings an XML library and a logger; this module is the
 * three steps DIM needs and nothing more:
 *
 * 1. SSDP discovery: an `M-SEARCH` over UDP (`node:dgram`) for an Internet
 *    gateway, to the multicast group 239.255.255.250:1900 or, with
 *    `gateway`, to that one address (no multicast at all). The first answer
 *    whose `LOCATION` is an `http:` URL on the answering host wins.
 * 2. The device description (XML, fetched from `LOCATION`): the control URL
 *    of its WANIPConnection (v2 or v1) or WANPPPConnection service, which
 *    must lie on the same host.
 * 3. SOAP calls to that URL: `GetExternalIPAddress`, `AddPortMapping` (TCP,
 *    to the local address that reaches the gateway, with a lease and the
 *    description "DIM") and `DeletePortMapping`.
 *
 * Every answer is read with a size limit and a time limit (`timeoutMs` per
 * step), parsed strictly (a small XML reader for just these documents: no
 * DOCTYPE, bounded depth and element count), and anything else fails with
 * a {@linkcode PortMappingError} whose `code` says which way it failed.
 * Only IPv4: IGD's WANIPConnection maps IPv4 ports. The search lives in
 * `_ssdp.ts`, the XML reader in `_xml.ts`. It needs `--allow-net` (UDP,
 * HTTP, and one TCP connection to learn the local address) and was tested
 * against `tests/reach/_igd.ts`, not yet against a real router.
 *
 * The client never renews on its own: the caller calls `renew()` within
 * the lease (half of it is a good time) and `release()` when it stops.
 *
 * @example Mapping a node's listening port (not run: needs a router)
 * ```ts ignore
 * import { createPortMapper } from "./upnp.ts";
 *
 * const mapper = createPortMapper({ isPublic: (ip) => !ip.startsWith("10.") });
 * const mapping = await mapper.map({ internalPort: 4001 });
 * console.log(`/ip4/${mapping.externalIp}/tcp/${mapping.externalPort}`);
 * // … every mapping.leaseSeconds / 2 seconds: await mapping.renew();
 * await mapping.release();
 * ```
 *
 * @module
 */
import { raceSignal as race } from "race-signal";
import { PortMappingError } from "../errors.ts";
import { searchGateway, SSDP_ADDRESS, SSDP_PORT } from "./_ssdp.ts";
import { childText, descendants, escapeXml, parseXml, type XmlElement } from "./_xml.ts";
import { deadline, scopedSignal } from "./signals.ts";

/** The connection services that map ports, the preferred first. */
const SERVICE_TYPES = [
  "urn:schemas-upnp-org:service:WANIPConnection:2",
  "urn:schemas-upnp-org:service:WANIPConnection:1",
  "urn:schemas-upnp-org:service:WANPPPConnection:1",
] as const;
/**
 * The time limit of each step (the SSDP wait, each HTTP exchange), in ms:
 * a gateway on the LAN answers in milliseconds; 3 s leaves room for a slow
 * router CPU, and a whole `map()` (four steps) stays under 15 s.
 */
export const DEFAULT_TIMEOUT_MS = 3_000;
/** Device descriptions seen on routers are 3–20 KiB; this leaves room and bounds memory. */
const MAX_DESCRIPTION_BYTES = 128 * 1024;
/** A SOAP answer or fault is under 1 KiB. */
const MAX_SOAP_BYTES = 16 * 1024;
/**
 * The lease asked for, in seconds: a router forgets the mapping of a
 * machine that vanished within the hour; the caller renews at half of it.
 */
export const DEFAULT_LEASE_SECONDS = 3_600;
/** What the router's mapping table shows for DIM's mappings. */
export const MAPPING_DESCRIPTION = "DIM";
/**
 * UPnP error 718 (ConflictInMappingEntry): the external port is taken (by
 * another machine, say another DIM user at home). Without a fixed
 * `externalPort`, this many random ports are tried after the first.
 */
const CONFLICT_RETRIES = 3;
const UPNP_CONFLICT = 718;
/** UPnP error 725 (OnlyPermanentLeasesSupported): the router takes lease 0 only. */
const UPNP_PERMANENT_ONLY = 725;
/** UPnP error 714 (NoSuchEntryInArray): deleting a mapping that is gone already. */
const UPNP_NO_SUCH_ENTRY = 714;

/** Options of {@linkcode createPortMapper}. */
export interface PortMapperOptions {
  /**
   * The gateway to ask, `"a.b.c.d"` or `"a.b.c.d:port"` (port default
   * 1900): the M-SEARCH goes to it alone, by unicast. Default: the SSDP
   * multicast group.
   */
  readonly gateway?: string;
  /**
   * The local IPv4 address to search from and to map to. Default: any for
   * the search; for the mapping, the local address of a TCP connection to
   * the gateway.
   */
  readonly interfaceAddress?: string;
  /** Whether an external IPv4 address is public (DIM's public-networks setting). */
  readonly isPublic: (ip: string) => boolean;
  /** Ends every call of this mapper (its owner stops). */
  readonly signal?: AbortSignal;
  /** The time limit of each step, in ms. Default {@linkcode DEFAULT_TIMEOUT_MS}. */
  readonly timeoutMs?: number;
}

/** The gateway a mapper found. */
export interface Gateway {
  /** The URL of its device description (the SSDP `LOCATION`). */
  readonly location: string;
  /** The URL its SOAP calls go to. */
  readonly controlUrl: string;
  /** The connection service's type, e.g. `urn:schemas-upnp-org:service:WANIPConnection:1`. */
  readonly serviceType: string;
  /** This machine's address towards the gateway: what mappings point to. */
  readonly localAddress: string;
}

/** What to map. */
export interface MapRequest {
  /** The local TCP port. */
  readonly internalPort: number;
  /**
   * The external port wanted. Default: `internalPort`, or a random port
   * when that one is taken; given, a taken port fails with code "refused".
   */
  readonly externalPort?: number;
  /** The lease in seconds (0: until deleted). Default {@linkcode DEFAULT_LEASE_SECONDS}. */
  readonly leaseSeconds?: number;
  /** Cancels the call. */
  readonly signal?: AbortSignal;
}

/** A port mapping in place on the gateway. */
export interface PortMapping {
  /** The gateway's external IPv4 address, as last read (`renew()` reads it again). */
  readonly externalIp: string;
  /** The external TCP port. */
  readonly externalPort: number;
  /** The local address the gateway forwards to. */
  readonly internalClient: string;
  /** The local TCP port. */
  readonly internalPort: number;
  /** The lease granted in seconds; 0 when the gateway takes only permanent mappings. */
  readonly leaseSeconds: number;
  /**
   * Asks for the mapping again (a new lease) and reads the external address
   * again; compare `externalIp` before and after to see a change.
   *
   * @throws {PortMappingError} As `map()` does; code "not-public" if the external address changed to a non-public one.
   */
  renew(options?: { readonly signal?: AbortSignal }): Promise<void>;
  /**
   * Deletes the mapping; a second call, or a mapping the gateway forgot, is
   * no error.
   *
   * @throws {PortMappingError} When the gateway cannot be reached or refuses.
   */
  release(options?: { readonly signal?: AbortSignal }): Promise<void>;
}

/** A UPnP port mapper: finds the gateway once, then maps ports through it. */
export interface PortMapper {
  /**
   * Finds the gateway (once; a failure is retried on the next call).
   *
   * @throws {PortMappingError} Codes "no-gateway", "timeout", "unreachable", "malformed", "too-large".
   */
  discover(options?: { readonly signal?: AbortSignal }): Promise<Gateway>;
  /**
   * Reads the external address, checks that it is public, then maps the port.
   *
   * @throws {PortMappingError} Any code; "not-public" (nothing is mapped then) when `isPublic` rejects the external address.
   */
  map(request: MapRequest): Promise<PortMapping>;
}

/**
 * Makes a port mapper. Nothing is sent until `discover()` or `map()`.
 *
 * @param options The gateway to ask, the public-address rule, the time limit.
 * @returns The mapper.
 * @throws {TypeError} When `gateway` or `interfaceAddress` is not an IPv4 address.
 * @example A mapper whose owner stopped sends nothing
 * ```ts
 * import assert from "node:assert/strict";
 * import { createPortMapper } from "./upnp.ts";
 *
 * const stopped = AbortSignal.abort(new Error("stopping"));
 * const mapper = createPortMapper({ isPublic: () => true, gateway: "127.0.0.1", signal: stopped });
 * await assert.rejects(mapper.map({ internalPort: 4001 }), /stopping/);
 * ```
 */
export function createPortMapper(options: PortMapperOptions): PortMapper {
  const target = parseGateway(options.gateway);
  if (options.interfaceAddress !== undefined && !isIpv4(options.interfaceAddress)) {
    throw new TypeError(`Cannot use interface address ${options.interfaceAddress}: not IPv4`);
  }
  const ms = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  let found: Promise<Gateway> | undefined;

  const step = <T>(
    action: string,
    signal: AbortSignal | undefined,
    work: (signal: AbortSignal) => Promise<T>,
  ) => bounded(action, ms, [options.signal, signal], work);

  const discover = (signal?: AbortSignal): Promise<Gateway> => {
    if (found !== undefined) return found;
    const finding = findGateway(target, options.interfaceAddress, step, signal);
    found = finding;
    finding.catch(() => {
      if (found === finding) found = undefined;
    });
    return finding;
  };

  const call = async (
    action: string,
    args: readonly (readonly [string, string])[],
    signal: AbortSignal | undefined,
  ) => {
    const gateway = await discover(signal);
    try {
      return await step(`call ${action}`, signal, (s) => soap(gateway, action, args, s));
    } catch (err) {
      // A gateway that stopped answering may have moved: search again next time.
      const code = err instanceof PortMappingError ? err.code : undefined;
      if (code === "timeout" || code === "unreachable") found = undefined;
      throw err;
    }
  };

  const externalIp = async (signal: AbortSignal | undefined) => {
    const ip = (await call("GetExternalIPAddress", [], signal)).get("NewExternalIPAddress") ?? "";
    if (!isIpv4(ip) || ip === "0.0.0.0") {
      throw new PortMappingError(
        "malformed",
        `Cannot map port: the gateway's external address is ${JSON.stringify(ip.slice(0, 40))}`,
      );
    }
    if (!options.isPublic(ip)) {
      throw new PortMappingError(
        "not-public",
        `Cannot map port: the gateway's external address ${ip} is not public (double NAT)`,
      );
    }
    return ip;
  };

  const add = async (
    internalClient: string,
    internalPort: number,
    externalPort: number,
    lease: number,
    signal: AbortSignal | undefined,
  ): Promise<number> => {
    const args = (lease: number) =>
      [
        ["NewRemoteHost", ""],
        ["NewExternalPort", String(externalPort)],
        ["NewProtocol", "TCP"],
        ["NewInternalPort", String(internalPort)],
        ["NewInternalClient", internalClient],
        ["NewEnabled", "1"],
        ["NewPortMappingDescription", MAPPING_DESCRIPTION],
        ["NewLeaseDuration", String(lease)],
      ] as const;
    try {
      await call("AddPortMapping", args(lease), signal);
      return lease;
    } catch (err) {
      if (!(err instanceof PortMappingError) || err.upnpCode !== UPNP_PERMANENT_ONLY) throw err;
      await call("AddPortMapping", args(0), signal);
      return 0;
    }
  };

  const map = async (request: MapRequest): Promise<PortMapping> => {
    const { internalPort, signal } = request;
    checkPort(internalPort, "internal");
    if (request.externalPort !== undefined) checkPort(request.externalPort, "external");
    const wantedLease = request.leaseSeconds ?? DEFAULT_LEASE_SECONDS;
    if (!Number.isInteger(wantedLease) || wantedLease < 0 || wantedLease > 604_800) {
      throw new RangeError(`Cannot map port: lease ${wantedLease} s is not 0…604800`);
    }
    const gateway = await discover(signal);
    let ip = await externalIp(signal);
    const internalClient = gateway.localAddress;
    let externalPort = request.externalPort ?? internalPort;
    let lease = wantedLease;
    for (let attempt = 0;; attempt++) {
      try {
        lease = await add(internalClient, internalPort, externalPort, wantedLease, signal);
        break;
      } catch (err) {
        const taken = err instanceof PortMappingError && err.upnpCode === UPNP_CONFLICT;
        if (!taken || request.externalPort !== undefined || attempt >= CONFLICT_RETRIES) throw err;
        externalPort = randomPort();
      }
    }
    let released = false;
    return {
      get externalIp() {
        return ip;
      },
      externalPort,
      internalClient,
      internalPort,
      get leaseSeconds() {
        return lease;
      },
      async renew(options) {
        if (released) throw new PortMappingError("refused", "Cannot renew mapping: released");
        lease = await add(internalClient, internalPort, externalPort, wantedLease, options?.signal);
        ip = await externalIp(options?.signal);
      },
      async release(options) {
        if (released) return;
        const args = [
          ["NewRemoteHost", ""],
          ["NewExternalPort", String(externalPort)],
          ["NewProtocol", "TCP"],
        ] as const;
        try {
          await call("DeletePortMapping", args, options?.signal);
        } catch (err) {
          if (!(err instanceof PortMappingError) || err.upnpCode !== UPNP_NO_SUCH_ENTRY) throw err;
        }
        released = true;
      },
    };
  };

  return { discover: (o) => discover(o?.signal), map };
}

/** Runs one step under the time limit and the given signals; tells a timeout from an abort. */
async function bounded<T>(
  action: string,
  ms: number,
  outer: readonly (AbortSignal | undefined)[],
  work: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const sources = outer.filter((s): s is AbortSignal => s !== undefined);
  for (const source of sources) source.throwIfAborted();
  using timer = deadline(ms);
  const scoped = scopedSignal([...sources, timer.signal]);
  try {
    return await race(work(scoped.signal), scoped.signal);
  } catch (err) {
    for (const source of sources) source.throwIfAborted();
    if (timer.signal.aborted) {
      throw new PortMappingError("timeout", `Cannot ${action}: no answer within ${ms} ms`, {
        cause: err,
      });
    }
    throw err;
  } finally {
    scoped.release();
  }
}

type Step = <T>(
  action: string,
  signal: AbortSignal | undefined,
  work: (signal: AbortSignal) => Promise<T>,
) => Promise<T>;

/** Searches, reads the description, and finds the local address. */
async function findGateway(
  target: { readonly host: string; readonly port: number },
  interfaceAddress: string | undefined,
  step: Step,
  signal: AbortSignal | undefined,
): Promise<Gateway> {
  const seen = { ignored: 0 };
  let location: string;
  try {
    location = await step(
      "find a gateway",
      signal,
      (s) => search(target, interfaceAddress, seen, s),
    );
  } catch (err) {
    if (!(err instanceof PortMappingError) || err.code !== "timeout") throw err;
    const ignored = seen.ignored === 0 ? "" : ` (${seen.ignored} unusable answers ignored)`;
    throw new PortMappingError(
      "no-gateway",
      `Cannot find a UPnP gateway: none answered at ${target.host}:${target.port}${ignored}`,
      { cause: err },
    );
  }
  const { controlUrl, serviceType } = await step(
    "read the gateway's description",
    signal,
    (s) => readDescription(location, s),
  );
  const localAddress = interfaceAddress ??
    await step("reach the gateway", signal, (s) => localAddressTowards(new URL(controlUrl), s));
  return { location, controlUrl, serviceType, localAddress };
}

/** {@linkcode searchGateway}, its socket errors as "unreachable". */
async function search(
  target: { readonly host: string; readonly port: number },
  interfaceAddress: string | undefined,
  seen: { ignored: number },
  signal: AbortSignal,
): Promise<string> {
  try {
    return await searchGateway(target, { interfaceAddress, seen, signal });
  } catch (err) {
    signal.throwIfAborted();
    throw new PortMappingError("unreachable", `Cannot find a UPnP gateway: ${errorText(err)}`, {
      cause: err,
    });
  }
}

/** {@linkcode parseXml}, a syntax error as "malformed". */
function readXml(text: string, what: string): XmlElement {
  try {
    return parseXml(text);
  } catch (err) {
    throw new PortMappingError("malformed", `Cannot read ${what}: ${errorText(err)}`, {
      cause: err,
    });
  }
}

/** Fetches the device description and picks the connection service. */
async function readDescription(
  location: string,
  signal: AbortSignal,
): Promise<{ controlUrl: string; serviceType: string }> {
  const what = `the gateway's description at ${location}`;
  const response = await request(location, { signal }, what);
  const body = await readBody(response, MAX_DESCRIPTION_BYTES, what, signal);
  if (response.status !== 200) {
    throw new PortMappingError("malformed", `Cannot read ${what}: HTTP ${response.status}`);
  }
  const root = readXml(body, what);
  const services = new Map<string, string>();
  for (const el of descendants(root, "service")) {
    const type = childText(el, "serviceType");
    const control = childText(el, "controlURL");
    if (type !== undefined && control && !services.has(type)) services.set(type, control);
  }
  const serviceType = SERVICE_TYPES.find((type) => services.has(type));
  if (serviceType === undefined) {
    throw new PortMappingError("malformed", `Cannot read ${what}: no WAN connection service`);
  }
  const base = root.children.find((el) => el.name === "URLBase")?.text.trim() || location;
  let url: URL;
  try {
    url = new URL(services.get(serviceType)!, new URL(base, location));
  } catch (err) {
    throw new PortMappingError("malformed", `Cannot read ${what}: a bad control URL`, {
      cause: err,
    });
  }
  if (url.protocol !== "http:" || url.hostname !== new URL(location).hostname) {
    throw new PortMappingError(
      "malformed",
      `Cannot read ${what}: its control URL ${url.href} is not on the gateway's host`,
    );
  }
  return { controlUrl: url.href, serviceType };
}

/** The local address of a TCP connection to the gateway: the address it forwards to. */
async function localAddressTowards(url: URL, signal: AbortSignal): Promise<string> {
  let conn: Deno.TcpConn;
  try {
    conn = await Deno.connect({ hostname: url.hostname, port: Number(url.port || 80), signal });
  } catch (err) {
    signal.throwIfAborted();
    throw new PortMappingError("unreachable", `Cannot reach the gateway: ${errorText(err)}`, {
      cause: err,
    });
  }
  const local = conn.localAddr.hostname;
  conn.close();
  if (!isIpv4(local)) {
    throw new PortMappingError(
      "unreachable",
      `Cannot map port: local address ${local} is not IPv4`,
    );
  }
  return local;
}

/** One SOAP call; resolves with the answer's arguments by name. */
async function soap(
  gateway: Gateway,
  action: string,
  args: readonly (readonly [string, string])[],
  signal: AbortSignal,
): Promise<Map<string, string>> {
  const what = `the gateway's answer to ${action}`;
  const body =
    `<?xml version="1.0"?>\r\n<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"` +
    ` s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>` +
    `<u:${action} xmlns:u="${gateway.serviceType}">` +
    args.map(([name, value]) => `<${name}>${escapeXml(value)}</${name}>`).join("") +
    `</u:${action}></s:Body></s:Envelope>\r\n`;
  const response = await request(gateway.controlUrl, {
    method: "POST",
    headers: {
      "content-type": 'text/xml; charset="utf-8"',
      soapaction: `"${gateway.serviceType}#${action}"`,
    },
    body,
    signal,
  }, what);
  const text = await readBody(response, MAX_SOAP_BYTES, what, signal);
  if (response.status !== 200) {
    let upnpCode: number | undefined;
    let description = "";
    try {
      const error = descendants(readXml(text, what), "UPnPError")[0];
      const code = error && childText(error, "errorCode");
      if (code !== undefined && /^\d{1,4}$/.test(code)) upnpCode = Number(code);
      description = (error && childText(error, "errorDescription") || "")
        .replace(/[^\x20-\x7e]/g, "?").slice(0, 80);
    } catch { /* a fault without a readable body: the status says enough */ }
    const detail = upnpCode === undefined
      ? ""
      : ` error ${upnpCode}${description && ` ${description}`}`;
    throw new PortMappingError(
      "refused",
      `Cannot ${action}: the gateway refused (HTTP ${response.status}${detail})`,
      upnpCode === undefined ? {} : { upnpCode },
    );
  }
  const envelope = readXml(text, what);
  const answer = envelope.name === "Envelope"
    ? envelope.children.find((el) => el.name === "Body")?.children
      .find((el) => el.name === `${action}Response`)
    : undefined;
  if (answer === undefined) {
    throw new PortMappingError("malformed", `Cannot read ${what}: no ${action}Response`);
  }
  return new Map(answer.children.map((el) => [el.name, el.text.trim()]));
}

/** `fetch` without redirects, its network failures as "unreachable". */
async function request(url: string, init: RequestInit, what: string): Promise<Response> {
  try {
    return await fetch(url, { ...init, redirect: "manual" });
  } catch (err) {
    init.signal?.throwIfAborted();
    throw new PortMappingError("unreachable", `Cannot read ${what}: ${errorText(err)}`, {
      cause: err,
    });
  }
}

/** Reads a body as UTF-8 text, at most `limit` bytes. */
async function readBody(
  response: Response,
  limit: number,
  what: string,
  signal: AbortSignal,
): Promise<string> {
  const tooLarge = () =>
    new PortMappingError("too-large", `Cannot read ${what}: over ${limit} bytes`);
  const declared = Number(response.headers.get("content-length") ?? 0);
  if (response.body === null) return "";
  if (declared > limit) {
    await response.body.cancel().catch(() => {});
    throw tooLarge();
  }
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    for (;;) {
      const { done, value } = await race(reader.read(), signal);
      if (done) break;
      size += value.length;
      if (size > limit) throw tooLarge();
      chunks.push(value);
    }
  } catch (err) {
    await reader.cancel().catch(() => {});
    throw err;
  }
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) bytes.set(chunk, at), at += chunk.length;
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch (err) {
    throw new PortMappingError("malformed", `Cannot read ${what}: not UTF-8`, { cause: err });
  }
}

/** A dotted-quad IPv4 address, no leading zeros. */
function isIpv4(value: string): boolean {
  return /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/
    .test(value);
}

function parseGateway(gateway: string | undefined): { host: string; port: number } {
  if (gateway === undefined) return { host: SSDP_ADDRESS, port: SSDP_PORT };
  const [host = "", port, extra] = gateway.split(":");
  const number = port === undefined ? SSDP_PORT : Number(port);
  if (
    !isIpv4(host) || extra !== undefined || !/^\d{1,5}$/.test(port ?? "1900") || number < 1 ||
    number > 65535
  ) {
    throw new TypeError(`Cannot use gateway ${gateway}: not "a.b.c.d" or "a.b.c.d:port"`);
  }
  return { host, port: number };
}

function checkPort(port: number, which: string): void {
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new RangeError(`Cannot map port: ${which} port ${port} is not 1…65535`);
  }
}

/** A random port above the well-known and registered-by-habit ones. */
function randomPort(): number {
  return 10_000 + (crypto.getRandomValues(new Uint16Array(1))[0]! % 55_536);
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
