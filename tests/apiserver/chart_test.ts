/**
 * The Helm chart (deploy/helm/ip-rule-operator/, generated from deploy/ by `task manifests`)
 * with a real Helm v4 built from its Go module, against a real kube-apiserver + etcd: in sync
 * with deploy/, `helm lint` clean, `helm template` with the defaults equal to
 * deploy/install.yaml object for object, the values reaching the objects, a server-side dry run
 * of what it renders, and `helm install` / `helm uninstall` with the Agent still there and the
 * real controller running: nothing holds the Agent (its agents drain as they stop, see
 * src/drain.ts; the cluster tier proves that part on real nodes).
 */
import assert from "node:assert/strict";
import { parseAllDocuments } from "yaml";
import { type ControlPlane, startControlPlane } from "../support/controlplane.ts";
import { eventually, ExecutableProcess, freePort } from "../support/process.ts";
import { runTool, tool } from "../support/tools.ts";
import {
  INSTALL_YAML,
  NAMESPACE,
  readYaml,
  renderChartFiles,
  ROOT,
} from "../../scripts/manifests.ts";
import { CHART_DIR } from "../../scripts/chart.ts";

// deno-lint-ignore no-explicit-any
type Json = any;

const CHART = `${ROOT}/${CHART_DIR}`;
const REGENERATE = "run 'task manifests' and commit the result";

function docs(text: string): Json[] {
  return parseAllDocuments(text).map((d) => {
    if (d.errors.length > 0) throw new Error(`Invalid YAML rendered: ${d.errors[0]!.message}`);
    return d.toJS();
  }).filter((o) => o !== null);
}

/** `apiVersion kind namespace/name` of an object. */
function keyOf(o: Json): string {
  return `${o.apiVersion} ${o.kind} ${o.metadata.namespace ?? ""}/${o.metadata.name}`;
}

/** Asserts two object lists hold the same objects, whatever their order. */
function assertSameObjects(actual: Json[], expected: Json[], what: string): void {
  const a = new Map(actual.map((o) => [keyOf(o), o]));
  const e = new Map(expected.map((o) => [keyOf(o), o]));
  assert.equal(a.size, actual.length, `${what}: an object is rendered twice`);
  assert.deepEqual([...a.keys()].sort(), [...e.keys()].sort(), `${what}: different objects`);
  for (const [key, object] of e) assert.deepEqual(a.get(key), object, `${what}: ${key} differs`);
}

/** Helm with its state in the control plane's dir and the admin's kubeconfig. */
function helm(cp: ControlPlane | undefined, args: string[]) {
  const home = cp?.dir ?? Deno.makeTempDirSync({ prefix: "helm-" });
  const env = {
    HELM_CACHE_HOME: `${home}/helm/cache`,
    HELM_CONFIG_HOME: `${home}/helm/config`,
    HELM_DATA_HOME: `${home}/helm/data`,
  };
  const kube = cp ? ["--kubeconfig", cp.kubeconfig("admin")] : [];
  return {
    run: () => runTool("helm", [...args, ...kube], { env }),
    text: () => tool("helm", [...args, ...kube], { env }),
  };
}

/** `helm template` of the chart with `--set`/`--set-json` arguments. */
async function template(...set: string[]): Promise<Json[]> {
  return docs(await helm(undefined, ["template", "ip-rule-operator", CHART, ...set]).text());
}

Deno.test("the Helm chart is in sync with deploy/ and renders deploy/install.yaml for its defaults", async (t) => {
  const kubectl = `${ROOT}/.cache/controlplane/bin/kubectl`;
  const kustomize = async (dir: string) => {
    const out = await new Deno.Command(kubectl, { args: ["kustomize", `${ROOT}/${dir}`] }).output();
    assert.ok(
      out.success,
      `kubectl kustomize ${dir} failed: ${new TextDecoder().decode(out.stderr)}`,
    );
    return new TextDecoder().decode(out.stdout);
  };
  const install = docs(await Deno.readTextFile(`${ROOT}/${INSTALL_YAML}`));
  const monitoring = docs(await kustomize("deploy/monitoring"));

  await t.step("the chart's files are what task manifests generates from deploy/", async () => {
    const files = await renderChartFiles({
      install: await kustomize("deploy"),
      monitoring: await kustomize("deploy/monitoring"),
    });
    const stale = [];
    for (const file of files) {
      const actual = await Deno.readTextFile(`${ROOT}/${file.path}`).catch(() => undefined);
      if (actual !== file.content) stale.push(file.path);
    }
    assert.deepEqual(stale, [], `Out of date: ${stale.join(", ")}: ${REGENERATE}`);
  });

  await t.step("helm lint --strict passes with the defaults and with every option on", async () => {
    for (
      const set of [[], [
        "--set",
        "agent.create=true,monitoring.enabled=true,metrics.certSecret=tls",
        "--set-json",
        'metrics.readerServiceAccounts=[{"name":"prometheus","namespace":"monitoring"}]',
      ]]
    ) {
      const result = await helm(undefined, ["lint", "--strict", CHART, ...set]).run();
      const output = result.stdout + result.stderr;
      assert.ok(result.success, `helm lint ${set.join(" ")} failed:\n${output}`);
      assert.doesNotMatch(output, /\[(WARNING|ERROR)\]/, output);
      assert.match(output, /1 chart\(s\) linted, 0 chart\(s\) failed/);
    }
  });

  await t.step(
    "helm template with the defaults (and the CRDs) renders install.yaml object for object",
    async () => {
      assertSameObjects(await template("--include-crds"), install, "helm template --include-crds");
      // Without --include-crds: the same minus the CRDs, which live in the chart's crds/.
      assertSameObjects(
        await template(),
        install.filter((o) => o.kind !== "CustomResourceDefinition"),
        "helm template",
      );
    },
  );

  await t.step("monitoring.enabled=true adds exactly deploy/monitoring/", async () => {
    assertSameObjects(
      await template("--include-crds", "--set", "monitoring.enabled=true"),
      [...install, ...monitoring],
      "helm template --set monitoring.enabled=true",
    );
    const labelled = await template(
      "--set",
      "monitoring.enabled=true",
      "--set",
      "monitoring.labels.release=prom",
    );
    for (const o of labelled.filter((o) => ["ServiceMonitor", "PrometheusRule"].includes(o.kind))) {
      assert.equal(o.metadata.labels.release, "prom", `${o.kind} "${o.metadata.name}" label`);
      assert.equal(o.metadata.labels["app.kubernetes.io/name"], "ip-rule-operator");
    }
    // The alerts' own templates reach the PrometheusRule unchanged.
    const rule = labelled.find((o) => o.kind === "PrometheusRule");
    const [alerts] = await readYaml("deploy/monitoring/alerts.rules.yaml");
    assert.deepEqual(rule.spec.groups, alerts.groups);
  });

  await t.step(
    "agent.create=true renders the sample Agent with the chart's node selection, resync and " +
      "status interval",
    async () => {
      const [sample] = await readYaml("deploy/samples/agent.yaml");
      const [agent] = (await template("--set", "agent.create=true")).filter((o) =>
        o.kind === "Agent"
      );
      assert.deepEqual(agent, {
        ...sample,
        spec: { ...sample.spec, resyncPeriod: "10s", statusInterval: "10s" },
      });
      const [custom] = (await template(
        "--set",
        "agent.create=true,agent.resyncPeriod=30s,agent.statusInterval=1m," +
          "agent.resources.limits.memory=256Mi",
        "--set-json",
        'agent.nodeSelector={"pool":"edge"}',
        "--set-json",
        "agent.tolerations=[]",
      )).filter((o) => o.kind === "Agent");
      // Helm merges maps given on the command line into the defaults' (null deletes a key).
      assert.deepEqual(custom.spec, {
        nodeSelector: { "kubernetes.io/os": "linux", pool: "edge" },
        tolerations: [],
        resyncPeriod: "30s",
        statusInterval: "1m",
        resources: { limits: { memory: "256Mi" } },
      });
    },
  );

  await t.step("the controller values reach the Deployment", async () => {
    const deployment = (objects: Json[]) => objects.find((o) => o.kind === "Deployment");
    const d = deployment(
      await template(
        "--set",
        "controller.replicas=3,controller.image=registry.test/c:1,agent.image=registry.test/a:1",
        "--set",
        "metrics.certSecret=metrics-tls,controller.resources.limits.memory=300Mi",
      ),
    );
    const pod = d.spec.template.spec;
    const c = pod.containers[0];
    assert.equal(d.spec.replicas, 3);
    assert.equal(c.image, "registry.test/c:1");
    assert.ok(c.args.includes("--agent-image=registry.test/a:1"));
    assert.ok(c.args.includes("--metrics-cert-dir=/etc/ip-rule-operator/metrics-cert"));
    assert.ok(!c.args.includes("--metrics-insecure"));
    assert.deepEqual(c.resources, {
      requests: { cpu: "50m", memory: "128Mi" },
      limits: { cpu: "500m", memory: "300Mi" },
    });
    assert.deepEqual(
      c.volumeMounts.find((m: Json) => m.name === "metrics-cert"),
      { name: "metrics-cert", mountPath: "/etc/ip-rule-operator/metrics-cert", readOnly: true },
    );
    assert.deepEqual(pod.volumes.find((v: Json) => v.name === "metrics-cert"), {
      name: "metrics-cert",
      secret: { secretName: "metrics-tls" },
    });
    const plain = deployment(await template("--set", "metrics.secure=false"));
    assert.ok(plain.spec.template.spec.containers[0].args.includes("--metrics-insecure"));
  });

  await t.step(
    "namespace.name moves every namespaced object and the bindings' subjects",
    async () => {
      const objects = await template("--set", "namespace.name=routing,namespace.create=false");
      assert.ok(
        !objects.some((o) => o.kind === "Namespace"),
        "namespace.create=false renders none",
      );
      for (const o of objects) {
        if (o.metadata.namespace !== undefined) {
          assert.equal(
            o.metadata.namespace,
            "routing",
            keyOf(o),
          );
        }
        for (const s of o.subjects ?? []) assert.equal(s.namespace, "routing", keyOf(o));
      }
      assert.ok(!JSON.stringify(objects).includes(NAMESPACE), `"${NAMESPACE}" left in a template`);
    },
  );

  await t.step("values of the wrong shape are refused by the chart's schema", async () => {
    for (
      const set of [
        "controller.replicas=two",
        "agent.resyncPeriod=soon",
        "agent.statusInterval=10",
        "bogus=1",
      ]
    ) {
      const result = await helm(undefined, ["template", "x", CHART, "--set", set]).run();
      assert.ok(!result.success, `helm template --set ${set} was accepted`);
      assert.match(result.stderr, /values don't meet the specifications of the schema/, set);
    }
  });
});

Deno.test("helm install and uninstall against a real API server, the Agent still there", async (t) => {
  await using cp = await startControlPlane({ crds: false });
  const ns = ["-n", NAMESPACE];
  // The release lives in `default`; the chart creates the operator's namespace itself.
  await t.step(
    "helm install creates the CRDs, the labelled namespace and every object",
    async () => {
      await helm(cp, [
        "install",
        "ip-rule-operator",
        CHART,
        "--set",
        "agent.create=true",
        "--set-json",
        'metrics.readerServiceAccounts=[{"name":"prometheus","namespace":"monitoring"}]',
      ]).text();
      const namespace = JSON.parse(
        (await cp.kubectl(["get", "namespace", NAMESPACE, "-o", "json"])).stdout,
      );
      assert.equal(namespace.metadata.labels["pod-security.kubernetes.io/enforce"], "privileged");
      const crds = (await cp.kubectl(["get", "crd", "-o", "name"])).stdout.trim().split("\n")
        .sort();
      assert.deepEqual(crds, [
        "customresourcedefinition.apiextensions.k8s.io/agents.api.operator.brtrm.dev",
        "customresourcedefinition.apiextensions.k8s.io/ipruleconfigs.api.operator.brtrm.dev",
        "customresourcedefinition.apiextensions.k8s.io/iprulenodestates.api.operator.brtrm.dev",
        "customresourcedefinition.apiextensions.k8s.io/iprules.api.operator.brtrm.dev",
      ]);
      await cp.kubectl([
        "get",
        "deployment/ip-rule-operator-controller-manager",
        "agent/agent",
        ...ns,
      ]);
      // The reader binding lets Prometheus' account read /metrics, and nothing else.
      const canI = (args: string[]) =>
        cp.kubectl(["auth", "can-i", ...args, "--as=system:serviceaccount:monitoring:prometheus"], {
          check: false,
        });
      assert.equal((await canI(["get", "/metrics"])).stdout.trim(), "yes");
      assert.equal((await canI(["get", "/logs"])).stdout.trim(), "no");
      assert.equal((await canI(["list", "pods", "-A"])).stdout.trim(), "no");
    },
  );

  await t.step("what the chart renders passes a server-side dry run", async () => {
    for (
      const set of [[], ["--set", "agent.create=true,metrics.certSecret=tls"], [
        "--set",
        "metrics.secure=false",
      ]]
    ) {
      const rendered = await helm(undefined, ["template", "ip-rule-operator", CHART, ...set])
        .text();
      const result = await cp.kubectl(["apply", "--dry-run=server", "-f", "-"], {
        stdin: rendered,
        check: false,
      });
      assert.ok(
        result.success,
        `Dry run of helm template ${set.join(" ")} failed: ${result.stderr}`,
      );
    }
  });

  await t.step(
    "uninstall: helm uninstall with the Agent deployed leaves nothing held by a finalizer",
    async () => {
      // The controller as a process under its own service account's identity, as in the cluster.
      const controller = await ExecutableProcess.start("controller", [
        `--kubeconfig=${cp.kubeconfig("controller")}`,
        `--metrics-addr=127.0.0.1:${freePort()}`,
        `--health-addr=127.0.0.1:${freePort()}`,
        "--log-format=json",
      ], { logFile: `${cp.dir}/controller.log`, env: { POD_NAMESPACE: NAMESPACE } });
      try {
        await eventually("the Agent's DaemonSet", async () => {
          const ds = await cp.kubectl(["get", "daemonset", "iprule-agent", ...ns], {
            check: false,
          });
          return ds.success;
        }, 60_000);
        const agent = JSON.parse(
          (await cp.kubectl(["get", "agent", "agent", ...ns, "-o", "json"])).stdout,
        );
        assert.equal(agent.metadata.finalizers, undefined, "nothing may hold the Agent");
        // No --wait: this control plane runs no namespace controller, so the namespace stays
        // Terminating; Helm deletes every other object itself.
        await helm(cp, ["uninstall", "ip-rule-operator"]).text();
        const left = await cp.kubectl([
          "get",
          "deployment,serviceaccount,role,rolebinding",
          ...ns,
          "-o",
          "name",
        ]);
        assert.deepEqual(
          left.stdout.trim().split("\n").filter((l) => l !== "" && !l.endsWith("/default")),
          [],
          "objects left behind by helm uninstall",
        );
        for (const kind of ["clusterrole", "clusterrolebinding"]) {
          const names = (await cp.kubectl(["get", kind, "-o", "name"])).stdout;
          assert.doesNotMatch(names, /ip-rule-operator/, `${kind}s left behind`);
        }
        assert.equal((await helm(cp, ["list", "-q"]).text()).trim(), "");
        // The Agent is gone, not Terminating (its DaemonSet waits for the garbage collector,
        // which this control plane does not run).
        const agents = await cp.kubectl(["get", "agents", ...ns, "-o", "name"]);
        assert.equal(agents.stdout.trim(), "", "the Agent outlived helm uninstall");
        // Helm never deletes what crds/ installed: the IPRules survive an uninstall.
        await cp.kubectl(["get", "crd", "iprules.api.operator.brtrm.dev"]);
        const namespace = JSON.parse(
          (await cp.kubectl(["get", "namespace", NAMESPACE, "-o", "json"])).stdout,
        );
        assert.ok(
          namespace.metadata.deletionTimestamp,
          "helm uninstall did not delete the namespace",
        );
      } finally {
        await controller.stop();
      }
    },
  );
});
