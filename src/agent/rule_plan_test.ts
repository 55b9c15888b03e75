import assert from "node:assert/strict";
import type { KernelRule, Rule } from "../../ffi/mod.ts";
import {
  changeMatters,
  type ConfigRule,
  desiredRules,
  DesiredState,
  ipRuleCommand,
  planCommands,
  planRules,
  RuleSet,
} from "./rule_plan.ts";
import { kernelRule, rule } from "./test_rules.ts";

const PROTO = 201;

function config(name: string, serviceIP: string, extra: Partial<ConfigRule> = {}): ConfigRule {
  return { name, serviceIP, table: 100, priority: 1000, state: "present", ...extra };
}

function kernel(src: string, extra: Partial<KernelRule> = {}): KernelRule {
  return kernelRule(rule(src), extra);
}

/** The kernel's own rules of a fresh namespace. */
const DEFAULTS: KernelRule[] = [
  kernel("0.0.0.0", { srcLen: 0, table: 255, priority: 0, protocol: 2 }),
  kernel("0.0.0.0", { srcLen: 0, table: 254, priority: 32766, protocol: 2 }),
  kernel("0.0.0.0", { srcLen: 0, table: 253, priority: 32767, protocol: 2 }),
  kernel("::", { srcLen: 0, table: 255, priority: 0, protocol: 2 }),
  kernel("::", { srcLen: 0, table: 254, priority: 32766, protocol: 2 }),
];

const keys = (rules: RuleSet | readonly Rule[]) =>
  (rules instanceof RuleSet ? rules.values() : rules).map((r) =>
    `${r.family} ${r.src}/${r.srcLen} ${r.table} ${r.priority}`
  ).sort();

Deno.test("desiredRules() turns present configs into rules with the agent's protocol", () => {
  const { rules, invalid } = desiredRules([
    config("a", "10.96.1.50"),
    config("b", "fd00::1", { table: 200, priority: 900 }),
  ], { protocol: PROTO });
  assert.deepEqual(rules.values(), [
    rule("10.96.1.50"),
    rule("fd00::1", { table: 200, priority: 900 }),
  ]);
  assert.deepEqual(invalid, []);
});

Deno.test("desiredRules() skips absent configs", () => {
  const { rules } = desiredRules([
    config("a", "10.96.1.50", { state: "absent" }),
    config("b", "10.96.1.51"),
  ], { protocol: PROTO });
  assert.deepEqual(keys(rules), keys([rule("10.96.1.51")]));
});

Deno.test("desiredRules() writes IPv6 sources in canonical form", () => {
  const { rules } = desiredRules([config("a", "FD00:0:0:0:0:0:0:0001")], { protocol: PROTO });
  assert.equal(rules.values()[0]?.src, "fd00::1");
});

Deno.test("desiredRules() lists a rule asked for by two configs once", () => {
  const { rules } = desiredRules([
    config("a", "fd00::1"),
    config("b", "fd00:0::1"),
  ], { protocol: PROTO });
  assert.equal(rules.size, 1);
});

Deno.test("desiredRules() refuses configs no kernel rule should be made of", async (t) => {
  const cases: [string, ConfigRule, RegExp][] = [
    ["an unparsable address", config("x", "10.0.0"), /Invalid serviceIP "10\.0\.0"/],
    ["the unspecified IPv4 address", config("x", "0.0.0.0"), /unspecified/],
    ["the unspecified IPv6 address", config("x", "::"), /unspecified/],
    ["a loopback address", config("x", "127.0.0.1"), /loopback/],
    ["the IPv6 loopback address", config("x", "::1"), /loopback/],
    ["a multicast address", config("x", "ff02::1"), /multicast/],
    ["an IPv4-mapped address", config("x", "::ffff:10.0.0.5"), /IPv4-mapped/],
    ["the broadcast address", config("x", "255.255.255.255"), /broadcast/],
    ["table 0", config("x", "10.0.0.1", { table: 0 }), /Invalid table "0"/],
    ["the main table", config("x", "10.0.0.1", { table: 254 }), /main/],
    ["priority 0", config("x", "10.0.0.1", { priority: 0 }), /Invalid priority "0"/],
    ["priority 32766", config("x", "10.0.0.1", { priority: 32766 }), /Invalid priority/],
  ];
  for (const [what, input, error] of cases) {
    await t.step(what, () => {
      const { rules, invalid } = desiredRules([input, config("ok", "10.9.9.9")], {
        protocol: PROTO,
      });
      assert.deepEqual(keys(rules), keys([rule("10.9.9.9")]));
      assert.equal(invalid.length, 1);
      assert.equal(invalid[0]!.config, "x");
      assert.equal(
        invalid[0]!.rule,
        `from ${input.serviceIP} lookup ${input.table} priority ${input.priority}`,
      );
      assert.match(invalid[0]!.error, error);
    });
  }
});

Deno.test("DesiredState follows config changes one at a time", () => {
  const state = new DesiredState({ protocol: PROTO });
  state.update("a", config("a", "10.96.1.50"));
  state.update("b", config("b", "10.96.1.50"));
  state.update("c", config("c", "10.96.1.51"));
  state.update("d", config("d", "0.0.0.0"));
  assert.deepEqual(keys(state.rules), keys([rule("10.96.1.50"), rule("10.96.1.51")]));
  assert.equal(state.invalid().length, 1);
  // The rule asked for by two configs stays until neither asks for it.
  state.update("a", undefined);
  assert.deepEqual(keys(state.rules), keys([rule("10.96.1.50"), rule("10.96.1.51")]));
  state.update("b", config("b", "10.96.1.50", { state: "absent" }));
  assert.deepEqual(keys(state.rules), keys([rule("10.96.1.51")]));
  state.update("c", config("c", "10.96.1.51", { table: 7 }));
  assert.deepEqual(keys(state.rules), keys([rule("10.96.1.51", { table: 7 })]));
  state.update("d", config("d", "10.96.1.52"));
  assert.deepEqual(state.invalid(), []);
  assert.equal(state.rules.find(rule("10.96.1.52"))?.src, "10.96.1.52");
  const version = state.version;
  state.update("x", undefined);
  assert.equal(state.version, version);
});

Deno.test("RuleSet.remove() keeps the index right when it moves a rule", () => {
  const set = new RuleSet();
  const rules = Array.from({ length: 6 }, (_, i) => rule(`10.0.0.${i % 3}`, { table: i }));
  for (const r of rules) set.add(r);
  assert.equal(set.remove(rules[0]!), true);
  assert.equal(set.remove(rules[4]!), true);
  assert.equal(set.remove(rules[4]!), false);
  for (const [i, r] of rules.entries()) {
    const at = set.indexOf(r);
    if (i === 0 || i === 4) assert.equal(at, -1);
    else assert.equal(set.values()[at], r);
  }
  assert.equal(set.size, 4);
});

Deno.test("RuleSet keeps each rule once and finds it by value", () => {
  const set = new RuleSet([rule("10.0.0.1"), rule("10.0.0.1", { table: 7 }), rule("10.0.0.1")]);
  assert.equal(set.size, 2);
  assert.equal(set.find(kernel("10.0.0.1", { protocol: 0 }))?.table, 100);
  assert.equal(set.find(kernel("10.0.0.1", { table: 7 }))?.table, 7);
  assert.equal(set.find(kernel("10.0.0.1", { table: 8 })), undefined);
  assert.equal(set.find(kernel("10.0.0.1", { srcLen: 24 })), undefined);
  assert.equal(set.find(kernel("10.0.0.2")), undefined);
});

Deno.test("planRules() adds a desired rule that is missing", () => {
  const plan = planRules([rule("10.96.1.50")], DEFAULTS, { protocol: PROTO });
  assert.deepEqual(plan.add, [rule("10.96.1.50")]);
  assert.deepEqual(plan.delete, []);
  assert.equal(plan.satisfied, 0);
});

Deno.test("planRules() changes nothing when every desired rule is present", () => {
  const plan = planRules(
    [rule("10.96.1.50"), rule("fd00::1")],
    [...DEFAULTS, kernel("10.96.1.50"), kernel("fd00::1")],
    { protocol: PROTO },
  );
  assert.deepEqual(plan, { add: [], delete: [], satisfied: 2 });
});

Deno.test("planRules() deletes an owned rule that is no longer desired", () => {
  const stale = kernel("10.96.1.51");
  const plan = planRules([rule("10.96.1.50")], [...DEFAULTS, kernel("10.96.1.50"), stale], {
    protocol: PROTO,
  });
  assert.deepEqual(plan.add, []);
  assert.deepEqual(plan.delete, [stale]);
});

Deno.test("planRules() replaces an owned rule whose table or priority changed", () => {
  const old = kernel("10.96.1.50", { table: 100, priority: 1000 });
  const plan = planRules([rule("10.96.1.50", { table: 200, priority: 900 })], [...DEFAULTS, old], {
    protocol: PROTO,
  });
  assert.deepEqual(plan.add, [rule("10.96.1.50", { table: 200, priority: 900 })]);
  assert.deepEqual(plan.delete, [old]);
});

Deno.test("planRules() never deletes a rule without the agent's protocol", () => {
  const foreign = [
    kernel("10.96.1.60", { protocol: 0 }),
    kernel("10.96.1.61", { protocol: 4 }),
    kernel("10.96.1.62", { protocol: 202 }),
    kernel("10.0.0.0", { srcLen: 8, protocol: 3, fwmark: 7, plain: false }),
  ];
  const plan = planRules([], [...DEFAULTS, ...foreign], { protocol: PROTO });
  assert.deepEqual(plan, { add: [], delete: [], satisfied: 0 });
});

Deno.test("planRules() counts an identical foreign rule as satisfying and adds no duplicate", () => {
  const plan = planRules(
    [rule("10.96.1.50")],
    [...DEFAULTS, kernel("10.96.1.50", { protocol: 0 })],
    {
      protocol: PROTO,
    },
  );
  assert.deepEqual(plan, { add: [], delete: [], satisfied: 1 });
});

Deno.test("planRules() adds its rule when the foreign rule has another selector", () => {
  const foreign = kernel("10.96.1.50", { protocol: 0, fwmark: 1, fwmask: 0xff, plain: false });
  const plan = planRules([rule("10.96.1.50")], [...DEFAULTS, foreign], { protocol: PROTO });
  assert.deepEqual(plan.add, [rule("10.96.1.50")]);
  assert.deepEqual(plan.delete, []);
});

Deno.test("planRules() keeps its own rule when an identical foreign rule precedes it", () => {
  const plan = planRules(
    [rule("10.96.1.50")],
    [...DEFAULTS, kernel("10.96.1.50", { protocol: 0 }), kernel("10.96.1.50")],
    { protocol: PROTO },
  );
  assert.deepEqual(plan, { add: [], delete: [], satisfied: 1 });
});

Deno.test("planRules() deletes a duplicate of an owned rule", () => {
  const plan = planRules(
    [rule("10.96.1.50")],
    [...DEFAULTS, kernel("10.96.1.50"), kernel("10.96.1.50")],
    { protocol: PROTO },
  );
  assert.deepEqual(plan.add, []);
  assert.equal(plan.delete.length, 1);
  assert.equal(plan.satisfied, 1);
});

Deno.test("planRules() deletes an owned rule with other selectors, even for a desired source", () => {
  const odd = kernel("10.96.1.50", { iif: "eth0", plain: false });
  const plan = planRules([rule("10.96.1.50")], [...DEFAULTS, odd], { protocol: PROTO });
  assert.deepEqual(plan.add, [rule("10.96.1.50")]);
  assert.deepEqual(plan.delete, [odd]);
});

Deno.test("planRules() tells the families apart", () => {
  const plan = planRules(
    [rule("fd00::1")],
    [...DEFAULTS, kernel("10.96.1.50")],
    { protocol: PROTO },
  );
  assert.deepEqual(plan.add, [rule("fd00::1")]);
  assert.deepEqual(plan.delete, [kernel("10.96.1.50")]);
});

Deno.test("planRules() with no desired rule deletes every owned rule and nothing else", () => {
  const owned = [kernel("10.96.1.50"), kernel("fd00::1"), kernel("10.96.1.51", { table: 7 })];
  const plan = planRules([], [...DEFAULTS, ...owned, kernel("10.1.1.1", { protocol: 0 })], {
    protocol: PROTO,
  });
  assert.deepEqual(plan.delete, owned);
  assert.deepEqual(plan.add, []);
});

Deno.test("changeMatters() picks own rules and rules identical to a desired one", () => {
  const desired = new RuleSet([rule("10.96.1.50")]);
  const o = { protocol: PROTO };
  assert.equal(changeMatters(kernel("10.1.1.1"), desired, o), true);
  assert.equal(changeMatters(kernel("10.96.1.50", { protocol: 0 }), desired, o), true);
  assert.equal(changeMatters(kernel("10.1.1.1", { protocol: 0 }), desired, o), false);
  assert.equal(
    changeMatters(kernel("10.96.1.50", { protocol: 0, fwmark: 1, plain: false }), desired, o),
    false,
  );
});

Deno.test("ipRuleCommand() prints ip rule syntax with the protocol", () => {
  assert.equal(
    ipRuleCommand("add", rule("10.96.1.50")),
    "ip rule add from 10.96.1.50 lookup 100 priority 1000 proto 201",
  );
  assert.equal(
    ipRuleCommand("del", rule("fd00::1", { table: 4000000000 })),
    "ip -6 rule del from fd00::1 lookup 4000000000 priority 1000 proto 201",
  );
});

Deno.test("planCommands() lists deletes before adds, sorted", () => {
  const plan = planRules(
    [rule("10.96.1.9"), rule("10.96.1.2"), rule("fd00::2")],
    [...DEFAULTS, kernel("fd00::9"), kernel("10.96.1.7", { priority: 5 })],
    { protocol: PROTO },
  );
  assert.deepEqual(planCommands(plan), [
    "ip rule del from 10.96.1.7 lookup 100 priority 5 proto 201",
    "ip -6 rule del from fd00::9 lookup 100 priority 1000 proto 201",
    "ip rule add from 10.96.1.2 lookup 100 priority 1000 proto 201",
    "ip rule add from 10.96.1.9 lookup 100 priority 1000 proto 201",
    "ip -6 rule add from fd00::2 lookup 100 priority 1000 proto 201",
  ]);
});
