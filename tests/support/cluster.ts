/**
 * A real multi-node Kubernetes cluster on this machine, for the cluster tier (tests/cluster/),
 * `task cluster:up` and `task demo:cluster`: etcd, kube-apiserver, kube-controller-manager and
 * kube-scheduler (built from upstream by scripts/controlplane-build.sh), and N nodes, each a
 * containerd + kubelet + kube-proxy (Debian's containerd, runc and CNI plugins) in a network
 * namespace named after the node, on a bridge with 198.18.0.0/15 addresses. The images of
 * scripts/images-build.sh (ours, and pause) are imported into every node's containerd, so Pods
 * with `imagePullPolicy: IfNotPresent` run them without a registry.
 *
 * Each node also has its own view of the host's files: containerd, the kubelet and kube-proxy
 * run in a mount namespace of the node where /etc, /usr and /var are overlays of the machine's
 * (writes land in the node's directory) and /run is the node's own tmpfs. hostPath volumes
 * resolve there, so a test plants a node's /etc/kubernetes/pki or networkd setting with
 * {@linkcode Cluster.exec} without touching the machine or the other nodes, and everything the
 * node mounts (volumes, container roots, Pod network namespaces) goes with its namespace.
 * Processes join with `nsenter`, never `ip netns exec`: that one remounts /sys, where the kubelet
 * looks for its cgroups.
 *
 * Per node: cgroup root `/<node>` in every hierarchy (cgroup v1 here: `failCgroupV1: false`,
 * cgroupfs driver), `restrict_oom_score_adj` and `oomScoreAdj: 0` (no CAP_SYS_RESOURCE here),
 * Pod CIDR 10.244.<i>.0/24 on a CNI bridge. The kubelet sets global sysctls (vm.overcommit_memory,
 * kernel.panic, ...): their values before the first cluster are restored after the last one.
 *
 * Teardown (`stop()`, `await using`, `task cluster:down`, or the next start after a crash)
 * works from the state file: processes by PID (checked against their command line), the
 * processes left in the nodes' cgroups and mount namespaces (container shims), the namespaces,
 * cgroups, bridge, sysctls, the control plane and the state directory.
 *
 * @module
 */
import {
  type ControlPlane,
  CONTROLPLANE_BIN_DIR,
  isRunning,
  startControlPlane,
  stopControlPlaneAt,
} from "./controlplane.ts";
import { createBridge, joinBridge, requireRoot } from "./netns.ts";
import { type CommandOutput, runCommand } from "./command.ts";

const ROOT = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");
/** What scripts/images-build.sh built: image references and the archives for the nodes. */
export const IMAGES_FILE = `${ROOT}/.cache/images/images.json`;
const STATE_FILE = "cluster.json";
const TEMP_PREFIX = "ipro-cluster-";
const READY_TIMEOUT_MS = 180_000;
/** The kubelet's global sysctls (pkg/kubelet/cm: setupKernelTunables). */
const KUBELET_SYSCTLS = [
  "vm/overcommit_memory",
  "vm/panic_on_oom",
  "kernel/panic",
  "kernel/panic_on_oops",
  "kernel/keys/root_maxkeys",
  "kernel/keys/root_maxbytes",
];
/** Values of KUBELET_SYSCTLS before the first live cluster, and the clusters holding them. */
const SYSCTL_FILE = `${Deno.env.get("TMPDIR") || "/tmp"}/ipro-cluster-sysctls.json`;
const CNI_PLUGINS = "/usr/lib/cni";
const RUNC = "/usr/sbin/runc";

/** The images of scripts/images-build.sh. */
export interface ClusterImages {
  /** `compiled` (deno compile) or `standin` (scripts/standin.ts). */
  executables: "compiled" | "standin";
  /** The controller's image reference. */
  controller: string;
  /** The agent's image reference. */
  agent: string;
  /** The sandbox (pause) image. */
  pause: string;
  /** Docker archives imported into every node's containerd. */
  archives: string[];
}

/** A cluster could not be started, or something it needs is missing. */
export class ClusterError extends Error {
  override name = "ClusterError";
}

/** One node: its name (also its network namespace's), address and index (Pod CIDR). */
export interface ClusterNode {
  /** Node name and network namespace name (`ip -n <name> rule`). */
  name: string;
  /** IPv4 address on the bridge (the kubelet's --node-ip). */
  address: string;
  /** 1-based; the node's Pod CIDR is 10.244.<index>.0/24. */
  index: number;
}

/** What teardown needs, written as the cluster comes up. */
interface ClusterState {
  /** The process that owns a non-detached cluster (tests), removed when it dies. */
  owner: number;
  bridge: string;
  nodes: (ClusterNode & { veth: string })[];
  /** Processes started besides the control plane's, with a marker in their command line. */
  pids: number[];
  /** Whether this cluster registered in SYSCTL_FILE. */
  sysctls: boolean;
}

/** Options of {@linkcode startCluster}. */
export interface ClusterOptions {
  /** Number of nodes; default 3. */
  nodes?: number;
  /** Node names are `<prefix>-<i>`; default a random `ipc<hex>`. */
  prefix?: string;
  /** State directory (created, must be empty); default a fresh temp dir removed on stop. */
  dir?: string;
  /** Start every process in its own session so it outlives this one (`task cluster:up`). */
  detached?: boolean;
  /** Progress lines. */
  log?: (message: string) => void;
}

export type { CommandOutput };

async function command(
  argv: readonly string[],
  options: { stdin?: string; check?: boolean } = {},
): Promise<CommandOutput> {
  const result = await runCommand(argv[0]!, argv.slice(1), { stdin: options.stdin });
  if ((options.check ?? true) && result.code !== 0) {
    throw new ClusterError(
      `Command "${argv.join(" ")}" failed with "${result.code}": ${result.stderr.trim()}`,
    );
  }
  return result;
}

const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

async function waitUntil(
  what: string,
  check: () => Promise<boolean>,
  timeoutMs = READY_TIMEOUT_MS,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new ClusterError(`Timed out after ${timeoutMs} ms: ${what}`);
    await delay(200);
  }
}

/** Reads what scripts/images-build.sh built; fails naming the script when it has not run. */
export async function readImages(): Promise<ClusterImages> {
  try {
    return JSON.parse(await Deno.readTextFile(IMAGES_FILE)) as ClusterImages;
  } catch (error: unknown) {
    throw new ClusterError(
      `No images in "${IMAGES_FILE}": run ./scripts/images-build.sh (needs podman: ./scripts/cluster-setup.sh)`,
      { cause: error },
    );
  }
}

/** Paths of one node's files below the state directory. */
function nodePaths(dir: string, name: string) {
  const base = `${dir}/nodes/${name}`;
  return {
    base,
    /** Bind mount that keeps the node's mount namespace. */
    mntns: `${dir}/ns/${name}`,
    containerd: `${base}/containerd`,
    socket: `${base}/containerd/containerd.sock`,
    kubelet: `${base}/kubelet`,
    cni: `${base}/cni`,
    overlay: `${base}/overlay`,
  };
}

/** A started cluster; stop it with `stop()` or `await using`. */
export class Cluster implements AsyncDisposable {
  /** The control plane (admin kubeconfig and kubectl). */
  readonly cp: ControlPlane;
  /** The nodes, in order. */
  readonly nodes: readonly ClusterNode[];
  /** State directory: kubeconfigs, logs, the nodes' files. */
  readonly dir: string;
  /** The images every node has. */
  readonly images: ClusterImages;
  /** The bridge's address, where kube-apiserver listens. */
  readonly gateway: string;
  readonly #ownsDir: boolean;
  #stopped = false;

  /** Wraps a started cluster; use {@linkcode startCluster}. */
  constructor(init: {
    cp: ControlPlane;
    nodes: ClusterNode[];
    dir: string;
    images: ClusterImages;
    gateway: string;
    ownsDir: boolean;
  }) {
    this.cp = init.cp;
    this.nodes = init.nodes;
    this.dir = init.dir;
    this.images = init.images;
    this.gateway = init.gateway;
    this.#ownsDir = init.ownsDir;
  }

  /** The node named `name`; throws when there is none. */
  node(name: string): ClusterNode {
    const node = this.nodes.find((n) => n.name === name);
    if (!node) throw new RangeError(`No node "${name}" in the cluster`);
    return node;
  }

  /** Runs `argv` as the node sees the machine: its network and mount namespaces. */
  exec(
    node: ClusterNode,
    argv: readonly string[],
    options: { stdin?: string; check?: boolean } = {},
  ): Promise<CommandOutput> {
    return command(nodeCommand(this.dir, node.name, argv), options);
  }

  /** `ip -n <node> ARGS`: its standard output; throws on failure. */
  async ip(node: ClusterNode, args: readonly string[]): Promise<string> {
    return (await command(["ip", "-n", node.name, ...args])).stdout;
  }

  /** Log file of a node's `containerd`, `kubelet` or `kube-proxy`, or of a control-plane part. */
  logFile(name: string, node?: ClusterNode): string {
    return node ? `${nodePaths(this.dir, node.name).base}/${name}.log` : `${this.dir}/${name}.log`;
  }

  /**
   * Stops one node as a machine going off: its kubelet, kube-proxy, containerd and containers
   * are killed; its namespaces stay until the cluster stops.
   */
  async stopNode(node: ClusterNode): Promise<void> {
    const state = await readState(this.dir);
    if (!state) throw new ClusterError(`No cluster state in "${this.dir}"`);
    const marker = `${nodePaths(this.dir, node.name).base}/`;
    await killPids(state.pids.filter((pid) => isRunning(pid, marker)), this.dir);
    await killNodeProcesses(this.dir, node.name);
  }

  /** Tears everything down (see the module doc); idempotent. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    untrack(this);
    await this.cp.stop().catch(() => {});
    await teardown(this.dir, { removeDir: this.#ownsDir });
  }

  /** Same as {@linkcode Cluster.stop}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}

/** The argv running `argv` in the node's network and mount namespaces. */
function nodeCommand(dir: string, name: string, argv: readonly string[]): string[] {
  return [
    "nsenter",
    `--net=/run/netns/${name}`,
    `--mount=${nodePaths(dir, name).mntns}`,
    "--",
    ...argv,
  ];
}

const live = new Set<Cluster>();
function onUnload(): void {
  // Synchronous: only the processes; the next start removes the rest (its owner is dead).
  for (const cluster of live) {
    try {
      const state = JSON.parse(Deno.readTextFileSync(`${cluster.dir}/${STATE_FILE}`));
      for (const pid of state.pids as number[]) {
        if (isRunning(pid, cluster.dir)) Deno.kill(pid, "SIGKILL");
      }
    } catch {
      // Nothing recorded yet.
    }
  }
}
function track(cluster: Cluster): void {
  if (live.size === 0) globalThis.addEventListener("unload", onUnload);
  live.add(cluster);
}
function untrack(cluster: Cluster): void {
  if (live.delete(cluster) && live.size === 0) {
    globalThis.removeEventListener("unload", onUnload);
  }
}

async function readState(dir: string): Promise<ClusterState | null> {
  try {
    return JSON.parse(await Deno.readTextFile(`${dir}/${STATE_FILE}`)) as ClusterState;
  } catch (error: unknown) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
}

async function writeState(dir: string, state: ClusterState): Promise<void> {
  await Deno.writeTextFile(`${dir}/${STATE_FILE}.tmp`, JSON.stringify(state, null, 2));
  await Deno.rename(`${dir}/${STATE_FILE}.tmp`, `${dir}/${STATE_FILE}`);
}

/** Whether a cluster's state (with running processes) is recorded in `dir`. */
export async function clusterRunning(dir: string): Promise<boolean> {
  const state = await readState(dir);
  return state !== null && state.pids.length > 0 && state.pids.every((p) => isRunning(p, dir));
}

/** A free 198.18.X.0/24 no interface here uses yet. */
async function freeSubnet(): Promise<string> {
  const used = (await command(["ip", "-4", "-o", "addr", "show"])).stdout;
  for (let attempt = 0; attempt < 64; attempt++) {
    const n = Math.floor(Math.random() * 512);
    const prefix = `198.${18 + (n >> 8)}.${n & 255}`;
    if (!used.includes(` ${prefix}.`)) return prefix;
  }
  throw new ClusterError("No free 198.18.0.0/15 subnet for the cluster's bridge");
}

/** Removes the state dirs of test clusters whose owner died without cleaning up. */
async function removeOrphans(): Promise<void> {
  const base = Deno.env.get("TMPDIR") || "/tmp";
  for await (const entry of Deno.readDir(base)) {
    if (!entry.isDirectory || !entry.name.startsWith(TEMP_PREFIX)) continue;
    const dir = `${base}/${entry.name}`;
    const state = await readState(dir).catch(() => null);
    if (state && state.owner !== Deno.pid && !isRunning(state.owner)) {
      await teardown(dir, { removeDir: true }).catch(() => {});
    }
  }
}

/**
 * Starts a cluster: bridge and node namespaces, control plane, then every node in parallel
 * (containerd, images, kubelet, kube-proxy) until each Node is Ready and reaches the
 * `kubernetes` Service. Needs root, the built binaries and images; fails naming what is missing.
 */
export async function startCluster(options: ClusterOptions = {}): Promise<Cluster> {
  requireRoot();
  const log = options.log ?? (() => {});
  for (const name of ["kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy"]) {
    if (!(await Deno.stat(`${CONTROLPLANE_BIN_DIR}/${name}`).catch(() => null))) {
      throw new ClusterError(
        `"${CONTROLPLANE_BIN_DIR}/${name}" is missing: run ./scripts/controlplane-build.sh`,
      );
    }
  }
  for (const tool of ["containerd", "ctr", RUNC, `${CNI_PLUGINS}/bridge`, "nsenter", "iptables"]) {
    const found = tool.startsWith("/")
      ? await Deno.stat(tool).then(() => true, () => false)
      : (await command(["sh", "-c", `command -v ${tool}`], { check: false })).code === 0;
    if (!found) {
      throw new ClusterError(`"${tool}" is missing: run ./scripts/cluster-setup.sh`);
    }
  }
  const images = await readImages();
  await removeOrphans();

  const count = options.nodes ?? 3;
  const id = crypto.randomUUID().slice(0, 6);
  const prefix = options.prefix ?? `ipc${id}`;
  const ownsDir = options.dir === undefined;
  const dir = options.dir ?? await Deno.makeTempDir({ prefix: TEMP_PREFIX });
  const subnet = await freeSubnet();
  const gateway = `${subnet}.1`;
  const state: ClusterState = {
    owner: options.detached ? 0 : Deno.pid,
    bridge: `iprbr${id}`,
    nodes: Array.from({ length: count }, (_, i) => ({
      name: `${prefix}-${i + 1}`,
      address: `${subnet}.${11 + i}`,
      index: i + 1,
      veth: `iprv${id}${i + 1}`,
    })),
    pids: [],
    sysctls: false,
  };
  await writeState(dir, state);
  const started = performance.now();
  const elapsed = () => `${((performance.now() - started) / 1000).toFixed(1)} s`;
  let cp: ControlPlane | undefined;
  try {
    await network(dir, state, gateway);
    log(`bridge ${state.bridge} (${gateway}/24) and ${count} node namespaces (${elapsed()})`);
    cp = await startControlPlane({
      dir: `${dir}/controlplane`,
      crds: false,
      detached: options.detached ?? false,
      bindAddress: gateway,
      apiserverArgs: [
        "--authorization-mode=Node,RBAC",
        "--allow-privileged=true",
        "--kubelet-preferred-address-types=InternalIP",
      ],
      users: state.nodes.map((n) => ({ user: `system:node:${n.name}`, groups: ["system:nodes"] })),
    });
    log(`control plane at ${cp.server} (${elapsed()})`);
    // Nodes start in parallel: their state writes go one after the other.
    let saving = Promise.resolve();
    const spawn = async (name: string, argv: string[], logFile: string) => {
      const pid = spawnProcess(argv, logFile, options.detached ?? false);
      state.pids.push(pid);
      await (saving = saving.then(() => writeState(dir, state)));
      log(`  ${name} pid ${pid}`);
    };
    await spawn("kube-controller-manager", [
      `${CONTROLPLANE_BIN_DIR}/kube-controller-manager`,
      `--kubeconfig=${cp.kubeconfig("admin")}`,
      "--leader-elect=false",
      "--secure-port=0",
      `--service-account-private-key-file=${cp.dir}/pki/sa.key`,
      // Without it kube-root-ca.crt is empty and in-cluster clients fail TLS.
      `--root-ca-file=${cp.dir}/pki/apiserver.crt`,
      "--use-service-account-credentials=false",
      "--controllers=*",
      "--node-monitor-grace-period=20s",
      `--cluster-name=${prefix}`,
    ], `${dir}/kube-controller-manager.log`);
    await spawn("kube-scheduler", [
      `${CONTROLPLANE_BIN_DIR}/kube-scheduler`,
      `--kubeconfig=${cp.kubeconfig("admin")}`,
      "--leader-elect=false",
      "--secure-port=0",
    ], `${dir}/kube-scheduler.log`);
    await registerSysctls(dir, state);
    const controlPlane = cp;
    await Promise.all(state.nodes.map((node) => startNode(dir, controlPlane, node, images, spawn)));
    log(`${count} nodes Ready (${elapsed()})`);
    await waitUntil(
      "the default service account",
      async () =>
        (await controlPlane.kubectl(["get", "serviceaccount", "default", "-o", "name"], {
          check: false,
        })).code === 0,
    );
    const cluster = new Cluster({
      cp,
      nodes: state.nodes.map(({ name, address, index }) => ({ name, address, index })),
      dir,
      images,
      gateway,
      ownsDir,
    });
    if (!options.detached) track(cluster);
    return cluster;
  } catch (error: unknown) {
    await cp?.stop().catch(() => {});
    await teardown(dir, { removeDir: ownsDir }).catch((e) => console.error(`Teardown: ${e}`));
    throw error;
  }
}

/** The bridge, and per node a network namespace joined to it and a mount namespace. */
async function network(dir: string, state: ClusterState, gateway: string): Promise<void> {
  await createBridge(state.bridge, `${gateway}/24`);
  // A persistent mount namespace is a bind mount of its nsfs file, on a private mount.
  await Deno.mkdir(`${dir}/ns`, { recursive: true });
  await command(["mount", "--bind", `${dir}/ns`, `${dir}/ns`]);
  await command(["mount", "--make-private", `${dir}/ns`]);
  for (const node of state.nodes) {
    const ns = node.name;
    await command(["ip", "netns", "add", ns]);
    await joinBridge(ns, {
      veth: node.veth,
      bridge: state.bridge,
      address: `${node.address}/24`,
    });
    await command(["ip", "-n", ns, "route", "add", "default", "via", gateway]);
    await command(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    await mountNamespace(dir, ns);
  }
}

/**
 * The node's view of the machine: overlays on /etc, /usr and /var (upper layers in the node's
 * directory), a tmpfs on /run. Slave propagation: the machine's later mounts show, the node's
 * never leave.
 */
async function mountNamespace(dir: string, name: string): Promise<void> {
  const paths = nodePaths(dir, name);
  const script =
    ["etc", "usr", "var"].map((d) =>
      `mkdir -p ${paths.overlay}/${d}/upper ${paths.overlay}/${d}/work && ` +
      `mount -t overlay overlay -o lowerdir=/${d},upperdir=${paths.overlay}/${d}/upper,` +
      `workdir=${paths.overlay}/${d}/work /${d}`
    ).join(" && ") + " && mount -t tmpfs -o mode=0755,size=256m tmpfs /run";
  await Deno.mkdir(paths.base, { recursive: true });
  await Deno.writeFile(paths.mntns, new Uint8Array());
  await command([
    "unshare",
    `--mount=${paths.mntns}`,
    "--propagation",
    "slave",
    "sh",
    "-c",
    script,
  ]);
}

/** cgroup v1 hierarchies (the kubelet's cgroupRoot must exist in each), or the v2 root. */
async function cgroupHierarchies(): Promise<string[]> {
  if (await Deno.stat("/sys/fs/cgroup/cgroup.controllers").catch(() => null)) {
    return ["/sys/fs/cgroup"];
  }
  const dirs: string[] = [];
  for await (const entry of Deno.readDir("/sys/fs/cgroup")) {
    if (entry.isDirectory && entry.name !== "unified") dirs.push(`/sys/fs/cgroup/${entry.name}`);
  }
  return dirs;
}

async function startNode(
  dir: string,
  cp: ControlPlane,
  node: ClusterNode,
  images: ClusterImages,
  spawn: (name: string, argv: string[], logFile: string) => Promise<void>,
): Promise<void> {
  const p = nodePaths(dir, node.name);
  for (const d of [p.containerd, `${p.cni}/net.d`, `${p.cni}/ipam`, `${p.kubelet}/pki`]) {
    await Deno.mkdir(d, { recursive: true });
  }
  await Deno.writeTextFile(`${p.containerd}/config.toml`, containerdConfig(p, images.pause));
  await Deno.writeTextFile(`${p.cni}/net.d/10-bridge.conflist`, cniConfig(p, node));
  await spawn(
    `containerd on ${node.name}`,
    nodeCommand(dir, node.name, ["containerd", "--config", `${p.containerd}/config.toml`]),
    `${p.base}/containerd.log`,
  );
  const ctr = ["ctr", "--address", p.socket, "--namespace", "k8s.io"];
  await waitUntil(
    `containerd on ${node.name}`,
    async () => (await command([...ctr, "version"], { check: false })).code === 0,
    60_000,
  );
  for (const archive of images.archives) {
    await command([...ctr, "images", "import", archive]);
  }

  for (const hierarchy of await cgroupHierarchies()) {
    await Deno.mkdir(`${hierarchy}/${node.name}`, { recursive: true });
    if (hierarchy.endsWith("/cpuset")) {
      for (const file of ["cpuset.cpus", "cpuset.mems"]) {
        const value = await Deno.readTextFile(`${hierarchy}/${file}`);
        await Deno.writeTextFile(`${hierarchy}/${node.name}/${file}`, value);
      }
    }
  }
  await Deno.writeTextFile(`${p.kubelet}/config.yaml`, kubeletConfig(p, node));
  await Deno.writeTextFile(
    `${p.kubelet}/kubeconfig`,
    kubeconfig(cp, `system:node:${node.name}`, cp.userToken(`system:node:${node.name}`)),
  );
  await spawn(
    `kubelet on ${node.name}`,
    nodeCommand(dir, node.name, [
      `${CONTROLPLANE_BIN_DIR}/kubelet`,
      `--config=${p.kubelet}/config.yaml`,
      `--kubeconfig=${p.kubelet}/kubeconfig`,
      `--root-dir=${p.kubelet}`,
      `--cert-dir=${p.kubelet}/pki`,
      `--hostname-override=${node.name}`,
      `--node-ip=${node.address}`,
      "--v=1",
    ]),
    `${p.base}/kubelet.log`,
  );
  // Its own copy, so its command line names the node's directory (stopNode() finds it).
  await Deno.copyFile(cp.kubeconfig("admin"), `${p.base}/kube-proxy.kubeconfig`);
  await spawn(
    `kube-proxy on ${node.name}`,
    nodeCommand(dir, node.name, [
      `${CONTROLPLANE_BIN_DIR}/kube-proxy`,
      `--kubeconfig=${p.base}/kube-proxy.kubeconfig`,
      `--hostname-override=${node.name}`,
      "--proxy-mode=iptables",
      "--cluster-cidr=10.244.0.0/16",
      "--metrics-bind-address=127.0.0.1:10249",
      "--healthz-bind-address=127.0.0.1:10256",
      // Zeros: leave the machine-wide conntrack sysctls alone.
      "--conntrack-max-per-core=0",
      "--conntrack-tcp-timeout-established=0",
      "--conntrack-tcp-timeout-close-wait=0",
    ]),
    `${p.base}/kube-proxy.log`,
  );
  await waitUntil(`node ${node.name} Ready`, async () => {
    const out = await cp.kubectl([
      "get",
      "node",
      node.name,
      "-o",
      'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
    ], { check: false });
    return out.stdout.trim() === "True";
  });
  // In-cluster clients reach the API server through the `kubernetes` Service.
  await waitUntil(`kube-proxy on ${node.name}`, async () => {
    const out = await command(
      ["ip", "netns", "exec", node.name, "iptables", "-t", "nat", "-S", "KUBE-SERVICES"],
      { check: false },
    );
    return out.stdout.includes("default/kubernetes:https");
  });
}

function containerdConfig(p: ReturnType<typeof nodePaths>, pause: string): string {
  return `version = 2
root = "${p.containerd}/root"
state = "${p.containerd}/state"
oom_score = 0
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "${p.socket}"
[ttrpc]
  address = "${p.socket}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "${p.containerd}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${pause}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  # No CAP_SYS_RESOURCE on this machine: never lower a container's oom_score_adj below ours.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "${RUNC}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "${CNI_PLUGINS}"
    conf_dir = "${p.cni}/net.d"
`;
}

function cniConfig(p: ReturnType<typeof nodePaths>, node: ClusterNode): string {
  return JSON.stringify(
    {
      cniVersion: "0.4.0",
      name: "pods",
      plugins: [{
        type: "bridge",
        bridge: "cni0",
        isGateway: true,
        ipMasq: true,
        hairpinMode: true,
        ipam: {
          type: "host-local",
          dataDir: `${p.cni}/ipam`,
          ranges: [[{ subnet: `10.244.${node.index}.0/24` }]],
          routes: [{ dst: "0.0.0.0/0" }],
        },
      }],
    },
    null,
    2,
  );
}

function kubeletConfig(p: ReturnType<typeof nodePaths>, node: ClusterNode): string {
  return `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /${node.name}
cgroupsPerQOS: true
enforceNodeAllocatable: [pods]
failSwapOn: false
# No CAP_SYS_RESOURCE here: the kubelet must not try to lower its own score.
oomScoreAdj: 0
containerRuntimeEndpoint: unix://${p.socket}
imageServiceEndpoint: unix://${p.socket}
address: ${node.address}
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
podLogsDir: ${p.base}/pod-logs
volumePluginDir: ${p.base}/volume-plugins
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
maxPods: 30
serializeImagePulls: false
syncFrequency: 10s
nodeStatusUpdateFrequency: 1s
`;
}

function kubeconfig(cp: ControlPlane, user: string, token: string): string {
  return JSON.stringify({
    apiVersion: "v1",
    kind: "Config",
    clusters: [{
      name: "cluster",
      cluster: { server: cp.server, "certificate-authority-data": btoa(cp.caCert) },
    }],
    users: [{ name: user, user: { token } }],
    contexts: [{ name: "node", context: { cluster: "cluster", user } }],
    "current-context": "node",
  });
}

/** Starts `argv` with its output in `logFile`; its pid (sh execs it). */
function spawnProcess(argv: readonly string[], logFile: string, detached: boolean): number {
  // setsid detaches it; otherwise setpriv has the kernel kill it when this process dies.
  const wrapper = detached ? ["setsid"] : ["setpriv", "--pdeathsig", "KILL", "--"];
  const child = new Deno.Command("/bin/sh", {
    args: ["-c", 'log=$1; shift; exec "$@" >>"$log" 2>&1', "sh", logFile, ...wrapper, ...argv],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  child.unref();
  // Reaped in the background; the pid is what teardown needs.
  child.status.catch(() => {});
  return child.pid;
}

async function registerSysctls(dir: string, state: ClusterState): Promise<void> {
  let saved: { values: Record<string, string>; holders: string[] } | undefined;
  try {
    saved = JSON.parse(await Deno.readTextFile(SYSCTL_FILE));
  } catch {
    saved = undefined;
  }
  // Holders whose cluster is gone do not count (crashed runs): their teardown restores later.
  if (!saved) {
    const values: Record<string, string> = {};
    for (const key of KUBELET_SYSCTLS) {
      values[key] = (await Deno.readTextFile(`/proc/sys/${key}`)).trim();
    }
    saved = { values, holders: [] };
  }
  if (!saved.holders.includes(dir)) saved.holders.push(dir);
  await Deno.writeTextFile(SYSCTL_FILE, JSON.stringify(saved));
  state.sysctls = true;
  await writeState(dir, state);
}

async function releaseSysctls(dir: string): Promise<void> {
  let saved: { values: Record<string, string>; holders: string[] };
  try {
    saved = JSON.parse(await Deno.readTextFile(SYSCTL_FILE));
  } catch {
    return;
  }
  const alive = async (holder: string) =>
    holder !== dir && (await readState(holder).catch(() => null)) !== null;
  const holders: string[] = [];
  for (const holder of saved.holders) if (await alive(holder)) holders.push(holder);
  saved.holders = holders;
  if (saved.holders.length > 0) {
    await Deno.writeTextFile(SYSCTL_FILE, JSON.stringify(saved));
    return;
  }
  for (const [key, value] of Object.entries(saved.values)) {
    await Deno.writeTextFile(`/proc/sys/${key}`, value).catch(() => {});
  }
  await Deno.remove(SYSCTL_FILE).catch(() => {});
}

async function killPids(pids: readonly number[], marker: string): Promise<void> {
  const ours = pids.filter((pid) => isRunning(pid, marker));
  for (const pid of ours) {
    try {
      Deno.kill(pid, "SIGKILL");
    } catch {
      // Exited meanwhile.
    }
  }
  const deadline = Date.now() + 10_000;
  while (ours.some((pid) => isRunning(pid)) && Date.now() < deadline) await delay(50);
}

/** Inode of a namespace file (`/proc/<pid>/ns/mnt` or a bind mount of one). */
async function nsInode(path: string): Promise<number | undefined> {
  return (await Deno.stat(path).catch(() => null))?.ino ?? undefined;
}

/**
 * Kills what is left of a node: every process in its cgroups (containers) and in its mount
 * namespace (containerd's shims, which it started there).
 */
async function killNodeProcesses(dir: string, name: string): Promise<void> {
  const mntns = await nsInode(nodePaths(dir, name).mntns);
  for (let round = 0; round < 20; round++) {
    const pids = new Set<number>();
    for (const hierarchy of await cgroupHierarchies()) {
      const root = `${hierarchy}/${name}`;
      if (!(await Deno.stat(root).catch(() => null))) continue;
      for (const procs of await findFiles(root, "cgroup.procs")) {
        const text = await Deno.readTextFile(procs).catch(() => "");
        for (const line of text.split("\n")) if (line.trim()) pids.add(Number(line));
      }
    }
    if (mntns !== undefined) {
      for await (const entry of Deno.readDir("/proc")) {
        if (!/^\d+$/.test(entry.name)) continue;
        const pid = Number(entry.name);
        if (pid !== Deno.pid && (await nsInode(`/proc/${pid}/ns/mnt`)) === mntns) pids.add(pid);
      }
    }
    if (pids.size === 0) return;
    for (const pid of pids) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch {
        // Exited meanwhile.
      }
    }
    await delay(100);
  }
}

async function findFiles(root: string, name: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (dir: string) => {
    for await (const entry of Deno.readDir(dir)) {
      if (entry.isDirectory) await walk(`${dir}/${entry.name}`).catch(() => {});
      else if (entry.name === name) found.push(`${dir}/${entry.name}`);
    }
  };
  await walk(root).catch(() => {});
  return found;
}

/** Removes a cgroup tree, deepest first (rmdir only: cgroup files cannot be deleted). */
async function removeCgroup(path: string): Promise<void> {
  const dirs: string[] = [];
  const walk = async (dir: string) => {
    for await (const entry of Deno.readDir(dir)) {
      if (entry.isDirectory) await walk(`${dir}/${entry.name}`);
    }
    dirs.push(dir);
  };
  if (!(await Deno.stat(path).catch(() => null))) return;
  await walk(path).catch(() => {});
  for (const dir of dirs) await Deno.remove(dir).catch(() => {});
}

/** Tears down the cluster recorded in `dir`; `removeDir` also removes the directory. */
async function teardown(dir: string, options: { removeDir: boolean }): Promise<void> {
  const state = await readState(dir);
  if (state) {
    await killPids(state.pids, dir);
    for (const node of state.nodes) await killNodeProcesses(dir, node.name);
    for (const node of state.nodes) {
      // The node's mount namespace goes with its last process and this bind mount.
      await command(["umount", nodePaths(dir, node.name).mntns], { check: false });
      for (const hierarchy of await cgroupHierarchies()) {
        await removeCgroup(`${hierarchy}/${node.name}`);
      }
      await command(["ip", "netns", "del", node.name], { check: false });
    }
    await command(["ip", "link", "del", state.bridge], { check: false });
    if (state.sysctls) await releaseSysctls(dir);
  }
  await stopControlPlaneAt(`${dir}/controlplane`);
  await command(["umount", `${dir}/ns`], { check: false });
  // Nothing may stay mounted below the dir before it is removed.
  const mounts = (await command(["findmnt", "-rn", "-o", "TARGET"])).stdout.split("\n");
  const left = mounts.filter((m) => m === dir || m.startsWith(`${dir}/`));
  if (left.length > 0) {
    throw new ClusterError(`Mounts left below "${dir}", not removing it: ${left.join(", ")}`);
  }
  if (options.removeDir) await Deno.remove(dir, { recursive: true }).catch(() => {});
  else await Deno.remove(`${dir}/${STATE_FILE}`).catch(() => {});
}

/** Tears down the cluster recorded in `dir` (`task cluster:down`); whether one was recorded. */
export async function stopClusterAt(dir: string): Promise<boolean> {
  const recorded = (await readState(dir)) !== null;
  await teardown(dir, { removeDir: false });
  return recorded;
}
