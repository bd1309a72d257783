/**
 * Bob, in a process of his own, for bench/chat_process_bench.ts: a real
 * `Messenger` with its home in a temporary folder of its own, listening on
 * loopback, which also answers the raw baseline's frames
 * ({@linkcode ECHO_PROTOCOL}).
 *
 * The conversation with the parent, one JSON line at a time:
 * 1. stdout: `{"id": …, "addresses": […]}` once bob is online;
 * 2. stdin: alice's user ID (she has joined through bob's addresses);
 *    bob adds her as the contact "alice", then stdout: `{"ready": true}`;
 * 3. bob reads his messages as a chat would, until stdin closes (the parent
 *    ended, however it ended) or SIGTERM/SIGINT; then he stops, removes his
 *    folder and exits.
 *
 * ```sh
 * deno run --allow-read --allow-write --allow-env --allow-net --allow-sys bench/_chat_peer.ts
 * ```
 *
 * @module
 */
import { ECHO_PROTOCOL, echoFrames } from "./_acks.ts";
import { openUser, readLines, readMessages } from "./_chat_pair.ts";
import type { Messenger } from "../lib/messenger/messenger.ts";

const dir = await Deno.makeTempDir({ prefix: "dim-chat-peer-" });
let bob: Messenger | undefined;
let stopping: Promise<void> | undefined;

/** Stops bob (once), removes his folder and exits. */
function shutdown(code: number): Promise<void> {
  stopping ??= (async () => {
    await bob?.stop().catch(() => {});
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    Deno.exit(code);
  })();
  return stopping;
}

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  Deno.addSignalListener(signal, () => void shutdown(0));
}
// An error thrown where nothing catches it (e.g. in a socket's callback)
// still ends in the same shutdown, so the folder goes too.
globalThis.addEventListener("error", (event) => {
  event.preventDefault();
  console.error("chat peer:", event.error);
  void shutdown(1);
});
globalThis.addEventListener("unhandledrejection", (event) => {
  event.preventDefault();
  console.error("chat peer:", event.reason);
  void shutdown(1);
});

try {
  bob = await openUser(dir, "bob");
  await bob.node.handle(ECHO_PROTOCOL, echoFrames);
  console.log(JSON.stringify({ id: bob.id, addresses: bob.addresses }));
  const input = readLines(Deno.stdin.readable);
  const alice = await input.next();
  if (alice.done === true) throw new Error("stdin closed before alice's ID");
  await bob.addContact("alice", alice.value.trim(), { signal: AbortSignal.timeout(30_000) });
  readMessages(bob);
  console.log(JSON.stringify({ ready: true }));
  // Until stdin closes.
  while ((await input.next()).done !== true);
  await shutdown(0);
} catch (err) {
  console.error("chat peer:", err);
  await shutdown(1);
}
