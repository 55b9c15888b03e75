import assert from "node:assert/strict";
import {
  type Agent,
  API_VERSION,
  type IPRuleConfig,
  type IPRuleNodeState,
  MANAGED_BY,
  MANAGED_BY_LABEL,
  type NodeInfo,
} from "../api/types.ts";
import { drainMark, nodeHoldsRules } from "../drain.ts";
import { nodeAwaited, nodeConverged, selectedNodes } from "./agent_status.ts";
import { AgentTally } from "./agent_tally.ts";

const LINUX = { "kubernetes.io/os": "linux" };

function agent(spec: Agent["spec"] = {}): Agent {
  return { apiVersion: API_VERSION, kind: "Agent", metadata: { name: "agent" }, spec };
}

function state(
  name: string,
  options: { converged?: boolean; rules?: number; drain?: boolean } = {},
): IPRuleNodeState {
  return {
    apiVersion: API_VERSION,
    kind: "IPRuleNodeState",
    metadata: { name },
    ...(options.drain === undefined ? {} : { spec: { drain: options.drain } }),
    status: {
      desiredRules: options.rules ?? 0,
      appliedRules: options.rules ?? 0,
      conditions: [{
        type: "Converged",
        status: options.converged ? "True" : "False",
        reason: "x",
        message: "",
        lastTransitionTime: "2026-01-01T00:00:00Z",
      }],
    },
  };
}

function config(name: string, present: boolean, managed = true): IPRuleConfig {
  return {
    apiVersion: API_VERSION,
    kind: "IPRuleConfig",
    metadata: { name, ...(managed ? { labels: { [MANAGED_BY_LABEL]: MANAGED_BY } } : {}) },
    spec: {
      serviceIP: "10.96.0.1",
      table: 100,
      priority: 1000,
      state: present ? "present" : "absent",
    },
  };
}

/** The counts computed from scratch over every object, as the reconcile did before. */
function scan(
  a: Agent | undefined,
  nodes: Map<string, NodeInfo>,
  states: Map<string, IPRuleNodeState>,
) {
  const selected = new Set(a ? selectedNodes(a, [...nodes.values()]).map((n) => n.name) : []);
  const awaited = a
    ? selectedNodes(a, [...nodes.values()]).filter((n) => nodeAwaited(a, n, states.has(n.name)))
    : [];
  return {
    awaited: awaited.length,
    waiting: new Set(awaited.filter((n) => !nodeConverged(states.get(n.name))).map((n) => n.name)),
    busy: new Set([...states.values()].filter(nodeHoldsRules).map((s) => s.metadata.name)),
    marks: [...states.values()].map((s) => drainMark(selected.has(s.metadata.name), s)).filter(
      (m) => m !== undefined,
    ).sort((x, y) => x.node.localeCompare(y.node)),
  };
}

Deno.test("AgentTally keeps the same counts as a full scan through any sequence of changes", () => {
  // A small deterministic generator: the same sequence on every run.
  let seed = 42;
  const random = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
  const agents = [
    undefined,
    agent(),
    agent({ nodeSelector: { pool: "edge" } }),
    agent({ tolerations: [{ key: "dedicated", operator: "Exists" }] }),
  ];
  const tally = new AgentTally();
  const nodes = new Map<string, NodeInfo>();
  const states = new Map<string, IPRuleNodeState>();
  let current: Agent | undefined;
  for (let step = 0; step < 3000; step++) {
    const name = `n${random(12)}`;
    switch (random(8)) {
      case 0:
        current = agents[random(agents.length)];
        tally.agent(current);
        break;
      case 1:
      case 2: {
        const taints = random(3) === 0
          ? [{ key: "dedicated", effect: random(2) ? "NoExecute" : "NoSchedule" }]
          : undefined;
        const info: NodeInfo = {
          name,
          labels: { ...LINUX, pool: random(2) ? "edge" : "core" },
          ...(taints ? { taints } : {}),
        };
        nodes.set(name, info);
        tally.node(name, info);
        break;
      }
      case 3:
        nodes.delete(name);
        tally.node(name, undefined);
        break;
      case 4:
      case 5:
      case 6: {
        const s = state(name, {
          converged: random(2) === 1,
          rules: random(3),
          ...(random(3) === 0 ? {} : { drain: random(2) === 1 }),
        });
        states.set(name, s);
        tally.nodeState(name, s);
        break;
      }
      default:
        states.delete(name);
        tally.nodeState(name, undefined);
    }
    const want = scan(current, nodes, states);
    const fleet = tally.fleet;
    assert.equal(fleet.awaited, want.awaited, `step ${step}: awaited`);
    assert.equal(fleet.waiting.count, want.waiting.size, `step ${step}: waiting`);
    assert.ok(fleet.waiting.names.every((n) => want.waiting.has(n)), `step ${step}: names`);
    assert.equal(tally.busyNodes.count, want.busy.size, `step ${step}: busy`);
    assert.deepEqual(
      tally.drainMarks().sort((x, y) => x.node.localeCompare(y.node)),
      want.marks,
      `step ${step}: marks`,
    );
  }
});

Deno.test("AgentTally says whether a change matters to the Agent reconcile", () => {
  const tally = new AgentTally();
  tally.agent(agent());
  assert.equal(tally.node("n1", { name: "n1", labels: LINUX }), true, "a new selected node");
  assert.equal(tally.nodeState("n1", state("n1", { converged: true, rules: 3 })), true);
  // The counts of a converged node change: nothing the reconcile reads.
  assert.equal(tally.nodeState("n1", state("n1", { converged: true, rules: 4 })), false);
  assert.equal(tally.nodeState("n1", state("n1", { converged: false, rules: 4 })), true);
  assert.equal(tally.nodeState("n1", state("n1", { converged: false, rules: 0 })), true, "drained");
  assert.equal(tally.node("n1", { name: "n1", labels: { ...LINUX, x: "y" } }), false);
  assert.equal(tally.agent(agent()), false, "same selection");
  assert.equal(tally.agent(agent({ nodeSelector: { x: "z" } })), true, "n1 deselected");
  assert.deepEqual(tally.drainMarks(), [{ node: "n1", drain: true }]);
});

Deno.test("AgentTally counts present configs and those the operator did not create", () => {
  const tally = new AgentTally();
  assert.equal(tally.config("a", config("a", true)), true);
  assert.equal(tally.config("b", config("b", true, false)), true);
  assert.equal(tally.config("a", config("a", true)), false, "unchanged");
  assert.equal(tally.config("c", config("c", false)), false, "absent");
  assert.deepEqual([tally.presentConfigs, tally.foreignConfigs], [2, { count: 1, names: ["b"] }]);
  tally.config("a", config("a", false));
  tally.config("b", undefined);
  assert.deepEqual([tally.presentConfigs, tally.foreignConfigs], [0, { count: 0, names: [] }]);
});

Deno.test("AgentTally: one node's event reads no other node's objects", () => {
  // Nodes whose labels and states count their reads: a scan would read them all.
  let reads = 0;
  const counted = <T extends object>(object: T, field: keyof T): T => {
    const value = object[field];
    return Object.defineProperty({ ...object }, field, {
      get: () => (reads++, value),
      enumerable: true,
    });
  };
  const tally = new AgentTally();
  tally.agent(agent());
  for (let i = 0; i < 1000; i++) {
    tally.node(`n${i}`, counted<NodeInfo>({ name: `n${i}`, labels: LINUX }, "labels"));
    tally.nodeState(`n${i}`, counted(state(`n${i}`, { converged: true, rules: 1 }), "status"));
  }
  reads = 0;
  tally.nodeState("n7", state("n7", { converged: false, rules: 1 }));
  tally.node("n8", { name: "n8", labels: LINUX });
  tally.config("c", config("c", true));
  const { fleet, busyNodes } = tally;
  assert.deepEqual([fleet.awaited, fleet.waiting.count, busyNodes.count], [1000, 1, 1000]);
  assert.deepEqual(tally.drainMarks(), []);
  // Only n7's Node and n8's state are read again (a few fields each); a scan reads 2,000.
  assert.ok(reads <= 5, `${reads} reads of the counted fields`);
});

Deno.test("AgentTally: a change that moves no count says so, from the first event on", () => {
  const tally = new AgentTally();
  assert.equal(tally.agent(agent()), false, "no nodes yet");
  // A Node the Agent does not select, then its state: drained, nothing held, no mark due.
  assert.equal(tally.node("w", { name: "w", labels: {} }), false);
  assert.equal(tally.nodeState("w", state("w", { drain: true })), false);
  // A new selection that selects no node either.
  assert.equal(tally.agent(agent({ nodeSelector: { pool: "x" } })), false);
  assert.deepEqual(tally.fleet, { awaited: 0, waiting: { count: 0, names: [] } });
  assert.deepEqual(tally.drainMarks(), []);
});

Deno.test("AgentTally: tolerations alone change the selection", () => {
  const tally = new AgentTally();
  tally.agent(agent());
  const taints = [{ key: "dedicated", value: "db", effect: "NoExecute" as const }];
  assert.equal(tally.node("db", { name: "db", labels: LINUX, taints }), false, "not selected");
  const tolerating = agent({ tolerations: [{ key: "dedicated", operator: "Exists" }] });
  assert.equal(tally.agent(tolerating), true);
  assert.deepEqual(tally.fleet, { awaited: 1, waiting: { count: 1, names: ["db"] } });
});

Deno.test("AgentTally: a selected node that stops being awaited leaves the count", () => {
  const tally = new AgentTally();
  tally.agent(agent());
  tally.node("g", { name: "g", labels: LINUX });
  assert.equal(tally.fleet.awaited, 1);
  // A NoSchedule taint keeps a new agent away: still selected, no longer waited for.
  const taints = [{ key: "nvidia.com/gpu", value: "true", effect: "NoSchedule" as const }];
  assert.equal(tally.node("g", { name: "g", labels: LINUX, taints }), true);
  assert.deepEqual(tally.fleet, { awaited: 0, waiting: { count: 0, names: [] } });
});

Deno.test("AgentTally: a drain mark set by hand on a selected node is cleared", () => {
  const tally = new AgentTally();
  tally.agent(agent());
  tally.node("n", { name: "n", labels: LINUX });
  tally.nodeState("n", state("n", { converged: true, rules: 2 }));
  assert.equal(tally.nodeState("n", state("n", { converged: true, rules: 2, drain: true })), true);
  assert.deepEqual(tally.drainMarks(), [{ node: "n", drain: false }]);
  assert.equal(tally.nodeState("n", state("n", { converged: true, rules: 2, drain: false })), true);
  assert.deepEqual(tally.drainMarks(), []);
});

Deno.test("AgentTally: a config that changes owner while present changes the foreign count", () => {
  const tally = new AgentTally();
  tally.config("a", config("a", true));
  assert.equal(tally.config("a", config("a", true, false)), true);
  assert.deepEqual(tally.foreignConfigs, { count: 1, names: ["a"] });
  assert.equal(tally.config("a", config("a", true)), true);
  assert.deepEqual(tally.foreignConfigs, { count: 0, names: [] });
});

Deno.test("AgentTally: a node state that arrives before its Node is kept for it", () => {
  const tally = new AgentTally();
  tally.agent(agent());
  tally.nodeState("n", state("n", { converged: true, rules: 2 }));
  assert.deepEqual(tally.busyNodes, { count: 1, names: ["n"] });
  assert.equal(tally.fleet.awaited, 0);
  tally.node("n", { name: "n", labels: LINUX });
  assert.deepEqual(tally.fleet, { awaited: 1, waiting: { count: 0, names: [] } });
  // The Node goes, the state stays; then the state goes too and nothing is left.
  tally.node("n", undefined);
  assert.deepEqual(tally.busyNodes, { count: 1, names: ["n"] });
  tally.node("n", { name: "n", labels: LINUX });
  assert.deepEqual(tally.fleet, { awaited: 1, waiting: { count: 0, names: [] } });
  tally.node("n", undefined);
  tally.nodeState("n", undefined);
  assert.deepEqual(tally.busyNodes, { count: 0, names: [] });
  assert.equal(tally.fleet.awaited, 0);
});

Deno.test("AgentTally: a toleration added to others changes the selection", () => {
  const tally = new AgentTally();
  const tolerate = (...keys: string[]) =>
    agent({ tolerations: keys.map((key) => ({ key, operator: "Exists" as const })) });
  tally.agent(tolerate("other"));
  const taints = [{ key: "dedicated", value: "db", effect: "NoExecute" as const }];
  tally.node("db", { name: "db", labels: LINUX, taints });
  assert.equal(tally.fleet.awaited, 0);
  assert.equal(tally.agent(tolerate("other", "dedicated")), true);
  assert.equal(tally.fleet.awaited, 1);
});

Deno.test("AgentTally waits for a node its agent reports from, though a NoSchedule taint came since", () => {
  const tally = new AgentTally();
  tally.agent(agent());
  const taints = [{ key: "nvidia.com/gpu", value: "true", effect: "NoSchedule" as const }];
  tally.node("g", { name: "g", labels: LINUX, taints });
  assert.equal(tally.fleet.awaited, 0);
  tally.nodeState("g", state("g", { converged: false, rules: 1 }));
  assert.deepEqual(tally.fleet, { awaited: 1, waiting: { count: 1, names: ["g"] } });
});
