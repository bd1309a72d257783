/**
 * A counter kept in a small file of its own: one non-negative integer,
 * replaced atomically (mode 0600) and read strictly. DIM keeps the session
 * manager's high-water mark in one, beside `dim.db` and outside it, so a
 * copy of the database put back alone does not put the mark back too.
 *
 * The file is text, `DIM counter 1\n<decimal>\n`, so a person can read it.
 *
 * @example Write a mark and read it back
 * ```ts
 * import assert from "node:assert/strict";
 * import { CounterFile } from "./counter_file.ts";
 *
 * const dir = await Deno.makeTempDir();
 * const mark = new CounterFile(`${dir}/sessions.mark`);
 * assert.equal(await mark.read(), undefined);
 * await mark.write(1000);
 * assert.equal(await mark.read(), 1000);
 * assert.equal(await Deno.readTextFile(`${dir}/sessions.mark`), "DIM counter 1\n1000\n");
 * await Deno.remove(dir, { recursive: true });
 * ```
 *
 * @module
 */
import { readFileBounded, writeFileAtomic } from "./atomic_file.ts";
import { fromUtf8, utf8 } from "./bytes.ts";

const HEADER = "DIM counter 1\n";
/** The header and a safe integer (at most 16 digits) with its newline. */
const MAX_LENGTH = HEADER.length + 17;
const FORMAT = /^DIM counter 1\n(0|[1-9][0-9]{0,15})\n$/;

/** A non-negative integer in a file of its own. */
export class CounterFile {
  /** The file's path. */
  readonly path: string;

  /**
   * Names the file; nothing is read or written yet.
   *
   * @param path The file's path.
   */
  constructor(path: string) {
    this.path = path;
  }

  /**
   * Reads the counter.
   *
   * @returns The value, or `undefined` if the file does not exist.
   * @throws {SyntaxError} If the file is not a counter file (or its value
   *   is not a safe integer).
   * @throws {RangeError} If the file is larger than a counter file can be.
   * @throws {StorageError} If the file exists but cannot be read.
   */
  async read(): Promise<number | undefined> {
    const bytes = await readFileBounded(this.path, MAX_LENGTH);
    if (bytes === undefined) return undefined;
    let text = "";
    try {
      text = fromUtf8(bytes);
    } catch {
      // Not UTF-8: not a counter file either.
    }
    const match = FORMAT.exec(text);
    const value = match === null ? NaN : Number(match[1]);
    if (!Number.isSafeInteger(value)) {
      throw new SyntaxError(`Cannot read ${this.path}: it is not a DIM counter file`);
    }
    return value;
  }

  /**
   * Replaces the counter atomically and durably (mode 0600).
   *
   * @param value The new value.
   * @returns When it is on disk.
   * @throws {RangeError} If `value` is not a non-negative safe integer.
   * @throws {StorageError} If the file cannot be written.
   */
  async write(value: number): Promise<void> {
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new RangeError(`Cannot write ${this.path}: ${value} is not a counter value`);
    }
    await writeFileAtomic(this.path, utf8(`${HEADER}${value}\n`), { mode: 0o600 });
  }
}
