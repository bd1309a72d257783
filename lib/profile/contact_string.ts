/**
 * `dim:` contact strings: a user ID and, optionally, addresses to join the
 * network through, in one string to share (`dim:<id>?bootstrap=<multiaddr>`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Identity } from "../crypto/identity.ts";
 * import { contactString, parseContactString } from "./contact_string.ts";
 *
 * const me = await Identity.generate();
 * const text = contactString(me.id, ["/ip4/192.0.2.1/tcp/4001/p2p/12D3KooWExample"]);
 * assert.deepEqual(parseContactString(text), {
 *   id: me.id,
 *   bootstrap: ["/ip4/192.0.2.1/tcp/4001/p2p/12D3KooWExample"],
 * });
 * ```
 *
 * @module
 */
import { decodeUserId } from "../crypto/identity.ts";
import { InvalidIdError } from "../errors.ts";

/** A contact string taken apart. */
export interface ParsedContactString {
  /** The user ID, in its canonical (lower-case) form. */
  readonly id: string;
  /** The multiaddrs it carries, unchecked. */
  readonly bootstrap: string[];
}

/**
 * Makes a `dim:` contact string that carries a user ID and, optionally,
 * addresses to join the network through.
 *
 * @param id The user ID.
 * @param bootstrap Multiaddrs to include.
 * @returns The contact string.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { contactString } from "./contact_string.ts";
 *
 * assert.equal(contactString("dimexample"), "dim:dimexample");
 * ```
 */
export function contactString(id: string, bootstrap: readonly string[] = []): string {
  const params = new URLSearchParams();
  for (const b of bootstrap) params.append("bootstrap", b);
  const q = params.toString();
  return `dim:${id}${q ? `?${q}` : ""}`;
}

/**
 * Reads a user ID or a `dim:` contact string, and checks the ID.
 *
 * @param text A user ID or contact string (IDs are case-insensitive when typed).
 * @returns The ID and the addresses the string carries.
 * @throws {InvalidIdError} If the string is not a `dim:` URI or the ID is malformed or mistyped.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { InvalidIdError } from "../errors.ts";
 * import { parseContactString } from "./contact_string.ts";
 *
 * assert.throws(() => parseContactString("dim:not-an-id"), InvalidIdError);
 * ```
 */
export function parseContactString(text: string): ParsedContactString {
  const trimmed = text.trim();
  let id = trimmed;
  let bootstrap: string[] = [];
  if (/^dim:/i.test(trimmed)) {
    let url: URL;
    try {
      url = new URL(trimmed);
    } catch (cause) {
      throw new InvalidIdError("Cannot parse contact string: it is not a valid dim: URI", {
        cause,
      });
    }
    id = url.pathname;
    bootstrap = url.searchParams.getAll("bootstrap");
  }
  id = id.toLowerCase();
  decodeUserId(id);
  return { id, bootstrap };
}
