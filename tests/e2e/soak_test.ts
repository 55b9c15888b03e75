/**
 * The chaos soak (bench/soak/, `task soak`) for two minutes with a fixed seed, so that CI
 * catches a regression any of its faults would show: the API server, etcd, agents (one of them
 * mid-batch) and the leader SIGKILLed, node links cut, outside flushes and foreign rules, all
 * overlapping while Services and IPRules churn. The invariants are those of `task soak`
 * (safety, foreign rules untouched, no dip, flush repair, nothing lost, convergence); every
 * violation is printed with its node, rule, time and the faults active then.
 */
import assert from "node:assert/strict";
import { runSoak } from "../../bench/soak/mod.ts";
import { formatReport } from "../../bench/soak/report.ts";
import { KINDS } from "../../bench/soak/schedule.ts";

/**
 * A seed whose two minutes hold every kind and variant of fault (both link cuts, an agent killed
 * at random and one mid-batch, three API server and two etcd kills), several overlapping.
 */
const SEED = 48;

Deno.test("chaos soak: two minutes of overlapping faults under churn break no invariant", async () => {
  const report = await runSoak({
    seed: SEED,
    durationMs: 120_000,
    log: (line) => console.log(`  ${line}`),
  });
  const text = formatReport(report).join("\n");
  console.log(text);
  const kinds = new Set([...report.faults.byKind.keys()].map((k) => k.split(" ")[0]));
  assert.deepEqual([...kinds].sort(), [...KINDS].sort(), text);
  assert.ok(report.checks.kernel > 2_000, text);
  assert.ok(report.checks.configs > 50, text);
  assert.ok(report.repairTimes.length > 0, text);
  assert.notEqual(report.convergenceMs, undefined, text);
  assert.deepEqual(report.violations, [], text);
});
