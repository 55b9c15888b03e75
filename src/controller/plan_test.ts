import assert from "node:assert/strict";
import {
  API_VERSION,
  type IPRule,
  type IPRuleConfig,
  type IPRuleConfigSpec,
  MANAGED_BY,
  MANAGED_BY_LABEL,
  type ServiceInfo,
} from "../api/types.ts";
import { service } from "../../tests/support/config_harness.ts";
import { ClusterPlan, type Plan, planConfigs, type PlanInput } from "./plan.ts";

const NOW = Date.parse("2026-01-01T00:00:00Z");
const GRACE = 5 * 60_000;

function ipRule(name: string, spec: Partial<IPRule["spec"]> & { cidrs: string[] }): IPRule {
  return {
    apiVersion: API_VERSION,
    kind: "IPRule",
    metadata: { name, generation: 1 },
    spec: { table: 100, priority: 1000, ...spec },
  };
}

function lbService(
  name: string,
  ingressIPs: string[],
  clusterIPs: string[] = ["10.96.1.50"],
  extra: Partial<ServiceInfo> = {},
): ServiceInfo {
  return service(name, ingressIPs, clusterIPs, extra);
}

function config(name: string, spec: IPRuleConfigSpec, managed = true): IPRuleConfig {
  return {
    apiVersion: API_VERSION,
    kind: "IPRuleConfig",
    metadata: {
      name,
      resourceVersion: "7",
      ...(managed ? { labels: { [MANAGED_BY_LABEL]: MANAGED_BY } } : {}),
    },
    spec,
  };
}

function present(serviceIP: string, rule: string, svc = "web", table = 100, priority = 1000) {
  const ref = { namespace: "default", name: svc };
  return {
    serviceIP,
    table,
    priority,
    state: "present" as const,
    ipRule: rule,
    service: ref,
    services: [ref],
  };
}

function plan(input: Partial<PlanInput>, now = NOW): Plan {
  return planConfigs({ services: [], ipRules: [], configs: [], ...input }, { now, graceMs: GRACE });
}

/** The changes as compact tuples, for readable expectations. */
function summary(p: Plan): [string, string, unknown?][] {
  return p.changes.map((c) =>
    c.op === "create"
      ? [c.op, c.name, c.config.spec]
      : c.op === "update"
      ? [c.op, c.name, c.spec]
      : [c.op, c.name]
  );
}

/** Service web's config in dc-a, marked absent a minute before NOW. */
function absentWeb() {
  return {
    ...present("10.96.1.50", "dc-a"),
    state: "absent" as const,
    absentSince: "2025-12-31T23:59:00.000Z",
  };
}

/** A warning event about Service web. */
function webWarning(reason: string, note: string) {
  const regarding = { kind: "Service", namespace: "default", name: "web" };
  return { regarding, type: "Warning", reason, note };
}

const dc = ipRule("dc-a", { cidrs: ["192.168.1.0/24", "fd00:10::/64"] });

Deno.test("planConfigs() creates an IPv4 config named after the ClusterIP", () => {
  const p = plan({ services: [lbService("web", ["192.168.1.10"])], ipRules: [dc] });
  assert.deepEqual(summary(p), [["create", "iprc-10-96-1-50", present("10.96.1.50", "dc-a")]]);
  const created = p.changes[0];
  assert.ok(created?.op === "create");
  assert.equal(created.config.metadata.labels?.[MANAGED_BY_LABEL], MANAGED_BY);
  assert.equal(p.ipRules[0]?.matchedServices, 1);
});

Deno.test("planConfigs() names IPv6 configs with the fully expanded address", () => {
  const p = plan({ services: [lbService("web", ["fd00:10::5"], ["fd00:96::a"])], ipRules: [dc] });
  assert.deepEqual(summary(p), [[
    "create",
    "iprc-fd00-96-0-0-0-0-0-a",
    present("fd00:96::a", "dc-a"),
  ]]);
});

Deno.test("planConfigs() pairs each LB IP of a dual-stack Service with its family's ClusterIP", () => {
  const svc = lbService("web", ["192.168.1.10", "fd00:10::5"], ["10.96.1.50", "fd00:96::a"]);
  const p = plan({ services: [svc], ipRules: [dc] });
  assert.deepEqual(summary(p), [
    ["create", "iprc-10-96-1-50", present("10.96.1.50", "dc-a")],
    ["create", "iprc-fd00-96-0-0-0-0-0-a", present("fd00:96::a", "dc-a")],
  ]);
  assert.equal(p.ipRules[0]?.matchedServices, 1);
});

Deno.test("planConfigs() skips an LB IP whose family has no ClusterIP, with an event naming the ClusterIPs", () => {
  // A ClusterIP that is no address (the API server would refuse it) is no IPv6 one either.
  const svc = lbService("web", ["fd00:10::5"], ["10.96.1.50", "bogus"]);
  const p = plan({ services: [svc], ipRules: [dc] });
  assert.deepEqual(p.changes, []);
  assert.deepEqual(p.events, [webWarning(
    "NoClusterIPOfFamily",
    'Service skipped for LB IP "fd00:10::5": no IPv6 ClusterIP in spec.clusterIPs ' +
      '"10.96.1.50,bogus" (IPRule "dc-a")',
  )]);
});

Deno.test("planConfigs() gives several ingress IPs of one Service a single config per source", () => {
  const other = ipRule("dc-b", { cidrs: ["192.168.2.0/24"], table: 200 });
  const same = plan({
    services: [lbService("web", ["192.168.1.10", "192.168.1.11"])],
    ipRules: [dc],
  });
  assert.deepEqual(summary(same), [["create", "iprc-10-96-1-50", present("10.96.1.50", "dc-a")]]);
  assert.deepEqual(same.ipRules[0]?.conflicts, []);
  // Two LB IPs in two IPRules, one ClusterIP: the earlier name wins at equal prefix/priority.
  const split = plan({
    services: [lbService("web", ["192.168.2.10", "192.168.1.10"])],
    ipRules: [dc, other],
  });
  assert.deepEqual(summary(split), [["create", "iprc-10-96-1-50", present("10.96.1.50", "dc-a")]]);
  assert.deepEqual(split.ipRules.find((r) => r.name === "dc-b")?.conflicts, [
    { service: { namespace: "default", name: "web" }, lbIP: "192.168.2.10", winner: "dc-a" },
  ]);
});

Deno.test("planConfigs() skips ingress entries that only have a hostname", () => {
  const svc = lbService("web", [], ["10.96.1.50"], { hostnameOnlyIngress: 1 });
  assert.deepEqual(plan({ services: [svc], ipRules: [dc] }).changes, []);
});

Deno.test("planConfigs() skips a headless Service and reports it", () => {
  const p = plan({ services: [lbService("web", ["192.168.1.10"], ["None"])], ipRules: [dc] });
  assert.deepEqual(p.changes, []);
  assert.deepEqual(p.events, [webWarning(
    "NoClusterIP",
    'Service skipped: it has no ClusterIP (clusterIP "None") to route LB IP "192.168.1.10" ' +
      'from (IPRule "dc-a")',
  )]);
});

Deno.test("planConfigs() resolves overlapping IPRules by prefix, priority, then name", () => {
  const cases: [string, IPRule[], string, string[]][] = [
    [
      "longest prefix wins",
      [
        ipRule("wide", { cidrs: ["192.168.0.0/16"], priority: 10 }),
        ipRule("narrow", { cidrs: ["192.168.1.0/24"], priority: 2000 }),
      ],
      "narrow",
      ["wide"],
    ],
    [
      "lower priority wins at equal prefix",
      [
        ipRule("a", { cidrs: ["192.168.1.0/24"], priority: 2000 }),
        ipRule("b", { cidrs: ["192.168.1.0/24"], priority: 500 }),
      ],
      "b",
      ["a"],
    ],
    [
      "name decides at equal prefix and priority",
      [
        ipRule("zeta", { cidrs: ["192.168.1.0/24"] }),
        ipRule("alpha", { cidrs: ["192.168.1.0/24"] }),
      ],
      "alpha",
      ["zeta"],
    ],
  ];
  for (const [name, ipRules, winner, losers] of cases) {
    const p = plan({ services: [lbService("web", ["192.168.1.10"])], ipRules });
    const created = p.changes[0];
    assert.ok(created?.op === "create", name);
    assert.equal(created.config.spec.ipRule, winner, name);
    assert.deepEqual(
      p.ipRules.filter((r) => r.conflicts.length > 0).map((r) => r.name),
      losers,
      name,
    );
    assert.deepEqual(p.events.map((e) => [e.regarding.name, e.reason]), [[losers[0], "Conflict"]]);
    assert.equal(p.ipRules.find((r) => r.name === winner)?.matchedServices, 1, name);
  }
});

Deno.test("planConfigs() plans no config for a source no agent could use, and says why", () => {
  const everything = ipRule("all", { cidrs: ["0.0.0.0/0", "::/0"], source: "LoadBalancerIP" });
  const p = plan({
    services: [
      lbService("loop", ["127.0.0.1"]),
      lbService("mcast", ["ff02::1"]),
      lbService("mapped", ["::ffff:10.0.0.5"]),
      lbService("ok", ["10.0.0.6"]),
    ],
    ipRules: [everything],
  });
  assert.deepEqual(p.changes.map((c) => c.name), ["iprc-10-0-0-6"]);
  assert.deepEqual(
    p.events.map((e) => [e.regarding.name, e.reason, e.note]),
    [
      [
        "loop",
        "UnusableSource",
        'Service skipped for LB IP "127.0.0.1": rule source "127.0.0.1" is a loopback address (IPRule "all")',
      ],
      [
        "mcast",
        "UnusableSource",
        'Service skipped for LB IP "ff02::1": rule source "ff02::1" is a multicast address (IPRule "all")',
      ],
      [
        "mapped",
        "UnusableSource",
        'Service skipped for LB IP "::ffff:a00:5": rule source "::ffff:a00:5" is an IPv4-mapped IPv6 address (use the IPv4 address) (IPRule "all")',
      ],
    ].sort(),
  );
});

Deno.test("planConfigs() with source LoadBalancerIP keeps one config for a shared LB IP", () => {
  const lbRule = ipRule("lb", { cidrs: ["192.168.1.0/24"], source: "LoadBalancerIP" });
  const a = lbService("a", ["192.168.1.10"], ["10.96.1.1"]);
  const b = lbService("b", ["192.168.1.10"], ["10.96.1.2"]);
  const both = plan({ services: [b, a], ipRules: [lbRule] });
  const refs = [{ namespace: "default", name: "a" }, { namespace: "default", name: "b" }];
  const spec = { ...present("192.168.1.10", "lb", "a"), services: refs };
  assert.deepEqual(summary(both), [["create", "iprc-192-168-1-10", spec]]);
  assert.equal(both.ipRules[0]?.matchedServices, 2);
  // One Service goes: the config stays present, now for the remaining one.
  const one = plan({
    services: [b],
    ipRules: [lbRule],
    configs: [config("iprc-192-168-1-10", spec)],
  });
  assert.deepEqual(summary(one), [[
    "update",
    "iprc-192-168-1-10",
    present("192.168.1.10", "lb", "b"),
  ]]);
});

Deno.test("planConfigs() applies service and namespace selectors", () => {
  const selective = ipRule("sel", {
    cidrs: ["192.168.1.0/24"],
    serviceSelector: { matchLabels: { route: "uplink-a" } },
    namespaceSelector: { matchExpressions: [{ key: "tenant", operator: "In", values: ["t1"] }] },
  });
  const namespaceLabels = new Map([["default", { tenant: "t1" }], ["other", { tenant: "t2" }]]);
  const cases: [string, ServiceInfo, number][] = [
    [
      "both match",
      lbService("web", ["192.168.1.10"], undefined, { labels: { route: "uplink-a" } }),
      1,
    ],
    ["service labels differ", lbService("web", ["192.168.1.10"]), 0],
    [
      "namespace labels differ",
      lbService("web", ["192.168.1.10"], undefined, {
        namespace: "other",
        labels: { route: "uplink-a" },
      }),
      0,
    ],
  ];
  for (const [name, svc, want] of cases) {
    const p = plan({ services: [svc], ipRules: [selective], namespaceLabels });
    assert.equal(p.changes.length, want, name);
  }
});

Deno.test("planConfigs() marks the config absent when the Service stops being a LoadBalancer", () => {
  const p = plan({
    services: [lbService("web", ["192.168.1.10"], undefined, { type: "ClusterIP" })],
    ipRules: [dc],
    configs: [config("iprc-10-96-1-50", present("10.96.1.50", "dc-a"))],
  });
  assert.deepEqual(summary(p), [["update", "iprc-10-96-1-50", {
    ...present("10.96.1.50", "dc-a"),
    state: "absent",
    absentSince: new Date(NOW).toISOString(),
  }]]);
  assert.equal(p.nextDeletionAt, NOW + GRACE);
  const change = p.changes[0];
  assert.ok(change?.op === "update");
  assert.equal(change.resourceVersion, "7");
});

Deno.test("planConfigs() follows an LB IP change", () => {
  const other = ipRule("dc-b", { cidrs: ["192.168.2.0/24"], table: 200, priority: 1500 });
  const existing = [config("iprc-10-96-1-50", present("10.96.1.50", "dc-a"))];
  const moved = plan({
    services: [lbService("web", ["192.168.2.10"])],
    ipRules: [dc, other],
    configs: existing,
  });
  assert.deepEqual(summary(moved), [[
    "update",
    "iprc-10-96-1-50",
    present("10.96.1.50", "dc-b", "web", 200, 1500),
  ]]);
  const unmatched = plan({
    services: [lbService("web", ["203.0.113.9"])],
    ipRules: [dc],
    configs: existing,
  });
  assert.deepEqual(unmatched.changes.map((c) => [c.op, c.op === "update" && c.spec.state]), [
    ["update", "absent"],
  ]);
});

Deno.test("planConfigs() updates configs in place when the IPRule's table or priority changes", () => {
  const p = plan({
    services: [lbService("web", ["192.168.1.10"])],
    ipRules: [ipRule("dc-a", { cidrs: ["192.168.1.0/24"], table: 300, priority: 900 })],
    configs: [config("iprc-10-96-1-50", present("10.96.1.50", "dc-a"))],
  });
  assert.deepEqual(summary(p), [[
    "update",
    "iprc-10-96-1-50",
    present("10.96.1.50", "dc-a", "web", 300, 900),
  ]]);
});

Deno.test("planConfigs() reports an invalid IPRule and still plans the others", () => {
  const cases: [string, Partial<IPRule["spec"]> & { cidrs: string[] }, RegExp][] = [
    [
      "invalid CIDR",
      { cidrs: ["192.168.300.0/24"] },
      /spec\.cidrs\[0\] "192\.168\.300\.0\/24" is not a valid CIDR/,
    ],
    ["host bits", { cidrs: ["10.0.0.0/8", "192.168.1.5/24"] }, /spec\.cidrs\[1\].*host bits/],
    ["empty cidrs", { cidrs: [] }, /spec\.cidrs must not be empty/],
    ["kernel table", { cidrs: ["192.168.1.0/24"], table: 254 }, /spec\.table "254"/],
    ["priority", { cidrs: ["192.168.1.0/24"], priority: 0 }, /spec\.priority "0"/],
    [
      "NotIn without values (would match every Service)",
      {
        cidrs: ["192.168.1.0/24"],
        serviceSelector: { matchExpressions: [{ key: "tier", operator: "NotIn" }] },
      },
      /spec\.serviceSelector\.matchExpressions\[0\]\.values must not be empty for operator "NotIn"/,
    ],
    [
      "Exists with values",
      {
        cidrs: ["192.168.1.0/24"],
        namespaceSelector: {
          matchExpressions: [{ key: "team", operator: "Exists", values: ["a"] }],
        },
      },
      /spec\.namespaceSelector\.matchExpressions\[0\]\.values must be empty for operator "Exists"/,
    ],
  ];
  for (const [name, spec, message] of cases) {
    const p = plan({
      services: [
        lbService("web", ["192.168.1.10"]),
        lbService("db", ["fd00:10::1"], ["fd00:96::b"]),
      ],
      ipRules: [ipRule("bad", spec), ipRule("good", { cidrs: ["fd00:10::/64"] })],
    });
    const bad = p.ipRules.find((r) => r.name === "bad");
    assert.match(bad?.invalid ?? "", message, name);
    assert.deepEqual(
      p.events.map((e) => [e.regarding.name, e.reason]),
      [["bad", "InvalidIPRule"]],
      name,
    );
    assert.deepEqual(p.changes.map((c) => c.name), ["iprc-fd00-96-0-0-0-0-0-b"], name);
  }
});

Deno.test("planConfigs() deletes an absent config only after the grace period", () => {
  const absent = {
    ...present("10.96.1.50", "dc-a"),
    state: "absent" as const,
    absentSince: new Date(NOW).toISOString(),
  };
  const configs = [config("iprc-10-96-1-50", absent)];
  const early = plan({ configs }, NOW + GRACE - 1);
  assert.deepEqual(early.changes, []);
  assert.equal(early.nextDeletionAt, NOW + GRACE);
  assert.deepEqual(summary(plan({ configs }, NOW + GRACE)), [["delete", "iprc-10-96-1-50"]]);
});

Deno.test("planConfigs() counts an absentSince in the future (clock skew) as now", () => {
  const skewed = {
    ...present("10.96.1.50", "dc-a"),
    state: "absent" as const,
    absentSince: new Date(NOW + 30 * 24 * 3600_000).toISOString(), // a month ahead
  };
  const p = plan({ configs: [config("iprc-10-96-1-50", skewed)] }, NOW);
  const rewritten = { ...skewed, absentSince: new Date(NOW).toISOString() };
  assert.deepEqual(summary(p), [["update", "iprc-10-96-1-50", rewritten]]);
  assert.equal(p.nextDeletionAt, NOW + GRACE);
  assert.deepEqual(
    summary(plan({ configs: [config("iprc-10-96-1-50", rewritten)] }, NOW + GRACE)),
    [["delete", "iprc-10-96-1-50"]],
  );
});

Deno.test("planConfigs() brings an absent config back to present when it matches again", () => {
  const absent = absentWeb();
  const p = plan({
    services: [lbService("web", ["192.168.1.10"])],
    ipRules: [dc],
    configs: [config("iprc-10-96-1-50", absent)],
  });
  assert.deepEqual(summary(p), [["update", "iprc-10-96-1-50", present("10.96.1.50", "dc-a")]]);
});

Deno.test("planConfigs() writes nothing in steady state", () => {
  const svc = lbService("web", ["192.168.1.10", "fd00:10::5"], ["10.96.1.50", "fd00:96::a"]);
  const first = plan({ services: [svc], ipRules: [dc] });
  const configs = first.changes.map((c) => {
    assert.ok(c.op === "create");
    return { ...c.config, metadata: { ...c.config.metadata, resourceVersion: "1" } };
  });
  assert.equal(configs.length, 2);
  assert.deepEqual(plan({ services: [svc], ipRules: [dc], configs }).changes, []);
});

Deno.test("planConfigs() never changes a config without our managed-by label", () => {
  const foreign = config("iprc-10-96-1-50", present("10.96.1.99", "manual"), false);
  const stale = config("iprc-10-96-9-9", present("10.96.9.9", "manual"), false);
  const p = plan({
    services: [lbService("web", ["192.168.1.10"])],
    ipRules: [dc],
    configs: [foreign, stale],
  });
  assert.deepEqual(p.changes, []);
  assert.deepEqual(p.events.map((e) => e.reason), ["ConfigNotOwned"]);
});

Deno.test("planConfigs() treats a deleted IPRule as gone", () => {
  const deleting = {
    ...dc,
    metadata: { ...dc.metadata, deletionTimestamp: "2026-01-01T00:00:00Z" },
  };
  const p = plan({
    services: [lbService("web", ["192.168.1.10"])],
    ipRules: [deleting],
    configs: [config("iprc-10-96-1-50", present("10.96.1.50", "dc-a"))],
  });
  assert.deepEqual(p.changes.map((c) => [c.op, c.op === "update" && c.spec.state]), [[
    "update",
    "absent",
  ]]);
});

Deno.test("planConfigs() with holdAbsent keeps absent configs absent but still creates new ones", () => {
  const absent = absentWeb();
  const p = planConfigs({
    services: [
      lbService("web", ["192.168.1.10"]),
      lbService("db", ["192.168.1.11"], ["10.96.1.51"]),
    ],
    ipRules: [dc],
    configs: [config("iprc-10-96-1-50", absent)],
  }, { now: NOW, graceMs: GRACE, holdAbsent: true });
  assert.deepEqual(summary(p), [[
    "create",
    "iprc-10-96-1-51",
    present("10.96.1.51", "dc-a", "db"),
  ]]);
});

Deno.test("planConfigs() reports an IPRule's first lost matches in Service order and counts them all", () => {
  const wide = ipRule("wide", { cidrs: ["192.168.0.0/16"] });
  const narrow = ipRule("narrow", { cidrs: ["192.168.1.0/24"] });
  const services = [7, 3, 5, 1, 6, 2, 4].map((i) =>
    lbService(`svc-${i}`, [`192.168.1.${i}`], [`10.96.1.${i}`])
  );
  const p = plan({ services, ipRules: [wide, narrow] });
  const report = p.ipRules.find((r) => r.name === "wide")!;
  assert.equal(report.conflictCount, 7);
  assert.deepEqual(report.conflicts.map((c) => c.service.name), [
    "svc-1",
    "svc-2",
    "svc-3",
    "svc-4",
    "svc-5",
  ]);
  const event = p.events.find((e) => e.reason === "Conflict");
  assert.match(event?.note ?? "", /^IPRule lost 7 match\(es\) .*default\/svc-5 .*; and 2 more$/);
});

Deno.test("ClusterPlan: a Service's change affects its source addresses and the IPRules there", () => {
  const lb = ipRule("lb", { cidrs: ["192.168.1.0/24"], source: "LoadBalancerIP" });
  const other = ipRule("other", { cidrs: ["192.168.2.0/24"] });
  const a = lbService("a", ["192.168.1.10"], ["10.96.1.1"]);
  const b = lbService("b", ["192.168.1.10"], ["10.96.1.2"]);
  const plan = ClusterPlan.build([a, b], [lb, other], () => undefined);
  assert.deepEqual(plan.desired("iprc-192-168-1-10")?.services?.map((r) => r.name), ["a", "b"]);

  // b moves to another IPRule: the shared config keeps a alone, b gets its own.
  const moved = plan.setService("default/b", { ...b, ingressIPs: ["192.168.2.20"] });
  assert.deepEqual([...moved.configs].sort(), ["iprc-10-96-1-2", "iprc-192-168-1-10"]);
  assert.deepEqual([...moved.ipRules].sort(), ["lb", "other"]);
  assert.deepEqual(plan.desired("iprc-192-168-1-10")?.services?.map((r) => r.name), ["a"]);
  assert.equal(plan.desired("iprc-10-96-1-2")?.ipRule, "other");
  assert.equal(plan.report(lb).matchedServices, 1);

  // A Service whose match did not change affects nothing; a deleted one frees its source.
  assert.deepEqual(plan.setService("default/a", { ...a, labels: { x: "y" } }).configs, new Set());
  const gone = plan.setService("default/a", undefined);
  assert.deepEqual([...gone.configs], ["iprc-192-168-1-10"]);
  assert.equal(plan.desired("iprc-192-168-1-10"), undefined);
  assert.equal(plan.report(lb).matchedServices, 0);
});
