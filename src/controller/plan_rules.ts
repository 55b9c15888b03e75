/**
 * The IPRules as the planner uses them: validated, compiled once per spec, indexed by CIDR
 * prefix for longest-prefix lookups, and the order that decides between them (longest prefix,
 * then lower priority, then name). Pure.
 */
import type { IPRule, LabelSelector, RuleSource } from "../api/types.ts";
import { type Family, parseCIDR, type ParsedCIDR, type ParsedIP, prefixKey } from "../ip.ts";
import { priorityProblem, tableProblem } from "../api/limits.ts";

/** A usable IPRule, as matching needs it. Unchanged specs keep their object across events. */
export interface CompiledRule {
  name: string;
  table: number;
  priority: number;
  source: RuleSource;
  serviceSelector?: LabelSelector;
  namespaceSelector?: LabelSelector;
  cidrs: ParsedCIDR[];
  /** The spec as text: equal text, same compiled rule. */
  specText: string;
}

/** One IPRule whose CIDR contains an address. */
export interface Match {
  rule: CompiledRule;
  prefixLength: number;
}

/** Longest prefix first, then lower priority, then IPRule name. */
export function compareMatches(a: Match, b: Match): number {
  return b.prefixLength - a.prefixLength || a.rule.priority - b.rule.priority ||
    (a.rule.name < b.rule.name ? -1 : a.rule.name > b.rule.name ? 1 : 0);
}

/** Why an IPRule's spec cannot be used, or undefined when it can. */
function validateIPRule(rule: IPRule): string | undefined {
  const { cidrs, table, priority } = rule.spec;
  if (cidrs.length === 0) return `spec.cidrs must not be empty`;
  const seen = new Set<string>();
  for (const [i, cidr] of cidrs.entries()) {
    const parsed = parseCIDR(cidr);
    if (parsed === "invalid") return `spec.cidrs[${i}] "${cidr}" is not a valid CIDR`;
    if (parsed === "host-bits") return `spec.cidrs[${i}] "${cidr}" has host bits set`;
    if (seen.has(parsed.text)) return `spec.cidrs[${i}] "${cidr}" is a duplicate`;
    seen.add(parsed.text);
  }
  const badTable = tableProblem(table);
  if (badTable !== undefined) return `spec.table "${table}" is ${badTable}`;
  const badPriority = priorityProblem(priority);
  if (badPriority !== undefined) return `spec.priority "${priority}" is ${badPriority}`;
  return selectorProblem(rule.spec.serviceSelector, "spec.serviceSelector") ??
    selectorProblem(rule.spec.namespaceSelector, "spec.namespaceSelector");
}

/**
 * Why a label selector is invalid as Kubernetes sees it (In and NotIn need values, Exists and
 * DoesNotExist take none), or undefined. Read loosely, `NotIn` with no values would match
 * every Service.
 */
function selectorProblem(selector: LabelSelector | undefined, field: string): string | undefined {
  for (const [i, e] of (selector?.matchExpressions ?? []).entries()) {
    const count = e.values?.length ?? 0;
    const needs = e.operator === "In" || e.operator === "NotIn";
    if (needs && count === 0) {
      return `${field}.matchExpressions[${i}].values must not be empty for operator "${e.operator}"`;
    }
    if (!needs && count > 0) {
      return `${field}.matchExpressions[${i}].values must be empty for operator "${e.operator}"`;
    }
  }
  return undefined;
}

/** IPRules indexed by CIDR prefix key, with the prefix lengths in use per family. */
class RuleIndex {
  readonly #byKey = new Map<string, Match[]>();
  readonly #lengths: Record<Family, number[]> = { 4: [], 6: [] };

  add(rule: CompiledRule): void {
    for (const cidr of rule.cidrs) {
      const key = prefixKey(cidr.family, cidr.bytes, cidr.prefixLength);
      const list = this.#byKey.get(key) ?? [];
      list.push({ rule, prefixLength: cidr.prefixLength });
      this.#byKey.set(key, list);
      const lengths = this.#lengths[cidr.family];
      if (!lengths.includes(cidr.prefixLength)) {
        lengths.push(cidr.prefixLength);
        lengths.sort((a, b) => b - a);
      }
    }
  }

  /** Every IPRule with a CIDR containing the address, best first, one entry per IPRule. */
  lookup(ip: ParsedIP): Match[] {
    const found = new Map<CompiledRule, Match>();
    for (const length of this.#lengths[ip.family]) {
      for (const match of this.#byKey.get(prefixKey(ip.family, ip.bytes, length)) ?? []) {
        if (!found.has(match.rule)) found.set(match.rule, match); // longest CIDR of that rule
      }
    }
    return [...found.values()].sort(compareMatches);
  }
}

function compile(rule: IPRule, specText: string): CompiledRule {
  const { table, priority, source = "ClusterIP", serviceSelector, namespaceSelector } = rule.spec;
  const compiled: CompiledRule = {
    name: rule.metadata.name,
    table,
    priority,
    source,
    cidrs: rule.spec.cidrs.map((c) => parseCIDR(c) as ParsedCIDR), // validated before
    specText,
  };
  if (serviceSelector) compiled.serviceSelector = serviceSelector;
  if (namespaceSelector) compiled.namespaceSelector = namespaceSelector;
  return compiled;
}

/** The IPRules of one moment: the usable ones compiled and indexed, why the others are not. */
export class RuleSet {
  /** Usable IPRules by name (those being deleted count as gone). */
  readonly valid = new Map<string, CompiledRule>();
  /** Why each unusable IPRule is ignored, by name. */
  readonly invalid = new Map<string, string>();
  /** Whether a usable IPRule has a namespaceSelector (Namespace labels matter). */
  readonly namespaceSelectors: boolean;
  readonly #index = new RuleIndex();

  /** Compiles the IPRules; a rule whose spec `previous` compiled already keeps its object. */
  constructor(ipRules: Iterable<IPRule>, previous?: RuleSet) {
    let namespaceSelectors = false;
    for (const rule of ipRules) {
      if (rule.metadata.deletionTimestamp) continue;
      const name = rule.metadata.name;
      const specText = JSON.stringify(rule.spec);
      const before = previous?.valid.get(name);
      if (before?.specText === specText) {
        this.valid.set(name, before);
      } else {
        const problem = validateIPRule(rule);
        if (problem !== undefined) {
          this.invalid.set(name, problem);
          continue;
        }
        this.valid.set(name, compile(rule, specText));
      }
      const compiled = this.valid.get(name)!;
      this.#index.add(compiled);
      namespaceSelectors ||= compiled.namespaceSelector !== undefined;
    }
    this.namespaceSelectors = namespaceSelectors;
  }

  /** Every usable IPRule with a CIDR containing the address, best first. */
  lookup(ip: ParsedIP): Match[] {
    return this.#index.lookup(ip);
  }

  /**
   * The IPRules that differ between `before` and this set (added, removed, changed, become
   * valid or invalid), and the CIDRs of their usable versions on either side: the Services
   * with an LB IP in those CIDRs are the only ones whose matches can change.
   */
  changedSince(before: RuleSet): { names: Set<string>; cidrs: ParsedCIDR[] } {
    const names = new Set<string>();
    const cidrs: ParsedCIDR[] = [];
    const sides: [RuleSet, RuleSet][] = [[before, this], [this, before]];
    for (const [a, b] of sides) {
      for (const [name, rule] of a.valid) {
        if (b.valid.get(name) === rule) continue;
        names.add(name);
        cidrs.push(...rule.cidrs);
      }
      for (const [name, problem] of a.invalid) {
        if (b.invalid.get(name) !== problem) names.add(name);
      }
    }
    return { names, cidrs };
  }
}
