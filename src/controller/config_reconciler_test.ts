import assert from "node:assert/strict";
import { GRACE, NOW, NS, service, setup } from "../../tests/support/config_harness.ts";
import type { Condition } from "../api/types.ts";
import { ApiError } from "../k8s/client.ts";
import { STALE_REQUEUE_MS } from "../k8s/objects.ts";
import { parseWorkKey, RESYNC_KEY, workKey } from "./config_reconciler.ts";

const condition = (rule: { status?: { conditions?: Condition[] } } | undefined, type: string) =>
  rule?.status?.conditions?.find((c) => c.type === type);

Deno.test("workKey() and parseWorkKey() name each piece of work", () => {
  for (
    const work of [
      { kind: "resync" },
      { kind: "ipruleconfig", name: "iprc-10-96-1-50" },
      { kind: "iprule", name: "dc-a" },
      { kind: "service", name: "default/web" },
    ] as const
  ) {
    assert.deepEqual(parseWorkKey(workKey(work)), work);
  }
  assert.equal(parseWorkKey("agent"), undefined);
  assert.equal(parseWorkKey("node/x"), undefined);
});

/** The config spec of Service default/web (ClusterIP 10.96.1.50) routed by IPRule dc-a. */
const WEB_IN_DC_A = {
  serviceIP: "10.96.1.50",
  table: 100,
  priority: 1000,
  state: "present",
  ipRule: "dc-a",
  service: { namespace: "default", name: "web" },
  services: [{ namespace: "default", name: "web" }],
};

Deno.test("ConfigReconciler creates a config per matched Service and the IPRule's status", async () => {
  const { configs, ipRules, setService, ipRule, start } = setup();
  ipRule("dc-a", "192.168.1.0/24", 100);
  setService(service("web", "192.168.1.10", "10.96.1.50"));
  assert.equal(await start(), 2);
  const config = await configs.get("iprc-10-96-1-50");
  assert.deepEqual(config?.spec, WEB_IN_DC_A);
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

Deno.test("ConfigReconciler: a Service's change reconciles its config and its IPRules' statuses only", async () => {
  const { configs, ipRules, setService, ipRule, start, run, reconciled } = setup();
  ipRule("dc-a", "192.168.1.0/24", 100);
  ipRule("dc-b", "192.168.2.0/24", 200);
  for (let i = 0; i < 20; i++) {
    setService(service(`svc-${i}`, `192.168.${1 + i % 2}.${10 + i}`, `10.96.1.${50 + i}`));
  }
  await start();
  reconciled.length = 0;
  // svc-4 moves from dc-a to dc-b.
  setService(service("svc-4", "192.168.2.99", "10.96.1.54"));
  assert.equal(await run(), 3);
  assert.deepEqual(reconciled.sort(), [
    "iprule/dc-a",
    "iprule/dc-b",
    "ipruleconfig/iprc-10-96-1-54",
  ]);
  assert.equal((await configs.get("iprc-10-96-1-54"))?.spec.table, 200);
  assert.deepEqual(
    [
      (await ipRules.get("dc-a"))?.status?.matchedServices,
      (await ipRules.get("dc-b"))?.status
        ?.matchedServices,
    ],
    [9, 11],
  );
});

Deno.test("ConfigReconciler: an IPRule's change reconciles the configs of the Services in its old and new CIDRs only", async () => {
  const { configs, setService, ipRule, start, run, reconciled } = setup();
  ipRule("a", "192.168.1.0/24", 100);
  ipRule("b", "192.168.2.0/24", 200);
  ipRule("c", "192.168.3.0/24", 300);
  setService(service("in-a", "192.168.1.10", "10.96.1.1"));
  setService(service("in-b", "192.168.2.10", "10.96.1.2"));
  setService(service("in-c", "192.168.3.10", "10.96.1.3"));
  setService(service("in-none", "192.168.9.10", "10.96.1.9"));
  await start();
  reconciled.length = 0;
  // "a" moves from 192.168.1.0/24 to 192.168.9.0/24: in-a loses its rule, in-none gains it.
  ipRule("a", "192.168.9.0/24", 100);
  await run();
  assert.deepEqual(reconciled.sort(), [
    "iprule/a",
    "ipruleconfig/iprc-10-96-1-1",
    "ipruleconfig/iprc-10-96-1-9",
  ]);
  assert.equal((await configs.get("iprc-10-96-1-1"))?.spec.state, "absent");
  assert.equal((await configs.get("iprc-10-96-1-9"))?.spec.ipRule, "a");
});

Deno.test("ConfigReconciler: a Namespace's labels re-match its Services when a namespaceSelector reads them", async () => {
  const { configs, setService, setLabels, ipRule, start, run, reconciled } = setup();
  setLabels("default", { tenant: "t1" });
  ipRule("t1", "192.168.1.0/24", 100, { namespaceSelector: { matchLabels: { tenant: "t1" } } });
  setService(service("web", "192.168.1.10", "10.96.1.50"));
  setService({ ...service("other", "192.168.1.11", "10.96.1.51"), namespace: "elsewhere" });
  await start();
  assert.equal((await configs.get("iprc-10-96-1-50"))?.spec.state, "present");
  assert.equal(await configs.get("iprc-10-96-1-51"), undefined);
  reconciled.length = 0;
  setLabels("default", { tenant: "t2" });
  await run();
  assert.deepEqual(reconciled.sort(), ["iprule/t1", "ipruleconfig/iprc-10-96-1-50"]);
  assert.equal((await configs.get("iprc-10-96-1-50"))?.spec.state, "absent");
});

Deno.test("ConfigReconciler: its own writes' echoes change nothing, before and after the watch", async () => {
  const { configs, ipRules, setService, ipRule, sync, start, run, reconciled } = setup();
  ipRule("dc-a", "192.168.1.0/24", 100);
  setService(service("web", "192.168.1.10", "10.96.1.50"));
  await start();
  const writes = configs.writes.length + ipRules.writes.length;
  reconciled.length = 0;
  sync();
  assert.equal(await run(), 0);
  assert.deepEqual(reconciled, []);
  assert.equal(configs.writes.length + ipRules.writes.length, writes);
});

Deno.test("ConfigReconciler: the resync writes nothing after the per-key reconciles, and repairs a missed change", async () => {
  const { configs, services, setService, ipRule, start, run, queued, drift, reconciled } = setup();
  ipRule("dc-a", "192.168.1.0/24", 100);
  setService(service("web", "192.168.1.10", "10.96.1.50"));
  await start();
  setService(service("db", "192.168.1.11", "10.96.1.51"));
  await run();
  assert.ok(queued.has(RESYNC_KEY), "the next resync is scheduled");
  reconciled.length = 0;
  queued.set(RESYNC_KEY, 0);
  assert.equal(await run(), 0);
  assert.deepEqual(reconciled, [RESYNC_KEY]);
  assert.equal(await drift(), 0);

  // A change the plan never heard of (a lost event): the resync finds it and repairs it.
  services.set("default/db", service("db", "192.168.1.11", "10.96.1.77"));
  queued.set(RESYNC_KEY, 0);
  await run();
  assert.equal(await drift(), 2);
  assert.equal((await configs.get("iprc-10-96-1-51"))?.spec.state, "absent");
  assert.equal((await configs.get("iprc-10-96-1-77"))?.spec.state, "present");
});

Deno.test("ConfigReconciler: a resync plans in slices, and a Service changed between them is in its plan", async () => {
  let pauses = 0;
  const changeDuring: (() => void)[] = [];
  const t = setup({
    resyncSlice: 2,
    resyncPause: () => {
      pauses++;
      changeDuring.shift()?.();
      return Promise.resolve();
    },
  });
  t.ipRule("dc-a", "192.168.1.0/24", 100);
  t.ipRule("dc-b", "192.168.2.0/24", 200);
  for (let i = 0; i < 10; i++) {
    t.setService(service(`svc-${i}`, `192.168.1.${10 + i}`, `10.96.1.${50 + i}`));
  }
  await t.start();
  // 10 Services in slices of 2, three phases (match, decide, tally): the events get a turn.
  assert.ok(pauses >= 12, `${pauses} pauses`);
  // In the next resync, svc-9 (planned in the last slice of the first phase) moves to dc-b
  // while the first slice is planned, and svc-0 (in the first slice) after it.
  changeDuring.push(
    () => t.setService(service("svc-9", "192.168.2.9", "10.96.1.59")),
    () => t.setService(service("svc-0", "192.168.2.1", "10.96.1.50")),
  );
  t.queued.set(RESYNC_KEY, t.clock.now);
  await t.run();
  assert.deepEqual(t.reconciler.checkPlan(), []);
  assert.equal(await t.drift(), 0);
  assert.equal((await t.configs.get("iprc-10-96-1-59"))?.spec.table, 200);
  assert.equal((await t.configs.get("iprc-10-96-1-50"))?.spec.table, 200);
  assert.equal((await t.ipRules.get("dc-b"))?.status?.matchedServices, 2);
});

Deno.test("ConfigReconciler: an absent config is deleted when its grace period ends", async () => {
  const { configs, setService, deleteService, ipRule, start, run, advance } = setup();
  ipRule("dc-a", "192.168.1.0/24", 100);
  setService(service("web", "192.168.1.10", "10.96.1.50"));
  await start();
  deleteService("default/web");
  await run();
  assert.equal((await configs.get("iprc-10-96-1-50"))?.spec.state, "absent");
  advance(GRACE - 1000);
  await run();
  assert.ok(await configs.get("iprc-10-96-1-50"));
  advance(1000);
  await run();
  assert.equal(await configs.get("iprc-10-96-1-50"), undefined);
});

Deno.test("ConfigReconciler: a write on a stale cache (409) requeues without an error", async () => {
  const { configs, setService, ipRule, sync, logs, errors, caches, start, run, queued } = setup();
  ipRule("dc-a", "192.168.1.0/24", 100);
  setService(service("web", "192.168.1.10", "10.96.1.50"));
  await start();
  sync();
  // Someone else writes the config; our cache has not seen it when the IPRule changes.
  const current = configs.raw("iprc-10-96-1-50")!;
  configs.put({ ...current, metadata: { ...current.metadata as object, annotations: { x: "y" } } });
  ipRule("dc-a", "192.168.1.0/24", 200);
  // The IPRule's status (its new generation) is written; the config update is not.
  assert.equal(await run(), 1);
  assert.deepEqual(errors(), []);
  assert.ok(logs.some((l) => l.level === "debug" && l.msg === "Write skipped, cache stale"));
  assert.equal(queued.get("ipruleconfig/iprc-10-96-1-50"), NOW + STALE_REQUEUE_MS);
  assert.equal((await configs.get("iprc-10-96-1-50"))?.spec.table, 100);
  // The watch catches up, which queues the config again: the write goes through.
  caches.configs.sync();
  await run();
  assert.equal((await configs.get("iprc-10-96-1-50"))?.spec.table, 200);
});

Deno.test("ConfigReconciler: a write that fails otherwise fails the reconcile", async () => {
  const { configs, setService, ipRule, errors, start } = setup();
  ipRule("dc-a", "192.168.1.0/24", 100);
  setService(service("web", "192.168.1.10", "10.96.1.50"));
  configs.fail = () => new ApiError("POST", "/ipruleconfigs", 503, "ServiceUnavailable", "busy");
  await assert.rejects(start(), /Write of "iprc-10-96-1-50" failed/);
  assert.equal(errors()[0]?.msg, "Write failed");
});

Deno.test("ConfigReconciler: IPRule status moves Ready → Conflict → no Conflict, each written once", async () => {
  const { ipRules, setService, ipRule, caches, events, start, run } = setup();
  ipRule("wide", "10.50.0.0/16", 500);
  setService(service("web", "10.50.1.9", "10.96.1.50"));
  await start();
  assert.equal(condition(await ipRules.get("wide"), "Conflict")?.status, "False");

  ipRule("narrow", "10.50.1.0/24", 501);
  await run();
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
  caches.ipRules.sync();
  await run();
  assert.equal(statusWrites(), written);

  assert.ok(events.some((e) => e.reason === "Conflict" && e.regarding.name === "wide"));

  ipRules.objects.delete("narrow");
  caches.ipRules.sync();
  await run();
  assert.equal(condition(await ipRules.get("wide"), "Conflict")?.status, "False");
});

Deno.test("ConfigReconciler withdraws every config while the Agent is deleted, holds them absent without one", async () => {
  const { configs, agents, setService, ipRule, caches, start, run } = setup();
  ipRule("dc-a", "192.168.1.0/24", 100);
  setService(service("web", "192.168.1.10", "10.96.1.50"));
  await start();
  const state = async () => (await configs.get("iprc-10-96-1-50"))?.spec.state;
  assert.equal(await state(), "present");

  await agents.delete("agent"); // held by a foreground deletion: being deleted
  caches.agents.sync();
  await run();
  assert.equal(await state(), "absent");

  agents.objects.clear(); // its DaemonSet gone: the Agent is gone
  caches.agents.sync();
  await run();
  assert.equal(await state(), "absent", "held absent while no Agent exists");

  agents.put({ metadata: { name: "agent", namespace: NS } });
  caches.agents.sync();
  await run();
  assert.equal(await state(), "present");
});

Deno.test("ConfigReconciler writes nothing once leadership is lost", async () => {
  const leading = new AbortController();
  leading.abort();
  const { configs, setService, ipRule, start } = setup({ leading: leading.signal });
  ipRule("dc-a", "192.168.1.0/24", 100);
  setService(service("web", "192.168.1.10", "10.96.1.50"));
  assert.equal(await start(), 0);
  assert.deepEqual(configs.writes, []);
});

/** An IPRuleConfig as the original operator wrote it: its label, spec hash, acks and owner. */
function originalConfig(name: string, spec: Record<string, unknown>) {
  return {
    metadata: {
      name,
      labels: { "managed-by": "ip-rule-operator", keep: "me" },
      annotations: {
        "iprule.operator.brtrm.dev/spec-hash": "abc",
        "cleanup.iprule.agent.brtrm.dev/node-1": "done",
        note: "kept",
      },
      ownerReferences: [{
        apiVersion: "api.operator.brtrm.dev/v1alpha1",
        kind: "IPRule",
        name: "dc-a",
        uid: "u-dc-a",
        controller: true,
        blockOwnerDeletion: true,
      }],
    },
    spec,
  };
}

/** Asserts that a config carries our label and none of the original's marks. */
function assertAdopted(raw: Record<string, unknown> | undefined, name: string) {
  const meta = raw?.metadata as Record<string, unknown>;
  assert.deepEqual(meta.labels, {
    keep: "me",
    "app.kubernetes.io/managed-by": "ip-rule-operator",
  }, name);
  assert.deepEqual(meta.annotations, { note: "kept" }, name);
  assert.equal(meta.ownerReferences, undefined, name);
}

Deno.test("ConfigReconciler adopts the original operator's configs and IPRules with spec.cidr", async () => {
  const { configs, ipRules, caches, setService, events, start, run } = setup();
  ipRules.put({
    metadata: { name: "dc-a", generation: 1 },
    spec: { cidr: "192.168.1.0/24", table: 100 },
  });
  caches.ipRules.sync();
  const spec = (serviceIP: string, state: string) => ({
    serviceIP,
    table: 100,
    priority: 1000,
    state,
  });
  configs.put(originalConfig("iprc-10-96-1-50", spec("10.96.1.50", "present")));
  configs.put(originalConfig("iprc-10-96-1-99", spec("10.96.1.99", "absent")));
  caches.configs.sync();
  setService(service("web", "192.168.1.10", "10.96.1.50"));
  await start();

  assert.deepEqual([...configs.objects.keys()].sort(), ["iprc-10-96-1-50", "iprc-10-96-1-99"]);
  for (const name of ["iprc-10-96-1-50", "iprc-10-96-1-99"]) assertAdopted(configs.raw(name), name);
  const present = await configs.get("iprc-10-96-1-50");
  assert.deepEqual(present?.spec, WEB_IN_DC_A);
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
  caches.ipRules.sync();
  await run();
  assert.equal(condition(await ipRules.get("dc-a"), "Deprecated"), undefined);
});

Deno.test("ConfigReconciler adopts an original config that appears after the start, its spec right or not", async () => {
  const { configs, caches, setService, ipRule, start, run, reconciled } = setup();
  ipRule("dc-a", "192.168.1.0/24", 100);
  setService(service("web", "192.168.1.10", "10.96.1.50"));
  await start();
  const ours = (await configs.get("iprc-10-96-1-50"))!;
  reconciled.length = 0;
  // Restored from a backup of the original's objects: the spec is what we want, the marks are
  // the original's; and a config of a source no Service claims.
  configs.put(originalConfig("iprc-10-96-1-50", { ...ours.spec }));
  configs.put(originalConfig("iprc-10-96-1-98", {
    serviceIP: "10.96.1.98",
    table: 100,
    priority: 1000,
    state: "present",
  }));
  caches.configs.sync();
  assert.equal(await run(), 2);
  assert.deepEqual(reconciled.sort(), [
    "ipruleconfig/iprc-10-96-1-50",
    "ipruleconfig/iprc-10-96-1-98",
  ]);
  for (const name of ["iprc-10-96-1-50", "iprc-10-96-1-98"]) assertAdopted(configs.raw(name), name);
  assert.deepEqual((await configs.get("iprc-10-96-1-50"))?.spec, ours.spec);
  assert.equal((await configs.get("iprc-10-96-1-98"))?.spec.state, "absent");
});
