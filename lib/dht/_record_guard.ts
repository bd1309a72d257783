/**
 * The datastore wrapper that keeps a DIM node from going backwards: a DHT
 * record is replaced only by one its namespace's selector prefers.
 *
 * How kad-dht 16.4.5 keeps records (read from its sources,
 * `src/utils.ts`, `src/rpc/handlers/put-value.ts`, `get-value.ts`,
 * `src/content-fetching/index.ts`):
 *
 * - The datastore key is `/dht/record/<base32 of the DHT key>`: the
 *   `datastorePrefix` (default `/dht`), then `/record/`, then the key bytes
 *   in RFC 4648 base32, lower case, without padding (multiformats `base32`
 *   without its `b` multibase prefix). The key is not "cleaned".
 * - The value is a libp2p `Record` protobuf (`@libp2p/record`): `key`,
 *   `value`, and `timeReceived` as an RFC 3339 string.
 * - The PUT_VALUE handler runs the namespace's validator on an incoming
 *   record, sets `timeReceived` to now and writes it **without calling the
 *   selector**, so any validly signed but older record would replace a
 *   newer one. A local `put()` writes the same way, unvalidated; a `get()`
 *   writes its "correction" (the best record found) over an older local one.
 * - The GET_VALUE handler serves a stored record only if `timeReceived` is
 *   less than 48 h old and deletes it otherwise; `get()` reads the local
 *   record through the validator.
 *
 * So this wrapper intercepts writes under `/dht/record/`: when the record's
 * namespace has an injected selector and a record is already stored, it
 * asks the selector to choose between the stored value and the incoming
 * one, and refuses the write (an {@linkcode InvalidRecordError}) unless the
 * incoming one wins. Rewriting the same value is allowed, so republishing
 * refreshes `timeReceived`; a stored record older than 48 h no longer
 * blocks anything, since kad-dht would not serve it. A refused remote
 * PUT_VALUE makes kad-dht abort that RPC stream, so the sender sees an
 * error rather than a false acknowledgement.
 *
 * @module
 */
import { Libp2pRecord } from "@libp2p/record";
import { Key } from "interface-datastore";
import type { Batch, Datastore, KeyQuery, Pair, Query } from "interface-datastore";
import { NotFoundError } from "interface-store";
import { InvalidRecordError } from "../errors.ts";
import { equalBytes, toBase32 } from "../platform/bytes.ts";
import { RECORD_MAX_AGE_MS } from "./constants.ts";

/** The datastore key prefix under which kad-dht keeps DHT records. */
export const DHT_RECORD_PREFIX = "/dht/record/";

const decoder = new TextDecoder();

/** A selector in kad-dht's shape: the index of the best of `records`. */
export type GuardSelector = (key: Uint8Array, records: Uint8Array[]) => number;

/** Options of {@linkcode RecordGuardDatastore}. */
export interface RecordGuardOptions {
  /** Selectors by namespace (`dim` for `/dim/...`). */
  readonly selectors: Readonly<Record<string, GuardSelector>>;
  /** The time source, in milliseconds since the epoch. */
  readonly clock: () => number;
  /** Told about refused writes. */
  readonly log: (message: string) => void;
}

/**
 * The datastore key under which kad-dht stores the record of a DHT key.
 *
 * @param dhtKey The DHT key bytes.
 * @returns The datastore key.
 */
export function recordDatastoreKey(dhtKey: Uint8Array): Key {
  return new Key(`${DHT_RECORD_PREFIX}${toBase32(dhtKey)}`, false);
}

/**
 * The namespace of a DHT key: the text between its first two slashes.
 *
 * @param dhtKey The DHT key bytes.
 * @returns The namespace, or `undefined` if the key has fewer than three parts.
 */
export function namespaceOf(dhtKey: Uint8Array): string | undefined {
  const parts = decoder.decode(dhtKey).split("/");
  return parts.length < 3 ? undefined : parts[1];
}

function isNotFound(err: unknown): boolean {
  return (err as { name?: unknown } | null)?.name === "NotFoundError";
}

/**
 * A {@linkcode Datastore} that forwards to another and refuses to replace a
 * stored DHT record by one its selector does not prefer. After
 * {@linkcode RecordGuardDatastore.seal} it drops writes and reads nothing,
 * so libp2p tasks that outlive `stop()` cannot touch a closed database.
 */
export class RecordGuardDatastore implements Datastore {
  readonly #inner: Datastore;
  readonly #options: RecordGuardOptions;
  readonly #locks = new Map<string, Promise<unknown>>();
  #sealed = false;

  /**
   * Wraps a datastore.
   *
   * @param inner The datastore that holds the data.
   * @param options Selectors, clock and log.
   */
  constructor(inner: Datastore, options: RecordGuardOptions) {
    this.#inner = inner;
    this.#options = options;
  }

  /** Stops forwarding: later writes are dropped and reads find nothing. */
  seal(): void {
    this.#sealed = true;
  }

  /**
   * Waits for the record writes in progress.
   *
   * @returns When no guarded write is running.
   */
  async settled(): Promise<void> {
    while (this.#locks.size > 0) {
      await Promise.allSettled([...this.#locks.values()]);
    }
  }

  async put(key: Key, value: Uint8Array, options?: { signal?: AbortSignal }): Promise<Key> {
    if (this.#sealed) return key;
    const name = key.toString();
    if (!name.startsWith(DHT_RECORD_PREFIX)) return await this.#inner.put(key, value, options);
    return await this.#serialized(name, async () => {
      if (this.#sealed) return key;
      if (!(await this.#admits(key, value, options))) {
        throw new InvalidRecordError(
          "Cannot store DHT record: the record already stored for this key is newer",
        );
      }
      return await this.#inner.put(key, value, options);
    });
  }

  async get(key: Key, options?: { signal?: AbortSignal }): Promise<Uint8Array> {
    if (this.#sealed) throw new NotFoundError();
    return await this.#inner.get(key, options);
  }

  async has(key: Key, options?: { signal?: AbortSignal }): Promise<boolean> {
    if (this.#sealed) return false;
    return await this.#inner.has(key, options);
  }

  async delete(key: Key, options?: { signal?: AbortSignal }): Promise<void> {
    if (this.#sealed) return;
    await this.#inner.delete(key, options);
  }

  async *putMany(
    source: Iterable<Pair> | AsyncIterable<Pair>,
    options?: { signal?: AbortSignal },
  ): AsyncGenerator<Key> {
    for await (const { key, value } of source) yield await this.put(key, value, options);
  }

  async *getMany(
    source: Iterable<Key> | AsyncIterable<Key>,
    options?: { signal?: AbortSignal },
  ): AsyncGenerator<Pair> {
    for await (const key of source) yield { key, value: await this.get(key, options) };
  }

  async *deleteMany(
    source: Iterable<Key> | AsyncIterable<Key>,
    options?: { signal?: AbortSignal },
  ): AsyncGenerator<Key> {
    for await (const key of source) {
      await this.delete(key, options);
      yield key;
    }
  }

  batch(): Batch {
    const records: Pair[] = [];
    const others: Pair[] = [];
    const deletes: Key[] = [];
    return {
      put: (key: Key, value: Uint8Array): void => {
        (key.toString().startsWith(DHT_RECORD_PREFIX) ? records : others).push({ key, value });
      },
      delete: (key: Key): void => {
        deletes.push(key);
      },
      commit: async (options?: { signal?: AbortSignal }): Promise<void> => {
        if (this.#sealed) return;
        const batch = this.#inner.batch();
        for (const { key, value } of others) batch.put(key, value);
        for (const key of deletes) batch.delete(key);
        await batch.commit(options);
        for (const { key, value } of records) await this.put(key, value, options);
      },
    };
  }

  async *query(query: Query, options?: { signal?: AbortSignal }): AsyncGenerator<Pair> {
    if (this.#sealed) return;
    yield* this.#inner.query(query, options);
  }

  async *queryKeys(query: KeyQuery, options?: { signal?: AbortSignal }): AsyncGenerator<Key> {
    if (this.#sealed) return;
    yield* this.#inner.queryKeys(query, options);
  }

  // Decides whether `value` may replace what is stored under `key`.
  async #admits(key: Key, value: Uint8Array, options?: { signal?: AbortSignal }): Promise<boolean> {
    let incoming: Libp2pRecord;
    try {
      incoming = Libp2pRecord.deserialize(value);
    } catch {
      return true; // Not a record kad-dht wrote: not ours to judge.
    }
    const namespace = namespaceOf(incoming.key);
    const selector = namespace === undefined ? undefined : this.#options.selectors[namespace];
    if (selector === undefined) return true;
    let storedBytes: Uint8Array;
    try {
      storedBytes = await this.#inner.get(key, options);
    } catch (err) {
      if (isNotFound(err)) return true;
      throw err;
    }
    let stored: Libp2pRecord;
    try {
      stored = Libp2pRecord.deserialize(storedBytes);
    } catch {
      return true; // An unreadable stored entry must not block a good one.
    }
    const receivedAt = stored.timeReceived?.getTime();
    if (receivedAt === undefined || !Number.isFinite(receivedAt)) return true;
    if (this.#options.clock() - receivedAt > RECORD_MAX_AGE_MS) return true;
    if (equalBytes(stored.value, incoming.value)) return true;
    let best: number;
    try {
      best = selector(incoming.key, [stored.value, incoming.value]);
    } catch {
      // The incoming record passed its validator (kad-dht's PUT handler and
      // DhtNode.put both validate); a selector that cannot rank the stored
      // one must not pin it for ever.
      return true;
    }
    if (best !== 1) {
      this.#options.log(`refused an older record for ${decoder.decode(incoming.key)}`);
      return false;
    }
    return true;
  }

  async #serialized<T>(name: string, task: () => Promise<T>): Promise<T> {
    const previous = this.#locks.get(name);
    const run = previous === undefined ? task() : previous.then(task, task);
    const tail = run.catch(() => {});
    this.#locks.set(name, tail);
    try {
      return await run;
    } finally {
      if (this.#locks.get(name) === tail) this.#locks.delete(name);
    }
  }
}
