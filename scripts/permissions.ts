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
