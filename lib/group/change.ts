/**
 * One membership change of a group: its wire format, its signature and its
 * hash. The rules that turn a set of changes into a membership are in
 * {@link "./membership.ts"}.
 *
 * ## Wire format (version 1)
 *
 * Integers are big-endian.
 *
 * ```text
 * change  = version u8 (= 1) | groupId (16) | kind u8 | author (32) | timestamp u64
 *         | parentCount u8 | parents (32 × parentCount) | payloadLength u16 | payload
 *         | signature (64)
 * payload = create:  nameLength u8 | name | memberCount u8 | (signingKey (32) | x25519Key (32)) × memberCount
 *           add:     signingKey (32) | x25519Key (32)
 *           remove, promote, demote: signingKey (32)
 *           leave:   (empty)
 *           rename:  nameLength u8 | name
 * signature = Ed25519 by `author`, over "DIM-v1 group change\0" | change without signature
 * hash      = SHA-256("DIM-v1 group change id\0" | change)
 * ```
 *
 * A create has no parents; every other change names 1 to
 * {@linkcode MAX_CHANGE_PARENTS} parents, the hashes of the changes its
 * author had seen last. The timestamp is the author's claim, shown, never
 * used for ordering. Decoding is strict: the length is checked against
 * {@linkcode MAX_CHANGE_LENGTH} first, the version must be 1, every length
 * must match and no bytes may trail; names are valid UTF-8 of 1 to
 * {@linkcode MAX_GROUP_NAME_LENGTH} bytes; parents and members are not
 * repeated.
 *
 * @example Sign a create and read it back
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity } from "../crypto/identity.ts";
 * import { decodeChange, signChange, verifyChange } from "./change.ts";
 *
 * const alice = await Identity.generate();
 * const bytes = await signChange(alice, {
 *   groupId: new Uint8Array(16),
 *   timestamp: 1_700_000_000_000,
 *   parents: [],
 *   op: { kind: "create", name: "friends", members: [alice.public] },
 * });
 * const change = decodeChange(bytes);
 * assert.equal(change.op.kind, "create");
 * assert(await verifyChange(change));
 * ```
 *
 * @module
 */
import { sha256 } from "@noble/hashes/sha2.js";
import { concat, equalBytes, fromUtf8, Reader, toHex, u16, u64, utf8 } from "../platform/bytes.ts";
import {
  encodeUserId,
  type PublicIdentity,
  type SignatureDomain,
  verifySignature,
} from "../crypto/identity.ts";
import { DimError } from "../errors.ts";
import {
  GROUP_ID_LENGTH,
  GROUP_SIGNATURE_DOMAIN,
  MAX_CHANGE_LENGTH,
  MAX_CHANGE_PARENTS,
  MAX_GROUP_MEMBERS,
  MAX_GROUP_NAME_LENGTH,
} from "./constants.ts";

/** The change format version this module writes and the only one it reads. */
export const CHANGE_VERSION = 1;
const KEY_LENGTH = 32;
const HASH_LENGTH = 32;
const SIGNATURE_LENGTH = 64;
const SIGN_LABEL = utf8("DIM-v1 group change\0");
const HASH_LABEL = utf8("DIM-v1 group change id\0");

/** A membership change was refused: malformed, badly signed, unauthorized or out of bounds. */
export class InvalidGroupChangeError extends DimError {}

/** A member as the membership pins it: the user's signing key (its ID) and X25519 key. */
export interface GroupMemberKeys {
  /** The user ID, derived from `signingPublicKey`. */
  readonly id: string;
  /** Raw 32-byte Ed25519 key. */
  readonly signingPublicKey: Uint8Array;
  /** Raw 32-byte X25519 key. */
  readonly encryptionPublicKey: Uint8Array;
}

/** A member as a create or an add names it: its signing and X25519 keys. */
export type NewMember = Pick<PublicIdentity, "signingPublicKey" | "encryptionPublicKey">;

/** What a change does. */
export type GroupOp =
  | {
    readonly kind: "create";
    readonly name: string;
    readonly members: readonly NewMember[];
  }
  | {
    readonly kind: "add";
    readonly member: NewMember;
  }
  | { readonly kind: "remove" | "promote" | "demote"; readonly target: Uint8Array }
  | { readonly kind: "leave" }
  | { readonly kind: "rename"; readonly name: string };

/** The kinds of change. */
export type GroupOpKind = GroupOp["kind"];

const KIND_CODES: Record<GroupOpKind, number> = {
  create: 0,
  add: 1,
  remove: 2,
  leave: 3,
  rename: 4,
  promote: 5,
  demote: 6,
};
const KINDS = Object.keys(KIND_CODES) as GroupOpKind[];

/** A decoded change, as {@linkcode decodeChange} returns it. */
export interface GroupChange {
  /** The 16-byte group ID. */
  readonly groupId: Uint8Array;
  /** The author's raw Ed25519 key. */
  readonly author: Uint8Array;
  /** The author's user ID. */
  readonly authorId: string;
  /** The author's timestamp (ms), shown only. */
  readonly timestamp: number;
  /** The parents' hashes, in hex. */
  readonly parents: readonly string[];
  /** What the change does. */
  readonly op: GroupOp;
  /** The change's hash in hex: its name in the DAG. */
  readonly hash: string;
  /** The bytes the signature covers (label included). */
  readonly signed: Uint8Array;
  /** The 64-byte signature. */
  readonly signature: Uint8Array;
  /** The whole encoding. */
  readonly bytes: Uint8Array;
}

/** What {@linkcode signChange} needs. */
export interface UnsignedChange {
  /** The 16-byte group ID. */
  readonly groupId: Uint8Array;
  /** The author's timestamp (ms). Default: `Date.now()`. */
  readonly timestamp?: number;
  /** Parents' hashes in hex: none for a create, 1 to 8 otherwise. */
  readonly parents: readonly string[];
  /** What the change does. */
  readonly op: GroupOp;
}

/** Who signs a change: an identity, or anything with its signing key and `sign`. */
export interface GroupSigner {
  /** The signer's raw Ed25519 key. */
  readonly signingPublicKey: Uint8Array;
  /**
   * Signs under a signature domain.
   *
   * @param domain The domain.
   * @param message The bytes.
   * @returns The 64-byte signature.
   */
  sign(domain: SignatureDomain, message: Uint8Array): Promise<Uint8Array>;
}

function invalid(state: string): InvalidGroupChangeError {
  return new InvalidGroupChangeError(`Cannot accept group change: ${state}`);
}

function encodeName(name: string): Uint8Array {
  const bytes = utf8(name);
  if (bytes.length < 1 || bytes.length > MAX_GROUP_NAME_LENGTH) {
    throw new RangeError(
      `Cannot encode group change: the name must be 1 to ${MAX_GROUP_NAME_LENGTH} bytes`,
    );
  }
  return concat(new Uint8Array([bytes.length]), bytes);
}

function checkKey(key: Uint8Array, what: string): void {
  if (!(key instanceof Uint8Array) || key.length !== KEY_LENGTH) {
    throw new TypeError(`Cannot encode group change: ${what} must be ${KEY_LENGTH} bytes`);
  }
}

function encodeMember(m: NewMember): Uint8Array {
  checkKey(m.signingPublicKey, "a member's signing key");
  checkKey(m.encryptionPublicKey, "a member's X25519 key");
  return concat(m.signingPublicKey, m.encryptionPublicKey);
}

function encodePayload(op: GroupOp): Uint8Array {
  switch (op.kind) {
    case "create":
      if (op.members.length < 1 || op.members.length > MAX_GROUP_MEMBERS) {
        throw new RangeError(
          `Cannot encode group change: a group starts with 1 to ${MAX_GROUP_MEMBERS} members`,
        );
      }
      return concat(
        encodeName(op.name),
        new Uint8Array([op.members.length]),
        ...op.members.map(encodeMember),
      );
    case "add":
      return encodeMember(op.member);
    case "remove":
    case "promote":
    case "demote":
      checkKey(op.target, "the target's key");
      return op.target;
    case "leave":
      return new Uint8Array(0);
    case "rename":
      return encodeName(op.name);
  }
}

/**
 * Encodes and signs a change.
 *
 * @param signer The author.
 * @param change The change.
 * @returns The encoded change.
 * @throws {TypeError} If a key or the group ID has the wrong length.
 * @throws {RangeError} If a name, the member list or the parents are out of bounds.
 */
export async function signChange(
  signer: GroupSigner,
  change: UnsignedChange,
): Promise<Uint8Array<ArrayBuffer>> {
  const { groupId, parents, op } = change;
  const timestamp = change.timestamp ?? Date.now();
  if (!(groupId instanceof Uint8Array) || groupId.length !== GROUP_ID_LENGTH) {
    throw new TypeError(
      `Cannot encode group change: the group ID must be ${GROUP_ID_LENGTH} bytes`,
    );
  }
  const wantParents = op.kind === "create" ? [0, 0] : [1, MAX_CHANGE_PARENTS];
  if (parents.length < wantParents[0]! || parents.length > wantParents[1]!) {
    throw new RangeError(`Cannot encode group change: ${parents.length} parents for a ${op.kind}`);
  }
  const parentBytes = parents.map((h) => {
    if (!/^[0-9a-f]{64}$/.test(h)) throw new TypeError("Cannot encode group change: bad parent");
    return Uint8Array.from(h.match(/../g)!, (x) => parseInt(x, 16));
  });
  const payload = encodePayload(op);
  const unsigned = concat(
    new Uint8Array([CHANGE_VERSION]),
    groupId,
    new Uint8Array([KIND_CODES[op.kind]]),
    signer.signingPublicKey,
    u64(timestamp),
    new Uint8Array([parents.length]),
    ...parentBytes,
    u16(payload.length),
    payload,
  );
  const signature = await signer.sign(GROUP_SIGNATURE_DOMAIN, concat(SIGN_LABEL, unsigned));
  return concat(unsigned, signature);
}

function readName(r: Reader): string {
  const length = r.u8();
  if (length < 1 || length > MAX_GROUP_NAME_LENGTH) throw new SyntaxError("name length");
  return fromUtf8(r.bytes(length));
}

function readMember(r: Reader): { signingPublicKey: Uint8Array; encryptionPublicKey: Uint8Array } {
  return { signingPublicKey: r.bytes(KEY_LENGTH), encryptionPublicKey: r.bytes(KEY_LENGTH) };
}

function decodePayload(kind: GroupOpKind, payload: Uint8Array): GroupOp {
  const r = new Reader(payload);
  let op: GroupOp;
  switch (kind) {
    case "create": {
      const name = readName(r);
      const count = r.u8();
      if (count < 1 || count > MAX_GROUP_MEMBERS) throw new SyntaxError("member count");
      const members = Array.from({ length: count }, () => readMember(r));
      const ids = new Set(members.map((m) => toHex(m.signingPublicKey)));
      if (ids.size !== members.length) throw new SyntaxError("repeated member");
      op = { kind, name, members };
      break;
    }
    case "add":
      op = { kind, member: readMember(r) };
      break;
    case "remove":
    case "promote":
    case "demote":
      op = { kind, target: r.bytes(KEY_LENGTH) };
      break;
    case "leave":
      op = { kind };
      break;
    case "rename":
      op = { kind, name: readName(r) };
      break;
  }
  r.end();
  return op;
}

/**
 * Decodes a change strictly, without checking its signature.
 *
 * @param bytes The encoded change.
 * @returns The change, its hash and signed bytes.
 * @throws {InvalidGroupChangeError} If it is oversized, truncated, of an
 *   unknown version or kind, has trailing bytes, repeated parents or
 *   members, a name that is not UTF-8, or parents a create must not have.
 */
export function decodeChange(bytes: Uint8Array): GroupChange {
  if (bytes.length > MAX_CHANGE_LENGTH) throw invalid("it is oversized");
  try {
    const r = new Reader(bytes);
    if (r.u8() !== CHANGE_VERSION) throw new SyntaxError("version");
    const groupId = r.bytes(GROUP_ID_LENGTH);
    const kind = KINDS[r.u8()];
    if (kind === undefined) throw new SyntaxError("kind");
    const author = r.bytes(KEY_LENGTH);
    const timestamp = r.u64();
    const parentCount = r.u8();
    const [min, max] = kind === "create" ? [0, 0] : [1, MAX_CHANGE_PARENTS];
    if (parentCount < min || parentCount > max) throw new SyntaxError("parents");
    const parents = Array.from({ length: parentCount }, () => toHex(r.bytes(HASH_LENGTH)));
    if (new Set(parents).size !== parents.length) throw new SyntaxError("repeated parent");
    const lengthBytes = r.bytes(2);
    const payloadLength = (lengthBytes[0]! << 8) | lengthBytes[1]!;
    const op = decodePayload(kind, r.bytes(payloadLength));
    const signedLength = r.position;
    const signature = r.bytes(SIGNATURE_LENGTH);
    r.end();
    return {
      groupId,
      author,
      authorId: encodeUserId(author),
      timestamp,
      parents,
      op,
      hash: toHex(sha256(concat(HASH_LABEL, bytes))),
      signed: concat(SIGN_LABEL, bytes.subarray(0, signedLength)),
      signature,
      bytes: new Uint8Array(bytes),
    };
  } catch (cause) {
    if (cause instanceof InvalidGroupChangeError) throw cause;
    throw new InvalidGroupChangeError("Cannot accept group change: it is malformed", { cause });
  }
}

/**
 * Checks a change's signature by its author.
 *
 * @param change A decoded change.
 * @returns Whether the author signed exactly these bytes.
 */
export function verifyChange(change: GroupChange): Promise<boolean> {
  return verifySignature(GROUP_SIGNATURE_DOMAIN, change.author, change.signed, change.signature);
}

/**
 * The user IDs and keys of an add's or a create's members.
 *
 * @param op A create or an add.
 * @returns The members it names, with their user IDs.
 */
export function membersOf(op: GroupOp & { kind: "create" | "add" }): GroupMemberKeys[] {
  const list = op.kind === "create" ? op.members : [op.member];
  return list.map((m) => ({
    id: encodeUserId(m.signingPublicKey),
    signingPublicKey: m.signingPublicKey,
    encryptionPublicKey: m.encryptionPublicKey,
  }));
}

/**
 * Whether two group IDs are the same.
 *
 * @param a A group ID.
 * @param b Another.
 * @returns `true` if equal.
 */
export function sameGroup(a: Uint8Array, b: Uint8Array): boolean {
  return equalBytes(a, b);
}
