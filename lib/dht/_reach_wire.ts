/**
 * The messages of DIM's dial-back protocol `/dim/reach/1.0.0`, encoded and
 * decoded strictly: each is one frame, a 2-byte big-endian length and a
 * body of at most `REACH_MAX_MESSAGE_BYTES`, whose first byte is its type.
 * A wrong length, an unknown type, a field out of range or a trailing byte
 * is a `SyntaxError`.
 *
 * | type | message | body after the type byte |
 * | --- | --- | --- |
 * | 1 | request: "dial me back" | nonce (16 bytes), count n (1..4), n ports (2 bytes each, 1..65535) |
 * | 2 | dial-back: sent on the checker's new connection | nonce (16 bytes) |
 * | 3 | dial-back acknowledged | nothing |
 * | 4 | result, on the request's stream | status (1 byte), the port that answered (2 bytes, 0 if none), the IP address dialled (1 length byte: 0, 4 or 16, then the address) |
 *
 * The request names ports only: the checker dials them on the IP address
 * the request came from, never an address the requester chose.
 *
 * @module
 */
import { concat, Reader, u16 } from "../platform/bytes.ts";
import { REACH_MAX_MESSAGE_BYTES, REACH_MAX_PORTS } from "./constants.ts";

/** The length of a request's nonce. */
export const NONCE_BYTES = 16;

/** What a checker answers. */
export enum ReachStatus {
  /** It dialled a port back and the requester acknowledged. */
  Ok = 0,
  /** It tried every port and none answered as the requester. */
  DialFailed = 1,
  /** It did not try: rate limit or too busy. */
  Refused = 2,
  /** It did not try: the request came over a relayed connection or had no usable port. */
  BadRequest = 3,
}

/** A decoded message. */
export type ReachMessage =
  | { readonly type: "request"; readonly nonce: Uint8Array; readonly ports: readonly number[] }
  | { readonly type: "dial-back"; readonly nonce: Uint8Array }
  | { readonly type: "ack" }
  | {
    readonly type: "result";
    readonly status: ReachStatus;
    readonly port: number;
    /** The IP address dialled, 4 or 16 bytes, or empty. */
    readonly ip: Uint8Array;
  };

/**
 * Encodes a message as one frame.
 *
 * @param message The message.
 * @returns The frame.
 * @throws {RangeError} If a field is out of range.
 */
export function encodeReach(message: ReachMessage): Uint8Array {
  let body: Uint8Array;
  switch (message.type) {
    case "request": {
      checkNonce(message.nonce);
      const { ports } = message;
      if (ports.length < 1 || ports.length > REACH_MAX_PORTS || !ports.every(isPort)) {
        throw new RangeError("Cannot encode dial-back request: bad ports");
      }
      body = concat(
        Uint8Array.of(1),
        message.nonce,
        Uint8Array.of(ports.length),
        ...ports.map((port) => u16(port)),
      );
      break;
    }
    case "dial-back":
      checkNonce(message.nonce);
      body = concat(Uint8Array.of(2), message.nonce);
      break;
    case "ack":
      body = Uint8Array.of(3);
      break;
    case "result":
      if (
        !(message.status in ReachStatus) || (message.port !== 0 && !isPort(message.port)) ||
        ![0, 4, 16].includes(message.ip.length)
      ) {
        throw new RangeError("Cannot encode dial-back result: bad status, port or IP address");
      }
      body = concat(
        Uint8Array.of(4, message.status),
        u16(message.port),
        Uint8Array.of(message.ip.length),
        message.ip,
      );
      break;
  }
  return concat(u16(body.length), body);
}

/**
 * Decodes one frame's body (after its 2-byte length).
 *
 * @param body The body.
 * @returns The message.
 * @throws {SyntaxError} If the body is malformed.
 */
export function decodeReach(body: Uint8Array): ReachMessage {
  if (body.length > REACH_MAX_MESSAGE_BYTES) {
    throw new SyntaxError("Cannot decode dial-back message: too long");
  }
  const reader = new Reader(body);
  const type = reader.u8();
  let message: ReachMessage;
  switch (type) {
    case 1: {
      const nonce = reader.bytes(NONCE_BYTES);
      const count = reader.u8();
      if (count < 1 || count > REACH_MAX_PORTS) {
        throw new SyntaxError("Cannot decode dial-back request: bad port count");
      }
      const ports: number[] = [];
      for (let i = 0; i < count; i++) ports.push(u16Of(reader));
      if (!ports.every(isPort)) throw new SyntaxError("Cannot decode dial-back request: port 0");
      message = { type: "request", nonce, ports };
      break;
    }
    case 2:
      message = { type: "dial-back", nonce: reader.bytes(NONCE_BYTES) };
      break;
    case 3:
      message = { type: "ack" };
      break;
    case 4: {
      const status = reader.u8();
      if (!(status in ReachStatus)) throw new SyntaxError("Cannot decode dial-back result: status");
      const port = u16Of(reader);
      const ipLength = reader.u8();
      if (![0, 4, 16].includes(ipLength)) {
        throw new SyntaxError("Cannot decode dial-back result: IP address length");
      }
      message = { type: "result", status, port, ip: reader.bytes(ipLength) };
      break;
    }
    default:
      throw new SyntaxError(`Cannot decode dial-back message: unknown type ${type}`);
  }
  reader.end();
  return message;
}

/**
 * Reads one frame from a stream's chunks and decodes it.
 *
 * @param chunks The stream (or any source of byte chunks).
 * @returns The message.
 * @throws {SyntaxError} If the frame is too long, malformed, or the stream
 *   ends before it is complete or has bytes after it.
 */
export async function readReach(
  chunks:
    | AsyncIterable<Uint8Array | { subarray(): Uint8Array }>
    | Iterable<Uint8Array | { subarray(): Uint8Array }>,
): Promise<ReachMessage> {
  let buffered = new Uint8Array(0);
  let want = -1;
  for await (const chunk of chunks) {
    buffered = concat(buffered, chunk instanceof Uint8Array ? chunk : chunk.subarray());
    if (want < 0 && buffered.length >= 2) {
      want = 2 + ((buffered[0]! << 8) | buffered[1]!);
      if (want - 2 > REACH_MAX_MESSAGE_BYTES) {
        throw new SyntaxError("Cannot decode dial-back message: too long");
      }
    }
    if (want >= 0 && buffered.length > want) {
      throw new SyntaxError("Cannot decode dial-back message: bytes after the frame");
    }
    if (want >= 0 && buffered.length === want) return decodeReach(buffered.subarray(2));
  }
  throw new SyntaxError("Cannot decode dial-back message: the stream ended early");
}

function u16Of(reader: Reader): number {
  const bytes = reader.bytes(2);
  return (bytes[0]! << 8) | bytes[1]!;
}

function isPort(port: number): boolean {
  return Number.isSafeInteger(port) && port >= 1 && port <= 65535;
}

function checkNonce(nonce: Uint8Array): void {
  if (nonce.length !== NONCE_BYTES) {
    throw new RangeError("Cannot encode: the nonce is not 16 bytes");
  }
}
