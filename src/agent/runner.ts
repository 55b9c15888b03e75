/**
 * Wires the agent: host checks, the netlink socket and rule subscription, the IPRuleConfig
 * informer, the reconcile scheduler, the IPRuleNodeState writer and the health endpoint.
 * Nothing touches the kernel before the informer's first full list; API errors leave the
 * kernel as it is; stopping (SIGTERM) never removes a rule, unless the controller marked this
 * node drained (it left the Agent's node selection).
 */
import {
  LibmnlLoadError,
  type Rule,
  type RuleChange,
  RuleSocket,
  RuleSubscription,
} from "../../ffi/mod.ts";
import { narrowIPRuleConfig } from "../api/narrow.ts";
import type { AgentOptions } from "../agent_flags.ts";
import { type Endpoints, endpointsLog, startEndpoints } from "../metrics/endpoints.ts";
import { backoffDelay, sleep } from "../k8s/backoff.ts";
import { KubeClient } from "../k8s/client.ts";
import { Informer, objectKey } from "../k8s/informer.ts";
import { RESOURCES } from "../k8s/resources.ts";
import type { Logger } from "../log.ts";
import { VERSION } from "../version.ts";
import { hostWarnings, readHost } from "./host_checks.ts";
import { AgentMetrics } from "./metrics.ts";
import { NodeStateWriter } from "./node_state.ts";
import {
  changeMatters,
  type ConfigRule,
  configRuleOf,
  DesiredState,
  planCommands,
} from "./plan.ts";
import {
  checkPermission,
  PermissionError,
  type ReconcileResult,
  RuleReconciler,
} from "./reconciler.ts";
import { ReconcileScheduler, type Trigger } from "./scheduler.ts";

/** Delay between a watch event and its reconcile: a burst of config changes becomes one. */
export const WATCH_DEBOUNCE_MS = 5;
/** Environment variable: where the host's root is mounted, for the host checks (default "/"). */
export const HOST_ROOT_ENV = "IPRULE_HOST_ROOT";
const NET_ADMIN_HINT = "run the agent with the NET_ADMIN capability (the DaemonSet adds it; " +
  "locally: sudo task run-agent)";

/** A random id for one reconcile, for the logs. */
function reconcileID(): string {
  return crypto.randomUUID().slice(0, 8);
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Where the agent writes the --dry-run plan; stdout by default. */
export type PlanSink = (line: string) => void;

/** Runs the agent until the signal aborts (or once); returns the exit code. */
export async function runAgent(
  options: AgentOptions,
  baseLog: Logger,
  signal: AbortSignal,
  print: PlanSink = console.log,
): Promise<number> {
  const log = baseLog.with({ node: options.nodeName });
  const { protocol } = options;
  const oneShot = options.once || options.dryRun;

  for (const warning of hostWarnings(readHost(Deno.env.get(HOST_ROOT_ENV) || "/"))) {
    log.warn("Host setting found that deletes the agent's rules", { reason: warning });
  }
  let socket: RuleSocket;
  try {
    socket = RuleSocket.open({ libraryPath: options.libmnlPath });
  } catch (error: unknown) {
    if (error instanceof LibmnlLoadError) {
      log.error("libmnl not loaded", { err: error, path: error.path });
      return 1;
    }
    if (error instanceof Deno.errors.NotCapable) {
      log.error("libmnl not loaded: this executable may load it only from its built-in path", {
        err: error,
        path: options.libmnlPath,
      });
      return 1;
    }
    throw error;
  }
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
  const writer = new NodeStateWriter(client, {
    nodeName: options.nodeName,
    protocol,
    version: VERSION,
    log,
  });
  const reconciler = new RuleReconciler(socket, { protocol, dryRun: options.dryRun });

  const desired = new DesiredState({ protocol });
  /** `desired.version` at the last full reconcile: a change since is no drift. */
  let reconciledVersion = -1;
  /** Desired rules someone else deleted, to put back without a dump. */
  const repairs = new Set<Rule>();
  /** Whether the next kernel-triggered run must be a full reconcile (not only repairs). */
  let fullNeeded = true;
  let lastFull = 0;
  let last: ReconcileResult | undefined;
  /** The error of the last reconcile, when it threw. */
  let failure: unknown;
  let fatal: unknown;
  const failFatal = (error: unknown, rlog: Logger) => {
    if (!(error instanceof PermissionError)) return;
    fatal = error;
    rlog.error("Rules not changed: permission denied", { err: error, hint: NET_ADMIN_HINT });
    stop.abort();
  };

  const informer: Informer<ConfigRule> = new Informer<ConfigRule>(client, {
    resource: RESOURCES.ipRuleConfigs,
    narrow: (raw) => configRuleOf(narrowIPRuleConfig(raw)),
    onChange: (key, config) => {
      desired.update(key, config);
      if (!oneShot) scheduler.request("watch");
    },
    onInvalid: (err, raw) =>
      log.warn("IPRuleConfig skipped", { ipruleconfig: objectKey(raw), err }),
    onError: (err, delayMs) => {
      if (oneShot && !informer.synced) {
        log.error("IPRuleConfigs not listed", { err });
        stop.abort();
        return;
      }
      log.warn("IPRuleConfig list/watch failed; kernel rules kept as they are", { err, delayMs });
    },
  });

  /** Dumps, plans and applies once; reports to metrics, logs and the node state. */
  const reconcile = async (trigger: Trigger): Promise<ReconcileResult> => {
    const rlog = log.with({ reconcileID: reconcileID(), trigger });
    const desiredChanged = desired.version !== reconciledVersion;
    reconciledVersion = desired.version;
    const started = performance.now();
    let result: ReconcileResult;
    try {
      result = await reconciler.reconcile(desired.snapshot(), rlog);
    } catch (error: unknown) {
      metrics.reconciles.inc({ trigger, result: "error" });
      failFatal(error, rlog);
      // Not converged as far as anyone can tell: readiness and the node state say so.
      failure = error;
      if (last !== undefined && !options.dryRun) {
        writer.update({
          desired: last.desired,
          applied: last.applied,
          failed: last.failed,
          converged: false,
          error: message(error),
        });
      }
      throw error;
    }
    failure = undefined;
    const durationMs = performance.now() - started;
    metrics.reconcileSeconds.observe(durationMs / 1000);
    metrics.reconciles.inc({ trigger, result: result.converged ? "converged" : "failed" });
    metrics.desiredRules.set(result.desired);
    metrics.appliedRules.set(result.applied);
    metrics.failedRules.set(result.failed.length);
    if (result.added) metrics.ruleChanges.inc({ op: "add" }, result.added);
    if (result.deleted) metrics.ruleChanges.inc({ op: "delete" }, result.deleted);
    const changes = result.added + result.deleted;
    if (!desiredChanged && changes > 0) metrics.driftRepairs.inc(changes);
    const fields = {
      desired: result.desired,
      applied: result.applied,
      added: result.added,
      deleted: result.deleted,
      failed: result.failed.length,
      durationMs: Math.round(durationMs * 10) / 10,
    };
    if (changes > 0 || result.failed.length > 0) {
      rlog.info(desiredChanged ? "Rules reconciled" : "Drift repaired", fields);
    } else {
      rlog.debug("Rules reconciled", fields);
    }
    last = result;
    return result;
  };

  const readiness = () => {
    if (fatal !== undefined) return { ready: false, reason: `stopped: ${message(fatal)}` };
    if (!informer.synced) {
      const why = informer.lastError === undefined ? "" : `: ${message(informer.lastError)}`;
      return { ready: false, reason: `IPRuleConfigs not listed yet${why}` };
    }
    if (!informer.healthy) {
      return {
        ready: false,
        reason: `API server unreachable, kernel rules kept as they are: ${
          message(informer.lastError)
        }`,
      };
    }
    if (failure !== undefined) {
      return { ready: false, reason: `last reconcile failed: ${message(failure)}` };
    }
    if (last === undefined) return { ready: false, reason: "first reconcile pending" };
    if (!last.converged) {
      return { ready: false, reason: `${last.failed.length} rule(s) failed, retrying` };
    }
    return { ready: true, reason: `converged, ${last.applied} rule(s) applied` };
  };

  /** Puts back the rules of `repairs` with one batch add. */
  const restore = async (): Promise<void> => {
    const rules = [...repairs];
    repairs.clear();
    const rlog = log.with({ reconcileID: reconcileID(), trigger: "kernel" });
    const started = performance.now();
    let outcome: { added: number; failed: boolean };
    try {
      outcome = await reconciler.restore(rules, rlog);
    } catch (error: unknown) {
      metrics.reconciles.inc({ trigger: "kernel", result: "error" });
      failFatal(error, rlog);
      throw error;
    }
    metrics.reconciles.inc({ trigger: "kernel", result: outcome.failed ? "failed" : "repaired" });
    if (outcome.added) {
      metrics.ruleChanges.inc({ op: "add" }, outcome.added);
      metrics.driftRepairs.inc(outcome.added);
    }
    rlog.info("Drift repaired", {
      restored: outcome.added,
      durationMs: Math.round((performance.now() - started) * 10) / 10,
    });
    if (outcome.failed) {
      fullNeeded = true;
      scheduler.request("kernel");
    }
  };

  const scheduler = new ReconcileScheduler(async (trigger) => {
    if (
      trigger === "kernel" && !fullNeeded && repairs.size > 0 &&
      desired.version === reconciledVersion && performance.now() - lastFull < options.resyncMs
    ) {
      return await restore();
    }
    // The dump below sees every change made before it; later ones ask for another run.
    fullNeeded = false;
    repairs.clear();
    lastFull = performance.now();
    const result = await reconcile(trigger);
    if (result.recheck) {
      fullNeeded = true;
      scheduler.request("kernel");
    }
    if (!options.dryRun) {
      writer.update({
        desired: result.desired,
        applied: result.applied,
        failed: result.failed,
        converged: result.converged,
      });
    }
  }, {
    debounceMs: WATCH_DEBOUNCE_MS,
    resyncMs: options.resyncMs,
    onError: (err, trigger) => {
      if (!(err instanceof PermissionError)) log.error("Reconcile failed", { err, trigger });
    },
  });

  log.info("Agent started", {
    version: VERSION,
    protocol,
    resyncMs: options.resyncMs,
    ...(options.once ? { once: true } : {}),
    ...(options.dryRun ? { dryRun: true } : {}),
  });
  let health: Endpoints | undefined;
  if (!oneShot) {
    try {
      health = await startEndpoints(options, {
        registry: metrics.registry,
        readiness,
        client,
        certNames: [options.nodeName, "localhost"],
        onReviewError: (reason) => log.warn("Metrics request refused", { reason }),
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
    metrics.readiness = readiness;
    log.info("Endpoints listening", endpointsLog(health));
  }
  const informerRun = informer.run(stopping);
  if (oneShot || health === undefined) {
    try {
      await informer.whenSynced(stopping);
      if (stopping.aborted) return signal.aborted ? 0 : 1;
      return await once(reconcile, writer, options, log, print);
    } finally {
      stop.abort();
      await informerRun;
    }
  }

  const events = watchKernel(options, socket, stopping, log, metrics, (change, own) => {
    const deleted = change.type === "deleted" && change.rule.plain
      ? desired.rules.find(change.rule)
      : undefined;
    if (own) {
      // Our own delete removed a desired rule: the kernel matched another rule than the one
      // planned (a `from all` delete ignores the source), or a dump that raced a change listed
      // a rule twice (rule dumps are never flagged interrupted). Look again at once.
      if (deleted === undefined) return;
      fullNeeded = true;
    } else if (deleted !== undefined) {
      repairs.add(deleted);
    } else if (changeMatters(change.rule, desired.rules, { protocol })) {
      fullNeeded = true;
    } else {
      return;
    }
    scheduler.request("kernel");
  }, () => {
    fullNeeded = true;
    scheduler.request("kernel");
  });
  const writing = writer.run(stopping);
  await informer.whenSynced(stopping);
  if (!stopping.aborted) {
    log.info("IPRuleConfigs listed", { configs: informer.store.size });
    scheduler.start();
  }
  await new Promise<void>((resolve) => {
    if (stopping.aborted) return resolve();
    stopping.addEventListener("abort", () => resolve(), { once: true });
  });
  await scheduler.stop();
  await Promise.all([informerRun, events, writing, health.finished]);
  if (fatal === undefined && await drainRequested(client, options.nodeName, log)) {
    // The node left the Agent's selection (the controller set spec.drain): the DaemonSet is
    // stopping this agent for good, so its rules go with it. On any other stop they stay.
    let result: ReconcileResult;
    try {
      result = await reconciler.reconcile(new DesiredState({ protocol }).snapshot(), log);
    } catch (error: unknown) {
      log.error("Agent stopped; node left the Agent's selection, but its rules were not removed", {
        err: error,
      });
      return 1;
    }
    log.info("Agent stopped; node left the Agent's selection, its rules removed", {
      deleted: result.deleted,
      failed: result.failed.length,
    });
    return result.failed.length === 0 ? 0 : 1;
  }
  log.info("Agent stopped; kernel rules left in place", { version: VERSION });
  return fatal === undefined ? 0 : 1;
}

/** Whether the controller marked this node's IPRuleNodeState `spec.drain` (one GET at stop). */
async function drainRequested(client: KubeClient, nodeName: string, log: Logger): Promise<boolean> {
  try {
    const state = await client.get(RESOURCES.ipRuleNodeStates, nodeName) as
      | { spec?: { drain?: unknown } }
      | undefined;
    return state?.spec?.drain === true;
  } catch (error: unknown) {
    // Unknown: keep the rules (fail static).
    log.warn("Drain flag not read; rules left in place", { err: error });
    return false;
  }
}

/** --once and --dry-run: one reconcile, then the node state (once) or the plan (dry-run). */
async function once(
  reconcile: (trigger: Trigger) => Promise<ReconcileResult>,
  writer: NodeStateWriter,
  options: AgentOptions,
  log: Logger,
  print: PlanSink,
): Promise<number> {
  let result: ReconcileResult;
  try {
    result = await reconcile("start");
  } catch (error: unknown) {
    if (!(error instanceof PermissionError)) log.error("Reconcile failed", { err: error });
    return 1;
  }
  if (options.dryRun) {
    for (const line of planCommands(result.plan)) print(line);
    for (const failure of result.failed) print(`# skipped ${failure.rule}: ${failure.error}`);
    print(
      `# ${result.plan.add.length} to add, ${result.plan.delete.length} to delete, ` +
        `${result.plan.satisfied} desired rule(s) already present; nothing was changed`,
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

/**
 * Feeds the kernel's rule events to the scheduler until the signal aborts, with whether the
 * agent's own socket made the change; lost events ask for a dump; the subscription is reopened
 * with backoff when it fails.
 */
async function watchKernel(
  options: AgentOptions,
  socket: RuleSocket,
  signal: AbortSignal,
  log: Logger,
  metrics: AgentMetrics,
  onChange: (change: RuleChange, own: boolean) => void,
  onLost: () => void,
): Promise<void> {
  let attempt = 0;
  while (!signal.aborted) {
    try {
      await using subscription = RuleSubscription.open({
        libraryPath: options.libmnlPath,
        signal,
      });
      if (attempt > 0) onLost(); // events may have been missed while it was closed
      for await (const event of subscription) {
        attempt = 0;
        if (event.type === "resync") {
          metrics.kernelEvents.inc({ type: "resync", origin: "other" });
          log.info("Rule events lost; dumping the rules again", { reason: event.reason });
          onLost();
          continue;
        }
        const own = event.portId === socket.portId;
        metrics.kernelEvents.inc({ type: event.type, origin: own ? "self" : "other" });
        onChange(event, own);
      }
    } catch (error: unknown) {
      if (signal.aborted) break;
      const delayMs = backoffDelay(attempt++);
      log.error("Rule subscription failed; periodic resync only until it is back", {
        err: error,
        delayMs,
      });
      await sleep(delayMs, signal);
    }
  }
}
