/**
 * Where DIM keeps its data, and the names of the files in it.
 *
 * The data directory is, in order of preference: the `--home` option, the
 * `DIM_HOME` environment variable, `$XDG_DATA_HOME/dim`, and
 * `$HOME/.local/share/dim`. It is created readable by its owner only.
 *
 * @example Resolve and create the data directory
 * ```ts
 * import assert from "node:assert/strict";
 * import { dataPaths, ensureHome, resolveHome } from "./paths.ts";
 *
 * const base = await Deno.makeTempDir();
 * const env = new Map([["XDG_DATA_HOME", base]]);
 * const home = resolveHome({ env });
 * assert(home === `${base}/dim`);
 * await ensureHome(home);
 * assert(dataPaths(home).identityKey === `${base}/dim/identity.key`);
 * await Deno.remove(base, { recursive: true });
 * ```
 *
 * @module
 */
import { dirname, isAbsolute, join } from "node:path";
import { StorageError } from "../errors.ts";

/** The file names inside the data directory, kept in one place. */
export const DATA_FILES = {
  /** The encrypted identity keystore. */
  identityKey: "identity.key",
  /** The SQLite database: contacts, messages, outbox and the DHT datastore. */
  database: "dim.db",
  /** The Unix domain socket of the local API, while `dim daemon` runs. */
  socket: "dim.sock",
} as const;

/** The environment variable that overrides the data directory. */
export const HOME_ENV_VAR = "DIM_HOME";

/** The permission bits of a data directory DIM creates. */
export const HOME_MODE = 0o700;

/** Read access to environment variables; `Deno.env` and a `Map` both fit. */
export interface EnvReader {
  /**
   * Reads one variable.
   *
   * @param name The variable's name.
   * @returns Its value, or `undefined` if it is not set.
   */
  get(name: string): string | undefined;
}

/** Options for {@linkcode resolveHome}. */
export interface ResolveHomeOptions {
  /** An explicit data directory (the `--home` option); wins over everything else. */
  readonly home?: string | undefined;
  /** Where variables are read. Default `Deno.env` (needs `--allow-env`). */
  readonly env?: EnvReader;
}

/**
 * Works out the data directory: `options.home` if given, else `DIM_HOME`,
 * else `$XDG_DATA_HOME/dim`, else `$HOME/.local/share/dim`. Empty values
 * count as unset, and a relative `XDG_DATA_HOME` is ignored as the XDG Base
 * Directory specification requires. Nothing is created or checked on disk.
 *
 * @param options `home` (the `--home` option) and `env` (default `Deno.env`).
 * @returns The data directory path.
 * @throws {StorageError} If none of the options and variables is set.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { resolveHome } from "./paths.ts";
 *
 * const env = new Map([["HOME", "/home/ada"], ["DIM_HOME", "/srv/dim"]]);
 * assert(resolveHome({ env }) === "/srv/dim");
 * assert(resolveHome({ home: "/tmp/x", env }) === "/tmp/x");
 * assert(resolveHome({ env: new Map([["HOME", "/home/ada"]]) }) === "/home/ada/.local/share/dim");
 * ```
 */
export function resolveHome(options: ResolveHomeOptions = {}): string {
  if (nonEmpty(options.home)) return options.home;
  const env = options.env ?? Deno.env;
  const dimHome = env.get(HOME_ENV_VAR);
  if (nonEmpty(dimHome)) return dimHome;
  const xdg = env.get("XDG_DATA_HOME");
  if (nonEmpty(xdg) && isAbsolute(xdg)) return join(xdg, "dim");
  const userHome = env.get("HOME");
  if (nonEmpty(userHome)) return join(userHome, ".local", "share", "dim");
  throw new StorageError(
    `Cannot find the data directory: none of --home, ${HOME_ENV_VAR}, XDG_DATA_HOME or HOME is set`,
  );
}

/**
 * Creates the data directory if it does not exist, readable by its owner
 * only (mode `0o700`; missing parents get the same mode). An existing
 * directory is used as it is: its permissions are not changed, since it may
 * be a directory the user chose that other programs share.
 *
 * @param dir The data directory, as from {@linkcode resolveHome}.
 * @returns When the directory exists.
 * @throws {StorageError} If it cannot be created, or the path exists and is
 *   not a directory.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ensureHome } from "./paths.ts";
 *
 * const base = await Deno.makeTempDir();
 * await ensureHome(`${base}/a/dim`);
 * await ensureHome(`${base}/a/dim`); // already there: fine
 * assert((await Deno.stat(`${base}/a/dim`)).isDirectory);
 * await Deno.remove(base, { recursive: true });
 * ```
 */
export async function ensureHome(dir: string): Promise<void> {
  try {
    await Deno.mkdir(dirname(dir), { recursive: true, mode: HOME_MODE });
  } catch (cause) {
    // A file among the parents makes mkdir report "already exists".
    const why = cause instanceof Deno.errors.AlreadyExists
      ? "a parent path is not a directory"
      : reason(cause);
    throw new StorageError(`Cannot create data directory ${dir}: ${why}`, { cause });
  }
  try {
    await Deno.mkdir(dir, { mode: HOME_MODE });
    // `mode` at creation is filtered by the umask; set it exactly.
    if (Deno.build.os !== "windows") await Deno.chmod(dir, HOME_MODE);
  } catch (cause) {
    if (cause instanceof Deno.errors.AlreadyExists) {
      if (await isDirectory(dir)) return;
      throw new StorageError(`Cannot use data directory ${dir}: it is not a directory`, { cause });
    }
    throw new StorageError(`Cannot create data directory ${dir}: ${reason(cause)}`, { cause });
  }
}

/** The full paths of the files in a data directory. */
export interface DataPaths {
  /** The data directory itself. */
  readonly home: string;
  /** The encrypted identity keystore. */
  readonly identityKey: string;
  /** The SQLite database. */
  readonly database: string;
  /** The Unix domain socket of the local API (`dim daemon`). */
  readonly socket: string;
}

/**
 * The full paths of DIM's files in a data directory.
 *
 * @param home The data directory.
 * @returns The path of each file.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { dataPaths } from "./paths.ts";
 *
 * assert(dataPaths("/srv/dim").database === "/srv/dim/dim.db");
 * ```
 */
export function dataPaths(home: string): DataPaths {
  return {
    home,
    identityKey: join(home, DATA_FILES.identityKey),
    database: join(home, DATA_FILES.database),
    socket: join(home, DATA_FILES.socket),
  };
}

function nonEmpty(value: string | undefined): value is string {
  return value !== undefined && value !== "";
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isDirectory;
  } catch {
    return false;
  }
}

function reason(err: unknown): string {
  if (err instanceof Deno.errors.PermissionDenied) return "permission denied";
  if (err instanceof Deno.errors.NotADirectory) return "a parent path is not a directory";
  if (err instanceof Deno.errors.NotCapable) return "permission to access it was not granted";
  return err instanceof Error ? err.message : String(err);
}
