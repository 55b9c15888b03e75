import assert from "node:assert/strict";
import { type Agent, API_VERSION, type IPRuleNodeState, type NodeInfo } from "../api/types.ts";
import {
  agentStatus,
  type FleetCounts,
  nodeConverged,
  sameAgentStatus,
  selectedNodes,
  urgentAgentChange,
} from "./agent_status.ts";
import { AgentTally } from "./agent_tally.ts";

const agent: Agent = {
  apiVersion: API_VERSION,
  kind: "Agent",
  metadata: { name: "agent", namespace: "ops", generation: 4 },
  spec: { nodeSelector: { pool: "edge" } },
};
const linux = { "kubernetes.io/os": "linux" };
const nodes = [
  { name: "n1", labels: { ...linux, pool: "edge" } },
  { name: "n2", labels: { ...linux, pool: "edge" } },
  { name: "n3", labels: { ...linux, pool: "core" } },
  { name: "w1", labels: { "kubernetes.io/os": "windows", pool: "edge" } },
];
function state(name: string, converged: boolean): IPRuleNodeState {
  return {
    apiVersion: API_VERSION,
    kind: "IPRuleNodeState",
    metadata: { name },
    status: {
      conditions: [{
        type: "Converged",
        status: converged ? "True" : "False",
        reason: "x",
        message: "",
        lastTransitionTime: "2026-01-01T00:00:00Z",
      }],
    },
  };
}
const T = "2026-01-02T00:00:00Z";

/** The fleet counts of `agent` over these nodes and states, as the controller keeps them. */
function fleet(
  a: Agent,
  input: { nodes: readonly NodeInfo[]; states: ReadonlyMap<string, IPRuleNodeState> },
): FleetCounts {
  const tally = new AgentTally();
  tally.agent(a);
  for (const n of input.nodes) tally.node(n.name, n);
  for (const [name, s] of input.states) tally.nodeState(name, s);
  return tally.fleet;
}

Deno.test("agentStatus() is Ready only when every selected node converged", () => {
  const partly = agentStatus(agent, {
    fleet: fleet(agent, {
      nodes,
      states: new Map([["n1", state("n1", true)], ["n2", state("n2", false)], [
        "n3",
        state("n3", false),
      ]]),
    }),
  }, T);
  assert.equal(partly.convergedNodes, 1);
  assert.equal(partly.conditions?.[0]?.status, "False");
  assert.match(partly.conditions?.[0]?.message ?? "", /1\/2 node\(s\) converged; waiting for n2/);
  const both = new Map([["n1", state("n1", true)], ["n2", state("n2", true)]]);
  const all = agentStatus(agent, {
    daemonSet: { desiredNumberScheduled: 2, currentNumberScheduled: 2, numberReady: 2 },
    fleet: fleet(agent, { nodes, states: both }),
  }, T);
  assert.equal(all.conditions?.[0]?.status, "True");
  assert.equal(all.numberReady, 2);
  assert.equal(all.observedGeneration, 4);
  assert.ok(sameAgentStatus(
    all,
    agentStatus({ ...agent, status: all }, {
      daemonSet: { desiredNumberScheduled: 2, currentNumberScheduled: 2, numberReady: 2 },
      fleet: fleet(agent, { nodes, states: both }),
    }, "2026-01-03T00:00:00Z"),
  ));
});

Deno.test("agentStatus() says so when no node is selected", () => {
  const gpu = { ...agent, spec: { nodeSelector: { pool: "gpu" } } };
  const none = agentStatus(gpu, { fleet: fleet(gpu, { nodes, states: new Map() }) }, T);
  assert.equal(none.conditions?.[0]?.reason, "NoNodes");
});

Deno.test("selectedNodes() keeps to Linux nodes, with an empty, absent or partial selector", () => {
  const names = (nodeSelector?: Record<string, string>) =>
    selectedNodes({ ...agent, spec: nodeSelector ? { nodeSelector } : {} }, nodes).map((n) =>
      n.name
    );
  assert.deepEqual(names(), ["n1", "n2", "n3"]);
  assert.deepEqual(names({}), ["n1", "n2", "n3"]);
  assert.deepEqual(names({ pool: "edge" }), ["n1", "n2"]);
  assert.deepEqual(names({ "kubernetes.io/os": "windows" }), ["w1"]);
});

Deno.test("taints: NoExecute ones the Agent misses drain a node; NoSchedule ones are not waited for", () => {
  const tainted = [
    ...nodes,
    {
      name: "gpu1",
      labels: { ...linux, pool: "edge" },
      taints: [{ key: "nvidia.com/gpu", value: "true", effect: "NoSchedule" }],
    },
    {
      name: "db1",
      labels: { ...linux, pool: "edge" },
      taints: [{ key: "dedicated", value: "db", effect: "NoExecute" }],
    },
    {
      name: "cordoned",
      labels: { ...linux, pool: "edge" },
      taints: [{ key: "node.kubernetes.io/unschedulable", effect: "NoSchedule" }],
    },
  ];
  // Drain: only db1 (evicted); gpu1 keeps an agent that runs there already.
  assert.deepEqual(selectedNodes(agent, tainted).map((n) => n.name), [
    "n1",
    "n2",
    "gpu1",
    "cordoned",
  ]);
  const tolerant: Agent = {
    ...agent,
    spec: { ...agent.spec, tolerations: [{ key: "dedicated", operator: "Exists" }] },
  };
  assert.deepEqual(selectedNodes(tolerant, tainted).map((n) => n.name), [
    "n1",
    "n2",
    "gpu1",
    "db1",
    "cordoned",
  ]);

  // Ready: every node that gets an agent converged; gpu1 (no agent, no state) is not awaited.
  const converged = new Map(["n1", "n2", "cordoned"].map((name) => [name, state(name, true)]));
  const ready = agentStatus(agent, {
    fleet: fleet(agent, { nodes: tainted, states: converged }),
  }, T);
  assert.equal(ready.conditions?.[0]?.status, "True", ready.conditions?.[0]?.message);
  // ... unless an agent runs there and reports.
  converged.set("gpu1", state("gpu1", false));
  const waiting = agentStatus(agent, {
    fleet: fleet(agent, { nodes: tainted, states: converged }),
  }, T);
  assert.match(
    waiting.conditions?.[0]?.message ?? "",
    /3\/4 node\(s\) converged; waiting for gpu1/,
  );
});

Deno.test("agentStatus() names five waiting nodes of thousands and counts the rest", () => {
  const status = agentStatus(agent, {
    fleet: { awaited: 5000, waiting: { count: 4000, names: ["a", "b", "c", "d", "e"] } },
  }, T);
  assert.equal(status.convergedNodes, 1000);
  assert.equal(
    status.conditions?.[0]?.message,
    "1000/5000 node(s) converged; waiting for a, b, c, d, e and 3995 more",
  );
});

Deno.test("urgentAgentChange(): conditions flipping and a new generation are urgent, counts wait", () => {
  const waiting = (count: number) =>
    agentStatus(agent, {
      fleet: { awaited: 10, waiting: { count, names: ["n1"] } },
    }, T);
  const nine = waiting(9);
  assert.equal(urgentAgentChange(undefined, nine), true, "first write");
  assert.equal(urgentAgentChange(nine, waiting(3)), false, "fewer nodes waiting");
  const ready = agentStatus(agent, { fleet: { awaited: 10, waiting: { count: 0, names: [] } } }, T);
  assert.equal(urgentAgentChange(waiting(1), ready), true, "Ready flips");
  assert.equal(urgentAgentChange(ready, waiting(1)), true, "Ready lost");
  const newer = agentStatus({ ...agent, metadata: { ...agent.metadata, generation: 5 } }, {
    fleet: { awaited: 10, waiting: { count: 9, names: ["n1"] } },
  }, T);
  assert.equal(urgentAgentChange(nine, newer), true, "spec change observed");
  const refused = agentStatus(agent, {
    fleet: { awaited: 10, waiting: { count: 9, names: ["n1"] } },
    invalidSpec: "bad toleration",
  }, T);
  assert.equal(urgentAgentChange(nine, refused), true, "reason InvalidSpec");
});

Deno.test("nodeConverged() reads the Converged condition, whatever other conditions say", () => {
  const withConditions = (conditions: { type: string; status: "True" | "False" }[]) => ({
    ...state("n", false),
    status: {
      conditions: conditions.map((c) => ({
        ...c,
        reason: "x",
        message: "",
        lastTransitionTime: T,
      })),
    },
  });
  assert.equal(nodeConverged(undefined), false);
  assert.equal(nodeConverged({ ...state("n", true), status: {} }), false);
  assert.equal(
    nodeConverged({ apiVersion: API_VERSION, kind: "IPRuleNodeState", metadata: { name: "n" } }),
    false,
  );
  assert.equal(nodeConverged(state("n", true)), true);
  assert.equal(nodeConverged(state("n", false)), false);
  assert.equal(
    nodeConverged(
      withConditions([{ type: "Draining", status: "False" }, {
        type: "Converged",
        status: "True",
      }]),
    ),
    true,
  );
  assert.equal(nodeConverged(withConditions([{ type: "Draining", status: "True" }])), false);
});

Deno.test("agentStatus() writes the counts and one Ready condition, with its reason and message", () => {
  const ready = agentStatus(agent, {
    daemonSet: { desiredNumberScheduled: 3, currentNumberScheduled: 2, numberReady: 1 },
    fleet: { awaited: 2, waiting: { count: 0, names: [] } },
  }, T);
  const condition = (status: string, reason: string, message: string, gen = true) => ({
    type: "Ready",
    status,
    reason,
    message,
    lastTransitionTime: T,
    ...(gen ? { observedGeneration: 4 } : {}),
  });
  assert.deepEqual(ready, {
    observedGeneration: 4,
    desiredNumberScheduled: 3,
    currentNumberScheduled: 2,
    numberReady: 1,
    convergedNodes: 2,
    conditions: [condition("True", "Converged", "All 2 selected node(s) converged")],
  });
  // No DaemonSet yet, an Agent without a generation (as made by hand), no node selected.
  const bare = { ...agent, metadata: { name: "agent", namespace: "ops" } };
  assert.deepEqual(
    agentStatus(bare, { fleet: { awaited: 0, waiting: { count: 0, names: [] } } }, T),
    {
      desiredNumberScheduled: 0,
      currentNumberScheduled: 0,
      numberReady: 0,
      convergedNodes: 0,
      conditions: [
        condition("False", "NoNodes", "No node matches the Agent's node selector", false),
      ],
    },
  );
  const waiting = agentStatus(agent, {
    fleet: { awaited: 2, waiting: { count: 1, names: ["n2"] } },
  }, T);
  assert.deepEqual(
    waiting.conditions,
    [condition("False", "NotConverged", "1/2 node(s) converged; waiting for n2")],
  );
});

Deno.test("agentStatus(): a refused DaemonSet makes it not Ready, whatever the nodes say, with the reason cut short", () => {
  const reason = "spec.tolerations[0].operator: Unsupported value: " + "x".repeat(2000);
  for (const awaited of [0, 3]) {
    const status = agentStatus(agent, {
      fleet: { awaited, waiting: { count: 0, names: [] } },
      invalidSpec: reason,
    }, T);
    const [ready] = status.conditions ?? [];
    assert.equal(ready?.status, "False");
    assert.equal(ready?.reason, "InvalidSpec");
    assert.equal(
      ready?.message,
      `The DaemonSet of this spec was refused: ${reason.slice(0, 1024)}`,
    );
  }
});

Deno.test("urgentAgentChange() ignores the order of the conditions and an absent list", () => {
  const condition = (type: string, status: "True" | "False") => ({
    type,
    status,
    reason: "R",
    message: "",
    lastTransitionTime: T,
  });
  const base = {
    desiredNumberScheduled: 1,
    currentNumberScheduled: 1,
    numberReady: 1,
    convergedNodes: 1,
  };
  const a = condition("Ready", "True");
  const b = condition("Draining", "False");
  assert.equal(
    urgentAgentChange({ ...base, conditions: [a, b] }, { ...base, conditions: [b, a] }),
    false,
  );
  assert.equal(urgentAgentChange(base, { ...base, conditions: [] }), false);
  assert.equal(urgentAgentChange(base, { ...base, conditions: [a] }), true);
});

Deno.test("sameAgentStatus() sees a change of any field", () => {
  const status = agentStatus(agent, {
    daemonSet: { desiredNumberScheduled: 3, currentNumberScheduled: 2, numberReady: 1 },
    fleet: { awaited: 2, waiting: { count: 1, names: ["n2"] } },
  }, T);
  assert.equal(sameAgentStatus(status, structuredClone(status)), true);
  assert.equal(sameAgentStatus(undefined, status), false);
  for (
    const change of [
      { observedGeneration: 5 },
      { desiredNumberScheduled: 4 },
      { currentNumberScheduled: 3 },
      { numberReady: 2 },
      { convergedNodes: 2 },
      { conditions: [] },
    ]
  ) {
    assert.equal(sameAgentStatus(status, { ...status, ...change }), false, JSON.stringify(change));
  }
});
