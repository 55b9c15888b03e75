/**
 * The in-place migration from the original Go operator on a real kube-apiserver + etcd: the
 * original's CRDs (its shape, tests/support/original-crds/) with objects exactly as it writes them,
 * by its field manager ("manager", controller-runtime's default): IPRules with `cidr` and with
 * priority 0, IPRuleConfigs with its label, spec hash, per-node acks and owner reference, the
 * Agent, and the DaemonSet `iprule-agent` with its selector and template. Then our CRDs applied
 * over them as an install does (`kubectl apply -k deploy/crds/`), then our controller with its
 * own RBAC identity: nothing is pruned, the configs are adopted in place, the `cidr` IPRule
 * routes its Services, and the DaemonSet ends exactly as our controller renders it.
 */
import assert from "node:assert/strict";
import { narrowAgent } from "../../src/api/narrow.ts";
import { DAEMONSET_NAME, renderDaemonSet } from "../../src/controller/daemonset.ts";
import { HANDED_OVER_ANNOTATION } from "../../src/controller/handover.ts";
import { KubeClient } from "../../src/k8s/client.ts";
import { startControlPlane } from "../support/controlplane.ts";
import {
  ORIGINAL_MANAGER,
  originalAgent,
  originalConfigFor,
  originalDaemonSet,
} from "../support/original.ts";
import { eventually, ExecutableProcess, freePort } from "../support/process.ts";

const ROOT = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");
const NS = "ip-rule-operator-system";
const API = "/apis/api.operator.brtrm.dev/v1alpha1";
const DAEMONSETS = `/apis/apps/v1/namespaces/${NS}/daemonsets`;
const AGENT_IMAGE = "example.test/agent:1";
// deno-lint-ignore no-explicit-any
type Json = any;

Deno.test("our CRDs and controller take over what the original operator left, in place", async (t) => {
  await using cp = await startControlPlane({
    crds: `${ROOT}/tests/support/original-crds`,
  });
  await cp.kubectl(["apply", "-f", `${ROOT}/deploy/namespace.yaml`]);
  await cp.kubectl(["apply", "-f", `${ROOT}/deploy/rbac.yaml`]);
  const admin = await KubeClient.connect({ kubeconfig: cp.kubeconfig("admin") });
  /** A write as the original makes it: its field manager. */
  const asOriginal = (path: string, body: Json): Promise<Json> =>
    admin.request("POST", path, { body, query: { fieldManager: ORIGINAL_MANAGER } });
  const get = (path: string): Promise<Json> => admin.request("GET", path);
  let controller: ExecutableProcess | undefined;
  try {
    let webIP = "";
    let apiIP = "";
    await t.step("the original's objects, written under its CRDs", async () => {
      const rule = (name: string, spec: Json) =>
        asOriginal(`${API}/iprules`, {
          apiVersion: "api.operator.brtrm.dev/v1alpha1",
          kind: "IPRule",
          metadata: { name },
          spec,
        });
      // Its single CIDR and no priority; a later version's cidrs with its "agent default" 0.
      const dcA = await rule("dc-a", { cidr: "192.168.50.0/24", table: 100 });
      const dcB = await rule("dc-b", { cidrs: ["192.168.60.0/24"], table: 200, priority: 0 });
      for (const [name, lbIP] of [["web", "192.168.50.10"], ["api", "192.168.60.10"]]) {
        const svc: Json = await admin.request("POST", "/api/v1/namespaces/default/services", {
          body: {
            metadata: { name },
            spec: { type: "LoadBalancer", ports: [{ port: 80 }] },
          },
        });
        await admin.request("PATCH", `/api/v1/namespaces/default/services/${name}/status`, {
          body: { status: { loadBalancer: { ingress: [{ ip: lbIP }] } } },
          contentType: "application/merge-patch+json",
        });
        if (name === "web") webIP = svc.spec.clusterIP;
        else apiIP = svc.spec.clusterIP;
      }
      // The original copies the IPRule's priority, 0 included: both configs have 0.
      const config = (rule: Json, ip: string, options?: Parameters<typeof originalConfigFor>[2]) =>
        asOriginal(`${API}/ipruleconfigs`, originalConfigFor(rule, ip, options));
      const configs = [await config(dcA, webIP), await config(dcB, apiIP)];
      assert.deepEqual(configs.map((c) => c.spec.priority), [0, 0]);
      // Marked absent, acknowledged by one node only.
      await config(dcA, "10.96.250.250", {
        state: "absent",
        annotations: { "cleanup.iprule.agent.brtrm.dev/node-1": "done" },
      });
      const agent = await asOriginal(
        `${API}/namespaces/${NS}/agents`,
        originalAgent(NS, {
          nodeSelector: { "kubernetes.io/os": "linux" },
          tolerations: [{
            key: "node-role.kubernetes.io/control-plane",
            operator: "Exists",
            effect: "NoSchedule",
          }],
        }),
      );
      await asOriginal(DAEMONSETS, originalDaemonSet(NS, agent.metadata.uid));
    });

    const before = {
      configs: (await get(`${API}/ipruleconfigs`)).items,
      daemonSet: await get(`${DAEMONSETS}/${DAEMONSET_NAME}`),
    };

    await t.step("our CRDs applied over them prune nothing", async () => {
      await cp.kubectl(["apply", "-k", `${ROOT}/deploy/crds/`]);
      await cp.kubectl([
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/iprules.api.operator.brtrm.dev",
        "crd/iprulenodestates.api.operator.brtrm.dev",
      ]);
      // Each resource serves our schema once its storage is reinitialized (429 meanwhile) and
      // its defaults show.
      const dcA: Json = await eventually("our IPRule schema in effect", async () => {
        const rule: Json = await get(`${API}/iprules/dc-a`);
        return rule.spec.source === "ClusterIP" && rule;
      });
      await eventually("our Agent schema in effect", async () => {
        const agent: Json = await get(`${API}/namespaces/${NS}/agents/agent`);
        return agent.spec.resyncPeriod === "10s";
      });
      const configs: Json[] = await eventually(
        "IPRuleConfigs served",
        async () => (await get(`${API}/ipruleconfigs`)).items,
      );
      assert.deepEqual(dcA.spec, {
        cidr: "192.168.50.0/24",
        table: 100,
        priority: 1000,
        source: "ClusterIP",
      });
      assert.deepEqual(
        configs.map((c: Json) => [c.metadata.labels, c.metadata.annotations, c.spec]),
        before.configs.map((c: Json) => [c.metadata.labels, c.metadata.annotations, c.spec]),
      );
      assert.deepEqual(
        (await get(`${DAEMONSETS}/${DAEMONSET_NAME}`)).spec,
        before.daemonSet.spec,
      );
    });

    await t.step("our controller starts", async () => {
      const health = freePort();
      controller = await ExecutableProcess.start("controller", [
        `--kubeconfig=${cp.kubeconfig("controller")}`,
        `--metrics-addr=127.0.0.1:${freePort()}`,
        "--metrics-insecure",
        `--health-addr=127.0.0.1:${health}`,
        "--log-format=json",
        "--log-level=debug",
        `--agent-image=${AGENT_IMAGE}`,
      ], { logFile: `${cp.dir}/controller.log`, env: { POD_NAME: "migration" } });
      await eventually("controller ready", async () => {
        const res = await fetch(`http://127.0.0.1:${health}/readyz`).catch(() => undefined);
        await res?.body?.cancel();
        return res?.status === 200;
      }, 60_000);
    });

    await t.step("it adopts the original's configs in place: no second config", async () => {
      const web = `iprc-${webIP.replaceAll(".", "-")}`;
      const adopted: Json = await eventually("config adopted", async () => {
        const c: Json = await get(`${API}/ipruleconfigs/${web}`);
        return c.spec.ipRule === "dc-a" && c;
      });
      assert.deepEqual(adopted.metadata.labels, {
        "app.kubernetes.io/managed-by": "ip-rule-operator",
      });
      assert.equal(adopted.metadata.annotations, undefined);
      assert.equal(adopted.metadata.ownerReferences, undefined);
      const original = before.configs.find((c: Json) => c.metadata.name === web);
      assert.equal(adopted.metadata.uid, original.metadata.uid, "the same object");
      // The original's spec (serviceIP, table, state) kept, its priority 0 now the default, and
      // where it came from added.
      assert.equal(original.spec.serviceIP, webIP);
      const ref = { namespace: "default", name: "web" };
      assert.deepEqual(adopted.spec, {
        ...original.spec,
        priority: 1000,
        ipRule: "dc-a",
        service: ref,
        services: [ref],
      });
      const api: Json = await eventually("dc-b's config adopted", async () => {
        const c: Json = await get(`${API}/ipruleconfigs/iprc-${apiIP.replaceAll(".", "-")}`);
        return c.spec.ipRule === "dc-b" && c;
      });
      assert.deepEqual([api.spec.table, api.spec.priority], [200, 1000]);
      const absent: Json = await eventually("absent config adopted", async () => {
        const c: Json = await get(`${API}/ipruleconfigs/iprc-10-96-250-250`);
        return c.spec.absentSince !== undefined && c;
      });
      assert.equal(absent.spec.state, "absent");
      assert.deepEqual(absent.metadata.labels, {
        "app.kubernetes.io/managed-by": "ip-rule-operator",
      });
      assert.equal(absent.metadata.annotations, undefined);
      const names = (await get(`${API}/ipruleconfigs`)).items.map((c: Json) => c.metadata.name);
      assert.deepEqual(names.sort(), before.configs.map((c: Json) => c.metadata.name).sort());
    });

    await t.step("the IPRule with cidr routes its Service and is marked deprecated", async () => {
      const dcA: Json = await eventually("dc-a status", async () => {
        const rule: Json = await get(`${API}/iprules/dc-a`);
        return rule.status?.matchedServices === 1 && rule;
      });
      const condition = (type: string) => dcA.status.conditions.find((c: Json) => c.type === type);
      assert.equal(condition("Ready").status, "True");
      assert.equal(condition("Deprecated").status, "True");
      assert.match(
        condition("Deprecated").message,
        /spec\.cidr is deprecated.*"192\.168\.50\.0\/24"/,
      );
      assert.equal(
        (await get(`${API}/iprules/dc-b`)).status?.conditions?.find((c: Json) =>
          c.type === "Deprecated"
        ),
        undefined,
      );
      await eventually("DeprecatedField event", async () => {
        const events: Json = await get("/apis/events.k8s.io/v1/namespaces/default/events");
        return events.items.some((e: Json) =>
          e.reason === "DeprecatedField" && e.type === "Warning" && e.regarding.name === "dc-a"
        );
      });
    });

    await t.step("the DaemonSet is handed over: exactly our template, reported", async () => {
      const ds: Json = await eventually("DaemonSet handed over", async () => {
        const d: Json = await get(`${DAEMONSETS}/${DAEMONSET_NAME}`);
        return d.metadata.annotations?.[HANDED_OVER_ANNOTATION] !== undefined && d;
      });
      assert.equal(ds.metadata.uid, before.daemonSet.metadata.uid, "the same object");
      // What our controller renders, as the API server defaults it (a dry-run create).
      const agent = narrowAgent(await get(`${API}/namespaces/${NS}/agents/agent`));
      const rendered: Json = renderDaemonSet(agent, { defaultImage: AGENT_IMAGE });
      const reference: Json = await admin.request("POST", DAEMONSETS, {
        body: { ...rendered, metadata: { ...rendered.metadata, name: "reference" } },
        query: { dryRun: "All" },
      });
      assert.deepEqual(ds.spec, reference.spec);
      assert.deepEqual(ds.metadata.labels, rendered.metadata.labels);
      assert.deepEqual(ds.metadata.ownerReferences, rendered.metadata.ownerReferences);
      assert.deepEqual(
        Object.keys(ds.metadata.annotations).sort(),
        [
          ...Object.keys(rendered.metadata.annotations),
          HANDED_OVER_ANNOTATION,
          "deprecated.daemonset.template.generation",
        ].sort(),
      );
      // Spelled out: what a forced apply alone would have left.
      const pod = ds.spec.template.spec;
      assert.equal(ds.spec.template.metadata.annotations, undefined);
      assert.ok(!pod.containers[0].env.some((e: Json) => e.name === "RECONCILE_PERIOD"));
      assert.equal(pod.containers[0].resources.limits.cpu, undefined);
      assert.equal(pod.serviceAccountName, "ip-rule-operator-agent");
      // Every field is ours now: a field we stop rendering goes with our next apply.
      assert.deepEqual(
        [...new Set(ds.metadata.managedFields.map((e: Json) => e.manager))],
        ["ip-rule-operator"],
      );
      await eventually("DaemonSetHandedOver event", async () => {
        const events: Json = await get(`/apis/events.k8s.io/v1/namespaces/${NS}/events`);
        return events.items.some((e: Json) =>
          e.reason === "DaemonSetHandedOver" && e.regarding.kind === "Agent" &&
          e.note.includes(`"${ORIGINAL_MANAGER}"`)
        );
      });
    });

    await t.step("the controller logged no error", async () => {
      const errors = (await controller!.log()).split("\n").filter((l) =>
        l.includes('"level":"error"')
      );
      assert.deepEqual(errors, []);
    });
  } catch (error: unknown) {
    console.error((await controller?.log())?.split("\n").slice(-40).join("\n"));
    throw error;
  } finally {
    await controller?.stop();
    admin.close();
  }
});
