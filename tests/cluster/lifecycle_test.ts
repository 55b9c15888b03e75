/**
 * What ends on real nodes: a Node removed from the cluster (its IPRuleNodeState goes with it,
 * through the real garbage collector) and the uninstall as the README says it. A cluster of its
 * own, since both remove what the other tests of the tier need.
 */
import assert from "node:assert/strict";
import type { Cluster } from "../support/cluster.ts";
import {
  apply,
  clusterTest,
  fileCluster,
  find,
  getJson,
  install,
  iprule,
  type Json,
  lbService,
  NS,
  ourRules,
  removeObjects,
  waitFor,
} from "../support/operator.ts";

const cluster = fileCluster({ nodes: 3 });
let installed: Promise<{ c: Cluster; overlay: string }> | undefined;
function operator(): Promise<{ c: Cluster; overlay: string }> {
  return installed ??= cluster().then(async (c) => ({ c, overlay: await install(c) }));
}

async function ruleEverywhere(c: Cluster, name: string, cidr: string, lb: string): Promise<void> {
  await apply(c, [iprule(name, [cidr], 160)]);
  const [ip] = await lbService(c, name, [lb]);
  await waitFor(`the rule of ${name} on the live nodes`, async () => {
    for (const node of c.nodes) {
      if ((await find(c, ["get", "node", node.name])) === undefined) continue;
      if (!(await ourRules(c, node)).some((r) => r.includes(`from ${ip} `))) return false;
    }
    return true;
  });
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
  "cluster: uninstall as the README says leaves no rule, object or namespace of ours",
  async () => {
    const { c, overlay } = await operator();
    await ruleEverywhere(c, "uninstall-web", "10.61.0.0/16", "10.61.0.10");
    const live = [];
    for (const node of c.nodes) {
      if (await find(c, ["get", "node", node.name])) live.push(node);
    }
    // README: delete the Agent first and wait until it is gone, then the rest.
    await c.cp.kubectl(["-n", NS, "delete", "agent", "agent", "--wait", "--timeout=120s"]);
    for (const node of live) assert.deepEqual(await ourRules(c, node), [], node.name);
    await c.cp.kubectl(["delete", "-k", overlay, "--wait", "--timeout=180s"]);
    await waitFor(
      `namespace ${NS} gone`,
      async () => (await find(c, ["get", "namespace", NS])) === undefined,
    );
    for (const node of live) {
      assert.deepEqual(await ourRules(c, node), [], node.name);
    }
    const crds = await getJson(c, ["get", "crds"]);
    assert.deepEqual(
      crds.items.map((d: Json) => d.metadata.name).filter((n: string) =>
        n.endsWith(".api.operator.brtrm.dev")
      ),
      [],
    );
    for (const kind of ["clusterroles", "clusterrolebindings"]) {
      const left = (await getJson(c, ["get", kind])).items.map((o: Json) => o.metadata.name).filter(
        (
          n: string,
        ) => n.startsWith("ip-rule-operator"),
      );
      assert.deepEqual(left, [], kind);
    }
    await c.cp.kubectl(["-n", "default", "delete", "service", "uninstall-web"]);
  },
);
