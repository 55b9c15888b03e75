/**
 * deploy/ against a real kube-apiserver + etcd: the kustomization and install.yaml pass a
 * server-side dry run and install, the generated files are in sync with their sources, each
 * service account can do exactly what it needs (`kubectl auth can-i` with its own token), and the
 * API server's PodSecurity admission admits the controller under `restricted` and the agent only
 * under `privileged`. Plus static checks of the OLM bundle and the Containerfile.
 */
import assert from "node:assert/strict";
import { parseAllDocuments } from "yaml";
import {
  type ControlPlane,
  OPERATOR_NAMESPACE,
  startControlPlane,
} from "../support/controlplane.ts";
import {
  controllerImages,
  crdSources,
  CSV_PATH,
  GENERATED_DIRS,
  INSTALL_YAML,
  OPENSHIFT_AGENT_RULE,
  PACKAGE_NAME,
  readYaml,
  renderInstallYaml,
  renderStaticFiles,
  ROOT,
  rulesByServiceAccount,
  withoutOwnNamespace,
} from "../../scripts/manifests.ts";
import { LIBMNL_PATH } from "../../scripts/permissions.ts";
import { CHART_DIR } from "../../scripts/chart.ts";
import { AGENT_SERVICE_ACCOUNT, renderDaemonSet } from "../../src/controller/daemonset.ts";
import type { Agent } from "../../src/api/types.ts";

// deno-lint-ignore no-explicit-any
type Json = any;

const GROUP = "api.operator.brtrm.dev";
const CONTROLLER_ACCOUNT = "ip-rule-operator-controller";
const REGENERATE = "run 'task manifests' and commit the result";

/** `kind/name` of every object in a multi-document YAML text, as kubectl's `-o name` prints. */
function objectNames(yamlText: string): string[] {
  return parseAllDocuments(yamlText).map((d) => d.toJS()).filter(Boolean).map((o: Json) => {
    const group = o.apiVersion.includes("/") ? `.${o.apiVersion.split("/")[0]}` : "";
    return `${o.kind.toLowerCase()}${group}/${o.metadata.name}`;
  }).sort();
}

function namesOf(stdout: string): string[] {
  return stdout.trim().split("\n").filter(Boolean).sort();
}

/** Runs kubectl with a JSON object on stdin, never throwing. */
function kubectlWith(cp: ControlPlane, args: string[], object: unknown) {
  return cp.kubectl(args, { stdin: JSON.stringify(object), check: false });
}

/** A bare Pod from a workload's pod template: PodSecurity enforces on Pods, only warns on workloads. */
function podFrom(workload: Json, name: string, namespace: string): Json {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, namespace, labels: workload.spec.template.metadata?.labels ?? {} },
    spec: workload.spec.template.spec,
  };
}

async function controllerDeployment(): Promise<Json> {
  const [deployment] = await readYaml("deploy/controller.yaml");
  return deployment;
}

/** The agent DaemonSet the controller renders for the sample Agent and the deployed agent image. */
async function agentDaemonSet(namespace: string): Promise<Json> {
  const [sample] = await readYaml("deploy/samples/agent.yaml");
  const agent: Agent = {
    ...sample,
    metadata: { ...sample.metadata, namespace, uid: crypto.randomUUID() },
  };
  const images = controllerImages(await controllerDeployment());
  return renderDaemonSet(agent, { defaultImage: images.agent });
}

Deno.test("deploy/ against a real API server", async (t) => {
  // No CRDs preinstalled: installing them is part of what deploy/ must do.
  await using cp = await startControlPlane({ crds: false });
  const deployDir = `${ROOT}/deploy`;
  const installYaml = `${ROOT}/${INSTALL_YAML}`;

  await t.step(
    "kubectl apply --dry-run=server accepts the kustomization and install.yaml",
    async () => {
      // Namespaced objects can only be dry-run into a namespace that exists.
      await cp.kubectl(["apply", "-f", `${deployDir}/namespace.yaml`]);
      const expected = objectNames(await Deno.readTextFile(installYaml));
      for (const source of [["-k", deployDir], ["-f", installYaml]]) {
        const result = await cp.kubectl(["apply", "--dry-run=server", "-o", "name", ...source], {
          check: false,
        });
        assert.ok(
          result.success,
          `Server-side dry run of "kubectl apply ${source.join(" ")}" failed: ${result.stderr}`,
        );
        assert.deepEqual(
          namesOf(result.stdout),
          expected,
          `Dry run of "${source.join(" ")}" did not cover every object of install.yaml`,
        );
      }
    },
  );

  await t.step("install.yaml is in sync with the kustomization", async () => {
    const kustomized = await cp.kubectl(["kustomize", deployDir]);
    const expected = renderInstallYaml(kustomized.stdout).content;
    const actual = await Deno.readTextFile(installYaml);
    assert.ok(
      actual === expected,
      `"${INSTALL_YAML}" differs from "kubectl kustomize deploy/": ${REGENERATE}`,
    );
  });

  await t.step("kubectl apply -k deploy/ creates every object, and the samples apply", async () => {
    const applied = await cp.kubectl(["apply", "-k", deployDir, "-o", "name"]);
    assert.deepEqual(
      namesOf(applied.stdout),
      objectNames(await Deno.readTextFile(installYaml)),
    );
    const crds = (await crdSources()).map((f) => `crd/${f.slice("crds/".length, -5)}.${GROUP}`);
    await cp.kubectl(["wait", "--for=condition=Established", "--timeout=60s", ...crds]);
    const deployment = await cp.kubectl([
      "get",
      "deployment",
      "ip-rule-operator-controller-manager",
      "-n",
      OPERATOR_NAMESPACE,
      "-o",
      "json",
    ]);
    assert.equal(JSON.parse(deployment.stdout).spec.replicas, 2);
    // CRs only once their CRDs are served (as a user would apply them after the install).
    const samples = await cp.kubectl(["apply", "-f", `${deployDir}/samples/`, "-o", "name"], {
      check: false,
    });
    assert.ok(samples.success, `Applying deploy/samples/ failed: ${samples.stderr}`);
    assert.deepEqual(namesOf(samples.stdout), [
      `agent.${GROUP}/agent`,
      `iprule.${GROUP}/datacenter-a-routing`,
    ]);
  });

  /** Asserts `kubectl auth can-i` answers as expected for the identity's own token. */
  const canI = async (
    identity: "controller" | "agent",
    expected: boolean,
    checks: string[][],
  ): Promise<void> => {
    const wrong: string[] = [];
    for (const check of checks) {
      const result = await cp.kubectl(["auth", "can-i", ...check], { identity, check: false });
      const answer = result.stdout.trim().split(/\s/)[0];
      if (answer !== "yes" && answer !== "no") {
        throw new Error(`Command 'kubectl auth can-i ${check.join(" ")}' failed: ${result.stderr}`);
      }
      if ((answer === "yes") !== expected) wrong.push(check.join(" "));
    }
    assert.deepEqual(
      wrong,
      [],
      `The ${identity} ${expected ? "cannot" : "can"}: ${wrong.map((w) => `"${w}"`).join(", ")}`,
    );
  };
  const ns = ["-n", OPERATOR_NAMESPACE];

  await t.step("the agent's service account can do what it needs and nothing more", async () => {
    await canI("agent", true, [
      ["list", `ipruleconfigs.${GROUP}`],
      ["watch", `ipruleconfigs.${GROUP}`],
      ["get", `ipruleconfigs.${GROUP}`],
      ["create", `iprulenodestates.${GROUP}`],
      ["get", `iprulenodestates.${GROUP}`],
      ["patch", `iprulenodestates.${GROUP}`, "--subresource=status"],
      ["get", "nodes"],
      // Its namespace and its Agent, watched: an agent stopping during an uninstall drains.
      ["get", `namespaces/${OPERATOR_NAMESPACE}`],
      ["list", `namespaces/${OPERATOR_NAMESPACE}`],
      ["watch", `namespaces/${OPERATOR_NAMESPACE}`],
      ["get", `agents.${GROUP}/agent`, ...ns],
      ["list", `agents.${GROUP}/agent`, ...ns],
      ["watch", `agents.${GROUP}/agent`, ...ns],
      // Checking /metrics requests: who the token is, whether it may read /metrics.
      ["create", "tokenreviews.authentication.k8s.io"],
      ["create", "subjectaccessreviews.authorization.k8s.io"],
    ]);
    await canI("agent", false, [
      ["list", "namespaces"],
      ["get", "namespaces/default"],
      ["patch", `namespaces/${OPERATOR_NAMESPACE}`],
      ["list", `agents.${GROUP}`, ...ns],
      ["patch", `agents.${GROUP}/agent`, ...ns],
      ["get", `agents.${GROUP}/agent`, "-n", "default"],
      ["get", "/metrics"],
      ["list", "tokenreviews.authentication.k8s.io"],
      ["patch", "services", "-n", "default"],
      ["list", "services", "--all-namespaces"],
      ["get", "secrets", ...ns],
      ["list", "secrets", "--all-namespaces"],
      ["patch", "daemonsets/iprule-agent", ...ns],
      ["update", "daemonsets/iprule-agent", ...ns],
      ["delete", "daemonsets/iprule-agent", ...ns],
      ["create", `ipruleconfigs.${GROUP}`],
      ["update", `ipruleconfigs.${GROUP}`],
      ["patch", `ipruleconfigs.${GROUP}`],
      ["delete", `ipruleconfigs.${GROUP}`],
      ["delete", `iprulenodestates.${GROUP}`],
      // spec.drain is the controller's to set: no agent may rewrite any node state's spec.
      ["update", `iprulenodestates.${GROUP}`],
      ["patch", `iprulenodestates.${GROUP}`],
      ["update", `iprulenodestates.${GROUP}`, "--subresource=status"],
      ["update", `iprules.${GROUP}`],
      ["update", `agents.${GROUP}`, ...ns],
      ["create", "pods", ...ns],
      ["update", "nodes"],
      ["create", "events.events.k8s.io", "-n", "default"],
      ["update", "leases.coordination.k8s.io", ...ns],
      ["*", "*", "--all-namespaces"],
    ]);
  });

  await t.step(
    "the controller's service account can do what it needs and nothing more",
    async () => {
      await canI("controller", true, [
        ["list", "services", "--all-namespaces"],
        ["watch", "services", "--all-namespaces"],
        ["list", "namespaces"],
        ["watch", "nodes"],
        ["list", `iprules.${GROUP}`],
        ["watch", `iprules.${GROUP}`],
        ["patch", `iprules.${GROUP}`, "--subresource=status"],
        ["create", `ipruleconfigs.${GROUP}`],
        ["patch", `ipruleconfigs.${GROUP}`],
        ["delete", `ipruleconfigs.${GROUP}`],
        ["watch", `ipruleconfigs.${GROUP}`],
        ["list", `iprulenodestates.${GROUP}`],
        ["watch", `agents.${GROUP}`, ...ns],
        ["patch", `agents.${GROUP}`, ...ns],
        ["patch", `agents.${GROUP}`, ...ns, "--subresource=status"],
        ["update", `agents.${GROUP}`, ...ns, "--subresource=finalizers"],
        ["create", "daemonsets.apps", ...ns],
        ["list", "daemonsets.apps/iprule-agent", ...ns],
        ["watch", "daemonsets.apps/iprule-agent", ...ns],
        ["patch", "daemonsets.apps/iprule-agent", ...ns],
        ["create", "leases.coordination.k8s.io", ...ns],
        ["get", "leases.coordination.k8s.io/ip-rule-operator-controller", ...ns],
        ["update", "leases.coordination.k8s.io/ip-rule-operator-controller", ...ns],
        ["create", "events.events.k8s.io", "-n", "default"],
        ["create", "events.events.k8s.io", "-n", "tenant-a"],
        ["create", "tokenreviews.authentication.k8s.io"],
        ["create", "subjectaccessreviews.authorization.k8s.io"],
      ]);
      await canI("controller", false, [
        ["get", "/metrics"],
        // The DaemonSet goes with its Agent (garbage collector); the controller never deletes it.
        ["delete", "daemonsets.apps/iprule-agent", ...ns],
        ["create", "localsubjectaccessreviews.authorization.k8s.io", ...ns],
        ["get", "secrets", ...ns],
        ["list", "secrets", "--all-namespaces"],
        ["patch", "services", "-n", "default"],
        ["update", `iprules.${GROUP}`],
        ["delete", `iprules.${GROUP}`],
        ["update", `iprulenodestates.${GROUP}`],
        // Verbs the code never uses (it patches and applies).
        ["update", `ipruleconfigs.${GROUP}`],
        ["update", `agents.${GROUP}`, ...ns],
        ["update", `agents.${GROUP}`, ...ns, "--subresource=status"],
        ["update", "daemonsets.apps/iprule-agent", ...ns],
        ["patch", "events.events.k8s.io", "-n", "default"],
        ["create", `agents.${GROUP}`, ...ns],
        ["delete", `agents.${GROUP}`, ...ns],
        ["create", "daemonsets.apps", "-n", "kube-system"],
        ["list", "daemonsets.apps", ...ns],
        ["update", "daemonsets.apps/other", ...ns],
        ["update", "leases.coordination.k8s.io/other", ...ns],
        ["update", "leases.coordination.k8s.io/ip-rule-operator-controller", "-n", "default"],
        ["create", "pods", ...ns],
        ["update", "nodes"],
        ["create", "clusterrolebindings.rbac.authorization.k8s.io"],
        ["*", "*", "--all-namespaces"],
      ]);
    },
  );

  // One namespace per Pod Security level, with the service accounts the pods name.
  for (const level of ["restricted", "baseline", "privileged"]) {
    await kubectlWith(cp, ["create", "-f", "-"], {
      apiVersion: "v1",
      kind: "Namespace",
      metadata: { name: `pss-${level}`, labels: { "pod-security.kubernetes.io/enforce": level } },
    });
    for (const account of [CONTROLLER_ACCOUNT, AGENT_SERVICE_ACCOUNT]) {
      await cp.kubectl(["create", "serviceaccount", account, "-n", `pss-${level}`]);
    }
  }
  const dryRunPod = (pod: Json) => kubectlWith(cp, ["create", "--dry-run=server", "-f", "-"], pod);

  await t.step("PodSecurity admission is enforced by this API server", async () => {
    // Host PID is forbidden from baseline up. (Privileged containers are refused even earlier,
    // by this API server's --allow-privileged=false, so they would prove nothing here.)
    const hostPid = {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: "host-pid", namespace: "pss-baseline" },
      spec: {
        serviceAccountName: CONTROLLER_ACCOUNT,
        hostPID: true,
        containers: [{ name: "c", image: "example.test/c" }],
      },
    };
    const result = await dryRunPod(hostPid);
    assert.ok(!result.success, "A host-PID pod was admitted in a namespace enforcing baseline");
    assert.match(result.stderr, /violates PodSecurity "baseline:latest": host namespaces/);
  });

  await t.step("the controller Deployment passes the restricted Pod Security level", async () => {
    const deployment = await controllerDeployment();
    const pod = await dryRunPod(podFrom(deployment, "controller", "pss-restricted"));
    assert.ok(pod.success, `The controller pod was rejected under restricted: ${pod.stderr}`);
    const moved = {
      ...deployment,
      metadata: { ...deployment.metadata, namespace: "pss-restricted" },
    };
    const workload = await kubectlWith(cp, ["apply", "--dry-run=server", "-f", "-"], moved);
    assert.ok(workload.success, `The controller Deployment was rejected: ${workload.stderr}`);
    assert.doesNotMatch(
      workload.stderr,
      /PodSecurity/,
      `The controller Deployment draws a PodSecurity warning: ${workload.stderr}`,
    );
  });

  await t.step(
    "the rendered agent DaemonSet passes privileged and is rejected by baseline",
    async () => {
      const inBaseline = await dryRunPod(
        podFrom(await agentDaemonSet("pss-baseline"), "agent", "pss-baseline"),
      );
      assert.ok(!inBaseline.success, "The agent pod was admitted under baseline");
      assert.match(inBaseline.stderr, /violates PodSecurity "baseline:latest"/);
      assert.match(inBaseline.stderr, /hostNetwork=true/);
      assert.match(inBaseline.stderr, /NET_ADMIN/);

      const workload = await kubectlWith(
        cp,
        ["apply", "--dry-run=server", "-f", "-"],
        await agentDaemonSet("pss-baseline"),
      );
      assert.ok(workload.success, `The agent DaemonSet was rejected: ${workload.stderr}`);
      assert.match(workload.stderr, /would violate PodSecurity "baseline:latest"/);

      for (const namespace of ["pss-privileged", OPERATOR_NAMESPACE]) {
        const pod = await dryRunPod(podFrom(await agentDaemonSet(namespace), "agent", namespace));
        assert.ok(pod.success, `The agent pod was rejected in "${namespace}": ${pod.stderr}`);
      }
    },
  );
});

Deno.test("the generated CRD copies, OLM manifests and PrometheusRule are in sync with their sources", async () => {
  const files = await renderStaticFiles();
  const stale: string[] = [];
  for (const file of files) {
    const actual = await Deno.readTextFile(`${ROOT}/${file.path}`).catch(() => undefined);
    if (actual !== file.content) stale.push(file.path);
  }
  const wanted = new Set(files.map((f) => f.path));
  // The chart's directories are checked by tests/apiserver/chart_test.ts (it needs kubectl).
  for (const dir of GENERATED_DIRS.filter((d) => !d.startsWith(CHART_DIR))) {
    for await (const entry of Deno.readDir(`${ROOT}/${dir}`)) {
      if (!wanted.has(`${dir}/${entry.name}`)) stale.push(`${dir}/${entry.name}`);
    }
  }
  assert.deepEqual(stale, [], `Out of date: ${stale.join(", ")}: ${REGENERATE}`);
});

Deno.test("the OLM ClusterServiceVersion owns every CRD and deploys deploy/controller.yaml", async () => {
  const [csv] = await readYaml(CSV_PATH);
  const deployment = await controllerDeployment();
  const rbac = await readYaml("deploy/rbac.yaml");
  const { version } = JSON.parse(await Deno.readTextFile(`${ROOT}/deno.json`));
  assert.equal(csv.kind, "ClusterServiceVersion");
  assert.equal(csv.metadata.name, `${PACKAGE_NAME}.v${version}`);
  assert.equal(csv.spec.version, version);

  const owned: Json[] = csv.spec.customresourcedefinitions.owned;
  const crds = await Promise.all((await crdSources()).map(async (f) => (await readYaml(f))[0]));
  assert.deepEqual(
    owned.map((o) => o.name).sort(),
    crds.map((c) => c.metadata.name).sort(),
    "The CSV's owned CRDs differ from crds/",
  );
  for (const crd of crds) {
    const entry = owned.find((o) => o.name === crd.metadata.name)!;
    const storage = crd.spec.versions.find((v: Json) => v.storage).name;
    assert.equal(entry.kind, crd.spec.names.kind, `Owned CRD "${entry.name}" has the wrong kind`);
    assert.equal(entry.version, storage, `Owned CRD "${entry.name}" has the wrong version`);
    assert.ok(entry.displayName, `Owned CRD "${entry.name}" has no displayName`);
    assert.ok(entry.description, `Owned CRD "${entry.name}" has no description`);
  }

  const strategy = csv.spec.install;
  assert.equal(strategy.strategy, "deployment");
  assert.equal(strategy.spec.deployments.length, 1);
  assert.equal(strategy.spec.deployments[0].name, deployment.metadata.name);
  assert.deepEqual(
    strategy.spec.deployments[0].spec,
    deployment.spec,
    "The CSV's deployment spec differs from deploy/controller.yaml",
  );

  const clusterRules = rulesByServiceAccount(rbac, "ClusterRoleBinding");
  const namespacedRules = rulesByServiceAccount(rbac, "RoleBinding");
  const byAccount = (list: Json[]) =>
    Object.fromEntries(list.map((p) => [p.serviceAccountName, p.rules]));
  assert.deepEqual(byAccount(strategy.spec.clusterPermissions), {
    [CONTROLLER_ACCOUNT]: clusterRules.get(CONTROLLER_ACCOUNT),
    [AGENT_SERVICE_ACCOUNT]: [
      ...withoutOwnNamespace(clusterRules.get(AGENT_SERVICE_ACCOUNT)!),
      OPENSHIFT_AGENT_RULE,
    ],
  }, "The CSV's clusterPermissions differ from deploy/rbac.yaml");
  // The agent's watch of deploy/'s namespace has no place where OLM picks the namespace.
  assert.equal(
    clusterRules.get(AGENT_SERVICE_ACCOUNT)!.length -
      withoutOwnNamespace(clusterRules.get(AGENT_SERVICE_ACCOUNT)!).length,
    1,
  );
  assert.deepEqual(byAccount(strategy.spec.permissions), {
    [CONTROLLER_ACCOUNT]: namespacedRules.get(CONTROLLER_ACCOUNT),
    [AGENT_SERVICE_ACCOUNT]: namespacedRules.get(AGENT_SERVICE_ACCOUNT),
  }, "The CSV's permissions differ from deploy/rbac.yaml");

  const images = controllerImages(deployment);
  assert.deepEqual(
    csv.spec.relatedImages.map((i: Json) => i.image).sort(),
    [images.agent, images.controller].sort(),
  );
  assert.equal(csv.metadata.annotations.containerImage, images.controller);
  assert.ok(
    csv.spec.installModes.some((m: Json) => m.type === "AllNamespaces" && m.supported),
    "The CSV does not support the AllNamespaces install mode",
  );

  const examples: Json[] = JSON.parse(csv.metadata.annotations["alm-examples"]);
  assert.deepEqual(examples.map((e) => e.kind).sort(), ["Agent", "IPRule"]);
  for (const example of examples) {
    assert.ok(
      owned.some((o) => o.kind === example.kind && `${GROUP}/${o.version}` === example.apiVersion),
      `alm-examples has a "${example.kind}" the CSV does not own`,
    );
  }
  assert.equal(examples.find((e) => e.kind === "Agent").metadata.name, "agent");
});

Deno.test("the bundle image's labels equal the bundle's metadata/annotations.yaml", async () => {
  const [{ annotations }] = await readYaml("deploy/olm/metadata/annotations.yaml");
  const containerfile = await Deno.readTextFile(`${ROOT}/deploy/olm/bundle.Containerfile`);
  const labels = Object.fromEntries(
    [...containerfile.matchAll(/^\s*(?:LABEL\s+)?([\w.\-/]+)=(\S+?)\s*\\?$/gm)].map((m) => [
      m[1],
      m[2],
    ]),
  );
  assert.deepEqual(labels, annotations);
  assert.equal(annotations["operators.operatorframework.io.bundle.package.v1"], PACKAGE_NAME);
  assert.equal(annotations["operators.operatorframework.io.bundle.channel.default.v1"], "stable");
});

Deno.test("the images and their build follow deno.json and scripts/permissions.ts", async () => {
  const { version } = JSON.parse(await Deno.readTextFile(`${ROOT}/deno.json`));
  const images = controllerImages(await controllerDeployment());
  for (const image of [images.controller, images.agent]) {
    assert.ok(image.endsWith(`:v${version}`), `Image "${image}" is not tagged "v${version}"`);
  }
  const containerfile = await Deno.readTextFile(`${ROOT}/Containerfile`);
  const runs = containerfile.replaceAll("\\\n", " ").split("\n").filter((l) =>
    l.startsWith("RUN ")
  );
  assert.ok(
    runs.some((r) => r.includes("deno run -A --frozen scripts/build.ts")),
    "The Containerfile does not compile through scripts/build.ts",
  );
  assert.deepEqual(
    runs.filter((r) => /deno compile|--allow-(net|env|sys|read|ffi)/.test(r)),
    [],
    "The Containerfile repeats permission flags instead of taking them from scripts/build.ts",
  );
  assert.ok(
    containerfile.includes(`/out${LIBMNL_PATH}`),
    `The agent image does not put libmnl at "${LIBMNL_PATH}"`,
  );
  for (const target of ["build", "libmnl", "controller", "agent"]) {
    assert.match(containerfile, new RegExp(`^FROM \\S+ AS ${target}$`, "m"));
  }
  assert.equal(
    [...containerfile.matchAll(/^ARG VERSION=(\S+)$/gm)].map((m) => m[1]).join(),
    `${version},${version}`,
  );
  const workflow = parseAllDocuments(
    await Deno.readTextFile(`${ROOT}/.github/workflows/e2e.yml`),
  );
  assert.deepEqual(workflow.flatMap((d) => d.errors), [], "e2e.yml is not valid YAML");
});
