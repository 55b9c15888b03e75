/**
 * The drain protocol, its one owner: when a node's rules must go, who removes them, and what the
 * controller does with an Agent being deleted. Pure decisions over API objects (no I/O); the
 * controller's Agent reconcile and the agent's stop carry them out.
 *
 * Every drain is done by the agents themselves, when they stop, so that no uninstall order can
 * leave rules behind or get stuck: an agent removes every rule of its protocol at SIGTERM when
 * its Pod will not be replaced — its Agent or the operator's namespace is being deleted (or is
 * gone), or its node left the Agent's selection — and reports it in `status.draining`. On every
 * other stop (restart, rolling update, eviction, or anything it cannot tell) the rules stay.
 * The agent watches its namespace and its Agent while it runs, so it still knows at SIGTERM when
 * the same uninstall has already taken its token, its RBAC or the CRDs (`kubectl delete -k
 * deploy/` deletes them all at once, and the namespace controller stops the Pods first).
 *
 * No finalizer: one held by the controller cannot be guaranteed to go when the controller
 * itself goes (its ServiceAccount, RBAC or Deployment deleted in the same command, in any
 * order), and left behind it holds the namespace and the CRD in Terminating for good. Earlier
 * versions put {@link LEGACY_AGENT_FINALIZER} on the Agent; the controller removes it wherever it
 * finds it. `kubectl delete agent agent --cascade=foreground` waits until every agent Pod has
 * stopped, that is until every node removed its rules.
 *
 * A node that leaves the Agent's selection: the controller marks its IPRuleNodeState
 * `spec.drain` before it changes the DaemonSet; the stopping agent also checks the selection
 * itself, for a node whose labels or taints changed (the DaemonSet controller may stop the Pod
 * before the mark arrives).
 */
import type { Agent, IPRuleNodeState, IPRuleNodeStateStatus } from "./api/types.ts";
import type { JsonPatchOp } from "./k8s/objects.ts";

/**
 * The finalizer earlier versions put on the Agent, to drain the nodes before it went. Nothing
 * adds it now; the controller removes it (see the module doc).
 */
export const LEGACY_AGENT_FINALIZER = "api.operator.brtrm.dev/agent-cleanup";

/** Where an Agent's lifecycle stands, and what the Agent reconcile does about it. */
export type UninstallStep =
  /** No Agent: nothing runs (its DaemonSet goes with it, by owner reference). */
  | { phase: "NoAgent" }
  /** A live Agent: deploy; first remove an earlier version's finalizer when it holds one. */
  | { phase: "Installed"; releaseFinalizer: boolean }
  /**
   * Being deleted (another finalizer holds it, e.g. a foreground deletion waiting for the
   * DaemonSet): deploy nothing, the agents drain as they stop; remove an earlier version's
   * finalizer when it holds one.
   */
  | { phase: "Deleting"; releaseFinalizer: boolean };

/**
 * The step of an Agent's lifecycle:
 *
 * | Agent    | earlier finalizer | step                               |
 * | -------- | ----------------- | ---------------------------------- |
 * | none     |                   | NoAgent                            |
 * | live     | no / yes          | Installed (release it when held)   |
 * | deleting | no / yes          | Deleting (release it when held)    |
 */
export function uninstallStep(agent: Agent | undefined): UninstallStep {
  if (agent === undefined) return { phase: "NoAgent" };
  const releaseFinalizer = agent.metadata.finalizers?.includes(LEGACY_AGENT_FINALIZER) ?? false;
  return agent.metadata.deletionTimestamp === undefined
    ? { phase: "Installed", releaseFinalizer }
    : { phase: "Deleting", releaseFinalizer };
}

/**
 * How the config reconcile plans in the Agent's phase: while the Agent is being deleted (a
 * foreground deletion, waiting for its DaemonSet's Pods) every config is withdrawn (planned
 * absent), so the agents remove their rules before they stop; while there is no Agent, absent
 * configs stay absent (agents still terminating must not see rules come back).
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

/**
 * Whether a node's status shows rules: desiredRules 0 shows its agent saw every config absent
 * (or drained itself), appliedRules 0 that it acted. When this turns false a drain of the node is
 * finished: its agent writes that at once, not paced.
 */
export function holdsRules(status: IPRuleNodeStateStatus | undefined): boolean {
  return (status?.desiredRules ?? 0) > 0 || (status?.appliedRules ?? 0) > 0;
}

/** Whether a node's agent still holds rules (see `holdsRules`). */
export function nodeHoldsRules(state: IPRuleNodeState): boolean {
  return holdsRules(state.status);
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
 * The JSON patch that removes the earlier version's finalizer from `finalizers` (the Agent's, as
 * cached): it names the entry and tests that it is that one, so it needs no resourceVersion and
 * cannot remove another finalizer, whatever else changed since the cache saw the Agent.
 */
export function finalizerRemoval(finalizers: readonly string[]): JsonPatchOp[] {
  const path = `/metadata/finalizers/${finalizers.indexOf(LEGACY_AGENT_FINALIZER)}`;
  return [{ op: "test", path, value: LEGACY_AGENT_FINALIZER }, { op: "remove", path }];
}

/**
 * Where an object stands as the API server (or a watch of it) last showed it; undefined when
 * that is unknown (never read, or not readable).
 */
export type Presence = "live" | "deleting" | "gone" | undefined;

/** The presence of an object read successfully: undefined means it does not exist. */
export function presenceOf(
  object: { metadata: { deletionTimestamp?: string | undefined } } | undefined,
): Exclude<Presence, undefined> {
  if (object === undefined) return "gone";
  return object.metadata.deletionTimestamp === undefined ? "live" : "deleting";
}

/** What an agent knows when it stops. */
export interface StopInput {
  /** It stopped on an error that leaves it unable to change rules (no NET_ADMIN). */
  fatal: boolean;
  /**
   * The operator's namespace (the agent's own); undefined when unknown, or when the agent does
   * not run for an Agent (no --namespace: a local run).
   */
  namespace: Presence;
  /** The Agent that deployed this agent; undefined as for `namespace`. */
  agent: Presence;
  /** Its IPRuleNodeState's `spec.drain`; undefined when it could not be read. */
  drainMarked: boolean | undefined;
  /**
   * Whether the live Agent still selects this node (node selector, NoExecute taints); undefined
   * when the Agent or the Node could not be read.
   */
  selected: boolean | undefined;
}

/** What an agent does with its rules when it stops, and why (for the log). */
export interface StopAction {
  removeRules: boolean;
  reason: string;
}

/**
 * Whether a stopping agent removes its rules: only when its Pod will not be replaced. The
 * decision table (first matching row; `-` any value):
 *
 * | fatal | namespace         | Agent    | drain mark | selected | rules   |
 * | ----- | ----------------- | -------- | ---------- | -------- | ------- |
 * | yes   | -                 | -        | -          | -        | kept    |
 * | no    | deleting or gone  | -        | -          | -        | removed |
 * | no    | -                 | deleting | -          | -        | removed |
 * | no    | -                 | gone     | -          | -        | removed |
 * | no    | -                 | -        | set        | -        | removed |
 * | no    | -                 | -        | -          | no       | removed |
 * | no    | otherwise         |          |            |          | kept    |
 *
 * Unknown values never remove rules (fail static): a restart, a rolling update, an eviction or
 * an API server out of reach keeps them.
 */
export function stopAction(input: StopInput): StopAction {
  const remove = (reason: string) => ({ removeRules: true, reason });
  if (input.fatal) return { removeRules: false, reason: "stopped on an error" };
  if (input.namespace === "deleting" || input.namespace === "gone") {
    return remove("the operator's namespace is being deleted");
  }
  if (input.agent === "deleting") return remove("the Agent is being deleted");
  if (input.agent === "gone") return remove("the Agent was deleted");
  if (input.drainMarked === true) return remove("node left the Agent's selection");
  if (input.selected === false) return remove("node no longer selected by the Agent");
  const unknown = [
    ...(input.namespace === undefined ? ["namespace"] : []),
    ...(input.agent === undefined ? ["Agent"] : []),
    ...(input.drainMarked === undefined ? ["drain mark"] : []),
    ...(input.selected === undefined ? ["node selection"] : []),
  ];
  return {
    removeRules: false,
    reason: unknown.length === 0
      ? "not uninstalled or drained"
      : `not uninstalled or drained as far as known (not read: ${unknown.join(", ")})`,
  };
}
