/**
 * A controller that loses its Lease exits (code 1), so that Kubernetes starts a clean standby.
 * Found by the chaos soak (seed 3): the process logged "Exiting after the lost lease" and then
 * waited forever for its health and metrics servers, which stopped only at a shutdown; /healthz
 * kept answering, so no kubelet would restart it, and with both replicas in that state nothing
 * reconciled any more.
 */
import assert from "node:assert/strict";
import { startControlPlane } from "../support/controlplane.ts";
import { eventually, ExecutableProcess, freePort } from "../support/process.ts";
import { KubeClient } from "../../src/k8s/client.ts";
import { RESOURCES } from "../../src/k8s/resources.ts";
import { microTime } from "../../src/k8s/time.ts";

const NS = "ip-rule-operator-system";
const LEASE = "ip-rule-operator-controller";
// deno-lint-ignore no-explicit-any
type Json = any;

Deno.test("a controller that loses its lease exits 1 and stops serving", async () => {
  await using cp = await startControlPlane();
  await cp.kubectl(["apply", "-f", "deploy/namespace.yaml", "-f", "deploy/rbac.yaml"]);
  using admin = await KubeClient.connect({ kubeconfig: cp.kubeconfig("admin") });
  const healthPort = freePort();
  const proc = await ExecutableProcess.start("controller", [
    `--kubeconfig=${cp.kubeconfig("controller")}`,
    "--leader-elect",
    "--lease-duration=2s",
    `--metrics-addr=127.0.0.1:${freePort()}`,
    "--metrics-insecure",
    `--health-addr=127.0.0.1:${healthPort}`,
    "--log-format=json",
  ], { logFile: `${cp.dir}/controller.log`, env: { POD_NAME: "loser" } });
  try {
    const lease: Json = await eventually("the controller holds the lease", async () => {
      const l: Json = await admin.get(RESOURCES.leases, LEASE, NS);
      return l?.spec?.holderIdentity?.startsWith("loser_") ? l : undefined;
    });
    // Another replica takes the lease (as after a partition longer than the renew deadline).
    await admin.replace(RESOURCES.leases, LEASE, {
      metadata: { name: LEASE, namespace: NS, resourceVersion: lease.metadata.resourceVersion },
      spec: {
        ...lease.spec,
        holderIdentity: "thief",
        leaseDurationSeconds: 3600,
        renewTime: microTime(Date.now()),
      },
    }, { namespace: NS });
    const status = await eventually("the controller exited", () =>
      Promise.race([
        proc.status,
        new Promise<undefined>((r) => setTimeout(() => r(undefined), 500)),
      ]), 30_000);
    const log = await proc.log();
    assert.equal(status.code, 1, log);
    assert.match(log, /Leader lease lost/);
    assert.match(log, /Exiting after the lost lease/);
    const health = await fetch(`http://127.0.0.1:${healthPort}/healthz`).catch(() => undefined);
    await health?.body?.cancel();
    assert.equal(health, undefined, "/healthz still answers after the exit");
  } finally {
    await proc.stop("SIGKILL");
  }
});
