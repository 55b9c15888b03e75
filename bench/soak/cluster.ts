/**
 * The soak's cluster on the e2e tier's test ground (tests/support/topology.ts): a real
 * kube-apiserver + etcd, two controller replicas with leader election and one agent per node
 * namespace, each a process with exactly its compiled executable's permissions. The processes
 * are supervised as a kubelet would: one that exits on its own (a controller that lost its
 * lease exits 1 by design) is started again after a second; one the soak kills stays down until
 * the soak starts it. Peak RSS is sampled from /proc for every incarnation.
 */
import { AGENT_HEALTH_PORT, AGENT_PORT, type Topology } from "../../tests/support/topology.ts";
import { ExecutableProcess } from "../../tests/support/process.ts";
import { freePorts, isRunning } from "../../tests/support/controlplane.ts";

/** Delay before a process that exited on its own is started again (a kubelet's restart). */
export const RESTART_DELAY_MS = 1_000;
/**
 * The controllers' lease: 8 s instead of the default 15 s, so that a 2-minute run sees a
 * failover complete; the renew deadline (2/3) stays well above this machine's API latency.
 */
export const LEASE_DURATION = "8s";
/**
 * Absent IPRuleConfigs are deleted after 20 s instead of 5 min, so that deletions (invariant
 * 4: none for a Service that still matches) happen many times in a run.
 */
export const GRACE_PERIOD = "20s";

/** A process the soak runs, kills and starts again. */
export class Supervised {
  /** `controller-0`, `agent node-1`, … */
  readonly role: string;
  readonly #start: (incarnation: number) => Promise<ExecutableProcess>;
  readonly #onExit: (proc: Supervised, code: number) => void;
  #current: ExecutableProcess | undefined;
  #incarnation = 0;
  #killing = false;
  #stopping = false;
  #starting: Promise<ExecutableProcess> | undefined;
  /** The watch on the running incarnation's exit (restarts it when it exits alone). */
  #watching: Promise<void> = Promise.resolve();
  /** Highest VmHWM of any incarnation, KiB. */
  peakRssKiB = 0;
  /** Exits the soak did not cause: exit code and the incarnation's log. */
  readonly exits: { code: number; log: string }[] = [];

  constructor(
    role: string,
    start: (incarnation: number) => Promise<ExecutableProcess>,
    onExit: (proc: Supervised, code: number) => void,
  ) {
    this.role = role;
    this.#start = start;
    this.#onExit = onExit;
  }

  /** The running incarnation, if any. */
  get current(): ExecutableProcess | undefined {
    return this.#current;
  }

  /** Number of starts so far. */
  get incarnation(): number {
    return this.#incarnation;
  }

  /**
   * Starts a new incarnation unless one runs or is starting (a fault's restart and the restart
   * after an exit may meet); restarts it (after {@link RESTART_DELAY_MS}) if it exits alone.
   */
  start(): Promise<ExecutableProcess> {
    if (this.#current) return Promise.resolve(this.#current);
    this.#starting ??= this.#spawn().finally(() => (this.#starting = undefined));
    return this.#starting;
  }

  async #spawn(): Promise<ExecutableProcess> {
    const proc = await this.#start(++this.#incarnation);
    this.#current = proc;
    this.#killing = false;
    this.#watching = proc.status.then(async (status) => {
      if (this.#current !== proc) return;
      this.sampleRss();
      this.#current = undefined;
      if (this.#killing || this.#stopping) return;
      this.exits.push({ code: status.code, log: proc.logFile });
      this.#onExit(this, status.code);
      await new Promise((r) => setTimeout(r, RESTART_DELAY_MS));
      if (!this.#stopping) void this.start();
    });
    return proc;
  }

  /** SIGKILLs the running incarnation and waits for its exit; it stays down until `start()`. */
  async kill(): Promise<void> {
    await this.#starting;
    const proc = this.#current;
    if (!proc) return;
    this.sampleRss();
    this.#killing = true;
    await proc.stop("SIGKILL");
  }

  /** Stops it for good (SIGTERM). */
  async stop(): Promise<void> {
    this.#stopping = true;
    await this.#starting;
    this.sampleRss();
    await this.#current?.stop("SIGTERM");
    await this.#watching;
  }

  /** SIGKILLs the running incarnation at once (the soak is being interrupted). */
  killSync(): void {
    this.#stopping = true;
    const pid = this.#current?.pid;
    if (pid === undefined) return;
    try {
      Deno.kill(pid, "SIGKILL");
    } catch {
      // Gone already.
    }
  }

  /** Takes the running incarnation's VmHWM into the peak. */
  sampleRss(): void {
    const pid = this.#current?.pid;
    if (pid !== undefined) this.peakRssKiB = Math.max(this.peakRssKiB, peakRssKiB(pid));
  }
}

/** VmHWM (peak resident set) of a process, KiB; 0 when it is gone. */
export function peakRssKiB(pid: number): number {
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    return Number(/^VmHWM:\s+(\d+) kB/m.exec(status)?.[1] ?? 0);
  } catch {
    return 0;
  }
}

/** One controller replica and where its metrics are. */
export interface ControllerReplica {
  proc: Supervised;
  metricsPort: number;
}

/** The soak's processes on a topology. */
export class SoakProcesses {
  readonly topo: Topology;
  readonly controllers: ControllerReplica[];
  readonly agents: Supervised[];
  /** Peak RSS of etcd and kube-apiserver over their incarnations, KiB. */
  readonly serverPeakKiB = new Map<string, number>();

  constructor(
    topo: Topology,
    onExit: (proc: Supervised, code: number) => void,
    onAgentStart: (node: number, proc: ExecutableProcess) => void,
  ) {
    this.topo = topo;
    const ports = freePorts(4);
    this.controllers = [0, 1].map((i) => {
      const [metricsPort, healthPort] = [ports[2 * i]!, ports[2 * i + 1]!];
      const proc = new Supervised(`controller-${i}`, (n) =>
        ExecutableProcess.start("controller", [
          `--kubeconfig=${topo.cp.kubeconfig("controller")}`,
          "--leader-elect",
          `--lease-duration=${LEASE_DURATION}`,
          `--grace-period=${GRACE_PERIOD}`,
          `--metrics-addr=127.0.0.1:${metricsPort}`,
          "--metrics-insecure",
          `--health-addr=127.0.0.1:${healthPort}`,
          "--log-format=json",
        ], {
          logFile: `${topo.cp.dir}/controller-${i}.${n}.log`,
          env: { POD_NAME: `soak-controller-${i}` },
        }), onExit);
      return { proc, metricsPort };
    });
    this.agents = topo.nodes.map((node, i) =>
      new Supervised(`agent ${node.name}`, async (n) => {
        const proc = await topo.startAgent(node, [], { logName: `agent-${node.name}.${n}.log` });
        onAgentStart(i, proc);
        return proc;
      }, onExit)
    );
  }

  /** Every supervised process. */
  get all(): Supervised[] {
    return [...this.controllers.map((c) => c.proc), ...this.agents];
  }

  /** The replica holding the lease, as its own metrics say; undefined when none does. */
  async leader(): Promise<ControllerReplica | undefined> {
    for (const replica of this.controllers) {
      if (!replica.proc.current) continue;
      const text = await fetch(`http://127.0.0.1:${replica.metricsPort}/metrics`, {
        signal: AbortSignal.timeout(2_000),
      }).then((r) => r.text()).catch(() => "");
      if (/^iprule_controller_leader 1$/m.test(text)) return replica;
    }
    return undefined;
  }

  /** Samples the peak RSS of every process and server. */
  sampleRss(): void {
    for (const proc of this.all) proc.sampleRss();
    for (const name of ["etcd", "kube-apiserver"] as const) {
      let pid: number;
      try {
        pid = this.topo.serverPid(name);
      } catch {
        continue;
      }
      if (!isRunning(pid)) continue;
      this.serverPeakKiB.set(name, Math.max(this.serverPeakKiB.get(name) ?? 0, peakRssKiB(pid)));
    }
  }

  /** API requests by verb the agent on node `index` made since it started, or undefined. */
  async agentRequests(index: number): Promise<Map<string, number> | undefined> {
    const node = this.topo.node(index);
    try {
      const res = await fetch(`http://${node.address}:${AGENT_PORT}/metrics`, {
        signal: AbortSignal.timeout(2_000),
      });
      const byVerb = new Map<string, number>();
      for (const line of (await res.text()).split("\n")) {
        const m = /^iprule_agent_api_requests\{verb="(\w+)"\} (\d+)/.exec(line);
        if (m) byVerb.set(m[1]!, Number(m[2]));
      }
      return byVerb;
    } catch {
      return undefined;
    }
  }

  /**
   * Whether the agent on node `index` is connected to the API server as far as it knows: its
   * /readyz answers and does not say it cannot list or watch.
   */
  async agentConnected(index: number): Promise<boolean> {
    const node = this.topo.node(index);
    try {
      const res = await fetch(`http://${node.address}:${AGENT_HEALTH_PORT}/readyz`, {
        signal: AbortSignal.timeout(1_000),
      });
      const text = await res.text();
      return !/^not ready: (API server unreachable|IPRuleConfigs not listed)/.test(text);
    } catch {
      return false;
    }
  }
}

/** Resolves once the agent's log says it has listed its configs (it may act from then on). */
export async function agentListed(proc: ExecutableProcess, signal: AbortSignal): Promise<boolean> {
  let exited = false;
  void proc.status.then(() => (exited = true));
  while (!signal.aborted) {
    if ((await proc.log()).includes('"msg":"IPRuleConfigs listed"')) return true;
    if (exited) return false;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}
