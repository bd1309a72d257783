// Byte helpers shared by the crypto and record layers. Private to DIM.

/** Concatenates byte arrays into a new one. */
export function concat(...parts: readonly Uint8Array[]): Uint8Array<ArrayBuffer> {
  let length = 0;
  for (const p of parts) length += p.length;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

/** UTF-8 encodes a string. */
export function utf8(text: string): Uint8Array<ArrayBuffer> {
  return new TextEncoder().encode(text);
}

const STRICT_DECODER = new TextDecoder("utf-8", { fatal: true });

/** Decodes UTF-8, throwing `TypeError` on invalid sequences. */
export function fromUtf8(bytes: Uint8Array): string {
  return STRICT_DECODER.decode(bytes);
}

/** Lower-case hex of the bytes. */
export function toHex(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += b.toString(16).padStart(2, "0");
  return s;
}

/** Parses hex (whitespace ignored); throws `SyntaxError` on bad input. */
export function fromHex(hex: string): Uint8Array<ArrayBuffer> {
  const clean = hex.replace(/\s+/g, "");
  if (clean.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(clean)) {
    throw new SyntaxError("Cannot parse hex: odd length or non-hex character");
  }
  const out = new Uint8Array(clean.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(clean.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/**
 * Compares two byte arrays in time that depends only on their lengths.
 * Used for secrets, MACs and checksums.
 */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

/**
 * Orders byte arrays lexicographically (a shorter prefix first). Not for
 * secrets: it returns at the first difference.
 */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    if (a[i] !== b[i]) return a[i]! - b[i]!;
  }
  return a.length - b.length;
}

/** Copies `bytes` into a fresh `Uint8Array` backed by its own `ArrayBuffer`. */
export function copy(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  return new Uint8Array(bytes);
}

const B32 = "abcdefghijklmnopqrstuvwxyz234567";

/** RFC 4648 base32, lower case, no padding. */
export function toBase32(bytes: Uint8Array): string {
  let out = "";
  let bits = 0;
  let value = 0;
  for (const b of bytes) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += B32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += B32[(value << (5 - bits)) & 31];
  return out;
}

/**
 * Parses RFC 4648 base32 (case-insensitive, no padding). Throws `SyntaxError`
 * on a character outside the alphabet or on non-zero trailing bits.
 */
export function fromBase32(text: string): Uint8Array<ArrayBuffer> {
  const s = text.toLowerCase();
  const out = new Uint8Array(Math.floor((s.length * 5) / 8));
  let bits = 0;
  let value = 0;
  let i = 0;
  for (const ch of s) {
    const v = B32.indexOf(ch);
    if (v < 0) {
      throw new SyntaxError(`Cannot parse base32: invalid character ${JSON.stringify(ch)}`);
    }
    value = ((value << 5) | v) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      out[i++] = (value >>> (bits - 8)) & 0xff;
      bits -= 8;
    }
  }
  if (bits >= 5 || (value & ((1 << bits) - 1)) !== 0) {
    throw new SyntaxError("Cannot parse base32: non-canonical length or trailing bits");
  }
  return out;
}

/** Writes an unsigned 16-bit integer big-endian (the caller keeps `n` in range). */
export function u16(n: number): Uint8Array<ArrayBuffer> {
  return new Uint8Array([(n >>> 8) & 0xff, n & 0xff]);
}

/**
 * Whether two byte arrays are equal. Not constant-time: for public data
 * only (keys, hashes); compare secrets with {@linkcode constantTimeEqual}.
 */
export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Writes an unsigned 64-bit integer (as a safe JS number) big-endian. */
export function u64(n: number): Uint8Array<ArrayBuffer> {
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new RangeError(`Cannot encode u64: ${n} is out of range`);
  }
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, BigInt(n));
  return out;
}

/** Writes an unsigned 32-bit integer big-endian. */
export function u32(n: number): Uint8Array<ArrayBuffer> {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) {
    throw new RangeError(`Cannot encode u32: ${n} is out of range`);
  }
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, n);
  return out;
}

/**
 * A strict cursor over bytes: every read checks bounds, and `end()` rejects
 * trailing bytes. Throws `SyntaxError` on any violation.
 */
export class Reader {
  #bytes: Uint8Array;
  #view: DataView;
  #pos = 0;
  constructor(bytes: Uint8Array) {
    this.#bytes = bytes;
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  get position(): number {
    return this.#pos;
  }
  get remaining(): number {
    return this.#bytes.length - this.#pos;
  }
  bytes(n: number): Uint8Array<ArrayBuffer> {
    if (n < 0 || this.#pos + n > this.#bytes.length) {
      throw new SyntaxError("Cannot decode: input is truncated");
    }
    const out = this.#bytes.slice(this.#pos, this.#pos + n);
    this.#pos += n;
    return out;
  }
  u8(): number {
    if (this.#pos + 1 > this.#bytes.length) {
      throw new SyntaxError("Cannot decode: input is truncated");
    }
    return this.#bytes[this.#pos++]!;
  }
  u32(): number {
    if (this.#pos + 4 > this.#bytes.length) {
      throw new SyntaxError("Cannot decode: input is truncated");
    }
    const v = this.#view.getUint32(this.#pos);
    this.#pos += 4;
    return v;
  }
  u64(): number {
    if (this.#pos + 8 > this.#bytes.length) {
      throw new SyntaxError("Cannot decode: input is truncated");
    }
    const v = this.#view.getBigUint64(this.#pos);
    this.#pos += 8;
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new SyntaxError("Cannot decode: u64 out of range");
    }
    return Number(v);
  }
  end(): void {
    if (this.#pos !== this.#bytes.length) throw new SyntaxError("Cannot decode: trailing bytes");
  }
}
