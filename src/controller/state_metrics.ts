/**
 * Series about the cluster's state, computed at scrape time from the leader's caches (pure): per
 * node converged and rule counts from the IPRuleNodeStates, the agents' nodes (selected,
 * scheduled, ready, converged) and each IPRule's Conflict condition. The leader's view is the
 * one alerts need: a node whose agent is gone still shows as not converged, which the agent's
 * own metrics cannot say. Standby replicas have no caches and report none of these.
 *
 * @module
 */
import type { Agent, IPRule, IPRuleNodeState, NodeInfo } from "../api/types.ts";
import { nodeConverged, selectedNodes } from "./agent_status.ts";
import { daemonPodSchedules } from "./tolerations.ts";

/** What the series are computed from: the leader's informer stores. */
export interface StateSource {
  agents: Iterable<Agent>;
  nodes: Iterable<NodeInfo>;
  nodeStates: ReadonlyMap<string, IPRuleNodeState>;
  ipRules: Iterable<IPRule>;
  /** The agents' DaemonSet status counts, when it exists. */
  daemonSet?: { desiredNumberScheduled?: number; numberReady?: number };
}

/** One node's row. */
export interface NodeSeries {
  node: string;
  converged: 0 | 1;
  desired: number;
  applied: number;
  failed: number;
}

/** Every series, as plain numbers. */
export interface StateSeries {
  nodes: NodeSeries[];
  /** Node counts of the Agent by state; empty without an Agent. */
  agentNodes: Partial<Record<"selected" | "scheduled" | "ready" | "converged", number>>;
  /** 1 when the IPRule's Conflict condition is True. */
  conflicts: { iprule: string; value: 0 | 1 }[];
}

/**
 * The series for the current caches. Nodes: those the Agent waits for (selected, and either
 * schedulable for its pod or already reporting) and every other node state that is not being
 * drained. `selected` counts the nodes waited for, `scheduled` and `ready` the DaemonSet's pods.
 */
export function stateSeries(source: StateSource): StateSeries {
  const [agent] = source.agents;
  const nodes = [...source.nodes];
  const awaited = agent === undefined
    ? []
    : selectedNodes(agent, nodes).filter((n) =>
      source.nodeStates.has(n.name) || daemonPodSchedules(agent.spec.tolerations, n.taints)
    );
  const names = new Set(awaited.map((n) => n.name));
  for (const [name, state] of source.nodeStates) {
    if (state.spec?.drain !== true) names.add(name);
  }
  const rows = [...names].sort().map((node): NodeSeries => {
    const state = source.nodeStates.get(node);
    return {
      node,
      converged: nodeConverged(state) ? 1 : 0,
      desired: state?.status?.desiredRules ?? 0,
      applied: state?.status?.appliedRules ?? 0,
      failed: state?.status?.failedCount ?? state?.status?.failedRules?.length ?? 0,
    };
  });
  const agentNodes: StateSeries["agentNodes"] = agent === undefined ? {} : {
    selected: awaited.length,
    scheduled: source.daemonSet?.desiredNumberScheduled ?? 0,
    ready: source.daemonSet?.numberReady ?? 0,
    converged: awaited.filter((n) => nodeConverged(source.nodeStates.get(n.name))).length,
  };
  const conflicts = [...source.ipRules].map((rule) => ({
    iprule: rule.metadata.name,
    value: rule.status?.conditions?.some((c) => c.type === "Conflict" && c.status === "True")
      ? 1 as const
      : 0 as const,
  })).sort((a, b) => a.iprule < b.iprule ? -1 : a.iprule > b.iprule ? 1 : 0);
  return { nodes: rows, agentNodes, conflicts };
}
