/**
 * Pure planning of the node's rules: desired rules from the IPRuleConfigs, the kernel's rules
 * as dumped, and the operations that turn one into the other. No I/O: plain data in and out.
 *
 * Ownership: a rule carrying the agent's protocol number is the agent's; every other rule is
 * foreign and never deleted. A foreign rule identical to a desired one (same family, source,
 * prefix length, table and priority, no other selector) satisfies it: no duplicate is added.
 * The one exception is opt-in: with adoption on, unmarked rules (protocol 0) of the original
 * operator are taken over or removed as adoption.ts plans it.
 */
import { formatRule, type KernelRule, type Rule, type RuleSpec } from "../../ffi/mod.ts";
import type { ConfigState } from "../api/types.ts";
import { priorityProblem, tableProblem } from "../api/limits.ts";
import { parseIP, unusableSource } from "../ip.ts";
import {
  adoptionChanges,
  type AdoptionPlan,
  HELD_NO,
  HELD_OWN,
  planAdoption,
  type Sources,
  UNMARKED,
} from "./adoption.ts";

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
  /** The version of `rules`, `invalid` and `sources` (see `DesiredState.version`). */
  version: number;
  /** The configs' sources, present or absent (live), when the state tracks them. */
  sources?: Sources;
}

/** What a reconcile must do to the kernel. */
export interface RulePlan {
  /** Desired rules missing from the kernel, to add with the agent's protocol. */
  add: Rule[];
  /** Rules with the agent's protocol that are not desired (or are duplicates), to delete. */
  delete: KernelRule[];
  /** Desired rules already present: the agent's own, or an identical foreign rule. */
  satisfied: number;
  /** With adoption on: unmarked rules taken over or deleted (see adoption.ts). */
  adoption?: AdoptionPlan;
}

/** Whether a plan changes nothing in the kernel. */
export function planIsEmpty(plan: RulePlan): boolean {
  return plan.add.length === 0 && plan.delete.length === 0 && adoptionChanges(plan.adoption) === 0;
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
  /** Per config key its source, and per source how many configs name it (adoption only). */
  readonly #sourceOf: Map<string, string> | undefined;
  readonly #sources: Map<string, number> | undefined;
  /** The desired rules; changed in place by `update`. */
  readonly rules = new RuleSet();
  /** Incremented by every change of the desired rules, the refused configs or the sources. */
  version = 0;

  /** `trackSources`: also keep every config's source, present or absent (for adoption). */
  constructor(options: { protocol: number; trackSources?: boolean }) {
    this.#protocol = options.protocol;
    if (options.trackSources) {
      this.#sourceOf = new Map();
      this.#sources = new Map();
    }
  }

  /** Applies the change of the config at `key` (undefined: deleted). */
  update(key: string, config: ConfigRule | undefined): void {
    const before = this.#byKey.get(key);
    const after = config?.state === "present"
      ? configRule(config, { protocol: this.#protocol })
      : undefined;
    // A present config refused as invalid does not say which rule its source should have:
    // adoption must not take that source's unmarked rules for leftovers.
    this.#updateSource(key, after !== undefined && "error" in after ? undefined : config);
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

  /** Counts the config's source in (none: undefined) and its former one out, when tracked. */
  #updateSource(key: string, config: ConfigRule | undefined): void {
    const sources = this.#sources;
    const sourceOf = this.#sourceOf;
    if (sources === undefined || sourceOf === undefined) return;
    const before = sourceOf.get(key);
    const after = config === undefined ? undefined : parseIP(config.serviceIP)?.text;
    if (before === after) return;
    if (before !== undefined) {
      const count = sources.get(before)! - 1;
      if (count > 0) sources.set(before, count);
      else sources.delete(before);
      sourceOf.delete(key);
    }
    if (after !== undefined) {
      sources.set(after, (sources.get(after) ?? 0) + 1);
      sourceOf.set(key, after);
    }
    this.version++;
  }

  /** The configs' sources, present or absent (live), when tracked. */
  get sources(): Sources | undefined {
    return this.#sources;
  }

  /** The refused configs. */
  invalid(): InvalidConfig[] {
    return [...this.#invalid.values()];
  }

  /** The desired rules and sources (live) and the refused configs (copied) as one value. */
  snapshot(): DesiredRules {
    const snapshot: DesiredRules = {
      rules: this.rules,
      invalid: this.invalid(),
      version: this.version,
    };
    if (this.#sources !== undefined) snapshot.sources = this.#sources;
    return snapshot;
  }
}

/** Options of `planRules`. */
export interface PlanRulesOptions {
  /** The agent's protocol: the mark of the rules it owns. */
  protocol: number;
  /** Adoption of unmarked rules (opt-in), with the configs' sources. */
  adopt?: { sources: Sources };
}

/**
 * The operations that make the kernel hold every desired rule once and no other rule with the
 * agent's protocol. Foreign rules (any other protocol) are never deleted; an identical plain
 * foreign rule satisfies a desired rule. Of several identical own rules, one is kept. With
 * `adopt`, unmarked rules are also taken over or deleted (adoption.ts).
 */
export function planRules(
  desired: RuleSet | readonly Rule[],
  kernel: readonly KernelRule[],
  options: PlanRulesOptions,
): RulePlan {
  const wanted = desired instanceof RuleSet ? desired : new RuleSet(desired);
  const held = new Uint8Array(wanted.size);
  let satisfied = 0;
  const remove: KernelRule[] = [];
  // Own rules first, so that an own rule is kept even when a foreign copy precedes it.
  for (const rule of kernel) {
    if (rule.protocol !== options.protocol) continue;
    const at = rule.plain ? wanted.indexOf(rule) : -1;
    if (at >= 0 && held[at] === HELD_NO) {
      held[at] = HELD_OWN;
      satisfied++;
    } else {
      remove.push(rule);
    }
  }
  const adoption = options.adopt && planAdoption({
    wanted,
    held,
    kernel,
    ownDeletes: remove,
    sources: options.adopt.sources,
  });
  for (const rule of kernel) {
    if (rule.protocol === options.protocol || !rule.plain) continue;
    const at = wanted.indexOf(rule);
    if (at >= 0 && held[at] === HELD_NO) {
      held[at] = HELD_OWN;
      satisfied++;
    }
  }
  const add: Rule[] = [];
  if (satisfied + (adoption?.adopt.length ?? 0) < wanted.size) {
    const rules = wanted.values();
    for (let i = 0; i < rules.length; i++) if (held[i] === HELD_NO) add.push(rules[i]!);
  }
  return adoption
    ? { add, delete: remove, satisfied, adoption }
    : { add, delete: remove, satisfied };
}

/**
 * Whether a rule change seen in the kernel may need a repair: a rule with the agent's protocol,
 * or a plain rule identical to a desired one (e.g. a foreign rule that satisfied it, deleted);
 * with adoption (`sources` given), also an unmarked plain rule from a config's source.
 */
export function changeMatters(
  rule: KernelRule,
  desired: RuleSet,
  options: { protocol: number; sources?: Sources },
): boolean {
  return rule.protocol === options.protocol ||
    (rule.plain && desired.find(rule) !== undefined) ||
    (rule.plain && rule.protocol === UNMARKED && options.sources?.has(rule.src) === true);
}

/**
 * The `ip rule` command of one operation, e.g. `ip -6 rule del from fd00::1 lookup 100 priority
 * 1000 proto 201`; an unmarked rule's has no `proto` (protocol 0 is what `ip rule` sends without).
 */
export function ipRuleCommand(op: "add" | "del", rule: RuleSpec): string {
  const args = formatRule(rule).replace(/ protocol 0$/, "").replace(
    / protocol (\d+)$/,
    " proto $1",
  );
  return `ip${rule.family === 6 ? " -6" : ""} rule ${op} ${args}`;
}

const REMOVAL_NOTES = {
  duplicate: "unmarked copy of a rule the agent holds",
  leftover: "unmarked leftover: its source is an IPRuleConfig's, its table or priority is not",
} as const;

/**
 * The plan as `ip rule` commands: deletes first, then adds, each sorted by family, priority,
 * source; then adoption's, in the order they run (adds, then the unmarked rules' deletes), with
 * a `#` note saying why, and the unmarked rules left in place as comments.
 */
export function planCommands(plan: RulePlan): string[] {
  const order = (a: RuleSpec, b: RuleSpec) =>
    a.family - b.family || a.priority - b.priority || a.src.localeCompare(b.src) ||
    a.table - b.table;
  const lines = [
    ...[...plan.delete].sort(order).map((rule) => ipRuleCommand("del", rule)),
    ...[...plan.add].sort(order).map((rule) => ipRuleCommand("add", rule)),
  ];
  const adoption = plan.adoption;
  if (adoption === undefined) return lines;
  const adopt = [...adoption.adopt].sort((a, b) => order(a.rule, b.rule));
  const remove = [...adoption.remove].sort((a, b) => order(a.rule, b.rule));
  return [
    ...lines,
    ...adopt.map(({ rule }) => `${ipRuleCommand("add", rule)}  # adopts the unmarked rule`),
    ...adopt.map(({ replaces }) => `${ipRuleCommand("del", replaces)}  # adopted`),
    ...remove.map(({ rule, reason }) =>
      `${ipRuleCommand("del", rule)}  # ${REMOVAL_NOTES[reason]}`
    ),
    ...[...adoption.blocked].sort(order).map((rule) =>
      `# left in place: ${ipRuleCommand("del", rule).replace(/^ip (-6 )?rule del /, "")} ` +
      "(another rule the kernel would delete instead comes first)"
    ),
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
