/**
 * The agent's control loop as one object: it owns the node's desired rules and what the loop
 * knows between reconciles, and changes them only through named transitions. Its parts are
 * injected (the kernel's rule table, the desired-state source, the status sink, the clock), so
 * every transition is unit-tested with in-memory fakes.
 *
 * States: waiting (before the source's first full list: nothing added or deleted) → running
 * (reconciles on triggers) → stopped (rules kept) or drained (rules removed); failed (no
 * NET_ADMIN) ends the run from any state. Within running, the last reconcile converged, left
 * rules failing, or threw (not ready, Converged=False ReconcileFailed).
 *
 * Transitions:
 * - `configChanged`: desired changed → debounced reconcile ("watch")
 * - `start`: the source listed every config → first full reconcile ("start")
 * - `kernelChanged`: own event that removed a desired rule → full reconcile at once; foreign
 *   delete of a desired rule → restore it without a dump; other own-protocol or
 *   desired-looking change → full reconcile; anything else → nothing ("kernel")
 * - `eventsLost`: kernel events missed → full reconcile ("kernel")
 * - resync tick (the scheduler's timer) → full reconcile ("resync")
 * - reconcile failed (throws) → not ready, status Converged=False with the error; a
 *   PermissionError → failed, `onFatal`
 * - `sourceFailed`: list/watch error → rules and desired set kept (fail static)
 * - `stop` then `finish`: rules kept unless the drain module says the Pod will not be replaced
 *   (an uninstall, or the node left the Agent's selection)
 */
import type { Rule, RuleChange } from "../../ffi/mod.ts";
import { stopAction, type StopInput } from "../drain.ts";
import type { Readiness } from "../health_server.ts";
import type { Logger } from "../log.ts";
import { VERSION } from "../version.ts";
import type { AgentMetrics } from "./metrics.ts";
import type { NodeReport } from "./node_state.ts";
import {
  PermissionError,
  RuleReconciler,
  type RuleReconcileResult,
  type RuleTable,
} from "./reconciler.ts";
import type { Sources } from "./adoption.ts";
import { changeMatters, type ConfigRule, DesiredState } from "./rule_plan.ts";
import { ReconcileScheduler, type Trigger } from "./scheduler.ts";

/** Delay between a watch event and its reconcile: a burst of config changes becomes one. */
export const WATCH_DEBOUNCE_MS = 5;

/** Where the desired configs come from, as readiness sees it; the IPRuleConfig informer is one. */
export interface ConfigSource {
  /** Whether every config has been listed once. */
  readonly synced: boolean;
  /** Whether the last list or watch request succeeded. */
  readonly healthy: boolean;
  /** The last list or watch error, while there is one. */
  readonly lastError: unknown;
}

/** Where the node's reports go; the `NodeStateWriter` is one. */
export interface StatusSink {
  /** Records a report, written in the background when it changes the status. */
  update(report: NodeReport): void;
  /** Writes a report now; true when the status changed. */
  write(report: NodeReport): Promise<boolean>;
}

/** A monotonic clock in ms (`performance.now` by default). */
export interface Clock {
  now(): number;
}

/** The parts a `NodeAgent` works with. */
export interface NodeAgentParts {
  table: RuleTable;
  source: ConfigSource;
  status: StatusSink;
  clock?: Clock;
}

/** Options of a `NodeAgent`. */
export interface NodeAgentOptions {
  /** The agent's rule protocol number. */
  protocol: number;
  /** Plan only: change no rule, write no status. */
  dryRun?: boolean;
  /** Take over the original operator's unmarked rules (adoption.ts). */
  adoptUnmarked?: boolean;
  /** Period of the full resync, ms. */
  resyncMs: number;
  /** Debounce of config changes, ms (default `WATCH_DEBOUNCE_MS`). */
  debounceMs?: number;
  log: Logger;
  metrics: AgentMetrics;
  /** Called once when a reconcile found NET_ADMIN missing: the agent can do nothing more. */
  onFatal?: (error: PermissionError) => void;
}

/** A random id for one reconcile, for the logs. */
function reconcileID(): string {
  return crypto.randomUUID().slice(0, 8);
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function report(result: RuleReconcileResult): NodeReport {
  return {
    desired: result.desired,
    applied: result.applied,
    failed: result.failed,
    converged: result.converged,
  };
}

const performanceClock: Clock = { now: () => performance.now() };

/** The node's rules converged to the desired configs, one reconcile at a time. */
export class NodeAgent {
  /** The desired rules, changed by `configChanged`. */
  readonly desired: DesiredState;
  readonly #source: ConfigSource;
  readonly #status: StatusSink;
  readonly #clock: Clock;
  readonly #options: NodeAgentOptions;
  readonly #reconciler: RuleReconciler;
  readonly #scheduler: ReconcileScheduler;
  readonly #log: Logger;
  /** `desired.version` at the last full reconcile: a change since is no drift. */
  #reconciledVersion = -1;
  /** Desired rules someone else deleted, to put back without a dump. */
  readonly #repairs = new Set<Rule>();
  /** Whether the next kernel-triggered run must be a full reconcile (not only repairs). */
  #fullNeeded = true;
  /** When the last full reconcile started (clock ms). */
  #lastFull = 0;
  /** The last full reconcile's result. */
  #last: RuleReconcileResult | undefined;
  /** The error of the last reconcile, when it threw. */
  #failure: unknown;
  /** The error that ended the run (no NET_ADMIN). */
  #fatal: PermissionError | undefined;
  /** What makes a kernel change matter (`changeMatters`). */
  readonly #matterOptions: { protocol: number; sources?: Sources };

  constructor(parts: NodeAgentParts, options: NodeAgentOptions) {
    this.#source = parts.source;
    this.#status = parts.status;
    this.#clock = parts.clock ?? performanceClock;
    this.#options = options;
    this.#log = options.log;
    const adoptUnmarked = options.adoptUnmarked ?? false;
    this.desired = new DesiredState({ protocol: options.protocol, trackSources: adoptUnmarked });
    this.#reconciler = new RuleReconciler(parts.table, {
      protocol: options.protocol,
      dryRun: options.dryRun ?? false,
      adoptUnmarked,
    });
    const sources = this.desired.sources;
    this.#matterOptions = sources === undefined
      ? { protocol: options.protocol }
      : { protocol: options.protocol, sources };
    this.#scheduler = new ReconcileScheduler((trigger) => this.#run(trigger), {
      debounceMs: options.debounceMs ?? WATCH_DEBOUNCE_MS,
      resyncMs: options.resyncMs,
      onError: (err, trigger) => {
        if (!(err instanceof PermissionError)) {
          this.#log.error("Reconcile failed", { err, trigger });
        }
      },
    });
  }

  /** The error that ended the run, when one did. */
  get fatal(): PermissionError | undefined {
    return this.#fatal;
  }

  /** The last full reconcile's result. */
  get last(): RuleReconcileResult | undefined {
    return this.#last;
  }

  /** Transition: the config at `key` changed (undefined: deleted). */
  configChanged(key: string, config: ConfigRule | undefined): void {
    this.desired.update(key, config);
    this.#scheduler.request("watch");
  }

  /** Transition: the source listed every config; reconciling starts. */
  start(): void {
    this.#scheduler.start();
  }

  /** Transition: a kernel rule event; `own` when the agent's own socket made the change. */
  kernelChanged(change: RuleChange, own: boolean): void {
    const deleted = change.type === "deleted" && change.rule.plain
      ? this.desired.rules.find(change.rule)
      : undefined;
    if (own) {
      // Our own delete removed a desired rule: the kernel matched another rule than the one
      // planned (a `from all` delete ignores the source), or a dump that raced a change listed
      // a rule twice (rule dumps are never flagged interrupted). Look again at once.
      if (deleted === undefined) return;
      this.#fullNeeded = true;
    } else if (deleted !== undefined) {
      this.#repairs.add(deleted);
    } else if (changeMatters(change.rule, this.desired.rules, this.#matterOptions)) {
      this.#fullNeeded = true;
    } else {
      return;
    }
    this.#scheduler.request("kernel");
  }

  /** Transition: kernel events were lost (or the subscription reopened); dump again. */
  eventsLost(): void {
    this.#fullNeeded = true;
    this.#scheduler.request("kernel");
  }

  /** Transition: listing or watching the configs failed; the kernel stays as it is. */
  sourceFailed(error: unknown, delayMs: number): void {
    this.#log.warn("IPRuleConfig list/watch failed; kernel rules kept as they are", {
      err: error,
      delayMs,
    });
  }

  /** Whether the node is ready: configs listed, the API reachable, the last reconcile converged. */
  readiness(): Readiness {
    if (this.#fatal !== undefined) {
      return { ready: false, reason: `stopped: ${message(this.#fatal)}` };
    }
    const source = this.#source;
    if (!source.synced) {
      const why = source.lastError === undefined ? "" : `: ${message(source.lastError)}`;
      return { ready: false, reason: `IPRuleConfigs not listed yet${why}` };
    }
    if (!source.healthy) {
      return {
        ready: false,
        reason: `API server unreachable, kernel rules kept as they are: ${
          message(source.lastError)
        }`,
      };
    }
    if (this.#failure !== undefined) {
      return { ready: false, reason: `last reconcile failed: ${message(this.#failure)}` };
    }
    const last = this.#last;
    if (last === undefined) return { ready: false, reason: "first reconcile pending" };
    if (!last.converged) {
      return { ready: false, reason: `${last.failed.length} rule(s) failed, retrying` };
    }
    return { ready: true, reason: `converged, ${last.applied} rule(s) applied` };
  }

  /** Resolves once no reconcile is running or due. */
  settled(): Promise<void> {
    return this.#scheduler.settled();
  }

  /** One reconcile now, for --once and --dry-run (no scheduler); throws when it fails. */
  reconcileOnce(): Promise<RuleReconcileResult> {
    return this.#reconcile("start");
  }

  /** Transition: stop reconciling; waits for a reconcile in progress. Rules stay. */
  async stop(): Promise<void> {
    await this.#scheduler.stop();
  }

  /**
   * After `stop`: removes every rule of the agent's protocol when the drain module says this
   * agent's Pod will not be replaced (`readStop` tells what is known of the uninstall and the
   * node's selection; src/drain.ts `stopAction`), and reports it; on every other stop the rules
   * stay. Returns the exit code.
   */
  async finish(readStop: () => Promise<Omit<StopInput, "fatal">>): Promise<number> {
    const fatal = this.#fatal !== undefined;
    const action = fatal
      ? stopAction({
        fatal,
        namespace: undefined,
        agent: undefined,
        drainMarked: undefined,
        selected: undefined,
      })
      : stopAction({ fatal, ...await readStop() });
    if (!action.removeRules) {
      this.#log.info("Agent stopped; kernel rules left in place", {
        version: VERSION,
        reason: action.reason,
      });
      return fatal ? 1 : 0;
    }
    let result: RuleReconcileResult;
    try {
      // Nothing desired: every rule of the agent's protocol goes, no other rule is touched.
      const nothing = new DesiredState({ protocol: this.#options.protocol }).snapshot();
      result = await this.#reconciler.reconcile(nothing, this.#log);
    } catch (error: unknown) {
      this.#log.error(`Agent stopped; ${action.reason}, but its rules were not removed`, {
        err: error,
      });
      return 1;
    }
    this.#log.info(`Agent stopped; ${action.reason}, its rules removed`, {
      deleted: result.deleted,
      failed: result.failed.length,
    });
    try {
      await this.#status.write({ ...report(result), draining: true });
    } catch (error: unknown) {
      // The rules are gone all the same; an uninstall may have taken the token or the CRD.
      this.#log.info("Drain not reported in the IPRuleNodeState", { err: error });
    }
    return result.failed.length === 0 ? 0 : 1;
  }

  /** The scheduler's callback: a restore of deleted rules, or a full reconcile. */
  async #run(trigger: Trigger): Promise<void> {
    if (
      trigger === "kernel" && !this.#fullNeeded && this.#repairs.size > 0 &&
      this.desired.version === this.#reconciledVersion &&
      this.#clock.now() - this.#lastFull < this.#options.resyncMs
    ) {
      return await this.#restore();
    }
    // The dump below sees every change made before it; later ones ask for another run.
    this.#fullNeeded = false;
    this.#repairs.clear();
    this.#lastFull = this.#clock.now();
    const result = await this.#reconcile(trigger);
    if (result.recheck) {
      this.#fullNeeded = true;
      this.#scheduler.request("kernel");
    }
    if (!this.#options.dryRun) this.#status.update(report(result));
  }

  /** Dumps, plans and applies once; reports to metrics, logs and (on failure) the status. */
  async #reconcile(trigger: Trigger): Promise<RuleReconcileResult> {
    const { metrics } = this.#options;
    const rlog = this.#log.with({ reconcileID: reconcileID(), trigger });
    const desiredChanged = this.desired.version !== this.#reconciledVersion;
    this.#reconciledVersion = this.desired.version;
    const started = this.#clock.now();
    let result: RuleReconcileResult;
    try {
      result = await this.#reconciler.reconcile(this.desired.snapshot(), rlog);
    } catch (error: unknown) {
      metrics.reconciles.inc({ trigger, result: "error" });
      this.#failFatal(error, rlog);
      // Not converged as far as anyone can tell: readiness and the node state say so.
      this.#failure = error;
      const last = this.#last;
      if (last !== undefined && !this.#options.dryRun) {
        this.#status.update({ ...report(last), converged: false, error: message(error) });
      }
      throw error;
    }
    this.#failure = undefined;
    const durationMs = this.#clock.now() - started;
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
      ...(result.adopted > 0 ? { adopted: result.adopted } : {}),
      failed: result.failed.length,
      durationMs: Math.round(durationMs * 10) / 10,
    };
    if (changes > 0 || result.failed.length > 0) {
      rlog.info(desiredChanged ? "Rules reconciled" : "Drift repaired", fields);
    } else {
      rlog.debug("Rules reconciled", fields);
    }
    this.#last = result;
    return result;
  }

  /** Puts back the rules of `#repairs` with one batch add. */
  async #restore(): Promise<void> {
    const { metrics } = this.#options;
    const rules = [...this.#repairs];
    this.#repairs.clear();
    const rlog = this.#log.with({ reconcileID: reconcileID(), trigger: "kernel" });
    const started = this.#clock.now();
    let outcome: { added: number; failed: boolean };
    try {
      outcome = await this.#reconciler.restore(rules, rlog);
    } catch (error: unknown) {
      metrics.reconciles.inc({ trigger: "kernel", result: "error" });
      this.#failFatal(error, rlog);
      throw error;
    }
    metrics.reconciles.inc({ trigger: "kernel", result: outcome.failed ? "failed" : "repaired" });
    if (outcome.added) {
      metrics.ruleChanges.inc({ op: "add" }, outcome.added);
      metrics.driftRepairs.inc(outcome.added);
    }
    rlog.info("Drift repaired", {
      restored: outcome.added,
      durationMs: Math.round((this.#clock.now() - started) * 10) / 10,
    });
    if (outcome.failed) {
      this.#fullNeeded = true;
      this.#scheduler.request("kernel");
    }
  }

  /** A reconcile found NET_ADMIN missing: the run ends. */
  #failFatal(error: unknown, rlog: Logger): void {
    if (!(error instanceof PermissionError)) return;
    this.#fatal = error;
    rlog.error("Rules not changed: permission denied", {
      err: error,
      hint: NET_ADMIN_HINT,
    });
    this.#options.onFatal?.(error);
  }
}

/** What to do when NET_ADMIN is missing. */
export const NET_ADMIN_HINT = "run the agent with the NET_ADMIN capability (the DaemonSet adds " +
  "it; locally: sudo task run-agent)";
