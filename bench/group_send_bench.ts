// What does a group message cost its sender in the messenger, storage
// included? One 1 KiB text to a group of 10 and of 50 other members
// (`MessengerGroups.send`: encrypted and signed once, a wrap per member
// queued as its outbox entry's envelope, the history and deliveries
// stored) against 10 and 50 one-to-one sends (`MessagingService.send`: a
// Double Ratchet message sealed in its own envelope and queued, per
// contact), in the same run, on real SQLite files. The service is not
// started, so nothing is delivered: what is measured is the sender's work
// up to the flushed outbox. Prints wall time and process CPU time (user +
// system) per send to all, and the group's ratio to the one-to-one sends.
// Run: deno run -A bench/group_send_bench.ts [rounds]
import process from "node:process";
import { Identity } from "../lib/crypto/identity.ts";
import { HistoryBox, SecretBox } from "../lib/crypto/secret_box.ts";
import { decodeChange } from "../lib/group/change.ts";
import { GroupKeyring } from "../lib/group/keyring.ts";
import { encodeKeyring } from "../lib/group/keyring_codec.ts";
import { GroupLog } from "../lib/group/membership.ts";
import { MessagingService } from "../lib/messaging/service.ts";
import { SessionManager } from "../lib/messaging/sessions.ts";
import { MessengerGroups } from "../lib/messenger/groups.ts";
import { utf8 } from "../lib/platform/bytes.ts";
import type { PrekeyBundle } from "../lib/record/prekey.ts";
import { openPrekeyBundle } from "../lib/record/prekey.ts";
import { ContactBook } from "../lib/profile/contacts.ts";
import { UserStore } from "../lib/store/user_store.ts";

const ROUNDS = Number(Deno.args[0] ?? 20);
const SIZES = [10, 50];
const text = "x".repeat(1024);
const dir = await Deno.makeTempDir({ prefix: "dim-group-send-" });

/** A user with a store and sessions (no network). */
async function user(
  name: string,
  fetchBundle = (_: string) => undefined as PrekeyBundle | undefined,
) {
  const identity = await Identity.generate();
  const db = UserStore.open(`${dir}/${name}.db`);
  db.groups.useKey(HistoryBox.forIdentity(identity));
  const sessions = new SessionManager({
    identity,
    storage: db,
    box: await SecretBox.forIdentity(identity),
    fetchBundle: (id) => Promise.resolve(fetchBundle(id)),
  });
  return { identity, db, sessions };
}

const others = await Promise.all(
  Array.from({ length: Math.max(...SIZES) }, (_, i) => user(`member${i}`)),
);
const bundles = new Map<string, PrekeyBundle>();
for (const o of others) {
  bundles.set(o.identity.id, await openPrekeyBundle(await o.sessions.prekeyBundle()));
}
const sender = await user("sender", (id) => bundles.get(id));
for (const o of others) {
  sender.db.contacts.upsert({
    name: `m${o.identity.id.slice(-8)}`,
    userId: o.identity.id,
    signingPublicKey: o.identity.signingPublicKey,
    encryptionPublicKey: o.identity.encryptionPublicKey,
  });
}
const service = new MessagingService({
  identity: sender.identity,
  storage: sender.db,
  transport: {
    openStream: () => Promise.reject(new Error("offline")),
    handle: () => Promise.resolve(),
    unhandle: () => Promise.resolve(),
  } as never,
  resolve: () => Promise.reject(new Error("offline")),
  sessions: sender.sessions,
});

// One group per size, with every member's sender key held by the sender.
const groups = new MessengerGroups({
  identity: () => sender.identity,
  store: sender.db,
  book: new ContactBook(sender.db.contacts),
  service,
  clock: Date.now,
  onMessage: () => {},
});
const groupIds: string[] = [];
for (const n of SIZES) {
  const members = others.slice(0, n).map((o) => o.identity);
  const { log, change } = await GroupLog.create(sender.identity, {
    name: `g${n}`,
    members: members.map((m) => m.public),
  });
  const state = log.state();
  const ring = new GroupKeyring(log.groupId, sender.identity.signingPublicKey);
  await ring.rotate(state);
  for (const m of members) {
    const theirs = new GroupKeyring(log.groupId, m.signingPublicKey);
    ring.acceptDistribution(state, m.signingPublicKey, (await theirs.rotate(state)).distribution);
  }
  sender.db.groups.addGroup(state.groupId, Date.now());
  sender.db.groups.addChange(state.groupId, decodeChange(change).hash, change);
  sender.db.groups.saveKeyring(state.groupId, encodeKeyring(ring.snapshot()));
  groupIds.push(state.groupId);
}
await groups.load();

async function oneToOne(n: number): Promise<void> {
  await Promise.all(
    others.slice(0, n).map((o) =>
      service.send(
        { userId: o.identity.id, encryptionPublicKey: o.identity.encryptionPublicKey },
        utf8(text),
      )
    ),
  );
}

async function measure(fn: () => Promise<void>): Promise<{ wall: number; cpu: number }> {
  await fn(); // warm-up: the first one-to-one send to each starts its session
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < ROUNDS; i++) await fn();
  const wall = (performance.now() - t0) / ROUNDS;
  const c = process.cpuUsage(c0);
  return { wall, cpu: (c.user + c.system) / 1000 / ROUNDS };
}

for (const [i, n] of SIZES.entries()) {
  const pairwise = await measure(() => oneToOne(n));
  const group = await measure(async () => {
    const m = await groups.send(groupIds[i]!, text);
    if (m.group?.members !== n) throw new Error("not sent to every member");
  });
  const f = (x: number) => x.toFixed(1).padStart(7);
  console.log(
    `1 KiB to ${String(n).padStart(2)}: one-to-one ${f(pairwise.cpu)} ms CPU ${
      f(pairwise.wall)
    } ms wall | ` +
      `group ${f(group.cpu)} ms CPU ${f(group.wall)} ms wall | ` +
      `group ÷ one-to-one: ${(group.cpu / pairwise.cpu).toFixed(2)}× CPU, ` +
      `${(group.wall / pairwise.wall).toFixed(2)}× wall`,
  );
}
// The first group message has one delivery per member of the group of 10.
const delivered = sender.db.groups.deliveries(1).length;
if (delivered !== SIZES[0]) throw new Error(`deliveries: ${delivered}`);
for (const u of [sender, ...others]) u.db.close();
await Deno.remove(dir, { recursive: true });
