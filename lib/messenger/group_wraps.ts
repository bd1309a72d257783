/**
 * The receiving side of group wraps in the messenger: a wrap recognized by
 * its hint and opened as the inbox stores it (outside the pairwise
 * sessions), the order in which wrapped messages that arrived together
 * are taken, and a stored group message as a chat message.
 *
 * @module
 */
import { sha256 } from "@noble/hashes/sha2.js";
import { encodeUserId } from "../crypto/identity.ts";
import type { OpenedEnvelope } from "../crypto/envelope.ts";
import { decodeGroupMessageHeader } from "../group/sender_keys.ts";
import { openWrap } from "../group/wire.ts";
import { GROUP_MESSAGE_CONTENT_TYPE, type IncomingMessage } from "../messaging/mod.ts";
import type { ChatMessage } from "../profile/chat_message.ts";
import type { GroupDelivery, StoredGroupMessage } from "../store/group_store.ts";

/**
 * Opens a wrap with one of this user's inbox keys (one HMAC per key, no
 * trial decryption), as the inbox stores it: the sender the group message
 * names (checked when the group layer takes it), an ID hashed from the
 * group message (a replay is a duplicate), the arrival time.
 *
 * @param inboxKeys This user's inbox keys, of every group.
 * @param bytes What arrived.
 * @param now The arrival time in ms.
 * @returns The wrapped group message as an opened envelope, or `undefined`
 *   if the bytes are no wrap of this user's.
 * @throws {DecryptionError} If a hint matches but the wrap does not open.
 */
export function openGroupWrap(
  inboxKeys: readonly Uint8Array[],
  bytes: Uint8Array,
  now: number,
): OpenedEnvelope | undefined {
  const opened = openWrap(inboxKeys, bytes);
  if (opened === undefined) return undefined;
  const body = new Uint8Array(opened.groupMessage);
  const sender = new Uint8Array(decodeGroupMessageHeader(body).sender);
  return {
    senderSigningKey: sender,
    senderId: encodeUserId(sender),
    id: new Uint8Array(sha256(body).subarray(0, 16)),
    timestamp: now,
    contentType: GROUP_MESSAGE_CONTENT_TYPE,
    body,
  };
}

/**
 * Puts group messages that arrived together in each sender's chain order
 * (epoch, then iteration), each sender's in that sender's places: a wrap's
 * time is its arrival's, so a mailbox fetch may bring one sender's in any order.
 *
 * @param batch The messages as they arrived.
 * @returns The same messages, reordered per sender.
 */
export function inSenderOrder(batch: readonly IncomingMessage[]): IncomingMessage[] {
  const order = (m: IncomingMessage) => {
    try {
      const h = decodeGroupMessageHeader(m.message.body);
      return h.epoch * 2 ** 32 + h.iteration;
    } catch {
      return 0;
    }
  };
  const bySender = Map.groupBy(batch, (m) => m.message.peer);
  for (const list of bySender.values()) list.sort((a, b) => order(a) - order(b));
  return batch.map((m) => bySender.get(m.message.peer)!.shift()!);
}

/**
 * A stored group message as the history and `messages()` show it.
 *
 * @param m The stored message.
 * @param contact Its writer, if a contact.
 * @param groupName The group's name.
 * @param deliveries A sent message's state per member (empty for a received one).
 * @returns The chat message, with who wrote it and, if sent, its delivery counts.
 */
export function groupChatMessage(
  m: StoredGroupMessage,
  contact: { readonly name: string; readonly verified?: boolean } | undefined,
  groupName: string,
  deliveries: readonly GroupDelivery[],
): ChatMessage {
  let counts = {};
  let deliveredAll = false;
  if (m.direction === "out") {
    const delivered = deliveries.filter((x) => x.state === "delivered").length;
    counts = { deliveredTo: delivered, members: deliveries.length };
    deliveredAll = delivered === deliveries.length;
  }
  return {
    seq: m.seq,
    id: m.id,
    direction: m.direction,
    peer: m.sender,
    contact: contact?.name,
    verified: contact?.verified ?? false,
    text: m.text,
    sentAt: m.sentAt,
    state: m.direction === "in" ? "received" : deliveredAll ? "delivered" : "pending",
    via: "group",
    protection: "ratchet",
    group: { id: m.groupId, name: groupName, ...counts },
  };
}
