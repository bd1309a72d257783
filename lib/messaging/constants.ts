/**
 * The tunables of DIM's messaging layer, with their defaults, in one place:
 * the framing every stream protocol shares, file transfer
 * (`/dim/file/1.0.0`), sending and receiving messages (`/dim/msg/1.0.0`:
 * the outbox, the inbox), the network mailboxes (`/dim/mbox/2.0.0`: the
 * mailbox client and server) and the forward-secret sessions.
 *
 * Sizes are in bytes, times in milliseconds. Options of `sendFile`,
 * `FileReceiver`, `MessagingService` and `MailboxServer` override the ones
 * that are per transfer, per service or per server; the rest are fixed here.
 * The limits a wire format sets (field widths, a file name's 255 bytes, the
 * items of one FETCH or DELETE) are not tunables and stay with their format.
 *
 * @example Read a default
 * ```ts
 * import assert from "node:assert/strict";
 * import { DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE } from "./constants.ts";
 *
 * assert(DEFAULT_CHUNK_SIZE <= MAX_CHUNK_SIZE);
 * ```
 *
 * @module
 */
import { CLOCK_SKEW_TOLERANCE_MS } from "../record/record.ts";

// --- Framing -----------------------------------------------------------------

/**
 * The largest frame `/dim/msg/1.0.0` and `/dim/mbox/2.0.0` accept: 1 MiB,
 * type byte included. The largest frame they carry is a mailbox answer
 * (ITEMS) of up to 1000 envelopes, which the server cuts to fit; a reader
 * refuses a longer length prefix before it buffers a byte of the body, so a
 * hostile peer costs a receiver four bytes, not a megabyte.
 */
export const MAX_FRAME_LENGTH = 1024 * 1024;

/**
 * Frame bodies up to this length (1 KiB) are copied behind their 5-byte
 * header and sent as one piece: one `send` (one muxer frame) is cheaper than
 * two for small frames. A longer body is sent as it is after a separate
 * header, so a 1 MiB file chunk is never copied to be framed.
 */
export const INLINE_BODY_LENGTH = 1024;

// --- File transfer -----------------------------------------------------------

/**
 * The chunk size a sender uses unless told otherwise: 1 MiB. On loopback
 * (bench/transfer_bench.ts) 256 KiB chunks are about 15% slower and 64 KiB
 * chunks 40%, paying the per-chunk costs (an AES-GCM call, a frame, a
 * credit) more often. A recipient's window is counted in bytes
 * ({@linkcode DEFAULT_WINDOW_BYTES}), so bigger chunks do not make it hold
 * more.
 */
export const DEFAULT_CHUNK_SIZE: number = 1024 * 1024;

/**
 * The smallest chunk size a recipient accepts: 4 KiB. Every chunk costs the
 * recipient a frame, an AES-GCM call, a sink write and a credit, so a tiny
 * chunk size would let a sender make it do that work for every few bytes.
 */
export const MIN_CHUNK_SIZE: number = 4 * 1024;

/**
 * The largest chunk size this module handles at all: 4 MiB. It bounds the
 * largest frame a reader of `/dim/file/1.0.0` ever buffers (the chunk, its
 * 16-byte tag and the type byte), whatever a recipient's own limit.
 */
export const MAX_CHUNK_SIZE: number = 4 * 1024 * 1024;

/**
 * The largest chunk size a recipient accepts unless told otherwise: 1 MiB,
 * the default chunk size, so a default sender is always accepted and one
 * frame in memory is at most about 1 MiB.
 */
export const DEFAULT_MAX_CHUNK_SIZE: number = 1024 * 1024;

/**
 * The largest file a recipient accepts unless told otherwise: 4 GiB. Enough
 * for photos, documents and most videos; a recipient refuses a larger offer
 * before a single chunk arrives, and its `accept` policy sees the size of
 * the rest.
 */
export const DEFAULT_MAX_FILE_SIZE: number = 4 * 1024 * 1024 * 1024;

/**
 * Chunk bytes a recipient lets a sender have in flight (sent, not yet
 * credited), unless told a window in chunks: 2 MiB, two default chunks, so
 * one chunk is on the wire while the one before is written to the sink.
 * It bounds what a recipient buffers per transfer whatever the
 * transport's own windows.
 */
export const DEFAULT_WINDOW_BYTES = 2 * 1024 * 1024;

/**
 * The fewest chunks that window comes to, for chunks over half of
 * {@linkcode DEFAULT_WINDOW_BYTES}: with fewer than two, a sender would wait
 * for every chunk's credit before sending the next.
 */
export const MIN_DEFAULT_WINDOW = 2;

/**
 * The most chunks that window comes to, for small chunks: 64, so credits
 * (one frame per chunk) stay a small part of the traffic.
 */
export const MAX_DEFAULT_WINDOW = 64;

/**
 * Transfers a recipient serves at once unless told otherwise: 8. Each holds
 * up to its window in memory, so this bounds a receiver's buffers to about
 * 8 × 2 MiB; a sender over the limit is refused as busy and may try again.
 */
export const DEFAULT_MAX_CONCURRENT_TRANSFERS = 8;

/**
 * The longest wait for an offer to be accepted or refused: 2 minutes. The
 * recipient's policy may ask a person, who needs time to read and answer.
 */
export const DEFAULT_ACCEPT_TIMEOUT_MS = 120_000;

/**
 * The longest silence from the other side once a transfer runs: 30 s.
 * Every chunk and every credit resets it; a live peer writing to a slow
 * disk answers far more often, and one that stays silent this long has
 * gone, so its transfer (and the window it holds) is given up.
 */
export const DEFAULT_IDLE_TIMEOUT_MS = 30_000;

/**
 * Chunks a sender seals ahead of the one it is sending: 2. Sealing
 * (AES-GCM, on WebCrypto's thread) then overlaps the send of the chunk
 * before; more only hold more chunks in memory.
 */
export const SEAL_AHEAD = 2;

// --- Sending: the outbox ------------------------------------------------------

/**
 * Time allowed for one delivery attempt (dial, send, acknowledgement), and
 * for each other call to one peer (a mailbox request, a prekey lookup): 5 s.
 * A live peer on a slow link answers well within it; a dead one costs a
 * sender no more than this before the message goes to the mailbox.
 */
export const DEFAULT_ATTEMPT_TIMEOUT_MS = 5000;

/**
 * Backoff before the first retry of an undelivered message: 1 s, doubled
 * per attempt (with ±50% jitter, so senders do not retry in step). Short
 * enough that a recipient who was only restarting gets the message soon.
 */
export const DEFAULT_RETRY_BASE_MS = 1000;

/**
 * The longest backoff: 5 minutes. A recipient offline for days is retried
 * a few hundred times a day, which costs little, and is reached within
 * minutes of coming back (its mailbox copy usually earlier).
 */
export const DEFAULT_RETRY_MAX_MS = 5 * 60 * 1000;

/**
 * How often the outbox is scanned for messages due again: 1 s, the
 * shortest backoff, so no retry waits longer than it must. A new message
 * does not wait for the scan: its conversation is woken at once.
 */
export const DEFAULT_OUTBOX_INTERVAL_MS = 1000;

/**
 * How many envelopes of one conversation may await their acknowledgements
 * on its stream: 64. Enough to keep a stream busy across a round trip of a
 * few milliseconds at thousands of messages a second (bench/chat_bench.ts),
 * and the most messages a group commit waits for; the recipient stores and
 * flushes as many together ({@linkcode RECEIVE_BATCH}).
 */
export const SEND_WINDOW = 64;

/**
 * How many message keys of a sending chain a saved session state reserves:
 * 16. The state at rest has its sending chain that many messages ahead of
 * the live one, so the next messages in the chain leave as soon as they
 * are committed, before their flush: after a crash the chain resumes past
 * every key that may have been used. A crash costs the recipient at most
 * 15 skipped keys; a clean stop saves the live chain and costs none.
 */
export const RESERVED_SENDING_KEYS = 16;

/**
 * How far a session's saved state may lag behind its live one in the
 * current receiving chain: 16. Up to 15 received messages in a row that
 * only move that chain on are stored (and flushed before their
 * acknowledgement) without a save of the state; the next save writes them
 * with it. After a crash the state read back stands at most 15 messages
 * back in that chain, and the peer's next message derives the keys of the
 * messages between as skipped keys (copies of those messages are dropped by
 * their IDs); a clean stop saves the live state and costs none.
 */
export const UNSAVED_RECEIVED_MESSAGES = 16;

/**
 * The longest a sent message waits for others being sealed to share its
 * flush: 50 ms. Messages submitted together then share flushes
 * (bench/chat_bench.ts: 100 of 1 KiB submitted together cost about 1.2 ms
 * each, one by one about 1.9 ms); a lone message never waits, and one
 * behind a slow seal (a prekey lookup) does not wait for it longer than this.
 */
export const GROUP_COMMIT_MS = 50;

/**
 * How long an idle outgoing stream is kept for the conversation's next
 * message: 3 s. A chat's next message usually comes within it and skips a
 * dial (a round trip and a Noise handshake); it is below the recipient's
 * {@linkcode DEFAULT_STREAM_IDLE_TIMEOUT_MS}, so the sender is the one that
 * closes it.
 */
export const LINK_IDLE_MS = 3000;

/**
 * The shortest time between two session restarts with one recipient (a
 * NACK "no session" starts a new session and seals the queue again): one
 * minute, so a recipient that keeps refusing cannot make a sender re-key
 * (a prekey lookup, X3DH, sealing every queued message) in a loop.
 */
export const SESSION_RESTART_INTERVAL_MS = 60_000;

// --- Receiving: the inbox -----------------------------------------------------

/**
 * The most envelopes a recipient stores and flushes together, and reads
 * ahead on one stream: 64, a sender's {@linkcode SEND_WINDOW}, so a full
 * window costs the recipient one flush and one write of acknowledgements.
 */
export const RECEIVE_BATCH = 64;

/**
 * The most frames one inbound message stream may carry: 100,000. A sender
 * keeps a stream for a conversation, so this is far beyond any chat; it
 * bounds what one stream may cost before the recipient ends it (the sender
 * then opens a new one and carries on).
 */
export const MAX_FRAMES_PER_STREAM = 100_000;

/**
 * The longest silence on an inbound stream (messages or mailbox requests)
 * before it is reset: 10 s. Above {@linkcode LINK_IDLE_MS}, so an idle
 * sender closes first; a peer that opens streams and says nothing holds
 * them no longer than this.
 */
export const DEFAULT_STREAM_IDLE_TIMEOUT_MS = 10_000;

/**
 * Envelopes and receipts accepted from one peer at once: 2000. Each costs
 * a signature check, a decryption and a write; a burst this size is a busy
 * chat's backlog after a reconnect, and beyond it a flood is refused with a
 * NACK instead of stalling the node.
 */
export const DEFAULT_MESSAGE_BURST = 2000;

/**
 * Envelopes and receipts accepted from one peer per second after the
 * burst: 2500, more than the 2,000 a second two users exchange at full
 * speed (`bench/chat_bench.ts`), so a sender that keeps up that pace is
 * never refused. A flood at that rate still leaves a contact's messages
 * arriving in under 0.1 s (`tests/hostile/flood_test.ts`).
 */
export const DEFAULT_MESSAGES_PER_SECOND = 2500;

/**
 * The most peers a rate limiter remembers before it starts afresh: 10,000.
 * It bounds the limiter's memory against a peer that comes under ever new
 * IDs; forgetting gives an honest peer a full burst again, nothing more.
 */
export const RATE_LIMITER_MAX_PEERS = 10_000;

/**
 * How many of the keys used longest ago a full rate limiter looks at to
 * pick the one it forgets: 8. It forgets the fullest of them (a refilled
 * bucket is as good as a new one), so a throttled peer's empty bucket
 * outlives a flood of new keys, at a cost per new key that does not grow
 * with the number of keys.
 */
export const RATE_LIMITER_EVICTION_SAMPLE = 8;

/**
 * Bytes of frames one inbound message stream may hold read ahead of its
 * answers (queued, or being answered): 1 MiB. A full
 * {@linkcode RECEIVE_BATCH} of chat messages is a few dozen KiB, so a burst
 * still travels as one batch; a peer sending the largest envelopes gets
 * four at a time, not 64 (16.8 MB) as when only frames were counted.
 */
export const DEFAULT_STREAM_READ_AHEAD_BYTES = 1024 * 1024;

/**
 * Bytes of frames read ahead on all inbound message streams from one IP
 * address (an IPv6 /64): 8 MiB. Peer IDs cost nothing; an address does.
 */
export const DEFAULT_IP_READ_AHEAD_BYTES = 8 * 1024 * 1024;

/**
 * Bytes of frames read ahead on all of a node's inbound message streams:
 * 32 MiB. Past it, streams wait (and their senders are held back by flow
 * control) until frames already read are answered.
 */
export const DEFAULT_NODE_READ_AHEAD_BYTES = 32 * 1024 * 1024;

/**
 * Inbound message streams one peer may have open at once: 8. A sender keeps
 * one stream per conversation, so an honest peer needs one or two; a
 * stream over the cap is reset at once.
 */
export const DEFAULT_STREAMS_PER_PEER = 8;

/**
 * Inbound message streams all peers at one IP address (an IPv6 /64) may
 * have open at once: 64, room for many users behind one NAT.
 */
export const DEFAULT_STREAMS_PER_IP = 64;

/**
 * Envelopes and receipts accepted from all peers at one IP address (an
 * IPv6 /64) at once: 4000, twice one peer's burst. Each peer first spends
 * its own bucket, so one flooding peer cannot use up its neighbours'
 * share; new peer IDs from one address together get no more than this.
 */
export const DEFAULT_IP_MESSAGE_BURST = 4000;

/**
 * Envelopes and receipts accepted from all peers at one IP address per
 * second after the burst: 5000, twice one peer's rate.
 */
export const DEFAULT_IP_MESSAGES_PER_SECOND = 5000;

// --- Mailboxes: the client ----------------------------------------------------

/**
 * How often the user's own mailbox is polled: 30 s. Messages for a user
 * who is online come directly; the mailbox catches what was sent while
 * they were away, or past a path that failed, and each poll costs requests
 * to the mailbox's nodes, so half a minute is late enough to be cheap and
 * early enough for a chat.
 */
export const DEFAULT_MAILBOX_POLL_MS = 30_000;

/**
 * How many nodes keep a copy of an offline message: 3, the nodes closest
 * to the recipient's mailbox address. One node leaving or losing its disk
 * loses no message, and a sender stores three copies, not twenty (the
 * DHT's replication); the recipient asks twice as many, so it finds the
 * copies after the neighbourhood shifted a little.
 */
export const DEFAULT_MAILBOX_REPLICAS = 3;

/**
 * How long a sender asks an offline copy to be kept: 7 days, a long
 * absence (holidays) and within what a storage node keeps
 * ({@linkcode MAILBOX_MAX_TTL_MS}). The sender's outbox keeps the message
 * longer, and its mailbox check ({@linkcode DEFAULT_MAILBOX_RECHECK_MS})
 * stores it again once the copies have expired.
 */
export const DEFAULT_MAILBOX_TTL_MS = 7 * 24 * 3600 * 1000;

/**
 * How often a sender checks that the copies it left in the network are
 * still on the nodes closest to their recipients' mailboxes, and stores
 * them again on the ones that do not hold them: 10 minutes (and once after
 * each start). Nodes come and go; a copy whose holders all left is lost
 * unless someone stores it again, and the sender is the one who still has
 * it. A check costs one lookup per recipient, so a few an hour is cheap,
 * and a recipient who comes back within minutes of a holder leaving is
 * usually reached directly by the outbox's retries anyway.
 */
export const DEFAULT_MAILBOX_RECHECK_MS = 10 * 60 * 1000;

/**
 * The most messages one mailbox check stores again: 64. With many messages
 * queued, each check takes the ones confirmed longest ago, so all are
 * checked in turn without a burst of requests.
 */
export const MAILBOX_RECHECK_MAX_MESSAGES = 64;

/**
 * The most recipients one mailbox check looks up: 4. Each costs a DHT
 * lookup; a user with messages queued for many offline contacts checks
 * them over several rounds instead of querying the network for all at once.
 */
export const MAILBOX_RECHECK_MAX_RECIPIENTS = 4;

/**
 * How many envelopes a sender stores in a mailbox at once: 16, each on
 * every one of the closest nodes. A long queue for an offline recipient
 * (after a day of chatting to them, or the first check after a start)
 * then opens a few dozen streams at a time, not hundreds, and stays well
 * within what a storage node accepts from one peer
 * ({@linkcode DEFAULT_MAILBOX_REQUEST_BURST}).
 */
export const MAILBOX_STORE_PARALLEL = 16;

/**
 * The most messages whose holders (the nodes that took their mailbox
 * copies) a sender remembers before it starts afresh: 10,000. Remembering
 * them spares a check the requests to nodes known to hold a copy;
 * forgetting costs only requests answered "duplicate".
 */
export const MAILBOX_HOLDERS_MAX_MESSAGES = 10_000;

/**
 * How long the nodes closest to a mailbox are remembered: 5 minutes. A
 * lookup is a DHT query across the network, the neighbourhood of an
 * address changes slowly, and a poll that reaches none of them looks again.
 */
export const CLOSEST_CACHE_MS = 5 * 60 * 1000;

/**
 * The most mailbox neighbourhoods remembered before the cache starts afresh:
 * 1000, many more than one user's own mailbox and the recipients it stores
 * for at once.
 */
export const CLOSEST_CACHE_ENTRIES = 1000;

// --- Mailboxes: the server ----------------------------------------------------
//
// Anyone may STORE (a sender cannot prove it is a contact of a user it may
// never have met), so the quotas below are what keeps a stranger from
// jamming offline delivery. Copies are counted three ways: per storing peer
// in a mailbox, per mailbox, and per storing address (IP) over the node,
// under the node's total. A peer ID costs nothing; an address does, so the
// address is the limit that binds a flood. Over the limit of a mailbox,
// an address or the node, the copies of the heaviest storer go (its oldest
// first) instead of the new one being refused: a light sender, which a
// contact normally is, always gets in. Only a storer over its own share in
// a mailbox is refused. The sizes leave room for what DIM sends through
// mailboxes: a busy chat and its receipts (one sealed receipt per message
// fetched), small files for a user who is away (a few envelopes of up to
// 256 KiB each), and a group message fanned out by one sender to 100
// members' mailboxes (on a small network one node may keep all 100).

/**
 * Envelopes a node keeps in one mailbox, from all senders: 1000, a few busy
 * conversations and their receipts over a week away. One FETCH answer
 * lists them all ({@linkcode MAILBOX_FETCH_MAX_ITEMS}), so the owner clears
 * a mailbox full of junk in one round.
 */
export const MAILBOX_MAX_COUNT = 1000;

/**
 * Bytes a node keeps in one mailbox, from all senders: 32 MiB, four
 * senders at their full share ({@linkcode MAILBOX_PEER_MAX_BYTES}).
 */
export const MAILBOX_MAX_BYTES = 32 * 1024 * 1024;

/**
 * Envelopes one storing peer keeps in one mailbox: 500, several days of a
 * busy chat (a few hundred messages) with the sealed receipts for the
 * owner's own messages beside them. Over it the peer is refused (its
 * outbox keeps the message and tries again), never another storer evicted.
 */
export const MAILBOX_PEER_MAX_COUNT = 500;

/**
 * Bytes one storing peer keeps in one mailbox: 8 MiB, a chat's text with
 * room for small files left for a user who is away (a 3 MiB photo is a
 * dozen envelopes of 256 KiB).
 */
export const MAILBOX_PEER_MAX_BYTES = 8 * 1024 * 1024;

/**
 * Envelopes a node keeps from one storing address (an IPv4 address or an
 * IPv6 /64) over all mailboxes: 20,000, a group of 100 members fanned out
 * by one sender for 200 messages with the whole group on this node. Over
 * it, that address's heaviest storer loses its oldest copies: many peer
 * IDs behind one address share one share of the node.
 */
export const MAILBOX_ORIGIN_MAX_COUNT = 20_000;

/**
 * Bytes a node keeps from one storing address over all mailboxes: 64 MiB, a
 * quarter of the node ({@linkcode MAILBOX_MAX_TOTAL_BYTES}): a group
 * fan-out of a few hundred messages with files, while it takes four
 * addresses to fill the node, and then the heaviest loses copies first.
 */
export const MAILBOX_ORIGIN_MAX_BYTES = 64 * 1024 * 1024;

/**
 * Bytes a node keeps over all mailboxes: 256 MiB, a small part of any
 * disk, for the few hundred mailboxes that fall near one node. Full, it
 * evicts the heaviest storing address's heaviest peer, never refuses.
 */
export const MAILBOX_MAX_TOTAL_BYTES = 256 * 1024 * 1024;

/**
 * A node keeps a mailbox only if fewer than this many peers of its routing
 * table are closer to the address than itself: 20, the DHT's k. Senders
 * store on the 3 closest nodes and the owner asks the 6 closest
 * ({@linkcode DEFAULT_MAILBOX_REPLICAS}); a node's own table is less
 * complete and less fresh than a lookup (it may still list peers that
 * left, which makes it look farther than it is), so the rule is loose
 * enough that every node a sender's lookup finds accepts, and strict
 * enough that a node does not keep junk for addresses far from it (on a
 * network of fewer than 21 nodes, every node keeps every mailbox).
 */
export const MAILBOX_CLOSEST_SLACK = 20;

/**
 * The longest a node keeps a copy: 14 days, twice a sender's default
 * ({@linkcode DEFAULT_MAILBOX_TTL_MS}), so a sender with a slow clock is
 * still served; a longer expiry is refused as invalid.
 */
export const MAILBOX_MAX_TTL_MS = 14 * 24 * 3600 * 1000;

/**
 * Mailbox requests accepted from one peer at once: 200. Each STORE is a
 * disk write; a sender storing a window of messages for a few recipients
 * fits, a flood does not.
 */
export const DEFAULT_MAILBOX_REQUEST_BURST = 200;

/**
 * Mailbox requests accepted from one peer per second, after the burst: 20,
 * so one peer's flood of STOREs cannot stall a node's disk for everyone else.
 */
export const DEFAULT_MAILBOX_REQUESTS_PER_SECOND = 20;

/**
 * Mailbox requests accepted from one storing address (all its peer IDs)
 * at once: 2000, ten peers' bursts, for a home network or a NAT shared by
 * several users. Peer IDs are free; without it, a flood under ever new IDs
 * from one machine would have the disk to itself.
 */
export const DEFAULT_MAILBOX_ORIGIN_REQUEST_BURST = 2000;

/** Mailbox requests accepted from one storing address per second after the burst: 200. */
export const DEFAULT_MAILBOX_ORIGIN_REQUESTS_PER_SECOND = 200;

/**
 * Tolerance for the timestamp of a signed FETCH or DELETE: the clock skew
 * records tolerate ({@linkcode CLOCK_SKEW_TOLERANCE_MS}, 10 minutes), plus
 * a minute for the request's time in transit, so an owner whose clock is
 * off by the full record tolerance can still read and empty their
 * mailbox. Within it a node remembers each request it served, so none is
 * served twice ({@linkcode MAILBOX_SEEN_REQUESTS_MAX}).
 */
export const DELETE_SKEW_MS: number = CLOCK_SKEW_TOLERANCE_MS + 60 * 1000;

/**
 * Signed mailbox requests a node remembers, to serve each once: 50,000,
 * a few MiB. An owner sends two per node every poll (30 s), so this is
 * thousands of users' worth of the 22-minute window; past it the oldest
 * half is forgotten and every request no newer than them is refused as
 * stale, so a forgotten request still cannot be replayed (during such a
 * flood an owner whose clock is slow may have to wait for it to pass).
 */
export const MAILBOX_SEEN_REQUESTS_MAX = 50_000;

/**
 * The most envelopes one FETCH answer carries: 1000, a whole mailbox
 * ({@linkcode MAILBOX_MAX_COUNT}), as many as fit in a frame. A DELETE
 * names as many ({@linkcode MAILBOX_DELETE_MAX_ITEMS}).
 */
export const MAILBOX_FETCH_MAX_ITEMS = 1000;

/** The most hashes one DELETE names: 1000, a whole FETCH answer. */
export const MAILBOX_DELETE_MAX_ITEMS = 1000;

/**
 * The most FETCH rounds (fetch, store, delete) one fetch of the owner's
 * mailbox makes on one node while the node says more is waiting: 40. A
 * FETCH answer holds at most a frame (1 MiB), so a full mailbox of large
 * envelopes ({@linkcode MAILBOX_MAX_BYTES}, 32 MiB) empties in one fetch,
 * and a full mailbox of small ones in one round.
 */
export const MAILBOX_FETCH_MAX_ROUNDS = 40;

/**
 * Envelopes up to this size (16 KiB) are hashed with JavaScript SHA-256 on
 * the calling thread: for a few KiB it takes microseconds, less than
 * handing the work to WebCrypto's thread and back; a larger one goes to
 * WebCrypto, which is faster per byte and does not hold the thread.
 */
export const SMALL_ENVELOPE_LENGTH = 16 * 1024;

// --- Sessions -------------------------------------------------------------------

/**
 * One-time prekeys are refilled (and the bundle republished) when fewer
 * than 20 are left: each first contact uses one, and with none left a new
 * session has only the signed prekey, which is weaker against a later
 * compromise.
 */
export const PREKEY_REFILL_BELOW = 20;

/**
 * One-time prekeys that first messages from strangers (senders not in the
 * contact list) may use up at once: 10, then one more every
 * {@linkcode STRANGER_PREKEY_REFILL_MS}. A first message beyond it still
 * opens its session (the one-time prekey it names still takes part in
 * X3DH), but the prekey is kept and stays on offer: that session has the
 * forward secrecy of X3DH with the signed prekey alone, and a flood of
 * fresh identities can neither empty the bundle nor make it churn. Ten is
 * more new people than write to one user within an hour, and a contact's
 * first message never counts.
 */
export const STRANGER_PREKEY_BURST = 10;

/**
 * How often strangers get one more one-time prekey to use up: every 6
 * minutes, so at most 10 an hour after the burst (240 a day, refilled
 * whenever fewer than {@linkcode PREKEY_REFILL_BELOW} are left).
 */
export const STRANGER_PREKEY_REFILL_MS = 6 * 60_000;

/**
 * How long after a one-time prekey is used the bundle is republished,
 * gathering the ones used with it: 2 s. A mailbox fetch after a day offline
 * opens many first messages within a second; they share one signature and
 * one DHT put.
 */
export const PREKEY_REPUBLISH_QUIET_MS = 2_000;

/**
 * The least time between two republications of the bundle because prekeys
 * were used: 30 s. Each one is an Ed25519 signature and a put to the 20
 * nodes closest to the record; with first messages arriving all the time
 * (contacts' are not budgeted) that is at most two a minute. Meanwhile a
 * used prekey stays listed for at most about 30 s: a contact that picks it
 * is answered "no session" and starts again at once, without it (see
 * `SessionManager.retryPrekeyChoice`).
 */
export const PREKEY_REPUBLISH_MIN_INTERVAL_MS = 30_000;

/**
 * How many peers' opened session states are kept in memory: 256. Opening a
 * sealed state costs an AES-GCM call and a decode per message; a user
 * chats with far fewer peers at once, and the cache stays small.
 */
export const MAX_OPENED_SESSION_STATES = 256;

/**
 * How long a session keeps the key of a skipped message (one that has not
 * arrived while later ones have): 30 days, after which the key is dropped
 * the next time the state is saved or used (the Double Ratchet
 * specification, section 6.4). It is longer than a mailbox copy can live
 * ({@linkcode MAILBOX_MAX_TTL_MS}, 14 days), so a message that waited out
 * its whole life in a mailbox still reads; a key kept longer would only
 * serve an attacker who later steals the state.
 */
export const SKIPPED_KEY_MAX_AGE_MS = 30 * 24 * 3600 * 1000;

/**
 * How many session state saves go by between two writes of the high-water
 * mark kept outside `dim.db` (the session manager's rollback check): 1,000.
 * Each write replaces a small file and flushes it to disk; once per 1,000
 * messages sent or received no message pays for it noticeably. The exact
 * mark is also written at a clean stop, so only a crash leaves a window: a
 * `dim.db` put back to a copy less than this many saves older than the
 * crash is not detected.
 */
export const SESSION_MARK_INTERVAL = 1000;

// --- Content types of the messaging layer ----------------------------------------

/**
 * The lowest content type the messaging layer keeps for its own use: 0x40.
 * Content types 0x40 to 0x7f ({@linkcode CONTROL_CONTENT_TYPE_MAX}) are
 * never shown as messages: receipts and the parts of files left in
 * mailboxes. The history keeps their rows (for deduplication, and a file's
 * parts until it is whole) but lists none of them.
 */
export const CONTROL_CONTENT_TYPE_MIN = 0x40;

/** The highest content type the messaging layer keeps for its own use: 0x7f. */
export const CONTROL_CONTENT_TYPE_MAX = 0x7f;

/**
 * The content type of a sealed receipt: the SHA-256 hashes of envelopes
 * fetched from the recipient's mailbox, sent back to their sender inside
 * an envelope like any message (a bare signed receipt left in a mailbox
 * would tell its nodes who received what).
 */
export const RECEIPT_CONTENT_TYPE = 0x40;

/** The content type of the header of a file left in a mailbox (name, size, SHA-256, parts). */
export const FILE_HEADER_CONTENT_TYPE = 0x41;

/** The content type of one chunk of a file left in a mailbox. */
export const FILE_CHUNK_CONTENT_TYPE = 0x42;

/**
 * The content type of a group membership change (`lib/group/change.ts`),
 * sent to each member inside the pairwise session: control range, so the
 * history never shows it as a chat message.
 */
export const GROUP_CHANGE_CONTENT_TYPE = 0x43;

/** The content type of a sender-key distribution (`lib/group/sender_keys.ts`), inside the pairwise session. */
export const SENDER_KEY_CONTENT_TYPE = 0x44;

/**
 * The content type of a group message (encrypted once with the sender's
 * chain, `lib/group/sender_keys.ts`) carried to one member inside the
 * pairwise session, so that it has that member's outbox entry, retries,
 * mailbox copy and receipt like any message. Control range: the group
 * history shows it, not the pairwise one.
 */
export const GROUP_MESSAGE_CONTENT_TYPE = 0x45;

/** A group message in a static envelope: the fallback of `lib/group/wire.ts` (outside the control range). */
export const GROUP_ENVELOPE_CONTENT_TYPE = 0x82;

/**
 * The most envelope hashes one receipt carries: 1024 (32 KiB of body).
 * A mailbox fetch that read more from one sender sends several receipts.
 */
export const MAX_RECEIPT_HASHES = 1024;

/**
 * The largest file that can be left for an offline recipient: 4 MiB. Its
 * envelopes ({@linkcode MAILBOX_FILE_CHUNK_SIZE} each, 22 for 4 MiB) take
 * about half of what one sender may keep in one mailbox
 * ({@linkcode MAILBOX_PEER_MAX_BYTES}, 8 MiB, and 500 envelopes), so the
 * chat's messages and receipts, and a second file of half the size, still
 * fit beside it; and a fetch brings it in a few rounds of 1 MiB answers.
 * A larger file goes only directly, when both users are online.
 */
export const MAILBOX_FILE_MAX_SIZE = 4 * 1024 * 1024;

/**
 * The bytes of a file each mailbox envelope carries: 192 KiB, so that with
 * the part's own header, the session's header and the envelope's overhead
 * an envelope stays well under its 256 KiB body limit.
 */
export const MAILBOX_FILE_CHUNK_SIZE = 192 * 1024;

/**
 * Bytes of unfinished mailbox files kept per sender: 2 ×
 * {@linkcode MAILBOX_FILE_MAX_SIZE}. Parts past it (a sender that sends
 * chunks without ever finishing a file) are dropped, the oldest first.
 */
export const MAILBOX_FILE_PENDING_BYTES = 2 * MAILBOX_FILE_MAX_SIZE;
