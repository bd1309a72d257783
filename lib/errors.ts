/**
 * The error classes every layer of DIM throws.
 *
 * One base class, {@linkcode DimError}, keeps the `cause`; each subclass is
 * named for the failure so callers can branch with `instanceof`. Messages
 * never contain key material, and decryption or signature failures use one
 * uniform message so they leak nothing about which check failed.
 *
 * @example Branching on the failure
 * ```ts
 * import assert from "node:assert/strict";
 * import { DecryptionError, DimError } from "./errors.ts";
 *
 * const err = new DecryptionError();
 * assert(err instanceof DimError);
 * assert(err.name === "DecryptionError");
 * ```
 *
 * @module
 */

/** The base class of every error DIM throws on purpose. */
export class DimError extends Error {
  /**
   * Makes an error whose `name` is the subclass name.
   *
   * @param message What went wrong, in the form "Cannot <action>: <state>".
   * @param options `cause`: the underlying error, if any.
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A record failed validation: bad signature, wrong owner, expired, too large or malformed. */
export class InvalidRecordError extends DimError {}

/** A user ID or contact string is malformed or fails its checksum. */
export class InvalidIdError extends DimError {}

/** A sealed message could not be opened. The message is always the same. */
export class DecryptionError extends DimError {
  /**
   * Makes the uniform decryption error.
   *
   * @param options `cause`: the underlying error, kept for debugging only.
   */
  constructor(options?: ErrorOptions) {
    super("Cannot open message: it is not authentic or not addressed to this key", options);
  }
}

/**
 * A ratchet message was refused from its header alone: it would skip more
 * message keys than a session may derive. No key was derived for it.
 */
export class TooManySkippedMessagesError extends DecryptionError {}

/**
 * A message or file offer in a format version older than this DIM reads:
 * its sender runs an older DIM. It is not read (it is a
 * {@linkcode DecryptionError}, so whoever handles unreadable messages alike
 * still does), but its message says so, since the version byte is sent in
 * the clear and telling it reveals nothing.
 */
export class OutdatedVersionError extends DecryptionError {
  /** The version the sender used. */
  readonly version: number;
  /**
   * Makes the error for one outdated version.
   *
   * @param format The format, e.g. "envelope" or "file transfer".
   * @param version The version the sender used.
   * @param current The only version this DIM reads.
   */
  constructor(format: string, version: number, current: number) {
    super();
    this.message = `Cannot open message: the sender runs an older DIM (${format} version ` +
      `${version}, this DIM reads version ${current} only); ask them to update DIM`;
    this.version = version;
  }
}

/** The X3DH key agreement failed: a bad prekey signature, an unknown prekey or a bad key. */
export class KeyAgreementError extends DimError {}

/** Sealing a message failed (for example a body over the size limit). */
export class EncryptionError extends DimError {}

/** The encrypted keystore could not be read, unlocked or written. */
export class KeystoreError extends DimError {
  /** A stable machine-readable code for the failure. */
  readonly code: KeystoreErrorCode;
  /**
   * Makes a keystore error.
   *
   * @param code Which failure it is.
   * @param message The human-readable explanation.
   * @param options `cause`: the underlying error, if any.
   */
  constructor(code: KeystoreErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
  }
}

/** The reasons a keystore operation fails. */
export type KeystoreErrorCode =
  | "not-found"
  | "exists"
  | "wrong-passphrase"
  | "corrupt"
  | "truncated"
  | "unsupported-version"
  | "parameters-out-of-range"
  | "io";

/**
 * A new passphrase is too easy to guess (see `checkNewPassphrase` in
 * `lib/profile/passphrase.ts`); nothing was created.
 */
export class WeakPassphraseError extends DimError {
  /** The estimated strength, 0 (guessed at once) to 4 (very hard to guess). */
  readonly score: number;
  /**
   * Makes a weak passphrase error.
   *
   * @param score The estimated strength, 0 to 4.
   * @param message The human-readable explanation, with advice.
   */
  constructor(score: number, message: string) {
    super(message);
    this.score = score;
  }
}

/** A peer could not be found or reached. */
export class PeerUnreachableError extends DimError {}

/** A wire frame from a peer was malformed, oversized or out of protocol. */
export class ProtocolError extends DimError {}

/** Persistent storage (database or files) failed. */
export class StorageError extends DimError {}

/** Which way port mapping failed. */
export type PortMappingErrorCode =
  | "no-gateway" // no gateway answered the search in time
  | "timeout" // the gateway did not answer a request in time
  | "unreachable" // a socket or connection failed
  | "malformed" // an answer was not what the protocol says
  | "too-large" // an answer was over its size limit
  | "refused" // the gateway answered with an error (see `upnpCode`)
  | "not-public"; // the gateway's external address is not public (double NAT)

/** Port mapping through a UPnP gateway failed. */
export class PortMappingError extends DimError {
  /** Which way it failed. */
  readonly code: PortMappingErrorCode;
  /** The UPnP error code of a gateway's refusal (e.g. 718: the port is taken), if it sent one. */
  readonly upnpCode: number | undefined;
  /**
   * Makes a port-mapping error.
   *
   * @param code Which way it failed.
   * @param message "Cannot <action>: <state>".
   * @param options `cause`, and `upnpCode` for a refusal.
   */
  constructor(
    code: PortMappingErrorCode,
    message: string,
    options?: ErrorOptions & { readonly upnpCode?: number },
  ) {
    super(message, options);
    this.code = code;
    this.upnpCode = options?.upnpCode;
  }
}
