/**
 * DIM's dial-back protocol `/dim/reach/1.0.0`, both sides (wire format in
 * `_reach_wire.ts`, decision rule in `_reach_rule.ts`).
 *
 * **Requester.** Over a direct connection to a checker it sends a nonce and
 * up to 4 TCP ports it listens on (or announces). It counts the answer only
 * if the checker's dial-back reached it: a `dial-back` message with the same
 * nonce, from the same peer, on a new inbound direct connection.
 *
 * **Checker.** It dials back the requester's own peer ID (Noise verifies
 * it), on a new connection, at the named ports of the IP address the
 * request's connection comes from — never another address, so a requester
 * cannot direct dials at a third party. A request over a relayed connection
 * is refused. Each peer and each IP address may ask once per
 * `REACH_SERVE_INTERVAL_MS`, and at most `REACH_SERVE_CONCURRENCY`
 * dial-backs run at once; more are refused (not failed).
 *
 * @module
 */
import type { Connection, Stream } from "@libp2p/interface";
import { multiaddr } from "@multiformats/multiaddr";
import type { Libp2p } from "libp2p";
import { raceSignal } from "race-signal";
import { equalBytes } from "../platform/bytes.ts";
import {
  REACH_DIAL_TIMEOUT_MS,
  REACH_LIMITER_ENTRIES,
  REACH_MAX_PORTS,
  REACH_PROTOCOL,
  REACH_REQUEST_TIMEOUT_MS,
  REACH_SERVE_CONCURRENCY,
  REACH_SERVE_INTERVAL_MS,
} from "./constants.ts";
import { describe } from "./_peers.ts";
import { ipFromBytes, ipOf, ipToBytes, isPublicAddress } from "./public_networks.ts";
import { IntervalLimiter, type ReachOutcome } from "./_reach_rule.ts";
import { encodeReach, NONCE_BYTES, ReachStatus, readReach } from "./_reach_wire.ts";
import { readStream } from "./_stream.ts";

/** What the protocol needs of the node. */
export interface ReachProtocolInit {
  /** The libp2p node. */
  readonly libp2p: Libp2p;
  /** CIDRs counted as public besides libp2p's rule. */
  readonly publicNetworks: readonly string[];
  /** The clock, in ms. */
  readonly clock: () => number;
  /** One-line diagnostics. */
  readonly log: (message: string) => void;
}

/** Whether a connection is relayed or limited (then it proves nothing about reach). */
export function isIndirect(connection: Connection): boolean {
  return connection.limits !== undefined ||
    connection.remoteAddr.toString().includes("/p2p-circuit");
}

/** Both sides of `/dim/reach/1.0.0` for one node. */
export class ReachProtocol {
  readonly #init: ReachProtocolInit;
  readonly #limiter = new IntervalLimiter(REACH_SERVE_INTERVAL_MS, REACH_LIMITER_ENTRIES);
  // Nonces of this node's requests in flight: the checker and whether its dial-back arrived.
  readonly #pending = new Map<string, { peer: string; nonce: Uint8Array; reached: boolean }>();
  #serving = 0;

  /**
   * @param init The node's parts.
   */
  constructor(init: ReachProtocolInit) {
    this.#init = init;
  }

  /**
   * Registers the handler.
   *
   * @returns When registered.
   */
  async start(): Promise<void> {
    await this.#init.libp2p.handle(
      REACH_PROTOCOL,
      (stream: Stream, connection: Connection) => this.#onStream(stream, connection),
      { runOnLimitedConnection: true, maxInboundStreams: 4, maxOutboundStreams: 4 },
    );
  }

  /**
   * Removes the handler.
   *
   * @returns When removed.
   */
  async stop(): Promise<void> {
    await this.#init.libp2p.unhandle(REACH_PROTOCOL);
  }

  /**
   * Asks a peer, over an open direct connection, to dial this node back.
   *
   * @param connection A direct connection to the checker.
   * @param ports The TCP ports to name (at most 4 are sent).
   * @param signal Aborts the exchange.
   * @returns The outcome, or `undefined` when the checker refused or the
   *   exchange failed (no evidence either way).
   */
  async ask(
    connection: Connection,
    ports: readonly number[],
    signal: AbortSignal,
  ): Promise<ReachOutcome | undefined> {
    const nonce = crypto.getRandomValues(new Uint8Array(NONCE_BYTES));
    const key = [...nonce].join(",");
    const peer = connection.remotePeer.toString();
    const entry = { peer, nonce, reached: false };
    this.#pending.set(key, entry);
    const timeout = AbortSignal.any([signal, AbortSignal.timeout(REACH_REQUEST_TIMEOUT_MS)]);
    let stream: Stream | undefined;
    try {
      stream = await connection.newStream(REACH_PROTOCOL, { signal: timeout });
      stream.send(encodeReach({ type: "request", nonce, ports: ports.slice(0, REACH_MAX_PORTS) }));
      const answer = await raceSignal(readReach(readStream(stream)), timeout);
      await stream.close({ signal: timeout }).catch(() => {});
      if (answer.type !== "result") throw new SyntaxError("expected a result");
      if (answer.status === ReachStatus.DialFailed) return "failed";
      if (answer.status !== ReachStatus.Ok) return undefined;
      if (!entry.reached) {
        this.#init.log(`reach: ${peer} claims a dial-back that never arrived`);
        return undefined;
      }
      const ip = ipFromBytes(answer.ip);
      if (ip === undefined) return "reachable";
      const address = `/ip${ip.includes(":") ? 6 : 4}/${ip}/tcp/${answer.port}`;
      return isPublicAddress(address, this.#init.publicNetworks) ? "public" : "reachable";
    } catch (cause) {
      stream?.abort(cause instanceof Error ? cause : new Error(String(cause)));
      if (!signal.aborted) this.#init.log(`reach: asking ${peer} failed: ${describe(cause)}`);
      return undefined;
    } finally {
      this.#pending.delete(key);
    }
  }

  async #onStream(stream: Stream, connection: Connection): Promise<void> {
    const signal = AbortSignal.timeout(REACH_REQUEST_TIMEOUT_MS);
    try {
      const message = await raceSignal(readReach(readStream(stream)), signal);
      if (message.type === "request") {
        const result = await this.#serve(connection, message.ports, message.nonce);
        stream.send(encodeReach({ type: "result", ...result }));
      } else if (message.type === "dial-back") {
        this.#acceptDialBack(connection, message.nonce);
        stream.send(encodeReach({ type: "ack" }));
      } else {
        throw new SyntaxError(`unexpected ${message.type} message`);
      }
      await stream.close({ signal });
    } catch (cause) {
      this.#init.log(`reach: ${connection.remotePeer} sent a bad request: ${describe(cause)}`);
      stream.abort(cause instanceof Error ? cause : new Error(String(cause)));
    }
  }

  // Marks a request's nonce as reached, or throws when the dial-back does not fit one.
  #acceptDialBack(connection: Connection, nonce: Uint8Array): void {
    const entry = this.#pending.get([...nonce].join(","));
    if (
      entry === undefined || !equalBytes(entry.nonce, nonce) ||
      entry.peer !== connection.remotePeer.toString() || connection.direction !== "inbound" ||
      isIndirect(connection)
    ) {
      throw new Error("a dial-back that answers no request of this node");
    }
    entry.reached = true;
  }

  async #serve(
    connection: Connection,
    ports: readonly number[],
    nonce: Uint8Array,
  ): Promise<{ status: ReachStatus; port: number; ip: Uint8Array }> {
    const none = new Uint8Array(0);
    const ip = ipOf(connection.remoteAddr.toString());
    if (isIndirect(connection) || ip === undefined) {
      return { status: ReachStatus.BadRequest, port: 0, ip: none };
    }
    const peer = connection.remotePeer.toString();
    if (
      this.#serving >= REACH_SERVE_CONCURRENCY ||
      !this.#limiter.pass([`peer:${peer}`, `ip:${ip}`], this.#init.clock())
    ) {
      return { status: ReachStatus.Refused, port: 0, ip: none };
    }
    this.#serving++;
    try {
      for (const port of new Set(ports)) {
        if (await this.#dialBack(ip, port, peer, nonce)) {
          return { status: ReachStatus.Ok, port, ip: ipToBytes(ip) };
        }
      }
      return { status: ReachStatus.DialFailed, port: 0, ip: none };
    } finally {
      this.#serving--;
    }
  }

  // Dials the requester's own peer ID at its own IP address, on a new connection.
  async #dialBack(ip: string, port: number, peer: string, nonce: Uint8Array): Promise<boolean> {
    const signal = AbortSignal.timeout(REACH_DIAL_TIMEOUT_MS);
    const target = multiaddr(`/ip${ip.includes(":") ? 6 : 4}/${ip}/tcp/${port}/p2p/${peer}`);
    let connection: Connection | undefined;
    try {
      connection = await this.#init.libp2p.dial(target, { signal, force: true });
      if (connection.remotePeer.toString() !== peer || isIndirect(connection)) return false;
      const stream = await connection.newStream(REACH_PROTOCOL, { signal });
      stream.send(encodeReach({ type: "dial-back", nonce }));
      const answer = await raceSignal(readReach(readStream(stream)), signal);
      await stream.close({ signal }).catch(() => {});
      return answer.type === "ack";
    } catch {
      return false;
    } finally {
      await connection?.close().catch(() => {});
    }
  }
}
