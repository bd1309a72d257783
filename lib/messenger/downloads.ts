/**
 * Where files from contacts are saved: the download directory, made on
 * first use, with a free name for each file (`name`, `stem (1).ext`, …),
 * and only for senders who are contacts whose keys did not change.
 *
 * @module
 */
import { DimError } from "../errors.ts";
import { type FileOffer, fileSink } from "../messaging/mod.ts";
import type { ContactBook } from "../profile/contacts.ts";

/**
 * The sink for an offered file, or `undefined` to refuse it.
 *
 * @param offer The offer.
 * @param book The contact book.
 * @param dir The download directory; without one every file is refused.
 * @returns Where to write the file, or `undefined`.
 */
export async function downloadSink(
  offer: FileOffer,
  book: ContactBook,
  dir: string | undefined,
): Promise<WritableStream<Uint8Array> | undefined> {
  const contact = book.find(offer.senderId);
  if (dir === undefined || contact === undefined) return undefined;
  if (contact.changedEncryptionKey !== undefined) return undefined;
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  return fileSink(await freeName(dir, offer.name));
}

/** A path in `dir` for `name` that does not exist yet: `name`, `stem (1).ext`, … */
async function freeName(dir: string, name: string): Promise<string> {
  const dot = name.lastIndexOf(".");
  const stem = dot > 0 ? name.slice(0, dot) : name;
  const ext = dot > 0 ? name.slice(dot) : "";
  for (let i = 0; i < 1000; i++) {
    const candidate = `${dir}/${i === 0 ? name : `${stem.slice(0, 200)} (${i})${ext}`}`;
    try {
      await Deno.lstat(candidate);
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return candidate;
      throw err;
    }
  }
  throw new DimError(`Cannot save file ${name}: too many files of that name in ${dir}`);
}
