import assert from "node:assert/strict";
import { MemoryObjects } from "../../tests/support/memory_api.ts";
import {
  ORIGINAL_MANAGER,
  originalDaemonSet as originalObject,
} from "../../tests/support/original.ts";
import {
  narrowAgent,
  narrowDaemonSet,
  narrowIPRuleConfig,
  narrowIPRuleNodeState,
} from "../api/narrow.ts";
import type { DaemonSetInfo, NodeInfo } from "../api/types.ts";
import { Logger } from "../log.ts";
import { AgentTally } from "./agent_tally.ts";
import { AgentReconciler } from "./agent_reconciler.ts";
import { DAEMONSET_NAME, renderDaemonSet } from "./daemonset.ts";
import type { UserEvent } from "./events.ts";
import {
  HAND_OVER_RETRY_MS,
  HANDED_OVER_ANNOTATION,
  handOverPatch,
  handOverStep,
  originalMarks,
} from "./handover.ts";

const NS = "ops";
const NOW = Date.parse("2026-01-01T00:00:00Z");
// deno-lint-ignore no-explicit-any
type Json = any;

/** The original's DaemonSet as the API server returns it: its manager owns it, the status. */
function originalDaemonSet(extra: { annotations?: Record<string, string> } = {}): Json {
  const ds = originalObject(NS, "u-agent");
  ds.metadata.annotations = {
    "deprecated.daemonset.template.generation": "1",
    ...extra.annotations,
  };
  ds.metadata.managedFields = [
    { manager: ORIGINAL_MANAGER, operation: "Update", fieldsV1: { "f:spec": {} } },
    { manager: "kube-controller-manager", operation: "Update", subresource: "status" },
  ];
  ds.status = { desiredNumberScheduled: 1, numberReady: 1 };
  return ds;
}

const info = (raw: Json): DaemonSetInfo => narrowDaemonSet(raw);

Deno.test("originalMarks() finds the original's label and template annotation, nothing on ours", () => {
  assert.deepEqual(originalMarks(info(originalDaemonSet())), [
    "label managed-by=ip-rule-operator",
    "template annotation iprule.operator.brtrm.dev/template-hash",
  ]);
  const agent = narrowAgent({ metadata: { name: "agent", namespace: NS, uid: "u" }, spec: {} });
  assert.deepEqual(originalMarks(info(renderDaemonSet(agent, { defaultImage: "img" }))), []);
});

Deno.test("handOverStep() hands over once, then waits while the marks come back", () => {
  assert.deepEqual(handOverStep(undefined, NOW), { action: "none" });
  assert.deepEqual(handOverStep(info(originalDaemonSet()), NOW), {
    action: "handOver",
    managers: ["manager"],
  });
  const since = new Date(NOW - 60_000).toISOString();
  const back = info(originalDaemonSet({ annotations: { [HANDED_OVER_ANNOTATION]: since } }));
  assert.deepEqual(handOverStep(back, NOW), {
    action: "wait",
    managers: ["manager"],
    since,
    retryMs: HAND_OVER_RETRY_MS - 60_000,
  });
  assert.equal(handOverStep(back, NOW + HAND_OVER_RETRY_MS).action, "handOver");
});

Deno.test("handOverPatch() replaces metadata and spec, keeps our managed fields and the status writers'", () => {
  const agent = narrowAgent({ metadata: { name: "agent", namespace: NS, uid: "u" }, spec: {} });
  const desired: Json = renderDaemonSet(agent, { defaultImage: "img" });
  const live = info({
    ...originalDaemonSet(),
    metadata: { ...originalDaemonSet().metadata, resourceVersion: "7" },
  });
  const ours = [
    { manager: "ip-rule-operator", operation: "Apply", fieldsV1: { "f:spec": {} } },
    { manager: "manager", operation: "Update" },
    { manager: "kube-controller-manager", operation: "Update", subresource: "status" },
  ];
  const ops: Json[] = handOverPatch(desired, live, ours, "2026-01-01T00:00:00Z");
  const byPath = new Map(ops.map((op) => [op.path, op.value]));
  assert.equal(byPath.get("/metadata/resourceVersion"), "7");
  assert.deepEqual(byPath.get("/metadata/labels"), desired.metadata.labels);
  assert.deepEqual(byPath.get("/metadata/annotations"), {
    ...desired.metadata.annotations,
    [HANDED_OVER_ANNOTATION]: "2026-01-01T00:00:00Z",
    "deprecated.daemonset.template.generation": "1",
  });
  assert.deepEqual(byPath.get("/metadata/ownerReferences"), desired.metadata.ownerReferences);
  assert.deepEqual(byPath.get("/spec"), desired.spec);
  assert.deepEqual(byPath.get("/metadata/managedFields"), [ours[0], ours[2]]);
  assert.ok(ops.every((op) => op.op === "add"));
});

/** An Agent reconciler over memory objects whose DaemonSet the original operator wrote. */
function takeOver(now = NOW) {
  const agents = new MemoryObjects("agents", narrowAgent, { namespace: NS });
  const daemonSets = new MemoryObjects("daemonsets", narrowDaemonSet, { namespace: NS });
  const nodeStates = new MemoryObjects("iprulenodestates", narrowIPRuleNodeState);
  const configs = new MemoryObjects("ipruleconfigs", narrowIPRuleConfig, {
    statusSubresource: false,
  });
  agents.put({
    metadata: { name: "agent", namespace: NS, uid: "u-agent" },
    spec: {},
  });
  daemonSets.put(originalDaemonSet());
  const caches = {
    agents: agents.cache(),
    daemonSets: daemonSets.cache(),
    nodes: { synced: true, store: new Map<string, NodeInfo>() },
    nodeStates: nodeStates.cache(),
    configs: configs.cache(),
  };
  const events: UserEvent[] = [];
  const reconciler = new AgentReconciler({ agents, daemonSets, nodeStates }, caches, {
    namespace: NS,
    agentImage: "example.test/agent:1",
    tally: new AgentTally(),
    statusIntervalMs: 0,
    log: new Logger({ sink: () => {} }),
    now: () => now,
    events: {
      record: (e) => {
        events.push(...e);
        return Promise.resolve();
      },
    },
  });
  const sync = () => Object.values(caches).forEach((c) => "sync" in c && c.sync());
  return { reconciler, agents, daemonSets, events, sync };
}

Deno.test("AgentReconciler hands the original's DaemonSet over in one patch and reports it", async () => {
  const { reconciler, agents, daemonSets, events, sync } = takeOver();
  assert.equal(await reconciler.reconcile("r1"), undefined);
  const written = daemonSets.writes.filter((w) => !w.dryRun).map((w) => w.verb);
  assert.deepEqual(written, ["jsonPatch"], "one write: one template change");
  const ds: Json = daemonSets.raw(DAEMONSET_NAME);
  const agent = (await agents.get("agent"))!;
  const desired: Json = renderDaemonSet(agent, { defaultImage: "example.test/agent:1" });
  assert.deepEqual(ds.spec, desired.spec);
  assert.deepEqual(ds.metadata.labels, desired.metadata.labels);
  assert.equal(ds.metadata.annotations[HANDED_OVER_ANNOTATION], "2026-01-01T00:00:00Z");
  assert.deepEqual(ds.metadata.managedFields.map((e: Json) => e.manager), [
    "kube-controller-manager",
    "ip-rule-operator",
  ]);
  assert.deepEqual(events.map((e) => [e.type, e.reason, e.regarding.kind]), [
    ["Normal", "DaemonSetHandedOver", "Agent"],
  ]);
  assert.match(events[0]!.note, /field manager\(s\) "manager".*label managed-by/);

  // Ours now: the next reconcile writes nothing to it.
  sync();
  const before = daemonSets.writes.length;
  await reconciler.reconcile("r2");
  assert.equal(daemonSets.writes.length, before);
});

Deno.test("AgentReconciler does not fight the original's controller: it waits and says so", async () => {
  const { reconciler, daemonSets, events, sync } = takeOver();
  await reconciler.reconcile("r1");
  // The original's controller writes its template again.
  const back = originalDaemonSet({
    annotations: { [HANDED_OVER_ANNOTATION]: "2026-01-01T00:00:00Z" },
  });
  daemonSets.put(back);
  sync();
  const writes = daemonSets.writes.length;
  const delay = await reconciler.reconcile("r2");
  assert.equal(delay, HAND_OVER_RETRY_MS);
  assert.equal(daemonSets.writes.length, writes, "no write at all within the retry time");
  assert.deepEqual(events.map((e) => e.reason), ["DaemonSetHandedOver", "DaemonSetTakenBack"]);
  assert.match(events[1]!.note, /its controller still runs; stop it/);
});
