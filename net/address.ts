/**
 * IP address text <-> network-order bytes: the one address parser of the operator, below both
 * ffi/ (rule messages) and src/ (planning). IPv4 is parsed and printed by hand: a dump of 10k
 * rules must parse in a few milliseconds and the planner parses every Service's addresses
 * (ipaddr.js's regex parse costs ~4 µs an address, this ~0.1 µs). IPv6 text is parsed by
 * ipaddr.js and printed in the same canonical RFC 5952 form as ipaddr.js `toString()`, so
 * callers that canonicalize with ipaddr.js compare equal strings.
 *
 * @module
 */
import ipaddr from "ipaddr.js";

/** Address family: 4 (AF_INET) or 6 (AF_INET6). */
export type Family = 4 | 6;

/** Number of address bytes of a family. */
export function addressLength(family: Family): 4 | 16 {
  return family === 4 ? 4 : 16;
}

/**
 * Strict dotted-quad IPv4 text (four decimal octets, no leading zeros) as an unsigned 32-bit
 * number in network order, or -1 when invalid.
 */
export function parseIPv4(text: string): number {
  let address = 0;
  let octets = 0;
  let value = 0;
  let digits = 0;
  for (let i = 0; i <= text.length; i++) {
    const c = i < text.length ? text.charCodeAt(i) : 46; // the end acts as a final "."
    if (c === 46) {
      if (digits === 0 || octets === 4) return -1;
      address = address * 256 + value;
      octets++;
      value = 0;
      digits = 0;
    } else if (c >= 48 && c <= 57) {
      if (digits > 0 && value === 0) return -1; // leading zero
      value = value * 10 + (c - 48);
      if (++digits > 3 || value > 255) return -1;
    } else {
      return -1;
    }
  }
  return octets === 4 ? address : -1;
}

/** IPv6 text as ipaddr.js reads it once `ipv6Hex` rewrote it, or undefined when invalid. */
function ipv6Address(text: string): ipaddr.IPv6 | undefined {
  const hex = ipv6Hex(text);
  return hex !== undefined && ipaddr.IPv6.isValid(hex) ? ipaddr.IPv6.parse(hex) : undefined;
}

/** IPv6 text as its 16 network-order bytes and canonical RFC 5952 text, or undefined. */
export function parseIPv6(text: string): { bytes: number[]; text: string } | undefined {
  const address = ipv6Address(text);
  return address && { bytes: address.toByteArray(), text: address.toString() };
}

/** Writes the address `text` of `family` at `offset` in network order; false when invalid. */
export function writeAddress(
  bytes: Uint8Array,
  offset: number,
  family: Family,
  text: string,
): boolean {
  if (family === 4) {
    const address = parseIPv4(text);
    if (address < 0) return false;
    bytes[offset] = address >>> 24;
    bytes[offset + 1] = (address >>> 16) & 0xff;
    bytes[offset + 2] = (address >>> 8) & 0xff;
    bytes[offset + 3] = address & 0xff;
    return true;
  }
  const address = ipv6Address(text);
  if (address === undefined) return false;
  bytes.set(address.toByteArray(), offset);
  return true;
}

/**
 * IPv6 text with a trailing dotted quad ("64:ff9b::1.2.3.4") rewritten as two hex groups, since
 * ipaddr.js reads "::1.2.3.4" as the IPv4-mapped ::ffff:102:304 instead of ::102:304; other
 * IPv6 text as it is; undefined for a zone ("%eth0") or an invalid dotted quad.
 */
function ipv6Hex(text: string): string | undefined {
  if (text.includes("%")) return undefined;
  const colon = text.lastIndexOf(":");
  const tail = text.slice(colon + 1);
  if (!tail.includes(".")) return text;
  const v4 = parseIPv4(tail);
  if (v4 < 0) return undefined;
  return `${text.slice(0, colon + 1)}${(v4 >>> 16).toString(16)}:${(v4 & 0xffff).toString(16)}`;
}

/** Parses the address `text` of `family` into network-order bytes, or undefined when invalid. */
export function parseAddress(text: string, family: Family): Uint8Array | undefined {
  const bytes = new Uint8Array(addressLength(family));
  return writeAddress(bytes, 0, family, text) ? bytes : undefined;
}

/** Canonical text of the network-order address at `offset` (RFC 5952 for IPv6). */
export function formatAddress(bytes: Uint8Array, offset: number, family: Family): string {
  if (family === 4) {
    return `${bytes[offset]}.${bytes[offset + 1]}.${bytes[offset + 2]}.${bytes[offset + 3]}`;
  }
  const groups: number[] = new Array(8);
  for (let i = 0; i < 8; i++) {
    groups[i] = (bytes[offset + 2 * i]! << 8) | bytes[offset + 2 * i + 1]!;
  }
  // The longest run of two or more zero groups (the first on a tie) becomes "::".
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = (from: number, to: number) =>
    groups.slice(from, to).map((g) => g.toString(16)).join(":");
  if (bestStart < 0) return hex(0, 8);
  return `${hex(0, bestStart)}::${hex(bestStart + bestLength, 8)}`;
}

/** Canonical text of an address string (as `formatAddress` prints it), or undefined when invalid. */
export function canonicalAddress(text: string, family: Family): string | undefined {
  const bytes = parseAddress(text, family);
  return bytes && formatAddress(bytes, 0, family);
}
