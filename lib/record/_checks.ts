// Checks shared by the record types (`record.ts`, `card.ts`, `prekey.ts`,
// `prekey_secrets.ts`): argument checks with DIM's "Cannot <action>: …"
// messages, and the strict decoding of a record's payload, which turns
// every decoding failure into an `InvalidRecordError`. Private to
// lib/record.
import { Reader } from "../platform/bytes.ts";
import { KEY_LENGTH } from "../crypto/_keys.ts";
import { InvalidRecordError } from "../errors.ts";

/** Throws a `RangeError` unless `value` is a safe non-negative integer (a time, a counter). */
export function checkTime(value: number, what: string, action: string): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`Cannot ${action}: ${what} ${value} is not a non-negative integer`);
  }
}

/** Throws a `TypeError` unless the X25519 key a payload carries is 32 bytes. */
export function checkEncryptionKey(key: Uint8Array, action: string): void {
  if (key.length !== KEY_LENGTH) {
    throw new TypeError(`Cannot ${action}: the encryption key must be ${KEY_LENGTH} bytes`);
  }
}

/** Throws the `InvalidRecordError` of a record that opened but whose payload fails a check. */
export function invalidPayload(what: string, reason: string, cause?: unknown): never {
  throw new InvalidRecordError(
    `Cannot open ${what}: ${reason}`,
    cause === undefined ? undefined : { cause },
  );
}

/**
 * Decodes a record's payload strictly: `read` takes what it needs from a
 * reader over `payload`, trailing bytes are refused, and a truncated or
 * otherwise malformed payload becomes "Cannot open <what>: the payload is
 * malformed (…)". An `InvalidRecordError` that `read` throws passes through.
 */
export function decodePayload<T>(what: string, payload: Uint8Array, read: (r: Reader) => T): T {
  try {
    const r = new Reader(payload);
    const value = read(r);
    r.end();
    return value;
  } catch (err) {
    if (err instanceof InvalidRecordError) throw err;
    const detail = err instanceof Error ? err.message.replace(/^Cannot decode: /, "") : "";
    return invalidPayload(what, `the payload is malformed (${detail})`, err);
  }
}
