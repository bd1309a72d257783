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
import type { DhtNode } from "../../lib/dht/node.ts";
import { cardAddresses, relayOf } from "../../lib/messenger/card_addresses.ts";
import {
  CARD_CHANGE_MIN_INTERVAL_MS,
  CARD_CHANGE_QUIET_MS,
  Republisher,
} from "../../lib/messenger/republish.ts";
import { transportFor } from "../../lib/messenger/transport.ts";
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
  // The nodes that kept Bob's mailbox are join hints for his next start.
  const kept = bob2.node.peerBook.hints.find((h) => h.source === `mailbox:${bob.id}`);
  const nodes = new Set([alice.node.peerId, ...net.storageNodes.map((n) => n.node.peerId)]);
  assert.ok(kept && kept.multiaddrs.length > 0, "mailbox holders kept as join hints");
  assert.ok(
    kept.multiaddrs.every((a) => nodes.has(a.split("/p2p/").at(-1)!)),
    `${kept.multiaddrs}`,
  );
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

Deno.test("waitFor: hundreds of waits at once each get their own message; one signal's abort ends those still waiting", async () => {
  await using net = await testNet();
  const alice = await net.user("alice");
  const bob = await net.user("bob");
  await alice.addContact("bob", bob.id);
  const controller = new AbortController();
  const signal = controller.signal;
  const sent = await Promise.all(Array.from({ length: 300 }, (_, i) => alice.send("bob", `m${i}`)));
  // Two waits per message, and waits for messages that will never be delivered.
  const waits = sent.flatMap((m) => [alice.waitFor(m.seq, { signal }), alice.waitFor(m.seq)]);
  const never = Array.from({ length: 50 }, (_, i) => alice.waitFor(1_000_000 + i, { signal }));
  const got = await Promise.all(waits);
  assert.deepEqual(got.map((m) => m.seq), sent.flatMap((m) => [m.seq, m.seq]));
  assert.ok(got.every((m) => m.state === "delivered"));
  const reason = new Error("gave up");
  controller.abort(reason);
  const ended = await Promise.allSettled(never);
  assert.ok(ended.every((r) => r.status === "rejected" && r.reason === reason));
  // A delivered message is delivered whatever the signal says; an aborted
  // signal ends a wait that has no answer yet at once.
  assert.equal((await alice.waitFor(sent[0]!.seq, { signal })).state, "delivered");
  await assert.rejects(alice.waitFor(2_000_000, { signal }), (err) => err === reason);
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
  const real = await unlockKeystore(
    `${net.dir}/bob/identity.key`,
    "bob: plum vortex quietly sings",
  );
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

const ME = "12D3KooWMe";
const relayAddr = (relay: string, host: string) =>
  `/ip4/${host}/tcp/4001/p2p/${relay}/p2p-circuit/p2p/${ME}`;
/** The lab's rule: 198.18.0.0/15 counts as public, like any non-reserved address. */
const isPublic = (a: string) =>
  !/^\/ip4\/(10\.|127\.|192\.168\.)/.test(a.split("/p2p-circuit")[0]!);

Deno.test("card addresses: relays first and direct ones left off while private, each relay on the card", async (t) => {
  const lan = `/ip4/10.0.0.2/tcp/4001/p2p/${ME}`;
  const loop = `/ip4/127.0.0.1/tcp/4001/p2p/${ME}`;
  const wild = `/ip4/0.0.0.0/tcp/4001/p2p/${ME}`;
  const a1 = relayAddr("12D3KooWRelayA", "198.18.0.1");
  const a2 = relayAddr("12D3KooWRelayA", "10.9.9.9");
  const b1 = relayAddr("12D3KooWRelayB", "198.18.1.1");
  const all = [wild, loop, lan, a2, a1, b1];

  await t.step("private: relays in turn, public hop first; no direct address", () => {
    assert.deepEqual(cardAddresses(all, { status: "private", isPublic }), [a1, b1, a2]);
  });
  await t.step("private with a UPnP mapping: the mapped address after the relays", () => {
    const mapped = "/ip4/198.18.0.21/tcp/40001";
    assert.deepEqual(
      cardAddresses(all, { status: "private", isPublic, mapped, peerId: ME }),
      [a1, b1, a2, `${mapped}/p2p/${ME}`],
    );
  });
  await t.step("private with no relay yet: the direct addresses, so the LAN can dial", () => {
    assert.deepEqual(cardAddresses([loop, lan], { status: "private", isPublic }), [lan, loop]);
  });
  await t.step(
    "unknown or public: mapped, direct (public first, loopback last), then relays",
    () => {
      const pub = `/ip4/198.18.0.9/tcp/4001/p2p/${ME}`;
      const mapped = `/ip4/198.18.0.21/tcp/40001/p2p/${ME}`;
      for (const status of ["unknown", "public"] as const) {
        assert.deepEqual(
          cardAddresses([loop, lan, a1, pub, mapped], {
            status,
            isPublic,
            mapped: "/ip4/198.18.0.21/tcp/40001",
          }),
          [mapped, pub, lan, loop, a1],
        );
      }
    },
  );
  await t.step("within a card's limits: 16 addresses of at most 256 bytes, no repeats", () => {
    const many = Array.from(
      { length: 12 },
      (_, i) => relayAddr(`12D3KooWRelay${i % 3}`, `198.18.2.${i}`),
    );
    const long = relayAddr(`12D3KooW${"x".repeat(250)}`, "198.18.3.1");
    const picked = cardAddresses([...many, ...many, long, lan, lan, lan, lan, lan], {
      status: "unknown",
      isPublic,
    });
    assert.equal(picked.length, 13);
    assert.ok(!picked.includes(long));
    assert.equal(new Set(picked).size, picked.length);
    const capped = cardAddresses(
      Array.from({ length: 20 }, (_, i) => `/ip4/198.18.4.${i}/tcp/1/p2p/${ME}`),
      { status: "public", isPublic },
    );
    assert.equal(capped.length, 16);
    // Three relays, four addresses each: all three stay on a card cut to three.
    const three = cardAddresses(many, { status: "private", isPublic, max: 3 });
    assert.deepEqual(three.map(relayOf).sort(), [
      "12D3KooWRelay0",
      "12D3KooWRelay1",
      "12D3KooWRelay2",
    ]);
  });
});

/** Timers under the test's hand: `advance` runs the ones due. */
function fakeTimers() {
  let now = 0;
  let timers: { at: number; run: () => void; id: number }[] = [];
  let nextId = 1;
  return {
    clock: () => now,
    setTimer: (run: () => void, ms: number) => {
      const id = nextId++;
      timers.push({ at: now + ms, run, id });
      return id;
    },
    clearTimer: (id: unknown) => {
      timers = timers.filter((t) => t.id !== id);
    },
    async advance(ms: number) {
      const end = now + ms;
      // Lets finished publications schedule their follow-up first.
      for (let i = 0; i < 5; i++) await Promise.resolve();
      for (;;) {
        const due = timers.filter((t) => t.at <= end).sort((a, b) => a.at - b.at)[0];
        if (due === undefined) break;
        timers = timers.filter((t) => t !== due);
        now = due.at;
        due.run();
        // Lets the publication settle and its follow-up be scheduled.
        for (let i = 0; i < 5; i++) await Promise.resolve();
      }
      now = end;
    },
  };
}

Deno.test("card republication: a burst of address changes is one publication, at most one per 10 s", async () => {
  assert.equal(CARD_CHANGE_QUIET_MS, 1_000);
  assert.equal(CARD_CHANGE_MIN_INTERVAL_MS, 10_000);
  const timers = fakeTimers();
  const starts: number[] = [];
  const r = new Republisher(() => {
    starts.push(timers.clock());
    return Promise.resolve();
  }, timers);
  // Two reservations and the reachability change within 0.3 s: one card, 1 s after the first.
  r.changed();
  await timers.advance(100);
  r.changed();
  await timers.advance(200);
  r.changed();
  assert.ok(r.pending);
  await timers.advance(2_000);
  assert.deepEqual(starts, [1_000]);
  // A relay lost and replaced 3 s later: published 10 s after the last publication.
  r.changed();
  await timers.advance(5_000);
  r.changed();
  await timers.advance(20_000);
  assert.deepEqual(starts, [1_000, 11_000]);
  // Quiet for long (changed at 27.3 s): the quiet period alone again.
  r.changed();
  await timers.advance(5_000);
  assert.deepEqual(starts, [1_000, 11_000, 28_300]);
  r.stop();
  r.changed();
  await timers.advance(60_000);
  assert.equal(starts.length, 3);
  assert.ok(!r.pending);
});

Deno.test("card republication: a change during a publication is published after it; a failure does not stop later ones", async () => {
  const timers = fakeTimers();
  const starts: number[] = [];
  let finish: (() => void) | undefined;
  let fail = true;
  const r = new Republisher(() => {
    starts.push(timers.clock());
    if (fail) {
      fail = false;
      return Promise.reject(new Error("no peer took the card"));
    }
    return new Promise<void>((resolve) => finish = resolve);
  }, timers);
  r.changed();
  await timers.advance(1_000);
  assert.deepEqual(starts, [1_000]);
  r.changed();
  await timers.advance(10_000);
  assert.deepEqual(starts, [1_000, 11_000]);
  // Changed while the second publication runs: one more, once it ends and 10 s have passed.
  r.changed();
  r.changed();
  assert.ok(!r.pending);
  finish!();
  await timers.advance(30_000);
  assert.deepEqual(starts, [1_000, 11_000, 21_000]);
  finish!();
  r.stop();
});

Deno.test("card republication: a failed publication is tried again, less often after each failure", async () => {
  const timers = fakeTimers();
  const starts: number[] = [];
  let failures = 3;
  const r = new Republisher(() => {
    starts.push(timers.clock());
    if (failures > 0) {
      failures--;
      return Promise.reject(new Error("no peer took the card"));
    }
    return Promise.resolve();
  }, timers);
  r.changed();
  await timers.advance(200_000);
  // 1 s quiet period, then 10 s, 20 s and 40 s after each failed start.
  assert.deepEqual(starts, [1_000, 11_000, 31_000, 71_000]);
  assert.ok(!r.pending, "nothing more once a publication went through");
  r.changed();
  await timers.advance(1_000);
  r.changed();
  await timers.advance(10_000);
  assert.deepEqual(starts.slice(4), [201_000, 211_000], "the interval is back to 10 s");
  r.stop();
});

Deno.test("the transport counts its own node as a mailbox replica only while it is not private", async () => {
  const asked: (boolean | undefined)[] = [];
  let status: "unknown" | "public" | "private" = "unknown";
  const node = {
    peerId: ME,
    get reachability() {
      return { status, relays: [] };
    },
    getClosestPeers: (_key: Uint8Array, options: { includeSelf?: boolean }) => {
      asked.push(options.includeSelf);
      return Promise.resolve([]);
    },
  } as unknown as DhtNode;
  const transport = transportFor(node);
  for (const s of ["unknown", "public", "private"] as const) {
    status = s;
    await transport.closestPeers(new Uint8Array(32), {
      count: 3,
      signal: AbortSignal.timeout(1000),
    });
  }
  assert.deepEqual(asked, [true, true, false]);
});
