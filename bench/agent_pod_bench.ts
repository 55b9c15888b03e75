/**
 * Start-up time and peak memory of the agent Pod on a real kubelet node, under its 128 MiB
 * limit, with and without a small emptyDir at /tmp for Deno's code cache (issue #19.5). One node,
 * the operator installed from deploy/ (namespace, RBAC, controller) without an Agent; the
 * DaemonSet is the controller's rendering (renderDaemonSet) with or without the emptyDir, so both
 * variants differ in nothing else. Per variant: fresh Pods (a DaemonSet Pod deleted and
 * recreated: a new emptyDir) and container restarts in the same Pod (the process killed: the
 * emptyDir and its code cache stay).
 *
 * Start-up: the container's process start (/proc/<pid>/stat) to the first 200 of its /readyz,
 * polled every 10 ms from the host. Peak memory: the process's VmHWM, and the container cgroup's
 * memory.max_usage_in_bytes (what the limit counts, page cache included), read once Ready.
 * With the stand-in images this measures `deno run` of the unbundled sources, whose code cache
 * is a DENO_DIR database linked to /tmp (scripts/standin.ts); a compiled agent keeps its own at
 * /tmp/deno-compile-iprule-agent.cache.
 *
 *   deno run -A bench/agent_pod_bench.ts [rounds=5]
 */
import { startCluster } from "../tests/support/cluster.ts";
import {
  containerPid,
  getJson,
  install,
  type Json,
  NS,
  waitFor,
} from "../tests/support/operator.ts";
import { AGENT_METRICS_PORT, renderDaemonSet } from "../src/controller/daemonset.ts";
import type { Agent } from "../src/api/types.ts";

const rounds = Number(Deno.args[0] ?? 5);
await using cluster = await startCluster({ nodes: 1, log: (l) => console.error(l) });
const node = cluster.nodes[0]!;
await install(cluster);
// Only the controller's objects: no Agent, so the DaemonSet here is the only agent.
await cluster.cp.kubectl(["-n", NS, "delete", "agent", "agent", "--wait"]);
await cluster.cp.kubectl(["delete", "iprule", "--all"]);

const agent: Agent = {
  apiVersion: "api.operator.brtrm.dev/v1alpha1",
  kind: "Agent",
  metadata: { name: "agent", namespace: NS, uid: "bench" },
  spec: {},
} as Agent;

function daemonSet(emptyDir: boolean): Json {
  const ds: Json = renderDaemonSet(agent, { defaultImage: cluster.images.agent });
  ds.metadata.name = "bench-agent";
  delete ds.metadata.ownerReferences;
  if (emptyDir) {
    const pod = ds.spec.template.spec;
    pod.volumes.push({ name: "tmp", emptyDir: { sizeLimit: "32Mi" } });
    pod.containers[0].volumeMounts.push({ name: "tmp", mountPath: "/tmp" });
  }
  return ds;
}

async function readyPod(): Promise<Json> {
  let pod: Json;
  await waitFor("a Ready bench agent", async () => {
    const pods = await getJson(cluster, ["-n", NS, "get", "pods", "-l", "app=iprule-agent"]);
    pod = pods.items.find((p: Json) =>
      !p.metadata.deletionTimestamp &&
      p.status.containerStatuses?.[0]?.ready === true
    );
    return pod !== undefined;
  });
  return pod;
}

const CLOCK_TICKS = 100;
function startedAtMs(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(fields[19]);
  const uptime = Number(Deno.readTextFileSync("/proc/uptime").split(" ")[0]);
  return Date.now() - (uptime * 1000 - (ticks * 1000) / CLOCK_TICKS);
}

/** Waits for a new agent process (other than `previous`), then for its /readyz. */
async function measure(previous: number | undefined): Promise<{ ms: number; pid: number }> {
  let pid = 0;
  await waitFor("the agent's new process", async () => {
    const pods = await getJson(cluster, ["-n", NS, "get", "pods", "-l", "app=iprule-agent"]);
    const pod = pods.items.find((p: Json) =>
      !p.metadata.deletionTimestamp && p.status.containerStatuses?.[0]?.state?.running
    );
    if (!pod) return false;
    pid = await containerPid(cluster, pod).catch(() => 0);
    return pid !== 0 && pid !== previous;
  }, 60_000);
  const start = startedAtMs(pid);
  const url = `http://${node.address}:${AGENT_METRICS_PORT}/readyz`;
  for (;;) {
    const res = await fetch(url).catch(() => undefined);
    await res?.body?.cancel();
    if (res?.status === 200) break;
    await new Promise((r) => setTimeout(r, 10));
  }
  return { ms: Date.now() - start, pid };
}

function memory(pid: number): { hwm: number; cgroupMax: number } {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const hwm = Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1]) * 1024;
  const line = Deno.readTextFileSync(`/proc/${pid}/cgroup`).split("\n").find((l) =>
    /:memory:/.test(l)
  );
  const path = line?.split(":")[2];
  const cgroupMax = path
    ? Number(Deno.readTextFileSync(`/sys/fs/cgroup/memory${path}/memory.max_usage_in_bytes`))
    : NaN;
  return { hwm, cgroupMax };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const mib = (n: number) => (n / 1048576).toFixed(1);

for (const emptyDir of [false, true]) {
  await cluster.cp.kubectl(["apply", "-f", "-"], { stdin: JSON.stringify(daemonSet(emptyDir)) });
  const results: Record<"pod" | "restart", { ms: number; hwm: number; cgroupMax: number }[]> = {
    pod: [],
    restart: [],
  };
  let pid: number | undefined;
  for (let i = 0; i < rounds; i++) {
    // A fresh Pod (new emptyDir), then a restart of its container (same emptyDir).
    const pod = await readyPod();
    await cluster.cp.kubectl(["-n", NS, "delete", "pod", pod.metadata.name, "--wait=false"]);
    let m = await measure(pid);
    results.pod.push({ ms: m.ms, ...memory(m.pid) });
    pid = m.pid;
    await new Promise((r) => setTimeout(r, 2000));
    Deno.kill(pid, "SIGKILL");
    m = await measure(pid);
    results.restart.push({ ms: m.ms, ...memory(m.pid) });
    pid = m.pid;
  }
  for (const kind of ["pod", "restart"] as const) {
    const r = results[kind];
    console.log(
      `${emptyDir ? "emptyDir /tmp" : "no emptyDir  "} ${
        kind === "pod" ? "new Pod  " : "restart  "
      }` +
        ` start→ready median ${median(r.map((x) => x.ms))} ms (${r.map((x) => x.ms).join(", ")});` +
        ` peak RSS median ${mib(median(r.map((x) => x.hwm)))} MiB;` +
        ` cgroup max usage median ${mib(median(r.map((x) => x.cgroupMax)))} MiB`,
    );
  }
  await cluster.cp.kubectl(["-n", NS, "delete", "daemonset", "bench-agent", "--wait"]);
  await waitFor(
    "no bench agent left",
    async () =>
      (await getJson(cluster, ["-n", NS, "get", "pods", "-l", "app=iprule-agent"])).items.length ===
        0,
  );
  pid = undefined;
}
