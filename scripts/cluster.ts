/**
 * A real multi-node cluster for people (`task cluster:up` / `task cluster:down`): the control
 * plane, kube-controller-manager, kube-scheduler and N kubelet nodes in network namespaces
 * (tests/support/cluster.ts), running in the background with their state and logs in
 * `.cache/cluster/run/`, our images imported into every node.
 *
 *   deno run -A scripts/cluster.ts up [--nodes=3]   start one (or show the running one)
 *   deno run -A scripts/cluster.ts down             stop it, even after a crash
 *   deno run -A scripts/cluster.ts status           show it, exit 1 when none runs
 *
 * @module
 */
import { parseArgs } from "node:util";
import { CONTROLPLANE_BIN_DIR } from "../tests/support/controlplane.ts";
import { clusterRunning, startCluster, stopClusterAt } from "../tests/support/cluster.ts";

const ROOT = new URL("../", import.meta.url).pathname.replace(/\/$/, "");
/** State directory of the cluster of `task cluster:up`. */
export const RUN_DIR = `${ROOT}/.cache/cluster/run`;
const INFO_FILE = `${RUN_DIR}/info.txt`;

async function up(nodes: number): Promise<number> {
  if (await clusterRunning(RUN_DIR)) {
    console.log(await Deno.readTextFile(INFO_FILE));
    return 0;
  }
  await stopClusterAt(RUN_DIR).catch(() => false);
  await Deno.mkdir(RUN_DIR, { recursive: true });
  // Interrupted: remove what was started (the processes run in their own sessions).
  const interrupted = async () => {
    console.error("Interrupted: removing the cluster");
    await stopClusterAt(RUN_DIR).catch((e) => console.error(`${e}`));
    Deno.exit(130);
  };
  Deno.addSignalListener("SIGINT", interrupted);
  Deno.addSignalListener("SIGTERM", interrupted);
  const started = performance.now();
  const cluster = await startCluster({
    nodes,
    prefix: "node",
    dir: RUN_DIR,
    detached: true,
    log: (line) => console.error(line),
  });
  const info = [
    `Cluster running in ${
      ((performance.now() - started) / 1000).toFixed(1)
    } s: API server ${cluster.cp.server}, nodes ${
      cluster.nodes.map((n) => `${n.name} (${n.address})`).join(", ")
    }`,
    `Images on every node (${cluster.images.executables} executables): ${cluster.images.controller}, ${cluster.images.agent}`,
    `State and logs: ${RUN_DIR}; each node's network namespace has its name: ip -n node-1 rule`,
    "Use it with our kubectl:",
    `  export KUBECONFIG=${cluster.cp.kubeconfig("admin")}`,
    `  export PATH=${CONTROLPLANE_BIN_DIR}:$PATH`,
    "  kubectl get nodes -o wide",
    "Stop it with: task cluster:down",
  ].join("\n");
  await Deno.writeTextFile(INFO_FILE, info);
  console.log(info);
  return 0;
}

async function down(): Promise<number> {
  const stopped = await stopClusterAt(RUN_DIR);
  await Deno.remove(RUN_DIR, { recursive: true }).catch(() => {});
  console.log(stopped ? "Cluster stopped" : "No cluster was running");
  return 0;
}

async function status(): Promise<number> {
  if (!(await clusterRunning(RUN_DIR))) {
    console.log("No cluster running (start one with: task cluster:up)");
    return 1;
  }
  console.log(await Deno.readTextFile(INFO_FILE));
  return 0;
}

if (import.meta.main) {
  const { positionals, values } = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    options: { nodes: { type: "string", default: "3" } },
  });
  const nodes = Number(values.nodes);
  if (!Number.isInteger(nodes) || nodes < 1 || nodes > 9) {
    console.error(`--nodes must be 1..9, not "${values.nodes}"`);
    Deno.exit(2);
  }
  const commands: Record<string, () => Promise<number>> = { up: () => up(nodes), down, status };
  const command = commands[positionals[0] ?? ""];
  if (!command) {
    console.error("Usage: deno run -A scripts/cluster.ts up [--nodes=N]|down|status");
    Deno.exit(2);
  }
  if (Deno.uid() !== 0) {
    console.error("The cluster needs root: network and mount namespaces, cgroups, containerd");
    Deno.exit(1);
  }
  Deno.exit(await command());
}
