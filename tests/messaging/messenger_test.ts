import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { KeyChangedError, UnknownContactError } from "../../lib/profile/contacts.ts";
import { InvalidIdError, KeystoreError } from "../../lib/errors.ts";
import { Identity } from "../../lib/crypto/identity.ts";
import { TransferRefusedError } from "../../lib/messaging/file_wire.ts";
import { unlockKeystore } from "../../lib/crypto/keystore.ts";
import { signCard } from "../../lib/record/card.ts";
import { openPrekeyBundle, PREKEY_RECORD_TYPE } from "../../lib/record/prekey.ts";
import { recordKey } from "../../lib/record/record.ts";
import { FAST_MESSAGING, nextMessages, testNet } from "../_support/network.ts";

Deno.test("a direct message arrives exactly once and the sender sees the signed ack", async () => {
  await using net = await testNet();
  const alice = await net.user("alice");
  const bob = await net.user("bob");
  await alice.addContact("bob", bob.id);
  const sent = await alice.send("bob", "hello bob");
  assert.equal(sent.state, "pending");
  const [got] = await nextMessages(bob, 1);
  assert.equal(got?.text, "hello bob");
  assert.equal(got?.peer, alice.id);
  assert.equal(got?.via, "direct");
  assert.equal(got?.protection, "ratchet");
  const delivered = await alice.waitFor(sent.seq, { signal: AbortSignal.timeout(5000) });
  assert.equal(delivered.state, "delivered");
  assert.deepEqual(alice.profile.outbox(), []);
  assert.equal(bob.profile.history(alice.id).length, 1);
});

Deno.test("messages to an offline user are stored in the network and delivered once, in order, on return", async () => {
  await using net = await testNet(2);
  // Alice retries rarely, so the copies in the network are what reach Bob.
  const alice = await net.user("alice", { messaging: { ...FAST_MESSAGING, retryBaseMs: 60_000 } });
  const bob = await net.user("bob");
  await alice.addContact("bob", bob.id);
  const prekeysKey = recordKey(PREKEY_RECORD_TYPE, bob.id);
  const oneTimePrekeys = async () =>
    (await openPrekeyBundle((await alice.node.get(prekeysKey))!)).oneTimePrekeys.length;
  const before = await oneTimePrekeys();
  await bob.stop();
  const sent = [];
  for (const text of ["one", "two", "three"]) sent.push(await alice.send("bob", text));
  for (const m of sent) {
    const stored = await alice.waitFor(m.seq, {
      orStored: true,
      signal: AbortSignal.timeout(10_000),
    });
    assert.equal(stored.state, "stored");
  }
  assert.equal(alice.profile.outbox().length, 3, "still in the outbox until acknowledged");

  const bob2 = await net.reopen("bob");
  const got = await nextMessages(bob2, 3);
  assert.deepEqual(got.map((m) => m.text), ["one", "two", "three"]);
  assert.ok(got.every((m) => m.via === "mailbox"));
  assert.ok(got.every((m) => m.protection === "ratchet"), "prekeys from the DHT: forward secret");
  // Bob republished his bundle without the one-time prekey Alice used.
  for (let i = 0; i < 50 && (await oneTimePrekeys()) !== before - 1; i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(await oneTimePrekeys(), before - 1);
  for (const m of sent) await alice.waitFor(m.seq, { signal: AbortSignal.timeout(10_000) });
  assert.deepEqual(alice.profile.outbox(), []);
  // The outbox retry and the mailbox both carried them: still one copy each.
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(bob2.profile.history(alice.id).length, 3);
});

Deno.test("a conversation keeps the sender's order", async () => {
  await using net = await testNet();
  const alice = await net.user("alice");
  const bob = await net.user("bob");
  await alice.addContact("bob", bob.id);
  for (let i = 0; i < 20; i++) await alice.send("bob", `m${i}`);
  const got = await nextMessages(bob, 20);
  assert.deepEqual(got.map((m) => m.text), Array.from({ length: 20 }, (_, i) => `m${i}`));
});

Deno.test("a message from someone who is not a contact is labelled as unknown", async () => {
  await using net = await testNet();
  const alice = await net.user("alice");
  const mallory = await net.user("mallory");
  await mallory.addContact("alice", alice.id);
  await mallory.send("alice", "hi, it's your bank");
  const [got] = await nextMessages(alice, 1);
  assert.equal(got?.contact, undefined);
  assert.equal(got?.verified, false);
  assert.equal(got?.peer, mallory.id);
});

Deno.test("contacts: mistyped IDs, unknown names and verification", async () => {
  await using net = await testNet();
  const alice = await net.user("alice");
  const bob = await net.user("bob");
  const typo = bob.id.slice(0, 10) + (bob.id[10] === "a" ? "b" : "a") + bob.id.slice(11);
  await assert.rejects(alice.addContact("bob", typo), InvalidIdError);
  await assert.rejects(alice.send("nobody", "hi"), UnknownContactError);
  const c = await alice.addContact("bob", `dim:${bob.id.toUpperCase()}`);
  assert.equal(c.id, bob.id, "IDs are stored in their canonical lower case");
  assert.equal(c.verified, false);
  const carol = await net.user("carol");
  await assert.rejects(alice.addContact("bob", carol.id), /the name "bob" is taken/);
  await assert.rejects(alice.addContact("bobby", bob.id), /already saved as "bob"/);
  assert.equal(c.displayName, "bob");
  await bob.addContact("alice", alice.id);
  assert.equal(alice.profile.safetyNumber("bob"), bob.profile.safetyNumber("alice"));
  assert.match(alice.profile.safetyNumber("bob"), /^(\d{5} ){11}\d{5}$/);
  alice.profile.verifyContact("bob");
  assert.equal(alice.profile.contact("bob").verified, true);
  assert.equal(alice.profile.removeContact("bob"), true);
  assert.deepEqual(alice.profile.contacts(), []);
});

Deno.test("a changed key in the network blocks sending until re-verified", async () => {
  await using net = await testNet();
  const alice = await net.user("alice");
  const bob = await net.user("bob");
  await alice.addContact("bob", bob.id);
  // Bob's identity with a new encryption key publishes a newer card.
  const real = await unlockKeystore(`${net.dir}/bob/identity.key`, "pass-bob");
  const rekeyed = await Identity.fromSeeds({
    signing: real.exportSeeds().signing,
    encryption: crypto.getRandomValues(new Uint8Array(32)),
  });
  assert.equal(rekeyed.id, bob.id);
  const card = await signCard(rekeyed, {
    displayName: "bob",
    peerId: bob.node.peerId,
    addresses: bob.addresses,
    seq: Date.now() + 60_000,
  });
  await alice.node.put(card.key, card.bytes);
  await alice.resolveCard(bob.id, { fresh: true });
  assert.equal(alice.profile.contact("bob").keyChanged, true);
  await assert.rejects(alice.send("bob", "x"), KeyChangedError);
  alice.profile.verifyContact("bob");
  assert.equal(alice.profile.contact("bob").keyChanged, false);
  assert.equal((await alice.send("bob", "x")).state, "pending");
});

Deno.test("a wrong passphrase is refused and the data directory stays usable", async () => {
  await using net = await testNet();
  const alice = await net.user("alice");
  await alice.stop();
  await assert.rejects(net.reopen("alice", { passphrase: "wrong" }), (e) => {
    assert.ok(e instanceof KeystoreError);
    assert.equal(e.code, "wrong-passphrase");
    return true;
  });
  const again = await net.reopen("alice");
  assert.equal(again.id, alice.id);
});

Deno.test("sendFile() delivers a file to a contact's download folder; strangers are refused", async () => {
  await using net = await testNet();
  const downloads = `${net.dir}/downloads`;
  const alice = await net.user("alice");
  const bob = await net.user("bob", { downloadDir: downloads });
  const mallory = await net.user("mallory");
  await alice.addContact("bob", bob.id);
  await bob.addContact("alice", alice.id);
  await mallory.addContact("bob", bob.id);
  const data = new Uint8Array(300_000).map((_, i) => (i * 131 + 7) % 251);
  const path = `${net.dir}/photo.jpg`;
  await Deno.writeFile(path, data);
  const received = new Promise<CustomEvent>((resolve) =>
    bob.addEventListener("file", (e) => resolve(e as CustomEvent), { once: true })
  );
  const sent = await alice.sendFile("bob", path);
  assert.equal(sent.bytes, data.length);
  await received;
  assert.deepEqual(await Deno.readFile(`${downloads}/photo.jpg`), data);
  // Again: the first copy is kept, the second gets a free name.
  await alice.sendFile("bob", path);
  assert.deepEqual(await Deno.readFile(`${downloads}/photo (1).jpg`), data);
  await assert.rejects(mallory.sendFile("bob", path), TransferRefusedError);
  assert.deepEqual((await Array.fromAsync(Deno.readDir(downloads))).length, 2);
});

/** Deletes every session a closed user's database holds, as a restored old backup would lack them. */
function forgetSessions(home: string): void {
  const raw = new DatabaseSync(`${home}/dim.db`);
  raw.exec("DELETE FROM sessions");
  raw.close();
}

Deno.test("a mailbox copy the recipient cannot decrypt gets no receipt: the sender does not count it delivered", async () => {
  await using net = await testNet(2);
  // Alice does not retry within the test: the copy in the network is what Bob gets.
  const alice = await net.user("alice", {
    messaging: { ...FAST_MESSAGING, retryBaseMs: 60_000, retryMaxMs: 60_000 },
  });
  const bob = await net.user("bob");
  await alice.addContact("bob", bob.id);
  const first = await alice.send("bob", "one");
  await nextMessages(bob, 1);
  await alice.waitFor(first.seq, { signal: AbortSignal.timeout(5000) });
  // Bob loses his session with Alice (say, a restored backup): her next
  // ratchet message cannot be decrypted.
  await bob.stop();
  forgetSessions(`${net.dir}/bob`);
  const second = await alice.send("bob", "two");
  const stored = await alice.waitFor(second.seq, {
    orStored: true,
    signal: AbortSignal.timeout(10_000),
  });
  assert.equal(stored.state, "stored");
  const bob2 = await net.reopen("bob");
  assert.equal(await bob2.fetchMailbox(), 0);
  // Receipts go out in the background: give one time to arrive.
  await new Promise((r) => setTimeout(r, 1000));
  assert.deepEqual(bob2.profile.history(alice.id).map((m) => m.text), ["one"]);
  assert.notEqual(
    alice.profile.history(bob.id).find((m) => m.seq === second.seq)?.state,
    "delivered",
  );
  assert.equal(alice.profile.outbox().length, 1, "still Alice's to deliver");
});

Deno.test("a recipient that lost its sessions gets the next messages anyway, in a new session", async () => {
  await using net = await testNet(2);
  const alice = await net.user("alice", { messaging: { ...FAST_MESSAGING, retryBaseMs: 60_000 } });
  const bob = await net.user("bob");
  await alice.addContact("bob", bob.id);
  await bob.addContact("alice", alice.id);
  await alice.send("bob", "one");
  await nextMessages(bob, 1);
  // Bob answers, so Alice's next message is a plain ratchet message.
  const answer = await bob.send("alice", "hi alice");
  await nextMessages(alice, 1);
  await bob.waitFor(answer.seq, { signal: AbortSignal.timeout(5000) });
  await bob.stop();
  forgetSessions(`${net.dir}/bob`);
  const bob2 = await net.reopen("bob");
  const sent = [await alice.send("bob", "two"), await alice.send("bob", "three")];
  const got = await nextMessages(bob2, 2);
  assert.deepEqual(got.map((m) => m.text), ["two", "three"]);
  assert.ok(got.every((m) => m.protection === "ratchet"), "still forward secret");
  for (const m of sent) {
    assert.equal(
      (await alice.waitFor(m.seq, { signal: AbortSignal.timeout(5000) })).state,
      "delivered",
    );
  }
  assert.deepEqual(bob2.profile.history(alice.id).map((m) => m.text), [
    "one",
    "hi alice",
    "two",
    "three",
  ]);
});
