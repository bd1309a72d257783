/**
 * Contact cards and prekey bundles in the DHT, for one user: publishing
 * their own (signed, with a sequence number that never goes back, even when
 * the clock does) and finding others' (checked, cached for a short while,
 * retried once, and noted in the contact book when they are contacts, whose
 * nodes' direct addresses also become the DHT node's join hints). The bundle
 * is published again when one-time prekeys are used up, with the prekeys
 * used within a few seconds gathered into one publication.
 *
 * @module
 */
import delay from "delay";
import { decodeUserId, type Identity } from "../crypto/identity.ts";
import type { DhtNode } from "../dht/node.ts";
import { PeerUnreachableError } from "../errors.ts";
import {
  PREKEY_REPUBLISH_MIN_INTERVAL_MS,
  PREKEY_REPUBLISH_QUIET_MS,
} from "../messaging/constants.ts";
import type { PeerTarget } from "../messaging/mod.ts";
import { CARD_RECORD_TYPE, type ContactCard, openCard, signCard } from "../record/card.ts";
import { openPrekeyBundle, PREKEY_RECORD_TYPE, type PrekeyBundle } from "../record/prekey.ts";
import type { SignedRecord } from "../record/record.ts";
import { recordKey } from "../record/record.ts";
import type { ContactBook } from "../profile/contacts.ts";
import { PROFILE_SETTINGS } from "../profile/settings.ts";
import type { SettingsStore } from "../store/settings_store.ts";
import { cardAddresses } from "./card_addresses.ts";
import { Republisher } from "./republish.ts";

/** How often a running messenger publishes its card again. */
export const CARD_REPUBLISH_MS = 6 * 3600 * 1000;
/** How long a card found in the DHT is used without looking again. */
const CARD_CACHE_MS = 30_000;
/** Lookups per `resolveCard` before the user counts as unreachable. */
const CARD_LOOKUP_ATTEMPTS = 2;
/** The pause before the second lookup. */
const CARD_LOOKUP_RETRY_MS = 250;

/** Options of a networked call: `signal` to abort. */
export interface SignalOptions {
  /** Aborts the call. */
  readonly signal?: AbortSignal;
}

/** What {@linkcode Cards} works with. */
export interface CardsDeps {
  /** The user's unlocked identity. */
  readonly identity: Identity;
  /** The DIM node. */
  readonly node: DhtNode;
  /** The contact book, which learns contacts' newer cards. */
  readonly book: ContactBook;
  /** Where the card's sequence number is kept. */
  readonly settings: SettingsStore;
  /** The display name to put in the card. */
  readonly displayName: () => string;
  /** The user's current prekey bundle, signed. */
  readonly prekeyBundle: () => Promise<SignedRecord>;
  /** Clock in ms. */
  readonly clock: () => number;
  /** Whether an address counts as public (the node's `publicNetworks` rule). */
  readonly isPublic: (address: string) => boolean;
}

/** One user's cards and prekey bundles in the DHT. */
export class Cards {
  readonly #deps: CardsDeps;
  readonly #cache = new Map<string, { card: ContactCard; at: number }>();
  /**
   * Republishes the bundle after prekeys were used: each use costs a
   * signature and a DHT put, and a burst of first messages (strangers, or a
   * mailbox fetch) must share one.
   */
  readonly #prekeysUsed: Republisher;

  /**
   * Makes the directory.
   *
   * @param deps The identity, node, contact book, settings and clock.
   */
  constructor(deps: CardsDeps) {
    this.#deps = deps;
    this.#prekeysUsed = new Republisher(() => this.publishPrekeys(), {
      quietMs: PREKEY_REPUBLISH_QUIET_MS,
      minIntervalMs: PREKEY_REPUBLISH_MIN_INTERVAL_MS,
    });
  }

  /**
   * Notes that one-time prekeys were used up: the bundle is published
   * again after {@linkcode PREKEY_REPUBLISH_QUIET_MS}, at most once per
   * {@linkcode PREKEY_REPUBLISH_MIN_INTERVAL_MS}, with every prekey used
   * meanwhile left out (a failed publication is tried again later).
   */
  prekeysUsed(): void {
    this.#prekeysUsed.changed();
  }

  /** Cancels a waiting republication of the bundle. Idempotent. */
  stop(): void {
    this.#prekeysUsed.stop();
  }

  /**
   * Signs and publishes the user's contact card, listing the addresses
   * {@linkcode cardAddresses} picks for the node's reachability, then their
   * prekey bundle.
   *
   * @param options `signal` to abort.
   */
  async publishCard(options: SignalOptions = {}): Promise<void> {
    const { identity, node, settings, clock } = this.#deps;
    const now = clock();
    // Storage nodes keep the card with the highest sequence number: after the
    // clock was set back, a card numbered by the clock alone would be refused
    // everywhere and the old addresses served until the clock caught up.
    const seq = Math.max(now, Number(settings.get(PROFILE_SETTINGS.cardSeq) ?? 0) + 1);
    // Taken before signing: two publications at once (an address change
    // during the periodic one) must not sign two cards under one number.
    settings.set(PROFILE_SETTINGS.cardSeq, String(seq));
    const reach = node.reachability;
    const record = await signCard(identity, {
      displayName: this.#deps.displayName(),
      peerId: node.peerId,
      addresses: cardAddresses(node.multiaddrs, {
        status: reach.status,
        mapped: reach.mapped,
        peerId: node.peerId,
        isPublic: this.#deps.isPublic,
      }),
      now,
      seq,
    });
    await node.put(record.key, record.bytes, options);
    await this.publishPrekeys(options);
  }

  /**
   * Publishes the user's prekey bundle (rotated and refilled as due).
   *
   * @param options `signal` to abort.
   */
  async publishPrekeys(options: SignalOptions = {}): Promise<void> {
    const record = await this.#deps.prekeyBundle();
    await this.#deps.node.put(record.key, record.bytes, options);
  }

  /**
   * Finds a user's prekey bundle.
   *
   * @param id The user ID.
   * @param options `signal` to abort.
   * @returns The checked bundle, or `undefined` if none is found.
   */
  async fetchBundle(
    id: string,
    options: { readonly signal: AbortSignal },
  ): Promise<PrekeyBundle | undefined> {
    const key = recordKey(PREKEY_RECORD_TYPE, decodeUserId(id));
    const bytes = await this.#deps.node.get(key, { signal: options.signal });
    if (bytes === undefined) return undefined;
    return await openPrekeyBundle(bytes, { key, now: this.#deps.clock() });
  }

  /**
   * Looks a user's card up in the DHT and checks it.
   *
   * @param id The user ID.
   * @param options `signal` to abort; `fresh` to skip the 30-second cache.
   * @returns The card with the highest valid sequence number.
   * @throws {InvalidIdError} If the ID is malformed.
   * @throws {PeerUnreachableError} If no valid card is found.
   */
  async resolveCard(
    id: string,
    options: SignalOptions & { readonly fresh?: boolean } = {},
  ): Promise<ContactCard> {
    const { node, clock } = this.#deps;
    const key = recordKey(CARD_RECORD_TYPE, decodeUserId(id));
    const cached = this.#cache.get(id);
    if (cached && !options.fresh && clock() - cached.at < CARD_CACHE_MS) return cached.card;
    const signal = options.signal ? { signal: options.signal } : {};
    let bytes: Uint8Array | undefined;
    let failure: unknown;
    // A lookup that meets only peers who just left, or starts from a routing
    // table still filling, can miss; a second lookup takes other paths.
    for (let attempt = 0; attempt < CARD_LOOKUP_ATTEMPTS && bytes === undefined; attempt++) {
      if (attempt > 0) await delay(CARD_LOOKUP_RETRY_MS, signal);
      try {
        bytes = await node.get(key, signal);
      } catch (cause) {
        options.signal?.throwIfAborted();
        failure = cause;
      }
    }
    if (bytes === undefined) {
      throw new PeerUnreachableError(
        `Cannot find ${id}: no card in the network`,
        failure === undefined ? undefined : { cause: failure },
      );
    }
    const card = await openCard(bytes, { key, now: clock() });
    this.#cache.set(id, { card, at: clock() });
    this.#deps.book.noteCard(card);
    if (this.#deps.book.find(id)?.userId === id) this.rememberNode(card);
    return card;
  }

  /**
   * Keeps a contact's node as a peer to join through should every other be
   * gone: the card's direct addresses become the DHT node's join hints
   * (source `contact:<id>`; relayed ones are left off, as a relay may be
   * gone by then).
   *
   * @param card The contact's card.
   */
  rememberNode(card: ContactCard): void {
    const direct = card.addresses
      .filter((address) => !address.includes("/p2p-circuit"))
      .map((address) =>
        address.endsWith(`/p2p/${card.peerId}`) ? address : `${address}/p2p/${card.peerId}`
      );
    this.#deps.node.peerBook.addJoinHints(direct, `contact:${card.id}`);
  }

  /**
   * Where a user's node is, from their card.
   *
   * @param id The user ID.
   * @param options `signal` to abort.
   * @returns The peer ID and addresses.
   * @throws {PeerUnreachableError} If no valid card is found.
   */
  async resolvePeer(id: string, options: { readonly signal: AbortSignal }): Promise<PeerTarget> {
    const card = await this.resolveCard(id, options);
    return { peerId: card.peerId, addresses: card.addresses };
  }
}
