/**
 * A message as a profile shows it: the stored message of the history, with
 * its text decoded and the contact it is with (name, trust).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { chatMessage, TEXT_CONTENT_TYPE } from "./chat_message.ts";
 *
 * const m = chatMessage({
 *   seq: 1, id: new Uint8Array(16), peer: "dimx", direction: "in", sentAt: 0, receivedAt: 0,
 *   contentType: TEXT_CONTENT_TYPE, body: new TextEncoder().encode("hi"), state: "received",
 *   via: "direct", protection: "ratchet",
 * }, undefined);
 * assert.equal(m.text, "hi");
 * assert.equal(m.contact, undefined);
 * ```
 *
 * @module
 */
import { fromUtf8, toHex } from "../platform/bytes.ts";
import type { MessageProtection, MessageState, StoredMessage } from "../messaging/storage.ts";
import type { StoredContact } from "../store/contact_store.ts";

/** Content type of a UTF-8 text message. */
export const TEXT_CONTENT_TYPE = 1;

/** A message in a conversation. */
export interface ChatMessage {
  /** Local sequence number. */
  readonly seq: number;
  /** Hex message ID. */
  readonly id: string;
  /** Whether it was sent or received. */
  readonly direction: "in" | "out";
  /** The other party's user ID. */
  readonly peer: string;
  /** The contact's local name, if the peer is a contact. */
  readonly contact: string | undefined;
  /** Whether the peer is a contact whose safety number was confirmed. */
  readonly verified: boolean;
  /** The text (for text messages). */
  readonly text: string;
  /** The sender's timestamp (ms). */
  readonly sentAt: number;
  /** Delivery state. */
  readonly state: MessageState;
  /** How it travelled. */
  readonly via: string;
  /**
   * How its content was protected: "ratchet" (a forward-secret session) or
   * "static" (sealed to the recipient's long-term key: the first contact with
   * a user whose prekeys could not be found).
   */
  readonly protection: MessageProtection;
  /**
   * The group it was written in, for a group message (then `peer` is who
   * wrote it, `seq` is the group history's, and `deliveredTo` counts the
   * members a sent one reached, of `members`).
   */
  readonly group?: {
    readonly id: string;
    readonly name: string;
    readonly deliveredTo?: number;
    readonly members?: number;
  };
}

/**
 * A stored message as a profile shows it.
 *
 * @param m The stored message.
 * @param contact The contact it is with, if any.
 * @returns The message; non-text content gets a placeholder text.
 */
export function chatMessage(m: StoredMessage, contact: StoredContact | undefined): ChatMessage {
  let text: string;
  if (m.contentType !== TEXT_CONTENT_TYPE) {
    text = `[a message of content type ${m.contentType}, which this dim cannot show]`;
  } else {
    try {
      text = fromUtf8(m.body);
    } catch {
      text = "\uFFFD";
    }
  }
  return {
    seq: m.seq,
    id: toHex(m.id),
    direction: m.direction,
    peer: m.peer,
    contact: contact?.name,
    verified: contact?.verified ?? false,
    text,
    sentAt: m.sentAt,
    state: m.state,
    via: m.via,
    protection: m.protection,
  };
}
