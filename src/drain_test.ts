import assert from "node:assert/strict";
import {
  type Agent,
  API_VERSION,
  type IPRuleConfig,
  type IPRuleNodeState,
  isManagedConfig,
  MANAGED_BY,
  MANAGED_BY_LABEL,
} from "./api/types.ts";
import { nameSample } from "./api/conditions.ts";
import {
  AGENT_FINALIZER,
  configPolicy,
  DRAIN_POLL_MS,
  drainMark,
  finalizerRemoval,
  holdsRules,
  nodeHoldsRules,
  stopAction,
  type UninstallStep,
  uninstallStep,
} from "./drain.ts";

const DELETED_AT = "2026-01-01T00:00:00Z";
const T0 = Date.parse(DELETED_AT);
const TIMEOUT = 120_000;

function agent(options: { finalizer?: boolean; deleting?: boolean } = {}): Agent {
  return {
    apiVersion: API_VERSION,
    kind: "Agent",
    metadata: {
      name: "agent",
      namespace: "ops",
      ...(options.finalizer ? { finalizers: ["other.example/keep", AGENT_FINALIZER] } : {}),
      ...(options.deleting ? { deletionTimestamp: DELETED_AT } : {}),
    },
    spec: {},
  };
}

function config(name: string, state: "present" | "absent", managed = true): IPRuleConfig {
  return {
    apiVersion: API_VERSION,
    kind: "IPRuleConfig",
    metadata: { name, ...(managed ? { labels: { [MANAGED_BY_LABEL]: MANAGED_BY } } : {}) },
    spec: { serviceIP: "10.96.0.1", table: 100, priority: 1000, state },
  };
}

function node(
  name: string,
  desiredRules: number,
  appliedRules: number,
  extra: { drain?: boolean } = {},
): IPRuleNodeState {
  return {
    apiVersion: API_VERSION,
    kind: "IPRuleNodeState",
    metadata: { name },
    ...(extra.drain === undefined ? {} : { spec: { drain: extra.drain } }),
    status: { desiredRules, appliedRules },
  };
}

Deno.test("uninstallStep() follows the drain's decision table", () => {
  const live = agent({ finalizer: true });
  const deleting = agent({ finalizer: true, deleting: true });
  // The counts the controller keeps per event, here from whole lists.
  const input = (
    a: Agent | undefined,
    ms: number,
    configs: IPRuleConfig[] = [],
    nodeStates: IPRuleNodeState[] = [],
  ) => {
    const present = configs.filter((c) => c.spec.state === "present");
    const foreign = present.filter((c) => !isManagedConfig(c)).map((c) => c.metadata.name);
    const busy = nodeStates.filter(nodeHoldsRules).map((s) => s.metadata.name);
    return {
      agent: a,
      presentConfigs: present.length,
      foreignConfigs: nameSample(foreign, foreign.length),
      busyNodes: nameSample(busy, busy.length),
      now: T0 + ms,
      timeoutMs: TIMEOUT,
    };
  };
  const draining = (message: string): UninstallStep => ({
    phase: "Draining",
    condition: { type: "Draining", status: "True", reason: "Draining", message },
    requeueMs: DRAIN_POLL_MS,
  });
  const rows: [string, ReturnType<typeof input>, UninstallStep][] = [
    ["no Agent", input(undefined, 0), { phase: "NoAgent" }],
    ["live Agent without the finalizer", input(agent(), 0), { phase: "Installing" }],
    ["live Agent holding it", input(live, 0), { phase: "Installed" }],
    [
      "deleting without our finalizer",
      input(agent({ deleting: true }), 0, [config("a", "present")]),
      { phase: "Released" },
    ],
    [
      "deleting, managed configs present",
      input(deleting, 10, [config("a", "present")]),
      draining("Marking 1 IPRuleConfig(s) absent"),
    ],
    [
      "deleting, only configs the operator did not create",
      input(deleting, 10, [config("hand-made", "present", false), config("b", "absent")]),
      draining(
        "Waiting: 1 IPRuleConfig(s) not created by the operator are present (hand-made); " +
          "delete them to let the nodes remove every rule",
      ),
    ],
    [
      "deleting, configs absent, nodes still applying rules",
      input(deleting, 10, [config("a", "absent")], [
        node("n1", 0, 2),
        node("n2", 3, 0),
        node("n3", 0, 0),
      ]),
      draining("Waiting for 2 node(s) to remove their rules: n1, n2"),
    ],
    [
      "deleting, every node reported 0 desired and 0 applied",
      input(deleting, 10, [config("a", "absent")], [node("n1", 0, 0), node("n2", 0, 0)]),
      { phase: "Drained", elapsedMs: 10 },
    ],
    [
      "deleting, nodes holding rules past the timeout",
      input(deleting, TIMEOUT, [], [node("n1", 0, 1)]),
      {
        phase: "TimedOut",
        nodes: { count: 1, names: ["n1"] },
        elapsedMs: TIMEOUT,
        condition: {
          type: "Draining",
          status: "False",
          reason: "DrainTimedOut",
          message: `1 node(s) did not report their rules removed within ${TIMEOUT} ms: n1`,
        },
      },
    ],
    [
      "deleting, configs present but no node holding rules, past the timeout",
      input(deleting, TIMEOUT, [config("a", "present")]),
      { phase: "Drained", elapsedMs: TIMEOUT },
    ],
  ];
  for (const [name, given, expected] of rows) {
    assert.deepEqual(uninstallStep(given), expected, name);
  }
});

Deno.test("configPolicy() withdraws every config while the Agent is deleted, holds absent ones without an Agent", () => {
  assert.deepEqual(configPolicy(agent({ finalizer: true })), {
    withdrawAll: false,
    holdAbsent: false,
  });
  assert.deepEqual(configPolicy(agent({ finalizer: true, deleting: true })), {
    withdrawAll: true,
    holdAbsent: false,
  });
  assert.deepEqual(configPolicy(undefined), { withdrawAll: false, holdAbsent: true });
});

Deno.test("drainMark() sets drain outside the selection and clears it inside, changes only", () => {
  const rows: [IPRuleNodeState, boolean, ReturnType<typeof drainMark>][] = [
    [node("in-unmarked", 1, 1), true, undefined],
    [node("in-marked", 1, 1, { drain: true }), true, { node: "in-marked", drain: false }],
    [node("in-cleared", 1, 1, { drain: false }), true, undefined],
    [node("out-unmarked", 1, 1), false, { node: "out-unmarked", drain: true }],
    [node("out-marked", 0, 0, { drain: true }), false, undefined],
  ];
  for (const [state, selected, mark] of rows) {
    assert.deepEqual(drainMark(selected, state), mark, state.metadata.name);
  }
});

Deno.test("uninstallStep() names five busy nodes of thousands and counts the rest", () => {
  const names = Array.from({ length: 5000 }, (_, i) => `n${i}`);
  const step = uninstallStep({
    agent: agent({ finalizer: true, deleting: true }),
    presentConfigs: 0,
    foreignConfigs: nameSample([], 0),
    busyNodes: nameSample(names, names.length),
    now: T0 + 10,
    timeoutMs: TIMEOUT,
  });
  assert.equal(step.phase, "Draining");
  assert.equal(
    step.phase === "Draining" && step.condition.message,
    "Waiting for 5000 node(s) to remove their rules: n0, n1, n2, n3, n4 and 4995 more",
  );
});

Deno.test("holdsRules() is false only once both counts are 0", () => {
  assert.equal(holdsRules(undefined), false);
  assert.equal(holdsRules({ desiredRules: 0, appliedRules: 0 }), false);
  assert.equal(holdsRules({ desiredRules: 0, appliedRules: 1 }), true);
  assert.equal(holdsRules({ desiredRules: 2, appliedRules: 0 }), true);
});

Deno.test("finalizerRemoval() tests and removes our finalizer by its position", () => {
  assert.deepEqual(finalizerRemoval(["other.example/keep", AGENT_FINALIZER]), [
    { op: "test", path: "/metadata/finalizers/1", value: AGENT_FINALIZER },
    { op: "remove", path: "/metadata/finalizers/1" },
  ]);
});

Deno.test("stopAction() removes rules only for a node marked drained", () => {
  const rows: [Parameters<typeof stopAction>[0], boolean, string][] = [
    [{ fatal: false, drainMarked: true }, true, "node left the Agent's selection"],
    [{ fatal: false, drainMarked: false }, false, "not drained"],
    [{ fatal: false, drainMarked: undefined }, false, "drain mark not read"],
    [{ fatal: true, drainMarked: true }, false, "stopped on an error"],
  ];
  for (const [input, removeRules, reason] of rows) {
    assert.deepEqual(stopAction(input), { removeRules, reason }, JSON.stringify(input));
  }
});
