/**
 * What ends on real nodes: a Node removed from the cluster (its IPRuleNodeState goes with it,
 * through the real garbage collector), and the uninstall in every order a user takes — the
 * Agent first as the README says, everything at once (`kubectl delete -f deploy/install.yaml`
 * with the Agent still there), only the namespace — and the recovery of a cluster an earlier
 * version left stuck on its finalizer. Each must leave no rule of ours on any node and nothing
 * Terminating. A cluster of its own, since all of it removes what the other tests of the tier
 * need; each uninstall test installs again first.
 */
import assert from "node:assert/strict";
import type { Cluster, ClusterNode } from "../support/cluster.ts";
import {
  agentPods,
  apply,
  assertUninstalled,
  clusterTest,
  CONTROLLER,
  fileCluster,
  find,
  followLogs,
  getJson,
  install,
  iprule,
  type Json,
  lbService,
  liveNodes,
  NS,
  ourRules,
  patchAgent,
  removeObjects,
  waitFor,
} from "../support/operator.ts";
import { LEGACY_AGENT_FINALIZER } from "../../src/drain.ts";

const INSTALL_YAML = new URL("../../deploy/install.yaml", import.meta.url).pathname;

const cluster = fileCluster({ nodes: 3 });
let installed: Promise<{ c: Cluster; overlay: string }> | undefined;
function operator(): Promise<{ c: Cluster; overlay: string }> {
  return installed ??= cluster().then(async (c) => ({ c, overlay: await install(c) }));
}

/** The operator installed (again, after an uninstall test), and its live nodes. */
async function reinstalled(): Promise<{ c: Cluster; overlay: string; live: ClusterNode[] }> {
  const { c, overlay } = await operator();
  if ((await find(c, ["get", "namespace", NS])) === undefined) await install(c);
  return { c, overlay, live: await liveNodes(c) };
}

async function ruleEverywhere(c: Cluster, name: string, cidr: string, lb: string): Promise<string> {
  await apply(c, [iprule(name, [cidr], 160)]);
  const [ip] = await lbService(c, name, [lb]);
  await waitFor(`the rule of ${name} on the live nodes`, async () => {
    for (const node of await liveNodes(c)) {
      if (!(await ourRules(c, node)).some((r) => r.includes(`from ${ip} `))) return false;
    }
    return true;
  });
  return ip!;
}

/** The agents' Pods on the live nodes, one each. */
async function everyAgentPod(c: Cluster, live: ClusterNode[]): Promise<Json[]> {
  const pods: Json[] = [];
  for (const node of live) {
    const [pod] = await agentPods(c, node);
    assert.ok(pod, `no agent Pod on ${node.name}`);
    pods.push(pod);
  }
  return pods;
}

/**
 * The "Agent stopped" line of each log: every agent removed its rules itself, knowing it was an
 * uninstall (its namespace or its Agent seen being deleted).
 */
function assertDrainedThemselves(logs: Json[][]): void {
  for (const lines of logs) {
    const stopped = lines.find((l) => String(l.msg).startsWith("Agent stopped"));
    assert.ok(stopped, `no "Agent stopped" in: ${JSON.stringify(lines.slice(-3))}`);
    assert.match(
      stopped.msg,
      /^Agent stopped; (the operator's namespace is being deleted|the Agent (is being|was) deleted), its rules removed$/,
    );
  }
}

clusterTest(
  "cluster: a Node deleted takes its IPRuleNodeState with it (garbage collector)",
  async () => {
    const { c } = await operator();
    const node = c.nodes[2]!;
    await ruleEverywhere(c, "gc-web", "10.60.0.0/16", "10.60.0.10");
    const nodeObject = await getJson(c, ["get", "node", node.name]);
    const state = await getJson(c, ["get", "iprulenodestate", node.name]);
    assert.deepEqual(
      state.metadata.ownerReferences.map((o: Json) => [o.kind, o.name, o.uid]),
      [["Node", node.name, nodeObject.metadata.uid]],
    );
    // The machine goes away (kubelet, containerd and its containers stop), then its Node object.
    await c.stopNode(node);
    await c.cp.kubectl(["delete", "node", node.name]);
    await waitFor(
      `IPRuleNodeState ${node.name} collected`,
      async () => (await find(c, ["get", "iprulenodestate", node.name])) === undefined,
    );
    for (const other of c.nodes.slice(0, 2)) {
      assert.ok(await find(c, ["get", "iprulenodestate", other.name]), other.name);
    }
    await removeObjects(c, { service: "gc-web", iprule: "gc-web" });
  },
);

clusterTest(
  "cluster: uninstall as the README says: the Agent first (foreground), every node drained when it returns, then the rest",
  async () => {
    const { c, overlay, live } = await reinstalled();
    await ruleEverywhere(c, "uninstall-web", "10.61.0.0/16", "10.61.0.10");
    // The README: delete the Agent in the foreground, which waits for its DaemonSet's Pods.
    await c.cp.kubectl([
      "-n",
      NS,
      "delete",
      "agent",
      "agent",
      "--cascade=foreground",
      "--wait",
      "--timeout=120s",
    ]);
    for (const node of live) {
      assert.deepEqual(await ourRules(c, node), [], node.name);
      const state = await getJson(c, ["get", "iprulenodestate", node.name]);
      assert.equal(state.status.draining, true, `${node.name} acknowledged its drain`);
    }
    assert.equal(await find(c, ["-n", NS, "get", "daemonset", "iprule-agent"]), undefined);
    await c.cp.kubectl(["delete", "-k", overlay, "--wait", "--timeout=180s"]);
    await assertUninstalled(c, live);
    await c.cp.kubectl(["-n", "default", "delete", "service", "uninstall-web"]);
  },
);

clusterTest(
  "cluster: kubectl delete -f deploy/install.yaml with the Agent there: every agent drains itself and nothing is left",
  async () => {
    const { c, live } = await reinstalled();
    await ruleEverywhere(c, "all-web", "10.62.0.0/16", "10.62.0.10");
    const logs = followLogs(c, await everyAgentPod(c, live));
    // The namespace, the CRDs, the RBAC and the controller in one command, as a user types it
    // (install.yaml names the same objects as the overlay installed).
    await c.cp.kubectl(["delete", "-f", INSTALL_YAML, "--wait", "--timeout=180s"]);
    await assertUninstalled(c, live);
    // Each agent stopped knowing it was an uninstall, though its token, RBAC and CRDs were
    // being deleted around it: the namespace, or the Agent, seen being deleted.
    assertDrainedThemselves(await logs.lines());
    await c.cp.kubectl(["-n", "default", "delete", "service", "all-web"]);
  },
);

clusterTest(
  "cluster: deleting only the namespace: the agents drain themselves while every IPRuleConfig stays present",
  async () => {
    const { c, live } = await reinstalled();
    const ip = await ruleEverywhere(c, "ns-web", "10.63.0.0/16", "10.63.0.10");
    const logs = followLogs(c, await everyAgentPod(c, live));
    await c.cp.kubectl(["delete", "namespace", NS, "--wait", "--timeout=180s"]);
    // Nothing told the agents to remove the rule but their own stop: its config is present.
    const config = await getJson(c, ["get", "ipruleconfig", `iprc-${ip.replaceAll(".", "-")}`]);
    assert.equal(config.spec.state, "present");
    for (const node of live) assert.deepEqual(await ourRules(c, node), [], node.name);
    assertDrainedThemselves(await logs.lines());
    await c.cp.kubectl(["delete", "-f", INSTALL_YAML, "--ignore-not-found", "--wait"]);
    await assertUninstalled(c, live);
    await c.cp.kubectl(["-n", "default", "delete", "service", "ns-web"]);
  },
);

clusterTest(
  "cluster: an uninstall stuck on an earlier version's finalizer finishes with the README's patch",
  async () => {
    const { c, overlay, live } = await reinstalled();
    await ruleEverywhere(c, "stuck-web", "10.64.0.0/16", "10.64.0.10");
    // What an earlier version left: its finalizer on the Agent and no controller to remove it
    // (this version's controller would remove it at once, so it is stopped first).
    await c.cp.kubectl(["-n", NS, "scale", `deployment/${CONTROLLER}`, "--replicas=0"]);
    await waitFor("no controller Pod", async () => {
      const pods = await getJson(c, [
        "-n",
        NS,
        "get",
        "pods",
        "-l",
        "app.kubernetes.io/component=controller",
      ]);
      return pods.items.length === 0;
    });
    await patchAgent(c, [{
      op: "add",
      path: "/metadata/finalizers",
      value: [LEGACY_AGENT_FINALIZER],
    }]);
    await c.cp.kubectl(["delete", "-k", overlay, "--wait=false"]);
    // Stuck: the namespace names the finalizer, and stays.
    await waitFor("the namespace stuck on the finalizer", async () => {
      const ns = await find(c, ["get", "namespace", NS]);
      return (ns?.status?.conditions ?? []).some((cond: Json) =>
        cond.type === "NamespaceFinalizersRemaining" && cond.status === "True" &&
        cond.message.includes(`${LEGACY_AGENT_FINALIZER} in 1 resource instances`)
      );
    });
    const crd = await getJson(c, ["get", "crd", "agents.api.operator.brtrm.dev"]);
    assert.ok(crd.metadata.deletionTimestamp, "the agents CRD is Terminating");
    // The README's recovery, word for word.
    await patchAgent(
      c,
      `[{"op":"test","path":"/metadata/finalizers/0","value":"${LEGACY_AGENT_FINALIZER}"},` +
        `{"op":"remove","path":"/metadata/finalizers/0"}]`,
    );
    // This version's agents drained when the namespace began terminating: nothing is left.
    await assertUninstalled(c, live);

    // An earlier version's agents stopped keeping their rules. The README's cleanup on a node
    // removes every rule of protocol 201 and nothing else.
    const node = live[0]!;
    const sh = (script: string) => c.exec(node, ["sh", "-c", script]);
    await sh(
      "ip rule add from 10.64.0.99 lookup 164 priority 1000 protocol 201 && " +
        "ip -6 rule add from fd00:64::99 lookup 164 priority 1000 protocol 201 && " +
        "ip rule add from 10.64.0.98 lookup 164 priority 1001",
    );
    await sh("ip rule flush protocol 201 && ip -6 rule flush protocol 201");
    assert.deepEqual(await ourRules(c, node), []);
    assert.match(await c.ip(node, ["rule", "show"]), /from 10\.64\.0\.98 lookup 164/);
    await sh("ip rule del from 10.64.0.98 lookup 164 priority 1001");
    await c.cp.kubectl(["-n", "default", "delete", "service", "stuck-web"]);
  },
);
