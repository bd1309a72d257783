/**
 * End to end under a pseudo-terminal: two real `dim chat` processes, each
 * in its own tmux session (on a private tmux socket), talk through a storage node
 * on 127.0.0.1. A line typed on one appears on the other within 2 s without
 * breaking the line being typed there, the sender sees "✓ delivered", and
 * `/quit` exits 0.
 */
import assert from "node:assert/strict";
import {
  CLI,
  dim,
  initUser,
  LOOPBACK,
  net,
  PASSPHRASE,
  ROOT,
  storageNode,
  tempDir,
} from "./_helpers.ts";

const TMUX = "/usr/bin/tmux";

/** A private tmux server; killed with everything in it at the end. */
class Tmux implements AsyncDisposable {
  readonly socket = `dim-test-${crypto.randomUUID().slice(0, 8)}`;

  async run(...args: string[]): Promise<string> {
    const { code, stdout, stderr } = await new Deno.Command(TMUX, {
      args: ["-L", this.socket, ...args],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (code !== 0) throw new Error(`tmux ${args[0]}: ${new TextDecoder().decode(stderr)}`);
    return new TextDecoder().decode(stdout);
  }

  /** Starts `command` in a new 100×30 session. */
  async start(session: string, command: string): Promise<void> {
    await this.run(
      "new-session",
      "-d",
      "-s",
      session,
      "-x",
      "100",
      "-y",
      "30",
      "-c",
      ROOT,
      command,
    );
  }

  /** What the session's pane shows now. */
  screen(session: string): Promise<string> {
    return this.run("capture-pane", "-p", "-t", session);
  }

  /** Types text; `enter` presses Enter after it. */
  async type(session: string, text: string, enter = false): Promise<void> {
    await this.run("send-keys", "-t", session, "-l", text);
    if (enter) await this.run("send-keys", "-t", session, "Enter");
  }

  /** Waits until the pane matches; fails after `ms` with the pane's contents. */
  async waitFor(session: string, pattern: RegExp, ms: number): Promise<string> {
    const end = performance.now() + ms;
    let shown = "";
    while (performance.now() < end) {
      shown = await this.screen(session);
      if (pattern.test(shown)) return shown;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`${session}: no ${pattern} within ${ms} ms; the pane shows:\n${shown}`);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.run("kill-server").catch(() => {});
  }
}

function quote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

function chatCommand(home: string, contact: string): string {
  const dim = [Deno.execPath(), "run", "--quiet", "-A", CLI, "--home", home, "--listen", LOOPBACK]
    .concat(["chat", contact]).map(quote).join(" ");
  // The pane stays after the exit, so the exit code can be read.
  // DIM_UPNP=off, DIM_LAN=off: no test sends UPnP or mDNS discovery on the host's interfaces.
  const env = `env DIM_PASSPHRASE=${quote(PASSPHRASE)} DIM_UPNP=off DIM_LAN=off`;
  return `${env} ${dim}; echo "EXIT=$?"; sleep 60`;
}

Deno.test({
  name: "two dim chat processes under a terminal: live delivery, typed line kept, /quit exits 0",
  ignore: !(await Deno.stat(TMUX).then(() => true, () => false)),
  fn: async () => {
    await using r = await storageNode();
    await using tmp = await tempDir();
    const alice = `${tmp.path}/alice`;
    const bob = `${tmp.path}/bob`;
    await initUser(alice, "Alice", net(r.address));
    await initUser(bob, "Bob", net(r.address));
    const id = async (home: string) => JSON.parse((await dim(home, ["id", "--json"])).out).id;
    const [aliceId, bobId] = [await id(alice), await id(bob)];
    assert.equal(
      (await dim(alice, ["contact", "add", "bob", bobId, "--listen", LOOPBACK])).code,
      0,
    );
    assert.equal(
      (await dim(bob, ["contact", "add", "alice", aliceId, "--listen", LOOPBACK])).code,
      0,
    );

    await using tmux = new Tmux();
    await tmux.start("alice", chatCommand(alice, "bob"));
    await tmux.start("bob", chatCommand(bob, "alice"));
    // Each chat prints its header once it is online with its card published.
    await tmux.waitFor("alice", /Chatting with bob \(Bob\)[^]*\n> *$/m, 20_000);
    await tmux.waitFor("bob", /Chatting with alice \(Alice\)[^]*\n> *$/m, 20_000);

    await tmux.type("bob", "half a thou");
    await tmux.waitFor("bob", /^> half a thou$/m, 2000);

    const typed = performance.now();
    await tmux.type("alice", "hello from alice", true);
    const bobScreen = await tmux.waitFor("bob", /alice \(unverified\): hello from alice/, 2000);
    const ms = performance.now() - typed;
    assert.ok(ms < 2000, `took ${ms} ms`);
    // The incoming line went above; Bob's half-typed line is intact on the input row.
    const lines = bobScreen.trimEnd().split("\n");
    assert.match(lines.at(-2)!, /alice \(unverified\): hello from alice$/);
    assert.equal(lines.at(-1), "> half a thou");
    await tmux.waitFor("alice", /you: hello from alice {2}✓ delivered/, 5000);

    await tmux.type("bob", "ght", true);
    await tmux.waitFor("alice", /bob \(unverified\): half a thought/, 2000);
    await tmux.waitFor("bob", /you: half a thought {2}✓ delivered/, 5000);

    await tmux.type("alice", "/quit", true);
    await tmux.type("bob", "/quit", true);
    await tmux.waitFor("alice", /^EXIT=0$/m, 10_000);
    await tmux.waitFor("bob", /^EXIT=0$/m, 10_000);
  },
});
