/**
 * The IPRuleConfig reconcile: reads the informer caches, asks the planner for the whole
 * desired set, writes only the difference, then IPRule statuses and Events. Level-based: it
 * never looks at which event woke it, and an interrupted run is finished by the next one.
 * While the Agent is being uninstalled, the drain module's policy withdraws every config.
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
import { runLimited } from "../k8s/run_limited.ts";
import { apiTime } from "../k8s/time.ts";
import type { Logger } from "../log.ts";
import { configMetadataPatch } from "./config_migration.ts";
import { deprecationEvents, ipRuleStatus, sameIPRuleStatus } from "./iprule_status.ts";
import type { ControllerMetrics } from "./metrics.ts";
import { type ConfigChange, planConfigs, type PlanEvent, PlanMemo } from "./plan.ts";

/** Parallel API writes of one reconcile. */
const WRITE_CONCURRENCY = 16;

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
  log: Logger;
  events: EventSink;
  metrics: ControllerMetrics;
  /** Aborts when leadership is lost: a reconcile in progress writes nothing more. */
  leading?: AbortSignal;
  /** Clock (ms since the epoch), for tests. */
  now?: () => number;
}

/** Result of one config reconcile. */
export interface ConfigReconcileResult {
  writes: number;
  /** Run again after this long (an absent config's grace period ends), ms. */
  requeueAfterMs?: number;
}

/** Reconciles every IPRuleConfig and IPRule status at once. */
export class ConfigReconciler {
  readonly #memo = new PlanMemo();
  readonly api: ConfigWrites;
  readonly caches: ConfigCaches;
  readonly options: ConfigReconcilerOptions;

  constructor(api: ConfigWrites, caches: ConfigCaches, options: ConfigReconcilerOptions) {
    this.api = api;
    this.caches = caches;
    this.options = options;
  }

  /** Whether every cache has synced; nothing is written before. */
  get synced(): boolean {
    return Object.values(this.caches).every((c) => c.synced);
  }

  /** One reconcile pass. Throws when a write failed for a reason worth a retry. */
  async reconcile(reconcileID: string): Promise<ConfigReconcileResult> {
    const log = this.options.log.with({ reconcileID });
    if (!this.synced) throw new Error("Caches not synced");
    const clock = this.options.now ?? Date.now;
    const now = clock();
    const policy = configPolicy(
      this.caches.agents.store.get(`${this.options.namespace}/${AGENT_NAME}`),
    );
    const ipRules = [...this.caches.ipRules.store.values()];
    const plan = planConfigs(
      {
        services: policy.withdrawAll ? [] : [...this.caches.services.store.values()],
        ipRules,
        configs: [...this.caches.configs.store.values()],
        namespaceLabels: this.caches.namespaces.store,
      },
      { now, graceMs: this.options.graceMs, holdAbsent: policy.holdAbsent },
      this.#memo,
    );

    let writes = 0;
    const failures: { item: { name: string }; error: unknown }[] = await runLimited(
      plan.changes,
      WRITE_CONCURRENCY,
      async (change) => {
        if (this.options.leading?.aborted) return;
        await this.#write(change);
        writes++;
        log.info(changeMessage(change), { kind: "IPRuleConfig", name: change.name });
      },
    );

    const time = apiTime(now);
    const byName = new Map(ipRules.map((r) => [r.metadata.name, r]));
    const statusWrites = plan.ipRules.flatMap((report) => {
      const rule = byName.get(report.name);
      if (!rule) return [];
      const status = ipRuleStatus(rule, report, time);
      return sameIPRuleStatus(rule.status, status) ? [] : [{ name: report.name, status }];
    });
    failures.push(
      ...await runLimited(statusWrites, WRITE_CONCURRENCY, async ({ name, status }) => {
        if (this.options.leading?.aborted) return;
        this.caches.ipRules.learn(
          await this.api.ipRules.mergePatch(name, { status }, { subresource: "status" }),
        );
        writes++;
      }),
    );
    if (!this.options.leading?.aborted) {
      await this.options.events.record([...plan.events, ...deprecationEvents(ipRules)]);
    }
    this.options.metrics.apiWrites.inc(writes);

    let stale = false;
    let failed = 0;
    for (const { item: { name }, error } of failures) {
      if (staleWrite(error)) {
        log.debug("Write skipped, cache stale", { name, err: error });
        stale = true;
      } else if (error instanceof ApiError && error.status === 422) {
        log.error("Object rejected by the API server", { name, err: error });
      } else {
        log.error("Write failed", { name, err: error });
        failed++;
      }
    }
    if (failed > 0) throw new Error(`${failed} write(s) failed`);
    const result: ConfigReconcileResult = { writes };
    // A stale cache catches up through its watch; look again soon in any case.
    if (stale) result.requeueAfterMs = STALE_REQUEUE_MS;
    if (plan.nextDeletionAt !== undefined) {
      const due = Math.max(0, plan.nextDeletionAt - clock());
      result.requeueAfterMs = Math.min(result.requeueAfterMs ?? Infinity, due);
    }
    return result;
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
