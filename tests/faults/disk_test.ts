/**
 * A full disk and a read-only data directory (a small tmpfs, as root): a
 * clear error, nothing corrupted, and everything works again once space is
 * back. A user whose disk is full does not acknowledge what it could not
 * store, so the sender keeps it and delivers it later, once.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { Identity } from "../../lib/crypto/identity.ts";
import { changePassphrase, createKeystore, unlockKeystore } from "../../lib/crypto/keystore.ts";
import { KeystoreError, StorageError } from "../../lib/errors.ts";
import { createMessenger } from "../../lib/messenger/messenger.ts";
import { openProfile } from "../../lib/profile/profile.ts";
import { UserStore } from "../../lib/store/user_store.ts";
import { nextMessages, testNet } from "../_support/network.ts";
import { figure, sleep } from "../hostile/_support.ts";

async function run(cmd: string, args: string[]): Promise<boolean> {
  try {
    const { success } = await new Deno.Command(cmd, { args, stdout: "null", stderr: "null" })
      .output();
    return success;
  } catch {
    return false;
  }
}

async function canMount(): Promise<boolean> {
  if (Deno.build.os !== "linux") return false;
  const dir = await Deno.makeTempDir({ prefix: "dim_disk_probe_" });
  try {
    return await run("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", dir]) &&
      await run("umount", [dir]);
  } finally {
    await Deno.remove(dir).catch(() => {});
  }
}
const TMPFS = await canMount();

async function withTmpfs(sizeKib: number, fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "dim_disk_test_" });
  try {
    assert.ok(await run("mount", ["-t", "tmpfs", "-o", `size=${sizeKib}k`, "tmpfs", dir]));
    try {
      await fn(dir);
    } finally {
      await run("mount", ["-o", "remount,rw", dir]);
      assert.ok(await run("umount", [dir]));
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Fills the file system at `dir` with a filler file; returns its path. */
async function fill(dir: string): Promise<string> {
  const path = `${dir}/filler`;
  const file = await Deno.open(path, { write: true, create: true });
  try {
    const chunk = new Uint8Array(4096);
    for (let i = 0; i < 1_000_000; i++) await file.write(chunk);
  } catch {
    /* full */
  } finally {
    file.close();
  }
  return path;
}

const row = (n: number) => ({
  id: crypto.getRandomValues(new Uint8Array(16)),
  peer: "p",
  sentAt: n,
  receivedAt: n,
  contentType: 1,
  body: new TextEncoder().encode(`row ${n} ${"x".repeat(200)}`),
  via: "direct",
  protection: "static" as const,
});

function integrity(path: string): string {
  const db = new DatabaseSync(path);
  try {
    return (db.prepare("PRAGMA integrity_check").get() as { integrity_check: string })
      .integrity_check;
  } finally {
    db.close();
  }
}

Deno.test({
  name: "disk full: the database and the keystore fail clearly, keep their data, and recover",
  ignore: !TMPFS,
  async fn() {
    await withTmpfs(1024, async (dir) => {
      const path = `${dir}/dim.db`;
      const db = UserStore.open(path);
      const me = await Identity.generate();
      await createKeystore(`${dir}/identity.key`, me, "old passphrase");
      let stored = 0;
      let error: unknown;
      for (let n = 1; n < 100_000; n++) {
        try {
          db.messages.insertIncoming(row(n));
          stored = n;
        } catch (err) {
          error = err;
          break;
        }
      }
      assert.ok(error instanceof StorageError, String(error));
      assert.match(error.message, /^Cannot store message: no space left on device$/);
      await fill(dir);
      await assert.rejects(
        changePassphrase(`${dir}/identity.key`, "old passphrase", "new passphrase"),
        (err) =>
          err instanceof KeystoreError && err.code === "io" && /no space left/.test(err.message),
      );
      // Nothing lost or corrupted: every committed row is there, the keystore opens.
      assert.equal(db.messages.history("p", { limit: 1_000_000 }).length, stored);
      assert.equal((await unlockKeystore(`${dir}/identity.key`, "old passphrase")).id, me.id);
      db.close();
      assert.equal(integrity(path), "ok");
      // Space is back.
      await Deno.remove(`${dir}/filler`);
      assert.ok(await run("mount", ["-o", "remount,size=8m", dir]));
      using again = UserStore.open(path);
      again.messages.insertIncoming(row(stored + 1));
      assert.equal(again.messages.history("p", { limit: 1_000_000 }).length, stored + 1);
      await changePassphrase(`${dir}/identity.key`, "old passphrase", "new passphrase");
      assert.equal((await unlockKeystore(`${dir}/identity.key`, "new passphrase")).id, me.id);
      figure("disk-full", { rowsBeforeFull: stored, lost: 0, corrupt: 0 });
    });
  },
});

Deno.test({
  name: "read-only data directory: clear errors, nothing changed, works again when writable",
  ignore: !TMPFS,
  async fn() {
    await withTmpfs(4096, async (dir) => {
      const me = await Identity.generate();
      await createKeystore(`${dir}/identity.key`, me, "passphrase");
      {
        using db = UserStore.open(`${dir}/dim.db`);
        db.messages.insertIncoming(row(1));
      }
      assert.ok(await run("mount", ["-o", "remount,ro", dir]));
      await assert.rejects(
        changePassphrase(`${dir}/identity.key`, "passphrase", "other"),
        (err) => err instanceof KeystoreError && /read-only file system/.test(err.message),
      );
      assert.equal((await unlockKeystore(`${dir}/identity.key`, "passphrase")).id, me.id);
      let message = "";
      try {
        using db = UserStore.open(`${dir}/dim.db`);
        db.messages.insertIncoming(row(2));
      } catch (err) {
        assert.ok(err instanceof StorageError, String(err));
        message = err.message;
      }
      assert.match(message, /^Cannot open database .*: the data directory is read-only$/);
      // A whole messenger on that directory: refused with a storage error.
      let messengerError = "";
      try {
        const profile = await openProfile({ home: dir, passphrase: "passphrase" });
        await (await createMessenger(profile, { publish: false })).stop();
      } catch (err) {
        messengerError = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
      }
      assert.match(messengerError, /^StorageError: /);
      assert.ok(await run("mount", ["-o", "remount,rw", dir]));
      using db = UserStore.open(`${dir}/dim.db`);
      db.messages.insertIncoming(row(2));
      assert.equal(db.messages.history("p").length, 2);
      figure("read-only", {
        database: JSON.stringify(message),
        messenger: JSON.stringify(messengerError),
      });
    });
  },
});

Deno.test({
  name:
    "a recipient whose disk is full does not acknowledge; the message arrives once space is back",
  ignore: !TMPFS,
  async fn() {
    await withTmpfs(16 * 1024, async (dir) => {
      await using net = await testNet();
      const alice = await net.user("alice");
      const bob = await net.user("bob", { home: `${dir}/bob` });
      await alice.addContact("bob", bob.id);
      await alice.send("bob", "before");
      await nextMessages(bob, 1);
      const filler = await fill(dir);
      const sent = await alice.send("bob", "while full");
      await sleep(3000);
      assert.notEqual(
        alice.profile.history("bob").find((m) => m.seq === sent.seq)?.state,
        "delivered",
      );
      assert.equal(alice.profile.outbox().length, 1, "kept in the outbox");
      await Deno.remove(filler);
      const [got] = await nextMessages(bob, 1, 20_000);
      assert.equal(got?.text, "while full");
      await alice.waitFor(sent.seq, { signal: AbortSignal.timeout(20_000) });
      await sleep(500);
      const copies = bob.profile.history(alice.id).filter((m) => m.text === "while full").length;
      figure("disk-full-recipient", { delivered: got ? 1 : 0, copies });
      assert.equal(copies, 1);
    });
  },
});
