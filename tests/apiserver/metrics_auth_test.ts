/**
 * Protected metrics against a real kube-apiserver: the controller, as a process under its own
 * service account's identity (deploy/rbac.yaml), serves /metrics over HTTPS and answers each
 * request as the API server's TokenReview and SubjectAccessReview say: no token 401, a token
 * without the metrics-reader role 403, with it 200; the health endpoints stay plain HTTP. Both
 * certificate sources: a mounted one (--metrics-cert-dir, verified by the client) and the
 * self-signed default.
 */
import assert from "node:assert/strict";
import https from "node:https";
import { selfSignedCertificate } from "../../src/metrics/certificate.ts";
import { startControlPlane } from "../support/controlplane.ts";
import { eventually, ExecutableProcess, freePort } from "../support/process.ts";
import { runTool } from "../support/tools.ts";

/** GET over HTTPS without verifying the certificate (a self-signed one), with a token. */
function insecureGet(port: number, path: string, token?: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const request = https.get({
      host: "127.0.0.1",
      port,
      path,
      rejectUnauthorized: false,
      headers: token ? { authorization: `Bearer ${token}` } : {},
    }, (response) => {
      response.resume();
      response.on("end", () => resolve(response.statusCode ?? 0));
    });
    request.on("error", reject);
  });
}

Deno.test("the controller's /metrics answers 401, 403 and 200 as the API server's reviews say", async (t) => {
  await using cp = await startControlPlane();
  await cp.kubectl(["apply", "-f", "deploy/namespace.yaml", "-f", "deploy/rbac.yaml"]);
  await cp.kubectl(["create", "namespace", "monitoring"]);
  for (const account of ["prometheus", "nobody"]) {
    await cp.kubectl(["create", "serviceaccount", account, "-n", "monitoring"]);
  }
  await cp.kubectl([
    "create",
    "clusterrolebinding",
    "prometheus-metrics",
    "--clusterrole=ip-rule-operator-metrics-reader",
    "--serviceaccount=monitoring:prometheus",
  ]);
  // Real service-account tokens (TokenRequest), as a Prometheus pod would have mounted.
  const token = async (account: string) =>
    (await cp.kubectl(["create", "token", account, "-n", "monitoring"])).stdout.trim();
  const prometheus = await token("prometheus");
  const nobody = await token("nobody");

  // A mounted certificate (as from a kubernetes.io/tls Secret), so that the client verifies it.
  const certDir = `${cp.dir}/metrics-cert`;
  await Deno.mkdir(certDir);
  const pair = await selfSignedCertificate(["localhost", "127.0.0.1"]);
  await Deno.writeTextFile(`${certDir}/tls.crt`, pair.cert);
  await Deno.writeTextFile(`${certDir}/tls.key`, pair.key);

  const start = async (name: string, extra: string[]) => {
    const metricsPort = freePort();
    const healthPort = freePort();
    const proc = await ExecutableProcess.start("controller", [
      `--kubeconfig=${cp.kubeconfig("controller")}`,
      `--metrics-addr=127.0.0.1:${metricsPort}`,
      `--health-addr=127.0.0.1:${healthPort}`,
      "--log-format=json",
      ...extra,
    ], { logFile: `${cp.dir}/${name}.log` });
    await eventually(`${name} ready`, async () => {
      const res = await fetch(`http://127.0.0.1:${healthPort}/readyz`).catch(() => undefined);
      await res?.body?.cancel();
      return res?.status === 200;
    });
    return { proc, metricsPort, healthPort };
  };

  const mounted = await start("controller-mounted", [`--metrics-cert-dir=${certDir}`]);
  const selfSigned = await start("controller-self-signed", []);
  const client = Deno.createHttpClient({ caCerts: [pair.cert] });
  try {
    const get = async (path: string, bearer?: string) => {
      const res = await fetch(`https://127.0.0.1:${mounted.metricsPort}${path}`, {
        client,
        headers: bearer ? { authorization: `Bearer ${bearer}` } : {},
      });
      return {
        status: res.status,
        text: await res.text(),
        auth: res.headers.get("www-authenticate"),
      };
    };

    await t.step("no token: 401 with a Bearer challenge", async () => {
      const res = await get("/metrics");
      assert.equal(res.status, 401);
      assert.equal(res.auth, 'Bearer realm="metrics"');
    });

    await t.step("a token the API server does not know: 401", async () => {
      assert.equal((await get("/metrics", "forged.token.value")).status, 401);
    });

    await t.step("a service account without the metrics-reader role: 403 naming it", async () => {
      const res = await get("/metrics", nobody);
      assert.equal(res.status, 403);
      assert.match(res.text, /"system:serviceaccount:monitoring:nobody" may not get "\/metrics"/);
      // The operator's own agents may not read it either.
      assert.equal((await get("/metrics", cp.token("agent"))).status, 403);
    });

    await t.step(
      "a service account bound to ip-rule-operator-metrics-reader: 200 and the metrics",
      async () => {
        const res = await get("/metrics", prometheus);
        assert.equal(res.status, 200);
        assert.match(res.text, /^iprule_controller_leader 1$/m);
        assert.match(
          res.text,
          /^iprule_controller_api_responses_total\{verb="POST",code="201"\} \d+/m,
        );
        // promtool's own lint of the exposition format and metric names. prom-client's default
        // process metrics are its own (three gauges named nodejs_active_*_total): ours must pass.
        const lint = await runTool("promtool", ["check", "metrics"], { stdin: res.text });
        const findings = (lint.stdout + lint.stderr).split("\n").filter((l) => l.trim() !== "");
        assert.deepEqual(
          findings.filter((l) => !/^iprule_controller_nodejs_active_\w+_total non-counter/.test(l)),
          [],
        );
      },
    );

    await t.step(
      "the health endpoints stay plain HTTP without a token; /metrics is not there",
      async () => {
        for (const path of ["/healthz", "/readyz"]) {
          const res = await fetch(`http://127.0.0.1:${mounted.healthPort}${path}`);
          assert.equal(res.status, 200, path);
          await res.body?.cancel();
        }
        const metrics = await fetch(`http://127.0.0.1:${mounted.healthPort}/metrics`);
        assert.equal(metrics.status, 404);
        await metrics.body?.cancel();
        // The metrics port speaks TLS only.
        await assert.rejects(fetch(`http://127.0.0.1:${mounted.metricsPort}/metrics`));
      },
    );

    await t.step("the self-signed default serves the same checks over TLS", async () => {
      assert.equal(await insecureGet(selfSigned.metricsPort, "/metrics"), 401);
      assert.equal(await insecureGet(selfSigned.metricsPort, "/metrics", nobody), 403);
      assert.equal(await insecureGet(selfSigned.metricsPort, "/metrics", prometheus), 200);
      const log = await selfSigned.proc.log();
      assert.match(log, /"metricsScheme":"https","metricsCertificate":"self-signed"/);
      assert.match(await mounted.proc.log(), new RegExp(`"metricsCertificate":"${certDir}"`));
    });
  } finally {
    client.close();
    await mounted.proc.stop();
    await selfSigned.proc.stop();
  }
});
