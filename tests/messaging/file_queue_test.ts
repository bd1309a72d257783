/**
 * A file too large to leave in the network waits on the sender's device
 * (`Messenger.deliverFile` → `queued`), survives the sender's restart, and
 * goes directly once the contact is back; a file changed since it was queued
 * is not sent. Real nodes on 127.0.0.1, real SQLite files.
 */
import assert from "node:assert/strict";
import { MAILBOX_FILE_MAX_SIZE } from "../../lib/messaging/constants.ts";
import type { ReceivedFile } from "../../lib/messaging/file_receive.ts";
import { PeerUnreachableError } from "../../lib/errors.ts";
import { FileQueue, type FileQueueEvent } from "../../lib/messenger/file_queue.ts";
import { Connection } from "../../lib/store/connection.ts";
import { FILE_QUEUE_SCHEMA, FileQueueStore } from "../../lib/store/file_queue_store.ts";
import { toHex } from "../../lib/platform/bytes.ts";
import { testNet } from "../_support/network.ts";

const random = (n: number) => {
  const bytes = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) crypto.getRandomValues(bytes.subarray(i, i + 65536));
  return bytes;
};

async function sha256(bytes: Uint8Array): Promise<string> {
  return toHex(new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as BufferSource)));
}

Deno.test("a large file for an offline contact waits on this device and goes when they are back", async () => {
  await using net = await testNet(2);
  const downloads = `${net.dir}/downloads`;
  const alice = await net.user("alice");
  const bob = await net.user("bob", { downloadDir: downloads });
  await alice.addContact("bob", bob.id);
  await bob.addContact("alice", alice.id);
  await bob.stop();

  const content = random(MAILBOX_FILE_MAX_SIZE + 100_000);
  const path = `${net.dir}/big video.mp4`;
  await Deno.writeFile(path, content);
  const small = `${net.dir}/note.txt`;
  await Deno.writeTextFile(small, "small enough for the mailbox");
  const left = await alice.deliverFile("bob", small, { signal: AbortSignal.timeout(20_000) });
  assert.equal(left.how, "mailbox", "a small file is left in the network");
  const delivery = await alice.deliverFile("bob", path, { signal: AbortSignal.timeout(20_000) });
  assert.equal(delivery.how, "queued");
  assert.deepEqual(alice.queuedFiles.map((f) => f.name), ["big video.mp4"]);
  await alice.stop();

  // Alice starts again (the queue is in her database), and Bob is back and writes to her.
  const alice2 = await net.reopen("alice");
  assert.deepEqual(alice2.queuedFiles.map((f) => f.name), ["big video.mp4"]);
  const sent = new Promise<FileQueueEvent>((resolve) =>
    alice2.addEventListener("queued-file", (e) => {
      const event = (e as CustomEvent<FileQueueEvent>).detail;
      if (event.type === "file-sent" || event.type === "file-given-up") resolve(event);
    })
  );
  const bob2 = await net.reopen("bob", { downloadDir: downloads });
  const received = new Promise<ReceivedFile>((resolve) =>
    bob2.addEventListener("file", (e) => {
      const file = (e as CustomEvent<ReceivedFile>).detail;
      if (file.name === "big video.mp4") resolve(file);
    })
  );
  await bob2.send("alice", "I am back");
  const event = await sent;
  assert.equal(event.type, "file-sent", JSON.stringify(event));
  const file = await received;
  assert.equal(file.sha256, await sha256(content));
  assert.deepEqual(await Deno.readFile(`${downloads}/big video.mp4`), content);
  assert.deepEqual(alice2.queuedFiles, []);
});

Deno.test("a queued file that changed before it could go is given up, with the reason", async () => {
  await using net = await testNet(1);
  const alice = await net.user("alice");
  const bob = await net.user("bob");
  await alice.addContact("bob", bob.id);
  await bob.addContact("alice", alice.id);
  await bob.stop();
  const path = `${net.dir}/draft.bin`;
  await Deno.writeFile(path, random(MAILBOX_FILE_MAX_SIZE + 1));
  // Listening from the start: the first attempt, right after queueing, may
  // already read the file while it is rewritten, and give it up then.
  const ended = new Promise<FileQueueEvent>((resolve) =>
    alice.addEventListener("queued-file", (e) => {
      const event = (e as CustomEvent<FileQueueEvent>).detail;
      if (event.type !== "file-queued" && event.type !== "file-deferred") resolve(event);
    })
  );
  const delivery = await alice.deliverFile("bob", path, { signal: AbortSignal.timeout(20_000) });
  assert.equal(delivery.how, "queued");
  await Deno.writeFile(path, random(MAILBOX_FILE_MAX_SIZE + 1));
  const bob2 = await net.reopen("bob");
  await bob2.send("alice", "here");
  const event = await ended;
  assert.equal(event.type, "file-given-up");
  assert.match(event.type === "file-given-up" ? event.error : "", /changed since it was queued/);
  assert.deepEqual(alice.queuedFiles, []);
});

Deno.test("a contact who writes while an attempt to them is failing gets the file tried again at once, not after the backoff", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dim-file-queue-" });
  using conn = Connection.open(`${dir}/dim.db`, [FILE_QUEUE_SCHEMA]);
  const path = `${dir}/big.bin`;
  await Deno.writeFile(path, random(1000));
  let calls = 0;
  let failFirst!: (err: Error) => void;
  let secondCall!: () => void;
  const second = new Promise<void>((resolve) => (secondCall = resolve));
  const queue = new FileQueue({
    store: new FileQueueStore(conn),
    clock: Date.now,
    onEvent: () => {},
    send: () => {
      calls++;
      if (calls === 1) return new Promise((_, reject) => (failFirst = reject));
      secondCall();
      return Promise.reject(new PeerUnreachableError("still away"));
    },
  });
  try {
    await queue.add("bob", path);
    while (calls === 0) await new Promise((r) => setTimeout(r, 5));
    // Bob writes while the first attempt is still going, then it fails.
    queue.retryNow();
    failFirst(new PeerUnreachableError("not reachable"));
    const tried = await Promise.race([
      second.then(() => true),
      new Promise<boolean>((r) => setTimeout(() => r(false), 5_000)),
    ]);
    assert.equal(tried, true, "tried again after the failed attempt");
  } finally {
    await queue.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
