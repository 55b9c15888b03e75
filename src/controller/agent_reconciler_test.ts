import assert from "node:assert/strict";
import { MemoryObjects } from "../../tests/support/memory_api.ts";
import {
  narrowAgent,
  narrowDaemonSet,
  narrowIPRuleConfig,
  narrowIPRuleNodeState,
} from "../api/narrow.ts";
import {
  type Agent,
  type Condition,
  type IPRuleNodeStateStatus,
  MANAGED_BY,
  MANAGED_BY_LABEL,
  type NodeInfo,
} from "../api/types.ts";
import { AGENT_FINALIZER, DRAIN_POLL_MS } from "../drain.ts";
import { ApiError } from "../k8s/client.ts";
import { STALE_REQUEUE_MS, type WritableCache } from "../k8s/objects.ts";
import { Logger } from "../log.ts";
import { AgentReconciler } from "./agent_reconciler.ts";
import { AgentTally } from "./agent_tally.ts";
import { DAEMONSET_NAME } from "./daemonset.ts";

const NS = "ops";
const LINUX = { "kubernetes.io/os": "linux" };
const TIMEOUT = 120_000;

/**
 * An Agent reconciler over memory objects, with its parts at hand; its tally hears of the
 * caches' changes as the manager wires it. No status pacing unless `statusIntervalMs` says.
 */
function setup(options: { now?: () => number; statusIntervalMs?: number } = {}) {
  const agents = new MemoryObjects("agents", narrowAgent, { namespace: NS });
  const daemonSets = new MemoryObjects("daemonsets", narrowDaemonSet, { namespace: NS });
  const nodeStates = new MemoryObjects("iprulenodestates", narrowIPRuleNodeState);
  const configs = new MemoryObjects("ipruleconfigs", narrowIPRuleConfig, {
    statusSubresource: false,
  });
  const tally = new AgentTally();
  const nodes = new Map<string, NodeInfo>();
  /** A Node changed, as the nodes informer reports it. */
  const setNode = (info: NodeInfo) => {
    nodes.set(info.name, info);
    tally.node(info.name, info);
  };
  agents.put({ metadata: { name: "agent", namespace: NS }, spec: {} });
  const caches = {
    agents: agents.cache(),
    daemonSets: daemonSets.cache(),
    nodes: { synced: true, store: nodes },
    nodeStates: nodeStates.cache((key, state) => tally.nodeState(key, state)),
    configs: configs.cache((key, config) => tally.config(key, config)),
  };
  const logs: Record<string, unknown>[] = [];
  const reconciler = new AgentReconciler({ agents, daemonSets, nodeStates }, caches, {
    namespace: NS,
    agentImage: "example.test/agent:1",
    drainTimeoutMs: TIMEOUT,
    tally,
    statusIntervalMs: 0,
    log: new Logger({ level: "debug", sink: (line) => logs.push(JSON.parse(line)) }),
    ...options,
  });
  const sync = () => Object.values(caches).forEach((c) => "sync" in c && c.sync());
  const node = (name: string, status?: IPRuleNodeStateStatus, labels = LINUX) => {
    setNode({ name, labels });
    nodeStates.put({ metadata: { name }, ...(status ? { status } : {}) });
  };
  const agent = async () => await agents.get("agent");
  const ready = async () => (await agent())?.status?.conditions?.find((c) => c.type === "Ready");
  const errors = () => logs.filter((l) => l.level === "error");
  const writes = () => agents.writes.length + daemonSets.writes.length + nodeStates.writes.length;
  return {
    reconciler,
    tally,
    setNode,
    agents,
    daemonSets,
    nodeStates,
    configs,
    caches,
    logs,
    sync,
    node,
    agent,
    ready,
    errors,
    writes,
  };
}

function converged(desiredRules: number): IPRuleNodeStateStatus {
  return {
    desiredRules,
    appliedRules: desiredRules,
    conditions: [{
      type: "Converged",
      status: "True",
      reason: "RulesApplied",
      message: "",
      lastTransitionTime: "2026-01-01T00:00:00Z",
    }],
  };
}

const summary = (c: Condition | undefined) => c && [c.status, c.reason, c.message];

/** An installed Agent (finalizer, DaemonSet) with one converged node, caches synced. */
async function installed(now?: () => number) {
  const parts = setup(now ? { now } : {});
  parts.node("n1", converged(1));
  parts.sync();
  await parts.reconciler.reconcile("install");
  parts.sync();
  assert.deepEqual(summary(await parts.ready()), [
    "True",
    "Converged",
    "All 1 selected node(s) converged",
  ]);
  return parts;
}

Deno.test("AgentReconciler adds its finalizer, creates the DaemonSet and reports Ready as nodes converge", async () => {
  const { reconciler, agent, daemonSets, ready, node, sync } = setup();
  assert.equal(await reconciler.reconcile("r1"), undefined);
  assert.deepEqual((await agent())?.metadata.finalizers, [AGENT_FINALIZER]);
  const ds = daemonSets.raw(DAEMONSET_NAME) as {
    spec: { template: { spec: { containers: { image: string }[] } } };
  };
  assert.equal(ds.spec.template.spec.containers[0]?.image, "example.test/agent:1");
  assert.deepEqual(summary(await ready()), [
    "False",
    "NoNodes",
    "No node matches the Agent's node selector",
  ]);

  const transitions: [IPRuleNodeStateStatus, string[]][] = [
    [{ desiredRules: 1, appliedRules: 0 }, [
      "False",
      "NotConverged",
      "0/1 node(s) converged; waiting for n1",
    ]],
    [converged(1), ["True", "Converged", "All 1 selected node(s) converged"]],
  ];
  for (const [status, expected] of transitions) {
    node("n1", status);
    sync();
    await reconciler.reconcile("r");
    assert.deepEqual(summary(await ready()), expected);
  }
});

Deno.test("AgentReconciler: its own writes' echoes change nothing", async () => {
  const { reconciler, writes, sync, node } = setup();
  node("n1", converged(1));
  sync();
  await reconciler.reconcile("r1");
  const before = writes();
  // Finalizer, DaemonSet and status are in the caches already: nothing to write again...
  assert.equal(await reconciler.reconcile("r2"), undefined);
  assert.equal(writes(), before);
  // ...nor once the watches deliver them.
  sync();
  await reconciler.reconcile("r3");
  assert.equal(writes(), before);
});

Deno.test("AgentReconciler: a stale finalizer add (409) requeues without an error", async () => {
  const { reconciler, agents, caches, agent, errors, logs } = setup();
  // Someone else changes the Agent after our cache saw it.
  agents.put({
    metadata: { name: "agent", namespace: NS },
    spec: { image: "example.test/agent:2" },
  });
  assert.equal(await reconciler.reconcile("r1"), STALE_REQUEUE_MS);
  assert.deepEqual(errors(), []);
  assert.ok(logs.some((l) => l.level === "debug" && l.msg === "Write skipped, cache stale"));
  assert.equal((await agent())?.metadata.finalizers, undefined);
  caches.agents.sync();
  assert.equal(await reconciler.reconcile("r2"), undefined);
  assert.deepEqual((await agent())?.metadata.finalizers, [AGENT_FINALIZER]);
});

Deno.test("AgentReconciler marks nodes outside the selection drained, and clears the mark", async () => {
  const { reconciler, nodeStates, node, setNode, sync, writes } = setup();
  node("in", converged(1));
  node("out", converged(1), { "kubernetes.io/os": "windows" });
  sync();
  await reconciler.reconcile("r1");
  const drain = async (name: string) => (await nodeStates.get(name))?.spec?.drain;
  assert.deepEqual([await drain("in"), await drain("out")], [undefined, true]);
  const before = writes();
  await reconciler.reconcile("r2");
  assert.equal(writes(), before, "the mark is in the cache: not written again");

  setNode({ name: "out", labels: LINUX }); // labelled linux again
  await reconciler.reconcile("r3");
  assert.equal(await drain("out"), false);
});

Deno.test("AgentReconciler: a DaemonSet the API server refuses is reported; drain marks go on", async () => {
  const { reconciler, daemonSets, nodeStates, node, sync, ready } = setup();
  node("out", converged(1), { "kubernetes.io/os": "windows" });
  sync();
  daemonSets.fail = (w) =>
    w.verb === "apply"
      ? new ApiError("PATCH", "/daemonsets/iprule-agent", 422, "Invalid", "tolerations[0]: Invalid")
      : undefined;
  assert.equal(await reconciler.reconcile("r1"), undefined);
  const condition = await ready();
  assert.deepEqual([condition?.status, condition?.reason], ["False", "InvalidSpec"]);
  assert.match(condition?.message ?? "", /refused: .*tolerations\[0\]: Invalid/);
  assert.equal((await nodeStates.get("out"))?.spec?.drain, true);
});

Deno.test("AgentReconciler drains on deletion, then deletes the DaemonSet and removes its finalizer", async () => {
  const { reconciler, agents, daemonSets, configs, nodeStates, caches, agent, errors, logs } =
    await installed();
  configs.put({
    metadata: { name: "iprc-10-96-1-50", labels: { [MANAGED_BY_LABEL]: MANAGED_BY } },
    spec: { serviceIP: "10.96.1.50", table: 100, priority: 1000, state: "present" },
  });
  await agents.delete("agent");
  caches.agents.sync();
  caches.configs.sync();
  assert.equal(await reconciler.reconcile("d1"), DRAIN_POLL_MS);
  const draining = () =>
    (agents.raw("agent")?.status as Agent["status"])?.conditions?.find((c) =>
      c.type === "Draining"
    );
  assert.deepEqual(summary(draining()), ["True", "Draining", "Marking 1 IPRuleConfig(s) absent"]);

  // The configs are absent; the node still applies its rule.
  configs.put({
    ...configs.raw("iprc-10-96-1-50")!,
    spec: { serviceIP: "10.96.1.50", table: 100, priority: 1000, state: "absent" },
  });
  caches.configs.sync();
  assert.equal(await reconciler.reconcile("d2"), DRAIN_POLL_MS);
  assert.deepEqual(summary(draining()), [
    "True",
    "Draining",
    "Waiting for 1 node(s) to remove their rules: n1",
  ]);

  // The node removed its rules. Meanwhile someone else wrote the Agent, so the cached
  // resourceVersion is stale: the finalizer's removal needs none.
  nodeStates.put({ metadata: { name: "n1" }, status: { desiredRules: 0, appliedRules: 0 } });
  caches.nodeStates.sync();
  const current = agents.raw("agent")!;
  agents.put({ ...current, metadata: { ...current.metadata as object, labels: { team: "net" } } });
  assert.equal(await reconciler.reconcile("d3"), undefined);
  assert.equal(await agent(), undefined, "the Agent is gone");
  assert.equal(daemonSets.raw(DAEMONSET_NAME), undefined);
  const removal = agents.writes.at(-1);
  assert.deepEqual(removal, {
    verb: "jsonPatch",
    name: "agent",
    body: [
      { op: "test", path: "/metadata/finalizers/0", value: AGENT_FINALIZER },
      { op: "remove", path: "/metadata/finalizers/0" },
    ],
  });
  assert.deepEqual(errors(), []);
  assert.ok(logs.some((l) => l.msg === "Agent drained; DaemonSet deleted and finalizer removed"));
  caches.agents.sync();
  assert.equal(await reconciler.reconcile("d4"), undefined, "no Agent: nothing to do");
});

Deno.test("AgentReconciler: finalizers changed since cached make the removal requeue, not fail", async () => {
  const { reconciler, agents, nodeStates, caches, agent, errors, logs } = await installed();
  nodeStates.put({ metadata: { name: "n1" }, status: { desiredRules: 0, appliedRules: 0 } });
  const current = agents.raw("agent")!;
  const meta = current.metadata as { finalizers: string[] };
  agents.put({
    ...current,
    metadata: { ...meta, finalizers: ["other.example/keep", ...meta.finalizers] },
  });
  await agents.delete("agent");
  caches.agents.sync();
  caches.nodeStates.sync();
  // Another controller drops its finalizer after our cache saw the list: ours moved to index 0.
  const deleting = agents.raw("agent")!;
  agents.put({
    ...deleting,
    metadata: { ...deleting.metadata as object, finalizers: [AGENT_FINALIZER] },
  });
  assert.equal(await reconciler.reconcile("d1"), STALE_REQUEUE_MS);
  assert.ok(logs.some((l) => l.level === "debug" && l.msg === "Write skipped, cache stale"));
  assert.deepEqual(errors(), []);
  assert.deepEqual((await agent())?.metadata.finalizers, [AGENT_FINALIZER], "still held");
  caches.agents.sync();
  assert.equal(await reconciler.reconcile("d2"), undefined);
  assert.equal(await agent(), undefined);
});

Deno.test("AgentReconciler: a drain past its timeout says DrainTimedOut and finishes anyway", async () => {
  let offset = 0;
  const { reconciler, agents, nodeStates, caches, agent, logs } = await installed(() =>
    Date.now() + offset
  );
  nodeStates.put({ metadata: { name: "n1" }, status: { desiredRules: 0, appliedRules: 3 } });
  caches.nodeStates.sync();
  await agents.delete("agent");
  caches.agents.sync();
  assert.equal(await reconciler.reconcile("d1"), DRAIN_POLL_MS);
  offset = TIMEOUT;
  let condition: Condition | undefined;
  agents.onWrite = (w) => {
    if (w.subresource === "status") {
      condition = (agents.raw("agent")?.status as Agent["status"])?.conditions?.find((c) =>
        c.type === "Draining"
      );
    }
  };
  assert.equal(await reconciler.reconcile("d2"), undefined);
  assert.deepEqual(summary(condition), [
    "False",
    "DrainTimedOut",
    `1 node(s) did not report their rules removed within ${TIMEOUT} ms: n1`,
  ]);
  assert.equal(await agent(), undefined);
  assert.ok(logs.some((l) => l.level === "warn" && l.msg === "Drain timed out; nodes keep rules"));
});

Deno.test("AgentReconciler paces its status: counts wait for the interval, Ready flips after the floor", async () => {
  let clock = Date.parse("2026-01-01T00:00:00Z");
  const { reconciler, node, sync, agent, agents } = setup({
    now: () => clock,
    statusIntervalMs: 10_000,
  });
  const statusWrites = () => agents.writes.filter((w) => w.subresource === "status").length;
  node("n1", converged(1));
  node("n2", { desiredRules: 1, appliedRules: 0 });
  node("n3", { desiredRules: 1, appliedRules: 0 });
  sync();
  assert.equal(await reconciler.reconcile("r1"), undefined, "the first status goes at once");
  assert.equal((await agent())?.status?.convergedNodes, 1);
  assert.equal(statusWrites(), 1);

  clock += 100;
  node("n2", converged(1));
  sync();
  const wait = await reconciler.reconcile("r2");
  assert.ok(wait !== undefined && wait >= 9000 - 100 && wait <= 11_000 - 100, `${wait}`);
  assert.equal(statusWrites(), 1, "2/3 converged waits for the window's end");
  clock += wait;
  assert.equal(await reconciler.reconcile("r3"), undefined);
  assert.equal((await agent())?.status?.convergedNodes, 2, "the trailing status is written");
  assert.equal(statusWrites(), 2);

  clock += 200;
  node("n3", converged(1));
  sync();
  // Every node converged: Ready flips, written one floor (1 s) after the last write.
  assert.equal(await reconciler.reconcile("r4"), 800);
  assert.equal(statusWrites(), 2);
  clock += 800;
  assert.equal(await reconciler.reconcile("r5"), undefined);
  assert.deepEqual(
    (await agent())?.status?.conditions?.find((c) => c.type === "Ready")?.status,
    "True",
  );
  assert.equal(statusWrites(), 3);
});

/** A cache whose store counts the walks over it (values, keys, entries, iteration, forEach). */
function countingWalks<T>(
  cache: { synced: boolean; store: Map<string, T>; learn?(o: T): void; forget?(k: string): void },
): { cache: WritableCache<T>; counter: { walks: number } } {
  const counter = { walks: 0 };
  const walks = new Set<PropertyKey>(["values", "keys", "entries", "forEach", Symbol.iterator]);
  const store = new Proxy(cache.store, {
    get(target, prop) {
      if (walks.has(prop)) counter.walks++;
      const value = Reflect.get(target, prop, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  return {
    cache: {
      get synced() {
        return cache.synced;
      },
      store,
      learn: (o) => cache.learn?.(o),
      forget: (k) => cache.forget?.(k),
    },
    counter,
  };
}

Deno.test("AgentReconciler: a reconcile walks no list of nodes, node states or configs", async () => {
  const parts = setup();
  for (let i = 0; i < 50; i++) parts.node(`n${i}`, converged(1));
  parts.configs.put({
    metadata: { name: "iprc-10-96-1-50", labels: { [MANAGED_BY_LABEL]: MANAGED_BY } },
    spec: { serviceIP: "10.96.1.50", table: 100, priority: 1000, state: "present" },
  });
  parts.sync();
  const nodes = countingWalks(parts.caches.nodes);
  const nodeStates = countingWalks(parts.caches.nodeStates);
  const configs = countingWalks(parts.caches.configs);
  const reconciler = new AgentReconciler(
    { agents: parts.agents, daemonSets: parts.daemonSets, nodeStates: parts.nodeStates },
    {
      ...parts.caches,
      nodes: nodes.cache,
      nodeStates: nodeStates.cache,
      configs: configs.cache,
    },
    {
      namespace: NS,
      agentImage: "example.test/agent:1",
      drainTimeoutMs: TIMEOUT,
      tally: parts.tally,
      statusIntervalMs: 0,
      log: new Logger({ sink: () => {} }),
    },
  );
  await reconciler.reconcile("install");
  parts.sync();
  parts.node("n7", { desiredRules: 1, appliedRules: 0 });
  parts.sync();
  await reconciler.reconcile("n7 changed");
  assert.match(
    (await parts.ready())?.message ?? "",
    /49\/50 node\(s\) converged; waiting for n7/,
  );
  await parts.agents.delete("agent");
  parts.sync();
  await reconciler.reconcile("drain");
  assert.deepEqual(
    [nodes.counter.walks, nodeStates.counter.walks, configs.counter.walks],
    [0, 0, 0],
  );
});
