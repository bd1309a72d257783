/**
 * Shared pieces of the CLI tests: temporary data directories, `main` run
 * against a scripted terminal, storage nodes on 127.0.0.1, and `dim` subprocesses.
 *
 * @module
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { main } from "../../lib/cli/main.ts";
import { type MemoryIo, memoryIo, type MemoryIoOptions } from "../../lib/cli/io.ts";
import { createStorageNode, type StorageNode } from "../../lib/storage_node.ts";
import { createMessenger, type Messenger } from "../../lib/messenger/messenger.ts";
import { openProfile } from "../../lib/profile/profile.ts";

/** Loopback only: tests never listen on other interfaces. */
export const LOOPBACK = "/ip4/127.0.0.1/tcp/0";

/** The passphrase of every test identity. */
export const PASSPHRASE = "test passphrase";

/**
 * The environment of every `dim` a test runs, in this process or as a
 * subprocess: the passphrase, and UPnP and LAN discovery off, so that no
 * test ever sends SSDP or mDNS multicast on the host's real interfaces.
 */
export const TEST_ENV: Readonly<Record<string, string>> = Object.freeze({
  DIM_PASSPHRASE: PASSPHRASE,
  DIM_UPNP: "off",
  DIM_LAN: "off",
});

/** The repository root and the CLI entry point. */
export const ROOT: string = fileURLToPath(new URL("../../", import.meta.url));
export const CLI: string = fileURLToPath(new URL("../../cli.ts", import.meta.url));

/** What one run of `main` left behind. */
export interface Run {
  readonly code: number;
  readonly out: string;
  readonly err: string;
  readonly io: MemoryIo;
}

/**
 * Runs `dim --home <home> …args` in this process against a scripted terminal,
 * with {@linkcode TEST_ENV} (`DIM_PASSPHRASE` unless `env` says otherwise;
 * `DIM_UPNP=off` and `DIM_LAN=off` always).
 */
export function dim(
  home: string,
  args: readonly string[],
  options: MemoryIoOptions = {},
): Promise<Run> {
  return startDim(home, args, options).done;
}

/** Like {@linkcode dim}, but gives the terminal at once, to type into while it runs. */
export function startDim(
  home: string,
  args: readonly string[],
  options: MemoryIoOptions = {},
): { readonly io: MemoryIo; readonly done: Promise<Run> } {
  const io = memoryIo({
    ...options,
    env: { ...TEST_ENV, ...options.env, DIM_UPNP: "off", DIM_LAN: "off" },
  });
  const done = main(["--home", home, ...args], io).then((code) => ({
    code,
    out: io.out,
    err: io.err,
    io,
  }));
  return { io, done };
}

/** A directory removed at the end of the test. */
export async function tempDir(): Promise<{ readonly path: string } & AsyncDisposable> {
  const path = await Deno.makeTempDir({ prefix: "dim-cli-test-" });
  return {
    path,
    [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }).catch(() => {}),
  };
}

/** Creates an identity in `home` with `dim init`; returns its user ID. */
export async function initUser(
  home: string,
  name: string,
  extra: readonly string[] = [],
): Promise<string> {
  const run = await dim(home, ["init", "--name", name, "--json", ...extra]);
  if (run.code !== 0) throw new Error(`init ${name} failed: ${run.err}`);
  return JSON.parse(run.out).id;
}

/** A storage node on 127.0.0.1 and its address; stops at the end of the test. */
export async function storageNode(): Promise<StorageNode & { readonly address: string }> {
  const r = await createStorageNode({ listen: [LOOPBACK] });
  return Object.assign(r, { address: r.addresses[0]! });
}

/** Global options that join a test network through `address`, listening on loopback. */
export function net(address: string): string[] {
  return ["--bootstrap", address, "--listen", LOOPBACK];
}

/** Waits until `check` holds, polling; fails after `ms`. */
export async function until(
  check: () => boolean,
  ms: number,
  what: string,
): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Runs `deno run -A cli.ts …args` to its end, with {@linkcode TEST_ENV}
 * (`DIM_UPNP=off` and `DIM_LAN=off` always); kills it after `timeoutMs`.
 */
export async function runCli(
  args: readonly string[],
  options: { readonly env?: Record<string, string>; readonly timeoutMs?: number } = {},
): Promise<{ code: number; out: string; err: string; ms: number }> {
  const started = performance.now();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", "-A", CLI, ...args],
    cwd: ROOT,
    env: { ...TEST_ENV, NO_COLOR: "1", ...options.env, DIM_UPNP: "off", DIM_LAN: "off" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const killer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch {
      // Already gone.
    }
  }, options.timeoutMs ?? 20_000);
  try {
    const { code, stdout, stderr } = await child.output();
    const decode = (b: Uint8Array) => new TextDecoder().decode(b);
    return {
      code,
      out: decode(stdout),
      err: decode(stderr),
      ms: performance.now() - started,
    };
  } finally {
    clearTimeout(killer);
  }
}

/** Opens the messenger of a home the CLI created, on the test network. */
export async function openUser(home: string, bootstrap: string): Promise<Messenger> {
  return await createMessenger(await openProfile({ home, passphrase: PASSPHRASE }), {
    listen: [LOOPBACK],
    bootstrap: [bootstrap],
    messaging: { retryBaseMs: 100, retryMaxMs: 1000, outboxIntervalMs: 100, mailboxPollMs: 500 },
  });
}

/** Two CLI users, `alice` and `bob`, who added each other through `address`. */
export async function pairUsers(
  tmp: string,
  address: string,
): Promise<{ alice: string; bob: string }> {
  const alice = `${tmp}/alice`;
  const bob = `${tmp}/bob`;
  await initUser(alice, "Alice", net(address));
  await initUser(bob, "Bob", net(address));
  const bobId = JSON.parse((await dim(bob, ["id", "--json"])).out).id;
  const aliceId = JSON.parse((await dim(alice, ["id", "--json"])).out).id;
  const added = await dim(alice, ["contact", "add", "bob", bobId, "--listen", LOOPBACK]);
  assert.equal(added.code, 0, added.err);
  const back = await dim(bob, ["contact", "add", "alice", aliceId, "--listen", LOOPBACK]);
  assert.equal(back.code, 0, back.err);
  return { alice, bob };
}
