/**
 * Rules for the netlink tests and benchmarks: many distinct host rules from consecutive
 * addresses, each test or benchmark choosing its own tables, priorities and protocol.
 *
 * @module
 */
import type { Rule } from "../../ffi/mod.ts";
import { type Family, formatAddress, parseAddress } from "../../net/address.ts";

/**
 * `count` host rules (/32 or /128) from the consecutive addresses that start at `base`
 * (`10.20.0.0`: 10.20.0.0, 10.20.0.1, …); rule i takes its table, priority, protocol and
 * anything else from `fields(i)`.
 */
export function hostRules(
  base: string,
  count: number,
  fields: (i: number) => Omit<Rule, "family" | "src" | "srcLen"> & Partial<Rule>,
): Rule[] {
  const family: Family = base.includes(":") ? 6 : 4;
  const start = parseAddress(base, family);
  if (!start) throw new RangeError(`Invalid base address "${base}"`);
  return Array.from({ length: count }, (_, i) => ({
    family,
    src: addressAfter(start, family, i),
    srcLen: family === 4 ? 32 : 128,
    ...fields(i),
  }));
}

/** The address `n` places after the network-order `start`, canonical. */
function addressAfter(start: Uint8Array, family: Family, n: number): string {
  if (family === 4) {
    // Arithmetic on the number: benchmarks make 10k of these in a process whose memory they
    // measure.
    const v = ((start[0]! << 24 | start[1]! << 16 | start[2]! << 8 | start[3]!) >>> 0) + n;
    return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
  }
  const bytes = start.slice();
  for (let i = bytes.length - 1, carry = n; i >= 0 && carry > 0; i--) {
    const sum = bytes[i]! + carry;
    bytes[i] = sum & 255;
    carry = Math.floor(sum / 256);
  }
  return formatAddress(bytes, 0, family);
}
