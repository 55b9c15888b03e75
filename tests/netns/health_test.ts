import assert from "node:assert/strict";
import { Registry } from "prom-client";
import { addressFlag } from "../../src/cli.ts";
import { startHealthServer } from "../../src/health_server.ts";

Deno.test("the health endpoint on :port answers on IPv4 and IPv6 (probes of IPv6 pods and nodes)", async () => {
  const controller = new AbortController();
  const { hostname } = addressFlag("metrics-addr", ":0");
  const server = startHealthServer({
    hostname,
    port: 0,
    registry: new Registry(),
    readiness: () => ({ ready: true, reason: "test" }),
    signal: controller.signal,
  });
  try {
    for (const host of ["127.0.0.1", "[::1]"]) {
      const res = await fetch(`http://${host}:${server.port}/healthz`);
      assert.equal(res.status, 200, host);
      assert.equal(await res.text(), "ok\n");
    }
  } finally {
    controller.abort();
    await server.finished;
  }
});
