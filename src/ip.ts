/**
 * IP address and CIDR helpers of the API over the one address parser (net/address.ts): strict
 * parsing with canonical text, the sources no rule may have, the IPRuleConfig naming scheme and
 * prefix keys for fast longest-prefix matching.
 */
import { type Family, parseIPv4, parseIPv6 } from "../net/address.ts";

export type { Family };

/** A parsed IP address with its canonical text. */
export interface ParsedIP {
  family: Family;
  /** Canonical text: dotted quad, or RFC 5952 compressed IPv6. */
  text: string;
  bytes: number[];
}

/** A parsed, canonical CIDR. */
export interface ParsedCIDR {
  family: Family;
  /** Canonical text of the network, e.g. `192.168.1.0/24`. */
  text: string;
  prefixLength: number;
  bytes: number[];
}

/** Parses an IP address strictly (dotted-quad IPv4 or IPv6); undefined when invalid. */
export function parseIP(text: string): ParsedIP | undefined {
  const v4 = parseIPv4(text);
  if (v4 >= 0) {
    return {
      family: 4,
      text,
      bytes: [v4 >>> 24, (v4 >>> 16) & 0xff, (v4 >>> 8) & 0xff, v4 & 0xff],
    };
  }
  if (!text.includes(":")) return undefined;
  const v6 = parseIPv6(text);
  return v6 && { family: 6, text: v6.text, bytes: v6.bytes };
}

/**
 * Why an address can be no Service's rule source, or undefined when it can: unspecified,
 * loopback, multicast and broadcast sources would capture the node's own traffic (DHCP,
 * neighbor discovery, local connections) into another table, and the kernel routes an
 * IPv4-mapped IPv6 source's packets as IPv4, so its `ip -6 rule` never matches. The controller
 * plans no config for one, and the agent refuses a config that names one.
 */
export function unusableSource(ip: ParsedIP): string | undefined {
  const { family, bytes } = ip;
  const first = bytes[0]!;
  if (family === 4) {
    if (first === 0) return "an unspecified (0.0.0.0/8) address";
    if (first === 127) return "a loopback address";
    if (first >= 224 && first <= 239) return "a multicast address";
    if (first === 255 && bytes[1] === 255 && bytes[2] === 255 && bytes[3] === 255) {
      return "the broadcast address";
    }
    return undefined;
  }
  if (first === 0xff) return "a multicast address";
  // Only addresses starting with ten zero bytes can be unspecified, loopback or mapped (a loop
  // without allocation: the planner asks this for every matched Service).
  for (let i = 0; i < 10; i++) if (bytes[i] !== 0) return undefined;
  if (bytes[10] === 0xff && bytes[11] === 0xff) {
    return "an IPv4-mapped IPv6 address (use the IPv4 address)";
  }
  const last = bytes[15]!;
  if (bytes[10] === 0 && bytes[11] === 0 && bytes[12] === 0 && bytes[13] === 0 && bytes[14] === 0) {
    if (last === 0) return "the unspecified address";
    if (last === 1) return "the loopback address";
  }
  return undefined;
}

/** Why a CIDR text was refused. */
export type CIDRProblem = "invalid" | "host-bits";

/** Parses a CIDR strictly: valid syntax and no host bits set. */
export function parseCIDR(text: string): ParsedCIDR | CIDRProblem {
  const slash = text.indexOf("/");
  if (slash < 0) return "invalid";
  const ip = parseIP(text.slice(0, slash));
  const lenText = text.slice(slash + 1);
  if (!ip || !/^(0|[1-9][0-9]{0,2})$/.test(lenText)) return "invalid";
  const prefixLength = Number(lenText);
  if (prefixLength > (ip.family === 4 ? 32 : 128)) return "invalid";
  const masked = maskBytes(ip.bytes, prefixLength);
  if (masked.some((b, i) => b !== ip.bytes[i])) return "host-bits";
  return { family: ip.family, text: `${ip.text}/${prefixLength}`, prefixLength, bytes: masked };
}

function maskBytes(bytes: readonly number[], prefixLength: number): number[] {
  return bytes.map((b, i) => {
    const bits = Math.max(0, Math.min(8, prefixLength - i * 8));
    return b & (0xff << (8 - bits)) & 0xff;
  });
}

/**
 * A string key of an address's first `prefixLength` bits; equal for an address and the CIDR
 * that contains it, so matching is a map lookup per prefix length.
 */
export function prefixKey(family: Family, bytes: readonly number[], prefixLength: number): string {
  let key = `${family}/${prefixLength}/`;
  const full = prefixLength >> 3;
  for (let i = 0; i < full; i++) key += String.fromCharCode(bytes[i]!);
  const rest = prefixLength & 7;
  if (rest) key += String.fromCharCode(bytes[full]! & (0xff << (8 - rest)) & 0xff);
  return key;
}

/**
 * Name of the IPRuleConfig for a source IP: `iprc-` + IPv4 with dots as dashes, or IPv6
 * fully expanded to 8 groups without leading zeros, colons as dashes; always DNS-1123.
 */
export function configName(ip: ParsedIP): string {
  if (ip.family === 4) return `iprc-${ip.text.replaceAll(".", "-")}`;
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) {
    groups.push(((ip.bytes[i]! << 8) | ip.bytes[i + 1]!).toString(16));
  }
  return `iprc-${groups.join("-")}`;
}
