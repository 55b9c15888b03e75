import assert from "node:assert/strict";
import { Counter, Registry } from "prom-client";
import { startHealthServer } from "./health_server.ts";

Deno.test("startHealthServer() serves metrics, liveness and readiness", async () => {
  const registry = new Registry();
  new Counter({ name: "iprule_test_total", help: "test", registers: [registry] }).inc(3);
  let ready = false;
  const controller = new AbortController();
  const server = startHealthServer({
    hostname: "127.0.0.1",
    port: 0,
    registry,
    readiness: () => ({ ready, reason: ready ? "converged" : "cache not synced" }),
    signal: controller.signal,
  });
  const get = (path: string) => fetch(`http://127.0.0.1:${server.port}${path}`);
  try {
    const metrics = await get("/metrics");
    assert.match(await metrics.text(), /iprule_test_total 3/);
    const health = await get("/healthz");
    assert.equal(health.status, 200);
    await health.body?.cancel();
    const notReady = await get("/readyz");
    assert.equal(notReady.status, 503);
    assert.match(await notReady.text(), /cache not synced/);
    ready = true;
    const isReady = await get("/readyz");
    assert.equal(isReady.status, 200);
    await isReady.body?.cancel();
  } finally {
    controller.abort();
    await server.finished;
  }
});
