import assert from "node:assert/strict";
import { MemoryObjects } from "../../tests/support/memory_api.ts";
import { narrowAgent, narrowIPRule, narrowIPRuleConfig } from "../api/narrow.ts";
import type { Condition, ServiceInfo } from "../api/types.ts";
import { ApiError } from "../k8s/client.ts";
import { STALE_REQUEUE_MS } from "../k8s/objects.ts";
import { Logger } from "../log.ts";
import { ConfigReconciler } from "./config_reconciler.ts";
import { ControllerMetrics } from "./metrics.ts";
import type { PlanEvent } from "./plan.ts";

const NS = "ops";
const NOW = Date.parse("2026-01-01T00:00:00Z");

function service(name: string, lbIP: string, clusterIP: string): ServiceInfo {
  return {
    namespace: "default",
    name,
    labels: {},
    type: "LoadBalancer",
    clusterIPs: [clusterIP],
    ingressIPs: [lbIP],
    hostnameOnlyIngress: 0,
  };
}

/** A config reconciler over memory objects, an Agent installed, and its parts at hand. */
function setup() {
  const configs = new MemoryObjects("ipruleconfigs", narrowIPRuleConfig, {
    statusSubresource: false,
  });
  const ipRules = new MemoryObjects("iprules", narrowIPRule);
  const agents = new MemoryObjects("agents", narrowAgent, { namespace: NS });
  agents.put({ metadata: { name: "agent", namespace: NS, finalizers: ["foregroundDeletion"] } });
  const services = new Map<string, ServiceInfo>();
  const caches = {
    services: { synced: true, store: services },
    namespaces: { synced: true, store: new Map<string, Record<string, string>>() },
    ipRules: ipRules.cache(),
    configs: configs.cache(),
    agents: agents.cache(),
  };
  const events: PlanEvent[] = [];
  const logs: Record<string, unknown>[] = [];
  const reconciler = new ConfigReconciler({ configs, ipRules }, caches, {
    namespace: NS,
    graceMs: 60_000,
    log: new Logger({ level: "debug", sink: (line) => logs.push(JSON.parse(line)) }),
    events: {
      record: (e) => {
        events.push(...e);
        return Promise.resolve();
      },
    },
    metrics: new ControllerMetrics(),
    now: () => NOW,
  });
  const ipRule = (name: string, cidr: string, table: number) => {
    ipRules.put({ metadata: { name }, spec: { cidrs: [cidr], table, priority: 1000 } });
    caches.ipRules.sync();
  };
  const sync = () => Object.values(caches).forEach((c) => "sync" in c && c.sync());
  const errors = () => logs.filter((l) => l.level === "error");
  return {
    reconciler,
    configs,
    ipRules,
    agents,
    services,
    caches,
    events,
    logs,
    ipRule,
    sync,
    errors,
  };
}

const condition = (rule: { status?: { conditions?: Condition[] } } | undefined, type: string) =>
  rule?.status?.conditions?.find((c) => c.type === type);

Deno.test("ConfigReconciler creates a config per matched Service and the IPRule's status", async () => {
  const { reconciler, configs, ipRules, services, ipRule } = setup();
  ipRule("dc-a", "192.168.1.0/24", 100);
  services.set("default/web", service("web", "192.168.1.10", "10.96.1.50"));
  const result = await reconciler.reconcile("r1");
  assert.deepEqual(result, { writes: 2 });
  const config = await configs.get("iprc-10-96-1-50");
  assert.deepEqual(config?.spec, {
    serviceIP: "10.96.1.50",
    table: 100,
    priority: 1000,
    state: "present",
    ipRule: "dc-a",
    service: { namespace: "default", name: "web" },
    services: [{ namespace: "default", name: "web" }],
  });
  const rule = await ipRules.get("dc-a");
  assert.equal(rule?.status?.matchedServices, 1);
  assert.deepEqual(
    condition(rule, "Ready"),
    {
      type: "Ready",
      status: "True",
      reason: "Reconciled",
      message: "Routing 1 Service(s)",
      observedGeneration: 1,
      lastTransitionTime: "2026-01-01T00:00:00Z",
    },
  );
});

Deno.test("ConfigReconciler: its own writes' echoes change nothing, before and after the watch", async () => {
  const { reconciler, configs, ipRules, services, ipRule, sync } = setup();
  ipRule("dc-a", "192.168.1.0/24", 100);
  services.set("default/web", service("web", "192.168.1.10", "10.96.1.50"));
  await reconciler.reconcile("r1");
  const writes = configs.writes.length + ipRules.writes.length;
  // The caches took in the writes' results: nothing to do before the watch delivers them...
  assert.deepEqual(await reconciler.reconcile("r2"), { writes: 0 });
  // ...nor after.
  sync();
  assert.deepEqual(await reconciler.reconcile("r3"), { writes: 0 });
  assert.equal(configs.writes.length + ipRules.writes.length, writes);
});

Deno.test("ConfigReconciler: a write on a stale cache (409) requeues without an error", async () => {
  const { reconciler, configs, services, ipRule, sync, logs, errors, caches } = setup();
  ipRule("dc-a", "192.168.1.0/24", 100);
  services.set("default/web", service("web", "192.168.1.10", "10.96.1.50"));
  await reconciler.reconcile("r1");
  sync();
  // Someone else writes the config; our cache has not seen it when the IPRule changes.
  const current = configs.raw("iprc-10-96-1-50")!;
  configs.put({ ...current, metadata: { ...current.metadata as object, annotations: { x: "y" } } });
  ipRule("dc-a", "192.168.1.0/24", 200);
  const stale = await reconciler.reconcile("r2");
  // The IPRule's status (its new generation) is written; the config update is not.
  assert.deepEqual(stale, { writes: 1, requeueAfterMs: STALE_REQUEUE_MS });
  assert.deepEqual(errors(), []);
  assert.ok(logs.some((l) => l.level === "debug" && l.msg === "Write skipped, cache stale"));
  assert.equal((await configs.get("iprc-10-96-1-50"))?.spec.table, 100);
  // The watch catches up; the requeued reconcile writes.
  caches.configs.sync();
  const retried = await reconciler.reconcile("r3");
  assert.equal(retried.requeueAfterMs, undefined);
  assert.equal((await configs.get("iprc-10-96-1-50"))?.spec.table, 200);
});

Deno.test("ConfigReconciler: a write that fails otherwise fails the reconcile", async () => {
  const { reconciler, configs, services, ipRule, errors } = setup();
  ipRule("dc-a", "192.168.1.0/24", 100);
  services.set("default/web", service("web", "192.168.1.10", "10.96.1.50"));
  configs.fail = () => new ApiError("POST", "/ipruleconfigs", 503, "ServiceUnavailable", "busy");
  await assert.rejects(reconciler.reconcile("r1"), /1 write\(s\) failed/);
  assert.equal(errors()[0]?.msg, "Write failed");
});

Deno.test("ConfigReconciler: IPRule status moves Ready → Conflict → no Conflict, each written once", async () => {
  const { reconciler, ipRules, services, ipRule, caches, events } = setup();
  ipRule("wide", "10.50.0.0/16", 500);
  services.set("default/web", service("web", "10.50.1.9", "10.96.1.50"));
  await reconciler.reconcile("r1");
  assert.equal(condition(await ipRules.get("wide"), "Conflict")?.status, "False");

  ipRule("narrow", "10.50.1.0/24", 501);
  await reconciler.reconcile("r2");
  const lost = await ipRules.get("wide");
  assert.deepEqual(
    [condition(lost, "Conflict")?.status, lost?.status?.matchedServices],
    ["True", 0],
  );
  assert.match(
    condition(lost, "Conflict")?.message ?? "",
    /default\/web \(LB IP 10\.50\.1\.9\) went to IPRule "narrow"/,
  );
  const statusWrites = () => ipRules.writes.filter((w) => w.subresource === "status").length;
  const written = statusWrites();
  await reconciler.reconcile("r3");
  assert.equal(statusWrites(), written);

  assert.ok(events.some((e) => e.reason === "Conflict" && e.regarding.name === "wide"));

  ipRules.objects.delete("narrow");
  caches.ipRules.sync();
  await reconciler.reconcile("r4");
  assert.equal(condition(await ipRules.get("wide"), "Conflict")?.status, "False");
});

Deno.test("ConfigReconciler withdraws every config while the Agent is deleted, holds them absent without one", async () => {
  const { reconciler, configs, agents, services, ipRule, caches } = setup();
  ipRule("dc-a", "192.168.1.0/24", 100);
  services.set("default/web", service("web", "192.168.1.10", "10.96.1.50"));
  await reconciler.reconcile("r1");
  const state = async () => (await configs.get("iprc-10-96-1-50"))?.spec.state;
  assert.equal(await state(), "present");

  await agents.delete("agent"); // held by a foreground deletion: being deleted
  caches.agents.sync();
  await reconciler.reconcile("r2");
  assert.equal(await state(), "absent");

  agents.objects.clear(); // its DaemonSet gone: the Agent is gone
  caches.agents.sync();
  await reconciler.reconcile("r3");
  assert.equal(await state(), "absent", "held absent while no Agent exists");

  agents.put({ metadata: { name: "agent", namespace: NS } });
  caches.agents.sync();
  await reconciler.reconcile("r4");
  assert.equal(await state(), "present");
});

Deno.test("ConfigReconciler writes nothing once leadership is lost", async () => {
  const { configs, ipRules, services, ipRule, caches } = setup();
  const leading = new AbortController();
  leading.abort();
  const reconciler = new ConfigReconciler({ configs, ipRules }, caches, {
    namespace: NS,
    graceMs: 60_000,
    log: new Logger({ sink: () => {} }),
    events: { record: () => Promise.resolve() },
    metrics: new ControllerMetrics(),
    leading: leading.signal,
  });
  ipRule("dc-a", "192.168.1.0/24", 100);
  services.set("default/web", service("web", "192.168.1.10", "10.96.1.50"));
  assert.deepEqual(await reconciler.reconcile("r1"), { writes: 0 });
  assert.deepEqual(configs.writes, []);
});

Deno.test("ConfigReconciler adopts the original operator's configs and IPRules with spec.cidr", async () => {
  const { reconciler, configs, ipRules, services, events, sync } = setup();
  // As the original wrote them: its label, spec hash, per-node acks and owner reference.
  const owner = {
    apiVersion: "api.operator.brtrm.dev/v1alpha1",
    kind: "IPRule",
    name: "dc-a",
    uid: "u-dc-a",
    controller: true,
    blockOwnerDeletion: true,
  };
  ipRules.put({
    metadata: { name: "dc-a", generation: 1 },
    spec: { cidr: "192.168.1.0/24", table: 100 },
  });
  const original = (name: string, serviceIP: string, state: string) => ({
    metadata: {
      name,
      labels: { "managed-by": "ip-rule-operator", keep: "me" },
      annotations: {
        "iprule.operator.brtrm.dev/spec-hash": "abc",
        "cleanup.iprule.agent.brtrm.dev/node-1": "done",
        note: "kept",
      },
      ownerReferences: [owner],
    },
    spec: { serviceIP, table: 100, priority: 1000, state },
  });
  configs.put(original("iprc-10-96-1-50", "10.96.1.50", "present"));
  configs.put(original("iprc-10-96-1-99", "10.96.1.99", "absent"));
  services.set("default/web", service("web", "192.168.1.10", "10.96.1.50"));
  sync();
  await reconciler.reconcile("r1");

  assert.deepEqual([...configs.objects.keys()].sort(), ["iprc-10-96-1-50", "iprc-10-96-1-99"]);
  for (const name of ["iprc-10-96-1-50", "iprc-10-96-1-99"]) {
    const meta = configs.raw(name)!.metadata as Record<string, unknown>;
    assert.deepEqual(meta.labels, {
      keep: "me",
      "app.kubernetes.io/managed-by": "ip-rule-operator",
    });
    assert.deepEqual(meta.annotations, { note: "kept" });
    assert.equal(meta.ownerReferences, undefined, name);
  }
  const present = await configs.get("iprc-10-96-1-50");
  assert.deepEqual(present?.spec, {
    serviceIP: "10.96.1.50",
    table: 100,
    priority: 1000,
    state: "present",
    ipRule: "dc-a",
    service: { namespace: "default", name: "web" },
    services: [{ namespace: "default", name: "web" }],
  });
  assert.equal(
    (await configs.get("iprc-10-96-1-99"))?.spec.absentSince,
    new Date(NOW).toISOString(),
  );

  const rule = await ipRules.get("dc-a");
  assert.equal(rule?.status?.matchedServices, 1);
  assert.equal(condition(rule, "Deprecated")?.status, "True");
  assert.match(condition(rule, "Deprecated")?.message ?? "", /spec\.cidr is deprecated/);
  assert.deepEqual(
    events.filter((e) => e.reason === "DeprecatedField").map((e) => e.regarding.name),
    ["dc-a"],
  );

  // Moved to spec.cidrs: the condition goes.
  ipRules.put({
    metadata: { name: "dc-a", generation: 2 },
    spec: { cidrs: ["192.168.1.0/24"], table: 100 },
    status: rule?.status,
  });
  sync();
  await reconciler.reconcile("r2");
  assert.equal(condition(await ipRules.get("dc-a"), "Deprecated"), undefined);
});
