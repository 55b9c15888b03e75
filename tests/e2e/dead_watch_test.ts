/**
 * An agent whose watch connection died while its node was cut off catches up once the API
 * server's bookmark heartbeat (about one a minute) is overdue. Found by the chaos soak (seed
 * 202, --fault-rate=3): a node's link was down while the API server restarted; the new server
 * knew nothing of the old connection, the agent only receives on it, so it never learned it was
 * dead and kept the node's rules stale until the watchdog fired 4.5-8.5 minutes later.
 *
 * Here the API server's side of the node's connections is destroyed (`ss -K`, on the test
 * bridge's node address only) while the node's link is down, so its reset never arrives.
 */
import assert from "node:assert/strict";
import { KubeClient } from "../../src/k8s/client.ts";
import { WATCH_SILENCE_MS } from "../../src/k8s/informer.ts";
import { RESOURCES } from "../../src/k8s/resources.ts";
import { eventually } from "../support/process.ts";
import { startTopology } from "../support/topology.ts";

const MANAGED = { "app.kubernetes.io/managed-by": "ip-rule-operator" };

Deno.test("an agent whose watch died during a link cut catches up within the bookmark heartbeat", async () => {
  await using topo = await startTopology({ nodes: 1, namePrefix: "deadwatch" });
  using admin = await KubeClient.connect({ kubeconfig: topo.cp.kubeconfig("admin") });
  const node = topo.node(0);
  const rules = async () => (await node.ns.ip(["rule", "show"])).split("\n");
  const config = (ip: string) =>
    admin.create(RESOURCES.ipRuleConfigs, {
      metadata: { name: `iprc-${ip.replaceAll(".", "-")}`, labels: MANAGED },
      spec: { serviceIP: ip, table: 120, priority: 1200, state: "present" },
    });
  const has = (ip: string) => async () =>
    (await rules()).some((l) => l.includes(`from ${ip} lookup 120 proto 201`));
  const agent = await topo.startAgent(node);
  try {
    // The first rule comes through the watch: the connection to cut off is open.
    await eventually(
      "the agent listed",
      async () => (await agent.log()).includes("IPRuleConfigs listed"),
    );
    await config("10.96.120.1");
    await eventually("the first rule", has("10.96.120.1"));
    assert.match(await agent.log(), /"trigger":"watch","rule":"ip rule add from 10\.96\.120\.1 /);

    await node.ns.ip(["link", "set", "eth0", "down"]);
    const killed = await new Deno.Command("ss", {
      args: ["-t", "-K", "dst", node.address],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.ok(killed.success, new TextDecoder().decode(killed.stderr));
    await node.ns.ip(["link", "set", "eth0", "up"]);

    await config("10.96.120.2");
    await eventually(
      "the rule of a config made after the cut",
      has("10.96.120.2"),
      2 * WATCH_SILENCE_MS,
    );
    assert.match(await agent.log(), /was silent for 90000 ms/);
  } finally {
    await agent.stop();
  }
});
