import assert from "node:assert/strict";
import { concat, u32, utf8 } from "../../lib/platform/bytes.ts";
import { Identity } from "../../lib/crypto/identity.ts";
import {
  DEFAULT_CARD_TTL_MS,
  MAX_ADDRESS_LENGTH,
  MAX_ADDRESSES,
  MAX_DISPLAY_NAME_BYTES,
  MAX_PEER_ID_LENGTH,
  openCard,
  signCard,
} from "../../lib/record/card.ts";
import { CLOCK_SKEW_TOLERANCE_MS, signRecord } from "../../lib/record/record.ts";

const NOW = 1_700_000_000_000;
const PEER_ID = "12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo";
const ADDRESSES = ["/ip4/192.0.2.7/tcp/4001", "/ip6/2001:db8::7/tcp/4001"];

const alice = await Identity.generate();
const bob = await Identity.generate();

function invalid(message: RegExp): { name: string; message: RegExp } {
  return { name: "InvalidRecordError", message };
}

interface RawPayload {
  version?: number;
  encryptionKey?: Uint8Array;
  name?: Uint8Array;
  peerId?: Uint8Array;
  addresses?: Uint8Array[];
  addressCount?: number;
  trailing?: Uint8Array;
}

// Builds a card payload field by field and signs it as a valid record, so
// that the payload checks are what rejects it.
async function rawCard(fields: RawPayload): Promise<Uint8Array> {
  const name = fields.name ?? utf8("Alice");
  const peerId = fields.peerId ?? utf8(PEER_ID);
  const addresses = fields.addresses ?? [];
  const payload = concat(
    new Uint8Array([fields.version ?? 1]),
    fields.encryptionKey ?? alice.encryptionPublicKey,
    new Uint8Array([name.length]),
    name,
    new Uint8Array([peerId.length]),
    peerId,
    new Uint8Array([fields.addressCount ?? addresses.length]),
    ...addresses.flatMap((a) => [u32(a.length), a]),
    fields.trailing ?? new Uint8Array(),
  );
  const record = await signRecord(alice, { type: "card", seq: 1, payload, issuedAt: NOW });
  return record.bytes;
}

Deno.test("signCard() and openCard() round-trip every field", async () => {
  const record = await signCard(alice, {
    displayName: "Alice 🦊",
    peerId: PEER_ID,
    addresses: ADDRESSES,
    seq: 7,
    ttlMs: 60_000,
    now: NOW,
  });
  const card = await openCard(record.bytes, { key: `/dim/card/${alice.id}`, now: NOW });
  assert.equal(card.id, alice.id);
  assert.deepEqual(card.signingPublicKey, alice.signingPublicKey);
  assert.deepEqual(card.encryptionPublicKey, alice.encryptionPublicKey);
  assert.equal(card.displayName, "Alice 🦊");
  assert.equal(card.peerId, PEER_ID);
  assert.deepEqual(card.addresses, ADDRESSES);
  assert.equal(card.seq, 7);
  assert.equal(card.issuedAt, NOW);
  assert.equal(card.expiresAt, NOW + 60_000);
  assert.deepEqual(card.record.bytes, record.bytes);
});

Deno.test("signCard() defaults seq to the signing time and the TTL to a day", async () => {
  const record = await signCard(alice, {
    displayName: "A",
    peerId: PEER_ID,
    addresses: [],
    now: NOW,
  });
  assert.equal(record.type, "card");
  assert.equal(record.seq, NOW);
  assert.equal(record.expiresAt - record.issuedAt, DEFAULT_CARD_TTL_MS);
  const fresh = await signCard(alice, { displayName: "A", peerId: PEER_ID, addresses: [] });
  const card = await openCard(fresh);
  assert.ok(Math.abs(card.issuedAt - Date.now()) < 60_000);
});

Deno.test("openCard() validates the bytes of a decoded record, not its fields", async () => {
  const record = await signCard(alice, {
    displayName: "A",
    peerId: PEER_ID,
    addresses: [],
    seq: 3,
  });
  const card = await openCard({ ...record, seq: 999, ownerId: bob.id });
  assert.equal(card.seq, 3);
  assert.equal(card.id, alice.id);
});

Deno.test("openCard() rejects a card under another user's key", async () => {
  const bobs = await signCard(bob, {
    displayName: "Alice",
    peerId: PEER_ID,
    addresses: [],
    now: NOW,
  });
  await assert.rejects(
    openCard(bobs.bytes, { key: `/dim/card/${alice.id}`, now: NOW }),
    invalid(/the key does not belong to the record's owner/),
  );
});

Deno.test("openCard() rejects a record of another type", async () => {
  const note = await signRecord(alice, { type: "note", seq: 1, payload: new Uint8Array() });
  await assert.rejects(openCard(note.bytes), invalid(/^Cannot open card: it is a "note" record/));
  await assert.rejects(
    openCard(note.bytes, { key: `/dim/card/${alice.id}` }),
    invalid(/the key does not belong/),
  );
});

Deno.test("openCard() rejects an expired card", async () => {
  const record = await signCard(alice, {
    displayName: "A",
    peerId: PEER_ID,
    addresses: [],
    now: NOW,
    ttlMs: 1000,
  });
  await openCard(record.bytes, { now: NOW + 1000 });
  await assert.rejects(
    openCard(record.bytes, { now: NOW + 1000 + CLOCK_SKEW_TOLERANCE_MS }),
    invalid(/expired/),
  );
});

Deno.test("signCard() accepts fields at their limits", async () => {
  const displayName = "é".repeat(MAX_DISPLAY_NAME_BYTES / 2);
  const peerId = "a".repeat(MAX_PEER_ID_LENGTH);
  const addresses = Array.from(
    { length: MAX_ADDRESSES },
    (_, i) => `/dns4/${String(i).padStart(2, "0")}`.padEnd(MAX_ADDRESS_LENGTH, "x"),
  );
  const record = await signCard(alice, { displayName, peerId, addresses, now: NOW });
  const card = await openCard(record.bytes, { now: NOW });
  assert.equal(card.displayName, displayName);
  assert.equal(card.peerId, peerId);
  assert.deepEqual(card.addresses, addresses);
  const family = await signCard(alice, { displayName: "👩‍👩‍👧", peerId, addresses: [] });
  assert.equal((await openCard(family)).displayName, "👩‍👩‍👧");
});

Deno.test("signCard() rejects bad display names", async (t) => {
  const cases: Record<string, [string, string]> = {
    "an empty name": ["", "RangeError"],
    "a name over 64 bytes": ["é".repeat(MAX_DISPLAY_NAME_BYTES / 2) + "e", "RangeError"],
    "a newline": ["Alice\nBob", "TypeError"],
    "an escape character": ["\x1b[31mAlice", "TypeError"],
    "DEL": ["Alice\x7f", "TypeError"],
    "a C1 control": ["Alice\u0085", "TypeError"],
    "a line separator": ["Alice\u2028", "TypeError"],
    "a right-to-left override": ["Alice\u202egnp.exe", "TypeError"],
    "a bidi isolate": ["\u2067Alice", "TypeError"],
    "a lone surrogate": ["Alice\ud800", "TypeError"],
  };
  for (const [what, [displayName, name]] of Object.entries(cases)) {
    await t.step(what, async () => {
      await assert.rejects(
        signCard(alice, { displayName, peerId: PEER_ID, addresses: [] }),
        { name, message: /^Cannot sign card: the display name/ },
      );
    });
  }
});

Deno.test("signCard() rejects bad peer IDs", async (t) => {
  const cases: Record<string, [string, string]> = {
    "an empty peer ID": ["", "RangeError"],
    "a peer ID over 128 characters": ["a".repeat(MAX_PEER_ID_LENGTH + 1), "RangeError"],
    "a slash": ["12D3Koo/W", "TypeError"],
    "a space": ["12D3 KooW", "TypeError"],
    "a non-ASCII letter": ["12D3Kööw", "TypeError"],
  };
  for (const [what, [peerId, name]] of Object.entries(cases)) {
    await t.step(what, async () => {
      await assert.rejects(
        signCard(alice, { displayName: "A", peerId, addresses: [] }),
        { name, message: /^Cannot sign card: the peer ID/ },
      );
    });
  }
});

Deno.test("signCard() rejects bad addresses", async (t) => {
  const cases: Record<string, [string[], string, RegExp]> = {
    "17 addresses": [
      Array.from({ length: MAX_ADDRESSES + 1 }, (_, i) => `/ip4/192.0.2.${i}/tcp/1`),
      "RangeError",
      /at most 16 addresses/,
    ],
    "an address over 256 bytes": [
      ["/dns4/".padEnd(MAX_ADDRESS_LENGTH + 1, "x")],
      "RangeError",
      /exceeds 256 bytes/,
    ],
    "no leading slash": [["ip4/192.0.2.7/tcp/1"], "TypeError", /multiaddr/],
    "an empty address": [[""], "TypeError", /multiaddr/],
    "a space": [["/ip4/192.0.2.7/tcp/1 "], "TypeError", /multiaddr/],
    "a non-ASCII character": [["/dns4/exämple.org"], "TypeError", /multiaddr/],
    "a control character": [["/dns4/a\nb"], "TypeError", /multiaddr/],
    "a duplicate": [[ADDRESSES[0]!, ADDRESSES[0]!], "TypeError", /listed twice/],
  };
  for (const [what, [addresses, name, message]] of Object.entries(cases)) {
    await t.step(what, async () => {
      await assert.rejects(
        signCard(alice, { displayName: "A", peerId: PEER_ID, addresses }),
        { name, message },
      );
    });
  }
});

Deno.test("openCard() rejects malformed payloads in validly signed records", async (t) => {
  const address = utf8(ADDRESSES[0]!);
  const cases: Record<string, [RawPayload, RegExp]> = {
    "invalid UTF-8 in the name": [{ name: new Uint8Array([0x41, 0xff]) }, /not valid UTF-8/],
    "an overlong UTF-8 encoding": [{ name: new Uint8Array([0xc0, 0xaf]) }, /not valid UTF-8/],
    "a truncated UTF-8 sequence": [{ name: new Uint8Array([0x41, 0xc3]) }, /not valid UTF-8/],
    "a byte order mark": [{ name: new Uint8Array([0xef, 0xbb, 0xbf, 0x41]) }, /not canonical/],
    "an empty name": [{ name: new Uint8Array() }, /display name is empty/],
    "a name over 64 bytes": [{ name: utf8("a".repeat(65)) }, /display name exceeds 64 bytes/],
    "a control character in the name": [{ name: utf8("A\x07") }, /control character/],
    "an unknown card version": [{ version: 2 }, /unknown card version 2/],
    "an empty peer ID": [{ peerId: new Uint8Array() }, /peer ID/],
    "a peer ID over 128 bytes": [{ peerId: utf8("a".repeat(129)) }, /peer ID is too long/],
    "a non-ASCII peer ID": [{ peerId: new Uint8Array([0x41, 0xc3, 0xa9]) }, /peer ID contains/],
    "17 addresses": [
      { addresses: Array.from({ length: 17 }, (_, i) => utf8(`/ip4/192.0.2.${i}/tcp/1`)) },
      /too many addresses/,
    ],
    "an address over 256 bytes": [{ addresses: [utf8("/".repeat(257))] }, /address is too long/],
    "a non-ASCII address": [{ addresses: [new Uint8Array([0x2f, 0xe9])] }, /multiaddr/],
    "a duplicate address": [{ addresses: [address, address] }, /listed twice/],
    "a missing address": [{ addresses: [address], addressCount: 2 }, /truncated/],
    "a trailing byte": [{ trailing: new Uint8Array([0]) }, /trailing bytes/],
    "a short encryption key": [
      { encryptionKey: new Uint8Array(31), name: new Uint8Array(), peerId: new Uint8Array() },
      /^Cannot open card: the payload is malformed \(input is truncated\)$/,
    ],
  };
  for (const [what, [fields, message]] of Object.entries(cases)) {
    await t.step(what, async () => {
      const bytes = await rawCard(fields);
      await assert.rejects(openCard(bytes, { now: NOW }), invalid(message));
    });
  }
  await t.step("the raw builder makes a valid card when nothing is wrong", async () => {
    const card = await openCard(await rawCard({ addresses: [address] }), { now: NOW });
    assert.deepEqual(card.addresses, [ADDRESSES[0]]);
  });
});
