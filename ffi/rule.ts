// The rule types of the public API and their `ip rule` text.
import type { Family } from "../net/address.ts";
import { FIB_RULE_INVERT, FR_ACT_GOTO, FR_ACT_TO_TBL } from "./constants.ts";

export type { Family } from "../net/address.ts";

/** A rule `from SRC/SRCLEN lookup TABLE priority PRIORITY protocol PROTOCOL`. */
export interface Rule {
  /** 4 or 6. */
  family: Family;
  /** Source address, canonical text (RFC 5952 for IPv6); ignored when `srcLen` is 0 (`from all`). */
  src: string;
  /** Source prefix length: 32 or 128 for one address, 0 for `from all`. */
  srcLen: number;
  /** Routing table id, 0..4294967295 (255 local, 254 main, 253 default). */
  table: number;
  /** Rule priority (`preference`), 0..4294967295. */
  priority: number;
  /** Who installed the rule (`proto`), 0..255: the owner mark. */
  protocol: number;
}

/** Selectors and actions beyond a plain `from … lookup …` rule, as a dump reports them. */
export interface RuleSelectors {
  /** FR_ACT_* action: 1 lookup (default), 2 goto, 3 nop, 6 blackhole, 7 unreachable, 8 prohibit. */
  action: number;
  /** Destination address (`to`), canonical text; ignored when `dstLen` is 0. */
  dst: string;
  /** Destination prefix length, 0 when the rule has no `to`. */
  dstLen: number;
  /** TOS / traffic class selector, 0 when unset. */
  tos: number;
  /** FIB_RULE_* flags; FIB_RULE_INVERT (2) is `not`, the others are kernel state. */
  flags: number;
  /** Input interface name (`iif`), "" when unset. */
  iif: string;
  /** Output interface name (`oif`), "" when unset. */
  oif: string;
  /** Firewall mark, 0 when unset. */
  fwmark: number;
  /** Firewall mark mask, 0 when unset. */
  fwmask: number;
  /** Target priority of a goto rule, 0 otherwise. */
  goto: number;
  /** Raw attributes of the other selectors (ipproto, ports, uidrange, l3mdev, suppress_*, tun_id, realms, dscp, flowlabel), re-sent as-is on delete. */
  extra: Uint8Array;
}

/** A rule as the kernel reports it: the plain fields, every other selector, and `plain`. */
export interface KernelRule extends Rule, RuleSelectors {
  /** True when the rule is exactly `from SRC lookup TABLE priority PRIORITY proto PROTOCOL`: no other selector, no `not`, action lookup. */
  plain: boolean;
}

/** A rule to add or delete: the plain fields, plus any selector to match exactly on delete. */
export type RuleSpec = Rule & Partial<RuleSelectors>;

const ACTION_NAMES: Record<number, string> = {
  3: "nop",
  6: "blackhole",
  7: "unreachable",
  8: "prohibit",
};

/** The `ip rule` arguments of a rule, e.g. `from 10.0.0.1 lookup 100 priority 1000 protocol 99`. */
export function formatRule(rule: RuleSpec): string {
  const words: string[] = [];
  if (rule.flags !== undefined && (rule.flags & FIB_RULE_INVERT) !== 0) words.push("not");
  words.push("from", rule.srcLen === 0 ? "all" : prefixText(rule.src, rule.srcLen, rule.family));
  if (rule.dstLen) words.push("to", prefixText(rule.dst ?? "", rule.dstLen, rule.family));
  if (rule.tos) words.push("tos", `0x${rule.tos.toString(16)}`);
  if (rule.fwmark || rule.fwmask) {
    words.push(
      "fwmark",
      `0x${(rule.fwmark ?? 0).toString(16)}/0x${(rule.fwmask ?? 0).toString(16)}`,
    );
  }
  if (rule.iif) words.push("iif", rule.iif);
  if (rule.oif) words.push("oif", rule.oif);
  if (rule.extra?.length) words.push("(other selectors)");
  const action = rule.action ?? FR_ACT_TO_TBL;
  if (action === FR_ACT_TO_TBL) words.push("lookup", String(rule.table));
  else if (action === FR_ACT_GOTO) words.push("goto", String(rule.goto ?? 0));
  else words.push(ACTION_NAMES[action] ?? `action ${action}`);
  words.push("priority", String(rule.priority), "protocol", String(rule.protocol));
  return words.join(" ");
}

function prefixText(address: string, length: number, family: Family): string {
  return length === (family === 4 ? 32 : 128) ? address : `${address}/${length}`;
}
