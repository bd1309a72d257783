// Two users for the chat benches: `alice` and `bob`, each a real `Messenger`
// (keystore and SQLite in a temporary folder, a libp2p node on loopback),
// known to each other as contacts, with bob reading what arrives as a chat
// would (which keeps the messenger's queue short).
import { createMessenger, type Messenger } from "../lib/messenger/messenger.ts";
import { createProfile } from "../lib/profile/profile.ts";

/** The two users and the folder that holds their homes (remove it when done). */
export interface ChatPair {
  readonly dir: string;
  readonly alice: Messenger;
  readonly bob: Messenger;
}

/** Starts alice, then bob bootstrapped from her, and makes them contacts. */
export async function openChatPair(prefix: string): Promise<ChatPair> {
  const listen = ["/ip4/127.0.0.1/tcp/0"];
  const dir = await Deno.makeTempDir({ prefix });
  const user = async (name: string) =>
    await createProfile({
      home: `${dir}/${name}`,
      passphrase: `${name}: plum vortex quietly sings`,
      displayName: name,
    });
  const alice = await createMessenger(await user("alice"), { listen });
  const bob = await createMessenger(await user("bob"), { listen, bootstrap: alice.addresses });
  await alice.addContact("bob", bob.id);
  await bob.addContact("alice", alice.id);
  (async () => {
    for await (const _ of bob.messages());
  })().catch(() => {});
  return { dir, alice, bob };
}
