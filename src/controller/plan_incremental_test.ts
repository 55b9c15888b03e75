/**
 * The ClusterPlan kept up to date one event at a time, against ClusterPlan.build from the same
 * objects: after every Service, IPRule or Namespace event it must decide the same configs, IPRule
 * reports and Service events, and the Affected sets it returns must name every key whose
 * decision changed (the reconcilers queue only those keys). Where the smallest answer is plain,
 * the Affected sets are compared whole: a key named needlessly is a reconcile for nothing.
 */
import assert from "node:assert/strict";
import { isDeepStrictEqual } from "node:util";
import { API_VERSION, type IPRule, type ServiceInfo } from "../api/types.ts";
import { service } from "../../tests/support/config_harness.ts";
import { type Affected, ClusterPlan } from "./plan.ts";

/** An IPRule with table 100 and priority 1000 unless told. */
function rule(name: string, spec: Partial<IPRule["spec"]> & { cidrs: string[] }): IPRule {
  return {
    apiVersion: API_VERSION,
    kind: "IPRule",
    metadata: { name },
    spec: { table: 100, priority: 1000, ...spec },
  };
}

function affected(configs: string[], ipRules: string[] = [], services: string[] = []): Affected {
  return { configs: new Set(configs), ipRules: new Set(ipRules), services: new Set(services) };
}

/** Keys whose value differs between two maps. */
function changed<T>(a: ReadonlyMap<string, T>, b: ReadonlyMap<string, T>): string[] {
  return [...new Set([...a.keys(), ...b.keys()])].filter((k) =>
    !isDeepStrictEqual(a.get(k), b.get(k))
  ).sort();
}

/**
 * A cluster as the informers hold it and a ClusterPlan fed its events; each event is checked
 * against a plan built from scratch and against the plan's decisions before it.
 */
class Cluster {
  readonly services = new Map<string, ServiceInfo>();
  readonly labels = new Map<string, Record<string, string>>();
  rules: IPRule[];
  readonly plan: ClusterPlan;
  /** Every IPRule and Service key seen, so that removed ones are compared too. */
  readonly #ruleNames = new Set<string>();
  readonly #serviceKeys = new Set<string>();

  constructor(services: ServiceInfo[], rules: IPRule[], labels: Record<string, object> = {}) {
    for (const svc of services) this.services.set(`${svc.namespace}/${svc.name}`, svc);
    for (const [ns, l] of Object.entries(labels)) this.labels.set(ns, l as Record<string, string>);
    this.rules = rules;
    this.plan = this.#build();
    this.#seen();
  }

  setService(svc: ServiceInfo): Affected {
    const key = `${svc.namespace}/${svc.name}`;
    this.services.set(key, svc);
    return this.#step(() => this.plan.setService(key, svc));
  }

  deleteService(key: string): Affected {
    this.services.delete(key);
    return this.#step(() => this.plan.setService(key, undefined));
  }

  setIPRules(rules: IPRule[]): Affected {
    this.rules = rules;
    return this.#step(() => this.plan.setIPRules(rules));
  }

  setLabels(namespace: string, labels: Record<string, string>): Affected {
    this.labels.set(namespace, labels);
    return this.#step(() => this.plan.namespaceChanged(namespace));
  }

  #build(): ClusterPlan {
    return ClusterPlan.build(this.services.values(), this.rules, (ns) => this.labels.get(ns));
  }

  #seen(): void {
    for (const r of this.rules) this.#ruleNames.add(r.metadata.name);
    for (const key of this.services.keys()) this.#serviceKeys.add(key);
  }

  /** What a plan decides: configs, IPRule reports and Service events, by key. */
  #decisions(plan: ClusterPlan) {
    const names = [...plan.configNames()].sort();
    return {
      configs: new Map(names.map((n) => [n, plan.desired(n)])),
      reports: new Map(
        [...this.#ruleNames].sort().map((n) => [n, plan.report(rule(n, { cidrs: [] }))]),
      ),
      events: new Map([...this.#serviceKeys].sort().map((k) => [k, plan.serviceEvents(k)])),
      withEvents: [...plan.serviceKeysWithEvents()].sort(),
    };
  }

  #step(event: () => Affected): Affected {
    this.#seen();
    const before = structuredClone(this.#decisions(this.plan));
    const result = event();
    const after = this.#decisions(this.plan);
    assert.deepEqual(after, this.#decisions(this.#build()), "decides as a plan built from scratch");
    const missing = (keys: string[], named: Set<string>) => keys.filter((k) => !named.has(k));
    assert.deepEqual(missing(changed(before.configs, after.configs), result.configs), []);
    assert.deepEqual(missing(changed(before.reports, after.reports), result.ipRules), []);
    assert.deepEqual(missing(changed(before.events, after.events), result.services), []);
    return result;
  }
}

const REF = { namespace: "default", name: "web" };
const dc = rule("dc", { cidrs: ["192.168.1.0/24", "fd00:10::/64"] });

Deno.test("ClusterPlan: a Service's ClusterIP change moves its config, one family alone too; its lost matches stay", () => {
  const wide = rule("wide", { cidrs: ["192.168.0.0/16"] });
  const web = service("web", ["192.168.1.10", "fd00:10::10"], ["10.96.1.50", "fd00:96::50"]);
  const c = new Cluster([web], [dc, wide]);
  const v6 = c.setService({ ...web, clusterIPs: ["10.96.1.50", "fd00:96::51"] });
  assert.deepEqual([...c.plan.configNames()].sort(), [
    "iprc-10-96-1-50",
    "iprc-fd00-96-0-0-0-0-0-51",
  ]);
  assert.ok(v6.configs.has("iprc-fd00-96-0-0-0-0-0-50"));
  // "dc" still routes web and "wide" still lost 192.168.1.10: no report changed.
  assert.deepEqual([v6.ipRules, v6.services], [new Set(), new Set()]);
  const v4 = c.setService({ ...web, clusterIPs: ["10.96.1.51", "fd00:96::51"] });
  assert.equal(c.plan.desired("iprc-10-96-1-51")?.serviceIP, "10.96.1.51");
  assert.deepEqual(v4.ipRules, new Set());
  assert.deepEqual(c.plan.report(wide).conflicts, [
    { service: REF, lbIP: "192.168.1.10", winner: "dc" },
  ]);
});

Deno.test("ClusterPlan: an IPRule's table or priority change alone updates its configs in place", () => {
  const c = new Cluster([service("web", ["192.168.1.10"], "10.96.1.50")], [dc]);
  const table = c.setIPRules([{ ...dc, spec: { ...dc.spec, table: 7 } }]);
  assert.deepEqual(table, affected(["iprc-10-96-1-50"], ["dc"]));
  assert.equal(c.plan.desired("iprc-10-96-1-50")?.table, 7);
  c.setIPRules([{ ...dc, spec: { ...dc.spec, table: 7, priority: 500 } }]);
  assert.deepEqual(
    [c.plan.desired("iprc-10-96-1-50")?.table, c.plan.desired("iprc-10-96-1-50")?.priority],
    [7, 500],
  );
});

Deno.test("ClusterPlan: a lost match follows the IPRules: the new loser lists it, with the new winner", () => {
  const win = rule("win", { cidrs: ["192.168.1.0/24"] });
  const first = rule("first", { cidrs: ["192.168.0.0/16"] });
  const second = rule("second", { cidrs: ["192.168.0.0/17"] });
  const c = new Cluster([service("web", ["192.168.1.10"], "10.96.1.50")], [win, first]);
  // Another IPRule loses the same LB IP: as many lost matches, another loser.
  const loser = c.setIPRules([win, second]);
  assert.deepEqual(loser.ipRules, new Set(["first", "second"]));
  assert.equal(c.plan.report(first).conflictCount, 0);
  assert.deepEqual(c.plan.report(second).conflicts, [
    { service: REF, lbIP: "192.168.1.10", winner: "win" },
  ]);
  // Another IPRule wins it: the loser's lost match names the new winner.
  const winner = c.setIPRules([rule("win-2", { cidrs: ["192.168.1.0/24"] }), second]);
  assert.ok(winner.ipRules.has("second"));
  assert.deepEqual(c.plan.report(second).conflicts, [
    { service: REF, lbIP: "192.168.1.10", winner: "win-2" },
  ]);
});

Deno.test("ClusterPlan: a lost match that moves to another LB IP of the Service is reported at that LB IP", () => {
  const win = rule("win", { cidrs: ["192.168.1.0/24", "192.168.2.0/24"] });
  const low = rule("low", { cidrs: ["192.168.0.0/23"] }); // 192.168.0.0 - 192.168.1.255
  const web = service("web", ["192.168.1.10", "192.168.2.10"], "10.96.1.50");
  const c = new Cluster([web], [win, low]);
  assert.deepEqual(c.plan.report(low).conflicts.map((l) => l.lbIP), ["192.168.1.10"]);
  const moved = c.setIPRules([win, rule("low", { cidrs: ["192.168.2.0/23"] })]);
  assert.ok(moved.ipRules.has("low"));
  assert.deepEqual(c.plan.report(low).conflicts, [
    { service: REF, lbIP: "192.168.2.10", winner: "win" },
  ]);
});

Deno.test("ClusterPlan: an update that changes nothing the plan decides affects nothing, lost matches and events kept", () => {
  const wide = rule("wide", { cidrs: ["192.168.0.0/16"] });
  const web = service("web", ["192.168.1.10", "fd00:10::10"], ["10.96.1.50", "fd00:96::50"]);
  const headless = service("db", ["192.168.1.11"], "None");
  const c = new Cluster([web, headless], [dc, wide]);
  assert.deepEqual(c.setService({ ...web, labels: { tier: "front" } }), affected([]));
  assert.deepEqual(c.setService({ ...headless, labels: { tier: "back" } }), affected([]));
  assert.equal(c.plan.report(wide).conflictCount, 2); // web's and db's LB IP
  assert.equal(c.plan.serviceEvents("default/db").length, 1);
});

Deno.test("ClusterPlan: a skipped Service's event follows the IPRule that skips it", () => {
  const headless = service("db", ["192.168.1.11"], "None");
  const c = new Cluster([headless], [rule("one", { cidrs: ["192.168.1.0/24"] })]);
  const renamed = c.setIPRules([rule("two", { cidrs: ["192.168.1.0/24"] })]);
  assert.deepEqual(renamed, affected([], ["one", "two"], ["default/db"]));
  assert.match(c.plan.serviceEvents("default/db")[0]?.note ?? "", /\(IPRule "two"\)$/);
});

Deno.test("ClusterPlan: a new or deleted Service affects its config and IPRule only", () => {
  const c = new Cluster([], [dc]);
  const web = service("web", ["192.168.1.10"], "10.96.1.50");
  assert.deepEqual(c.setService(web), affected(["iprc-10-96-1-50"], ["dc"]));
  assert.deepEqual(c.deleteService("default/web"), affected(["iprc-10-96-1-50"], ["dc"]));
  assert.deepEqual(c.setService({ ...web, type: "ClusterIP" }), affected([]));
});

Deno.test("ClusterPlan: a Service added or changed in a selected namespace is matched with its labels, and stays found by them", () => {
  const tenant = rule("tenant", {
    cidrs: ["192.168.1.0/24"],
    namespaceSelector: { matchLabels: { tenant: "t1" } },
  });
  const c = new Cluster([], [tenant], { default: { tenant: "t1" } });
  const a = service("a", ["192.168.1.10"], "10.96.1.1");
  c.setService(a);
  c.setService(service("b", ["192.168.1.20"], "10.96.1.2"));
  assert.equal(c.plan.desired("iprc-10-96-1-1")?.ipRule, "tenant");
  // a changes: both Services must still be found when the namespace's labels change.
  c.setService({ ...a, ingressIPs: ["192.168.1.11"] });
  const relabelled = c.setLabels("default", { tenant: "t2" });
  assert.deepEqual([...relabelled.configs].sort(), ["iprc-10-96-1-1", "iprc-10-96-1-2"]);
  assert.deepEqual([...c.plan.configNames()], []);
});

Deno.test("ClusterPlan: a Service that wins a shared source makes the others there lose it", () => {
  const wide = rule("wide", { cidrs: ["192.168.0.0/16"], source: "LoadBalancerIP" });
  const narrow = rule("narrow", {
    cidrs: ["192.168.1.0/24"],
    source: "LoadBalancerIP",
    serviceSelector: { matchLabels: { route: "narrow" } },
  });
  const a = service("a", ["192.168.1.10"], "10.96.1.1");
  const b = service("b", ["192.168.1.10"], "10.96.1.2");
  const c = new Cluster([a, b], [wide, narrow]);
  const shared = "iprc-192-168-1-10";
  assert.deepEqual(c.plan.desired(shared)?.services?.map((r) => r.name), ["a", "b"]);
  const won = c.setService({ ...a, labels: { route: "narrow" } });
  assert.deepEqual(won, affected([shared], ["narrow", "wide"]));
  // Only the Services of the winning IPRule are listed; "wide" lost a's LB IP and b's source.
  assert.deepEqual(
    [c.plan.desired(shared)?.ipRule, c.plan.desired(shared)?.services?.map((r) => r.name)],
    ["narrow", ["a"]],
  );
  assert.deepEqual(c.plan.report(wide), {
    name: "wide",
    matchedServices: 0,
    conflicts: ["a", "b"].map((name) => ({
      service: { namespace: "default", name },
      lbIP: "192.168.1.10",
      winner: "narrow",
    })),
    conflictCount: 2,
  });
});

Deno.test("ClusterPlan reports every lost match of a Service with several LB IPs, the first five in Service then LB IP order", () => {
  const wide = rule("wide", { cidrs: ["192.168.0.0/16"] });
  const narrow = rule("narrow", { cidrs: ["192.168.1.0/24"] });
  const services = [3, 1, 2].map((i) =>
    service(`s${i}`, [`192.168.1.${i}0`, `192.168.1.${i}1`], `10.96.1.${i}`)
  );
  const plan = new Cluster(services, [wide, narrow]).plan;
  const report = plan.report(wide);
  assert.deepEqual([report.matchedServices, report.conflictCount], [0, 6]);
  assert.deepEqual(report.conflicts.map((l) => `${l.service.name} ${l.lbIP}`), [
    "s1 192.168.1.10",
    "s1 192.168.1.11",
    "s2 192.168.1.20",
    "s2 192.168.1.21",
    "s3 192.168.1.30",
  ]);
  assert.equal(plan.report(narrow).matchedServices, 3);
});
