/**
 * The path argument of the chat's `/file <path>`: how it is read, and how
 * Tab completes it. A path may be typed as is (`/file my photo.jpg`: the
 * rest of the line is the path), with spaces escaped by a backslash
 * (`/file my\ photo.jpg`, what Tab inserts), or in single or double quotes
 * (`/file "my photo.jpg"`; Tab keeps an opened quote and closes it after a
 * file). `~/` is the home directory.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { completeFileArg, readFileArg } from "./path_complete.ts";
 *
 * assert.equal(readFileArg("my\\ photo.jpg", "/home/ada"), "my photo.jpg");
 * assert.equal(readFileArg('"my photo.jpg"', "/home/ada"), "my photo.jpg");
 * assert.equal(readFileArg("~/a b.txt", "/home/ada"), "/home/ada/a b.txt");
 *
 * const list = () => [{ name: "my photo.jpg", isDirectory: false }, { name: "music", isDirectory: true }];
 * const lookup = { list, home: "/home/ada" };
 * assert.deepEqual(completeFileArg("/file m", lookup), {
 *   replace: 1,
 *   text: "m",
 *   options: ["music/", "my photo.jpg"],
 * });
 * assert.equal(completeFileArg("/file my", lookup)?.text, "my\\ photo.jpg");
 * assert.equal(completeFileArg('/file "my', lookup)?.text, '"my photo.jpg"');
 * ```
 *
 * @module
 */

/** A directory entry, as the completer needs it. */
export interface DirEntryLike {
  /** The name. */
  readonly name: string;
  /** Whether it is a directory (followed through a symlink). */
  readonly isDirectory: boolean;
}

/** Where {@linkcode completeFileArg} looks. */
export interface PathLookup {
  /** The entries of a directory, or `undefined` if it cannot be read. */
  readonly list: (dir: string) => readonly DirEntryLike[] | undefined;
  /** The home directory, for `~/`. */
  readonly home: string | undefined;
}

/** A completion: replace the last `replace` characters (code points) before the cursor with `text`. */
export interface Completion {
  /** How many characters (code points) before the cursor to replace. */
  readonly replace: number;
  /** What to put there. */
  readonly text: string;
  /** When it is not one match: the names that match, to show. */
  readonly options: readonly string[];
}

/** The command whose argument is completed. */
const FILE_COMMAND = /^\s*\/file\s+/;

/** What a backslash escapes when Tab writes a path. */
const SPECIAL = /[\s\\'"$`!&|;()<>*?[\]#~{}]/;

/**
 * Reads the path of `/file <arg>`: quotes and backslash escapes removed,
 * unquoted spaces kept (so a path typed as is works), `~/` expanded.
 *
 * @param arg The rest of the line after `/file `.
 * @param home The home directory, for `~/`.
 * @returns The path.
 */
export function readFileArg(arg: string, home: string | undefined): string {
  return expandHome(unquote(arg.trim()).text, home);
}

/**
 * Completes the path of a `/file` line being typed.
 *
 * @param before The line before the cursor.
 * @param lookup How to list directories.
 * @returns The completion, or `undefined` when the line is not `/file …` or nothing matches.
 */
export function completeFileArg(before: string, lookup: PathLookup): Completion | undefined {
  const command = FILE_COMMAND.exec(before);
  if (command === null) return undefined;
  const arg = before.slice(command[0].length);
  const { text: typed, quote } = unquote(arg);
  const slash = typed.lastIndexOf("/");
  const dir = typed.slice(0, slash + 1);
  const base = typed.slice(slash + 1);
  const entries = lookup.list(expandHome(dir === "" ? "." : dir, lookup.home)) ?? [];
  const matches = entries
    .filter((e) => e.name.startsWith(base) && (base.startsWith(".") || !e.name.startsWith(".")))
    .map((e) => e.isDirectory ? `${e.name}/` : e.name)
    .sort();
  if (matches.length === 0) return undefined;
  const write = (path: string, close: boolean) =>
    quote === undefined ? escape(path) : `${quote}${path}${close ? quote : ""}`;
  if (matches.length === 1) {
    const only = matches[0]!;
    return { replace: [...arg].length, text: write(dir + only, !only.endsWith("/")), options: [] };
  }
  const common = commonPrefix(matches);
  return {
    replace: [...arg].length,
    text: write(dir + (common.length > base.length ? common : base), false),
    options: matches,
  };
}

/** Escapes the characters a shell would split or expand. */
function escape(path: string): string {
  let out = "";
  for (const ch of path) out += SPECIAL.test(ch) ? `\\${ch}` : ch;
  // A leading ~/ stays one.
  return out.startsWith("\\~/") ? out.slice(1) : out;
}

/** Removes quotes and escapes; says which quote is still open, if any. */
function unquote(arg: string): { text: string; quote: "'" | '"' | undefined } {
  let text = "";
  let quote: "'" | '"' | undefined;
  for (let i = 0; i < arg.length; i++) {
    const ch = arg[i]!;
    if (quote === "'") {
      if (ch === "'") quote = undefined;
      else text += ch;
    } else if (ch === "\\" && i + 1 < arg.length) {
      text += arg[++i];
    } else if (ch === quote) {
      quote = undefined;
    } else if (quote === undefined && (ch === "'" || ch === '"')) {
      quote = ch;
    } else {
      text += ch;
    }
  }
  return { text, quote };
}

function expandHome(path: string, home: string | undefined): string {
  if (home === undefined) return path;
  if (path === "~") return home;
  return path.startsWith("~/") ? `${home}/${path.slice(2)}` : path;
}

function commonPrefix(words: readonly string[]): string {
  let prefix = words[0] ?? "";
  for (const w of words) {
    while (!w.startsWith(prefix)) prefix = prefix.slice(0, -1);
  }
  return prefix;
}

/**
 * Lists a directory for the completer, following symlinks to tell directories.
 *
 * @param dir The directory.
 * @returns Its entries, or `undefined` if it cannot be read.
 */
export function listDir(dir: string): DirEntryLike[] | undefined {
  try {
    const out: DirEntryLike[] = [];
    for (const e of Deno.readDirSync(dir)) {
      let isDirectory = e.isDirectory;
      if (e.isSymlink) {
        try {
          isDirectory = Deno.statSync(`${dir}/${e.name}`).isDirectory;
        } catch {
          // A dangling link is listed as a file.
        }
      }
      out.push({ name: e.name, isDirectory });
      if (out.length >= 10_000) break;
    }
    return out;
  } catch {
    return undefined;
  }
}
