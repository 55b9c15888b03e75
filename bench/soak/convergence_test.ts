import assert from "node:assert/strict";
import type {
  IPRule,
  IPRuleConfig,
  IPRuleNodeStateStatus,
  ServiceInfo,
} from "../../src/api/types.ts";
import type { KernelSample } from "./checker.ts";
import { configKey, differences, plannedConfigs } from "./convergence.ts";

const RULE: IPRule = {
  apiVersion: "api.operator.brtrm.dev/v1alpha1",
  kind: "IPRule",
  metadata: { name: "soak-a" },
  spec: { cidrs: ["10.10.0.0/16", "fd00:10::/64"], table: 100, priority: 1000 },
};

function service(name: string, clusterIPs: string[], ingressIPs: string[]): ServiceInfo {
  return {
    namespace: "soak",
    name,
    labels: {},
    type: "LoadBalancer",
    clusterIPs,
    ingressIPs,
    hostnameOnlyIngress: 0,
  };
}

function asConfigs(
  planned: ReadonlyMap<string, IPRuleConfig["spec"]>,
  change: Partial<IPRuleConfig["spec"]> = {},
): IPRuleConfig[] {
  return [...planned].map(([name, spec]) => ({
    apiVersion: "api.operator.brtrm.dev/v1alpha1",
    kind: "IPRuleConfig",
    metadata: { name },
    spec: { ...spec, ...change },
  }));
}

function converged(count: number): IPRuleNodeStateStatus {
  return {
    desiredRules: count,
    appliedRules: count,
    failedCount: 0,
    conditions: [{
      type: "Converged",
      status: "True",
      reason: "RulesApplied",
      message: "",
      lastTransitionTime: "2026-01-01T00:00:00Z",
    }],
  };
}

const PLANNED = plannedConfigs({
  services: [
    service("web", ["10.96.0.5", "fd00:96::5"], ["10.10.1.1", "fd00:10::1"]),
    service("other", ["10.96.0.6"], ["10.99.0.1"]),
  ],
  ipRules: [RULE],
  namespaceLabels: new Map(),
});
const KEYS = [...PLANNED.values()].map(configKey);

function sample(keys: string[]): KernelSample {
  return { own: new Set(keys), present: new Set(keys), foreign: [] };
}

Deno.test("plannedConfigs() is the planner's whole desired set", () => {
  assert.deepEqual([...PLANNED.keys()].sort(), ["iprc-10-96-0-5", "iprc-fd00-96-0-0-0-0-0-5"]);
  assert.deepEqual(KEYS.sort(), [
    "from 10.96.0.5 lookup 100 priority 1000",
    "from fd00:96::5 lookup 100 priority 1000",
  ]);
});

Deno.test("differences() is empty when configs, kernels and node states agree", () => {
  assert.deepEqual(
    differences({
      planned: PLANNED,
      configs: asConfigs(PLANNED),
      kernels: new Map([["n0", sample(KEYS)]]),
      nodeStates: new Map([["n0", converged(2)]]),
    }),
    [],
  );
});

Deno.test("differences() names a stale config, a missing and an extra rule, a node state", () => {
  const diff = differences({
    planned: PLANNED,
    configs: asConfigs(PLANNED, { table: 101 }),
    kernels: new Map([["n0", sample([KEYS[0]!, "from 10.96.9.9 lookup 1 priority 1"])]]),
    nodeStates: new Map([["n0", undefined]]),
  });
  assert.equal(diff.length, 5, diff.join("\n"));
  assert.match(diff[0]!, /iprc-10-96-0-5 asks for "from 10\.96\.0\.5 lookup 101/);
  assert.match(diff[2]!, /n0: missing from fd00:96::5/);
  assert.match(diff[3]!, /n0: not desired from 10\.96\.9\.9/);
  assert.match(diff[4]!, /Converged=\? desired=\?/);
});

Deno.test("differences() names configs absent or present against the plan", () => {
  const extra = asConfigs(new Map([["iprc-10-96-7-7", { ...PLANNED.values().next().value! }]]));
  const diff = differences({
    planned: PLANNED,
    configs: [...asConfigs(PLANNED, { state: "absent" }), ...extra],
    kernels: new Map(),
    nodeStates: new Map(),
  });
  assert.deepEqual(diff, [
    "IPRuleConfig iprc-10-96-0-5 is absent",
    "IPRuleConfig iprc-fd00-96-0-0-0-0-0-5 is absent",
    "IPRuleConfig iprc-10-96-7-7 present, but nothing asks for it",
  ]);
});
