/**
 * The Deno permission flags of the two executables, defined once: `deno compile` bakes them in
 * (scripts/build.ts, the Containerfile), and the tests and `task run-*` run the same entry
 * points with `deno run` under the same flags (scripts/run.ts).
 *
 * - net: the API server's address is only known at run time (in-cluster service host or a
 *   kubeconfig), and the metrics port listens on it too, so it cannot be narrowed at compile
 *   time.
 * - env: client-node reads the whole environment (KUBERNETES_SERVICE_*, KUBECONFIG, HOME, ...).
 * - sys: the host name (default node name, reporting instance); without it client-node's
 *   in-cluster namespace is silently undefined.
 * - read: the controller reads a --kubeconfig anywhere. The agent reads only its service
 *   account's token and CA and the systemd-networkd / NetworkManager files its start-up checks
 *   read (on a node, and below /host where its Pod mounts them): a compromised agent cannot read
 *   node credentials even where a mount shows them. Outside a Pod, `deno run` of the agent
 *   (tests, `task run-agent`) may also read the kubeconfig it is given ({@linkcode runFlags}).
 * - ffi (agent only): libmnl at the Debian path, the one library the agent loads; the image
 *   puts it at the same path.
 */

import { HOST_CHECK_PATHS } from "../src/agent/host_checks.ts";
import { HOST_ROOT } from "../src/controller/daemonset.ts";
import { SERVICE_ACCOUNT_DIR } from "../src/k8s/kubeconfig.ts";

/** Where Debian (and our agent image) install libmnl. */
export const LIBMNL_PATH = "/usr/lib/x86_64-linux-gnu/libmnl.so.0";

/** Permission flags of the controller. */
export const CONTROLLER_PERMISSIONS: readonly string[] = [
  "--allow-net",
  "--allow-env",
  "--allow-sys",
  "--allow-read",
];

/**
 * What the agent may read: its service account (client-node's in-cluster path, as the code names
 * it: Deno matches the path as given, not where symlinks lead), and the files and directories of
 * the host checks on a node (`task run-agent`) and below /host (the DaemonSet's mounts).
 */
export const AGENT_READ_PATHS: readonly string[] = [
  SERVICE_ACCOUNT_DIR,
  ...HOST_CHECK_PATHS,
  ...HOST_CHECK_PATHS.map((path) => `${HOST_ROOT}${path}`),
];

/** Permission flags of the agent. */
export const AGENT_PERMISSIONS: readonly string[] = [
  "--allow-net",
  "--allow-env",
  "--allow-sys",
  `--allow-read=${AGENT_READ_PATHS.join(",")}`,
  `--allow-ffi=${LIBMNL_PATH}`,
];

/**
 * V8 flags of the controller. A heap ceiling makes the garbage collector work before the heap
 * balloons: with 10k Services the live heap is ~55 MiB, and without the ceiling peak RSS reached
 * 353 MiB (bench:controller); with 160 MiB it stayed at 231 MiB and update latency p99 fell from
 * 235 to 139 ms. 192 MiB leaves room for ~3x that cluster; raise it for larger ones.
 */
export const CONTROLLER_V8_FLAGS: readonly string[] = ["--v8-flags=--max-old-space-size=192"];

/**
 * V8 flags of the agent. Its live heap is small (~9 MB with 1k rules, ~15-25 MB with 10k), but
 * V8 let the heap grow to 140-170 MiB RSS under the churn of 10k-rule dumps, over the DaemonSet's
 * 128 MiB limit. The old-space ceiling keeps it at ~90-100 MiB with 10k (bench:agent). A 1 MiB
 * semi-space saved ~4 MiB at 1k rules but raised bench:e2e's burst p99 by ~100 ms (more
 * scavenges while 500 Services' configs arrive), so the young generation keeps 4 MiB.
 */
export const AGENT_V8_FLAGS: readonly string[] = [
  "--v8-flags=--max-semi-space-size=4,--max-old-space-size=64",
];

/** Entry points and the flags `deno compile` / `deno run` get, by executable name. */
export const EXECUTABLES = {
  controller: {
    entry: "src/controller.ts",
    flags: [...CONTROLLER_PERMISSIONS, ...CONTROLLER_V8_FLAGS],
  },
  agent: { entry: "src/agent.ts", flags: [...AGENT_PERMISSIONS, ...AGENT_V8_FLAGS] },
} as const;

/** Name of an executable. */
export type Executable = keyof typeof EXECUTABLES;

/**
 * The kubeconfig files a run names as the executables find them: `--kubeconfig` (each one given:
 * the last wins, but reading all of them is no wider), else $KUBECONFIG's, else ~/.kube/config.
 */
export function kubeconfigFiles(
  args: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): string[] {
  const given = args.flatMap((arg, i) => {
    if (arg.startsWith("--kubeconfig=")) return [arg.slice("--kubeconfig=".length)];
    return arg === "--kubeconfig" && args[i + 1] !== undefined ? [args[i + 1]!] : [];
  });
  if (given.length > 0) return given;
  if (env.KUBECONFIG) return env.KUBECONFIG.split(":").filter((f) => f !== "");
  return env.HOME ? [`${env.HOME}/.kube/config`] : [];
}

/**
 * Flags of `deno run` for `name` started outside a Pod with `args` and `env`: the compiled flags,
 * and for the agent read access to the kubeconfig files the run names (the compiled agent runs
 * in its Pod and reads only its service account).
 */
export function runFlags(
  name: Executable,
  args: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): string[] {
  const flags = [...EXECUTABLES[name].flags];
  const files = name === "agent" ? kubeconfigFiles(args, env) : [];
  // Repeated --allow-read flags add up.
  return files.length > 0 ? [...flags, `--allow-read=${files.join(",")}`] : flags;
}
