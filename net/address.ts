// IP address text <-> network-order bytes for rule messages. IPv4 is parsed and printed by hand
// (a dump of 10k rules must parse in a few milliseconds); IPv6 text is parsed by ipaddr.js and
// printed in the same canonical RFC 5952 form as ipaddr.js `toString()`, so callers that
// canonicalize with ipaddr.js compare equal strings.
import ipaddr from "ipaddr.js";

/** Address family of a rule: 4 (AF_INET) or 6 (AF_INET6). */
export type Family = 4 | 6;

/** Number of address bytes of a family. */
export function addressLength(family: Family): 4 | 16 {
  return family === 4 ? 4 : 16;
}

const DECIMAL_OCTET = /^(0|[1-9][0-9]{0,2})$/;

/** Writes the address `text` of `family` at `offset` in network order; false when invalid. */
export function writeAddress(
  bytes: Uint8Array,
  offset: number,
  family: Family,
  text: string,
): boolean {
  if (family === 4) {
    const parts = text.split(".");
    if (parts.length !== 4) return false;
    for (let i = 0; i < 4; i++) {
      const part = parts[i]!;
      if (!DECIMAL_OCTET.test(part)) return false;
      const value = Number(part);
      if (value > 255) return false;
      bytes[offset + i] = value;
    }
    return true;
  }
  const hex = ipv6Hex(text);
  if (hex === undefined || !ipaddr.IPv6.isValid(hex)) return false;
  bytes.set(ipaddr.IPv6.parse(hex).toByteArray(), offset);
  return true;
}

/**
 * IPv6 text with a trailing dotted quad ("64:ff9b::1.2.3.4") rewritten as two hex groups, since
 * ipaddr.js reads "::1.2.3.4" as the IPv4-mapped ::ffff:102:304 instead of ::102:304; other
 * IPv6 text as it is; undefined for a zone ("%eth0") or an invalid dotted quad.
 */
export function ipv6Hex(text: string): string | undefined {
  if (text.includes("%")) return undefined;
  const colon = text.lastIndexOf(":");
  const tail = text.slice(colon + 1);
  if (!tail.includes(".")) return text;
  const v4 = parseAddress(tail, 4);
  if (v4 === undefined) return undefined;
  const group = (hi: number, lo: number) => ((hi << 8) | lo).toString(16);
  return `${text.slice(0, colon + 1)}${group(v4[0]!, v4[1]!)}:${group(v4[2]!, v4[3]!)}`;
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
