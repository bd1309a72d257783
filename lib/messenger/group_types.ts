/**
 * What the messenger's group chats show and need: a group and its members
 * as shown, the calls beyond `Messenger`'s own, and what
 * `MessengerGroups` takes from the messenger.
 *
 * @module
 */
import type { Identity } from "../crypto/identity.ts";
import { DimError } from "../errors.ts";
import {
  GROUP_CHANGE_CONTENT_TYPE,
  GROUP_MESSAGE_CONTENT_TYPE,
  type MessagingService,
  SENDER_KEY_CONTENT_TYPE,
} from "../messaging/mod.ts";
import type { ChatMessage } from "../profile/chat_message.ts";
import type { ContactBook } from "../profile/contacts.ts";
import type { GroupDelivery } from "../store/group_store.ts";
import type { UserStore } from "../store/user_store.ts";

/** The label of a member who is not one of this user's contacts. */
export const NOT_A_CONTACT = "group member, not a contact";

/** A group's member as the messenger shows it. */
export interface GroupMember {
  /** The user ID. */
  readonly id: string;
  /** The contact's local name, if the member is a contact. */
  readonly contact: string | undefined;
  /** Whether the member's safety number was confirmed (as a contact's, or as a member's). */
  readonly verified: boolean;
  /** Whether the member is an admin. */
  readonly admin: boolean;
  /** Whether the member is this user. */
  readonly self: boolean;
  /** `"you"`, `"contact"`, or {@linkcode NOT_A_CONTACT}. */
  readonly label: string;
}

/** A member and the safety number to compare with theirs. */
export interface VerifiedMember extends GroupMember {
  /** 60 digits in 12 groups, as a contact's. */
  readonly safetyNumber: string;
}

/** A group as the messenger shows it. */
export interface GroupInfo {
  /** The group ID in hex. */
  readonly id: string;
  /** The name. */
  readonly name: string;
  /** The members, sorted by user ID. */
  readonly members: readonly GroupMember[];
  /** Whether this user is an admin. */
  readonly admin: boolean;
  /** Whether this user left or was removed (the history stays). */
  readonly left: boolean;
  /** The membership epoch: sender keys rotate when it changes. */
  readonly epoch: number;
}

/** A group or a member was not found, or the user may not do what was asked. */
export class GroupError extends DimError {}

/** The group calls beyond `Messenger`'s own: promotion, deliveries per member, safety numbers. */
export interface GroupChats {
  /**
   * Makes a member an admin (this user must be one).
   *
   * @param group The group's ID or name.
   * @param member The member's user ID or contact name.
   * @returns The group.
   */
  promote(group: string, member: string): Promise<GroupInfo>;
  /**
   * How far a sent group message got, member by member.
   *
   * @param seq The message's sequence number in the group history.
   * @returns One entry per member it was sent to.
   */
  deliveries(seq: number): GroupDelivery[];
  /**
   * A member's safety number, to compare with theirs as with a contact's.
   *
   * @param group The group's ID or name.
   * @param memberId The member's user ID.
   * @returns 60 digits in 12 groups.
   */
  safetyNumber(group: string, memberId: string): Promise<string>;
  /**
   * A member's safety number and, with `confirm`, marks the member verified
   * (a contact as a contact; a member who is not one in the group store,
   * sealed): `dim group verify`.
   *
   * @param group The group's ID or name.
   * @param member The member's user ID or contact name.
   * @param options `confirm`: the numbers matched.
   * @returns The member, and the safety number.
   */
  verifyMember(
    group: string,
    member: string,
    options?: { readonly confirm?: boolean },
  ): Promise<VerifiedMember>;
  /**
   * Settles once every group change, key and message received so far is
   * handled (they are handled in order, after the pairwise message is stored).
   *
   * @returns When they are.
   */
  settled(): Promise<void>;
}

/** What {@linkcode MessengerGroups} needs of the messenger. */
export interface GroupDeps {
  /** The unlocked identity. */
  readonly identity: () => Identity;
  /** The user's database. */
  readonly store: UserStore;
  /** The contact book. */
  readonly book: ContactBook;
  /** The messaging service (pairwise sends, and wraps queued as envelopes). */
  readonly service: Pick<MessagingService, "send" | "sendWrapped">;
  /** Clock in ms. */
  readonly clock: () => number;
  /** Called with each new group message received. */
  readonly onMessage: (m: ChatMessage) => void;
}

/** The content types of the carriers of group changes, keys and messages. */
export const GROUP_TYPES: readonly number[] = [
  GROUP_CHANGE_CONTENT_TYPE,
  SENDER_KEY_CONTENT_TYPE,
  GROUP_MESSAGE_CONTENT_TYPE,
];
/** Distributions held per group while their sender is not yet a member here. */
export const MAX_EARLY_DISTRIBUTIONS = 16;
/** Groups whose create arrived but whose add of this user has not yet: the newest few. */
export const MAX_JOINING = 16;
