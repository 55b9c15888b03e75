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
  if (!ipaddr.IPv6.isValid(text) || text.includes("%")) return false;
  bytes.set(ipaddr.IPv6.parse(text).toByteArray(), offset);
  return true;
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
