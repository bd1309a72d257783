import assert from "node:assert/strict";
import { RECORD_VERSION } from "../../lib/record/record.ts";
import { decodeChange, signChange } from "../../lib/group/change.ts";
import { MAX_CHANGE_LENGTH, MAX_PENDING_CHANGES } from "../../lib/group/constants.ts";
import { GroupLog, InvalidGroupChangeError } from "../../lib/group/membership.ts";
import { copyOf, identities, permutations } from "./_helpers.ts";

const ids = (log: GroupLog) => log.state().members.map((m) => m.id);

Deno.test("membership: every arrival order of two admins' concurrent changes gives one state", async () => {
  const [alice, bob, carol, dave, erin, frank] = await identities(6);
  const { log: a } = await GroupLog.create(alice!, {
    name: "club",
    members: [bob!.public, carol!.public, dave!.public],
  });
  await a.append(alice!, { kind: "promote", target: bob!.signingPublicKey });
  const b = await copyOf(a);
  // From the same heads, each admin changes membership without seeing the other.
  const concurrent = [
    await a.append(alice!, { kind: "add", member: erin!.public }),
    await a.append(alice!, { kind: "rename", name: "alice's club" }),
    await b.append(bob!, { kind: "remove", target: dave!.signingPublicKey }),
    await b.append(bob!, { kind: "add", member: frank!.public }),
    await b.append(bob!, { kind: "rename", name: "bob's club" }),
  ];
  const [create, promote] = a.changes();
  const states = new Set<string>();
  for (const order of permutations([promote!, ...concurrent])) {
    const log = await GroupLog.open(create!);
    for (const bytes of order) await log.receive(bytes);
    assert.equal(log.pendingCount, 0);
    states.add(JSON.stringify(log.state(), (_k, v) => v instanceof Uint8Array ? [...v] : v));
  }
  assert.equal(states.size, 1, "all 720 orders agree");
  const state = JSON.parse([...states][0]!);
  assert.deepEqual(
    state.members.map((m: { id: string }) => m.id).sort(),
    [alice!.id, bob!.id, carol!.id, erin!.id, frank!.id].sort(),
  );
  assert.equal(state.epoch, 1);
  assert.equal(state.heads.length, 2);
  // The two renames are concurrent: the later in replay order (by hash) wins, for everyone.
  assert(["alice's club", "bob's club"].includes(state.name));
});

Deno.test("membership: two admins who remove each other concurrently both stay", async () => {
  const [alice, bob, carol] = await identities(3);
  const { log: a } = await GroupLog.create(alice!, {
    name: "g",
    members: [bob!.public, carol!.public],
  });
  await a.append(alice!, { kind: "promote", target: bob!.signingPublicKey });
  const b = await copyOf(a);
  const r1 = await a.append(alice!, { kind: "remove", target: bob!.signingPublicKey });
  const r2 = await b.append(bob!, { kind: "remove", target: alice!.signingPublicKey });
  await a.receive(r2);
  await b.receive(r1);
  assert.deepEqual(a.state(), b.state());
  assert.deepEqual(a.state().admins, [alice!.id, bob!.id].sort());
  assert.equal(a.state().epoch, 0);
  // Once either has seen both, a removal causally after them stands.
  await b.receive(await a.append(alice!, { kind: "remove", target: bob!.signingPublicKey }));
  assert.deepEqual(ids(b), [alice!.id, carol!.id].sort());
});

Deno.test("membership: a demoted admin's concurrent add is void", async () => {
  const [alice, bob, carol, yves] = await identities(4);
  const { log: a } = await GroupLog.create(alice!, {
    name: "g",
    members: [bob!.public, carol!.public],
  });
  await a.append(alice!, { kind: "promote", target: bob!.signingPublicKey });
  const b = await copyOf(a);
  const add = await b.append(bob!, { kind: "add", member: yves!.public });
  await a.append(alice!, { kind: "demote", target: bob!.signingPublicKey });
  await a.receive(add);
  assert(!ids(a).includes(yves!.id));
  assert.deepEqual(a.state().admins, [alice!.id]);
});

Deno.test("membership: a removal beats a concurrent re-add of the same member", async () => {
  const [alice, bob, carol] = await identities(3);
  const { log: a } = await GroupLog.create(alice!, {
    name: "g",
    members: [bob!.public, carol!.public],
  });
  await a.append(alice!, { kind: "promote", target: bob!.signingPublicKey });
  const b = await copyOf(a);
  await a.append(alice!, { kind: "remove", target: carol!.signingPublicKey });
  const readd = await a.append(alice!, { kind: "add", member: carol!.public });
  assert(ids(a).includes(carol!.id));
  const remove = await b.append(bob!, { kind: "remove", target: carol!.signingPublicKey });
  await a.receive(remove);
  for (const bytes of a.changes()) await b.receive(bytes);
  assert(!ids(a).includes(carol!.id));
  assert.deepEqual(a.state(), b.state());
  assert(readd.length > 0);
});

Deno.test("membership: forged, non-admin and removed members' changes are refused", async (t) => {
  const [alice, bob, carol, mallory] = await identities(4);
  const { log: a } = await GroupLog.create(alice!, {
    name: "g",
    members: [bob!.public, carol!.public],
  });
  const heads = () => a.state().heads as string[];
  const groupId = a.groupId;

  await t.step("a flipped signature bit", async () => {
    const bytes = await signChange(alice!, {
      groupId,
      parents: heads(),
      op: { kind: "add", member: mallory!.public },
    });
    bytes[bytes.length - 1]! ^= 1;
    await assert.rejects(a.receive(bytes), InvalidGroupChangeError, "signature");
  });
  await t.step("a change by a member who is not an admin", async () => {
    const bytes = await signChange(carol!, {
      groupId,
      parents: heads(),
      op: { kind: "add", member: mallory!.public },
    });
    await assert.rejects(a.receive(bytes), InvalidGroupChangeError, "role");
  });
  await t.step("a change by an outsider naming itself", async () => {
    const bytes = await signChange(mallory!, {
      groupId,
      parents: heads(),
      op: { kind: "rename", name: "pwned" },
    });
    await assert.rejects(a.receive(bytes), InvalidGroupChangeError, "role");
  });
  await t.step("a second create", async () => {
    const { change } = await GroupLog.create(mallory!, { name: "x", members: [], groupId });
    await assert.rejects(a.receive(change), InvalidGroupChangeError, "create");
  });
  await t.step("a removed admin's change after its removal, and backdated before it", async () => {
    await a.append(alice!, { kind: "promote", target: bob!.signingPublicKey });
    const before = heads();
    await a.append(alice!, { kind: "remove", target: bob!.signingPublicKey });
    const after = await signChange(bob!, {
      groupId,
      parents: heads(),
      op: { kind: "add", member: mallory!.public },
    });
    await assert.rejects(a.receive(after), InvalidGroupChangeError, "role");
    // Naming the parents it had before its removal makes it concurrent with
    // the removal: it is kept (it was valid where it claims to be) but void.
    const backdated = await signChange(bob!, {
      groupId,
      parents: before,
      op: { kind: "add", member: mallory!.public },
    });
    assert.equal(await a.receive(backdated), "applied");
    assert(!ids(a).includes(mallory!.id));
    assert(!ids(a).includes(bob!.id));
  });
  await t.step("a replayed change is a no-op", async () => {
    const state = a.state();
    for (const bytes of a.changes()) assert.equal(await a.receive(bytes), "duplicate");
    assert.deepEqual(a.state(), state);
  });
  await t.step("a change of another group", async () => {
    const { log: other } = await GroupLog.create(alice!, { name: "other", members: [] });
    const bytes = await other.append(alice!, { kind: "rename", name: "o" });
    await assert.rejects(a.receive(bytes), InvalidGroupChangeError, "another group");
  });
});

Deno.test("membership: a change with an unknown parent waits for it, within a bound", async () => {
  const [alice, bob, carol] = await identities(3);
  const { log: a } = await GroupLog.create(alice!, { name: "g", members: [bob!.public] });
  const b = await copyOf(a);
  const add = await a.append(alice!, { kind: "add", member: carol!.public });
  const rename = await a.append(alice!, { kind: "rename", name: "later" });
  assert.equal(await b.receive(rename), "pending");
  assert.equal(b.state().name, "g");
  assert.equal(await b.receive(add), "applied");
  assert.equal(b.pendingCount, 0);
  assert.deepEqual(b.state(), a.state());

  for (let i = 0; i < MAX_PENDING_CHANGES + 10; i++) {
    const orphan = await signChange(alice!, {
      groupId: a.groupId,
      parents: [
        crypto.getRandomValues(new Uint8Array(32)).reduce(
          (s, x) => s + x.toString(16).padStart(2, "0"),
          "",
        ),
      ],
      op: { kind: "rename", name: `n${i}` },
    });
    assert.equal(await b.receive(orphan), "pending");
  }
  assert.equal(b.pendingCount, MAX_PENDING_CHANGES);
});

Deno.test("membership: changes decode strictly", async (t) => {
  const [alice, bob] = await identities(2);
  const { log, change } = await GroupLog.create(alice!, { name: "g", members: [bob!.public] });
  const add = await log.append(alice!, { kind: "remove", target: bob!.signingPublicKey });
  for (const bytes of [change, add]) {
    await t.step(`every truncation of a ${decodeChange(bytes).op.kind}`, () => {
      for (let n = 0; n < bytes.length; n++) {
        assert.throws(() => decodeChange(bytes.subarray(0, n)), InvalidGroupChangeError);
      }
    });
    await t.step("a trailing byte, a bad version, a bad kind", () => {
      const trailing = new Uint8Array([...bytes, 0]);
      assert.throws(() => decodeChange(trailing), InvalidGroupChangeError, "malformed");
      for (const [at, value] of [[0, 2], [0, 0], [17, 7], [17, 255]]) {
        const bad = bytes.slice();
        bad[at!] = value!;
        assert.throws(() => decodeChange(bad), InvalidGroupChangeError);
      }
    });
  }
  await t.step("an oversized change is refused before parsing", () => {
    assert.throws(
      () => decodeChange(new Uint8Array(MAX_CHANGE_LENGTH + 1)),
      InvalidGroupChangeError,
      "oversized",
    );
  });
  await t.step("signed bytes never parse as a record (domain separation)", () => {
    const signed = decodeChange(add).signed;
    assert.notEqual(signed[0], RECORD_VERSION);
  });
});

Deno.test("membership: a group of 50 members, built and copied", async () => {
  const people = await identities(50);
  const [alice, ...rest] = people;
  const { log } = await GroupLog.create(alice!, {
    name: "fifty",
    members: rest.slice(0, 20).map((p) => p.public),
  });
  for (const p of rest.slice(20)) await log.append(alice!, { kind: "add", member: p.public });
  for (const p of rest.slice(0, 5)) {
    await log.append(alice!, { kind: "remove", target: p.signingPublicKey });
  }
  const copy = await copyOf(log);
  assert.equal(copy.state().members.length, 45);
  assert.equal(copy.state().epoch, 5);
  assert.deepEqual(copy.state(), log.state());
});
