/**
 * The node's key file: the libp2p Ed25519 key that gives a node with a
 * data directory the same peer ID on every start. It is separate from the
 * user's identity key, and kept in `node.key` (libp2p's protobuf encoding,
 * mode 0600) by an atomic write, so two processes starting at once end up
 * with one key.
 *
 * @module
 */
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from "@libp2p/crypto/keys";
import type { PrivateKey } from "@libp2p/interface";
import { StorageError } from "../errors.ts";
import { readFileBounded, writeFileAtomic } from "../platform/atomic_file.ts";
import { MAX_NODE_KEY_BYTES } from "./constants.ts";
import { describe } from "./_peers.ts";

/**
 * Creates a data directory (mode 0700) if it is missing.
 *
 * @param path The directory.
 * @returns When it exists.
 * @throws {StorageError} If it cannot be created.
 * @example
 * ```ts
 * import { ensureDataDirectory } from "./node_key.ts";
 *
 * const dir = await Deno.makeTempDir();
 * await ensureDataDirectory(`${dir}/node`);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function ensureDataDirectory(path: string): Promise<void> {
  try {
    await Deno.mkdir(path, { recursive: true, mode: 0o700 });
  } catch (cause) {
    throw new StorageError(`Cannot create data directory ${path}: ${describe(cause)}`, { cause });
  }
}

/**
 * Reads the node key at `path`, or makes one and writes it there if the
 * file does not exist (if another process wrote one meanwhile, that one).
 *
 * @param path The key file.
 * @returns The Ed25519 key.
 * @throws {StorageError} If the file is too large, corrupt, not an Ed25519
 *   key, or cannot be written.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadOrCreateNodeKey } from "./node_key.ts";
 *
 * const dir = await Deno.makeTempDir();
 * const first = await loadOrCreateNodeKey(`${dir}/node.key`);
 * const again = await loadOrCreateNodeKey(`${dir}/node.key`);
 * assert.ok(first.equals(again));
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function loadOrCreateNodeKey(path: string): Promise<PrivateKey> {
  let bytes: Uint8Array | undefined;
  try {
    bytes = await readFileBounded(path, MAX_NODE_KEY_BYTES);
  } catch (cause) {
    if (cause instanceof RangeError) {
      throw new StorageError(`Cannot load node key ${path}: the file is too large`, { cause });
    }
    throw cause;
  }
  if (bytes !== undefined) {
    try {
      const key = privateKeyFromProtobuf(bytes);
      if (key.type !== "Ed25519") throw new TypeError(`unexpected key type ${key.type}`);
      return key;
    } catch (cause) {
      throw new StorageError(`Cannot load node key ${path}: the file is corrupt`, { cause });
    }
  }
  const key = await generateKeyPair("Ed25519");
  try {
    await writeFileAtomic(path, privateKeyToProtobuf(key), { mode: 0o600, overwrite: false });
  } catch (cause) {
    // Another process may have created the key first: use that one.
    if ((await readFileBounded(path, MAX_NODE_KEY_BYTES).catch(() => undefined)) !== undefined) {
      return await loadOrCreateNodeKey(path);
    }
    throw cause;
  }
  return key;
}
