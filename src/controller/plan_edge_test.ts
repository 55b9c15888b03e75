/**
 * The planner's edges: the incremental ClusterPlan's answers to IPRule and Namespace changes,
 * each branch of the config diff, the order and wording of events and writes. The main flows are
 * in plan_test.ts.
 */
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
import {
  ClusterPlan,
  diffConfig,
  ipRuleEvents,
  planConfigs,
  type PlanInput,
  specMatches,
} from "./plan.ts";

const NOW = Date.parse("2026-01-01T00:00:00Z");
const GRACE = 5 * 60_000;
const OPTIONS = { now: NOW, graceMs: GRACE };

function ipRule(
  name: string,
  spec: Partial<IPRule["spec"]> & { cidrs: string[] },
  generation?: number,
): IPRule {
  return {
    apiVersion: API_VERSION,
    kind: "IPRule",
    metadata: { name, ...(generation === undefined ? {} : { generation }) },
    spec: { table: 100, priority: 1000, ...spec },
  };
}

function lb(name: string, ingressIPs: string[], clusterIP = "10.96.1.50", extra = {}): ServiceInfo {
  return service(name, ingressIPs, clusterIP, extra);
}

const REF = { namespace: "default", name: "web" };

function spec(extra: Partial<IPRuleConfigSpec> = {}): IPRuleConfigSpec {
  return {
    serviceIP: "10.96.1.50",
    table: 100,
    priority: 1000,
    state: "present",
    ipRule: "dc",
    service: REF,
    services: [REF],
    ...extra,
  };
}

function config(
  name: string,
  s: IPRuleConfigSpec,
  options: { managed?: boolean; rv?: string } = {},
) {
  const { managed = true, rv = "7" } = options;
  return {
    apiVersion: API_VERSION,
    kind: "IPRuleConfig",
    metadata: {
      name,
      ...(rv === "" ? {} : { resourceVersion: rv }),
      ...(managed ? { labels: { [MANAGED_BY_LABEL]: MANAGED_BY } } : {}),
    },
    spec: s,
  } satisfies IPRuleConfig;
}

const dc = ipRule("dc", { cidrs: ["192.168.1.0/24"] });

Deno.test("specMatches() compares every field of the spec, the Service references by value", () => {
  const want = spec();
  assert.equal(specMatches(structuredClone(want), want), true);
  for (
    const change of [
      { serviceIP: "10.96.1.51" },
      { table: 101 },
      { priority: 999 },
      { state: "absent" as const },
      { absentSince: "2026-01-01T00:00:00Z" },
      { ipRule: "other" },
      { service: { namespace: "default", name: "db" } },
      { service: { namespace: "other", name: "web" } },
      { services: [REF, { namespace: "default", name: "db" }] },
      { services: [] },
    ]
  ) {
    assert.equal(specMatches(spec(change), want), false, JSON.stringify(change));
  }
  const bare = spec();
  delete bare.service;
  delete bare.services;
  assert.equal(specMatches(bare, want), false, "no references");
  assert.equal(specMatches(bare, { ...bare }), true);
});

Deno.test("diffConfig() creates, updates with the resourceVersion, or leaves a config", () => {
  const created = diffConfig("iprc-a", spec(), undefined, OPTIONS);
  assert.deepEqual(created, {
    change: {
      op: "create",
      name: "iprc-a",
      config: {
        apiVersion: API_VERSION,
        kind: "IPRuleConfig",
        metadata: { name: "iprc-a", labels: { [MANAGED_BY_LABEL]: MANAGED_BY } },
        spec: spec(),
      },
    },
  });
  assert.deepEqual(diffConfig("iprc-a", spec(), config("iprc-a", spec()), OPTIONS), {});
  assert.deepEqual(diffConfig("iprc-a", spec({ table: 7 }), config("iprc-a", spec()), OPTIONS), {
    change: { op: "update", name: "iprc-a", spec: spec({ table: 7 }), resourceVersion: "7" },
  });
  // Without a resourceVersion (never read from the API server) none is sent.
  assert.deepEqual(
    diffConfig("iprc-a", spec({ table: 7 }), config("iprc-a", spec(), { rv: "" }), OPTIONS),
    { change: { op: "update", name: "iprc-a", spec: spec({ table: 7 }) } },
  );
});

Deno.test("diffConfig() tells a Service why a config that is not ours stays", () => {
  const foreign = config("iprc-a", spec(), { managed: false });
  assert.deepEqual(diffConfig("iprc-a", spec(), foreign, OPTIONS), {
    event: {
      regarding: { kind: "Service", namespace: "default", name: "web" },
      type: "Warning",
      reason: "ConfigNotOwned",
      note: `IPRuleConfig "iprc-a" exists without label ${MANAGED_BY_LABEL}=${MANAGED_BY}; ` +
        "left as it is",
    },
  });
  // Not desired and not ours: nothing at all.
  assert.deepEqual(diffConfig("iprc-a", undefined, foreign, OPTIONS), {});
  assert.deepEqual(diffConfig("iprc-a", undefined, undefined, OPTIONS), {});
});

Deno.test("diffConfig() with holdAbsent leaves an absent config absent, and updates a present one", () => {
  const hold = { ...OPTIONS, holdAbsent: true };
  const absent = config("iprc-a", spec({ state: "absent", absentSince: "2025-12-31T00:00:00Z" }));
  assert.deepEqual(diffConfig("iprc-a", spec(), absent, hold), {});
  assert.deepEqual(diffConfig("iprc-a", spec({ table: 7 }), config("iprc-a", spec()), hold), {
    change: { op: "update", name: "iprc-a", spec: spec({ table: 7 }), resourceVersion: "7" },
  });
});

Deno.test("diffConfig() marks a config no longer desired absent, with the time, then deletes it after the grace period", () => {
  const marked = diffConfig("iprc-a", undefined, config("iprc-a", spec()), OPTIONS);
  assert.deepEqual(marked, {
    change: {
      op: "update",
      name: "iprc-a",
      spec: spec({ state: "absent", absentSince: "2026-01-01T00:00:00.000Z" }),
      resourceVersion: "7",
    },
    deletionAt: NOW + GRACE,
  });
  // Absent without a (readable) time: the time is written.
  for (const absentSince of [undefined, "not a time"]) {
    const s = spec({ state: "absent" });
    if (absentSince !== undefined) s.absentSince = absentSince;
    const diff = diffConfig("iprc-a", undefined, config("iprc-a", s), OPTIONS);
    assert.equal(diff.change?.op, "update", String(absentSince));
    assert.equal(
      diff.change?.op === "update" && diff.change.spec.absentSince,
      "2026-01-01T00:00:00.000Z",
    );
    assert.equal(diff.deletionAt, NOW + GRACE);
  }
  const since = config("iprc-a", spec({ state: "absent", absentSince: "2026-01-01T00:00:00Z" }));
  assert.deepEqual(diffConfig("iprc-a", undefined, since, { ...OPTIONS, now: NOW + GRACE - 1 }), {
    deletionAt: NOW + GRACE,
  });
  assert.deepEqual(diffConfig("iprc-a", undefined, since, { ...OPTIONS, now: NOW + GRACE }), {
    change: { op: "delete", name: "iprc-a", resourceVersion: "7" },
  });
  // A present config carrying an old absentSince (written by hand, or by an older version) is
  // marked absent first, never deleted at once: the agents must see it absent.
  const stale = config("iprc-a", spec({ absentSince: "2025-12-31T00:00:00Z" }));
  assert.deepEqual(diffConfig("iprc-a", undefined, stale, OPTIONS), marked);
  // Exactly now is not the future: it is not written again.
  assert.deepEqual(diffConfig("iprc-a", undefined, since, OPTIONS), { deletionAt: NOW + GRACE });
});

Deno.test("ipRuleEvents() reports an invalid spec and lost matches, nothing for a clean report", () => {
  assert.deepEqual(
    ipRuleEvents({ name: "r", matchedServices: 2, conflicts: [], conflictCount: 0 }),
    [],
  );
  const conflict = { service: REF, lbIP: "192.168.1.10", winner: "w" };
  assert.deepEqual(
    ipRuleEvents({
      name: "r",
      matchedServices: 0,
      conflicts: [conflict],
      conflictCount: 1,
      invalid: "spec.cidrs must not be empty",
    }),
    [
      {
        regarding: { kind: "IPRule", name: "r" },
        type: "Warning",
        reason: "InvalidIPRule",
        note: "IPRule ignored: spec.cidrs must not be empty",
      },
      {
        regarding: { kind: "IPRule", name: "r" },
        type: "Warning",
        reason: "Conflict",
        note: "IPRule lost 1 match(es) to IPRules with a longer prefix, lower priority or " +
          'earlier name: default/web (LB IP 192.168.1.10) to IPRule "w"',
      },
    ],
  );
});

Deno.test("planConfigs() orders events (invalid IPRules, skipped Services by key, conflicts, foreign configs) and writes by name", () => {
  const input: PlanInput = {
    services: [
      lb("zz", ["192.168.1.30"], "None"),
      lb("aa", ["192.168.1.20"], "None"),
      lb("web", ["192.168.1.10"]),
      lb("db", ["192.168.1.11"], "10.96.1.40"),
    ],
    ipRules: [
      ipRule("wide", { cidrs: ["192.168.0.0/16"] }),
      dc,
      ipRule("broken", { cidrs: [] }),
    ],
    configs: [
      config("iprc-10-96-1-50", spec({ ipRule: "manual" }), { managed: false }),
      config("iprc-10-96-9-9", spec({ serviceIP: "10.96.9.9" })),
    ],
  };
  const p = planConfigs(input, OPTIONS);
  assert.deepEqual(p.events.map((e) => `${e.regarding.name}:${e.reason}`), [
    "broken:InvalidIPRule",
    "aa:NoClusterIP",
    "zz:NoClusterIP",
    "wide:Conflict",
    "web:ConfigNotOwned",
  ]);
  assert.deepEqual(p.changes.map((c) => `${c.op} ${c.name}`), [
    "create iprc-10-96-1-40",
    "update iprc-10-96-9-9",
  ]);
  assert.equal(p.nextDeletionAt, NOW + GRACE);
  assert.deepEqual(p.ipRules.map((r) => r.name), ["broken", "dc", "wide"]);
  // A lost match of at most five names them all, without "and N more".
  const conflict = p.events.find((e) => e.reason === "Conflict")!;
  assert.equal(
    conflict.note,
    "IPRule lost 4 match(es) to IPRules with a longer prefix, lower priority or earlier name: " +
      [["aa", "1.20"], ["db", "1.11"], ["web", "1.10"], ["zz", "1.30"]]
        .map(([name, ip]) => `default/${name} (LB IP 192.168.${ip}) to IPRule "dc"`)
        .join("; "),
  );
});

Deno.test("planConfigs() lists the writes in name order, whatever the order of Services and configs", () => {
  const p = planConfigs({
    services: [lb("zeta", ["192.168.1.60"], "10.96.1.60"), lb("alpha", ["192.168.1.50"])],
    ipRules: [dc],
    configs: [config("iprc-10-96-1-55", spec({ serviceIP: "10.96.1.55" }))],
  }, OPTIONS);
  assert.deepEqual(p.changes.map((c) => `${c.op} ${c.name}`), [
    "create iprc-10-96-1-50",
    "update iprc-10-96-1-55",
    "create iprc-10-96-1-60",
  ]);
});

Deno.test("planConfigs() waits for the earliest absent config to become due", () => {
  const absent = (name: string, at: number) =>
    config(name, spec({ state: "absent", absentSince: new Date(at).toISOString() }));
  const p = planConfigs({
    services: [],
    ipRules: [],
    configs: [absent("iprc-b", NOW - 60_000), absent("iprc-a", NOW - 1000), absent("iprc-c", NOW)],
  }, OPTIONS);
  assert.deepEqual(p.changes, []);
  assert.equal(p.nextDeletionAt, NOW - 60_000 + GRACE);
  assert.equal(
    "nextDeletionAt" in planConfigs({ services: [], ipRules: [], configs: [] }, OPTIONS),
    false,
  );
});

Deno.test("planConfigs() with withdrawAll plans every config absent and reports no match", () => {
  const p = planConfigs({
    services: [lb("web", ["192.168.1.10"])],
    ipRules: [dc],
    configs: [config("iprc-10-96-1-50", spec())],
  }, { ...OPTIONS, withdrawAll: true });
  assert.deepEqual(p.changes.map((c) => [c.op, c.op === "update" && c.spec.state]), [[
    "update",
    "absent",
  ]]);
  assert.equal(p.ipRules[0]?.matchedServices, 0);
});

Deno.test("ClusterPlan.report() carries the generation and the problem, and nothing when withdrawn", () => {
  const rules = [ipRule("dc", { cidrs: ["192.168.1.0/24"] }, 3), ipRule("bad", { cidrs: [] }, 2)];
  const plan = ClusterPlan.build([lb("web", ["192.168.1.10"])], rules, () => undefined);
  assert.deepEqual(plan.report(rules[0]!), {
    name: "dc",
    generation: 3,
    matchedServices: 1,
    conflicts: [],
    conflictCount: 0,
  });
  assert.deepEqual(plan.report(rules[0]!, true), {
    name: "dc",
    generation: 3,
    matchedServices: 0,
    conflicts: [],
    conflictCount: 0,
  });
  assert.deepEqual(plan.report(rules[1]!), {
    name: "bad",
    generation: 2,
    matchedServices: 0,
    conflicts: [],
    conflictCount: 0,
    invalid: "spec.cidrs must not be empty",
  });
  assert.equal("generation" in plan.report(ipRule("new", { cidrs: ["10.0.0.0/8"] })), false);
});

Deno.test("ClusterPlan.setIPRules() matches again only the Services in a changed IPRule's old or new CIDRs", () => {
  const services = [
    lb("a", ["192.168.1.10"], "10.96.1.1"),
    lb("b", ["192.168.2.10"], "10.96.1.2"),
    lb("c", ["172.16.0.1"], "10.96.1.3"),
  ];
  const rules = [dc, ipRule("two", { cidrs: ["192.168.2.0/24"] })];
  const plan = ClusterPlan.build(services, rules, () => undefined);
  const same = plan.setIPRules(rules.map((r) => structuredClone(r)));
  assert.deepEqual(same, { configs: new Set(), ipRules: new Set(), services: new Set() });
  // "two" moves from 192.168.2.0/24 to 172.16.0.0/16: b loses it, c gains it; a is not touched.
  const moved = plan.setIPRules([dc, ipRule("two", { cidrs: ["172.16.0.0/16"], table: 9 })]);
  assert.deepEqual([...moved.configs].sort(), ["iprc-10-96-1-2", "iprc-10-96-1-3"]);
  assert.deepEqual([...moved.ipRules], ["two"]);
  assert.equal(plan.desired("iprc-10-96-1-2"), undefined);
  assert.equal(plan.desired("iprc-10-96-1-3")?.table, 9);
  assert.equal(plan.desired("iprc-10-96-1-1")?.ipRule, "dc");
  assert.deepEqual([...plan.configNames()].sort(), ["iprc-10-96-1-1", "iprc-10-96-1-3"]);
  // An IPRule turning invalid is reported even when no Service is in its CIDRs.
  const broken = plan.setIPRules([dc, ipRule("two", { cidrs: ["172.16.0.0/16"], priority: 0 })]);
  assert.deepEqual([...broken.ipRules], ["two"]);
  assert.equal(plan.desired("iprc-10-96-1-3"), undefined);
});

Deno.test("ClusterPlan.namespaceChanged() matches the namespace's Services again only when a selector reads namespaces", () => {
  let labels: Record<string, string> = { tenant: "t1" };
  const selective = ipRule("sel", {
    cidrs: ["192.168.1.0/24"],
    namespaceSelector: { matchLabels: { tenant: "t1" } },
  });
  const web = lb("web", ["192.168.1.10"]);
  const plan = ClusterPlan.build([web], [selective], (ns) => ns === "default" ? labels : undefined);
  assert.equal(plan.desired("iprc-10-96-1-50")?.ipRule, "sel");
  labels = { tenant: "t2" };
  assert.deepEqual(plan.namespaceChanged("elsewhere").configs, new Set());
  const changed = plan.namespaceChanged("default");
  assert.deepEqual([...changed.configs], ["iprc-10-96-1-50"]);
  assert.equal(plan.desired("iprc-10-96-1-50"), undefined);
  // Without namespace selectors a namespace's labels change nothing.
  const plain = ClusterPlan.build([web], [dc], () => labels);
  labels = { tenant: "t3" };
  assert.deepEqual(plain.namespaceChanged("default").configs, new Set());
});

Deno.test("ClusterPlan keeps the events of each skipped Service until it is fixed or gone", () => {
  const plan = ClusterPlan.build(
    [lb("web", ["192.168.1.10"], "None"), lb("ok", ["192.168.1.11"], "10.96.1.51")],
    [dc],
    () => undefined,
  );
  assert.deepEqual([...plan.serviceKeysWithEvents()], ["default/web"]);
  assert.equal(plan.serviceEvents("default/web")[0]?.reason, "NoClusterIP");
  assert.deepEqual(plan.serviceEvents("default/ok"), []);
  assert.deepEqual(plan.serviceEvents("default/nothing"), []);
  const fixed = plan.setService("default/web", lb("web", ["192.168.1.10"]));
  assert.deepEqual([...fixed.services], ["default/web"]);
  assert.deepEqual([...plan.serviceKeysWithEvents()], []);
  // A Service with an LB IP that is no address, or no LB IP: nothing planned, nothing kept.
  plan.setService("default/odd", lb("odd", ["not-an-ip"]));
  assert.deepEqual([...plan.configNames()].sort(), ["iprc-10-96-1-50", "iprc-10-96-1-51"]);
});

Deno.test("ClusterPlan: a Service that moves between IPRules moves its report counts and lost matches", () => {
  const wide = ipRule("wide", { cidrs: ["192.168.0.0/16"] });
  const narrow = ipRule("narrow", { cidrs: ["192.168.1.0/24"] });
  const plan = ClusterPlan.build([lb("web", ["192.168.1.10"])], [wide, narrow], () => undefined);
  assert.deepEqual([plan.report(narrow).matchedServices, plan.report(wide).conflictCount], [1, 1]);
  const moved = plan.setService("default/web", lb("web", ["192.168.5.10"]));
  assert.deepEqual([...moved.ipRules].sort(), ["narrow", "wide"]);
  assert.deepEqual(
    [plan.report(narrow).matchedServices, plan.report(wide).matchedServices],
    [0, 1],
  );
  assert.deepEqual([plan.report(wide).conflictCount, plan.report(wide).conflicts], [0, []]);
  plan.setService("default/web", undefined);
  assert.equal(plan.report(wide).matchedServices, 0);
});

Deno.test("ClusterPlan keeps its LB IP index current once built: added Services are found, removed ones are not", () => {
  const plan = ClusterPlan.build([], [dc], () => undefined);
  plan.setIPRules([dc, ipRule("x", { cidrs: ["10.250.0.0/16"] })]); // builds the index
  plan.setService("default/new", lb("new", ["172.16.0.1"], "10.96.2.1"));
  plan.setService("default/gone", lb("gone", ["172.16.0.2"], "10.96.2.2"));
  plan.setService("default/gone", undefined);
  plan.setService("default/moved", lb("moved", ["172.17.0.1"], "10.96.2.3"));
  plan.setService("default/moved", lb("moved", ["172.16.0.3"], "10.96.2.3"));
  const affected = plan.setIPRules([dc, ipRule("x", { cidrs: ["172.16.0.0/16"] })]);
  assert.deepEqual([...affected.configs].sort(), ["iprc-10-96-2-1", "iprc-10-96-2-3"]);
  assert.equal(plan.desired("iprc-10-96-2-1")?.ipRule, "x");
  assert.equal(plan.desired("iprc-10-96-2-2"), undefined);
});

Deno.test("ClusterPlan: an IPRule change with no Service in its CIDRs affects only its report", () => {
  const plan = ClusterPlan.build([lb("web", ["192.168.1.10"])], [dc], () => undefined);
  const affected = plan.setIPRules([dc, ipRule("idle", { cidrs: ["203.0.113.0/24"] })]);
  assert.deepEqual(affected, {
    configs: new Set(),
    ipRules: new Set(["idle"]),
    services: new Set(),
  });
});

Deno.test("planConfigs() reads a namespace without labels as having none, and a Service without ClusterIPs as headless", () => {
  const unlabelled = ipRule("unlabelled", {
    cidrs: ["192.168.1.0/24"],
    namespaceSelector: { matchExpressions: [{ key: "tenant", operator: "DoesNotExist" }] },
  });
  const p = planConfigs({
    services: [lb("web", ["192.168.1.10"]), service("bare", ["192.168.1.11"], [])],
    ipRules: [unlabelled],
    configs: [],
    namespaceLabels: new Map(),
  }, OPTIONS);
  assert.deepEqual(p.changes.map((c) => c.name), ["iprc-10-96-1-50"]);
  assert.deepEqual(p.events.map((e) => `${e.regarding.name}:${e.reason}`), ["bare:NoClusterIP"]);
});

Deno.test("ClusterPlan: a Service whose change affects nothing planned keeps its decisions; one that turns headless shows an event", () => {
  const selective = ipRule("sel", {
    cidrs: ["192.168.1.0/24"],
    serviceSelector: { matchLabels: { route: "a" } },
  });
  const web = lb("web", ["192.168.1.10"], "10.96.1.50", { labels: { route: "a" } });
  const plan = ClusterPlan.build([web], [selective, dc], () => undefined);
  assert.equal(plan.desired("iprc-10-96-1-50")?.ipRule, "dc"); // "dc" < "sel" at equal prefix
  // Labels the selector reads change the losing match: its report changes, the config does not.
  const relabelled = plan.setService("default/web", { ...web, labels: { route: "b" } });
  assert.deepEqual([...relabelled.ipRules], ["sel"]);
  assert.equal(plan.report(selective).conflictCount, 0);
  const headless = plan.setService("default/web", { ...web, clusterIPs: ["None"] });
  assert.deepEqual([...headless.services], ["default/web"]);
  assert.deepEqual([...headless.configs], ["iprc-10-96-1-50"]);
  assert.equal(plan.desired("iprc-10-96-1-50"), undefined);
});

Deno.test("ClusterPlan reports the five first lost matches by Service key, whatever the order they came in", () => {
  const wide = ipRule("wide", { cidrs: ["192.168.0.0/16"] });
  const narrow = ipRule("narrow", { cidrs: ["192.168.1.0/24"] });
  const plan = ClusterPlan.build([], [wide, narrow], () => undefined);
  for (const i of [9, 8, 7, 6, 5, 4]) {
    plan.setService(`default/s${i}`, lb(`s${i}`, [`192.168.1.${i}`], `10.96.3.${i}`));
  }
  assert.deepEqual(plan.report(wide).conflicts.map((c) => c.service.name), [
    "s4",
    "s5",
    "s6",
    "s7",
    "s8",
  ]);
  plan.setService("default/s0", lb("s0", ["192.168.1.100"], "10.96.3.100"));
  assert.deepEqual(plan.report(wide).conflicts.map((c) => c.service.name), [
    "s0",
    "s4",
    "s5",
    "s6",
    "s7",
  ]);
  assert.equal(plan.report(wide).conflictCount, 7);
  plan.setService("default/s4", undefined);
  assert.deepEqual(plan.report(wide).conflicts.map((c) => c.service.name), [
    "s0",
    "s5",
    "s6",
    "s7",
    "s8",
  ]);
  assert.equal(plan.report(wide).conflictCount, 6);
});
