// Helpers that build small DIM networks on 127.0.0.1 for tests.
import {
  createMessenger,
  type Messenger,
  type MessengerOptions,
} from "../../lib/messenger/messenger.ts";
import { createProfile, openProfile } from "../../lib/profile/profile.ts";
import { createStorageNode, type StorageNode } from "../../lib/storage_node.ts";

export const LOOPBACK = ["/ip4/127.0.0.1/tcp/0"];

/** Fast retries so offline/online transitions show up within a test's time. */
export const FAST_MESSAGING = {
  retryBaseMs: 100,
  retryMaxMs: 1000,
  outboxIntervalMs: 100,
  mailboxPollMs: 2000,
  attemptTimeoutMs: 2000,
} as const;

/** Network options, and the profile's data directory and passphrase if not the test's. */
export type UserOptions = MessengerOptions & {
  readonly home?: string;
  readonly passphrase?: string;
};

export interface TestNet extends AsyncDisposable {
  readonly dir: string;
  readonly storageNodes: StorageNode[];
  bootstrap(): string[];
  user(name: string, extra?: UserOptions): Promise<Messenger>;
  reopen(name: string, extra?: UserOptions): Promise<Messenger>;
}

/** A network of `count` storage nodes; users join through the first. */
export async function testNet(count = 1): Promise<TestNet> {
  const dir = await Deno.makeTempDir({ prefix: "dim-test-" });
  const started: StorageNode[] = [];
  for (let i = 0; i < count; i++) {
    started.push(
      await createStorageNode({
        listen: LOOPBACK,
        bootstrap: started.length ? [started[0]!.addresses[0]!] : [],
      }),
    );
  }
  const open: Messenger[] = [];
  const bootstrap = () => started.slice(0, 2).map((r) => r.addresses[0]!);
  const split = (name: string, extra: UserOptions) => {
    const {
      home = `${dir}/${name}`,
      passphrase = `${name}: plum vortex quietly sings`,
      ...network
    } = extra;
    const options: MessengerOptions = {
      listen: LOOPBACK,
      bootstrap: bootstrap(),
      messaging: FAST_MESSAGING,
      ...network,
    };
    return { home, passphrase, options };
  };
  return {
    dir,
    storageNodes: started,
    bootstrap,
    async user(name, extra = {}) {
      const { home, passphrase, options } = split(name, extra);
      const profile = await createProfile({ home, passphrase, displayName: name });
      const m = await createMessenger(profile, options);
      open.push(m);
      return m;
    },
    async reopen(name, extra = {}) {
      const { home, passphrase, options } = split(name, extra);
      const m = await createMessenger(await openProfile({ home, passphrase }), options);
      open.push(m);
      return m;
    },
    async [Symbol.asyncDispose]() {
      for (const m of open) await m.stop();
      for (const r of started) await r.stop();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** The next `n` incoming messages of a messenger, or a timeout error. */
export async function nextMessages(m: Messenger, n: number, ms = 10_000) {
  const got = [];
  const it = m.messages()[Symbol.asyncIterator]();
  const deadline = AbortSignal.timeout(ms);
  while (got.length < n) {
    const r = await Promise.race([
      it.next(),
      new Promise<never>((_, reject) =>
        deadline.addEventListener(
          "abort",
          () => reject(new Error(`timed out after ${got.length}/${n} messages`)),
          { once: true },
        )
      ),
    ]);
    if (r.done) break;
    got.push(r.value);
  }
  return got;
}

/**
 * Alice and Bob in `net`, Bob among Alice's contacts, with one message from
 * Alice already delivered: the session is set up, so what a test measures
 * next is delivery, not session set-up.
 */
export async function chattingPair(
  net: TestNet,
  first = "warm-up",
): Promise<{ alice: Messenger; bob: Messenger }> {
  const alice = await net.user("alice");
  const bob = await net.user("bob");
  await alice.addContact("bob", bob.id);
  await alice.send("bob", first);
  await nextMessages(bob, 1);
  return { alice, bob };
}
