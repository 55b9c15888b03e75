/**
 * The chaos soak (`task soak`, and a short fixed-seed run in the e2e tier): on the e2e tier's
 * test ground, Services and IPRules churn at a few changes per second while seeded faults
 * overlap (API server, etcd, agents and the leader SIGKILLed, node links cut, outside flushes,
 * foreign rules), and the invariants are checked on every node every 100 ms and on every
 * IPRuleConfig change, then once more when everything has settled.
 */
import { RuleSocket } from "../../ffi/mod.ts";
import { narrowIPRule, narrowIPRuleConfig, narrowService } from "../../src/api/narrow.ts";
import type {
  IPRule,
  IPRuleConfig,
  IPRuleNodeStateStatus,
  ServiceInfo,
} from "../../src/api/types.ts";
import { type JsonObject, KubeClient } from "../../src/k8s/client.ts";
import { Informer } from "../../src/k8s/informer.ts";
import { resourcePath, RESOURCES } from "../../src/k8s/resources.ts";
import { DEFAULT_PROTOCOL } from "../../src/agent/flags.ts";
import { startTopology, type Topology } from "../../tests/support/topology.ts";
import { agentListed, SoakProcesses } from "./cluster.ts";
import { BOUNDS, InvariantChecker, type KernelSample, summarize } from "./checker.ts";
import { ChurnExecutor } from "./churn.ts";
import { configKey, differences, plannedConfigs } from "./convergence.ts";
import { FaultRunner } from "./faults.ts";
import { Random } from "./random.ts";
import type { SoakReport } from "./report.ts";
import { type FaultKind, faultLabel, KINDS, scheduleFaults } from "./schedule.ts";
import { initialWorld, randomChange, SOAK_NAMESPACE } from "./world.ts";

/** How a soak runs. */
export interface SoakOptions {
  seed: number;
  /** Length of the load and the faults, ms. */
  durationMs: number;
  /** Number of nodes; default 3. */
  nodes?: number;
  /** Mean changes to Services and IPRules per second; default 3. */
  changesPerSecond?: number;
  /** Faults this many times as often as usual; default 1. */
  faultRate?: number;
  /** Progress and fault lines; default console.log. Every event also goes to `soak.log`. */
  log?: (line: string) => void;
  /** Where to keep the logs: always, or only when a violation was found (default). */
  keepLogs?: "always" | "on-violation";
}

const OPERATOR_NAMESPACE = "ip-rule-operator-system";
/** Period of the kernel samples of every node, ms (the issue's ~100 ms). */
const SAMPLE_MS = 100;
/** Period of the fast samples of a node being repaired after a flush, ms. */
const REPAIR_SAMPLE_MS = 5;
const PROGRESS_MS = 30_000;
/** The soak's own informers retry within a second, so its view of the API leads the agents'. */
const SOAK_BACKOFF = { initialMs: 100, maxMs: 1_000, factor: 2 };
/** How long after its watch is back the soak's view of the configs counts as catching up. */
const VIEW_SETTLE_MS = 2_000;
const ROOT = new URL("../../", import.meta.url).pathname;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function loadAverage(): string {
  try {
    return Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).join(" ");
  } catch {
    return "?";
  }
}

/** Both families' rules of the machine itself, compared before and after. */
async function hostRules(): Promise<string> {
  const run = async (args: string[]) =>
    new TextDecoder().decode(
      (await new Deno.Command("ip", { args, stdout: "piped" }).output()).stdout,
    );
  return (await run(["-d", "rule", "show"])) + (await run(["-6", "-d", "rule", "show"]));
}

function labelsOf(raw: unknown): Readonly<Record<string, string>> {
  const labels = (raw as { metadata?: { labels?: unknown } })?.metadata?.labels;
  return labels && typeof labels === "object" ? labels as Record<string, string> : {};
}

/** Runs one soak and returns its figures; throws only when the test ground cannot start. */
export async function runSoak(options: SoakOptions): Promise<SoakReport> {
  const print = options.log ?? ((line: string) => console.log(line));
  let events: Deno.FsFile | undefined;
  const encoder = new TextEncoder();
  const record = (line: string) => void events?.write(encoder.encode(`${line}\n`)).catch(() => 0);
  const log = (line: string) => {
    record(line);
    print(line);
  };
  const protocol = DEFAULT_PROTOCOL;
  const random = new Random(options.seed);
  const scheduleRandom = random.split();
  const churnRandom = random.split();
  const faultRandom = random.split();
  const hostBefore = await hostRules();
  const loadStart = loadAverage();
  const nodeCount = options.nodes ?? 3;
  const schedule = scheduleFaults(scheduleRandom, {
    durationMs: options.durationMs,
    nodes: nodeCount,
    ...(options.faultRate === undefined ? {} : { rate: options.faultRate }),
  });

  const topo = await startTopology({ nodes: nodeCount, namePrefix: "soak" });
  const names = topo.nodes.map((n) => n.name);
  const checker = new InvariantChecker(names, BOUNDS);
  const stop = new AbortController();
  const sockets: RuleSocket[] = [];
  const informers: {
    run(signal: AbortSignal): Promise<void>;
    whenSynced(signal: AbortSignal): Promise<void>;
  }[] = [];
  const running: Promise<unknown>[] = [];
  const background = new Set<Promise<unknown>>();
  const timers: ReturnType<typeof setInterval>[] = [];
  let sampler: Promise<void> = Promise.resolve();
  const spawn = (task: Promise<unknown>) => {
    background.add(task);
    void task.catch(() => {}).finally(() => background.delete(task));
  };
  let processes: SoakProcesses | undefined;
  let admin: KubeClient | undefined;
  const t0 = performance.now();
  let start = t0;
  const now = () => Math.round(performance.now() - start);
  const exits: { role: string; code: number }[] = [];
  let report: SoakReport | undefined;
  // Interrupted (Ctrl-C, timeout): the topology's signal handler exits, dispatching "unload";
  // the controllers and agents, unlike the control plane, have no parent-death signal.
  const killAll = () => processes?.all.forEach((p) => p.killSync());
  globalThis.addEventListener("unload", killAll);
  try {
    events = await Deno.open(`${topo.cp.dir}/soak.log`, { create: true, append: true });
    admin = await KubeClient.connect({ kubeconfig: topo.cp.kubeconfig("admin") });
    await admin.create(RESOURCES.namespaces, { metadata: { name: SOAK_NAMESPACE } });
    await admin.create(RESOURCES.agents, {
      metadata: { name: "agent", namespace: OPERATOR_NAMESPACE },
      spec: { nodeSelector: { "kubernetes.io/os": "linux" } },
    }, OPERATOR_NAMESPACE);
    for (const node of topo.nodes) sockets.push(node.ns.enter(() => RuleSocket.open()));

    processes = new SoakProcesses(topo, (proc, code) => {
      exits.push({ role: proc.role, code });
      log(`${proc.role} exited with code ${code} at ${(now() / 1000).toFixed(1)}s; restarting`);
      const agent = processes!.agents.indexOf(proc);
      if (agent >= 0) checker.agentDown(names[agent]!);
    }, (index, proc) => {
      record(`[${(now() / 1000).toFixed(3)}s] agent ${names[index]} started (${proc.logFile})`);
      spawn(
        agentListed(proc, stop.signal).then((listed) => {
          record(`[${(now() / 1000).toFixed(3)}s] agent ${names[index]} listed: ${listed}`);
          if (listed && processes!.agents[index]!.current === proc) {
            checker.agentUp(now(), names[index]!);
          }
        }),
      );
    });
    for (const c of processes.controllers) await c.proc.start();
    for (const a of processes.agents) await a.start();

    const world = initialWorld();
    const churn = new ChurnExecutor(admin, world);
    churn.markAll();

    // The soak's view of the API: configs (the agents' truth), and the planner's inputs. When
    // its config watch fails the view is stale (see InvariantChecker.viewLost) until
    // VIEW_SETTLE_MS after the first change it hears once the watch is back.
    let settle: ReturnType<typeof setTimeout> | undefined;
    let viewLost = false;
    stop.signal.addEventListener("abort", () => clearTimeout(settle), { once: true });
    const configs = new Informer<IPRuleConfig>(admin, {
      resource: RESOURCES.ipRuleConfigs,
      narrow: narrowIPRuleConfig,
      backoff: SOAK_BACKOFF,
      onChange: () => {
        if (viewLost && settle === undefined && !stop.signal.aborted) {
          settle = setTimeout(() => {
            viewLost = false;
            settle = undefined;
            checker.viewCurrent();
          }, VIEW_SETTLE_MS);
        }
        checker.observeConfigs(
          now(),
          [...configs.store.values()].map((c) => ({
            name: c.metadata.name,
            present: c.spec.state === "present",
            key: configKey(c.spec),
          })),
        );
      },
      onError: () => {
        viewLost = true;
        checker.viewLost(now());
        clearTimeout(settle);
        settle = undefined;
      },
    });
    const replan = () => {
      if (!services.synced || !ipRules.synced || !namespaces.synced) return;
      const planned = plannedConfigs({
        services: [...services.store.values()],
        ipRules: [...ipRules.store.values()],
        namespaceLabels: namespaces.store,
      });
      checker.observePlan(
        now(),
        new Map([...planned].map(([name, spec]) => [name, configKey(spec)])),
      );
    };
    const services: Informer<ServiceInfo> = new Informer(admin, {
      resource: RESOURCES.services,
      narrow: narrowService,
      backoff: SOAK_BACKOFF,
      onChange: replan,
    });
    const ipRules: Informer<IPRule> = new Informer(admin, {
      resource: RESOURCES.ipRules,
      narrow: narrowIPRule,
      backoff: SOAK_BACKOFF,
      onChange: replan,
    });
    const namespaces: Informer<Readonly<Record<string, string>>> = new Informer(admin, {
      resource: RESOURCES.namespaces,
      narrow: labelsOf,
      backoff: SOAK_BACKOFF,
      onChange: replan,
    });
    informers.push(configs, services, ipRules, namespaces);
    for (const informer of informers) running.push(informer.run(stop.signal));
    await Promise.all(informers.map((i) => i.whenSynced(stop.signal)));
    replan();

    // Every agent listed before the load starts (then each agentUp comes from its own start).
    const ready = performance.now() + 60_000;
    while (names.some((n) => checker.blocked(n)) && performance.now() < ready) await sleep(100);
    start = performance.now();
    log(
      `soak: seed ${options.seed}, ${(options.durationMs / 1000).toFixed(0)} s, ${nodeCount} ` +
        `nodes, ${schedule.length} faults scheduled; setup took ${
          ((start - t0) / 1000).toFixed(1)
        } s; control plane in ${topo.cp.dir}`,
    );

    running.push(churn.run(stop.signal));

    // Kernel samples of every node.
    const lastSample: (KernelSample | undefined)[] = names.map(() => undefined);
    const sampleNode = async (i: number) => {
      const rules = await sockets[i]!.listRules();
      const sample = summarize(rules, protocol);
      checker.sample(now(), names[i]!, sample);
      lastSample[i] = sample;
    };
    let maxGap = 0;
    let sampling = true;
    sampler = (async () => {
      let last = performance.now();
      while (sampling && !stop.signal.aborted) {
        for (let i = 0; i < names.length; i++) await sampleNode(i);
        checker.tick(now());
        const t = performance.now();
        maxGap = Math.max(maxGap, Math.round(t - last));
        last = t;
        await sleep(Math.max(0, SAMPLE_MS - (performance.now() - t)));
      }
    })();
    // Set the foreign rules each node holds now (the kernel's defaults) as expected.
    for (let i = 0; i < names.length; i++) {
      checker.expectForeign(names[i]!, summarize(await sockets[i]!.listRules(), protocol).foreign);
    }

    const faults = new FaultRunner({
      topo,
      processes,
      checker,
      world,
      churn,
      sockets,
      protocol,
      random: faultRandom,
      now,
      log,
      signal: stop.signal,
      spawn,
      watchRepair: async (i) => {
        const deadline = performance.now() + 10_000;
        while (checker.repairing(names[i]!) && performance.now() < deadline) {
          await sampleNode(i);
          await sleep(REPAIR_SAMPLE_MS);
        }
      },
    });

    // Calm periods: request counters of every agent every 2 s; an interval counts when no
    // fault started, ran or ended in it, every agent was connected at its end, and the agent is
    // the same process at both ends.
    let lastFaultEvent = 0;
    const calmTotals = names.map(() => ({ byVerb: new Map<string, number>(), ms: 0 }));
    let calmMs = 0;
    type Counts = { byVerb: Map<string, number>; inc: number } | undefined;
    let calmPrev: { t: number; totals: Counts[] } | undefined;
    const calmSample = async () => {
      const t = now();
      const totals: Counts[] = await Promise.all(processes!.agents.map(async (a, i) => {
        const byVerb = await processes!.agentRequests(i);
        return byVerb === undefined ? undefined : { byVerb, inc: a.incarnation };
      }));
      const since = Math.max(lastFaultEvent, checker.lastOpened);
      if (calmPrev && checker.calm && since < calmPrev.t) {
        calmMs += t - calmPrev.t;
        totals.forEach((cur, i) => {
          const prev = calmPrev!.totals[i];
          if (!cur || !prev || cur.inc !== prev.inc) return;
          const sum = calmTotals[i]!;
          for (const [verb, n] of cur.byVerb) {
            sum.byVerb.set(verb, (sum.byVerb.get(verb) ?? 0) + n - (prev.byVerb.get(verb) ?? 0));
          }
          sum.ms += t - calmPrev!.t;
        });
      }
      calmPrev = { t, totals };
    };

    // Faults at their scheduled times.
    const faultRuns = schedule.map(async (fault) => {
      await sleep(Math.max(0, fault.at - now()));
      if (stop.signal.aborted) return;
      lastFaultEvent = now();
      try {
        await faults.run(fault);
      } catch {
        // Logged by the runner; the soak goes on.
      } finally {
        lastFaultEvent = now();
      }
    });

    // The load: seeded changes at exponential gaps until the end.
    let modelChanges = 0;
    const load = (async () => {
      while (now() < options.durationMs && !stop.signal.aborted) {
        const change = randomChange(world, churnRandom);
        record(`[${(now() / 1000).toFixed(3)}s] ${change.kind} ${change.name}: ${change.what}`);
        churn.mark(change);
        modelChanges++;
        await sleep(churnRandom.exponential(1000 / (options.changesPerSecond ?? 3)));
      }
    })();

    timers.push(setInterval(() => processes!.sampleRss(), 1000));
    const calmTimer = setInterval(() => spawn(calmSample()), 2000);
    timers.push(calmTimer);
    const progress = setInterval(() => {
      log(
        `[${(now() / 1000).toFixed(0)}s] faults ${
          [...faults.counts.values()].reduce(
            (a, b) => a + b,
            0,
          )
        } changes ${modelChanges} writes ${churn.writes} checks ${checker.checks.kernel} ` +
          `violations ${checker.violations.length}; load ${loadAverage()}`,
      );
    }, PROGRESS_MS);
    timers.push(progress);

    await load;
    await Promise.all(faultRuns);
    await faults.ensureServers();
    clearInterval(calmTimer);
    clearInterval(progress);
    const settled = await churn.settle(60_000);
    if (!settled) log("soak: the churn's last writes did not all succeed within 60 s");
    const endOfLoad = Math.max(faults.lastEnd, churn.lastWriteAt - start, options.durationMs);
    log(
      `soak: load and faults over at ${(endOfLoad / 1000).toFixed(1)}s; waiting for convergence`,
    );

    // Liveness: everything as planned, on every node, said by every IPRuleNodeState.
    let convergedAt: number | undefined;
    let diff: string[];
    do {
      diff = await finalDifferences(admin, topo, sockets, protocol).catch((e) => [`${e}`]);
      if (diff.length === 0) {
        convergedAt = now();
        break;
      }
      await sleep(250);
    } while (now() - endOfLoad <= BOUNDS.convergenceMs);
    checker.finalResult(now(), diff, convergedAt === undefined ? now() - endOfLoad : undefined);
    sampling = false;
    await sampler;
    checker.tick(now(), true);
    processes.sampleRss();

    const peak = new Map<string, number>();
    for (const [name, kib] of processes.serverPeakKiB) peak.set(name, kib);
    for (const proc of processes.all) peak.set(proc.role, proc.peakRssKiB);
    report = {
      seed: options.seed,
      durationMs: options.durationMs,
      nodes: names,
      loadAverage: { start: loadStart, end: loadAverage() },
      bounds: BOUNDS,
      faults: {
        byKind: new Map(
          [...faults.counts].sort(([a], [b]) =>
            KINDS.indexOf(a.split(" ")[0] as FaultKind) -
              KINDS.indexOf(b.split(" ")[0] as FaultKind) || (a < b ? -1 : 1)
          ),
        ),
        total: [...faults.counts.values()].reduce((a, b) => a + b, 0),
        maxConcurrent: faults.maxConcurrent,
        foreignAdded: faults.foreignAdded,
        foreignRefused: faults.foreignRefused,
        midBatchHits: faults.midBatchHits,
      },
      changes: { model: modelChanges, writes: churn.writes, failures: churn.failures },
      checks: { ...checker.checks },
      violations: checker.violations,
      repairTimes: checker.repairTimes,
      repairsWithoutAgent: checker.repairsWithoutAgent,
      catchUpTimes: checker.catchUpTimes,
      convergenceMs: convergedAt === undefined ? undefined : convergedAt - endOfLoad,
      calm: {
        ms: calmMs,
        perMinute: new Map(
          names.map((n, i) => {
            const { byVerb, ms } = calmTotals[i]!;
            if (ms === 0) return [n, undefined];
            return [n, new Map([...byVerb].map(([verb, k]) => [verb, k / (ms / 60_000)]))];
          }),
        ),
      },
      peakRssKiB: peak,
      exits,
      maxSampleGapMs: maxGap,
    };
    log(
      `soak: scheduled faults: ${schedule.map((f) => faultLabel(f, (i) => names[i]!)).join(", ")}`,
    );
  } finally {
    globalThis.removeEventListener("unload", killAll);
    for (const timer of timers) clearInterval(timer);
    stop.abort();
    await sampler.catch(() => {});
    if (processes) await Promise.all(processes.all.map((p) => p.stop()));
    await Promise.all(running).catch(() => {});
    while (background.size > 0) await Promise.allSettled([...background]);
    for (const socket of sockets) socket.close();
    admin?.close();
    events?.close();
    if (report && (options.keepLogs === "always" || report.violations.length > 0)) {
      report.logsDir = await keepLogs(topo, options.seed);
    }
    await topo.stop();
  }
  if (!report) throw new Error("The soak ended without a report");
  const hostAfter = await hostRules();
  if (hostAfter !== hostBefore) {
    report.violations = [...report.violations, {
      invariant: "safety",
      at: now(),
      subject: "the machine's own rules",
      detail: `changed during the soak:\n${hostBefore}\n---\n${hostAfter}`,
      faults: [],
    }];
  }
  return report;
}

/** What is still missing for convergence, read fresh from the API and the kernels. */
async function finalDifferences(
  admin: KubeClient,
  topo: Topology,
  sockets: readonly RuleSocket[],
  protocol: number,
): Promise<string[]> {
  const list = async (path: string) =>
    ((await admin.request("GET", path, { signal: AbortSignal.timeout(5_000) })).items ??
      []) as JsonObject[];
  const planned = plannedConfigs({
    services: (await list(resourcePath(RESOURCES.services, {}))).map(narrowService),
    ipRules: (await list(resourcePath(RESOURCES.ipRules, {}))).map(narrowIPRule),
    namespaceLabels: new Map(
      (await list(resourcePath(RESOURCES.namespaces, {}))).map((
        n,
      ) => [(n.metadata as { name: string }).name, labelsOf(n)]),
    ),
  });
  const configs = (await list(resourcePath(RESOURCES.ipRuleConfigs, {}))).map(narrowIPRuleConfig);
  const states = new Map<string, IPRuleNodeStateStatus | undefined>();
  for (const raw of await list(resourcePath(RESOURCES.ipRuleNodeStates, {}))) {
    states.set((raw.metadata as { name: string }).name, raw.status as IPRuleNodeStateStatus);
  }
  const kernels = new Map<string, KernelSample>();
  for (const [i, node] of topo.nodes.entries()) {
    kernels.set(node.name, summarize(await sockets[i]!.listRules(), protocol));
    if (!states.has(node.name)) states.set(node.name, undefined);
  }
  return differences({ planned, configs, kernels, nodeStates: states });
}

/** Copies the run's logs (processes, control plane) to .cache/soak/; returns the directory. */
async function keepLogs(topo: Topology, seed: number): Promise<string> {
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  const dir = `${ROOT}.cache/soak/${stamp}-seed-${seed}`;
  await Deno.mkdir(dir, { recursive: true });
  for await (const entry of Deno.readDir(topo.cp.dir)) {
    if (entry.isFile && entry.name.endsWith(".log")) {
      await Deno.copyFile(`${topo.cp.dir}/${entry.name}`, `${dir}/${entry.name}`);
    }
  }
  return dir;
}
