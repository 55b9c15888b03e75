/**
 * Agent benchmark (issue 6) on a local control plane with node namespaces (root): peak RSS with
 * 1,000 configs, unconstrained and in a memory cgroup limited to 64 MiB (the original agent's
 * limit) with its own copy of the runtime; with 10,000 configs: cold start to converged, one
 * config created → kernel rule present (median, p99 over 500), external rule delete → restored
 * (median, p99 over 200), CPU time per idle resync, API requests per minute in steady state,
 * peak RSS.
 * Targets: create p99 < 200 ms, repair p99 < 20 ms, < 15 ms CPU per resync, only the watch in
 * steady state, ≤ 64 MiB RSS at 1,000 configs and ≤ 128 MiB at 10,000. ~4 minutes.
 */
import { type KernelRule, RuleSocket, RuleSubscription } from "../ffi/mod.ts";
import { runLimited } from "../src/k8s/run_limited.ts";
import { KubeClient } from "../src/k8s/client.ts";
import { RESOURCES } from "../src/k8s/resources.ts";
import { MemoryCgroup, privateRuntime } from "../tests/support/memory_cgroup.ts";
import { eventually, type ExecutableProcess } from "../tests/support/process.ts";
import {
  AGENT_HEALTH_PORT,
  AGENT_PORT,
  startTopology,
  type TopologyNode,
} from "../tests/support/topology.ts";

const CONFIGS = Number(Deno.env.get("CONFIGS") ?? 10_000);
const SMALL = Number(Deno.env.get("SMALL_CONFIGS") ?? 1_000);
const CREATES = Number(Deno.env.get("CREATES") ?? 500);
const DRIFTS = Number(Deno.env.get("DRIFTS") ?? 200);
const STEADY_MS = Number(Deno.env.get("STEADY_SECONDS") ?? 60) * 1000;
const IDLE_RESYNC = "100ms";
const MEMORY_LIMIT = 64 * 1024 * 1024;
const MIB = 1024 * 1024;
const PROTO = 201;
const CLOCK_TICKS = 100; // sysconf(_SC_CLK_TCK) on Linux

function percentile(samples: number[], p: number): number {
  const s = [...samples].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

function ms(n: number): string {
  return `${n.toFixed(1)} ms`;
}

/** Peak RSS (VmHWM) of a process in MiB. */
function peakRss(pid: number): number {
  return memory(pid).peak;
}

/** Peak RSS and the current anonymous and file-backed parts of a process's RSS, in MiB. */
function memory(pid: number): { peak: number; anon: number; file: number } {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const kib = (key: string) =>
    Number(new RegExp(`${key}:\\s+(\\d+)`).exec(status)?.[1] ?? 0) / 1024;
  return { peak: kib("VmHWM"), anon: kib("RssAnon"), file: kib("RssFile") };
}

function mib(n: number): string {
  return `${n.toFixed(1)} MiB`;
}

/** CPU time (user + system) of a process in ms. */
function cpuMs(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * (1000 / CLOCK_TICKS);
}

/** Major page faults of a process (pages read back from disk, e.g. code pages reclaimed before). */
function majorFaults(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[9]);
}

async function metric(node: TopologyNode, name: string): Promise<number> {
  const text = await (await fetch(`http://${node.address}:${AGENT_PORT}/metrics`)).text();
  let sum = 0;
  for (const l of text.split("\n")) if (l.startsWith(name)) sum += Number(l.split(" ").pop());
  return sum;
}

async function ready(node: TopologyNode): Promise<boolean> {
  const res = await fetch(`http://${node.address}:${AGENT_HEALTH_PORT}/readyz`).catch(() =>
    undefined
  );
  await res?.body?.cancel();
  return res?.status === 200;
}

function ip(i: number): string {
  return `10.${100 + Math.floor(i / 62_500)}.${Math.floor(i / 250) % 250}.${(i % 250) + 1}`;
}

/** Rule events of a node's kernel, dispatched to waiters by source address. */
class KernelEvents {
  readonly #waiters = new Map<string, (rule: KernelRule, portId: number) => void>();
  readonly #abort = new AbortController();
  readonly #running: Promise<void>;

  constructor(node: TopologyNode) {
    const subscription = node.ns.enter(() => RuleSubscription.open({ signal: this.#abort.signal }));
    this.#running = (async () => {
      for await (const event of subscription) {
        if (event.type !== "added") continue;
        this.#waiters.get(event.rule.src)?.(event.rule, event.portId);
      }
    })();
  }

  /** Resolves at the next `added` event of `src` with the agent's protocol from another socket. */
  added(src: string, notFrom = -1): Promise<number> {
    return new Promise((resolve) =>
      this.#waiters.set(src, (rule, portId) => {
        if (rule.protocol !== PROTO || portId === notFrom) return;
        this.#waiters.delete(src);
        resolve(performance.now());
      })
    );
  }

  async close(): Promise<void> {
    this.#abort.abort();
    await this.#running;
  }
}

await using topo = await startTopology({ nodes: 2 });
const [small, big] = [topo.node(0), topo.node(1)];
using admin = await KubeClient.connect({ kubeconfig: topo.cp.kubeconfig("admin") });
const create = async (i: number, name = `bench-${i}`): Promise<void> => {
  await admin.create(RESOURCES.ipRuleConfigs, {
    metadata: { name },
    spec: { serviceIP: ip(i), table: 1000 + (i % 50), priority: 1000 + (i % 7), state: "present" },
  });
};
const agents: ExecutableProcess[] = [];
const start = async (
  node: TopologyNode,
  args: string[],
  name: string,
  options: { wrapper?: string[]; runtime?: string } = {},
) => {
  const v8 = Deno.env.get("AGENT_V8"); // for trying V8 flags without a rebuild
  const agent = await topo.startAgent(node, ["--log-level=warn", ...args], {
    logName: name,
    ...(v8 ? { env: { DENO_V8_FLAGS: v8 } } : {}),
    ...options,
  });
  agents.push(agent);
  return agent;
};

/**
 * The 1k agent in a memory cgroup limited to 64 MiB (the original agent's limit) with its own
 * uncached copy of the runtime, so the cgroup pays for the runtime's pages as a new Pod does.
 * Returns the figures, or why they could not be measured (no cgroup, no convergence).
 */
async function measureLimited(node: TopologyNode): Promise<string> {
  let cgroup: MemoryCgroup;
  try {
    cgroup = MemoryCgroup.create(`iprule-bench-${Deno.pid}`, MEMORY_LIMIT);
  } catch (error: unknown) {
    return `NOT MEASURED: ${error instanceof Error ? error.message : error}`;
  }
  using _cgroup = cgroup;
  await using runtime = await privateRuntime();
  const t0 = performance.now();
  const agent = await start(node, [], "bench-agent-1k-limited.log", {
    wrapper: cgroup.wrapper(),
    runtime: runtime.path,
  });
  try {
    await eventually("1k converged in the memory cgroup", () => ready(node), 120_000);
  } catch (error: unknown) {
    await agent.stop();
    return `DID NOT CONVERGE (${cgroup.stats().oomKills} OOM kills): ${error}`;
  }
  const converged = performance.now() - t0;
  const [faults0, cpu0] = [majorFaults(agent.pid), cpuMs(agent.pid)];
  await new Promise((r) => setTimeout(r, 12_000)); // through an idle resync (default 10 s)
  const faults = majorFaults(agent.pid) - faults0;
  const cpu = cpuMs(agent.pid) - cpu0;
  const stillReady = await ready(node);
  const mem = memory(agent.pid);
  const stats = cgroup.stats();
  await agent.stop();
  return `${mib(mem.peak)} (anon ${mib(mem.anon)}, file-backed ${mib(mem.file)}), cgroup peak ${
    mib(stats.peakBytes / MIB)
  }, ${stats.oomKills} OOM kills, converged in ${ms(converged)}, ${
    stillReady ? "still ready" : "NOT READY"
  } 12 s later with ${faults} major page faults and ${ms(cpu)} CPU meanwhile`;
}

try {
  console.log(`setup: ${SMALL} IPRuleConfigs...`);
  await runLimited(Array.from({ length: SMALL }, (_, i) => i), 32, (i) => create(i));

  let t0 = performance.now();
  const a1 = await start(small, [], "bench-agent-1k.log");
  await eventually("1k converged", () => ready(small), 120_000);
  const cold1k = performance.now() - t0;
  const mem1k = memory(a1.pid);
  await a1.stop();

  const limitedReport = await measureLimited(small);

  console.log(`setup: ${CONFIGS - SMALL} more IPRuleConfigs...`);
  const setup = performance.now();
  await runLimited(
    Array.from({ length: CONFIGS - SMALL }, (_, i) => SMALL + i),
    32,
    (i) => create(i),
  );
  console.log(`setup done in ${((performance.now() - setup) / 1000).toFixed(1)} s`);

  const events = new KernelEvents(big);
  using socket = big.ns.enter(() => RuleSocket.open());
  try {
    t0 = performance.now();
    const a2 = await start(big, [], "bench-agent-10k.log");
    await eventually("10k converged", () => ready(big), 300_000);
    const cold10k = performance.now() - t0;
    const owned = (await socket.listRules()).filter((r) => r.protocol === PROTO);
    if (owned.length !== CONFIGS) throw new Error(`${owned.length} rules, expected ${CONFIGS}`);

    // One config created → its rule in the kernel.
    const creates: number[] = [];
    for (let k = 0; k < CREATES; k++) {
      const i = CONFIGS + k;
      const added = events.added(ip(i));
      const start = performance.now();
      await create(i);
      creates.push(await added - start);
    }

    // A rule deleted by someone else → back.
    const repairs: number[] = [];
    for (let k = 0; k < DRIFTS; k++) {
      const rule = owned[(k * 37) % owned.length]!;
      const added = events.added(rule.src, socket.portId);
      const start = performance.now();
      const [result] = await socket.deleteRules([rule]);
      if (result?.error) throw result.error;
      repairs.push(await added - start);
      await new Promise((r) => setTimeout(r, 5));
    }
    const rss10k = peakRss(a2.pid);
    await a2.stop();

    // Steady state: restart with a short resync; requests and CPU per idle resync.
    t0 = performance.now();
    const a3 = await start(big, [`--resync=${IDLE_RESYNC}`], "bench-agent-idle.log");
    await eventually("restarted agent converged", () => ready(big), 120_000);
    const warm = performance.now() - t0;
    await new Promise((r) => setTimeout(r, 2000));
    const req0 = await metric(big, "iprule_agent_api_requests");
    const resync0 = await metric(big, 'iprule_agent_reconciles_total{trigger="resync"');
    const cpu0 = cpuMs(a3.pid);
    await new Promise((r) => setTimeout(r, STEADY_MS));
    const cpu1 = cpuMs(a3.pid);
    const resyncs = (await metric(big, 'iprule_agent_reconciles_total{trigger="resync"')) - resync0;
    const requests = (await metric(big, "iprule_agent_api_requests")) - req0;
    const rssIdle = peakRss(a3.pid);
    await a3.stop();

    const total = CONFIGS + CREATES;
    console.log(
      `cold start: ${SMALL} configs converged in ${ms(cold1k)}; ${CONFIGS} in ${ms(cold10k)}`,
    );
    console.log(`restart with ${total} rules present: converged in ${ms(warm)}, 0 rule changes`);
    console.log(
      `create → kernel: median ${ms(percentile(creates, 50))}, p99 ${
        ms(percentile(creates, 99))
      } over ${CREATES} (target p99 < 200 ms)`,
    );
    console.log(
      `external delete → restored: median ${ms(percentile(repairs, 50))}, p99 ${
        ms(percentile(repairs, 99))
      } over ${DRIFTS} (target p99 < 20 ms)`,
    );
    console.log(
      `idle resync with ${total} rules: ${ms((cpu1 - cpu0) / Math.max(1, resyncs))} CPU each ` +
        `(${resyncs} resyncs, ${ms(cpu1 - cpu0)} CPU in ${STEADY_MS / 1000} s; target < 15 ms)`,
    );
    console.log(
      `steady state: ${(requests / (STEADY_MS / 60_000)).toFixed(1)} API requests per minute ` +
        `(target: the watch only)`,
    );
    console.log(
      `peak RSS with ${SMALL} configs: ${mib(mem1k.peak)} unconstrained (anon ${
        mib(mem1k.anon)
      }, file-backed ${mib(mem1k.file)}, mostly the deno binary's pages); in a ${
        MEMORY_LIMIT / MIB
      } MiB memory cgroup with its own runtime copy: ${limitedReport} (target ≤ 64 MiB)`,
    );
    console.log(
      `peak RSS with ${CONFIGS}+: ` +
        `${rss10k.toFixed(1)} MiB through cold start, creates and repairs, ${
          rssIdle.toFixed(1)
        } MiB through restart and idle resyncs (target ≤ 128 MiB)`,
    );
  } finally {
    await events.close();
  }
} finally {
  for (const agent of agents) await agent.stop();
}
