// What does a group message cost its sender? One 1 KiB message to a group
// of 10 and of 50 other members (sender keys: encrypted and signed once,
// then a small symmetric wrap per member) against 10 and 50 one-to-one
// sends (a Double Ratchet message sealed in its own envelope per contact),
// in the same run; and the per-member wrap alone against one envelope.
// Run: deno bench bench/group_bench.ts
import { sealEnvelope } from "../lib/crypto/envelope.ts";
import { Identity } from "../lib/crypto/identity.ts";
import {
  generateRatchetKeyPair,
  initSender,
  ratchetEncrypt,
  type RatchetState,
} from "../lib/crypto/ratchet.ts";
import { GroupKeyring } from "../lib/group/keyring.ts";
import { GroupLog, type GroupState } from "../lib/group/membership.ts";
import { wrapForMember } from "../lib/group/wire.ts";

// --- Setup, outside every timed part ----------------------------------------

const body = crypto.getRandomValues(new Uint8Array(1024));
const sender = await Identity.generate();
const others = await Promise.all(Array.from({ length: 50 }, () => Identity.generate()));

async function oneToOne(n: number): Promise<{ sessions: RatchetState[]; to: Identity[] }> {
  const sessions: RatchetState[] = [];
  for (let i = 0; i < n; i++) {
    const prekey = await generateRatchetKeyPair();
    sessions.push(
      await initSender(
        crypto.getRandomValues(new Uint8Array(32)),
        prekey.publicKey,
        new Uint8Array(64),
      ),
    );
  }
  return { sessions, to: others.slice(0, n) };
}

async function group(n: number): Promise<{ ring: GroupKeyring; state: GroupState }> {
  const members = others.slice(0, n);
  const { log } = await GroupLog.create(sender, {
    name: `g${n}`,
    members: members.map((m) => m.public),
  });
  const state = log.state();
  const ring = new GroupKeyring(log.groupId, sender.signingPublicKey);
  await ring.rotate(state);
  for (const m of members) {
    const theirs = new GroupKeyring(log.groupId, m.signingPublicKey);
    ring.acceptDistribution(state, m.signingPublicKey, (await theirs.rotate(state)).distribution);
  }
  return { ring, state };
}

for (const n of [10, 50]) {
  const pairwise = await oneToOne(n);
  const g = await group(n);
  Deno.bench({
    name: `${n} one-to-one sends`,
    group: `1 KiB to ${n}`,
    baseline: true,
    async fn() {
      await Promise.all(pairwise.sessions.map(async (s, i) => {
        const out = await ratchetEncrypt(s, body);
        pairwise.sessions[i] = out.state;
        await sealEnvelope(sender, pairwise.to[i]!.public, {
          body: out.message,
          contentType: 0x81,
        });
      }));
    },
  });
  Deno.bench({
    name: `group of ${n}: encrypt once, wrap ${n}`,
    group: `1 KiB to ${n}`,
    async fn() {
      const out = await g.ring.encrypt(g.state, { body });
      if (out.wraps.size !== n) throw new Error("missing wraps");
    },
  });
}

const inboxKey = crypto.getRandomValues(new Uint8Array(32));
const groupMessage = new Uint8Array(1024 + 162);
Deno.bench({
  name: "one envelope (1 KiB)",
  group: "per member",
  baseline: true,
  async fn() {
    await sealEnvelope(sender, others[0]!.public, { body: groupMessage });
  },
});
Deno.bench({
  name: "one wrap (1 KiB)",
  group: "per member",
  fn() {
    wrapForMember(inboxKey, groupMessage);
  },
});
