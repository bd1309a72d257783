/**
 * `deno task demo`: a local DIM network on 127.0.0.1. A bootstrap node and
 * two users start; Alice and Bob know only each other's user IDs, find each
 * other's cards through the DHT, and exchange end-to-end encrypted
 * messages, one of them while Bob is offline. Prints a transcript with
 * timings, and cleans up after itself.
 *
 * @module
 */
import { createMessenger, type Messenger } from "../lib/messenger/messenger.ts";
import { createProfile, openProfile } from "../lib/profile/profile.ts";
import { createStorageNode } from "../lib/storage_node.ts";

const LOOPBACK = ["/ip4/127.0.0.1/tcp/0"];
const t0 = performance.now();
const ms = () => `${(performance.now() - t0).toFixed(0).padStart(5)} ms`;
const say = (who: string, text: string) => console.log(`${ms()}  ${who.padEnd(9)} ${text}`);

const dir = await Deno.makeTempDir({ prefix: "dim-demo-" });
const nodes = [];
try {
  for (let i = 0; i < 3; i++) {
    const node = await createStorageNode({
      listen: LOOPBACK,
      bootstrap: nodes.length ? [nodes[0]!.addresses[0]!] : [],
    });
    nodes.push(node);
    say(`node ${i + 1}`, `bootstrap node up at ${node.addresses[0]}`);
  }
  const bootstrap = [nodes[0]!.addresses[0]!];
  const open = async (name: string, create: boolean) => {
    const home = `${dir}/${name}`;
    const passphrase = `demo passphrase of ${name}`;
    const profile = create
      ? await createProfile({ home, passphrase, displayName: name })
      : await openProfile({ home, passphrase });
    return await createMessenger(profile, {
      listen: LOOPBACK,
      bootstrap,
      messaging: { retryBaseMs: 200, retryMaxMs: 1000, mailboxPollMs: 1000 },
    });
  };

  const alice = await open("Alice", true);
  say("Alice", `identity created, card published: ${alice.id}`);
  let bob = await open("Bob", true);
  say("Bob", `identity created, card published: ${bob.id}`);

  await alice.addContact("bob", bob.id);
  const card = alice.profile.contact("bob");
  say("Alice", `found Bob's card in the DHT (fingerprint ${card.fingerprint})`);
  await bob.addContact("alice", alice.id);
  say(
    "Bob",
    `found Alice's card in the DHT (fingerprint ${bob.profile.contact("alice").fingerprint})`,
  );
  say("both", `safety number ${alice.profile.safetyNumber("bob")}`);

  const inbox = (m: Messenger) => m.messages()[Symbol.asyncIterator]();
  let bobInbox = inbox(bob);
  const aliceInbox = inbox(alice);

  const exchange = async (
    from: Messenger,
    to: string,
    text: string,
    reader: AsyncIterator<{ text: string }>,
    reader_name: string,
    how: string,
  ) => {
    const start = performance.now();
    const sent = await from.send(to, text);
    say(from === alice ? "Alice" : "Bob", `→ "${text}" (${how})`);
    const got = await reader.next();
    say(reader_name, `← "${got.value?.text}" (${(performance.now() - start).toFixed(1)} ms)`);
    const acked = await from.waitFor(sent.seq, { signal: AbortSignal.timeout(10_000) });
    say(from === alice ? "Alice" : "Bob", `  ✓ ${acked.state}: signed acknowledgement verified`);
  };

  // A session's first message goes in the signed HPKE envelope with the X3DH header; once the
  // peer holds the session, messages are session frames (encrypted headers, no signature).
  await exchange(
    alice,
    "bob",
    "Hi Bob, it's Alice. No server in between!",
    bobInbox,
    "Bob",
    "X3DH + ratchet, sealed with HPKE, signed",
  );
  await exchange(
    bob,
    "alice",
    "Hi Alice! Only we can read this.",
    aliceInbox,
    "Alice",
    "ratchet, session frame with an encrypted header",
  );

  await bob.stop();
  say("Bob", "goes offline");
  const offline = await alice.send("bob", "Bob, this waits for you in the network.");
  say("Alice", `→ "Bob, this waits for you in the network."`);
  const stored = await alice.waitFor(offline.seq, {
    orStored: true,
    signal: AbortSignal.timeout(15_000),
  });
  say(
    "Alice",
    `  … Bob unreachable: session frame ${stored.state} on the nodes nearest his mailbox`,
  );

  bob = await open("Bob", false);
  bobInbox = inbox(bob);
  say("Bob", "comes back online and checks his mailbox");
  const got = await bobInbox.next();
  say("Bob", `← "${got.value?.text}" (via ${got.value?.via})`);
  await alice.waitFor(offline.seq, { signal: AbortSignal.timeout(15_000) });
  say("Alice", "  ✓ delivered: Bob's signed receipt arrived");

  await alice.stop();
  await bob.stop();
  console.log(`\nDone in ${(performance.now() - t0).toFixed(0)} ms. Every message was end-to-end`);
  console.log("encrypted; the bootstrap nodes only saw sealed envelopes and session frames.");
} finally {
  for (const r of nodes) await r.stop();
  await Deno.remove(dir, { recursive: true });
}
