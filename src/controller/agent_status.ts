/** Agent status from its DaemonSet and the nodes' IPRuleNodeStates (pure). */
import type { Agent, AgentStatus, IPRuleNodeState } from "../api/types.ts";
import { selectorMatches } from "../plan/selector.ts";
import { sameConditions, setCondition } from "../api/conditions.ts";

/** What the controller knows of a Node. */
export interface NodeInfo {
  name: string;
  labels: Record<string, string>;
}

/** The DaemonSet status counters the Agent mirrors. */
export interface DaemonSetCounts {
  desiredNumberScheduled?: number;
  currentNumberScheduled?: number;
  numberReady?: number;
}

/** Whether a node's agent reports its rules converged. */
export function nodeConverged(state: IPRuleNodeState | undefined): boolean {
  return state?.status?.conditions?.some((c) => c.type === "Converged" && c.status === "True") ??
    false;
}

/** Nodes the Agent's node selector selects (default: Linux nodes). */
export function selectedNodes(agent: Agent, nodes: readonly NodeInfo[]): NodeInfo[] {
  const selector = agent.spec.nodeSelector ?? { "kubernetes.io/os": "linux" };
  return nodes.filter((n) => selectorMatches({ matchLabels: selector }, n.labels));
}

/** The Agent's status: Ready when every selected node's agent has converged. */
export function agentStatus(
  agent: Agent,
  input: {
    daemonSet?: DaemonSetCounts;
    nodes: readonly NodeInfo[];
    states: ReadonlyMap<string, IPRuleNodeState>;
  },
  now: string,
): AgentStatus {
  const selected = selectedNodes(agent, input.nodes);
  const waiting = selected.filter((n) => !nodeConverged(input.states.get(n.name))).map((n) =>
    n.name
  );
  const converged = selected.length - waiting.length;
  const gen = agent.metadata.generation === undefined
    ? {}
    : { observedGeneration: agent.metadata.generation };
  const ready = selected.length > 0 && waiting.length === 0;
  const message = selected.length === 0
    ? "No node matches the Agent's node selector"
    : ready
    ? `All ${selected.length} selected node(s) converged`
    : `${converged}/${selected.length} node(s) converged; waiting for ${
      waiting.slice(0, 5).join(", ")
    }${waiting.length > 5 ? ` and ${waiting.length - 5} more` : ""}`;
  const ds = input.daemonSet ?? {};
  return {
    ...gen,
    desiredNumberScheduled: ds.desiredNumberScheduled ?? 0,
    currentNumberScheduled: ds.currentNumberScheduled ?? 0,
    numberReady: ds.numberReady ?? 0,
    convergedNodes: converged,
    conditions: setCondition(agent.status?.conditions, {
      type: "Ready",
      status: ready ? "True" : "False",
      reason: ready ? "Converged" : selected.length === 0 ? "NoNodes" : "NotConverged",
      message,
      ...gen,
    }, now),
  };
}

/** Whether an Agent status write would change anything. */
export function sameAgentStatus(a: AgentStatus | undefined, b: AgentStatus): boolean {
  return a !== undefined && a.observedGeneration === b.observedGeneration &&
    a.desiredNumberScheduled === b.desiredNumberScheduled &&
    a.currentNumberScheduled === b.currentNumberScheduled && a.numberReady === b.numberReady &&
    a.convergedNodes === b.convergedNodes && sameConditions(a.conditions, b.conditions);
}
