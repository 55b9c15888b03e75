import assert from "node:assert/strict";
import { backoffDelay, sleep } from "./backoff.ts";

Deno.test("backoffDelay() doubles from the first delay up to the ceiling, jittered", () => {
  const low = () => 0;
  const high = () => 0.999999;
  assert.equal(backoffDelay(0, undefined, low), 125);
  assert.equal(backoffDelay(0, undefined, high), 250);
  assert.equal(backoffDelay(3, undefined, high), 2000);
  assert.equal(backoffDelay(20, undefined, high), 30_000);
  assert.equal(backoffDelay(20, undefined, low), 15_000);
  assert.equal(backoffDelay(1, { initialMs: 10, maxMs: 100, factor: 3 }, high), 30);
});

Deno.test("sleep() ends early when its signal aborts", async () => {
  const controller = new AbortController();
  const started = performance.now();
  const pending = sleep(60_000, controller.signal);
  controller.abort();
  await pending;
  assert.ok(performance.now() - started < 1000);
});
