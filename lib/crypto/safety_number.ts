/**
 * Safety numbers and fingerprints: short strings two people compare out of
 * band (in person, on a call) to make sure each holds the other's real keys
 * and no one sits in between.
 *
 * A safety number covers both parties and reads the same on both sides. It
 * is computed as Signal computes its own: for each party, SHA-512 over a
 * version, both public keys and the user ID, iterated 5200 times over the
 * keys to slow down a search for a colliding key; its first 30 bytes give 30
 * digits, 5 per 5-byte chunk. The two 30-digit halves are sorted and joined,
 * then shown as 12 groups of 5 digits. A fingerprint covers one party only,
 * for showing one's own keys.
 *
 * @example Compare safety numbers
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity } from "./identity.ts";
 * import { fingerprint, safetyNumber } from "./safety_number.ts";
 *
 * const alice = await Identity.generate();
 * const bob = await Identity.generate();
 * const onAlicesScreen = await safetyNumber(alice.public, bob.public);
 * const onBobsScreen = await safetyNumber(bob.public, alice.public);
 * assert(onAlicesScreen === onBobsScreen);
 * assert(/^(\d{5} ){11}\d{5}$/.test(onAlicesScreen));
 * assert(/^([0-9a-f]{4} ){4}[0-9a-f]{4}$/.test(await fingerprint(alice.public)));
 * ```
 *
 * @module
 */
import { sha256, sha512 } from "@noble/hashes/sha2.js";
import { concat, constantTimeEqual, toHex, utf8 } from "../platform/bytes.ts";
import { KEY_LENGTH } from "./_keys.ts";
import { decodeUserId, type PublicIdentity } from "./identity.ts";
import { InvalidIdError } from "../errors.ts";

/** How many times each party's hash is iterated. */
export const SAFETY_NUMBER_ITERATIONS = 5200;

const SAFETY_NUMBER_VERSION = new Uint8Array([0x00, 0x00]);
const CHUNKS_PER_PARTY = 6;
const CHUNK_BYTES = 5;
const FINGERPRINT_LABEL = utf8("DIM-v1-fingerprint\0");
const FINGERPRINT_BYTES = 10;

function checkParty(party: PublicIdentity, action: string): void {
  if (
    party.signingPublicKey.length !== KEY_LENGTH || party.encryptionPublicKey.length !== KEY_LENGTH
  ) {
    throw new TypeError(`Cannot compute ${action}: each public key must be ${KEY_LENGTH} bytes`);
  }
  const key = decodeUserId(party.id);
  if (!constantTimeEqual(key, party.signingPublicKey)) {
    throw new InvalidIdError(
      `Cannot compute ${action}: the user ID does not belong to the signing key`,
    );
  }
}

function partyDigits(party: PublicIdentity): string {
  const keys = concat(party.signingPublicKey, party.encryptionPublicKey);
  let hash = sha512(concat(SAFETY_NUMBER_VERSION, keys, utf8(party.id)));
  for (let i = 0; i < SAFETY_NUMBER_ITERATIONS; i++) hash = sha512(concat(hash, keys));
  let digits = "";
  for (let chunk = 0; chunk < CHUNKS_PER_PARTY; chunk++) {
    let value = 0;
    for (let i = 0; i < CHUNK_BYTES; i++) value = value * 256 + hash[chunk * CHUNK_BYTES + i]!;
    digits += String(value % 100000).padStart(5, "0");
  }
  return digits;
}

/**
 * The safety number of a conversation between two parties: 60 digits in 12
 * groups of 5, separated by spaces. It does not depend on the order of the
 * parties, and it changes if either key of either party changes.
 *
 * @param a One party's public identity.
 * @param b The other party's public identity.
 * @returns The safety number, such as `"12345 67890 … 13579"`.
 * @throws {TypeError} If a public key is not 32 bytes.
 * @throws {InvalidIdError} If a user ID is malformed or is not the one of
 *   its signing key.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity } from "./identity.ts";
 * import { safetyNumber } from "./safety_number.ts";
 *
 * const alice = await Identity.generate();
 * const bob = await Identity.generate();
 * const number = safetyNumber(alice.public, bob.public);
 * assert(number.split(" ").length === 12);
 * assert(number === safetyNumber(bob.public, alice.public));
 * ```
 */
export function safetyNumber(a: PublicIdentity, b: PublicIdentity): string {
  checkParty(a, "safety number");
  checkParty(b, "safety number");
  const halves = [partyDigits(a), partyDigits(b)].sort();
  return halves.join("").match(/\d{5}/g)!.join(" ");
}

/**
 * A short fingerprint of one party's public keys: the first 10 bytes of
 * SHA-256 over a label and both keys, as 5 groups of 4 hex digits.
 *
 * @param party The public identity.
 * @returns The fingerprint, such as `"3f2a 9c01 77be 0d4e a5c3"`.
 * @throws {TypeError} If a public key is not 32 bytes.
 * @throws {InvalidIdError} If the user ID is malformed or is not the one of
 *   the signing key.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity } from "./identity.ts";
 * import { fingerprint } from "./safety_number.ts";
 *
 * const me = await Identity.generate();
 * const shown = fingerprint(me.public);
 * assert(shown.length === 24 && shown === fingerprint(me.public));
 * ```
 */
export function fingerprint(party: PublicIdentity): string {
  checkParty(party, "fingerprint");
  const digest = sha256(
    concat(FINGERPRINT_LABEL, party.signingPublicKey, party.encryptionPublicKey),
  );
  return toHex(digest.subarray(0, FINGERPRINT_BYTES)).match(/.{4}/g)!.join(" ");
}
