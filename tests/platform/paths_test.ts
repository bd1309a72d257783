import assert from "node:assert/strict";
import {
  DATA_FILES,
  dataPaths,
  ensureHome,
  HOME_ENV_VAR,
  HOME_MODE,
  resolveHome,
} from "../../lib/platform/paths.ts";
import { StorageError } from "../../lib/errors.ts";

const IS_WINDOWS = Deno.build.os === "windows";

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "dim_paths_test_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test({
  name: "resolveHome() prefers --home, then DIM_HOME, then XDG_DATA_HOME, then HOME",
  ignore: IS_WINDOWS,
  async fn(t) {
    const all = {
      DIM_HOME: "/srv/dim",
      XDG_DATA_HOME: "/data",
      HOME: "/home/ada",
    };
    const cases: [string, string | undefined, Record<string, string>, string][] = [
      ["--home wins", "/opt/dim", all, "/opt/dim"],
      ["DIM_HOME next", undefined, all, "/srv/dim"],
      ["XDG_DATA_HOME next", undefined, { XDG_DATA_HOME: "/data", HOME: "/home/ada" }, "/data/dim"],
      ["HOME last", undefined, { HOME: "/home/ada" }, "/home/ada/.local/share/dim"],
      ["empty --home is unset", "", all, "/srv/dim"],
      ["empty DIM_HOME is unset", undefined, { ...all, DIM_HOME: "" }, "/data/dim"],
      [
        "empty XDG_DATA_HOME is unset",
        undefined,
        { ...all, DIM_HOME: "", XDG_DATA_HOME: "" },
        "/home/ada/.local/share/dim",
      ],
      [
        "relative XDG_DATA_HOME is ignored",
        undefined,
        { XDG_DATA_HOME: "data", HOME: "/home/ada" },
        "/home/ada/.local/share/dim",
      ],
      ["relative --home is kept as given", "my-dim", all, "my-dim"],
    ];
    for (const [name, home, vars, expected] of cases) {
      await t.step(name, () => {
        const env = new Map(Object.entries(vars));
        assert.equal(resolveHome(home === undefined ? { env } : { home, env }), expected);
      });
    }
  },
});

Deno.test("resolveHome() fails clearly when nothing is set", () => {
  assert.throws(
    () => resolveHome({ env: new Map() }),
    (err: unknown) =>
      err instanceof StorageError &&
      err.message ===
        "Cannot find the data directory: none of --home, DIM_HOME, XDG_DATA_HOME or HOME is set",
  );
});

Deno.test("resolveHome() reads Deno.env by default", () => {
  const saved = Deno.env.get(HOME_ENV_VAR);
  try {
    Deno.env.set(HOME_ENV_VAR, "/tmp/dim-from-env");
    assert.equal(resolveHome(), "/tmp/dim-from-env");
    assert.equal(resolveHome({ home: "/tmp/flag" }), "/tmp/flag");
  } finally {
    if (saved === undefined) Deno.env.delete(HOME_ENV_VAR);
    else Deno.env.set(HOME_ENV_VAR, saved);
  }
});

Deno.test({
  name: "ensureHome() creates the directory and missing parents with mode 0700",
  ignore: IS_WINDOWS,
  async fn() {
    await withTempDir(async (base) => {
      const home = `${base}/share/deeper/dim`;
      await ensureHome(home);
      for (const dir of [home, `${base}/share/deeper`, `${base}/share`]) {
        const info = await Deno.stat(dir);
        assert.ok(info.isDirectory);
        assert.equal(info.mode! & 0o777, HOME_MODE);
      }
    });
  },
});

Deno.test({
  name: "ensureHome() leaves an existing directory and its mode alone",
  ignore: IS_WINDOWS,
  async fn() {
    await withTempDir(async (base) => {
      await Deno.mkdir(`${base}/dim`);
      await Deno.chmod(`${base}/dim`, 0o755);
      await Deno.writeFile(`${base}/dim/keep`, new Uint8Array([1]));
      await ensureHome(`${base}/dim`);
      assert.equal((await Deno.stat(`${base}/dim`)).mode! & 0o777, 0o755);
      assert.deepEqual(await Deno.readFile(`${base}/dim/keep`), new Uint8Array([1]));
    });
  },
});

Deno.test("ensureHome() refuses a file where the directory should be", async () => {
  await withTempDir(async (base) => {
    await Deno.writeFile(`${base}/dim`, new Uint8Array([1]));
    await assert.rejects(
      ensureHome(`${base}/dim`),
      (err: unknown) =>
        err instanceof StorageError &&
        /^Cannot use data directory .*dim: it is not a directory$/.test(err.message),
    );
    await assert.rejects(
      ensureHome(`${base}/dim/below`),
      (err: unknown) =>
        err instanceof StorageError &&
        /^Cannot create data directory .*below: a parent path is not a directory$/.test(
          err.message,
        ),
    );
    assert.deepEqual(await Deno.readFile(`${base}/dim`), new Uint8Array([1]));
  });
});

Deno.test({
  name: "dataPaths() names every file in the data directory",
  ignore: IS_WINDOWS,
  fn() {
    assert.deepEqual(dataPaths("/srv/dim"), {
      home: "/srv/dim",
      identityKey: "/srv/dim/identity.key",
      database: "/srv/dim/dim.db",
      socket: "/srv/dim/dim.sock",
    });
    assert.deepEqual(DATA_FILES, {
      identityKey: "identity.key",
      database: "dim.db",
      socket: "dim.sock",
    });
  },
});
