/**
 * A config reconciler over in-memory API objects, wired as the controller's manager wires it,
 * for the reconciler's unit and property tests.
 *
 * @module
 */
import { MemoryObjects } from "./memory_api.ts";
import { narrowAgent, narrowIPRule, narrowIPRuleConfig } from "../../src/api/narrow.ts";
import type { IPRuleSpec, ServiceInfo } from "../../src/api/types.ts";
import { Logger } from "../../src/log.ts";
import {
  ConfigReconciler,
  type ConfigReconcilerOptions,
  parseWorkKey,
  RESYNC_KEY,
} from "../../src/controller/config_reconciler.ts";
import { ControllerMetrics } from "../../src/controller/metrics.ts";
import type { PlanEvent } from "../../src/controller/plan.ts";

/** The operator's namespace. */
export const NS = "ops";
/** The clock at the start. */
export const NOW = Date.parse("2026-01-01T00:00:00Z");
/** Grace period of absent configs. */
export const GRACE = 60_000;

/** A LoadBalancer Service in `default`. */
export function service(
  name: string,
  lbIP: string | string[],
  clusterIP: string | string[],
  extra: Partial<ServiceInfo> = {},
): ServiceInfo {
  return {
    namespace: "default",
    name,
    labels: {},
    type: "LoadBalancer",
    clusterIPs: [clusterIP].flat(),
    ingressIPs: [lbIP].flat(),
    hostnameOnlyIngress: 0,
    ...extra,
  };
}

/**
 * A config reconciler over memory objects with an Agent installed, wired as the manager wires
 * it: cache changes call its routing methods, and `run()` works off the queue as the workers do
 * (keys due now or within an IPRule status delay; later ones wait for `advance`).
 */
export function setup(extra: Partial<ConfigReconcilerOptions> = {}) {
  const configs = new MemoryObjects("ipruleconfigs", narrowIPRuleConfig, {
    statusSubresource: false,
  });
  const ipRules = new MemoryObjects("iprules", narrowIPRule);
  const agents = new MemoryObjects("agents", narrowAgent, { namespace: NS });
  // A finalizer as a foreground deletion sets it: a deletion leaves the Agent being deleted.
  agents.put({ metadata: { name: "agent", namespace: NS, finalizers: ["foregroundDeletion"] } });
  const services = new Map<string, ServiceInfo>();
  const namespaces = new Map<string, Record<string, string>>();
  // The caches report their changes to the reconciler, built after them (it reads them).
  const routed: { to?: ConfigReconciler } = {};
  const caches = {
    services: { synced: true, store: services },
    namespaces: { synced: true, store: namespaces },
    ipRules: ipRules.cache((key) => routed.to?.ipRuleChanged(key)),
    configs: configs.cache((key) => routed.to?.configChanged(key)),
    agents: agents.cache(() => routed.to?.agentChanged()),
  };
  const events: PlanEvent[] = [];
  const logs: Record<string, unknown>[] = [];
  const clock = { now: NOW };
  /** Keys waiting, with the time they are due. */
  const queued = new Map<string, number>();
  /** Every key reconciled, in order. */
  const reconciled: string[] = [];
  const metrics = new ControllerMetrics();
  const reconciler = new ConfigReconciler({ configs, ipRules }, caches, {
    namespace: NS,
    graceMs: GRACE,
    enqueue: (key, delayMs = 0) => {
      const due = clock.now + delayMs;
      if ((queued.get(key) ?? Infinity) > due) queued.set(key, due);
    },
    log: new Logger({ level: "debug", sink: (line) => logs.push(JSON.parse(line)) }),
    events: {
      record: (e) => {
        events.push(...e);
        return Promise.resolve();
      },
    },
    metrics,
    now: () => clock.now,
    ...extra,
  });
  routed.to = reconciler;

  /**
   * Works off the keys due by now, in the order they are due, and the IPRule status keys at
   * once (their delay only batches changes); returns the writes made. Later keys (grace periods,
   * stale-cache retries) wait for `advance`.
   */
  const run = async () => {
    let writes = 0;
    for (;;) {
      const runnable = [...queued].filter(([key, due]) =>
        due <= clock.now || parseWorkKey(key)?.kind === "iprule"
      );
      const [next] = runnable.sort(([, a], [, b]) => a - b);
      if (!next) return writes;
      const [key] = next;
      queued.delete(key);
      reconciled.push(key);
      const result = await reconciler.reconcile(key, "test");
      writes += result.writes;
      if (result.requeueAfterMs !== undefined) {
        queued.set(key, Math.min(queued.get(key) ?? Infinity, clock.now + result.requeueAfterMs));
      }
    }
  };
  const ipRule = (name: string, cidr: string, table: number, spec: Partial<IPRuleSpec> = {}) => {
    ipRules.put({ metadata: { name }, spec: { cidrs: [cidr], table, priority: 1000, ...spec } });
    caches.ipRules.sync();
  };
  const setService = (svc: ServiceInfo) => {
    const key = `${svc.namespace}/${svc.name}`;
    services.set(key, svc);
    reconciler.serviceChanged(key);
  };
  const deleteService = (key: string) => {
    services.delete(key);
    reconciler.serviceChanged(key);
  };
  const setLabels = (namespace: string, labels: Record<string, string> | undefined) => {
    if (labels) namespaces.set(namespace, labels);
    else namespaces.delete(namespace);
    reconciler.namespaceChanged(namespace);
  };
  /** The first resync, as the manager queues it once the caches synced. */
  const start = () => {
    queued.set(RESYNC_KEY, clock.now);
    return run();
  };
  const advance = (ms: number) => (clock.now += ms);
  const sync = () => Object.values(caches).forEach((c) => "sync" in c && c.sync());
  const errors = () => logs.filter((l) => l.level === "error");
  const drift = async () => (await metrics.resyncDrift.get()).values[0]?.value ?? 0;
  return {
    reconciler,
    configs,
    ipRules,
    agents,
    services,
    namespaces,
    caches,
    events,
    logs,
    queued,
    reconciled,
    clock,
    metrics,
    run,
    start,
    advance,
    ipRule,
    setService,
    deleteService,
    setLabels,
    sync,
    errors,
    drift,
  };
}
