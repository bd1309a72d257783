/**
 * Which addresses count as public: libp2p's rule (`isPrivateIp` of
 * `@libp2p/utils`, which counts every reserved range as private, the
 * benchmarking range 198.18.0.0/15 included) widened by a node's
 * `publicNetworks`, CIDRs whose addresses count as public too (a lab built
 * from reserved ranges, or a deployment on a private network).
 *
 * DIM's reachability decision uses {@linkcode isPublicAddress}: only a
 * dial-back on a public address can make a node "public". The helpers for
 * IP addresses and subnets ({@linkcode ipOf}, {@linkcode subnetOf}) serve
 * the relay choice, which spreads reservations over different /24s.
 *
 * @example
 * ```ts
 * import { isPublicAddress } from "./public_networks.ts";
 *
 * console.assert(isPublicAddress("/ip4/1.1.1.1/tcp/4001"));
 * console.assert(!isPublicAddress("/ip4/198.18.0.5/tcp/4001"));
 * console.assert(isPublicAddress("/ip4/198.18.0.5/tcp/4001", ["198.18.0.0/15"]));
 * ```
 *
 * @module
 */
import { isIPv4, isIPv6 } from "node:net";
import { isPrivateIp } from "@libp2p/utils";
import { multiaddr } from "@multiformats/multiaddr";

/** An IP network: the family, the address as a number and the prefix length. */
interface Network {
  readonly v6: boolean;
  readonly base: bigint;
  readonly bits: number;
}

const parsed = new Map<string, Network>();

/**
 * Whether a multiaddr's IP address counts as public: libp2p's
 * `isPrivateIp` says it is not private, or it lies in one of
 * `publicNetworks`. An address without an IP (a DNS name, a relay circuit)
 * is not public.
 *
 * @param address A multiaddr such as `/ip4/198.18.0.5/tcp/4001/p2p/…`.
 * @param publicNetworks CIDRs (IPv4 or IPv6) that count as public too,
 *   such as `["198.18.0.0/15"]`. Default none.
 * @returns Whether the address is public.
 * @throws {TypeError} If a CIDR of `publicNetworks` is malformed.
 * @example
 * ```ts
 * import { isPublicAddress } from "./public_networks.ts";
 *
 * console.assert(!isPublicAddress("/ip4/127.0.0.1/tcp/1"));
 * console.assert(isPublicAddress("/ip6/2001:db8::1/tcp/1", ["2001:db8::/32"]));
 * ```
 */
export function isPublicAddress(
  address: string,
  publicNetworks: readonly string[] = [],
): boolean {
  const networks = publicNetworks.map(parseCidr);
  const ip = ipOf(address);
  if (ip === undefined) return false;
  if (networks.some((network) => contains(network, ip))) return true;
  return isPrivateIp(ip) === false;
}

/**
 * Checks a list of CIDRs.
 *
 * @param publicNetworks The CIDRs.
 * @throws {TypeError} If one is malformed.
 */
export function checkPublicNetworks(publicNetworks: readonly string[]): void {
  for (const cidr of publicNetworks) parseCidr(cidr);
}

/**
 * The IP address of a multiaddr's first component, if it is `/ip4` or `/ip6`.
 *
 * @param address A multiaddr.
 * @returns The IP address as text, or `undefined`.
 */
export function ipOf(address: string): string | undefined {
  let first;
  try {
    first = multiaddr(address).getComponents()[0];
  } catch {
    return undefined;
  }
  if (first === undefined || (first.name !== "ip4" && first.name !== "ip6")) return undefined;
  if (address.includes("/p2p-circuit")) return undefined;
  return first.value;
}

/**
 * The subnet an IP address lies in for spreading relays: its /24 for IPv4,
 * its /48 for IPv6.
 *
 * @param ip An IP address.
 * @returns A key naming the subnet, or the address itself if it is not an IP.
 */
export function subnetOf(ip: string): string {
  if (isIPv4(ip)) return `${ip.split(".").slice(0, 3).join(".")}.0/24`;
  if (isIPv6(ip)) return `${(toBigInt(ip, true) >> 80n).toString(16)}::/48`;
  return ip;
}

function parseCidr(cidr: string): Network {
  const known = parsed.get(cidr);
  if (known !== undefined) return known;
  const [ip = "", bitsText = "", extra] = cidr.split("/");
  const v6 = isIPv6(ip);
  const max = v6 ? 128 : 32;
  const bits = Number(bitsText);
  if (
    extra !== undefined || (!v6 && !isIPv4(ip)) || !/^\d{1,3}$/.test(bitsText) || bits > max
  ) {
    throw new TypeError(`Cannot use public network ${JSON.stringify(cidr)}: expected a CIDR`);
  }
  const network = { v6, base: mask(toBigInt(ip, v6), bits, max), bits };
  if (parsed.size < 256) parsed.set(cidr, network);
  return network;
}

function contains(network: Network, ip: string): boolean {
  const v6 = isIPv6(ip);
  if (v6 !== network.v6 || (!v6 && !isIPv4(ip))) return false;
  const max = v6 ? 128 : 32;
  return mask(toBigInt(ip, v6), network.bits, max) === network.base;
}

function mask(value: bigint, bits: number, max: number): bigint {
  const shift = BigInt(max - bits);
  return (value >> shift) << shift;
}

// An address already checked by isIPv4/isIPv6 as a number.
function toBigInt(ip: string, v6: boolean): bigint {
  if (!v6) return ip.split(".").reduce((n, part) => (n << 8n) | BigInt(Number(part)), 0n);
  let text = ip.split("%")[0]!;
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted !== null) {
    const v4 = toBigInt(dotted[1]!, false);
    text = text.slice(0, dotted.index) +
      `${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
  }
  const [head = "", tail] = text.split("::");
  const left = head === "" ? [] : head.split(":");
  const right = tail === undefined || tail === "" ? [] : tail.split(":");
  const zeros = tail === undefined ? [] : Array(8 - left.length - right.length).fill("0");
  return [...left, ...zeros, ...right].reduce(
    (n, group) => (n << 16n) | BigInt(parseInt(group, 16)),
    0n,
  );
}

/**
 * An IP address as bytes: 4 for IPv4, 16 for IPv6.
 *
 * @param ip An IP address.
 * @returns Its bytes, or an empty array if it is not an IP address.
 */
export function ipToBytes(ip: string): Uint8Array {
  const v6 = isIPv6(ip);
  if (!v6 && !isIPv4(ip)) return new Uint8Array(0);
  let n = toBigInt(ip, v6);
  const out = new Uint8Array(v6 ? 16 : 4);
  for (let i = out.length - 1; i >= 0; i--) {
    out[i] = Number(n & 0xffn);
    n >>= 8n;
  }
  return out;
}

/**
 * An IP address from its bytes.
 *
 * @param bytes 4 or 16 bytes.
 * @returns The address as text, or `undefined` for another length.
 */
export function ipFromBytes(bytes: Uint8Array): string | undefined {
  if (bytes.length === 4) return [...bytes].join(".");
  if (bytes.length !== 16) return undefined;
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  return groups.join(":");
}

/**
 * Picks up to `count` items, in order, spread over subnets: first one item
 * of each subnet, then a second of each, and so on. Items without a subnet
 * come last.
 *
 * @param items The candidates, best first.
 * @param subnet An item's subnet key (see {@linkcode subnetOf}), if any.
 * @param count How many to pick.
 * @returns The picked items.
 */
export function pickSpread<T>(
  items: readonly T[],
  subnet: (item: T) => string | undefined,
  count: number,
): T[] {
  const bySubnet = new Map<string, T[]>();
  const rest: T[] = [];
  for (const item of items) {
    const key = subnet(item);
    if (key === undefined) rest.push(item);
    else bySubnet.set(key, [...(bySubnet.get(key) ?? []), item]);
  }
  const picked: T[] = [];
  for (let round = 0; picked.length < count; round++) {
    let any = false;
    for (const group of bySubnet.values()) {
      const item = group[round];
      if (item === undefined) continue;
      any = true;
      if (picked.length < count) picked.push(item);
    }
    if (!any) break;
  }
  return [...picked, ...rest].slice(0, count);
}
