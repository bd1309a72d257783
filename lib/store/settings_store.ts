/**
 * Small settings (the `meta` table every connection has: display name,
 * sequence numbers, the CLI's marks) and sealed secrets (prekeys), by name.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Connection } from "./connection.ts";
 * import { SECRETS_SCHEMA, SettingsStore } from "./settings_store.ts";
 *
 * using conn = Connection.open(":memory:", [SECRETS_SCHEMA]);
 * const settings = new SettingsStore(conn);
 * settings.set("display_name", "Alice");
 * settings.setSecret("prekeys", new Uint8Array([1, 2]));
 * assert.equal(settings.get("display_name"), "Alice");
 * assert.deepEqual(settings.getSecret("prekeys"), new Uint8Array([1, 2]));
 * ```
 *
 * @module
 */
import type { SettingsStorage } from "../messaging/storage.ts";
import { blob, type Connection, remember, type Row, type SchemaPart } from "./connection.ts";

/** The `secrets` table (the `meta` table comes with every connection). */
export const SECRETS_SCHEMA: SchemaPart = {
  tables: ["secrets"],
  sql: "CREATE TABLE IF NOT EXISTS secrets (name TEXT PRIMARY KEY, value BLOB NOT NULL);",
};

/** The most settings kept in memory. */
const CACHED_SETTINGS = 256;

/**
 * The `meta` and `secrets` tables on a shared connection. Settings read or
 * written are kept in memory (some are read with every message, e.g. the
 * session manager's save counter).
 */
export class SettingsStore implements SettingsStorage {
  readonly #conn: Connection;
  /** Settings read or written, by key; `null` for a key that has none. */
  readonly #meta: Map<string, string | null>;

  /**
   * Uses a connection opened with {@linkcode SECRETS_SCHEMA}.
   *
   * @param conn The connection.
   */
  constructor(conn: Connection) {
    this.#conn = conn;
    this.#meta = conn.cache("meta");
  }

  /**
   * Reads a small setting.
   *
   * @param key Setting name.
   * @returns Its value, or `undefined`.
   */
  get(key: string): string | undefined {
    const kept = this.#meta.get(key);
    if (kept !== undefined) return kept ?? undefined;
    const r = this.#conn.run(
      "read setting",
      (db) => db.prepare("SELECT value FROM meta WHERE key = ?").get(key),
    ) as Row | undefined;
    const value = r === undefined ? null : String(r.value);
    return remember(this.#meta, key, value, CACHED_SETTINGS) ?? undefined;
  }

  /**
   * Writes a small setting.
   *
   * @param key Setting name.
   * @param value Its value.
   */
  set(key: string, value: string): void {
    this.#conn.run("write setting", (db) =>
      db.prepare(
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
      ).run(key, value));
    remember(this.#meta, key, value, CACHED_SETTINGS);
  }

  /**
   * Reads a sealed secret (prekeys and the like).
   *
   * @param name Its name.
   * @returns The sealed bytes, or `undefined`.
   */
  getSecret(name: string): Uint8Array | undefined {
    const r = this.#conn.run(
      "read secret",
      (db) => db.prepare("SELECT value FROM secrets WHERE name = ?").get(name),
    ) as Row | undefined;
    return r === undefined ? undefined : blob(r.value);
  }

  /**
   * Writes a sealed secret.
   *
   * @param name Its name.
   * @param value The sealed bytes.
   */
  setSecret(name: string, value: Uint8Array): void {
    this.#conn.run("write secret", (db) =>
      db.prepare(
        "INSERT INTO secrets (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
      ).run(name, value));
  }
}
