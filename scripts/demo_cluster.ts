/**
 * `task demo` on a real cluster (`task demo:cluster`, root): three kubelet nodes in network
 * namespaces (tests/support/cluster.ts), the operator installed from deploy/ as the README says
 * with the images built here, the agents as DaemonSet Pods on every node, then the same story as
 * the process demo: two uplinks per node, sample IPRules and LoadBalancer Services, every node's
 * rules and route lookups, the API objects, a Service deleted and its rule leaving every node.
 * Everything is removed on exit and on Ctrl-C; `task demo:down` cleans up after a crash (the
 * next cluster start removes a crashed cluster).
 *
 * @module
 */
import { startCluster } from "../tests/support/cluster.ts";
import { apply, install, lbService, NS, waitFor } from "../tests/support/operator.ts";
import {
  addServiceLink,
  bold,
  cleanupSync,
  type DemoState,
  dim,
  gateway,
  indent,
  IP_RULES,
  SERVICES,
  showNode,
} from "./demo.ts";

const STEPS = 7;
let stepNo = 0;
function step(title: string): void {
  console.log(`\n${bold(`[${++stepNo}/${STEPS}] ${title}`)}`);
}

async function main(): Promise<number> {
  if (Deno.uid() !== 0) {
    console.error("task demo:cluster needs root: namespaces, cgroups, containerd (run it as root)");
    return 1;
  }
  const started = performance.now();
  const seconds = () => ((performance.now() - started) / 1000).toFixed(0);
  const state: DemoState = { namespaces: [], links: [], pids: [] };
  console.log(bold("ip-rule-operator on a real cluster: kubelet nodes, our images, deploy/"));
  step("A cluster: control plane, kube-controller-manager, kube-scheduler, 3 kubelet nodes");
  await using cluster = await startCluster({ nodes: 3, prefix: "node" });
  const onSignal = () => {
    console.error("\nInterrupted: cleaning up");
    cleanupSync(state);
    cluster.stop().finally(() => Deno.exit(130));
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  try {
    console.log(
      `    API server ${cluster.cp.server}; nodes ${
        cluster.nodes.map((n) => `${n.name} (${n.address})`).join(", ")
      }`,
    );
    console.log(dim(
      `    each node: containerd + kubelet + kube-proxy in network namespace <node>; ` +
        `images ${cluster.images.controller}, ${cluster.images.agent} (${cluster.images.executables})`,
    ));
    const kubectl = async (args: string[], stdin?: string) =>
      (await cluster.cp.kubectl(args, stdin === undefined ? {} : { stdin })).stdout;

    step("Install as the README says: kubectl apply -k (images pointed at ours), then the samples");
    const overlay = await install(cluster);
    console.log(indent(`$ kubectl apply -k ${overlay}   ${dim("# deploy/ with our image tags")}`));
    console.log(
      indent("$ kubectl apply -f deploy/samples/agent.yaml -f deploy/samples/iprule.yaml"),
    );
    console.log(
      indent(
        `$ kubectl get pods -A -o wide\n${await kubectl(["get", "pods", "-A", "-o", "wide"])}`,
      ),
    );

    step("Two uplinks per node: gateway A behind routing table 100, gateway B behind table 200");
    const names = cluster.nodes.map((n) => n.name);
    for (const name of names) await addServiceLink(name);
    await gateway(names, state, "a", "192.0.2", "fd00:a");
    await gateway(names, state, "b", "198.51.100", "fd00:b");
    console.log("    table 100: default via 192.0.2.1 (uplink A), table 200: via 198.51.100.1 (B)");

    step("Sample IPRules and LoadBalancer Services; an LB provider assigns their IPs");
    await apply(
      cluster,
      IP_RULES.map((r) => ({
        apiVersion: "api.operator.brtrm.dev/v1alpha1",
        kind: "IPRule",
        ...r,
      })),
    );
    const clusterIPs = new Map<string, string[]>();
    for (const svc of SERVICES) {
      const ips = await lbService(cluster, svc.name, svc.ingress);
      clusterIPs.set(svc.name, ips);
      console.log(
        `    Service default/${svc.name}: ClusterIP ${ips.join(", ")}, LB IP ${
          svc.ingress.join(", ")
        }`,
      );
    }
    const expected = SERVICES.reduce((n, s) => n + s.ingress.length, 0);
    await waitFor("every node converged", async () => {
      const states = JSON.parse(await kubectl(["get", "iprulenodestates", "-o", "json"]));
      return states.items.length === cluster.nodes.length &&
        // deno-lint-ignore no-explicit-any
        states.items.every((s: any) =>
          s.status?.appliedRules === expected + 0 &&
          // deno-lint-ignore no-explicit-any
          s.status?.conditions?.some((c: any) => c.type === "Converged" && c.status === "True")
        );
    });
    console.log(`    every node converged: ${expected} rules each (${seconds()} s since start)`);

    step("What every node's kernel now has (ip -n <node> rule)");
    for (const [i, node] of cluster.nodes.entries()) {
      await showNode(node.name, node.name, i === 0 ? clusterIPs : undefined);
    }

    step("The API objects");
    console.log(indent(await kubectl(["get", "iprules,ipruleconfigs,iprulenodestates"])));
    console.log(indent(await kubectl(["-n", NS, "get", "agent,daemonset,pods", "-o", "wide"])));

    step("Service default/api is deleted: its rule leaves every node");
    await kubectl(["-n", "default", "delete", "service", "api"]);
    const apiIP = clusterIPs.get("api")![0]!;
    await waitFor("the rule gone everywhere", async () => {
      for (const node of cluster.nodes) {
        if ((await cluster.ip(node, ["rule", "show"])).includes(`from ${apiIP} `)) return false;
      }
      return true;
    });
    await showNode(cluster.nodes[0]!.name, `${cluster.nodes[0]!.name}: from ${apiIP} is gone`);
    console.log(`\n${bold("Summary")}`);
    console.log(indent(
      [
        "The operator ran as users run it: our images on kubelet nodes, installed from deploy/,",
        "the controller as a two-replica Deployment with a leader, the agents as a DaemonSet with",
        "one Pod per node. Their rules routed each Service's traffic through its table's uplink,",
        `and a deleted Service left every node. ${seconds()} s in all; now cleaning up.`,
      ].join("\n"),
      "  ",
    ));
    return 0;
  } finally {
    cleanupSync(state);
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
  }
}

if (import.meta.main) Deno.exit(await main());
