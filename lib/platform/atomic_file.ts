/**
 * Small-file I/O for DIM's data directory: atomic replacement of a file and a
 * bounded read. This module is where file I/O on the Deno runtime sits, so
 * the layers above it (the keystore) deal in paths and bytes only.
 *
 * An atomic write never leaves a half-written file behind: the bytes go to a
 * temporary file in the same directory, which is flushed to disk and then
 * renamed over the target. A crash or a full disk leaves either the old file
 * or the new one, never a mix.
 *
 * @example Replace a file and read it back
 * ```ts
 * import assert from "node:assert/strict";
 * import { readFileBounded, writeFileAtomic } from "./atomic_file.ts";
 *
 * const dir = await Deno.makeTempDir();
 * const path = `${dir}/settings.bin`;
 * await writeFileAtomic(path, new Uint8Array([1, 2, 3]));
 * await writeFileAtomic(path, new Uint8Array([4, 5]));
 * const bytes = await readFileBounded(path, 1024);
 * assert(bytes !== undefined && bytes.length === 2 && bytes[0] === 4);
 * await Deno.remove(dir, { recursive: true });
 * ```
 *
 * @module
 */
import { basename, dirname, join } from "node:path";
import { toHex } from "./bytes.ts";
import { StorageError } from "../errors.ts";

/** Options for {@linkcode writeFileAtomic}. */
export interface WriteFileAtomicOptions {
  /** Permission bits of the written file (ignored on Windows). Default `0o600`. */
  readonly mode?: number;
  /**
   * Whether an existing file at `path` is replaced. With `false` the write
   * fails, atomically, if the file already exists. Default `true`.
   */
  readonly overwrite?: boolean;
}

const IS_WINDOWS = Deno.build.os === "windows";

/**
 * Writes `bytes` to `path` atomically: to a uniquely named temporary file in
 * the same directory, flushed to disk, then renamed over `path`, and the
 * directory flushed too. On any failure the temporary file is removed and
 * the previous contents of `path`, if any, are left as they were.
 *
 * @param path The file to write.
 * @param bytes The complete new contents.
 * @param options `mode` (default `0o600`) and `overwrite` (default `true`).
 * @returns When the new contents are durably in place.
 * @throws {StorageError} If the file cannot be written, with a message such as
 *   "Cannot write /path/file: no space left on device" and the system error as
 *   `cause`; also if `overwrite` is `false` and the file exists.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { writeFileAtomic } from "./atomic_file.ts";
 *
 * const dir = await Deno.makeTempDir();
 * await writeFileAtomic(`${dir}/a.bin`, new Uint8Array([42]), { mode: 0o600 });
 * assert((await Deno.readFile(`${dir}/a.bin`))[0] === 42);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function writeFileAtomic(
  path: string,
  bytes: Uint8Array,
  options: WriteFileAtomicOptions = {},
): Promise<void> {
  const { mode = 0o600, overwrite = true } = options;
  const dir = dirname(path);
  const temp = join(
    dir,
    `.${basename(path)}.${toHex(crypto.getRandomValues(new Uint8Array(8)))}.tmp`,
  );
  let tempExists = false;
  try {
    const file = await Deno.open(temp, { write: true, createNew: true, mode });
    tempExists = true;
    try {
      // `mode` at creation is filtered by the umask; set it exactly.
      if (!IS_WINDOWS) await Deno.chmod(temp, mode);
      await writeAll(file, bytes);
      await file.sync();
    } finally {
      file.close();
    }
    if (overwrite) {
      await Deno.rename(temp, path);
      tempExists = false;
    } else {
      // link() fails if `path` exists, so the check and the write are one step.
      await Deno.link(temp, path);
      await Deno.remove(temp);
      tempExists = false;
    }
  } catch (cause) {
    if (tempExists) await Deno.remove(temp).catch(() => {});
    throw new StorageError(`Cannot write ${path}: ${describe(cause)}`, { cause });
  }
  await syncDirectory(dir, path);
  await sweepStaleTemps(dir, basename(path));
}

/** Temporary files of a write that was killed are swept once they are this old. */
const STALE_TEMP_MS = 60 * 60 * 1000;

/**
 * Removes temporary files of `name` left by writes that were killed. Only old
 * ones: a fresh one may belong to a write in progress in another process.
 */
async function sweepStaleTemps(dir: string, name: string): Promise<void> {
  const prefix = `.${name}.`;
  try {
    for await (const entry of Deno.readDir(dir)) {
      if (!entry.isFile || !entry.name.startsWith(prefix) || !entry.name.endsWith(".tmp")) continue;
      if (!/^[0-9a-f]{16}$/.test(entry.name.slice(prefix.length, -".tmp".length))) continue;
      const temp = join(dir, entry.name);
      const info = await Deno.lstat(temp);
      if (Date.now() - (info.mtime?.getTime() ?? Date.now()) > STALE_TEMP_MS) {
        await Deno.remove(temp);
      }
    }
  } catch {
    // Sweeping is housekeeping: the write itself succeeded.
  }
}

/**
 * Reads a small file whole, refusing one larger than `maxBytes` before
 * reading it all, so a huge or endless file cannot exhaust memory.
 *
 * @param path The file to read.
 * @param maxBytes The largest size accepted.
 * @returns The contents, or `undefined` if no file exists at `path`.
 * @throws {RangeError} If the file holds more than `maxBytes` bytes.
 * @throws {StorageError} If the file exists but cannot be read.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readFileBounded } from "./atomic_file.ts";
 *
 * const dir = await Deno.makeTempDir();
 * assert((await readFileBounded(`${dir}/missing`, 10)) === undefined);
 * await Deno.writeFile(`${dir}/big`, new Uint8Array(11));
 * try {
 *   await readFileBounded(`${dir}/big`, 10);
 *   assert(false);
 * } catch (err) {
 *   assert(err instanceof RangeError);
 * }
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function readFileBounded(
  path: string,
  maxBytes: number,
): Promise<Uint8Array<ArrayBuffer> | undefined> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (cause) {
    if (cause instanceof Deno.errors.NotFound) return undefined;
    throw new StorageError(`Cannot read ${path}: ${describe(cause)}`, { cause });
  }
  try {
    // One byte more than allowed tells an oversized file from one of exactly `maxBytes`.
    const buf = new Uint8Array(maxBytes + 1);
    let length = 0;
    while (length < buf.length) {
      const n = await file.read(buf.subarray(length));
      if (n === null) break;
      length += n;
    }
    if (length > maxBytes) {
      throw new RangeError(`Cannot read ${path}: it is larger than ${maxBytes} bytes`);
    }
    return buf.slice(0, length);
  } catch (cause) {
    if (cause instanceof RangeError) throw cause;
    throw new StorageError(`Cannot read ${path}: ${describe(cause)}`, { cause });
  } finally {
    file.close();
  }
}

/**
 * Tells whether anything (file, directory or link) exists at `path`.
 *
 * @param path The path to look at.
 * @returns `true` if something exists there.
 * @throws {StorageError} If the path cannot be examined (other than not existing).
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { pathExists } from "./atomic_file.ts";
 *
 * const dir = await Deno.makeTempDir();
 * assert(await pathExists(dir));
 * assert(!(await pathExists(`${dir}/nothing`)));
 * await Deno.remove(dir);
 * ```
 */
export async function pathExists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (cause) {
    // Under a file, nothing can exist: that is "no", not a failure.
    if (cause instanceof Deno.errors.NotFound || cause instanceof Deno.errors.NotADirectory) {
      return false;
    }
    throw new StorageError(`Cannot examine ${path}: ${describe(cause)}`, { cause });
  }
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) {
    const n = await file.write(bytes.subarray(offset));
    if (n === 0) throw new Deno.errors.WriteZero("write returned 0 bytes");
    offset += n;
  }
}

// Makes the rename itself durable. Windows has no directory handles to flush,
// and some file systems refuse fsync on a directory; both are left as they are.
async function syncDirectory(dir: string, path: string): Promise<void> {
  if (IS_WINDOWS) return;
  let handle: Deno.FsFile | undefined;
  try {
    handle = await Deno.open(dir, { read: true });
    await handle.sync();
  } catch (cause) {
    const code = errorCode(cause);
    if (code === "EINVAL" || code === "ENOTSUP" || cause instanceof Deno.errors.NotSupported) {
      return;
    }
    throw new StorageError(
      `Cannot write ${path}: the file was replaced but its directory could not be flushed (${
        describe(cause)
      })`,
      { cause },
    );
  } finally {
    handle?.close();
  }
}

function errorCode(err: unknown): string | undefined {
  if (typeof err !== "object" || err === null || !("code" in err)) return undefined;
  return typeof err.code === "string" ? err.code : undefined;
}

const MESSAGES: Readonly<Record<string, string>> = {
  ENOSPC: "no space left on device",
  EDQUOT: "disk quota exceeded",
  EROFS: "read-only file system",
  EACCES: "permission denied",
  EPERM: "permission denied",
  ENOENT: "its directory does not exist",
  ENOTDIR: "a parent path is not a directory",
  EISDIR: "it is a directory",
  EEXIST: "the file already exists",
  EIO: "input/output error",
};

// One short phrase for the reasons a user can act on; the system message otherwise.
function describe(err: unknown): string {
  const known = MESSAGES[errorCode(err) ?? ""];
  if (known !== undefined) return known;
  if (err instanceof Deno.errors.NotCapable) return "permission to access it was not granted";
  if (err instanceof Deno.errors.NotFound) return MESSAGES.ENOENT!;
  if (err instanceof Deno.errors.PermissionDenied) return MESSAGES.EACCES!;
  if (err instanceof Deno.errors.AlreadyExists) return MESSAGES.EEXIST!;
  return err instanceof Error ? err.message : String(err);
}
