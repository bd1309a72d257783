import assert from "node:assert/strict";
import { openEnvelope } from "../../lib/crypto/envelope.ts";
import { DecryptionError } from "../../lib/errors.ts";
import { GROUP_EPOCH_GRACE_MS, GroupContentType } from "../../lib/group/constants.ts";
import { GroupKeyring } from "../../lib/group/keyring.ts";
import { GroupLog } from "../../lib/group/membership.ts";
import { openWrap, sealGroupEnvelope, WRAP_OVERHEAD } from "../../lib/group/wire.ts";
import { copyOf, distribute, identities, keyrings } from "./_helpers.ts";

const text = (s: string) => new TextEncoder().encode(s);
const read = (b: Uint8Array) => new TextDecoder().decode(b);

Deno.test("group: a member added later reads none of the earlier ciphertexts", async () => {
  const [alice, bob, carol] = await identities(3);
  const { log } = await GroupLog.create(alice!, { name: "g", members: [bob!.public] });
  const rings = await keyrings(log.state(), [alice!, bob!, carol!], log.groupId);
  const before = [
    await rings.get(alice!.id)!.encrypt(log.state(), { body: text("before 1") }),
    await rings.get(bob!.id)!.encrypt(log.state(), { body: text("before 2") }),
  ];
  await log.append(alice!, { kind: "add", member: carol!.public });
  await distribute(log.state(), [alice!, bob!, carol!], rings);
  const after = await rings.get(alice!.id)!.encrypt(log.state(), { body: text("after") });
  const got = await rings.get(carol!.id)!.receive(log.state(), after.wraps.get(carol!.id)!);
  assert.equal(read(got.plaintext.body), "after");
  for (const out of before) {
    for (const wrap of out.wraps.values()) {
      await assert.rejects(rings.get(carol!.id)!.receive(log.state(), wrap), DecryptionError);
    }
    await assert.rejects(
      rings.get(carol!.id)!.receive(log.state(), out.message, { unwrapped: true }),
      DecryptionError,
    );
  }
});

Deno.test("group: a removed member reads nothing sent after the rotation", async () => {
  const [alice, bob, carol] = await identities(3);
  const { log } = await GroupLog.create(alice!, {
    name: "g",
    members: [bob!.public, carol!.public],
  });
  const people = [alice!, bob!, carol!];
  const rings = await keyrings(log.state(), people, log.groupId);
  const oldState = log.state();
  const early = await rings.get(alice!.id)!.encrypt(oldState, { body: text("early") });
  assert.equal(
    read(
      (await rings.get(carol!.id)!.receive(oldState, early.wraps.get(carol!.id)!)).plaintext.body,
    ),
    "early",
  );

  await log.append(alice!, { kind: "remove", target: carol!.signingPublicKey });
  const state = log.state();
  assert.equal(state.epoch, 1);
  await distribute(state, people, rings); // Carol is not in `state`: she gets nothing
  const late = await rings.get(alice!.id)!.encrypt(state, { body: text("late") });
  const lateBob = await rings.get(bob!.id)!.encrypt(state, { body: text("late too") });
  assert(!late.wraps.has(carol!.id));
  assert.deepEqual(late.needEnvelope, []);
  // Carol, who never applies her removal, gets every byte that went out.
  const carolRing = rings.get(carol!.id)!;
  for (const out of [late, lateBob]) {
    for (const wrap of out.wraps.values()) {
      assert.equal(openWrap(carolRing.inboxKeys, wrap), undefined);
      await assert.rejects(carolRing.receive(oldState, wrap), DecryptionError);
    }
    await assert.rejects(
      carolRing.receive(oldState, out.message, { unwrapped: true }),
      DecryptionError,
    );
  }
  // Bob reads Alice's; and refuses Carol's, sent on her old chain.
  assert.equal(
    read((await rings.get(bob!.id)!.receive(state, late.wraps.get(bob!.id)!)).plaintext.body),
    "late",
  );
  const fromCarol = await carolRing.encrypt(oldState, { body: text("still here") });
  await assert.rejects(
    rings.get(bob!.id)!.receive(state, fromCarol.message, { unwrapped: true }),
    DecryptionError,
  );
});

Deno.test("group: an older epoch is read during the grace period only", async () => {
  const [alice, bob, carol] = await identities(3);
  const { log } = await GroupLog.create(alice!, {
    name: "g",
    members: [bob!.public, carol!.public],
  });
  const t0 = 1_000_000;
  const rings = await keyrings(log.state(), [alice!, bob!, carol!], log.groupId, t0);
  const old = log.state();
  // Bob writes twice before he sees the removal.
  const m1 = await rings.get(bob!.id)!.encrypt(old, { body: text("1") });
  const m2 = await rings.get(bob!.id)!.encrypt(old, { body: text("2") });
  await log.append(alice!, { kind: "remove", target: carol!.signingPublicKey });
  const alices = rings.get(alice!.id)!;
  await alices.rotate(log.state(), { now: t0 + 1 });
  const ok = await alices.receive(log.state(), m1.wraps.get(alice!.id)!, { now: t0 + 1000 });
  assert.equal(read(ok.plaintext.body), "1");
  assert.equal(ok.epoch, 0);
  await assert.rejects(
    alices.receive(log.state(), m2.wraps.get(alice!.id)!, { now: t0 + 2 + GROUP_EPOCH_GRACE_MS }),
    DecryptionError,
  );
});

Deno.test("group: a member whose inbox key is not known gets the message in a static envelope", async () => {
  const [alice, bob] = await identities(2);
  const { log } = await GroupLog.create(alice!, { name: "g", members: [bob!.public] });
  const a = new GroupKeyring(log.groupId, alice!.signingPublicKey);
  const b = new GroupKeyring(log.groupId, bob!.signingPublicKey);
  const dist = await a.rotate(log.state());
  b.acceptDistribution(log.state(), alice!.signingPublicKey, dist.distribution);
  const out = await a.encrypt(log.state(), { body: text("hi") });
  assert.deepEqual(out.needEnvelope, [bob!.id]);
  const envelope = await sealGroupEnvelope(alice!, bob!.public, out.message);
  const opened = await openEnvelope(bob!, envelope);
  assert.equal(opened.contentType, GroupContentType.EnvelopedMessage);
  const got = await b.receive(log.state(), opened.body, { unwrapped: true });
  assert.equal(read(got.plaintext.body), "hi");
});

Deno.test("group: 50 members in one process, state and fan-out", async () => {
  const people = await identities(50);
  const [alice, ...rest] = people;
  const { log } = await GroupLog.create(alice!, {
    name: "fifty",
    members: rest.map((p) => p.public),
  });
  const copies = await Promise.all(rest.slice(0, 3).map(() => copyOf(log)));
  for (const c of copies) assert.deepEqual(c.state(), log.state());
  const rings = await keyrings(log.state(), people, log.groupId);
  const body = new Uint8Array(1024).fill(42);
  const started = performance.now();
  const out = await rings.get(alice!.id)!.encrypt(log.state(), { body });
  const sendMs = performance.now() - started;
  assert.equal(out.wraps.size, 49);
  const sizes = new Set([...out.wraps.values()].map((w) => w.length));
  assert.deepEqual([...sizes], [out.message.length + WRAP_OVERHEAD]);
  // No two members' copies share their first 33 bytes.
  assert.equal(new Set([...out.wraps.values()].map((w) => w.subarray(0, 33).join())).size, 49);
  for (const p of rest) {
    const got = await rings.get(p.id)!.receive(log.state(), out.wraps.get(p.id)!);
    assert.deepEqual(got.plaintext.body, body);
    assert.equal(got.senderId, alice!.id);
  }
  console.log(
    `FIGURE group-50 fan-out of 1 KiB: ${sendMs.toFixed(1)} ms, wrap ${
      out.message.length + WRAP_OVERHEAD
    } bytes`,
  );
});
