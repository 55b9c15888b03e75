/**
 * Pure planning of the node's rules: desired rules from the IPRuleConfigs, the kernel's rules
 * as dumped, and the operations that turn one into the other. No I/O: plain data in and out.
 *
 * Ownership: a rule carrying the agent's protocol number is the agent's; every other rule is
 * foreign and never deleted. A foreign rule identical to a desired one (same family, source,
 * prefix length, table and priority, no other selector) satisfies it: no duplicate is added.
 */
import { formatRule, type KernelRule, type Rule, type RuleSpec } from "../../ffi/mod.ts";
import type { ConfigState } from "../api/types.ts";
import { priorityProblem, tableProblem } from "../api/limits.ts";
import { parseIP, unusableSource } from "../ip.ts";

/** What the agent keeps of an IPRuleConfig. */
export interface ConfigRule {
  /** The IPRuleConfig's name. */
  name: string;
  serviceIP: string;
  table: number;
  priority: number;
  state: ConfigState;
}

/** A present IPRuleConfig the agent cannot turn into a rule, with the reason. */
export interface InvalidConfig {
  /** The IPRuleConfig's name. */
  config: string;
  /** The rule it asks for, as `ip rule` arguments. */
  rule: string;
  /** Why it was refused. */
  error: string;
}

/** The rules the present IPRuleConfigs ask for, each once, and the configs that were refused. */
export interface DesiredRules {
  /** Distinct desired rules, with the agent's protocol, indexed by source. */
  rules: RuleSet;
  /** Present configs that yield no valid rule. */
  invalid: InvalidConfig[];
  /** The version of `rules` and `invalid` (see `DesiredState.version`). */
  version: number;
}

/** What a reconcile must do to the kernel. */
export interface RulePlan {
  /** Desired rules missing from the kernel, to add with the agent's protocol. */
  add: Rule[];
  /** Rules with the agent's protocol that are not desired (or are duplicates), to delete. */
  delete: KernelRule[];
  /** Desired rules already present: the agent's own, or an identical foreign rule. */
  satisfied: number;
}

/** Whether two rules are the same for planning: family, source prefix, table and priority. */
export function sameRule(a: Rule, b: Rule): boolean {
  return a.src === b.src && a.table === b.table && a.priority === b.priority &&
    a.srcLen === b.srcLen && a.family === b.family;
}

/**
 * Distinct rules indexed by source address, each with a count of how many configs ask for it:
 * finding a kernel rule among 10k desired ones is one map lookup by its source, with no key
 * string built per rule, and one config's change updates the set in place.
 */
export class RuleSet {
  /** Position in #rules of the rule(s) of each source. */
  readonly #bySrc = new Map<string, number | number[]>();
  readonly #rules: Rule[] = [];
  readonly #counts: number[] = [];

  /** The rules, each once (a repeated rule is counted). */
  constructor(rules: Iterable<Rule> = []) {
    for (const rule of rules) this.add(rule);
  }

  /** Number of distinct rules. */
  get size(): number {
    return this.#rules.length;
  }

  /** The distinct rules; positions change when a rule is removed. */
  values(): readonly Rule[] {
    return this.#rules;
  }

  /** Counts a rule in; returns whether it is new (no identical rule was there). */
  add(rule: Rule): boolean {
    const found = this.indexOf(rule);
    if (found >= 0) {
      this.#counts[found]!++;
      return false;
    }
    const at = this.#rules.length;
    this.#rules.push(rule);
    this.#counts.push(1);
    this.#link(rule.src, at);
    return true;
  }

  /** Counts a rule out; returns whether it left the set (no config asks for it any more). */
  remove(rule: Rule): boolean {
    const at = this.indexOf(rule);
    if (at < 0 || --this.#counts[at]! > 0) return false;
    this.#unlink(rule.src, at);
    const last = this.#rules.length - 1;
    if (at !== last) {
      const moved = this.#rules[last]!;
      this.#unlink(moved.src, last);
      this.#rules[at] = moved;
      this.#counts[at] = this.#counts[last]!;
      this.#link(moved.src, at);
    }
    this.#rules.pop();
    this.#counts.pop();
    return true;
  }

  /** Position of the rule identical to `rule` in `values()`, or -1. */
  indexOf(rule: Rule): number {
    const entry = this.#bySrc.get(rule.src);
    if (entry === undefined) return -1;
    if (typeof entry === "number") return sameRule(this.#rules[entry]!, rule) ? entry : -1;
    return entry.find((i) => sameRule(this.#rules[i]!, rule)) ?? -1;
  }

  /** The rule identical to `rule`, or undefined. */
  find(rule: Rule): Rule | undefined {
    const at = this.indexOf(rule);
    return at < 0 ? undefined : this.#rules[at];
  }

  #link(src: string, at: number): void {
    const entry = this.#bySrc.get(src);
    if (entry === undefined) this.#bySrc.set(src, at);
    else if (typeof entry === "number") this.#bySrc.set(src, [entry, at]);
    else entry.push(at);
  }

  #unlink(src: string, at: number): void {
    const entry = this.#bySrc.get(src);
    if (entry === at) this.#bySrc.delete(src);
    else if (Array.isArray(entry)) {
      const rest = entry.filter((i) => i !== at);
      this.#bySrc.set(src, rest.length === 1 ? rest[0]! : rest);
    }
  }
}

function configRuleText(config: ConfigRule): string {
  return `from ${config.serviceIP} lookup ${config.table} priority ${config.priority}`;
}

/** Why a config's table or priority is refused, or undefined when both are valid. */
function invalidNumbers(config: ConfigRule): string | undefined {
  const { table, priority } = config;
  const badTable = tableProblem(table);
  if (badTable !== undefined) return `Invalid table "${table}": ${badTable}`;
  const badPriority = priorityProblem(priority);
  return badPriority === undefined ? undefined : `Invalid priority "${priority}": ${badPriority}`;
}

/** The rule a present config asks for, or why it cannot have one. */
export function configRule(
  config: ConfigRule,
  options: { protocol: number },
): Rule | InvalidConfig {
  const ip = parseIP(config.serviceIP);
  let error: string | undefined;
  if (ip === undefined) {
    error = `Invalid serviceIP "${config.serviceIP}": expected an IPv4 or IPv6 address`;
  } else {
    const special = unusableSource(ip);
    error = special === undefined
      ? invalidNumbers(config)
      : `Invalid serviceIP "${config.serviceIP}": ${special} is no Service's address`;
  }
  if (ip === undefined || error !== undefined) {
    return { config: config.name, rule: configRuleText(config), error: error! };
  }
  return {
    family: ip.family,
    src: ip.text,
    srcLen: ip.family === 4 ? 32 : 128,
    table: config.table,
    priority: config.priority,
    protocol: options.protocol,
  };
}

/**
 * The rules the present configs ask for (`from serviceIP lookup table priority priority`), each
 * once, with the agent's protocol; configs with an invalid address, table or priority are
 * returned apart with the reason. Absent configs ask for nothing.
 */
export function desiredRules(
  configs: Iterable<ConfigRule>,
  options: { protocol: number },
): DesiredRules {
  const state = new DesiredState(options);
  let i = 0;
  for (const config of configs) state.update(String(i++), config);
  return state.snapshot();
}

/**
 * The desired rules kept up to date one config at a time, as an informer reports changes: the
 * rule set is changed in place, so a config event costs one parse, not a rebuild of 10k rules.
 */
export class DesiredState {
  readonly #protocol: number;
  readonly #byKey = new Map<string, Rule | InvalidConfig>();
  readonly #invalid = new Map<string, InvalidConfig>();
  /** The desired rules; changed in place by `update`. */
  readonly rules = new RuleSet();
  /** Incremented by every change of the desired rules or of the refused configs. */
  version = 0;

  constructor(options: { protocol: number }) {
    this.#protocol = options.protocol;
  }

  /** Applies the change of the config at `key` (undefined: deleted). */
  update(key: string, config: ConfigRule | undefined): void {
    const before = this.#byKey.get(key);
    const after = config?.state === "present"
      ? configRule(config, { protocol: this.#protocol })
      : undefined;
    if (before === undefined && after === undefined) return;
    if (before !== undefined) {
      if ("error" in before) this.#invalid.delete(key);
      else this.rules.remove(before);
    }
    if (after === undefined) {
      this.#byKey.delete(key);
    } else {
      this.#byKey.set(key, after);
      if ("error" in after) this.#invalid.set(key, after);
      else this.rules.add(after);
    }
    this.version++;
  }

  /** The refused configs. */
  invalid(): InvalidConfig[] {
    return [...this.#invalid.values()];
  }

  /** The desired rules (live set) and the refused configs (copied) as one value. */
  snapshot(): DesiredRules {
    return { rules: this.rules, invalid: this.invalid(), version: this.version };
  }
}

/**
 * The operations that make the kernel hold every desired rule once and no other rule with the
 * agent's protocol. Foreign rules (any other protocol) are never deleted; an identical plain
 * foreign rule satisfies a desired rule. Of several identical own rules, one is kept.
 */
export function planRules(
  desired: RuleSet | readonly Rule[],
  kernel: readonly KernelRule[],
  options: { protocol: number },
): RulePlan {
  const wanted = desired instanceof RuleSet ? desired : new RuleSet(desired);
  const present = new Uint8Array(wanted.size);
  let satisfied = 0;
  const remove: KernelRule[] = [];
  // Own rules first, so that an own rule is kept even when a foreign copy precedes it.
  for (const rule of kernel) {
    if (rule.protocol !== options.protocol) continue;
    const at = rule.plain ? wanted.indexOf(rule) : -1;
    if (at >= 0 && present[at] === 0) {
      present[at] = 1;
      satisfied++;
    } else {
      remove.push(rule);
    }
  }
  for (const rule of kernel) {
    if (rule.protocol === options.protocol || !rule.plain) continue;
    const at = wanted.indexOf(rule);
    if (at >= 0 && present[at] === 0) {
      present[at] = 1;
      satisfied++;
    }
  }
  const add: Rule[] = [];
  if (satisfied < wanted.size) {
    const rules = wanted.values();
    for (let i = 0; i < rules.length; i++) if (present[i] === 0) add.push(rules[i]!);
  }
  return { add, delete: remove, satisfied };
}

/**
 * Whether a rule change seen in the kernel may need a repair: a rule with the agent's protocol,
 * or a plain rule identical to a desired one (e.g. a foreign rule that satisfied it, deleted).
 */
export function changeMatters(
  rule: KernelRule,
  desired: RuleSet,
  options: { protocol: number },
): boolean {
  return rule.protocol === options.protocol || (rule.plain && desired.find(rule) !== undefined);
}

/** The `ip rule` command of one operation, e.g. `ip -6 rule del from fd00::1 lookup 100 priority 1000 proto 201`. */
export function ipRuleCommand(op: "add" | "del", rule: RuleSpec): string {
  const args = formatRule(rule).replace(/ protocol (\d+)$/, " proto $1");
  return `ip${rule.family === 6 ? " -6" : ""} rule ${op} ${args}`;
}

/** The plan as `ip rule` commands: deletes first, then adds, each sorted by family, priority, source. */
export function planCommands(plan: RulePlan): string[] {
  const order = (a: RuleSpec, b: RuleSpec) =>
    a.family - b.family || a.priority - b.priority || a.src.localeCompare(b.src) ||
    a.table - b.table;
  return [
    ...[...plan.delete].sort(order).map((rule) => ipRuleCommand("del", rule)),
    ...[...plan.add].sort(order).map((rule) => ipRuleCommand("add", rule)),
  ];
}

/** What the agent keeps of a narrowed IPRuleConfig. */
export function configRuleOf(
  config: {
    metadata: { name: string };
    spec: { serviceIP: string; table: number; priority: number; state: ConfigState };
  },
): ConfigRule {
  const { serviceIP, table, priority, state } = config.spec;
  return { name: config.metadata.name, serviceIP, table, priority, state };
}
