/**
 * `kill -9` during keystore, database and atomic file writes, many times at
 * random moments: each time the data is the old or the new version, whole,
 * and it opens.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { Identity } from "../../lib/crypto/identity.ts";
import { createKeystore, unlockKeystore } from "../../lib/crypto/keystore.ts";
import { UserStore } from "../../lib/store/user_store.ts";
import { blob } from "../fixtures/store_writer.ts";
import { figure, Random, size, sleep } from "../hostile/_support.ts";
import { Child } from "./_child.ts";

const KILLS = size(10, 200);

/** The highest number a child reported for `field`, or `fallback`. */
function last(child: Child, field: string, fallback: number): number {
  return child.lines.reduce(
    (n, l) => typeof l[field] === "number" ? Math.max(n, l[field]) : n,
    fallback,
  );
}

Deno.test("kill -9 during keystore, database and file writes leaves the old or the new version", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dim-kill-store-" });
  try {
    const me = await Identity.generate();
    await createKeystore(`${dir}/identity.key`, me, "pass-0");
    UserStore.open(`${dir}/dim.db`).close();
    const rnd = new Random();
    let keystoreAt = 0;
    let rowsAt = 0;
    let fileAt = 0;
    const tally = { keystoreNew: 0, keystoreOld: 0, rowsAhead: 0, fileNew: 0, tempFilesLeft: 0 };
    for (let kill = 0; kill < KILLS; kill++) {
      const child = new Child("tests/fixtures/store_writer.ts", [
        "--dir",
        dir,
        "--keystore-from",
        String(keystoreAt),
        "--rows-from",
        String(rowsAt),
        "--file-from",
        String(fileAt),
      ]);
      // Let it get going (Deno starts in about 0.3 s), then kill it anywhere.
      await child.waitFor("the first write", (l) => "rows" in l, 30_000).catch(() => {});
      await sleep(rnd.int(1500));
      await child.kill();

      // Keystore: unlocks with the passphrase of the last change reported,
      // or of the one in flight; never neither.
      const reported = last(child, "keystore", keystoreAt);
      let opened: Identity | undefined;
      for (const k of [reported, reported + 1]) {
        try {
          opened = await unlockKeystore(`${dir}/identity.key`, `pass-${k}`);
          if (k > reported) tally.keystoreNew++;
          else tally.keystoreOld++;
          keystoreAt = k;
          break;
        } catch { /* try the next */ }
      }
      assert.equal(opened?.id, me.id, `kill ${kill}: the keystore opens, as itself`);

      // Database: opens, passes SQLite's integrity check, and holds every
      // committed row, in order, and at most the one in flight besides.
      const committed = last(child, "rows", rowsAt);
      {
        using db = UserStore.open(`${dir}/dim.db`);
        const rows = db.messages.history("writer", { limit: 100_000_000 });
        assert.ok(
          rows.length === committed || rows.length === committed + 1,
          `kill ${kill}: ${rows.length} rows, ${committed} reported`,
        );
        if (rows.length > committed) tally.rowsAhead++;
        rows.forEach((r, i) => assert.equal(new TextDecoder().decode(r.body), `row ${i + 1}`));
        rowsAt = rows.length;
      }
      const check = new DatabaseSync(`${dir}/dim.db`);
      try {
        assert.equal(
          (check.prepare("PRAGMA integrity_check").get() as { integrity_check: string })
            .integrity_check,
          "ok",
        );
      } finally {
        check.close();
      }

      // The atomically written file: one whole version, the last reported or the next.
      const written = last(child, "file", fileAt);
      const bytes = await Deno.readFile(`${dir}/blob.bin`).catch(() => undefined);
      if (bytes !== undefined) {
        const v = new DataView(bytes.buffer).getUint32(0);
        assert.ok(
          v === written || v === written + 1,
          `kill ${kill}: file version ${v}, ${written} reported`,
        );
        assert.deepEqual(bytes, blob(v), `kill ${kill}: version ${v} is whole`);
        if (v > written) tally.fileNew++;
        fileAt = v;
      } else {
        assert.equal(written, 0, "the file exists once a write was reported");
      }
    }
    tally.tempFilesLeft = [...Deno.readDirSync(dir)].filter((e) => e.name.endsWith(".tmp")).length;
    figure("kill-storage", {
      seed: rnd.seed,
      kills: KILLS,
      keystoreChanges: keystoreAt,
      keystoreInFlightLanded: tally.keystoreNew,
      rows: rowsAt,
      rowInFlightLanded: tally.rowsAhead,
      fileVersions: fileAt,
      fileInFlightLanded: tally.fileNew,
      tempFilesLeft: tally.tempFilesLeft,
      corrupt: 0,
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
