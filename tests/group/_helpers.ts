/**
 * Shared pieces of the group tests: identities, copies of a group log, and
 * keyrings that have exchanged their distributions.
 *
 * @module
 */
import { Identity } from "../../lib/crypto/identity.ts";
import { GroupKeyring } from "../../lib/group/keyring.ts";
import { GroupLog, type GroupState } from "../../lib/group/membership.ts";

/** `n` fresh identities. */
export function identities(n: number): Promise<Identity[]> {
  return Promise.all(Array.from({ length: n }, () => Identity.generate()));
}

/** Another member's copy of a log: the create, then every other change (newest first). */
export async function copyOf(log: GroupLog): Promise<GroupLog> {
  const [create, ...rest] = log.changes();
  const copy = await GroupLog.open(create!);
  for (const bytes of rest.reverse()) await copy.receive(bytes);
  return copy;
}

/** A keyring per member, each having rotated and sent its distribution to every other. */
export async function keyrings(
  state: GroupState,
  people: readonly Identity[],
  groupId: Uint8Array,
  now = Date.now(),
): Promise<Map<string, GroupKeyring>> {
  const rings = new Map(people.map((p) => [p.id, new GroupKeyring(groupId, p.signingPublicKey)]));
  await distribute(state, people, rings, now);
  return rings;
}

/** Each member in `state` rotates and hands its distribution to every other member in it. */
export async function distribute(
  state: GroupState,
  people: readonly Identity[],
  rings: Map<string, GroupKeyring>,
  now = Date.now(),
): Promise<void> {
  const byId = new Map(people.map((p) => [p.id, p]));
  for (const m of state.members) {
    const { distribution, recipients } = await rings.get(m.id)!.rotate(state, { now });
    for (const r of recipients) {
      rings.get(r)!.acceptDistribution(state, byId.get(m.id)!.signingPublicKey, distribution, {
        now,
      });
    }
  }
}

/** Every permutation of `items` (use with a handful only). */
export function permutations<T>(items: readonly T[]): T[][] {
  if (items.length <= 1) return [items.slice()];
  const out: T[][] = [];
  items.forEach((item, i) => {
    for (const rest of permutations([...items.slice(0, i), ...items.slice(i + 1)])) {
      out.push([item, ...rest]);
    }
  });
  return out;
}
