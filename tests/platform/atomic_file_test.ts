import assert from "node:assert/strict";
import { pathExists, readFileBounded, writeFileAtomic } from "../../lib/platform/atomic_file.ts";
import { StorageError } from "../../lib/errors.ts";

const IS_WINDOWS = Deno.build.os === "windows";

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "dim_atomic_test_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function names(dir: string): string[] {
  return [...Deno.readDirSync(dir)].map((e) => e.name).sort();
}

async function rejectsWithStorageError(promise: Promise<unknown>, message: RegExp): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof StorageError, `expected StorageError, got ${err}`);
    assert.match(err.message, message);
    assert.ok(err.cause !== undefined, "the system error is kept as cause");
    return true;
  });
}

async function run(cmd: string, args: string[]): Promise<boolean> {
  try {
    const { success } = await new Deno.Command(cmd, {
      args,
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).output();
    return success;
  } catch {
    return false;
  }
}

// A tiny tmpfs gives a real full disk and a real read-only file system. It
// needs Linux, root and --allow-run; `mount` never prompts, so where any is
// missing the probe fails quickly and those tests are skipped.
async function canMountTmpfs(): Promise<boolean> {
  if (Deno.build.os !== "linux") return false;
  const dir = await Deno.makeTempDir({ prefix: "dim_tmpfs_probe_" });
  try {
    if (!(await run("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", dir]))) return false;
    return await run("umount", [dir]);
  } finally {
    await Deno.remove(dir).catch(() => {});
  }
}
const TMPFS = await canMountTmpfs();

async function withTmpfs(sizeKib: number, fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "dim_tmpfs_test_" });
  try {
    assert.ok(await run("mount", ["-t", "tmpfs", "-o", `size=${sizeKib}k`, "tmpfs", dir]));
    try {
      await fn(dir);
    } finally {
      assert.ok(await run("umount", [dir]));
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("writeFileAtomic() creates a file with mode 0600 by default", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/data.bin`;
    await writeFileAtomic(path, new Uint8Array([1, 2, 3]));
    assert.deepEqual(await Deno.readFile(path), new Uint8Array([1, 2, 3]));
    if (!IS_WINDOWS) assert.equal((await Deno.stat(path)).mode! & 0o777, 0o600);
    assert.deepEqual(names(dir), ["data.bin"]);
  });
});

Deno.test({
  name: "writeFileAtomic() sets the requested mode exactly",
  ignore: IS_WINDOWS,
  async fn() {
    await withTempDir(async (dir) => {
      await writeFileAtomic(`${dir}/a`, new Uint8Array([1]), { mode: 0o640 });
      assert.equal((await Deno.stat(`${dir}/a`)).mode! & 0o777, 0o640);
    });
  },
});

Deno.test("writeFileAtomic() replaces the contents and leaves no temporary file", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/data.bin`;
    await Deno.writeFile(path, new Uint8Array(1000).fill(7));
    const big = new Uint8Array(200_000).map((_, i) => (i * 31) & 0xff);
    await writeFileAtomic(path, big);
    assert.deepEqual(await Deno.readFile(path), big);
    await writeFileAtomic(path, new Uint8Array([9]));
    assert.deepEqual(await Deno.readFile(path), new Uint8Array([9]));
    await writeFileAtomic(path, new Uint8Array(0));
    assert.equal((await Deno.readFile(path)).length, 0);
    assert.deepEqual(names(dir), ["data.bin"]);
  });
});

Deno.test("writeFileAtomic() copes with concurrent writers to the same file", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/data.bin`;
    const versions = Array.from({ length: 8 }, (_, i) => new Uint8Array(5000).fill(i));
    await Promise.all(versions.map((v) => writeFileAtomic(path, v)));
    const result = await Deno.readFile(path);
    // Whichever write landed last, the file is one whole version, never a mix.
    assert.ok(
      versions.some((v) => v.every((b, i) => b === result[i]) && v.length === result.length),
    );
    assert.deepEqual(names(dir), ["data.bin"]);
  });
});

Deno.test("writeFileAtomic() with overwrite false refuses an existing file", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/data.bin`;
    await writeFileAtomic(path, new Uint8Array([1]), { overwrite: false });
    assert.deepEqual(await Deno.readFile(path), new Uint8Array([1]));
    await rejectsWithStorageError(
      writeFileAtomic(path, new Uint8Array([2]), { overwrite: false }),
      /^Cannot write .*data\.bin: the file already exists$/,
    );
    assert.deepEqual(await Deno.readFile(path), new Uint8Array([1]));
    assert.deepEqual(names(dir), ["data.bin"]);
  });
});

Deno.test("writeFileAtomic() reports a missing directory clearly", async () => {
  await withTempDir(async (dir) => {
    await rejectsWithStorageError(
      writeFileAtomic(`${dir}/missing/data.bin`, new Uint8Array([1])),
      /^Cannot write .*missing\/data\.bin: its directory does not exist$/,
    );
    assert.deepEqual(names(dir), []);
  });
});

Deno.test("writeFileAtomic() reports a file in place of a directory clearly", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeFile(`${dir}/plain`, new Uint8Array([5]));
    await rejectsWithStorageError(
      writeFileAtomic(`${dir}/plain/data.bin`, new Uint8Array([1])),
      /^Cannot write .*plain\/data\.bin: a parent path is not a directory$/,
    );
    assert.deepEqual(await Deno.readFile(`${dir}/plain`), new Uint8Array([5]));
  });
});

Deno.test({
  name: "writeFileAtomic() removes its temporary file when the final rename fails",
  ignore: IS_WINDOWS,
  async fn() {
    await withTempDir(async (dir) => {
      // A non-empty directory at the target path cannot be replaced by a file.
      await Deno.mkdir(`${dir}/target`);
      await Deno.writeFile(`${dir}/target/keep`, new Uint8Array([3]));
      await rejectsWithStorageError(
        writeFileAtomic(`${dir}/target`, new Uint8Array([1])),
        /^Cannot write .*target: it is a directory$/,
      );
      assert.deepEqual(names(dir), ["target"]);
      assert.deepEqual(await Deno.readFile(`${dir}/target/keep`), new Uint8Array([3]));
    });
  },
});

Deno.test({
  name: "writeFileAtomic() on a full disk says so and keeps the old file",
  ignore: !TMPFS,
  async fn() {
    await withTmpfs(64, async (dir) => {
      const path = `${dir}/data.bin`;
      const old = new Uint8Array(1000).fill(1);
      await writeFileAtomic(path, old);
      await rejectsWithStorageError(
        writeFileAtomic(path, new Uint8Array(1 << 20)),
        /^Cannot write .*data\.bin: no space left on device$/,
      );
      assert.deepEqual(await Deno.readFile(path), old);
      assert.deepEqual(names(dir), ["data.bin"]);
    });
  },
});

Deno.test({
  name: "writeFileAtomic() on a read-only file system says so and keeps the old file",
  ignore: !TMPFS,
  async fn() {
    await withTmpfs(64, async (dir) => {
      const path = `${dir}/data.bin`;
      await writeFileAtomic(path, new Uint8Array([1, 2]));
      assert.ok(await run("mount", ["-o", "remount,ro", dir]));
      await rejectsWithStorageError(
        writeFileAtomic(path, new Uint8Array([3])),
        /^Cannot write .*data\.bin: read-only file system$/,
      );
      assert.deepEqual(await Deno.readFile(path), new Uint8Array([1, 2]));
      assert.deepEqual(names(dir), ["data.bin"]);
    });
  },
});

Deno.test("readFileBounded() reads a file up to the limit", async () => {
  await withTempDir(async (dir) => {
    const bytes = crypto.getRandomValues(new Uint8Array(100));
    await Deno.writeFile(`${dir}/a`, bytes);
    assert.deepEqual(await readFileBounded(`${dir}/a`, 100), bytes);
    assert.deepEqual(await readFileBounded(`${dir}/a`, 1000), bytes);
    await Deno.writeFile(`${dir}/empty`, new Uint8Array(0));
    assert.deepEqual(await readFileBounded(`${dir}/empty`, 0), new Uint8Array(0));
  });
});

Deno.test("readFileBounded() refuses a file over the limit with RangeError", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeFile(`${dir}/a`, new Uint8Array(101));
    await assert.rejects(
      readFileBounded(`${dir}/a`, 100),
      (err: unknown) =>
        err instanceof RangeError &&
        /^Cannot read .*a: it is larger than 100 bytes$/.test(err.message),
    );
  });
});

Deno.test("readFileBounded() returns undefined for a missing file", async () => {
  await withTempDir(async (dir) => {
    assert.equal(await readFileBounded(`${dir}/missing`, 10), undefined);
  });
});

Deno.test({
  name: "readFileBounded() reports a directory as a StorageError",
  ignore: IS_WINDOWS,
  async fn() {
    await withTempDir(async (dir) => {
      await rejectsWithStorageError(
        readFileBounded(dir, 10),
        /^Cannot read .*: it is a directory$/,
      );
    });
  },
});

Deno.test("pathExists() tells what exists", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeFile(`${dir}/file`, new Uint8Array(1));
    assert.equal(await pathExists(dir), true);
    assert.equal(await pathExists(`${dir}/file`), true);
    assert.equal(await pathExists(`${dir}/missing`), false);
    assert.equal(await pathExists(`${dir}/file/below`), false);
  });
});

Deno.test("writeFileAtomic() sweeps temporary files that killed writes left, once they are old", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const stale = `${dir}/.identity.key.0123456789abcdef.tmp`;
    const fresh = `${dir}/.identity.key.fedcba9876543210.tmp`;
    const other = `${dir}/.other.0123456789abcdef.tmp`;
    for (const p of [stale, fresh, other]) await Deno.writeFile(p, new Uint8Array([1]));
    const old = new Date(Date.now() - 2 * 3600 * 1000);
    await Deno.utime(stale, old, old);
    await Deno.utime(other, old, old);
    await writeFileAtomic(`${dir}/identity.key`, new Uint8Array([2]));
    const left = (await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name).sort();
    assert.deepEqual(left, [
      ".identity.key.fedcba9876543210.tmp",
      ".other.0123456789abcdef.tmp",
      "identity.key",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
