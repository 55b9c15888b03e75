import assert from "node:assert/strict";
import type { KernelRule, Rule } from "../../ffi/mod.ts";
import { changeMatters, DesiredState, planCommands, planRules, RuleSet } from "./rule_plan.ts";
import { kernelRule, rule } from "./test_rules.ts";

const PROTO = 201;

/** An unmarked rule (protocol 0), as the original operator adds them. */
function unmarked(src: string, extra: Partial<KernelRule> = {}): KernelRule {
  return kernelRule(rule(src, { protocol: 0 }), extra);
}

function own(src: string, extra: Partial<KernelRule> = {}): KernelRule {
  return kernelRule(rule(src), extra);
}

const LOCAL = kernelRule(rule("0.0.0.0", { srcLen: 0, table: 255, priority: 0, protocol: 2 }));

/** Plans with adoption on, the configs' sources given. */
function adopt(desired: Rule[], kernel: KernelRule[], sources: string[] = []) {
  return planRules(desired, [LOCAL, ...kernel], {
    protocol: PROTO,
    adopt: { sources: new Set([...desired.map((r) => r.src), ...sources]) },
  });
}

Deno.test("planRules() adopts an unmarked rule identical to a desired one: add own, delete it", () => {
  const old = unmarked("10.96.1.50");
  const v6 = unmarked("fd00::1");
  const plan = adopt([rule("10.96.1.50"), rule("fd00::1")], [old, v6]);
  assert.deepEqual(plan.add, []);
  assert.deepEqual(plan.delete, []);
  assert.equal(plan.satisfied, 0);
  assert.deepEqual(plan.adoption, {
    adopt: [{ rule: rule("10.96.1.50"), replaces: old }, { rule: rule("fd00::1"), replaces: v6 }],
    remove: [],
    blocked: [],
  });
});

Deno.test("planRules() without adoption counts the unmarked rule as satisfying and plans none", () => {
  const plan = planRules([rule("10.96.1.50")], [LOCAL, unmarked("10.96.1.50")], {
    protocol: PROTO,
  });
  assert.deepEqual(plan, { add: [], delete: [], satisfied: 1 });
});

Deno.test("planRules() deletes an unmarked leftover of a config's source, keeps the others", () => {
  const leaked = unmarked("10.96.1.50", { table: 50 });
  const absent = unmarked("10.96.1.77");
  const kernel = [
    own("10.96.1.50"),
    leaked,
    absent,
    unmarked("10.99.0.1"), // an admin's rule: no config has this source
    unmarked("10.96.1.50", { table: 60, fwmark: 1, fwmask: 1, plain: false }), // other selector
    unmarked("10.96.1.0", { srcLen: 24, table: 60 }), // a prefix, not one address
    kernelRule(rule("10.96.1.50", { protocol: 4, table: 70 })), // marked by someone else
  ];
  const plan = adopt([rule("10.96.1.50")], kernel, ["10.96.1.77"]);
  assert.equal(plan.satisfied, 1);
  assert.deepEqual(plan.add, []);
  assert.deepEqual(plan.adoption, {
    adopt: [],
    remove: [{ rule: leaked, reason: "leftover" }, { rule: absent, reason: "leftover" }],
    blocked: [],
  });
});

Deno.test("planRules() deletes an unmarked copy of an own rule that comes first", () => {
  const copy = unmarked("10.96.1.50");
  const plan = adopt([rule("10.96.1.50")], [copy, own("10.96.1.50")]);
  assert.equal(plan.satisfied, 1);
  assert.deepEqual(plan.adoption?.remove, [{ rule: copy, reason: "duplicate" }]);
});

Deno.test("planRules() leaves an unmarked rule whose delete would hit another rule first", async (t) => {
  // A delete without protocol removes the first rule with the same source, table, priority and
  // action, whatever its protocol or other selectors.
  const cases: [string, KernelRule][] = [
    ["the agent's own copy", own("10.96.1.50")],
    ["a rule of another protocol", kernelRule(rule("10.96.1.50", { protocol: 4 }))],
    [
      "a rule with a destination",
      unmarked("10.96.1.50", { dst: "10.1.0.0", dstLen: 16, plain: false }),
    ],
  ];
  for (const [what, first] of cases) {
    await t.step(what, () => {
      const copy = unmarked("10.96.1.50");
      const plan = adopt([rule("10.96.1.50")], [first, copy]);
      assert.deepEqual(plan.adoption?.adopt, []);
      assert.deepEqual(plan.adoption?.remove, []);
      assert.deepEqual(plan.adoption?.blocked, [copy]);
      // Held by the first rule or by the blocked copy: nothing added either way.
      assert.deepEqual(plan.add, []);
      assert.equal(plan.satisfied, 1);
    });
  }
});

Deno.test("planRules() deletes an unmarked leftover behind an own rule it deletes first", () => {
  const stale = own("10.96.1.50", { table: 50 });
  const leaked = unmarked("10.96.1.50", { table: 50 });
  const plan = adopt([rule("10.96.1.50")], [stale, leaked]);
  assert.deepEqual(plan.delete, [stale]);
  assert.deepEqual(plan.add, [rule("10.96.1.50")]);
  assert.deepEqual(plan.adoption?.remove, [{ rule: leaked, reason: "leftover" }]);
});

Deno.test("planRules() adopts one of two unmarked copies and deletes the other", () => {
  const [a, b] = [unmarked("10.96.1.50"), unmarked("10.96.1.50")];
  const plan = adopt([rule("10.96.1.50")], [a, b]);
  assert.deepEqual(plan.adoption, {
    adopt: [{ rule: rule("10.96.1.50"), replaces: a }],
    remove: [{ rule: b, reason: "duplicate" }],
    blocked: [],
  });
  assert.deepEqual(plan.add, []);
});

Deno.test("planRules() with adoption adds what no rule holds and ignores non-lookup rules", () => {
  const blackhole = unmarked("10.96.1.50", { action: 6, table: 0, plain: false });
  const plan = adopt([rule("10.96.1.50"), rule("10.96.1.51")], [blackhole, unmarked("10.96.1.50")]);
  assert.deepEqual(plan.add, [rule("10.96.1.51")]);
  assert.equal(plan.adoption?.adopt.length, 1);
});

Deno.test("planCommands() lists adoption in the order it runs, with the reason", () => {
  const plan = adopt(
    [rule("10.96.1.50"), rule("10.96.1.51")],
    [
      own("10.96.1.51", { protocol: 4 }),
      unmarked("10.96.1.51"),
      unmarked("10.96.1.50"),
      unmarked("10.96.1.50", { table: 50 }),
    ],
  );
  assert.deepEqual(planCommands(plan), [
    "ip rule add from 10.96.1.50 lookup 100 priority 1000 proto 201  # adopts the unmarked rule",
    "ip rule del from 10.96.1.50 lookup 100 priority 1000  # adopted",
    "ip rule del from 10.96.1.50 lookup 50 priority 1000  # unmarked leftover: its source is an " +
    "IPRuleConfig's, its table or priority is not",
    "# left in place: from 10.96.1.51 lookup 100 priority 1000 (another rule the kernel would " +
    "delete instead comes first)",
  ]);
});

Deno.test("DesiredState tracks the sources of present and absent configs when asked", () => {
  const config = (serviceIP: string, state: "present" | "absent" = "present") => ({
    name: "x",
    serviceIP,
    table: 100,
    priority: 1000,
    state,
  });
  assert.equal(new DesiredState({ protocol: PROTO }).sources, undefined);
  const state = new DesiredState({ protocol: PROTO, trackSources: true });
  state.update("a", config("10.96.1.50"));
  state.update("b", config("FD00::1", "absent"));
  state.update("c", config("10.96.1.50", "absent"));
  for (const src of ["10.96.1.50", "fd00::1"]) assert.equal(state.sources!.has(src), true, src);
  assert.equal(state.sources!.has("FD00::1"), false, "canonical text only");
  let version = state.version;
  state.update("b", config("fd00::1", "present")); // same source: rules change, sources not
  assert.equal(state.version, version + 1);
  state.update("a", undefined);
  assert.equal(state.sources!.has("10.96.1.50"), true, "config c still names it");
  version = state.version;
  state.update("c", undefined);
  assert.equal(state.sources!.has("10.96.1.50"), false);
  assert.ok(state.version > version, "a source leaving changes the version");
  assert.equal(state.snapshot().sources, state.sources);
  // A present config refused as invalid (the original's priority 0) names no source: its
  // unmarked rule is no leftover while nobody knows which rule it should be.
  state.update("z", { ...config("10.96.1.90"), priority: 0 });
  assert.equal(state.sources!.has("10.96.1.90"), false);
  state.update("z", config("10.96.1.90"));
  assert.equal(state.sources!.has("10.96.1.90"), true);
});

Deno.test("changeMatters() with adoption also picks unmarked rules of a config's source", () => {
  const desired = new RuleSet([rule("10.96.1.50")]);
  const sources = new Set(["10.96.1.50", "10.96.1.77"]);
  const o = { protocol: PROTO, sources };
  assert.equal(changeMatters(unmarked("10.96.1.77"), desired, o), true);
  assert.equal(changeMatters(unmarked("10.96.1.50", { table: 9 }), desired, o), true);
  assert.equal(
    changeMatters(unmarked("10.96.1.50", { table: 9 }), desired, { protocol: PROTO }),
    false,
  );
  assert.equal(changeMatters(unmarked("10.99.0.1"), desired, o), false);
  assert.equal(changeMatters(kernelRule(rule("10.96.1.77", { protocol: 4 })), desired, o), false);
});

Deno.test("planRules() with adoption leaves an unmarked prefix rule of a config's source alone", () => {
  const prefix = unmarked("10.96.1.0", { srcLen: 24 });
  const plan = adopt([rule("10.96.1.0")], [prefix]);
  assert.deepEqual(plan.adoption, { adopt: [], remove: [], blocked: [] });
  assert.deepEqual(plan.add, [rule("10.96.1.0")]);
});

Deno.test("planRules() with adoption is not blocked by a non-lookup rule of the same match key", () => {
  // A protocol-less delete with action lookup cannot hit a prohibit rule, whatever its table.
  const prohibit = unmarked("10.96.1.50", { action: 8, plain: false });
  const copy = unmarked("10.96.1.50");
  const plan = adopt([rule("10.96.1.50")], [prohibit, copy]);
  assert.deepEqual(plan.adoption?.adopt, [{ rule: rule("10.96.1.50"), replaces: copy }]);
  assert.deepEqual(plan.adoption?.blocked, []);
});
