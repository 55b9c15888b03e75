/**
 * The migration from the original operator on real kubelet nodes: the original's CRD shape and
 * objects (tests/support/original.ts), its DaemonSet running a Pod on every node and its
 * unmarked rule in every node's kernel; then our operator installed over it as the migration
 * guide says (`kubectl apply -k` of deploy/, images pointed at the ones built here), then
 * adoption switched on and off on the Agent. The original's agent cannot run here (its code is
 * not ours to build), so its Pods run the pause image: what the hand-over must preserve is that
 * every node keeps an agent Pod but for one at a time, and the kernel keeps the rule throughout.
 * A cluster of its own: the original's CRDs must come first.
 */
import assert from "node:assert/strict";
import { KubeClient } from "../../src/k8s/client.ts";
import { DAEMONSET_NAME } from "../../src/controller/daemonset.ts";
import { HANDED_OVER_ANNOTATION } from "../../src/controller/handover.ts";
import type { Cluster } from "../support/cluster.ts";
import {
  clusterTest,
  controllerRolledOut,
  fileCluster,
  getJson,
  type Json,
  lbService,
  NS,
  patchAgent,
  ROOT,
  waitFor,
  writeOverlay,
} from "../support/operator.ts";
import {
  ORIGINAL_MANAGER,
  originalAgent,
  originalConfigFor,
  originalDaemonSet,
} from "../support/original.ts";

const cluster = fileCluster({ nodes: 2 });

/** Creates objects as the original does: its field manager. */
async function createAsOriginal(c: Cluster, objects: Json[]): Promise<Json[]> {
  const out = await c.cp.kubectl(
    ["create", `--field-manager=${ORIGINAL_MANAGER}`, "-o", "json", "-f", "-"],
    { stdin: JSON.stringify({ apiVersion: "v1", kind: "List", items: objects }) },
  );
  const created = JSON.parse(out.stdout);
  return created.kind === "List" ? created.items : [created];
}

/** What the samplers saw: samples, and the worst of each node. */
interface Watch {
  samples: number;
  /** Per node: rule samples that missed the rule. */
  ruleMissing: Map<string, number>;
  /** Per node: the longest time no agent Pod's container ran there, ms (the API's view). */
  noAgentMs: Map<string, number>;
  /** Samples in which more than one node ran no agent. */
  severalWithout: number;
}

/**
 * Samples, until stopped, every node's kernel for `rule` (any protocol: `ip rule` as fast as it
 * runs) and the agent Pods through the API (every ~50 ms): which nodes run an agent container.
 */
function watch(c: Cluster, admin: KubeClient, rule: string) {
  const result: Watch = {
    samples: 0,
    ruleMissing: new Map(c.nodes.map((n) => [n.name, 0])),
    noAgentMs: new Map(c.nodes.map((n) => [n.name, 0])),
    severalWithout: 0,
  };
  let stopped = false;
  const rules = (async () => {
    while (!stopped) {
      for (const node of c.nodes) {
        const text = await c.ip(node, ["rule", "show"]);
        if (!text.split("\n").some((l) => l.startsWith(rule))) {
          result.ruleMissing.set(node.name, result.ruleMissing.get(node.name)! + 1);
        }
      }
      result.samples++;
    }
  })();
  const pods = (async () => {
    const since = new Map<string, number>();
    while (!stopped) {
      const list: Json = await admin.request("GET", `/api/v1/namespaces/${NS}/pods`, {
        query: { labelSelector: "app=iprule-agent" },
      });
      const now = performance.now();
      const running = new Set<string>(
        list.items.filter((p: Json) =>
          p.status?.containerStatuses?.some((s: Json) => s.state?.running !== undefined)
        ).map((p: Json) => p.spec.nodeName),
      );
      let without = 0;
      for (const node of c.nodes) {
        if (running.has(node.name)) {
          const start = since.get(node.name);
          if (start !== undefined) {
            const gap = now - start;
            if (gap > result.noAgentMs.get(node.name)!) result.noAgentMs.set(node.name, gap);
            since.delete(node.name);
          }
        } else {
          without++;
          if (!since.has(node.name)) since.set(node.name, now);
        }
      }
      if (without > 1) result.severalWithout++;
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  return {
    async stop(): Promise<Watch> {
      stopped = true;
      await Promise.all([rules, pods]);
      return result;
    },
  };
}

/** Every node's agent Pod Ready from the DaemonSet's current template. */
async function rolledOut(c: Cluster, what: string): Promise<void> {
  await waitFor(what, async () => {
    const ds = await getJson(c, ["-n", NS, "get", "daemonset", DAEMONSET_NAME]);
    const s = ds.status ?? {};
    return s.observedGeneration === ds.metadata.generation &&
      s.updatedNumberScheduled === c.nodes.length && s.numberReady === c.nodes.length &&
      s.numberAvailable === c.nodes.length;
  }, 300_000);
}

clusterTest(
  "cluster: installed over the original, the DaemonSet is handed over node by node and its rules adopted, a rule in every kernel all along",
  async () => {
    const c = await cluster();
    const admin = await KubeClient.connect({ kubeconfig: c.cp.kubeconfig("admin") });
    try {
      // The original: its CRDs, namespace, service account, objects and Pods.
      await c.cp.kubectl(["apply", "-f", `${ROOT}/tests/support/original-crds/`]);
      await c.cp.kubectl([
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/iprules.api.operator.brtrm.dev",
        "crd/ipruleconfigs.api.operator.brtrm.dev",
        "crd/agents.api.operator.brtrm.dev",
      ]);
      await c.cp.kubectl(["apply", "-f", `${ROOT}/deploy/namespace.yaml`]);
      await c.cp.kubectl(["-n", NS, "create", "serviceaccount", "iprule-agent"]);
      const [rule] = await createAsOriginal(c, [{
        apiVersion: "api.operator.brtrm.dev/v1alpha1",
        kind: "IPRule",
        metadata: { name: "migrated" },
        spec: { cidr: "10.70.0.0/16", table: 170, priority: 1700 },
      }]);
      const [ip] = await lbService(c, "migrated-web", ["10.70.0.10"]);
      await createAsOriginal(c, [originalConfigFor(rule, ip!)]);
      const [agent] = await createAsOriginal(c, [
        originalAgent(NS, { nodeSelector: { "kubernetes.io/os": "linux" } }),
      ]);
      const ds = originalDaemonSet(NS, agent.metadata.uid);
      ds.spec.template.spec.containers[0].image = c.images.pause;
      await createAsOriginal(c, [ds]);
      for (const node of c.nodes) {
        await c.ip(node, ["rule", "add", "from", ip!, "lookup", "170", "priority", "1700"]);
      }
      await rolledOut(c, "the original's agent Pods running");
      const line = `1700:\tfrom ${ip} lookup 170`;

      // Step 2 of the guide: our CRDs, RBAC and controller over it.
      const handOver = watch(c, admin, line);
      let seen: Watch;
      try {
        await c.cp.kubectl(["apply", "-k", await writeOverlay(c)]);
        await controllerRolledOut(c);
        await waitFor("the DaemonSet handed over", async () => {
          const d = await getJson(c, ["-n", NS, "get", "daemonset", DAEMONSET_NAME]);
          return d.metadata.annotations?.[HANDED_OVER_ANNOTATION] !== undefined;
        });
        await rolledOut(c, "our agent Pods Ready on every node");
      } finally {
        seen = await handOver.stop();
      }
      for (const node of c.nodes) {
        console.log(
          `hand-over on ${node.name}: longest time without a running agent container ` +
            `${seen.noAgentMs.get(node.name)!.toFixed(0)} ms (API view, ~50 ms samples); rule ` +
            `missing in ${seen.ruleMissing.get(node.name)} of ${seen.samples} kernel samples`,
        );
      }
      assert.deepEqual([...seen.ruleMissing.values()], c.nodes.map(() => 0), "rule missing");
      assert.equal(seen.severalWithout, 0, "more than one node without an agent at once");
      assert.ok(seen.samples > 10, `only ${seen.samples} samples`);
      const pods = (await getJson(c, ["-n", NS, "get", "pods", "-l", "app=iprule-agent"])).items;
      assert.equal(pods.length, c.nodes.length);
      for (const pod of pods) {
        assert.equal(pod.spec.containers[0].image, c.images.agent);
        assert.equal(pod.spec.serviceAccountName, "ip-rule-operator-agent");
        assert.ok(!pod.spec.containers[0].env.some((e: Json) => e.name === "RECONCILE_PERIOD"));
      }
      const events = await getJson(c, ["-n", NS, "get", "events.events.k8s.io"]);
      assert.ok(events.items.some((e: Json) => e.reason === "DaemonSetHandedOver"));

      // Steps 5 and 6: adoption on until every node holds our marked copy, then off.
      const adoption = watch(c, admin, line);
      try {
        await patchAgent(c, { spec: { adoptUnmarkedRules: true } });
        await waitFor("the rule adopted on every node", async () => {
          for (const node of c.nodes) {
            const text = await c.ip(node, ["-d", "rule", "show"]);
            const lines = text.split("\n").filter((l) => l.startsWith(line));
            if (lines.length !== 1 || !lines[0]!.endsWith(" proto 201")) return false;
          }
          return true;
        }, 300_000);
        await rolledOut(c, "the agents with adoption Ready");
      } finally {
        seen = await adoption.stop();
      }
      assert.deepEqual([...seen.ruleMissing.values()], c.nodes.map(() => 0), "rule missing");
      await patchAgent(c, [{ op: "remove", path: "/spec/adoptUnmarkedRules" }]);
      await rolledOut(c, "the agents without adoption Ready");
      for (const node of c.nodes) {
        const lines = (await c.ip(node, ["-d", "rule", "show"])).split("\n");
        assert.deepEqual(lines.filter((l) => l.startsWith(line)), [`${line} proto 201`]);
      }
    } finally {
      admin.close();
    }
  },
);
