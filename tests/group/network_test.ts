/**
 * Group chats between real nodes and real SQLite files: create, chat,
 * members who are not contacts, add and remove (against the ciphertexts a
 * member actually receives), a member offline and back, a restart.
 *
 * @module
 */
import assert from "node:assert/strict";
import type { Messenger } from "../../lib/messenger/messenger.ts";
import type { ChatMessage } from "../../lib/profile/chat_message.ts";
import { FAST_MESSAGING, nextMessages, type TestNet, testNet } from "../_support/network.ts";

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

/** The next group message `m` receives. */
async function nextGroup(m: Messenger, n = 1, ms = 15_000): Promise<ChatMessage[]> {
  const got = await nextMessages(m, n, ms);
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
  await until(() => true, "");
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
});
