/**
 * A control plane for people (`task controlplane:up` / `task controlplane:down`): etcd and
 * kube-apiserver built by `scripts/controlplane-build.sh`, CRDs installed, running in the
 * background with their state (kubeconfigs, logs, etcd data) in `.cache/controlplane/run/`.
 *
 *   deno run -A scripts/controlplane.ts up       start one (or show the running one)
 *   deno run -A scripts/controlplane.ts down     stop it and remove its state
 *   deno run -A scripts/controlplane.ts status   show it, exit 1 when none runs
 *
 * @module
 */

import {
  CONTROLPLANE_BIN_DIR,
  type ControlPlaneState,
  isRunning,
  readControlPlaneState,
  startControlPlane,
  stopControlPlaneAt,
} from "../tests/support/controlplane.ts";

const ROOT = new URL("../", import.meta.url).pathname.replace(/\/$/, "");
const RUN_DIR = `${ROOT}/.cache/controlplane/run`;

function running(state: ControlPlaneState | null): state is ControlPlaneState {
  return state !== null && isRunning(state.pids.etcd, RUN_DIR) &&
    isRunning(state.pids.apiserver, RUN_DIR);
}

function show(state: ControlPlaneState): void {
  console.log(`Control plane running at ${state.server} (state and logs in ${RUN_DIR})`);
  console.log(`Admin kubeconfig: ${state.kubeconfigs.admin}`);
  console.log(`Controller kubeconfig: ${state.kubeconfigs.controller}`);
  console.log(`Agent kubeconfig: ${state.kubeconfigs.agent}`);
  console.log("Use it with our kubectl:");
  console.log(`  export KUBECONFIG=${state.kubeconfigs.admin}`);
  console.log(`  export PATH=${CONTROLPLANE_BIN_DIR}:$PATH`);
  console.log("  kubectl get iprules");
  console.log("Stop it with: task controlplane:down");
}

async function up(): Promise<number> {
  const existing = await readControlPlaneState(RUN_DIR);
  if (running(existing)) {
    show(existing);
    return 0;
  }
  await stopControlPlaneAt(RUN_DIR);
  await Deno.mkdir(RUN_DIR, { recursive: true });
  const started = Date.now();
  await startControlPlane({ dir: RUN_DIR, detached: true });
  const state = await readControlPlaneState(RUN_DIR);
  if (!state) throw new Error(`No control-plane state in '${RUN_DIR}' after start`);
  console.log(`Started in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  show(state);
  return 0;
}

async function down(): Promise<number> {
  const stopped = await stopControlPlaneAt(RUN_DIR);
  console.log(stopped ? "Control plane stopped" : "No control plane was running");
  return 0;
}

async function status(): Promise<number> {
  const state = await readControlPlaneState(RUN_DIR);
  if (!running(state)) {
    console.log("No control plane running (start one with: task controlplane:up)");
    return 1;
  }
  show(state);
  return 0;
}

const commands: Record<string, () => Promise<number>> = { up, down, status };
const command = commands[Deno.args[0] ?? ""];
if (!command) {
  console.error("Usage: deno run -A scripts/controlplane.ts up|down|status");
  Deno.exit(2);
}
Deno.exit(await command());
