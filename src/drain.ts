/**
 * The drain protocol, its one owner: when the nodes' rules must go, who removes them, and when
 * the uninstall may finish. Pure decisions over API objects (no I/O, the clock passed in); the
 * controller's Agent reconcile and the agent's stop carry them out.
 *
 * Uninstall (the Agent is deleted): a finalizer holds the Agent; every IPRuleConfig is planned
 * absent, each node's agent removes its rules and reports 0 desired and 0 applied (or that it
 * drained); then the DaemonSet is deleted and the finalizer removed. A node that does not report
 * within the drain timeout keeps its rules (DrainTimedOut) and the uninstall finishes anyway.
 *
 * A node that leaves the Agent's selection: the controller marks its IPRuleNodeState
 * `spec.drain`; its agent removes its rules when the DaemonSet stops it, and reports
 * `status.draining`. On every other stop (restart, rolling update, eviction) rules stay.
 *
 * Uninstall in any order (controller gone first) is the next step of this protocol: an agent
 * that sees its Agent or DaemonSet being deleted at SIGTERM, and no replacement coming, drains
 * itself. That belongs in `StopInput` and `stopAction`, the finalizer staying the fast path.
 */
import { nameList, type NameSample } from "./api/conditions.ts";
import type { Agent, IPRuleNodeState, IPRuleNodeStateStatus } from "./api/types.ts";
import type { JsonPatchOp } from "./k8s/objects.ts";

/** Finalizer that makes an Agent's deletion remove every node's rules first. */
export const AGENT_FINALIZER = "api.operator.brtrm.dev/agent-cleanup";
/** How often a drain in progress is checked, ms. */
export const DRAIN_POLL_MS = 1000;
/** Type of the Agent condition that tells how an uninstall drain goes. */
export const DRAINING = "Draining";

/** The Draining condition of the Agent, as a step sets it. */
export interface DrainCondition {
  type: typeof DRAINING;
  status: "True" | "False";
  reason: "Draining" | "DrainTimedOut";
  message: string;
}

/**
 * What the uninstall decision reads: the Agent, counts the controller keeps per event (so a
 * decision costs the same on 5 nodes and on 5,000), and the clock.
 */
export interface UninstallInput {
  /** The Agent of the operator's namespace, undefined when there is none. */
  agent: Agent | undefined;
  /** IPRuleConfigs in state `present`. */
  presentConfigs: number;
  /** Present IPRuleConfigs the operator did not create: never marked absent by a drain. */
  foreignConfigs: NameSample;
  /** Nodes whose IPRuleNodeState shows rules (see `holdsRules`). */
  busyNodes: NameSample;
  /** Current time, ms since the epoch. */
  now: number;
  /** How long a drain waits for the nodes, ms. */
  timeoutMs: number;
}

/** Where an Agent's lifecycle stands, and what the Agent reconcile does about it. */
export type UninstallStep =
  /** No Agent: nothing runs; configs marked absent by a drain stay absent. */
  | { phase: "NoAgent" }
  /** A live Agent without the finalizer: add it, then deploy as usual. */
  | { phase: "Installing" }
  /** A live Agent holding the finalizer: deploy as usual. */
  | { phase: "Installed" }
  /** Being deleted without our finalizer (removed already): nothing left to do. */
  | { phase: "Released" }
  /** Being deleted, nodes still hold rules: set the condition, look again after `requeueMs`. */
  | { phase: "Draining"; condition: DrainCondition; requeueMs: number }
  /** Every node reported its rules removed: delete the DaemonSet, remove the finalizer. */
  | { phase: "Drained"; elapsedMs: number }
  /** The timeout passed with nodes holding rules: say so, then finish as Drained does. */
  | { phase: "TimedOut"; condition: DrainCondition; nodes: NameSample; elapsedMs: number };

/**
 * Whether a node's status shows rules for the drain to wait on: desiredRules 0 shows its agent
 * saw every config absent (or drained itself), appliedRules 0 that it acted. When this turns
 * false the node's part of a drain is finished: its agent writes that at once, not paced.
 */
export function holdsRules(status: IPRuleNodeStateStatus | undefined): boolean {
  return (status?.desiredRules ?? 0) > 0 || (status?.appliedRules ?? 0) > 0;
}

/** Whether a node's agent still holds rules for the drain to wait on (see `holdsRules`). */
export function nodeHoldsRules(state: IPRuleNodeState): boolean {
  return holdsRules(state.status);
}

/**
 * The step of an Agent's lifecycle. The decision table (`finalizer`: ours is on the Agent;
 * `configs`: IPRuleConfigs still present; `nodes`: nodes holding rules, see `nodeHoldsRules`):
 *
 * | Agent    | finalizer | configs | nodes | elapsed   | step                              |
 * | -------- | --------- | ------- | ----- | --------- | --------------------------------- |
 * | none     |           |         |       |           | NoAgent                           |
 * | live     | no        |         |       |           | Installing                        |
 * | live     | yes       |         |       |           | Installed                         |
 * | deleting | no        |         |       |           | Released                          |
 * | deleting | yes       | > 0     |       | < timeout | Draining (marking absent/waiting) |
 * | deleting | yes       | 0       | > 0   | < timeout | Draining (waiting for nodes)      |
 * | deleting | yes       |         | > 0   | ≥ timeout | TimedOut                          |
 * | deleting | yes       | any     | 0     | ≥ timeout | Drained                           |
 * | deleting | yes       | 0       | 0     |           | Drained                           |
 */
export function uninstallStep(input: UninstallInput): UninstallStep {
  const { agent } = input;
  if (agent === undefined) return { phase: "NoAgent" };
  const held = agent.metadata.finalizers?.includes(AGENT_FINALIZER) ?? false;
  const deletion = agent.metadata.deletionTimestamp;
  if (deletion === undefined) return { phase: held ? "Installed" : "Installing" };
  if (!held) return { phase: "Released" };

  const { presentConfigs: present, foreignConfigs: foreign, busyNodes: busy } = input;
  const elapsedMs = input.now - Date.parse(deletion);
  if ((present > 0 || busy.count > 0) && elapsedMs < input.timeoutMs) {
    // Configs someone else created are never marked absent: their rules stay until deleted.
    const message = present > foreign.count
      ? `Marking ${present - foreign.count} IPRuleConfig(s) absent`
      : foreign.count > 0
      ? `Waiting: ${foreign.count} IPRuleConfig(s) not created by the operator are present ` +
        `(${nameList(foreign.names, foreign.count)}); delete them to let the nodes remove ` +
        `every rule`
      : `Waiting for ${busy.count} node(s) to remove their rules: ` +
        nameList(busy.names, busy.count);
    return {
      phase: "Draining",
      condition: { type: DRAINING, status: "True", reason: "Draining", message },
      requeueMs: DRAIN_POLL_MS,
    };
  }
  if (busy.count === 0) return { phase: "Drained", elapsedMs };
  return {
    phase: "TimedOut",
    nodes: busy,
    elapsedMs,
    condition: {
      type: DRAINING,
      status: "False",
      reason: "DrainTimedOut",
      message: `${busy.count} node(s) did not report their rules removed within ` +
        `${input.timeoutMs} ms: ${nameList(busy.names, busy.count)}`,
    },
  };
}

/**
 * How the config reconcile plans in the Agent's phase: while the Agent is being deleted every
 * config is withdrawn (planned absent) so the agents remove their rules; while there is no
 * Agent, absent configs stay absent (agents still terminating must not see rules come back).
 */
export function configPolicy(agent: Agent | undefined): {
  withdrawAll: boolean;
  holdAbsent: boolean;
} {
  return {
    withdrawAll: agent?.metadata.deletionTimestamp !== undefined,
    holdAbsent: agent === undefined,
  };
}

/** A change of one node's `spec.drain`. */
export interface DrainMark {
  node: string;
  drain: boolean;
}

/**
 * The `spec.drain` change that makes a node state agree with the Agent's selection, if any:
 * set on a node outside it (its agent then removes its rules when the DaemonSet stops it),
 * cleared on a selected one.
 */
export function drainMark(selected: boolean, state: IPRuleNodeState): DrainMark | undefined {
  const drain = !selected;
  return (state.spec?.drain ?? false) === drain ? undefined : { node: state.metadata.name, drain };
}

/**
 * The JSON patch that removes our finalizer from `finalizers` (the Agent's, as cached): it names
 * the entry and tests that it is ours, so it needs no resourceVersion and cannot remove another
 * finalizer, whatever else changed since the cache saw the Agent.
 */
export function finalizerRemoval(finalizers: readonly string[]): JsonPatchOp[] {
  const path = `/metadata/finalizers/${finalizers.indexOf(AGENT_FINALIZER)}`;
  return [{ op: "test", path, value: AGENT_FINALIZER }, { op: "remove", path }];
}

/** What an agent knows when it stops. */
export interface StopInput {
  /** It stopped on an error that leaves it unable to change rules (no NET_ADMIN). */
  fatal: boolean;
  /** Its IPRuleNodeState's `spec.drain`; undefined when it could not be read. */
  drainMarked: boolean | undefined;
}

/** What an agent does with its rules when it stops, and why (for the log). */
export interface StopAction {
  removeRules: boolean;
  reason: string;
}

/**
 * Whether a stopping agent removes its rules. Only when the controller marked its node drained
 * (the node left the Agent's selection, so the DaemonSet stops this agent for good); a restart,
 * a rolling update, an unknown drain mark (fail static) or a fatal error keep them.
 */
export function stopAction(input: StopInput): StopAction {
  if (input.fatal) return { removeRules: false, reason: "stopped on an error" };
  if (input.drainMarked === true) {
    return { removeRules: true, reason: "node left the Agent's selection" };
  }
  return {
    removeRules: false,
    reason: input.drainMarked === undefined ? "drain mark not read" : "not drained",
  };
}
