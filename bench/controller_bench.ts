/**
 * Controller benchmark against a local control plane (issues 5, 17): LoadBalancer Services
 * (half dual-stack) and 50 IPRules, at each size of SIZES (default 10,000 and 50,000), each in a
 * fresh control plane. Measures: controller start → every config written (converge); API
 * writes in 60 s of steady state (a full resync runs in that window where the controller has
 * `--resync-period`); one Service's LB IP update → its config changed, median and p99 over 200,
 * and the controller's CPU per change; reconcile durations by kind; peak RSS. Targets: converge
 * 10k < 30 s, 0 steady writes, p99 < 30 ms at 10k and the 50k p99 within 1.5× the 10k p99 (the
 * cost of a change independent of the cluster's size), RSS at 10k ≤ 237 MiB.
 *
 * Runs against any tree of this repository since issue 13 (where the controller has no
 * `--resync-period`, the steady window has no resync; reconcile kinds are read as listed).
 * `SIZES=10000` runs one size; `UPDATES`, `STEADY_SECONDS` change the counts.
 *
 * A setup is saved (etcd's data, under `.cache/bench/controller-setup/`) and later runs of the
 * same size, CRDs and RBAC start from it: Kubernetes 1.36's ClusterIP allocator lists every
 * IPAddress of the family twice per allocation (`Allocator.Used()` for its metrics), so creating
 * 50,000 Services is quadratic — about an hour on a 2-core machine (10,000: 3-4 minutes).
 * `FRESH_SETUP=1` makes the setup anew (and saves it).
 */
import { type ControlPlane, startControlPlane } from "../tests/support/controlplane.ts";
import { eventually, ExecutableProcess, freePort } from "../tests/support/process.ts";
import { KubeClient } from "../src/k8s/client.ts";
import { RESOURCES } from "../src/k8s/resources.ts";
import { runLimited } from "../src/k8s/run_limited.ts";

const SIZES = (Deno.env.get("SIZES") ?? Deno.env.get("SERVICES") ?? "10000,50000").split(",")
  .map(Number);
const UPDATES = Number(Deno.env.get("UPDATES") ?? 200);
const STEADY_MS = Number(Deno.env.get("STEADY_SECONDS") ?? 60) * 1000;
const CONFIGS_PATH = "/apis/api.operator.brtrm.dev/v1alpha1/ipruleconfigs";
const FLAGS_FILE = new URL("../src/controller/flags.ts", import.meta.url);
const SETUP_CACHE = new URL("../.cache/bench/controller-setup/", import.meta.url).pathname;
/** Changes whenever the setup below creates other objects (saved setups are then not reused). */
const SETUP_VERSION = "1";
/**
 * `TRACE=dir`: the controller logs at info (every config write, with its time) and V8 traces its
 * garbage collections; its log and each change's timeline (patch sent, patch answered, config
 * seen; wall-clock ms) are kept in dir, to find where a slow change's time went.
 */
const TRACE = Deno.env.get("TRACE");
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

/** CPU seconds (user + system) a process has used so far. */
function cpuSeconds(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ").map(Number);
  return (f[11]! + f[12]!) / 100; // utime + stime, in clock ticks of 10 ms
}

/** What one size measured. */
interface Figures {
  services: number;
  setupS: number;
  convergeS: number;
  steadyWrites: number;
  resyncs: number;
  medianMs: number;
  p99Ms: number;
  cpuMsPerChange: number;
  reconciles: string;
  peakRssMiB: number;
}

/**
 * The controller's V8 old-space ceiling for a cluster this size: the shipped 192 MiB
 * (scripts/permissions.ts) holds ~30k Services; beyond, the bench raises it in proportion.
 */
function heapCeilingMiB(services: number): number | undefined {
  return services <= 30_000 ? undefined : Math.ceil(services / 10_000) * 200;
}

/**
 * A deno that runs with a larger old-space ceiling: V8 takes the last `--v8-flags` value, so a
 * wrapper adds one after the shipped flags the test helper passes, right before the script.
 */
async function raisedHeapRuntime(dir: string, mib: number): Promise<string> {
  const path = `${dir}/deno-heap-${mib}`;
  await Deno.writeTextFile(
    path,
    [
      "#!/bin/bash",
      "args=()",
      'for a in "$@"; do',
      `  if [[ $a == *.ts && -z $added ]]; then args+=(--v8-flags=--max-old-space-size=${mib}); added=1; fi`,
      '  args+=("$a")',
      "done",
      `exec "${Deno.execPath()}" "\${args[@]}"`,
      "",
    ].join("\n"),
    { mode: 0o755 },
  );
  return path;
}

/** Where the setup of `services` Services is saved: keyed by the size and what it was made of. */
async function savedSetup(services: number): Promise<string> {
  const parts = [SETUP_VERSION, String(services)];
  for (const dir of ["crds", "deploy"]) {
    const url = new URL(`../${dir}/`, import.meta.url);
    const names = [...Deno.readDirSync(url)].map((e) => e.name).filter((n) => n.endsWith(".yaml"));
    for (const name of names.sort()) {
      if (dir === "crds" || name === "rbac.yaml" || name === "namespace.yaml") {
        parts.push(name, await Deno.readTextFile(new URL(name, url)));
      }
    }
  }
  const hash = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(parts.join("\0")));
  const hex = [...new Uint8Array(hash)].slice(0, 6).map((b) => b.toString(16).padStart(2, "0"));
  return `${SETUP_CACHE}${services}-${hex.join("")}`;
}

/** Creates the IPRules and Services (with their LB IPs) and saves the result; returns seconds. */
async function setUp(
  cp: ControlPlane,
  admin: KubeClient,
  services: number,
  saved: string,
): Promise<number> {
  await cp.kubectl(["apply", "-f", "deploy/namespace.yaml", "-f", "deploy/rbac.yaml"]);
  console.log(`setup: 50 IPRules, ${services} LoadBalancer Services (half dual-stack)...`);
  const setupStart = performance.now();
  for (let r = 0; r < 50; r++) {
    // Every 10th IPRule also covers a wide /15 over the next one's /16: overlaps and conflicts.
    const cidrs = [`10.${100 + r}.0.0/16`, `fd00:${(r + 1).toString(16)}::/32`];
    if (r % 10 === 0) cidrs.push(`10.${100 + r}.0.0/15`);
    await admin.create(RESOURCES.ipRules, {
      metadata: { name: `rule-${r}` },
      spec: { cidrs: [...new Set(cidrs)], table: 1000 + r, priority: 1000 + (r % 5) },
    });
  }
  const indices = Array.from({ length: services }, (_, i) => i);
  const failed = await runLimited(indices, 32, async (i) => {
    await admin.create(RESOURCES.services, {
      metadata: { name: `svc-${i}`, namespace: "default" },
      spec: {
        type: "LoadBalancer",
        // NodePorts (30000-32767) would run out after 2,768 Services; LB providers can skip them.
        allocateLoadBalancerNodePorts: false,
        ports: [{ port: 80 }],
        ...(i % 2 === 0
          ? { ipFamilyPolicy: "RequireDualStack", ipFamilies: ["IPv4", "IPv6"] }
          : {}),
      },
    }, "default");
    await admin.mergePatch(RESOURCES.services, `svc-${i}`, {
      status: { loadBalancer: { ingress: lbIPs(i).map((ip) => ({ ip })) } },
    }, { namespace: "default", subresource: "status" });
  });
  if (failed.length > 0) {
    throw new Error(`${failed.length} Services not set up: ${failed[0]!.error}`);
  }
  const setupS = (performance.now() - setupStart) / 1000;
  console.log(`setup done in ${setupS.toFixed(1)} s`);
  await Deno.mkdir(SETUP_CACHE, { recursive: true });
  await Deno.remove(saved, { recursive: true }).catch(() => {});
  await cp.saveEtcd(saved);
  return setupS;
}

async function measure(services: number, resyncFlag: boolean): Promise<Figures> {
  const saved = await savedSetup(services);
  const reuse = !Deno.env.get("FRESH_SETUP") &&
    await Deno.stat(saved).then(() => true, () => false);
  await using cp = await startControlPlane(reuse ? { etcdData: saved } : {});
  using admin = await KubeClient.connect({ kubeconfig: cp.kubeconfig("admin") });
  const setupS = reuse ? 0 : await setUp(cp, admin, services, saved);
  if (reuse) console.log(`setup: restored from ${saved} (FRESH_SETUP=1 makes it anew)`);
  const expected = services * 1.5;

  const countConfigs = async () => {
    const page: Json = await admin.request("GET", CONFIGS_PATH, { query: { limit: 1 } });
    return page.items.length + (page.metadata.remainingItemCount ?? 0);
  };

  const port = freePort();
  const heap = heapCeilingMiB(services);
  if (heap) console.log(`controller heap ceiling raised to ${heap} MiB for ${services} Services`);
  const runtime = heap ? { runtime: await raisedHeapRuntime(cp.dir, heap) } : {};
  const started = performance.now();
  const startedWall = Date.now();
  const ctl = await ExecutableProcess.start("controller", [
    `--kubeconfig=${cp.kubeconfig("controller")}`,
    `--metrics-addr=127.0.0.1:${port}`,
    "--metrics-insecure",
    `--health-addr=127.0.0.1:${freePort()}`,
    `--log-level=${TRACE ? "info" : "warn"}`,
    // A resync inside the steady window: it must find nothing to write.
    ...(resyncFlag ? [`--resync-period=${Math.max(1, Math.floor(STEADY_MS / 2000))}s`] : []),
  ], {
    ...runtime,
    logFile: `${cp.dir}/controller.log`,
    // CTL_V8 tries other V8 flags (DENO_V8_FLAGS) without changing scripts/permissions.ts.
    env: TRACE
      ? { DENO_V8_FLAGS: [Deno.env.get("CTL_V8"), "--trace-gc"].filter(Boolean).join(",") }
      : Deno.env.get("CTL_V8")
      ? { DENO_V8_FLAGS: Deno.env.get("CTL_V8")! }
      : {},
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
    await eventually(
      "every config written",
      async () => (await countConfigs()) >= expected,
      600_000,
    );
    const convergeS = (performance.now() - started) / 1000;
    rss();
    console.log(
      `converge: ${expected} configs written ${convergeS.toFixed(1)} s after controller start`,
    );

    const scrape = async () => {
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      return (name: string) =>
        text.split("\n").filter((l) => l.startsWith(name)).reduce(
          (n, l) => n + Number(l.split(" ").pop()),
          0,
        );
    };
    const writes = (m: (name: string) => number) =>
      ["POST", "PUT", "PATCH", "DELETE"].reduce(
        (n, v) => n + m(`iprule_controller_api_requests{verb="${v}"}`),
        0,
      );
    const resyncs = (m: (name: string) => number) =>
      m('iprule_controller_reconciles_total{kind="resync"');
    // Let the last status writes and requeues settle, then count writes over the window.
    await new Promise((r) => setTimeout(r, 3000));
    const before = await scrape();
    await new Promise((r) => setTimeout(r, STEADY_MS));
    const after = await scrape();
    const steadyWrites = writes(after) - writes(before);
    const steadyResyncs = resyncs(after) - resyncs(before);
    rss();
    console.log(
      `steady: ${steadyWrites} API writes, ${steadyResyncs} full resync(s) in ${
        STEADY_MS / 1000
      } s (target 0 writes)`,
    );

    // One Service's LB IP moves to another IPRule: time until its config's table changed.
    const latencies: number[] = [];
    const timeline: { name: string; sent: number; answered: number; seen: number }[] = [];
    const watchAbort = new AbortController();
    const seen = new Map<string, (table: number) => void>();
    const list: Json = await admin.request("GET", CONFIGS_PATH, { query: { limit: 1 } });
    const watching = (async () => {
      for await (
        const ev of admin.watch(CONFIGS_PATH, {
          resourceVersion: list.metadata.resourceVersion,
        }, watchAbort.signal)
      ) {
        const o = ev.object as Json;
        seen.get(o.metadata?.name)?.(o.spec?.table);
      }
    })().catch(() => {});
    const clusterIPs = new Map<number, string>();
    for (let u = 0; u < UPDATES; u++) {
      const i = 1 + 2 * u; // single-stack Services
      const svc: Json = await admin.get(RESOURCES.services, `svc-${i}`, "default");
      clusterIPs.set(i, svc.spec.clusterIPs[0]);
    }
    if (resyncFlag) {
      // The changes start right after a resync, so that none falls among them: the CPU they
      // cost is theirs alone (a resync plans in slices, its duration is not its CPU).
      const done = resyncs(await scrape());
      await eventually("a resync done", async () => resyncs(await scrape()) > done, STEADY_MS);
    }
    const beforeChanges = await scrape();
    const cpuBefore = cpuSeconds(ctl.pid);
    const changeStart = performance.now();
    for (let u = 0; u < UPDATES; u++) {
      const i = 1 + 2 * u;
      const name = `iprc-${clusterIPs.get(i)!.replaceAll(".", "-")}`;
      const ips = lbIPs(i, 1);
      const table = 1000 + Number(ips[0]!.split(".")[1]) - 100;
      const changed = new Promise<void>((resolve) =>
        seen.set(name, (t) => t === table && resolve())
      );
      const t0 = performance.now();
      const sent = Date.now();
      await admin.mergePatch(RESOURCES.services, `svc-${i}`, {
        status: { loadBalancer: { ingress: ips.map((ip) => ({ ip })) } },
      }, { namespace: "default", subresource: "status" });
      const answered = Date.now();
      await changed;
      latencies.push(performance.now() - t0);
      timeline.push({ name, sent, answered, seen: Date.now() });
      seen.delete(name);
    }
    const changeS = (performance.now() - changeStart) / 1000;
    // The status writes of the last changes follow within a moment; count them in.
    await new Promise((r) => setTimeout(r, 500));
    const cpuS = cpuSeconds(ctl.pid) - cpuBefore;
    const afterChanges = await scrape();
    const resyncsMeanwhile = resyncs(afterChanges) - resyncs(beforeChanges);
    const cpuMsPerChange = 1000 * cpuS / UPDATES;
    watchAbort.abort();
    await watching;
    rss();
    const medianMs = percentile(latencies, 50);
    const p99Ms = percentile(latencies, 99);
    console.log(
      `update: LB IP change → config updated, median ${medianMs.toFixed(1)} ms, p99 ${
        p99Ms.toFixed(1)
      } ms over ${UPDATES} (${changeS.toFixed(1)} s); controller CPU ${
        cpuMsPerChange.toFixed(2)
      } ms per change${
        resyncsMeanwhile > 0 ? ` (including ${resyncsMeanwhile} resync(s) that came meanwhile)` : ""
      }`,
    );
    if (TRACE) {
      await Deno.mkdir(TRACE, { recursive: true });
      await Deno.writeTextFile(
        `${TRACE}/changes-${services}.json`,
        JSON.stringify({ controllerStarted: startedWall, timeline }),
      );
      await Deno.copyFile(`${cp.dir}/controller.log`, `${TRACE}/controller-${services}.log`);
    }
    const m = await scrape();
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const kinds = [...text.matchAll(/reconcile_duration_seconds_count\{kind="([^"]+)"\}/g)]
      .map((k) => k[1]!).filter((k) => k !== "agent");
    const reconciles = kinds.map((kind) => {
      const count = m(`iprule_controller_reconcile_duration_seconds_count{kind="${kind}"}`);
      const sum = m(`iprule_controller_reconcile_duration_seconds_sum{kind="${kind}"}`);
      return `${kind} ${count} × ${(1000 * sum / count).toFixed(1)} ms`;
    }).join(", ");
    // Every reconcile counted with a result other than success (the Agent's are not ours here).
    const errors = [...text.matchAll(/reconciles_total\{kind="([^"]+)",result="([^"]+)"\} (\S+)/g)]
      .filter((r) => r[1] !== "agent" && r[2] !== "success")
      .reduce((n, r) => n + Number(r[3]), 0);
    const codes = [...text.matchAll(/api_responses_total\{verb="([^"]+)",code="([^"]+)"\} (\S+)/g)]
      .filter((r) => !r[2]!.startsWith("2")).map((r) => `${r[1]} ${r[2]}: ${r[3]}`);
    console.log(`reconciles (count × mean): ${reconciles}; ${errors} failed`);
    if (codes.length > 0) console.log(`API responses other than 2xx: ${codes.join(", ")}`);
    const heap = m("iprule_controller_nodejs_heap_size_used_bytes") / 2 ** 20;
    console.log(
      `memory: controller peak RSS ${peakRss.toFixed(0)} MiB, heap used now ${heap.toFixed(0)} MiB`,
    );
    return {
      services,
      setupS,
      convergeS,
      steadyWrites,
      resyncs: steadyResyncs,
      medianMs,
      p99Ms,
      cpuMsPerChange,
      reconciles,
      peakRssMiB: peakRss,
    };
  } finally {
    await ctl.stop();
  }
}

const resyncFlag = (await Deno.readTextFile(FLAGS_FILE)).includes('"resync-period"');
const results: Figures[] = [];
for (const size of SIZES) {
  console.log(`== ${size} Services (load average ${Deno.loadavg().map((l) => l.toFixed(2))})`);
  results.push(await measure(size, resyncFlag));
}
console.log(
  `\nsummary (load average now ${Deno.loadavg().map((l) => l.toFixed(2)).join(" ")}; ` +
    `${resyncFlag ? "" : "no --resync-period in this tree, "}targets in brackets):`,
);
console.log("  services  converge  steady writes  median ms  p99 ms  CPU ms/change  peak RSS");
for (const r of results) {
  console.log(
    `  ${String(r.services).padStart(8)}  ${r.convergeS.toFixed(1).padStart(7)} s` +
      `  ${String(r.steadyWrites).padStart(13)}  ${r.medianMs.toFixed(1).padStart(9)}` +
      `  ${r.p99Ms.toFixed(1).padStart(6)}  ${r.cpuMsPerChange.toFixed(2).padStart(13)}` +
      `  ${r.peakRssMiB.toFixed(0).padStart(4)} MiB`,
  );
}
const small = results.find((r) => r.services === 10_000);
const large = results.find((r) => r.services === 50_000);
if (small) {
  console.log(
    `  10k: p99 ${small.p99Ms.toFixed(1)} ms [< 30], converge ${
      small.convergeS.toFixed(1)
    } s [< 30], RSS ${
      small.peakRssMiB.toFixed(0)
    } MiB [≤ 237], steady writes ${small.steadyWrites} [0]`,
  );
}
if (small && large) {
  console.log(
    `  50k p99 / 10k p99 = ${(large.p99Ms / small.p99Ms).toFixed(2)} [≤ 1.5]; CPU per change ` +
      `${large.cpuMsPerChange.toFixed(2)} vs ${small.cpuMsPerChange.toFixed(2)} ms`,
  );
}
