/**
 * Wires the controller: informers feeding one work queue, the config and Agent reconcilers,
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
import { ConfigReconciler } from "./config_reconciler.ts";
import { DAEMONSET_NAME } from "./daemonset.ts";
import { EventRecorder } from "./events.ts";
import { LeaderElector } from "./leader.ts";
import { ControllerMetrics } from "./metrics.ts";
import { WorkQueue } from "./workqueue.ts";

/** Queue key of the reconcile of every IPRuleConfig and IPRule status. */
export const CONFIGS_KEY = "configs";
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

async function reconcileWhileLeading(
  client: KubeClient,
  options: ControllerOptions,
  log: Logger,
  metrics: ControllerMetrics,
  signal: AbortSignal,
  onSynced: () => void,
): Promise<void> {
  const queue = new WorkQueue();
  const informer = <T>(
    name: string,
    keys: string[],
    o: Omit<InformerOptions<T>, "onChange" | "onInvalid" | "onError">,
    /** Changes for which this returns false queue nothing. */
    relevant: (key: string, obj: T | undefined) => boolean = () => true,
  ) =>
    new Informer<T>(client, {
      ...o,
      onChange: (key, obj) => {
        if (relevant(key, obj)) keys.forEach((k) => queue.add(k));
      },
      onInvalid: (err) => log.warn("Object skipped", { informer: name, err }),
      onError: (err, delayMs) => log.warn("List/watch failed", { informer: name, err, delayMs }),
    });
  const ns = { namespace: options.namespace };
  // The Agent reconcile reads counts kept per event: its key is queued only when one changed.
  const tally = new AgentTally();
  const configChanged = (key: string, config: IPRuleConfig | undefined) => {
    if (tally.config(key, config)) queue.add(AGENT_KEY);
  };
  // Our own config writes need no reconcile of their own: the reconciler puts their results in
  // the cache (Informer.learn), so their watch events change nothing; the tally hears of them
  // through the cache the config reconciler writes to.
  const configs = informer("ipruleconfigs", [CONFIGS_KEY], typed("ipRuleConfigs"), (key, c) => {
    configChanged(key, c);
    return true;
  });
  const agentsCache = informer("agents", [AGENT_KEY, CONFIGS_KEY], {
    ...typed("agents"),
    ...ns,
  });
  const ruleGenerations = new Map<string, number | undefined>();
  const configCaches = {
    services: informer("services", [CONFIGS_KEY], typed("services")),
    namespaces: informer("namespaces", [CONFIGS_KEY], typed("namespaces")),
    ipRules: informer("iprules", [CONFIGS_KEY], typed("ipRules"), (key, rule) => {
      // Status writes do not change the generation: only spec changes and deletions matter.
      const generation = rule?.metadata.deletionTimestamp ? -1 : rule?.metadata.generation;
      const seen = ruleGenerations.has(key) && ruleGenerations.get(key) === generation;
      if (rule) ruleGenerations.set(key, generation);
      else ruleGenerations.delete(key);
      return !(rule && seen);
    }),
    configs,
    agents: agentsCache,
  };
  const agentCaches = {
    agents: agentsCache,
    daemonSets: informer("daemonsets", [AGENT_KEY], {
      ...typed("daemonSets"),
      ...ns,
      fieldSelector: `metadata.name=${DAEMONSET_NAME}`,
    }),
    nodes: informer("nodes", [AGENT_KEY], typed("nodes"), (key, n) => tally.node(key, n)),
    nodeStates: informer(
      "iprulenodestates",
      [AGENT_KEY],
      typed("ipRuleNodeStates"),
      (key, state) => tally.nodeState(key, state),
    ),
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
    { ...configCaches, configs: reportingCache(configs, configChanged) },
    {
      ...ns,
      graceMs: options.gracePeriodMs,
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
  metrics.queueLength = () => queue.length;
  metrics.stateSource = () => ({
    agents: agentCaches.agents.store.values(),
    nodes: agentCaches.nodes.store.values(),
    nodeStates: agentCaches.nodeStates.store,
    ipRules: configCaches.ipRules.store.values(),
    ...daemonSetCounts(agentCaches.daemonSets.store.values()),
  });
  signal.addEventListener("abort", () => {
    metrics.queueLength = () => 0;
    metrics.stateSource = undefined;
  }, { once: true });
  onSynced();
  queue.add(CONFIGS_KEY);
  queue.add(AGENT_KEY);

  await queue.run(async (key) => {
    const id = reconcileID();
    const end = metrics.reconcileSeconds.startTimer({ kind: key });
    try {
      if (key === CONFIGS_KEY) {
        const result = await configReconciler.reconcile(id);
        if (result.requeueAfterMs !== undefined) queue.addAfter(key, result.requeueAfterMs);
        let present = 0;
        for (const c of configs.store.values()) if (c.spec.state === "present") present++;
        metrics.configs.set({ state: "present" }, present);
        metrics.configs.set({ state: "absent" }, configs.store.size - present);
      } else {
        const delay = await agents.reconcile(id);
        if (delay !== undefined) queue.addAfter(key, delay);
      }
      metrics.reconciles.inc({ kind: key, result: "success" });
    } catch (err: unknown) {
      metrics.reconciles.inc({ kind: key, result: "error" });
      throw err;
    } finally {
      end();
    }
  }, {
    workers: 2,
    signal,
    onError: (key, err, delayMs) => log.error("Reconcile failed", { key, err, delayMs }),
  });
  await Promise.all(running);
}
