/**
 * Agent status from its DaemonSet and the counts of its nodes (pure), which nodes it selects
 * and waits for, and which status changes are urgent.
 */
import type {
  Agent,
  AgentStatus,
  DaemonSetCounts,
  IPRuleNodeState,
  NodeInfo,
} from "../api/types.ts";
import { selectorMatches } from "./selector.ts";
import { nameList, type NameSample, sameConditions, setCondition } from "../api/conditions.ts";
import { agentNodeSelector } from "./daemonset.ts";
import { daemonPodSchedules, daemonPodStays } from "./tolerations.ts";

/** Whether a node's agent reports its rules converged. */
export function nodeConverged(state: IPRuleNodeState | undefined): boolean {
  return state?.status?.conditions?.some((c) => c.type === "Converged" && c.status === "True") ??
    false;
}

/**
 * Nodes the agent DaemonSet keeps an agent on: those the Agent's node selector selects (always
 * Linux nodes: see agentNodeSelector) without a NoExecute taint its tolerations miss. The
 * others are drained.
 */
export function selectedNodes(agent: Agent, nodes: readonly NodeInfo[]): NodeInfo[] {
  const selector = agentNodeSelector(agent.spec);
  return nodes.filter((n) => nodeSelected(agent, n, selector));
}

/** Whether the agent DaemonSet keeps an agent on `node` (see `selectedNodes`). */
export function nodeSelected(
  agent: Agent,
  node: NodeInfo,
  selector: Record<string, string> = agentNodeSelector(agent.spec),
): boolean {
  return selectorMatches({ matchLabels: selector }, node.labels) &&
    daemonPodStays(agent.spec.tolerations, node.taints);
}

/**
 * Whether the Agent's Ready condition waits for a selected node: when a new agent pod is
 * scheduled on it, or its agent already reports (it runs there, e.g. on a node cordoned since
 * or not ready). A node whose NoSchedule taint keeps the agent away, e.g. a GPU pool, is not
 * waited for.
 */
export function nodeAwaited(agent: Agent, node: NodeInfo, reporting: boolean): boolean {
  return reporting || daemonPodSchedules(agent.spec.tolerations, node.taints);
}

/** What the Agent's status counts of its nodes (kept per event by the `AgentTally`). */
export interface FleetCounts {
  /** Selected nodes the Agent waits for (see `nodeAwaited`). */
  awaited: number;
  /** Those of them whose agent has not reported converged. */
  waiting: NameSample;
}

/** The Agent's status: Ready when every selected node's agent has converged. */
export function agentStatus(
  agent: Agent,
  input: {
    daemonSet?: DaemonSetCounts;
    fleet: FleetCounts;
    /** Why the API server refused the DaemonSet rendered from this spec, when it did. */
    invalidSpec?: string;
  },
  now: string,
): AgentStatus {
  const { awaited, waiting } = input.fleet;
  const converged = awaited - waiting.count;
  const gen = agent.metadata.generation === undefined
    ? {}
    : { observedGeneration: agent.metadata.generation };
  const ready = awaited > 0 && waiting.count === 0;
  const message = awaited === 0
    ? "No node matches the Agent's node selector"
    : ready
    ? `All ${awaited} selected node(s) converged`
    : `${converged}/${awaited} node(s) converged; waiting for ` +
      nameList(waiting.names, waiting.count);
  const ds = input.daemonSet ?? {};
  return {
    ...gen,
    desiredNumberScheduled: ds.desiredNumberScheduled ?? 0,
    currentNumberScheduled: ds.currentNumberScheduled ?? 0,
    numberReady: ds.numberReady ?? 0,
    convergedNodes: converged,
    conditions: setCondition(agent.status?.conditions, {
      type: "Ready",
      status: ready && input.invalidSpec === undefined ? "True" : "False",
      reason: input.invalidSpec !== undefined
        ? "InvalidSpec"
        : ready
        ? "Converged"
        : awaited === 0
        ? "NoNodes"
        : "NotConverged",
      message: input.invalidSpec !== undefined
        ? `The DaemonSet of this spec was refused: ${input.invalidSpec.slice(0, 1024)}`
        : message,
      ...gen,
    }, now),
  };
}

/**
 * Whether an Agent status change must be written after the pacing floor rather than at the end
 * of the interval: a condition flipping or changing its reason (Ready, Draining), or a new
 * generation observed. Counts and messages alone wait.
 */
export function urgentAgentChange(written: AgentStatus | undefined, next: AgentStatus): boolean {
  if (written === undefined) return true;
  const conditions = (s: AgentStatus) =>
    (s.conditions ?? []).map((c) => `${c.type}=${c.status}/${c.reason}`).sort().join(",");
  return written.observedGeneration !== next.observedGeneration ||
    conditions(written) !== conditions(next);
}

/** Whether an Agent status write would change anything. */
export function sameAgentStatus(a: AgentStatus | undefined, b: AgentStatus): boolean {
  return a !== undefined && a.observedGeneration === b.observedGeneration &&
    a.desiredNumberScheduled === b.desiredNumberScheduled &&
    a.currentNumberScheduled === b.currentNumberScheduled && a.numberReady === b.numberReady &&
    a.convergedNodes === b.convergedNodes && sameConditions(a.conditions, b.conditions);
}
