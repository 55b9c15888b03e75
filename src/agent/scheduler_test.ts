import assert from "node:assert/strict";
import { ReconcileScheduler, type Trigger } from "./scheduler.ts";

/** A reconcile that records its runs and finishes when told to. */
function recorder() {
  const runs: Trigger[] = [];
  let active = 0;
  let maxActive = 0;
  const gates: (() => void)[] = [];
  let onRun: (() => void) | undefined;
  const reconcile = (trigger: Trigger) => {
    runs.push(trigger);
    active++;
    maxActive = Math.max(maxActive, active);
    onRun?.();
    return new Promise<void>((resolve) =>
      gates.push(() => {
        active--;
        resolve();
      })
    );
  };
  return {
    runs,
    reconcile,
    get maxActive() {
      return maxActive;
    },
    /** Resolves at the next run's start. */
    nextRun(): Promise<void> {
      return new Promise((resolve) => (onRun = resolve));
    },
    /** Finishes the oldest running reconcile. */
    finish(): Promise<void> {
      gates.shift()?.();
      return new Promise((resolve) => setTimeout(resolve, 0));
    },
  };
}

const tick = (ms = 0) => new Promise((resolve) => setTimeout(resolve, ms));

/** A recorder and its scheduler, started: the start reconcile is running. */
function started(options: { debounceMs: number; resyncMs: number }) {
  const r = recorder();
  const scheduler = new ReconcileScheduler(r.reconcile, options);
  scheduler.start();
  return { r, scheduler };
}

/** Finishes the running reconcile, then checks that `ms` later the runs are still `runs`. */
async function finishAndHold(r: ReturnType<typeof recorder>, ms: number, runs: Trigger[]) {
  await r.finish();
  await tick(ms);
  assert.deepEqual(r.runs, runs);
}

Deno.test("ReconcileScheduler runs nothing before start()", async () => {
  const r = recorder();
  const scheduler = new ReconcileScheduler(r.reconcile, { debounceMs: 1, resyncMs: 60_000 });
  scheduler.request("kernel");
  scheduler.request("watch");
  await tick(10);
  assert.deepEqual(r.runs, []);
  const first = r.nextRun();
  scheduler.start();
  await first;
  assert.deepEqual(r.runs, ["start"]);
  await finishAndHold(r, 10, ["start"]);
  await scheduler.stop();
});

Deno.test("ReconcileScheduler coalesces a burst of watch events into one reconcile", async () => {
  const { r, scheduler } = started({ debounceMs: 5, resyncMs: 60_000 });
  await r.finish();
  const next = r.nextRun();
  for (let i = 0; i < 100; i++) scheduler.request("watch");
  await next;
  await finishAndHold(r, 20, ["start", "watch"]);
  await scheduler.stop();
});

Deno.test("ReconcileScheduler never runs two reconciles at once", async () => {
  const { r, scheduler } = started({ debounceMs: 1, resyncMs: 60_000 });
  scheduler.request("kernel");
  scheduler.request("kernel");
  scheduler.request("watch");
  await tick(10);
  assert.deepEqual(r.runs, ["start"]);
  const next = r.nextRun();
  await r.finish();
  await next;
  assert.deepEqual(r.runs, ["start", "kernel"]);
  await finishAndHold(r, 10, ["start", "kernel"]);
  assert.equal(r.maxActive, 1);
  await scheduler.stop();
});

Deno.test("ReconcileScheduler runs a kernel trigger at once, covering pending watch events", async () => {
  const { r, scheduler } = started({ debounceMs: 30, resyncMs: 60_000 });
  await r.finish();
  const next = r.nextRun();
  scheduler.request("watch");
  scheduler.request("kernel");
  await next;
  assert.deepEqual(r.runs, ["start", "kernel"]);
  await finishAndHold(r, 50, ["start", "kernel"]);
  await scheduler.stop();
});

Deno.test("ReconcileScheduler resyncs after each reconcile", async () => {
  const { r, scheduler } = started({ debounceMs: 1, resyncMs: 5 });
  for (let i = 0; i < 3; i++) {
    const next = r.nextRun();
    await r.finish();
    await next;
  }
  assert.deepEqual(r.runs, ["start", "resync", "resync", "resync"]);
  const stopped = scheduler.stop();
  await r.finish();
  await stopped;
});

Deno.test("ReconcileScheduler reports a failed reconcile and tries again at the resync", async () => {
  const errors: [unknown, Trigger][] = [];
  let calls = 0;
  let retried: () => void = () => {};
  const done = new Promise<void>((resolve) => (retried = resolve));
  const scheduler = new ReconcileScheduler((trigger) => {
    calls++;
    if (calls === 1) return Promise.reject(new Error("Dump failed"));
    if (trigger === "resync") retried();
    return Promise.resolve();
  }, { debounceMs: 1, resyncMs: 5, onError: (error, trigger) => errors.push([error, trigger]) });
  scheduler.start();
  await done;
  await scheduler.stop();
  assert.equal(errors.length, 1);
  assert.equal((errors[0]![0] as Error).message, "Dump failed");
  assert.equal(errors[0]![1], "start");
});

Deno.test("ReconcileScheduler.stop() waits for the running reconcile and runs no more", async () => {
  const { r, scheduler } = started({ debounceMs: 1, resyncMs: 1 });
  scheduler.request("kernel");
  const stopped = scheduler.stop();
  let finished = false;
  void stopped.then(() => (finished = true));
  await tick(5);
  assert.equal(finished, false);
  await r.finish();
  await stopped;
  await tick(10);
  assert.deepEqual(r.runs, ["start"]);
  assert.equal(scheduler.busy, false);
});
