/**
 * Controller benchmark against a local control plane (issue 5): 10,000 LoadBalancer Services
 * (half dual-stack) and 50 IPRules. Measures: controller start → every config written; one
 * Service's LB IP update → its config changed (median, p99 over 200); API writes in 60 s of
 * steady state; peak RSS. Targets: < 30 s, p99 < 100 ms, 0 writes, < 256 MiB.
 */
import { startControlPlane } from "../tests/support/controlplane.ts";
import { eventually, ExecutableProcess, freePort } from "../tests/support/process.ts";
import { KubeClient } from "../src/k8s/client.ts";
import { RESOURCES } from "../src/k8s/resources.ts";
import { runLimited } from "../src/k8s/run_limited.ts";

const SERVICES = Number(Deno.env.get("SERVICES") ?? 10_000);
const UPDATES = Number(Deno.env.get("UPDATES") ?? 200);
const STEADY_MS = Number(Deno.env.get("STEADY_SECONDS") ?? 60) * 1000;
// deno-lint-ignore no-explicit-any
type Json = any;

function percentile(samples: number[], p: number): number {
  const s = [...samples].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

function lbIPs(i: number, variant = 0): string[] {
  const rule = (i + variant * 7) % 50;
  const host = 1 + (i % 250);
  const third = Math.floor(i / 250) % 200;
  const v4 = `10.${100 + rule}.${third}.${host}`;
  return i % 2 === 0
    ? [v4, `fd00:${(rule + 1).toString(16)}:${third.toString(16)}::${host.toString(16)}`]
    : [v4];
}

await using cp = await startControlPlane();
await cp.kubectl(["apply", "-f", "deploy/namespace.yaml", "-f", "deploy/rbac.yaml"]);
using admin = await KubeClient.connect({ kubeconfig: cp.kubeconfig("admin") });

console.log(`setup: 50 IPRules, ${SERVICES} LoadBalancer Services (half dual-stack)...`);
const setupStart = performance.now();
for (let r = 0; r < 50; r++) {
  // Every 10th IPRule also covers a wide /8 over the others: overlaps and conflicts.
  const cidrs = [`10.${100 + r}.0.0/16`, `fd00:${(r + 1).toString(16)}::/32`];
  if (r % 10 === 0) cidrs.push(`10.${100 + r}.0.0/15`);
  await admin.create(RESOURCES.ipRules, {
    metadata: { name: `rule-${r}` },
    spec: { cidrs: [...new Set(cidrs)], table: 1000 + r, priority: 1000 + (r % 5) },
  });
}
const indices = Array.from({ length: SERVICES }, (_, i) => i);
const failed = await runLimited(indices, 32, async (i) => {
  await admin.create(RESOURCES.services, {
    metadata: { name: `svc-${i}`, namespace: "default" },
    spec: {
      type: "LoadBalancer",
      // NodePorts (30000-32767) would run out after 2,768 Services; LB providers can skip them.
      allocateLoadBalancerNodePorts: false,
      ports: [{ port: 80 }],
      ...(i % 2 === 0 ? { ipFamilyPolicy: "RequireDualStack", ipFamilies: ["IPv4", "IPv6"] } : {}),
    },
  }, "default");
  await admin.mergePatch(RESOURCES.services, `svc-${i}`, {
    status: { loadBalancer: { ingress: lbIPs(i).map((ip) => ({ ip })) } },
  }, { namespace: "default", subresource: "status" });
});
if (failed.length > 0) throw new Error(`${failed.length} Services not set up: ${failed[0]!.error}`);
console.log(`setup done in ${((performance.now() - setupStart) / 1000).toFixed(1)} s`);
const expected = SERVICES * 1.5;

const countConfigs = async () => {
  const page: Json = await admin.request(
    "GET",
    "/apis/api.operator.brtrm.dev/v1alpha1/ipruleconfigs",
    {
      query: { limit: 1 },
    },
  );
  return page.items.length + (page.metadata.remainingItemCount ?? 0);
};

const port = freePort();
const started = performance.now();
const ctl = await ExecutableProcess.start("controller", [
  `--kubeconfig=${cp.kubeconfig("controller")}`,
  `--metrics-addr=127.0.0.1:${port}`,
  "--metrics-insecure",
  `--health-addr=127.0.0.1:${freePort()}`,
  "--log-level=warn",
], {
  logFile: `${cp.dir}/controller.log`,
  // CTL_V8 tries other V8 flags (DENO_V8_FLAGS) without changing scripts/permissions.ts.
  env: Deno.env.get("CTL_V8") ? { DENO_V8_FLAGS: Deno.env.get("CTL_V8")! } : {},
});
let peakRss = 0;
const rss = () => {
  try {
    const status = Deno.readTextFileSync(`/proc/${ctl.pid}/status`); // VmHWM: peak RSS
    const kb = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
    peakRss = Math.max(peakRss, kb / 1024);
  } catch { /* exited */ }
};
try {
  await eventually("every config written", async () => (await countConfigs()) >= expected, 300_000);
  const convergeS = (performance.now() - started) / 1000;
  rss();
  console.log(
    `converge: ${expected} configs written ${
      convergeS.toFixed(1)
    } s after controller start (target < 30 s)`,
  );

  const metric = async (name: string) => {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    return text.split("\n").filter((l) => l.startsWith(name)).reduce(
      (n, l) => n + Number(l.split(" ").pop()),
      0,
    );
  };
  // Let the last status writes and requeues settle, then count writes over the window.
  await new Promise((r) => setTimeout(r, 3000));
  const writeVerbs = ["POST", "PUT", "PATCH", "DELETE"];
  const writes = async () => {
    let n = 0;
    for (const v of writeVerbs) n += await metric(`iprule_controller_api_requests{verb="${v}"}`);
    return n;
  };
  const before = await writes();
  const gets = await metric('iprule_controller_api_requests{verb="GET"}');
  await new Promise((r) => setTimeout(r, STEADY_MS));
  const steadyWrites = (await writes()) - before;
  const steadyGets = (await metric('iprule_controller_api_requests{verb="GET"}')) - gets;
  rss();
  console.log(
    `steady: ${steadyWrites} API writes and ${steadyGets} GETs in ${
      STEADY_MS / 1000
    } s (target 0 writes)`,
  );

  // One Service's LB IP moves to another IPRule: time until its config's table changed.
  const latencies: number[] = [];
  const watchAbort = new AbortController();
  const seen = new Map<string, (table: number) => void>();
  const list: Json = await admin.request(
    "GET",
    "/apis/api.operator.brtrm.dev/v1alpha1/ipruleconfigs",
    {
      query: { limit: 1 },
    },
  );
  const watching = (async () => {
    for await (
      const ev of admin.watch("/apis/api.operator.brtrm.dev/v1alpha1/ipruleconfigs", {
        resourceVersion: list.metadata.resourceVersion,
      }, watchAbort.signal)
    ) {
      const o = ev.object as Json;
      seen.get(o.metadata?.name)?.(o.spec?.table);
    }
  })().catch(() => {});
  for (let u = 0; u < UPDATES; u++) {
    const i = 1 + 2 * u; // single-stack Services
    const svc: Json = await admin.get(RESOURCES.services, `svc-${i}`, "default");
    const name = `iprc-${svc.spec.clusterIPs[0].replaceAll(".", "-")}`;
    const ips = lbIPs(i, 1);
    const table = 1000 + Number(ips[0]!.split(".")[1]) - 100;
    const changed = new Promise<void>((resolve) => seen.set(name, (t) => t === table && resolve()));
    const t0 = performance.now();
    await admin.mergePatch(RESOURCES.services, `svc-${i}`, {
      status: { loadBalancer: { ingress: ips.map((ip) => ({ ip })) } },
    }, { namespace: "default", subresource: "status" });
    await changed;
    latencies.push(performance.now() - t0);
    seen.delete(name);
  }
  watchAbort.abort();
  await watching;
  rss();
  console.log(
    `update: LB IP change → config updated, median ${percentile(latencies, 50).toFixed(1)} ms, ` +
      `p99 ${percentile(latencies, 99).toFixed(1)} ms over ${UPDATES} (target p99 < 100 ms)`,
  );
  const heap = await metric("iprule_controller_nodejs_heap_size_used_bytes") / 2 ** 20;
  const reconcileMs = 1000 *
    await metric('iprule_controller_reconcile_duration_seconds_sum{kind="configs"}') /
    await metric('iprule_controller_reconcile_duration_seconds_count{kind="configs"}');
  console.log(`reconcile: mean ${reconcileMs.toFixed(1)} ms per configs reconcile`);
  console.log(
    `memory: controller peak RSS ${peakRss.toFixed(0)} MiB, heap used now ${heap.toFixed(0)} MiB ` +
      `(target RSS < 256 MiB)`,
  );
} finally {
  await ctl.stop();
}
