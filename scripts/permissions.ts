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
 * - read: the service-account token and CA, a --kubeconfig anywhere, and for the agent the
 *   systemd-networkd / NetworkManager settings it checks at start.
 * - ffi (agent only): libmnl at the Debian path, the one library the agent loads; the image
 *   puts it at the same path.
 */

/** Where Debian (and our agent image) install libmnl. */
export const LIBMNL_PATH = "/usr/lib/x86_64-linux-gnu/libmnl.so.0";

/** Permission flags of the controller. */
export const CONTROLLER_PERMISSIONS: readonly string[] = [
  "--allow-net",
  "--allow-env",
  "--allow-sys",
  "--allow-read",
];

/** Permission flags of the agent. */
export const AGENT_PERMISSIONS: readonly string[] = [
  "--allow-net",
  "--allow-env",
  "--allow-sys",
  "--allow-read",
  `--allow-ffi=${LIBMNL_PATH}`,
];

/** Entry points and flags by executable name. */
export const EXECUTABLES = {
  controller: { entry: "src/controller.ts", permissions: CONTROLLER_PERMISSIONS },
  agent: { entry: "src/agent.ts", permissions: AGENT_PERMISSIONS },
} as const;

/** Name of an executable. */
export type Executable = keyof typeof EXECUTABLES;
