/**
 * End to end on the demo's topology: a real control plane, three node namespaces, the
 * controller and one agent per node as processes with their executables' permission flags.
 * Asserts what the kernels of the nodes hold (`ip rule show` in each namespace) and what the
 * API server returns; the machine's own rules are compared before and after. The topology and
 * the controller are shared by the file's scenarios; each scenario finds the Agent installed and
 * an agent running on every node, uses its own IPRule, Services and LB range, and removes them
 * at its end, so any scenario runs alone (`--filter "<name>"`).
 */
import assert from "node:assert/strict";
import { startTopology, type Topology, type TopologyNode } from "../support/topology.ts";
import { eventually, ExecutableProcess, freePort } from "../support/process.ts";
import {
  killAtExit,
  type Scenario as SharedScenario,
  scenarioTest,
  sharedPart,
} from "../support/shared.ts";
import { KubeClient } from "../../src/k8s/client.ts";
import { RESOURCES } from "../../src/k8s/resources.ts";

const NS = "ip-rule-operator-system";
const PROTO = "proto 201";
// deno-lint-ignore no-explicit-any
type Json = any;

async function hostRules(): Promise<string> {
  const run = async (args: string[]) =>
    new TextDecoder().decode(
      (await new Deno.Command("ip", { args, stdout: "piped" }).output()).stdout,
    );
  return (await run(["-d", "rule", "show"])) + (await run(["-6", "-d", "rule", "show"]));
}

/** Our rules in a node, as `ip rule show` prints them (both families). */
async function ourRules(node: TopologyNode): Promise<string[]> {
  const v4 = (await node.ns.run(["ip", "rule", "show"])).stdout;
  const v6 = (await node.ns.run(["ip", "-6", "rule", "show"])).stdout;
  return (v4 + v6).split("\n").filter((l) => l.includes(PROTO)).map((l) => l.trim()).sort();
}

function ruleLine(ip: string, table: number, priority = 1000): string {
  return `${priority}:\tfrom ${ip} lookup ${table} ${PROTO}`;
}

async function everywhere(
  topo: Topology,
  what: string,
  check: (rules: string[], node: TopologyNode) => boolean,
): Promise<void> {
  await eventually(what, async () => {
    for (const node of topo.nodes) if (!check(await ourRules(node), node)) return false;
    return true;
  }, 30_000);
}

/**
 * The file's topology (the machine's rules read before it exists), the controller, and the
 * agents by node name, started by the first scenario.
 */
const world = sharedPart(async () => {
  const before = await hostRules();
  const topo = await startTopology({ nodes: 3, namePrefix: "e2e" });
  const controller = await ExecutableProcess.start("controller", [
    `--kubeconfig=${topo.cp.kubeconfig("controller")}`,
    `--metrics-addr=127.0.0.1:${freePort()}`,
    `--health-addr=127.0.0.1:${freePort()}`,
    "--grace-period=2s",
    "--log-format=json",
  ], { logFile: `${topo.cp.dir}/controller.log` });
  killAtExit(() => controller.pid);
  const agents = new Map<string, ExecutableProcess>();
  for (const node of topo.nodes) killAtExit(() => agents.get(node.name)?.pid);
  return { before, topo, agents, exited: new WeakSet<ExecutableProcess>(), starts: 0 };
});

/** A scenario: the shared world, the admin client, and what to remove at its end. */
class Scenario implements SharedScenario {
  readonly topo: Topology;
  readonly agents: Map<string, ExecutableProcess>;
  readonly admin: KubeClient;
  readonly #world: Awaited<ReturnType<typeof world>>;
  readonly #services = new Set<string>();
  readonly #ipRules = new Set<string>();

  constructor(w: Awaited<ReturnType<typeof world>>, admin: KubeClient) {
    this.#world = w;
    this.topo = w.topo;
    this.agents = w.agents;
    this.admin = admin;
  }

  /** Starts (or restarts) the agent of `node`, deployed by the Agent of NS as in a cluster. */
  async startAgent(node: TopologyNode): Promise<ExecutableProcess> {
    const proc = await this.topo.startAgent(node, [`--namespace=${NS}`], {
      logName: `agent-${node.name}-${++this.#world.starts}.log`,
    });
    proc.status.then(() => this.#world.exited.add(proc));
    this.agents.set(node.name, proc);
    return proc;
  }

  /** The Agent installed (its DaemonSet exists) and an agent running on every node. */
  async prepare(): Promise<void> {
    if ((await this.admin.get(RESOURCES.agents, "agent", NS)) === undefined) {
      await this.admin.create(RESOURCES.agents, {
        metadata: { name: "agent", namespace: NS },
        spec: { nodeSelector: { "kubernetes.io/os": "linux" } },
      }, NS);
    }
    await eventually(
      "DaemonSet",
      () => this.admin.get(RESOURCES.daemonSets, "iprule-agent", NS),
    );
    for (const node of this.topo.nodes) {
      const proc = this.agents.get(node.name);
      if (proc === undefined || this.#world.exited.has(proc)) await this.startAgent(node);
    }
  }

  /** An IPRule of this scenario. */
  async ipRule(name: string, spec: Json): Promise<void> {
    this.#ipRules.add(name);
    await this.admin.create(RESOURCES.ipRules, { metadata: { name }, spec });
  }

  /** A LoadBalancer Service of this scenario with its LB IPs; returns its ClusterIPs. */
  async service(name: string, ingress: string[], dual = false): Promise<string[]> {
    this.#services.add(name);
    const svc: Json = await this.admin.create(RESOURCES.services, {
      metadata: { name, namespace: "default" },
      spec: {
        type: "LoadBalancer",
        allocateLoadBalancerNodePorts: false,
        ports: [{ port: 80 }],
        ...(dual ? { ipFamilyPolicy: "RequireDualStack", ipFamilies: ["IPv4", "IPv6"] } : {}),
      },
    }, "default");
    await this.admin.mergePatch(RESOURCES.services, name, {
      status: { loadBalancer: { ingress: ingress.map((ip) => ({ ip })) } },
    }, { namespace: "default", subresource: "status" });
    return svc.spec.clusterIPs;
  }

  /** Removes the scenario's Services, IPRules and their configs. */
  async cleanup(): Promise<void> {
    for (const name of this.#services) {
      await this.admin.delete(RESOURCES.services, name, { namespace: "default" });
    }
    for (const name of this.#ipRules) await this.admin.delete(RESOURCES.ipRules, name);
    const configs: Json = await this.admin.request(
      "GET",
      "/apis/api.operator.brtrm.dev/v1alpha1/ipruleconfigs",
    );
    for (const c of configs.items) {
      if (this.#ipRules.has(c.spec.ipRule)) {
        await this.admin.delete(RESOURCES.ipRuleConfigs, c.metadata.name);
      }
    }
    this.admin.close();
  }
}

/** One scenario on the shared world, with the Agent installed and every node's agent running. */
function scenario(name: string, body: (s: Scenario) => Promise<void>): void {
  scenarioTest(name, async () => {
    const w = await world();
    return new Scenario(w, await KubeClient.connect({ kubeconfig: w.topo.cp.kubeconfig("admin") }));
  }, body);
}

scenario(
  "the seed workflow: IPRule, LB IP, config, rules on every node, Service gone, rules gone",
  async (s) => {
    const { admin, topo } = s;
    await s.ipRule("datacenter-a", { cidrs: ["10.0.0.0/24", "fd00:10::/64"], table: 100 });
    const [v4, v6] = await s.service("web", ["10.0.0.10", "fd00:10::10"], true);
    const want = [ruleLine(v4!, 100), ruleLine(v6!, 100)].sort();
    await everywhere(
      topo,
      "web's rules on every node",
      (rules) => want.every((w) => rules.includes(w)),
    );
    const config: Json = await admin.get(
      RESOURCES.ipRuleConfigs,
      `iprc-${v4!.replaceAll(".", "-")}`,
    );
    assert.equal(config.spec.state, "present");
    await eventually("every node's IPRuleNodeState converged", async () => {
      const states: Json = await admin.request(
        "GET",
        "/apis/api.operator.brtrm.dev/v1alpha1/iprulenodestates",
      );
      return JSON.stringify(
        states.items.filter((s: Json) =>
          s.status?.conditions?.some((c: Json) => c.type === "Converged" && c.status === "True")
        ).map((s: Json) => s.metadata.name).sort(),
      ) === JSON.stringify(["e2e-0", "e2e-1", "e2e-2"]);
    });

    await admin.delete(RESOURCES.services, "web", { namespace: "default" });
    await eventually(
      "config absent",
      async () =>
        ((await admin.get(RESOURCES.ipRuleConfigs, config.metadata.name)) as Json)?.spec
          ?.state === "absent",
    );
    await everywhere(
      topo,
      "web's rules gone from every node",
      (rules) => want.every((w) => !rules.includes(w)),
    );
    await eventually(
      "config deleted after the grace period",
      async () => (await admin.get(RESOURCES.ipRuleConfigs, config.metadata.name)) === undefined,
    );
  },
);

scenario("a node leaving the Agent's node selection loses our rules", async (s) => {
  const { admin, topo, agents } = s;
  await s.ipRule("datacenter-b", { cidrs: ["10.0.1.0/24"], table: 100 });
  const [ip] = await s.service("selected", ["10.0.1.1"]);
  const line = ruleLine(ip!, 100);
  await everywhere(topo, "rule on every node", (rules) => rules.includes(line));
  const leaving = topo.node(2);
  const state = async () => (await admin.get(RESOURCES.ipRuleNodeStates, leaving.name)) as Json;
  await admin.mergePatch(RESOURCES.nodes, leaving.name, {
    metadata: { labels: { "kubernetes.io/os": "other" } },
  });
  try {
    await eventually("drain marked", async () => (await state())?.spec?.drain === true);
    // The DaemonSet controller would now stop that node's agent pod: SIGTERM.
    await agents.get(leaving.name)!.stop("SIGTERM");
    assert.deepEqual(await ourRules(leaving), [], "the node that left keeps no rule of ours");
    for (const node of topo.nodes.slice(0, 2)) assert.ok((await ourRules(node)).includes(line));
    // Its last report says so: drained, nothing applied.
    const drained = (await state())?.status;
    assert.equal(drained?.draining, true);
    assert.deepEqual([drained?.desiredRules, drained?.appliedRules], [0, 0]);
    assert.equal(
      drained?.conditions?.find((c: Json) => c.type === "Converged")?.reason,
      "Drained",
    );
  } finally {
    // Back in the selection, a new agent converges it again.
    await admin.mergePatch(RESOURCES.nodes, leaving.name, {
      metadata: { labels: { "kubernetes.io/os": "linux" } },
    });
  }
  await eventually("drain cleared", async () => (await state())?.spec?.drain === false);
  await s.startAgent(leaving);
  await everywhere(topo, "rule back on the node", (rules) => rules.includes(line));
  await eventually("draining cleared", async () => (await state())?.status?.draining === undefined);
});

scenario("a rebooted node (rules flushed, agent restarted) converges again", async (s) => {
  const { topo, agents } = s;
  await s.ipRule("datacenter-c", { cidrs: ["10.0.2.0/24"], table: 100 });
  const [ip] = await s.service("rebooted", ["10.0.2.1"]);
  await everywhere(topo, "rule on every node", (rules) => rules.includes(ruleLine(ip!, 100)));
  const node = topo.node(1);
  const wanted = await ourRules(node);
  assert.ok(wanted.length > 0);
  await agents.get(node.name)!.stop("SIGKILL");
  // A reboot loses every rule: delete ours (the defaults stay, as after a boot).
  for (const family of ["-4", "-6"]) {
    await node.ns.run(["ip", family, "rule", "flush", "protocol", "201"]);
  }
  assert.deepEqual(await ourRules(node), []);
  await s.startAgent(node);
  await eventually(
    "node converged again",
    async () => JSON.stringify(await ourRules(node)) === JSON.stringify(wanted),
    30_000,
  );
});

scenario("uninstall: deleting the Agent leaves no node with a rule of ours", async (s) => {
  const { admin, topo, agents } = s;
  await s.ipRule("datacenter-d", { cidrs: ["10.0.3.0/24"], table: 100 });
  const [ip] = await s.service("uninstalled", ["10.0.3.1"]);
  await everywhere(topo, "rule on every node", (rules) => rules.includes(ruleLine(ip!, 100)));
  assert.ok((await ourRules(topo.node(0))).length > 0);
  await admin.delete(RESOURCES.agents, "agent", { namespace: NS });
  // Nothing holds it: it is gone at once, the configs stay as they are.
  assert.equal(await admin.get(RESOURCES.agents, "agent", NS), undefined);
  // Its DaemonSet goes (the garbage collector of a cluster) and its pods stop: SIGTERM. Each
  // agent sees its Agent gone and removes its rules.
  for (const agent of agents.values()) assert.equal((await agent.stop("SIGTERM")).code, 0);
  for (const node of topo.nodes) {
    assert.deepEqual(await ourRules(node), [], node.name);
    const state: Json = await admin.get(RESOURCES.ipRuleNodeStates, node.name);
    assert.equal(state.status.draining, true, node.name);
    assert.equal(
      state.status.conditions.find((c: Json) => c.type === "Converged").reason,
      "Drained",
    );
  }
  const log = await agents.get(topo.node(0).name)!.log();
  assert.match(log, /"msg":"Agent stopped; the Agent was deleted, its rules removed"/);
});

scenario("the machine's own rules are untouched", async () => {
  assert.equal(await hostRules(), (await world()).before);
});
