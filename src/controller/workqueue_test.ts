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

Deno.test("WorkQueue keeps a key re-added while its worker is blocked from a second worker", async () => {
  // Worker 1 holds "k" until released; "k" is re-added, then "x". A free worker must take "x"
  // and leave "k" alone: a queue that handed out "k" again would run it on the free worker
  // first (keys are taken in order), while worker 1 still holds it.
  const queue = new WorkQueue();
  const controller = new AbortController();
  const active = new Map<string, number>();
  const overlaps: string[] = [];
  const order: string[] = [];
  const firstStarted = Promise.withResolvers<void>();
  const xDone = Promise.withResolvers<void>();
  const release = Promise.withResolvers<void>();
  queue.add("k");
  const running = queue.run(async (key) => {
    const now = (active.get(key) ?? 0) + 1;
    active.set(key, now);
    if (now > 1) overlaps.push(key);
    order.push(key);
    if (key === "k" && order.length === 1) {
      firstStarted.resolve();
      await release.promise;
    }
    active.set(key, now - 1);
    if (key === "x") xDone.resolve();
    if (order.filter((k) => k === "k").length === 2) controller.abort();
  }, { signal: controller.signal, workers: 2 });
  await firstStarted.promise;
  queue.add("k"); // still processing: waits for worker 1
  queue.add("x");
  await xDone.promise; // the free worker got here with "k" still held by worker 1
  assert.deepEqual(order, ["k", "x"]);
  release.resolve();
  await running;
  assert.deepEqual(overlaps, []);
  assert.deepEqual(order, ["k", "x", "k"]); // the re-added key ran again, after
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
