import assert from "node:assert/strict";
import { Identity } from "../../lib/crypto/identity.ts";
import { HistoryBox } from "../../lib/crypto/secret_box.ts";
import { decodeKeyring, encodeKeyring } from "../../lib/group/keyring_codec.ts";
import { GroupKeyring } from "../../lib/group/keyring.ts";
import { GroupLog } from "../../lib/group/membership.ts";
import { Connection } from "../../lib/store/connection.ts";
import { GROUPS_SCHEMA, GroupStore } from "../../lib/store/group_store.ts";
import { identities, keyrings } from "../group/_helpers.ts";

Deno.test("group store: changes, keyring and messages are sealed and come back", async () => {
  const [alice, bob] = await identities(2);
  using conn = Connection.open(":memory:", [GROUPS_SCHEMA]);
  const store = new GroupStore(conn);
  store.useKey(HistoryBox.forIdentity(alice!));
  const { log, change } = await GroupLog.create(alice!, { name: "g", members: [bob!.public] });
  const gid = log.state().groupId;
  store.addGroup(gid, 1);
  store.addChange(gid, log.changes().length === 1 ? "h" : "x", change);
  assert.deepEqual(store.changes(gid), [change]);
  const rings = await keyrings(log.state(), [alice!, bob!], log.groupId);
  const bytes = encodeKeyring(rings.get(alice!.id)!.snapshot());
  store.saveKeyring(gid, bytes);
  assert.deepEqual(store.keyring(gid), bytes);
  // Nothing secret in the clear.
  const raw = conn.run("raw", (db) => db.prepare("SELECT keyring FROM group_keys").get());
  assert.notDeepEqual(raw?.keyring, bytes);
  // Another identity's box cannot open it.
  const other = new GroupStore(conn);
  other.useKey(HistoryBox.forIdentity(await Identity.generate()));
  assert.throws(() => other.keyring(gid));
  assert.deepEqual(store.groups(), [{ groupId: gid, left: false }]);
  store.markLeft(gid);
  assert.deepEqual(store.groups(), [{ groupId: gid, left: true }]);
});

Deno.test("keyring codec: a restored keyring reads and writes as the original", async () => {
  const [alice, bob] = await identities(2);
  const { log } = await GroupLog.create(alice!, { name: "g", members: [bob!.public] });
  const state = log.state();
  const rings = await keyrings(state, [alice!, bob!], log.groupId);
  const a = rings.get(alice!.id)!;
  const b = rings.get(bob!.id)!;
  const first = await a.encrypt(state, { body: new TextEncoder().encode("one") });
  const b2 = GroupKeyring.restore(
    log.groupId,
    bob!.signingPublicKey,
    decodeKeyring(encodeKeyring(b.snapshot())),
  );
  const got = await b2.receive(state, first.wraps.get(bob!.id)!);
  assert.equal(new TextDecoder().decode(got.plaintext.body), "one");
  const a2 = GroupKeyring.restore(
    log.groupId,
    alice!.signingPublicKey,
    decodeKeyring(encodeKeyring(a.snapshot())),
  );
  const second = await a2.encrypt(state, { body: new TextEncoder().encode("two") });
  const got2 = await b2.receive(state, second.wraps.get(bob!.id)!);
  assert.equal(new TextDecoder().decode(got2.plaintext.body), "two");
});

Deno.test("keyring codec: strict decoding", async () => {
  const [alice, bob] = await identities(2);
  const { log } = await GroupLog.create(alice!, { name: "g", members: [bob!.public] });
  const rings = await keyrings(log.state(), [alice!, bob!], log.groupId);
  const bytes = encodeKeyring(rings.get(alice!.id)!.snapshot());
  assert.throws(() => decodeKeyring(new Uint8Array([2, ...bytes.subarray(1)])), SyntaxError);
  assert.throws(() => decodeKeyring(new Uint8Array([...bytes, 0])), SyntaxError);
  for (let n = 0; n < bytes.length; n += 7) {
    assert.throws(() => decodeKeyring(bytes.subarray(0, n)), SyntaxError);
  }
});
