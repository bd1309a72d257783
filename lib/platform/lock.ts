/**
 * An exclusive lock on a data directory, so two DIM processes never run the
 * same identity and database at once.
 *
 * The lock is an SQLite database held in exclusive locking mode: the
 * operating system releases it when the process ends, even by `kill -9`, so
 * a crash never leaves a stale lock behind.
 *
 * @example
 * ```ts
 * import { lockDataDir } from "./lock.ts";
 * const dir = Deno.makeTempDirSync();
 * const lock = lockDataDir(dir);
 * lock.release();
 * Deno.removeSync(dir, { recursive: true });
 * ```
 *
 * @module
 */
import { DatabaseSync } from "node:sqlite";
import { StorageError } from "../errors.ts";
import { whyUnopenable } from "./sqlite_errors.ts";
import { privateSqliteFile } from "./sqlite_files.ts";

/** A held data-directory lock. */
export interface DataDirLock {
  /** Releases the lock. Idempotent. */
  release(): void;
}

/**
 * Takes the lock of `dir`, failing at once if another process holds it.
 *
 * @param dir The data directory.
 * @returns The held lock.
 * @throws {StorageError} If another process holds it, or the directory cannot be written.
 */
export function lockDataDir(dir: string): DataDirLock {
  const path = `${dir}/lock`;
  let db: DatabaseSync | undefined;
  try {
    privateSqliteFile(path);
    db = new DatabaseSync(path);
    db.exec("PRAGMA busy_timeout = 0");
    db.exec("PRAGMA locking_mode = EXCLUSIVE");
    db.exec("BEGIN EXCLUSIVE");
    db.exec("CREATE TABLE IF NOT EXISTS holder (pid INTEGER)");
  } catch (cause) {
    try {
      db?.close();
    } catch { /* nothing held */ }
    const text = cause instanceof Error ? cause.message : String(cause);
    if (/locked|busy/i.test(text)) {
      throw new StorageError(
        `Cannot use data directory ${dir}: another dim process is using it`,
        { cause },
      );
    }
    const reason = whyUnopenable(path, cause) ?? text;
    throw new StorageError(`Cannot lock data directory ${dir}: ${reason}`, { cause });
  }
  const held = db;
  let released = false;
  return {
    release() {
      if (released) return;
      released = true;
      try {
        held.exec("ROLLBACK");
      } finally {
        held.close();
      }
    },
  };
}
