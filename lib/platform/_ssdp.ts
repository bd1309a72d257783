/**
 * SSDP discovery of an Internet gateway for DIM's UPnP client: an
 * `M-SEARCH` over UDP (`node:dgram`) to the multicast group or to one
 * address, and the first answer's `LOCATION`. Answers are checked, not
 * trusted: a datagram over {@linkcode MAX_SSDP_BYTES}, not a `200`, without
 * an `http:` `LOCATION` on the host that sent it, or (unicast) from another
 * host is ignored and counted.
 *
 * @example Nothing is sent once the signal has aborted
 * ```ts
 * import assert from "node:assert/strict";
 * import { searchGateway } from "./_ssdp.ts";
 *
 * const signal = AbortSignal.abort(new Error("stopping"));
 * await assert.rejects(searchGateway({ host: "127.0.0.1", port: 1900 }, { signal }), /stopping/);
 * ```
 *
 * @module
 */
import dgram from "node:dgram";

/** The SSDP multicast group (UPnP Device Architecture 1.1, §1.3.2). */
export const SSDP_ADDRESS = "239.255.255.250";
/** The SSDP port, also where a unicast M-SEARCH goes. */
export const SSDP_PORT = 1900;
/**
 * What the M-SEARCH asks for: routers answer for their device or for one of
 * its services, and some only for one of them, so all are asked.
 */
export const SEARCH_TARGETS: readonly string[] = Object.freeze([
  "urn:schemas-upnp-org:device:InternetGatewayDevice:1",
  "urn:schemas-upnp-org:device:InternetGatewayDevice:2",
  "urn:schemas-upnp-org:service:WANIPConnection:1",
  "urn:schemas-upnp-org:service:WANIPConnection:2",
]);
/** UDP may lose the M-SEARCH: it is sent again after this many ms without an answer. */
const SSDP_RESEND_MS = 1_000;
/** The `MX` of a search: devices wait up to this many seconds at random before answering. */
const SSDP_MX = 1;
/** An SSDP answer is a few hundred bytes; a larger datagram is ignored. */
export const MAX_SSDP_BYTES = 2_048;

/** Options of {@linkcode searchGateway}. */
export interface SearchOptions {
  /** The local address to bind and send multicast from. Default: any. */
  readonly interfaceAddress?: string | undefined;
  /** Counts the answers ignored, for the error message of a search that found nothing. */
  readonly seen?: { ignored: number };
  /** Ends the search (its time limit, the caller's stop). Without it the search waits for an answer. */
  readonly signal: AbortSignal;
}

/**
 * Sends the M-SEARCH (again after a second without an answer) and resolves
 * with the first usable `LOCATION`. The socket is closed when it settles.
 *
 * @param target The multicast group and port, or one gateway's address and port.
 * @param options The signal that ends it, the interface, the counter.
 * @returns The `LOCATION` URL.
 * @throws The signal's reason when it aborts; a socket error as it came.
 */
export function searchGateway(
  target: { readonly host: string; readonly port: number },
  options: SearchOptions,
): Promise<string> {
  const { interfaceAddress, signal } = options;
  const seen = options.seen ?? { ignored: 0 };
  if (signal.aborted) return Promise.reject(signal.reason);
  const unicast = target.host !== SSDP_ADDRESS;
  const messages = SEARCH_TARGETS.map((st) =>
    new TextEncoder().encode(
      `M-SEARCH * HTTP/1.1\r\nHOST: ${target.host}:${target.port}\r\n` +
        `MAN: "ssdp:discover"\r\nMX: ${SSDP_MX}\r\nST: ${st}\r\n\r\n`,
    )
  );
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket("udp4");
    let resend: ReturnType<typeof setTimeout> | undefined;
    let done = false;
    const finish = (settle: () => void) => {
      if (done) return;
      done = true;
      clearTimeout(resend);
      signal.removeEventListener("abort", onAbort);
      socket.close();
      settle();
    };
    const onAbort = () => finish(() => reject(signal.reason));
    const fail = (err: unknown) => finish(() => reject(err));
    const send = () => {
      for (const message of messages) {
        socket.send(message, target.port, target.host, (err) => err && fail(err));
      }
    };
    signal.addEventListener("abort", onAbort, { once: true });
    socket.on("error", fail);
    socket.on("message", (message: Uint8Array, from: { address: string }) => {
      const location = message.length <= MAX_SSDP_BYTES &&
          (!unicast || from.address === target.host)
        ? parseSsdpAnswer(message, from.address)
        : undefined;
      if (location === undefined) seen.ignored++;
      else finish(() => resolve(location));
    });
    socket.bind({ address: interfaceAddress ?? "0.0.0.0", port: 0 }, () => {
      if (done) return;
      try {
        if (!unicast && interfaceAddress !== undefined) {
          socket.setMulticastInterface(interfaceAddress);
        }
        send();
        resend = setTimeout(send, SSDP_RESEND_MS);
      } catch (err) {
        fail(err);
      }
    });
  });
}

/**
 * The `LOCATION` of an SSDP answer, or undefined for anything else: a
 * `200` status line, headers, and an `http:` URL on the host that answered
 * (so an answer cannot send the client to fetch from another host).
 */
function parseSsdpAnswer(message: Uint8Array, from: string): string | undefined {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(message);
  } catch {
    return undefined;
  }
  const lines = text.split("\r\n");
  if (!/^HTTP\/1\.[01] 200(?: |$)/.test(lines[0] ?? "")) return undefined;
  const header = lines.find((line) => /^location:/i.test(line));
  if (header === undefined) return undefined;
  try {
    const url = new URL(header.slice("location:".length).trim());
    return url.protocol === "http:" && url.hostname === from ? url.href : undefined;
  } catch {
    return undefined;
  }
}
