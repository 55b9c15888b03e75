import assert from "node:assert/strict";
import type { KernelRule, Rule } from "../../ffi/mod.ts";
import {
  changeMatters,
  type ConfigRule,
  configRuleOf,
  desiredRules,
  DesiredState,
  ipRuleCommand,
  planCommands,
  planIsEmpty,
  planRules,
  type RulePlan,
  RuleSet,
  sameRule,
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

Deno.test("planRules() replaces an owned rule whose priority alone changed", () => {
  const old = kernel("10.96.1.50", { priority: 1000 });
  const plan = planRules([rule("10.96.1.50", { priority: 900 })], [...DEFAULTS, old], {
    protocol: PROTO,
  });
  assert.deepEqual(plan, {
    add: [rule("10.96.1.50", { priority: 900 })],
    delete: [old],
    satisfied: 0,
  });
});

Deno.test("planRules() replaces an owned rule whose table alone changed", () => {
  const old = kernel("fd00::1", { table: 100 });
  const plan = planRules([rule("fd00::1", { table: 101 })], [...DEFAULTS, old], {
    protocol: PROTO,
  });
  assert.deepEqual(plan, { add: [rule("fd00::1", { table: 101 })], delete: [old], satisfied: 0 });
});

Deno.test("planRules() tells a host rule from a prefix rule of the same source", () => {
  const prefix = kernel("10.96.1.0", { srcLen: 24 });
  const plan = planRules([rule("10.96.1.0")], [...DEFAULTS, prefix], { protocol: PROTO });
  assert.deepEqual(plan, { add: [rule("10.96.1.0")], delete: [prefix], satisfied: 0 });
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

Deno.test("planIsEmpty() is true only for a plan that changes nothing", () => {
  const none: RulePlan = { add: [], delete: [], satisfied: 3 };
  const adoption = { adopt: [], remove: [], blocked: [kernel("10.96.1.9", { protocol: 0 })] };
  assert.equal(planIsEmpty(none), true);
  assert.equal(planIsEmpty({ ...none, adoption }), true); // a blocked rule is left in place
  assert.equal(planIsEmpty({ ...none, add: [rule("10.96.1.1")] }), false);
  assert.equal(planIsEmpty({ ...none, delete: [kernel("10.96.1.1")] }), false);
  const removal = { rule: kernel("10.96.1.1", { protocol: 0 }), reason: "leftover" as const };
  assert.equal(planIsEmpty({ ...none, adoption: { ...adoption, remove: [removal] } }), false);
  const adopted = { rule: rule("10.96.1.2"), replaces: kernel("10.96.1.2", { protocol: 0 }) };
  assert.equal(
    planIsEmpty({ ...none, adoption: { ...adoption, adopt: [adopted], remove: [removal] } }),
    false,
  );
});

Deno.test("sameRule() compares family, source, prefix length, table and priority, not the protocol", () => {
  const base = rule("10.96.1.1");
  assert.equal(sameRule(base, { ...base, protocol: 0 }), true);
  for (
    const other of [
      rule("10.96.1.2"),
      rule("10.96.1.1", { srcLen: 24 }),
      rule("10.96.1.1", { table: 7 }),
      rule("10.96.1.1", { priority: 7 }),
      rule("10.96.1.1", { family: 6 }),
    ]
  ) {
    assert.equal(sameRule(base, other), false, JSON.stringify(other));
  }
});

Deno.test("RuleSet.add() and remove() say whether the set changed; counted rules stay until the last", () => {
  const set = new RuleSet();
  assert.equal(set.add(rule("10.0.0.1")), true);
  assert.equal(set.add(rule("10.0.0.1")), false);
  assert.equal(set.remove(rule("10.0.0.1")), false);
  assert.equal(set.size, 1);
  assert.equal(set.remove(rule("10.0.0.1")), true);
  assert.equal(set.remove(rule("10.0.0.1")), false);
  assert.equal(set.size, 0);
});

Deno.test("RuleSet finds every rule of a source with three or more rules, after removals too", () => {
  const tables = [1, 2, 3, 4];
  const rules = tables.map((table) => rule("10.0.0.1", { table }));
  const set = new RuleSet(rules);
  for (const r of rules) assert.equal(set.find(r), r);
  set.remove(rules[1]!);
  assert.equal(set.find(rules[1]!), undefined);
  for (const r of [rules[0]!, rules[2]!, rules[3]!]) assert.equal(set.find(r), r);
  set.remove(rules[0]!);
  set.remove(rules[3]!);
  assert.equal(set.find(rules[2]!), rules[2]);
  assert.deepEqual(set.values(), [rules[2]]);
});

Deno.test("DesiredState: a config deleted twice does not take a rule another config asks for", () => {
  const state = new DesiredState({ protocol: PROTO });
  state.update("a", config("a", "10.96.1.50"));
  state.update("b", config("b", "10.96.1.50"));
  state.update("a", undefined);
  state.update("a", undefined); // a repeated delete, or absent after deleted
  state.update("a", config("a", "10.96.1.50", { state: "absent" }));
  assert.deepEqual(keys(state.rules), keys([rule("10.96.1.50")]));
  state.update("b", undefined);
  assert.deepEqual(keys(state.rules), []);
});

Deno.test("DesiredState tracks the sources of present and absent configs, each counted", () => {
  const state = new DesiredState({ protocol: PROTO, trackSources: true });
  const sources = () => ["10.96.1.1", "10.96.1.2", "fd00::1"].filter((s) => state.sources?.has(s));
  state.update("a", config("a", "10.96.1.1"));
  state.update("b", config("b", "10.96.1.1", { state: "absent" }));
  state.update("c", config("c", "fd00:0::1"));
  assert.deepEqual(sources(), ["10.96.1.1", "fd00::1"]);
  let version = state.version;
  state.update("a", config("a", "10.96.1.1", { table: 7 })); // same source: no source change
  assert.equal(state.version, version + 1);
  state.update("a", config("a", "10.96.1.2")); // moves: b still names 10.96.1.1
  assert.deepEqual(sources(), ["10.96.1.1", "10.96.1.2", "fd00::1"]);
  state.update("b", undefined);
  assert.deepEqual(sources(), ["10.96.1.2", "fd00::1"]);
  // An absent config with no valid address names no source, and is no error.
  version = state.version;
  state.update("d", config("d", "not an address", { state: "absent" }));
  assert.equal(state.version, version);
  // A present config refused as invalid names none either.
  state.update("c", config("c", "fd00::1", { table: 0 }));
  assert.deepEqual(sources(), ["10.96.1.2"]);
  assert.equal(state.snapshot().sources, state.sources);
});

Deno.test("DesiredState.snapshot() has no sources unless they are tracked", () => {
  const state = new DesiredState({ protocol: PROTO });
  state.update("a", config("a", "10.96.1.1"));
  assert.equal(state.sources, undefined);
  assert.equal("sources" in state.snapshot(), false);
});

Deno.test("planRules() deletes an own rule with other selectors without counting it for a desired rule", () => {
  const odd = kernel("10.96.1.60", { fwmark: 1, plain: false });
  const desired = [rule("10.96.1.50"), rule("10.96.1.51"), rule("10.96.1.52")];
  const plan = planRules(desired, [...DEFAULTS, odd], { protocol: PROTO });
  assert.deepEqual(plan, { add: desired, delete: [odd], satisfied: 0 });
});

Deno.test("planCommands() sorts by family, then priority, then source, then table", () => {
  const desired = [
    rule("fd00::1", { priority: 10 }),
    rule("10.96.1.2", { priority: 2000 }),
    rule("10.96.1.9", { priority: 1000 }),
    rule("10.96.1.9", { priority: 1000, table: 300 }),
    rule("10.96.1.9", { priority: 1000, table: 200 }),
    rule("10.96.1.3", { priority: 1000 }),
  ];
  const expected = [
    "ip rule add from 10.96.1.3 lookup 100 priority 1000 proto 201",
    "ip rule add from 10.96.1.9 lookup 100 priority 1000 proto 201",
    "ip rule add from 10.96.1.9 lookup 200 priority 1000 proto 201",
    "ip rule add from 10.96.1.9 lookup 300 priority 1000 proto 201",
    "ip rule add from 10.96.1.2 lookup 100 priority 2000 proto 201",
    "ip -6 rule add from fd00::1 lookup 100 priority 10 proto 201",
  ];
  for (const order of [desired, [...desired].reverse()]) {
    assert.deepEqual(planCommands(planRules(order, DEFAULTS, { protocol: PROTO })), expected);
  }
});

Deno.test("planCommands() sorts each part of an adoption plan", () => {
  const unmarked = (src: string, extra: Partial<KernelRule> = {}) =>
    kernel(src, { protocol: 0, ...extra });
  const plan: RulePlan = {
    add: [],
    delete: [],
    satisfied: 0,
    adoption: {
      adopt: [
        { rule: rule("10.96.1.9"), replaces: unmarked("10.96.1.9") },
        { rule: rule("10.96.1.1"), replaces: unmarked("10.96.1.1") },
      ],
      remove: [
        { rule: unmarked("10.96.1.8", { table: 5 }), reason: "leftover" },
        { rule: unmarked("10.96.1.2", { table: 5 }), reason: "duplicate" },
      ],
      blocked: [unmarked("fd00::7"), unmarked("10.96.1.7")],
    },
  };
  assert.deepEqual(planCommands(plan), [
    "ip rule add from 10.96.1.1 lookup 100 priority 1000 proto 201  # adopts the unmarked rule",
    "ip rule add from 10.96.1.9 lookup 100 priority 1000 proto 201  # adopts the unmarked rule",
    "ip rule del from 10.96.1.1 lookup 100 priority 1000  # adopted",
    "ip rule del from 10.96.1.9 lookup 100 priority 1000  # adopted",
    "ip rule del from 10.96.1.2 lookup 5 priority 1000  # unmarked copy of a rule the agent holds",
    "ip rule del from 10.96.1.8 lookup 5 priority 1000  # unmarked leftover: its source is an " +
    "IPRuleConfig's, its table or priority is not",
    "# left in place: from 10.96.1.7 lookup 100 priority 1000 (another rule the kernel would " +
    "delete instead comes first)",
    "# left in place: from fd00::7 lookup 100 priority 1000 (another rule the kernel would " +
    "delete instead comes first)",
  ]);
});

Deno.test("configRuleOf() keeps the name and the spec's source, table, priority and state", () => {
  assert.deepEqual(
    configRuleOf({
      metadata: { name: "web" },
      spec: { serviceIP: "10.96.1.1", table: 7, priority: 90, state: "absent" },
    }),
    { name: "web", serviceIP: "10.96.1.1", table: 7, priority: 90, state: "absent" },
  );
});
