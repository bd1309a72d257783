/**
 * The circuit relay v2 server (hop) as DIM runs it: libp2p's
 * `circuitRelayServer` with limits sized for DIM (`constants.ts`: at most
 * `RELAY_MAX_RESERVATIONS` reservations, `RELAY_MAX_RESERVATIONS_PER_IP`
 * from one IP address, one per peer; each relayed connection may carry
 * `RELAY_CONNECTION_BYTES` for `RELAY_CONNECTION_DURATION_MS`, then the
 * relay resets it and DIM re-dials), a connection gater that enforces the
 * per-IP cap (libp2p's server has none), and a switch that offers the hop
 * protocol or withdraws it (`relayServer: "auto"` offers it only while the
 * node is public).
 *
 * With limits, a relayed connection is "limited" to libp2p: only handlers
 * registered with `runOnLimitedConnection: true` run on it, which is how
 * `DhtNode.handle` registers DIM's protocols; kad-dht's does not, so the
 * DHT never runs over a relay.
 *
 * @module
 */
import { circuitRelayServer, type CircuitRelayService } from "@libp2p/circuit-relay-v2";
import type { ConnectionGater, PeerId } from "@libp2p/interface";
import type { Libp2p } from "libp2p";
import {
  RELAY_CONNECTION_BYTES,
  RELAY_CONNECTION_DURATION_MS,
  RELAY_MAX_HOP_STREAMS,
  RELAY_MAX_RESERVATIONS,
  RELAY_MAX_RESERVATIONS_PER_IP,
  RELAY_MAX_STOP_STREAMS,
  RELAY_RESERVATION_TTL_MS,
} from "./constants.ts";
import type { RelayInternals } from "./_libp2p_internals.ts";
import { ipOf } from "./public_networks.ts";
import { HOP_PROTOCOL } from "./_relays.ts";
import type { RelayLimits } from "./types.ts";

/**
 * The relay server service with DIM's limits.
 *
 * @param limits What one relayed connection may carry; DIM's defaults otherwise.
 * @returns The service factory for `createLibp2p`'s `services`.
 */
export function dimRelayServer(limits: RelayLimits = {}): ReturnType<typeof circuitRelayServer> {
  return circuitRelayServer({
    maxInboundHopStreams: RELAY_MAX_HOP_STREAMS,
    maxOutboundStopStreams: RELAY_MAX_STOP_STREAMS,
    reservations: {
      maxReservations: RELAY_MAX_RESERVATIONS,
      reservationTtl: RELAY_RESERVATION_TTL_MS,
      applyDefaultLimit: true,
      defaultDataLimit: BigInt(limits.bytes ?? RELAY_CONNECTION_BYTES),
      // The server times relayed connections with AbortSignal.timeout(duration):
      // milliseconds. (It also sends this number in the reservation, where the
      // relay v2 spec means seconds; DIM's clients do not read it.)
      defaultDurationLimit: limits.durationMs ?? RELAY_CONNECTION_DURATION_MS,
    },
  });
}

/** The node's libp2p, as the gater reads it once the node exists. */
export interface GaterTarget {
  /** The libp2p node, set once made. */
  libp2p?: Libp2p<{ relay?: CircuitRelayService }>;
}

/**
 * A connection gater that refuses a relay reservation when the requesting
 * peer's IP address already holds `RELAY_MAX_RESERVATIONS_PER_IP`. When
 * the whole store is full it first frees the slots of peers this node is no
 * longer connected to (libp2p keeps them until they expire).
 *
 * @param target Where the gater finds the libp2p node.
 * @param perIp The cap per IP address.
 * @returns The gater.
 */
export function reservationGater(
  target: GaterTarget,
  perIp = RELAY_MAX_RESERVATIONS_PER_IP,
): ConnectionGater {
  return {
    denyInboundRelayReservation: (peer: PeerId): boolean => {
      const libp2p = target.libp2p;
      const reservations = libp2p?.services.relay?.reservations;
      if (libp2p === undefined || reservations === undefined) return false;
      if (reservations.size >= RELAY_MAX_RESERVATIONS) {
        for (const [holder] of reservations) {
          if (libp2p.getConnections(holder).length === 0) reservations.delete(holder);
        }
      }
      if (reservations.has(peer)) return false; // a renewal keeps its slot
      const ip = libp2p.getConnections(peer).map((c) => ipOf(c.remoteAddr.toString())).find(
        (ip) => ip !== undefined,
      );
      if (ip === undefined) return false;
      let fromIp = 0;
      for (const [, reservation] of reservations) {
        if (ipOf(reservation.addr.toString()) === ip) fromIp++;
      }
      return fromIp >= perIp;
    },
  };
}

/** Offers the hop protocol or withdraws it. */
export class RelayServerSwitch {
  readonly #libp2p: Libp2p;
  readonly #onHop: NonNullable<RelayInternals["onHop"]>;
  #on = true; // libp2p's server registers itself on start

  /**
   * @param libp2p The node.
   * @param onHop The server's hop handler.
   */
  constructor(libp2p: Libp2p, onHop: NonNullable<RelayInternals["onHop"]>) {
    this.#libp2p = libp2p;
    this.#onHop = onHop;
  }

  /** Whether the hop protocol is offered. */
  get on(): boolean {
    return this.#on;
  }

  /**
   * Offers or withdraws the hop protocol (identify tells connected peers).
   *
   * @param on Whether to offer it.
   * @returns When done.
   */
  async set(on: boolean): Promise<void> {
    if (on === this.#on) return;
    this.#on = on;
    if (on) {
      await this.#libp2p.handle(HOP_PROTOCOL, this.#onHop, {
        maxInboundStreams: RELAY_MAX_HOP_STREAMS,
        runOnLimitedConnection: true,
      });
    } else {
      await this.#libp2p.unhandle(HOP_PROTOCOL);
    }
  }
}
