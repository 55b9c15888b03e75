/**
 * The controller against a real kube-apiserver + etcd, running as a process with the
 * controller's own RBAC identity (deploy/rbac.yaml) and the compiled executable's permission
 * flags. One control plane serves the file; each scenario runs its own controller, uses its own
 * names and LB ranges, and removes what it created, so any scenario runs alone
 * (`deno test -A tests/apiserver/controller_test.ts --filter "<name>"`).
 */
import assert from "node:assert/strict";
import { startControlPlane } from "../support/controlplane.ts";
import { eventually, ExecutableProcess, freePort } from "../support/process.ts";
import { SHARED, sharedPart } from "../support/shared.ts";
import { KubeClient } from "../../src/k8s/client.ts";
import { RESOURCES } from "../../src/k8s/resources.ts";
import { LEGACY_AGENT_FINALIZER } from "../../src/drain.ts";

const NS = "ip-rule-operator-system";
// deno-lint-ignore no-explicit-any
type Json = any;

/** The file's control plane with the operator's namespace and RBAC, started by the first test. */
const controlPlane = sharedPart(async () => {
  const cp = await startControlPlane();
  await cp.kubectl(["apply", "-f", "deploy/namespace.yaml", "-f", "deploy/rbac.yaml"]);
  return cp;
});

async function controller(
  cp: { kubeconfig: (id: "controller") => string; dir: string },
  name: string,
  extra: string[] = [],
): Promise<ExecutableProcess & { port: number; healthPort: number }> {
  const port = freePort();
  const healthPort = freePort();
  const proc = await ExecutableProcess.start("controller", [
    `--kubeconfig=${cp.kubeconfig("controller")}`,
    // Plain metrics: this file reads the counters; tests/apiserver/metrics_auth_test.ts covers
    // the protected endpoint.
    `--metrics-addr=127.0.0.1:${port}`,
    "--metrics-insecure",
    `--health-addr=127.0.0.1:${healthPort}`,
    "--grace-period=2s",
    "--log-format=json",
    "--log-level=debug",
    "--agent-image=example.test/agent:1",
    ...extra,
  ], { logFile: `${cp.dir}/${name}.log`, env: { POD_NAME: name } });
  return Object.assign(proc, { port, healthPort });
}

async function metric(port: number, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  let sum = 0;
  for (const line of text.split("\n")) {
    if (line.startsWith(name)) sum += Number(line.split(" ").pop());
  }
  return sum;
}

async function ready(port: number): Promise<boolean> {
  const res = await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined);
  await res?.body?.cancel();
  return res?.status === 200;
}

/** The lines of a JSON log at level error. */
function errorLines(log: string): string[] {
  return log.split("\n").filter((l) => l.includes('"level":"error"'));
}

/** Deletes every object of the `collection` path, stripping finalizers first. */
async function sweep(
  admin: KubeClient,
  collection: string,
  keep: (name: string) => boolean = () => false,
) {
  const list: Json = await admin.request("GET", collection);
  for (const item of list.items ?? []) {
    const name = item.metadata.name;
    if (keep(name)) continue;
    const path = `${collection}/${name}`;
    if (item.metadata.finalizers?.length) {
      await admin.request("PATCH", path, {
        body: { metadata: { finalizers: null } },
        contentType: "application/merge-patch+json",
      }).catch(() => {});
    }
    await admin.request("DELETE", path).catch(() => {});
  }
}

/**
 * One scenario: the admin client, its controller (started and ready unless `controller: false`),
 * helpers that create objects, and at its end its controllers stopped and every object of the
 * kinds it may have created removed (the file's scenarios run one after the other).
 */
async function scenario(name: string, options: { controller?: boolean } = {}) {
  const cp = await controlPlane();
  const admin = await KubeClient.connect({ kubeconfig: cp.kubeconfig("admin") });
  const controllers: ExecutableProcess[] = [];
  const start = async (procName: string, extra: string[] = []) => {
    const proc = await controller(cp, procName, extra);
    controllers.push(proc);
    return proc;
  };
  const dispose = async () => {
    for (const proc of controllers) await proc.stop();
    const api = "/apis/api.operator.brtrm.dev/v1alpha1";
    await sweep(admin, `${api}/namespaces/${NS}/agents`);
    await sweep(admin, `/apis/apps/v1/namespaces/${NS}/daemonsets`);
    await sweep(admin, `/apis/coordination.k8s.io/v1/namespaces/${NS}/leases`);
    for (const plural of ["iprules", "ipruleconfigs", "iprulenodestates"]) {
      await sweep(admin, `${api}/${plural}`);
    }
    await sweep(admin, "/api/v1/nodes");
    await sweep(admin, "/api/v1/namespaces/default/services", (n) => n === "kubernetes");
    admin.close();
  };
  try {
    const ctl = options.controller === false ? undefined : await start(name);
    if (ctl) await eventually("controller ready", () => ready(ctl.healthPort));
    const ipRule = (name: string, spec: Json) =>
      admin.create(RESOURCES.ipRules, { metadata: { name }, spec });
    const service = async (name: string, dual = false): Promise<Json> =>
      await admin.create(RESOURCES.services, {
        metadata: { name, namespace: "default", labels: { app: name } },
        spec: {
          type: "LoadBalancer",
          ports: [{ port: 80 }],
          ...(dual ? { ipFamilyPolicy: "RequireDualStack", ipFamilies: ["IPv4", "IPv6"] } : {}),
        },
      }, "default");
    const ingress = (name: string, ips: string[]) =>
      admin.mergePatch(RESOURCES.services, name, {
        status: { loadBalancer: { ingress: ips.map((ip) => ({ ip })) } },
      }, { namespace: "default", subresource: "status" });
    const config = (name: string) => admin.get(RESOURCES.ipRuleConfigs, name) as Promise<Json>;
    const v4Name = (svc: Json) => `iprc-${svc.spec.clusterIPs[0].replaceAll(".", "-")}`;
    const configFor = (svc: Json) =>
      eventually(`config of ${svc.metadata.name}`, () => config(v4Name(svc)));
    /** The Agent (selecting Linux nodes), once its DaemonSet exists. */
    const installAgent = async () => {
      await admin.create(RESOURCES.agents, {
        metadata: { name: "agent", namespace: NS },
        spec: { nodeSelector: { "kubernetes.io/os": "linux" } },
      }, NS);
      await eventually("DaemonSet", () => admin.get(RESOURCES.daemonSets, "iprule-agent", NS));
    };
    return {
      installAgent,
      cp,
      admin,
      ctl: ctl!,
      start,
      ipRule,
      service,
      ingress,
      config,
      v4Name,
      configFor,
      [Symbol.asyncDispose]: dispose,
    };
  } catch (error: unknown) {
    await dispose();
    throw error;
  }
}

Deno.test(
  "an LB IP in an IPRule's CIDR gets its config with the right name and spec",
  SHARED,
  async () => {
    await using s = await scenario("config-spec");
    const { admin, ipRule, service, ingress, configFor } = s;
    await ipRule("dc-a", { cidrs: ["192.168.1.0/24"], table: 100 });
    const svc = await service("web");
    await ingress("web", ["192.168.1.10"]);
    const c = await configFor(svc);
    assert.equal(c.spec.serviceIP, svc.spec.clusterIPs[0]);
    assert.equal(c.spec.table, 100);
    assert.equal(c.spec.priority, 1000);
    assert.equal(c.spec.state, "present");
    assert.equal(c.spec.ipRule, "dc-a");
    assert.deepEqual(c.spec.service, { namespace: "default", name: "web" });
    assert.equal(c.metadata.labels["app.kubernetes.io/managed-by"], "ip-rule-operator");
    const rule: Json = await eventually("IPRule status", async () => {
      const r: Json = await admin.get(RESOURCES.ipRules, "dc-a");
      return r.status?.matchedServices === 1 && r;
    });
    assert.equal(rule.status.observedGeneration, 1);
    assert.equal(rule.status.conditions.find((c: Json) => c.type === "Ready").status, "True");
  },
);

Deno.test(
  "dual-stack and IPv6: each LB IP pairs with the ClusterIP of its family",
  SHARED,
  async () => {
    await using s = await scenario("dual-stack");
    const { ipRule, service, ingress, config, configFor } = s;
    await ipRule("v6", { cidrs: ["fd00:10::/64", "192.168.6.0/24"], table: 600 });
    const svc = await service("dual", true);
    await ingress("dual", ["192.168.6.1", "fd00:10::7"]);
    const v6 = svc.spec.clusterIPs.find((ip: string) => ip.includes(":"));
    const groups = (await import("ipaddr.js")).default.parse(v6).toNormalizedString()
      .split(":").map((g: string) => g.replace(/^0+(?=.)/, ""));
    const c6: Json = await eventually("IPv6 config", () => config(`iprc-${groups.join("-")}`));
    assert.equal(c6.spec.serviceIP, v6);
    assert.equal(c6.spec.table, 600);
    assert.equal((await configFor(svc)).spec.table, 600);
  },
);

Deno.test(
  "overlapping IPRules: longest prefix wins, the loser gets Conflict and an Event",
  SHARED,
  async () => {
    await using s = await scenario("overlap");
    const { admin, ipRule, service, ingress, configFor } = s;
    await ipRule("wide", { cidrs: ["10.50.0.0/16"], table: 500 });
    await ipRule("narrow", { cidrs: ["10.50.1.0/24"], table: 501 });
    const svc = await service("overlap");
    await ingress("overlap", ["10.50.1.9"]);
    await eventually(
      "narrow wins",
      async () => (await configFor(svc)).spec.ipRule === "narrow",
    );
    const wide: Json = await eventually("Conflict condition", async () => {
      const r: Json = await admin.get(RESOURCES.ipRules, "wide");
      return r.status?.conditions?.find((c: Json) => c.type === "Conflict")?.status ===
          "True" && r;
    });
    assert.match(
      wide.status.conditions.find((c: Json) => c.type === "Conflict").message,
      /default\/overlap/,
    );
    await eventually("Conflict event", async () => {
      const events: Json = await admin.request(
        "GET",
        "/apis/events.k8s.io/v1/namespaces/default/events",
      );
      return events.items.some((e: Json) =>
        e.reason === "Conflict" && e.regarding.kind === "IPRule" && e.regarding.name === "wide"
      );
    });
  },
);

Deno.test("an LB IP change moves the config to the matching IPRule", SHARED, async () => {
  await using s = await scenario("lb-change");
  const { ipRule, service, ingress, configFor } = s;
  await ipRule("moved-a", { cidrs: ["10.60.1.0/24"], table: 601 });
  await ipRule("moved-b", { cidrs: ["10.60.2.0/24"], table: 602 });
  const svc = await service("mover");
  await ingress("mover", ["10.60.1.5"]);
  assert.equal((await configFor(svc)).spec.table, 601);
  await ingress("mover", ["10.60.2.5"]);
  await eventually("table 602", async () => (await configFor(svc)).spec.table === 602);
});

Deno.test(
  "a Service that stops being a LoadBalancer gets its config marked absent",
  SHARED,
  async () => {
    await using s = await scenario("type-change");
    const { admin, ipRule, service, ingress, configFor } = s;
    await ipRule("typed", { cidrs: ["10.61.0.0/24"], table: 610 });
    const svc = await service("typed");
    await ingress("typed", ["10.61.0.5"]);
    await configFor(svc);
    await admin.mergePatch(RESOURCES.services, "typed", { spec: { type: "ClusterIP" } }, {
      namespace: "default",
    });
    const c: Json = await eventually("absent", async () => {
      const c: Json = await configFor(svc);
      return c.spec.state === "absent" && c;
    });
    assert.ok(Date.parse(c.spec.absentSince) > 0);
  },
);

Deno.test(
  "a deleted Service's config goes absent, then is deleted after the grace period",
  SHARED,
  async () => {
    await using s = await scenario("service-deleted");
    const { admin, ipRule, service, ingress, config, v4Name, configFor } = s;
    await ipRule("gone", { cidrs: ["10.62.0.0/24"], table: 620 });
    const svc = await service("gone");
    await ingress("gone", ["10.62.0.5"]);
    await configFor(svc);
    await admin.delete(RESOURCES.services, "gone", { namespace: "default" });
    await eventually(
      "absent",
      async () => (await config(v4Name(svc)))?.spec.state === "absent",
    );
    await eventually("deleted", async () => (await config(v4Name(svc))) === undefined, 10_000);
  },
);

Deno.test(
  "an IPRule's table change updates the config in place; its deletion marks it absent",
  SHARED,
  async () => {
    await using s = await scenario("iprule-table");
    const { admin, ipRule, service, ingress, configFor } = s;
    await ipRule("retable", { cidrs: ["10.63.0.0/24"], table: 630 });
    const svc = await service("retable");
    await ingress("retable", ["10.63.0.5"]);
    const before: Json = await configFor(svc);
    await admin.mergePatch(RESOURCES.ipRules, "retable", {
      spec: { table: 631, priority: 900 },
    });
    const after: Json = await eventually("table 631", async () => {
      const c: Json = await configFor(svc);
      return c.spec.table === 631 && c;
    });
    assert.equal(after.spec.priority, 900);
    assert.equal(after.metadata.uid, before.metadata.uid, "updated in place");
    await admin.delete(RESOURCES.ipRules, "retable");
    await eventually("absent", async () => (await configFor(svc)).spec.state === "absent");
  },
);

Deno.test(
  "an IPRule with an invalid CIDR that bypassed validation is reported; others proceed",
  SHARED,
  async () => {
    await using s = await scenario("invalid-iprule");
    const { admin, ctl, ipRule, service, ingress, configFor } = s;
    // Loosen the schema as an older CRD would have been, write the bad object, restore it.
    const crd: Json = await admin.request(
      "GET",
      "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/iprules.api.operator.brtrm.dev",
    );
    const strict = structuredClone(crd.spec);
    const loose = structuredClone(crd.spec);
    loose.versions[0].schema.openAPIV3Schema.properties.spec = {
      type: "object",
      "x-kubernetes-preserve-unknown-fields": true,
    };
    const putSpec = async (spec: Json) => {
      const now: Json = await admin.request(
        "GET",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/iprules.api.operator.brtrm.dev",
      );
      await admin.request(
        "PUT",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/iprules.api.operator.brtrm.dev",
        {
          body: { ...now, spec },
        },
      );
    };
    await putSpec(loose);
    try {
      await eventually("loose schema served", async () => {
        try {
          await ipRule("bad-cidr", { cidrs: ["10.64.0.300/24"], table: 640 });
          return true;
        } catch {
          return false;
        }
      });
      await eventually("shape-broken IPRule written", async () => {
        try {
          await ipRule("bad-shape", { cidrs: "10.65.0.0/24", table: "x" });
          return true;
        } catch {
          return false;
        }
      });
    } finally {
      await putSpec(strict);
    }
    await ipRule("good-after-bad", { cidrs: ["10.66.0.0/24"], table: 660 });
    const svc = await service("after-bad");
    await ingress("after-bad", ["10.66.0.5"]);
    assert.equal((await configFor(svc)).spec.table, 660);
    const bad: Json = await eventually("Ready False on bad-cidr", async () => {
      const r: Json = await admin.get(RESOURCES.ipRules, "bad-cidr");
      return r.status?.conditions?.find((c: Json) => c.type === "Ready")?.status === "False" &&
        r;
    });
    assert.match(bad.status.conditions[0].message, /spec\.cidrs\[0\] "10\.64\.0\.300\/24"/);
    await eventually(
      "skip of bad-shape logged",
      async () => (await ctl.log()).includes('field \\"spec.cidrs\\" must be a list'),
    );
  },
);

Deno.test(
  "the Agent CR becomes the DaemonSet iprule-agent, without a finalizer",
  SHARED,
  async () => {
    await using s = await scenario("agent-daemonset");
    const { admin } = s;
    await admin.create(RESOURCES.agents, {
      metadata: { name: "agent", namespace: NS },
      spec: {
        nodeSelector: { "kubernetes.io/os": "linux" },
        tolerations: [{
          key: "node-role.kubernetes.io/control-plane",
          operator: "Exists",
          effect: "NoSchedule",
        }],
        priorityClassName: "system-node-critical",
      },
    }, NS);
    const ds: Json = await eventually(
      "DaemonSet",
      () => admin.get(RESOURCES.daemonSets, "iprule-agent", NS),
    );
    const pod = ds.spec.template.spec;
    assert.equal(pod.hostNetwork, true);
    assert.equal(pod.containers[0].image, "example.test/agent:1");
    assert.deepEqual(pod.containers[0].securityContext.capabilities, {
      drop: ["ALL"],
      add: ["NET_ADMIN"],
    });
    assert.equal(pod.containers[0].env[0].valueFrom.fieldRef.fieldPath, "spec.nodeName");
    assert.equal(pod.tolerations[0].key, "node-role.kubernetes.io/control-plane");
    assert.equal(ds.metadata.ownerReferences[0].kind, "Agent");
    // Nothing holds a deleted Agent: its DaemonSet goes with it, its agents drain as they stop.
    const agent: Json = await admin.get(RESOURCES.agents, "agent", NS);
    assert.equal(agent.metadata.finalizers, undefined);
    // A spec change updates the DaemonSet; no change, no write.
    const rv = ds.metadata.resourceVersion;
    await admin.mergePatch(
      RESOURCES.agents,
      "agent",
      { spec: { image: "example.test/agent:2" } },
      { namespace: NS },
    );
    const updated: Json = await eventually("new image", async () => {
      const d: Json = await admin.get(RESOURCES.daemonSets, "iprule-agent", NS);
      return d.spec.template.spec.containers[0].image === "example.test/agent:2" && d;
    });
    assert.notEqual(updated.metadata.resourceVersion, rv);
  },
);

Deno.test(
  "a node outside the Agent's node selector gets drain set on its IPRuleNodeState",
  SHARED,
  async () => {
    await using s = await scenario("drain-marks");
    const { admin, installAgent } = s;
    await installAgent();
    for (const [name, os] of [["sel-in", "linux"], ["sel-out", "windows"]]) {
      await admin.create(RESOURCES.nodes, {
        metadata: { name, labels: { "kubernetes.io/os": os! } },
      });
      await admin.create(RESOURCES.ipRuleNodeStates, { metadata: { name } });
    }
    const drainOf = async (name: string) =>
      ((await admin.get(RESOURCES.ipRuleNodeStates, name)) as Json)?.spec?.drain;
    await eventually("sel-out drained", async () => (await drainOf("sel-out")) === true);
    assert.notEqual(await drainOf("sel-in"), true);
    await admin.mergePatch(RESOURCES.nodes, "sel-out", {
      metadata: { labels: { "kubernetes.io/os": "linux" } },
    });
    await eventually(
      "sel-out selected again",
      async () => (await drainOf("sel-out")) === false,
    );

    // A taint the Agent does not tolerate turns the agent away as surely as a label.
    const taint = (taints: Json[]) =>
      admin.mergePatch(RESOURCES.nodes, "sel-out", { spec: { taints } });
    await taint([{ key: "dedicated", value: "db", effect: "NoExecute" }]);
    await eventually(
      "tainted sel-out drained",
      async () => (await drainOf("sel-out")) === true,
    );
    // Tolerated taints (the Agent's own, a cordon) do not.
    await taint([
      { key: "node-role.kubernetes.io/control-plane", effect: "NoSchedule" },
      { key: "node.kubernetes.io/unschedulable", effect: "NoSchedule" },
    ]);
    await eventually(
      "tolerated sel-out selected again",
      async () => (await drainOf("sel-out")) === false,
    );
  },
);

Deno.test(
  "an Agent spec the DaemonSet refuses is reported in the Agent's status; fixed, it applies",
  SHARED,
  async () => {
    await using s = await scenario("agent-invalid-spec");
    const { admin, installAgent } = s;
    await installAgent();
    const ready = async () =>
      ((await admin.get(RESOURCES.agents, "agent", NS)) as Json)?.status?.conditions?.find((
        c: Json,
      ) => c.type === "Ready");
    // The CRD admits it; Kubernetes refuses a value with the Exists operator.
    const bad = [{ key: "dedicated", operator: "Exists", value: "db", effect: "NoSchedule" }];
    await admin.mergePatch(RESOURCES.agents, "agent", { spec: { tolerations: bad } }, {
      namespace: NS,
    });
    const refused: Json = await eventually(
      "InvalidSpec reported",
      async () => ((await ready())?.reason === "InvalidSpec" ? await ready() : undefined),
    );
    assert.equal(refused.status, "False");
    assert.match(refused.message, /tolerations\[0\]\.operator|value must be empty/);
    // Drain marking went on: sel-out (tolerated taints) still not drained.
    const good = [{ key: "dedicated", operator: "Exists", effect: "NoSchedule" }];
    await admin.mergePatch(RESOURCES.agents, "agent", { spec: { tolerations: good } }, {
      namespace: NS,
    });
    await eventually("DaemonSet applied", async () => {
      const ds: Json = await admin.get(RESOURCES.daemonSets, "iprule-agent", NS);
      return ds?.spec?.template?.spec?.tolerations?.[0]?.key === "dedicated";
    });
    await eventually(
      "InvalidSpec cleared",
      async () => (await ready())?.reason !== "InvalidSpec",
    );
  },
);

Deno.test(
  "an Agent an earlier version left stuck on its finalizer is released; a live one loses it too",
  SHARED,
  async () => {
    await using s = await scenario("agent-release", { controller: false });
    const { admin, start } = s;
    // What an uninstall of an earlier version left: the Agent deleted, held by the finalizer
    // of a controller that is gone (the namespace and the CRD wait for it).
    await admin.create(RESOURCES.agents, {
      metadata: { name: "agent", namespace: NS, finalizers: [LEGACY_AGENT_FINALIZER] },
      spec: {},
    }, NS);
    await admin.delete(RESOURCES.agents, "agent", { namespace: NS });
    const held: Json = await admin.get(RESOURCES.agents, "agent", NS);
    assert.ok(held.metadata.deletionTimestamp, "held by the finalizer");
    const ctl = await start("agent-release");
    await eventually(
      "the Agent gone",
      async () => (await admin.get(RESOURCES.agents, "agent", NS)) === undefined,
    );
    assert.equal(await admin.get(RESOURCES.daemonSets, "iprule-agent", NS), undefined);
    // A live Agent carrying it (installed by an earlier version) loses it and is deployed.
    await admin.create(RESOURCES.agents, {
      metadata: {
        name: "agent",
        namespace: NS,
        finalizers: ["example.test/keep", LEGACY_AGENT_FINALIZER],
      },
      spec: {},
    }, NS);
    await eventually("DaemonSet", () => admin.get(RESOURCES.daemonSets, "iprule-agent", NS));
    await eventually("the finalizer removed", async () => {
      const agent: Json = await admin.get(RESOURCES.agents, "agent", NS);
      return JSON.stringify(agent.metadata.finalizers) === '["example.test/keep"]';
    });
    const log = await ctl.log();
    assert.match(
      log,
      /Finalizer of an earlier version removed; the agents remove their rules as they stop/,
    );
    assert.deepEqual(errorLines(log), []);
  },
);

Deno.test(
  "a restarted controller rewrites nothing and marks nothing absent while starting",
  SHARED,
  async () => {
    await using s = await scenario("restart", { controller: false });
    const { admin, start, ipRule, service, ingress, configFor } = s;
    // A first controller writes five configs, then stops.
    const first = await start("restart-1");
    await eventually("first controller ready", () => ready(first.healthPort));
    await ipRule("restart", { cidrs: ["10.68.0.0/24"], table: 680 });
    for (let i = 1; i <= 5; i++) {
      const svc = await service(`restart-${i}`);
      await ingress(`restart-${i}`, [`10.68.0.${i}`]);
      await configFor(svc);
    }
    // The first controller is done when the IPRule's status counts all five.
    await eventually("IPRule status written", async () => {
      const r: Json = await admin.get(RESOURCES.ipRules, "restart");
      return r.status?.matchedServices === 5;
    });
    await first.stop();
    const before: Json = await admin.request(
      "GET",
      "/apis/api.operator.brtrm.dev/v1alpha1/ipruleconfigs",
    );
    const versions = new Map(
      before.items.map((c: Json) => [c.metadata.name, c.metadata.resourceVersion]),
    );
    assert.ok(versions.size >= 5);
    const ctl = await start("restart-2");
    await eventually("restarted controller ready", () => ready(ctl.healthPort));
    await eventually(
      "the first resync ran",
      async () => (await metric(ctl.port, 'iprule_controller_reconciles_total{kind="resync"')) >= 1,
    );
    const after: Json = await admin.request(
      "GET",
      "/apis/api.operator.brtrm.dev/v1alpha1/ipruleconfigs",
    );
    for (const c of after.items) {
      // Absent configs past their grace may be deleted; nothing may be rewritten.
      if (versions.has(c.metadata.name)) {
        assert.equal(c.metadata.resourceVersion, versions.get(c.metadata.name), c.metadata.name);
      }
    }
    assert.equal(await metric(ctl.port, "iprule_controller_api_writes_total"), 0);
  },
);

Deno.test(
  "two controllers: only the leader writes, and the standby takes over",
  SHARED,
  async () => {
    await using s = await scenario("leader", { controller: false });
    const { admin, start, ipRule, service, ingress, configFor } = s;
    const a = await start("leader-a", ["--leader-elect", "--lease-duration=2s"]);
    const b = await start("leader-b", ["--leader-elect", "--lease-duration=2s"]);
    const holder = async () => {
      const lease: Json = await admin.get(RESOURCES.leases, "ip-rule-operator-controller", NS);
      return lease?.spec?.holderIdentity || undefined;
    };
    const first: string = await eventually("a leader", holder);
    const [leader, standby] = first.startsWith("leader-a") ? [a, b] : [b, a];
    await ipRule("elect", { cidrs: ["10.70.0.0/24"], table: 700 });
    const svc = await service("elect");
    await ingress("elect", ["10.70.0.5"]);
    await configFor(svc);
    await eventually(
      "leader wrote",
      async () => (await metric(leader.port, "iprule_controller_api_writes_total")) > 0,
    );
    assert.equal(await metric(standby.port, "iprule_controller_api_writes_total"), 0);
    assert.equal(await metric(standby.port, "iprule_controller_leader"), 0);
    await leader.stop("SIGKILL");
    const svc2 = await service("elect-2");
    await ingress("elect-2", ["10.70.0.6"]);
    await eventually("standby took over and wrote", () => configFor(svc2), 15_000);
    assert.equal(await metric(standby.port, "iprule_controller_leader"), 1);
  },
);
