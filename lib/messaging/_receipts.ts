/**
 * Sealed receipts: what a recipient sends back for the envelopes it fetched
 * from its mailbox, so that their sender's outbox empties even if the two
 * are never online together.
 *
 * A receipt is a message of content type {@linkcode RECEIPT_CONTENT_TYPE},
 * sealed in the recipient's session (or the static envelope) like any
 * other and queued in the recipient's outbox: it goes to the sender
 * directly when the sender is online, and to the sender's mailbox
 * otherwise, where a node sees only an envelope. Its body:
 *
 * ```text
 * receipt = version u8 (= 1) | flags u8 | count u16 | count × SHA-256 (32)
 * flags   = bit 0: the receipt wants an acknowledgement; other bits 0
 * ```
 *
 * Receipts never make receipts loop. A receipt for messages wants an
 * acknowledgement, and stays in its writer's outbox until it has one: a
 * signed ACK when it is delivered directly, or, when it was fetched from a
 * mailbox, a receipt for it, which wants none. A receipt that wants none
 * leaves its writer's outbox once it is delivered or a node holds a copy
 * for its recipient ({@linkcode settlesWhenStored}), and is answered by
 * nothing. A receipt counts only for the envelopes its writer was sent:
 * the sender's outbox marks an entry delivered only if the receipt's
 * (verified) writer is the entry's recipient.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeReceipt, encodeReceipt } from "./_receipts.ts";
 *
 * const body = encodeReceipt({ wantsAck: true, hashes: [new Uint8Array(32).fill(1)] });
 * assert.equal(decodeReceipt(body).hashes.length, 1);
 * ```
 *
 * @module
 */
import { ProtocolError } from "../errors.ts";
import {
  CONTROL_CONTENT_TYPE_MAX,
  CONTROL_CONTENT_TYPE_MIN,
  MAX_RECEIPT_HASHES,
  RECEIPT_CONTENT_TYPE,
} from "./constants.ts";

/** The receipt body's format version. */
export const RECEIPT_VERSION = 1;

const HASH_LENGTH = 32;
const HEADER_LENGTH = 4;
const WANTS_ACK = 1;

/** What a receipt says. */
export interface Receipt {
  /** Whether its recipient answers it with a receipt of its own (when fetched from a mailbox). */
  readonly wantsAck: boolean;
  /** SHA-256 of each envelope received, at most {@linkcode MAX_RECEIPT_HASHES}. */
  readonly hashes: readonly Uint8Array[];
}

/**
 * Encodes a receipt's body.
 *
 * @param receipt The receipt.
 * @returns The body.
 * @throws {RangeError} If it has no hash, more than {@linkcode MAX_RECEIPT_HASHES}, or one not 32 bytes.
 */
export function encodeReceipt(receipt: Receipt): Uint8Array {
  const { hashes } = receipt;
  if (hashes.length === 0 || hashes.length > MAX_RECEIPT_HASHES) {
    throw new RangeError(`Cannot encode receipt: ${hashes.length} hashes`);
  }
  const body = new Uint8Array(HEADER_LENGTH + hashes.length * HASH_LENGTH);
  body[0] = RECEIPT_VERSION;
  body[1] = receipt.wantsAck ? WANTS_ACK : 0;
  new DataView(body.buffer).setUint16(2, hashes.length);
  hashes.forEach((hash, i) => {
    if (hash.length !== HASH_LENGTH) throw new RangeError("Cannot encode receipt: bad hash");
    body.set(hash, HEADER_LENGTH + i * HASH_LENGTH);
  });
  return body;
}

/**
 * Decodes a receipt's body, strictly.
 *
 * @param body The body.
 * @returns The receipt.
 * @throws {ProtocolError} If the version or flags are unknown, or the length is wrong.
 */
export function decodeReceipt(body: Uint8Array): Receipt {
  if (body.length < HEADER_LENGTH || body[0] !== RECEIPT_VERSION || (body[1]! & ~WANTS_ACK)) {
    throw new ProtocolError("Cannot read receipt: unknown format");
  }
  const count = new DataView(body.buffer, body.byteOffset, body.length).getUint16(2);
  if (
    count === 0 || count > MAX_RECEIPT_HASHES ||
    body.length !== HEADER_LENGTH + count * HASH_LENGTH
  ) {
    throw new ProtocolError("Cannot read receipt: wrong length");
  }
  const hashes = Array.from(
    { length: count },
    (_, i) => body.slice(HEADER_LENGTH + i * HASH_LENGTH, HEADER_LENGTH + (i + 1) * HASH_LENGTH),
  );
  return { wantsAck: (body[1]! & WANTS_ACK) !== 0, hashes };
}

/**
 * Whether a content type is the messaging layer's own (receipts, parts of
 * mailbox files), never shown as a message.
 *
 * @param contentType The content type.
 * @returns `true` for 0x40 to 0x7f.
 */
export function isControlContentType(contentType: number): boolean {
  return contentType >= CONTROL_CONTENT_TYPE_MIN && contentType <= CONTROL_CONTENT_TYPE_MAX;
}

/**
 * Whether an outgoing message leaves the outbox once a node holds a copy
 * for its recipient, acknowledged or not: a receipt that wants no
 * acknowledgement (nothing would ever acknowledge it).
 *
 * @param message The queued message's content type and body.
 * @returns `true` for such a receipt.
 */
export function settlesWhenStored(
  message: { readonly contentType: number; readonly body: Uint8Array },
): boolean {
  return message.contentType === RECEIPT_CONTENT_TYPE && message.body.length >= 2 &&
    (message.body[1]! & WANTS_ACK) === 0;
}

/**
 * The receipts owed to each sender after a mailbox fetch: one list wants
 * acknowledgements (new messages and file parts), one does not (new
 * receipts that want one). A copy fetched again gets none: it was answered
 * when it was new (a node that never deletes a copy must not make this
 * user write to its sender at every fetch).
 */
export class ReceiptBatch {
  readonly #bySender = new Map<string, { wanted: Uint8Array[]; final: Uint8Array[] }>();

  /**
   * Adds a fetched envelope.
   *
   * @param sender Its verified sender.
   * @param hash Its SHA-256.
   * @param stored Its content type and body (it was new).
   */
  add(
    sender: string,
    hash: Uint8Array,
    stored: { readonly contentType: number; readonly body: Uint8Array },
  ): void {
    const lists = this.#bySender.get(sender) ?? { wanted: [], final: [] };
    this.#bySender.set(sender, lists);
    if (stored.contentType !== RECEIPT_CONTENT_TYPE) lists.wanted.push(hash);
    else if (!settlesWhenStored(stored)) lists.final.push(hash);
    // A receipt that wants no acknowledgement gets none.
  }

  /**
   * The receipts to send, at most {@linkcode MAX_RECEIPT_HASHES} hashes each.
   *
   * @returns Each sender with one receipt's body.
   */
  *receipts(): Generator<{ readonly sender: string; readonly body: Uint8Array }> {
    for (const [sender, { wanted, final }] of this.#bySender) {
      for (const [hashes, wantsAck] of [[wanted, true], [final, false]] as const) {
        for (let i = 0; i < hashes.length; i += MAX_RECEIPT_HASHES) {
          const part = hashes.slice(i, i + MAX_RECEIPT_HASHES);
          yield { sender, body: encodeReceipt({ wantsAck, hashes: part }) };
        }
      }
    }
  }
}
