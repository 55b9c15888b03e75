/**
 * What a stopping agent knows (src/agent/stop_signals.ts), against a real kube-apiserver + etcd
 * with the agent's own RBAC identity (deploy/rbac.yaml): reads at stop, and the watched state
 * when an uninstall has taken the agent's RBAC before it stops. A control plane of its own: the
 * last scenario deletes the operator's namespace (nothing finishes that here: this control plane
 * runs no namespace controller, so it stays Terminating, as it does while a cluster's namespace
 * controller stops the Pods first).
 */
import assert from "node:assert/strict";
import { StopSignals } from "../../src/agent/stop_signals.ts";
import { KubeClient } from "../../src/k8s/client.ts";
import { RESOURCES } from "../../src/k8s/resources.ts";
import { Logger } from "../../src/log.ts";
import { startControlPlane } from "../support/controlplane.ts";
import { eventually } from "../support/process.ts";

const NS = "ip-rule-operator-system";
const NODE = "stop-node";

Deno.test("StopSignals: reads at stop, and the watched state once an uninstall took the RBAC", async (t) => {
  await using cp = await startControlPlane();
  await cp.kubectl(["apply", "-f", "deploy/namespace.yaml", "-f", "deploy/rbac.yaml"]);
  using admin = await KubeClient.connect({ kubeconfig: cp.kubeconfig("admin") });
  using agentClient = await KubeClient.connect({ kubeconfig: cp.kubeconfig("agent") });
  await admin.create(RESOURCES.nodes, {
    metadata: { name: NODE, labels: { "kubernetes.io/os": "linux", pool: "a" } },
  });
  await admin.create(RESOURCES.ipRuleNodeStates, { metadata: { name: NODE }, spec: {} });
  const createAgent = () =>
    admin.create(RESOURCES.agents, {
      metadata: { name: "agent", namespace: NS },
      spec: { nodeSelector: { pool: "a" } },
    }, NS);
  await createAgent();

  const stop = new AbortController();
  const signals = new StopSignals(agentClient, {
    namespace: NS,
    nodeName: NODE,
    log: new Logger({ sink: () => {} }),
  });
  const watching = signals.run(stop.signal);
  try {
    await signals.whenWatching(stop.signal);

    await t.step("a live install on a selected node: nothing says drain", async () => {
      assert.deepEqual(await signals.read(), {
        namespace: "live",
        agent: "live",
        drainMarked: false,
        selected: true,
      });
    });

    await t.step("the node relabelled out of the Agent's selection", async () => {
      await admin.mergePatch(RESOURCES.nodes, NODE, { metadata: { labels: { pool: "b" } } });
      assert.equal((await signals.read()).selected, false);
      await admin.mergePatch(RESOURCES.nodes, NODE, { metadata: { labels: { pool: "a" } } });
    });

    await t.step("the Agent deleted: gone, read at stop", async () => {
      await admin.delete(RESOURCES.agents, "agent", { namespace: NS });
      assert.equal((await signals.read()).agent, "gone");
      await createAgent();
      await eventually("the watch sees the Agent again", async () => {
        const read = await signals.read();
        return read.agent === "live" && read;
      });
    });

    await t.step(
      "the agent's RBAC deleted, then its namespace: the watch still tells",
      async () => {
        await cp.kubectl([
          "delete",
          "clusterrolebinding/ip-rule-operator-agent",
          "rolebinding/ip-rule-operator-agent",
          "-n",
          NS,
        ]);
        // Every read at stop is refused now, and nothing is known of a change yet.
        await eventually("reads refused", async () => {
          const read = await signals.read();
          return read.drainMarked === undefined && read;
        });
        const refused = await signals.read();
        assert.deepEqual(refused, {
          namespace: "live",
          agent: "live",
          drainMarked: undefined,
          selected: undefined,
        });
        // The watches opened before the RBAC went keep delivering.
        await admin.request("DELETE", `/api/v1/namespaces/${NS}`);
        const read = await eventually("the namespace seen being deleted", async () => {
          const r = await signals.read();
          return r.namespace === "deleting" && r;
        });
        assert.deepEqual(read, {
          namespace: "deleting",
          agent: "live",
          drainMarked: undefined,
          selected: undefined,
        });
      },
    );

    await t.step(
      "the agents CRD deleted: the watch saw the Agent go; a 404 of the kind alone says nothing",
      async () => {
        await cp.kubectl(["delete", "crd", "agents.api.operator.brtrm.dev", "--wait"]);
        const read = await eventually("the Agent seen gone", async () => {
          const r = await signals.read();
          return r.agent === "gone" && r;
        });
        assert.equal(read.namespace, "deleting");
        // Reading now, with nothing watched before: the kind is not found, the Agent unknown.
        const late = new StopSignals(admin, {
          namespace: NS,
          nodeName: NODE,
          log: new Logger({ sink: () => {} }),
        });
        const fresh = await late.read();
        assert.deepEqual([fresh.namespace, fresh.agent], ["deleting", undefined]);
      },
    );
  } finally {
    stop.abort();
    await watching;
  }
});
