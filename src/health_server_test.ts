import assert from "node:assert/strict";
import { Counter, Registry } from "prom-client";
import { startEarlyHealth, startHealthServer, STARTING, withEarlyHealth } from "./health_server.ts";

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

Deno.test("/readyz?wait= holds the answer until the process is ready, or answers not ready when the wait is over", async () => {
  let calls = 0;
  const controller = new AbortController();
  const server = startHealthServer({
    hostname: "127.0.0.1",
    port: 0,
    // Ready from the third look on: only a waiting /readyz looks more than once.
    readiness: () => (++calls >= 3 ? { ready: true, reason: "synced" } : STARTING),
    signal: controller.signal,
  });
  const get = (path: string) => fetch(`http://127.0.0.1:${server.port}${path}`);
  try {
    const first = await get("/readyz");
    assert.equal(first.status, 503, "no wait: the answer of the moment");
    assert.equal(await first.text(), "not ready: starting\n");
    const waited = await get("/readyz?wait=10");
    assert.equal(waited.status, 200);
    assert.equal(await waited.text(), "ok: synced\n");
    assert.equal(calls, 3);
    for (const bad of ["abc", "-1", "31", ""]) {
      const response = await get(`/readyz?wait=${bad}`);
      assert.equal(response.status, 400, bad);
      await response.body?.cancel();
    }
  } finally {
    controller.abort();
    await server.finished;
  }
});

Deno.test("/readyz?wait= answers not ready once the wait is over", async () => {
  const controller = new AbortController();
  const server = startHealthServer({
    hostname: "127.0.0.1",
    port: 0,
    readiness: () => ({ ready: false, reason: "API server unreachable" }),
    signal: controller.signal,
  });
  try {
    const response = await fetch(`http://127.0.0.1:${server.port}/readyz?wait=0.3`);
    assert.equal(response.status, 503);
    assert.equal(await response.text(), "not ready: API server unreachable\n");
  } finally {
    controller.abort();
    await server.finished;
  }
});

Deno.test("startEarlyHealth() says starting until the process sets its readiness, and closes", async () => {
  const health = startEarlyHealth({ hostname: "127.0.0.1", port: 0 });
  const get = (path: string) => fetch(`http://127.0.0.1:${health.port}${path}`);
  try {
    const alive = await get("/healthz");
    assert.equal(alive.status, 200, "live before anything else exists");
    await alive.body?.cancel();
    assert.equal(await (await get("/readyz")).text(), "not ready: starting\n");
    health.readiness = () => ({ ready: true, reason: "converged" });
    assert.equal(await (await get("/readyz")).text(), "ok: converged\n");
  } finally {
    await health.close();
  }
  await assert.rejects(get("/healthz"));
});

Deno.test("withEarlyHealth() serves while main runs, closes after it, and exits 1 when it cannot listen", async () => {
  const errors: string[] = [];
  const log = { error: (msg: string) => errors.push(msg) };
  let port = 0;
  const code = await withEarlyHealth({ hostname: "127.0.0.1", port: 0 }, log, async (health) => {
    port = health!.port;
    const response = await fetch(`http://127.0.0.1:${port}/healthz`);
    await response.body?.cancel();
    // Its port is taken meanwhile: a second process cannot start.
    const second = await withEarlyHealth(
      { hostname: "127.0.0.1", port },
      log,
      () => Promise.resolve(0),
    );
    return response.status === 200 && second === 1 ? 7 : 0;
  });
  assert.equal(code, 7);
  assert.deepEqual(errors, ["Endpoints not started"]);
  await assert.rejects(fetch(`http://127.0.0.1:${port}/healthz`), "closed after main");
  assert.equal(await withEarlyHealth(undefined, log, (h) => Promise.resolve(h ? 1 : 0)), 0);
});
