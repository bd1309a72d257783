import assert from "node:assert/strict";
import { ProtocolError } from "../../lib/errors.ts";
import {
  FILE_CHUNK_CONTENT_TYPE,
  FILE_HEADER_CONTENT_TYPE,
  MAILBOX_FILE_CHUNK_SIZE,
  MAILBOX_FILE_MAX_SIZE,
} from "../../lib/messaging/constants.ts";
import {
  decodeFileChunk,
  decodeFileHeader,
  encodeFileChunk,
  encodeFileHeader,
  leaveFile,
  MailboxFiles,
} from "../../lib/messaging/file_mailbox.ts";
import type { FileOffer, ReceivedFile } from "../../lib/messaging/file_receive.ts";
import { TransferRefusedError } from "../../lib/messaging/file_wire.ts";
import type { StoredMessage } from "../../lib/messaging/storage.ts";
import { Identity } from "../../lib/crypto/identity.ts";
import { toHex } from "../../lib/platform/bytes.ts";
import { nextMessages, testNet } from "../_support/network.ts";

const random = (n: number) => {
  const bytes = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) crypto.getRandomValues(bytes.subarray(i, i + 65536));
  return bytes;
};

/** Waits until `check` holds, polling. */
async function until(what: string, check: () => boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

Deno.test("a file left for a contact who is offline arrives, whole and checked, when they come back", async () => {
  await using net = await testNet(2);
  const downloads = `${net.dir}/downloads`;
  const alice = await net.user("alice");
  const bob = await net.user("bob", { downloadDir: downloads });
  await alice.addContact("bob", bob.id);
  await bob.addContact("alice", alice.id);
  await bob.stop();

  const content = random(MAILBOX_FILE_CHUNK_SIZE * 3 + 1234);
  await Deno.writeFile(`${net.dir}/holiday photo.jpg`, content);
  const queued = await alice.sendFileLater("bob", `${net.dir}/holiday photo.jpg`);
  assert.equal(queued.name, "holiday photo.jpg");
  assert.equal(queued.bytes, content.length);
  assert.equal(queued.parts.length, 1 + 4, "a header and four chunks");
  for (const seq of queued.parts) {
    await alice.waitFor(seq, { orStored: true, signal: AbortSignal.timeout(15_000) });
  }
  await alice.stop();

  // Bob was offline throughout; Alice is now too.
  const bob2 = await net.reopen("bob", { downloadDir: downloads });
  let messages = 0;
  bob2.addEventListener("message", () => messages++);
  const received = new Promise<ReceivedFile>((resolve) =>
    bob2.addEventListener("file", (e) => resolve((e as CustomEvent<ReceivedFile>).detail), {
      once: true,
    })
  );
  await bob2.fetchMailbox({ signal: AbortSignal.timeout(15_000) });
  const file = await received;
  assert.equal(file.name, "holiday photo.jpg");
  assert.equal(file.bytes, content.length);
  assert.equal(file.sha256, queued.sha256);
  assert.equal(file.senderId, alice.id);
  assert.deepEqual(await Deno.readFile(`${downloads}/holiday photo.jpg`), content);
  assert.equal(messages, 0, "no part shows as a message");
  assert.deepEqual(bob2.profile.history("alice"), []);

  // Bob's receipt for the parts empties Alice's outbox on her next start.
  await bob2.waitFor(bob2.profile.outbox()[0]!.seq, {
    orStored: true,
    signal: AbortSignal.timeout(15_000),
  });
  await bob2.stop();
  const alice2 = await net.reopen("alice");
  await alice2.fetchMailbox({ signal: AbortSignal.timeout(15_000) });
  await until("Alice's outbox empty", () => alice2.profile.outbox().length === 0);
});

Deno.test("a file left for later goes directly to a contact who is online, next to messages", async () => {
  await using net = await testNet();
  const downloads = `${net.dir}/downloads`;
  const alice = await net.user("alice");
  const bob = await net.user("bob", { downloadDir: downloads });
  await alice.addContact("bob", bob.id);
  await bob.addContact("alice", alice.id);
  const received = new Promise<ReceivedFile>((resolve) =>
    bob.addEventListener("file", (e) => resolve((e as CustomEvent<ReceivedFile>).detail), {
      once: true,
    })
  );
  await Deno.writeFile(`${net.dir}/empty.txt`, new Uint8Array(0));
  const queued = await alice.sendFileLater("bob", `${net.dir}/empty.txt`);
  await alice.send("bob", "sent you an empty file");
  assert.equal(queued.parts.length, 1, "an empty file is a header alone");
  const [text] = await nextMessages(bob, 1);
  assert.equal(text?.text, "sent you an empty file");
  assert.equal((await received).bytes, 0);
  assert.deepEqual(await Deno.readFile(`${downloads}/empty.txt`), new Uint8Array(0));
  for (const seq of queued.parts) {
    assert.equal(
      (await alice.waitFor(seq, { signal: AbortSignal.timeout(10_000) })).state,
      "delivered",
    );
  }
});

Deno.test("a file over the mailbox limit is refused before anything is queued, with a clear error", async () => {
  await using net = await testNet();
  const alice = await net.user("alice");
  const bob = await net.user("bob");
  await alice.addContact("bob", bob.id);
  await Deno.writeFile(`${net.dir}/big.bin`, new Uint8Array(MAILBOX_FILE_MAX_SIZE + 1));
  await assert.rejects(
    alice.sendFileLater("bob", `${net.dir}/big.bin`),
    (err: unknown) =>
      err instanceof RangeError &&
      /^Cannot leave file big\.bin for later: it is 4194305 bytes, over the 4 MiB/.test(
        err.message,
      ),
  );
  assert.deepEqual(alice.profile.outbox(), []);
  // Exactly the limit is fine.
  const sent: { body: Uint8Array; contentType: number }[] = [];
  const queued = await leaveFile(
    (body, contentType) => {
      sent.push({ body, contentType });
      return Promise.resolve({ seq: sent.length } as StoredMessage);
    },
    {
      name: "max.bin",
      size: MAILBOX_FILE_MAX_SIZE,
      stream: ReadableStream.from([new Uint8Array(MAILBOX_FILE_MAX_SIZE)]),
    },
  );
  assert.equal(queued.parts.length, 1 + Math.ceil(MAILBOX_FILE_MAX_SIZE / MAILBOX_FILE_CHUNK_SIZE));
  assert.ok(sent.every((p) => p.body.length <= 200 * 1024), "each part fits an envelope");
});

Deno.test("file parts are encoded and decoded strictly", () => {
  const fileId = new Uint8Array(16).fill(9);
  const sha256 = new Uint8Array(32).fill(1);
  const header = { fileId, name: "a.txt", size: 10, sha256, chunks: 1 };
  assert.deepEqual(decodeFileHeader(encodeFileHeader(header)), header);
  assert.equal(decodeFileHeader(encodeFileHeader({ ...header, name: "../x" })).name, "_x");
  assert.throws(() => encodeFileHeader({ ...header, chunks: 2 }), RangeError);
  assert.throws(
    () => encodeFileHeader({ ...header, size: MAILBOX_FILE_MAX_SIZE + 1, chunks: 22 }),
    RangeError,
  );
  const body = encodeFileHeader(header);
  assert.throws(() => decodeFileHeader(Uint8Array.of(...body, 0)), ProtocolError);
  const wrongCount = body.slice();
  wrongCount[1 + 16 + 8 + 32 + 1] = 5;
  assert.throws(() => decodeFileHeader(wrongCount), ProtocolError);
  const huge = body.slice();
  new DataView(huge.buffer).setBigUint64(17, BigInt(MAILBOX_FILE_MAX_SIZE + 1));
  assert.throws(() => decodeFileHeader(huge), ProtocolError);
  const chunk = encodeFileChunk({ fileId, index: 0, data: new Uint8Array([1, 2]) });
  assert.deepEqual(decodeFileChunk(chunk).data, new Uint8Array([1, 2]));
  assert.throws(() => decodeFileChunk(chunk.subarray(0, 19)), ProtocolError, "no data");
  assert.throws(
    () => encodeFileChunk({ fileId, index: 0, data: new Uint8Array(MAILBOX_FILE_CHUNK_SIZE + 1) }),
    RangeError,
  );
});

/** Stored parts in memory, as MailboxFiles reads and clears them. */
function partStore() {
  const rows: StoredMessage[] = [];
  const cleared = new Set<number>();
  return {
    rows,
    cleared,
    add(peer: string, contentType: number, body: Uint8Array) {
      rows.push({
        seq: rows.length + 1,
        id: crypto.getRandomValues(new Uint8Array(16)),
        peer,
        direction: "in",
        sentAt: 1,
        receivedAt: 1,
        contentType,
        body,
        state: "received",
        via: "mailbox",
        protection: "ratchet",
      });
    },
    storage: {
      transaction<T>(fn: () => T): T {
        return fn();
      },
      sync() {},
      messages: {
        incomingWithBody: (peer: string, types: readonly number[]) =>
          rows.filter((r) =>
            r.peer === peer && types.includes(r.contentType) && !cleared.has(r.seq)
          ),
        clearBody: (seq: number) => void cleared.add(seq),
      },
    },
  };
}

Deno.test("a damaged or incomplete mailbox file is never saved; a damaged one is refused and dropped", async () => {
  const alice = (await Identity.generate()).id;
  const content = random(MAILBOX_FILE_CHUNK_SIZE + 10);
  const sha256 = new Uint8Array(await crypto.subtle.digest("SHA-256", content));
  const fileId = new Uint8Array(16).fill(3);
  const header = encodeFileHeader({
    fileId,
    name: "doc.pdf",
    size: content.length,
    sha256,
    chunks: 2,
  });
  const chunk = (index: number, data: Uint8Array) => encodeFileChunk({ fileId, index, data });
  const first = content.subarray(0, MAILBOX_FILE_CHUNK_SIZE);
  const last = content.subarray(MAILBOX_FILE_CHUNK_SIZE);

  const run = async (parts: [number, Uint8Array][]) => {
    const store = partStore();
    for (const [type, body] of parts) store.add(alice, type, body);
    const written: Uint8Array[] = [];
    const failed: { error: unknown; offer: FileOffer | undefined }[] = [];
    const received: ReceivedFile[] = [];
    const files = new MailboxFiles({
      storage: store.storage,
      accept: () =>
        new WritableStream<Uint8Array>({
          write: (bytes) => void written.push(bytes),
        }),
      onReceived: (file) => received.push(file),
      onFailed: (error, offer) => failed.push({ error, offer }),
    });
    await files.check(alice);
    return { store, written, failed, received };
  };

  const whole = await run([
    [FILE_HEADER_CONTENT_TYPE, header],
    [FILE_CHUNK_CONTENT_TYPE, chunk(1, last)],
    [FILE_CHUNK_CONTENT_TYPE, chunk(0, first)],
  ]);
  assert.equal(whole.received[0]?.sha256, toHex(sha256), "chunks in any order");
  assert.deepEqual(whole.store.cleared, new Set([1, 2, 3]), "parts cleared once saved");

  const missing = await run([
    [FILE_HEADER_CONTENT_TYPE, header],
    [FILE_CHUNK_CONTENT_TYPE, chunk(0, first)],
  ]);
  assert.deepEqual(missing.written, []);
  assert.deepEqual(missing.failed, []);
  assert.equal(missing.store.cleared.size, 0, "kept for the missing chunk");

  const flipped = last.slice();
  flipped[0]! ^= 1;
  const corrupt = await run([
    [FILE_HEADER_CONTENT_TYPE, header],
    [FILE_CHUNK_CONTENT_TYPE, chunk(0, first)],
    [FILE_CHUNK_CONTENT_TYPE, chunk(1, flipped)],
  ]);
  assert.deepEqual(corrupt.written, [], "nothing written");
  assert.equal(corrupt.received.length, 0);
  const error = corrupt.failed[0]?.error;
  assert.ok(error instanceof TransferRefusedError && error.reason === "corrupt", String(error));
  assert.equal(corrupt.failed[0]?.offer?.name, "doc.pdf");
  assert.deepEqual(corrupt.store.cleared, new Set([1, 2, 3]), "a damaged file's parts are dropped");

  const short = await run([
    [FILE_HEADER_CONTENT_TYPE, header],
    [FILE_CHUNK_CONTENT_TYPE, chunk(0, first.subarray(1))],
    [FILE_CHUNK_CONTENT_TYPE, chunk(1, last)],
  ]);
  assert.ok(short.failed[0]?.error instanceof TransferRefusedError);
  assert.deepEqual(short.written, []);

  const junk = await run([[FILE_CHUNK_CONTENT_TYPE, Uint8Array.of(7, 7, 7)]]);
  assert.ok(junk.failed[0]?.error instanceof ProtocolError);
  assert.deepEqual(junk.store.cleared, new Set([1]), "an unreadable part is dropped");

  const refusedStore = partStore();
  refusedStore.add(alice, FILE_HEADER_CONTENT_TYPE, header);
  refusedStore.add(alice, FILE_CHUNK_CONTENT_TYPE, chunk(0, first));
  refusedStore.add(alice, FILE_CHUNK_CONTENT_TYPE, chunk(1, last));
  const refusals: unknown[] = [];
  await new MailboxFiles({ storage: refusedStore.storage, onFailed: (e) => refusals.push(e) })
    .check(alice);
  assert.ok(refusals[0] instanceof TransferRefusedError && refusals[0].reason === "refused");
});
