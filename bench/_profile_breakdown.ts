/**
 * Sorts the samples of a V8 CPU profile (`Profiler.stop`, or a
 * `.cpuprofile` file) by what the JavaScript thread was doing: SQLite,
 * WebCrypto calls, hashing, libp2p, Deno's runtime, DIM's own code, garbage
 * collection, idle. A native function (a SQLite statement, a socket write)
 * has no source of its own and counts for the nearest caller that has one;
 * `node:crypto` counts for whoever called it (Noise's cipher, or DIM's file
 * hash). Used by `bench/profile.ts`.
 *
 * @example Two samples: a SQLite commit called from DIM's store, and idle time
 * ```ts
 * import assert from "node:assert/strict";
 * import { breakdown } from "./_profile_breakdown.ts";
 *
 * const frame = (functionName: string, url: string) => ({ functionName, url });
 * const ms = breakdown({
 *   nodes: [
 *     { id: 1, callFrame: frame("(root)", ""), children: [2, 4] },
 *     { id: 2, callFrame: frame("transaction", "file:///x/lib/store/connection.ts"), children: [3] },
 *     { id: 3, callFrame: frame("exec", "") },
 *     { id: 4, callFrame: frame("(idle)", "") },
 *   ],
 *   samples: [3, 4, 3],
 *   timeDeltas: [500, 1000, 250],
 * });
 * assert.equal(ms.get("SQLite (statements, commits, waits for flushes)"), 0.75);
 * assert.equal(ms.get("idle"), 1);
 * ```
 *
 * @module
 */

/** One function of the profile's call tree. */
export interface CpuProfileNode {
  readonly id: number;
  readonly callFrame: { readonly functionName: string; readonly url: string };
  readonly children?: readonly number[];
}

/** A V8 CPU profile: the call tree, and which node each sample was in. */
export interface CpuProfile {
  readonly nodes: readonly CpuProfileNode[];
  readonly samples: readonly number[];
  /** Microseconds since the sample before. */
  readonly timeDeltas: readonly number[];
}

/** What a sampled frame was doing, by the nearest frame that has a source. */
function category(url: string, name: string): string | undefined {
  if (url === "") {
    if (name === "(idle)") return "idle";
    if (name === "(garbage collector)") return "garbage collection";
    if (name === "(program)") return "V8 and the runtime, outside JavaScript";
    return undefined;
  }
  if (url.includes("/lib/store/")) return "SQLite (statements, commits, waits for flushes)";
  if (url.startsWith("ext:deno_crypto")) return "WebCrypto calls (hand-off and back)";
  if (url.includes("/@noble/")) return "hashes in JavaScript (@noble/hashes)";
  if (url.startsWith("ext:deno_node/internal/crypto") || url.startsWith("node:crypto")) {
    return NODE_CRYPTO;
  }
  if (url.includes("registry.npmjs.org")) return "libp2p (TCP, Noise, Yamux) and its npm code";
  if (url.startsWith("ext:deno_node")) return "Node compatibility (sockets, streams, Buffer)";
  if (url.startsWith("ext:")) return "Deno core (promises, events, timers, web streams)";
  if (url.includes("/lib/")) return "DIM's own JavaScript";
  return "the bench's own code";
}
/** Native hashing and ciphers: Noise's ChaCha20-Poly1305, and DIM's AES-GCM, Ed25519 and SHA-256. */
const NODE_CRYPTO = "node:crypto";

/** Milliseconds of the JavaScript thread by category. */
export function breakdown(profile: CpuProfile): Map<string, number> {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const memo = new Map<number, string>();
  const categoryOf = (id: number): string => {
    const known = memo.get(id);
    if (known !== undefined) return known;
    let found: string | undefined;
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const { url, functionName } = byId.get(at)!.callFrame;
      const here = category(url, functionName);
      if (here === undefined || here.startsWith("Node compatibility") && found === NODE_CRYPTO) {
        continue;
      }
      if (found === undefined) {
        found = here;
        // node:crypto counts for whoever called it: Noise, or DIM's file hash.
        if (here === NODE_CRYPTO) continue;
        break;
      }
      if (here === NODE_CRYPTO) continue;
      found = here.startsWith("libp2p")
        ? "node:crypto for Noise (ChaCha20-Poly1305)"
        : "node:crypto for DIM (AES-GCM, Ed25519, SHA-256)";
      break;
    }
    const result = found ?? "other";
    memo.set(id, result);
    return result;
  };
  const ms = new Map<string, number>();
  profile.samples.forEach((id, i) => {
    const c = categoryOf(id);
    ms.set(c, (ms.get(c) ?? 0) + (profile.timeDeltas[i] ?? 0) / 1000);
  });
  return ms;
}
