import assert from "node:assert/strict";
import { WorkQueue } from "./workqueue.ts";

Deno.test("WorkQueue processes a key queued many times once", async () => {
  const queue = new WorkQueue();
  const seen: string[] = [];
  const controller = new AbortController();
  for (const key of ["a", "b", "a", "a", "b"]) queue.add(key);
  const running = queue.run(async (key) => {
    seen.push(key);
    if (seen.length === 2) controller.abort();
    await Promise.resolve();
  }, { signal: controller.signal, workers: 2 });
  await running;
  assert.deepEqual(seen.sort(), ["a", "b"]);
});

Deno.test("WorkQueue never runs one key on two workers at once, and reruns it after", async () => {
  const queue = new WorkQueue();
  const controller = new AbortController();
  let active = 0;
  let maxActive = 0;
  let runs = 0;
  let release!: () => void;
  const firstStarted = Promise.withResolvers<void>();
  queue.add("k");
  const running = queue.run(async () => {
    active++;
    maxActive = Math.max(maxActive, active);
    runs++;
    if (runs === 1) {
      firstStarted.resolve();
      await new Promise<void>((r) => (release = r));
    }
    active--;
    if (runs === 2) controller.abort();
  }, { signal: controller.signal, workers: 4 });
  await firstStarted.promise;
  queue.add("k"); // while processing: must wait, then run again
  queue.add("k");
  release();
  await running;
  assert.equal(maxActive, 1);
  assert.equal(runs, 2);
});

Deno.test("WorkQueue retries a failing key with backoff and reports the error", async () => {
  const queue = new WorkQueue();
  const controller = new AbortController();
  const errors: number[] = [];
  let calls = 0;
  queue.add("k");
  await queue.run(() => {
    calls++;
    if (calls < 3) return Promise.reject(new Error(`fail ${calls}`));
    controller.abort();
    return Promise.resolve();
  }, { signal: controller.signal, onError: (_k, _e, delay) => errors.push(delay) });
  assert.equal(calls, 3);
  assert.equal(errors.length, 2);
  assert.ok(errors[1]! >= errors[0]! / 2, "backoff grows (jittered)");
});

Deno.test("WorkQueue.addAfter(): a shorter delay replaces a longer pending one, not the reverse", async () => {
  const queue = new WorkQueue();
  const controller = new AbortController();
  const started = performance.now();
  let ranAt = -1;
  queue.addAfter("configs", 60_000); // e.g. an absent config's grace period
  queue.addAfter("configs", 20); // a retry after a failed write
  queue.addAfter("configs", 30_000); // a later, longer delay changes nothing
  await queue.run(async () => {
    ranAt = performance.now() - started;
    controller.abort();
    await Promise.resolve();
  }, { signal: controller.signal, workers: 1 });
  // It ran at all: with the first timer kept, it would have waited a minute (test timeout).
  assert.ok(ranAt >= 0 && ranAt < 30_000, `ran after ${ranAt} ms`);
});
