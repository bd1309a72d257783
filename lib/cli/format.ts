/**
 * How the CLI writes messages, delivery states and contacts for people.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { stateMark } from "./format.ts";
 *
 * assert.equal(stateMark("delivered"), "✓ delivered");
 * ```
 *
 * @module
 */
import type { MessageState } from "../messaging/storage.ts";
import type { ChatMessage } from "../profile/chat_message.ts";
import type { Contact } from "../profile/contacts.ts";

/**
 * The mark shown after a sent message for its delivery state.
 *
 * @param state The state.
 * @returns The mark, empty for received messages.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { stateMark } from "./format.ts";
 *
 * assert.equal(stateMark("stored"), "⧗ queued for offline delivery");
 * assert.equal(stateMark("received"), "");
 * ```
 */
export function stateMark(state: MessageState): string {
  switch (state) {
    case "pending":
      return "… sending";
    case "stored":
      return "⧗ queued for offline delivery";
    case "delivered":
      return "✓ delivered";
    default:
      return "";
  }
}

function pad(n: number): string {
  return String(n).padStart(2, "0");
}

/**
 * A timestamp as `HH:MM` if it is today, else `YYYY-MM-DD HH:MM`, local time.
 *
 * @param ms The time in ms since the epoch.
 * @param now The current time in ms. Default `Date.now()`.
 * @returns The formatted time.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatTime } from "./format.ts";
 *
 * const t = new Date(2024, 0, 2, 9, 5).getTime();
 * assert.equal(formatTime(t, t + 1000), "09:05");
 * assert.equal(formatTime(t, t + 86_400_000 * 3), "2024-01-02 09:05");
 * ```
 */
export function formatTime(ms: number, now: number = Date.now()): string {
  const d = new Date(ms);
  const n = new Date(now);
  const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  const sameDay = d.getFullYear() === n.getFullYear() && d.getMonth() === n.getMonth() &&
    d.getDate() === n.getDate();
  return sameDay ? hm : `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${hm}`;
}

/**
 * Who a message is from, labelled so an unverified or unknown sender stands out.
 *
 * @param m The message.
 * @returns `you`, the contact's name (with `(unverified)` unless verified),
 *   or `unknown <user ID>`.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { senderLabel } from "./format.ts";
 *
 * const base = {
 *   seq: 1, id: "00", peer: "dimabc", text: "hi", sentAt: 0, via: "direct",
 *   protection: "ratchet" as const,
 * };
 * assert.equal(
 *   senderLabel({ ...base, direction: "in", contact: "bob", verified: true, state: "received" }),
 *   "bob",
 * );
 * assert.equal(
 *   senderLabel({ ...base, direction: "in", contact: undefined, verified: false, state: "received" }),
 *   "unknown dimabc",
 * );
 * ```
 */
export function senderLabel(m: ChatMessage): string {
  if (m.direction === "out") return "you";
  if (m.contact === undefined) return `unknown ${m.peer}`;
  return m.verified ? m.contact : `${m.contact} (unverified)`;
}

/**
 * One message as a line: time, sender, text and, for sent ones, the delivery
 * state; a message without forward secrecy says so.
 *
 * @param m The message.
 * @param now The current time in ms. Default `Date.now()`.
 * @returns The line, without a line end.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { messageLine } from "./format.ts";
 *
 * const line = messageLine({
 *   seq: 1, id: "00", direction: "out", peer: "dimabc", contact: "bob", verified: true,
 *   text: "hello", sentAt: 0, state: "delivered", via: "direct", protection: "ratchet",
 * });
 * assert.ok(line.endsWith("you: hello  ✓ delivered"));
 * ```
 */
export function messageLine(m: ChatMessage, now: number = Date.now()): string {
  const mark = stateMark(m.state);
  // A peer's text must not drive the terminal: control characters (escape
  // sequences included) are replaced; line breaks are indented.
  // deno-lint-ignore no-control-regex
  const text = m.text.replace(/[\x00-\x09\x0b-\x1f\x7f-\x9f]/g, "\uFFFD").replace(/\n/g, "\n    ");
  const weak = m.protection === "static" ? "  (no forward secrecy)" : "";
  return `[${formatTime(m.sentAt, now)}] ${senderLabel(m)}: ${text}${
    mark ? `  ${mark}` : ""
  }${weak}`;
}

/**
 * A contact's trust state in a few words; a key change is loud.
 *
 * @param c The contact.
 * @returns `verified`, `not verified`, or a warning in capitals.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { trustLabel } from "./format.ts";
 *
 * const c = { name: "bob", id: "dimabc", displayName: "Bob", fingerprint: "", lastSeen: 0 };
 * assert.equal(trustLabel({ ...c, verified: true, keyChanged: false }), "verified");
 * assert.match(trustLabel({ ...c, verified: true, keyChanged: true }), /KEYS CHANGED/);
 * ```
 */
export function trustLabel(c: Contact): string {
  if (c.keyChanged) return "⚠ KEYS CHANGED — verify again";
  return c.verified ? "verified" : "not verified";
}

/**
 * The loud warning printed wherever a contact whose keys changed is used.
 *
 * @param name The contact's local name.
 * @returns The warning, one line.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { keyChangedWarning } from "./format.ts";
 *
 * assert.match(keyChangedWarning("bob"), /dim contact verify bob/);
 * ```
 */
export function keyChangedWarning(name: string): string {
  return `⚠ WARNING: ${name}'s keys have CHANGED since you added them. This may be a new ` +
    `device, or someone impersonating ${name}. Sending is blocked: compare safety numbers ` +
    `out of band (dim contact verify ${name}), then accept with ` +
    `dim contact verify ${name} --confirm`;
}
