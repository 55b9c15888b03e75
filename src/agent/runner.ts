/**
 * Wires the agent: host checks, the netlink socket, the IPRuleConfig informer, the node agent
 * (src/agent/node_agent.ts: the control loop and its states), the kernel's rule events, the
 * IPRuleNodeState writer, what the stop's drain decision reads (stop_signals.ts), and the
 * metrics and health endpoints. Flags → parts → start → wait → finish.
 */
import { LibmnlLoadError, RuleSocket } from "../../ffi/mod.ts";
import { objectClient } from "../api/clients.ts";
import { narrowIPRuleConfig } from "../api/narrow.ts";
import type { EarlyHealth } from "../health_server.ts";
import { KubeClient } from "../k8s/client.ts";
import { Informer, objectKey } from "../k8s/informer.ts";
import { type Endpoints, endpointsLog, startEndpoints } from "../metrics/endpoints.ts";
import { RESOURCES } from "../k8s/resources.ts";
import type { Logger } from "../log.ts";
import { VERSION } from "../version.ts";
import type { AgentOptions } from "./flags.ts";
import { hostWarnings, readHost } from "./host_checks.ts";
import { watchKernel } from "./kernel_events.ts";
import { AgentMetrics } from "./metrics.ts";
import { NET_ADMIN_HINT, NodeAgent } from "./node_agent.ts";
import { NodeStateWriter } from "./node_state.ts";
import { StopSignals } from "./stop_signals.ts";
import { checkPermission, PermissionError, type RuleReconcileResult } from "./reconciler.ts";
import { type ConfigRule, configRuleOf, planCommands } from "./rule_plan.ts";

/** Environment variable: where the host's root is mounted, for the host checks (default "/"). */
export const HOST_ROOT_ENV = "IPRULE_HOST_ROOT";

/** Where the agent writes the --dry-run plan; stdout by default. */
export type PlanSink = (line: string) => void;

/** What the entry point hands the agent besides its options. */
export interface AgentParts {
  /** Where --dry-run prints its plan (default stdout). */
  print?: PlanSink;
  /** The health endpoint, started before this module loaded (not with --once or --dry-run). */
  health?: EarlyHealth;
}

/** Runs the agent until the signal aborts (or once); returns the exit code. */
export async function runAgent(
  options: AgentOptions,
  baseLog: Logger,
  signal: AbortSignal,
  parts: AgentParts = {},
): Promise<number> {
  const print = parts.print ?? console.log;
  const log = baseLog.with({ node: options.nodeName });
  const { protocol } = options;
  const oneShot = options.once || options.dryRun;

  for (const warning of hostWarnings(readHost(Deno.env.get(HOST_ROOT_ENV) || "/"))) {
    log.warn("Host setting found that deletes the agent's rules", { reason: warning });
  }
  const socket = openSocket(options, log);
  if (socket === undefined) return 1;
  using _socket = socket;
  try {
    await socket.listRules();
    if (!options.dryRun) await checkPermission(socket, protocol);
  } catch (error: unknown) {
    if (error instanceof PermissionError) {
      log.error("NET_ADMIN capability missing; no rule can be changed", {
        err: error,
        hint: NET_ADMIN_HINT,
      });
    } else {
      log.error("Kernel rules not readable", { err: error });
    }
    return 1;
  }

  const client = await KubeClient.connectOrReport(options.kubeconfig, log);
  if (client === undefined) return 1;
  using _client = client;

  const stop = new AbortController();
  const stopping = AbortSignal.any([signal, stop.signal]);
  const metrics = new AgentMetrics();
  metrics.requests = client.requests;
  client.observer = (method, status) => metrics.observeRequest(method, status);
  const nodeStates = objectClient(client, "ipRuleNodeStates");
  const writer = new NodeStateWriter({ nodeStates, nodes: objectClient(client, "nodes") }, {
    nodeName: options.nodeName,
    protocol,
    version: VERSION,
    log,
    pacing: { intervalMs: options.statusIntervalMs },
  });
  // The informer calls the agent (below) only once it runs, after both exist.
  const informer: Informer<ConfigRule> = new Informer<ConfigRule>(client, {
    resource: RESOURCES.ipRuleConfigs,
    narrow: (raw) => configRuleOf(narrowIPRuleConfig(raw)),
    onChange: (key, config) => agent.configChanged(key, config),
    onInvalid: (err, raw) =>
      log.warn("IPRuleConfig skipped", { ipruleconfig: objectKey(raw), err }),
    onError: (err, delayMs) => {
      if (!oneShot || informer.synced) return agent.sourceFailed(err, delayMs);
      log.error("IPRuleConfigs not listed", { err });
      stop.abort();
    },
  });
  const signals = new StopSignals(client, {
    namespace: options.namespace,
    nodeName: options.nodeName,
    log,
  });
  const agent = new NodeAgent({ table: socket, source: informer, status: writer }, {
    protocol,
    dryRun: options.dryRun,
    adoptUnmarked: options.adoptUnmarkedRules,
    resyncMs: options.resyncMs,
    log,
    metrics,
    onFatal: () => stop.abort(),
  });

  log.info("Agent started", {
    version: VERSION,
    protocol,
    resyncMs: options.resyncMs,
    statusIntervalMs: options.statusIntervalMs,
    ...(options.once ? { once: true } : {}),
    ...(options.dryRun ? { dryRun: true } : {}),
    ...(options.adoptUnmarkedRules ? { adoptUnmarkedRules: true } : {}),
  });
  if (oneShot) {
    const informerRun = informer.run(stopping);
    try {
      await informer.whenSynced(stopping);
      if (stopping.aborted) return signal.aborted ? 0 : 1;
      return await once(agent, writer, options, log, print);
    } finally {
      stop.abort();
      await informerRun;
    }
  }

  let health: Endpoints;
  try {
    health = await startEndpoints(options, {
      registry: metrics.registry,
      readiness: () => agent.readiness(),
      client,
      certNames: [options.nodeName, "localhost"],
      onReviewError: (reason) => log.warn("Metrics request refused", { reason }),
      ...(parts.health === undefined ? {} : { health: parts.health }),
      signal: stopping,
    });
  } catch (error: unknown) {
    log.error("Endpoints not started", {
      err: error,
      metricsAddr: options.metricsAddr,
      healthAddr: options.healthAddr,
    });
    return 1;
  }
  metrics.readiness = () => agent.readiness();
  log.info("Endpoints listening", endpointsLog(health));
  const running = [
    informer.run(stopping),
    watchKernel(agent, {
      libraryPath: options.libmnlPath,
      ownPortId: socket.portId,
      signal: stopping,
      log,
      metrics,
    }),
    writer.run(stopping),
    signals.run(stopping),
    health.finished,
  ];
  await informer.whenSynced(stopping);
  if (!stopping.aborted) {
    log.info("IPRuleConfigs listed", { configs: informer.store.size });
    agent.start();
  }
  await new Promise<void>((resolve) => {
    if (stopping.aborted) return resolve();
    stopping.addEventListener("abort", () => resolve(), { once: true });
  });
  await agent.stop();
  await Promise.all(running);
  return await agent.finish(() => signals.read());
}

/** Opens the netlink rule socket; undefined (logged) when libmnl cannot be loaded. */
function openSocket(options: AgentOptions, log: Logger): RuleSocket | undefined {
  try {
    return RuleSocket.open({ libraryPath: options.libmnlPath });
  } catch (error: unknown) {
    if (error instanceof LibmnlLoadError) {
      log.error("libmnl not loaded", { err: error, path: error.path });
      return undefined;
    }
    if (error instanceof Deno.errors.NotCapable) {
      log.error("libmnl not loaded: this executable may load it only from its built-in path", {
        err: error,
        path: options.libmnlPath,
      });
      return undefined;
    }
    throw error;
  }
}

/** --once and --dry-run: one reconcile, then the node state (once) or the plan (dry-run). */
async function once(
  agent: NodeAgent,
  writer: NodeStateWriter,
  options: AgentOptions,
  log: Logger,
  print: PlanSink,
): Promise<number> {
  let result: RuleReconcileResult;
  try {
    result = await agent.reconcileOnce();
  } catch (error: unknown) {
    if (!(error instanceof PermissionError)) log.error("Reconcile failed", { err: error });
    return 1;
  }
  if (options.dryRun) {
    for (const line of planCommands(result.plan)) print(line);
    for (const failure of result.failed) print(`# skipped ${failure.rule}: ${failure.error}`);
    const adoption = result.plan.adoption;
    print(
      `# ${result.plan.add.length} to add, ${result.plan.delete.length} to delete, ` +
        `${result.plan.satisfied} desired rule(s) already present` +
        (adoption === undefined ? "" : `, ${adoption.adopt.length} unmarked to adopt, ` +
          `${adoption.remove.length} unmarked to delete, ${adoption.blocked.length} unmarked ` +
          "left in place") +
        "; nothing was changed",
    );
    return 0;
  }
  try {
    await writer.write({
      desired: result.desired,
      applied: result.applied,
      failed: result.failed,
      converged: result.converged,
    });
  } catch (error: unknown) {
    log.warn("IPRuleNodeState write failed", { err: error });
  }
  return result.converged ? 0 : 1;
}
