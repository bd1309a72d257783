/**
 * Group membership as signed state: the set of signed changes
 * ({@link "./change.ts"}) that hash-link to their parents, and the rules
 * that turn that set into one membership, the same for every member
 * whatever order the changes arrived in.
 *
 * ## The rules
 *
 * 1. **One root.** A group is rooted at one create, which names the group ID,
 *    the name and the first members; its author is the first admin and must
 *    be among them. Every other change names 1 to 8 parents in the same
 *    group; a change whose parents are not all known is held
 *    ({@linkcode MAX_PENDING_CHANGES}, oldest dropped) until they arrive.
 * 2. **Deterministic order.** Changes are replayed ordered by depth (the
 *    longest path from the root), then by hash. Depth depends only on a
 *    change's ancestors, so the order of any causally closed subset is the
 *    global order restricted to it.
 * 3. **Authority in the causal past.** A change counts only if its author
 *    held the role it needs in the state of its own causal past (its
 *    ancestors): an admin for add, remove, rename, promote and demote; a
 *    member for leave. A change that fails this is refused when it arrives
 *    (a forged, non-admin, or removed member's change after its removal).
 * 4. **Revocation beats concurrency.** A change is void if a concurrent
 *    change (neither is an ancestor of the other) that satisfies rule 3
 *    removes, demotes or is the leave of its author. So an admin removed
 *    (or demoted) concurrently keeps only the changes its remover had seen,
 *    and a removed member cannot backdate a change by naming old parents:
 *    it is concurrent with its removal. Two admins who remove (or demote)
 *    each other concurrently both lose, and both stay; a third admin, or
 *    either one after seeing both, settles it.
 * 5. **Removal beats a concurrent add** of the same member: an add is void
 *    if a concurrent remove of the same user satisfies rule 3.
 * 6. **Replays are no-ops.** A change already held is ignored; an add of a
 *    member, or a remove of a non-member, at its turn in the replay changes
 *    nothing.
 * 7. **Epochs.** Every remove or leave that takes a member out starts a new
 *    epoch (the count of such changes): every remaining member then makes a
 *    new sender key ({@link "./sender_keys.ts"}). A group whose last admin
 *    left keeps its members but changes no more.
 *
 * The state of a set of changes is a function of the set alone, so members
 * who hold the same changes agree; changes travel to every member through
 * the pairwise sessions, and an admin sends a new member the whole set.
 *
 * @example Alice makes a group, adds Carol, removes Bob
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity } from "../crypto/identity.ts";
 * import { GroupLog } from "./membership.ts";
 *
 * const alice = await Identity.generate();
 * const bob = await Identity.generate();
 * const carol = await Identity.generate();
 * const { log } = await GroupLog.create(alice, { name: "hikers", members: [bob.public] });
 * await log.append(alice, { kind: "add", member: carol.public });
 * await log.append(alice, { kind: "remove", target: bob.signingPublicKey });
 * const state = log.state();
 * assert.deepEqual(state.members.map((m) => m.id).sort(), [alice.id, carol.id].sort());
 * assert.equal(state.epoch, 1);
 *
 * // Bob's copy, from the same changes in another order, agrees.
 * const copy = await GroupLog.open(log.changes()[0]!);
 * for (const bytes of log.changes().slice(1).reverse()) await copy.receive(bytes);
 * assert.deepEqual(copy.state(), state);
 * ```
 *
 * @module
 */
import { equalBytes, toHex } from "../platform/bytes.ts";
import { encodeUserId, type PublicIdentity } from "../crypto/identity.ts";
import {
  decodeChange,
  type GroupChange,
  type GroupMemberKeys,
  type GroupOp,
  type GroupSigner,
  InvalidGroupChangeError,
  membersOf,
  type NewMember,
  signChange,
  verifyChange,
} from "./change.ts";
import {
  GROUP_ID_LENGTH,
  MAX_CHANGE_PARENTS,
  MAX_GROUP_CHANGES,
  MAX_GROUP_MEMBERS,
  MAX_PENDING_CHANGES,
} from "./constants.ts";

export { InvalidGroupChangeError };
export type { GroupMemberKeys };

/** The membership of a group at one point: what every member computes alike. */
export interface GroupState {
  /** The group ID in hex. */
  readonly groupId: string;
  /** The group's name. */
  readonly name: string;
  /** The members, sorted by user ID. */
  readonly members: readonly GroupMemberKeys[];
  /** The admins' user IDs, sorted. */
  readonly admins: readonly string[];
  /** The number of removals and leaves so far: sender keys are per epoch. */
  readonly epoch: number;
  /** The changes no other change names as a parent, sorted: the parents of the next change. */
  readonly heads: readonly string[];
}

/** What {@linkcode GroupLog.receive} did with a change. */
export type ReceiveOutcome = "applied" | "duplicate" | "pending";

interface Mutable {
  name: string;
  members: Map<string, GroupMemberKeys>;
  admins: Set<string>;
  epoch: number;
}

function invalid(state: string): InvalidGroupChangeError {
  return new InvalidGroupChangeError(`Cannot accept group change: ${state}`);
}

/** Whether the author holds the role `c` needs in `s`, and `c`'s target makes sense there. */
function authorized(s: Mutable, c: GroupChange): boolean {
  const author = c.authorId;
  if (!s.members.has(author)) return false;
  const op = c.op;
  switch (op.kind) {
    case "create":
      return false;
    case "leave":
      return true;
    case "rename":
      return s.admins.has(author);
    case "add": {
      const [m] = membersOf(op);
      return s.admins.has(author) && !s.members.has(m!.id) && s.members.size < MAX_GROUP_MEMBERS;
    }
    case "remove":
    case "promote":
    case "demote": {
      if (!s.admins.has(author)) return false;
      const target = encodeUserId(op.target);
      if (op.kind === "remove") return target !== author && s.members.has(target);
      if (op.kind === "promote") return s.members.has(target) && !s.admins.has(target);
      return s.admins.has(target);
    }
  }
}

function targetId(op: GroupOp): string | undefined {
  if (op.kind === "remove" || op.kind === "promote" || op.kind === "demote") {
    return encodeUserId(op.target);
  }
  if (op.kind === "add") return membersOf(op)[0]!.id;
  return undefined;
}

/** Applies a change that counts; anything that no longer fits the state changes nothing. */
function apply(s: Mutable, c: GroupChange): void {
  const op = c.op;
  const target = targetId(op);
  switch (op.kind) {
    case "add":
      if (!s.members.has(target!) && s.members.size < MAX_GROUP_MEMBERS) {
        s.members.set(target!, membersOf(op)[0]!);
      }
      break;
    case "remove":
    case "leave": {
      const who = op.kind === "leave" ? c.authorId : target!;
      if (s.members.delete(who)) {
        s.admins.delete(who);
        s.epoch++;
      }
      break;
    }
    case "rename":
      s.name = op.name;
      break;
    case "promote":
      if (s.members.has(target!)) s.admins.add(target!);
      break;
    case "demote":
      s.admins.delete(target!);
      break;
    case "create":
      break;
  }
}

/**
 * The pure core: a set of changes, complete (every parent present) and
 * rooted at one create, and what follows from it.
 */
class ChangeGraph {
  readonly root: GroupChange;
  readonly #byHash = new Map<string, GroupChange>();
  readonly #depth = new Map<string, number>();
  readonly #ancestors = new Map<string, Set<string>>();
  readonly #validInPast = new Map<string, boolean>();

  constructor(root: GroupChange) {
    this.root = root;
    this.#add(root);
  }

  has(hash: string): boolean {
    return this.#byHash.has(hash);
  }

  get size(): number {
    return this.#byHash.size;
  }

  /** Adds a change whose parents are all present. */
  #add(c: GroupChange): void {
    const ancestors = new Set<string>();
    let depth = 0;
    for (const p of c.parents) {
      ancestors.add(p);
      for (const a of this.#ancestors.get(p)!) ancestors.add(a);
      depth = Math.max(depth, this.#depth.get(p)! + 1);
    }
    this.#byHash.set(c.hash, c);
    this.#ancestors.set(c.hash, ancestors);
    this.#depth.set(c.hash, depth);
  }

  /** Adds `c` if its author held its role in its causal past; else throws. */
  admit(c: GroupChange): void {
    this.#add(c);
    if (!this.validInPast(c)) {
      this.#byHash.delete(c.hash);
      this.#ancestors.delete(c.hash);
      this.#depth.delete(c.hash);
      this.#validInPast.delete(c.hash);
      throw invalid("its author does not hold the role it needs");
    }
  }

  #ordered(hashes: Iterable<string>): GroupChange[] {
    const list = [...hashes].map((h) => this.#byHash.get(h)!);
    return list.sort((a, b) =>
      this.#depth.get(a.hash)! - this.#depth.get(b.hash)! || (a.hash < b.hash ? -1 : 1)
    );
  }

  #concurrent(a: string, b: string): boolean {
    return a !== b && !this.#ancestors.get(a)!.has(b) && !this.#ancestors.get(b)!.has(a);
  }

  /** Rule 3, memoized: a change's past never changes. */
  validInPast(c: GroupChange): boolean {
    let valid = this.#validInPast.get(c.hash);
    if (valid === undefined) {
      valid = c === this.root || authorized(this.#replay(this.#ancestors.get(c.hash)!), c);
      this.#validInPast.set(c.hash, valid);
    }
    return valid;
  }

  /** Rules 4 and 5 within `set`. */
  #voided(c: GroupChange, set: ReadonlySet<string>, revocations: readonly GroupChange[]): boolean {
    const addTarget = c.op.kind === "add" ? targetId(c.op) : undefined;
    for (const r of revocations) {
      if (!set.has(r.hash) || !this.#concurrent(r.hash, c.hash)) continue;
      const revoked = r.op.kind === "leave" ? r.authorId : targetId(r.op);
      if (revoked === c.authorId && c.op.kind !== "leave") return true;
      if (addTarget !== undefined && r.op.kind === "remove" && revoked === addTarget) return true;
    }
    return false;
  }

  /** The state of a causally closed set of changes (the root always included). */
  #replay(set: ReadonlySet<string>): Mutable {
    const root = this.root.op as GroupOp & { kind: "create" };
    const s: Mutable = {
      name: root.name,
      members: new Map(membersOf(root).map((m) => [m.id, m])),
      admins: new Set([this.root.authorId]),
      epoch: 0,
    };
    const all = new Set(set);
    all.delete(this.root.hash);
    const ordered = this.#ordered(all);
    const revocations = ordered.filter((r) =>
      (r.op.kind === "remove" || r.op.kind === "demote" || r.op.kind === "leave") &&
      this.validInPast(r)
    );
    for (const c of ordered) {
      if (!this.validInPast(c) || this.#voided(c, all, revocations)) continue;
      apply(s, c);
    }
    return s;
  }

  /** The state of the whole set. */
  state(): GroupState {
    const s = this.#replay(new Set(this.#byHash.keys()));
    const named = new Set<string>();
    for (const c of this.#byHash.values()) for (const p of c.parents) named.add(p);
    return {
      groupId: toHex(this.root.groupId),
      name: s.name,
      members: [...s.members.values()].sort((a, b) => (a.id < b.id ? -1 : 1)),
      admins: [...s.admins].sort(),
      epoch: s.epoch,
      heads: [...this.#byHash.keys()].filter((h) => !named.has(h)).sort(),
    };
  }

  /** Every change, in replay order. */
  changes(): GroupChange[] {
    return this.#ordered(this.#byHash.keys());
  }
}

/** What {@linkcode GroupLog.create} takes. */
export interface CreateGroupOptions {
  /** The group's name, 1 to 100 UTF-8 bytes. */
  readonly name: string;
  /** The first members besides the creator (with their pinned keys). */
  readonly members: readonly NewMember[];
  /** The group ID. Default: 16 random bytes. */
  readonly groupId?: Uint8Array;
  /** The create's timestamp. Default: `Date.now()`. */
  readonly timestamp?: number;
}

/**
 * The changes of one group that a member holds, and the membership they
 * give. Not thread-safe across awaits: call one method at a time.
 */
export class GroupLog {
  readonly #graph: ChangeGraph;
  // Changes waiting for a parent, oldest first.
  readonly #pending = new Map<string, GroupChange>();
  #state: GroupState | undefined;

  private constructor(graph: ChangeGraph) {
    this.#graph = graph;
  }

  /**
   * Makes a new group whose creator (and only admin) is `creator`.
   *
   * @param creator The creator's identity (its public keys are pinned as a member).
   * @param options The name and first members.
   * @returns The log and the encoded create, to send to the members.
   * @throws {RangeError} If the name or member list is out of bounds.
   */
  static async create(
    creator: GroupSigner & Pick<PublicIdentity, "encryptionPublicKey">,
    options: CreateGroupOptions,
  ): Promise<{ log: GroupLog; change: Uint8Array }> {
    const groupId = options.groupId ??
      crypto.getRandomValues(new Uint8Array(GROUP_ID_LENGTH));
    const others = options.members.filter((m) =>
      !equalBytes(m.signingPublicKey, creator.signingPublicKey)
    );
    const change = await signChange(creator, {
      groupId,
      parents: [],
      op: {
        kind: "create",
        name: options.name,
        members: [
          {
            signingPublicKey: creator.signingPublicKey,
            encryptionPublicKey: creator.encryptionPublicKey,
          },
          ...others,
        ],
      },
      ...(options.timestamp === undefined ? {} : { timestamp: options.timestamp }),
    });
    return { log: await GroupLog.open(change), change };
  }

  /**
   * Opens a group from its create (as an invited member does, before the
   * rest of the changes).
   *
   * @param create The encoded create.
   * @returns The log.
   * @throws {InvalidGroupChangeError} If it is not a well-signed create whose
   *   author is among its members.
   */
  static async open(create: Uint8Array): Promise<GroupLog> {
    const root = decodeChange(create);
    if (root.op.kind !== "create") throw invalid("a group starts with a create");
    if (!(await verifyChange(root))) throw invalid("the signature is not valid");
    if (!membersOf(root.op).some((m) => m.id === root.authorId)) {
      throw invalid("the creator is not a member");
    }
    return new GroupLog(new ChangeGraph(root));
  }

  /** The 16-byte group ID. */
  get groupId(): Uint8Array {
    return new Uint8Array(this.#graph.root.groupId);
  }

  /** How many changes wait for a parent. */
  get pendingCount(): number {
    return this.#pending.size;
  }

  /**
   * The membership the held changes give.
   *
   * @returns The state (computed once per change set).
   */
  state(): GroupState {
    this.#state ??= this.#graph.state();
    return this.#state;
  }

  /**
   * Every held change, encoded, in replay order (the create first): what an
   * admin sends a new member, and what storage keeps.
   *
   * @returns The encoded changes.
   */
  changes(): Uint8Array[] {
    return this.#graph.changes().map((c) => c.bytes);
  }

  /**
   * Takes one change from another member.
   *
   * @param bytes The encoded change.
   * @returns `"applied"`, `"duplicate"` (already held: a replay) or
   *   `"pending"` (held until a parent arrives).
   * @throws {InvalidGroupChangeError} If it is malformed, of another group, a
   *   second create, badly signed, or its author did not hold the role it
   *   needs in its causal past, or the group is full of changes.
   */
  async receive(bytes: Uint8Array): Promise<ReceiveOutcome> {
    const c = decodeChange(bytes);
    if (!equalBytes(c.groupId, this.#graph.root.groupId)) throw invalid("it is for another group");
    if (this.#graph.has(c.hash) || this.#pending.has(c.hash)) return "duplicate";
    if (c.op.kind === "create") throw invalid("the group has a create already");
    if (!(await verifyChange(c))) throw invalid("the signature is not valid");
    if (!c.parents.every((p) => this.#graph.has(p))) {
      this.#pending.set(c.hash, c);
      if (this.#pending.size > MAX_PENDING_CHANGES) {
        this.#pending.delete(this.#pending.keys().next().value!);
      }
      return "pending";
    }
    this.#admit(c);
    this.#drainPending();
    return "applied";
  }

  #admit(c: GroupChange): void {
    if (this.#graph.size >= MAX_GROUP_CHANGES) throw invalid("the group has too many changes");
    this.#graph.admit(c);
    this.#state = undefined;
  }

  #drainPending(): void {
    let progress = true;
    while (progress) {
      progress = false;
      for (const [hash, c] of this.#pending) {
        if (!c.parents.every((p) => this.#graph.has(p))) continue;
        this.#pending.delete(hash);
        try {
          this.#admit(c);
        } catch {
          // Refused like any other: it never counts.
        }
        progress = true;
      }
    }
  }

  /**
   * Makes, signs and applies a change by `author`, naming the current heads
   * (up to {@linkcode MAX_CHANGE_PARENTS}) as its parents.
   *
   * @param author The author (an admin, or any member to leave).
   * @param op What to change; not a create.
   * @param options `timestamp`: default `Date.now()`.
   * @returns The encoded change, to send to every member (and, for an add,
   *   every change to the new member).
   * @throws {InvalidGroupChangeError} If the author does not hold the role it
   *   needs, or the change makes no sense (adding a member, removing a
   *   non-member).
   */
  async append(
    author: GroupSigner,
    op: Exclude<GroupOp, { kind: "create" }>,
    options: { readonly timestamp?: number } = {},
  ): Promise<Uint8Array> {
    const parents = this.state().heads.slice(0, MAX_CHANGE_PARENTS);
    const bytes = await signChange(author, {
      groupId: this.#graph.root.groupId,
      parents,
      op,
      ...(options.timestamp === undefined ? {} : { timestamp: options.timestamp }),
    });
    this.#admit(decodeChange(bytes));
    return bytes;
  }
}
