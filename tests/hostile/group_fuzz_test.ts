/**
 * A fuzzer of the group wire formats, in process: mutated and random
 * membership changes, sender-key distributions, group messages and
 * per-member wraps (bit flips, truncations, insertions, trailing bytes,
 * splices). Every input is refused with the format's one error class or
 * read as what it is, the membership never changes on a refused input, and
 * a real message still reads after the storm.
 */
import assert from "node:assert/strict";
import { concat } from "../../lib/platform/bytes.ts";
import { DecryptionError } from "../../lib/errors.ts";
import { GroupLog, InvalidGroupChangeError } from "../../lib/group/membership.ts";
import { decodeDistribution } from "../../lib/group/sender_keys.ts";
import { openWrap } from "../../lib/group/wire.ts";
import { identities, keyrings } from "../group/_helpers.ts";
import { figure, Random, size, watchRejections } from "./_support.ts";

const INPUTS = size(3_000, 50_000);

type Mutator = (b: Uint8Array, r: Random) => Uint8Array;
const MUTATORS: Mutator[] = [
  (b, r) => {
    const out = b.slice();
    for (let n = 1 + r.int(6); n > 0; n--) out[r.int(out.length)]! ^= 1 << r.int(8);
    return out;
  },
  (b, r) => b.slice(0, r.int(b.length)),
  (b, r) => concat(b, r.bytes(1 + r.int(32))),
  (b, r) => {
    const at = r.int(b.length + 1);
    return concat(b.subarray(0, at), r.bytes(1 + r.int(16)), b.subarray(at));
  },
  (b, r) => {
    const out = b.slice();
    out[r.pick([0, 17, 18, 50, 58])] = r.int(256);
    return out;
  },
  (_b, r) => r.bytes(r.int(2000)),
  (b, r) => concat(b.subarray(0, r.int(b.length)), r.bytes(r.int(64)), b.subarray(r.int(b.length))),
];

Deno.test("fuzzed group changes, distributions, messages and wraps are refused cleanly", async () => {
  using _watch = watchRejections();
  const rnd = new Random();
  const [alice, bob, carol] = await identities(3);
  const { log } = await GroupLog.create(alice!, {
    name: "g",
    members: [bob!.public, carol!.public],
  });
  await log.append(alice!, { kind: "promote", target: bob!.signingPublicKey });
  await log.append(alice!, { kind: "rename", name: "fuzz" });
  const changes = log.changes();
  const bobLog = await GroupLog.open(changes[0]!);
  for (const c of changes.slice(1)) await bobLog.receive(c);
  const state = bobLog.state();
  const rings = await keyrings(state, [alice!, bob!, carol!], log.groupId);
  const alices = rings.get(alice!.id)!;
  const bobs = rings.get(bob!.id)!;
  const sample = await alices.encrypt(state, { body: new Uint8Array(200).fill(1) });
  const wrap = sample.wraps.get(bob!.id)!;
  const dist = (await alices.rotate(state)).distribution;

  const outcomes: Record<string, number> = {};
  const count = (k: string) => (outcomes[k] = (outcomes[k] ?? 0) + 1);
  for (let i = 0; i < INPUTS; i++) {
    const mutate = rnd.pick(MUTATORS);
    switch (i % 4) {
      case 0: {
        const input = mutate(rnd.pick(changes), rnd);
        try {
          count(`change:${await bobLog.receive(input)}`);
        } catch (e) {
          assert(e instanceof InvalidGroupChangeError, String(e));
          count("change:refused");
        }
        break;
      }
      case 1:
        try {
          decodeDistribution(mutate(dist, rnd));
          count("distribution:decoded");
        } catch (e) {
          assert(e instanceof SyntaxError, String(e));
          count("distribution:refused");
        }
        break;
      case 2:
        try {
          await bobs.receive(state, mutate(sample.message, rnd), { unwrapped: true });
          count("message:read");
        } catch (e) {
          assert(e instanceof DecryptionError, String(e));
          count("message:refused");
        }
        break;
      case 3: {
        const input = mutate(wrap, rnd);
        try {
          const opened = openWrap(bobs.inboxKeys, input);
          count(opened === undefined ? "wrap:not-ours" : "wrap:opened");
        } catch (e) {
          assert(e instanceof DecryptionError, String(e));
          count("wrap:refused");
        }
        break;
      }
    }
  }
  // Nothing refused changed the membership; a real message still reads.
  assert.deepEqual(bobLog.state().members, state.members);
  assert.deepEqual(bobLog.state().admins, state.admins);
  const real = await alices.encrypt(state, { body: new TextEncoder().encode("still fine") });
  const got = await bobs.receive(state, real.wraps.get(bob!.id)!);
  assert.equal(new TextDecoder().decode(got.plaintext.body), "still fine");
  figure("group-fuzz", { inputs: INPUTS, seed: rnd.seed, ...outcomes });
});
