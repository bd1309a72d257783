/**
 * DIM's iterative Kademlia lookup over disjoint paths, with an early end
 * for value lookups once the closest peers agree.
 *
 * The lookup is the one of Kademlia and S/Kademlia, as kad-dht runs it:
 *
 * - It starts from the k peers of the routing table closest to the target
 *   (in the XOR metric on SHA-256 of the key), dealt to `paths` disjoint
 *   paths by rank (the closest to path 0, the next to path 1, …), so every
 *   path starts near the target.
 * - Each path asks its closest not-yet-asked peer, up to `concurrency` at
 *   once, and adds the closer peers each answer names to its own queue,
 *   unless another path has already seen them: no peer is asked by two
 *   paths, so a path through malicious peers cannot steer the others.
 * - A path ends when the k closest peers that answered on it are all
 *   closer than anything left in its queue (or its queue is empty).
 * - A request unanswered after `straggleMs` no longer holds the lookup
 *   back: its path asks the next peer meanwhile, and the lookup may end
 *   without its answer (which still counts if it comes first). One slow or
 *   unreachable peer, or a made-up one a malicious peer named, then costs
 *   a lookup `straggleMs`, not a stalled path.
 *
 * A value lookup (`quorum`) may end before that, when both hold:
 *
 * 1. at least `quorum.count` peers answered with a valid value equal to the
 *    best value found (the selector's choice among all answers and the
 *    local copy), and these agreeing answers come from at least
 *    `min(quorum.count, paths in use)` different paths;
 * 2. the lookup has converged below them: no peer known to be closer to
 *    the target than the farthest of those agreeing peers is still to be
 *    asked or awaited (unless it straggles).
 *
 * So the answer rests on the closest replicas the lookup can find, never
 * on the first answer, and a closer peer that might hold a newer record is
 * always heard first. When the agreeing answers are too few (peers hold
 * older records, or none), the lookup simply runs to its end.
 *
 * A value lookup also holds back a peer while enough closer peers, on
 * enough paths, agree or are still being asked: its answer could not change
 * the outcome. It is asked as soon as one of them fails or disagrees. When
 * the closest peers answer and agree, a get so sends about `quorum.count`
 * requests; otherwise it widens along the other paths.
 *
 * A peer lookup may end early too (`settle`, for the write quorum of a
 * put): by the same two conditions, with "answered" in place of "answered
 * with the best value". It then ends once the `settle` closest peers it can
 * find have answered, on `min(settle, paths in use)` paths, and no peer
 * closer than them is still to be asked or awaited: the peers a value
 * lookup for the same key hears first.
 *
 * The lookup is pure: the network is the injected `ask` function, which
 * makes the rules testable without sockets.
 *
 * @module
 */
import { compareBytes as compareDistance, equalBytes } from "../platform/bytes.ts";
import { kadId, xorDistance as xor } from "./_distance.ts";
import type { KadPeer } from "./_kad_wire.ts";

/** What a peer answered. */
export interface LookupAnswer {
  /** The closer peers it named. */
  readonly closer: readonly KadPeer[];
  /** The value it holds for the key, already validated; `undefined` if none or invalid. */
  readonly value?: Uint8Array;
}

/** The value-lookup end condition; see the module documentation. */
export interface LookupQuorum {
  /** How many agreeing answers end the lookup (at least 1). */
  readonly count: number;
  /**
   * This node's own valid copy, which takes part in choosing the best value.
   * It is read when the first answer is taken into account, so a caller may
   * set it while the first requests are on their way, as long as `ask`
   * resolves no answer before then.
   */
  readonly local?: Uint8Array;
  /** The index of the best of several valid values. */
  readonly select: (values: Uint8Array[]) => number;
}

/** Options of {@linkcode lookup}. */
export interface LookupOptions<P extends KadPeer> {
  /** The lookup target in the DHT key space: `kadId` (`_distance.ts`) of the key. */
  readonly target: Uint8Array;
  /** This node's peer ID multihash: never asked. */
  readonly self: Uint8Array;
  /** The starting peers (the routing table's closest to the target). */
  readonly start: readonly P[];
  /** k: how many closest answering peers a path keeps. */
  readonly k: number;
  /** The number of disjoint paths (at least 1). */
  readonly paths: number;
  /** Requests in flight per path (at least 1). */
  readonly concurrency: number;
  /**
   * After how many ms an unanswered request stops holding its path's slot
   * (it is still awaited), so that one slow or unreachable peer does not
   * stall a path. Default: never.
   */
  readonly straggleMs?: number;
  /** Ends a value lookup early; see the module documentation. */
  readonly quorum?: LookupQuorum;
  /**
   * Ends a peer lookup (one without `quorum`) once this many closest peers
   * have answered and no closer one is pending; see the module documentation.
   */
  readonly settle?: number;
  /** Told about each peer an answer names that the lookup had not seen yet. */
  readonly onNewPeer?: (peer: KadPeer) => void;
  /**
   * Asks one peer; rejects if the peer cannot be reached or answers badly.
   * Its signal is the lookup's: requests in flight when the lookup ends are
   * not aborted (their answers are ignored).
   */
  readonly ask: (peer: P | KadPeer, signal: AbortSignal) => Promise<LookupAnswer>;
  /** Aborts the lookup: it then rejects with the signal's reason. */
  readonly signal?: AbortSignal;
}

/** A peer the lookup heard from. */
export interface LookupResponse {
  /** The peer, as it was started from or named. */
  readonly peer: KadPeer;
  /** Its XOR distance to the target. */
  readonly distance: Uint8Array;
  /** The index of the path that asked it. */
  readonly path: number;
  /** The valid value it answered with, if any. */
  readonly value?: Uint8Array;
}

/** What a {@linkcode lookup} found. */
export interface LookupResult {
  /** The peers that answered, closest first. */
  readonly responses: readonly LookupResponse[];
  /** How many requests were sent. */
  readonly asked: number;
  /** How many requests failed. */
  readonly failed: number;
  /** Whether a value lookup ended at its quorum (a peer lookup: once settled). */
  readonly early: boolean;
}

type State = "new" | "asking" | "answered" | "failed";

interface Candidate {
  readonly peer: KadPeer;
  readonly distance: Uint8Array;
  readonly path: number;
  state: State;
  value?: Uint8Array;
  /** Asked longer than straggleMs ago, and not answered yet. */
  straggling?: boolean;
}

interface Request {
  readonly candidate: Candidate;
  readonly path: Path;
  readonly since: number;
  straggling: boolean;
}

interface Path {
  /** Peers not asked yet, closest first. */
  readonly queue: Candidate[];
  /** Peers that answered, closest first, at most k. */
  readonly closest: Candidate[];
  /** Requests awaited that hold a slot (not yet straggling). */
  active: number;
}

// Positions of peers met recently, by peerKey: the same peers are named
// again and again, and hashing each anew was a fifth of a lookup's own time.
const PEER_KAD_IDS = new Map<string, Uint8Array>();
const PEER_KAD_ID_ENTRIES = 4096;

function peerKadId(key: string, id: Uint8Array): Uint8Array {
  let position = PEER_KAD_IDS.get(key);
  if (position === undefined) {
    position = kadId(id);
    if (PEER_KAD_IDS.size >= PEER_KAD_ID_ENTRIES) {
      PEER_KAD_IDS.delete(PEER_KAD_IDS.keys().next().value!);
    }
    PEER_KAD_IDS.set(key, position);
  }
  return position;
}

/**
 * A map key for a peer ID multihash.
 *
 * @param id The multihash bytes.
 * @returns A string holding the same bytes.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { peerKey } from "./_lookup.ts";
 *
 * assert.equal(peerKey(new Uint8Array([65, 66])), "AB");
 * ```
 */
export function peerKey(id: Uint8Array): string {
  // One string, not one per byte: lookups key every peer they are told of.
  return String.fromCharCode.apply(null, id as unknown as number[]);
}

// Inserts `item` into `list`, kept sorted by distance.
function insertSorted(list: Candidate[], item: Candidate): void {
  let low = 0;
  let high = list.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if (compareDistance(list[mid]!.distance, item.distance) <= 0) low = mid + 1;
    else high = mid;
  }
  list.splice(low, 0, item);
}

/**
 * Runs one lookup; see the module documentation.
 *
 * @param options Target, starting peers, k, paths, concurrency, the
 *   optional quorum, the `ask` function and a signal.
 * @returns The peers that answered and counters.
 * @throws {RangeError} If `k`, `paths`, `concurrency` or the quorum count
 *   is not a positive integer.
 * @throws {unknown} The signal's reason, if it is aborted.
 * @example A lookup over a simulated network of two peers
 * ```ts
 * import assert from "node:assert/strict";
 * import { kadId } from "./_distance.ts";
 * import { lookup } from "./_lookup.ts";
 *
 * const a = { id: new Uint8Array([0, 1, 1]), addrs: [] };
 * const b = { id: new Uint8Array([0, 1, 2]), addrs: [] };
 * const result = await lookup({
 *   target: kadId(new TextEncoder().encode("/demo/key")),
 *   self: new Uint8Array([0, 1, 0]),
 *   start: [a],
 *   k: 20,
 *   paths: 1,
 *   concurrency: 1,
 *   // `a` names `b`; `b` names nobody.
 *   ask: (peer) => Promise.resolve({ closer: peer === a ? [b] : [] }),
 * });
 * assert.equal(result.asked, 2);
 * assert.equal(result.responses.length, 2);
 * ```
 */
export function lookup<P extends KadPeer>(options: LookupOptions<P>): Promise<LookupResult> {
  const { target, k, quorum } = options;
  const counts = {
    k,
    paths: options.paths,
    concurrency: options.concurrency,
    quorum: quorum?.count ?? 1,
    settle: options.settle ?? 1,
  };
  for (const [name, value] of Object.entries(counts)) {
    if (!Number.isSafeInteger(value) || value < 1) {
      throw new RangeError(`Cannot run lookup: ${name} must be a positive integer`);
    }
  }
  const selfKey = peerKey(options.self);
  const seen = new Map<string, Candidate>();
  const paths: Path[] = Array.from({ length: options.paths }, () => ({
    queue: [],
    closest: [],
    active: 0,
  }));
  const starting: { peer: KadPeer; distance: Uint8Array }[] = [];
  const startKeys = new Set<string>();
  for (const peer of options.start) {
    const key = peerKey(peer.id);
    if (key === selfKey || startKeys.has(key)) continue;
    startKeys.add(key);
    starting.push({ peer, distance: xor(peerKadId(key, peer.id), target) });
  }
  starting.sort((a, b) => compareDistance(a.distance, b.distance));
  // Dealt by rank, so that each path starts from one of the closest peers.
  const pathsInUse = Math.min(options.paths, starting.length);
  starting.forEach(({ peer, distance }, rank) => {
    const path = rank % options.paths;
    const candidate: Candidate = { peer, distance, path, state: "new" };
    seen.set(peerKey(peer.id), candidate);
    paths[path]!.queue.push(candidate);
  });

  // Requests still in flight when the lookup ends are left to finish, their
  // answers ignored: aborting them would reset streams that the next
  // request to the same peer could reuse. Only the caller's signal aborts them.
  const askSignal = options.signal ?? new AbortController().signal;
  let asked = 0;
  let failed = 0;
  let finished = false;

  return new Promise<LookupResult>((resolve, reject) => {
    // One timer per lookup marks requests older than straggleMs as stragglers.
    const inFlight = new Set<Request>();
    let straggleTimer: ReturnType<typeof setTimeout> | undefined;
    const onAbort = (): void => {
      finish();
      reject(options.signal?.reason);
    };
    const finish = (early = false): LookupResult | undefined => {
      if (finished) return undefined;
      finished = true;
      clearTimeout(straggleTimer);
      options.signal?.removeEventListener("abort", onAbort);
      const responses: LookupResponse[] = [...seen.values()]
        .filter((c) => c.state === "answered")
        .sort((a, b) => compareDistance(a.distance, b.distance))
        .map((c) => ({
          peer: c.peer,
          distance: c.distance,
          path: c.path,
          ...(c.value === undefined ? {} : { value: c.value }),
        }));
      return { responses, asked, failed, early };
    };
    if (options.signal?.aborted) {
      finished = true;
      reject(options.signal.reason);
      return;
    }
    options.signal?.addEventListener("abort", onAbort, { once: true });

    const canEnter = (path: Path, distance: Uint8Array): boolean =>
      path.closest.length < k ||
      compareDistance(distance, path.closest[k - 1]!.distance) < 0;

    // The valid answers so far, and the best value among them and the local
    // copy, kept as answers arrive (the selector ranks two at a time).
    const valued: Candidate[] = [];
    // No answer counts before the first one: the local copy joins then.
    let best: Uint8Array | undefined;
    let localTaken = false;
    const better = (a: Uint8Array, b: Uint8Array): Uint8Array => {
      if (equalBytes(a, b)) return a;
      const index = quorum!.select([a, b]);
      return index === 1 ? b : a;
    };

    // The early end needs `needed` answers that count: agreeing with the
    // best value, or (a settling peer lookup) any answer.
    const needed = quorum?.count ?? options.settle;
    const answered: Candidate[] = [];
    const counting = (c: Candidate): boolean =>
      quorum === undefined ? c.state === "answered" : c.value !== undefined && c.value === best;

    const agreed = (): boolean => {
      if (needed === undefined) return false;
      const agreeing = (quorum === undefined ? answered : valued).filter(counting);
      if (agreeing.length < needed) return false;
      agreeing.sort((a, b) => compareDistance(a.distance, b.distance));
      const pathsNeeded = Math.min(needed, pathsInUse);
      const pathsSeen = new Set<number>();
      let boundary: Uint8Array | undefined;
      for (let i = 0; i < agreeing.length; i++) {
        pathsSeen.add(agreeing[i]!.path);
        if (i + 1 >= needed && pathsSeen.size >= pathsNeeded) {
          boundary = agreeing[i]!.distance;
          break;
        }
      }
      if (boundary === undefined) return false;
      for (const candidate of seen.values()) {
        const pending = candidate.state === "new" ||
          (candidate.state === "asking" && candidate.straggling !== true);
        if (pending && compareDistance(candidate.distance, boundary) < 0) {
          return false;
        }
      }
      return true;
    };

    const watchStragglers = (): void => {
      if (options.straggleMs === undefined || straggleTimer !== undefined || finished) return;
      straggleTimer = setTimeout(() => {
        straggleTimer = undefined;
        if (finished) return;
        const now = Date.now();
        let freed = false;
        for (const request of inFlight) {
          if (request.straggling || now - request.since < options.straggleMs!) continue;
          request.straggling = true;
          request.candidate.straggling = true;
          request.path.active--;
          freed = true;
        }
        if (inFlight.size > 0) watchStragglers();
        if (!freed) return;
        if (agreed()) {
          const result = finish(true);
          if (result !== undefined) resolve(result);
          return;
        }
        pump();
      }, options.straggleMs);
    };

    const onAnswer = (candidate: Candidate, answer: LookupAnswer): void => {
      candidate.state = "answered";
      if (quorum === undefined && needed !== undefined) answered.push(candidate);
      if (!localTaken) {
        localTaken = true;
        best = quorum?.local;
      }
      if (answer.value !== undefined) {
        candidate.value = answer.value;
        valued.push(candidate);
        if (quorum !== undefined) {
          // A value equal to the best is kept as the best's own array, so
          // that agreement is one comparison of references.
          if (best !== undefined && equalBytes(best, answer.value)) candidate.value = best;
          else {
            best = best === undefined ? answer.value : better(best, answer.value);
            if (best === answer.value) {
              for (const other of valued) {
                if (other.value !== best && equalBytes(other.value!, best)) other.value = best;
              }
            }
          }
        }
      }
      const path = paths[candidate.path]!;
      insertSorted(path.closest, candidate);
      if (path.closest.length > k) path.closest.pop();
      for (const peer of answer.closer) {
        const key = peerKey(peer.id);
        if (key === selfKey || seen.has(key)) continue;
        const named: Candidate = {
          peer,
          distance: xor(peerKadId(key, peer.id), target),
          path: candidate.path,
          state: "new",
        };
        seen.set(key, named);
        insertSorted(path.queue, named);
        options.onNewPeer?.(peer);
      }
    };

    // A value lookup does not ask a peer while enough closer peers, on
    // enough paths, agree with the best value or are still being asked:
    // its answer could not change the outcome unless one of them fails or
    // disagrees, and then the peer is asked. (A settling peer lookup holds
    // back a peer while enough closer peers answered or are being asked.)
    const deferred = (candidate: Candidate): boolean => {
      if (needed === undefined) return false;
      let count = 0;
      const pathsSeen = new Set<number>();
      for (const other of seen.values()) {
        if (compareDistance(other.distance, candidate.distance) >= 0) continue;
        const pending = other.state === "asking" && other.straggling !== true;
        if (!pending && !counting(other)) continue;
        count++;
        pathsSeen.add(other.path);
      }
      return count >= needed && pathsSeen.size >= Math.min(needed, pathsInUse);
    };

    // Sends the closest askable peer of any path with a free slot, again and
    // again: closest first across paths, so that the deferral above sees the
    // closer requests already on their way.
    const pump = (): void => {
      if (finished) return;
      while (true) {
        let from: Path | undefined;
        for (const path of paths) {
          if (path.active >= options.concurrency) continue;
          const head = path.queue[0];
          if (head === undefined || !canEnter(path, head.distance)) continue;
          if (from === undefined || compareDistance(head.distance, from.queue[0]!.distance) < 0) {
            from = path;
          }
        }
        // Farther peers than a deferred one are deferred too.
        if (from === undefined || deferred(from.queue[0]!)) break;
        send(from.queue.shift()!, from);
      }
      // Stragglers no longer hold the lookup back.
      let running = 0;
      for (const path of paths) running += path.active;
      if (running === 0) {
        const result = finish(agreed());
        if (result !== undefined) resolve(result);
      }
    };

    const send = (candidate: Candidate, path: Path): void => {
      candidate.state = "asking";
      path.active++;
      asked++;
      const request: Request = { candidate, path, since: Date.now(), straggling: false };
      inFlight.add(request);
      watchStragglers();
      let ask: Promise<LookupAnswer>;
      try {
        ask = options.ask(candidate.peer, askSignal);
      } catch (cause) {
        ask = Promise.reject(cause);
      }
      ask.then(
        (answer) => {
          if (finished) return;
          onAnswer(candidate, answer);
        },
        () => {
          if (finished) return;
          candidate.state = "failed";
          failed++;
        },
      ).finally(() => {
        inFlight.delete(request);
        if (!request.straggling) path.active--;
        if (finished) return;
        if (agreed()) {
          const result = finish(true);
          if (result !== undefined) resolve(result);
          return;
        }
        pump();
      });
    };

    pump();
  });
}
