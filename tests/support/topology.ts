/**
 * A small cluster for end-to-end tests: a Linux bridge in the root namespace, N "nodes" (each a
 * fresh network namespace joined to the bridge by a veth pair), and a real control plane whose
 * kube-apiserver listens on the bridge address, so agents inside the node namespaces reach it.
 * The operator's namespace and RBAC (deploy/) are applied and a Node object exists per node.
 *
 * One topology per test file (`await using topo = await startTopology({ nodes: 2 })`); teardown
 * stops restarted servers (etcd, kube-apiserver), the control plane, the namespaces and the
 * bridge, also when the test or the setup fails; SIGINT/SIGTERM (e.g. `timeout`) and process
 * exit remove the namespaces and the bridge too. Needs root and the control-plane binaries;
 * without them it throws an error naming what is missing (tests fail, never skip).
 *
 * @module
 */
import { type ControlPlane, isRunning, startControlPlane } from "./controlplane.ts";
import { Netns, requireRoot } from "./netns.ts";
import { ExecutableProcess } from "./process.ts";

const ROOT = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");
/** Port of every agent's /metrics on its node address. */
export const AGENT_PORT = 9472;
/** Port of every agent's /healthz and /readyz on its node address. */
export const AGENT_HEALTH_PORT = 9473;
const START_TIMEOUT_MS = 60_000;

/** A control-plane server of a topology, by its executable's name. */
export type ServerName = "etcd" | "kube-apiserver";
const SERVERS: readonly ServerName[] = ["etcd", "kube-apiserver"];

/** The flag that tells this topology's `name` from any other on the machine. */
function serverMarker(name: ServerName, dir: string): string {
  return name === "etcd" ? `--data-dir=${dir}/etcd` : `--cert-dir=${dir}/pki`;
}

/** One node: its Kubernetes name, network namespace and address on the bridge. */
export interface TopologyNode {
  /** Name of the Node object, passed to the agent as --node-name. */
  name: string;
  /** The node's network namespace. */
  ns: Netns;
  /** The node's IPv4 address on the bridge. */
  address: string;
}

/** Options of {@linkcode startTopology}. */
export interface TopologyOptions {
  /** Number of node namespaces; default 1. */
  nodes?: number;
  /** Node names are `<prefix>-<i>`; default "node". */
  namePrefix?: string;
}

/** Options of {@linkcode Topology.startAgent}. */
export interface StartAgentOptions {
  /** Log file name in the control plane's dir; default `agent-<node>.log`. */
  logName?: string;
  /** Extra environment variables. */
  env?: Record<string, string>;
  /** Leave out the default flags (kubeconfig, node name, metrics address, log format). */
  bare?: boolean;
  /** A command that runs the agent's `ip netns exec …` (e.g. `MemoryCgroup.wrapper()`). */
  wrapper?: readonly string[];
  /** The deno binary; default the test's. */
  runtime?: string;
  /** The checkout whose agent runs; default this one. */
  root?: string;
  /**
   * Serve /metrics as in a cluster: HTTPS, each request's token checked with the API server.
   * Default false: plain HTTP, so that tests read the counters without a token.
   */
  secureMetrics?: boolean;
}

async function run(cmd: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  const decoder = new TextDecoder();
  if (!out.success) {
    throw new Error(
      `Command "${cmd} ${args.join(" ")}" failed with "${out.code}": ${
        decoder.decode(out.stderr).trim()
      }`,
    );
  }
  return decoder.decode(out.stdout);
}

/** A free 198.18.X.0/24 (RFC 2544 benchmarking space) no interface here uses yet. */
async function freeSubnet(): Promise<string> {
  const used = await run("ip", ["-4", "-o", "addr", "show"]);
  for (let attempt = 0; attempt < 64; attempt++) {
    const n = Math.floor(Math.random() * 512);
    const prefix = `198.${18 + (n >> 8)}.${n & 255}`;
    if (!used.includes(` ${prefix}.`)) return prefix;
  }
  throw new Error("No free 198.18.0.0/15 subnet for the test bridge");
}

/** Namespaces and bridges of live topologies, removed on SIGINT/SIGTERM and at exit. */
const live = new Map<string, string[]>();

/** Deletes the live topologies' namespaces and bridges synchronously (signal and exit paths). */
function removeLive(): void {
  for (const [bridge, namespaces] of live) {
    for (const ns of namespaces) {
      new Deno.Command("ip", { args: ["netns", "del", ns], stderr: "null" }).outputSync();
    }
    new Deno.Command("ip", { args: ["link", "del", bridge], stderr: "null" }).outputSync();
  }
  live.clear();
}

function onSignal(): void {
  removeLive();
  // Exiting dispatches "unload": the control plane helper kills its processes there.
  Deno.exit(130);
}

function track(bridge: string, namespaces: string[]): void {
  if (live.size === 0) {
    Deno.addSignalListener("SIGINT", onSignal);
    Deno.addSignalListener("SIGTERM", onSignal);
    globalThis.addEventListener("unload", removeLive);
  }
  live.set(bridge, namespaces);
}

function untrack(bridge: string): void {
  if (!live.delete(bridge) || live.size > 0) return;
  Deno.removeSignalListener("SIGINT", onSignal);
  Deno.removeSignalListener("SIGTERM", onSignal);
  globalThis.removeEventListener("unload", removeLive);
}

/** A bridge, its node namespaces and a control plane bound to the bridge. */
export class Topology implements AsyncDisposable {
  /** The control plane (admin, controller and agent kubeconfigs). */
  readonly cp: ControlPlane;
  /** The nodes, in order. */
  readonly nodes: readonly TopologyNode[];
  /** Bridge interface name in the root namespace. */
  readonly bridge: string;
  /** The bridge's address, where kube-apiserver listens. */
  readonly gateway: string;
  /** Servers started again by this topology, by name. */
  readonly #children = new Map<ServerName, Deno.ChildProcess>();
  readonly #pids = new Map<ServerName, number>();
  readonly #args = new Map<ServerName, string[]>();
  #stopped = false;

  /** Wraps the started parts; use {@linkcode startTopology}. */
  constructor(init: { cp: ControlPlane; nodes: TopologyNode[]; bridge: string; gateway: string }) {
    this.cp = init.cp;
    this.nodes = init.nodes;
    this.bridge = init.bridge;
    this.gateway = init.gateway;
    // Their flags now, so that either can be started again however it stopped.
    for (const name of SERVERS) this.serverPid(name);
  }

  /** The node at `index`; throws when there is none. */
  node(index: number): TopologyNode {
    const node = this.nodes[index];
    if (node === undefined) throw new RangeError(`No node "${index}" in the topology`);
    return node;
  }

  /**
   * Starts the agent inside `node`'s namespace with the compiled agent's permission flags, the
   * agent's RBAC identity, `--node-name`, `--metrics-addr=<address>:9472` (plain HTTP unless
   * `secureMetrics`), `--health-addr=<address>:9473` and JSON logs, plus `args`.
   */
  startAgent(
    node: TopologyNode,
    args: readonly string[] = [],
    options: StartAgentOptions = {},
  ): Promise<ExecutableProcess> {
    const defaults = options.bare ? [] : [
      `--kubeconfig=${this.cp.kubeconfig("agent")}`,
      `--node-name=${node.name}`,
      `--metrics-addr=${node.address}:${AGENT_PORT}`,
      ...(options.secureMetrics ? [] : ["--metrics-insecure"]),
      `--health-addr=${node.address}:${AGENT_HEALTH_PORT}`,
      "--log-format=json",
    ];
    return ExecutableProcess.start("agent", [...defaults, ...args], {
      logFile: `${this.cp.dir}/${options.logName ?? `agent-${node.name}.log`}`,
      prefix: [...(options.wrapper ?? []), ...node.ns.exec([])],
      ...(options.env ? { env: options.env } : {}),
      ...(options.runtime ? { runtime: options.runtime } : {}),
      ...(options.root ? { root: options.root } : {}),
    });
  }

  /** Process id of the running `name` (etcd or kube-apiserver) of this topology. */
  serverPid(name: ServerName): number {
    const pid = this.#pids.get(name);
    if (pid !== undefined && isRunning(pid)) return pid;
    const marker = serverMarker(name, this.cp.dir);
    for (const entry of Deno.readDirSync("/proc")) {
      if (!/^\d+$/.test(entry.name)) continue;
      try {
        const args = Deno.readTextFileSync(`/proc/${entry.name}/cmdline`).split("\0");
        if (args[0]?.endsWith(`/${name}`) && args.includes(marker) && isRunning(+entry.name)) {
          this.#pids.set(name, Number(entry.name));
          this.#args.set(name, args.filter((a) => a !== ""));
          return Number(entry.name);
        }
      } catch {
        // Exited meanwhile.
      }
    }
    throw new Error(`No ${name} of "${this.cp.dir}" runs`);
  }

  /** Whether `name` runs. */
  serverRunning(name: ServerName): boolean {
    try {
      this.serverPid(name);
      return true;
    } catch {
      return false;
    }
  }

  /** Process id of the running kube-apiserver. */
  apiserverPid(): number {
    return this.serverPid("kube-apiserver");
  }

  /**
   * SIGKILLs `name` and waits until it is gone; {@linkcode Topology.startServer} starts it again
   * with the same flags (same ports, certificates, data directory).
   */
  async killServer(name: ServerName): Promise<void> {
    const pid = this.serverPid(name);
    const child = this.#children.get(name);
    if (child) {
      try {
        child.kill("SIGKILL");
      } catch {
        // Exited meanwhile.
      }
      await child.status;
      this.#children.delete(name);
    } else {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch {
        // Exited meanwhile.
      }
    }
    const deadline = Date.now() + 10_000;
    while (isRunning(pid)) {
      if (Date.now() > deadline) throw new Error(`${name} "${pid}" did not exit`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /**
   * Starts `name` again with the flags it last ran with, its output appended to its log; does
   * not wait for it to serve (see {@linkcode Topology.waitApiServer}).
   */
  startServer(name: ServerName): void {
    const args = this.#args.get(name);
    if (args === undefined) throw new Error(`startServer("${name}") needs it to have run first`);
    if (this.serverRunning(name)) throw new Error(`${name} of "${this.cp.dir}" runs already`);
    const child = new Deno.Command("/bin/sh", {
      args: [
        "-c",
        'log=$1; shift; exec "$@" >>"$log" 2>&1',
        "sh",
        this.cp.logFile(name),
        "setpriv",
        "--pdeathsig",
        "KILL",
        "--",
        ...args,
      ],
      stdin: "null",
      stdout: "null",
      stderr: "null",
      cwd: this.cp.dir,
    }).spawn();
    this.#children.set(name, child);
    this.#pids.set(name, child.pid);
  }

  /** Waits until kube-apiserver answers /readyz with 200 (etcd reachable, CRDs served). */
  async waitApiServer(timeoutMs = START_TIMEOUT_MS): Promise<void> {
    const client = Deno.createHttpClient({ caCerts: [this.cp.caCert] });
    try {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const res = await fetch(`${this.cp.server}/readyz`, {
          client,
          headers: { authorization: `Bearer ${this.cp.token("admin")}` },
          signal: AbortSignal.timeout(5_000),
        }).catch(() => undefined);
        await res?.body?.cancel();
        if (res?.status === 200) return;
        if (Date.now() > deadline) throw new Error("kube-apiserver did not become ready again");
        await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      client.close();
    }
  }

  /** Kills kube-apiserver (etcd keeps running) and waits until it is gone. */
  stopApiServer(): Promise<void> {
    return this.killServer("kube-apiserver");
  }

  /** Starts kube-apiserver again with the same flags (same port, certificates and etcd). */
  async startApiServer(): Promise<void> {
    this.startServer("kube-apiserver");
    await this.waitApiServer();
  }

  /** Stops everything: restarted servers, the control plane, the nodes, the bridge. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    const errors: unknown[] = [];
    for (const child of this.#children.values()) {
      try {
        child.kill("SIGKILL");
      } catch {
        // Exited.
      }
      await child.status;
    }
    await this.cp.stop().catch((e) => errors.push(e));
    await teardown(this.nodes.map((n) => n.ns), this.bridge, errors);
    untrack(this.bridge);
    if (errors.length > 0) {
      throw new AggregateError(errors, "Topology teardown failed");
    }
  }

  /** Same as {@linkcode Topology.stop}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}

async function teardown(namespaces: Netns[], bridge: string, errors: unknown[]): Promise<void> {
  for (const ns of namespaces) await ns.delete().catch((e) => errors.push(e));
  if (bridge === "") return;
  const out = await new Deno.Command("ip", { args: ["link", "del", bridge], stderr: "piped" })
    .output();
  const text = new TextDecoder().decode(out.stderr);
  if (!out.success && !/Cannot find device/.test(text)) {
    errors.push(new Error(`Cannot delete bridge "${bridge}": ${text.trim()}`));
  }
}

/**
 * Creates the bridge and `nodes` namespaces, starts the control plane on the bridge address,
 * applies deploy/namespace.yaml and deploy/rbac.yaml and creates one Node object per node.
 */
export async function startTopology(options: TopologyOptions = {}): Promise<Topology> {
  requireRoot();
  const count = options.nodes ?? 1;
  const prefix = options.namePrefix ?? "node";
  const id = crypto.randomUUID().slice(0, 6);
  const bridge = `iprbr-${id}`;
  const subnet = await freeSubnet();
  const gateway = `${subnet}.1`;
  const nodes: TopologyNode[] = [];
  const namespaces: string[] = [];
  // Tracked before anything exists, so that an interrupted setup is removed too.
  track(bridge, namespaces);
  let bridgeMade = false;
  try {
    await run("ip", ["link", "add", bridge, "type", "bridge"]);
    bridgeMade = true;
    await run("ip", ["addr", "add", `${gateway}/24`, "dev", bridge]);
    await run("ip", ["link", "set", bridge, "up"]);
    for (let i = 0; i < count; i++) {
      const ns = await Netns.create();
      namespaces.push(ns.name);
      const address = `${subnet}.${11 + i}`;
      nodes.push({ name: `${prefix}-${i}`, ns, address });
      const veth = `iprv${id}-${i}`;
      await run("ip", [
        "link",
        "add",
        veth,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        ns.name,
      ]);
      await run("ip", ["link", "set", veth, "master", bridge, "up"]);
      await ns.ip(["addr", "add", `${address}/24`, "dev", "eth0"]);
      await ns.ip(["link", "set", "eth0", "up"]);
      await ns.ip(["link", "set", "lo", "up"]);
    }
  } catch (error: unknown) {
    await teardown(nodes.map((n) => n.ns), bridgeMade ? bridge : "", []);
    untrack(bridge);
    throw error;
  }
  let cp: ControlPlane | undefined;
  try {
    cp = await startControlPlane({ bindAddress: gateway });
    await cp.kubectl([
      "apply",
      "-f",
      `${ROOT}/deploy/namespace.yaml`,
      "-f",
      `${ROOT}/deploy/rbac.yaml`,
    ]);
    const nodeObjects = nodes.map((n) => ({
      apiVersion: "v1",
      kind: "Node",
      metadata: { name: n.name, labels: { "kubernetes.io/os": "linux" } },
    }));
    await cp.kubectl(["apply", "-f", "-"], {
      stdin: JSON.stringify({ apiVersion: "v1", kind: "List", items: nodeObjects }),
    });
    return new Topology({ cp, nodes, bridge, gateway });
  } catch (error: unknown) {
    await cp?.stop().catch(() => {});
    await teardown(nodes.map((n) => n.ns), bridge, []);
    untrack(bridge);
    throw error;
  }
}
