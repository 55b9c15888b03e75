/**
 * End-to-end benchmark (issue 7): three node namespaces, the controller and three agents on a
 * local control plane; 500 LoadBalancer Services get their LB IPs in a burst. Measures, per
 * Service, LB IP assignment → its rule present on all three nodes, and Service deletion → rule
 * gone everywhere (median, p99). Target: p99 under 1 s for both (the original operator's agents
 * poll every 10 s). Kernels are sampled every 10 ms with `ip rule show` in each namespace.
 */
import { startTopology } from "../tests/support/topology.ts";
import { eventually, ExecutableProcess, freePort } from "../tests/support/process.ts";
import { KubeClient } from "../src/k8s/client.ts";
import { RESOURCES } from "../src/k8s/resources.ts";
import { runLimited } from "../src/k8s/run_limited.ts";

const SERVICES = Number(Deno.env.get("SERVICES") ?? 500);
const SAMPLE_MS = 10;
// deno-lint-ignore no-explicit-any
type Json = any;

function percentile(samples: number[], p: number): number {
  const s = [...samples].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

await using topo = await startTopology({ nodes: 3, namePrefix: "bench" });
using admin = await KubeClient.connect({ kubeconfig: topo.cp.kubeconfig("admin") });
const processes = [
  await ExecutableProcess.start("controller", [
    `--kubeconfig=${topo.cp.kubeconfig("controller")}`,
    `--metrics-addr=127.0.0.1:${freePort()}`,
    `--health-addr=127.0.0.1:${freePort()}`,
    "--grace-period=1s",
    "--log-level=warn",
  ], { logFile: `${topo.cp.dir}/controller.log` }),
  ...await Promise.all(topo.nodes.map((n) => topo.startAgent(n, ["--log-level=warn"]))),
];
try {
  await admin.create(RESOURCES.ipRules, {
    metadata: { name: "bench" },
    spec: { cidrs: ["10.0.0.0/16"], table: 100 },
  });
  // Services first, without LB IPs: the burst is the LB provider assigning them.
  const clusterIP = new Map<number, string>();
  await runLimited([...Array(SERVICES).keys()], 16, async (i) => {
    const svc: Json = await admin.create(RESOURCES.services, {
      metadata: { name: `svc-${i}`, namespace: "default" },
      spec: { type: "LoadBalancer", allocateLoadBalancerNodePorts: false, ports: [{ port: 80 }] },
    }, "default");
    clusterIP.set(i, svc.spec.clusterIPs[0]);
  });

  // Sampler: first time each source is present on (or absent from) all three nodes.
  const presentAll = new Map<string, number>();
  const goneAll = new Map<string, number>();
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const outs = await Promise.all(topo.nodes.map((n) => n.ns.run(["ip", "rule", "show"])));
      const now = performance.now();
      const sets = outs.map((o) =>
        new Set([...o.stdout.matchAll(/from (\S+) lookup/g)].map((m) => m[1]!))
      );
      for (const ip of clusterIP.values()) {
        const everywhere = sets.every((s) => s.has(ip));
        const nowhere = sets.every((s) => !s.has(ip));
        if (everywhere && !presentAll.has(ip)) presentAll.set(ip, now);
        if (nowhere && presentAll.has(ip) && !goneAll.has(ip)) goneAll.set(ip, now);
      }
      await new Promise((r) => setTimeout(r, SAMPLE_MS));
    }
  })();

  const assigned = new Map<string, number>();
  const burst = performance.now();
  await runLimited([...Array(SERVICES).keys()], 16, async (i) => {
    const ip = clusterIP.get(i)!;
    assigned.set(ip, performance.now());
    await admin.mergePatch(RESOURCES.services, `svc-${i}`, {
      status: { loadBalancer: { ingress: [{ ip: `10.0.${i >> 8}.${i & 255}` }] } },
    }, { namespace: "default", subresource: "status" });
  });
  await eventually("every rule on every node", () => presentAll.size === SERVICES, 120_000);
  const converged = performance.now() - burst;
  const deleted = new Map<string, number>();
  await runLimited([...Array(SERVICES).keys()], 16, async (i) => {
    deleted.set(clusterIP.get(i)!, performance.now());
    await admin.delete(RESOURCES.services, `svc-${i}`, { namespace: "default" });
  });
  await eventually("every rule gone from every node", () => goneAll.size === SERVICES, 120_000);
  sampling = false;
  await sampler;

  const up = [...assigned].map(([ip, t]) => presentAll.get(ip)! - t);
  const down = [...deleted].map(([ip, t]) => goneAll.get(ip)! - t);
  console.log(
    `e2e: 3 nodes, ${SERVICES} LoadBalancer Services in a burst (kernels sampled every ${SAMPLE_MS} ms)`,
  );
  console.log(
    `  LB IP assigned -> rule on all 3 nodes: median ${percentile(up, 50).toFixed(0)} ms, p99 ${
      percentile(up, 99).toFixed(0)
    } ms (target p99 < 1000 ms)`,
  );
  console.log(
    `  Service deleted -> rule gone everywhere: median ${percentile(down, 50).toFixed(0)} ms, p99 ${
      percentile(down, 99).toFixed(0)
    } ms (target p99 < 1000 ms)`,
  );
  console.log(`  whole burst converged in ${converged.toFixed(0)} ms`);
} finally {
  for (const p of processes) await p.stop();
}
