/**
 * The controller's planning core: from Services, IPRules and Namespace labels, the desired
 * IPRuleConfig of every source address, each IPRule's report and the events a user must see;
 * against the existing IPRuleConfigs, the writes. Pure: plain data in and out, no I/O, the clock
 * passed in.
 *
 * One planner serves both paths. `ClusterPlan` keeps the decisions with indexes that say which
 * decisions an event can change, so a Service, IPRule or Namespace event costs what it touches,
 * not the cluster's size; the per-key reconciles read it. `planConfigs` builds the same object
 * from scratch and diffs every config (the periodic resync, the tests, the benchmark).
 *
 * The decisions, per key:
 * - a Service: each LB IP → the IPRules whose CIDRs contain it (longest prefix, then lower
 *   priority, then name; selectors filter) → the winner's source address (the ClusterIP of the
 *   LB IP's family, or the LB IP itself) → a candidate for that source's config;
 * - a source address (one IPRuleConfig): the best of its candidates wins; every Service whose
 *   candidate has the winner's IPRule is listed (shared LB IPs), the others lost a match;
 * - an IPRule: the Services it routes and the matches it lost (`IPRuleReport`).
 */
import {
  API_VERSION,
  type IPRule,
  type IPRuleConfig,
  type IPRuleConfigSpec,
  isManagedConfig,
  MANAGED_BY,
  MANAGED_BY_LABEL,
  type ServiceInfo,
  type ServiceRef,
} from "../api/types.ts";
import { configName, type ParsedIP, parseIP, unusableSource } from "../ip.ts";
import { hasOriginalMarks } from "./config_migration.ts";
import { AddressIndex, addressKey } from "./address_index.ts";
import { eachMember, type Members, withMember, withoutMember } from "./members.ts";
import { compareMatches, type Match, RuleSet } from "./plan_rules.ts";
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
  /** Plan as if no Service existed: every config absent (an uninstall's drain). */
  withdrawAll?: boolean;
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

/** Most lost matches an IPRule report lists (its status and event name this many). */
export const REPORTED_CONFLICTS = 5;

/** What the plan found for one IPRule, for its status. */
export interface IPRuleReport {
  name: string;
  generation?: number;
  /** Services this IPRule routes (it won at least one of their source addresses). */
  matchedServices: number;
  /** The first `REPORTED_CONFLICTS` lost matches, in Service (`namespace/name`) order. */
  conflicts: Conflict[];
  /** Every lost match. */
  conflictCount: number;
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

/** What one event changed: the keys whose desired state may differ now. */
export interface Affected {
  /** IPRuleConfig names. */
  configs: Set<string>;
  /** IPRule names (their reports). */
  ipRules: Set<string>;
  /** Service keys (`namespace/name`) whose events changed. */
  services: Set<string>;
}

/** Nothing affected. */
function noneAffected(): Affected {
  return { configs: new Set(), ipRules: new Set(), services: new Set() };
}

/** A Service's claim on one source address, through the IPRule its LB IP matched best. */
interface Candidate extends Match {
  service: ServiceRef;
  lbIP: string;
  source: ParsedIP;
  configName: string;
}

/** A Service's match result. */
interface ServiceMatch {
  candidates: Candidate[];
  /** Matches lost at the LB IP: another IPRule's CIDR contains it better. */
  conflicts: { loser: string; conflict: Conflict }[];
  events: PlanEvent[];
  /** `addressKey` of each LB IP. */
  addresses: string[];
}

/** A LoadBalancer Service with LB IPs, as the plan holds it. */
interface ServiceEntry {
  service: ServiceInfo;
  match: ServiceMatch;
}

/** Whether two matches decide the same (IPRules compared by object: a changed spec is new). */
function sameMatch(a: ServiceMatch, b: ServiceMatch): boolean {
  return a.addresses.join() === b.addresses.join() && sameEvents(a.events, b.events) &&
    a.candidates.length === b.candidates.length &&
    a.candidates.every((c, i) => {
      const d = b.candidates[i]!;
      return c.rule === d.rule && c.prefixLength === d.prefixLength && c.lbIP === d.lbIP &&
        c.source.text === d.source.text;
    }) &&
    a.conflicts.length === b.conflicts.length &&
    a.conflicts.every((c, i) => {
      const d = b.conflicts[i]!;
      return c.loser === d.loser && c.conflict.lbIP === d.conflict.lbIP &&
        c.conflict.winner === d.conflict.winner;
    });
}

/** The decision for one source address. */
interface SourceDecision {
  /** Name of the winning IPRule. */
  winner: string;
  spec: IPRuleConfigSpec;
}

/** One Service's part in one IPRule's report. */
interface Part {
  routes: boolean;
  lost: Conflict[];
}

/** One Service's parts in the IPRule reports, by IPRule name. */
type Share = Map<string, Part>;

/** An IPRule's report as the plan keeps it, updated per Service. */
class Tally {
  /** Keys of the Services it routes. */
  readonly routed = new Set<string>();
  /** Lost matches by Service key. */
  readonly lost = new Map<string, Conflict[]>();
  lostCount = 0;

  /**
   * The first `REPORTED_CONFLICTS` lost matches in Service key order: one pass keeping the
   * smallest keys (a report is read once per status write, after a batch of changes; an
   * ordered map would make every change pay instead).
   */
  firstLost(): Conflict[] {
    const keys: string[] = [];
    for (const key of this.lost.keys()) {
      if (keys.length === REPORTED_CONFLICTS && key > keys[REPORTED_CONFLICTS - 1]!) continue;
      let at = keys.length;
      while (at > 0 && keys[at - 1]! > key) at--;
      keys.splice(at, 0, key);
      if (keys.length > REPORTED_CONFLICTS) keys.pop();
    }
    return keys.flatMap((key) => this.lost.get(key)!).slice(0, REPORTED_CONFLICTS);
  }
}

const NO_LABELS: Readonly<Record<string, string>> = Object.freeze({});

/** Key of a Service: `namespace/name`, as the informer keys it. */
function serviceKey(svc: { namespace: string; name: string }): string {
  return `${svc.namespace}/${svc.name}`;
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
export function specMatches(have: IPRuleConfigSpec, want: IPRuleConfigSpec): boolean {
  return have.serviceIP === want.serviceIP && have.table === want.table &&
    have.priority === want.priority && have.state === want.state &&
    have.absentSince === want.absentSince && have.ipRule === want.ipRule &&
    sameRefs(have.service && [have.service], want.service && [want.service]) &&
    sameRefs(have.services, want.services);
}

function sameConflicts(a: readonly Conflict[], b: readonly Conflict[]): boolean {
  return a.length === b.length &&
    a.every((c, i) =>
      c.lbIP === b[i]!.lbIP && c.winner === b[i]!.winner && sameRefs([c.service], [b[i]!.service])
    );
}

function sameEvents(a: readonly PlanEvent[], b: readonly PlanEvent[]): boolean {
  return a.length === b.length && a.every((e, i) => e.note === b[i]!.note);
}

/**
 * A LoadBalancer Service's LB IPs → the winning IPRule of each → candidates for source
 * addresses; undefined for a Service the plan does not hold (no LoadBalancer, no LB IP).
 */
function matchService(
  svc: ServiceInfo,
  rules: RuleSet,
  nsLabels: Readonly<Record<string, string>>,
): ServiceMatch | undefined {
  if (svc.type !== "LoadBalancer" || svc.ingressIPs.length === 0) return undefined;
  const result: ServiceMatch = { candidates: [], conflicts: [], events: [], addresses: [] };
  const ref = { namespace: svc.namespace, name: svc.name };
  const clusterIPs = svc.clusterIPs.map(parseIP);
  const headless = svc.clusterIPs.length === 0 || svc.clusterIPs.includes("None");
  for (const lbText of svc.ingressIPs) {
    const lbIP = parseIP(lbText);
    if (!lbIP) continue; // the API server validates ingress IPs; nothing to match
    result.addresses.push(addressKey(lbIP));
    const matches = rules.lookup(lbIP).filter(({ rule }) =>
      selectorMatches(rule.serviceSelector, svc.labels) &&
      selectorMatches(rule.namespaceSelector, nsLabels)
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
  return result.addresses.length > 0 ? result : undefined;
}

/**
 * One source address → exactly one config: of its candidates (in Service key order) the best
 * one's IPRule wins, and every Service with a candidate of that IPRule is listed.
 */
function decideSource(candidates: readonly Candidate[]): SourceDecision {
  const best = candidates.length > 1 ? [...candidates].sort(compareMatches)[0]! : candidates[0]!;
  const refs: ServiceRef[] = [];
  for (const c of candidates) {
    if (c.rule.name === best.rule.name && !refs.includes(c.service)) refs.push(c.service);
  }
  return {
    winner: best.rule.name,
    spec: {
      serviceIP: best.source.text,
      table: best.rule.table,
      priority: best.rule.priority,
      state: "present",
      ipRule: best.rule.name,
      service: refs[0]!,
      services: refs,
    },
  };
}

/**
 * The plan of the whole cluster, kept up to date one event at a time. Each update says which
 * keys it affected; reads are per key. Indexes answer "which decisions depend on this object"
 * without a scan: Services by namespace, by LB IP (ordered, for CIDR range queries) and by
 * source address; IPRule reports as tallies updated per Service.
 */
export class ClusterPlan {
  #rules: RuleSet;
  readonly #labels: (namespace: string) => Readonly<Record<string, string>> | undefined;
  readonly #services = new Map<string, ServiceEntry>();
  readonly #byNamespace = new Map<string, Set<string>>();
  /** Services by LB IP; built at the first IPRule change that needs it (see `#addresses`). */
  #byAddress: AddressIndex | undefined;
  /** Service keys with a candidate for each source address (config name). */
  readonly #bySource = new Map<string, Members>();
  /** Keys of the Services with events. */
  readonly #withEvents = new Set<string>();
  readonly #sources = new Map<string, SourceDecision>();
  readonly #tallies = new Map<string, Tally>();

  /** A plan of no Service; `namespaceLabels` is read whenever a Service is matched. */
  constructor(
    ipRules: Iterable<IPRule>,
    namespaceLabels: (namespace: string) => Readonly<Record<string, string>> | undefined,
  ) {
    this.#rules = new RuleSet(ipRules);
    this.#labels = namespaceLabels;
  }

  /** The plan of every Service, from scratch. */
  static build(
    services: Iterable<ServiceInfo>,
    ipRules: Iterable<IPRule>,
    namespaceLabels: (namespace: string) => Readonly<Record<string, string>> | undefined,
  ): ClusterPlan {
    const plan = new ClusterPlan(ipRules, namespaceLabels);
    for (const pass of plan.#passes(services)) pass(Infinity);
    return plan;
  }

  /**
   * The plan of every Service, from scratch, built in slices of `slice` items per pass with
   * `pause()` awaited between them: a cluster of 50k Services takes about a second to plan, which
   * would hold up every event meanwhile. `services` is read as it is when each slice runs; the
   * caller replays onto the plan whatever changed while it was built.
   */
  static async buildInSlices(
    services: Iterable<ServiceInfo>,
    ipRules: Iterable<IPRule>,
    namespaceLabels: (namespace: string) => Readonly<Record<string, string>> | undefined,
    slice: number,
    pause: () => Promise<void>,
  ): Promise<ClusterPlan> {
    const plan = new ClusterPlan(ipRules, namespaceLabels);
    for (const pass of plan.#passes(services)) while (pass(slice)) await pause();
    return plan;
  }

  /**
   * The three passes of a plan from scratch (match every Service, decide every source, tally
   * every Service), each run up to `max` items at a time; a pass answers whether it may have more.
   * Plain loops, not a generator: the whole plan in one go (`build`) stays as fast as it was.
   */
  #passes(services: Iterable<ServiceInfo>): ((max: number) => boolean)[] {
    const each = <T>(items: () => Iterator<T>, step: (item: T) => void) => {
      let iterator: Iterator<T> | undefined;
      return (max: number): boolean => {
        iterator ??= items(); // the pass before has filled what it reads
        for (let n = 0; n < max; n++) {
          const next = iterator.next();
          if (next.done) return false;
          step(next.value);
        }
        return true;
      };
    };
    const affected = noneAffected();
    return [
      // As `#apply` does, without its bookkeeping of what changed: everything did.
      each(() => services[Symbol.iterator](), (service) => {
        const labels = this.#labels(service.namespace) ?? NO_LABELS;
        this.#store(serviceKey(service), service, matchService(service, this.#rules, labels));
      }),
      each(() => this.#bySource.keys(), (name) => this.#decide(name)),
      each(
        () => this.#services.keys(),
        (key) => this.#tally(key, undefined, this.#share(key), affected),
      ),
    ];
  }

  /** A Service changed (undefined: deleted); `key` is its `namespace/name`. */
  setService(key: string, service: ServiceInfo | undefined): Affected {
    return this.#apply(new Map([[key, service]]));
  }

  /**
   * The IPRules changed (all of them are passed; a few dozen compile in microseconds). Only
   * the Services with an LB IP in the old or new CIDRs of a changed IPRule are matched again.
   */
  setIPRules(ipRules: Iterable<IPRule>): Affected {
    const next = new RuleSet(ipRules, this.#rules);
    const { names, cidrs } = next.changedSince(this.#rules);
    this.#rules = next;
    if (names.size === 0) return noneAffected();
    const keys = new Set<string>();
    const addresses = this.#addresses();
    for (const cidr of cidrs) for (const key of addresses.inCIDR(cidr)) keys.add(key);
    const affected = this.#apply(
      new Map([...keys].map((k) => [k, this.#services.get(k)!.service])),
    );
    for (const name of names) affected.ipRules.add(name);
    return affected;
  }

  /** A Namespace's labels changed: its Services are matched again if a selector reads them. */
  namespaceChanged(namespace: string): Affected {
    const keys = this.#byNamespace.get(namespace);
    if (!this.#rules.namespaceSelectors || !keys) return noneAffected();
    return this.#apply(new Map([...keys].map((k) => [k, this.#services.get(k)!.service])));
  }

  /** The desired spec of a config, undefined when no Service claims its source address. */
  desired(configName: string): IPRuleConfigSpec | undefined {
    return this.#sources.get(configName)?.spec;
  }

  /** Names of every config with a desired spec. */
  configNames(): IterableIterator<string> {
    return this.#sources.keys();
  }

  /** Keys of the Services with events. */
  serviceKeysWithEvents(): IterableIterator<string> {
    return this.#withEvents.values();
  }

  /** The events a Service must show (it was skipped, and why). */
  serviceEvents(key: string): readonly PlanEvent[] {
    return this.#services.get(key)?.match.events ?? [];
  }

  /** An IPRule's report; `withdrawn`: as if no Service existed (see `withdrawAll`). */
  report(rule: IPRule, withdrawn = false): IPRuleReport {
    const { name, generation } = rule.metadata;
    const report: IPRuleReport = { name, matchedServices: 0, conflicts: [], conflictCount: 0 };
    if (generation !== undefined) report.generation = generation;
    const invalid = this.#rules.invalid.get(name);
    if (invalid !== undefined) report.invalid = invalid;
    const tally = this.#tallies.get(name);
    if (!tally || withdrawn) return report;
    report.matchedServices = tally.routed.size;
    report.conflictCount = tally.lostCount;
    report.conflicts = tally.firstLost();
    return report;
  }

  /**
   * Matches the changed Services again and updates everything that depends on them: the
   * indexes, the decisions of every source address they claimed or claim now, and the shares
   * in the IPRule reports of every Service at those addresses.
   */
  #apply(updates: ReadonlyMap<string, ServiceInfo | undefined>): Affected {
    const affected = noneAffected();
    const matches = new Map<string, ServiceMatch | undefined>();
    const changes = new Map<string, ServiceInfo | undefined>();
    for (const [key, service] of updates) {
      const labels = service && (this.#labels(service.namespace) ?? NO_LABELS);
      const match = service && matchService(service, this.#rules, labels!);
      const entry = this.#services.get(key);
      if (entry && service && match && sameMatch(entry.match, match)) {
        entry.service = service; // nothing it decides changed (e.g. only another status field)
        continue;
      }
      changes.set(key, service);
      matches.set(key, match);
      const before = entry?.match;
      for (const c of before?.candidates ?? []) affected.configs.add(c.configName);
      for (const c of match?.candidates ?? []) affected.configs.add(c.configName);
      if (!sameEvents(before?.events ?? [], match?.events ?? [])) affected.services.add(key);
    }
    // Whose shares can change: the changed Services and every Service at an affected source.
    const sharing = new Set(changes.keys());
    for (const name of affected.configs) {
      for (const key of eachMember(this.#bySource.get(name))) sharing.add(key);
    }
    const before = new Map<string, Share>();
    if (this.#services.size > 0) { for (const key of sharing) before.set(key, this.#share(key)); }

    for (const [key, service] of changes) this.#store(key, service, matches.get(key));
    for (const name of affected.configs) this.#decide(name);
    for (const key of sharing) this.#tally(key, before.get(key), this.#share(key), affected);
    return affected;
  }

  /**
   * The LB IP index, built from every Service on first use and kept up to date from then on:
   * only IPRule changes read it, so a plan built from scratch (the resync's) does not pay for it
   * until one comes.
   */
  #addresses(): AddressIndex {
    if (this.#byAddress) return this.#byAddress;
    const index = new AddressIndex();
    for (const [key, { match }] of this.#services) {
      for (const address of match.addresses) index.add(address, key);
    }
    return this.#byAddress = index;
  }

  /** Puts a Service's new match in place of its old one, in the entry and every index. */
  #store(key: string, service: ServiceInfo | undefined, match: ServiceMatch | undefined): void {
    const old = this.#services.get(key);
    if (old) {
      const namespace = this.#byNamespace.get(old.service.namespace)!;
      namespace.delete(key);
      if (namespace.size === 0) this.#byNamespace.delete(old.service.namespace);
      for (const address of old.match.addresses) this.#byAddress?.delete(address, key);
      for (const c of old.match.candidates) this.#unclaim(c.configName, key);
      this.#services.delete(key);
      this.#withEvents.delete(key);
    }
    if (!service || !match) return;
    this.#services.set(key, { service, match });
    if (match.events.length > 0) this.#withEvents.add(key);
    const namespace = this.#byNamespace.get(service.namespace);
    if (namespace) namespace.add(key);
    else this.#byNamespace.set(service.namespace, new Set([key]));
    for (const address of match.addresses) this.#byAddress?.add(address, key);
    for (const c of match.candidates) {
      this.#bySource.set(c.configName, withMember(this.#bySource.get(c.configName), key));
    }
  }

  #unclaim(name: string, key: string): void {
    const claimants = withoutMember(this.#bySource.get(name), key);
    if (claimants === undefined) this.#bySource.delete(name);
    else this.#bySource.set(name, claimants);
  }

  /** Decides one source address from its candidates, in Service key order. */
  #decide(name: string): void {
    const claimants = this.#bySource.get(name);
    if (claimants === undefined) {
      this.#sources.delete(name);
      return;
    }
    const keys = typeof claimants === "string" ? [claimants] : [...claimants].sort();
    const candidates: Candidate[] = [];
    for (const key of keys) {
      for (const c of this.#services.get(key)!.match.candidates) {
        if (c.configName === name) candidates.push(c);
      }
    }
    this.#sources.set(name, decideSource(candidates));
  }

  /** A Service's part in the IPRule reports, from its match and its sources' decisions. */
  #share(key: string): Share {
    const share: Share = new Map();
    const entry = this.#services.get(key);
    if (!entry) return share;
    const part = (rule: string) => {
      let p = share.get(rule);
      if (!p) share.set(rule, p = { routes: false, lost: [] });
      return p;
    };
    for (const { loser, conflict } of entry.match.conflicts) part(loser).lost.push(conflict);
    for (const c of entry.match.candidates) {
      const winner = this.#sources.get(c.configName)!.winner;
      if (winner === c.rule.name) part(winner).routes = true;
      else part(c.rule.name).lost.push({ service: c.service, lbIP: c.lbIP, winner });
    }
    return share;
  }

  /** Moves a Service's share in the tallies from `before` to `after`. */
  #tally(key: string, before: Share | undefined, after: Share, affected: Affected): void {
    for (const [rule, now] of after) this.#tallyPart(key, rule, before?.get(rule), now, affected);
    for (const [rule, was] of before ?? []) {
      if (!after.has(rule)) this.#tallyPart(key, rule, was, undefined, affected);
    }
  }

  #tallyPart(
    key: string,
    rule: string,
    was: Part | undefined,
    now: Part | undefined,
    affected: Affected,
  ): void {
    let tally = this.#tallies.get(rule);
    if (!tally) this.#tallies.set(rule, tally = new Tally());
    if ((was?.routes ?? false) !== (now?.routes ?? false)) {
      if (now?.routes) tally.routed.add(key);
      else tally.routed.delete(key);
      affected.ipRules.add(rule);
    }
    if (!sameConflicts(was?.lost ?? [], now?.lost ?? [])) {
      tally.lostCount += (now?.lost.length ?? 0) - (was?.lost.length ?? 0);
      if (now?.lost.length) tally.lost.set(key, now.lost);
      else tally.lost.delete(key);
      affected.ipRules.add(rule);
    }
    if (tally.routed.size === 0 && tally.lostCount === 0) this.#tallies.delete(rule);
  }
}

/** What a config's diff found. */
export interface ConfigDiff {
  change?: ConfigChange;
  /** The config is someone else's (a user must know why it stays). */
  event?: PlanEvent;
  /** When the absent config becomes due for deletion, ms since the epoch. */
  deletionAt?: number;
}

/**
 * The write that turns one existing config (or none) into its desired spec (undefined: no
 * Service claims its source). Configs without our label are never changed; a config no longer
 * desired is marked absent, then deleted once the grace period has passed.
 */
export function diffConfig(
  name: string,
  desired: IPRuleConfigSpec | undefined,
  current: IPRuleConfig | undefined,
  { now, graceMs, holdAbsent = false }: PlanOptions,
): ConfigDiff {
  const rv = current?.metadata.resourceVersion === undefined
    ? {}
    : { resourceVersion: current.metadata.resourceVersion };
  if (desired) {
    if (!current) return { change: { op: "create", name, config: newConfig(name, desired) } };
    if (!isManagedConfig(current)) {
      const svc = desired.service!;
      return {
        event: {
          regarding: { kind: "Service", namespace: svc.namespace, name: svc.name },
          type: "Warning",
          reason: "ConfigNotOwned",
          note: `IPRuleConfig "${name}" exists without label ${MANAGED_BY_LABEL}=${MANAGED_BY}; ` +
            `left as it is`,
        },
      };
    }
    if (holdAbsent && current.spec.state === "absent") return {};
    // An update also moves a config off the original operator's marks (see config_migration).
    return specMatches(current.spec, desired) && !hasOriginalMarks(current)
      ? {}
      : { change: { op: "update", name, spec: desired, ...rv } };
  }
  if (!current || !isManagedConfig(current)) return {};
  const since = current.spec.absentSince === undefined ? NaN : Date.parse(current.spec.absentSince);
  // A time in the future (another replica's clock ahead of ours) is written again as now: the
  // grace period never stretches by the skew.
  if (current.spec.state !== "absent" || Number.isNaN(since) || since > now) {
    const spec = { ...current.spec, state: "absent" as const };
    spec.absentSince = new Date(now).toISOString();
    return { change: { op: "update", name, spec, ...rv }, deletionAt: now + graceMs };
  }
  if (now - since >= graceMs) return { change: { op: "delete", name, ...rv } };
  return { deletionAt: since + graceMs };
}

/** The writes for every config: desired ones (by name) and existing ones, in name order. */
function diffConfigs(
  desired: { names: Iterable<string>; spec: (name: string) => IPRuleConfigSpec | undefined },
  existing: ReadonlyMap<string, IPRuleConfig>,
  options: PlanOptions,
  events: PlanEvent[],
): { changes: ConfigChange[]; nextDeletionAt?: number } {
  const changes: ConfigChange[] = [];
  let nextDeletionAt: number | undefined;
  for (const name of new Set([...desired.names, ...existing.keys()])) {
    const diff = diffConfig(name, desired.spec(name), existing.get(name), options);
    if (diff.change) changes.push(diff.change);
    if (diff.event) events.push(diff.event);
    if (diff.deletionAt !== undefined) {
      nextDeletionAt = Math.min(nextDeletionAt ?? Infinity, diff.deletionAt);
    }
  }
  changes.sort(byName);
  return nextDeletionAt === undefined ? { changes } : { changes, nextDeletionAt };
}

/** The events of an IPRule's report: its spec is invalid, it lost matches. */
export function ipRuleEvents(report: IPRuleReport): PlanEvent[] {
  const events: PlanEvent[] = [];
  if (report.invalid !== undefined) events.push(invalidEvent(report.name, report.invalid));
  if (report.conflictCount > 0) events.push(conflictEvent(report));
  return events;
}

/**
 * Computes the IPRuleConfig changes, IPRule reports and events from scratch. Events: invalid
 * IPRules, then skipped Services, then lost matches, then configs that are not ours.
 */
export function planConfigs(input: PlanInput, options: PlanOptions): Plan {
  const labels = input.namespaceLabels;
  const withdrawn = options.withdrawAll ?? false;
  const plan = ClusterPlan.build(
    withdrawn ? [] : input.services,
    input.ipRules,
    (ns) => labels?.get(ns),
  );
  const sorted = [...input.ipRules].sort((a, b) => byName(a.metadata, b.metadata));
  const reports = sorted.map((rule) => plan.report(rule));
  const events: PlanEvent[] = [];
  for (const r of reports) {
    if (r.invalid !== undefined) events.push(invalidEvent(r.name, r.invalid));
  }
  for (const key of [...plan.serviceKeysWithEvents()].sort()) {
    events.push(...plan.serviceEvents(key));
  }
  for (const r of reports) if (r.conflictCount > 0) events.push(conflictEvent(r));
  const { changes, nextDeletionAt } = diffConfigs(
    { names: plan.configNames(), spec: (name) => plan.desired(name) },
    new Map(input.configs.map((c) => [c.metadata.name, c])),
    options,
    events,
  );
  const result: Plan = { changes, ipRules: reports, events };
  if (nextDeletionAt !== undefined) result.nextDeletionAt = nextDeletionAt;
  return result;
}

function serviceEvent(svc: ServiceInfo, reason: string, note: string): PlanEvent {
  return {
    regarding: { kind: "Service", namespace: svc.namespace, name: svc.name },
    type: "Warning",
    reason,
    note,
  };
}

function invalidEvent(name: string, problem: string): PlanEvent {
  return {
    regarding: { kind: "IPRule", name },
    type: "Warning",
    reason: "InvalidIPRule",
    note: `IPRule ignored: ${problem}`,
  };
}

function conflictEvent(report: IPRuleReport): PlanEvent {
  const shown = report.conflicts.map((c) =>
    `${serviceKey(c.service)} (LB IP ${c.lbIP}) to IPRule "${c.winner}"`
  );
  const more = report.conflictCount - shown.length;
  return {
    regarding: { kind: "IPRule", name: report.name },
    type: "Warning",
    reason: "Conflict",
    note: `IPRule lost ${report.conflictCount} match(es) to IPRules with a longer prefix, ` +
      `lower priority or earlier name: ${shown.join("; ")}${more > 0 ? `; and ${more} more` : ""}`,
  };
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
