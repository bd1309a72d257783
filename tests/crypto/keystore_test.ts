import assert from "node:assert/strict";
import { Identity, verifySignature } from "../../lib/crypto/identity.ts";
import {
  changePassphrase,
  createKeystore,
  DEFAULT_ARGON2_PARAMS,
  KEYSTORE_VERSION,
  MAX_ARGON2_PARAMS,
  MIN_ARGON2_PARAMS,
  readKeystoreHeader,
  unlockKeystore,
} from "../../lib/crypto/keystore.ts";
import { KeystoreError, type KeystoreErrorCode } from "../../lib/errors.ts";

const PASSPHRASE = "correct horse battery staple";
// Offsets of the version 1 format, as documented in the module.
const VERSION_OFFSET = 6;
const MEMORY_OFFSET = 7;
const ITERATIONS_OFFSET = 11;
const PARALLELISM_OFFSET = 15;
const SALT_OFFSET = 19;
const NONCE_OFFSET = 35;
const CIPHERTEXT_OFFSET = 47;
const FILE_LENGTH = 127;

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "dim_keystore_test_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function rejectsWithCode(
  promise: Promise<unknown>,
  code: KeystoreErrorCode,
  message?: RegExp,
): Promise<KeystoreError> {
  let caught: unknown;
  try {
    await promise;
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof KeystoreError, `expected KeystoreError, got ${caught}`);
  assert.equal(caught.code, code, caught.message);
  assert.equal(caught.name, "KeystoreError");
  if (message) assert.match(caught.message, message);
  return caught;
}

/** Asserts that `fn` leaves the file's bytes and modification time as they were. */
async function assertUnchanged(path: string, fn: () => Promise<void>): Promise<void> {
  const before = await Deno.readFile(path);
  const statBefore = await Deno.stat(path);
  await fn();
  assert.deepEqual(await Deno.readFile(path), before);
  assert.equal((await Deno.stat(path)).mtime?.getTime(), statBefore.mtime?.getTime());
}

function setU32(bytes: Uint8Array, offset: number, value: number): void {
  new DataView(bytes.buffer, bytes.byteOffset).setUint32(offset, value);
}

// One identity and one keystore file shared by the tests that only read it,
// so the suite runs Argon2 (about 200 ms at the minimum parameters) few times.
const identity = await Identity.generate();
const fixtureDir = await Deno.makeTempDir({ prefix: "dim_keystore_fixture_" });
const fixturePath = `${fixtureDir}/identity.key`;
await createKeystore(fixturePath, identity, PASSPHRASE);
const fixture = await Deno.readFile(fixturePath);
globalThis.addEventListener("unload", () => Deno.removeSync(fixtureDir, { recursive: true }));

Deno.test("createKeystore() writes a 127-byte version 1 file with the default parameters", async () => {
  assert.equal(fixture.length, FILE_LENGTH);
  assert.deepEqual(fixture.subarray(0, 6), new TextEncoder().encode("DIMKEY"));
  assert.equal(fixture[VERSION_OFFSET], KEYSTORE_VERSION);
  const header = await readKeystoreHeader(fixturePath);
  assert.deepEqual(header, { version: 1, params: DEFAULT_ARGON2_PARAMS });
  assert.deepEqual(DEFAULT_ARGON2_PARAMS, { memoryKib: 19456, iterations: 2, parallelism: 1 });
});

Deno.test({
  name: "createKeystore() makes the file readable by its owner only",
  ignore: Deno.build.os === "windows",
  async fn() {
    assert.equal((await Deno.stat(fixturePath)).mode! & 0o777, 0o600);
  },
});

Deno.test("createKeystore() uses a fresh salt and nonce for every file", async () => {
  await withTempDir(async (dir) => {
    await createKeystore(`${dir}/other.key`, identity, PASSPHRASE);
    const other = await Deno.readFile(`${dir}/other.key`);
    assert.notDeepEqual(
      other.subarray(SALT_OFFSET, NONCE_OFFSET),
      fixture.subarray(SALT_OFFSET, NONCE_OFFSET),
    );
    assert.notDeepEqual(
      other.subarray(NONCE_OFFSET, CIPHERTEXT_OFFSET),
      fixture.subarray(NONCE_OFFSET, CIPHERTEXT_OFFSET),
    );
  });
});

Deno.test("unlockKeystore() restores the same identity, which makes the same signatures", async () => {
  const restored = await unlockKeystore(fixturePath, PASSPHRASE);
  assert.equal(restored.id, identity.id);
  assert.deepEqual(restored.signingPublicKey, identity.signingPublicKey);
  assert.deepEqual(restored.encryptionPublicKey, identity.encryptionPublicKey);
  assert.deepEqual(restored.exportSeeds(), identity.exportSeeds());
  const message = new TextEncoder().encode("same key, same signature");
  const signature = await restored.sign("record", message);
  assert.deepEqual(signature, await identity.sign("record", message));
  assert.ok(await verifySignature("record", identity.signingPublicKey, message, signature));
});

Deno.test("unlockKeystore() rejects a wrong passphrase and leaves the file unchanged", async () => {
  await assertUnchanged(fixturePath, async () => {
    await rejectsWithCode(
      unlockKeystore(fixturePath, "Correct horse battery staple"),
      "wrong-passphrase",
      /^Cannot unlock keystore: wrong passphrase or corrupted file$/,
    );
  });
});

Deno.test("unlockKeystore() treats NFC and NFD spellings of a passphrase alike", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/identity.key`;
    await createKeystore(path, identity, "caf\u00e9 cr\u00e8me");
    const restored = await unlockKeystore(path, "cafe\u0301 cre\u0300me");
    assert.equal(restored.id, identity.id);
  });
});

Deno.test("unlockKeystore() reports a missing file as not-found", async () => {
  await withTempDir(async (dir) => {
    await rejectsWithCode(
      unlockKeystore(`${dir}/nope.key`, PASSPHRASE),
      "not-found",
      /does not exist/,
    );
    await rejectsWithCode(readKeystoreHeader(`${dir}/nope.key`), "not-found");
  });
});

Deno.test("unlockKeystore() reports an unreadable path as io", async () => {
  await withTempDir(async (dir) => {
    const err = await rejectsWithCode(unlockKeystore(dir, PASSPHRASE), "io", /^Cannot read /);
    assert.ok(err.cause instanceof Error);
  });
});

Deno.test("unlockKeystore() reports a file cut short as truncated", async (t) => {
  for (const length of [0, 3, 6, 7, 18, 46, 47, 62, 126]) {
    await t.step(`${length} bytes`, async () => {
      await withTempDir(async (dir) => {
        const path = `${dir}/identity.key`;
        await Deno.writeFile(path, fixture.subarray(0, length));
        await assertUnchanged(path, async () => {
          await rejectsWithCode(
            unlockKeystore(path, PASSPHRASE),
            "truncated",
            new RegExp(`^Cannot read keystore: it is truncated \\(${length} of 127 bytes\\)$`),
          );
        });
      });
    });
  }
});

Deno.test("unlockKeystore() reports a malformed file as corrupt", async (t) => {
  const cases: [string, Uint8Array, RegExp][] = [
    [
      "not a keystore",
      new TextEncoder().encode("-----BEGIN PRIVATE KEY-----\n"),
      /not a DIM keystore/,
    ],
    ["short and not a keystore", new Uint8Array([0x44, 0x49, 0x58]), /not a DIM keystore/],
    ["one trailing byte", new Uint8Array([...fixture, 0]), /1 unexpected bytes after the end/],
    ["far too large", new Uint8Array([...fixture, ...new Uint8Array(10_000)]), /far larger/],
  ];
  for (const [name, bytes, message] of cases) {
    await t.step(name, async () => {
      await withTempDir(async (dir) => {
        const path = `${dir}/identity.key`;
        await Deno.writeFile(path, bytes);
        await assertUnchanged(path, async () => {
          await rejectsWithCode(unlockKeystore(path, PASSPHRASE), "corrupt", message);
        });
      });
    });
  }
});

Deno.test("unlockKeystore() gives each flipped byte its error and leaves the file unchanged", async (t) => {
  const cases: [string, number, KeystoreErrorCode][] = [
    ["magic", 0, "corrupt"],
    ["magic, last byte", 5, "corrupt"],
    ["version", VERSION_OFFSET, "unsupported-version"],
    ["memory, high byte", MEMORY_OFFSET, "parameters-out-of-range"],
    ["passes, high byte", ITERATIONS_OFFSET, "parameters-out-of-range"],
    ["lanes, low byte (1 to 0)", PARALLELISM_OFFSET + 3, "parameters-out-of-range"],
    // 2 passes become 3: still in range, so only the AAD check catches it.
    ["passes, low byte (2 to 3)", ITERATIONS_OFFSET + 3, "wrong-passphrase"],
    ["salt", SALT_OFFSET + 5, "wrong-passphrase"],
    ["nonce", NONCE_OFFSET + 3, "wrong-passphrase"],
    ["ciphertext", CIPHERTEXT_OFFSET + 10, "wrong-passphrase"],
    ["tag", FILE_LENGTH - 1, "wrong-passphrase"],
  ];
  for (const [field, offset, code] of cases) {
    await t.step(`${field} (offset ${offset}) → ${code}`, async () => {
      await withTempDir(async (dir) => {
        const path = `${dir}/identity.key`;
        const bytes = new Uint8Array(fixture);
        bytes[offset]! ^= 0x01;
        await Deno.writeFile(path, bytes);
        await assertUnchanged(path, async () => {
          await rejectsWithCode(unlockKeystore(path, PASSPHRASE), code);
        });
      });
    });
  }
});

Deno.test("unlockKeystore() refuses an unknown format version", async (t) => {
  for (const version of [0, 2, 255]) {
    await t.step(`version ${version}`, async () => {
      await withTempDir(async (dir) => {
        const path = `${dir}/identity.key`;
        const bytes = new Uint8Array(fixture);
        bytes[VERSION_OFFSET] = version;
        await Deno.writeFile(path, bytes);
        await rejectsWithCode(
          unlockKeystore(path, PASSPHRASE),
          "unsupported-version",
          new RegExp(`^Cannot read keystore: format version ${version} is not supported`),
        );
        await rejectsWithCode(readKeystoreHeader(path), "unsupported-version");
      });
    });
  }
});

Deno.test("unlockKeystore() refuses parameters over the cap before running Argon2", async (t) => {
  const cases: [string, number, number][] = [
    ["memory 4 TiB", MEMORY_OFFSET, 0xffffffff],
    ["memory one KiB over", MEMORY_OFFSET, MAX_ARGON2_PARAMS.memoryKib + 1],
    ["passes 2^32-1", ITERATIONS_OFFSET, 0xffffffff],
    ["passes 11", ITERATIONS_OFFSET, MAX_ARGON2_PARAMS.iterations + 1],
    ["lanes 5", PARALLELISM_OFFSET, MAX_ARGON2_PARAMS.parallelism + 1],
  ];
  for (const [name, offset, value] of cases) {
    await t.step(name, async () => {
      await withTempDir(async (dir) => {
        const path = `${dir}/identity.key`;
        const bytes = new Uint8Array(fixture);
        setU32(bytes, offset, value);
        await Deno.writeFile(path, bytes);
        // A security bound, not a speed test: Argon2 at these costs would take
        // minutes or gigabytes, so an answer within a second means it never ran.
        const start = performance.now();
        await rejectsWithCode(
          unlockKeystore(path, PASSPHRASE),
          "parameters-out-of-range",
          new RegExp(`^Cannot read keystore: Argon2 \\w+ ${value} is outside \\d+\\.\\.\\d+$`),
        );
        assert.ok(performance.now() - start < 1000, "unlock ran Argon2 on out-of-range parameters");
      });
    });
  }
});

Deno.test("unlockKeystore() refuses parameters below the minimum (a downgraded file)", async (t) => {
  const cases: [string, number, number][] = [
    ["memory 8 KiB", MEMORY_OFFSET, 8],
    ["memory one KiB under", MEMORY_OFFSET, MIN_ARGON2_PARAMS.memoryKib - 1],
    ["one pass", ITERATIONS_OFFSET, 1],
    ["zero passes", ITERATIONS_OFFSET, 0],
    ["zero lanes", PARALLELISM_OFFSET, 0],
  ];
  for (const [name, offset, value] of cases) {
    await t.step(name, async () => {
      await withTempDir(async (dir) => {
        const path = `${dir}/identity.key`;
        const bytes = new Uint8Array(fixture);
        setU32(bytes, offset, value);
        await Deno.writeFile(path, bytes);
        await assertUnchanged(path, async () => {
          await rejectsWithCode(unlockKeystore(path, PASSPHRASE), "parameters-out-of-range");
        });
        await rejectsWithCode(readKeystoreHeader(path), "parameters-out-of-range");
      });
    });
  }
});

Deno.test("unlockKeystore() honours an abort signal", async () => {
  const controller = new AbortController();
  controller.abort(new Error("stop"));
  await assert.rejects(
    unlockKeystore(fixturePath, PASSPHRASE, { signal: controller.signal }),
    /stop/,
  );
  const later = new AbortController();
  const timer = setTimeout(() => later.abort(new Error("stopped midway")), 20);
  try {
    await assert.rejects(
      unlockKeystore(fixturePath, PASSPHRASE, { signal: later.signal }),
      /stopped midway/,
    );
  } finally {
    clearTimeout(timer);
  }
});

Deno.test("createKeystore() refuses parameters outside the accepted range", async (t) => {
  const cases = [
    { ...DEFAULT_ARGON2_PARAMS, memoryKib: 1024 },
    { ...DEFAULT_ARGON2_PARAMS, iterations: 1 },
    { ...DEFAULT_ARGON2_PARAMS, parallelism: 0 },
    { ...DEFAULT_ARGON2_PARAMS, memoryKib: MAX_ARGON2_PARAMS.memoryKib + 1 },
    { ...DEFAULT_ARGON2_PARAMS, iterations: 2.5 },
  ];
  for (const params of cases) {
    await t.step(JSON.stringify(params), async () => {
      await withTempDir(async (dir) => {
        await rejectsWithCode(
          createKeystore(`${dir}/identity.key`, identity, PASSPHRASE, { params }),
          "parameters-out-of-range",
          /^Cannot create keystore: Argon2 /,
        );
        assert.deepEqual([...Deno.readDirSync(dir)], []);
      });
    });
  }
});

Deno.test("createKeystore() refuses an empty passphrase", async () => {
  await withTempDir(async (dir) => {
    await assert.rejects(
      createKeystore(`${dir}/identity.key`, identity, ""),
      (err: unknown) =>
        err instanceof TypeError &&
        err.message === "Cannot create keystore: the passphrase must not be empty",
    );
    assert.deepEqual([...Deno.readDirSync(dir)], []);
  });
});

Deno.test("createKeystore() refuses to replace a file unless forced", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/identity.key`;
    await Deno.writeFile(path, fixture);
    const other = await Identity.generate();
    await assertUnchanged(path, async () => {
      await rejectsWithCode(
        createKeystore(path, other, "another passphrase"),
        "exists",
        /already exists/,
      );
    });
    await createKeystore(path, other, "another passphrase", { force: true });
    assert.equal((await unlockKeystore(path, "another passphrase")).id, other.id);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["identity.key"]);
  });
});

Deno.test("createKeystore() reports an unwritable path as io", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeFile(`${dir}/file`, new Uint8Array(1));
    await rejectsWithCode(
      createKeystore(`${dir}/file/identity.key`, identity, PASSPHRASE),
      "io",
      /^Cannot write .*file\/identity\.key: a parent path is not a directory$/,
    );
  });
});

Deno.test("createKeystore() keeps the parameters it is given", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/identity.key`;
    const params = { memoryKib: 19456, iterations: 3, parallelism: 2 };
    await createKeystore(path, identity, PASSPHRASE, { params });
    assert.deepEqual((await readKeystoreHeader(path)).params, params);
    assert.equal((await unlockKeystore(path, PASSPHRASE)).id, identity.id);
  });
});

Deno.test("changePassphrase() re-encrypts so only the new passphrase unlocks", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/identity.key`;
    await Deno.writeFile(path, fixture, { mode: 0o600 });
    await changePassphrase(path, PASSPHRASE, "a brand new passphrase");
    const changed = await Deno.readFile(path);
    assert.notDeepEqual(changed.subarray(SALT_OFFSET), fixture.subarray(SALT_OFFSET));
    assert.deepEqual((await readKeystoreHeader(path)).params, DEFAULT_ARGON2_PARAMS);
    assert.equal((await unlockKeystore(path, "a brand new passphrase")).id, identity.id);
    await rejectsWithCode(unlockKeystore(path, PASSPHRASE), "wrong-passphrase");
    if (Deno.build.os !== "windows") assert.equal((await Deno.stat(path)).mode! & 0o777, 0o600);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["identity.key"]);
  });
});

Deno.test("changePassphrase() leaves the file unchanged when the old passphrase is wrong", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/identity.key`;
    await Deno.writeFile(path, fixture);
    await assertUnchanged(path, async () => {
      await rejectsWithCode(changePassphrase(path, "not it", "new one"), "wrong-passphrase");
      await assert.rejects(changePassphrase(path, PASSPHRASE, ""), TypeError);
    });
  });
});

Deno.test("KeystoreError messages never contain the passphrase", async () => {
  const secret = "s3cret-passphrase-do-not-print";
  await withTempDir(async (dir) => {
    const err = await rejectsWithCode(unlockKeystore(fixturePath, secret), "wrong-passphrase");
    assert.ok(!err.message.includes(secret));
    assert.ok(!String(err.stack).includes(secret));
    assert.ok(!String(err.cause).includes(secret));
    const missing = await rejectsWithCode(unlockKeystore(`${dir}/x`, secret), "not-found");
    assert.ok(!missing.message.includes(secret));
  });
});
