/**
 * SQLite files readable by their owner only. SQLite creates a database file
 * with mode 0644 (less the umask), and gives the `-wal`, `-shm` and
 * `-journal` files it makes beside it the database file's mode; DIM's
 * databases hold contacts, sealed secrets and sealed history, so they are
 * made 0600 before SQLite opens them, and files an older DIM left open to
 * others are closed.
 *
 * @example Make a database file private before opening it
 * ```ts
 * import assert from "node:assert/strict";
 * import { DatabaseSync } from "node:sqlite";
 * import { privateSqliteFile } from "./sqlite_files.ts";
 *
 * const dir = await Deno.makeTempDir();
 * privateSqliteFile(`${dir}/a.db`);
 * const db = new DatabaseSync(`${dir}/a.db`);
 * db.exec("PRAGMA journal_mode = WAL; CREATE TABLE t (x)");
 * if (Deno.build.os !== "windows") {
 *   assert.equal((await Deno.stat(`${dir}/a.db-wal`)).mode! & 0o777, 0o600);
 * }
 * db.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 *
 * @module
 */

/** The permission bits of every file DIM writes in a data directory. */
export const PRIVATE_FILE_MODE = 0o600;

/** The files SQLite keeps beside a database. */
const COMPANIONS = ["", "-wal", "-shm", "-journal"] as const;

/**
 * Readies `path` for SQLite, readable by its owner only: a missing file is
 * created empty (SQLite takes an empty file for a new database) with mode
 * 0600, so the `-wal`, `-shm` and `-journal` files SQLite creates get 0600
 * too; an existing file and the companions already there are set to 0600.
 * Best effort: where permissions cannot be set (Windows, a file system
 * without them, a file of another user), the files are left as they are and
 * opening the database reports what matters. `":memory:"` is ignored.
 *
 * @param path The database file.
 */
export function privateSqliteFile(path: string): void {
  if (path === ":memory:" || path === "" || Deno.build.os === "windows") return;
  try {
    Deno.openSync(path, { write: true, create: true, mode: PRIVATE_FILE_MODE }).close();
  } catch {
    return; // The directory is missing or read-only: SQLite's open says so.
  }
  for (const suffix of COMPANIONS) {
    try {
      // `mode` at creation is filtered by the umask, and older files may be 0644.
      Deno.chmodSync(path + suffix, PRIVATE_FILE_MODE);
    } catch { /* missing, or not ours to change */ }
  }
}
