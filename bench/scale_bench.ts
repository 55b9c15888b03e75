/**
 * Scale benchmark (issue 18): N agents (default 25), each in its own network namespace with its
 * normal flags, and the controller, on one local control plane; every figure of API traffic is
 * counted by the API server itself (`apiserver_request_total`, `apiserver_watch_events_total`,
 * watch-cache and etcd counters from its /metrics), CPU from /proc.
 *
 * Phases:
 * - for each size of SIZES (agents started in steps): a 200-Service burst (the LB provider
 *   assigns every LB IP) and its reverse; status writes per node, watch events to the
 *   controller, convergence (kernel: every agent's applied rules; status: every
 *   IPRuleNodeState), CPU; then the fit of status writes per burst against N, extrapolated to
 *   500 and 5,000 nodes;
 * - at N: idle requests/s; one Service change; one change per second (churn); a failed rule's
 *   and its repair's latency to the IPRuleNodeStates; a rollout (every agent restarted: what
 *   its relist costs, and whether the watch cache served it); the uninstall (Agent deleted →
 *   gone; its agents stopped → every node state at 0 rules).
 *
 * Targets (issue 18): ≤ 2 status writes per node per burst; ≤ N/10 status writes/s under one
 * change per second; a failed rule visible within 2 s; uninstall drain and burst convergence not
 * worse than before the change (run this file with OPERATOR_DIR=<a checkout of the old code> for
 * "before": its executables run, this file measures).
 *
 * Environment: AGENTS (25), SIZES ("5,10,25": agents running at each burst step), SERVICES
 * (200), IDLE_SECONDS (30), CHURN_SECONDS (60), SETTLE_SECONDS (12: no status write for this long
 * ends a phase; longer than the agents' 10 s ±10 % status interval), OPERATOR_DIR, RESULT_JSON
 * (path: every figure as JSON). Needs root and the control-plane binaries, like the e2e tier.
 * The machine's load is printed with the figures: on 2 cores, with N agents, CPU rather than
 * the design bounds the convergence times (see the CPU line of each phase).
 */
import { loadavg } from "node:os";
import { startTopology, type TopologyNode } from "../tests/support/topology.ts";
import { eventually, ExecutableProcess, freePort } from "../tests/support/process.ts";
import { KubeClient } from "../src/k8s/client.ts";
import { RESOURCES } from "../src/k8s/resources.ts";
import { runLimited } from "../src/k8s/run_limited.ts";

const AGENTS = Number(Deno.env.get("AGENTS") ?? 25);
const SIZES = (Deno.env.get("SIZES") ??
  [...new Set([Math.ceil(AGENTS / 5), Math.ceil(AGENTS / 2.5), AGENTS])].join(","))
  .split(",").map(Number).filter((n) => n > 0 && n <= AGENTS);
const SERVICES = Number(Deno.env.get("SERVICES") ?? 200);
const IDLE_MS = Number(Deno.env.get("IDLE_SECONDS") ?? 30) * 1000;
const CHURN_MS = Number(Deno.env.get("CHURN_SECONDS") ?? 60) * 1000;
const SETTLE_MS = Number(Deno.env.get("SETTLE_SECONDS") ?? 12) * 1000;
const OPERATOR_DIR = Deno.env.get("OPERATOR_DIR");
const RESULT_JSON = Deno.env.get("RESULT_JSON");
const NAMESPACE = "ip-rule-operator-system";
const GROUP_PATH = "/apis/api.operator.brtrm.dev/v1alpha1";
const WRITE_VERBS = new Set(["POST", "PUT", "PATCH", "DELETE", "APPLY", "DELETECOLLECTION"]);
/**
 * What the controller and the agents read and write (the API server's own background requests
 * for its Endpoints and Leases, and this benchmark's Services, are not theirs).
 */
const OPERATOR_RESOURCES = new Set([
  "ipruleconfigs",
  "iprulenodestates",
  "iprules",
  "agents",
  "daemonsets",
  "nodes",
  "namespaces",
  "events",
  "tokenreviews",
  "subjectaccessreviews",
]);
const operators = (l: Record<string, string>) => OPERATOR_RESOURCES.has(l.resource ?? "");
// deno-lint-ignore no-explicit-any
type Json = any;

const results: Record<string, unknown> = {
  agents: AGENTS,
  sizes: SIZES,
  services: SERVICES,
  operatorDir: OPERATOR_DIR ?? "this checkout",
  loadAtStart: loadavg(),
};

// ---------------------------------------------------------------------------------------------
// Measuring: the API server's counters, CPU time, the agents' gauges.

/** One series of a Prometheus text exposition. */
interface Series {
  name: string;
  labels: Record<string, string>;
  value: number;
}

function parseMetrics(text: string): Series[] {
  const out: Series[] = [];
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

/** A snapshot of the API server's counters. */
class Counters {
  constructor(readonly series: Series[], readonly at: number) {}

  sum(name: string, match: (labels: Record<string, string>) => boolean = () => true): number {
    let total = 0;
    for (const s of this.series) if (s.name === name && match(s.labels)) total += s.value;
    return total;
  }
}

/** IPRuleNodeState status writes (the agents') so far. */
function statusWrites(counters: Counters): number {
  return counters.sum(
    "apiserver_request_total",
    (l) =>
      l.resource === "iprulenodestates" && l.subresource === "status" &&
      WRITE_VERBS.has(l.verb ?? ""),
  );
}

/** What changed between two snapshots. */
class Delta {
  constructor(readonly before: Counters, readonly after: Counters) {}

  get seconds(): number {
    return (this.after.at - this.before.at) / 1000;
  }

  sum(name: string, match?: (labels: Record<string, string>) => boolean): number {
    return this.after.sum(name, match) - this.before.sum(name, match);
  }

  /** Requests by `verb resource[/subresource]`, largest first. */
  requests(filter: (l: Record<string, string>) => boolean = () => true): [string, number][] {
    const by = new Map<string, number>();
    for (const s of this.after.series) {
      if (s.name !== "apiserver_request_total" || !filter(s.labels)) continue;
      const key = `${s.labels.verb} ${s.labels.resource || "(other)"}${
        s.labels.subresource ? `/${s.labels.subresource}` : ""
      }`;
      by.set(key, (by.get(key) ?? 0) + s.value);
    }
    for (const s of this.before.series) {
      if (s.name !== "apiserver_request_total" || !filter(s.labels)) continue;
      const key = `${s.labels.verb} ${s.labels.resource || "(other)"}${
        s.labels.subresource ? `/${s.labels.subresource}` : ""
      }`;
      by.set(key, (by.get(key) ?? 0) - s.value);
    }
    return [...by].filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]);
  }

  /** IPRuleNodeState status writes (the agents'). */
  get statusWrites(): number {
    return statusWrites(this.after) - statusWrites(this.before);
  }

  /** Agent status writes (the controller's). */
  get agentStatusWrites(): number {
    return this.sum(
      "apiserver_request_total",
      (l) => l.resource === "agents" && l.subresource === "status" && WRITE_VERBS.has(l.verb ?? ""),
    );
  }

  /** Writes of the controller and the agents. */
  get operatorWrites(): number {
    return this.sum(
      "apiserver_request_total",
      (l) => WRITE_VERBS.has(l.verb ?? "") && operators(l),
    );
  }

  /** Watch events of IPRuleNodeStates: only the controller watches them. */
  get controllerNodeStateEvents(): number {
    return this.sum("apiserver_watch_events_total", (l) => l.resource === "iprulenodestates");
  }
}

/** CPU seconds (user + system) of a process, from /proc/<pid>/stat (clock ticks of 10 ms). */
function cpuSeconds(pid: number): number {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

const percentile = (samples: number[], p: number) => {
  const s = [...samples].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const round = (n: number, digits = 1) => Math.round(n * 10 ** digits) / 10 ** digits;

/** Least squares y = a·x + b. */
function fit(points: [number, number][]): { a: number; b: number } {
  const n = points.length;
  const sx = points.reduce((s, [x]) => s + x, 0);
  const sy = points.reduce((s, [, y]) => s + y, 0);
  const sxx = points.reduce((s, [x]) => s + x * x, 0);
  const sxy = points.reduce((s, [x, y]) => s + x * y, 0);
  const d = n * sxx - sx * sx;
  if (n < 2 || d === 0) return { a: n ? sy / sx : 0, b: 0 };
  const a = (n * sxy - sx * sy) / d;
  return { a, b: (sy - a * sx) / n };
}

// ---------------------------------------------------------------------------------------------
// The cluster.

await using topo = await startTopology({ nodes: AGENTS, namePrefix: "scale" });
using admin = await KubeClient.connect({ kubeconfig: topo.cp.kubeconfig("admin") });
const http = Deno.createHttpClient({ caCerts: [topo.cp.caCert] });
const scrape = async (): Promise<Counters> => {
  const res = await fetch(`${topo.cp.server}/metrics`, {
    client: http,
    headers: { authorization: `Bearer ${topo.cp.token("admin")}` },
  });
  return new Counters(parseMetrics(await res.text()), performance.now());
};
const apiserverPid = topo.apiserverPid();
const root = OPERATOR_DIR ? { root: OPERATOR_DIR } : {};

const controller = await ExecutableProcess.start("controller", [
  `--kubeconfig=${topo.cp.kubeconfig("controller")}`,
  `--metrics-addr=127.0.0.1:${freePort()}`,
  "--metrics-insecure",
  `--health-addr=127.0.0.1:${freePort()}`,
  "--log-level=warn",
], { logFile: `${topo.cp.dir}/controller.log`, ...root });
const agents = new Map<TopologyNode, ExecutableProcess>();
const cpu = () => ({
  controller: cpuSeconds(controller.pid),
  apiserver: cpuSeconds(apiserverPid),
  agents: [...agents.values()].reduce((s, a) => s + cpuSeconds(a.pid), 0),
});
type Cpu = ReturnType<typeof cpu>;
const cpuSince = (before: Cpu) => {
  const now = cpu();
  return {
    controller: round(now.controller - before.controller, 2),
    apiserver: round(now.apiserver - before.apiserver, 2),
    agents: round(now.agents - before.agents, 2),
  };
};

async function startAgent(node: TopologyNode): Promise<void> {
  // Deployed by the Agent of NAMESPACE, as the DaemonSet tells its agents (POD_NAMESPACE: an
  // environment variable, so that an earlier checkout's agents run too).
  const proc = await topo.startAgent(node, ["--log-level=warn"], {
    logName: `agent-${node.name}.log`,
    env: { POD_NAMESPACE: NAMESPACE },
    ...root,
  });
  agents.set(node, proc);
}

/** The agents' own gauge of one metric (0 when unreadable). */
async function agentGauge(node: TopologyNode, name: string): Promise<number> {
  try {
    const res = await fetch(`http://${node.address}:9472/metrics`);
    const s = parseMetrics(await res.text()).find((s) => s.name === name);
    return s?.value ?? -1;
  } catch {
    return -1;
  }
}

async function ready(node: TopologyNode): Promise<boolean> {
  try {
    const res = await fetch(`http://${node.address}:9473/readyz`);
    await res.body?.cancel();
    return res.status === 200;
  } catch {
    return false;
  }
}

/** Every IPRuleNodeState's status, by node name (one LIST). */
async function nodeStates(): Promise<Map<string, Json>> {
  const list: Json = await admin.request("GET", `${GROUP_PATH}/iprulenodestates`);
  return new Map(list.items.map((s: Json) => [s.metadata.name, s.status ?? {}]));
}

const converged = (s: Json) =>
  s?.conditions?.some((c: Json) => c.type === "Converged" && c.status === "True") ?? false;

/** Waits until no IPRuleNodeState status write happened for SETTLE_MS (the trailing ones too). */
async function settle(): Promise<void> {
  let last = statusWrites(await scrape());
  let quietSince = performance.now();
  while (performance.now() - quietSince < SETTLE_MS) {
    await sleep(1000);
    const now = statusWrites(await scrape());
    if (now !== last) quietSince = performance.now();
    last = now;
  }
}

/** Sets the LB IPs of Services `indices` (undefined: none), 16 requests at a time. */
async function assign(indices: number[], up: boolean): Promise<void> {
  const failed = await runLimited(indices, 16, async (i) => {
    await admin.mergePatch(RESOURCES.services, `svc-${i}`, {
      status: { loadBalancer: { ingress: up ? [{ ip: `10.0.${i >> 8}.${i & 255}` }] : [] } },
    }, { namespace: "default", subresource: "status" });
  });
  if (failed.length > 0) throw new Error(`${failed.length} Service updates failed`);
}

/**
 * Runs `change`, then measures until every running agent reports `target` applied rules
 * (kernel) and every IPRuleNodeState shows them (status), then until status writes settle.
 */
async function measure(target: number, change: () => Promise<void>) {
  const running = [...agents.keys()];
  const before = await scrape();
  const cpu0 = cpu();
  const t0 = performance.now();
  await change();
  let kernelMs = NaN;
  let statusMs = NaN;
  await eventually(`every agent at ${target} rules`, async () => {
    if (Number.isNaN(kernelMs)) {
      const applied = await Promise.all(
        running.map((n) => agentGauge(n, "iprule_agent_applied_rules")),
      );
      if (applied.every((a) => a === target)) kernelMs = performance.now() - t0;
    }
    const states = await nodeStates();
    const shown = running.every((n) => {
      const s = states.get(n.name);
      return s?.appliedRules === target && s?.desiredRules === target && converged(s);
    });
    if (shown && !Number.isNaN(kernelMs)) statusMs = performance.now() - t0;
    return !Number.isNaN(statusMs);
  }, 300_000);
  await settle();
  const delta = new Delta(before, await scrape());
  return {
    nodes: running.length,
    kernelConvergedMs: Math.round(kernelMs),
    statusConvergedMs: Math.round(statusMs),
    statusWrites: delta.statusWrites,
    statusWritesPerNode: round(delta.statusWrites / running.length, 2),
    controllerNodeStateEvents: delta.controllerNodeStateEvents,
    agentStatusWrites: delta.agentStatusWrites,
    operatorWrites: delta.operatorWrites,
    cpuSeconds: cpuSince(cpu0),
  };
}

function printBurst(what: string, r: Awaited<ReturnType<typeof measure>>): void {
  console.log(
    `  ${what}: ${r.statusWrites} status writes (${r.statusWritesPerNode}/node), ` +
      `${r.controllerNodeStateEvents} node-state watch events to the controller, ` +
      `${r.agentStatusWrites} Agent status writes, ${r.operatorWrites} operator writes in all; ` +
      `converged: kernel ${r.kernelConvergedMs} ms, status ${r.statusConvergedMs} ms; ` +
      `CPU s: controller ${r.cpuSeconds.controller}, apiserver ${r.cpuSeconds.apiserver}, ` +
      `agents ${r.cpuSeconds.agents}`,
  );
}

try {
  // Setup: an IPRule over the LB range, Services without LB IPs, the Agent (the controller
  // renders its DaemonSet; no kubelet runs it: the agents are the processes started here).
  await admin.create(RESOURCES.ipRules, {
    metadata: { name: "scale" },
    spec: { cidrs: ["10.0.0.0/16"], table: 100 },
  });
  await runLimited([...Array(SERVICES).keys()], 16, async (i) => {
    await admin.create(RESOURCES.services, {
      metadata: { name: `svc-${i}`, namespace: "default" },
      spec: { type: "LoadBalancer", allocateLoadBalancerNodePorts: false, ports: [{ port: 80 }] },
    }, "default");
  });
  await admin.create(RESOURCES.agents, {
    metadata: { name: "agent", namespace: NAMESPACE },
    spec: {},
  }, NAMESPACE);
  await eventually(
    "the Agent's DaemonSet",
    () => admin.get(RESOURCES.daemonSets, "iprule-agent", NAMESPACE),
    60_000,
  );

  const all = [...Array(SERVICES).keys()];
  const bursts: { n: number; up: Awaited<ReturnType<typeof measure>>; down?: unknown }[] = [];
  console.log(
    `scale: ${AGENTS} agents (bursts at ${SIZES.join(", ")}), ${SERVICES} Services, ` +
      `executables of ${OPERATOR_DIR ?? "this checkout"}; load ${
        loadavg().map((l) => l.toFixed(2)).join(" ")
      }`,
  );
  for (const size of SIZES) {
    const starting = topo.nodes.slice(agents.size, size);
    await Promise.all(starting.map(startAgent));
    await eventually(`${size} agents ready`, async () => {
      const states = await nodeStates();
      const ok = await Promise.all([...agents.keys()].map(ready));
      return ok.every(Boolean) &&
        [...agents.keys()].every((n) => converged(states.get(n.name)));
    }, 180_000);
    await settle();
    console.log(`N=${size}:`);
    const up = await measure(SERVICES, () => assign(all, true));
    printBurst(`${SERVICES}-Service burst`, up);
    if (size === AGENTS) {
      bursts.push({ n: size, up });
      break;
    }
    const down = await measure(0, () => assign(all, false));
    printBurst(`${SERVICES} LB IPs withdrawn`, down);
    bursts.push({ n: size, up, down });
  }
  results.bursts = bursts;
  const { a, b } = fit(bursts.map((x) => [x.n, x.up.statusWrites]));
  const perNode = Math.max(...bursts.map((x) => x.up.statusWritesPerNode));
  results.fit = { a, b, at500: a * 500 + b, at5000: a * 5000 + b };
  console.log(
    `fit: status writes per ${SERVICES}-Service burst ≈ ${round(a, 2)}·N + ${round(b, 1)} → ` +
      `${Math.round(a * 500 + b)} at 500 nodes, ${Math.round(a * 5000 + b)} at 5,000 ` +
      `(target ≤ 2 per node: ${perNode <= 2 ? "met" : "NOT met"}, worst ${perNode}/node)`,
  );

  // Idle, 200 rules per node.
  {
    const before = await scrape();
    const cpu0 = cpu();
    await sleep(IDLE_MS);
    const delta = new Delta(before, await scrape());
    const requests = delta.requests(operators);
    const total = requests.reduce((s, [, n]) => s + n, 0);
    results.idle = {
      seconds: delta.seconds,
      requestsPerSecond: total / delta.seconds,
      requests,
      cpuSeconds: cpuSince(cpu0),
    };
    console.log(
      `idle (${AGENTS} agents, ${SERVICES} rules each, ${round(delta.seconds, 0)} s): ` +
        `${round(total / delta.seconds, 2)} requests/s` +
        (requests.length ? ` (${requests.map(([k, n]) => `${k}: ${n}`).join(", ")})` : ""),
    );
  }

  // One Service change: its rule leaves every node (back with the churn's end).
  const single = await measure(SERVICES - 1, () => assign([0], false));
  results.single = single;
  printBurst("one Service change", single);

  // One change per second: another Service's LB IP withdrawn each second (a change that
  // flips back and forth would often leave the status as written, and cost nothing).
  {
    const before = await scrape();
    const cpu0 = cpu();
    const started = performance.now();
    let changes = 0;
    while (performance.now() - started < CHURN_MS && changes + 1 < SERVICES) {
      await assign([1 + changes], false);
      changes++;
      await sleep(Math.max(0, started + changes * 1000 - performance.now()));
    }
    const delta = new Delta(before, await scrape());
    const rate = delta.statusWrites / delta.seconds;
    results.churn = {
      seconds: delta.seconds,
      changes,
      statusWritesPerSecond: rate,
      controllerNodeStateEventsPerSecond: delta.controllerNodeStateEvents / delta.seconds,
      agentStatusWrites: delta.agentStatusWrites,
      cpuSeconds: cpuSince(cpu0),
    };
    console.log(
      `churn: ${changes} changes in ${round(delta.seconds, 0)} s → ${round(rate, 2)} status ` +
        `writes/s (target ≤ N/10 = ${AGENTS / 10}: ${rate <= AGENTS / 10 ? "met" : "NOT met"}), ` +
        `${round(delta.controllerNodeStateEvents / delta.seconds, 2)} node-state events/s to ` +
        `the controller, ${delta.agentStatusWrites} Agent status writes`,
    );
    await assign([...Array(changes + 1).keys()], true);
    await settle();
  }

  // A rule every node refuses (0.0.0.0 as a source), then its repair.
  {
    await eventually("every node converged", async () => {
      const states = await nodeStates();
      return [...agents.keys()].every((n) => converged(states.get(n.name)));
    }, 60_000);
    await settle();
    const seen = async (shows: (s: Json) => boolean) => {
      const t0 = performance.now();
      const at = new Map<string, number>();
      await eventually("every node state", async () => {
        const states = await nodeStates();
        const now = performance.now() - t0;
        for (const n of agents.keys()) {
          if (!at.has(n.name) && shows(states.get(n.name))) at.set(n.name, now);
        }
        return at.size === agents.size;
      }, 60_000);
      return [...at.values()];
    };
    const failing = seen((s) => (s?.failedCount ?? 0) > 0 && !converged(s));
    await admin.create(RESOURCES.ipRuleConfigs, {
      metadata: { name: "bench-unspecified" },
      spec: { serviceIP: "0.0.0.0", table: 100, priority: 1000, state: "present" },
    });
    const failed = await failing;
    const repairing = seen((s) => (s?.failedCount ?? 1) === 0 && converged(s));
    await admin.delete(RESOURCES.ipRuleConfigs, "bench-unspecified");
    const repaired = await repairing;
    results.failure = {
      visibleMs: { median: percentile(failed, 50), max: Math.max(...failed) },
      repairedMs: { median: percentile(repaired, 50), max: Math.max(...repaired) },
    };
    console.log(
      `failure: a refused rule in every IPRuleNodeState after median ${
        Math.round(percentile(failed, 50))
      } ms, max ${Math.round(Math.max(...failed))} ms (target ≤ 2000 ms); ` +
        `repair shown after median ${Math.round(percentile(repaired, 50))} ms, max ${
          Math.round(Math.max(...repaired))
        } ms (polled every ~50 ms)`,
    );
    await settle();
  }

  // A rollout: every agent restarted (stopped, started again) at once.
  {
    const before = await scrape();
    const cpu0 = cpu();
    const nodes = [...agents.keys()];
    await Promise.all([...agents.values()].map((a) => a.stop()));
    await Promise.all(nodes.map(startAgent));
    await eventually("every restarted agent ready", async () => {
      return (await Promise.all(nodes.map(ready))).every(Boolean);
    }, 180_000);
    await settle();
    const delta = new Delta(before, await scrape());
    const configs = (l: Record<string, string>) => l.resource === "ipruleconfigs";
    const lists = delta.sum("apiserver_request_total", (l) => configs(l) && l.verb === "LIST");
    const fromCache = delta.sum("apiserver_cache_list_total", configs);
    const etcd = delta.sum("etcd_requests_total", configs);
    const bytes = delta.sum(
      "apiserver_response_sizes_sum",
      (l) => configs(l) && l.verb === "LIST",
    );
    const requests = delta.requests(operators);
    results.rollout = {
      agents: nodes.length,
      requests,
      perAgent: requests.map(([k, n]) => [k, round(n / nodes.length, 2)]),
      configLists: lists,
      configListsFromWatchCache: fromCache,
      etcdRequestsForConfigs: etcd,
      wireBytesPerConfigList: lists ? Math.round(bytes / lists) : 0,
      cpuSeconds: cpuSince(cpu0),
    };
    console.log(
      `rollout: ${nodes.length} agents restarted: per agent ${
        requests.map(([k, n]) => `${k} ${round(n / nodes.length, 2)}`).join(", ")
      }; ${lists} IPRuleConfig lists (${SERVICES} configs, ~${
        lists ? Math.round(bytes / lists / 1024) : 0
      } KiB each on the wire: the API server gzips responses above 128 KiB), ${fromCache} ` +
        `served from the watch cache, ${etcd} etcd requests for them`,
    );
  }

  // Uninstall: the Agent deleted; once it is gone its agents stop, as the garbage collector and
  // the kubelets stop them (each removes its rules as it stops; an earlier checkout's controller
  // drained them before letting the Agent go); until every node state shows 0 rules.
  {
    const cpu0 = cpu();
    const t0 = performance.now();
    await admin.delete(RESOURCES.agents, "agent", { namespace: NAMESPACE });
    await eventually(
      "the Agent gone",
      async () => (await admin.get(RESOURCES.agents, "agent", NAMESPACE)) === undefined,
      300_000,
    );
    const goneMs = performance.now() - t0;
    await Promise.all([...agents.values()].map((a) => a.stop("SIGTERM")));
    const zero = async () => {
      const states = await nodeStates();
      return [...agents.keys()].every((n) =>
        states.get(n.name)?.desiredRules === 0 && states.get(n.name)?.appliedRules === 0
      );
    };
    const clean = await eventually("every node state at 0 rules", zero, 60_000).catch(() => false);
    const nodesMs = performance.now() - t0;
    results.uninstall = {
      agentGoneMs: goneMs,
      nodesReportedZeroMs: nodesMs,
      everyNodeReportedZero: clean,
      cpuSeconds: cpuSince(cpu0),
    };
    console.log(
      `uninstall: Agent deleted → gone in ${Math.round(goneMs)} ms, → every node state at 0 ` +
        `rules (agents stopped) in ${Math.round(nodesMs)} ms ` +
        `(${clean ? "every node reported 0 rules" : "NOT every node reported 0 rules"})`,
    );
  }
  results.loadAtEnd = loadavg();
  console.log(`load at the end: ${loadavg().map((l) => l.toFixed(2)).join(" ")}`);
  if (RESULT_JSON) await Deno.writeTextFile(RESULT_JSON, JSON.stringify(results, null, 2));
} finally {
  await Promise.all([...agents.values()].map((a) => a.stop()));
  await controller.stop();
  http.close();
}
