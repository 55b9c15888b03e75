import assert from "node:assert/strict";
import { WorkQueue } from "./workqueue.ts";
import { trackTimers } from "../../tests/support/timers.ts";

Deno.test("WorkQueue processes a key queued many times once", async () => {
  const queue = new WorkQueue();
  const seen: string[] = [];
  const waiting: number[] = [];
  const controller = new AbortController();
  for (const key of ["a", "b", "a", "a", "b"]) queue.add(key);
  assert.equal(queue.length, 2);
  const running = queue.run(async (key) => {
    seen.push(key);
    waiting.push(queue.length);
    if (seen.length === 2) controller.abort();
    await Promise.resolve();
  }, { signal: controller.signal, workers: 1 });
  await running;
  assert.deepEqual(seen, ["a", "b"]);
  assert.deepEqual(waiting, [1, 0]); // nothing queued again behind them
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

Deno.test("WorkQueue.addAfter(): a replaced delay and a closed queue leave no timer behind", () => {
  using timers = trackTimers();
  const queue = new WorkQueue();
  queue.addAfter("configs", 60_000);
  queue.addAfter("configs", 20_000); // replaces the first: one timer pending, not two
  queue.addAfter("configs", 40_000); // due later: changes nothing
  queue.addAfter("other", 30_000);
  assert.equal(timers.live(), 2);
  queue.close(); // a controller shutting down is not kept alive by a grace period
  assert.equal(timers.live(), 0);
  queue.addAfter("configs", 10_000);
  queue.add("configs");
  assert.equal(timers.live(), 0);
  assert.equal(queue.length, 0);
});

Deno.test("WorkQueue.addAfter(): no delay queues at once, a delay does not", async () => {
  const queue = new WorkQueue();
  const controller = new AbortController();
  queue.addAfter("zero", 0);
  queue.addAfter("negative", -5);
  assert.equal(queue.length, 2);
  queue.addAfter("later", 60_000);
  assert.equal(queue.length, 2);
  const seen: string[] = [];
  await queue.run(async (key) => {
    seen.push(key);
    if (seen.length === 2) controller.abort(); // close() drops the pending minute
    await Promise.resolve();
  }, { signal: controller.signal });
  assert.deepEqual(seen, ["zero", "negative"]);
});

/**
 * Runs key "k" through a queue whose reconcile answers call n (from 1) with `outcome(n, queue)`:
 * "fail" rejects, "ok" resolves, "last" resolves and closes the queue. Returns the retry delays.
 */
async function retryDelays(
  outcome: (call: number, queue: WorkQueue) => "fail" | "ok" | "last",
): Promise<number[]> {
  const queue = new WorkQueue();
  const controller = new AbortController();
  const delays: number[] = [];
  let calls = 0;
  queue.add("k");
  await queue.run(() => {
    const result = outcome(++calls, queue);
    if (result === "fail") return Promise.reject(new Error(`fail ${calls}`));
    if (result === "last") controller.abort();
    return Promise.resolve();
  }, { signal: controller.signal, onError: (_k, _e, delay) => delays.push(delay) });
  return delays;
}

Deno.test("WorkQueue.retry(): the backoff starts at 50 ms and doubles per failure", async () => {
  const delays = await retryDelays((call) => call < 4 ? "fail" : "last");
  // Jitter keeps each delay in [base/2, base]: 25-50, 50-100, 100-200 ms.
  const [first = -1, second = -1, third = -1] = delays;
  assert.equal(delays.length, 3);
  assert.ok(first >= 25 && first <= 50, `first retry after ${first} ms`);
  assert.ok(second >= 50 && second <= 100, `second retry after ${second} ms`);
  assert.ok(third >= 100 && third <= 200, `third retry after ${third} ms`);
});

Deno.test("WorkQueue.run(): a failure after the queue closed is neither reported nor retried", async () => {
  using timers = trackTimers();
  const queue = new WorkQueue();
  const controller = new AbortController();
  const errors: unknown[] = [];
  queue.add("k");
  await queue.run(() => {
    controller.abort(); // shutting down: the reconcile fails because of it
    return Promise.reject(new Error("aborted"));
  }, { signal: controller.signal, onError: (_k, err) => errors.push(err) });
  assert.deepEqual(errors, []);
  assert.equal(timers.live(), 0);
});

Deno.test("WorkQueue.retry(): a success resets the backoff of the key", async () => {
  const delays = await retryDelays((call, queue) => {
    if (call === 3) queue.add("k");
    return call === 3 ? "ok" : call === 5 ? "last" : "fail"; // fails calls 1, 2 and 4
  });
  const [, , afterSuccess = -1] = delays;
  assert.equal(delays.length, 3);
  assert.ok(afterSuccess >= 25 && afterSuccess <= 50, `retry after a success: ${afterSuccess} ms`);
});

Deno.test("WorkQueue.run(): without onError a failing key is retried, not fatal", async () => {
  const queue = new WorkQueue();
  const controller = new AbortController();
  let calls = 0;
  queue.add("k");
  await queue.run(() => {
    calls++;
    if (calls === 1) return Promise.reject(new Error("first try fails"));
    controller.abort();
    return Promise.resolve();
  }, { signal: controller.signal });
  assert.equal(calls, 2);
});
