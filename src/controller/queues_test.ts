import assert from "node:assert/strict";
import { ControllerQueues, isSummaryKey } from "./queues.ts";
import { RESYNC_KEY, workKey } from "./config_reconciler.ts";

const STATUS = ["rule-a", "rule-b", "rule-c"].map((name) => workKey({ kind: "iprule", name }));
const EVENTS = workKey({ kind: "service", name: "default/web" });
const CONFIG = workKey({ kind: "ipruleconfig", name: "iprc-10-96-0-10" });

Deno.test("isSummaryKey: IPRule statuses and Service events are summaries, configs are not", () => {
  assert.deepEqual(
    [...STATUS, EVENTS, CONFIG, RESYNC_KEY, "agent"].map(isSummaryKey),
    [true, true, true, true, false, false, false],
  );
});

Deno.test("ControllerQueues: summaries run one at a time, and a config never waits for them", async () => {
  const queues = new ControllerQueues();
  const controller = new AbortController();
  const release = Promise.withResolvers<void>();
  const configDone = Promise.withResolvers<void>();
  let summariesActive = 0;
  let maxSummaries = 0;
  const order: string[] = [];
  for (const key of [...STATUS, EVENTS]) queues.add(key);
  assert.equal(queues.length, 4);
  const running = queues.run(async (key) => {
    order.push(key);
    if (key === CONFIG) return configDone.resolve();
    summariesActive++;
    maxSummaries = Math.max(maxSummaries, summariesActive);
    await release.promise; // a status write the API server is slow to answer
    summariesActive--;
    if (order.length === 5) controller.abort();
  }, { signal: controller.signal });
  // A config change comes while the first summary is still being written: it runs at once.
  await new Promise((r) => setTimeout(r, 0));
  queues.add(CONFIG);
  await configDone.promise;
  assert.deepEqual(order, [STATUS[0], CONFIG]);
  assert.equal(queues.length, 3); // the other summaries wait for the one in progress
  release.resolve();
  await running;
  assert.deepEqual(order, [STATUS[0], CONFIG, STATUS[1], STATUS[2], EVENTS]);
  assert.equal(maxSummaries, 1);
});

Deno.test("ControllerQueues.add: a delayed key comes after its delay, on its own queue", async () => {
  const queues = new ControllerQueues();
  const controller = new AbortController();
  const seen: string[] = [];
  queues.add(STATUS[0]!, 20);
  queues.add(CONFIG);
  assert.equal(queues.length, 1); // the delayed key is not waiting yet
  await queues.run(async (key) => {
    seen.push(key);
    if (seen.length === 2) controller.abort();
    await Promise.resolve();
  }, { signal: controller.signal });
  assert.deepEqual(seen, [CONFIG, STATUS[0]]);
});
