/**
 * One member's sender keys in one group, held against the membership: its
 * own chain for the current epoch, the other members' chains, and the
 * rules of who is read.
 *
 * - **Rotation.** When the membership's epoch changes (a removal or a
 *   leave), {@linkcode GroupKeyring.rotate} makes a new own chain and inbox
 *   key and returns the distribution to send each remaining member over its
 *   pairwise session; the removed member gets neither, so it reads nothing
 *   this member sends after it applied the removal.
 * - **Removed members.** A message or distribution from a user who is not a
 *   member of the current state is refused, and its chains are deleted.
 * - **Old epochs.** Messages of an epoch older than the current are read for
 *   {@linkcode GROUP_EPOCH_GRACE_MS} after this member moved on (a member
 *   who had not seen the removal yet), then refused; their chains go.
 * - **Fan-out.** {@linkcode GroupKeyring.encrypt} encrypts once and wraps
 *   per member with the member's inbox key; members whose key is not known
 *   yet are listed for the envelope fallback.
 *
 * @example Two members
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity } from "../crypto/identity.ts";
 * import { GroupLog } from "./membership.ts";
 * import { GroupKeyring } from "./keyring.ts";
 *
 * const alice = await Identity.generate();
 * const bob = await Identity.generate();
 * const { log } = await GroupLog.create(alice, { name: "pair", members: [bob.public] });
 * const state = log.state();
 * const a = new GroupKeyring(log.groupId, alice.signingPublicKey);
 * const b = new GroupKeyring(log.groupId, bob.signingPublicKey);
 * b.acceptDistribution(state, alice.signingPublicKey, (await a.rotate(state)).distribution);
 * a.acceptDistribution(state, bob.signingPublicKey, (await b.rotate(state)).distribution);
 *
 * const out = await a.encrypt(state, { body: new TextEncoder().encode("hello") });
 * const got = await b.receive(state, out.wraps.get(bob.id)!);
 * assert.equal(new TextDecoder().decode(got.plaintext.body), "hello");
 * assert.equal(got.senderId, alice.id);
 * ```
 *
 * @module
 */
import { equalBytes, toHex } from "../platform/bytes.ts";
import { encodeUserId } from "../crypto/identity.ts";
import { DecryptionError } from "../errors.ts";
import { GROUP_EPOCH_GRACE_MS } from "./constants.ts";
import type { GroupState } from "./membership.ts";
import {
  createSenderChain,
  decodeDistribution,
  decodeGroupMessageHeader,
  encodeDistribution,
  expireSkippedGroupKeys,
  groupDecrypt,
  groupEncrypt,
  type GroupPlaintext,
  type OpenedGroupPlaintext,
  type ReceiverChain,
  receiverChainFrom,
  type SenderChain,
} from "./sender_keys.ts";
import { openWrap, wrapForMember } from "./wire.ts";

/** How far ahead of this member's epoch a distribution may be: the sender saw a removal first. */
const MAX_EPOCHS_AHEAD = 4;

/** What {@linkcode GroupKeyring.encrypt} returns. */
export interface GroupFanOut {
  /** The group message, encrypted and signed once. */
  readonly message: Uint8Array;
  /** The wrap for each member (by user ID) whose inbox key is known. */
  readonly wraps: ReadonlyMap<string, Uint8Array>;
  /** Members whose inbox key is not known yet: send them the message in a static envelope. */
  readonly needEnvelope: readonly string[];
}

/** What {@linkcode GroupKeyring.receive} returns. */
export interface GroupReceived {
  /** The sender's user ID. */
  readonly senderId: string;
  /** The epoch the message was sent in. */
  readonly epoch: number;
  /** The plaintext. */
  readonly plaintext: OpenedGroupPlaintext;
}

/**
 * Everything a keyring holds, for storage ({@link "./keyring_codec.ts"}
 * encodes it). Holds secret material: never log it.
 */
export interface KeyringSnapshot {
  /** This member's current sending chain. */
  readonly own: SenderChain | undefined;
  /** Own chains of earlier epochs still in their grace period. */
  readonly ownOld: readonly SenderChain[];
  /** The other members' chains. */
  readonly chains: readonly ReceiverChain[];
  /** When this member first saw each epoch: `[epoch, ms]`. */
  readonly epochSeen: readonly (readonly [number, number])[];
}

/** One member's sender keys in one group. Holds secret material: never log it. */
export class GroupKeyring {
  readonly #groupId: Uint8Array;
  readonly #self: Uint8Array;
  #own: SenderChain | undefined;
  // Own chains of earlier epochs, kept for their inbox keys during the grace period.
  #ownOld: SenderChain[] = [];
  readonly #chains = new Map<string, ReceiverChain>();
  // When this member first saw each epoch.
  readonly #epochSeen = new Map<number, number>();

  /**
   * Makes an empty keyring: no own chain until {@linkcode GroupKeyring.rotate}.
   *
   * @param groupId The 16-byte group ID.
   * @param self This member's identity signing key.
   */
  constructor(groupId: Uint8Array, self: Uint8Array) {
    this.#groupId = new Uint8Array(groupId);
    this.#self = new Uint8Array(self);
  }

  /**
   * Makes a keyring from what {@linkcode GroupKeyring.snapshot} returned.
   *
   * @param groupId The 16-byte group ID.
   * @param self This member's identity signing key.
   * @param snapshot The saved state.
   * @returns The keyring.
   */
  static restore(groupId: Uint8Array, self: Uint8Array, snapshot: KeyringSnapshot): GroupKeyring {
    const k = new GroupKeyring(groupId, self);
    k.#own = snapshot.own;
    k.#ownOld = [...snapshot.ownOld];
    for (const c of snapshot.chains) k.#chains.set(k.#key(c.sender, c.epoch), c);
    for (const [epoch, at] of snapshot.epochSeen) k.#epochSeen.set(epoch, at);
    return k;
  }

  /**
   * Everything the keyring holds, to store (sealed) and restore later.
   *
   * @returns The state.
   */
  snapshot(): KeyringSnapshot {
    return {
      own: this.#own,
      ownOld: [...this.#ownOld],
      chains: [...this.#chains.values()],
      epochSeen: [...this.#epochSeen],
    };
  }

  /** This member's current sending chain, if any. */
  get ownChain(): SenderChain | undefined {
    return this.#own;
  }

  /** The inbox keys this member answers to now: the current epoch's and, during the grace, older ones. */
  get inboxKeys(): Uint8Array[] {
    return [this.#own, ...this.#ownOld].filter((c) => c !== undefined).map((c) => c.inboxKey);
  }

  #key(sender: Uint8Array, epoch: number): string {
    return `${toHex(sender)}/${epoch}`;
  }

  #seen(epoch: number, now: number): void {
    if (!this.#epochSeen.has(epoch)) this.#epochSeen.set(epoch, now);
  }

  /** Whether a message of `epoch` is still read in `state` at `now`. */
  #live(state: GroupState, epoch: number, now: number): boolean {
    if (epoch >= state.epoch) return epoch <= state.epoch + MAX_EPOCHS_AHEAD;
    const since = this.#epochSeen.get(state.epoch) ?? now;
    return now - since <= GROUP_EPOCH_GRACE_MS;
  }

  /**
   * Brings the own chain to the state's epoch, making a new one if needed.
   *
   * @param state The current membership.
   * @param options `now` (ms), default `Date.now()`.
   * @returns Whether a new chain was made, the encoded distribution (send it
   *   to each recipient inside its pairwise session; again to a member added
   *   later) and the recipients' user IDs.
   */
  async rotate(
    state: GroupState,
    options: { readonly now?: number } = {},
  ): Promise<{ rotated: boolean; distribution: Uint8Array; recipients: string[] }> {
    const now = options.now ?? Date.now();
    this.#seen(state.epoch, now);
    let rotated = false;
    if (this.#own === undefined || this.#own.epoch !== state.epoch) {
      if (this.#own !== undefined) this.#ownOld = [this.#own];
      this.#own = await createSenderChain(this.#groupId, state.epoch);
      rotated = true;
    }
    this.prune(state, now);
    const selfId = encodeUserId(this.#self);
    return {
      rotated,
      distribution: encodeDistribution(this.#own),
      recipients: state.members.map((m) => m.id).filter((id) => id !== selfId),
    };
  }

  /**
   * Takes a member's distribution, which arrived over the pairwise session
   * with `from`.
   *
   * @param state The current membership.
   * @param from The session peer's identity key.
   * @param bytes The encoded distribution.
   * @param options `now` (ms).
   * @throws {DecryptionError} If `from` is not a member, the distribution is
   *   for another group, malformed, or of an epoch no longer (or not yet) read.
   */
  acceptDistribution(
    state: GroupState,
    from: Uint8Array,
    bytes: Uint8Array,
    options: { readonly now?: number } = {},
  ): void {
    const now = options.now ?? Date.now();
    this.#seen(state.epoch, now);
    let dist;
    try {
      dist = decodeDistribution(bytes);
    } catch (cause) {
      throw new DecryptionError({ cause });
    }
    const fromId = encodeUserId(from);
    if (
      !equalBytes(dist.groupId, this.#groupId) || !state.members.some((m) => m.id === fromId) ||
      !this.#live(state, dist.epoch, now)
    ) {
      throw new DecryptionError();
    }
    const key = this.#key(from, dist.epoch);
    const held = this.#chains.get(key);
    // A chain is never moved back: a resent distribution gives nothing older.
    if (
      held !== undefined && equalBytes(held.signingPublicKey, dist.signingPublicKey) &&
      held.iteration >= dist.iteration
    ) {
      return;
    }
    this.#chains.set(key, receiverChainFrom(dist, from));
  }

  /**
   * Encrypts one message once and wraps it for every other member.
   *
   * @param state The current membership (this member's chain must be of its epoch: call `rotate` first).
   * @param plaintext The message.
   * @returns The group message, the wraps and who needs an envelope instead.
   * @throws {EncryptionError} As `groupEncrypt`, or if there is no chain for the epoch.
   */
  async encrypt(state: GroupState, plaintext: GroupPlaintext): Promise<GroupFanOut> {
    if (this.#own === undefined || this.#own.epoch !== state.epoch) await this.rotate(state);
    const { chain, message } = await groupEncrypt(this.#own!, this.#self, plaintext);
    this.#own = chain;
    const selfId = encodeUserId(this.#self);
    const wraps = new Map<string, Uint8Array>();
    const needEnvelope: string[] = [];
    for (const m of state.members) {
      if (m.id === selfId) continue;
      const chainOf = this.#newestChain(m.signingPublicKey, state.epoch);
      if (chainOf === undefined) needEnvelope.push(m.id);
      else wraps.set(m.id, wrapForMember(chainOf.inboxKey, message));
    }
    return { message, wraps, needEnvelope };
  }

  #newestChain(member: Uint8Array, epoch: number): ReceiverChain | undefined {
    for (let e = epoch + MAX_EPOCHS_AHEAD; e >= epoch; e--) {
      const c = this.#chains.get(this.#key(member, e));
      if (c !== undefined) return c;
    }
    return undefined;
  }

  /**
   * Opens a wrap, or a group message that came in a static envelope, and
   * decrypts it with the sender's chain.
   *
   * @param state The current membership.
   * @param bytes A wrap, or (with `options.unwrapped`) a bare group message.
   * @param options `now` (ms); `unwrapped`: the bytes are a group message.
   * @returns The sender and the plaintext.
   * @throws {DecryptionError} If it is not for this member, its sender is not
   *   a member (removed, say), its epoch is no longer read, there is no
   *   chain for it, or it does not decrypt.
   */
  async receive(
    state: GroupState,
    bytes: Uint8Array,
    options: { readonly now?: number; readonly unwrapped?: boolean } = {},
  ): Promise<GroupReceived> {
    const now = options.now ?? Date.now();
    this.#seen(state.epoch, now);
    let message = bytes;
    if (options.unwrapped !== true) {
      const opened = openWrap(this.inboxKeys, bytes);
      if (opened === undefined) throw new DecryptionError();
      message = opened.groupMessage;
    }
    const header = decodeGroupMessageHeader(message);
    const senderId = encodeUserId(header.sender);
    if (
      !equalBytes(header.groupId, this.#groupId) ||
      !state.members.some((m) => m.id === senderId) || !this.#live(state, header.epoch, now)
    ) {
      throw new DecryptionError();
    }
    const key = this.#key(header.sender, header.epoch);
    const chain = this.#chains.get(key);
    if (chain === undefined) throw new DecryptionError();
    const out = await groupDecrypt(expireSkippedGroupKeys(chain, now), message, { now });
    this.#chains.set(key, out.chain);
    return { senderId, epoch: header.epoch, plaintext: out.plaintext };
  }

  /**
   * Deletes what the state no longer allows: chains of users who are not
   * members, and, after the grace period, chains and own inbox keys of
   * older epochs.
   *
   * @param state The current membership.
   * @param now The time (ms).
   */
  prune(state: GroupState, now: number = Date.now()): void {
    this.#seen(state.epoch, now);
    const members = new Set(state.members.map((m) => toHex(m.signingPublicKey)));
    for (const [key, chain] of this.#chains) {
      if (!members.has(toHex(chain.sender)) || !this.#live(state, chain.epoch, now)) {
        this.#chains.delete(key);
      }
    }
    this.#ownOld = this.#ownOld.filter((c) => this.#live(state, c.epoch, now));
  }

  /** How many other members' chains are held. */
  get chainCount(): number {
    return this.#chains.size;
  }
}
