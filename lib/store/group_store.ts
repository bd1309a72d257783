/**
 * Group chats at rest: the groups this user is in, each group's signed
 * membership changes, this user's sender keys per group (a
 * {@link "../group/keyring_codec.ts"} encoding), and the group history with
 * per-member delivery.
 *
 * Everything secret or private is sealed with the history key
 * ({@linkcode HistoryBox}), as message bodies are: the keyring (chains and
 * signing keys), the changes (they name the members) and message bodies.
 * A copy of the file shows how many groups there are, who wrote in them
 * and when, but not who is in them nor what was said. Each sealed value's
 * associated data names its row, so a value moved to another row does not
 * open.
 *
 * | table             | what                                                                    |
 * | ----------------- | ----------------------------------------------------------------------- |
 * | `groups`          | group ID (hex), when this user joined, whether it left                  |
 * | `group_changes`   | group ID, change hash, sealed encoded change                            |
 * | `group_keys`      | group ID, sealed keyring                                                 |
 * | `group_messages`  | group ID, sender, message ID (unique together), times, sealed body      |
 * | `group_deliveries`| a sent group message's copy for one member: the outbox row carrying it |
 * | `group_carriers`  | received pairwise messages carrying a group item, once handled         |
 * | `group_verified`  | one row: the sealed list of members (not contacts) this user verified  |
 *
 * The tables are new in DIM 0.3: an older file gets them on its next open
 * (`CREATE TABLE IF NOT EXISTS`), with no schema bump.
 *
 * @example A group message stored once
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity } from "../crypto/identity.ts";
 * import { HistoryBox } from "../crypto/secret_box.ts";
 * import { Connection } from "./connection.ts";
 * import { GROUPS_SCHEMA, GroupStore } from "./group_store.ts";
 *
 * using conn = Connection.open(":memory:", [GROUPS_SCHEMA]);
 * const groups = new GroupStore(conn);
 * groups.useKey(HistoryBox.forIdentity(await Identity.generate()));
 * const m = {
 *   groupId: "00".repeat(16), sender: "dim-x", id: new Uint8Array(16), direction: "in" as const,
 *   sentAt: 1, receivedAt: 2, body: new TextEncoder().encode("hi"),
 * };
 * assert.ok(groups.insertMessage(m) !== undefined);
 * assert.equal(groups.insertMessage(m), undefined);
 * assert.equal(groups.history(m.groupId)[0]?.text, "hi");
 * ```
 *
 * @module
 */
import type { HistoryBox } from "../crypto/secret_box.ts";
import { StorageError } from "../errors.ts";
import { fromUtf8, toHex, utf8 } from "../platform/bytes.ts";
import { blob, type Connection, type Row, type SchemaPart } from "./connection.ts";

/** The group tables. */
export const GROUPS_SCHEMA: SchemaPart = {
  tables: [
    "groups",
    "group_changes",
    "group_keys",
    "group_messages",
    "group_deliveries",
    "group_carriers",
    "group_verified",
  ],
  sql: `
CREATE TABLE IF NOT EXISTS groups (
  group_id TEXT PRIMARY KEY,
  joined_at INTEGER NOT NULL,
  left_group INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS group_changes (
  group_id TEXT NOT NULL,
  hash TEXT NOT NULL,
  change BLOB NOT NULL,
  PRIMARY KEY (group_id, hash)
);
CREATE TABLE IF NOT EXISTS group_keys (
  group_id TEXT PRIMARY KEY,
  keyring BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS group_messages (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  group_id TEXT NOT NULL,
  sender TEXT NOT NULL,
  msg_id BLOB NOT NULL,
  direction TEXT NOT NULL CHECK (direction IN ('in', 'out')),
  sent_at INTEGER NOT NULL,
  received_at INTEGER NOT NULL,
  body BLOB NOT NULL,
  UNIQUE (group_id, sender, msg_id)
);
CREATE INDEX IF NOT EXISTS group_messages_by_group ON group_messages (group_id, sent_at, seq);
CREATE TABLE IF NOT EXISTS group_deliveries (
  message_seq INTEGER NOT NULL,
  member TEXT NOT NULL,
  carrier_seq INTEGER NOT NULL,
  PRIMARY KEY (message_seq, member)
);
CREATE TABLE IF NOT EXISTS group_carriers (
  seq INTEGER PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS group_verified (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  members BLOB NOT NULL
);`,
};

/** A group message to store. */
export interface NewGroupMessage {
  /** The group ID in hex. */
  readonly groupId: string;
  /** The sender's user ID. */
  readonly sender: string;
  /** The 16-byte message ID. */
  readonly id: Uint8Array;
  /** Sent by this user, or received. */
  readonly direction: "in" | "out";
  /** The sender's timestamp (ms). */
  readonly sentAt: number;
  /** When it was stored here (ms). */
  readonly receivedAt: number;
  /** The UTF-8 text. */
  readonly body: Uint8Array;
}

/** A stored group message. */
export interface StoredGroupMessage {
  /** Local sequence number (of the group history). */
  readonly seq: number;
  /** The group ID in hex. */
  readonly groupId: string;
  /** The sender's user ID. */
  readonly sender: string;
  /** The hex message ID. */
  readonly id: string;
  /** Sent or received. */
  readonly direction: "in" | "out";
  /** The sender's timestamp (ms). */
  readonly sentAt: number;
  /** When it was stored (ms). */
  readonly receivedAt: number;
  /** The text. */
  readonly text: string;
}

/** How far one sent group message got: one entry per member it went to. */
export interface GroupDelivery {
  /** The member's user ID. */
  readonly member: string;
  /** The state of the copy for that member (`pending`, `stored`, `delivered`, `failed`). */
  readonly state: string;
}

/** The group tables on a shared connection. Needs the history key before any use. */
export class GroupStore {
  readonly #conn: Connection;
  #box: HistoryBox | undefined;

  /**
   * Uses a connection opened with {@linkcode GROUPS_SCHEMA}.
   *
   * @param conn The connection.
   */
  constructor(conn: Connection) {
    this.#conn = conn;
  }

  /**
   * Gives the store the history key, which seals everything it writes.
   *
   * @param box The history box of the user's identity.
   */
  useKey(box: HistoryBox): void {
    this.#box = box;
  }

  #key(): HistoryBox {
    if (this.#box === undefined) throw new StorageError("Cannot use groups: the history is locked");
    return this.#box;
  }

  /**
   * Records that this user is in a group (again).
   *
   * @param groupId The group ID in hex.
   * @param now When (ms).
   */
  addGroup(groupId: string, now: number): void {
    this.#conn.run("store group", (db) =>
      db.prepare(
        `INSERT INTO groups (group_id, joined_at) VALUES (?, ?)
           ON CONFLICT (group_id) DO UPDATE SET left_group = 0`,
      ).run(groupId, now));
  }

  /**
   * Marks a group as left (its history stays).
   *
   * @param groupId The group ID in hex.
   */
  markLeft(groupId: string): void {
    this.#conn.run(
      "update group",
      (db) => db.prepare("UPDATE groups SET left_group = 1 WHERE group_id = ?").run(groupId),
    );
  }

  /**
   * The groups this user is or was in.
   *
   * @returns Their IDs, whether left, oldest first.
   */
  groups(): { readonly groupId: string; readonly left: boolean }[] {
    const rows = this.#conn.run(
      "read groups",
      (db) => db.prepare("SELECT * FROM groups ORDER BY joined_at, group_id").all(),
    ) as Row[];
    return rows.map((r) => ({ groupId: String(r.group_id), left: Number(r.left_group) === 1 }));
  }

  /**
   * Keeps one membership change (sealed). A change held already is kept once.
   *
   * @param groupId The group ID in hex.
   * @param hash The change's hash in hex.
   * @param change The encoded change.
   */
  addChange(groupId: string, hash: string, change: Uint8Array): void {
    const sealed = this.#key().seal(`group-change:${groupId}:${hash}`, change);
    this.#conn.run("store group change", (db) =>
      db.prepare(
        "INSERT INTO group_changes (group_id, hash, change) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
      ).run(groupId, hash, sealed));
  }

  /**
   * A group's changes, opened, in the order they were stored.
   *
   * @param groupId The group ID in hex.
   * @returns The encoded changes.
   */
  changes(groupId: string): Uint8Array[] {
    const rows = this.#conn.run(
      "read group changes",
      (db) =>
        db.prepare("SELECT hash, change FROM group_changes WHERE group_id = ? ORDER BY rowid").all(
          groupId,
        ),
    ) as Row[];
    const box = this.#key();
    return rows.map((r) => box.open(`group-change:${groupId}:${String(r.hash)}`, blob(r.change)));
  }

  /**
   * Replaces a group's keyring (sealed).
   *
   * @param groupId The group ID in hex.
   * @param keyring The encoded keyring.
   */
  saveKeyring(groupId: string, keyring: Uint8Array): void {
    const sealed = this.#key().seal(`group-keys:${groupId}`, keyring);
    this.#conn.run("store group keys", (db) =>
      db.prepare(
        `INSERT INTO group_keys (group_id, keyring) VALUES (?, ?)
           ON CONFLICT (group_id) DO UPDATE SET keyring = excluded.keyring`,
      ).run(groupId, sealed));
  }

  /**
   * A group's keyring, opened.
   *
   * @param groupId The group ID in hex.
   * @returns The encoded keyring, or `undefined`.
   */
  keyring(groupId: string): Uint8Array | undefined {
    const r = this.#conn.run(
      "read group keys",
      (db) => db.prepare("SELECT keyring FROM group_keys WHERE group_id = ?").get(groupId),
    ) as
      | Row
      | undefined;
    return r === undefined ? undefined : this.#key().open(`group-keys:${groupId}`, blob(r.keyring));
  }

  /**
   * Replaces the list of members (not contacts) whose safety number this
   * user confirmed, sealed as one value: a copy of the file does not show
   * who was verified.
   *
   * @param entries One string per member (its user ID and the key it was verified with).
   */
  saveVerifiedMembers(entries: readonly string[]): void {
    const sealed = this.#key().seal("group-verified", utf8(JSON.stringify(entries)));
    this.#conn.run(
      "store verified members",
      (db) =>
        db.prepare("INSERT OR REPLACE INTO group_verified (id, members) VALUES (1, ?)").run(sealed),
    );
  }

  /**
   * The list {@linkcode GroupStore.saveVerifiedMembers} kept.
   *
   * @returns The entries, none if none were kept.
   */
  verifiedMembers(): string[] {
    const r = this.#conn.run(
      "read verified members",
      (db) => db.prepare("SELECT members FROM group_verified WHERE id = 1").get(),
    ) as Row | undefined;
    if (r === undefined) return [];
    const list = JSON.parse(fromUtf8(this.#key().open("group-verified", blob(r.members))));
    return Array.isArray(list) ? list.filter((x): x is string => typeof x === "string") : [];
  }

  #label(groupId: string, sender: string, id: Uint8Array | string): string {
    return `group-message:${groupId}:${sender}:${typeof id === "string" ? id : toHex(id)}`;
  }

  /**
   * Stores a group message unless the same sender already sent this ID in this group.
   *
   * @param m The message.
   * @returns The stored message, or `undefined` for a duplicate.
   */
  insertMessage(m: NewGroupMessage): StoredGroupMessage | undefined {
    const body = this.#key().seal(this.#label(m.groupId, m.sender, m.id), m.body);
    const r = this.#conn.run("store group message", (db) =>
      db.prepare(
        `INSERT INTO group_messages (group_id, sender, msg_id, direction, sent_at, received_at, body)
           VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
      ).run(m.groupId, m.sender, m.id, m.direction, m.sentAt, m.receivedAt, body));
    if (Number(r.changes) === 0) return undefined;
    return {
      seq: Number(r.lastInsertRowid),
      groupId: m.groupId,
      sender: m.sender,
      id: toHex(m.id),
      direction: m.direction,
      sentAt: m.sentAt,
      receivedAt: m.receivedAt,
      text: decodeText(m.body),
    };
  }

  #toMessage(r: Row): StoredGroupMessage {
    const groupId = String(r.group_id);
    const sender = String(r.sender);
    const id = toHex(blob(r.msg_id));
    return {
      seq: Number(r.seq),
      groupId,
      sender,
      id,
      direction: String(r.direction) as "in" | "out",
      sentAt: Number(r.sent_at),
      receivedAt: Number(r.received_at),
      text: decodeText(this.#key().open(this.#label(groupId, sender, id), blob(r.body))),
    };
  }

  /**
   * One group's conversation, oldest first, in the senders' order.
   *
   * @param groupId The group ID in hex.
   * @param options `limit`: the newest this many (default 50).
   * @returns The messages.
   */
  history(groupId: string, options: { readonly limit?: number } = {}): StoredGroupMessage[] {
    const rows = this.#conn.run("read group history", (db) =>
      db.prepare(
        `SELECT * FROM (SELECT * FROM group_messages WHERE group_id = ?
           ORDER BY sent_at DESC, seq DESC LIMIT ?) ORDER BY sent_at, seq`,
      ).all(groupId, options.limit ?? 50)) as Row[];
    return rows.map((r) => this.#toMessage(r));
  }

  /**
   * One stored group message.
   *
   * @param seq Its local sequence number.
   * @returns The message, or `undefined`.
   */
  message(seq: number): StoredGroupMessage | undefined {
    const r = this.#conn.run(
      "read group message",
      (db) => db.prepare("SELECT * FROM group_messages WHERE seq = ?").get(seq),
    ) as Row | undefined;
    return r === undefined ? undefined : this.#toMessage(r);
  }

  /**
   * Records which outbox row carries a sent group message to one member.
   *
   * @param messageSeq The group message's sequence number.
   * @param member The member's user ID.
   * @param carrierSeq The sequence number of the pairwise message carrying it.
   */
  addDelivery(messageSeq: number, member: string, carrierSeq: number): void {
    this.#conn.run("store group delivery", (db) =>
      db.prepare(
        `INSERT INTO group_deliveries (message_seq, member, carrier_seq) VALUES (?, ?, ?)
           ON CONFLICT DO UPDATE SET carrier_seq = excluded.carrier_seq`,
      ).run(messageSeq, member, carrierSeq));
  }

  /**
   * How far a sent group message got, per member: the state of the message
   * carrying it to each.
   *
   * @param messageSeq The group message's sequence number.
   * @returns One entry per member it was sent to.
   */
  deliveries(messageSeq: number): GroupDelivery[] {
    const rows = this.#conn.run("read group deliveries", (db) =>
      db.prepare(
        `SELECT d.member AS member, COALESCE(m.state, 'pending') AS state FROM group_deliveries d
           LEFT JOIN messages m ON m.seq = d.carrier_seq WHERE d.message_seq = ? ORDER BY d.member`,
      ).all(messageSeq)) as Row[];
    return rows.map((r) => ({ member: String(r.member), state: String(r.state) }));
  }

  /**
   * The group message a pairwise message carries, if it carries one.
   *
   * @param carrierSeq The pairwise message's sequence number.
   * @returns The group message's sequence number, or `undefined`.
   */
  carried(carrierSeq: number): number | undefined {
    const r = this.#conn.run(
      "read group delivery",
      (db) =>
        db.prepare("SELECT message_seq FROM group_deliveries WHERE carrier_seq = ?").get(
          carrierSeq,
        ),
    ) as Row | undefined;
    return r === undefined ? undefined : Number(r.message_seq);
  }

  /**
   * Marks a received pairwise message that carries a group change, key or
   * message as handled by the group layer (inside the caller's transaction,
   * if any): the one that stores what it carried, so a crash loses neither.
   *
   * @param carrierSeq The pairwise message's sequence number.
   */
  markHandled(carrierSeq: number): void {
    this.#conn.run(
      "store group carrier",
      (db) => db.prepare("INSERT OR IGNORE INTO group_carriers (seq) VALUES (?)").run(carrierSeq),
    );
  }

  /**
   * Received pairwise messages of some content types that the group layer
   * has not marked handled ({@linkcode GroupStore.markHandled}), oldest
   * first: stored and acknowledged before a crash that came before their
   * handling, or held until their group is joined. Reads the `messages`
   * table of the same connection.
   *
   * @param contentTypes The carriers' content types.
   * @returns Their sequence numbers in the `messages` table.
   */
  unhandled(contentTypes: readonly number[]): number[] {
    const types = contentTypes.map((t) => Math.trunc(t)).join(", ");
    const rows = this.#conn.run("read group carriers", (db) =>
      db.prepare(
        `SELECT seq FROM messages WHERE direction = 'in' AND content_type IN (${types})
           AND seq NOT IN (SELECT seq FROM group_carriers) ORDER BY seq`,
      ).all()) as Row[];
    return rows.map((r) => Number(r.seq));
  }
}

function decodeText(body: Uint8Array): string {
  try {
    return fromUtf8(body);
  } catch {
    return "\uFFFD";
  }
}
