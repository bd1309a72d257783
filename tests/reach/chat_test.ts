// Users behind NAT chat live, get "delivered", receive files, and still get
// mailbox delivery while offline: public ↔ behind NAT, and NAT ↔ NAT.
import assert from "node:assert/strict";
import {
  chat,
  duplicates,
  introduce,
  type Peer,
  Scenario,
  waitCardRelayed,
  waitRelayed,
} from "./_driver.ts";
import { skipUnlessLab } from "./_lab.ts";

const ignore = await skipUnlessLab();

/** Live-arrival bound of issue 14: send to display, median. */
const LIVE_P50_MS = 2000;
const MESSAGES = 10;
const FILE_BYTES = 8 * 1024 * 1024;

/** A file of random bytes; its SHA-256, hex. */
async function randomFile(path: string, bytes: number): Promise<string> {
  const data = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i += 65536) crypto.getRandomValues(data.subarray(i, i + 65536));
  await Deno.writeFile(path, data);
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", data));
  return Array.from(hash, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Both directions live, then a file to `bob`, then `bob` offline and back. */
async function liveChat(s: Scenario, alice: Peer, bob: Peer, label: string): Promise<void> {
  for (const [viewer, target] of [[alice, bob], [bob, alice]] as const) {
    if (target.host.address.startsWith("192.168.")) await waitCardRelayed(viewer, target);
  }
  await introduce(alice, "alice", bob, "bob");
  // Session set-up (X3DH, prekeys) is not what is measured.
  await chat(alice, bob, "bob", 1, "warm-up a");
  await chat(bob, alice, "alice", 1, "warm-up b");

  const ab = await chat(alice, bob, "bob", MESSAGES, "a→b");
  const ba = await chat(bob, alice, "alice", MESSAGES, "b→a");
  console.log(
    `${label}: send→display p50 alice→bob ${ab.p50.toFixed(0)} ms, bob→alice ${
      ba.p50.toFixed(0)
    } ms (max ${Math.max(...ab.latencies, ...ba.latencies).toFixed(0)} ms)`,
  );
  const links = (await alice.status()).connections.filter((c) => c.peer === bob.peerId);
  console.log(
    `${label}: alice's connections to bob: ${
      links.map((c) => c.address.includes("/p2p-circuit") ? "relayed" : "direct").join(", ") ||
      "none"
    }`,
  );
  assert.ok(ab.p50 <= LIVE_P50_MS, `alice→bob p50 ${ab.p50} ms`);
  assert.ok(ba.p50 <= LIVE_P50_MS, `bob→alice p50 ${ba.p50} ms`);
  for (const p of [alice, bob]) {
    const live = p.messages().filter((m) => !m.text.startsWith("warm-up"));
    assert.deepEqual(
      live.filter((m) => m.via !== "direct").map((m) => m.text),
      [],
      "not via mailbox",
    );
  }

  const path = `${s.dir}/eight-mib.bin`;
  const sha256 = await randomFile(path, FILE_BYTES);
  const sent = await alice.call<{ sha256: string; ms: number }>("send-file", {
    to: "bob",
    path,
  }, 180_000);
  assert.equal(sent.sha256, sha256);
  const got = await bob.waitEvent((e) => e.event === "file", 30_000, "the file");
  assert.equal(got.sha256, sha256);
  assert.equal(got.bytes, FILE_BYTES);
  console.log(
    `${label}: 8 MiB file in ${sent.ms.toFixed(0)} ms (${
      (FILE_BYTES / 1048576 / (sent.ms / 1000)).toFixed(1)
    } MiB/s)`,
  );

  // Offline: bob leaves, alice's message is stored in the network, alice
  // leaves too (so nothing comes directly), bob comes back.
  await bob.stop();
  const away = await alice.call<{ seq: number }>("send", {
    to: "bob",
    text: "while you were away",
  });
  await alice.waitEvent(
    (e) => e.event === "status" && e.seq === away.seq && e.state === "stored",
    60_000,
    `"stored" for the message to offline bob`,
  );
  await alice.stop();
  const back = await s.user(bob.host, "bob", { reopen: true });
  const m = await back.waitUntil(
    () => back.messages().find((m) => m.text === "while you were away"),
    60_000,
    "the mailbox message",
  );
  assert.equal(m.via, "mailbox");
  await new Promise((r) => setTimeout(r, 1000));
  for (const p of [alice, bob, back]) assert.deepEqual(duplicates(p), [], `${p.name}: duplicates`);
}

Deno.test({
  name: "reach: a public user and a user behind NAT chat live, send a file, use the mailbox",
  ignore,
  async fn() {
    await using s = await Scenario.create(2);
    const home = await s.lab.router("home");
    const alice = await s.user(await s.lab.publicHost("alice"), "alice");
    const bob = await s.user(await s.lab.hostBehind(home, "bob"), "bob");
    await waitRelayed(bob);
    await liveChat(s, alice, bob, "public ↔ NAT");
  },
});

Deno.test({
  name: "reach: users behind two different NATs chat live, send a file, use the mailbox",
  ignore,
  async fn() {
    await using s = await Scenario.create(2);
    const r1 = await s.lab.router("home1");
    const r2 = await s.lab.router("home2");
    const alice = await s.user(await s.lab.hostBehind(r1, "alice"), "alice");
    const bob = await s.user(await s.lab.hostBehind(r2, "bob"), "bob");
    await Promise.all([waitRelayed(alice), waitRelayed(bob)]);
    await liveChat(s, alice, bob, "NAT ↔ NAT");
  },
});
