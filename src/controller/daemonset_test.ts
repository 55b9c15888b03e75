import assert from "node:assert/strict";
import { type Agent, API_VERSION } from "../api/types.ts";
import { AGENT_ENDPOINTS, parseAgentFlags } from "../agent/flags.ts";
import {
  AGENT_HEALTH_PORT,
  AGENT_METRICS_PORT,
  DAEMONSET_NAME,
  hashOf,
  renderDaemonSet,
  SPEC_HASH_ANNOTATION,
} from "./daemonset.ts";
import { HOST_CHECK_PATHS } from "../agent/host_checks.ts";

const agent: Agent = {
  apiVersion: API_VERSION,
  kind: "Agent",
  metadata: { name: "agent", namespace: "ip-rule-operator-system", uid: "u-1" },
  spec: {
    nodeSelector: { "kubernetes.io/os": "linux", pool: "edge" },
    tolerations: [{
      key: "node-role.kubernetes.io/control-plane",
      operator: "Exists",
      effect: "NoSchedule",
    }],
    priorityClassName: "system-node-critical",
    resyncPeriod: "30s",
    statusInterval: "1m",
  },
};

// deno-lint-ignore no-explicit-any
type Json = any;

Deno.test("renderDaemonSet() renders the agent pod as DESIGN.md describes", () => {
  const ds: Json = renderDaemonSet(agent, { defaultImage: "img:default" });
  assert.equal(ds.metadata.name, DAEMONSET_NAME);
  assert.equal(ds.metadata.namespace, "ip-rule-operator-system");
  assert.deepEqual(ds.metadata.ownerReferences[0], {
    apiVersion: API_VERSION,
    kind: "Agent",
    name: "agent",
    uid: "u-1",
    controller: true,
    blockOwnerDeletion: true,
  });
  const pod = ds.spec.template.spec;
  assert.equal(pod.hostNetwork, true);
  assert.deepEqual(pod.nodeSelector, { "kubernetes.io/os": "linux", pool: "edge" });
  assert.equal(pod.tolerations[0].key, "node-role.kubernetes.io/control-plane");
  assert.equal(pod.priorityClassName, "system-node-critical");
  const c = pod.containers[0];
  assert.equal(c.image, "img:default");
  assert.ok(c.args.includes("--resync=30s"));
  assert.ok(c.args.includes("--status-interval=1m"));
  const defaults: Json = renderDaemonSet({ ...agent, spec: {} }, { defaultImage: "i" });
  assert.ok(defaults.spec.template.spec.containers[0].args.includes("--status-interval=10s"));
  assert.deepEqual(c.env[0], {
    name: "NODE_NAME",
    valueFrom: { fieldRef: { fieldPath: "spec.nodeName" } },
  });
  assert.deepEqual(c.securityContext.capabilities, { drop: ["ALL"], add: ["NET_ADMIN"] });
  // The host's networkd/NetworkManager settings, read-only, under IPRULE_HOST_ROOT.
  assert.deepEqual(c.env[1], { name: "IPRULE_HOST_ROOT", value: "/host" });
  assert.ok(
    c.volumeMounts.every((m: Json) =>
      m.readOnly && m.recursiveReadOnly === "IfPossible" && m.mountPath.startsWith("/host/")
    ),
  );
  // /usr must exist and is never created (read-only on Flatcar, Fedora CoreOS); the rest may
  // be missing on a node and are created there.
  assert.deepEqual(pod.volumes.map((v: Json) => [v.hostPath.path, v.hostPath.type]), [
    ["/etc/systemd", "DirectoryOrCreate"],
    ["/usr", "Directory"],
    ["/run/systemd/networkd.conf.d", "DirectoryOrCreate"],
    ["/run/systemd/netif", "DirectoryOrCreate"],
    ["/run/NetworkManager", "DirectoryOrCreate"],
  ]);
  assert.deepEqual(
    c.volumeMounts.map((m: Json) => m.mountPath),
    pod.volumes.map((v: Json) => `/host${v.hostPath.path}`),
  );
  // Its namespace, for the uninstall watch (src/drain.ts).
  assert.deepEqual(c.env.find((e: Json) => e.name === "POD_NAMESPACE"), {
    name: "POD_NAMESPACE",
    valueFrom: { fieldRef: { fieldPath: "metadata.namespace" } },
  });
});

Deno.test("renderDaemonSet(): no probe fails at a normal start", () => {
  const c: Json = (renderDaemonSet(agent, { defaultImage: "img" }) as Json).spec.template.spec
    .containers[0];
  // The startup probe asks only whether the endpoint listens, from the first second on, and
  // holds the other probes until then.
  assert.deepEqual(c.startupProbe.httpGet.path, "/healthz");
  assert.ok(c.startupProbe.initialDelaySeconds >= 1);
  assert.ok(c.startupProbe.timeoutSeconds > 1, "waits while the agent loads");
  assert.ok(c.startupProbe.periodSeconds * c.startupProbe.failureThreshold >= 60);
  // Readiness waits for the agent to be ready, and the kubelet waits longer than that.
  const wait = Number(new URL(c.readinessProbe.httpGet.path, "http://x").searchParams.get("wait"));
  assert.equal(new URL(c.readinessProbe.httpGet.path, "http://x").pathname, "/readyz");
  assert.ok(wait >= 1 && c.readinessProbe.timeoutSeconds > wait, JSON.stringify(c.readinessProbe));
  assert.equal(c.livenessProbe.httpGet.path, "/healthz");
});

Deno.test("renderDaemonSet() binds the agent's endpoints to the node's address and probes the plain health port", () => {
  const c: Json = (renderDaemonSet(agent, { defaultImage: "img" }) as Json).spec.template.spec
    .containers[0];
  assert.deepEqual(c.env.find((e: Json) => e.name === "HOST_IP"), {
    name: "HOST_IP",
    valueFrom: { fieldRef: { fieldPath: "status.hostIP" } },
  });
  // $(HOST_IP) is expanded by the kubelet; brackets keep an IPv6 address parseable.
  assert.ok(c.args.includes(`--metrics-addr=[$(HOST_IP)]:${AGENT_METRICS_PORT}`));
  assert.ok(c.args.includes(`--health-addr=[$(HOST_IP)]:${AGENT_HEALTH_PORT}`));
  assert.ok(!c.args.includes("--metrics-insecure"), "agents serve protected metrics");
  assert.deepEqual(c.readinessProbe.httpGet, { path: "/readyz?wait=4", port: AGENT_HEALTH_PORT });
  assert.deepEqual(c.startupProbe.httpGet, { path: "/healthz", port: AGENT_HEALTH_PORT });
  assert.deepEqual(c.livenessProbe.httpGet, { path: "/healthz", port: AGENT_HEALTH_PORT });
  assert.deepEqual(c.ports.map((p: Json) => [p.name, p.containerPort]), [
    ["metrics", AGENT_METRICS_PORT],
    ["health", AGENT_HEALTH_PORT],
  ]);
  // The agent parses what the DaemonSet passes, once the kubelet expanded $(HOST_IP).
  for (const ip of ["10.0.0.7", "fd00::7"]) {
    const args = c.args.map((a: string) => a.replace("$(HOST_IP)", ip));
    const o = parseAgentFlags(args, { env: {}, isTerminal: false, hostname: "n1" });
    assert.deepEqual(o.metricsAddr, { hostname: ip, port: AGENT_ENDPOINTS.metricsPort });
    assert.deepEqual(o.healthAddr, { hostname: ip, port: AGENT_ENDPOINTS.healthPort });
  }
});

Deno.test("renderDaemonSet() takes spec.image over the default and changes the hash only with the spec", () => {
  const a: Json = renderDaemonSet(agent, { defaultImage: "img:default" });
  const same: Json = renderDaemonSet(structuredClone(agent), { defaultImage: "img:default" });
  const b: Json = renderDaemonSet({ ...agent, spec: { ...agent.spec, image: "img:2" } }, {
    defaultImage: "img:default",
  });
  assert.equal(b.spec.template.spec.containers[0].image, "img:2");
  assert.equal(
    a.metadata.annotations[SPEC_HASH_ANNOTATION],
    same.metadata.annotations[SPEC_HASH_ANNOTATION],
  );
  assert.notEqual(
    a.metadata.annotations[SPEC_HASH_ANNOTATION],
    b.metadata.annotations[SPEC_HASH_ANNOTATION],
  );
});

Deno.test("hashOf() ignores key order", () => {
  assert.equal(hashOf({ a: 1, b: [1, { c: 2, d: 3 }] }), hashOf({ b: [1, { d: 3, c: 2 }], a: 1 }));
  assert.notEqual(hashOf({ a: 1 }), hashOf({ a: 2 }));
});

Deno.test("renderDaemonSet() keeps the agent on Linux nodes whatever the selector, and an empty image falls back", () => {
  const selectorOf = (spec: Agent["spec"]): Json =>
    (renderDaemonSet({ ...agent, spec }, { defaultImage: "img:default" }) as Json).spec.template
      .spec.nodeSelector;
  assert.deepEqual(selectorOf({}), { "kubernetes.io/os": "linux" });
  assert.deepEqual(selectorOf({ nodeSelector: {} }), { "kubernetes.io/os": "linux" });
  assert.deepEqual(selectorOf({ nodeSelector: { pool: "edge" } }), {
    "kubernetes.io/os": "linux",
    pool: "edge",
  });
  const ds: Json = renderDaemonSet({ ...agent, spec: { image: "" } }, {
    defaultImage: "img:default",
  });
  assert.equal(ds.spec.template.spec.containers[0].image, "img:default");
});

Deno.test("renderDaemonSet() mounts every path the host checks read, except networkd.conf in /run/systemd", () => {
  const ds: Json = renderDaemonSet(agent, { defaultImage: "img:default" });
  const mounted: string[] = ds.spec.template.spec.volumes.map((v: Json) => v.hostPath.path);
  const unmounted = HOST_CHECK_PATHS.filter((path) =>
    !mounted.some((dir) => path === dir || path.startsWith(`${dir}/`))
  );
  assert.deepEqual(unmounted, ["/run/systemd/networkd.conf"]);
  // Nothing the checks do not read from, and never /etc or /run as a whole (credentials,
  // sockets); /usr is one mount, a tree every node has (read-only on some).
  for (const dir of mounted) {
    assert.ok(HOST_CHECK_PATHS.some((path) => path === dir || path.startsWith(`${dir}/`)), dir);
  }
  for (const whole of ["/", "/etc", "/run", "/var"]) assert.ok(!mounted.includes(whole), whole);
});

Deno.test("renderDaemonSet() passes spec.adoptUnmarkedRules to the agents as their flag", () => {
  const args = (spec: Agent["spec"]): string[] =>
    (renderDaemonSet({ ...agent, spec }, { defaultImage: "img" }) as Json).spec.template.spec
      .containers[0].args;
  assert.ok(!args(agent.spec).includes("--adopt-unmarked-rules"));
  assert.ok(!args({ ...agent.spec, adoptUnmarkedRules: false }).includes("--adopt-unmarked-rules"));
  const on = args({ ...agent.spec, adoptUnmarkedRules: true });
  assert.ok(on.includes("--adopt-unmarked-rules"));
  const o = parseAgentFlags(on.map((a) => a.replace("$(HOST_IP)", "10.0.0.7")), {
    env: {},
    isTerminal: false,
    hostname: "n1",
  });
  assert.equal(o.adoptUnmarkedRules, true);
});
