/** Messages to store in the store tests. */
import type { NewIncomingMessage } from "../../lib/messaging/storage.ts";

/** A received message from `dimpeer` with ID bytes `id`, sent at `sentAt`. */
export const msg = (id: number, sentAt: number): NewIncomingMessage => ({
  id: new Uint8Array(16).fill(id),
  peer: "dimpeer",
  sentAt,
  receivedAt: 1000,
  contentType: 1,
  body: new TextEncoder().encode(`m${id}`),
  via: "direct",
  protection: "static",
});

/** Runs `fn` with a fresh temporary directory, removed afterwards. */
export function inTempDir(fn: (dir: string) => void): void {
  const dir = Deno.makeTempDirSync({ prefix: "dim-store-" });
  try {
    fn(dir);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}
