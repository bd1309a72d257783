import assert from "node:assert/strict";
import { Identity } from "../../lib/crypto/identity.ts";
import { KeystoreError, StorageError } from "../../lib/errors.ts";
import { createMessenger } from "../../lib/messenger/messenger.ts";
import { KeyChangedError } from "../../lib/profile/contacts.ts";
import { createProfile, openProfile, ProfileLockedError } from "../../lib/profile/profile.ts";
import { PROFILE_SETTINGS } from "../../lib/profile/settings.ts";
import { lockDataDir } from "../../lib/platform/lock.ts";
import { UserStore } from "../../lib/store/user_store.ts";

async function withHome(fn: (home: string) => Promise<void>): Promise<void> {
  const home = await Deno.makeTempDir({ prefix: "dim-profile-" });
  try {
    await fn(home);
  } finally {
    await Deno.remove(home, { recursive: true });
  }
}

/** Pins a fresh identity as contact `name` straight in the database. */
async function addContact(home: string, name: string): Promise<Identity> {
  const them = await Identity.generate();
  using db = UserStore.open(`${home}/dim.db`);
  db.contacts.upsert({
    name,
    userId: them.id,
    signingPublicKey: them.signingPublicKey,
    encryptionPublicKey: them.encryptionPublicKey,
  });
  return them;
}

Deno.test("a profile opens without the passphrase: its public keys, display name and contacts", async () => {
  await withHome(async (home) => {
    const created = await createProfile({
      home,
      passphrase: "plum vortex quietly sings",
      displayName: "Ada",
    });
    const id = created.id;
    const fingerprint = created.fingerprint();
    await created.stop();
    await addContact(home, "bob");
    await using profile = await openProfile({ home, exclusive: false });
    assert.equal(profile.locked, true);
    assert.equal(profile.id, id);
    assert.equal(profile.fingerprint(), fingerprint);
    assert.equal(profile.displayName, "Ada");
    assert.deepEqual(profile.contacts().map((c) => c.name), ["bob"]);
    assert.match(profile.safetyNumber("bob"), /^(\d{5} ){11}\d{5}$/);
    // Message bodies are sealed: reading them needs the identity.
    assert.throws(() => profile.history("bob"), ProfileLockedError);
    assert.throws(() => profile.outbox(), ProfileLockedError);
  });
});

Deno.test("without a saved copy of the public keys, a locked profile needs unlocking", async () => {
  await withHome(async (home) => {
    const created = await createProfile({
      home,
      passphrase: "plum vortex quietly sings",
      displayName: "Ada",
    });
    const id = created.id;
    await created.stop();
    {
      using db = UserStore.open(`${home}/dim.db`);
      db.settings.set(PROFILE_SETTINGS.publicIdentity, "{}");
    }
    await using profile = await openProfile({ home, exclusive: false });
    assert.throws(() => profile.id, ProfileLockedError);
    await assert.rejects(profile.unlock("wrong"), KeystoreError);
    await profile.unlock("plum vortex quietly sings");
    assert.equal(profile.locked, false);
    assert.equal(profile.id, id);
    await profile.stop();
    // Unlocking saved the copy again.
    await using again = await openProfile({ home, exclusive: false });
    assert.equal(again.id, id);
  });
});

Deno.test("openProfile() needs an identity, and the right passphrase", async () => {
  await withHome(async (home) => {
    await assert.rejects(
      openProfile({ home }),
      (e) => e instanceof KeystoreError && e.code === "not-found",
    );
    await (await createProfile({
      home,
      passphrase: "plum vortex quietly sings",
      displayName: "Ada",
    })).stop();
    await assert.rejects(
      openProfile({ home, passphrase: "nope" }),
      (e) => e instanceof KeystoreError && e.code === "wrong-passphrase",
    );
    await assert.rejects(
      createProfile({ home, passphrase: "plum vortex quietly sings", displayName: "Ada" }),
      (e) => e instanceof KeystoreError && e.code === "exists",
    );
  });
});

Deno.test("an exclusive profile holds the data directory; a shared one takes it for each change", async () => {
  await withHome(async (home) => {
    const profile = await createProfile({
      home,
      passphrase: "plum vortex quietly sings",
      displayName: "Ada",
    });
    await addContact(home, "bob");
    assert.throws(() => lockDataDir(home), StorageError);
    await assert.rejects(openProfile({ home }), StorageError);
    await using shared = await openProfile({ home, exclusive: false });
    assert.equal(shared.contact("bob").verified, false);
    assert.throws(() => shared.verifyContact("bob"), StorageError);
    await profile.stop();
    await profile.stop();
    assert.equal(shared.verifyContact("bob").verified, true);
    lockDataDir(home).release();
  });
});

Deno.test("applications keep their own settings, not DIM's", async () => {
  await withHome(async (home) => {
    await using profile = await createProfile({
      home,
      passphrase: "plum vortex quietly sings",
      displayName: "Ada",
    });
    profile.setSetting("app.theme", "dark");
    assert.equal(profile.getSetting("app.theme"), "dark");
    assert.throws(() => profile.setSetting(PROFILE_SETTINGS.displayName, "Eve"), RangeError);
    profile.setDisplayName("Ada L.");
    assert.equal(profile.displayName, "Ada L.");
  });
});

Deno.test("a messenger starts only on an unlocked, exclusive profile, and stops it when it cannot", async () => {
  await withHome(async (home) => {
    await (await createProfile({
      home,
      passphrase: "plum vortex quietly sings",
      displayName: "Ada",
    })).stop();
    const locked = await openProfile({ home });
    await assert.rejects(createMessenger(locked), ProfileLockedError);
    // The failed start stopped the profile: the directory is free again.
    lockDataDir(home).release();
    const shared = await openProfile({
      home,
      passphrase: "plum vortex quietly sings",
      exclusive: false,
    });
    await assert.rejects(createMessenger(shared), TypeError);
  });
});

Deno.test("KeyChangedError names the contact and gives no command-line advice", () => {
  const err = new KeyChangedError({ name: "bob", userId: "dimexample" });
  assert.equal(err.name, "KeyChangedError");
  assert.equal(err.message, "Cannot send to bob: their keys changed");
  assert.equal(err.contact, "bob");
  assert.equal(err.userId, "dimexample");
});
