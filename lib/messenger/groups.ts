/**
 * Group chats in the messenger: the signed membership and sender keys of
 * `lib/group`, carried over the pairwise sessions, kept sealed in the
 * store, and shown as chat messages with their group.
 *
 * What travels, and how:
 *
 * - **Membership changes** (content type `GROUP_CHANGE_CONTENT_TYPE`) go to
 *   every member in its pairwise session; a new member gets every change of
 *   the group, the create first, in order (one conversation's outbox keeps
 *   its order). A change is accepted only as `GroupLog.receive` allows
 *   (signed, authorized in its causal past, not a replay). Every admin
 *   passes on each change it applies that it did not make, and sends a
 *   member added by another admin every change it holds: members that two
 *   admins changed concurrently still get each other's changes, and all
 *   converge on one membership.
 * - **Sender keys** (`SENDER_KEY_CONTENT_TYPE`): each member distributes its
 *   chain when it joins, to a member added later (at the chain's current
 *   iteration: the newcomer reads nothing older), and, after a removal or
 *   leave, a new chain to the remaining members only. A distribution that
 *   arrives before the change that makes its sender a member waits (a few
 *   per group) and is taken when the change is applied.
 * - **Group messages** (`GROUP_MESSAGE_CONTENT_TYPE`) are encrypted and
 *   signed once with the sender's chain; each member gets the same
 *   ciphertext in a wrap of its own (`lib/group/wire.ts`: one HMAC, one
 *   HKDF, one AES-GCM, no public-key operation), queued as that member's
 *   outbox entry's envelope, so retries, mailbox copies, acknowledgements
 *   and receipts are those of any message, and "delivered to k of n" is
 *   the count of those entries delivered; a member whose inbox key this
 *   user lacks gets it in the pairwise session. The inbox recognizes a wrap
 *   ({@linkcode MessengerGroups.openWrap}) before it opens an envelope.
 *
 * Members who are not contacts are shown as "group member, not a contact";
 * their safety number ({@linkcode MessengerGroups.safetyNumber}) is checked
 * as a contact's is.
 *
 * @module
 */
import { decodeUserId, encodeUserId } from "../crypto/identity.ts";
import { safetyNumber } from "../crypto/safety_number.ts";
import { toHex, utf8 } from "../platform/bytes.ts";
import type { OpenedEnvelope } from "../crypto/envelope.ts";
import { decodeChange } from "../group/change.ts";
import { MAX_GROUP_BODY_LENGTH } from "../group/constants.ts";
import { GroupKeyring } from "../group/keyring.ts";
import { decodeKeyring, encodeKeyring } from "../group/keyring_codec.ts";
import { GroupLog, type GroupState } from "../group/membership.ts";
import {
  GROUP_CHANGE_CONTENT_TYPE,
  GROUP_MESSAGE_CONTENT_TYPE,
  type IncomingMessage,
  SENDER_KEY_CONTENT_TYPE,
} from "../messaging/mod.ts";
import type { ChatMessage } from "../profile/chat_message.ts";
import type { GroupDelivery, StoredGroupMessage } from "../store/group_store.ts";
import {
  GROUP_TYPES,
  type GroupChats,
  type GroupDeps,
  GroupError,
  type GroupInfo,
  MAX_EARLY_DISTRIBUTIONS,
  MAX_JOINING,
  type VerifiedMember,
} from "./group_types.ts";
import { type PinnedMember, resolveGroup, showGroup, VerifiedMembers } from "./group_members.ts";
import { groupChatMessage, inSenderOrder, openGroupWrap } from "./group_wraps.ts";

export { GroupError, NOT_A_CONTACT } from "./group_types.ts";
export type {
  GroupChats,
  GroupDeps,
  GroupInfo,
  GroupMember,
  VerifiedMember,
} from "./group_types.ts";

/** The groups of one messenger. Operations run one at a time. */
export class MessengerGroups implements GroupChats {
  readonly #deps: GroupDeps;
  readonly #logs = new Map<string, GroupLog>();
  readonly #rings = new Map<string, GroupKeyring>();
  readonly #early = new Map<string, { from: Uint8Array; bytes: Uint8Array }[]>();
  readonly #joining = new Map<string, GroupLog>();
  /** Group messages that arrived together (a mailbox fetch), taken in one turn. */
  #arrived: IncomingMessage[] = [];
  #queue: Promise<unknown> = Promise.resolve();
  readonly #verified: VerifiedMembers;

  /** @param deps What the groups need of the messenger. */
  constructor(deps: GroupDeps) {
    this.#deps = deps;
    this.#verified = new VerifiedMembers(deps.store.groups);
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn);
    this.#queue = run.catch(() => {});
    return run;
  }

  get #store() {
    return this.#deps.store.groups;
  }

  /**
   * Loads the groups from the store (their changes are checked again).
   *
   * @returns When loaded.
   */
  load(): Promise<void> {
    return this.#serial(async () => {
      const self = this.#deps.identity();
      for (const { groupId, left } of this.#store.groups()) {
        if (left) continue;
        const [create, ...rest] = this.#store.changes(groupId);
        if (create === undefined) continue;
        const log = await GroupLog.open(create);
        for (const bytes of rest) await log.receive(bytes).catch(() => {});
        this.#logs.set(groupId, log);
        const saved = this.#store.keyring(groupId);
        this.#rings.set(
          groupId,
          saved === undefined
            ? new GroupKeyring(log.groupId, self.signingPublicKey)
            : GroupKeyring.restore(log.groupId, self.signingPublicKey, decodeKeyring(saved)),
        );
      }
      // Carriers stored and acknowledged but not handled (a crash came between, or they waited here).
      for (const seq of this.#store.unhandled(GROUP_TYPES)) {
        const message = this.#deps.store.messages.get(seq);
        if (message === undefined) continue;
        await this.#handle({ message, senderSigningKey: decodeUserId(message.peer) });
      }
    });
  }

  #info(groupId: string, left = false): GroupInfo {
    const contactOf = (id: string) => this.#deps.store.contacts.getById(id);
    const s = this.#logs.get(groupId)?.state();
    return showGroup(groupId, s, this.#deps.identity().id, contactOf, this.#verified, left);
  }

  /**
   * The groups this user is in, and those it left.
   *
   * @returns One entry per group.
   */
  list(): GroupInfo[] {
    return this.#store.groups().map((g) =>
      g.left ? { ...this.#info(g.groupId, true), left: true } : this.#info(g.groupId)
    );
  }

  /**
   * Finds a group by ID (or a unique prefix of it) or by name.
   *
   * @param idOrName The group.
   * @returns Its ID.
   * @throws {GroupError} If there is no such group, or the name is ambiguous.
   */
  resolve(idOrName: string): string {
    return resolveGroup(this.#logs, idOrName);
  }

  /**
   * One group.
   *
   * @param idOrName The group's ID or name.
   * @returns The group.
   * @throws {GroupError} If there is no such group.
   */
  group(idOrName: string): GroupInfo {
    return this.#info(this.resolve(idOrName));
  }

  /**
   * A member's safety number, to compare with theirs as with a contact's.
   *
   * @param idOrName The group.
   * @param memberId The member's user ID.
   * @returns 60 digits in 12 groups.
   * @throws {GroupError} If there is no such group or member.
   */
  safetyNumber(idOrName: string, memberId: string): Promise<string> {
    const m = this.#member(idOrName, memberId);
    return Promise.resolve(safetyNumber(this.#deps.identity().public, m));
  }

  #member(idOrName: string, member: string): PinnedMember {
    const s = this.#logs.get(this.resolve(idOrName))!.state();
    const id = this.#deps.book.find(member)?.userId ?? member;
    const m = s.members.find((m) => m.id === id);
    if (m === undefined) throw new GroupError(`Cannot find member ${member} in ${s.name}`);
    return m;
  }

  /**
   * A member's safety number; with `confirm`, marks the member verified: a
   * contact as a contact, a member who is not one in the group store.
   *
   * @param idOrName The group.
   * @param member The member's user ID or contact name.
   * @param options `confirm`: the numbers matched.
   * @returns The member as `group()` shows it, and the safety number.
   * @throws {GroupError} If there is no such group or member, or it is this user.
   */
  verifyMember(
    idOrName: string,
    member: string,
    options: { readonly confirm?: boolean } = {},
  ): Promise<VerifiedMember> {
    const groupId = this.resolve(idOrName);
    const m = this.#member(groupId, member);
    const me = this.#deps.identity();
    if (m.id === me.id) throw new GroupError("Cannot verify yourself");
    if (options.confirm === true) {
      if (this.#deps.store.contacts.getById(m.id) !== undefined) this.#deps.book.verify(m.id);
      else this.#verified.add(m);
    }
    const shown = this.#info(groupId).members.find((x) => x.id === m.id)!;
    return Promise.resolve({ ...shown, safetyNumber: safetyNumber(me.public, m) });
  }

  /**
   * Makes a group of this user (its admin) and contacts.
   *
   * @param name 1 to 100 bytes.
   * @param contacts The contacts' names or IDs.
   * @returns The group.
   * @throws {UnknownContactError} If a contact is unknown.
   */
  create(name: string, contacts: readonly string[]): Promise<GroupInfo> {
    return this.#serial(async () => {
      const me = this.#deps.identity();
      const members = contacts.map((c) => this.#deps.book.sendable(c));
      const { log, change } = await GroupLog.create(me, {
        name,
        members: members.map((m) => ({
          signingPublicKey: m.signingPublicKey,
          encryptionPublicKey: m.encryptionPublicKey,
        })),
      });
      const groupId = log.state().groupId;
      this.#logs.set(groupId, log);
      this.#rings.set(groupId, new GroupKeyring(log.groupId, me.signingPublicKey));
      this.#store.addGroup(groupId, this.#deps.clock());
      this.#store.addChange(groupId, decodeChange(change).hash, change);
      await this.#sendToAll(log.state(), change, GROUP_CHANGE_CONTENT_TYPE);
      await this.#rotate(groupId);
      return this.#info(groupId);
    });
  }

  /**
   * Adds a contact to a group (this user must be an admin). The new member
   * gets every change, then each member's sender key at its current
   * iteration: it reads nothing sent before.
   *
   * @param idOrName The group.
   * @param contact The contact's name or ID.
   * @returns The group.
   * @throws {InvalidGroupChangeError} If this user is not an admin or the contact is a member.
   */
  addMember(idOrName: string, contact: string): Promise<GroupInfo> {
    return this.#serial(async () => {
      const groupId = this.resolve(idOrName);
      const row = this.#deps.book.sendable(contact);
      const change = await this.#logs.get(groupId)!.append(this.#deps.identity(), {
        kind: "add",
        member: {
          signingPublicKey: row.signingPublicKey,
          encryptionPublicKey: row.encryptionPublicKey,
        },
      });
      await this.#applied(groupId, change, true);
      return this.#info(groupId);
    });
  }

  /**
   * Removes a member (this user must be an admin). Every remaining member
   * rotates its sender key; the removed member gets nothing sent after.
   *
   * @param idOrName The group.
   * @param member The member's user ID or contact name.
   * @returns The group.
   * @throws {GroupError} If there is no such member.
   * @throws {InvalidGroupChangeError} If this user is not an admin.
   */
  removeMember(idOrName: string, member: string): Promise<GroupInfo> {
    return this.#serial(async () => {
      const groupId = this.resolve(idOrName);
      const log = this.#logs.get(groupId)!;
      const id = this.#deps.book.find(member)?.userId ?? member;
      const m = log.state().members.find((m) => m.id === id);
      if (m === undefined) throw new GroupError(`Cannot remove ${member}: not a member`);
      const before = log.state();
      const change = await log.append(this.#deps.identity(), {
        kind: "remove",
        target: m.signingPublicKey,
      });
      // The removed member learns of its removal, and nothing more.
      await this.#send(m, change, GROUP_CHANGE_CONTENT_TYPE);
      await this.#applied(groupId, change, true, before);
      return this.#info(groupId);
    });
  }

  /**
   * Makes a member an admin (this user must be one).
   *
   * @param idOrName The group.
   * @param member The member's user ID or contact name.
   * @returns The group.
   * @throws {GroupError} If there is no such member.
   * @throws {InvalidGroupChangeError} If this user is not an admin.
   */
  promote(idOrName: string, member: string): Promise<GroupInfo> {
    return this.#serial(async () => {
      const groupId = this.resolve(idOrName);
      const log = this.#logs.get(groupId)!;
      const id = this.#deps.book.find(member)?.userId ?? member;
      const m = log.state().members.find((m) => m.id === id);
      if (m === undefined) throw new GroupError(`Cannot promote ${member}: not a member`);
      const change = await log.append(this.#deps.identity(), {
        kind: "promote",
        target: m.signingPublicKey,
      });
      await this.#applied(groupId, change, true);
      return this.#info(groupId);
    });
  }

  /**
   * Leaves a group: the members are told and rotate their keys; the history stays.
   *
   * @param idOrName The group.
   * @returns When the leave is queued to every member.
   */
  leave(idOrName: string): Promise<void> {
    return this.#serial(async () => {
      const groupId = this.resolve(idOrName);
      const log = this.#logs.get(groupId)!;
      const before = log.state();
      const change = await log.append(this.#deps.identity(), { kind: "leave" });
      this.#store.addChange(groupId, decodeChange(change).hash, change);
      await this.#sendToAll(before, change, GROUP_CHANGE_CONTENT_TYPE);
      this.#forget(groupId);
    });
  }

  #forget(groupId: string): void {
    this.#store.markLeft(groupId);
    this.#logs.delete(groupId);
    this.#rings.delete(groupId);
    this.#store.saveKeyring(
      groupId,
      encodeKeyring({ own: undefined, ownOld: [], chains: [], epochSeen: [] }),
    );
  }

  /**
   * Sends a text to a group: encrypted once, one outbox entry per member.
   *
   * @param idOrName The group.
   * @param text The text (at most 15 KiB of UTF-8).
   * @returns The message as this user's group history shows it.
   * @throws {GroupError} If there is no such group.
   * @throws {RangeError} If the text is too long.
   */
  send(idOrName: string, text: string): Promise<ChatMessage> {
    return this.#serial(async () => {
      const groupId = this.resolve(idOrName);
      const body = utf8(text);
      if (body.length > MAX_GROUP_BODY_LENGTH) {
        throw new RangeError(
          `Cannot send to group: the text is over ${MAX_GROUP_BODY_LENGTH} bytes`,
        );
      }
      const state = this.#logs.get(groupId)!.state();
      const ring = this.#rings.get(groupId)!;
      const id = crypto.getRandomValues(new Uint8Array(16));
      const now = this.#deps.clock();
      const out = await ring.encrypt(state, { id, timestamp: now, body });
      // The chain moved on: saved before anything leaves, so no key is used twice.
      this.#saveRing(groupId);
      const me = this.#deps.identity().id;
      const stored = this.#store.insertMessage({
        groupId,
        sender: me,
        id,
        direction: "out",
        sentAt: now,
        receivedAt: now,
        body,
      })!;
      // Wraps queued together share one flush; the others go in their sessions.
      const wrapped = state.members.filter((m) => out.wraps.has(m.id));
      const carriers = await this.#deps.service.sendWrapped(
        wrapped.map((m) => ({
          recipient: { userId: m.id, encryptionPublicKey: m.encryptionPublicKey },
          wrap: out.wraps.get(m.id)!,
        })),
        out.message,
        GROUP_MESSAGE_CONTENT_TYPE,
      );
      for (const [i, m] of wrapped.entries()) {
        this.#store.addDelivery(stored.seq, m.id, carriers[i]!.seq);
      }
      for (const m of state.members) {
        if (m.id === me || out.wraps.has(m.id)) continue;
        const carrier = await this.#send(m, out.message, GROUP_MESSAGE_CONTENT_TYPE);
        this.#store.addDelivery(stored.seq, m.id, carrier);
      }
      return this.#chat(stored);
    });
  }

  /**
   * One group's conversation, oldest first.
   *
   * @param idOrName The group.
   * @param options `limit`: the newest this many (default 50).
   * @returns The messages, with who wrote each and, for sent ones, delivery counts.
   */
  history(idOrName: string, options: { readonly limit?: number } = {}): ChatMessage[] {
    const groupId = this.#store.groups().some((g) => g.groupId === idOrName)
      ? idOrName
      : this.resolve(idOrName);
    return this.#store.history(groupId, options).map((m) => this.#chat(m));
  }

  /**
   * How far a sent group message got, member by member.
   *
   * @param seq The message's sequence number in the group history.
   * @returns One entry per member it was sent to.
   */
  deliveries(seq: number): GroupDelivery[] {
    return this.#store.deliveries(seq);
  }

  #chat(m: StoredGroupMessage): ChatMessage {
    const deliveries = m.direction === "out" ? this.#store.deliveries(m.seq) : [];
    const name = this.#logs.get(m.groupId)?.state().name ?? "";
    return groupChatMessage(m, this.#deps.store.contacts.getById(m.sender), name, deliveries);
  }

  #saveRing(groupId: string): void {
    const ring = this.#rings.get(groupId);
    if (ring !== undefined) this.#store.saveKeyring(groupId, encodeKeyring(ring.snapshot()));
  }

  async #send(
    m: { readonly id: string; readonly encryptionPublicKey: Uint8Array },
    body: Uint8Array,
    contentType: number,
  ): Promise<number> {
    const stored = await this.#deps.service.send(
      { userId: m.id, encryptionPublicKey: m.encryptionPublicKey },
      body,
      { contentType },
    );
    return stored.seq;
  }

  async #sendToAll(state: GroupState, body: Uint8Array, contentType: number): Promise<void> {
    const me = this.#deps.identity().id;
    for (const m of state.members) if (m.id !== me) await this.#send(m, body, contentType);
  }

  /** Makes a new own chain if the epoch needs one and sends it to every other member. */
  async #rotate(groupId: string): Promise<void> {
    const log = this.#logs.get(groupId)!;
    const ring = this.#rings.get(groupId)!;
    const state = log.state();
    const r = await ring.rotate(state, { now: this.#deps.clock() });
    this.#saveRing(groupId);
    if (!r.rotated) return;
    await this.#sendToAll(state, r.distribution, SENDER_KEY_CONTENT_TYPE);
  }

  /**
   * After a change was applied (made here or received): stores it, sends it
   * on if made here, brings new members up to date, rotates on a new epoch,
   * and takes distributions that waited.
   */
  async #applied(
    groupId: string,
    change: Uint8Array,
    ours: boolean,
    before?: GroupState,
  ): Promise<void> {
    const log = this.#logs.get(groupId)!;
    const c = decodeChange(change);
    this.#store.addChange(groupId, c.hash, change);
    const state = log.state();
    const me = this.#deps.identity().id;
    if (!state.members.some((m) => m.id === me)) {
      this.#forget(groupId);
      return;
    }
    // An admin passes on a change it did not make (once: only a new change
    // is applied), so that members added concurrently by another admin, who
    // were unknown to its author, get it too.
    const admin = state.admins.includes(me);
    if (ours || admin) await this.#sendToAll(state, change, GROUP_CHANGE_CONTENT_TYPE);
    const ring = this.#rings.get(groupId)!;
    const epochChanged = before !== undefined && before.epoch !== state.epoch;
    if (c.op.kind === "add") {
      const added = encodeUserId(c.op.member.signingPublicKey);
      const m = state.members.find((x) => x.id === added);
      if (m !== undefined && added !== me) {
        // Admins bring the new member the whole history of changes they hold.
        if (ours || admin) {
          for (const bytes of log.changes()) await this.#send(m, bytes, GROUP_CHANGE_CONTENT_TYPE);
        }
        const own = ring.ownChain;
        if (own !== undefined && own.epoch === state.epoch) {
          const r = await ring.rotate(state, { now: this.#deps.clock() });
          await this.#send(m, r.distribution, SENDER_KEY_CONTENT_TYPE);
        }
      }
    }
    if (epochChanged || ring.ownChain?.epoch !== state.epoch) await this.#rotate(groupId);
    ring.prune(state, this.#deps.clock());
    this.#takeEarly(groupId);
    this.#saveRing(groupId);
  }

  #takeEarly(groupId: string): void {
    const waiting = this.#early.get(groupId);
    if (waiting === undefined) return;
    const state = this.#logs.get(groupId)!.state();
    const ring = this.#rings.get(groupId)!;
    const still = waiting.filter(({ from, bytes }) => {
      try {
        ring.acceptDistribution(state, from, bytes, { now: this.#deps.clock() });
        return false;
      } catch {
        return !state.members.some((m) => m.id === encodeUserId(from));
      }
    });
    if (still.length === 0) this.#early.delete(groupId);
    else this.#early.set(groupId, still);
  }

  /**
   * Takes a group control message that arrived in a pairwise session.
   *
   * @param incoming The stored message and its sender's verified key.
   * @returns Whether it was a group's (otherwise someone else's to handle).
   */
  take(incoming: IncomingMessage): boolean {
    const type = incoming.message.contentType;
    if (!GROUP_TYPES.includes(type)) return false;
    if (type === GROUP_MESSAGE_CONTENT_TYPE) {
      if (this.#arrived.push(incoming) === 1) this.#serial(() => this.#takeArrived());
      return true;
    }
    this.#serial(() => this.#handle(incoming));
    return true;
  }

  /**
   * Handles one carrier, then marks it handled: a carrier not marked is
   * taken again on the next start (`load`), so a crash between its storing
   * and its handling loses nothing. A message's carrier is marked in the
   * transaction that stores it; one held here (a change or key whose group
   * is not joined yet) is not marked.
   */
  async #handle(incoming: IncomingMessage): Promise<void> {
    // A refused change, key or message changes nothing.
    const keep = await this.#take(incoming).catch(() => false);
    if (!keep) this.#store.markHandled(incoming.message.seq);
  }

  /**
   * Takes the group messages that arrived together, each sender's in its
   * chain's order: a wrap's time is its arrival's (the sender's is inside),
   * so a mailbox fetch may bring one sender's in any order.
   */
  async #takeArrived(): Promise<void> {
    for (const m of inSenderOrder(this.#arrived.splice(0))) await this.#handle(m);
  }

  /** @returns Whether the change is held until this user joins. */
  async #takeChange(body: Uint8Array, now: number): Promise<boolean> {
    const c = decodeChange(body);
    const groupId = toHex(c.groupId);
    const me = this.#deps.identity();
    let log = this.#logs.get(groupId) ?? this.#joining.get(groupId);
    let before: GroupState | undefined;
    if (log === undefined) {
      // A group this user left or was removed from is not joined again by a replayed create.
      if (c.op.kind !== "create" || this.#store.groups().some((g) => g.groupId === groupId)) {
        return false;
      }
      log = await GroupLog.open(body);
      if (this.#joining.size >= MAX_JOINING) {
        this.#joining.delete(this.#joining.keys().next().value!);
      }
      this.#joining.set(groupId, log);
    } else {
      before = log.state();
      if ((await log.receive(body)) !== "applied") return false;
    }
    if (this.#joining.has(groupId)) {
      // Joined once a change (the create, or an add) makes this user a member.
      if (!log.state().members.some((m) => m.id === me.id)) return true;
      this.#joining.delete(groupId);
      this.#logs.set(groupId, log);
      this.#rings.set(groupId, new GroupKeyring(log.groupId, me.signingPublicKey));
      this.#store.addGroup(groupId, now);
      for (const bytes of log.changes()) {
        this.#store.addChange(groupId, decodeChange(bytes).hash, bytes);
      }
      await this.#rotate(groupId);
      this.#takeEarly(groupId);
      this.#saveRing(groupId);
      return false;
    }
    await this.#applied(groupId, body, false, before);
    return false;
  }

  /** @returns Whether the carrier is not to be marked handled now (held here, or marked already). */
  async #take(incoming: IncomingMessage): Promise<boolean> {
    const { message, senderSigningKey: from } = incoming;
    const body = message.body;
    const now = this.#deps.clock();
    if (message.contentType === GROUP_CHANGE_CONTENT_TYPE) return this.#takeChange(body, now);
    if (message.contentType === SENDER_KEY_CONTENT_TYPE) {
      const groupId = toHex(body.subarray(1, 17));
      const log = this.#logs.get(groupId);
      const senderId = encodeUserId(from);
      if (log === undefined || !log.state().members.some((m) => m.id === senderId)) {
        // Its change may come later (from another member's session): held, a few per group.
        const held = this.#early.get(groupId) ?? [];
        if (held.length < MAX_EARLY_DISTRIBUTIONS) held.push({ from, bytes: body });
        this.#early.set(groupId, held);
        return true;
      }
      this.#rings.get(groupId)!.acceptDistribution(log.state(), from, body, { now });
      this.#saveRing(groupId);
      return false;
    }
    // A group message: its header names the group (version byte, then the ID).
    const groupId = toHex(body.subarray(1, 17));
    const log = this.#logs.get(groupId);
    if (log === undefined) return false;
    const got = await this.#rings.get(groupId)!.receive(log.state(), body, {
      now,
      unwrapped: true,
    });
    // The chain's step, the message and its carrier's mark: one transaction.
    const stored = this.#deps.store.transaction(() => {
      this.#saveRing(groupId);
      this.#store.markHandled(message.seq);
      // The carrier's sender must be the writer: no member relays another's messages.
      if (got.senderId !== encodeUserId(from)) return undefined;
      return this.#store.insertMessage({
        groupId,
        sender: got.senderId,
        id: got.plaintext.id,
        direction: "in",
        sentAt: got.plaintext.timestamp,
        receivedAt: now,
        body: got.plaintext.body,
      });
    });
    if (stored !== undefined) this.#deps.onMessage(this.#chat(stored));
    return true;
  }

  /**
   * Settles once every change, key and message taken so far is handled:
   * the messenger waits for it before it closes the store.
   *
   * @returns When the queue is empty.
   */
  async settled(): Promise<void> {
    let last;
    do {
      last = this.#queue;
      await last;
    } while (last !== this.#queue);
  }

  /**
   * Recognizes a wrap for this user (the inbox asks before it opens an
   * envelope); see {@linkcode openGroupWrap}.
   *
   * @param bytes What arrived.
   * @returns The wrapped group message as an opened envelope, or `undefined`.
   */
  openWrap(bytes: Uint8Array): OpenedEnvelope | undefined {
    if (this.#rings.size === 0) return undefined;
    const keys = [...this.#rings.values()].flatMap((r) => r.inboxKeys);
    return openGroupWrap(keys, bytes, this.#deps.clock());
  }

  /**
   * A member's pinned encryption key, from the membership of a group joined
   * now: its sessions are checked against it, and are not a stranger's.
   *
   * @param userId The member's user ID.
   * @returns The key, or `undefined` if no group has that member.
   */
  memberKey(userId: string): Uint8Array | undefined {
    for (const log of this.#logs.values()) {
      const m = log.state().members.find((m) => m.id === userId);
      if (m !== undefined) return m.encryptionPublicKey;
    }
    return undefined;
  }
}
