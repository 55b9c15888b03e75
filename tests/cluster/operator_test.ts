/**
 * The operator as users run it, on real kubelet nodes: installed from deploy/ as the README says
 * (only the images pointed at the ones built here), then each scenario with its own objects,
 * asserting on the API objects and every node's kernel (`ip -n <node> rule`). One cluster for the
 * file (tests/support/operator.ts); each test installs on first use and cleans up what it made.
 */
import assert from "node:assert/strict";
import { type Cluster, type ClusterNode } from "../support/cluster.ts";
import {
  agentPod,
  agentPods,
  agentsRolledOut,
  apply,
  clusterTest,
  containerPid,
  CONTROLLER,
  controllerRolledOut,
  fileCluster,
  find,
  getJson,
  install,
  iprule,
  type Json,
  lbService,
  logLines,
  NS,
  ourRules,
  patchAgent,
  podLog,
  processCredentials,
  removeObjects,
  sampleRule,
  waitFor,
} from "../support/operator.ts";
import { LIBMNL_PATH } from "../../scripts/permissions.ts";

const cluster = fileCluster({ nodes: 3 });
let installed: Promise<Cluster> | undefined;
/** The cluster with the operator installed (once per file). */
function operator(): Promise<Cluster> {
  return installed ??= cluster().then(async (c) => {
    await install(c);
    return c;
  });
}

/** Bit of CAP_NET_ADMIN in /proc/<pid>/status CapEff. */
const CAP_NET_ADMIN = 1n << 12n;

/** `from <ip> lookup <table>` as `ip rule` prints our rule for a ClusterIP. */
function ruleOf(ip: string, table: number): string {
  return `1000:\tfrom ${ip} lookup ${table} proto ${201}`;
}

async function onEveryNode(
  c: Cluster,
  what: string,
  check: (rules: string[], node: ClusterNode) => boolean,
): Promise<void> {
  await waitFor(what, async () => {
    for (const node of c.nodes) if (!check(await ourRules(c, node), node)) return false;
    return true;
  });
}

clusterTest(
  "cluster: the controller runs 2/2 with one leader, on in-cluster config, as uid 65532 with no capability",
  async () => {
    const c = await operator();
    const deployment = await getJson(c, ["-n", NS, "get", "deployment", CONTROLLER]);
    assert.equal(deployment.status.readyReplicas, 2);
    const pods = (await getJson(c, [
      "-n",
      NS,
      "get",
      "pods",
      "-l",
      "app.kubernetes.io/component=controller",
    ])).items as Json[];
    assert.equal(pods.length, 2);
    const lease = await waitForLeader(c);
    assert.ok(
      pods.some((p) => p.metadata.name === lease),
      `Leader "${lease}" is not a controller Pod`,
    );
    for (const pod of pods) {
      // In-cluster configuration: no kubeconfig flag, file or variable; the service account token.
      const container = pod.spec.containers[0];
      assert.ok(!container.args.some((a: string) => a.startsWith("--kubeconfig")));
      assert.ok(!(container.env ?? []).some((e: Json) => e.name === "KUBECONFIG"));
      assert.deepEqual(
        pod.spec.volumes.map((v: Json) => Object.keys(v).filter((k) => k !== "name")[0]).sort(),
        ["emptyDir", "projected"],
      );
      // Probes pass through the kubelet: Ready, never restarted by the liveness probe.
      assert.equal(pod.status.containerStatuses[0].ready, true);
      assert.equal(pod.status.containerStatuses[0].restartCount, 0);
      const pid = await containerPid(c, pod);
      const { uid, capEff } = await processCredentials(pid);
      assert.equal(uid, 65532);
      assert.equal(capEff, 0n);
      // Read-only root file system, as runc applied it.
      const mounts = await Deno.readTextFile(`/proc/${pid}/mountinfo`);
      const root = mounts.split("\n").find((l) => l.split(" ")[4] === "/");
      assert.match(root ?? "", / ro[, ]/, `root mount of ${pod.metadata.name}: ${root}`);
    }
    // Pod Security as deploy/ labels it: privileged for the agents, enforced by the API server.
    const ns = await getJson(c, ["get", "namespace", NS]);
    assert.equal(ns.metadata.labels["pod-security.kubernetes.io/enforce"], "privileged");
  },
);

async function waitForLeader(c: Cluster): Promise<string> {
  let holder = "";
  await waitFor("a leader Lease", async () => {
    const leases = await getJson(c, ["-n", NS, "get", "leases"]);
    // The holder identity is `<pod name>_<random>`.
    holder = leases.items.map((l: Json) => String(l.spec.holderIdentity ?? "").split("_")[0])
      .find((h: string) => h.startsWith(CONTROLLER)) ?? "";
    return holder !== "";
  });
  return holder;
}

clusterTest(
  "cluster: the Agent yields one Running agent per node, root with only NET_ADMIN, libmnl from the image",
  async () => {
    const c = await operator();
    const ds = await getJson(c, ["-n", NS, "get", "daemonset", "iprule-agent"]);
    assert.equal(ds.status.desiredNumberScheduled, c.nodes.length);
    await waitFor("the Agent's status from the DaemonSet", async () => {
      const agent = await getJson(c, ["-n", NS, "get", "agent", "agent"]);
      const s = agent.status ?? {};
      return s.desiredNumberScheduled === c.nodes.length &&
        s.currentNumberScheduled === c.nodes.length && s.numberReady === c.nodes.length;
    }).catch(async (error) => {
      const agent = await getJson(c, ["-n", NS, "get", "agent", "agent"]);
      throw new Error(`${error.message}; Agent status: ${JSON.stringify(agent.status)}`);
    });
    for (const node of c.nodes) {
      const pod = await agentPod(c, node);
      assert.equal(pod.spec.hostNetwork, true);
      const pid = await containerPid(c, pod);
      const { uid, capEff } = await processCredentials(pid);
      assert.equal(uid, 0, `agent on ${node.name} runs as root`);
      assert.equal(capEff, CAP_NET_ADMIN, `agent on ${node.name} has NET_ADMIN only`);
      const maps = await Deno.readTextFile(`/proc/${pid}/maps`);
      assert.ok(maps.includes(LIBMNL_PATH), `agent on ${node.name} has not loaded ${LIBMNL_PATH}`);
      // It found its node through the downward API and reported it.
      const state = await find(c, ["get", "iprulenodestate", node.name]);
      assert.ok(state, `no IPRuleNodeState for ${node.name}`);
    }
  },
);

clusterTest(
  "cluster: IPRules and LoadBalancer Services become rules on every node, IPv4 and IPv6; a deleted Service takes them away",
  async () => {
    const c = await operator();
    await apply(c, [iprule("seed-a", ["10.50.0.0/16", "fd00:50::/64"], 150)]);
    try {
      const ips = await lbService(c, "seed-web", ["10.50.0.10", "fd00:50::10"]);
      assert.equal(ips.length, 2);
      const want = ips.map((ip) => ruleOf(ip, 150));
      await onEveryNode(
        c,
        "both rules on every node",
        (rules) => want.every((w) => rules.includes(w)),
      );
      await c.cp.kubectl(["-n", "default", "delete", "service", "seed-web"]);
      await onEveryNode(
        c,
        "the rules gone from every node",
        (rules) => want.every((w) => !rules.includes(w)),
      );
    } finally {
      await removeObjects(c, { service: "seed-web", iprule: "seed-a" });
    }
  },
);

clusterTest(
  "cluster: deleting the leader Pod hands over to the standby, and a change made meanwhile converges",
  async () => {
    const c = await operator();
    await apply(c, [iprule("failover", ["10.51.0.0/16"], 151)]);
    try {
      const leader = await waitForLeader(c);
      await c.cp.kubectl(["-n", NS, "delete", "pod", leader, "--wait=false"]);
      const [ip] = await lbService(c, "failover-web", ["10.51.0.10"]);
      await onEveryNode(
        c,
        "the rule made during the hand-over",
        (rules) => rules.includes(ruleOf(ip!, 151)),
      );
      const next = await waitForLeader(c);
      assert.notEqual(next, leader);
    } finally {
      await removeObjects(c, { service: "failover-web", iprule: "failover" });
    }
    await controllerRolledOut(c);
  },
);

clusterTest(
  "cluster: an agent Pod deleted is replaced by the DaemonSet with its node's rules in place all along",
  async () => {
    const c = await operator();
    await apply(c, [iprule("restart", ["10.52.0.0/16"], 152)]);
    try {
      const [ip] = await lbService(c, "restart-web", ["10.52.0.10"]);
      const line = ruleOf(ip!, 152);
      await onEveryNode(c, "the rule", (rules) => rules.includes(line));
      const node = c.nodes[0]!;
      const old = await agentPod(c, node);
      // Sampled as fast as `ip rule` runs, until the new Pod is Ready.
      let fresh: Json;
      const { missing, samples } = await sampleRule(c, node, line, async () => {
        await c.cp.kubectl(["-n", NS, "delete", "pod", old.metadata.name]);
        fresh = await agentPod(c, node);
      });
      assert.notEqual(fresh!.metadata.uid, old.metadata.uid);
      assert.deepEqual(missing, [], `rule missing in ${missing.length} of ${samples} samples`);
      assert.ok(samples > 10, `only ${samples} samples`);
    } finally {
      await removeObjects(c, { service: "restart-web", iprule: "restart" });
    }
  },
);

clusterTest(
  "cluster: a rolling update of the agents (the Agent's spec changed) keeps every rule in place",
  async () => {
    const c = await operator();
    await apply(c, [iprule("rollout", ["10.54.0.0/16"], 154)]);
    const node = c.nodes[1]!;
    try {
      const [ip] = await lbService(c, "rollout-web", ["10.54.0.10"]);
      const line = ruleOf(ip!, 154);
      await onEveryNode(c, "the rule", (rules) => rules.includes(line));
      const before = await agentPod(c, node);
      // Sampled as fast as `ip rule` runs, until the DaemonSet has replaced every agent.
      const { missing, samples } = await sampleRule(c, node, line, async () => {
        await patchAgent(c, { spec: { logLevel: "debug" } });
        await waitFor("the DaemonSet changed", async () => {
          const ds = await getJson(c, ["-n", NS, "get", "daemonset", "iprule-agent"]);
          return ds.spec.template.spec.containers[0].args.includes("--log-level=debug");
        });
        await agentsRolledOut(c);
      });
      assert.notEqual((await agentPod(c, node)).metadata.uid, before.metadata.uid, "replaced");
      assert.deepEqual(missing, [], `rule missing in ${missing.length} of ${samples} samples`);
      assert.ok(samples > 10, `only ${samples} samples`);
      for (const n of c.nodes) assert.ok((await ourRules(c, n)).includes(line), n.name);
    } finally {
      await patchAgent(c, [{ op: "remove", path: "/spec/logLevel" }]);
      await removeObjects(c, { service: "rollout-web", iprule: "rollout" });
      await agentsRolledOut(c);
    }
  },
);

clusterTest(
  "cluster: kubectl drain keeps a node's agent and rules; a node leaving the Agent's nodeSelector loses them",
  async () => {
    const c = await operator();
    const node = c.nodes[1]!;
    await apply(c, [iprule("drain", ["10.53.0.0/16"], 153)]);
    try {
      const [ip] = await lbService(c, "drain-web", ["10.53.0.10"]);
      const line = ruleOf(ip!, 153);
      await onEveryNode(c, "the rule", (rules) => rules.includes(line));
      const before = await agentPod(c, node);
      await c.cp.kubectl([
        "drain",
        node.name,
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--timeout=120s",
      ]);
      assert.equal((await agentPod(c, node)).metadata.uid, before.metadata.uid);
      assert.ok((await ourRules(c, node)).includes(line));
      await c.cp.kubectl(["uncordon", node.name]);

      // The Agent selects the nodes labelled for it; this one is not.
      const others = c.nodes.filter((n) => n !== node);
      for (const n of others) {
        await c.cp.kubectl(["label", "node", n.name, "ipro-test/agent=yes", "--overwrite"]);
      }
      await patchAgent(c, { spec: { nodeSelector: { "ipro-test/agent": "yes" } } });
      await waitFor(
        `no rule of ours left on ${node.name}`,
        async () => (await ourRules(c, node)).length === 0,
      );
      for (const n of others) assert.ok((await ourRules(c, n)).includes(line), n.name);
      await waitFor(
        `no agent Pod on ${node.name}`,
        async () => (await agentPods(c, node)).length === 0,
      );
    } finally {
      await c.cp.kubectl(["uncordon", node.name]);
      await c.cp.kubectl([
        "apply",
        "-f",
        new URL("../../deploy/samples/agent.yaml", import.meta.url).pathname,
      ]);
      await patchAgent(c, [{
        op: "replace",
        path: "/spec/nodeSelector",
        value: { "kubernetes.io/os": "linux" },
      }]);
      for (const n of c.nodes) await c.cp.kubectl(["label", "node", n.name, "ipro-test/agent-"]);
      await removeObjects(c, { service: "drain-web", iprule: "drain" });
    }
    await agentPod(c, node);
  },
);

/**
 * Has the agent's executable in `pod` read `path` (as its kubeconfig) and asserts its
 * --allow-read refused it; the command's output.
 */
async function refusedRead(c: Cluster, pod: Json, path: string): Promise<string> {
  const probe = await c.cp.kubectl([
    "-n",
    NS,
    "exec",
    pod.metadata.name,
    "--",
    "/usr/local/bin/iprule-agent",
    "--once",
    `--kubeconfig=${path}`,
    `--node-name=${pod.spec.nodeName}`,
    "--metrics-addr=127.0.0.1:0",
  ], { check: false });
  assert.notEqual(probe.code, 0, path);
  assert.match(probe.stdout + probe.stderr, /NotCapable|Requires read access/, path);
  return probe.stdout + probe.stderr;
}

/** Restarts the agent on `node` and returns the new Pod's log once it is Ready. */
async function restartedAgentLog(c: Cluster, node: ClusterNode): Promise<Json[]> {
  const old = await agentPod(c, node);
  await c.cp.kubectl(["-n", NS, "delete", "pod", old.metadata.name]);
  const pod = await agentPod(c, node);
  return logLines(await podLog(c, pod));
}

function hostWarnings(lines: Json[]): string[] {
  return lines.filter((l) => l.msg === "Host setting found that deletes the agent's rules").map((
    l,
  ) => l.reason);
}

clusterTest(
  "cluster: the agent Pod cannot read the node's credentials; it sees networkd's settings, vendor drop-ins included",
  async () => {
    const c = await operator();
    const [node] = c.nodes;
    const secret = "/etc/kubernetes/pki/ipro-planted.key";
    const inMount = "/etc/systemd/ipro-planted.conf";
    const dropin = "/usr/lib/systemd/networkd.conf.d/50-ipro-test.conf";
    const state = "/run/systemd/netif/state";
    const sh = (script: string) => c.exec(node!, ["sh", "-c", script]);
    const content = `secret-${crypto.randomUUID()}`;
    try {
      await sh(
        `mkdir -p /etc/kubernetes/pki && echo ${content} > ${secret} && echo ${content} > ${inMount}`,
      );
      const pod = await agentPod(c, node!);
      const pid = await containerPid(c, pod);
      // Mounts: nothing of the node's /etc/kubernetes in the container, its networkd dir is.
      const root = `/proc/${pid}/root`;
      await assert.rejects(Deno.stat(`${root}/host${secret}`), Deno.errors.NotFound);
      await assert.rejects(Deno.stat(`${root}/host/etc/kubernetes`), Deno.errors.NotFound);
      assert.equal(await Deno.readTextFile(`${root}/host${inMount}`), `${content}\n`);
      // Permissions: the agent's executable may not read a file even where a mount shows it.
      assert.ok(!(await refusedRead(c, pod, `/host${inMount}`)).includes(content));

      // No networkd on this node yet: no warning; the empty NetworkManager dir is none either.
      assert.deepEqual(hostWarnings(await restartedAgentLog(c, node!)), []);
      // networkd runs, its ManageForeignRoutingPolicyRules at the default: a warning.
      await sh(`mkdir -p /run/systemd/netif && : > ${state}`);
      const warned = hostWarnings(await restartedAgentLog(c, node!));
      assert.equal(warned.length, 1, JSON.stringify(warned));
      assert.match(
        warned[0]!,
        /ManageForeignRoutingPolicyRules is not set, and its default is yes/,
      );
      // A vendor drop-in turns it off: no warning.
      await sh(
        `mkdir -p ${dropin.slice(0, dropin.lastIndexOf("/"))} && ` +
          `printf '[Network]\\nManageForeignRoutingPolicyRules=no\\n' > ${dropin}`,
      );
      assert.deepEqual(hostWarnings(await restartedAgentLog(c, node!)), []);
    } finally {
      await sh(`rm -rf /etc/kubernetes ${inMount} ${dropin} ${state}`);
    }
    // The machine itself never saw any of it.
    for (const path of [secret, inMount, dropin, state]) {
      assert.equal(await Deno.stat(path).then(() => true, () => false), false, path);
    }
  },
);

clusterTest(
  "cluster: on a node whose /usr is read-only and has no /usr/local/lib/systemd, the agent starts",
  async () => {
    const c = await operator();
    const node = c.nodes[2]!;
    const sh = (script: string, check = true) => c.exec(node, ["sh", "-c", script], { check });
    // As on Flatcar or Fedora CoreOS: nothing can be created below /usr (the node's own view).
    await sh(
      "rm -rf /usr/local/lib/systemd && mount --bind /usr /usr && mount -o remount,bind,ro /usr",
    );
    try {
      assert.notEqual((await sh("mkdir /usr/local/lib/systemd", false)).code, 0, "read-only");
      const old = await agentPod(c, node);
      await c.cp.kubectl(["-n", NS, "delete", "pod", old.metadata.name]);
      const pod = await agentPod(c, node);
      assert.notEqual(pod.metadata.uid, old.metadata.uid);
      // The vendor's tree is there, read-only; the missing directory stays missing.
      const root = `/proc/${await containerPid(c, pod)}/root/host`;
      assert.ok((await Deno.stat(`${root}/usr/lib/systemd`)).isDirectory);
      await assert.rejects(Deno.stat(`${root}/usr/local/lib/systemd`), Deno.errors.NotFound);
      // The executable may read networkd's files there, nothing else of /usr.
      await refusedRead(c, pod, "/host/usr/lib/os-release");
    } finally {
      // Lazily: the shims of containers started meanwhile run from the read-only view.
      await sh("umount -l /usr");
    }
    assert.equal((await sh("touch /usr/.ipro-rw && rm /usr/.ipro-rw", false)).code, 0, "rw again");
  },
);

clusterTest(
  "cluster: no probe failed as this file's Pods started, rolled and stopped (no Unhealthy event)",
  async () => {
    const c = await operator();
    const events = (await getJson(c, ["-n", NS, "get", "events"])).items as Json[];
    const started = events.filter((e) => e.reason === "Started");
    // Every agent and controller Pod of the install, and the restarts of the tests before.
    assert.ok(started.length > c.nodes.length + 2, `only ${started.length} Started events`);
    const killed = new Map<string, string>(
      events.filter((e) => e.reason === "Killing").map((e) => [
        e.involvedObject.uid,
        e.firstTimestamp,
      ]),
    );
    const probes = events.filter((e) => e.reason === "Unhealthy" || e.reason === "ProbeWarning");
    const failed = probes.filter((e) =>
      // The kubelet probes readiness until it has seen the container exit (it stops the
      // workers only then: kubernetes/kubernetes#122824), and our endpoint answers until the
      // process exits; a refused connection after the Pod's Killing is that gap, not ours.
      !(/connection refused/.test(e.message) && killed.has(e.involvedObject.uid) &&
        e.firstTimestamp >= killed.get(e.involvedObject.uid)!)
    ).map((e) => `${e.firstTimestamp} ${e.involvedObject.name}: ${e.message} (x${e.count ?? 1})`);
    // The story of each Pod that failed one, and when the live ones began to listen.
    const names = new Set(probes.map((e) => e.involvedObject.name));
    const story = events.filter((e) => names.has(e.involvedObject.name)).map((e) =>
      `${e.firstTimestamp} ${e.involvedObject.name} ${e.reason} ${e.source?.host ?? ""} ` +
      String(e.message).slice(0, 120)
    );
    for (const pod of (await getJson(c, ["-n", NS, "get", "pods"])).items as Json[]) {
      const line = logLines(await podLog(c, pod)).find((l) => l.healthListeningMs !== undefined);
      story.push(`${pod.metadata.name} listening after ${line?.healthListeningMs} ms`);
    }
    assert.deepEqual(failed, [], story.join("\n"));
  },
);
