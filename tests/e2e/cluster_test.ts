/**
 * End to end on the demo's topology: a real control plane, three node namespaces, the
 * controller and one agent per node as processes with their executables' permission flags.
 * Asserts what the kernels of the nodes hold (`ip rule show` in each namespace) and what the
 * API server returns; the machine's own rules are compared before and after.
 */
import assert from "node:assert/strict";
import { startTopology, type Topology, type TopologyNode } from "../support/topology.ts";
import { eventually, ExecutableProcess, freePort } from "../support/process.ts";
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

Deno.test("end to end: controller and three agents on a real control plane", async (t) => {
  const before = await hostRules();
  await using topo = await startTopology({ nodes: 3, namePrefix: "e2e" });
  using admin = await KubeClient.connect({ kubeconfig: topo.cp.kubeconfig("admin") });
  const controller = await ExecutableProcess.start("controller", [
    `--kubeconfig=${topo.cp.kubeconfig("controller")}`,
    `--metrics-addr=127.0.0.1:${freePort()}`,
    `--health-addr=127.0.0.1:${freePort()}`,
    "--grace-period=2s",
    "--log-format=json",
  ], { logFile: `${topo.cp.dir}/controller.log` });
  const agents = new Map<string, ExecutableProcess>();
  for (const node of topo.nodes) agents.set(node.name, await topo.startAgent(node));
  try {
    await admin.create(RESOURCES.agents, {
      metadata: { name: "agent", namespace: NS },
      spec: { nodeSelector: { "kubernetes.io/os": "linux" } },
    }, NS);
    const service = async (name: string, ingress: string[], dual = false): Promise<string[]> => {
      const svc: Json = await admin.create(RESOURCES.services, {
        metadata: { name, namespace: "default" },
        spec: {
          type: "LoadBalancer",
          allocateLoadBalancerNodePorts: false,
          ports: [{ port: 80 }],
          ...(dual ? { ipFamilyPolicy: "RequireDualStack", ipFamilies: ["IPv4", "IPv6"] } : {}),
        },
      }, "default");
      await admin.mergePatch(RESOURCES.services, name, {
        status: { loadBalancer: { ingress: ingress.map((ip) => ({ ip })) } },
      }, { namespace: "default", subresource: "status" });
      return svc.spec.clusterIPs;
    };

    await t.step(
      "the seed workflow: IPRule, LB IP, config, rules on every node, Service gone, rules gone",
      async () => {
        await admin.create(RESOURCES.ipRules, {
          metadata: { name: "datacenter-a" },
          spec: { cidrs: ["10.0.0.0/16", "fd00:10::/64"], table: 100 },
        });
        const [v4, v6] = await service("web", ["10.0.0.10", "fd00:10::10"], true);
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
          async () =>
            (await admin.get(RESOURCES.ipRuleConfigs, config.metadata.name)) === undefined,
        );
      },
    );

    await t.step("a node leaving the Agent's node selection loses our rules", async () => {
      const [ip] = await service("selected", ["10.0.1.1"]);
      const line = ruleLine(ip!, 100);
      await everywhere(topo, "rule on every node", (rules) => rules.includes(line));
      const leaving = topo.node(2);
      await admin.mergePatch(RESOURCES.nodes, leaving.name, {
        metadata: { labels: { "kubernetes.io/os": "other" } },
      });
      await eventually(
        "drain marked",
        async () =>
          ((await admin.get(RESOURCES.ipRuleNodeStates, leaving.name)) as Json)?.spec?.drain ===
            true,
      );
      // The DaemonSet controller would now stop that node's agent pod: SIGTERM.
      await agents.get(leaving.name)!.stop("SIGTERM");
      assert.deepEqual(await ourRules(leaving), [], "the node that left keeps no rule of ours");
      for (const node of topo.nodes.slice(0, 2)) assert.ok((await ourRules(node)).includes(line));
      // Back in the selection, a new agent converges it again.
      await admin.mergePatch(RESOURCES.nodes, leaving.name, {
        metadata: { labels: { "kubernetes.io/os": "linux" } },
      });
      await eventually(
        "drain cleared",
        async () =>
          ((await admin.get(RESOURCES.ipRuleNodeStates, leaving.name)) as Json)?.spec?.drain ===
            false,
      );
      agents.set(
        leaving.name,
        await topo.startAgent(leaving, [], { logName: "agent-e2e-2-b.log" }),
      );
      await everywhere(topo, "rule back on the node", (rules) => rules.includes(line));
    });

    await t.step("a rebooted node (rules flushed, agent restarted) converges again", async () => {
      const node = topo.node(1);
      const wanted = await ourRules(node);
      assert.ok(wanted.length > 0);
      await agents.get(node.name)!.stop("SIGKILL");
      // A reboot loses every rule: delete ours (the defaults stay, as after a boot).
      for (const family of ["-4", "-6"]) {
        await node.ns.run(["ip", family, "rule", "flush", "protocol", "201"]);
      }
      assert.deepEqual(await ourRules(node), []);
      agents.set(node.name, await topo.startAgent(node, [], { logName: "agent-e2e-1-b.log" }));
      await eventually(
        "node converged again",
        async () => JSON.stringify(await ourRules(node)) === JSON.stringify(wanted),
        30_000,
      );
    });

    await t.step("uninstall: deleting the Agent leaves no node with a rule of ours", async () => {
      assert.ok((await ourRules(topo.node(0))).length > 0);
      await admin.delete(RESOURCES.agents, "agent", { namespace: NS });
      await eventually(
        "Agent gone",
        async () => (await admin.get(RESOURCES.agents, "agent", NS)) === undefined,
        60_000,
      );
      // The DaemonSet is gone: its pods stop (SIGTERM), keeping what they have — nothing.
      for (const agent of agents.values()) await agent.stop("SIGTERM");
      for (const node of topo.nodes) assert.deepEqual(await ourRules(node), [], node.name);
      assert.equal(await admin.get(RESOURCES.daemonSets, "iprule-agent", NS), undefined);
      const configs: Json = await admin.request(
        "GET",
        "/apis/api.operator.brtrm.dev/v1alpha1/ipruleconfigs",
      );
      assert.ok(configs.items.length > 0);
      for (const c of configs.items) assert.equal(c.spec.state, "absent", c.metadata.name);
    });
  } finally {
    for (const agent of agents.values()) await agent.stop().catch(() => {});
    await controller.stop();
  }
  await t.step("the machine's own rules are untouched", async () => {
    assert.equal(await hostRules(), before);
  });
});
