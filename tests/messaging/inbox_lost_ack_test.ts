/**
 * A message the inbox stored is shown even when its acknowledgement could
 * not be written back (its sender closed the stream first, say by
 * stopping): the sender's next try is a duplicate, acknowledged but never
 * shown, so a message not shown the first time would never be.
 *
 * @module
 */
import assert from "node:assert/strict";
import { sealEnvelope } from "../../lib/crypto/envelope.ts";
import { Identity } from "../../lib/crypto/identity.ts";
import { ServiceContext } from "../../lib/messaging/_context.ts";
import { Inbox } from "../../lib/messaging/inbox.ts";
import type { MessageStream } from "../../lib/messaging/mailbox.ts";
import type { MessagingEventDetail, MessagingTransport } from "../../lib/messaging/types.ts";
import { decodeFrame, encodeFrame, type Frame, FrameType } from "../../lib/messaging/wire.ts";
import { UserStore } from "../../lib/store/user_store.ts";

/** An inbound stream that brings `frames`; with `closed`, writing back fails as on a closed stream. */
class OneShotStream implements MessageStream {
  readonly written: Frame[] = [];
  readonly #frames: Uint8Array[];
  readonly #closed: boolean;

  constructor(frames: Uint8Array[], options: { closed?: boolean } = {}) {
    this.#frames = frames;
    this.#closed = options.closed ?? false;
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Uint8Array> {
    for (const f of this.#frames) yield await Promise.resolve(f);
  }

  send(data: Uint8Array): boolean {
    if (this.#closed) throw new Error("Cannot write to a stream that is closed");
    for (let at = 0; at < data.length;) {
      const length = new DataView(data.buffer, data.byteOffset + at).getUint32(0);
      this.written.push(decodeFrame(data.subarray(at + 4, at + 4 + length)));
      at += 4 + length;
    }
    return true;
  }

  onDrain(): Promise<void> {
    return Promise.resolve();
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  abort(): void {}
}

const noTransport: MessagingTransport = {
  peerId: "self",
  openStream: () => Promise.reject(new Error("no network")),
  closestPeers: () => Promise.resolve([]),
  handle: () => Promise.resolve(),
  unhandle: () => Promise.resolve(),
};

Deno.test("a message stored while its sender closed the stream is shown once; the sender's retry is acknowledged", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dim-lost-ack-" });
  const storage = UserStore.open(`${dir}/bob.db`);
  try {
    const bob = await Identity.generate();
    const alice = await Identity.generate();
    const shown: MessagingEventDetail[] = [];
    const errors: unknown[] = [];
    const context = new ServiceContext(
      { identity: bob, transport: noTransport, resolve: () => Promise.reject(new Error("none")) },
      { idleTimeoutMs: 10_000, onPeerError: (e) => errors.push(e) },
      (detail) => shown.push(detail),
    );
    context.running = true;
    const inbox = new Inbox({ context, storage, onReceipt: () => Promise.resolve() });
    const envelope = await sealEnvelope(alice, bob, { body: new TextEncoder().encode("hi") });
    const frame = encodeFrame({ type: FrameType.Envelope, envelope });

    // Stored, but the acknowledgement cannot be written: Alice left.
    await inbox.serve(new OneShotStream([frame], { closed: true }), "alice-peer");
    assert.equal(errors.length, 1, "the failed write is the peer's error");
    assert.equal(shown.length, 1, "shown although unacknowledged");
    const first = shown[0]!;
    assert.ok(first.type === "message");
    assert.equal(new TextDecoder().decode(first.incoming.message.body), "hi");

    // Alice tries again: acknowledged as a duplicate, not shown twice.
    const again = new OneShotStream([frame]);
    await inbox.serve(again, "alice-peer");
    assert.equal(again.written.length, 1);
    assert.equal(again.written[0]!.type, FrameType.Ack);
    assert.equal(shown.length, 1);
    context.deadlines.abort(new Error("test over"));
  } finally {
    storage.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("when a later message of a batch cannot be stored, the ones stored before it are still shown, once", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dim-lost-ack-" });
  const store = UserStore.open(`${dir}/bob.db`);
  let transactions = 0;
  let failAt = 2;
  // The second transaction of the batch fails, as on a full disk.
  const storage = new Proxy(store, {
    get(target, key) {
      if (key === "transaction") {
        return <T>(fn: () => T, options?: object): T => {
          if (++transactions === failAt) throw new Error("the disk is full");
          return target.transaction(fn, options);
        };
      }
      const value = Reflect.get(target, key);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  try {
    const bob = await Identity.generate();
    const alice = await Identity.generate();
    const shown: string[] = [];
    const errors: unknown[] = [];
    const context = new ServiceContext(
      { identity: bob, transport: noTransport, resolve: () => Promise.reject(new Error("none")) },
      { idleTimeoutMs: 10_000, onPeerError: (e) => errors.push(e) },
      (detail) => {
        if (detail.type === "message") {
          shown.push(new TextDecoder().decode(detail.incoming.message.body));
        }
      },
    );
    context.running = true;
    const inbox = new Inbox({ context, storage, onReceipt: () => Promise.resolve() });
    const frames = await Promise.all(
      ["one", "two"].map(async (text) =>
        encodeFrame({
          type: FrameType.Envelope,
          envelope: await sealEnvelope(alice, bob, { body: new TextEncoder().encode(text) }),
        })
      ),
    );
    const batch = new Uint8Array([...frames[0]!, ...frames[1]!]);
    const first = new OneShotStream([batch]);
    await inbox.serve(first, "alice-peer").catch(() => {});
    assert.deepEqual(shown, ["one"], "the stored message is shown");
    // However the two arrived (one batch, or one after the other), "two" was
    // neither acknowledged nor shown: at most "one" was acknowledged.
    assert.ok(first.written.filter((f) => f.type === FrameType.Ack).length <= 1);
    assert.equal(errors.length, 1, "the failed store is reported");

    // Alice tries both again: "one" is a duplicate, "two" is stored now.
    failAt = 0;
    const again = new OneShotStream([batch]);
    await inbox.serve(again, "alice-peer");
    assert.deepEqual(again.written.map((f) => f.type), [FrameType.Ack, FrameType.Ack]);
    assert.deepEqual(shown, ["one", "two"]);
    context.deadlines.abort(new Error("test over"));
  } finally {
    store.close();
    await Deno.remove(dir, { recursive: true });
  }
});
