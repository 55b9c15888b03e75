/**
 * The agent end to end: a real kube-apiserver + etcd on a bridge, three "nodes" (network
 * namespaces), agents running inside them with the agent's RBAC identity and the compiled
 * agent's permission flags. Node 0 resyncs every 50 ms (many reconciles), node 1 every 10
 * minutes (repairs can only come from the kernel subscription), node 2 runs no agent (for
 * --once and --dry-run). Assertions read `ip -d rule show` in the namespaces and the objects as
 * the API server returns them. The topology is shared by the file's scenarios; each scenario
 * uses its own addresses (10.96.<n>.x), starts the agents it finds stopped, and removes its
 * configs, foreign rules and links at its end, waiting until the nodes converged again, so any
 * scenario runs alone (`deno test -A tests/e2e/agent_test.ts --filter "<name>"`).
 */
import assert from "node:assert/strict";
import { RuleSocket } from "../../ffi/mod.ts";
import { KubeClient } from "../../src/k8s/client.ts";
import { RESOURCES } from "../../src/k8s/resources.ts";
import type { IPRuleNodeState } from "../../src/api/types.ts";
import { VERSION } from "../../src/version.ts";
import { runLimited } from "../../src/k8s/run_limited.ts";
import { eventually, type ExecutableProcess } from "../support/process.ts";
import {
  killAtExit,
  type Scenario as SharedScenario,
  scenarioTest,
  sharedPart,
} from "../support/shared.ts";
import {
  AGENT_HEALTH_PORT,
  AGENT_PORT,
  startTopology,
  type TopologyNode,
} from "../support/topology.ts";

const PROTO = 201;
const MANAGED = { "app.kubernetes.io/managed-by": "ip-rule-operator" };

/** `ip -d rule show` and `ip -6 -d rule show` of a node, as one text. */
async function kernel(node: TopologyNode): Promise<string> {
  return (await node.ns.ip(["-d", "rule", "show"])) +
    (await node.ns.ip(["-6", "-d", "rule", "show"]));
}

/** The lines of rules with the agent's protocol. */
function owned(text: string): string[] {
  return text.split("\n").filter((l) => l.endsWith(` proto ${PROTO}`));
}

/** The lines of every other rule. */
function foreign(text: string): string[] {
  return text.split("\n").filter((l) => l !== "" && !l.endsWith(` proto ${PROTO}`));
}

/** The `ip -d rule show` line of an owned rule. */
function line(priority: number, src: string, table: number): string {
  return `${priority}:\tfrom ${src} lookup ${table} proto ${PROTO}`;
}

async function has(node: TopologyNode, ...lines: string[]): Promise<boolean> {
  const text = owned(await kernel(node));
  return lines.every((l) => text.includes(l));
}

async function lacks(node: TopologyNode, ...lines: string[]): Promise<boolean> {
  const text = owned(await kernel(node));
  return lines.every((l) => !text.includes(l));
}

/** Whether the node's own rules have `now` and no longer `before`. */
async function replaced(node: TopologyNode, now: string, before: string): Promise<boolean> {
  return await has(node, now) && await lacks(node, before);
}

/** Waits until `check` holds on each of `nodes` in turn. */
async function onEach(
  nodes: readonly TopologyNode[],
  what: string,
  check: (node: TopologyNode) => Promise<boolean>,
  timeoutMs?: number,
): Promise<void> {
  for (const node of nodes) {
    await eventually(`${what} on ${node.name}`, () => check(node), timeoutMs);
  }
}

async function metric(node: TopologyNode, name: string): Promise<number> {
  const res = await fetch(`http://${node.address}:${AGENT_PORT}/metrics`);
  let sum = 0;
  for (const l of (await res.text()).split("\n")) {
    if (l.startsWith(name)) sum += Number(l.split(" ").pop());
  }
  return sum;
}

async function readyz(node: TopologyNode): Promise<{ status: number; text: string }> {
  const res = await fetch(`http://${node.address}:${AGENT_HEALTH_PORT}/readyz`);
  return { status: res.status, text: await res.text() };
}

/** A child process capturing `ip monitor rule` in a node until stopped. */
function monitor(node: TopologyNode): { stop(): Promise<string> } {
  const child = new Deno.Command("ip", {
    args: ["-n", node.ns.name, "monitor", "rule"],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  let text = "";
  const reading = (async () => {
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) text += chunk;
  })();
  return {
    async stop() {
      child.kill("SIGTERM");
      await child.status;
      await reading;
      return text;
    },
  };
}

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The agents' flags on node 0 (resync every 50 ms) and node 1 (every 10 minutes). */
const AGENT_ARGS = [["--resync=50ms", "--log-level=debug"], ["--resync=10m", "--log-level=debug"]];

/** The file's topology and its agents (node 0 and node 1), started by the first scenario. */
const world = sharedPart(async () => {
  const topo = await startTopology({ nodes: 3 });
  const agents: (ExecutableProcess | undefined)[] = [undefined, undefined];
  for (const i of [0, 1]) killAtExit(() => agents[i]?.pid);
  return { topo, agents, exited: new WeakSet<ExecutableProcess>(), starts: 0 };
});

/** A scenario's view of the topology, its helpers, and what it must undo at its end. */
class Scenario implements SharedScenario {
  readonly topo: Awaited<ReturnType<typeof world>>["topo"];
  readonly n0: TopologyNode;
  readonly n1: TopologyNode;
  readonly n2: TopologyNode;
  /** The agents of node 0 and node 1 (shared by the file: a scenario may replace them). */
  readonly agents: (ExecutableProcess | undefined)[];
  admin: KubeClient;
  readonly #world: Awaited<ReturnType<typeof world>>;
  readonly #configs = new Set<string>();
  readonly #undo: (() => Promise<unknown>)[] = [];

  constructor(w: Awaited<ReturnType<typeof world>>, admin: KubeClient) {
    this.#world = w;
    this.topo = w.topo;
    [this.n0, this.n1, this.n2] = [w.topo.node(0), w.topo.node(1), w.topo.node(2)];
    this.agents = w.agents;
    this.admin = admin;
  }

  /** Starts the agent of node `i` (0 or 1), replacing the one the file had. */
  async startAgent(i: 0 | 1, logName?: string): Promise<ExecutableProcess> {
    const node = i === 0 ? this.n0 : this.n1;
    const name = logName ?? `agent-${node.name}-${++this.#world.starts}.log`;
    const proc = await this.topo.startAgent(node, AGENT_ARGS[i]!, { logName: name });
    proc.status.then(() => this.#world.exited.add(proc));
    this.agents[i] = proc;
    return proc;
  }

  /** Starts the agents of node 0 and node 1 that are not running, and waits until they are ready. */
  async prepare(): Promise<void> {
    for (const i of [0, 1] as const) {
      const proc = this.agents[i];
      if (proc !== undefined && !this.#world.exited.has(proc)) continue;
      await this.startAgent(i);
      const node = i === 0 ? this.n0 : this.n1;
      await eventually(
        `agent of ${node.name} ready`,
        async () => (await readyz(node).catch(() => ({ status: 0 }))).status === 200,
      );
    }
  }

  /** Runs `undo` at the scenario's end (last registered first). */
  defer(undo: () => Promise<unknown>): void {
    this.#undo.push(undo);
  }

  /** A new admin client (after an API server restart). */
  async reconnect(): Promise<void> {
    this.admin.close();
    this.admin = await KubeClient.connect({ kubeconfig: this.topo.cp.kubeconfig("admin") });
  }

  config = (
    name: string,
    serviceIP: string,
    table: number,
    priority: number,
    options: { state?: "present" | "absent"; labels?: Record<string, string> } = {},
  ) => {
    this.#configs.add(name);
    return this.admin.create(RESOURCES.ipRuleConfigs, {
      metadata: { name, labels: options.labels ?? MANAGED },
      spec: { serviceIP, table, priority, state: options.state ?? "present" },
    });
  };
  patchSpec = (name: string, spec: Record<string, unknown>) =>
    this.admin.mergePatch(RESOURCES.ipRuleConfigs, name, { spec });
  remove = (name: string) => this.admin.delete(RESOURCES.ipRuleConfigs, name);
  nodeState = async (node: TopologyNode) =>
    await this.admin.get(RESOURCES.ipRuleNodeStates, node.name) as IPRuleNodeState | undefined;
  presentConfigs = async () => {
    const list = await this.admin.request(
      "GET",
      "/apis/api.operator.brtrm.dev/v1alpha1/ipruleconfigs",
    );
    return (list.items as { spec: { state: string } }[]).filter((c) => c.spec.state === "present")
      .length;
  };
  /** Waits until the node's IPRuleNodeState reports every present config applied. */
  converged = (node: TopologyNode) =>
    eventually(`${node.name} converged`, async () => {
      const want = await this.presentConfigs();
      const s = (await this.nodeState(node))?.status;
      const ok = s?.desiredRules === want && s.appliedRules === want && s.failedCount === 0 &&
        s.conditions?.some((c) => c.type === "Converged" && c.status === "True");
      return ok ? s : undefined;
    });

  /** Undoes what the scenario did, then waits until node 0 and node 1 converged again. */
  async cleanup(): Promise<void> {
    for (const undo of this.#undo.reverse()) await undo();
    await runLimited([...this.#configs], 32, async (name) => void await this.remove(name));
    await this.prepare();
    await this.converged(this.n0);
    await this.converged(this.n1);
    this.admin.close();
  }

  /** The tails of the agents' logs, for a failed scenario. */
  async printLogs(): Promise<void> {
    for (const agent of this.agents) {
      if (agent === undefined) continue;
      console.error(
        `--- ${agent.logFile} (tail)\n${(await agent.log()).split("\n").slice(-40).join("\n")}`,
      );
    }
  }
}

/** One scenario on the shared topology, with node 0's and node 1's agents running. */
function scenario(name: string, body: (s: Scenario) => Promise<void>): void {
  scenarioTest(name, async () => {
    const w = await world();
    return new Scenario(w, await KubeClient.connect({ kubeconfig: w.topo.cp.kubeconfig("admin") }));
  }, body);
}

/**
 * Node 2 (no agent) for --dry-run and --once: two desired configs, a stray rule of ours and a
 * foreign one in its kernel; removed at the scenario's end with its IPRuleNodeState.
 */
async function onNode2(s: Scenario): Promise<void> {
  const { n2 } = s;
  await s.config("iprc-10-96-1-1", "10.96.1.1", 101, 1001);
  await s.config("iprc-fd00-96-1-0-0-0-0-1", "fd00:96:1::1", 101, 1001);
  s.defer(async () => {
    for (const family of ["-4", "-6"]) {
      await n2.ns.run(["ip", family, "rule", "flush", "protocol", String(PROTO)]);
    }
    await n2.ns.run([
      "ip",
      "rule",
      "del",
      "from",
      "10.96.9.8",
      "lookup",
      "109",
      "priority",
      "1009",
    ]);
    await s.admin.delete(RESOURCES.ipRuleNodeStates, n2.name);
  });
  const rule = "from 10.96.9.9 lookup 109 priority 1009";
  await n2.ns.ip(["rule", "add", ...rule.split(" "), "proto", String(PROTO)]);
  await n2.ns.ip(["rule", "add", ...rule.replace("9.9", "9.8").split(" ")]);
}

scenario("converges IPv4 and IPv6 configs on every node", async (s) => {
  const { n0, n1, admin, config, nodeState, converged } = s;
  await config("iprc-10-96-1-1", "10.96.1.1", 101, 1001);
  await config("iprc-fd00-96-1-0-0-0-0-1", "fd00:96:1::1", 101, 1001);
  for (const node of [n0, n1]) {
    await eventually(
      `rules on ${node.name}`,
      () => has(node, line(1001, "10.96.1.1", 101), line(1001, "fd00:96:1::1", 101)),
    );
    const status = await converged(node);
    assert.equal(status.desiredRules, 2);
    assert.equal(status.agentVersion, VERSION);
    assert.equal(status.protocol, PROTO);
    assert.ok(status.lastConvergedTime);
    assert.deepEqual(status.failedRules, []);
    const state = await nodeState(node);
    const node0 = await admin.get(RESOURCES.nodes, node.name);
    const meta = state?.metadata as { ownerReferences?: unknown } | undefined;
    assert.deepEqual(meta?.ownerReferences, [{
      apiVersion: "v1",
      kind: "Node",
      name: node.name,
      uid: (node0?.metadata as { uid: string }).uid,
    }]);
    await eventually(`${node.name} ready`, async () => (await readyz(node)).status === 200);
  }
  // The rule sits exactly once per family on each node.
  const text = await kernel(n0);
  assert.equal(owned(text).filter((l) => l.includes("from 10.96.1.1 ")).length, 1);
});

scenario("a config set to absent has its rule removed", async (s) => {
  const { n0, n1, config, patchSpec, remove } = s;
  await config("iprc-10-96-2-1", "10.96.2.1", 102, 1002);
  await config("iprc-10-96-2-2", "10.96.2.2", 102, 1002);
  await eventually("rule added", () => has(n0, line(1002, "10.96.2.1", 102)));
  await patchSpec("iprc-10-96-2-1", { state: "absent" });
  await onEach([n0, n1], "rule removed", (node) => lacks(node, line(1002, "10.96.2.1", 102)));
  assert.ok(await has(n0, line(1002, "10.96.2.2", 102)));
  await remove("iprc-10-96-2-1");
});

scenario("a config deleted outright has its rule removed", async (s) => {
  const { n0, n1, config, remove } = s;
  await config("iprc-10-96-3-1", "10.96.3.1", 103, 1003);
  await eventually("rule added", () => has(n1, line(1003, "10.96.3.1", 103)));
  await remove("iprc-10-96-3-1");
  await onEach([n0, n1], "rule removed", (node) => lacks(node, line(1003, "10.96.3.1", 103)));
});

scenario("a changed table or priority replaces the old rule", async (s) => {
  const { n0, n1, config, patchSpec, remove } = s;
  const first = line(1004, "10.96.4.1", 104);
  const newTable = line(1004, "10.96.4.1", 204);
  const newPriority = line(1404, "10.96.4.1", 204);
  await config("iprc-10-96-4-1", "10.96.4.1", 104, 1004);
  await eventually("rule added", () => has(n0, first));
  await patchSpec("iprc-10-96-4-1", { table: 204 });
  await onEach([n0, n1], "table changed", (node) => replaced(node, newTable, first));
  await patchSpec("iprc-10-96-4-1", { priority: 1404 });
  await onEach([n0, n1], "priority changed", (node) => replaced(node, newPriority, newTable));
  for (const node of [n0, n1]) {
    assert.equal(owned(await kernel(node)).filter((l) => l.includes("10.96.4.1")).length, 1);
  }
  await remove("iprc-10-96-4-1");
  await eventually("rule removed", () => lacks(n0, newPriority));
});

scenario(
  "a foreign rule with the same source and table is left alone and not duplicated",
  async (s) => {
    const { n0, n1, config, remove, converged } = s;
    // Foreign rules: one with no protocol, one marked as another owner's.
    const unmarked = ["from", "10.96.5.1", "lookup", "105", "priority", "1005"];
    const marked = ["from", "10.96.5.2", "lookup", "105", "priority", "1005", "proto", "static"];
    s.defer(() => n1.ns.run(["ip", "rule", "del", ...marked]));
    await n1.ns.ip(["rule", "add", ...unmarked]);
    await n1.ns.ip(["rule", "add", ...marked]);
    const before = foreign(await kernel(n1));
    await config("iprc-10-96-5-1", "10.96.5.1", 105, 1005);
    await config("iprc-10-96-5-2", "10.96.5.2", 105, 1005);
    await converged(n1);
    await eventually(
      "n0 has its own rules",
      () => has(n0, line(1005, "10.96.5.1", 105), line(1005, "10.96.5.2", 105)),
    );
    const text = await kernel(n1);
    assert.deepEqual(owned(text).filter((l) => l.includes("10.96.5.")), []);
    assert.deepEqual(foreign(text), before);
    await remove("iprc-10-96-5-1");
    await remove("iprc-10-96-5-2");
    await converged(n1);
    await eventually(
      "n0 removed its rules",
      () => lacks(n0, line(1005, "10.96.5.1", 105), line(1005, "10.96.5.2", 105)),
    );
    assert.deepEqual(foreign(await kernel(n1)), before);
    // The foreign rule that satisfied the config is deleted: the agent adds its own at once
    // (n1 resyncs every 10 minutes, so this is the kernel subscription at work).
    await config("iprc-10-96-5-1", "10.96.5.1", 105, 1005);
    await converged(n1);
    await n1.ns.ip(["rule", "del", ...unmarked]);
    await eventually("own rule added", () => has(n1, line(1005, "10.96.5.1", 105)));
    await remove("iprc-10-96-5-1");
    await eventually("own rule removed", () => lacks(n1, line(1005, "10.96.5.1", 105)));
  },
);

scenario("an owned rule deleted with ip rule del is put back", async (s) => {
  const { n1, config } = s;
  await config("iprc-10-96-6-1", "10.96.6.1", 106, 1006);
  await eventually("rule added", () => has(n1, line(1006, "10.96.6.1", 106)));
  const repairs = await metric(n1, "iprule_agent_drift_repairs_total");
  const kernelRuns = await metric(n1, 'iprule_agent_reconciles_total{trigger="kernel"');
  await n1.ns.ip(["rule", "del", "from", "10.96.6.1", "lookup", "106", "priority", "1006"]);
  // n1 resyncs every 10 minutes: only the kernel subscription can bring the rule back.
  await eventually(
    "drift repaired",
    async () =>
      await metric(n1, "iprule_agent_drift_repairs_total") > repairs &&
      await has(n1, line(1006, "10.96.6.1", 106)),
  );
  assert.ok(await metric(n1, 'iprule_agent_reconciles_total{trigger="kernel"') > kernelRuns);
});

scenario("every owned rule removed (ip rule flush protocol 201) is put back", async (s) => {
  const { n1, config, remove, converged } = s;
  await config("iprc-10-96-6-1", "10.96.6.1", 106, 1006);
  await config("iprc-10-96-6-2", "10.96.6.2", 106, 1006);
  await config("iprc-fd00-96-6-0-0-0-0-1", "fd00:96:6::1", 106, 1006);
  await converged(n1);
  const before = owned(await kernel(n1)).sort();
  assert.ok(before.length >= 3);
  const repairs = await metric(n1, "iprule_agent_drift_repairs_total");
  await n1.ns.ip(["rule", "flush", "protocol", String(PROTO)]);
  await n1.ns.ip(["-6", "rule", "flush", "protocol", String(PROTO)]);
  await eventually(
    "every rule back",
    async () => JSON.stringify(owned(await kernel(n1)).sort()) === JSON.stringify(before),
  );
  assert.ok(await metric(n1, "iprule_agent_drift_repairs_total") >= repairs + before.length);
  await remove("iprc-10-96-6-1");
});

scenario(
  "stray own rules the kernel confuses with desired ones never take a desired rule away",
  async (s) => {
    const { n1, config, remove, converged } = s;
    await config("iprc-10-96-9-1", "10.96.9.1", 109, 1009);
    await eventually("rule added", () => has(n1, line(1009, "10.96.9.1", 109)));
    const rulesAt = async (priority: number) =>
      owned(await kernel(n1)).filter((l) => l.startsWith(`${priority}:`));
    // The own rules at `priority` become exactly `want`, and are still that 300 ms later.
    const settles = async (what: string, priority: number, want: string[]) => {
      await eventually(
        what,
        async () => JSON.stringify(await rulesAt(priority)) === JSON.stringify(want),
      );
      await delay(300);
      assert.deepEqual(await rulesAt(priority), want);
    };
    // A `from all` rule with our protocol, table and priority, added after the desired one
    // by a tool that does not ask for NLM_F_EXCL: the kernel's delete of it ignores the
    // source and removes the desired rule, listed first. n1 resyncs every 10 minutes, so
    // only the agent's own reaction can put things right.
    {
      using socket = n1.ns.enter(() => RuleSocket.open());
      const [added] = await socket.addRules([
        { family: 4, src: "0.0.0.0", srcLen: 0, table: 109, priority: 1009, protocol: PROTO },
      ], { exclusive: false });
      assert.equal(added?.error, undefined);
    }
    await settles("only the desired rule left", 1009, [line(1009, "10.96.9.1", 109)]);

    // An own rule with a destination blocks the add of the plain one (EEXIST: the kernel's
    // duplicate check ignores a destination the new rule lacks) until it is gone. One
    // `ip -batch` adds it and deletes the plain rule before the agent can react.
    await config("iprc-10-96-9-2", "10.96.9.2", 109, 1010);
    await eventually("second rule added", () => has(n1, line(1010, "10.96.9.2", 109)));
    await n1.ns.ip(["-batch", "-"], {
      stdin: `rule add from 10.96.9.2 to 8.8.8.8 lookup 109 priority 1010 proto ${PROTO}\n` +
        "rule del from 10.96.9.2 lookup 109 priority 1010\n",
    });
    await settles("plain rule back, stray one gone", 1010, [line(1010, "10.96.9.2", 109)]);
    await converged(n1);
    await remove("iprc-10-96-9-1");
    await remove("iprc-10-96-9-2");
    await eventually("rules removed", async () => (await rulesAt(1009)).length === 0);
  },
);

scenario("an IPRuleConfig the node refuses is reported, the others applied", async (s) => {
  const { n0, config, remove, nodeState, converged } = s;
  // Created by an admin, bypassing the controller: valid for the API, but 0.0.0.0 as a
  // source would capture the node's own unspecified-source traffic (DHCP) into table 107.
  await config("bad-unspecified", "0.0.0.0", 107, 1007, { labels: {} });
  await config("iprc-10-96-7-1", "10.96.7.1", 107, 1007);
  await eventually("good rule added", () => has(n0, line(1007, "10.96.7.1", 107)));
  const status = await eventually("failure reported", async () => {
    const s = (await nodeState(n0))?.status;
    return s?.failedCount === 1 ? s : undefined;
  });
  assert.equal(status.failedRules?.length, 1);
  assert.equal(status.failedRules?.[0]?.rule, "from 0.0.0.0 lookup 107 priority 1007");
  assert.match(status.failedRules?.[0]?.error ?? "", /bad-unspecified.*unspecified/);
  assert.equal(status.appliedRules, (status.desiredRules ?? 0) - 1);
  const condition = status.conditions?.find((c) => c.type === "Converged");
  assert.equal(condition?.status, "False");
  assert.equal(condition?.reason, "RulesFailed");
  assert.equal((await readyz(n0)).status, 503);
  assert.ok(!owned(await kernel(n0)).some((l) => l.includes("0.0.0.0")));
  await remove("bad-unspecified");
  const fixed = await converged(n0);
  assert.deepEqual(fixed.failedRules, []);
  await remove("iprc-10-96-7-1");
  await eventually("rule removed", () => lacks(n0, line(1007, "10.96.7.1", 107)));
});

scenario(
  "foreign rules of every shape are byte-identical after 100 reconciles",
  async (s) => {
    const { n0, config, patchSpec, remove, nodeState, converged } = s;
    await n0.ns.ip(["link", "add", "dv0", "type", "veth", "peer", "name", "dv1"]);
    s.defer(() => n0.ns.run(["ip", "link", "del", "dv0"]));
    const v4 = [
      "from 10.70.0.0/16 lookup 300 priority 500",
      "from 10.71.0.1 to 192.0.2.0/24 lookup 301 priority 1000",
      "fwmark 0x10/0xff lookup 302 priority 1000",
      "iif lo lookup 303 priority 1001",
      "oif dv0 lookup 304 priority 1002",
      "tos 0x10 lookup 305 priority 1003",
      "not from 10.72.0.0/16 lookup 306 priority 1004",
      "from 10.73.0.1 goto 1100 priority 1005",
      "from 10.74.0.1 blackhole priority 1006",
      "from 10.74.0.2 unreachable priority 1007",
      "from 10.74.0.3 prohibit priority 1008",
      "from 10.74.0.4 nop priority 1009",
      "from 10.75.0.1 ipproto tcp dport 80 lookup 307 priority 1010",
      "from 10.75.0.2 ipproto udp sport 1000-2000 lookup 308 priority 1011",
      "from 10.76.0.1 uidrange 1000-2000 lookup 309 priority 1012",
      "from 10.77.0.1 lookup 310 suppress_prefixlength 0 priority 1013",
      "from 10.78.0.1 realms 3/4 lookup 311 priority 1014",
      "from 10.79.0.1 lookup 312 priority 1015 proto static",
      "from 10.79.0.2 lookup 313 priority 1016 proto 99",
      "from 10.79.0.3 lookup 313 priority 1016 proto 202",
      "from all lookup 314 priority 1017",
      "l3mdev priority 1018",
      "from 10.80.0.1 lookup main priority 1019",
      "from 10.81.0.1 tun_id 5 lookup 316 priority 1021",
      "from 10.82.0.1 lookup 317 suppress_ifgroup 3 priority 1022",
      "from 10.96.8.1 lookup 108 priority 1008 fwmark 1",
    ];
    const v6 = [
      "from fd00:70::/32 lookup 300 priority 500",
      "from fd00:71::1 to 2001:db8::/32 lookup 301 priority 1000",
      "fwmark 0x10 lookup 302 priority 1001",
      "iif lo lookup 303 priority 1002",
      "from fd00:74::1 blackhole priority 1003",
      "from fd00:75::1 ipproto tcp dport 443 lookup 307 priority 1004",
      "from fd00:79::1 lookup 312 priority 1005 proto static",
      "not from fd00:72::/32 lookup 306 priority 1006",
      "tos 0x10 lookup 305 priority 1007",
    ];
    s.defer(async () => {
      const del = (rules: string[]) => rules.map((r) => `rule del ${r}\n`).join("");
      await n0.ns.run(["ip", "-force", "-batch", "-"], { stdin: del(v4) });
      await n0.ns.run(["ip", "-6", "-force", "-batch", "-"], { stdin: del(v6) });
    });
    await n0.ns.ip(["-batch", "-"], { stdin: v4.map((r) => `rule add ${r}\n`).join("") });
    await n0.ns.ip(["-6", "-batch", "-"], { stdin: v6.map((r) => `rule add ${r}\n`).join("") });
    const before = foreign(await kernel(n0));
    assert.equal(before.length, v4.length + v6.length + 5);

    // Nothing changes: no status write however many resyncs run.
    await converged(n0);
    const state = await nodeState(n0);
    const start = await metric(n0, "iprule_agent_reconciles_total");
    await eventually(
      "40 idle reconciles",
      async () => await metric(n0, "iprule_agent_reconciles_total") >= start + 40,
    );
    assert.equal(
      (await nodeState(n0))?.metadata.resourceVersion,
      state?.metadata.resourceVersion,
    );

    // Churn next to the foreign rules: same priorities, same sources.
    const churn = [
      ["iprc-10-96-8-1", "10.96.8.1", 108, 1008],
      ["iprc-10-75-0-1", "10.75.0.1", 307, 1010],
      ["iprc-10-79-0-1", "10.79.0.1", 312, 1015],
      ["iprc-fd00-75-0-0-0-0-0-1", "fd00:75::1", 307, 1004],
    ] as const;
    for (const [name, ip, table, priority] of churn) await config(name, ip, table, priority);
    for (let i = 0; i < 4; i++) {
      for (const [name] of churn) {
        await patchSpec(name, { state: i % 2 ? "present" : "absent" });
      }
      await delay(100);
    }
    await eventually(
      "100 reconciles",
      async () => await metric(n0, "iprule_agent_reconciles_total") >= start + 100,
    );
    await converged(n0);
    const text = await kernel(n0);
    // 10.79.0.1 has a static identical rule: it satisfies the config, nothing is added.
    assert.ok(owned(text).includes(line(1008, "10.96.8.1", 108)));
    assert.ok(owned(text).includes(line(1010, "10.75.0.1", 307)));
    assert.ok(!owned(text).some((l) => l.includes("10.79.0.1")));
    assert.deepEqual(foreign(text), before);
    for (const [name] of churn) await remove(name);
    await converged(n0);
    assert.deepEqual(foreign(await kernel(n0)), before);
  },
);

scenario("1,000 configs converge and are removed", async (s) => {
  const { n0, n1, config, remove, converged } = s;
  const indices = Array.from({ length: 1000 }, (_, i) => i);
  const ip = (i: number) => `10.97.${Math.floor(i / 250)}.${(i % 250) + 1}`;
  const names = indices.map((i) => `iprc-${ip(i).replaceAll(".", "-")}`);
  assert.equal(new Set(names).size, 1000);
  await runLimited(indices, 32, async (i) => {
    await config(names[i]!, ip(i), 1000 + (i % 7), 2000 + (i % 3));
  });
  for (const node of [n0, n1]) {
    await eventually(
      `1,000 rules on ${node.name}`,
      async () => owned(await kernel(node)).filter((l) => l.includes(" 10.97.")).length === 1000,
      60_000,
    );
    await converged(node);
  }
  await runLimited(indices, 32, async (i) => void await remove(names[i]!));
  await onEach(
    [n0, n1],
    "1,000 rules removed",
    async (node) => owned(await kernel(node)).every((l) => !l.includes(" 10.97.")),
    60_000,
  );
});

scenario("--dry-run prints the plan and changes nothing", async (s) => {
  const { topo, n2, nodeState } = s;
  await onNode2(s);
  const before = await kernel(n2);
  const dry = await topo.startAgent(n2, ["--dry-run"], { logName: "agent-dry-run.log" });
  const status = await dry.status;
  const log = await dry.log();
  await dry.stop();
  assert.equal(status.code, 0, log);
  const lines = log.split("\n");
  assert.ok(
    lines.includes("ip rule del from 10.96.9.9 lookup 109 priority 1009 proto 201"),
    log,
  );
  assert.ok(
    lines.includes("ip rule add from 10.96.1.1 lookup 101 priority 1001 proto 201"),
    log,
  );
  assert.ok(
    lines.includes("ip -6 rule add from fd00:96:1::1 lookup 101 priority 1001 proto 201"),
    log,
  );
  assert.ok(!lines.some((l) => l.includes("10.96.9.8")), log);
  assert.equal(await kernel(n2), before);
  assert.equal(await nodeState(n2), undefined);
});

scenario(
  "--once exits 0 when converged and 1 on a failure or without the API",
  async (s) => {
    const { topo, n2, config, remove, nodeState } = s;
    await onNode2(s);
    const once = async (args: string[], name: string) => {
      const proc = await topo.startAgent(n2, ["--once", ...args], { logName: name });
      const status = await proc.status;
      const log = await proc.log();
      await proc.stop();
      return { code: status.code, log };
    };
    const ok = await once([], "agent-once-1.log");
    assert.equal(ok.code, 0, ok.log);
    assert.ok(await has(n2, line(1001, "10.96.1.1", 101), line(1001, "fd00:96:1::1", 101)));
    assert.ok(await lacks(n2, line(1009, "10.96.9.9", 109)));
    const state = await nodeState(n2);
    assert.equal(
      state?.status?.conditions?.find((c) => c.type === "Converged")?.status,
      "True",
    );

    await config("bad-loopback", "127.0.0.1", 110, 1010, { labels: {} });
    const failing = await once([], "agent-once-2.log");
    assert.equal(failing.code, 1, failing.log);
    await remove("bad-loopback");

    const unreachable = `${topo.cp.dir}/kubeconfig-unreachable.yaml`;
    const port = Deno.listen({ hostname: topo.gateway, port: 0 });
    const closed = (port.addr as Deno.NetAddr).port;
    port.close();
    await Deno.writeTextFile(
      unreachable,
      (await Deno.readTextFile(topo.cp.kubeconfig("agent"))).replace(
        topo.cp.server,
        `https://${topo.gateway}:${closed}`,
      ),
    );
    const before = await kernel(n2);
    const down = await once([`--kubeconfig=${unreachable}`], "agent-once-3.log");
    assert.equal(down.code, 1, down.log);
    assert.match(down.log, /IPRuleConfigs not listed/);
    assert.equal(await kernel(n2), before);
  },
);

scenario(
  "SIGKILL and restart while the kernel is sampled every 10 ms: the owned rules never dip",
  async (s) => {
    const { n0, agents, config, converged } = s;
    for (let i = 0; i < 20; i++) {
      await config(`iprc-10-96-11-${i}`, `10.96.11.${i + 1}`, 111, 1011);
    }
    await converged(n0);
    const expected = owned(await kernel(n0)).length;
    const watch = monitor(n0);
    let events = "";
    // The sampler dumps through the netlink engine: `ip` takes too long for a 10 ms period.
    using socket = n0.ns.enter(() => RuleSocket.open());
    const ownedCount = async () =>
      (await socket.listRules()).filter((r) => r.protocol === PROTO).length;
    let sampling = true;
    const counts: number[] = [];
    const sampler = (async () => {
      while (sampling) {
        counts.push(await ownedCount());
        await delay(10);
      }
    })();
    try {
      await eventually("first samples", () => counts.length >= 10);
      await agents[0]!.stop("SIGKILL");
      await s.startAgent(0, "agent-node-0-restarted.log");
      await eventually(
        "restarted agent ready",
        async () => (await readyz(n0).catch(() => ({ status: 0 }))).status === 200,
      );
      const seen = counts.length;
      await eventually("more samples", () => counts.length >= seen + 50);
    } finally {
      sampling = false;
      await sampler;
      events = await watch.stop();
    }
    assert.ok(counts.length >= 60, `only ${counts.length} samples`);
    assert.equal(Math.min(...counts), expected);
    assert.equal(Math.max(...counts), expected);
    assert.equal(events, "");
    assert.equal(await metric(n0, "iprule_agent_rule_changes_total"), 0);
  },
);

scenario(
  "API server stopped: no rule changes for 30 s, then changes made after converge",
  async (s) => {
    const { topo, n0, n1, agents, config, patchSpec, converged } = s;
    await config("iprc-10-96-12-1", "10.96.12.1", 112, 1012);
    await eventually("rule added", () => has(n0, line(1012, "10.96.12.1", 112)));
    await converged(n1);
    const before = [await kernel(n0), await kernel(n1)];
    const watches = [monitor(n0), monitor(n1)];
    let events: string[] = [];
    await topo.stopApiServer();
    try {
      let notReady = "";
      const end = Date.now() + 30_000;
      while (Date.now() < end) {
        assert.equal(await kernel(n0), before[0]);
        assert.equal(await kernel(n1), before[1]);
        const r = await readyz(n0);
        if (r.status === 503) notReady = r.text;
        await delay(250);
      }
      assert.match(notReady, /API server unreachable, kernel rules kept as they are/);
      assert.match(await agents[0]!.log(), /list\/watch failed; kernel rules kept as they are/);
    } finally {
      events = await Promise.all(watches.map((w) => w.stop()));
      await topo.startApiServer();
    }
    assert.deepEqual(events, ["", ""]);
    await s.reconnect();
    await config("iprc-10-96-12-2", "10.96.12.2", 112, 1012);
    await patchSpec("iprc-10-96-12-1", { state: "absent" });
    await onEach(
      [n0, n1],
      "changes converged",
      (node) => replaced(node, line(1012, "10.96.12.2", 112), line(1012, "10.96.12.1", 112)),
      60_000,
    );
    await eventually("ready again", async () => (await readyz(n0)).status === 200, 60_000);
  },
);

scenario("SIGTERM stops the agent and leaves its rules in place", async (s) => {
  const { n1, agents } = s;
  const before = owned(await kernel(n1));
  const status = await agents[1]!.stop("SIGTERM");
  assert.equal(status.code, 0, await agents[1]!.log());
  assert.deepEqual(owned(await kernel(n1)), before);
  assert.match(await agents[1]!.log(), /Agent stopped; kernel rules left in place/);
});
