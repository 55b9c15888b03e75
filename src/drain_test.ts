import assert from "node:assert/strict";
import { type Agent, API_VERSION, type IPRuleNodeState } from "./api/types.ts";
import {
  configPolicy,
  drainMark,
  finalizerRemoval,
  holdsRules,
  LEGACY_AGENT_FINALIZER,
  nodeHoldsRules,
  presenceOf,
  stopAction,
  type StopInput,
  type UninstallStep,
  uninstallStep,
} from "./drain.ts";

const DELETED_AT = "2026-01-01T00:00:00Z";

function agent(options: { finalizer?: boolean; deleting?: boolean } = {}): Agent {
  return {
    apiVersion: API_VERSION,
    kind: "Agent",
    metadata: {
      name: "agent",
      namespace: "ops",
      ...(options.finalizer
        ? { finalizers: ["other.example/keep", LEGACY_AGENT_FINALIZER] }
        : { finalizers: ["other.example/keep"] }),
      ...(options.deleting ? { deletionTimestamp: DELETED_AT } : {}),
    },
    spec: {},
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

Deno.test("uninstallStep() deploys a live Agent, nothing for a deleting one, and releases the earlier finalizer", () => {
  const rows: [string, Agent | undefined, UninstallStep][] = [
    ["no Agent", undefined, { phase: "NoAgent" }],
    ["live Agent", agent(), { phase: "Installed", releaseFinalizer: false }],
    [
      "live Agent holding the earlier finalizer",
      agent({ finalizer: true }),
      { phase: "Installed", releaseFinalizer: true },
    ],
    [
      "Agent deleted in the foreground",
      agent({ deleting: true }),
      { phase: "Deleting", releaseFinalizer: false },
    ],
    [
      "deleting Agent held by the earlier finalizer (a stuck uninstall)",
      agent({ finalizer: true, deleting: true }),
      { phase: "Deleting", releaseFinalizer: true },
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

Deno.test("holdsRules() is false only once both counts are 0", () => {
  assert.equal(holdsRules(undefined), false);
  assert.equal(holdsRules({ desiredRules: 0, appliedRules: 0 }), false);
  assert.equal(holdsRules({ desiredRules: 0, appliedRules: 1 }), true);
  assert.equal(holdsRules({ desiredRules: 2, appliedRules: 0 }), true);
});

Deno.test("finalizerRemoval() tests and removes the earlier finalizer by its position", () => {
  assert.deepEqual(finalizerRemoval(["other.example/keep", LEGACY_AGENT_FINALIZER]), [
    { op: "test", path: "/metadata/finalizers/1", value: LEGACY_AGENT_FINALIZER },
    { op: "remove", path: "/metadata/finalizers/1" },
  ]);
});

Deno.test("presenceOf() tells live, deleting and gone objects apart", () => {
  assert.equal(presenceOf(agent()), "live");
  assert.equal(presenceOf(agent({ deleting: true })), "deleting");
  assert.equal(presenceOf(undefined), "gone");
});

Deno.test("stopAction() removes rules only when the Pod will not be replaced", () => {
  const running: StopInput = {
    fatal: false,
    namespace: "live",
    agent: "live",
    drainMarked: false,
    selected: true,
  };
  const rows: [string, Partial<StopInput>, boolean, string][] = [
    ["restart or rolling update", {}, false, "not uninstalled or drained"],
    [
      "namespace deleted",
      { namespace: "deleting" },
      true,
      "the operator's namespace is being deleted",
    ],
    ["namespace gone", { namespace: "gone" }, true, "the operator's namespace is being deleted"],
    ["Agent deleted in the foreground", { agent: "deleting" }, true, "the Agent is being deleted"],
    ["Agent gone", { agent: "gone" }, true, "the Agent was deleted"],
    [
      "namespace deleting, Agent unreadable (CRD gone)",
      { namespace: "deleting", agent: undefined },
      true,
      "the operator's namespace is being deleted",
    ],
    ["node marked drained", { drainMarked: true }, true, "node left the Agent's selection"],
    [
      "node relabelled out of the selection before the mark came",
      { selected: false },
      true,
      "node no longer selected by the Agent",
    ],
    [
      "fatal error during an uninstall",
      { fatal: true, namespace: "deleting" },
      false,
      "stopped on an error",
    ],
    [
      "nothing readable (token or API server gone)",
      { namespace: undefined, agent: undefined, drainMarked: undefined, selected: undefined },
      false,
      "not uninstalled or drained as far as known (not read: namespace, Agent, drain mark, " +
      "node selection)",
    ],
    [
      "drain mark unreadable, the rest live",
      { drainMarked: undefined },
      false,
      "not uninstalled or drained as far as known (not read: drain mark)",
    ],
  ];
  for (const [name, change, removeRules, reason] of rows) {
    assert.deepEqual(stopAction({ ...running, ...change }), { removeRules, reason }, name);
  }
});

Deno.test("uninstallStep() releases the finalizer earlier versions wrote, by its name, and copes with none", () => {
  // The name is what earlier versions put on Agents: renaming it would strand them.
  const earlier = agent({ deleting: true });
  earlier.metadata.finalizers = ["api.operator.brtrm.dev/agent-cleanup"];
  assert.deepEqual(uninstallStep(earlier), { phase: "Deleting", releaseFinalizer: true });
  const bare = agent();
  delete bare.metadata.finalizers;
  assert.deepEqual(uninstallStep(bare), { phase: "Installed", releaseFinalizer: false });
});

Deno.test("nodeHoldsRules() reads the node state's status", () => {
  assert.equal(nodeHoldsRules(node("n", 0, 0)), false);
  assert.equal(nodeHoldsRules(node("n", 0, 3)), true);
  const fresh = node("n", 0, 0);
  delete fresh.status;
  assert.equal(nodeHoldsRules(fresh), false);
});
