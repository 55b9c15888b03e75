/**
 * The node's IPRuleNodeState: the status a reconcile report becomes (pure), which changes are
 * urgent (pure), and the writer that creates the object when missing (owner reference to the
 * Node) and patches its status only when something other than a timestamp changed: in the
 * background at most once per pacing interval (src/write_pacer.ts), urgent changes after a
 * short floor, retrying with backoff.
 */
import type { FailedRule, IPRuleNodeState, IPRuleNodeStateStatus, NodeInfo } from "../api/types.ts";
import { sameConditions, setCondition } from "../api/conditions.ts";
import { MAX_FAILED_ERROR_TEXT, MAX_FAILED_RULE_TEXT, MAX_FAILED_RULES } from "../api/limits.ts";
import { holdsRules } from "../drain.ts";
import { backoffDelay, REAL_TIMER, type Timer } from "../k8s/backoff.ts";
import { ApiError } from "../k8s/client.ts";
import type { Objects } from "../k8s/objects.ts";
import { apiTime } from "../k8s/time.ts";
import type { Logger } from "../log.ts";
import { DEFAULT_STATUS_INTERVAL_MS, type PacingOptions, WritePacer } from "../write_pacer.ts";

/** The condition the controller counts converged nodes by. */
export const CONVERGED = "Converged";

/** What a reconcile reports for the node. */
export interface NodeReport {
  /** Desired rules, refused configs included. */
  desired: number;
  /** Desired rules present in the kernel. */
  applied: number;
  /** Rules that failed, with their errors. */
  failed: readonly FailedRule[];
  /** Every desired rule present and nothing failed. */
  converged: boolean;
  /** The reconcile itself failed (e.g. the kernel dump); the counts are the last known ones. */
  error?: string;
  /** The agent removed its rules for a drain (see src/drain.ts): the last report it makes. */
  draining?: true;
}

/** What the status says besides the report. */
export interface NodeStatusOptions {
  /** Current time as a metav1.Time. */
  now: string;
  /** The agent's version. */
  version: string;
  /** The agent's rule protocol number. */
  protocol: number;
}

function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

function converged(status: IPRuleNodeStateStatus | undefined): boolean {
  return status?.conditions?.some((c) => c.type === CONVERGED && c.status === "True") ?? false;
}

/**
 * The status after a reconcile. `lastConvergedTime` moves only on a transition into converged
 * or when the counts change while converged; the condition's transition time only when its
 * status flips. Failed rules are listed sorted, at most {@link MAX_FAILED_RULES}.
 */
export function nodeStatus(
  previous: IPRuleNodeStateStatus | undefined,
  report: NodeReport,
  options: NodeStatusOptions,
): IPRuleNodeStateStatus {
  const failedRules = [...report.failed]
    .sort((a, b) => a.rule.localeCompare(b.rule) || a.error.localeCompare(b.error))
    .slice(0, MAX_FAILED_RULES)
    .map((f) => ({
      rule: truncate(f.rule, MAX_FAILED_RULE_TEXT),
      error: truncate(f.error, MAX_FAILED_ERROR_TEXT),
    }));
  const countsChanged = previous?.desiredRules !== report.desired ||
    previous?.appliedRules !== report.applied;
  const status: IPRuleNodeStateStatus = {
    desiredRules: report.desired,
    appliedRules: report.applied,
    failedCount: report.failed.length,
    failedRules,
    agentVersion: options.version,
    protocol: options.protocol,
    conditions: setCondition(
      previous?.conditions,
      report.draining
        ? {
          type: CONVERGED,
          status: report.converged ? "True" : "False",
          reason: report.converged ? "Drained" : "DrainFailed",
          message: report.converged
            ? "The node was drained: the agent removed its rules"
            : `The node was drained, but ${report.failed.length} rule(s) could not be removed`,
        }
        : report.error !== undefined
        ? {
          type: CONVERGED,
          status: "False",
          reason: "ReconcileFailed",
          message: truncate(`The last reconcile failed: ${report.error}`, MAX_FAILED_ERROR_TEXT),
        }
        : {
          type: CONVERGED,
          status: report.converged ? "True" : "False",
          reason: report.converged ? "RulesApplied" : "RulesFailed",
          message: report.converged
            ? `All ${report.desired} desired rule(s) are in the kernel`
            : `${report.failed.length} rule(s) failed; ${report.applied} of ${report.desired} ` +
              `desired rule(s) are in the kernel`,
        },
      options.now,
    ),
  };
  const lastConvergedTime = report.converged && report.error === undefined &&
      (!converged(previous) || countsChanged)
    ? options.now
    : previous?.lastConvergedTime;
  if (lastConvergedTime !== undefined) status.lastConvergedTime = lastConvergedTime;
  if (report.draining) status.draining = true;
  return status;
}

/** Whether two statuses say the same, timestamps aside (a write would change nothing else). */
export function sameNodeStatus(
  a: IPRuleNodeStateStatus | undefined,
  b: IPRuleNodeStateStatus,
): boolean {
  if (a === undefined) return false;
  // Field by field: the API server returns objects with their keys sorted.
  const failed = (s: IPRuleNodeStateStatus) =>
    JSON.stringify((s.failedRules ?? []).map((f) => [f.rule, f.error]));
  const conditions = (s: IPRuleNodeStateStatus) =>
    (s.conditions ?? []).map((c) => ({ ...c, lastTransitionTime: "" }));
  return a.desiredRules === b.desiredRules && a.appliedRules === b.appliedRules &&
    a.failedCount === b.failedCount && failed(a) === failed(b) &&
    a.agentVersion === b.agentVersion && a.protocol === b.protocol &&
    a.draining === b.draining && (a.lastConvergedTime === undefined) ===
      (b.lastConvergedTime === undefined) &&
    sameConditions(conditions(a), conditions(b));
}

/**
 * Whether a status change must be written at once (after the pacing floor) rather than at the
 * end of the interval, because someone acts on it: `Converged` flipping or changing its reason
 * (the Agent's Ready condition, alerts), the failed set changing (which rules, how many), a
 * drain finishing or starting (`holdsRules` turning false; a drained node's `draining`), another agent version or protocol (a new agent's first report). Count
 * changes alone, error texts and timestamps wait.
 */
export function urgentChange(
  written: IPRuleNodeStateStatus | undefined,
  next: IPRuleNodeStateStatus,
): boolean {
  if (written === undefined) return true;
  const condition = (s: IPRuleNodeStateStatus) => {
    const c = s.conditions?.find((c) => c.type === CONVERGED);
    return `${c?.status}/${c?.reason}`;
  };
  const failedSet = (s: IPRuleNodeStateStatus) =>
    `${s.failedCount ?? 0}:${(s.failedRules ?? []).map((f) => f.rule).join("\n")}`;
  return condition(written) !== condition(next) || failedSet(written) !== failedSet(next) ||
    (written.draining ?? false) !== (next.draining ?? false) ||
    holdsRules(written) !== holdsRules(next) ||
    written.agentVersion !== next.agentVersion || written.protocol !== next.protocol;
}

/** The reads and writes of the node state writer. */
export interface NodeStateApi {
  nodeStates: Pick<Objects<IPRuleNodeState>, "get" | "create" | "mergePatch">;
  nodes: Pick<Objects<NodeInfo>, "get">;
}

/** An owner reference to the node's Node. */
interface OwnerReference {
  apiVersion: "v1";
  kind: "Node";
  name: string;
  uid: string;
}

/** Options of a `NodeStateWriter`. */
export interface NodeStateWriterOptions {
  nodeName: string;
  protocol: number;
  version: string;
  log: Logger;
  /** Wall clock of the status' timestamps (ms since the epoch), for tests. */
  now?: () => number;
  /** Pacing of the background writes (`update`); default one per 10 s, ±10 %. */
  pacing?: PacingOptions;
  /** Monotonic clock and sleep of the pacing and the retries, for tests. */
  timer?: Timer;
  /** Random numbers in [0, 1) for the jitter, for tests. */
  random?: () => number;
}

/**
 * Writes the node's IPRuleNodeState: created when missing, status patched only on change.
 * Reports are folded into the wanted status when they arrive (so its times are the report's),
 * and `run` writes that status when the pacer lets it: count changes an interval after the
 * first of them, so a burst of reports costs one write (two when it starts with an urgent
 * change, e.g. the node's first rule), an urgent change (see `urgentChange`) once the floor has
 * passed since the last write.
 */
export class NodeStateWriter {
  readonly #api: NodeStateApi;
  readonly #options: NodeStateWriterOptions;
  readonly #timer: Timer;
  readonly #pacer: WritePacer;
  /** The status as the API server last returned it; undefined until read. */
  #current: IPRuleNodeStateStatus | undefined;
  #exists = false;
  /** The status the reports so far make; pending while it differs from `#current`. */
  #wanted: IPRuleNodeStateStatus | undefined;
  /** The latest report made before the object was read, and when. */
  #early: { report: NodeReport; at: number } | undefined;
  #wake: (() => void) | undefined;
  /** Status writes made (create included), for tests and metrics. */
  writes = 0;

  constructor(api: NodeStateApi, options: NodeStateWriterOptions) {
    this.#api = api;
    this.#options = options;
    this.#timer = options.timer ?? REAL_TIMER;
    this.#pacer = new WritePacer(
      options.pacing ?? { intervalMs: DEFAULT_STATUS_INTERVAL_MS },
      options.random,
    );
  }

  /** Whether a status the reports made is not written yet. */
  get pending(): boolean {
    return this.#early !== undefined || this.#next() !== undefined;
  }

  /** Records the latest report; `run` writes it when it changes the status, paced. */
  update(report: NodeReport): void {
    this.#fold(report);
    this.#wake?.();
  }

  /** Writes pending reports until the signal aborts, paced, retrying failed writes with backoff. */
  async run(signal: AbortSignal): Promise<void> {
    let attempt = 0;
    while (!signal.aborted) {
      try {
        if (!this.#exists && this.#early === undefined && this.#wanted === undefined) {
          await this.#idle(signal);
          continue;
        }
        if (!this.#exists) await this.#ensure();
        const next = this.#next();
        if (next === undefined) {
          this.#pacer.settled();
          await this.#idle(signal);
          continue;
        }
        const now = this.#timer.now();
        const due = this.#pacer.dueAt(now, urgentChange(this.#current, next));
        if (due > now) {
          await this.#idle(signal, due - now);
          continue;
        }
        if (signal.aborted) break;
        await this.#patch(next);
        attempt = 0;
      } catch (error: unknown) {
        if (signal.aborted) break;
        const delayMs = backoffDelay(attempt++);
        this.#options.log.warn("IPRuleNodeState write failed", {
          iprulenodestate: this.#options.nodeName,
          err: error,
          delayMs,
        });
        // Not woken by new reports: an outage is retried at the backoff's pace.
        await this.#timer.sleep(delayMs, signal);
      }
    }
  }

  /**
   * Writes one report now, unpaced (--once, and the drain report at stop: the agent's last
   * write), creating the object when missing; true when the status changed.
   */
  async write(report: NodeReport, signal?: AbortSignal): Promise<boolean> {
    this.#fold(report);
    if (!this.#exists) await this.#ensure();
    const next = this.#next();
    if (next === undefined || signal?.aborted) return false;
    await this.#patch(next);
    return true;
  }

  /** Folds a report into the wanted status (kept aside until the object has been read). */
  #fold(report: NodeReport): void {
    const at = (this.#options.now ?? Date.now)();
    if (!this.#exists) {
      this.#early = { report, at };
      return;
    }
    this.#wanted = this.#status(this.#wanted ?? this.#current, report, at);
    // When the change appeared: an ordinary one is written an interval later.
    if (this.#next() === undefined) this.#pacer.settled();
    else this.#pacer.changed(this.#timer.now());
  }

  #status(
    previous: IPRuleNodeStateStatus | undefined,
    report: NodeReport,
    at: number,
  ): IPRuleNodeStateStatus {
    return nodeStatus(previous, report, {
      now: apiTime(at),
      version: this.#options.version,
      protocol: this.#options.protocol,
    });
  }

  /** The wanted status when a write would change something. */
  #next(): IPRuleNodeStateStatus | undefined {
    const wanted = this.#wanted;
    return wanted === undefined || sameNodeStatus(this.#current, wanted) ? undefined : wanted;
  }

  /** Waits until woken by a report, the signal aborts, or `ms` passed. */
  async #idle(signal: AbortSignal, ms = Infinity): Promise<void> {
    const woken = new AbortController();
    this.#wake = () => woken.abort();
    const either = AbortSignal.any([signal, woken.signal]);
    try {
      if (ms !== Infinity) return await this.#timer.sleep(ms, either);
      if (either.aborted) return;
      await new Promise<void>((resolve) =>
        either.addEventListener("abort", () => resolve(), { once: true })
      );
    } finally {
      this.#wake = undefined;
    }
  }

  async #patch(next: IPRuleNodeStateStatus): Promise<void> {
    try {
      // A merge patch keeps what it does not name: a drain mark of an earlier agent is removed.
      const written = await this.#api.nodeStates.mergePatch(
        this.#options.nodeName,
        {
          status: { ...next, failedRules: next.failedRules ?? [], draining: next.draining ?? null },
        },
        { subresource: "status" },
      );
      this.#current = written.status ?? next;
    } catch (error: unknown) {
      if (error instanceof ApiError && error.status === 404) this.#exists = false;
      throw error;
    }
    this.#pacer.wrote(this.#timer.now());
    this.writes++;
    this.#options.log.debug("IPRuleNodeState status updated", {
      iprulenodestate: this.#options.nodeName,
      desired: next.desiredRules,
      applied: next.appliedRules,
      failed: next.failedCount,
    });
  }

  /** Reads the object, creating it (owned by the Node when readable) when missing. */
  async #ensure(): Promise<void> {
    const name = this.#options.nodeName;
    let object = await this.#api.nodeStates.get(name);
    if (object === undefined) {
      const owner = await this.#nodeOwner();
      try {
        object = await this.#api.nodeStates.create({
          metadata: { name, ...(owner === undefined ? {} : { ownerReferences: [owner] }) },
          spec: { nodeName: name },
        });
        this.writes++;
        this.#options.log.info("IPRuleNodeState created", {
          iprulenodestate: name,
          owner: owner === undefined ? "none" : `Node/${name}`,
        });
      } catch (error: unknown) {
        if (!(error instanceof ApiError && error.status === 409)) throw error;
        object = await this.#api.nodeStates.get(name);
        if (object === undefined) throw error;
      }
    }
    this.#current = object.status;
    this.#exists = true;
    const early = this.#early;
    this.#early = undefined;
    // The first status is computed against what the object holds (an earlier agent's times).
    if (early !== undefined) this.#wanted = this.#status(this.#current, early.report, early.at);
  }

  /**
   * The owner reference to this node's Node; undefined when there is no such Node (e.g. a
   * --node-name for a machine outside the cluster) or the agent may not read it. Any other
   * error is thrown, so the creation is retried rather than made without an owner for good
   * (the object would then outlive its Node).
   */
  async #nodeOwner(): Promise<OwnerReference | undefined> {
    const name = this.#options.nodeName;
    let node: NodeInfo | undefined;
    try {
      node = await this.#api.nodes.get(name);
    } catch (error: unknown) {
      if (!(error instanceof ApiError && (error.status === 401 || error.status === 403))) {
        throw error;
      }
      this.#options.log.warn("Node unreadable; IPRuleNodeState created without owner", {
        node: name,
        err: error,
      });
      return undefined;
    }
    const uid = node?.uid;
    if (uid !== undefined) return { apiVersion: "v1", kind: "Node", name, uid };
    this.#options.log.warn("Node not found; IPRuleNodeState created without owner", {
      node: name,
    });
    return undefined;
  }
}
