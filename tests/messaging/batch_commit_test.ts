/**
 * One commit per batch at each end of a chat: the frames received together
 * are stored in transactions deferred to one commit, which is made and
 * flushed before any of them is acknowledged, and a frame that does not
 * decrypt leaves the others stored; messages sent together share one
 * commit, made and flushed before any of them leaves; the session save
 * counter's mark waits for the commit. Real libp2p nodes on 127.0.0.1, real
 * SQLite files.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { Identity } from "../../lib/crypto/identity.ts";
import { SecretBox } from "../../lib/crypto/secret_box.ts";
import { createDhtNode } from "../../lib/dht/node.ts";
import { SaveCounter } from "../../lib/messaging/_save_counter.ts";
import { SESSION_FRAME_KIND } from "../../lib/messaging/_session_frame.ts";
import { MessagingService } from "../../lib/messaging/service.ts";
import { SessionManager } from "../../lib/messaging/sessions.ts";
import type { DeferredCommits, TransactionOptions } from "../../lib/messaging/storage.ts";
import type { MessagingTransport } from "../../lib/messaging/types.ts";
import {
  encodeFrame,
  type Frame,
  FrameReader,
  FrameType,
  MESSAGE_PROTOCOL,
  NackCode,
} from "../../lib/messaging/wire.ts";
import { transportFor } from "../../lib/messenger/transport.ts";
import { openPrekeyBundle, type PrekeyBundle } from "../../lib/record/prekey.ts";
import { UserStore } from "../../lib/store/user_store.ts";
import { LOOPBACK } from "../_support/network.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

/** What a store was asked to do, in order. */
type Event =
  | { readonly kind: "transaction"; readonly deferred: DeferredCommits | undefined }
  | { readonly kind: "sync"; readonly deferred: DeferredCommits | undefined }
  | { readonly kind: "send" }
  | { readonly kind: "flushed"; readonly deferred: DeferredCommits | undefined };

/** A store that logs its transactions and syncs, and fails its syncs while `failing` says so. */
function logged(db: UserStore, events: Event[], failing = () => false): UserStore {
  return new Proxy(db, {
    get(target, key) {
      if (key === "sync") {
        return (deferred?: DeferredCommits) => {
          events.push({ kind: "sync", deferred });
          if (failing()) throw new Error("the disk is gone");
          target.sync(deferred);
        };
      }
      if (key === "syncAsync") {
        return (deferred?: DeferredCommits) => {
          events.push({ kind: "sync", deferred });
          if (failing()) return Promise.reject(new Error("the disk is gone"));
          // The commit is made in the call; the flush ends later.
          return target.syncAsync(deferred).then(() => {
            events.push({ kind: "flushed", deferred });
          });
        };
      }
      if (key === "transaction") {
        return <T>(fn: () => T, options?: TransactionOptions): T => {
          events.push({ kind: "transaction", deferred: options?.deferred });
          return target.transaction(fn, options);
        };
      }
      const value = Reflect.get(target, key);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

/** A transport whose message streams, opened or served, log each write. */
function loggedStreams(inner: MessagingTransport, events: Event[]): MessagingTransport {
  const watch = <S extends { send(data: Uint8Array): boolean }>(stream: S): S => {
    const send = stream.send.bind(stream);
    stream.send = (data: Uint8Array) => {
      events.push({ kind: "send" });
      return send(data);
    };
    return stream;
  };
  return {
    get peerId() {
      return inner.peerId;
    },
    handle: (protocol, handler) =>
      inner.handle(
        protocol,
        (stream, ...rest) =>
          handler(protocol === MESSAGE_PROTOCOL ? watch(stream) : stream, ...rest),
      ),
    unhandle: (p) => inner.unhandle(p),
    closestPeers: (k, o) => inner.closestPeers(k, o),
    async openStream(peer, protocol, options) {
      const stream = await inner.openStream(peer, protocol, options);
      return protocol === MESSAGE_PROTOCOL ? watch(stream) : stream;
    },
  };
}

/** A user with a session manager, a store on disk and (once served) a messaging service. */
interface User {
  readonly identity: Identity;
  readonly db: UserStore;
  readonly sessions: SessionManager;
}

async function user(dir: string, name: string, network: Map<string, PrekeyBundle>): Promise<User> {
  const identity = await Identity.generate();
  const db = UserStore.open(`${dir}/${name}.db`);
  const sessions = new SessionManager({
    identity,
    storage: db,
    box: await SecretBox.forIdentity(identity),
    fetchBundle: (id) => Promise.resolve(network.get(id)),
  });
  network.set(identity.id, await openPrekeyBundle((await sessions.prekeyBundle()).bytes));
  return { identity, db, sessions };
}

const peerOf = (u: User) => ({
  userId: u.identity.id,
  signingPublicKey: u.identity.signingPublicKey,
  encryptionPublicKey: u.identity.encryptionPublicKey,
});

/** Seals a message in `from`'s session with `to` and saves the state, as the outbox would. */
async function seal(from: User, to: User, text: string) {
  return await from.sessions.lock(async () => {
    const r = await from.sessions.encrypt(peerOf(to), 1, enc(text), {
      signal: AbortSignal.timeout(5000),
    });
    await r.ready;
    from.db.transaction(() => r.save());
    return r;
  });
}

/** Opens a sealed message at `at`, outside any service (the session's start). */
async function open(at: User, from: User, sealed: Awaited<ReturnType<typeof seal>>) {
  return await at.sessions.lock(async () => {
    if (sealed.frame !== undefined) {
      const r = await at.sessions.decryptFrame(sealed.frame, () => false);
      assert.ok(!r.duplicate);
      at.db.transaction(() => r.save());
      return dec(r.body);
    }
    const r = await at.sessions.decrypt(peerOf(from), sealed.contentType, sealed.body);
    at.db.transaction(() => r.save());
    return dec(r.body);
  });
}

Deno.test("frames received together are one commit, flushed before their acknowledgements; a frame that does not decrypt leaves the others stored", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dim-batch-" });
  const network = new Map<string, PrekeyBundle>();
  const alice = await user(dir, "alice", network);
  const bob = await user(dir, "bob", network);
  const bobNode = await createDhtNode({ listen: LOOPBACK });
  const aliceNode = await createDhtNode({ listen: LOOPBACK });
  const events: Event[] = [];
  let failing = false;
  const service = new MessagingService({
    identity: bob.identity,
    storage: logged(bob.db, events, () => failing),
    transport: loggedStreams(transportFor(bobNode), events),
    resolve: () => Promise.reject(new Error("Bob sends nothing here")),
    sessions: bob.sessions,
  }, { outboxIntervalMs: 60_000 });
  try {
    await service.start();
    // The session is opened and answered: Alice's next messages are frames.
    assert.equal(await open(bob, alice, await seal(alice, bob, "one")), "one");
    assert.equal(await open(alice, bob, await seal(bob, alice, "answer")), "answer");
    const frames = [];
    for (const text of ["two", "three", "four"]) frames.push((await seal(alice, bob, text)).frame!);
    for (const frame of frames) assert.equal(frame[0], SESSION_FRAME_KIND);
    // "three" is damaged in its ciphertext: its tag still names the session.
    const damaged = new Uint8Array(frames[1]!);
    damaged[damaged.length - 1]! ^= 1;
    frames[1] = damaged;

    events.length = 0;
    const stream = await aliceNode.dialProtocol(bobNode.multiaddrs[0]!, MESSAGE_PROTOCOL, {
      signal: AbortSignal.timeout(5000),
    });
    stream.send(
      new Uint8Array(
        frames.flatMap((f) => [...encodeFrame({ type: FrameType.Envelope, envelope: f })]),
      ),
    );
    const reader = new FrameReader(stream);
    const replies: Frame[] = [];
    while (replies.length < 3) {
      const reply = await reader.next();
      assert.ok(reply !== undefined, "the stream ended early");
      replies.push(reply);
    }
    await stream.close().catch(() => {});
    assert.deepEqual(replies.map((r) => r.type), [FrameType.Ack, FrameType.Nack, FrameType.Ack]);
    assert.equal(replies[1]!.type === FrameType.Nack && replies[1]!.code, NackCode.NoSession);

    // The good ones are stored; the damaged one is not, and held nothing up.
    const history = bob.db.messages.history(alice.identity.id).map((m) => dec(m.body));
    assert.deepEqual(history, ["two", "four"]);
    // Each batch read (the frames that had arrived when it started) was
    // stored in transactions deferred to one mark, which the one sync before
    // its acknowledgements committed and flushed.
    let stored = 0;
    for (let at = 0; at < events.length;) {
      const sent = events.findIndex((e, i) => i >= at && e.kind === "send");
      assert.ok(sent >= 0, "every batch is answered");
      const batch = events.slice(at, sent);
      const syncs = batch.filter((e) => e.kind === "sync");
      assert.equal(syncs.length, 1, JSON.stringify(events.map((e) => e.kind)));
      const mark = syncs[0]!.deferred;
      assert.ok(mark !== undefined);
      assert.equal(mark.lost, undefined);
      const sync = batch.indexOf(syncs[0]!);
      for (const [i, e] of batch.entries()) {
        if (e.kind !== "transaction") continue;
        assert.equal(e.deferred, mark, "stored in the batch's deferred commit");
        assert.ok(i < sync, "before the flush");
        stored++;
      }
      at = sent + 1;
    }
    assert.equal(stored, 2, "one transaction per message stored");

    // A flush that fails acknowledges nothing: the stream ends without an answer.
    failing = true;
    const five = (await seal(alice, bob, "five")).frame!;
    const again = await aliceNode.dialProtocol(bobNode.multiaddrs[0]!, MESSAGE_PROTOCOL, {
      signal: AbortSignal.timeout(5000),
    });
    again.send(encodeFrame({ type: FrameType.Envelope, envelope: five }));
    const answer = await new FrameReader(again).next().catch(() => undefined);
    assert.equal(answer, undefined, "no acknowledgement without the flush");
    failing = false;
  } finally {
    await service.stop();
    await aliceNode.stop();
    await bobNode.stop();
    alice.db.close();
    bob.db.close();
    await Deno.remove(dir, { recursive: true });
  }
});

/**
 * Alice's service (its store and streams logged in `events`, its syncs failing
 * while `failing()` says so) and Bob's, on two nodes; `close` stops and
 * removes everything.
 */
async function sendingPair(failing = () => false) {
  const dir = await Deno.makeTempDir({ prefix: "dim-batch-" });
  const network = new Map<string, PrekeyBundle>();
  const alice = await user(dir, "alice", network);
  const bob = await user(dir, "bob", network);
  const aliceNode = await createDhtNode({ listen: LOOPBACK });
  const bobNode = await createDhtNode({ listen: LOOPBACK });
  const events: Event[] = [];
  const sender = new MessagingService({
    identity: alice.identity,
    storage: logged(alice.db, events, failing),
    transport: loggedStreams(transportFor(aliceNode), events),
    resolve: () => Promise.resolve({ peerId: bobNode.peerId, addresses: bobNode.multiaddrs }),
    sessions: alice.sessions,
  }, { outboxIntervalMs: 60_000, retryBaseMs: 60_000 });
  const receiver = new MessagingService({
    identity: bob.identity,
    storage: bob.db,
    transport: transportFor(bobNode),
    resolve: () => Promise.resolve({ peerId: aliceNode.peerId, addresses: aliceNode.multiaddrs }),
    sessions: bob.sessions,
  }, { outboxIntervalMs: 60_000, retryBaseMs: 60_000 });
  const recipient = {
    userId: bob.identity.id,
    encryptionPublicKey: bob.identity.encryptionPublicKey,
  };
  const close = async () => {
    await sender.stop();
    await receiver.stop();
    await aliceNode.stop();
    await bobNode.stop();
    alice.db.close();
    bob.db.close();
    await Deno.remove(dir, { recursive: true });
  };
  return { alice, bob, events, sender, receiver, recipient, close };
}

Deno.test("messages sent together share one commit, made and flushed before any of them leaves", async () => {
  const { alice, bob, events, sender, receiver, recipient, close } = await sendingPair();
  const delivered = (n: number) =>
    new Promise<void>((resolve) => {
      let left = n;
      sender.addEventListener("delivered", () => --left === 0 && resolve());
    });
  try {
    await receiver.start();
    await sender.start();
    const first = delivered(1);
    await sender.send(recipient, enc("one"));
    await first;
    events.length = 0;
    const all = delivered(8);
    const rows = await Promise.all(
      Array.from({ length: 8 }, (_, i) => sender.send(recipient, enc(`m${i}`))),
    );
    await all;
    assert.equal(rows.length, 8);
    // Each message's outbox entry and session state: a transaction deferred
    // to a mark that a sync took before the first of them left.
    const firstSend = events.findIndex((e) => e.kind === "send");
    const marks = new Set(
      events.slice(0, firstSend).flatMap((e) =>
        e.kind === "transaction" && e.deferred !== undefined ? [e.deferred] : []
      ),
    );
    assert.ok(marks.size >= 1);
    const synced = events.slice(0, firstSend).flatMap((e) =>
      e.kind === "sync" && e.deferred !== undefined ? [e.deferred] : []
    );
    for (const mark of marks) assert.ok(synced.includes(mark), "committed and flushed first");
    const stores = events.filter((e) => e.kind === "transaction" && e.deferred !== undefined);
    const groups = new Set(stores.map((e) => e.kind === "transaction" && e.deferred));
    assert.ok(groups.size < 8, `${groups.size} commits for 8 messages sent together`);
    assert.deepEqual(
      bob.db.messages.history(alice.identity.id).map((m) => dec(m.body)),
      ["one", ...rows.map((_, i) => `m${i}`)],
    );
  } finally {
    await close();
  }
});

Deno.test("a message whose key a flushed save reserved leaves before its own flush; one that opens the reservation waits for it", async () => {
  const { alice, bob, events, sender, receiver, recipient, close } = await sendingPair();
  const delivered = () =>
    new Promise<void>((resolve) =>
      sender.addEventListener("delivered", () => resolve(), { once: true })
    );
  const sendingOrder = async (text: string) => {
    events.length = 0;
    const done = delivered();
    await sender.send(recipient, enc(text));
    await done;
    const stored = events.findIndex((e) => e.kind === "transaction" && e.deferred !== undefined);
    const mark = stored >= 0
      ? (events[stored] as { deferred?: DeferredCommits }).deferred
      : undefined;
    const committed = events.findIndex((e) => e.kind === "sync" && e.deferred === mark);
    // Flushed on this thread, the commit and its flush are one call.
    const later = events.findIndex((e) => e.kind === "flushed" && e.deferred === mark);
    const flushed = later >= 0 ? later : committed;
    const sent = events.findIndex((e, i) => i > stored && e.kind === "send");
    assert.ok(stored >= 0 && committed > stored && flushed >= committed, JSON.stringify(events));
    assert.ok(sent > committed, "never before its commit");
    return sent < flushed ? "sent, then flushed" : "flushed, then sent";
  };
  try {
    await receiver.start();
    await sender.start();
    assert.equal(await sendingOrder("one"), "flushed, then sent", "a new session");
    assert.equal(await sendingOrder("two"), "flushed, then sent", "its save reserves keys");
    assert.equal(await sendingOrder("three"), "sent, then flushed");
    assert.equal(await sendingOrder("four"), "sent, then flushed");
    assert.deepEqual(
      bob.db.messages.history(alice.identity.id).map((m) => dec(m.body)),
      ["one", "two", "three", "four"],
    );
  } finally {
    await close();
  }
});

Deno.test("a message whose flush failed is not sent until a later flush succeeds", async () => {
  let failing = false;
  const { alice, bob, events, sender, receiver, recipient, close } = await sendingPair(() =>
    failing
  );
  try {
    await receiver.start();
    await sender.start();
    const delivered = new Promise<void>((resolve) =>
      sender.addEventListener("delivered", () => resolve(), { once: true })
    );
    await sender.send(recipient, enc("one"));
    await delivered;
    failing = true;
    await assert.rejects(sender.send(recipient, enc("two")), /the disk is gone/);
    events.length = 0;
    // A scan while the disk still fails: nothing leaves.
    await sender.flushOutbox({ all: true });
    assert.equal(events.filter((e) => e.kind === "send").length, 0);
    failing = false;
    // The next scan flushes first, and only then sends it.
    await sender.flushOutbox({ all: true });
    const firstSend = events.findIndex((e) => e.kind === "send");
    assert.ok(firstSend > 0, "sent once a flush succeeded");
    assert.ok(events.slice(0, firstSend).some((e) => e.kind === "sync"));
    const deadline = Date.now() + 10_000;
    while (bob.db.messages.history(alice.identity.id).length < 2 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.deepEqual(bob.db.messages.history(alice.identity.id).map((m) => dec(m.body)), [
      "one",
      "two",
    ]);
  } finally {
    await close();
  }
});

Deno.test("the save counter's mark never passes a committed counter, even when the save's commit is deferred", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dim-batch-" });
  const db = UserStore.open(`${dir}/dim.db`);
  const reader = new DatabaseSync(`${dir}/dim.db`);
  const committed = () =>
    Number(
      reader.prepare("SELECT value FROM meta WHERE key = 'session_saves'").get()?.value ?? 0,
    );
  const written: { mark: number; committed: number }[] = [];
  let wrote: () => void = () => {};
  const mark = {
    read: () => Promise.resolve(0),
    write: (value: number) => {
      written.push({ mark: value, committed: committed() });
      wrote();
      return Promise.resolve();
    },
  };
  try {
    const counter = new SaveCounter(db.settings, mark, 2);
    await counter.check(() => 0);
    const done = new Promise<void>((resolve) => wrote = resolve);
    for (let i = 0; i < 2; i++) {
      db.transaction(() => counter.saved(counter.next()), { durable: false, deferred: {} });
    }
    // The timers are unref'd: a process with nothing else to do keeps them waiting.
    const alive = setTimeout(() => {}, 5_000);
    await done;
    clearTimeout(alive);
    assert.deepEqual(written, [{ mark: 2, committed: 2 }]);
    await counter.close();
  } finally {
    reader.close();
    db.close();
    await Deno.remove(dir, { recursive: true });
  }
});
