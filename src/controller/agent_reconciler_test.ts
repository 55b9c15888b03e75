import assert from "node:assert/strict";
import { MemoryObjects } from "../../tests/support/memory_api.ts";
import {
  narrowAgent,
  narrowDaemonSet,
  narrowIPRuleConfig,
  narrowIPRuleNodeState,
} from "../api/narrow.ts";
import {
  type Condition,
  type IPRuleNodeStateStatus,
  MANAGED_BY,
  MANAGED_BY_LABEL,
  type NodeInfo,
} from "../api/types.ts";
import { LEGACY_AGENT_FINALIZER } from "../drain.ts";
import { ApiError } from "../k8s/client.ts";
import { STALE_REQUEUE_MS, type WritableCache } from "../k8s/objects.ts";
import { Logger } from "../log.ts";
import { AgentReconciler } from "./agent_reconciler.ts";
import { AgentTally } from "./agent_tally.ts";
import { DAEMONSET_NAME } from "./daemonset.ts";

const NS = "ops";
const LINUX = { "kubernetes.io/os": "linux" };

/**
 * An Agent reconciler over memory objects, with its parts at hand; its tally hears of the
 * caches' changes as the manager wires it. No status pacing unless `statusIntervalMs` says.
 */
function setup(
  options: { now?: () => number; statusIntervalMs?: number; finalizers?: string[] } = {},
) {
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
  agents.put({
    metadata: {
      name: "agent",
      namespace: NS,
      ...(options.finalizers ? { finalizers: options.finalizers } : {}),
    },
    spec: {},
  });
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
    tally,
    statusIntervalMs: options.statusIntervalMs ?? 0,
    log: new Logger({ level: "debug", sink: (line) => logs.push(JSON.parse(line)) }),
    ...(options.now ? { now: options.now } : {}),
  });
  const sync = () => Object.values(caches).forEach((c) => "sync" in c && c.sync());
  const node = (
    name: string,
    status?: IPRuleNodeStateStatus,
    labels: Record<string, string> = LINUX,
  ) => {
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

Deno.test("AgentReconciler creates the DaemonSet, adds no finalizer and reports Ready as nodes converge", async () => {
  const { reconciler, agent, daemonSets, ready, node, sync } = setup();
  assert.equal(await reconciler.reconcile("r1"), undefined);
  assert.equal((await agent())?.metadata.finalizers, undefined);
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
  // DaemonSet and status are in the caches already: nothing to write again...
  assert.equal(await reconciler.reconcile("r2"), undefined);
  assert.equal(writes(), before);
  // ...nor once the watches deliver them.
  sync();
  await reconciler.reconcile("r3");
  assert.equal(writes(), before);
});

Deno.test("AgentReconciler removes an earlier version's finalizer from a live Agent, then deploys", async () => {
  const { reconciler, agents, daemonSets, agent, errors, logs } = setup({
    finalizers: ["other.example/keep", LEGACY_AGENT_FINALIZER],
  });
  assert.equal(await reconciler.reconcile("r1"), undefined);
  assert.deepEqual((await agent())?.metadata.finalizers, ["other.example/keep"]);
  assert.deepEqual(agents.writes[0], {
    verb: "jsonPatch",
    name: "agent",
    body: [
      { op: "test", path: "/metadata/finalizers/1", value: LEGACY_AGENT_FINALIZER },
      { op: "remove", path: "/metadata/finalizers/1" },
    ],
  });
  assert.ok(daemonSets.raw(DAEMONSET_NAME), "deployed as usual");
  assert.ok(logs.some((l) => l.msg === "Finalizer of an earlier version removed"));
  assert.deepEqual(errors(), []);
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

Deno.test("AgentReconciler marks a node leaving the selection before it changes the DaemonSet", async () => {
  const { reconciler, agents, daemonSets, nodeStates, caches, node, sync } = setup();
  node("stays", converged(1), { ...LINUX, pool: "a" });
  node("leaves", converged(1), { ...LINUX, pool: "b" });
  sync();
  await reconciler.reconcile("r1");
  sync();
  const order: string[] = [];
  nodeStates.onWrite = (w) => order.push(`${w.verb} IPRuleNodeState ${w.name}`);
  daemonSets.onWrite = (w) => order.push(`${w.verb} DaemonSet ${w.name}`);
  // The Agent now selects pool a only: the DaemonSet will stop the agent on "leaves".
  const current = agents.raw("agent")!;
  agents.put({ ...current, spec: { nodeSelector: { pool: "a" } } });
  caches.agents.sync();
  await reconciler.reconcile("r2");
  assert.deepEqual(order, [
    "mergePatch IPRuleNodeState leaves",
    `apply DaemonSet ${DAEMONSET_NAME}`,
  ]);
  assert.equal((await nodeStates.get("leaves"))?.spec?.drain, true);
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

Deno.test("AgentReconciler leaves an Agent being deleted alone: no DaemonSet write, no drain of its own", async () => {
  const { reconciler, agents, daemonSets, configs, nodeStates, caches, node, sync, errors } =
    setup();
  node("n1", converged(1));
  sync();
  await reconciler.reconcile("install");
  sync();
  const before = daemonSets.writes.length + nodeStates.writes.length + configs.writes.length;
  // A foreground deletion: the garbage collector holds the Agent until its DaemonSet is gone.
  const current = agents.raw("agent")!;
  agents.put({
    ...current,
    metadata: { ...current.metadata as object, finalizers: ["foregroundDeletion"] },
  });
  await agents.delete("agent");
  caches.agents.sync();
  assert.equal(await reconciler.reconcile("d1"), undefined);
  assert.equal(
    daemonSets.writes.length + nodeStates.writes.length + configs.writes.length,
    before,
    "the DaemonSet is the garbage collector's, the drain the agents'",
  );
  assert.ok(daemonSets.raw(DAEMONSET_NAME));
  assert.deepEqual(errors(), []);
});

Deno.test("AgentReconciler releases a deleting Agent stuck on an earlier version's finalizer", async () => {
  const { reconciler, agents, caches, agent, errors, logs } = setup({
    finalizers: [LEGACY_AGENT_FINALIZER],
  });
  await agents.delete("agent");
  caches.agents.sync();
  assert.equal(await reconciler.reconcile("d1"), undefined);
  assert.equal(await agent(), undefined, "nothing holds it any more");
  assert.ok(
    logs.some((l) =>
      l.msg ===
        "Finalizer of an earlier version removed; the agents remove their rules as they stop"
    ),
  );
  assert.deepEqual(errors(), []);
});

Deno.test("AgentReconciler: finalizers changed since cached make the removal requeue, not fail", async () => {
  const { reconciler, agents, caches, agent, errors, logs } = setup({
    finalizers: ["other.example/keep", LEGACY_AGENT_FINALIZER],
  });
  await agents.delete("agent");
  caches.agents.sync();
  // Another controller drops its finalizer after our cache saw the list: ours moved to index 0.
  const deleting = agents.raw("agent")!;
  agents.put({
    ...deleting,
    metadata: { ...deleting.metadata as object, finalizers: [LEGACY_AGENT_FINALIZER] },
  });
  assert.equal(await reconciler.reconcile("d1"), STALE_REQUEUE_MS);
  assert.ok(logs.some((l) => l.level === "debug" && l.msg === "Write skipped, cache stale"));
  assert.deepEqual(errors(), []);
  assert.deepEqual((await agent())?.metadata.finalizers, [LEGACY_AGENT_FINALIZER], "still held");
  caches.agents.sync();
  assert.equal(await reconciler.reconcile("d2"), undefined);
  assert.equal(await agent(), undefined);
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
  // One jittered interval (10 s ± 10 %) after the change, which is now.
  assert.ok(wait !== undefined && wait >= 9000 && wait < 11_000, `${wait}`);
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
