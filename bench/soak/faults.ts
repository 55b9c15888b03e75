/**
 * Injects the scheduled faults into the soak's cluster and brings each target back after its
 * down time. Node faults act inside the node's network namespace only (its veth, its netfilter
 * tables, its rules), never on the machine's own. Each fault tells the checker when it starts,
 * when its target is back, and which nodes' agents cannot see the API server meanwhile.
 */
import type { KernelRule, RuleSocket } from "../../ffi/mod.ts";
import type { Topology } from "../../tests/support/topology.ts";
import { WATCH_SILENCE_MS } from "../../src/k8s/informer.ts";
import type { SoakProcesses } from "./cluster.ts";
import { type InvariantChecker, ruleBytes, summarize } from "./checker.ts";
import type { ChurnExecutor } from "./churn.ts";
import type { Random } from "./random.ts";
import { type Fault, faultLabel } from "./schedule.ts";
import { toggleTable, type World } from "./world.ts";

/** The kernel's own rules (local, main, default) carry this protocol; a flush keeps them. */
const RTPROT_KERNEL = 2;
/**
 * After the API server or etcd is back, an agent is taken as connected once its /readyz says
 * so, and at the latest after this long: the informers' backoff ceiling (30 s), after which a
 * retry has certainly been made.
 */
export const RECONNECT_CAP_MS = 30_000;
/** After the watchdog fired: a reconnect, a list and a reconcile on a loaded machine, ms. */
const RECONNECT_MARGIN_MS = 15_000;
/** Protocols the foreign process writes: static, boot, and two numbers no one assigned. */
const FOREIGN_PROTOCOLS = ["static", "boot", "99", "202"];

/** What the fault runner acts on. */
export interface FaultContext {
  topo: Topology;
  processes: SoakProcesses;
  checker: InvariantChecker;
  world: World;
  churn: ChurnExecutor;
  /** One netlink socket inside each node's namespace (the sampler's). */
  sockets: readonly RuleSocket[];
  /** The agents' rule protocol. */
  protocol: number;
  random: Random;
  /** ms since the soak's start. */
  now: () => number;
  log: (line: string) => void;
  signal: AbortSignal;
  /** Fast kernel sampling of one node until its flush repair is done (for the repair time). */
  watchRepair: (node: number) => Promise<void>;
  /** Runs a background task the soak waits for before it ends. */
  spawn: (task: Promise<unknown>) => void;
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });

/** Runs faults against the cluster. */
export class FaultRunner {
  readonly #c: FaultContext;
  /** Faults injected, by kind (and variant). */
  readonly counts = new Map<string, number>();
  /** Faults running now, and the most at once. */
  #running = 0;
  maxConcurrent = 0;
  /** When the last fault's target was back (ms since the start). */
  lastEnd = 0;
  /** Foreign rules added (accepted by the kernel) and refused (EEXIST and the like). */
  foreignAdded = 0;
  foreignRefused = 0;
  /** Mid-batch agent kills that caught the node's kernel changing. */
  midBatchHits = 0;

  constructor(context: FaultContext) {
    this.#c = context;
  }

  /** Per node, the outside process's last change of its rules (one at a time per node). */
  readonly #outside = new Map<number, Promise<unknown>>();

  /** Runs `change` after the node's previous flush or foreign rule change has finished. */
  #exclusive(node: number, change: () => Promise<void>): Promise<void> {
    const run = (this.#outside.get(node) ?? Promise.resolve()).catch(() => {}).then(change);
    this.#outside.set(node, run);
    return run;
  }

  #name(index: number): string {
    return this.#c.topo.node(index).name;
  }

  /** Injects one fault and waits until its target is back. */
  async run(fault: Fault): Promise<void> {
    const c = this.#c;
    const label = faultLabel(fault, (i) => this.#name(i));
    const key = fault.variant ? `${fault.kind} (${fault.variant})` : fault.kind;
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
    this.maxConcurrent = Math.max(this.maxConcurrent, ++this.#running);
    c.log(`fault ${label} at ${(c.now() / 1000).toFixed(1)}s`);
    c.checker.faultStarted(fault.id, label);
    try {
      switch (fault.kind) {
        case "apiserver-kill":
          return await this.#server("kube-apiserver", fault);
        case "etcd-kill":
          return await this.#server("etcd", fault);
        case "agent-kill":
          return await this.#agent(fault);
        case "leader-kill":
          return await this.#leader(fault);
        case "link-cut":
          return await this.#linkCut(fault);
        case "flush":
          return await this.#exclusive(fault.node!, () => this.#flush(fault.node!));
        case "foreign-rules":
          return await this.#exclusive(fault.node!, () => this.#foreign(fault.node!));
      }
    } catch (error: unknown) {
      c.log(`fault ${label} failed: ${error instanceof Error ? error.message : error}`);
      throw error;
    } finally {
      this.#running--;
      this.lastEnd = Math.max(this.lastEnd, c.now());
      c.checker.faultEnded(c.now(), fault.id);
    }
  }

  /** SIGKILL etcd or kube-apiserver, keep it down, start it, wait until the API serves. */
  async #server(name: "etcd" | "kube-apiserver", fault: Fault): Promise<void> {
    const c = this.#c;
    const reason = name === "etcd" ? "etcd" : "apiserver";
    const nodes = c.topo.nodes.map((_, i) => i);
    for (const i of nodes) c.checker.block(this.#name(i), reason, c.now());
    c.processes.sampleRss();
    await c.topo.killServer(name);
    await sleep(fault.downMs);
    await this.ensureServers();
    // The fault is over; each agent is taken as connected once it says so (in the background).
    const back = c.now();
    for (const i of nodes) {
      c.spawn((async () => {
        const deadline = back + RECONNECT_CAP_MS;
        while (c.now() < deadline && !c.signal.aborted) {
          if (await c.processes.agentConnected(i)) break;
          await sleep(200, c.signal);
        }
        c.checker.unblock(c.now(), this.#name(i), reason);
      })());
    }
  }

  /**
   * Starts etcd and kube-apiserver where they do not run (the one the soak kills, or one that
   * exited on its own: kube-apiserver gives up when etcd stays away at its start) and waits until
   * the API server is ready.
   */
  async ensureServers(): Promise<void> {
    const topo = this.#c.topo;
    for (let attempt = 0;; attempt++) {
      for (const name of ["etcd", "kube-apiserver"] as const) {
        if (!topo.serverRunning(name)) topo.startServer(name);
      }
      try {
        await topo.waitApiServer(20_000);
        return;
      } catch (error: unknown) {
        if (attempt >= 5) throw error;
      }
    }
  }

  async #agent(fault: Fault): Promise<void> {
    const c = this.#c;
    const index = fault.node!;
    const agent = c.processes.agents[index]!;
    if (fault.variant === "mid-batch") {
      // A batch on every node: soak-a's table moves, so each of its configs is replaced.
      const socket = c.sockets[index]!;
      const before = summarize(await socket.listRules(), c.protocol).own;
      c.churn.mark(toggleTable(c.world));
      const started = c.now();
      let changing = false;
      while (!changing && c.now() < started + 5_000) {
        const own = summarize(await socket.listRules(), c.protocol).own;
        changing = own.size !== before.size || [...own].some((k) => !before.has(k));
        if (!changing) await sleep(2);
      }
      if (changing) this.midBatchHits++;
      c.log(
        `fault #${fault.id}: ${
          changing
            ? `kernel changing ${c.now() - started} ms after the table edit`
            : "no kernel change within 5 s of the table edit"
        }; agent killed`,
      );
    }
    c.checker.agentDown(this.#name(index));
    await agent.kill();
    await sleep(fault.downMs);
    await agent.start();
  }

  async #leader(fault: Fault): Promise<void> {
    const c = this.#c;
    const leader = await c.processes.leader() ??
      c.processes.controllers[fault.id % c.processes.controllers.length]!;
    c.log(`fault #${fault.id}: killing ${leader.proc.role}`);
    await leader.proc.kill();
    await sleep(fault.downMs);
    await leader.proc.start();
  }

  async #linkCut(fault: Fault): Promise<void> {
    const c = this.#c;
    const index = fault.node!;
    const node = c.topo.node(index);
    const at = c.now();
    c.checker.block(node.name, "link", at);
    const port = new URL(c.topo.cp.server).port;
    const drop = (op: "-I" | "-D") =>
      [
        ["iptables", "-w", op, "OUTPUT", "-p", "tcp", "-d", c.topo.gateway, "--dport", port, "-j"],
        ["iptables", "-w", op, "INPUT", "-p", "tcp", "-s", c.topo.gateway, "--sport", port, "-j"],
      ].map((argv) => [...argv, "DROP"]);
    if (fault.variant === "drop") {
      for (const argv of drop("-I")) await run(node.ns.run(argv));
    } else {
      await node.ns.ip(["link", "set", "eth0", "down"]);
    }
    await sleep(fault.downMs);
    if (fault.variant === "drop") {
      for (const argv of drop("-D")) await run(node.ns.run(argv));
    } else {
      await node.ns.ip(["link", "set", "eth0", "up"]);
    }
    // A silent cut leaves the agent's watch stream open. TCP resumes it at the API server's next
    // retransmission, or, when the server forgot the connection meanwhile (restarted, gave up),
    // the agent's watchdog replaces it once the server's bookmark heartbeat is overdue. The
    // soak cannot tell which from outside: the node counts as connected again once it is seen
    // converged, at the latest when the watchdog must have fired.
    c.checker.unblockWhenConverged(
      node.name,
      "link",
      c.now(),
      at + WATCH_SILENCE_MS + RECONNECT_MARGIN_MS,
    );
  }

  /** Deletes every rule but the kernel's own, as networkd and NetworkManager do. */
  async #flush(index: number): Promise<void> {
    const c = this.#c;
    const node = this.#name(index);
    const socket = c.sockets[index]!;
    c.checker.foreignBusy(node);
    const rules = await socket.listRules();
    const victims = rules.filter((r) => r.protocol !== RTPROT_KERNEL);
    c.checker.flushed(c.now(), node, summarize(rules, c.protocol));
    await socket.deleteRules(victims);
    c.checker.expectForeign(
      node,
      rules.filter((r) => r.protocol === RTPROT_KERNEL).map(ruleBytes),
    );
    await c.watchRepair(index);
  }

  /** A foreign process adds one to three rules with sources of present configs. */
  async #foreign(index: number): Promise<void> {
    const c = this.#c;
    const node = c.topo.node(index);
    const socket = c.sockets[index]!;
    const wanted = [...c.checker.desired.current].map(parseKey).filter((k) => k !== undefined);
    c.checker.foreignBusy(node.name);
    const before = await socket.listRules();
    for (let i = c.random.int(1, 3); i > 0; i--) {
      const base = wanted.length > 0 ? c.random.pick(wanted) : {
        src: `10.96.${c.random.int(200, 250)}.${c.random.int(1, 254)}`,
        table: 100,
        priority: 1000,
      };
      const shape = c.random.pick(["priority", "table", "ipproto", "fwmark", "same"] as const);
      const args = [
        ...(base.src.includes(":") ? ["-6"] : []),
        "rule",
        "add",
        "from",
        base.src,
        ...(shape === "ipproto"
          ? ["ipproto", "tcp"]
          : shape === "fwmark"
          ? ["fwmark", "0x10"]
          : []),
        "lookup",
        String(shape === "table" ? base.table + 50 : base.table),
        "priority",
        String(shape === "priority" ? base.priority + 7 : base.priority),
        "proto",
        c.random.pick(FOREIGN_PROTOCOLS),
      ];
      const out = await node.ns.run(["ip", ...args]);
      if (out.code === 0) this.foreignAdded++;
      else this.foreignRefused++;
    }
    const after = await socket.listRules();
    const isForeign = (r: KernelRule) => r.protocol !== c.protocol;
    const old = new Set(before.filter(isForeign).map(ruleBytes));
    const added = after.filter(isForeign).map(ruleBytes).filter((r) => !old.has(r));
    c.checker.expectForeign(node.name, [...old, ...added]);
  }
}

/** `from SRC lookup T priority P` back into its parts. */
function parseKey(key: string): { src: string; table: number; priority: number } | undefined {
  const m = /^from (\S+) lookup (\d+) priority (\d+)$/.exec(key);
  return m ? { src: m[1]!, table: Number(m[2]), priority: Number(m[3]) } : undefined;
}

async function run(output: Promise<{ code: number; stderr: string }>): Promise<void> {
  const out = await output;
  if (out.code !== 0) throw new Error(`Command failed with "${out.code}": ${out.stderr.trim()}`);
}
