/**
 * The IPRuleConfig reconciles, one key at a time: a config (one source address), an IPRule's
 * status, a Service's events, and the periodic full resync. The planner's `ClusterPlan` is kept
 * up to date by the informers' changes (`serviceChanged` and the like), which queue exactly the
 * keys a change affected; each key's reconcile reads the caches and the plan, diffs that one
 * object and writes the difference. Level-based: a reconcile never looks at which event queued
 * it, and an interrupted one is finished by the next. While the Agent is being uninstalled, the
 * drain module's policy withdraws every config. A config the original operator wrote is adopted
 * by its own key's reconcile: the update moves it off the original's marks (config_migration).
 *
 * The resync (every `resyncPeriodMs`, and first once the caches synced) plans the whole cluster
 * from scratch, counts the keys on which the kept plan disagreed (0 when the incremental path is
 * right), takes the fresh plan and queues every key whose object differs from it: the safety
 * net, writing nothing itself. It plans in slices, the events between them going on as usual
 * (and replayed onto the fresh plan), so a large cluster's resync never holds up a change.
 */
import {
  type Agent,
  AGENT_NAME,
  type IPRule,
  type IPRuleConfig,
  type IPRuleConfigSpec,
  type ServiceInfo,
} from "../api/types.ts";
import { configPolicy } from "../drain.ts";
import { ApiError } from "../k8s/client.ts";
import {
  type Cache,
  type Objects,
  STALE_REQUEUE_MS,
  staleWrite,
  type WritableCache,
} from "../k8s/objects.ts";
import { apiTime } from "../k8s/time.ts";
import type { Logger } from "../log.ts";
import { configMetadataPatch } from "./config_migration.ts";
import { deprecationEvents, ipRuleStatus, sameIPRuleStatus } from "./iprule_status.ts";
import type { ControllerMetrics } from "./metrics.ts";
import {
  type Affected,
  ClusterPlan,
  type ConfigChange,
  diffConfig,
  ipRuleEvents,
  type IPRuleReport,
  type PlanEvent,
  type PlanOptions,
  specMatches,
} from "./plan.ts";

/** Queue key of the full resync. */
export const RESYNC_KEY = "resync";
/** Default period of the full resync, ms. */
export const DEFAULT_RESYNC_MS = 5 * 60_000;
/**
 * An IPRule's status waits this long after the change that affected it: a stream of Service
 * changes becomes one status write (and at most one Conflict Event) per IPRule and second, not
 * one per change. The status is a summary (counts, conditions); the configs do not wait.
 */
export const STATUS_DELAY_MS = 1000;
/**
 * Services planned per slice of a resync (per phase): ~10 ms of work (bench:plan plans 10k
 * Services in ~180 ms), after which the events that came meanwhile are handled.
 */
export const RESYNC_SLICE = 500;

/** What a queue key names. */
export type ConfigWork =
  | { kind: "resync" }
  | { kind: "ipruleconfig"; name: string }
  | { kind: "iprule"; name: string }
  | { kind: "service"; name: string };

const PREFIXES = ["ipruleconfig", "iprule", "service"] as const;

/** The queue key of a piece of work. */
export function workKey(work: ConfigWork): string {
  return work.kind === "resync" ? RESYNC_KEY : `${work.kind}/${work.name}`;
}

/** The work a queue key names, undefined for a key that is not the config reconciler's. */
export function parseWorkKey(key: string): ConfigWork | undefined {
  if (key === RESYNC_KEY) return { kind: "resync" };
  const slash = key.indexOf("/");
  const kind = PREFIXES.find((p) => p === key.slice(0, slash));
  return kind && { kind, name: key.slice(slash + 1) };
}

/** The caches a config reconcile reads. */
export interface ConfigCaches {
  services: Cache<ServiceInfo>;
  namespaces: Cache<Readonly<Record<string, string>>>;
  ipRules: WritableCache<IPRule>;
  configs: WritableCache<IPRuleConfig>;
  /** The Agent, for the drain policy. */
  agents: Cache<Agent>;
}

/** The writes a config reconcile makes. */
export interface ConfigWrites {
  configs: Pick<Objects<IPRuleConfig>, "create" | "mergePatch" | "delete">;
  ipRules: Pick<Objects<IPRule>, "mergePatch">;
}

/** Where the planner's events go (an `EventRecorder`). */
export interface EventSink {
  record(events: readonly PlanEvent[]): Promise<void>;
}

/** Options of a `ConfigReconciler`. */
export interface ConfigReconcilerOptions {
  /** The operator's namespace, where the Agent lives. */
  namespace: string;
  /** How long an absent config is kept before it is deleted, ms. */
  graceMs: number;
  /** Period of the full resync, ms (default `DEFAULT_RESYNC_MS`). */
  resyncPeriodMs?: number;
  /** Queues a key, after `delayMs` if given (the work queue's `add` and `addAfter`). */
  enqueue: (key: string, delayMs?: number) => void;
  log: Logger;
  events: EventSink;
  metrics: ControllerMetrics;
  /** Aborts when leadership is lost: a reconcile in progress writes nothing more. */
  leading?: AbortSignal;
  /** Clock (ms since the epoch), for tests. */
  now?: () => number;
  /** Services per slice of a resync's plan (default `RESYNC_SLICE`), for tests. */
  resyncSlice?: number;
  /** What a resync awaits between slices (default: the next turn of the event loop). */
  resyncPause?: () => Promise<void>;
}

/** Result of one reconcile. */
export interface ConfigReconcileResult {
  writes: number;
  /** Run again after this long (stale cache, an absent config's grace period ends), ms. */
  requeueAfterMs?: number;
}

/** Reconciles IPRuleConfigs, IPRule statuses and Service events, one key at a time. */
export class ConfigReconciler {
  readonly api: ConfigWrites;
  readonly caches: ConfigCaches;
  readonly options: ConfigReconcilerOptions;
  /** The plan, once the first resync built it; changes before are covered by that resync. */
  #plan: ClusterPlan | undefined;
  /** The drain policy the last resync planned with (see `agentChanged`). */
  #policyText = "";
  /** What changed while a resync plans in slices: replayed onto its plan before it is taken. */
  #heard: { services: Set<string>; namespaces: Set<string>; ipRules: boolean } | undefined;

  constructor(api: ConfigWrites, caches: ConfigCaches, options: ConfigReconcilerOptions) {
    this.api = api;
    this.caches = caches;
    this.options = options;
  }

  /** Whether every cache has synced; nothing is written before. */
  get synced(): boolean {
    return Object.values(this.caches).every((c) => c.synced);
  }

  /** A Service changed in the cache (`namespace/name`). */
  serviceChanged(key: string): void {
    this.#heard?.services.add(key);
    this.#queue(this.#plan?.setService(key, this.caches.services.store.get(key)));
  }

  /** An IPRule changed in the cache: its status, and what its old and new CIDRs cover. */
  ipRuleChanged(name: string): void {
    if (this.#heard) this.#heard.ipRules = true;
    if (!this.#plan) return;
    this.#queue(this.#plan.setIPRules(this.caches.ipRules.store.values()));
    this.options.enqueue(workKey({ kind: "iprule", name }), STATUS_DELAY_MS);
  }

  /** A Namespace's labels changed. */
  namespaceChanged(name: string): void {
    this.#heard?.namespaces.add(name);
    this.#queue(this.#plan?.namespaceChanged(name));
  }

  /** An IPRuleConfig changed in the cache (not through our own write): look at it again. */
  configChanged(name: string): void {
    if (this.#plan) this.options.enqueue(workKey({ kind: "ipruleconfig", name }));
  }

  /** The Agent changed: when the drain policy changes with it, every config is looked at. */
  agentChanged(): void {
    if (this.#plan && JSON.stringify(this.#policy()) !== this.#policyText) {
      this.options.enqueue(RESYNC_KEY);
    }
  }

  #queue(affected: Affected | undefined): void {
    if (!affected) return;
    const { enqueue } = this.options;
    for (const name of affected.configs) enqueue(workKey({ kind: "ipruleconfig", name }));
    for (const name of affected.services) enqueue(workKey({ kind: "service", name }));
    for (const name of affected.ipRules) {
      enqueue(workKey({ kind: "iprule", name }), STATUS_DELAY_MS);
    }
  }

  #policy(): { withdrawAll: boolean; holdAbsent: boolean } {
    return configPolicy(this.caches.agents.store.get(`${this.options.namespace}/${AGENT_NAME}`));
  }

  #planOptions(now: number): PlanOptions {
    const { withdrawAll, holdAbsent } = this.#policy();
    return { now, graceMs: this.options.graceMs, holdAbsent, withdrawAll };
  }

  /** One reconcile of a queue key. Throws when a write failed for a reason worth a retry. */
  async reconcile(key: string, reconcileID: string): Promise<ConfigReconcileResult> {
    if (!this.synced) throw new Error("Caches not synced");
    const work = parseWorkKey(key);
    if (!work) throw new Error(`Unknown key "${key}"`);
    const log = this.options.log.with({ reconcileID });
    if (work.kind === "resync") return await this.#resync(log);
    // Queued before the first resync (e.g. a retry): that resync covers it.
    if (!this.#plan) return { writes: 0 };
    if (work.kind === "ipruleconfig") {
      return await this.#reconcileConfig(this.#plan, work.name, log);
    }
    if (work.kind === "iprule") return await this.#reconcileIPRule(this.#plan, work.name, log);
    return await this.#reconcileService(this.#plan, work.name);
  }

  async #reconcileConfig(
    plan: ClusterPlan,
    name: string,
    log: Logger,
  ): Promise<ConfigReconcileResult> {
    const clock = this.options.now ?? Date.now;
    const options = this.#planOptions(clock());
    const desired = options.withdrawAll ? undefined : plan.desired(name);
    const diff = diffConfig(name, desired, this.caches.configs.store.get(name), options);
    if (diff.event && !this.options.leading?.aborted) {
      await this.options.events.record([diff.event]);
    }
    const result = await this.#settle(log, name, diff.change && (() => this.#write(diff.change!)));
    if (result.writes > 0) {
      log.info(changeMessage(diff.change!), { kind: "IPRuleConfig", name });
    }
    if (diff.deletionAt !== undefined) {
      const due = Math.max(0, diff.deletionAt - clock());
      result.requeueAfterMs = Math.min(result.requeueAfterMs ?? Infinity, due);
    }
    return result;
  }

  async #reconcileIPRule(
    plan: ClusterPlan,
    name: string,
    log: Logger,
  ): Promise<ConfigReconcileResult> {
    const rule = this.caches.ipRules.store.get(name);
    if (!rule) return { writes: 0 };
    const now = (this.options.now ?? Date.now)();
    const report = plan.report(rule, this.#policy().withdrawAll);
    const status = ipRuleStatus(rule, report, apiTime(now));
    const write = sameIPRuleStatus(rule.status, status) ? undefined : async () => {
      this.caches.ipRules.learn(
        await this.api.ipRules.mergePatch(name, { status }, { subresource: "status" }),
      );
    };
    const result = await this.#settle(log, name, write);
    if (!this.options.leading?.aborted) {
      await this.options.events.record(ruleEvents(rule, report));
    }
    return result;
  }

  async #reconcileService(plan: ClusterPlan, key: string): Promise<ConfigReconcileResult> {
    if (!this.#policy().withdrawAll && !this.options.leading?.aborted) {
      await this.options.events.record(plan.serviceEvents(key));
    }
    return { writes: 0 };
  }

  /**
   * Plans the cluster from scratch, counts where the kept plan disagreed, keeps the fresh plan
   * and queues every key whose object differs from it. The plan is built in slices; what
   * changed meanwhile is replayed onto it, and no event comes between the replay, the comparison
   * and taking the plan.
   */
  async #resync(log: Logger): Promise<ConfigReconcileResult> {
    const { ipRules, configs } = this.caches;
    const fresh = await this.#slicedPlan();
    const now = (this.options.now ?? Date.now)();
    const options = this.#planOptions(now);
    if (this.#plan) {
      const drift = planDrift(this.#plan, fresh, ipRules.store.values());
      if (drift.length > 0) {
        log.warn("Resync found the kept plan out of date", { keys: drift.length, first: drift[0] });
      }
      this.options.metrics.resyncDrift.inc(drift.length);
    }
    this.#plan = fresh;
    this.#policyText = JSON.stringify(this.#policy());

    const { enqueue } = this.options;
    let queued = 0;
    // The plan taken hears every event from here on, and a queued key is reconciled from the
    // caches as they are then: the configs are looked at in slices too.
    const desired = (name: string) => options.withdrawAll ? undefined : fresh.desired(name);
    const slice = this.options.resyncSlice ?? RESYNC_SLICE;
    let looked = 0;
    for (const name of new Set([...fresh.configNames(), ...configs.store.keys()])) {
      const diff = diffConfig(name, desired(name), configs.store.get(name), options);
      if (diff.change || diff.event || diff.deletionAt !== undefined) {
        enqueue(workKey({ kind: "ipruleconfig", name }));
        queued++;
      }
      if (++looked % slice === 0) await (this.options.resyncPause ?? nextTurn)();
    }
    const time = apiTime(now);
    for (const rule of ipRules.store.values()) {
      const report = fresh.report(rule, options.withdrawAll);
      const same = sameIPRuleStatus(rule.status, ipRuleStatus(rule, report, time));
      if (!same || ruleEvents(rule, report).length > 0) {
        enqueue(workKey({ kind: "iprule", name: rule.metadata.name }));
        queued++;
      }
    }
    for (const key of fresh.serviceKeysWithEvents()) {
      enqueue(workKey({ kind: "service", name: key }));
    }
    enqueue(RESYNC_KEY, this.options.resyncPeriodMs ?? DEFAULT_RESYNC_MS);
    log.debug("Resync done", { queued });
    return { writes: 0 };
  }

  /** A plan of the caches from scratch, built in slices, with what changed meanwhile replayed. */
  async #slicedPlan(): Promise<ClusterPlan> {
    const { services, namespaces, ipRules } = this.caches;
    const heard = { services: new Set<string>(), namespaces: new Set<string>(), ipRules: false };
    this.#heard = heard;
    let plan: ClusterPlan;
    try {
      plan = await ClusterPlan.buildInSlices(
        services.store.values(),
        ipRules.store.values(),
        (ns) => namespaces.store.get(ns),
        this.options.resyncSlice ?? RESYNC_SLICE,
        this.options.resyncPause ?? nextTurn,
      );
    } finally {
      this.#heard = undefined;
    }
    if (heard.ipRules) plan.setIPRules(ipRules.store.values());
    for (const namespace of heard.namespaces) plan.namespaceChanged(namespace);
    for (const key of heard.services) plan.setService(key, services.store.get(key));
    return plan;
  }

  #freshPlan(): ClusterPlan {
    const { services, namespaces, ipRules } = this.caches;
    return ClusterPlan.build(
      services.store.values(),
      ipRules.store.values(),
      (ns) => namespaces.store.get(ns),
    );
  }

  /**
   * The keys on which the kept plan differs from a plan of the caches from scratch: the
   * resync's check, without taking the fresh plan (for tests of the incremental path).
   */
  checkPlan(): string[] {
    if (!this.#plan) return [];
    return planDrift(this.#plan, this.#freshPlan(), this.caches.ipRules.store.values());
  }

  /** Runs one write (if any) and sorts its failure: stale cache, rejected, or worth a retry. */
  async #settle(
    log: Logger,
    name: string,
    write: (() => Promise<void>) | undefined,
  ): Promise<ConfigReconcileResult> {
    if (!write || this.options.leading?.aborted) return { writes: 0 };
    try {
      await write();
    } catch (error: unknown) {
      if (staleWrite(error)) {
        // The cache catches up through its watch; look again soon in any case.
        log.debug("Write skipped, cache stale", { name, err: error });
        return { writes: 0, requeueAfterMs: STALE_REQUEUE_MS };
      }
      if (error instanceof ApiError && error.status === 422) {
        log.error("Object rejected by the API server", { name, err: error });
        return { writes: 0 };
      }
      log.error("Write failed", { name, err: error });
      throw new Error(`Write of "${name}" failed`, { cause: error });
    }
    this.options.metrics.apiWrites.inc();
    return { writes: 1 };
  }

  /** One config write; the cache takes in its result at once (see Informer.learn). */
  async #write(change: ConfigChange): Promise<void> {
    const { configs } = this.api;
    if (change.op === "create") {
      this.caches.configs.learn(await configs.create(change.config));
    } else if (change.op === "update") {
      const current = this.caches.configs.store.get(change.name);
      this.caches.configs.learn(
        await configs.mergePatch(change.name, {
          metadata: {
            ...(change.resourceVersion ? { resourceVersion: change.resourceVersion } : {}),
            // A config the original operator wrote leaves its marks in this write.
            ...configMetadataPatch(current),
          },
          spec: specPatch(current?.spec, change.spec),
        }),
      );
    } else {
      await configs.delete(
        change.name,
        change.resourceVersion === undefined ? {} : { resourceVersion: change.resourceVersion },
      );
      this.caches.configs.forget(change.name);
    }
  }
}

/** The next turn of the event loop: timers and I/O that came meanwhile run first. */
function nextTurn(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** The keys on which two plans disagree: desired configs, IPRule reports, Service events. */
export function planDrift(
  kept: ClusterPlan,
  fresh: ClusterPlan,
  ipRules: Iterable<IPRule>,
): string[] {
  const drift: string[] = [];
  for (const name of new Set([...kept.configNames(), ...fresh.configNames()])) {
    const a = kept.desired(name);
    const b = fresh.desired(name);
    if (!a || !b || !specMatches(a, b)) drift.push(workKey({ kind: "ipruleconfig", name }));
  }
  for (const rule of ipRules) {
    if (!sameReport(kept.report(rule), fresh.report(rule))) {
      drift.push(workKey({ kind: "iprule", name: rule.metadata.name }));
    }
  }
  // A Service without events in either plan has the same (none) in both.
  for (const key of new Set([...kept.serviceKeysWithEvents(), ...fresh.serviceKeysWithEvents()])) {
    const a = kept.serviceEvents(key).map((e) => e.note);
    const b = fresh.serviceEvents(key).map((e) => e.note);
    if (a.join("\n") !== b.join("\n")) drift.push(workKey({ kind: "service", name: key }));
  }
  return drift;
}

/** The events an IPRule's reconcile records: the planner's, and a deprecated field in use. */
function ruleEvents(rule: IPRule, report: IPRuleReport): PlanEvent[] {
  return [...ipRuleEvents(report), ...deprecationEvents(rule)];
}

function sameReport(a: IPRuleReport, b: IPRuleReport): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** A merge patch turning `from` into `to` (fields `to` lacks are set to null). */
function specPatch(
  from: IPRuleConfigSpec | undefined,
  to: IPRuleConfigSpec,
): Record<string, unknown> {
  const patch: Record<string, unknown> = { ...to };
  for (const key of Object.keys(from ?? {})) if (!(key in to)) patch[key] = null;
  return patch;
}

function changeMessage(change: ConfigChange): string {
  if (change.op === "create") return "IPRuleConfig created";
  if (change.op === "delete") return "IPRuleConfig deleted";
  return change.spec.state === "absent" ? "IPRuleConfig marked absent" : "IPRuleConfig updated";
}
