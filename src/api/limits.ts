/**
 * The API's limits and the kernel's reserved values, defined once: the controller's planner, the
 * agent's rule planning and flags, and the node status read them here, and a unit test checks
 * that the CRDs (crds/*.yaml) say the same.
 */

/** Lowest routing table id a rule may look up. */
export const MIN_TABLE = 1;
/** Highest routing table id (u32, `FRA_TABLE`). */
export const MAX_TABLE = 4294967295;
/** The kernel's own tables, never a rule's target: default (253), main (254), local (255). */
export const RESERVED_TABLES: ReadonlyMap<number, string> = new Map(
  Object.entries({ 253: "default", 254: "main", 255: "local" }).map(([id, name]) => [+id, name]),
);

/** Lowest rule priority: 0 is the kernel's `lookup local` rule. */
export const MIN_PRIORITY = 1;
/** Highest rule priority: 32766 and 32767 are the kernel's main and default rules. */
export const MAX_PRIORITY = 32765;
/** An IPRule's priority when its spec names none. */
export const DEFAULT_PRIORITY = 1000;

/** Most CIDRs of one IPRule. */
export const MAX_CIDRS = 64;

/** Most failed rules an IPRuleNodeState lists (`status.failedRules`). */
export const MAX_FAILED_RULES = 20;
/** Longest rule text of a failed rule. */
export const MAX_FAILED_RULE_TEXT = 256;
/** Longest error text of a failed rule or a condition message of the node state. */
export const MAX_FAILED_ERROR_TEXT = 1024;

/** Highest netlink rule protocol number (`FRA_PROTOCOL` is one byte). */
export const MAX_PROTOCOL = 255;

/**
 * Protocol numbers the agent refuses to own, with their owner. The agent deletes every rule
 * carrying its protocol, so it must not claim one that marks others' rules: 0-4 are defined by
 * the kernel (2 marks its own `lookup local/main/default` rules, 4 is systemd-networkd's
 * "static"), the rest name routing daemons in iproute2's rt_protos (bird, FRR's zebra,
 * keepalived, DHCP clients...).
 */
export const RESERVED_PROTOCOLS: ReadonlyMap<number, string> = new Map([
  [0, "unspec"],
  [1, "redirect"],
  [2, "kernel"],
  [3, "boot"],
  [4, "static"],
  [8, "gated"],
  [9, "ra"],
  [10, "mrt"],
  [11, "zebra"],
  [12, "bird"],
  [13, "dnrouted"],
  [14, "xorp"],
  [15, "ntk"],
  [16, "dhcp"],
  [18, "keepalived"],
  [42, "babel"],
  [99, "openr"],
  [186, "bgp"],
  [187, "isis"],
  [188, "ospf"],
  [189, "rip"],
  [192, "eigrp"],
]);

/**
 * Why a routing table id cannot be a rule's, or undefined when it can; the caller names the
 * field and value before it (`spec.table "254" is the kernel's main table ...`).
 */
export function tableProblem(table: number): string | undefined {
  if (!Number.isInteger(table) || table < MIN_TABLE || table > MAX_TABLE) {
    return `out of range ${MIN_TABLE}..${MAX_TABLE}`;
  }
  const name = RESERVED_TABLES.get(table);
  return name === undefined
    ? undefined
    : `the kernel's ${name} table (${[...RESERVED_TABLES.keys()].join(", ")} are reserved)`;
}

/** Why a rule priority cannot be a rule's, or undefined when it can (see `tableProblem`). */
export function priorityProblem(priority: number): string | undefined {
  return !Number.isInteger(priority) || priority < MIN_PRIORITY || priority > MAX_PRIORITY
    ? `out of range ${MIN_PRIORITY}..${MAX_PRIORITY}`
    : undefined;
}
