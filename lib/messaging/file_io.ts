/**
 * Files on disk for file transfer: {@linkcode fileSource} reads a file to
 * send, and {@linkcode fileSink} writes a received one without ever showing
 * a partial file. The transfer itself speaks only web streams
 * (`ReadableStream`/`WritableStream`), so this is the one file-transfer
 * module that touches the file system.
 *
 * @example Send a file from disk, receive into a directory
 * ```ts ignore
 * import { fileSink, fileSource } from "./file_io.ts";
 *
 * await sendFile(transport, { identity: alice, recipient, source: await fileSource("./holiday.jpg") });
 * new FileReceiver(bob, { accept: (offer) => fileSink(`${downloads}/${offer.name}`) });
 * ```
 *
 * @module
 */
import { basename, dirname, join } from "node:path";
import { toHex } from "../platform/bytes.ts";
import type { FileSource } from "./file_send.ts";

/**
 * A {@linkcode FileSource} for a file on disk: its base name, its size and
 * a stream of its bytes (the file is closed when the stream ends or is
 * cancelled).
 *
 * @param path The file to send.
 * @returns The source.
 * @throws {TypeError} If `path` is not a regular file.
 * @throws {Deno.errors.NotFound} If there is no such file.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fileSource } from "./file_io.ts";
 *
 * const dir = await Deno.makeTempDir();
 * await Deno.writeFile(`${dir}/notes.txt`, new Uint8Array([1, 2, 3]));
 * const source = await fileSource(`${dir}/notes.txt`);
 * assert.equal(source.name, "notes.txt");
 * assert.equal(source.size, 3);
 * assert.deepEqual(new Uint8Array(await new Response(source.stream).arrayBuffer()), new Uint8Array([1, 2, 3]));
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function fileSource(path: string): Promise<FileSource> {
  const file = await Deno.open(path, { read: true });
  try {
    const info = await file.stat();
    if (!info.isFile) throw new TypeError(`Cannot send ${path}: it is not a regular file`);
    return { name: basename(path), size: info.size, stream: file.readable };
  } catch (err) {
    file.close();
    throw err;
  }
}

/** Options of {@linkcode fileSink}. */
export interface FileSinkOptions {
  /** Permission bits of the written file. Default `0o600`. */
  readonly mode?: number;
}

/**
 * A sink that writes to `path` without ever showing a partial file: the
 * bytes go to a hidden temporary file in the same directory, which is
 * flushed and then linked to `path` when the stream closes (failing if
 * `path` exists by then), and removed when the stream is aborted.
 *
 * @param path Where the complete file goes. It must not exist yet.
 * @param options `mode` of the file.
 * @returns The sink.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fileSink } from "./file_io.ts";
 *
 * const dir = await Deno.makeTempDir();
 * const done = fileSink(`${dir}/a.bin`).getWriter();
 * await done.write(new Uint8Array([7]));
 * await done.close();
 * assert.deepEqual(await Deno.readFile(`${dir}/a.bin`), new Uint8Array([7]));
 *
 * const failed = fileSink(`${dir}/b.bin`).getWriter();
 * await failed.write(new Uint8Array([8]));
 * await failed.abort(new Error("checksum mismatch"));
 * assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["a.bin"]);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export function fileSink(path: string, options: FileSinkOptions = {}): WritableStream<Uint8Array> {
  const mode = options.mode ?? 0o600;
  // Not named after the file: a name of the longest allowed length would
  // make the temporary name too long for the file system.
  const temp = join(
    dirname(path),
    `.dim-${toHex(crypto.getRandomValues(new Uint8Array(8)))}.part`,
  );
  let file: Deno.FsFile | undefined;
  const discard = async () => {
    file?.close();
    file = undefined;
    await Deno.remove(temp).catch(() => {});
  };
  return new WritableStream<Uint8Array>({
    async start() {
      if (await Deno.lstat(path).then(() => true, () => false)) {
        throw new Deno.errors.AlreadyExists(`Cannot write ${path}: it exists`);
      }
      file = await Deno.open(temp, { write: true, createNew: true, mode });
    },
    async write(chunk) {
      try {
        for (let done = 0; done < chunk.length;) {
          done += await file!.write(chunk.subarray(done));
        }
      } catch (err) {
        await discard();
        throw err;
      }
    },
    async close() {
      try {
        await file!.sync();
        file!.close();
        file = undefined;
        // link() fails if `path` appeared meanwhile: never replace a file.
        await Deno.link(temp, path);
      } finally {
        await discard();
      }
    },
    async abort() {
      await discard();
    },
  });
}
