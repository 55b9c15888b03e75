/** Agent status from its DaemonSet and the nodes' IPRuleNodeStates (pure). */
import type {
  Agent,
  AgentStatus,
  DaemonSetCounts,
  IPRuleNodeState,
  NodeInfo,
} from "../api/types.ts";
import { selectorMatches } from "./selector.ts";
import { nameList, sameConditions, setCondition } from "../api/conditions.ts";
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
  return nodes.filter((n) =>
    selectorMatches({ matchLabels: selector }, n.labels) &&
    daemonPodStays(agent.spec.tolerations, n.taints)
  );
}

/**
 * Selected nodes the Agent's Ready condition waits for: those a new agent pod is scheduled on,
 * and those whose agent already reports (it runs there, e.g. on a node cordoned since or not
 * ready). A node whose NoSchedule taint keeps the agent away, e.g. a GPU pool, is not waited for.
 */
function awaitedNodes(
  agent: Agent,
  nodes: readonly NodeInfo[],
  states: ReadonlyMap<string, IPRuleNodeState>,
): NodeInfo[] {
  return selectedNodes(agent, nodes).filter((n) =>
    states.has(n.name) || daemonPodSchedules(agent.spec.tolerations, n.taints)
  );
}

/** The Agent's status: Ready when every selected node's agent has converged. */
export function agentStatus(
  agent: Agent,
  input: {
    daemonSet?: DaemonSetCounts;
    nodes: readonly NodeInfo[];
    states: ReadonlyMap<string, IPRuleNodeState>;
    /** Why the API server refused the DaemonSet rendered from this spec, when it did. */
    invalidSpec?: string;
  },
  now: string,
): AgentStatus {
  const selected = awaitedNodes(agent, input.nodes, input.states);
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
    : `${converged}/${selected.length} node(s) converged; waiting for ${nameList(waiting)}`;
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
        : selected.length === 0
        ? "NoNodes"
        : "NotConverged",
      message: input.invalidSpec !== undefined
        ? `The DaemonSet of this spec was refused: ${input.invalidSpec.slice(0, 1024)}`
        : message,
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
