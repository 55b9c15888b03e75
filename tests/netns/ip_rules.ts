// What `ip -d rule show` prints, as comparable rows, and the same rows from our dump.
import { canonicalAddress, type Family, type KernelRule } from "../../ffi/mod.ts";
import type { Netns } from "../support/netns.ts";

/** The fields both `ip -d -N -j rule show` and our dump report, for field-by-field comparison. */
export interface RuleRow {
  priority: number;
  src: string;
  srcLen: number;
  table: number;
  protocol: number;
  /** No selector or action besides `from … lookup …`. */
  plain: boolean;
}

const PLAIN_KEYS = new Set(["priority", "src", "srclen", "table", "protocol"]);

/** Rows of `ip -d -N -j rule show` (or `ip -6 …`) in the namespace, in kernel order. */
export async function ipRuleRows(ns: Netns, family: Family): Promise<RuleRow[]> {
  const out = await ns.ip([`-${family}`, "-d", "-N", "-j", "rule", "show"]);
  const entries = JSON.parse(out) as Record<string, unknown>[];
  return entries.map((e) => {
    const all = e.src === "all";
    const src = all ? (family === 4 ? "0.0.0.0" : "::") : canonicalAddress(String(e.src), family);
    if (src === undefined) throw new Error(`Unexpected source "${String(e.src)}" in ip output`);
    return {
      priority: Number(e.priority ?? 0),
      src,
      srcLen: all ? 0 : Number(e.srclen ?? (family === 4 ? 32 : 128)),
      table: Number(e.table ?? 0),
      protocol: Number(e.protocol ?? 0),
      plain: Object.keys(e).every((k) => PLAIN_KEYS.has(k)),
    };
  });
}

/** The row of a rule from our dump. */
export function ruleRow(rule: KernelRule): RuleRow {
  return {
    priority: rule.priority,
    src: rule.src,
    srcLen: rule.srcLen,
    table: rule.table,
    protocol: rule.protocol,
    plain: rule.plain,
  };
}
