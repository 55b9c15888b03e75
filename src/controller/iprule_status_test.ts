import assert from "node:assert/strict";
import { API_VERSION, type IPRule } from "../api/types.ts";
import { ipRuleStatus, sameIPRuleStatus } from "./iprule_status.ts";

const rule: IPRule = {
  apiVersion: API_VERSION,
  kind: "IPRule",
  metadata: { name: "dc-a", generation: 2 },
  spec: { cidrs: ["192.168.1.0/24"], table: 100, priority: 1000 },
};
const T1 = "2026-01-01T00:00:00Z";
const T2 = "2026-01-01T00:05:00Z";

Deno.test("ipRuleStatus() reports matches, Ready and no Conflict", () => {
  const status = ipRuleStatus(rule, {
    name: "dc-a",
    matchedServices: 3,
    conflicts: [],
    conflictCount: 0,
  }, T1);
  assert.equal(status.observedGeneration, 2);
  assert.equal(status.matchedServices, 3);
  assert.deepEqual(status.conditions?.map((c) => [c.type, c.status, c.lastTransitionTime]), [
    ["Ready", "True", T1],
    ["Conflict", "False", T1],
  ]);
});

Deno.test("ipRuleStatus() moves lastTransitionTime only on a real transition", () => {
  const first = ipRuleStatus(rule, {
    name: "dc-a",
    matchedServices: 1,
    conflicts: [],
    conflictCount: 0,
  }, T1);
  const withStatus = { ...rule, status: first };
  const same = ipRuleStatus(withStatus, {
    name: "dc-a",
    matchedServices: 2,
    conflicts: [],
    conflictCount: 0,
  }, T2);
  assert.equal(same.conditions?.[0]?.lastTransitionTime, T1, "Ready stayed True");
  const conflict = ipRuleStatus(withStatus, {
    name: "dc-a",
    matchedServices: 0,
    conflicts: [{ service: { namespace: "n", name: "s" }, lbIP: "192.168.1.1", winner: "x" }],
    conflictCount: 7,
  }, T2);
  const c = conflict.conditions?.find((c) => c.type === "Conflict");
  assert.equal(c?.status, "True");
  assert.equal(c?.lastTransitionTime, T2);
  assert.equal(c?.message, 'n/s (LB IP 192.168.1.1) went to IPRule "x"; and 6 more');
});

Deno.test("ipRuleStatus() reports an invalid spec as Ready False", () => {
  const status = ipRuleStatus(rule, {
    name: "dc-a",
    matchedServices: 0,
    conflicts: [],
    conflictCount: 0,
    invalid: 'spec.cidrs[0] "x" is not a valid CIDR',
  }, T1);
  const ready = status.conditions?.find((c) => c.type === "Ready");
  assert.equal(ready?.status, "False");
  assert.equal(ready?.reason, "InvalidSpec");
});

Deno.test("sameIPRuleStatus() detects a needed write", () => {
  const a = ipRuleStatus(rule, {
    name: "dc-a",
    matchedServices: 1,
    conflicts: [],
    conflictCount: 0,
  }, T1);
  const b = ipRuleStatus({ ...rule, status: a }, {
    name: "dc-a",
    matchedServices: 1,
    conflicts: [],
    conflictCount: 0,
  }, T2);
  assert.ok(sameIPRuleStatus(a, b));
  assert.ok(!sameIPRuleStatus(undefined, b));
  assert.ok(!sameIPRuleStatus(a, { ...b, matchedServices: 2 }));
});
