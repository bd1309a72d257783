/**
 * Reasons a user can act on, for SQLite's terse open errors.
 *
 * @module
 */

/**
 * SQLite says only "unable to open database file" when it cannot create or
 * write the file or its journal; a probe file in the same directory tells
 * the reason a user can act on.
 *
 * @param path The database file that would not open.
 * @param cause What SQLite threw.
 * @returns The reason, or `undefined` if the probe finds none.
 */
export function whyUnopenable(path: string, cause: unknown): string | undefined {
  if (path === ":memory:" || !/unable to open/i.test(String(cause))) return undefined;
  const dir = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) || "/" : ".";
  const probe = `${dir}/.dim-probe-${crypto.randomUUID()}`;
  try {
    Deno.writeFileSync(probe, new Uint8Array(1), { createNew: true });
    Deno.removeSync(probe);
    return undefined;
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (code === "EROFS") return "the data directory is read-only";
    if (code === "ENOSPC" || code === "EDQUOT") return "no space left on device";
    if (code === "EACCES" || code === "EPERM") return "permission denied";
    if (code === "ENOENT") return "its directory does not exist";
    return undefined;
  }
}
