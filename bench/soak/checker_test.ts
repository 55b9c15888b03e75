import assert from "node:assert/strict";
import type { KernelRule } from "../../ffi/mod.ts";
import { kernelRule } from "../../src/agent/test_rules.ts";
import {
  type Bounds,
  InvariantChecker,
  type KernelSample,
  type ObservedConfig,
  ruleKey,
  summarize,
  Timeline,
} from "./checker.ts";

const BOUNDS: Bounds = { safetyMs: 2_000, repairMs: 2_000, convergenceMs: 45_000, lagMs: 2_000 };
const A = ruleKey({ src: "10.96.0.1", srcLen: 32, table: 100, priority: 1000 });
const B = ruleKey({ src: "fd00:96::2", srcLen: 128, table: 100, priority: 1000 });
const DEFAULTS = ["0 local", "32766 main", "32767 default"];

function kernel(own: string[], foreignPlain: string[] = [], foreign = DEFAULTS): KernelSample {
  return {
    own: new Set(own),
    present: new Set([...own, ...foreignPlain]),
    foreign: [...foreign, ...foreignPlain].sort(),
  };
}

function plan(...entries: [string, string][]): Map<string, string> {
  return new Map(entries);
}

function config(name: string, key: string, present = true): ObservedConfig {
  return { name, key, present };
}

/** A checker over node n0 whose agent runs from time 0, configs A and B present. */
function started(): InvariantChecker {
  const checker = new InvariantChecker(["n0"], BOUNDS);
  checker.agentUp(0, "n0");
  checker.expectForeign("n0", DEFAULTS);
  checker.observeConfigs(0, [config("a", A), config("b", B)]);
  checker.observePlan(0, plan(["a", A], ["b", B]));
  return checker;
}

/** Samples n0 every 100 ms over [from, to) with `sample`, ticking the checker. */
function hold(checker: InvariantChecker, from: number, to: number, sample: KernelSample): void {
  for (let t = from; t < to; t += 100) {
    checker.sample(t, "n0", sample);
    checker.tick(t);
  }
}

/**
 * Both rules held on n0 until `at`, when its link is cut; a second later B's config is marked
 * absent and the plan has only A.
 */
function cutOffWhileBGoes(checker: InvariantChecker, at: number): void {
  hold(checker, 0, at, kernel([A, B]));
  checker.block("n0", "link", at);
  checker.observeConfigs(at + 1_000, [config("a", A), config("b", B, false)]);
  checker.observePlan(at + 1_000, plan(["a", A]));
}

Deno.test("ruleKey() prints a rule as ip rule does, the prefix only when not a host", () => {
  assert.equal(A, "from 10.96.0.1 lookup 100 priority 1000");
  assert.equal(
    ruleKey({ src: "10.0.0.0", srcLen: 8, table: 5, priority: 9 }),
    "from 10.0.0.0/8 lookup 5 priority 9",
  );
  assert.equal(B, "from fd00:96::2 lookup 100 priority 1000");
});

Deno.test("summarize() splits own, present and foreign rules, foreign ones by every field", () => {
  const rule = { family: 4, srcLen: 32, table: 100, priority: 1000 } as const;
  const rules: KernelRule[] = [
    kernelRule({ ...rule, src: "10.96.0.1", protocol: 201 }),
    kernelRule({ ...rule, src: "10.96.0.9", protocol: 4 }),
    kernelRule({ ...rule, src: "10.96.0.9", protocol: 4 }, {
      extra: new Uint8Array([8, 0, 22, 0, 6, 0, 0, 0]),
      plain: false,
    }),
  ];
  const s = summarize(rules, 201);
  assert.deepEqual([...s.own], [A]);
  assert.deepEqual([...s.present].sort(), [A, "from 10.96.0.9 lookup 100 priority 1000"]);
  assert.equal(s.foreign.length, 2);
  assert.notEqual(s.foreign[0], s.foreign[1]);
  assert.match(s.foreign.join(), /extra 0800160006000000/);
});

Deno.test("Timeline answers what it held over a window", () => {
  const t = new Timeline();
  t.update(0, ["x"]);
  t.update(10, []);
  t.update(20, ["x"]);
  assert.ok(t.heldThroughout("x", 0, 9));
  assert.ok(!t.heldThroughout("x", 5, 15));
  assert.ok(t.heldThroughout("x", 20, 30));
  assert.ok(t.absentThroughout("x", 10, 19));
  assert.ok(!t.absentThroughout("x", 10, 20));
  assert.equal(t.leftAt("x"), undefined);
  t.update(30, []);
  assert.equal(t.leftAt("x"), 30);
  assert.ok(!t.heldThroughout("x", -5, 5), "nothing is known before the first update");
});

Deno.test("InvariantChecker finds nothing while the kernel follows the configs", () => {
  const checker = started();
  hold(checker, 0, 3_000, kernel([A, B]));
  checker.observeConfigs(3_000, [config("a", A), config("b", B, false)]);
  checker.observePlan(3_000, plan(["a", A]));
  hold(checker, 3_000, 3_500, kernel([A, B]));
  hold(checker, 3_500, 10_000, kernel([A]));
  checker.tick(10_000, true);
  assert.deepEqual(checker.violations, []);
  assert.equal(checker.checks.kernel, 100);
  assert.equal(checker.checks.foreign, 100);
});

Deno.test("InvariantChecker reports an own rule left past the safety bound", () => {
  const checker = started();
  hold(checker, 0, 1_000, kernel([A, B]));
  checker.observeConfigs(1_000, [config("a", A), config("b", B, false)]);
  hold(checker, 1_000, 6_000, kernel([A, B]));
  checker.tick(6_000, true);
  assert.equal(checker.violations.length, 1);
  const [v] = checker.violations;
  assert.equal(v?.invariant, "safety");
  assert.equal(v?.subject, B);
  assert.equal(v?.at, 3_100);
});

Deno.test("InvariantChecker does not run the safety clock while the node is cut off", () => {
  const checker = started();
  hold(checker, 0, 1_000, kernel([A, B]));
  checker.block("n0", "link", 1_000);
  checker.block("n0", "apiserver", 1_000);
  checker.observeConfigs(1_000, [config("a", A), config("b", B, false)]);
  hold(checker, 1_000, 6_000, kernel([A, B]));
  checker.unblock(6_000, "n0", "link");
  hold(checker, 6_000, 9_000, kernel([A, B]));
  assert.deepEqual(checker.violations, [], "still blocked by the API server");
  checker.unblock(9_000, "n0", "apiserver");
  hold(checker, 9_000, 10_500, kernel([A, B]));
  hold(checker, 10_500, 14_000, kernel([A]));
  checker.tick(14_000, true);
  assert.deepEqual(checker.violations, []);
  checker.agentDown("n0");
  checker.observeConfigs(14_000, [config("a", A, false), config("b", B, false)]);
  checker.observePlan(14_000, plan());
  hold(checker, 14_000, 20_000, kernel([A]));
  checker.tick(20_000, true);
  assert.deepEqual(checker.violations, [], "no agent runs");
});

Deno.test("InvariantChecker excuses an own rule whose config came back before the soak saw it", () => {
  const checker = started();
  checker.observeConfigs(0, [config("a", A), config("b", B, false)]);
  hold(checker, 0, 1_000, kernel([A]));
  // The agent added B again (its config is present again), the soak sees that 500 ms later.
  hold(checker, 1_000, 3_500, kernel([A, B]));
  checker.observeConfigs(3_500, [config("a", A), config("b", B)]);
  hold(checker, 3_500, 8_000, kernel([A, B]));
  checker.tick(8_000, true);
  assert.deepEqual(checker.violations, []);
});

Deno.test("InvariantChecker reports a desired rule that disappears without a reason", () => {
  const checker = started();
  hold(checker, 0, 5_000, kernel([A, B]));
  hold(checker, 5_000, 5_300, kernel([A]));
  hold(checker, 5_300, 9_000, kernel([A, B]));
  checker.tick(9_000, true);
  assert.equal(checker.violations.length, 1);
  assert.equal(checker.violations[0]?.invariant, "no-dip");
  assert.equal(checker.violations[0]?.subject, B);
  assert.equal(checker.violations[0]?.at, 5_000);
});

Deno.test("InvariantChecker excuses a rule removed because its config changed (seen late)", () => {
  const checker = started();
  hold(checker, 0, 1_000, kernel([A, B]));
  hold(checker, 1_000, 1_400, kernel([A]));
  checker.observeConfigs(1_400, [config("a", A), config("b", B, false)]);
  hold(checker, 1_400, 5_000, kernel([A]));
  checker.tick(5_000, true);
  assert.deepEqual(checker.violations, []);
});

Deno.test("InvariantChecker waits for its own view after an outage and dates what it learns from it", () => {
  // B's config goes at 3 s; the agent drops B at once, but the soak's watch broke at 3 s and
  // hears of it only at 6 s (past the lag): a dip if the soak's view counted as current, none
  // when it knows its view was lost from 3 s to 6 s.
  for (const lost of [false, true]) {
    const checker = started();
    hold(checker, 0, 3_000, kernel([A, B]));
    checker.observePlan(3_000, plan(["a", A]));
    if (lost) checker.viewLost(3_000);
    hold(checker, 3_000, 6_000, kernel([A]));
    checker.observeConfigs(6_000, [config("a", A), config("b", B, false)]);
    if (lost) checker.viewCurrent();
    hold(checker, 6_000, 10_000, kernel([A]));
    checker.tick(10_000, true);
    assert.deepEqual(checker.violations.map((v) => v.invariant), lost ? [] : ["no-dip"]);
  }
});

Deno.test("InvariantChecker still reports a dip its view saw before the outage", () => {
  const checker = started();
  hold(checker, 0, 3_000, kernel([A, B]));
  hold(checker, 3_000, 3_300, kernel([A]));
  hold(checker, 3_300, 6_000, kernel([A, B]));
  checker.viewLost(6_000); // long after the dip's window closed
  hold(checker, 6_000, 8_000, kernel([A, B]));
  checker.viewCurrent();
  checker.tick(8_000, true);
  assert.deepEqual(checker.violations.map((v) => v.invariant), ["no-dip"]);
});

Deno.test("InvariantChecker times the repair after an outside flush, and bounds it", () => {
  const checker = started();
  hold(checker, 0, 1_000, kernel([A, B]));
  checker.flushed(1_000, "n0", kernel([A, B]));
  checker.expectForeign("n0", DEFAULTS);
  hold(checker, 1_000, 1_050, kernel([]));
  hold(checker, 1_050, 1_100, kernel([A]));
  hold(checker, 1_100, 2_000, kernel([A, B]));
  assert.deepEqual(checker.repairTimes, [100]);
  assert.ok(!checker.repairing("n0"));
  checker.flushed(2_000, "n0", kernel([A, B]));
  hold(checker, 2_000, 6_000, kernel([A]));
  checker.tick(6_000, true);
  assert.equal(checker.violations.length, 1);
  assert.equal(checker.violations[0]?.invariant, "repair");
  assert.equal(checker.violations[0]?.subject, B);
});

Deno.test("InvariantChecker starts the repair clock once a killed agent is back", () => {
  const checker = started();
  hold(checker, 0, 1_000, kernel([A, B]));
  checker.agentDown("n0");
  checker.flushed(1_000, "n0", kernel([A, B]));
  hold(checker, 1_000, 8_000, kernel([]));
  checker.agentUp(8_000, "n0");
  hold(checker, 8_000, 9_000, kernel([]));
  hold(checker, 9_000, 9_500, kernel([A, B]));
  checker.tick(9_500, true);
  assert.deepEqual(checker.violations, []);
  assert.deepEqual(checker.repairTimes, [1_000], "timed from the agent's listing");
  // Flushed while no agent runs, and the rule stops being desired before one does.
  checker.agentDown("n0");
  checker.flushed(10_000, "n0", kernel([A, B]));
  hold(checker, 10_000, 12_000, kernel([A]));
  checker.observeConfigs(12_000, [config("a", A)]);
  hold(checker, 12_000, 13_000, kernel([A]));
  assert.deepEqual(checker.repairTimes, [1_000]);
  assert.equal(checker.repairsWithoutAgent, 1);
});

Deno.test("InvariantChecker compares foreign rules and reports a change once", () => {
  const checker = started();
  const foreign = "4|10.96.0.1/32|… proto 4";
  checker.expectForeign("n0", [...DEFAULTS, foreign]);
  hold(checker, 0, 1_000, kernel([A, B], [], [...DEFAULTS, foreign]));
  hold(checker, 1_000, 2_000, kernel([A, B]));
  assert.equal(checker.violations.length, 1);
  assert.equal(checker.violations[0]?.invariant, "foreign");
  assert.match(checker.violations[0]!.detail, /missing: 4\|10\.96\.0\.1/);
  checker.foreignBusy("n0");
  hold(checker, 2_000, 3_000, kernel([A, B], [], ["whatever"]));
  assert.equal(checker.violations.length, 1, "not compared while the soak changes them");
});

Deno.test("InvariantChecker reports a config marked absent while its Service still matches", () => {
  const checker = started();
  checker.observeConfigs(5_000, [config("a", A, false), config("b", B)]);
  checker.tick(8_000);
  assert.equal(checker.violations.length, 1);
  assert.equal(checker.violations[0]?.invariant, "nothing-lost");
  assert.equal(checker.violations[0]?.subject, "a");
  checker.observeConfigs(9_000, [config("b", B)]);
  checker.observePlan(12_000, plan(["b", B]));
  // b's Service goes; the soak sees it 500 ms after the controller deleted the config.
  checker.observeConfigs(15_000, []);
  checker.observePlan(15_500, plan());
  checker.tick(25_000, true);
  assert.equal(checker.violations.length, 2, "a marked absent and deleted while planned");
  assert.match(checker.violations[1]!.detail, /deleted/);
  assert.equal(checker.checks.configs, 5, "two writes at the start, three changes");
});

Deno.test("InvariantChecker names the faults active and recently ended", () => {
  const checker = started();
  checker.faultStarted(1, "#1 etcd-kill");
  checker.faultStarted(2, "#2 flush n0");
  checker.faultEnded(1_000, 2);
  assert.deepEqual(checker.faultsAt(3_000), ["#1 etcd-kill", "#2 flush n0 (ended 2.0s before)"]);
  assert.ok(!checker.calm);
  checker.faultEnded(4_000, 1);
  assert.ok(checker.calm);
  assert.deepEqual(checker.faultsAt(40_000), []);
});

Deno.test("InvariantChecker excuses a rule flapping while a cut-off agent catches up", () => {
  const checker = started();
  // B's config changes and comes back while the node is cut off.
  cutOffWhileBGoes(checker, 3_000);
  checker.observeConfigs(5_000, [config("a", A), config("b", B)]);
  checker.observePlan(5_000, plan(["a", A], ["b", B]));
  hold(checker, 3_000, 20_000, kernel([A, B]));
  checker.unblock(20_000, "n0", "link");
  // Catching up, the agent applies the old change, then the new one.
  hold(checker, 20_000, 20_300, kernel([A]));
  hold(checker, 20_300, 25_000, kernel([A, B]));
  checker.tick(25_000, true);
  assert.equal(checker.violations.length, 0, JSON.stringify(checker.violations));
  // Long after the cut-off, the same flap is a dip.
  hold(checker, 25_000, 30_000, kernel([A]));
  hold(checker, 30_000, 33_000, kernel([A, B]));
  checker.tick(33_000, true);
  assert.equal(checker.violations.length, 1);
  assert.equal(checker.violations[0]?.invariant, "no-dip");
});

Deno.test("InvariantChecker reports a config written with a rule the planner never asked for", () => {
  const checker = started();
  const A2 = ruleKey({ src: "10.96.0.1", srcLen: 32, table: 101, priority: 1000 });
  // The IPRule's table moves to 101: the planner, then the config, follow.
  checker.observePlan(1_000, plan(["a", A2], ["b", B]));
  checker.observeConfigs(1_100, [config("a", A2), config("b", B)]);
  // A stale writer puts the old table back.
  checker.observeConfigs(6_000, [config("a", A), config("b", B)]);
  checker.tick(10_000, true);
  assert.equal(checker.violations.length, 1);
  assert.equal(checker.violations[0]?.subject, "a");
  assert.match(checker.violations[0]!.detail, /lookup 100 priority 1000", which the planner/);
  assert.equal(checker.checks.configs, 4);
});

Deno.test("InvariantChecker resumes the safety clock once a healed node is seen converged", () => {
  const checker = started();
  cutOffWhileBGoes(checker, 1_000);
  hold(checker, 1_000, 5_000, kernel([A, B]));
  checker.unblockWhenConverged("n0", "link", 5_000, 60_000);
  // Still stale 10 s after the cut healed: no violation, the agent has not caught up yet.
  hold(checker, 5_000, 15_000, kernel([A, B]));
  hold(checker, 15_000, 20_000, kernel([A]));
  checker.tick(20_000, true);
  assert.equal(checker.violations.length, 0, JSON.stringify(checker.violations));
  assert.deepEqual(checker.catchUpTimes, [10_000]);
  // Connected again: the next leftover counts.
  checker.observeConfigs(20_000, [config("a", A, false), config("b", B, false)]);
  checker.observePlan(20_000, plan());
  hold(checker, 20_000, 25_000, kernel([A]));
  checker.tick(25_000, true);
  assert.equal(checker.violations.length, 1);
  assert.equal(checker.violations[0]?.invariant, "safety");
});

Deno.test("InvariantChecker runs the safety clock again at the cap of a catch-up", () => {
  const checker = started();
  checker.block("n0", "link", 0);
  checker.observeConfigs(500, [config("a", A), config("b", B, false)]);
  checker.observePlan(500, plan(["a", A]));
  checker.unblockWhenConverged("n0", "link", 1_000, 10_000);
  hold(checker, 1_000, 15_000, kernel([A, B]));
  checker.tick(15_000, true);
  assert.deepEqual(checker.catchUpTimes, [undefined]);
  assert.equal(checker.violations.length, 1);
  assert.equal(checker.violations[0]?.at, 12_100, "2 s after the cap");
});
