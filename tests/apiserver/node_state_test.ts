/**
 * The agent's IPRuleNodeState writer against a real kube-apiserver + etcd, with the agent's own
 * RBAC identity (deploy/rbac.yaml): what it writes is what the API server returns, status
 * `draining` included. Each scenario uses its own node name; one control plane serves the file.
 */
import assert from "node:assert/strict";
import { objectClient } from "../../src/api/clients.ts";
import type { IPRuleNodeStateStatus } from "../../src/api/types.ts";
import { type NodeReport, NodeStateWriter } from "../../src/agent/node_state.ts";
import { KubeClient } from "../../src/k8s/client.ts";
import { RESOURCES } from "../../src/k8s/resources.ts";
import { Logger } from "../../src/log.ts";
import { startControlPlane } from "../support/controlplane.ts";
import { SHARED, sharedPart } from "../support/shared.ts";

const OK: NodeReport = { desired: 2, applied: 2, failed: [], converged: true };

/** The file's control plane, started by the first test that runs (alone or not). */
const controlPlane = sharedPart(async () => {
  const cp = await startControlPlane();
  await cp.kubectl(["apply", "-f", "deploy/namespace.yaml", "-f", "deploy/rbac.yaml"]);
  return cp;
});

/** A node, the agent's writer for it, and the admin's view of its IPRuleNodeState. */
async function node(name: string) {
  const cp = await controlPlane();
  const admin = await KubeClient.connect({ kubeconfig: cp.kubeconfig("admin") });
  const agent = await KubeClient.connect({ kubeconfig: cp.kubeconfig("agent") });
  await admin.create(RESOURCES.nodes, { metadata: { name } });
  const writer = () =>
    new NodeStateWriter({
      nodeStates: objectClient(agent, "ipRuleNodeStates"),
      nodes: objectClient(agent, "nodes"),
    }, { nodeName: name, protocol: 201, version: "test", log: new Logger({ sink: () => {} }) });
  const status = async () =>
    ((await admin.get(RESOURCES.ipRuleNodeStates, name)) as { status?: IPRuleNodeStateStatus })
      ?.status;
  return {
    writer,
    status,
    async [Symbol.asyncDispose]() {
      await admin.delete(RESOURCES.ipRuleNodeStates, name);
      await admin.delete(RESOURCES.nodes, name);
      admin.close();
      agent.close();
    },
  };
}

Deno.test(
  "NodeStateWriter on the API server: failed rules are listed, then cleared",
  SHARED,
  async () => {
    await using n = await node("writer-failed");
    const writer = n.writer();
    const failed = [{ rule: "from 10.0.0.1 lookup 100 priority 1000", error: "EINVAL" }];
    await writer.write({ desired: 2, applied: 1, failed, converged: false });
    const bad = await n.status();
    assert.deepEqual([bad?.failedCount, bad?.failedRules], [1, failed]);
    assert.equal(bad?.conditions?.[0]?.reason, "RulesFailed");
    await writer.write(OK);
    const good = await n.status();
    assert.deepEqual([good?.failedCount, good?.failedRules], [0, []]);
  },
);

Deno.test(
  "NodeStateWriter on the API server: a drain sets status.draining; the next agent clears it",
  SHARED,
  async () => {
    await using n = await node("writer-drained");
    await n.writer().write(OK);
    assert.equal((await n.status())?.draining, undefined);

    await n.writer().write({ desired: 0, applied: 0, failed: [], converged: true, draining: true });
    const drained = await n.status();
    assert.equal(drained?.draining, true);
    assert.deepEqual([drained?.desiredRules, drained?.appliedRules], [0, 0]);
    assert.deepEqual(
      drained?.conditions?.map((c) => [c.type, c.status, c.reason]),
      [["Converged", "True", "Drained"]],
    );

    // The node is selected again: a new agent's first report removes the mark.
    await n.writer().write(OK);
    const back = await n.status();
    assert.equal(back?.draining, undefined);
    assert.equal(back?.conditions?.[0]?.reason, "RulesApplied");
  },
);
