import assert from "node:assert/strict";
import { Logger } from "../log.ts";
import { LeaderElector, type LeaseObjects } from "./leader.ts";

Deno.test("LeaderElector steps down at the renew deadline while a renewal hangs", async () => {
  let calls = 0;
  let unblock!: () => void;
  const blocked = new Promise<void>((r) => (unblock = r));
  const client = {
    // The first read finds no lease (acquired by create); every later read hangs, as on an
    // overloaded API server, until the test ends.
    get: async () => {
      if (calls++ > 0) await blocked;
      return undefined;
    },
    create: () => Promise.resolve({}),
    replace: () => Promise.resolve({}),
  } as unknown as LeaseObjects;
  const elector = new LeaderElector(client, {
    namespace: "ops",
    leaseName: "lease",
    identity: "me",
    leaseDurationMs: 600, // renew every 200 ms, deadline 400 ms
    log: new Logger({ sink: () => {} }),
  });
  const shutdown = new AbortController();
  let acquiredAt = 0;
  let lostAt = 0;
  const running = elector.run(shutdown.signal, async (leading) => {
    acquiredAt = performance.now();
    await new Promise((r) => leading.addEventListener("abort", r, { once: true }));
    lostAt = performance.now();
  });
  const giveUp = performance.now() + 5000;
  while (lostAt === 0 && performance.now() < giveUp) await new Promise((r) => setTimeout(r, 20));
  // Without the deadline timer the hung renewal would keep this replica leading for good.
  assert.ok(lostAt > 0, "still leading 5 s after the last renewal");
  const held = lostAt - acquiredAt;
  assert.ok(held >= 350, `stepped down after ${held} ms, before the 400 ms deadline`);
  shutdown.abort();
  unblock();
  await running;
});
