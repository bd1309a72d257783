/**
 * Users for the chat benches. {@linkcode openChatPair} makes two, `alice`
 * and `bob`, each a real `Messenger` (keystore and SQLite in a temporary
 * folder, a libp2p node on loopback), known to each other as contacts, with
 * bob reading what arrives as a chat would (which keeps the messenger's
 * queue short). {@linkcode openUser} makes one (bench/_chat_peer.ts runs bob
 * in a process of his own with it), and {@linkcode deliver} and
 * {@linkcode deliverTogether} are what the benches time.
 *
 * @module
 */
import { createMessenger, type Messenger } from "../lib/messenger/messenger.ts";
import type { MessengerOptions } from "../lib/messenger/options.ts";
import { createProfile } from "../lib/profile/profile.ts";

/** The two users and the folder that holds their homes (remove it when done). */
export interface ChatPair {
  readonly dir: string;
  readonly alice: Messenger;
  readonly bob: Messenger;
}

/** Where a bench user listens: loopback, a port of the system's choosing. */
export const LISTEN: readonly string[] = ["/ip4/127.0.0.1/tcp/0"];

/** A 1 KiB message. */
export const TEXT: string = "x".repeat(1024);

/**
 * Creates a user under `dir` and starts their messenger on loopback.
 *
 * @param dir The folder for the user's home (`dir/name`).
 * @param name The user's display name.
 * @param options More messenger options (e.g. `bootstrap`).
 * @returns The running messenger.
 */
export async function openUser(
  dir: string,
  name: string,
  options: MessengerOptions = {},
): Promise<Messenger> {
  const profile = await createProfile({
    home: `${dir}/${name}`,
    passphrase: `${name}: plum vortex quietly sings`,
    displayName: name,
  });
  return await createMessenger(profile, { listen: [...LISTEN], ...options });
}

/** Reads a messenger's incoming messages as a chat would, until it stops. */
export function readMessages(user: Messenger): void {
  (async () => {
    for await (const _ of user.messages());
  })().catch(() => {});
}

/** Starts alice, then bob bootstrapped from her, and makes them contacts. */
export async function openChatPair(prefix: string): Promise<ChatPair> {
  const dir = await Deno.makeTempDir({ prefix });
  const alice = await openUser(dir, "alice");
  const bob = await openUser(dir, "bob", { bootstrap: alice.addresses });
  await alice.addContact("bob", bob.id);
  await bob.addContact("alice", alice.id);
  readMessages(bob);
  return { dir, alice, bob };
}

/**
 * Sends `count` 1 KiB messages, each `send` awaited before the next (a flush
 * each), then waits for every acknowledgement.
 *
 * @param from The sender.
 * @param to The contact's name.
 * @param count How many.
 * @returns When the last is acknowledged.
 */
export async function deliver(from: Messenger, to: string, count: number): Promise<void> {
  const sent = [];
  for (let i = 0; i < count; i++) sent.push(await from.send(to, TEXT));
  const signal = AbortSignal.timeout(30_000);
  await Promise.all(sent.map((m) => from.waitFor(m.seq, { signal })));
}

/**
 * One turn of a conversation that alternates: Alice sends Bob 1 KiB, and
 * once it has arrived he answers with 1 KiB; returns once she has the
 * answer. Each message starts a new sending chain (a DH ratchet step).
 *
 * @param pair Alice and Bob, each the other's contact ("bob", "alice").
 * @returns When Alice has Bob's answer.
 */
export async function exchange(pair: ChatPair): Promise<void> {
  const arrives = (user: Messenger) =>
    new Promise<void>((resolve) =>
      user.addEventListener("message", () => resolve(), { once: true })
    );
  const atBob = arrives(pair.bob);
  await pair.alice.send("bob", TEXT);
  await atBob;
  const atAlice = arrives(pair.alice);
  await pair.bob.send("alice", TEXT);
  await atAlice;
}

/**
 * Submits `count` 1 KiB messages at once (they share flushes), then waits
 * for every acknowledgement.
 *
 * @param from The sender.
 * @param to The contact's name.
 * @param count How many.
 * @returns When the last is acknowledged.
 */
export async function deliverTogether(from: Messenger, to: string, count: number): Promise<void> {
  const sent = await Promise.all(Array.from({ length: count }, () => from.send(to, TEXT)));
  const signal = AbortSignal.timeout(120_000);
  await Promise.all(sent.map((m) => from.waitFor(m.seq, { signal })));
}

/**
 * Splits a byte stream into lines (without their "\n").
 *
 * @param stream The bytes, e.g. a child process's stdout.
 * @returns The lines, until the stream ends.
 */
export async function* readLines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let buffered = "";
  for await (const chunk of stream) {
    buffered += decoder.decode(chunk, { stream: true });
    let end;
    while ((end = buffered.indexOf("\n")) >= 0) {
      yield buffered.slice(0, end);
      buffered = buffered.slice(end + 1);
    }
  }
}
