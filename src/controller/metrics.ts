/** The controller's Prometheus metrics. */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";

/** Metrics of one controller process. */
export class ControllerMetrics {
  /** Request counts by verb, read at each scrape (the API client's counters). */
  requests: ReadonlyMap<string, number> = new Map();
  readonly registry = ((registry: Registry) => {
    // Process metrics (RSS, heap, event-loop lag), prefixed like the rest.
    collectDefaultMetrics({ register: registry, prefix: "iprule_controller_" });
    return registry;
  })(new Registry());
  readonly reconciles = new Counter({
    name: "iprule_controller_reconciles_total",
    help: "Reconciles by kind and result",
    labelNames: ["kind", "result"] as const,
    registers: [this.registry],
  });
  readonly reconcileSeconds = new Histogram({
    name: "iprule_controller_reconcile_duration_seconds",
    help: "Duration of reconciles by kind",
    labelNames: ["kind"] as const,
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30],
    registers: [this.registry],
  });
  readonly apiWrites = new Counter({
    name: "iprule_controller_api_writes_total",
    help: "Objects written to the API server (configs, statuses)",
    registers: [this.registry],
  });
  readonly configs = new Gauge({
    name: "iprule_controller_ipruleconfigs",
    help: "IPRuleConfigs in the cache by state",
    labelNames: ["state"] as const,
    registers: [this.registry],
  });
  /** API requests by verb; set from the client's counters at each scrape. */
  readonly apiRequests = ((read: () => ReadonlyMap<string, number>) =>
    new Gauge({
      name: "iprule_controller_api_requests",
      help: "API requests made since start, by HTTP verb",
      labelNames: ["verb"] as const,
      registers: [this.registry],
      collect() {
        for (const [verb, n] of read()) this.set({ verb }, n);
      },
    }))(() => this.requests);
  readonly leader = new Gauge({
    name: "iprule_controller_leader",
    help: "1 while this replica holds the leader lease",
    registers: [this.registry],
  });
}
