/**
 * The operator on a real cluster (tests/support/cluster.ts), installed exactly as the README
 * tells users: `kubectl apply -k` of an overlay of deploy/ that only points the images at the
 * ones built here (kustomize `images:` for the controller, the `--agent-image` argument for the
 * agents), the rollout wait, then the samples. Plus what the cluster tests look at: our rules in
 * a node's kernel, the process of a Pod's container on its node, one cluster per test file.
 *
 * @module
 */
import { relative } from "node:path";
import { DEFAULT_PROTOCOL } from "../../src/agent/flags.ts";
import { controllerImages, readYaml } from "../../scripts/manifests.ts";
import { type Cluster, type ClusterNode, startCluster } from "./cluster.ts";
import { CONTROLPLANE_BIN_DIR } from "./controlplane.ts";

const ROOT = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");
/** The operator's namespace (deploy/namespace.yaml). */
export const NS = "ip-rule-operator-system";
/** The controller Deployment of deploy/controller.yaml. */
export const CONTROLLER = "ip-rule-operator-controller-manager";
// deno-lint-ignore no-explicit-any
export type Json = any;

/** `kubectl … -o json` through the cluster's admin kubeconfig. */
export async function getJson(cluster: Cluster, args: readonly string[]): Promise<Json> {
  return JSON.parse((await cluster.cp.kubectl([...args, "-o", "json"])).stdout);
}

/** The object, or undefined when the API server answers NotFound. */
export async function find(cluster: Cluster, args: readonly string[]): Promise<Json | undefined> {
  const out = await cluster.cp.kubectl([...args, "-o", "json"], { check: false });
  if (out.success) return JSON.parse(out.stdout);
  if (/NotFound|not found/.test(out.stderr)) return undefined;
  throw new Error(`kubectl ${args.join(" ")}: ${out.stderr.trim()}`);
}

/**
 * A kustomize overlay of deploy/ with other images: what a user writes to install their own
 * build (README, "Your own images"). `released` are the images deploy/ names; the patch's `test`
 * makes kustomize fail rather than replace another argument.
 */
export function overlayKustomization(
  base: string,
  images: { controller: string; agent: string },
  released: { controller: string; agent: string },
): string {
  const [name, tag] = splitImage(images.controller);
  if (name !== splitImage(released.controller)[0]) {
    throw new Error(`Image "${images.controller}" is not a tag of "${released.controller}"`);
  }
  return [
    "apiVersion: kustomize.config.k8s.io/v1beta1",
    "kind: Kustomization",
    "resources:",
    `  - ${base}`,
    "images:",
    `  - name: ${name}`,
    `    newTag: ${tag}`,
    "patches:",
    `  - target: {kind: Deployment, name: ${CONTROLLER}}`,
    "    patch: |-",
    "      - op: test",
    "        path: /spec/template/spec/containers/0/args/1",
    `        value: --agent-image=${released.agent}`,
    "      - op: replace",
    "        path: /spec/template/spec/containers/0/args/1",
    `        value: --agent-image=${images.agent}`,
    "",
  ].join("\n");
}

function splitImage(ref: string): [string, string] {
  const colon = ref.lastIndexOf(":");
  if (colon < 0 || ref.slice(colon).includes("/")) throw new Error(`Image "${ref}" has no tag`);
  return [ref.slice(0, colon), ref.slice(colon + 1)];
}

/** Writes the overlay into the cluster's dir; its path, for `kubectl apply -k`. */
export async function writeOverlay(cluster: Cluster): Promise<string> {
  const dir = `${cluster.dir}/overlay`;
  await Deno.mkdir(dir, { recursive: true });
  const [deployment] = await readYaml("deploy/controller.yaml");
  // kustomize takes bases by relative path only.
  const base = relative(dir, `${ROOT}/deploy`);
  await Deno.writeTextFile(
    `${dir}/kustomization.yaml`,
    overlayKustomization(base, cluster.images, controllerImages(deployment)),
  );
  return dir;
}

/** `kubectl rollout status` of the controller Deployment. */
export async function controllerRolledOut(cluster: Cluster): Promise<void> {
  await cluster.cp.kubectl([
    "-n",
    NS,
    "rollout",
    "status",
    `deployment/${CONTROLLER}`,
    "--timeout=180s",
  ]);
}

/** Installs as the README says: apply -k, rollout status, the Agent and the IPRule samples. */
export async function install(cluster: Cluster): Promise<string> {
  const overlay = await writeOverlay(cluster);
  await cluster.cp.kubectl(["apply", "-k", overlay]);
  await controllerRolledOut(cluster);
  await cluster.cp.kubectl(["apply", "-f", `${ROOT}/deploy/samples/agent.yaml`]);
  await cluster.cp.kubectl(["apply", "-f", `${ROOT}/deploy/samples/iprule.yaml`]);
  await agentsRolledOut(cluster);
  return overlay;
}

/** The Nodes the API server has (a test may have removed one of the cluster's). */
export async function liveNodes(cluster: Cluster): Promise<ClusterNode[]> {
  const names = new Set<string>(
    (await getJson(cluster, ["get", "nodes"])).items.map((n: Json) => n.metadata.name),
  );
  return cluster.nodes.filter((n) => names.has(n.name));
}

/** The agents' DaemonSet, at its latest spec, ready on every Node. */
export async function agentsRolledOut(cluster: Cluster): Promise<void> {
  const nodes = (await liveNodes(cluster)).length;
  await waitFor("the agents' DaemonSet ready on every node", async () => {
    const ds = await find(cluster, ["-n", NS, "get", "daemonset", "iprule-agent"]);
    return ds?.status?.observedGeneration === ds?.metadata.generation &&
      ds?.status?.numberReady === nodes && ds.status.updatedNumberScheduled === nodes &&
      ds.status.numberAvailable === nodes;
  });
}

/**
 * Follows the logs of `pods` (kubectl logs -f, through their kubelets) until their containers
 * stop: what an agent logs as it stops, even when its Pod is deleted right after.
 */
export function followLogs(cluster: Cluster, pods: Json[]): { lines(): Promise<Json[][]> } {
  const streams = pods.map((pod) =>
    new Deno.Command(`${CONTROLPLANE_BIN_DIR}/kubectl`, {
      args: [
        `--kubeconfig=${cluster.cp.kubeconfig("admin")}`,
        "-n",
        pod.metadata.namespace,
        "logs",
        "-f",
        pod.metadata.name,
      ],
      stdout: "piped",
      stderr: "null",
    }).spawn()
  );
  return {
    async lines() {
      const timer = setTimeout(() => streams.forEach((s) => s.kill("SIGKILL")), 180_000);
      try {
        return await Promise.all(
          streams.map(async (s) => logLines(new TextDecoder().decode((await s.output()).stdout))),
        );
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

/**
 * What an uninstall must leave: no namespace of ours, no CRD or cluster-wide RBAC object of ours,
 * and no rule with our protocol on any of `nodes`.
 */
export async function assertUninstalled(cluster: Cluster, nodes: ClusterNode[]): Promise<void> {
  await waitFor(
    `namespace ${NS} gone`,
    async () => (await find(cluster, ["get", "namespace", NS])) === undefined,
  );
  for (const node of nodes) {
    const rules = await ourRules(cluster, node);
    if (rules.length > 0) throw new Error(`Rules left on ${node.name}: ${rules.join("; ")}`);
  }
  const crds = (await getJson(cluster, ["get", "crds"])).items.map((d: Json) => d.metadata.name);
  const ours = crds.filter((n: string) => n.endsWith(".api.operator.brtrm.dev"));
  if (ours.length > 0) throw new Error(`CRDs left: ${ours.join(", ")}`);
  for (const kind of ["clusterroles", "clusterrolebindings"]) {
    const left = (await getJson(cluster, ["get", kind])).items.map((o: Json) => o.metadata.name)
      .filter((n: string) => n.startsWith("ip-rule-operator"));
    if (left.length > 0) throw new Error(`${kind} left: ${left.join(", ")}`);
  }
}

/** `kubectl apply` of plain objects. */
export async function apply(c: Cluster, objects: Json[]): Promise<void> {
  await c.cp.kubectl(["apply", "-f", "-"], {
    stdin: JSON.stringify({ apiVersion: "v1", kind: "List", items: objects }),
  });
}

/** An IPRule with priority 1000. */
export function iprule(name: string, cidrs: string[], table: number): Json {
  return {
    apiVersion: "api.operator.brtrm.dev/v1alpha1",
    kind: "IPRule",
    metadata: { name },
    spec: { cidrs, table, priority: 1000 },
  };
}

/** A LoadBalancer Service (dual-stack when `ingress` has an IPv6 address) with its LB IPs set. */
export async function lbService(c: Cluster, name: string, ingress: string[]): Promise<string[]> {
  const dual = ingress.some((ip) => ip.includes(":"));
  await apply(c, [{
    apiVersion: "v1",
    kind: "Service",
    metadata: { name, namespace: "default" },
    spec: {
      type: "LoadBalancer",
      allocateLoadBalancerNodePorts: false,
      ports: [{ port: 443 }],
      selector: { app: name },
      ...(dual ? { ipFamilyPolicy: "RequireDualStack", ipFamilies: ["IPv4", "IPv6"] } : {}),
    },
  }]);
  await c.cp.kubectl([
    "-n",
    "default",
    "patch",
    "service",
    name,
    "--subresource=status",
    "--type=merge",
    "-p",
    JSON.stringify({ status: { loadBalancer: { ingress: ingress.map((ip) => ({ ip })) } } }),
  ]);
  return (await getJson(c, ["-n", "default", "get", "service", name])).spec.clusterIPs;
}

/** `kubectl patch` of the Agent: a merge patch (an object) or a JSON patch (a list, or its text). */
export async function patchAgent(c: Cluster, patch: object | string): Promise<void> {
  const json = typeof patch === "string" || Array.isArray(patch);
  await c.cp.kubectl([
    "-n",
    NS,
    "patch",
    "agent",
    "agent",
    `--type=${json ? "json" : "merge"}`,
    "-p",
    typeof patch === "string" ? patch : JSON.stringify(patch),
  ]);
}

/**
 * Runs `action` while sampling `node`'s rules as fast as `ip rule` runs; the samples that lacked
 * `line`, and how many were taken.
 */
export async function sampleRule(
  c: Cluster,
  node: ClusterNode,
  line: string,
  action: () => Promise<void>,
): Promise<{ missing: number[]; samples: number }> {
  let samples = 0;
  const missing: number[] = [];
  let done = false;
  const sampling = (async () => {
    while (!done) {
      if (!(await ourRules(c, node)).includes(line)) missing.push(samples);
      samples++;
    }
  })();
  try {
    await action();
  } finally {
    done = true;
    await sampling;
  }
  return { missing, samples };
}

/** Deletes a test's Service (in default) and IPRule, if they exist. */
export async function removeObjects(
  c: Cluster,
  names: { service?: string; iprule?: string },
): Promise<void> {
  if (names.service) {
    await c.cp.kubectl(["-n", "default", "delete", "service", names.service, "--ignore-not-found"]);
  }
  if (names.iprule) await c.cp.kubectl(["delete", "iprule", names.iprule, "--ignore-not-found"]);
}

/** The agent Pods on `node`, from the API server. */
export async function agentPods(c: Cluster, node: ClusterNode): Promise<Json[]> {
  return (await getJson(c, [
    "-n",
    NS,
    "get",
    "pods",
    "-l",
    "app=iprule-agent",
    "--field-selector",
    `spec.nodeName=${node.name}`,
  ])).items;
}

/** The kernel's rules with our protocol on a node, IPv4 then IPv6, as `ip rule` prints them. */
export async function ourRules(cluster: Cluster, node: ClusterNode): Promise<string[]> {
  const lines: string[] = [];
  for (const family of ["-4", "-6"]) {
    const out = await cluster.ip(node, [family, "rule", "show"]);
    lines.push(
      ...out.split("\n").map((l) => l.trim()).filter((l) =>
        l.endsWith(` proto ${DEFAULT_PROTOCOL}`)
      ),
    );
  }
  return lines;
}

/** Polls `check` every 200 ms until it holds; fails after `timeoutMs` naming `what`. */
export async function waitFor(
  what: string,
  check: () => Promise<boolean> | boolean,
  timeoutMs = 120_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      if (await check()) return;
    } catch (error: unknown) {
      last = error;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `Timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${last}` : ""}`,
      );
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** The agent Pod on `node`, Running and Ready. */
export async function agentPod(cluster: Cluster, node: ClusterNode): Promise<Json> {
  let found: Json;
  await waitFor(`a Ready agent Pod on ${node.name}`, async () => {
    found = (await agentPods(cluster, node)).find((p: Json) =>
      p.metadata.deletionTimestamp === undefined &&
      p.status.conditions?.some((c: Json) => c.type === "Ready" && c.status === "True")
    );
    return found !== undefined;
  });
  return found;
}

/** The host PID of a Pod's first container, from the node's containerd. */
export async function containerPid(cluster: Cluster, pod: Json): Promise<number> {
  const id = String(pod.status.containerStatuses[0].containerID).replace(/^containerd:\/\//, "");
  const node = cluster.node(pod.spec.nodeName);
  const out = await cluster.exec(node, [
    "ctr",
    "--address",
    `${cluster.dir}/nodes/${node.name}/containerd/containerd.sock`,
    "--namespace",
    "k8s.io",
    "tasks",
    "ls",
  ]);
  const line = out.stdout.split("\n").find((l) => l.startsWith(id));
  const pid = Number(line?.split(/\s+/)[1]);
  if (!pid) throw new Error(`No task for container "${id}" on ${node.name}:\n${out.stdout}`);
  return pid;
}

/** A process's effective uid and capability set, from /proc/<pid>/status. */
export async function processCredentials(pid: number): Promise<{ uid: number; capEff: bigint }> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  const field = (name: string) =>
    /^\S+:\s+(\S+)/.exec(status.split("\n").find((l) => l.startsWith(`${name}:`)) ?? "")?.[1];
  return { uid: Number(field("Uid")), capEff: BigInt(`0x${field("CapEff")}`) };
}

/** The log of a Pod's container (kubectl logs, through the kubelet). */
export async function podLog(cluster: Cluster, pod: Json): Promise<string> {
  return (await cluster.cp.kubectl(["-n", pod.metadata.namespace, "logs", pod.metadata.name]))
    .stdout;
}

/** Parses the JSON log lines of our executables (other lines are skipped). */
export function logLines(text: string): Json[] {
  return text.split("\n").flatMap((line) => {
    try {
      return [JSON.parse(line)];
    } catch {
      return [];
    }
  });
}

/** One cluster shared by the tests of a file: started on first use, stopped after the last. */
export function fileCluster(options: { nodes?: number } = {}): () => Promise<Cluster> {
  let started: Promise<Cluster> | undefined;
  Deno.test.afterAll(async () => {
    const cluster = await started?.catch(() => undefined);
    await cluster?.stop();
  });
  return () => started ??= startCluster({ nodes: options.nodes ?? 3 });
}

/**
 * A test on the file's cluster. Sanitizers off: the cluster's processes outlive each test by
 * design (fileCluster stops them after the last).
 */
export function clusterTest(name: string, fn: () => Promise<void>): void {
  Deno.test({ name, fn, sanitizeOps: false, sanitizeResources: false, sanitizeExit: false });
}
