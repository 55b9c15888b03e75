/**
 * The IPRuleConfig reconcile: reads the informer caches, asks the planner for the whole
 * desired set, writes only the difference, then IPRule statuses and Events. Level-based: it
 * never looks at which event woke it, and an interrupted run is finished by the next one.
 */
import type { IPRule, IPRuleConfig, IPRuleConfigSpec, ServiceInfo } from "../api/types.ts";
import { ApiError, type KubeClient } from "../k8s/client.ts";
import type { Informer } from "../k8s/informer.ts";
import { RESOURCES } from "../k8s/resources.ts";
import { apiTime } from "../k8s/time.ts";
import type { Logger } from "../log.ts";
import { type ConfigChange, planConfigs, PlanMemo } from "./plan.ts";
import { runLimited } from "../k8s/run_limited.ts";
import type { EventRecorder } from "./events.ts";
import { ipRuleStatus, sameIPRuleStatus } from "./iprule_status.ts";
import type { ControllerMetrics } from "./metrics.ts";

/** Parallel API writes of one reconcile. */
const WRITE_CONCURRENCY = 16;
/** Delay before looking again after a write found the cache stale (409/404), ms. */
const STALE_REQUEUE_MS = 1000;

/** The caches a config reconcile reads. */
export interface ConfigCaches {
  services: Informer<ServiceInfo>;
  namespaces: Informer<Readonly<Record<string, string>>>;
  ipRules: Informer<IPRule>;
  configs: Informer<IPRuleConfig>;
}

/** Result of one reconcile. */
export interface ReconcileResult {
  writes: number;
  /** Run again after this long (an absent config's grace period ends), ms. */
  requeueAfterMs?: number;
}

/** Reconciles every IPRuleConfig and IPRule status at once. */
export class ConfigReconciler {
  readonly #memo = new PlanMemo();
  constructor(
    readonly client: KubeClient,
    readonly caches: ConfigCaches,
    readonly options: {
      graceMs: number;
      log: Logger;
      events: EventRecorder;
      metrics: ControllerMetrics;
      /** While true (the Agent is being deleted), every config is planned absent. */
      draining: () => boolean;
      /** While true (no Agent exists), absent configs stay absent. */
      holdAbsent: () => boolean;
      /** Aborts when leadership is lost: a reconcile in progress writes nothing more. */
      leading?: AbortSignal;
    },
  ) {}

  /** Whether every cache has synced; nothing is written before. */
  get synced(): boolean {
    return Object.values(this.caches).every((c) => c.synced);
  }

  /** One reconcile pass. Throws when a write failed for a reason worth a retry. */
  async reconcile(reconcileID: string): Promise<ReconcileResult> {
    const log = this.options.log.with({ reconcileID });
    if (!this.synced) throw new Error("Caches not synced");
    const now = Date.now();
    const draining = this.options.draining();
    const ipRules = [...this.caches.ipRules.store.values()];
    const plan = planConfigs(
      {
        services: draining ? [] : [...this.caches.services.store.values()],
        ipRules,
        configs: [...this.caches.configs.store.values()],
        namespaceLabels: this.caches.namespaces.store,
      },
      { now, graceMs: this.options.graceMs, holdAbsent: this.options.holdAbsent() },
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
        await this.client.mergePatch(RESOURCES.ipRules, name, { status }, {
          subresource: "status",
        });
        writes++;
      }),
    );
    if (!this.options.leading?.aborted) await this.options.events.record(plan.events);
    this.options.metrics.apiWrites.inc(writes);

    let stale = false;
    let failed = 0;
    for (const { item: { name }, error } of failures) {
      if (error instanceof ApiError && (error.status === 409 || error.status === 404)) {
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
    const result: ReconcileResult = { writes };
    // A stale cache catches up through its watch; look again soon in any case.
    if (stale) result.requeueAfterMs = STALE_REQUEUE_MS;
    if (plan.nextDeletionAt !== undefined) {
      const due = Math.max(0, plan.nextDeletionAt - Date.now());
      result.requeueAfterMs = Math.min(result.requeueAfterMs ?? Infinity, due);
    }
    return result;
  }

  /** The cache takes in our write's result at once (see Informer.learn). */
  #remember(written: Record<string, unknown>): void {
    this.caches.configs.learn(written);
  }

  async #write(change: ConfigChange): Promise<void> {
    const resource = RESOURCES.ipRuleConfigs;
    if (change.op === "create") {
      this.#remember(
        await this.client.create(resource, change.config as unknown as Record<string, unknown>),
      );
    } else if (change.op === "update") {
      const current = this.caches.configs.store.get(change.name);
      this.#remember(
        await this.client.mergePatch(resource, change.name, {
          metadata: change.resourceVersion ? { resourceVersion: change.resourceVersion } : {},
          spec: specPatch(current?.spec, change.spec),
        }),
      );
    } else {
      await this.client.delete(
        resource,
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
