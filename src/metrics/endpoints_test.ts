import assert from "node:assert/strict";
import { createPrivateKey, X509Certificate } from "node:crypto";
import { Counter, Registry } from "prom-client";
import { serveOn } from "../health_server.ts";
import type { JsonObject } from "../k8s/client.ts";
import { MetricsAuth } from "./auth.ts";
import { selfSignedCertificate } from "./certificate.ts";
import { metricsHandler, startEndpoints } from "./endpoints.ts";

function registry(): Registry {
  const r = new Registry();
  new Counter({ name: "iprule_test_total", help: "test", registers: [r] }).inc(2);
  return r;
}

const NO_REVIEWS = {
  request: (): Promise<JsonObject> => Promise.reject(new Error("no API server in this test")),
};

Deno.test("startEndpoints() with --metrics-insecure: /metrics on its port, probes on the other", async () => {
  const stop = new AbortController();
  const endpoints = await startEndpoints({
    metricsAddr: { hostname: "127.0.0.1", port: 0 },
    healthAddr: { hostname: "127.0.0.1", port: 0 },
    metricsSecure: false,
  }, {
    registry: registry(),
    readiness: () => ({ ready: true, reason: "converged" }),
    client: NO_REVIEWS,
    certNames: ["localhost"],
    signal: stop.signal,
  });
  const get = async (port: number, path: string) => {
    const res = await fetch(`http://127.0.0.1:${port}${path}`);
    return { status: res.status, text: await res.text() };
  };
  try {
    assert.equal(endpoints.metricsScheme, "http");
    assert.match((await get(endpoints.metricsPort, "/metrics")).text, /iprule_test_total 2/);
    assert.equal((await get(endpoints.metricsPort, "/readyz")).status, 404);
    assert.equal((await get(endpoints.healthPort, "/metrics")).status, 404);
    assert.equal((await get(endpoints.healthPort, "/readyz")).status, 200);
    assert.equal((await get(endpoints.healthPort, "/healthz")).status, 200);
  } finally {
    stop.abort();
    await endpoints.finished;
  }
});

Deno.test("metricsHandler() refuses without a token, other paths and methods, and serves when allowed", async () => {
  const auth = new MetricsAuth({
    request: (_m, path) =>
      Promise.resolve(
        path.endsWith("tokenreviews")
          ? { status: { authenticated: true, user: { username: "prom", groups: [] } } }
          : { status: { allowed: true } },
      ),
  });
  const handle = metricsHandler(registry(), auth);
  const unauthenticated = await handle(new Request("https://x/metrics"));
  assert.equal(unauthenticated.status, 401);
  assert.equal(unauthenticated.headers.get("www-authenticate"), 'Bearer realm="metrics"');
  await unauthenticated.body?.cancel();
  const other = await handle(
    new Request("https://x/debug", { headers: { authorization: "Bearer t" } }),
  );
  assert.equal(other.status, 404);
  await other.body?.cancel();
  const post = await handle(new Request("https://x/metrics", { method: "POST" }));
  assert.equal(post.status, 405);
  await post.body?.cancel();
  const ok = await handle(
    new Request("https://x/metrics", { headers: { authorization: "Bearer t" } }),
  );
  assert.equal(ok.status, 200);
  assert.match(await ok.text(), /iprule_test_total 2/);
});

Deno.test("selfSignedCertificate() names the node and addresses, and serves TLS a client can verify", async () => {
  const pair = await selfSignedCertificate(["node-1", "localhost", "127.0.0.1", "::"]);
  assert.equal(pair.source, "self-signed");
  const cert = new X509Certificate(pair.cert);
  assert.equal(cert.subjectAltName, "DNS:node-1, DNS:localhost, IP Address:127.0.0.1");
  assert.ok(cert.checkPrivateKey(createPrivateKey(pair.key)), "the key belongs to the certificate");
  assert.ok(cert.verify(cert.publicKey), "self-signed");
  const stop = new AbortController();
  const server = serveOn(
    { hostname: "127.0.0.1", port: 0, signal: stop.signal },
    () => new Response("tls ok"),
    pair,
  );
  const client = Deno.createHttpClient({ caCerts: [pair.cert] });
  try {
    const res = await fetch(`https://127.0.0.1:${server.port}/`, { client });
    assert.equal(await res.text(), "tls ok");
  } finally {
    client.close();
    stop.abort();
    await server.finished;
  }
});
