/**
 * A private tmux server for driving real `dim` processes under a
 * pseudo-terminal, as a person would: type, press keys, read the screen.
 *
 * @module
 */
import { CLI, LOOPBACK, PASSPHRASE, ROOT } from "./_helpers.ts";

/** Where tmux is; tests that need it are skipped without it. */
export const TMUX = "/usr/bin/tmux";

/** Whether tmux is installed. */
export const HAVE_TMUX: boolean = await Deno.stat(TMUX).then(() => true, () => false);

/** A private tmux server; killed with everything in it at the end. */
export class Tmux implements AsyncDisposable {
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

  /** Starts `command` in a new 120×40 session. */
  async start(session: string, command: string): Promise<void> {
    await this.run(
      "new-session",
      "-d",
      "-s",
      session,
      "-x",
      "120",
      "-y",
      "40",
      "-c",
      ROOT,
      command,
    );
  }

  /** What the session's pane shows now (lines joined, as wrapped). */
  screen(session: string): Promise<string> {
    return this.run("capture-pane", "-p", "-J", "-t", session);
  }

  /** Types text literally; `enter` presses Enter after it. */
  async type(session: string, text: string, enter = false): Promise<void> {
    await this.run("send-keys", "-t", session, "-l", text);
    if (enter) await this.key(session, "Enter");
  }

  /** Presses a key by its tmux name (Enter, Tab, C-c). */
  async key(session: string, key: string): Promise<void> {
    await this.run("send-keys", "-t", session, key);
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

/**
 * The shell command of `dim --home <home> --listen <loopback> …args` for a
 * pane, with the test environment; the pane stays after the exit and shows
 * `EXIT=<code>`.
 */
export function dimCommand(home: string, args: readonly string[]): string {
  const dim = [Deno.execPath(), "run", "--quiet", "-A", CLI, "--home", home, "--listen", LOOPBACK]
    .concat(args).map(quote).join(" ");
  // DIM_UPNP=off, DIM_LAN=off: no test sends UPnP or mDNS discovery on the host's interfaces.
  const env = `env DIM_PASSPHRASE=${quote(PASSPHRASE)} DIM_UPNP=off DIM_LAN=off`;
  return `${env} ${dim}; echo "EXIT=$?"; sleep 60`;
}
