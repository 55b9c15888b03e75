/** The agent DaemonSet rendered from the Agent CR (pure). */
import { type Agent, API_VERSION, MANAGED_BY, MANAGED_BY_LABEL } from "../api/types.ts";

/** Name of the agents' DaemonSet. */
export const DAEMONSET_NAME = "iprule-agent";
/** Service account the agents run as (RBAC in deploy/). */
export const AGENT_SERVICE_ACCOUNT = "ip-rule-operator-agent";
/** Annotation carrying the hash of the rendered spec: the DaemonSet is written only when it changes. */
export const SPEC_HASH_ANNOTATION = "ip-rule-operator.brtrm.dev/spec-hash";
/** Port of the agents' /metrics (HTTPS, token-checked) on the node's address. */
export const AGENT_METRICS_PORT = 9472;
/** Port of the agents' /healthz and /readyz (plain HTTP, for the kubelet) on the node's address. */
export const AGENT_HEALTH_PORT = 9473;
/** How long the agent's readiness probe waits for it to be ready, seconds. */
export const AGENT_READY_WAIT_S = 4;
const POD_LABELS = { app: DAEMONSET_NAME };
/** Where the host paths the agent checks at start are mounted (IPRULE_HOST_ROOT). */
export const HOST_ROOT = "/host";
/**
 * The host directories the agent's start-up checks read (host_checks.ts): no /etc or /run as a
 * whole, which hold node credentials (/etc/kubernetes/pki) and the sockets of systemd and the
 * container runtime (a root process connects to a socket on a read-only mount). Directories,
 * because the files in them are optional and Kubernetes cannot mount a missing file; the agent's
 * --allow-read (scripts/permissions.ts) narrows each to the files the checks read.
 *
 * /usr as one mount, of a directory every node has (`Directory`: never created): the kubelet
 * cannot create a missing /usr/local/lib/systemd or /usr/lib/systemd where /usr is read-only
 * (Flatcar, Fedora CoreOS, Talos), and a mount it cannot make keeps the Pod from starting. /usr
 * is the vendor's read-only tree, no credentials or sockets in it, and the executable still
 * reads only networkd.conf(.d) there. The others are `DirectoryOrCreate`, so a node without one
 * starts the agent: /etc and /run are writable where /usr is not, and what the kubelet creates
 * is an empty directory, which neither networkd nor the checks tell from a missing one (the
 * NetworkManager check needs entries in its directory). One path the checks read is not
 * mounted: /run/systemd/networkd.conf, which lives beside systemd's control sockets.
 */
export const HOST_PATHS: readonly {
  name: string;
  path: string;
  type: "Directory" | "DirectoryOrCreate";
}[] = [
  // networkd.conf and networkd.conf.d/: the administrator's, then the vendors' (below /usr).
  { name: "host-etc-systemd", path: "/etc/systemd", type: "DirectoryOrCreate" },
  { name: "host-usr", path: "/usr", type: "Directory" },
  // Run-time drop-ins and networkd's state (netif/state exists while networkd runs).
  {
    name: "host-run-networkd-conf-d",
    path: "/run/systemd/networkd.conf.d",
    type: "DirectoryOrCreate",
  },
  { name: "host-run-networkd-state", path: "/run/systemd/netif", type: "DirectoryOrCreate" },
  { name: "host-run-networkmanager", path: "/run/NetworkManager", type: "DirectoryOrCreate" },
];

/**
 * The labels a node needs to run the agent: the Agent's node selector, always with
 * kubernetes.io/os=linux unless it names an OS itself (the agent is Linux-only: netlink). An
 * empty selector thus means every Linux node, not every node.
 */
export function agentNodeSelector(spec: { nodeSelector?: Record<string, string> }): Record<
  string,
  string
> {
  return { "kubernetes.io/os": "linux", ...spec.nodeSelector };
}

/** What the controller adds to the Agent CR when rendering. */
export interface RenderOptions {
  /** Image when `spec.image` is not set. */
  defaultImage: string;
}

/** The DaemonSet (apps/v1, as plain JSON) for an Agent, hash annotation included. */
export function renderDaemonSet(agent: Agent, options: RenderOptions): Record<string, unknown> {
  const spec = agent.spec;
  const container: Record<string, unknown> = {
    name: "agent",
    // An empty image would make every agent pod fail to create: it means the default.
    image: spec.image || options.defaultImage,
    args: [
      `--resync=${spec.resyncPeriod ?? "10s"}`,
      `--status-interval=${spec.statusInterval ?? "10s"}`,
      `--log-level=${spec.logLevel ?? "info"}`,
      "--log-format=json",
      // The node's own address only, not every address of the host network (brackets: the
      // address may be IPv6). The kubelet probes a host-network pod there too.
      `--metrics-addr=[$(HOST_IP)]:${AGENT_METRICS_PORT}`,
      `--health-addr=[$(HOST_IP)]:${AGENT_HEALTH_PORT}`,
      ...(spec.adoptUnmarkedRules ? ["--adopt-unmarked-rules"] : []),
    ],
    env: [
      { name: "NODE_NAME", valueFrom: { fieldRef: { fieldPath: "spec.nodeName" } } },
      { name: "IPRULE_HOST_ROOT", value: HOST_ROOT },
      // The node's address (a host-network pod's IP), where the endpoints listen.
      { name: "HOST_IP", valueFrom: { fieldRef: { fieldPath: "status.hostIP" } } },
      // Where its Agent lives: the agent watches it and its namespace, and drains itself when
      // it stops during an uninstall (src/drain.ts).
      { name: "POD_NAMESPACE", valueFrom: { fieldRef: { fieldPath: "metadata.namespace" } } },
    ],
    // The host's network managers' settings and state, read-only, for the start-up checks.
    // Recursively where the runtime can: other containers' root filesystems mounted below the
    // host's /run would otherwise stay writable (Kubernetes >= 1.31; older runtimes fall back).
    volumeMounts: HOST_PATHS.map(({ name, path }) => ({
      name,
      mountPath: `${HOST_ROOT}${path}`,
      readOnly: true,
      recursiveReadOnly: "IfPossible",
    })),
    ports: [
      { name: "metrics", containerPort: AGENT_METRICS_PORT, protocol: "TCP" },
      { name: "health", containerPort: AGENT_HEALTH_PORT, protocol: "TCP" },
    ],
    // No failed probe at a normal start (src/health_server.ts): the endpoint listens before
    // the agent loads the rest; the startup probe gives it two seconds, waits while loading
    // keeps it from answering, and holds the other probes until it answers; readiness waits up
    // to 4 s for the agent to be ready.
    startupProbe: {
      httpGet: { path: "/healthz", port: AGENT_HEALTH_PORT },
      initialDelaySeconds: 2,
      periodSeconds: 1,
      timeoutSeconds: 5,
      failureThreshold: 60,
    },
    readinessProbe: {
      httpGet: { path: `/readyz?wait=${AGENT_READY_WAIT_S}`, port: AGENT_HEALTH_PORT },
      periodSeconds: 5,
      timeoutSeconds: AGENT_READY_WAIT_S + 1,
      failureThreshold: 3,
    },
    livenessProbe: {
      httpGet: { path: "/healthz", port: AGENT_HEALTH_PORT },
      periodSeconds: 20,
      failureThreshold: 3,
    },
    resources: spec.resources ?? {
      requests: { cpu: "10m", memory: "48Mi" },
      limits: { memory: "128Mi" },
    },
    securityContext: {
      // Root for the netlink socket, but with NET_ADMIN as the only capability.
      runAsUser: 0,
      runAsNonRoot: false,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ["ALL"], add: ["NET_ADMIN"] },
      seccompProfile: { type: "RuntimeDefault" },
    },
  };
  const podSpec: Record<string, unknown> = {
    hostNetwork: true,
    dnsPolicy: "ClusterFirstWithHostNet",
    serviceAccountName: AGENT_SERVICE_ACCOUNT,
    terminationGracePeriodSeconds: 10,
    nodeSelector: agentNodeSelector(spec),
    containers: [container],
    // No emptyDir for Deno's code cache (unlike the controller): measured on kubelet nodes
    // (bench/agent_pod_bench.ts, stand-in images), start to Ready took 485 ms in a new Pod and
    // 357 ms on a container restart without one; with one, 633 and 364 ms and ~2 MiB more RSS
    // (67 MiB peak without): writing the cache costs more than reading it saves.
    volumes: HOST_PATHS.map(({ name, path, type }) => ({ name, hostPath: { path, type } })),
  };
  if (spec.tolerations) podSpec.tolerations = spec.tolerations;
  if (spec.priorityClassName) podSpec.priorityClassName = spec.priorityClassName;
  const dsSpec = {
    selector: { matchLabels: POD_LABELS },
    updateStrategy: { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 1 } },
    template: { metadata: { labels: POD_LABELS }, spec: podSpec },
  };
  return {
    apiVersion: "apps/v1",
    kind: "DaemonSet",
    metadata: {
      name: DAEMONSET_NAME,
      namespace: agent.metadata.namespace,
      labels: { ...POD_LABELS, [MANAGED_BY_LABEL]: MANAGED_BY },
      annotations: { [SPEC_HASH_ANNOTATION]: hashOf(dsSpec) },
      ownerReferences: [{
        apiVersion: API_VERSION,
        kind: "Agent",
        name: agent.metadata.name,
        uid: agent.metadata.uid,
        controller: true,
        blockOwnerDeletion: true,
      }],
    },
    spec: dsSpec,
  };
}

/** FNV-1a over canonical JSON: a short, stable change detector (not a security hash). */
export function hashOf(value: unknown): string {
  const text = canonicalJson(value);
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h.toString(16).padStart(8, "0");
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}
