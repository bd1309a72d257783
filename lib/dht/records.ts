/**
 * Records in the DHT: how a DIM node puts, gets and repairs them, and
 * finds the peers closest to a key.
 *
 * Each operation runs one lookup of DIM's own (`_lookup.ts`) over the
 * node's routing table, sending its requests with the node's
 * `KadClient` (`_kad_client.ts`, streams kept open per peer):
 *
 * - **put** validates the value, stores it locally (the replay guard of
 *   `_record_guard.ts` refuses to go backwards), then writes it to a
 *   quorum: a lookup that ends once the `PUT_QUORUM` (3) peers closest to
 *   the key have answered and no closer peer is left to ask. Every peer
 *   that lookup asks may turn out to be one of them, so its FIND_NODE is
 *   followed at once, on the same stream and in the same write, by the
 *   PUT_VALUE (`KadClient.requestAll`): the put needs one round trip per
 *   hop of the lookup, not a lookup and then a round of PUT_VALUEs. Once
 *   the 3 closest peers the settled lookup found have all acknowledged, it
 *   returns; the acknowledgements of the other peers it asked, a lookup of
 *   the k = 20 closest peers and the PUT_VALUE to the rest of them finish
 *   in the background (a stopping node waits for them, boundedly). If any
 *   of the quorum did not acknowledge, the put waits for all of that
 *   before it returns. It returns how many peers acknowledged by then.
 *
 *   Why the quorum is enough to return on: a get asks the peers closest to
 *   the key before any farther one, and ends early only once the closest
 *   peers it found agree with no closer one left to ask (`_lookup.ts`). The
 *   three closest peers of the network, the closest among them, hold the
 *   new record when the put returns, so a get that sees the same network
 *   hears the new record from its first answers, and its selector prefers
 *   it over any older copy farther away. Sending the PUT_VALUE before the
 *   lookup has settled changes none of this: the put still returns only on
 *   the acknowledgements of the 3 closest peers of the settled lookup; a
 *   peer asked on the way that turns out farther simply holds one more
 *   replica (one the background would have sent it: it is among the k
 *   closest). The background replicas add durability (up to k copies),
 *   not visibility.
 * - **get** asks the closest peers until a quorum of them agree (see the
 *   lookup's module documentation), adds the local copy (read and checked
 *   while the first requests are on their way), returns the value
 *   the namespace's selector prefers, and sends it to peers that answered
 *   with another one (and over an older local copy).
 * - **closest peers** is a FIND_NODE lookup.
 *
 * A value found valid is not checked again for the same key within
 * `VALIDATED_MEMORY_MS` (`_validated.ts`; kad-dht's handlers share that
 * memory): a get's local copy and the equal answers of its peers then cost
 * no signature check. Only the exact bytes found valid are taken.
 *
 * {@linkcode DhtRecords} does no signal or state bookkeeping of its own:
 * `DhtNode` gives every call a signal that ends with the node, the caller's
 * signal and the query timeout.
 *
 * @module
 */
import type { PeerId } from "@libp2p/interface";
import { Libp2pRecord } from "@libp2p/record";
import { multiaddr } from "@multiformats/multiaddr";
import type { Multiaddr } from "@multiformats/multiaddr";
import {
  InvalidRecordError,
  PeerUnreachableError,
  ProtocolError,
  StorageError,
} from "../errors.ts";
import { equalBytes } from "../platform/bytes.ts";
import {
  BACKGROUND_REPLICAS_MS,
  DHT_K,
  LOOKUP_STRAGGLE_MS,
  PUT_QUORUM,
  RECORD_MAX_AGE_MS,
} from "./constants.ts";
import type { DhtPeer, DhtSelector, DhtValidator } from "./types.ts";
import { compareXor, kadId } from "./_distance.ts";
import type { KadClient } from "./_kad_client.ts";
import { type KadMessage, KadMessageType, type KadPeer } from "./_kad_wire.ts";
import type { KadInternals } from "./_libp2p_internals.ts";
import { BackgroundWork } from "./_background.ts";
import { lookup, type LookupQuorum, type LookupResult, peerKey } from "./_lookup.ts";
import type { PeerEventFilter } from "./_peer_events.ts";
import { describe, dialAddresses, type StartPeer, toPeerId } from "./_peers.ts";
import { namespaceOf, recordDatastoreKey, type RecordGuardDatastore } from "./_record_guard.ts";
import type { ValidatedRecords } from "./_validated.ts";

/** What {@linkcode DhtRecords} needs from its node. */
export interface DhtRecordsInit {
  /** This node's peer ID. */
  readonly self: PeerId;
  /** Reads a peer's stored addresses (libp2p's peer store). */
  readonly peerAddresses: (peer: PeerId, signal: AbortSignal) => Promise<string[]>;
  /** kad-dht's routing table and network layer. */
  readonly kad: KadInternals;
  /** Sends kad requests. */
  readonly client: KadClient;
  /** The datastore with the replay guard. */
  readonly datastore: RecordGuardDatastore;
  /** Record validators by namespace. */
  readonly validators: Readonly<Record<string, DhtValidator>>;
  /** Record selectors by namespace. */
  readonly selectors: Readonly<Record<string, DhtSelector>>;
  /** The record values validated recently (shared with kad-dht's validators). */
  readonly validated: ValidatedRecords;
  /** The clock, in ms since the epoch. */
  readonly clock: () => number;
  /** Disjoint paths per lookup. */
  readonly paths: number;
  /** Requests in flight per path, for lookups without a quorum. */
  readonly concurrency: number;
  /** Spares kad-dht repeated news of a peer. */
  readonly peerEvents: PeerEventFilter;
  /** One-line diagnostics. */
  readonly log: (message: string) => void;
}

/**
 * A record a put's quorum lookup sends each peer it asks, right after the
 * FIND_NODE on the same stream.
 */
export interface PipelinedStore {
  /** The serialized libp2p record. */
  readonly record: Uint8Array;
  /** Its value, which an acknowledgement echoes. */
  readonly value: Uint8Array;
  /** The acknowledgements, by peer key (`peerKey`); filled by the lookup. */
  readonly stores: Map<string, Promise<boolean>>;
}

const VALID = Promise.resolve(true);
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * A node's record operations; see the module documentation. `DhtNode`
 * makes one and calls it with checked keys and scoped signals.
 */
export class DhtRecords {
  readonly #init: DhtRecordsInit;
  readonly #background = new BackgroundWork(BACKGROUND_REPLICAS_MS);

  /**
   * @param init The node's parts.
   */
  constructor(init: DhtRecordsInit) {
    this.#init = init;
  }

  /**
   * The bytes of a DHT key, checked.
   *
   * @param key A key `/<namespace>/<rest>`.
   * @param action What it is for, for the message.
   * @returns The key's UTF-8 bytes.
   * @throws {TypeError} If the key is malformed or its namespace has no validator.
   */
  key(key: string, action: string): Uint8Array {
    const bytes = encoder.encode(key);
    const namespace = namespaceOf(bytes);
    if (!key.startsWith("/") || namespace === undefined || namespace === "") {
      throw new TypeError(`Cannot ${action}: key ${JSON.stringify(key)} is not /namespace/name`);
    }
    if (this.#init.validators[namespace] === undefined) {
      throw new TypeError(`Cannot ${action}: no validator for namespace ${namespace}`);
    }
    return bytes;
  }

  /**
   * Runs the namespace's validator on a value about to be put.
   *
   * @param key The key, for the message.
   * @param keyBytes The key's bytes.
   * @param value The value.
   * @returns When the value is valid.
   * @throws {InvalidRecordError} If the validator rejects it.
   */
  async validate(key: string, keyBytes: Uint8Array, value: Uint8Array): Promise<void> {
    const validator = this.#init.validators[namespaceOf(keyBytes) ?? ""];
    if (validator === undefined || this.#init.validated.knows(keyBytes, value)) return;
    try {
      await validator(keyBytes, value);
      this.#init.validated.remember(keyBytes, value);
    } catch (cause) {
      throw new InvalidRecordError(`Cannot put record ${key}: it is not valid under its key`, {
        cause,
      });
    }
  }

  /**
   * Stores a validated value locally and on the closest peers: returns
   * once the write quorum has it, and sends it to the rest of the k
   * closest in the background (see the module documentation).
   *
   * @param key The key, for messages.
   * @param keyBytes The key's bytes.
   * @param value The value.
   * @param signal Aborts the put (not its background replicas).
   * @returns How many peers acknowledged it by then: the quorum's size
   *   once it is reached, otherwise how many of the k closest did.
   * @throws {InvalidRecordError} If this node holds a record the selector prefers.
   */
  async put(
    key: string,
    keyBytes: Uint8Array,
    value: Uint8Array,
    signal: AbortSignal,
  ): Promise<number> {
    const record = new Libp2pRecord(keyBytes, value, new Date(this.#init.clock())).serialize();
    try {
      await this.#init.datastore.put(recordDatastoreKey(keyBytes), record, { signal });
    } catch (cause) {
      if (cause instanceof InvalidRecordError) {
        throw new InvalidRecordError(
          `Cannot put record ${key}: this node holds a newer record for the key`,
          { cause },
        );
      }
      throw cause;
    }
    // Each peer the quorum lookup asks may be one of the closest: its
    // FIND_NODE is followed on the same stream by the PUT_VALUE.
    const stores = new Map<string, Promise<boolean>>();
    const settled = await this.lookup(
      keyBytes,
      KadMessageType.FIND_NODE,
      signal,
      undefined,
      PUT_QUORUM,
      { record, value, stores },
    );
    const quorum = settled.responses.slice(0, PUT_QUORUM).map(({ peer }) => peer);
    const acks = await Promise.all(
      quorum.map((peer) =>
        stores.get(peerKey(peer.id)) ?? this.#sendRecord(peer, keyBytes, record, value, signal)
      ),
    );
    const stored = acks.filter(Boolean).length;
    const quorumKeys = new Set(quorum.map((peer) => peerKey(peer.id)));
    // The PUT_VALUEs sent along to peers outside the quorum are replicas too.
    const others = [...stores].filter(([key]) => !quorumKeys.has(key)).map(([, ack]) => ack);
    const tried = new Set([...quorumKeys, ...stores.keys()]);
    const rest = async (restSignal: AbortSignal): Promise<number> => {
      const [along, replicated] = await Promise.all([
        Promise.all(others),
        this.#replicate(keyBytes, record, value, tried, restSignal),
      ]);
      return along.filter(Boolean).length + replicated;
    };
    if (stored > 0 && stored === quorum.length) {
      this.#background.run((background) =>
        rest(background).catch((cause) => {
          this.#init.log(`could not finish the replicas of ${key}: ${describe(cause)}`);
        })
      );
      return stored;
    }
    return stored + await rest(signal);
  }

  /**
   * Waits until the background replicas of earlier puts are sent, at most `ms`.
   *
   * @param ms The longest wait.
   * @returns Whether they all finished in time.
   */
  settled(ms: number): Promise<boolean> {
    return this.#background.settled(ms);
  }

  /** Aborts the background replicas still running, and any started later. */
  abandon(): void {
    this.#background.abort();
  }

  // Sends the record to the k closest peers a full lookup finds, but those
  // in `tried`; returns how many acknowledged.
  async #replicate(
    keyBytes: Uint8Array,
    record: Uint8Array,
    value: Uint8Array,
    tried: ReadonlySet<string>,
    signal: AbortSignal,
  ): Promise<number> {
    const { responses } = await this.lookup(keyBytes, KadMessageType.FIND_NODE, signal);
    const rest = responses.slice(0, DHT_K).map(({ peer }) => peer)
      .filter((peer) => !tried.has(peerKey(peer.id)));
    const acks = await Promise.all(
      rest.map((peer) => this.#sendRecord(peer, keyBytes, record, value, signal)),
    );
    return acks.filter(Boolean).length;
  }

  /**
   * Finds the best value under a key and repairs stale copies.
   *
   * @param key The key, for messages.
   * @param keyBytes The key's bytes.
   * @param quorum Agreeing answers that end the lookup; 0: never early.
   * @param signal Aborts the get.
   * @returns The best value, or `undefined` if peers answered and none holds one.
   * @throws {PeerUnreachableError} If no peer answered and no local copy exists.
   */
  async get(
    key: string,
    keyBytes: Uint8Array,
    quorum: number,
    signal: AbortSignal,
  ): Promise<Uint8Array | undefined> {
    // The local copy is read and checked while the first requests are on
    // their way; the lookup takes no answer into account before it is known.
    const spec: { count: number; local?: Uint8Array; select: LookupQuorum["select"] } = {
      count: quorum,
      select: (values) => this.#select(keyBytes, values),
    };
    const localRead = this.readLocal(keyBytes, signal).then((value) => {
      if (value !== undefined) spec.local = value;
      return value;
    });
    const result = await this.lookup(
      keyBytes,
      KadMessageType.GET_VALUE,
      signal,
      spec,
      undefined,
      undefined,
      localRead.then(() => {}, () => {}),
    );
    const local = await localRead;
    const answers = result.responses.filter((response) => response.value !== undefined);
    const values = [...(local === undefined ? [] : [local]), ...answers.map((a) => a.value!)];
    if (values.length === 0) {
      if (result.responses.length > 0) return undefined;
      throw new PeerUnreachableError(
        this.#init.kad.routingTable.size === 0
          ? `Cannot get record ${key}: not connected to any DHT peer`
          : `Cannot get record ${key}: no DHT peer answered`,
      );
    }
    const chosen = values[this.#select(keyBytes, values)] as Uint8Array;
    const stale = answers.filter((answer) => !equalBytes(answer.value!, chosen));
    await this.#repair(keyBytes, local, stale.map((answer) => answer.peer), chosen, signal);
    return chosen;
  }

  /**
   * Reads this node's own copy, as it would serve it: validated, and only
   * if received less than 48 h ago.
   *
   * @param keyBytes The key's bytes.
   * @param signal Aborts the read.
   * @returns The value, or `undefined`.
   * @throws {StorageError} If the datastore fails.
   */
  async readLocal(keyBytes: Uint8Array, signal?: AbortSignal): Promise<Uint8Array | undefined> {
    const key = recordDatastoreKey(keyBytes);
    const options = signal === undefined ? {} : { signal };
    let raw: Uint8Array;
    try {
      // Most gets are for records this node does not hold: ask first, so
      // that no NotFoundError (and its stack trace) is built.
      if (!(await this.#init.datastore.has(key, options))) return undefined;
      raw = await this.#init.datastore.get(key, options);
    } catch (cause) {
      if ((cause as { name?: unknown } | null)?.name === "NotFoundError") return undefined;
      throw cause instanceof StorageError ? cause : new StorageError(
        `Cannot read local record: ${describe(cause)}`,
        { cause },
      );
    }
    let record: Libp2pRecord;
    try {
      record = Libp2pRecord.deserialize(raw);
    } catch {
      return undefined;
    }
    const receivedAt = record.timeReceived?.getTime();
    if (receivedAt === undefined || this.#init.clock() - receivedAt > RECORD_MAX_AGE_MS) {
      return undefined;
    }
    const validator = this.#init.validators[namespaceOf(keyBytes) ?? ""];
    if (validator === undefined) return record.value;
    return (await this.#init.validated.isValid(keyBytes, record.value, validator))
      ? record.value
      : undefined;
  }

  /**
   * The peers closest to a key, with their addresses.
   *
   * @param keyBytes The key's bytes.
   * @param signal Aborts the lookup.
   * @param includeSelf Count this node among them (with no addresses).
   * @returns At most k peers, nearest first.
   */
  async closestPeers(
    keyBytes: Uint8Array,
    signal: AbortSignal,
    includeSelf = false,
  ): Promise<DhtPeer[]> {
    const { responses } = await this.lookup(keyBytes, KadMessageType.FIND_NODE, signal);
    const found: { peer: KadPeer | undefined; peerId: PeerId }[] = responses.map(({ peer }) => ({
      peer,
      peerId: toPeerId(peer),
    }));
    if (includeSelf) found.push({ peer: undefined, peerId: this.#init.self });
    // Sorted here, so every node that asks ranks the same peers the same way
    // whatever order the lookup met them in.
    const target = kadId(keyBytes);
    const ranked = found
      .map((entry) => ({ ...entry, at: kadId(entry.peerId.toMultihash().bytes) }))
      .sort((a, b) => compareXor(a.at, b.at, target))
      .slice(0, DHT_K);
    const peers: DhtPeer[] = [];
    for (const { peer, peerId } of ranked) {
      if (peer === undefined) {
        peers.push({ peerId: peerId.toString(), multiaddrs: [] });
        continue;
      }
      let addresses = peer.addrs.map((bytes) => multiaddr(bytes).toString());
      // Peers the lookup started from carry no addresses: take the peer store's.
      if (addresses.length === 0) addresses = await this.#init.peerAddresses(peerId, signal);
      peers.push({ peerId: peerId.toString(), multiaddrs: addresses });
    }
    return peers;
  }

  /**
   * Runs one lookup (see `_lookup.ts`): GET_VALUE with a quorum for a get,
   * FIND_NODE otherwise.
   *
   * @param keyBytes The key (or, for a self lookup, the peer ID multihash).
   * @param type The kad message type.
   * @param signal Aborts the lookup.
   * @param quorum The end condition of a value lookup.
   * @param settle Ends a FIND_NODE lookup once this many closest peers answered.
   * @param store A record to send each asked peer right after its request,
   *   on the same stream; each acknowledgement (true if the peer stored
   *   it) goes into `stores` under the peer's key.
   * @param ready Settles once `quorum.local` is final: no answer is taken
   *   into account before.
   * @returns The lookup's result.
   */
  async lookup(
    keyBytes: Uint8Array,
    type: number,
    signal: AbortSignal,
    quorum?: LookupQuorum,
    settle?: number,
    store?: PipelinedStore,
    ready?: Promise<void>,
  ): Promise<LookupResult> {
    const { kad, client, self } = this.#init;
    const target = kadId(keyBytes);
    const start: StartPeer[] = kad.routingTable
      .closestPeers(target, { count: DHT_K })
      .map((peerId) => ({ id: peerId.toMultihash().bytes, addrs: [], peerId }));
    // One check per distinct value a lookup is answered with (few: peers
    // mostly agree); the local copy was checked as it was read.
    const checked: { value: Uint8Array; valid: Promise<boolean> }[] = [];
    const isValid = (value: Uint8Array): Promise<boolean> => {
      if (quorum?.local !== undefined && equalBytes(quorum.local, value)) return VALID;
      const known = checked.find((entry) => equalBytes(entry.value, value));
      if (known !== undefined) return known.valid;
      const valid = this.#isValid(keyBytes, value);
      checked.push({ value, valid });
      return valid;
    };
    const withQuorum = quorum !== undefined && quorum.count > 0;
    const early = withQuorum || settle !== undefined;
    return await lookup<StartPeer>({
      target,
      self: self.toMultihash().bytes,
      start,
      k: DHT_K,
      paths: this.#init.paths,
      // A get (or a put's quorum lookup) asks one peer per path at a time:
      // it ends as soon as the closest agree (or answer), so asking farther
      // peers in parallel is wasted.
      concurrency: early ? 1 : this.#init.concurrency,
      straggleMs: LOOKUP_STRAGGLE_MS,
      // kad-dht's own queries tell its routing table and the peer store of
      // every peer an answer names; DIM's lookups do it for new ones only.
      onNewPeer: (peer) => this.#learn(peer),
      ...(withQuorum ? { quorum } : {}),
      ...(settle === undefined ? {} : { settle }),
      signal,
      ask: async (peer, askSignal) => {
        const request = { type, key: keyBytes };
        const peerId = toPeerId(peer);
        const addresses = () => dialAddresses(peer);
        let answer: KadMessage;
        if (store === undefined) {
          answer = await client.request(peerId, addresses, request, askSignal);
        } else {
          const putRequest = {
            type: KadMessageType.PUT_VALUE,
            key: keyBytes,
            record: store.record,
          };
          const [found, put] = client.requestAll(
            peerId,
            addresses,
            [request, putRequest],
            askSignal,
          );
          store.stores.set(
            peerKey(peer.id),
            put!.then((ack) => this.#acknowledged(ack, store.value), (cause) => {
              if (!askSignal.aborted) {
                this.#init.log(`could not store the record on a peer: ${describe(cause)}`);
              }
              return false;
            }),
          );
          answer = await found!;
        }
        if (answer.type !== type) {
          throw new ProtocolError(`Cannot read kad answer: type ${answer.type}, not ${type}`);
        }
        if (ready !== undefined) await ready;
        const closer = answer.closer ?? [];
        let value: Uint8Array | undefined;
        if (type === KadMessageType.GET_VALUE && answer.record !== undefined) {
          value = recordValue(keyBytes, answer.record);
          if (value !== undefined && !(await isValid(value))) {
            this.#init.log(`a peer answered an invalid record for ${decoder.decode(keyBytes)}`);
            value = undefined;
          }
        }
        return value === undefined ? { closer } : { closer, value };
      },
    });
  }

  // Whether a value is valid under its key by its namespace's validator
  // (false without one), unless found valid recently.
  #isValid(keyBytes: Uint8Array, value: Uint8Array): Promise<boolean> {
    const validator = this.#init.validators[namespaceOf(keyBytes) ?? ""];
    if (validator === undefined) return Promise.resolve(false);
    return this.#init.validated.isValid(keyBytes, value, validator);
  }

  #select(keyBytes: Uint8Array, values: Uint8Array[]): number {
    // Peers mostly agree: equal values need no ranking.
    if (values.length < 2 || values.every((value) => equalBytes(value, values[0]!))) return 0;
    const selector = this.#init.selectors[namespaceOf(keyBytes) ?? ""];
    if (selector === undefined) return 0;
    const index = selector(keyBytes, values);
    return Number.isInteger(index) && index >= 0 && index < values.length ? index : 0;
  }

  // Tells kad-dht about a peer named in an answer, as its own queries do,
  // so that it may enter the routing table and the peer store (which the
  // filter spares from repeats).
  #learn(peer: KadPeer): void {
    if (!this.#init.peerEvents.wouldAdmit(peer.id, peer.addrs)) return;
    let detail: { id: PeerId; multiaddrs: Multiaddr[] };
    try {
      detail = { id: toPeerId(peer), multiaddrs: peer.addrs.map((bytes) => multiaddr(bytes)) };
    } catch {
      return; // A malformed peer ID or address: nothing to learn.
    }
    if (detail.id.equals(this.#init.self)) return;
    this.#init.kad.network.dispatchEvent(new CustomEvent("peer", { detail }));
  }

  // Sends a PUT_VALUE; true if the peer acknowledged storing the record.
  async #sendRecord(
    peer: KadPeer,
    keyBytes: Uint8Array,
    record: Uint8Array,
    value: Uint8Array,
    signal: AbortSignal,
  ): Promise<boolean> {
    try {
      const answer = await this.#init.client.request(
        toPeerId(peer),
        () => dialAddresses(peer),
        { type: KadMessageType.PUT_VALUE, key: keyBytes, record },
        signal,
      );
      return this.#acknowledged(answer, value);
    } catch (cause) {
      if (!signal.aborted) {
        this.#init.log(`could not store the record on a peer: ${describe(cause)}`);
      }
      return false;
    }
  }

  // Whether a PUT_VALUE answer echoes the record of `value`, as kad-dht's
  // server does once it stored it.
  #acknowledged(answer: KadMessage, value: Uint8Array): boolean {
    if (answer.type !== KadMessageType.PUT_VALUE || answer.record === undefined) return false;
    try {
      return equalBytes(Libp2pRecord.deserialize(answer.record).value, value);
    } catch {
      return false;
    }
  }

  // Sends the chosen value to peers that answered with another one, and
  // replaces an older local copy, each independently: one failure stops
  // nothing else. (A node that held no copy does not start keeping one.)
  async #repair(
    keyBytes: Uint8Array,
    local: Uint8Array | undefined,
    stale: readonly KadPeer[],
    chosen: Uint8Array,
    signal: AbortSignal,
  ): Promise<void> {
    const localStale = local !== undefined && !equalBytes(local, chosen);
    if (stale.length === 0 && !localStale) return;
    const record = new Libp2pRecord(keyBytes, chosen, new Date(this.#init.clock())).serialize();
    const jobs: Promise<unknown>[] = stale.map((peer) =>
      this.#sendRecord(peer, keyBytes, record, chosen, signal)
    );
    if (localStale) {
      jobs.push(
        this.#init.datastore.put(recordDatastoreKey(keyBytes), record, { signal }).then(
          () => {},
          (cause) => this.#init.log(`could not repair the local copy: ${describe(cause)}`),
        ),
      );
    }
    await Promise.all(jobs);
  }
}

// The value of a record answered for `keyBytes`, as kad-dht accepts it: for
// the same key, with a reception time; undefined otherwise.
function recordValue(keyBytes: Uint8Array, bytes: Uint8Array): Uint8Array | undefined {
  try {
    const record = Libp2pRecord.deserialize(bytes);
    if (record.timeReceived === undefined || !equalBytes(record.key, keyBytes)) return undefined;
    return record.value;
  } catch {
    return undefined;
  }
}
