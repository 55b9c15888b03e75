/**
 * The controller's planning core: from Services, IPRules and the existing IPRuleConfigs,
 * compute the IPRuleConfig changes, each IPRule's report and the events a user must see.
 * Pure: plain data in and out, no I/O, the clock passed in.
 */
import {
  API_VERSION,
  type IPRule,
  type IPRuleConfig,
  type IPRuleConfigSpec,
  isManagedConfig,
  type LabelSelector,
  MANAGED_BY,
  MANAGED_BY_LABEL,
  type RuleSource,
  type ServiceInfo,
  type ServiceRef,
} from "../api/types.ts";
import {
  configName,
  type Family,
  parseCIDR,
  type ParsedIP,
  parseIP,
  prefixKey,
  unusableSource,
} from "../ip.ts";
import { priorityProblem, tableProblem } from "../api/limits.ts";
import { selectorMatches } from "./selector.ts";

/** Everything the planner reads. */
export interface PlanInput {
  services: readonly ServiceInfo[];
  ipRules: readonly IPRule[];
  /** Existing IPRuleConfigs; only those labelled as ours are ever changed. */
  configs: readonly IPRuleConfig[];
  /** Labels of each namespace, for `namespaceSelector` (a missing namespace has none). */
  namespaceLabels?: ReadonlyMap<string, Readonly<Record<string, string>>>;
}

/** Clock and timing of a plan. */
export interface PlanOptions {
  /** Current time, ms since the epoch. */
  now: number;
  /** How long an absent config is kept before it is deleted, ms. */
  graceMs: number;
  /**
   * Keep absent configs absent (no Agent exists, e.g. after an uninstall drained the nodes:
   * agents still terminating must not see their rules come back). New configs are created.
   */
  holdAbsent?: boolean;
}

/** One write to the API. */
export type ConfigChange =
  | { op: "create"; name: string; config: IPRuleConfig }
  | { op: "update"; name: string; spec: IPRuleConfigSpec; resourceVersion?: string }
  | { op: "delete"; name: string; resourceVersion?: string };

/** A Service whose LB IP matched an IPRule that lost to another. */
export interface Conflict {
  service: ServiceRef;
  lbIP: string;
  /** The IPRule that won the source address. */
  winner: string;
}

/** What the plan found for one IPRule, for its status. */
export interface IPRuleReport {
  name: string;
  generation?: number;
  /** Services this IPRule routes (it won at least one of their source addresses). */
  matchedServices: number;
  conflicts: Conflict[];
  /** Why the IPRule was ignored, when its spec is invalid. */
  invalid?: string;
}

/** An event for a user (events.k8s.io), on an IPRule or a Service. */
export interface PlanEvent {
  regarding: { kind: "IPRule" | "Service"; name: string; namespace?: string };
  type: "Normal" | "Warning";
  reason: string;
  note: string;
}

/** The planner's result. */
export interface Plan {
  /** Writes, in name order. */
  changes: ConfigChange[];
  /** One report per IPRule, in name order. */
  ipRules: IPRuleReport[];
  events: PlanEvent[];
  /** Earliest time (ms) at which an absent config becomes due for deletion. */
  nextDeletionAt?: number;
}

/** Most Services named in one conflict event. */
const EVENT_SERVICE_LIMIT = 5;

interface CompiledRule {
  name: string;
  table: number;
  priority: number;
  source: RuleSource;
  rule: IPRule;
}

interface Match {
  rule: CompiledRule;
  prefixLength: number;
}

interface Candidate extends Match {
  service: ServiceRef;
  lbIP: string;
  source: ParsedIP;
  configName: string;
  /** The spec this candidate asks for when it is alone at its source; built once. */
  soleSpec?: IPRuleConfigSpec;
}

/** Longest prefix first, then lower priority, then IPRule name. */
function compareMatches(a: Match, b: Match): number {
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
    for (const text of rule.rule.spec.cidrs) {
      const cidr = parseCIDR(text);
      if (typeof cidr !== "object") continue; // validated before
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

function refKey(ref: ServiceRef): string {
  return `${ref.namespace}/${ref.name}`;
}

function byName<T extends { name: string }>(a: T, b: T): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

function sameRefs(a: readonly ServiceRef[] | undefined, b: readonly ServiceRef[] | undefined) {
  const x = a ?? [];
  const y = b ?? [];
  return x.length === y.length &&
    x.every((r, i) => r.namespace === y[i]!.namespace && r.name === y[i]!.name);
}

/** Whether an existing config already carries the desired spec. */
function specMatches(have: IPRuleConfigSpec, want: IPRuleConfigSpec): boolean {
  return have.serviceIP === want.serviceIP && have.table === want.table &&
    have.priority === want.priority && have.state === want.state &&
    have.absentSince === want.absentSince && have.ipRule === want.ipRule &&
    sameRefs(have.service && [have.service], want.service && [want.service]) &&
    sameRefs(have.services, want.services);
}

/** A Service's match result: candidates for source addresses, lost matches, events. */
interface ServiceMatch {
  candidates: Candidate[];
  conflicts: { loser: string; conflict: Conflict }[];
  events: PlanEvent[];
}

/** The usable IPRules, indexed, and why the others are not usable. */
interface CompiledRules {
  index: RuleIndex;
  invalid: Map<string, string>;
}

/**
 * Memo of compiled IPRules and per-Service match results across plans, so a reconcile after
 * one Service changed re-matches only that Service. A plan is identical with or without it:
 * entries are keyed by object identity (the informer cache keeps unchanged objects) and by the
 * IPRules' content.
 */
export class PlanMemo {
  #rulesKey = "";
  #rules: CompiledRules | undefined;
  #services = new WeakMap<
    ServiceInfo,
    { index: RuleIndex; nsLabels: object; match: ServiceMatch }
  >();

  /** The compiled IPRules, rebuilt only when one of them changed. */
  rules(ipRules: readonly IPRule[]): CompiledRules {
    const key = JSON.stringify(
      ipRules.map((r) => [r.metadata.name, r.metadata.deletionTimestamp, r.spec]),
    );
    if (!this.#rules || key !== this.#rulesKey) {
      this.#rules = compileRules(ipRules);
      this.#rulesKey = key;
    }
    return this.#rules;
  }

  /** A Service's match result, recomputed only when the Service, IPRules or labels changed. */
  match(
    svc: ServiceInfo,
    index: RuleIndex,
    nsLabels: Readonly<Record<string, string>>,
  ): ServiceMatch {
    const hit = this.#services.get(svc);
    if (hit && hit.index === index && hit.nsLabels === nsLabels) return hit.match;
    const match = matchService(svc, index, nsLabels);
    this.#services.set(svc, { index, nsLabels, match });
    return match;
  }
}

function compileRules(ipRules: readonly IPRule[]): CompiledRules {
  const index = new RuleIndex();
  const invalid = new Map<string, string>();
  for (const rule of ipRules) {
    if (rule.metadata.deletionTimestamp) continue;
    const problem = validateIPRule(rule);
    if (problem) {
      invalid.set(rule.metadata.name, problem);
      continue;
    }
    const { table, priority, source = "ClusterIP" } = rule.spec;
    index.add({ name: rule.metadata.name, table, priority, source, rule });
  }
  return { index, invalid };
}

const NO_LABELS: Readonly<Record<string, string>> = Object.freeze({});

/** Every (Service, LB IP) pair → the winning IPRule → a candidate for one source address. */
function matchService(
  svc: ServiceInfo,
  index: RuleIndex,
  nsLabels: Readonly<Record<string, string>>,
): ServiceMatch {
  const result: ServiceMatch = { candidates: [], conflicts: [], events: [] };
  if (svc.type !== "LoadBalancer" || svc.ingressIPs.length === 0) return result;
  const ref = { namespace: svc.namespace, name: svc.name };
  const clusterIPs = svc.clusterIPs.map(parseIP);
  const headless = svc.clusterIPs.length === 0 || svc.clusterIPs.includes("None");
  for (const lbText of svc.ingressIPs) {
    const lbIP = parseIP(lbText);
    if (!lbIP) continue; // the API server validates ingress IPs; nothing to match
    const matches = index.lookup(lbIP).filter(({ rule }) =>
      selectorMatches(rule.rule.spec.serviceSelector, svc.labels) &&
      selectorMatches(rule.rule.spec.namespaceSelector, nsLabels)
    );
    const [winner, ...losers] = matches;
    if (!winner) continue;
    for (const loser of losers) {
      result.conflicts.push({
        loser: loser.rule.name,
        conflict: { service: ref, lbIP: lbIP.text, winner: winner.rule.name },
      });
    }
    let source: ParsedIP | undefined = lbIP;
    if (winner.rule.source === "ClusterIP") {
      if (headless) {
        result.events.push(serviceEvent(
          svc,
          "NoClusterIP",
          `Service skipped: it has no ClusterIP (clusterIP "None") to route LB IP ` +
            `"${lbIP.text}" from (IPRule "${winner.rule.name}")`,
        ));
        continue;
      }
      source = clusterIPs.find((ip) => ip?.family === lbIP.family);
      if (!source) {
        result.events.push(serviceEvent(
          svc,
          "NoClusterIPOfFamily",
          `Service skipped for LB IP "${lbIP.text}": no IPv${lbIP.family} ClusterIP in ` +
            `spec.clusterIPs "${svc.clusterIPs.join(",")}" (IPRule "${winner.rule.name}")`,
        ));
        continue;
      }
    }
    const unusable = unusableSource(source);
    if (unusable) {
      // Every node's agent would refuse the config (and the CRD an IPv4-mapped address).
      result.events.push(serviceEvent(
        svc,
        "UnusableSource",
        `Service skipped for LB IP "${lbIP.text}": rule source "${source.text}" is ${unusable} ` +
          `(IPRule "${winner.rule.name}")`,
      ));
      continue;
    }
    result.candidates.push({
      ...winner,
      service: ref,
      lbIP: lbIP.text,
      source,
      configName: configName(source),
    });
  }
  return result;
}

/** Computes the IPRuleConfig changes, IPRule reports and events for one reconcile. */
export function planConfigs(
  input: PlanInput,
  options: PlanOptions,
  memo: PlanMemo = new PlanMemo(),
): Plan {
  const events: PlanEvent[] = [];
  const reports = new Map<string, IPRuleReport>();
  const { index, invalid } = memo.rules(input.ipRules);

  for (const rule of [...input.ipRules].sort((a, b) => byName(a.metadata, b.metadata))) {
    const { name, generation } = rule.metadata;
    const report: IPRuleReport = { name, matchedServices: 0, conflicts: [] };
    if (generation !== undefined) report.generation = generation;
    reports.set(name, report);
    const problem = invalid.get(name);
    if (problem) {
      report.invalid = problem;
      events.push({
        regarding: { kind: "IPRule", name },
        type: "Warning",
        reason: "InvalidIPRule",
        note: `IPRule ignored: ${problem}`,
      });
    }
  }

  const bySource = new Map<string, Candidate[]>();
  // Sorted Services make every output list deterministic (cheaper than sorting the outputs).
  const services = [...input.services].sort((a, b) =>
    a.namespace < b.namespace ? -1 : a.namespace > b.namespace ? 1 : byName(a, b)
  );
  for (const svc of services) {
    const nsLabels = input.namespaceLabels?.get(svc.namespace) ?? NO_LABELS;
    const match = memo.match(svc, index, nsLabels);
    for (const { loser, conflict } of match.conflicts) {
      reports.get(loser)!.conflicts.push(conflict);
    }
    events.push(...match.events);
    for (const candidate of match.candidates) {
      const list = bySource.get(candidate.source.text);
      if (list) list.push(candidate);
      else bySource.set(candidate.source.text, [candidate]);
    }
  }

  // One source address → exactly one config: the best candidate's IPRule wins.
  const desired = new Map<string, IPRuleConfigSpec>();
  // Per IPRule, the Services it routes; ServiceRef objects are one per Service and match.
  const routed = new Map<string, Set<ServiceRef>>();
  for (const [sourceText, candidates] of bySource) {
    if (candidates.length > 1) candidates.sort(compareMatches);
    const best = candidates[0]!;
    let serviceRefs = [best.service];
    if (candidates.length > 1) {
      const refs = new Map<string, ServiceRef>();
      for (const c of candidates) {
        if (c.rule === best.rule) refs.set(refKey(c.service), c.service);
        else {
          reports.get(c.rule.name)!.conflicts.push({
            service: c.service,
            lbIP: c.lbIP,
            winner: best.rule.name,
          });
        }
      }
      serviceRefs = [...refs.values()].sort((a, b) =>
        refKey(a) < refKey(b) ? -1 : refKey(a) > refKey(b) ? 1 : 0
      );
    }
    const seen = routed.get(best.rule.name) ?? new Set();
    for (const ref of serviceRefs) seen.add(ref);
    routed.set(best.rule.name, seen);
    const spec = candidates.length === 1 && best.soleSpec ? best.soleSpec : {
      serviceIP: sourceText,
      table: best.rule.table,
      priority: best.rule.priority,
      state: "present" as const,
      ipRule: best.rule.name,
      service: serviceRefs[0]!,
      services: serviceRefs,
    };
    // Candidates are memoized with their Service, so a lone one's spec is reused next time.
    if (candidates.length === 1) best.soleSpec = spec;
    desired.set(best.configName, spec);
  }

  for (const report of reports.values()) {
    report.matchedServices = routed.get(report.name)?.size ?? 0;
    if (report.conflicts.length > 0) events.push(conflictEvent(report));
  }

  const { changes, nextDeletionAt } = diffConfigs(desired, input.configs, options, events);
  const plan: Plan = { changes, ipRules: [...reports.values()], events };
  if (nextDeletionAt !== undefined) plan.nextDeletionAt = nextDeletionAt;
  return plan;
}

function serviceEvent(svc: ServiceInfo, reason: string, note: string): PlanEvent {
  return {
    regarding: { kind: "Service", namespace: svc.namespace, name: svc.name },
    type: "Warning",
    reason,
    note,
  };
}

function conflictEvent(report: IPRuleReport): PlanEvent {
  const shown = report.conflicts.slice(0, EVENT_SERVICE_LIMIT).map((c) =>
    `${refKey(c.service)} (LB IP ${c.lbIP}) to IPRule "${c.winner}"`
  );
  const more = report.conflicts.length - shown.length;
  return {
    regarding: { kind: "IPRule", name: report.name },
    type: "Warning",
    reason: "Conflict",
    note: `IPRule lost ${report.conflicts.length} match(es) to IPRules with a longer prefix, ` +
      `lower priority or earlier name: ${shown.join("; ")}${more > 0 ? `; and ${more} more` : ""}`,
  };
}

/** Turns the desired specs and the existing configs into writes. */
function diffConfigs(
  desired: ReadonlyMap<string, IPRuleConfigSpec>,
  existing: readonly IPRuleConfig[],
  { now, graceMs, holdAbsent = false }: PlanOptions,
  events: PlanEvent[],
): { changes: ConfigChange[]; nextDeletionAt?: number } {
  const changes: ConfigChange[] = [];
  let nextDeletionAt: number | undefined;
  const have = new Map(existing.map((c) => [c.metadata.name, c]));
  const rv = (c: IPRuleConfig) =>
    c.metadata.resourceVersion === undefined ? {} : { resourceVersion: c.metadata.resourceVersion };

  for (const [name, spec] of desired) {
    const current = have.get(name);
    if (!current) {
      changes.push({ op: "create", name, config: newConfig(name, spec) });
    } else if (!isManagedConfig(current)) {
      const svc = spec.service!;
      events.push({
        regarding: { kind: "Service", namespace: svc.namespace, name: svc.name },
        type: "Warning",
        reason: "ConfigNotOwned",
        note: `IPRuleConfig "${name}" exists without label ${MANAGED_BY_LABEL}=${MANAGED_BY}; ` +
          `left as it is`,
      });
    } else if (holdAbsent && current.spec.state === "absent") {
      continue;
    } else if (!specMatches(current.spec, spec)) {
      changes.push({ op: "update", name, spec, ...rv(current) });
    }
  }

  for (const current of existing) {
    const name = current.metadata.name;
    if (desired.has(name) || !isManagedConfig(current)) continue;
    const since = current.spec.absentSince === undefined
      ? NaN
      : Date.parse(current.spec.absentSince);
    // A time in the future (another replica's clock ahead of ours) is written again as now:
    // the grace period never stretches by the skew.
    if (current.spec.state !== "absent" || Number.isNaN(since) || since > now) {
      const spec = { ...current.spec, state: "absent" as const };
      spec.absentSince = new Date(now).toISOString();
      changes.push({ op: "update", name, spec, ...rv(current) });
      nextDeletionAt = Math.min(nextDeletionAt ?? Infinity, now + graceMs);
    } else if (now - since >= graceMs) {
      changes.push({ op: "delete", name, ...rv(current) });
    } else {
      nextDeletionAt = Math.min(nextDeletionAt ?? Infinity, since + graceMs);
    }
  }
  changes.sort(byName);
  return nextDeletionAt === undefined ? { changes } : { changes, nextDeletionAt };
}

/** A new IPRuleConfig object carrying our managed-by label. */
function newConfig(name: string, spec: IPRuleConfigSpec): IPRuleConfig {
  return {
    apiVersion: API_VERSION,
    kind: "IPRuleConfig",
    metadata: { name, labels: { [MANAGED_BY_LABEL]: MANAGED_BY } },
    spec,
  };
}
