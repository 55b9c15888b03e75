/**
 * A real Kubernetes control plane for tests: etcd and kube-apiserver (built from upstream by
 * `scripts/controlplane-build.sh` into `.cache/controlplane/bin/`) on free loopback ports in a
 * temp dir, RBAC on, static-token authentication for three identities (an admin in
 * `system:masters`, the controller's and the agent's service accounts, so the RBAC in `deploy/`
 * applies to them unchanged), one kubeconfig per identity, every `crds/*.yaml` installed and
 * served, and a runner for our own kubectl.
 *
 * One control plane per test file: start it in one `Deno.test` with `await using`, run the cases
 * as steps with unique object names. Starting one costs ~5 s, so a file shares its control plane
 * between its cases, while files stay isolated from each other (`deno test --parallel` works).
 * There is no kube-controller-manager: no garbage collection, no namespace deletion (a deleted
 * namespace stays `Terminating`), no DaemonSet pods; tests assert on the API objects.
 *
 * Teardown kills both processes and removes the temp dir, also when a test fails. SIGTERM (and
 * SIGINT outside `deno test`) tears down every live control plane before the process exits. When
 * the process dies without cleaning up (Ctrl-C under `deno test`, whose own handler exits first;
 * SIGKILL), the kernel kills the servers (parent-death signal) and the next start removes the
 * orphaned temp dir.
 *
 * ```ts
 * Deno.test("IPRules are validated", async (t) => {
 *   await using cp = await startControlPlane();
 *   await t.step("rejects a bad CIDR", async () => {
 *     const result = await cp.kubectl(["create", "-f", "-"], { stdin: yaml, check: false });
 *   });
 * });
 * ```
 *
 * @module
 */

import { parseAllDocuments, stringify } from "yaml";
import { type CommandOutput, runCommand } from "./command.ts";

const ROOT = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");

/** Namespace the operator runs in (its service accounts live there). */
export const OPERATOR_NAMESPACE = "ip-rule-operator-system";
/** User name of the admin identity, member of `system:masters`. */
export const ADMIN_USER = "admin";
/** User name of the controller's service account. */
export const CONTROLLER_USER =
  `system:serviceaccount:${OPERATOR_NAMESPACE}:ip-rule-operator-controller`;
/** User name of the agent's service account. */
export const AGENT_USER = `system:serviceaccount:${OPERATOR_NAMESPACE}:ip-rule-operator-agent`;
/** Groups of both service-account identities, as a real service-account token has them. */
export const SERVICE_ACCOUNT_GROUPS: readonly string[] = [
  "system:serviceaccounts",
  `system:serviceaccounts:${OPERATOR_NAMESPACE}`,
];
/** Service ClusterIP ranges of the control plane (dual-stack). */
export const SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16,fd00:96::/108";
/** Directory holding the built `etcd`, `kube-apiserver` and `kubectl`. */
export const CONTROLPLANE_BIN_DIR = Deno.env.get("CONTROLPLANE_BIN_DIR") ??
  `${ROOT}/.cache/controlplane/bin`;
/** Directory whose `*.yaml` CRDs every control plane installs by default. */
export const CRDS_DIR = `${ROOT}/crds`;

/** The identities a control plane has a token and a kubeconfig for. */
export type Identity = "admin" | "controller" | "agent";
/** Every identity, admin first. */
export const IDENTITIES: readonly Identity[] = ["admin", "controller", "agent"];

const USERS: Record<Identity, { user: string; groups: readonly string[] }> = {
  admin: { user: ADMIN_USER, groups: ["system:masters"] },
  controller: { user: CONTROLLER_USER, groups: SERVICE_ACCOUNT_GROUPS },
  agent: { user: AGENT_USER, groups: SERVICE_ACCOUNT_GROUPS },
};

const STATE_FILE = "controlplane.json";
const START_TIMEOUT_MS = 60_000;
const START_ATTEMPTS = 3;
const TEMP_PREFIX = "ipro-controlplane-";
const OWNER_FILE = "owner.pid";

/** A control plane could not be started, or a binary it needs is missing. */
export class ControlPlaneError extends Error {
  /** Creates the error; `options.cause` keeps the underlying error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ControlPlaneError";
  }
}

/** A kubectl run exited non-zero while `check` was on. */
export class KubectlError extends Error {
  /** Arguments kubectl ran with. */
  readonly args: readonly string[];
  /** Exit code. */
  readonly code: number;
  /** Captured standard output. */
  readonly stdout: string;
  /** Captured standard error. */
  readonly stderr: string;

  /** Creates the error from a finished kubectl run. */
  constructor(args: readonly string[], result: KubectlResult) {
    super(
      `Command 'kubectl ${
        args.join(" ")
      }' exited with code ${result.code}: ${result.stderr.trim()}`,
    );
    this.name = "KubectlError";
    this.args = args;
    this.code = result.code;
    this.stdout = result.stdout;
    this.stderr = result.stderr;
  }
}

/** Options of {@linkcode startControlPlane}. */
export interface StartControlPlaneOptions {
  /** Directory of CRDs to install (`*.yaml`, `*.yml`, `*.json`), or `false` for none; default `crds/`. */
  crds?: string | false;
  /** State directory to use (created, must be empty); default a fresh temp dir removed on stop. */
  dir?: string;
  /** Start the processes in their own session so they outlive this process (`task controlplane:up`). */
  detached?: boolean;
  /** Directory holding the binaries; default {@linkcode CONTROLPLANE_BIN_DIR}. */
  binDir?: string;
  /**
   * Address kube-apiserver listens on and advertises (in its serving certificate); default
   * 127.0.0.1. End-to-end tests pass a bridge address so agents in node namespaces reach it.
   */
  bindAddress?: string;
  /** More kube-apiserver flags (`--name=value`), replacing defaults of the same name. */
  apiserverArgs?: readonly string[];
  /** More users with a static token (e.g. kubelets: `system:node:<name>` in `system:nodes`). */
  users?: readonly { user: string; groups: readonly string[] }[];
  /**
   * An etcd data dir saved by {@linkcode ControlPlane.saveEtcd}: etcd starts on a copy of it, so
   * the API server serves the objects of an earlier run (benchmarks reuse a large setup).
   */
  etcdData?: string;
}

/** Options of {@linkcode ControlPlane.kubectl}. */
export interface KubectlOptions {
  /** Identity whose kubeconfig kubectl uses; default `admin`. */
  identity?: Identity;
  /** Text written to kubectl's standard input (for `-f -`). */
  stdin?: string;
  /** Throw a {@linkcode KubectlError} when kubectl exits non-zero; default `true`. */
  check?: boolean;
}

/** Outcome of one kubectl run. */
export type KubectlResult = CommandOutput;

/** What `task controlplane:up` records in the state dir, read back by `down`. */
export interface ControlPlaneState {
  /** Process ids of etcd and kube-apiserver. */
  pids: { etcd: number; apiserver: number };
  /** API server URL. */
  server: string;
  /** Kubeconfig path per identity. */
  kubeconfigs: Record<Identity, string>;
}

interface Process {
  name: string;
  child: Deno.ChildProcess;
  log: string;
  exited: boolean;
  status: Promise<Deno.CommandStatus>;
}

const live = new Set<ControlPlane>();

function onSignal(): void {
  for (const cp of live) cp.killSync();
  Deno.exit(130);
}

function onUnload(): void {
  for (const cp of live) cp.killSync();
}

function track(cp: ControlPlane): void {
  if (live.size === 0) {
    Deno.addSignalListener("SIGINT", onSignal);
    Deno.addSignalListener("SIGTERM", onSignal);
    globalThis.addEventListener("unload", onUnload);
  }
  live.add(cp);
}

function untrack(cp: ControlPlane): void {
  if (!live.delete(cp) || live.size > 0) return;
  Deno.removeSignalListener("SIGINT", onSignal);
  Deno.removeSignalListener("SIGTERM", onSignal);
  globalThis.removeEventListener("unload", onUnload);
}

/** A running etcd + kube-apiserver pair; stop it with `stop()` or `await using`. */
export class ControlPlane {
  /** State directory: kubeconfigs, tokens, certificates, etcd data, logs. */
  readonly dir: string;
  /** API server URL (`https://127.0.0.1:<port>`). */
  readonly server: string;
  /** PEM of the CA that signed the API server's serving certificate. */
  readonly caCert: string;
  readonly #tokens: Record<Identity, string>;
  readonly #userTokens: ReadonlyMap<string, string>;
  readonly #processes: Process[];
  readonly #ownsDir: boolean;
  readonly #binDir: string;
  #stopped = false;

  /** Wraps started processes; use {@linkcode startControlPlane} instead. */
  constructor(init: {
    dir: string;
    server: string;
    caCert: string;
    tokens: Record<Identity, string>;
    userTokens?: ReadonlyMap<string, string>;
    processes: Process[];
    ownsDir: boolean;
    binDir: string;
  }) {
    this.dir = init.dir;
    this.server = init.server;
    this.caCert = init.caCert;
    this.#tokens = init.tokens;
    this.#userTokens = init.userTokens ?? new Map();
    this.#processes = init.processes;
    this.#ownsDir = init.ownsDir;
    this.#binDir = init.binDir;
  }

  /** Path of the kubeconfig of `identity` (default admin). */
  kubeconfig(identity: Identity = "admin"): string {
    return kubeconfigPath(this.dir, identity);
  }

  /** Bearer token of `identity`. */
  token(identity: Identity): string {
    return this.#tokens[identity];
  }

  /** Bearer token of a user given in {@linkcode StartControlPlaneOptions.users}. */
  userToken(user: string): string {
    const token = this.#userTokens.get(user);
    if (token === undefined) throw new ControlPlaneError(`No token for user "${user}"`);
    return token;
  }

  /**
   * Saves a copy of etcd's data dir to `to` (which must not exist), for
   * {@linkcode StartControlPlaneOptions.etcdData}. etcd is frozen (SIGSTOP) for the copy: every
   * write it made is in the page cache, and a commit the freeze cut short leaves bbolt's previous
   * meta page and the WAL's torn tail, both of which etcd recovers from at start.
   */
  async saveEtcd(to: string): Promise<void> {
    const etcd = this.#processes[0]!.child.pid;
    Deno.kill(etcd, "SIGSTOP");
    try {
      const copy = await new Deno.Command("cp", { args: ["-a", `${this.dir}/etcd`, to] }).output();
      if (!copy.success) {
        throw new ControlPlaneError(
          `cp of etcd data failed: ${new TextDecoder().decode(copy.stderr)}`,
        );
      }
    } finally {
      Deno.kill(etcd, "SIGCONT");
    }
  }

  /** Path of the log file of `etcd` or `kube-apiserver`. */
  logFile(name: "etcd" | "kube-apiserver"): string {
    return `${this.dir}/${name}.log`;
  }

  /** Runs our kubectl with the kubeconfig of `options.identity` (default admin). */
  async kubectl(args: readonly string[], options: KubectlOptions = {}): Promise<KubectlResult> {
    const result = await runKubectl(this.#binDir, args, {
      kubeconfig: this.kubeconfig(options.identity ?? "admin"),
      cacheDir: `${this.dir}/kube-cache`,
      stdin: options.stdin,
    });
    if (!result.success && (options.check ?? true)) throw new KubectlError(args, result);
    return result;
  }

  /** Kills both processes and removes the temp dir (kept when it was given); idempotent. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    await killAll(this.#processes);
    if (this.#ownsDir) await Deno.remove(this.dir, { recursive: true }).catch(() => {});
    untrack(this);
  }

  /** Same as {@linkcode ControlPlane.stop}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  /** Kills the processes and removes the temp dir synchronously (signal and exit handlers). */
  killSync(): void {
    for (const p of this.#processes) {
      if (!p.exited) killQuietly(p.child, "SIGKILL");
    }
    if (this.#ownsDir) {
      try {
        Deno.removeSync(this.dir, { recursive: true });
      } catch {
        // Already gone, or a process still writing: the next run uses a fresh dir anyway.
      }
    }
  }
}

/**
 * Starts etcd and kube-apiserver on free loopback ports, writes the kubeconfigs, installs the
 * CRDs and waits until they are established and served. Fails with a {@linkcode
 * ControlPlaneError} naming what is missing when the binaries are not built.
 */
export async function startControlPlane(
  options: StartControlPlaneOptions = {},
): Promise<ControlPlane> {
  const binDir = options.binDir ?? CONTROLPLANE_BIN_DIR;
  for (const name of ["etcd", "kube-apiserver", "kubectl"]) {
    const path = `${binDir}/${name}`;
    const info = await Deno.stat(path).catch(() => null);
    if (!info?.isFile) {
      throw new ControlPlaneError(
        `Control-plane binary '${path}' is missing: run 'task controlplane:build' (or ./scripts/controlplane-build.sh)`,
      );
    }
  }
  const crdFiles = options.crds === false ? [] : await listCrdFiles(options.crds ?? CRDS_DIR);
  let lastError: unknown;
  for (let attempt = 1; attempt <= START_ATTEMPTS; attempt++) {
    try {
      return await startOnce(binDir, crdFiles, options);
    } catch (error) {
      // A port taken between picking and binding is the one failure worth a retry.
      if (!(error instanceof PortInUseError)) throw error;
      lastError = error;
    }
  }
  throw new ControlPlaneError(`Control plane did not start in ${START_ATTEMPTS} attempts`, {
    cause: lastError,
  });
}

/**
 * Stops the detached control plane recorded in `dir` (by `task controlplane:up`) and removes the
 * dir; returns whether one was running.
 */
export async function stopControlPlaneAt(dir: string): Promise<boolean> {
  const state = await readControlPlaneState(dir);
  let running = false;
  if (state) {
    for (const pid of [state.pids.apiserver, state.pids.etcd]) {
      if (!isRunning(pid, dir)) continue;
      running = true;
      killPidQuietly(pid, "SIGKILL");
      const deadline = Date.now() + 10_000;
      while (isRunning(pid, dir) && Date.now() < deadline) await delay(50);
    }
  }
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  return running;
}

/** Reads the state `task controlplane:up` recorded in `dir`, or `null` when there is none. */
export async function readControlPlaneState(dir: string): Promise<ControlPlaneState | null> {
  try {
    return JSON.parse(await Deno.readTextFile(`${dir}/${STATE_FILE}`)) as ControlPlaneState;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
}

/**
 * Whether the process `pid` runs (not a zombie) and, when `marker` is given, has it in its
 * command line (so a recycled pid is never taken for one of ours).
 */
export function isRunning(pid: number, marker?: string): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    if (/^\d+ \(.*\) Z /.test(stat)) return false;
    return marker === undefined ||
      Deno.readTextFileSync(`/proc/${pid}/cmdline`).replaceAll("\0", " ").includes(marker);
  } catch {
    return false;
  }
}

class PortInUseError extends ControlPlaneError {
  constructor(message: string) {
    super(message);
    this.name = "PortInUseError";
  }
}

async function startOnce(
  binDir: string,
  crdFiles: string[],
  options: StartControlPlaneOptions,
): Promise<ControlPlane> {
  const ownsDir = options.dir === undefined;
  const dir = options.dir ?? await makeOwnedTempDir();
  const detached = options.detached ?? false;
  const processes: Process[] = [];
  let cp: ControlPlane | undefined;
  try {
    // A given dir may hold a previous attempt's etcd data, bound to other ports.
    if (!ownsDir) await Deno.remove(`${dir}/etcd`, { recursive: true }).catch(() => {});
    if (options.etcdData) {
      const copy = await new Deno.Command("cp", { args: ["-a", options.etcdData, `${dir}/etcd`] })
        .output();
      if (!copy.success) {
        throw new ControlPlaneError(
          `etcdData '${options.etcdData}' not copied: ${new TextDecoder().decode(copy.stderr)}`,
        );
      }
    }
    await Deno.mkdir(`${dir}/pki`, { recursive: true });
    const [etcdPort, peerPort, apiPort] = freePorts(3);
    const tokens = {
      admin: crypto.randomUUID(),
      controller: crypto.randomUUID(),
      agent: crypto.randomUUID(),
    } satisfies Record<Identity, string>;
    const userTokens = new Map((options.users ?? []).map((u) => [u.user, crypto.randomUUID()]));
    const lines = [
      ...IDENTITIES.map((id) => ({ token: tokens[id], ...USERS[id] })),
      ...(options.users ?? []).map((u) => ({ token: userTokens.get(u.user)!, ...u })),
    ];
    await Deno.writeTextFile(
      `${dir}/tokens.csv`,
      lines.map((l, i) => `${l.token},${l.user},uid-${i},"${l.groups.join(",")}"\n`).join(""),
    );
    const saKeys = await serviceAccountKeys();
    await Deno.writeTextFile(`${dir}/pki/sa.key`, saKeys.key);
    await Deno.writeTextFile(`${dir}/pki/sa.pub`, saKeys.pub);

    const etcdUrl = `http://127.0.0.1:${etcdPort}`;
    const peerUrl = `http://127.0.0.1:${peerPort}`;
    const etcd = spawn("etcd", `${binDir}/etcd`, [
      "--name=default",
      `--data-dir=${dir}/etcd`,
      `--listen-client-urls=${etcdUrl}`,
      `--advertise-client-urls=${etcdUrl}`,
      `--listen-peer-urls=${peerUrl}`,
      `--initial-advertise-peer-urls=${peerUrl}`,
      `--initial-cluster=default=${peerUrl}`,
      "--unsafe-no-fsync",
      "--log-level=warn",
    ], { dir, detached });
    processes.push(etcd);
    const bindAddress = options.bindAddress ?? "127.0.0.1";
    const server = `https://${
      bindAddress.includes(":") ? `[${bindAddress}]` : bindAddress
    }:${apiPort}`;
    // Cannot overlap etcd's start: the API server exits when etcd is not reachable in time.
    await waitFor(etcd, async () => {
      const res = await fetch(`${etcdUrl}/health`).catch(() => null);
      const body = await res?.text();
      return body?.includes('"health":"true"') ?? false;
    });

    const extra = options.apiserverArgs ?? [];
    const flagName = (arg: string) => arg.split("=")[0];
    const overridden = new Set(extra.map(flagName));
    const apiserver = spawn(
      "kube-apiserver",
      `${binDir}/kube-apiserver`,
      [
        `--etcd-servers=${etcdUrl}`,
        `--bind-address=${bindAddress}`,
        `--advertise-address=${bindAddress}`,
        `--secure-port=${apiPort}`,
        `--cert-dir=${dir}/pki`,
        "--authorization-mode=RBAC",
        `--token-auth-file=${dir}/tokens.csv`,
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        `--service-account-key-file=${dir}/pki/sa.pub`,
        `--service-account-signing-key-file=${dir}/pki/sa.key`,
        `--service-cluster-ip-range=${SERVICE_CLUSTER_IP_RANGE}`,
        "--enable-priority-and-fairness=false",
        "--profiling=false",
        "--logging-format=text",
      ].filter((arg) => !overridden.has(flagName(arg))).concat(extra),
      { dir, detached },
    );
    processes.push(apiserver);
    if (detached) {
      // Recorded before waiting, so `down` finds the processes even when `up` is interrupted.
      const kubeconfigs = Object.fromEntries(
        IDENTITIES.map((id) => [id, kubeconfigPath(dir, id)]),
      ) as Record<Identity, string>;
      const state: ControlPlaneState = {
        pids: { etcd: etcd.child.pid, apiserver: apiserver.child.pid },
        server,
        kubeconfigs,
      };
      await Deno.writeTextFile(`${dir}/${STATE_FILE}`, JSON.stringify(state, null, 2) + "\n");
    }

    const certPath = `${dir}/pki/apiserver.crt`;
    let caCert = "";
    await waitFor(apiserver, async () => {
      caCert = await Deno.readTextFile(certPath).catch(() => "");
      return caCert.includes("END CERTIFICATE");
    });
    cp = new ControlPlane({
      dir,
      server,
      caCert,
      tokens,
      userTokens,
      processes,
      ownsDir,
      binDir,
    });
    if (!detached) track(cp);
    const client = Deno.createHttpClient({ caCerts: [caCert] });
    try {
      const get = async (path: string): Promise<{ status: number; body: string } | null> => {
        const res = await fetch(`${server}${path}`, {
          client,
          headers: { authorization: `Bearer ${tokens.admin}` },
        }).catch(() => null);
        return res ? { status: res.status, body: await res.text() } : null;
      };
      await waitFor(apiserver, async () => (await get("/readyz"))?.status === 200);
      for (const id of IDENTITIES) {
        await Deno.writeTextFile(cp.kubeconfig(id), kubeconfigYaml(server, caCert, id, tokens[id]));
      }
      if (crdFiles.length > 0) await installCrds(cp, crdFiles, get);
    } finally {
      client.close();
    }
    if (detached) { for (const p of processes) p.child.unref(); }
    return cp;
  } catch (error) {
    if (cp) await cp.stop();
    else {
      await killAll(processes);
      if (ownsDir) await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
    throw error;
  }
}

/**
 * Makes a temp dir recording this process as its owner, after removing the dirs of owners that
 * died without cleaning up (the kernel killed their servers; `deno test` exits on Ctrl-C before
 * any signal listener of ours runs).
 */
async function makeOwnedTempDir(): Promise<string> {
  const base = Deno.env.get("TMPDIR") || "/tmp";
  for await (const entry of Deno.readDir(base)) {
    if (!entry.isDirectory || !entry.name.startsWith(TEMP_PREFIX)) continue;
    const path = `${base}/${entry.name}`;
    const owner = Number(await Deno.readTextFile(`${path}/${OWNER_FILE}`).catch(() => "0"));
    if (owner > 0 && owner !== Deno.pid && !isRunning(owner)) {
      await Deno.remove(path, { recursive: true }).catch(() => {});
    }
  }
  const dir = await Deno.makeTempDir({ dir: base, prefix: TEMP_PREFIX });
  await Deno.writeTextFile(`${dir}/${OWNER_FILE}`, `${Deno.pid}\n`);
  return dir;
}

async function installCrds(
  cp: ControlPlane,
  files: string[],
  get: (path: string) => Promise<{ status: number; body: string } | null>,
): Promise<void> {
  const crds: { name: string; group: string; versions: string[]; plural: string }[] = [];
  for (const file of files) {
    for (const doc of parseAllDocuments(await Deno.readTextFile(file))) {
      const crd = doc.toJS() as {
        kind?: string;
        metadata?: { name?: string };
        spec?: {
          group?: string;
          names?: { plural?: string };
          versions?: { name: string; served?: boolean }[];
        };
      } | null;
      if (crd?.kind !== "CustomResourceDefinition") continue;
      crds.push({
        name: crd.metadata?.name ?? "",
        group: crd.spec?.group ?? "",
        plural: crd.spec?.names?.plural ?? "",
        versions: (crd.spec?.versions ?? []).filter((v) => v.served !== false).map((v) => v.name),
      });
    }
  }
  await cp.kubectl([
    "apply",
    "--server-side",
    "--field-manager=controlplane-test",
    ...files.flatMap((f) => ["-f", f]),
  ]);
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (const crd of crds) {
    for (;;) {
      const res = await get(`/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${crd.name}`);
      const status = res?.status === 200 ? JSON.parse(res.body).status : undefined;
      const conditions = (status?.conditions ?? []) as {
        type: string;
        status: string;
        message?: string;
      }[];
      if (conditions.some((c) => c.type === "Established" && c.status === "True")) break;
      const rejected = conditions.find((c) => c.type === "NamesAccepted" && c.status === "False");
      if (rejected) {
        throw new ControlPlaneError(`CRD '${crd.name}' names not accepted: ${rejected.message}`);
      }
      if (Date.now() > deadline) {
        throw new ControlPlaneError(`CRD '${crd.name}' not established in ${START_TIMEOUT_MS} ms`);
      }
      await delay(50);
    }
    // Established is not yet served: wait until discovery lists the resource.
    for (const version of crd.versions) {
      for (;;) {
        const res = await get(`/apis/${crd.group}/${version}`);
        if (res?.status === 200 && res.body.includes(`"name":"${crd.plural}"`)) break;
        if (Date.now() > deadline) {
          throw new ControlPlaneError(`CRD '${crd.name}' not served in ${START_TIMEOUT_MS} ms`);
        }
        await delay(50);
      }
    }
  }
}

async function listCrdFiles(dir: string): Promise<string[]> {
  const files: string[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) {
      if (entry.isFile && /\.(ya?ml|json)$/.test(entry.name)) files.push(`${dir}/${entry.name}`);
    }
  } catch (error) {
    throw new ControlPlaneError(`Cannot read CRD dir '${dir}'`, { cause: error });
  }
  if (files.length === 0) throw new ControlPlaneError(`No CRD file in '${dir}'`);
  return files.sort();
}

function spawn(
  name: string,
  bin: string,
  args: string[],
  options: { dir: string; detached: boolean },
): Process {
  const log = `${options.dir}/${name}.log`;
  // sh only redirects and execs, so the pid is the server's. setsid detaches it from the
  // terminal; otherwise setpriv makes the kernel SIGKILL it when this process dies.
  const wrapper = options.detached ? ["setsid"] : ["setpriv", "--pdeathsig", "KILL", "--"];
  const child = new Deno.Command("/bin/sh", {
    args: ["-c", 'log=$1; shift; exec "$@" >"$log" 2>&1', "sh", log, ...wrapper, bin, ...args],
    stdin: "null",
    stdout: "null",
    stderr: "null",
    cwd: options.dir,
  }).spawn();
  const process: Process = { name, child, log, exited: false, status: child.status };
  process.status = child.status.then((status) => {
    process.exited = true;
    return status;
  });
  return process;
}

async function killAll(processes: Process[]): Promise<void> {
  for (const p of [...processes].reverse()) {
    if (!p.exited) killQuietly(p.child, "SIGKILL");
    await p.status;
  }
}

function killQuietly(child: Deno.ChildProcess, signal: Deno.Signal): void {
  try {
    child.kill(signal);
  } catch {
    // Already exited.
  }
}

function killPidQuietly(pid: number, signal: Deno.Signal): void {
  try {
    Deno.kill(pid, signal);
  } catch {
    // Already exited.
  }
}

/** Polls `ready` until it holds; fails with the log's tail when `process` exits first. */
async function waitFor(process: Process, ready: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (process.exited) {
      const status = await process.status;
      const tail = await logTail(process.log);
      const message = `Process '${process.name}' exited with code ${status.code}: ${tail}`;
      throw /address already in use/.test(tail)
        ? new PortInUseError(message)
        : new ControlPlaneError(message);
    }
    if (await ready()) return;
    if (Date.now() > deadline) {
      throw new ControlPlaneError(
        `Process '${process.name}' not ready in ${START_TIMEOUT_MS} ms: ${await logTail(
          process.log,
        )}`,
      );
    }
    await delay(50);
  }
}

async function logTail(path: string, lines = 20): Promise<string> {
  const text = await Deno.readTextFile(path).catch(() => "");
  return text.trimEnd().split("\n").slice(-lines).join("\n");
}

/** `count` distinct free ports on loopback (held open together, so no two are the same). */
export function freePorts(count: number): number[] {
  const listeners = Array.from(
    { length: count },
    () => Deno.listen({ hostname: "127.0.0.1", port: 0 }),
  );
  const ports = listeners.map((l) => (l.addr as Deno.NetAddr).port);
  for (const l of listeners) l.close();
  return ports;
}

/** A fresh ECDSA P-256 key pair as PEM: PKCS#8 private key and SPKI public key. */
async function serviceAccountKeys(): Promise<{ key: string; pub: string }> {
  const pair = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, [
    "sign",
    "verify",
  ]);
  const pem = (label: string, der: ArrayBuffer): string => {
    const b64 = btoa(String.fromCharCode(...new Uint8Array(der))).replace(/.{64}/g, "$&\n");
    return `-----BEGIN ${label}-----\n${b64.trimEnd()}\n-----END ${label}-----\n`;
  };
  return {
    key: pem("PRIVATE KEY", await crypto.subtle.exportKey("pkcs8", pair.privateKey)),
    pub: pem("PUBLIC KEY", await crypto.subtle.exportKey("spki", pair.publicKey)),
  };
}

function kubeconfigPath(dir: string, identity: Identity): string {
  return `${dir}/kubeconfig-${identity}.yaml`;
}

function kubeconfigYaml(server: string, caCert: string, identity: Identity, token: string): string {
  const name = "ip-rule-operator-test";
  return stringify({
    apiVersion: "v1",
    kind: "Config",
    clusters: [{
      name,
      cluster: { server, "certificate-authority-data": btoa(caCert) },
    }],
    users: [{ name: identity, user: { token } }],
    contexts: [{ name: `${identity}@${name}`, context: { cluster: name, user: identity } }],
    "current-context": `${identity}@${name}`,
  });
}

function runKubectl(
  binDir: string,
  args: readonly string[],
  options: { kubeconfig: string; cacheDir: string; stdin: string | undefined },
): Promise<KubectlResult> {
  return runCommand(
    `${binDir}/kubectl`,
    [`--kubeconfig=${options.kubeconfig}`, `--cache-dir=${options.cacheDir}`, ...args],
    { stdin: options.stdin, env: { KUBECTL_INTERACTIVE_DELETE: "false" } },
  );
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
