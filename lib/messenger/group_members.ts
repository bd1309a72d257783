/**
 * A group's members as the messenger shows them: each marked "you",
 * "contact" or "group member, not a contact", and verified when this user
 * confirmed their safety number (a contact's as a contact's; a member who
 * is not a contact in the group store, sealed, by {@linkcode VerifiedMembers});
 * and a group found by ID, ID prefix or name.
 *
 * @module
 */
import { toHex } from "../platform/bytes.ts";
import type { GroupLog, GroupState } from "../group/membership.ts";
import type { GroupStore } from "../store/group_store.ts";
import { GroupError, type GroupInfo, NOT_A_CONTACT } from "./group_types.ts";

/** A member as the signed membership pins it. */
export type PinnedMember = GroupState["members"][number];

/** The members (not contacts) whose safety number this user confirmed, read once from the store. */
export class VerifiedMembers {
  readonly #store: GroupStore;
  #set: Set<string> | undefined;

  /** @param store The group store that keeps the list, sealed. */
  constructor(store: GroupStore) {
    this.#store = store;
  }

  #entries(): Set<string> {
    return this.#set ??= new Set(this.#store.verifiedMembers());
  }

  /**
   * Whether a member was verified with the key it has now.
   *
   * @param m The member.
   * @returns `true` if so.
   */
  has(m: PinnedMember): boolean {
    return this.#entries().has(entry(m));
  }

  /**
   * Marks a member verified (with the key it has now) and keeps the list.
   *
   * @param m The member.
   */
  add(m: PinnedMember): void {
    const set = this.#entries();
    if (set.has(entry(m))) return;
    this.#store.saveVerifiedMembers([...set, entry(m)]);
    set.add(entry(m));
  }
}

/** A verified member as kept: the user ID and the encryption key its safety number covered. */
function entry(m: PinnedMember): string {
  return `${m.id}:${toHex(m.encryptionPublicKey)}`;
}

/**
 * A group as the messenger shows it.
 *
 * @param groupId The group ID in hex.
 * @param s Its membership, or `undefined` for a group this user left.
 * @param selfId This user's ID.
 * @param contactOf A member's contact entry, if it is one.
 * @param verified The members verified who are not contacts.
 * @param left Whether this user left.
 * @returns The group.
 */
export function showGroup(
  groupId: string,
  s: GroupState | undefined,
  selfId: string,
  contactOf: (id: string) => { readonly name: string; readonly verified?: boolean } | undefined,
  verified: VerifiedMembers,
  left: boolean,
): GroupInfo {
  if (s === undefined) {
    return { id: groupId, name: "", members: [], admin: false, left: true, epoch: 0 };
  }
  return {
    id: groupId,
    name: s.name,
    epoch: s.epoch,
    admin: s.admins.includes(selfId),
    left,
    members: s.members.map((m) => {
      const contact = contactOf(m.id);
      const self = m.id === selfId;
      return {
        id: m.id,
        contact: contact?.name,
        verified: contact === undefined ? verified.has(m) : contact.verified ?? false,
        admin: s.admins.includes(m.id),
        self,
        label: self ? "you" : contact !== undefined ? "contact" : NOT_A_CONTACT,
      };
    }),
  };
}

/**
 * Finds a group by ID (or a unique prefix of it) or by name.
 *
 * @param logs The groups joined, by ID.
 * @param idOrName The group.
 * @returns Its ID.
 * @throws {GroupError} If there is no such group, or the name is ambiguous.
 */
export function resolveGroup(logs: ReadonlyMap<string, GroupLog>, idOrName: string): string {
  const ids = [...logs.keys()];
  const byId = ids.filter((id) => id.startsWith(idOrName.toLowerCase()));
  if (byId.length === 1) return byId[0]!;
  const byName = ids.filter((id) => logs.get(id)!.state().name === idOrName);
  if (byName.length === 1) return byName[0]!;
  throw new GroupError(
    byName.length > 1
      ? `Cannot find group ${idOrName}: several groups have that name; use its ID`
      : `Cannot find group ${idOrName}`,
  );
}
