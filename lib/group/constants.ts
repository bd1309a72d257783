/**
 * The limits and labels of group chats, each with the reason for its value.
 *
 * @module
 */

/** Length of a group ID: 16 random bytes chosen by the group's creator. */
export const GROUP_ID_LENGTH = 16;

/**
 * The most members a group has: 100. A fan-out to 100 mailboxes of the
 * largest group message ({@linkcode MAX_GROUP_WRAP_LENGTH}) is 1.6 MiB, and
 * 100 copies of a text message are far inside the 20,000 envelopes and
 * 64 MiB one storing address may keep on a node (`MAILBOX_ORIGIN_MAX_COUNT`,
 * `MAILBOX_ORIGIN_MAX_BYTES` in lib/messaging/constants.ts).
 */
export const MAX_GROUP_MEMBERS = 100;

/** The longest group name in UTF-8 bytes. */
export const MAX_GROUP_NAME_LENGTH = 100;

/**
 * The most parents one membership change names: 8. An author names every
 * head it knows, up to 8; a later change merges any others.
 */
export const MAX_CHANGE_PARENTS = 8;

/**
 * The most membership changes one group keeps: 500. Computing the state
 * replays each change's causal past once (quadratic in the changes), which
 * takes well under a second at 500; a group that reaches it needs a new
 * group (or, later, a signed snapshot that compacts the history).
 */
export const MAX_GROUP_CHANGES = 500;

/**
 * The most changes held while one of their parents is missing: 64. They are
 * signature-checked before they are held, and the oldest goes first.
 */
export const MAX_PENDING_CHANGES = 64;

/**
 * The largest encoded membership change: a create naming 100 members (64
 * bytes each) with its header, name, parents and signature.
 */
export const MAX_CHANGE_LENGTH: number = 1 + GROUP_ID_LENGTH + 1 + 32 + 8 + 1 +
  32 * MAX_CHANGE_PARENTS + 2 + 1 + MAX_GROUP_NAME_LENGTH + 1 + 64 * MAX_GROUP_MEMBERS + 64;

/**
 * The largest body of a group message: 15 KiB, so that a whole per-member
 * wrap stays within 16 KiB ({@linkcode MAX_GROUP_WRAP_LENGTH}). Text fits
 * many times over; files for groups will go in parts, as files for later do.
 */
export const MAX_GROUP_BODY_LENGTH: number = 15 * 1024;

/**
 * The largest per-member wrap: 16 KiB, which mailbox nodes hash on the
 * calling thread (`SMALL_ENVELOPE_LENGTH`) and of which a node holding all
 * 100 mailboxes of a group keeps 40 fan-outs within one address's 64 MiB.
 */
export const MAX_GROUP_WRAP_LENGTH: number = 16 * 1024;

/** The most message keys a sender chain skips in one step (Signal's MAX_SKIP). */
export const MAX_GROUP_SKIP = 1000;

/** The most skipped message keys kept per receiving chain; the oldest go first. */
export const MAX_GROUP_SKIPPED_KEYS = 2000;

/**
 * How long the key of a skipped group message is kept: 30 days, as for a
 * session's skipped keys (`SKIPPED_KEY_MAX_AGE_MS`), longer than a message
 * waits in a mailbox.
 */
export const GROUP_SKIPPED_KEY_MAX_AGE_MS: number = 30 * 24 * 3600 * 1000;

/**
 * How long after a member moved to a new epoch it still reads messages of
 * the previous epochs: 7 days, the time a message waits in a mailbox
 * (`DEFAULT_MAILBOX_TTL_MS`), so that a member who was offline when the
 * removal was made and kept writing is still read. After it the old
 * chains are deleted.
 */
export const GROUP_EPOCH_GRACE_MS: number = 7 * 24 * 3600 * 1000;

/**
 * The signature domain of membership changes. Every signed byte string
 * starts with a label of its own ("DIM-v1 group change\0", whose first byte
 * is never a record's version byte), so a change never verifies as a
 * record, nor a record as a change. A "group" domain in identity.ts would
 * make that separation the domain's job; see the README's Groups section.
 */
export const GROUP_SIGNATURE_DOMAIN = "record" as const;

/**
 * Content types (the ratchet plaintext's first byte, in the messaging
 * layer's control range 0x40 to 0x7f) of what travels inside the pairwise
 * sessions: a membership change, and a sender-key distribution. Proposed
 * values: they belong in lib/messaging/constants.ts once groups are wired in.
 */
export const GroupContentType = {
  /** An encoded membership change. */
  Change: 0x43,
  /** An encoded sender-key distribution (`sender_keys.ts`). */
  SenderKey: 0x44,
  /** A group message in a static envelope: the fallback wrap (`wire.ts`). */
  EnvelopedMessage: 0x82,
} as const;
