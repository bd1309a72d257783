/**
 * A DIM peer for the reach lab, run inside a namespace by the tests
 * (`ip netns exec NS deno run -A tests/reach/_peer.ts '<config JSON>'`):
 * a storage node or a user's messenger, driven by JSON lines.
 *
 * stdin, one command a line: `{ "id": 1, "cmd": "send", "to": "bob", "text": "hi" }`.
 * Commands: `status`, `add-contact` (name, contact), `send` (to, text),
 * `send-file` (to, path), `card` (contact: a user ID; looked up afresh),
 * `history` (with: a contact), `fetch-mailbox`, `closest-mailbox` (user: a user ID), `hang-up` (peer),
 * `dial` (address), `stop`.
 * stdout, one JSON object a line: replies `{ "reply": 1, "ok": true, … }` or
 * `{ "reply": 1, "ok": false, "error": "…" }`, and events `{ "event": "…", "at": ms, … }`:
 * `ready` (peerId, userId, addresses), `message` (from, text, id, seq, via),
 * `status` (seq, state), `file` (name, bytes, sha256), `file-failed`,
 * `reachability` (the node's), `addresses`. Closing stdin stops it too.
 *
 * @module
 */
import { decodeUserId } from "../../lib/crypto/identity.ts";
import { libp2pOf } from "../../lib/dht/node.ts";
import { mailboxAddress } from "../../lib/messaging/mailbox.ts";
import type { DhtNode } from "../../lib/dht/node.ts";
import { createMessenger, type Messenger } from "../../lib/messenger/messenger.ts";
import { createProfile, openProfile } from "../../lib/profile/profile.ts";
import type { ChatMessage } from "../../lib/profile/chat_message.ts";
import { createStorageNode, type StorageNode } from "../../lib/storage_node.ts";
import type { PeerConfig } from "./_driver.ts";

interface Command {
  readonly id: number;
  readonly cmd: string;
  readonly [key: string]: unknown;
}

const config = JSON.parse(Deno.args[0] ?? "{}") as PeerConfig;
const encoder = new TextEncoder();

function emit(obj: Record<string, unknown>): void {
  Deno.stdout.writeSync(encoder.encode(JSON.stringify(obj) + "\n"));
}

function event(name: string, fields: Record<string, unknown> = {}): void {
  emit({ event: name, at: Date.now(), ...fields });
}

let storage: StorageNode | undefined;
let messenger: Messenger | undefined;
let node: DhtNode;

if (config.role === "storage") {
  storage = await createStorageNode({
    home: config.home,
    listen: config.listen,
    bootstrap: config.bootstrap,
    publicNetworks: config.publicNetworks,
    ...(config.upnp === undefined ? {} : { upnp: config.upnp }),
  });
  node = storage.node;
} else {
  const passphrase = `${config.name}: plum vortex quietly sings`;
  const profile = config.reopen
    ? await openProfile({ home: config.home, passphrase })
    : await createProfile({ home: config.home, passphrase, displayName: config.name });
  messenger = await createMessenger(profile, {
    listen: config.listen,
    bootstrap: config.bootstrap,
    publicNetworks: config.publicNetworks,
    ...(config.upnp === undefined ? {} : { upnp: config.upnp }),
    ...(config.lanDiscovery === undefined ? {} : { lanDiscovery: config.lanDiscovery }),
    ...(config.relays === undefined ? {} : { relays: config.relays }),
    messaging: {
      ...config.messaging,
      // Failures talking to one peer: in stderr, which the tests show on failure.
      onPeerError: (err) => console.error(`peer error: ${err}`),
    },
    ...(config.downloadDir ? { downloadDir: config.downloadDir } : {}),
  });
  node = messenger.node;
  const m = messenger;
  // The iterator, not the "message" event: it also yields what arrived
  // while createMessenger was still starting.
  (async () => {
    for await (const msg of m.messages()) {
      event("message", {
        from: msg.contact ?? msg.peer,
        text: msg.text,
        id: msg.id,
        seq: msg.seq,
        via: msg.via,
        sentAt: msg.sentAt,
      });
    }
  })();
  m.addEventListener("status", (e) => {
    const msg = (e as CustomEvent<ChatMessage>).detail;
    event("status", { seq: msg.seq, state: msg.state, via: msg.via });
  });
  m.addEventListener("file", (e) => {
    const f = (e as CustomEvent<{ name: string; bytes: number; sha256: string }>).detail;
    event("file", { name: f.name, bytes: f.bytes, sha256: f.sha256 });
  });
  m.addEventListener("file-failed", (e) => {
    event("file-failed", { error: String((e as CustomEvent<{ error: unknown }>).detail.error) });
  });
}

node.addEventListener("reachability", (e) => {
  event("reachability", { reachability: (e as CustomEvent).detail });
});
node.addEventListener("addresses", (e) => {
  event("addresses", { addresses: (e as CustomEvent).detail });
});

function status(): Record<string, unknown> {
  const connections = libp2pOf(node).getConnections().map((c) => ({
    peer: c.remotePeer.toString(),
    address: c.remoteAddr.toString(),
    limited: c.limits !== undefined,
    direction: c.direction,
  }));
  return {
    peerId: libp2pOf(node).peerId.toString(),
    userId: messenger?.id,
    addresses: node.multiaddrs,
    reachability: node.reachability,
    connections,
  };
}

async function run(c: Command): Promise<Record<string, unknown>> {
  switch (c.cmd) {
    case "status":
      return status();
    case "add-contact": {
      const contact = await messenger!.addContact(String(c.name), String(c.contact), {
        signal: AbortSignal.timeout(30_000),
      });
      return { userId: contact.id };
    }
    case "send": {
      const sentAt = Date.now();
      const m = await messenger!.send(String(c.to), String(c.text));
      return { seq: m.seq, id: m.id, sentAt };
    }
    case "send-file": {
      const t0 = performance.now();
      const sent = await messenger!.sendFile(String(c.to), String(c.path));
      return { sha256: sent.sha256, bytes: sent.bytes, ms: performance.now() - t0 };
    }
    case "card": {
      const card = await messenger!.resolveCard(String(c.contact), {
        fresh: true,
        signal: AbortSignal.timeout(20_000),
      });
      return { peerId: card.peerId, addresses: card.addresses, seq: card.seq };
    }
    case "closest-mailbox": {
      // The nodes this node finds closest to a user's mailbox (diagnostics).
      const mailbox = await mailboxAddress(decodeUserId(String(c.user)));
      const peers = await node.getClosestPeers(mailbox, { signal: AbortSignal.timeout(20_000) });
      return { peers: peers.map((p) => p.peerId) };
    }
    case "history":
      return {
        messages: messenger!.profile.history(String(c.with)).map((m) => ({
          text: m.text,
          direction: m.direction,
          state: m.state,
          via: m.via,
        })),
      };
    case "fetch-mailbox":
      return { count: await messenger!.fetchMailbox() };
    case "hang-up":
      await node.hangUp(String(c.peer));
      return {};
    case "dial":
      return { peer: await node.dial(String(c.address), { signal: AbortSignal.timeout(10_000) }) };
    default:
      throw new Error(`unknown command ${c.cmd}`);
  }
}

let stopping: Promise<void> | undefined;
function stop(): Promise<void> {
  stopping ??= (async () => {
    await (messenger ?? storage)?.stop();
  })();
  return stopping;
}

event("ready", status());

let rest = "";
const decoder = new TextDecoder();
for await (const chunk of Deno.stdin.readable) {
  rest += decoder.decode(chunk, { stream: true });
  let i;
  while ((i = rest.indexOf("\n")) >= 0) {
    const line = rest.slice(0, i).trim();
    rest = rest.slice(i + 1);
    if (!line) continue;
    const c = JSON.parse(line) as Command;
    if (c.cmd === "stop") {
      await stop();
      emit({ reply: c.id, ok: true });
      Deno.exit(0);
    }
    run(c).then(
      (r) => emit({ reply: c.id, ok: true, ...r }),
      (err) => emit({ reply: c.id, ok: false, error: `${err?.name}: ${err?.message}` }),
    );
  }
}
await stop();
Deno.exit(0);
