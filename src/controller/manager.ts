/**
 * Wires the controller: informers feeding the work queues (configs, summaries), the config and Agent reconcilers,
 * leader election, the health endpoint. Nothing is reconciled before every cache has synced.
 */
import { objectClient, typed } from "../api/clients.ts";
import type { DaemonSetInfo, IPRuleConfig } from "../api/types.ts";
import type { ControllerOptions } from "./flags.ts";
import { type Endpoints, endpointsLog, startEndpoints } from "../metrics/endpoints.ts";
import type { EarlyHealth } from "../health_server.ts";
import { KubeClient } from "../k8s/client.ts";
import { reportingCache } from "../k8s/objects.ts";
import { Informer, type InformerOptions } from "../k8s/informer.ts";
import type { Logger } from "../log.ts";
import { AgentReconciler } from "./agent_reconciler.ts";
import { AgentTally } from "./agent_tally.ts";
import { ConfigReconciler, parseWorkKey, RESYNC_KEY } from "./config_reconciler.ts";
import { DAEMONSET_NAME } from "./daemonset.ts";
import { EventRecorder } from "./events.ts";
import { LeaderElector } from "./leader.ts";
import { ControllerMetrics } from "./metrics.ts";
import { ControllerQueues } from "./queues.ts";

/** Queue key of the Agent reconcile. */
export const AGENT_KEY = "agent";
/** Name of the leader Lease. */
export const LEASE_NAME = "ip-rule-operator-controller";

/** The agents' DaemonSet counts for the state metrics, when the DaemonSet exists. */
function daemonSetCounts(
  daemonSets: Iterable<DaemonSetInfo>,
): { daemonSet?: DaemonSetInfo["counts"] } {
  const [ds] = daemonSets;
  return ds === undefined ? {} : { daemonSet: ds.counts };
}

/** A random id for one reconcile, for the logs. */
function reconcileID(): string {
  return crypto.randomUUID().slice(0, 8);
}

/**
 * Runs the controller until the signal aborts; returns the exit code: 0 after a shutdown, 1 when
 * it cannot start or lost leadership (Kubernetes then restarts a clean standby).
 */
export async function runController(
  options: ControllerOptions,
  log: Logger,
  signal: AbortSignal,
  parts: { health?: EarlyHealth } = {},
): Promise<number> {
  const client = await KubeClient.connectOrReport(options.kubeconfig, log);
  if (client === undefined) return 1;
  const metrics = new ControllerMetrics();
  metrics.requests = client.requests;
  client.observer = (method, status, seconds) => metrics.observeRequest(method, status, seconds);
  let state: "standby" | "syncing" | "ready" = "standby";
  // The endpoints stop with the process: at a shutdown, and when the lease is lost (the
  // process exits then, and would otherwise wait on its servers forever).
  const exiting = new AbortController();
  let endpoints: Endpoints;
  try {
    endpoints = await startEndpoints(options, {
      registry: metrics.registry,
      readiness: () => ({ ready: state !== "syncing", reason: state }),
      client,
      certNames: [Deno.hostname(), "localhost"],
      onReviewError: (reason) => log.warn("Metrics request refused", { reason }),
      ...(parts.health === undefined ? {} : { health: parts.health }),
      signal: AbortSignal.any([signal, exiting.signal]),
    });
  } catch (error: unknown) {
    client.close();
    log.error("Endpoints not started", {
      err: error,
      metricsAddr: options.metricsAddr,
      healthAddr: options.healthAddr,
    });
    return 1;
  }
  log.info("Controller started", { ...endpointsLog(endpoints), namespace: options.namespace });
  const identity = `${Deno.env.get("POD_NAME") ?? Deno.hostname()}_${
    crypto.randomUUID().slice(0, 8)
  }`;

  const lead = async (leading: AbortSignal) => {
    state = "syncing";
    await reconcileWhileLeading(client, options, log, metrics, leading, () => (state = "ready"));
  };
  try {
    if (options.leaderElect) {
      await new LeaderElector(objectClient(client, "leases", options.namespace), {
        namespace: options.namespace,
        leaseName: LEASE_NAME,
        identity,
        leaseDurationMs: options.leaseDurationMs,
        log,
        onChange: (leading) => metrics.leader.set(leading ? 1 : 0),
      }).run(signal, lead);
      // Leadership lost without a shutdown: exit so that Kubernetes restarts a clean standby.
      if (!signal.aborted) {
        log.info("Exiting after the lost lease, so that a clean standby starts");
        return 1;
      }
    } else {
      metrics.leader.set(1);
      await lead(signal);
    }
    return 0;
  } finally {
    exiting.abort();
    client.close();
    await endpoints.finished;
  }
}

/** The metrics label of a queue key's reconcile. */
function keyKind(key: string): string {
  return key === AGENT_KEY ? AGENT_KEY : parseWorkKey(key)?.kind ?? "unknown";
}

async function reconcileWhileLeading(
  client: KubeClient,
  options: ControllerOptions,
  log: Logger,
  metrics: ControllerMetrics,
  signal: AbortSignal,
  onSynced: () => void,
): Promise<void> {
  const queues = new ControllerQueues();
  const informer = <T>(
    name: string,
    o: Omit<InformerOptions<T>, "onChange" | "onInvalid" | "onError">,
    /** What a change of one object queues. */
    onChange: (key: string, obj: T | undefined) => void,
  ) =>
    new Informer<T>(client, {
      ...o,
      onChange,
      onInvalid: (err) => log.warn("Object skipped", { informer: name, err }),
      onError: (err, delayMs) => log.warn("List/watch failed", { informer: name, err, delayMs }),
    });
  const ns = { namespace: options.namespace };
  // The Agent reconcile reads counts kept per event: its key is queued only when one changed.
  const tally = new AgentTally();
  const toAgent = () => queues.add(AGENT_KEY);
  const configCounted = (key: string, config: IPRuleConfig | undefined) => {
    if (tally.config(key, config)) toAgent();
  };
  // The informers' changes go to the config reconciler (declared below; the informers call
  // back only once they run), which updates its plan and queues the keys a change affected.
  // Our own config writes need no reconcile of their own: the reconciler puts their results in
  // the cache (Informer.learn), so their watch events change nothing; the tally hears of them
  // through the cache the config reconciler writes to.
  const configs = informer("ipruleconfigs", typed("ipRuleConfigs"), (key, config) => {
    configCounted(key, config);
    configReconciler.configChanged(key);
  });
  const agentsCache = informer("agents", { ...typed("agents"), ...ns }, () => {
    toAgent();
    configReconciler.agentChanged();
  });
  const configCaches = {
    services: informer(
      "services",
      typed("services"),
      (key) => configReconciler.serviceChanged(key),
    ),
    namespaces: informer(
      "namespaces",
      typed("namespaces"),
      (key) => configReconciler.namespaceChanged(key),
    ),
    ipRules: informer("iprules", typed("ipRules"), (key) => configReconciler.ipRuleChanged(key)),
    configs,
    agents: agentsCache,
  };
  const agentCaches = {
    agents: agentsCache,
    daemonSets: informer("daemonsets", {
      ...typed("daemonSets"),
      ...ns,
      fieldSelector: `metadata.name=${DAEMONSET_NAME}`,
    }, toAgent),
    nodes: informer("nodes", typed("nodes"), (key, node) => {
      if (tally.node(key, node)) toAgent();
    }),
    nodeStates: informer("iprulenodestates", typed("ipRuleNodeStates"), (key, state) => {
      if (tally.nodeState(key, state)) toAgent();
    }),
    configs,
  };
  const events = new EventRecorder(client, Deno.env.get("POD_NAME") ?? Deno.hostname(), log);
  const agents = new AgentReconciler(
    {
      agents: objectClient(client, "agents", options.namespace),
      daemonSets: objectClient(client, "daemonSets", options.namespace),
      nodeStates: objectClient(client, "ipRuleNodeStates"),
    },
    agentCaches,
    {
      ...ns,
      agentImage: options.agentImage,
      tally,
      statusIntervalMs: options.agentStatusIntervalMs,
      log,
      events,
    },
  );
  const configReconciler = new ConfigReconciler(
    {
      configs: objectClient(client, "ipRuleConfigs"),
      ipRules: objectClient(client, "ipRules"),
    },
    { ...configCaches, configs: reportingCache(configs, configCounted) },
    {
      ...ns,
      graceMs: options.gracePeriodMs,
      resyncPeriodMs: options.resyncPeriodMs,
      enqueue: (key, delayMs) => queues.add(key, delayMs),
      log,
      events,
      metrics,
      leading: signal,
    },
  );

  const all = [...new Set([...Object.values(configCaches), ...Object.values(agentCaches)])];
  const running = all.map((i) => (i as Informer<unknown>).run(signal));
  await Promise.all(all.map((i) => (i as Informer<unknown>).whenSynced(signal)));
  if (signal.aborted) return void await Promise.all(running);
  log.info("Caches synced", { informers: all.length });
  metrics.queueLength = () => queues.length;
  metrics.configSource = () => configs.store.values();
  metrics.stateSource = () => ({
    agents: agentCaches.agents.store.values(),
    nodes: agentCaches.nodes.store.values(),
    nodeStates: agentCaches.nodeStates.store,
    ipRules: configCaches.ipRules.store.values(),
    ...daemonSetCounts(agentCaches.daemonSets.store.values()),
  });
  signal.addEventListener("abort", () => {
    metrics.queueLength = () => 0;
    metrics.configSource = () => [];
    metrics.stateSource = undefined;
  }, { once: true });
  onSynced();
  // The first resync builds the plan; from then on each change queues the keys it affected.
  queues.add(RESYNC_KEY);
  queues.add(AGENT_KEY);

  const reconcile = async (key: string) => {
    const id = reconcileID();
    const kind = keyKind(key);
    const end = metrics.reconcileSeconds.startTimer({ kind });
    try {
      if (key === AGENT_KEY) {
        const delay = await agents.reconcile(id);
        if (delay !== undefined) queues.add(key, delay);
      } else {
        const result = await configReconciler.reconcile(key, id);
        if (result.requeueAfterMs !== undefined) queues.add(key, result.requeueAfterMs);
      }
      metrics.reconciles.inc({ kind, result: "success" });
    } catch (err: unknown) {
      metrics.reconciles.inc({ kind, result: "error" });
      throw err;
    } finally {
      end();
    }
  };
  const onError = (key: string, err: unknown, delayMs: number) =>
    log.error("Reconcile failed", { key, err, delayMs });
  await queues.run(reconcile, { signal, onError });
  await Promise.all(running);
}
