import assert from "node:assert/strict";
import {
  InvalidObjectError,
  narrowAgent,
  narrowIPRule,
  narrowIPRuleConfig,
  narrowService,
} from "./narrow.ts";

Deno.test("narrowIPRule() keeps the spec and defaults the priority", () => {
  const rule = narrowIPRule({
    apiVersion: "api.operator.brtrm.dev/v1alpha1",
    kind: "IPRule",
    metadata: { name: "dc-a", generation: 3, resourceVersion: "12" },
    spec: {
      cidrs: ["192.168.1.0/24"],
      table: 100,
      serviceSelector: { matchLabels: { a: "b" } },
    },
  });
  assert.deepEqual(rule.spec, {
    cidrs: ["192.168.1.0/24"],
    table: 100,
    priority: 1000,
    serviceSelector: { matchLabels: { a: "b" } },
  });
  assert.equal(rule.metadata.generation, 3);
});

Deno.test("narrow*() reject malformed objects with an error naming the field and value", () => {
  const cases: [string, () => unknown, string, RegExp][] = [
    ["not an object", () => narrowIPRule("x"), "", /must be an object/],
    ["no spec", () => narrowIPRule({ metadata: { name: "r" } }), "spec", /must be an object/],
    [
      "cidrs not a list",
      () => narrowIPRule({ metadata: { name: "r" }, spec: { cidrs: "10.0.0.0/8", table: 1 } }),
      "spec.cidrs",
      /"10\.0\.0\.0\/8"/,
    ],
    [
      "cidr not a string",
      () => narrowIPRule({ metadata: { name: "r" }, spec: { cidrs: [7], table: 1 } }),
      "spec.cidrs[0]",
      /got 7/,
    ],
    [
      "table a string",
      () => narrowIPRule({ metadata: { name: "r" }, spec: { cidrs: [], table: "100" } }),
      "spec.table",
      /integer/,
    ],
    [
      "bad source",
      () => narrowIPRule({ metadata: { name: "r" }, spec: { cidrs: [], table: 1, source: "Pod" } }),
      "spec.source",
      /"Pod"/,
    ],
    [
      "bad selector operator",
      () =>
        narrowIPRule({
          metadata: { name: "r" },
          spec: {
            cidrs: [],
            table: 1,
            serviceSelector: { matchExpressions: [{ key: "a", operator: "Is" }] },
          },
        }),
      "spec.serviceSelector.matchExpressions[0].operator",
      /"Is"/,
    ],
    [
      "config state",
      () =>
        narrowIPRuleConfig({
          metadata: { name: "iprc-1-2-3-4" },
          spec: { serviceIP: "1.2.3.4", table: 1, priority: 1, state: "gone" },
        }),
      "spec.state",
      /"gone"/,
    ],
    [
      "config without serviceIP",
      () =>
        narrowIPRuleConfig({
          metadata: { name: "c" },
          spec: { table: 1, priority: 1, state: "present" },
        }),
      "spec.serviceIP",
      /nothing/,
    ],
    [
      "agent nodeSelector value",
      () =>
        narrowAgent({
          metadata: { name: "agent", namespace: "ns" },
          spec: { nodeSelector: { a: 1 } },
        }),
      "spec.nodeSelector.a",
      /string/,
    ],
    [
      "service ingress ip",
      () =>
        narrowService({
          metadata: { name: "s", namespace: "n" },
          status: { loadBalancer: { ingress: [{ ip: 5 }] } },
        }),
      "status.loadBalancer.ingress[0].ip",
      /got 5/,
    ],
  ];
  for (const [name, fn, field, message] of cases) {
    assert.throws(fn, (err: unknown) => {
      assert.ok(err instanceof InvalidObjectError, name);
      assert.equal(err.field, field, name);
      assert.match(err.message, message, name);
      return true;
    }, name);
  }
});

Deno.test("narrowService() reads ClusterIPs, ingress IPs and hostname-only entries", () => {
  const svc = narrowService({
    metadata: { name: "web", namespace: "shop", labels: { app: "web" } },
    spec: { type: "LoadBalancer", clusterIP: "10.96.1.50", clusterIPs: ["10.96.1.50", "fd00::1"] },
    status: { loadBalancer: { ingress: [{ ip: "192.168.1.10" }, { hostname: "lb.example" }] } },
  });
  assert.deepEqual(svc, {
    namespace: "shop",
    name: "web",
    labels: { app: "web" },
    type: "LoadBalancer",
    clusterIPs: ["10.96.1.50", "fd00::1"],
    ingressIPs: ["192.168.1.10"],
    hostnameOnlyIngress: 1,
  });
  const single = narrowService({
    metadata: { name: "a", namespace: "b" },
    spec: { clusterIP: "None" },
  });
  assert.deepEqual(single.clusterIPs, ["None"]);
  assert.equal(single.type, "ClusterIP");
});
