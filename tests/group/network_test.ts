/**
 * Group chats between real nodes and real SQLite files: create, chat,
 * members who are not contacts, add and remove (against the ciphertexts a
 * member actually receives), a member offline and back, a restart.
 *
 * @module
 */
import assert from "node:assert/strict";
import { sha256 } from "@noble/hashes/sha2.js";
import type { Messenger } from "../../lib/messenger/messenger.ts";
import type { MessengerGroups } from "../../lib/messenger/groups.ts";
import type { ChatMessage } from "../../lib/profile/chat_message.ts";
import { DecryptionError } from "../../lib/errors.ts";
import { GroupKeyring } from "../../lib/group/keyring.ts";
import { decodeKeyring } from "../../lib/group/keyring_codec.ts";
import { GroupLog, type GroupState } from "../../lib/group/membership.ts";
import { signChange } from "../../lib/group/change.ts";
import {
  GROUP_CHANGE_CONTENT_TYPE,
  GROUP_MESSAGE_CONTENT_TYPE,
} from "../../lib/messaging/constants.ts";
import { SessionContentType, SessionManager } from "../../lib/messaging/sessions.ts";
import { fromHex, toHex } from "../../lib/platform/bytes.ts";
import { profileParts } from "../../lib/profile/_internals.ts";
import { FAST_MESSAGING, type TestNet, testNet } from "../_support/network.ts";

/** Waits until `check` holds, polling. */
async function until(check: () => boolean, what: string, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Alice with Bob and Carol as contacts (Bob and Carol are not each other's). */
async function trio(net: TestNet, extra: Record<string, unknown> = {}) {
  const alice = await net.user("alice");
  const bob = await net.user("bob", extra);
  const carol = await net.user("carol");
  await alice.addContact("bob", bob.id);
  await alice.addContact("carol", carol.id);
  return { alice, bob, carol };
}

/** The next `n` messages `m` receives, each a group message (no timer left behind). */
async function nextGroup(m: Messenger, n = 1, ms = 15_000): Promise<ChatMessage[]> {
  const got: ChatMessage[] = [];
  const it = m.messages()[Symbol.asyncIterator]();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${got.length}/${n}`)), ms);
  });
  try {
    while (got.length < n) {
      const r = await Promise.race([it.next(), timeout]);
      if (r.done) break;
      got.push(r.value);
    }
  } finally {
    clearTimeout(timer);
  }
  for (const x of got) assert.ok(x.group !== undefined, `not a group message: ${x.text}`);
  return got;
}

Deno.test("a group of three: created, every member writes and reads, delivery counts", async () => {
  await using net = await testNet();
  const { alice, bob, carol } = await trio(net);
  const g = await alice.createGroup("hikers", ["bob", "carol"]);
  assert.equal(g.members.length, 3);
  assert.ok(g.admin);
  await until(() => bob.groups().length === 1 && carol.groups().length === 1, "the group");
  // Bob sees Carol as a member who is not a contact.
  const seen = bob.group("hikers");
  assert.equal(seen.members.find((m) => m.id === carol.id)?.label, "group member, not a contact");
  assert.equal(seen.members.find((m) => m.id === alice.id)?.admin, true);
  assert.equal(
    await bob.groupChats.safetyNumber("hikers", carol.id),
    await carol.groupChats.safetyNumber("hikers", bob.id),
  );

  const sent = await alice.sendGroup("hikers", "hello all");
  assert.equal(sent.group?.members, 2);
  const [b] = await nextGroup(bob);
  const [c] = await nextGroup(carol);
  for (const x of [b!, c!]) {
    assert.equal(x.text, "hello all");
    assert.equal(x.peer, alice.id);
    assert.equal(x.group?.name, "hikers");
  }
  // Bob writes to Carol, whom he has not added: the group gave him her keys.
  await bob.sendGroup("hikers", "from bob");
  const [fromBob] = await nextGroup(carol);
  assert.equal(fromBob!.text, "from bob");
  assert.equal(fromBob!.peer, bob.id);
  assert.equal(fromBob!.contact, undefined);
  const [atAlice] = await nextGroup(alice);
  assert.equal(atAlice!.contact, "bob");
  await until(
    () => alice.groupHistory("hikers").find((m) => m.seq === sent.seq)?.group?.deliveredTo === 2,
    "delivered to 2 of 2",
  );
  assert.deepEqual(alice.groupHistory("hikers").map((m) => m.text), ["hello all", "from bob"]);
  // Group messages never show in the pairwise history.
  assert.deepEqual(bob.profile.history(alice.id).map((m) => m.text), []);

  // Once Alice holds both members' inbox keys, each gets the message in a
  // wrap (stored under an ID hashed from the group message), not in a session.
  await until(() => keptKeyring(alice, g.id).chainCount >= 2, "alice's chains of bob and carol");
  await alice.sendGroup("hikers", "wrapped");
  await nextGroup(bob);
  await nextGroup(carol);
  for (const m of [bob, carol]) {
    const last = profileParts(m.profile).store.messages.incomingWithBody(alice.id, [
      GROUP_MESSAGE_CONTENT_TYPE,
    ]).at(-1)!;
    assert.deepEqual(last.id, sha256(last.body).subarray(0, 16), "carried in a wrap");
  }
});

/** The group messages (their ciphertexts, as carried) `m` received from `from`. */
function carried(m: Messenger, from: Messenger): Uint8Array[] {
  return profileParts(m.profile).store.messages.incomingWithBody(from.id, [
    GROUP_MESSAGE_CONTENT_TYPE,
  ]).map((r) => r.body);
}

/** A member's keyring as stored now, as a removed member would keep it. */
function keptKeyring(m: Messenger, groupId: string): GroupKeyring {
  const parts = profileParts(m.profile);
  const bytes = parts.store.groups.keyring(groupId)!;
  return GroupKeyring.restore(
    fromHex(groupId),
    parts.identity().signingPublicKey,
    decodeKeyring(bytes),
  );
}

/** The membership as `m` holds it, from its stored changes. */
async function storedState(m: Messenger, groupId: string): Promise<GroupState> {
  const [create, ...rest] = profileParts(m.profile).store.groups.changes(groupId);
  const log = await GroupLog.open(create!);
  for (const c of rest) await log.receive(c);
  return log.state();
}

Deno.test("an added member cannot read older messages; a removed one cannot read later ones", async () => {
  await using net = await testNet();
  const { alice, bob, carol } = await trio(net);
  const dave = await net.user("dave");
  await alice.addContact("dave", dave.id);
  const g = await alice.createGroup("club", ["bob", "carol"]);
  await until(() => bob.groups().length === 1 && carol.groups().length === 1, "the group");
  await alice.sendGroup("club", "before dave");
  await nextGroup(bob);
  await nextGroup(carol);
  const old = carried(bob, alice);
  assert.equal(old.length, 1);

  await alice.addMember("club", "dave");
  await until(() => dave.groups().length === 1, "dave's group");
  await alice.sendGroup("club", "welcome dave");
  const [w] = await nextGroup(dave);
  assert.equal(w!.text, "welcome dave");
  // Dave never got the older ciphertext, and his keys do not open the copy Bob got.
  assert.equal(carried(dave, alice).length, 1);
  const daveState = await storedState(dave, g.id);
  await assert.rejects(
    keptKeyring(dave, g.id).receive(daveState, old[0]!, { unwrapped: true }),
    DecryptionError,
  );
  await nextGroup(bob);
  await nextGroup(carol);
  // Carol and Bob hand Dave their keys: he reads them.
  await bob.sendGroup("club", "hi dave, bob here");
  assert.equal((await nextGroup(dave))[0]!.text, "hi dave, bob here");
  await nextGroup(alice);
  await nextGroup(carol);

  // Carol is removed; she keeps what she had.
  const carolKeys = keptKeyring(carol, g.id);
  const carolState = await storedState(carol, g.id);
  const carolHad = carried(carol, alice).length + carried(carol, bob).length;
  await alice.removeMember("club", carol.id);
  await until(() => carol.groups()[0]?.left === true, "carol's removal");
  await until(() => bob.group("club").epoch === 1 && dave.group("club").epoch === 1, "epoch 1");
  // Every remaining member has each other's new key before writing.
  await until(
    () => [alice, bob, dave].every((m) => keptKeyring(m, g.id).chainCount >= 2),
    "new keys",
  );
  await alice.sendGroup("club", "after carol");
  await bob.sendGroup("club", "bob after carol");
  const atDave = await nextGroup(dave, 2);
  assert.deepEqual(atDave.map((m) => m.text).sort(), ["after carol", "bob after carol"]);
  // Carol received no later ciphertext, and the ones Dave got do not open with her keys.
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(carried(carol, alice).length + carried(carol, bob).length, carolHad);
  for (const c of [...carried(dave, alice), ...carried(dave, bob)].slice(-2)) {
    await assert.rejects(carolKeys.receive(carolState, c, { unwrapped: true }), DecryptionError);
  }
  assert.equal(carol.groupHistory(g.id).some((m) => m.text.includes("after carol")), false);
});

Deno.test("a member offline gets the group's messages from the mailbox; a restart keeps the group", async () => {
  await using net = await testNet(2);
  const alice = await net.user("alice", { messaging: { ...FAST_MESSAGING, retryBaseMs: 60_000 } });
  const bob = await net.user("bob");
  const carol = await net.user("carol");
  await alice.addContact("bob", bob.id);
  await alice.addContact("carol", carol.id);
  await alice.createGroup("trail", ["bob", "carol"]);
  await until(() => bob.groups().length === 1 && carol.groups().length === 1, "the group");
  await alice.sendGroup("trail", "first");
  await nextGroup(bob);
  await nextGroup(carol);
  await bob.stop();
  const sent = [];
  for (const t of ["while away 1", "while away 2"]) sent.push(await alice.sendGroup("trail", t));
  await nextGroup(carol, 2);
  const bob2 = await net.reopen("bob");
  const got = await nextGroup(bob2, 2, 20_000);
  assert.deepEqual(got.map((m) => m.text), ["while away 1", "while away 2"]);
  // Bob's restart kept his keys: he writes and everyone reads.
  await bob2.sendGroup("trail", "back");
  assert.equal((await nextGroup(carol))[0]!.text, "back");
  assert.equal((await nextGroup(alice))[0]!.text, "back");
  await until(
    () => alice.groupHistory("trail").filter((m) => m.group?.deliveredTo === 2).length === 3,
    "all delivered to 2 of 2",
  );
  // Alice restarts mid-conversation too.
  await alice.stop();
  const alice2 = await net.reopen("alice");
  assert.equal(alice2.group("trail").members.length, 3);
  await alice2.sendGroup("trail", "alice again");
  assert.equal((await nextGroup(bob2))[0]!.text, "alice again");
  assert.equal((await nextGroup(carol))[0]!.text, "alice again");
});

Deno.test("two admins change the membership concurrently: every member converges", async () => {
  await using net = await testNet();
  const { alice, bob, carol } = await trio(net);
  const dave = await net.user("dave");
  const erin = await net.user("erin");
  await alice.addContact("dave", dave.id);
  await bob.addContact("erin", erin.id);
  const g = await alice.createGroup("council", ["bob", "carol"]);
  await until(() => bob.groups().length === 1 && carol.groups().length === 1, "the group");
  await alice.groupChats.promote("council", bob.id);
  await until(() => bob.group("council").admin, "bob an admin");
  // Concurrently: Alice adds Dave and removes Carol, Bob adds Erin.
  await Promise.all([
    alice.addMember("council", "dave").then(() => alice.removeMember("council", carol.id)),
    bob.addMember("council", "erin"),
  ]);
  const ids = [alice, bob, dave, erin].map((m) => m.id).sort();
  const view = (m: Messenger) => {
    const s = m.groups().find((x) => x.id === g.id);
    return s === undefined || s.left ? [] : s.members.map((x) => x.id);
  };
  await until(
    () => [alice, bob, dave, erin].every((m) => JSON.stringify(view(m)) === JSON.stringify(ids)),
    "the same four members everywhere",
    20_000,
  );
  await until(() => carol.groups()[0]?.left === true, "carol out");
  const epochs = [alice, bob, dave, erin].map((m) => m.group(g.id).epoch);
  assert.deepEqual(epochs, [1, 1, 1, 1]);
  // And they can all talk.
  await until(
    () => [alice, bob, dave, erin].every((m) => keptKeyring(m, g.id).chainCount >= 3),
    "everyone's keys",
    20_000,
  );
  await erin.sendGroup(g.id, "erin here");
  for (const m of [alice, bob, dave]) {
    const got = await nextGroupText(m, "erin here");
    assert.equal(got.peer, erin.id);
  }
});

Deno.test("a forged or replayed membership change is refused", async () => {
  await using net = await testNet();
  const { alice, bob, carol } = await trio(net);
  const g = await alice.createGroup("safe", ["bob", "carol"]);
  await until(() => bob.groups().length === 1 && carol.groups().length === 1, "the group");
  const take = (m: Messenger, from: Messenger, contentType: number, body: Uint8Array) =>
    (m.groupChats as MessengerGroups).take({
      message: {
        seq: 0,
        id: crypto.getRandomValues(new Uint8Array(16)),
        peer: from.id,
        direction: "in",
        sentAt: 0,
        receivedAt: 0,
        contentType,
        body,
        state: "received",
        via: "direct",
        protection: "ratchet",
      },
      senderSigningKey: profileParts(from.profile).identity().signingPublicKey,
    });
  const settle = () => new Promise((r) => setTimeout(r, 300));
  // Carol, not an admin, signs a removal of Bob and hands it to Alice.
  const heads = (await storedState(carol, g.id)).heads;
  const forged = await signChange(profileParts(carol.profile).identity(), {
    groupId: fromHex(g.id),
    parents: heads,
    op: { kind: "remove", target: profileParts(bob.profile).identity().signingPublicKey },
  });
  assert.ok(take(alice, carol, GROUP_CHANGE_CONTENT_TYPE, forged));
  // A change whose signature was tampered with.
  const tampered = new Uint8Array(forged);
  tampered[tampered.length - 1]! ^= 1;
  take(bob, carol, GROUP_CHANGE_CONTENT_TYPE, tampered);
  await settle();
  assert.equal(alice.group("safe").members.length, 3);
  assert.equal(bob.group("safe").members.length, 3);
  // Alice removes Carol; Carol replays the create and the older changes to come back.
  await alice.removeMember("safe", carol.id);
  await until(() => bob.group("safe").members.length === 2, "carol removed at bob");
  const old = profileParts(carol.profile).store.groups.changes(g.id);
  for (const c of old) take(bob, carol, GROUP_CHANGE_CONTENT_TYPE, c);
  for (const c of old) take(carol, alice, GROUP_CHANGE_CONTENT_TYPE, c);
  await settle();
  assert.equal(bob.group("safe").members.length, 2);
  assert.equal(carol.groups()[0]?.left, true, "a replayed create does not rejoin a group");
  // Carol's messages are refused by members who applied the removal.
  const before = bob.groupHistory(g.id).length;
  await assert.rejects(carol.sendGroup(g.id, "still here?"));
  await settle();
  assert.equal(bob.groupHistory(g.id).length, before);
});

/** Waits for a group message with this text. */
async function nextGroupText(m: Messenger, text: string): Promise<ChatMessage> {
  for (;;) {
    const [x] = await nextGroup(m);
    if (x!.text === text) return x!;
  }
}

Deno.test("a group carrier stored but not handled before a crash is taken on the next start, once", async () => {
  await using net = await testNet();
  const alice = await net.user("alice");
  const bob = await net.user("bob");
  await alice.addContact("bob", bob.id);
  await alice.createGroup("ridge", ["bob"]);
  await until(() => bob.groups().length === 1, "the group");
  await alice.sendGroup("ridge", "before");
  await nextGroup(bob);
  // The crash: Bob's messenger stores and acknowledges the next carrier, and its group side never
  // sees it (the messenger asks `take` right after the row is stored).
  const groups = bob.groupChats as MessengerGroups;
  let dropped = 0;
  groups.take = (incoming) =>
    incoming.message.contentType === GROUP_MESSAGE_CONTENT_TYPE && ++dropped > 0;
  const sent = await alice.sendGroup("ridge", "lost in the crash?");
  await until(() => alice.groupHistory("ridge").at(-1)?.group?.deliveredTo === 1, "acknowledged");
  assert.equal(dropped, 1);
  assert.deepEqual(bob.groupHistory("ridge").map((m) => m.text), ["before"]);
  await bob.stop();
  const bob2 = await net.reopen("bob");
  await (bob2.groupChats as MessengerGroups).settled();
  assert.deepEqual(bob2.groupHistory("ridge").map((m) => m.text), ["before", sent.text]);
  // Taken once: the next start finds nothing left to take.
  await bob2.stop();
  const bob3 = await net.reopen("bob");
  await (bob3.groupChats as MessengerGroups).settled();
  assert.deepEqual(bob3.groupHistory("ridge").map((m) => m.text), ["before", sent.text]);
  const types = [GROUP_CHANGE_CONTENT_TYPE, GROUP_MESSAGE_CONTENT_TYPE];
  assert.deepEqual(profileParts(bob3.profile).store.groups.unhandled(types), []);
  await bob3.sendGroup("ridge", "still here");
  assert.equal((await nextGroup(alice))[0]!.text, "still here");
});

Deno.test("a group member who is not a contact opens sessions with the pinned key: not a stranger's", async () => {
  await using net = await testNet();
  const { alice, bob, carol } = await trio(net);
  // Every session message from Carol, as each receiver's sessions see its
  // sender: a first message if Carol opened the session with Bob, later ones
  // if Bob opened it first (which of the two distributes a key first is a
  // race); an envelope's receiver must be given her pinned key. A session
  // frame names no sender and needs no key: its session's peer sent it.
  const seen: (Uint8Array | undefined | "frame")[] = [];
  const decrypt = SessionManager.prototype.decrypt;
  const decryptFrame = SessionManager.prototype.decryptFrame;
  SessionManager.prototype.decryptFrame = async function (frame, isDuplicate) {
    const result = await decryptFrame.call(this, frame, isDuplicate);
    if (result.peer === carol.id) seen.push("frame");
    return result;
  };
  SessionManager.prototype.decrypt = function (sender, contentType, body) {
    if (
      sender.userId === carol.id &&
      (contentType === SessionContentType.Initial || contentType === SessionContentType.Ratchet)
    ) {
      seen.push(sender.encryptionPublicKey);
    }
    return decrypt.call(this, sender, contentType, body);
  };
  try {
    await alice.createGroup("pines", ["bob", "carol"]);
    await until(() => bob.groups().length === 1 && carol.groups().length === 1, "the group");
    await carol.sendGroup("pines", "hello bob");
    assert.equal((await nextGroup(bob))[0]!.text, "hello bob");
  } finally {
    SessionManager.prototype.decrypt = decrypt;
    SessionManager.prototype.decryptFrame = decryptFrame;
  }
  // Bob (Carol is no contact of his) opened Carol's first session with her pinned key, as Alice did.
  const pinned = profileParts(alice.profile).store.contacts.getById(carol.id)?.encryptionPublicKey;
  assert.ok(pinned !== undefined && seen.length >= 1, `${seen.length} session messages from Carol`);
  for (const key of seen) {
    if (key !== "frame") assert.deepEqual(key, pinned, "the pinned key, not a stranger's none");
  }
});

Deno.test("members who are not contacts and refused each other's first message (its one-time prekey used first) open new sessions", async () => {
  await using net = await testNet();
  const { alice, bob, carol } = await trio(net);
  // The session each of Bob and Carol opens first with the other names a
  // one-time prekey another member used first: it never decrypts.
  const firstOf = new Map<string, string>();
  let refused = 0;
  const decrypt = SessionManager.prototype.decrypt;
  SessionManager.prototype.decrypt = function (sender, contentType, body) {
    if (
      contentType === SessionContentType.Initial &&
      (sender.userId === bob.id || sender.userId === carol.id)
    ) {
      const id = toHex(body.subarray(0, 16));
      if (!firstOf.has(sender.userId)) firstOf.set(sender.userId, id);
      if (firstOf.get(sender.userId) === id) {
        refused++;
        return Promise.reject(new DecryptionError());
      }
    }
    return decrypt.call(this, sender, contentType, body);
  };
  try {
    const g = await alice.createGroup("scree", ["bob", "carol"]);
    await until(() => bob.groups().length === 1 && carol.groups().length === 1, "the group");
    await until(
      () => [bob, carol].every((m) => keptKeyring(m, g.id).chainCount >= 2),
      "bob's and carol's keys at each other",
      20_000,
    );
    await bob.sendGroup("scree", "from bob");
    assert.equal((await nextGroupText(carol, "from bob")).peer, bob.id);
    await carol.sendGroup("scree", "from carol");
    assert.equal((await nextGroupText(bob, "from carol")).peer, carol.id);
  } finally {
    SessionManager.prototype.decrypt = decrypt;
  }
  assert.ok(refused >= 1, "a first message was refused");
});
