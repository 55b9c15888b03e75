import assert from "node:assert/strict";
import type { KubeClient } from "./client.ts";
import { Informer } from "./informer.ts";
import { RESOURCES } from "./resources.ts";

/** A client whose list is empty and whose watches end at once, empty (as behind some proxies). */
function emptyWatchClient() {
  const calls = { list: 0, watch: 0 };
  const client = {
    request: () => {
      calls.list++;
      return Promise.resolve({ items: [], metadata: { resourceVersion: "1" } });
    },
    // deno-lint-ignore require-yield
    watch: async function* () {
      calls.watch++;
      // A macrotask, as a real request takes: without a backoff the loop still lets timers run.
      await new Promise((r) => setTimeout(r, 0));
    },
  };
  return { client: client as unknown as KubeClient, calls };
}

Deno.test("Informer backs off when watches end at once without an event", async () => {
  const { client, calls } = emptyWatchClient();
  const informer = new Informer(client, {
    resource: RESOURCES.ipRuleConfigs,
    narrow: (raw) => raw,
    backoff: { initialMs: 50, factor: 2, maxMs: 1000 },
  });
  const stop = new AbortController();
  const running = informer.run(stop.signal);
  await new Promise((r) => setTimeout(r, 400));
  stop.abort();
  await running;
  assert.equal(informer.synced, true);
  assert.equal(calls.list, 1);
  // 25-50, 50-100, 100-200 ms ... waits: a handful of watches in 400 ms, not thousands.
  assert.ok(calls.watch >= 2 && calls.watch <= 6, `${calls.watch} watches in 400 ms`);
});
