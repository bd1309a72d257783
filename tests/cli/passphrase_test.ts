/**
 * `dim init` refuses a passphrase that is easy to guess on every path (typed,
 * DIM_PASSPHRASE, --passphrase-file), says why and how to insist, and asks
 * again when it was typed.
 */
import assert from "node:assert/strict";
import { NEW_PASSPHRASE_TRIES } from "../../lib/cli/context.ts";
import { dim, tempDir } from "./_helpers.ts";

const WEAK =
  /error: cannot use this passphrase: it is too easy to guess .*dim init --weak-passphrase/;

Deno.test("init refuses a weak passphrase from DIM_PASSPHRASE or a file, and accepts it when insisted on", async () => {
  await using tmp = await tempDir();
  const home = `${tmp.path}/ada`;
  const env = await dim(home, ["init", "--name", "Ada"], { env: { DIM_PASSPHRASE: "abc123" } });
  assert.equal(env.code, 1);
  assert.match(env.err, WEAK);
  await assert.rejects(Deno.stat(`${home}/identity.key`), Deno.errors.NotFound);

  const file = `${tmp.path}/pass`;
  await Deno.writeTextFile(file, "password\n");
  const fromFile = await dim(home, ["init", "--name", "Ada", "--passphrase-file", file], {
    env: { DIM_PASSPHRASE: "" },
  });
  assert.equal(fromFile.code, 1);
  assert.match(fromFile.err, WEAK);
  await assert.rejects(Deno.stat(`${home}/identity.key`), Deno.errors.NotFound);

  const insisted = await dim(home, ["init", "--name", "Ada", "--weak-passphrase", "--json"], {
    env: { DIM_PASSPHRASE: "abc123" },
  });
  assert.equal(insisted.code, 0, insisted.err);
  assert.match(JSON.parse(insisted.out).id, /^dim/);
});

Deno.test("init asks again when a typed passphrase is weak, and gives up after a few tries", async () => {
  await using tmp = await tempDir();
  const home = `${tmp.path}/ada`;
  const retried = await dim(home, ["init", "--name", "Ada"], {
    env: { DIM_PASSPHRASE: "" },
    secrets: ["ada", "plum vortex quietly sings", "plum vortex quietly sings"],
  });
  assert.equal(retried.code, 0, retried.err);
  assert.match(
    retried.err,
    /^New passphrase: \ncannot use this passphrase: .*\nNew passphrase: \nRepeat the passphrase: \n$/,
  );

  const other = `${tmp.path}/bob`;
  const gaveUp = await dim(other, ["init", "--name", "Bob"], {
    env: { DIM_PASSPHRASE: "" },
    secrets: Array.from({ length: NEW_PASSPHRASE_TRIES }, () => "1234"),
  });
  assert.equal(gaveUp.code, 1);
  assert.equal(gaveUp.err.match(/New passphrase: /g)?.length, NEW_PASSPHRASE_TRIES);
  assert.match(gaveUp.err, WEAK);
  await assert.rejects(Deno.stat(`${other}/identity.key`), Deno.errors.NotFound);
});
