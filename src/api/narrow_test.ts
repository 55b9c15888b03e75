import assert from "node:assert/strict";
import {
  InvalidObjectError,
  narrowAgent,
  narrowDaemonSet,
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
      "cidr not a string",
      () => narrowIPRule({ metadata: { name: "r" }, spec: { cidr: 10, table: 1 } }),
      "spec.cidr",
      /got 10/,
    ],
    [
      "agent adoptUnmarkedRules",
      () =>
        narrowAgent({
          metadata: { name: "agent", namespace: "ns" },
          spec: { adoptUnmarkedRules: "yes" },
        }),
      "spec.adoptUnmarkedRules",
      /boolean .*"yes"/,
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

Deno.test("narrowIPRule() reads the original's deprecated cidr as cidrs, and its priority 0 as the default", () => {
  const rule = narrowIPRule({
    metadata: { name: "dc-a" },
    spec: { cidr: "10.0.0.0/24", table: 100, priority: 0 },
  });
  assert.deepEqual(rule.spec, {
    cidr: "10.0.0.0/24",
    cidrs: ["10.0.0.0/24"],
    table: 100,
    priority: 1000,
  });
});

Deno.test("narrowIPRule() routes both cidrs and cidr of an IPRule stored with both", () => {
  const both = (cidrs: string[]) =>
    narrowIPRule({ metadata: { name: "r" }, spec: { cidr: "10.0.0.0/8", cidrs, table: 1 } }).spec;
  assert.deepEqual(both(["10.1.0.0/16"]).cidrs, ["10.1.0.0/16", "10.0.0.0/8"]);
  assert.deepEqual(both(["10.0.0.0/8"]).cidrs, ["10.0.0.0/8"]);
  assert.equal(both([]).cidr, "10.0.0.0/8");
});

Deno.test("narrowIPRuleConfig() keeps the owner references", () => {
  const ref = {
    apiVersion: "api.operator.brtrm.dev/v1alpha1",
    kind: "IPRule",
    name: "dc-a",
    uid: "u1",
    controller: true,
    blockOwnerDeletion: true,
  };
  const config = narrowIPRuleConfig({
    metadata: { name: "iprc-10-96-1-50", ownerReferences: [ref] },
    spec: { serviceIP: "10.96.1.50", table: 100, priority: 1000, state: "present" },
  });
  assert.deepEqual(config.metadata.ownerReferences, [ref]);
});

Deno.test("narrowAgent() reads adoptUnmarkedRules", () => {
  const agent = narrowAgent({
    metadata: { name: "agent", namespace: "ns" },
    spec: { adoptUnmarkedRules: true },
  });
  assert.equal(agent.spec.adoptUnmarkedRules, true);
});

Deno.test("narrowDaemonSet() keeps who set its fields and its template's annotations", () => {
  const entry = { manager: "manager", operation: "Update", fieldsV1: { "f:spec": {} } };
  const ds = narrowDaemonSet({
    metadata: { name: "iprule-agent", namespace: "ns", managedFields: [entry] },
    spec: { template: { metadata: { annotations: { "a/b": "c" } } } },
    status: { numberReady: 2 },
  });
  assert.deepEqual(ds.managedFields, [entry]);
  assert.deepEqual(ds.templateAnnotations, { "a/b": "c" });
  assert.equal(ds.counts.numberReady, 2);
});
