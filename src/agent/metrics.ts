/**
 * The agent's Prometheus metrics. prom-client's metric classes are imported from their own
 * modules: its package entry also loads the cluster aggregator, push gateway, summaries and
 * default process metrics (~5 MB of RSS under Deno) that the agent does not use.
 */
import type * as Prom from "prom-client";
import { apiRequestsGauge, apiResponsesCounter } from "../metrics/api_metrics.ts";
import CounterModule from "prom-client/lib/counter.js";
import GaugeModule from "prom-client/lib/gauge.js";
import HistogramModule from "prom-client/lib/histogram.js";
import RegistryModule from "prom-client/lib/registry.js";

const Counter = CounterModule as typeof Prom.Counter;
const Gauge = GaugeModule as typeof Prom.Gauge;
const Histogram = HistogramModule as typeof Prom.Histogram;
const Registry = RegistryModule as typeof Prom.Registry;

/** Metrics of one agent process. */
export class AgentMetrics {
  /** Request counts by verb, read at each scrape (the API client's counters). */
  requests: ReadonlyMap<string, number> = new Map();
  readonly registry = new Registry();
  readonly reconciles = new Counter({
    name: "iprule_agent_reconciles_total",
    help:
      "Reconciles by trigger (start, watch, kernel, resync) and result (converged, failed, error)",
    labelNames: ["trigger", "result"] as const,
    registers: [this.registry],
  });
  readonly reconcileSeconds = new Histogram({
    name: "iprule_agent_reconcile_duration_seconds",
    help: "Duration of reconciles: kernel dump, plan and apply",
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [this.registry],
  });
  readonly desiredRules = new Gauge({
    name: "iprule_agent_desired_rules",
    help: "Rules the present IPRuleConfigs ask for on this node",
    registers: [this.registry],
  });
  readonly appliedRules = new Gauge({
    name: "iprule_agent_applied_rules",
    help: "Desired rules present in the kernel after the last reconcile",
    registers: [this.registry],
  });
  readonly failedRules = new Gauge({
    name: "iprule_agent_failed_rules",
    help: "Rules that failed in the last reconcile (refused configs included)",
    registers: [this.registry],
  });
  readonly ruleChanges = new Counter({
    name: "iprule_agent_rule_changes_total",
    help: "Rules added and deleted by the agent, by operation",
    labelNames: ["op"] as const,
    registers: [this.registry],
  });
  readonly driftRepairs = new Counter({
    name: "iprule_agent_drift_repairs_total",
    help: "Rules added or deleted to undo a change someone else made in the kernel",
    registers: [this.registry],
  });
  readonly kernelEvents = new Counter({
    name: "iprule_agent_kernel_events_total",
    help: "Rule events from the kernel by type (added, deleted, resync) and origin (self, other)",
    labelNames: ["type", "origin"] as const,
    registers: [this.registry],
  });
  readonly apiResponses = apiResponsesCounter("iprule_agent", this.registry);
  /** Records one API response (KubeClient.observer). */
  observeRequest(method: string, status: number): void {
    this.apiResponses.inc({ verb: method, code: String(status) });
  }
  /** The agent's readiness, read at each scrape. */
  readiness: () => { ready: boolean } = () => ({ ready: false });
  readonly ready = ((read: () => { ready: boolean }) =>
    new Gauge({
      name: "iprule_agent_ready",
      help: "1 while the cache is synced, the API reachable and the last reconcile converged",
      registers: [this.registry],
      collect() {
        this.set(read().ready ? 1 : 0);
      },
    }))(() => this.readiness());
  /** API requests by verb; set from the client's counters at each scrape. */
  readonly apiRequests = apiRequestsGauge("iprule_agent", this.registry, () => this.requests);
}
