import assert from "node:assert/strict";
import { API_VERSION, type IPRule, type IPRuleNodeState } from "../api/types.ts";
import type { NodeInfo } from "../api/types.ts";
import { testAgent, testCondition } from "../api/test_objects.ts";
import { stateSeries } from "./state_metrics.ts";

const agent = testAgent("ip-rule-operator-system", { nodeSelector: { pool: "edge" } });

function node(name: string, labels: Record<string, string>, taints: NodeInfo["taints"] = []) {
  return { name, labels: { "kubernetes.io/os": "linux", ...labels }, taints };
}

function state(
  name: string,
  converged: boolean,
  counts: { desired: number; applied: number; failed: number },
  drain = false,
): IPRuleNodeState {
  return {
    apiVersion: API_VERSION,
    kind: "IPRuleNodeState",
    metadata: { name },
    ...(drain ? { spec: { drain: true } } : {}),
    status: {
      desiredRules: counts.desired,
      appliedRules: counts.applied,
      failedCount: counts.failed,
      conditions: [
        testCondition("Converged", converged, converged ? "Converged" : "RulesFailed"),
      ],
    },
  };
}

function rule(name: string, conflict: boolean): IPRule {
  return {
    apiVersion: API_VERSION,
    kind: "IPRule",
    metadata: { name },
    spec: { cidrs: ["10.0.0.0/24"], table: 100, priority: 1000 },
    status: {
      conditions: [
        testCondition("Conflict", conflict, conflict ? "LostToOtherRule" : "NoConflict"),
      ],
    },
  };
}

Deno.test("stateSeries() reports every awaited node, a silent one as not converged", () => {
  const series = stateSeries({
    agents: [agent],
    nodes: [
      node("edge-1", { pool: "edge" }),
      node("edge-2", { pool: "edge" }), // selected, no agent has reported yet
      node("core-1", { pool: "core" }), // not selected
      // Selected, but its NoSchedule taint keeps the agent away: not waited for.
      node("edge-gpu", { pool: "edge" }, [{ key: "gpu", value: "", effect: "NoSchedule" }]),
    ],
    nodeStates: new Map([
      ["edge-1", state("edge-1", false, { desired: 5, applied: 3, failed: 2 })],
      // Left the selection and is being drained: no longer a node to alert on.
      ["old-1", state("old-1", true, { desired: 0, applied: 0, failed: 0 }, true)],
    ]),
    ipRules: [rule("uplink-b", false), rule("uplink-a", true)],
    daemonSet: { desiredNumberScheduled: 2, numberReady: 1 },
  });
  assert.deepEqual(series.nodes, [
    { node: "edge-1", converged: 0, desired: 5, applied: 3, failed: 2 },
    { node: "edge-2", converged: 0, desired: 0, applied: 0, failed: 0 },
  ]);
  assert.deepEqual(series.agentNodes, { selected: 2, scheduled: 2, ready: 1, converged: 0 });
  assert.deepEqual(series.conflicts, [
    { iprule: "uplink-a", value: 1 },
    { iprule: "uplink-b", value: 0 },
  ]);
});

Deno.test("stateSeries() without an Agent reports the remaining node states and no agent counts", () => {
  const series = stateSeries({
    agents: [],
    nodes: [node("edge-1", { pool: "edge" })],
    nodeStates: new Map([["edge-1", state("edge-1", true, { desired: 1, applied: 1, failed: 0 })]]),
    ipRules: [],
  });
  assert.deepEqual(series.nodes, [
    { node: "edge-1", converged: 1, desired: 1, applied: 1, failed: 0 },
  ]);
  assert.deepEqual(series.agentNodes, {});
  assert.deepEqual(series.conflicts, []);
});
