import assert from "node:assert/strict";
import { API_VERSION, type IPRule } from "../api/types.ts";
import { parseIP } from "../ip.ts";
import { compareMatches, type CompiledRule, type Match, RuleSet } from "./plan_rules.ts";

function ipRule(
  name: string,
  spec: Partial<IPRule["spec"]> & { cidrs: string[] },
  deleting = false,
): IPRule {
  return {
    apiVersion: API_VERSION,
    kind: "IPRule",
    metadata: {
      name,
      generation: 1,
      ...(deleting ? { deletionTimestamp: "2026-01-01T00:00:00Z" } : {}),
    },
    spec: { table: 100, priority: 1000, ...spec },
  };
}

/** The names of the IPRules matching `address`, best first, with their prefix lengths. */
function lookup(rules: RuleSet, address: string): string[] {
  return rules.lookup(parseIP(address)!).map((m) => `${m.rule.name}/${m.prefixLength}`);
}

function match(name: string, prefixLength: number, priority = 1000): Match {
  return { rule: { name, priority } as CompiledRule, prefixLength };
}

Deno.test("compareMatches() orders by longer prefix, then lower priority, then name", () => {
  const sorted = [
    match("b", 24),
    match("a", 16),
    match("c", 24, 10),
    match("a", 24),
    match("a", 24),
  ].sort(compareMatches).map((m) => `${m.rule.name}/${m.prefixLength}/${m.rule.priority}`);
  assert.deepEqual(sorted, ["c/24/10", "a/24/1000", "a/24/1000", "b/24/1000", "a/16/1000"]);
  assert.equal(compareMatches(match("a", 24), match("a", 24)), 0);
  assert.ok(compareMatches(match("b", 24), match("a", 24)) > 0);
  assert.ok(compareMatches(match("a", 24), match("b", 24)) < 0);
});

Deno.test("RuleSet refuses each invalid spec with a message naming the field and value", () => {
  const cases: [Partial<IPRule["spec"]> & { cidrs: string[] }, string][] = [
    [{ cidrs: [] }, "spec.cidrs must not be empty"],
    [{ cidrs: ["10.0.0.0/8", "nope"] }, 'spec.cidrs[1] "nope" is not a valid CIDR'],
    [{ cidrs: ["10.0.0.1/8"] }, 'spec.cidrs[0] "10.0.0.1/8" has host bits set'],
    [
      { cidrs: ["10.0.0.0/8", "fd00::/8", "10.0.0.0/8"] },
      'spec.cidrs[2] "10.0.0.0/8" is a duplicate',
    ],
    [{ cidrs: ["10.0.0.0/8"], table: 254 }, 'spec.table "254" is the kernel\'s main table'],
    [{ cidrs: ["10.0.0.0/8"], priority: 0 }, 'spec.priority "0" is out of range'],
    [
      {
        cidrs: ["10.0.0.0/8"],
        serviceSelector: { matchExpressions: [{ key: "a", operator: "In", values: [] }] },
      },
      'spec.serviceSelector.matchExpressions[0].values must not be empty for operator "In"',
    ],
    [
      {
        cidrs: ["10.0.0.0/8"],
        namespaceSelector: {
          matchExpressions: [
            { key: "a", operator: "Exists" },
            { key: "b", operator: "NotIn" },
          ],
        },
      },
      'spec.namespaceSelector.matchExpressions[1].values must not be empty for operator "NotIn"',
    ],
    [
      {
        cidrs: ["10.0.0.0/8"],
        serviceSelector: {
          matchExpressions: [{ key: "a", operator: "DoesNotExist", values: ["x"] }],
        },
      },
      'spec.serviceSelector.matchExpressions[0].values must be empty for operator "DoesNotExist"',
    ],
  ];
  for (const [spec, problem] of cases) {
    const rules = new RuleSet([ipRule("r", spec)]);
    const found = rules.invalid.get("r") ?? "";
    assert.ok(found.startsWith(problem), `${found} (expected ${problem})`);
    assert.equal(rules.valid.size, 0, problem);
  }
  // Valid selectors of each operator.
  const ok = new RuleSet([ipRule("r", {
    cidrs: ["10.0.0.0/8"],
    serviceSelector: {
      matchExpressions: [
        { key: "a", operator: "In", values: ["x"] },
        { key: "b", operator: "NotIn", values: ["y"] },
        { key: "c", operator: "Exists" },
        { key: "d", operator: "DoesNotExist", values: [] },
      ],
    },
  })]);
  assert.deepEqual([...ok.invalid.keys()], []);
});

Deno.test("RuleSet compiles a spec with its defaults, skips IPRules being deleted, tells namespace selectors", () => {
  const rules = new RuleSet([
    ipRule("plain", { cidrs: ["10.0.0.0/8"], table: 7, priority: 9 }),
    ipRule("gone", { cidrs: ["10.0.0.0/8"] }, true),
  ]);
  const plain = rules.valid.get("plain");
  assert.deepEqual(
    [plain?.name, plain?.table, plain?.priority, plain?.source, plain?.cidrs.map((c) => c.text)],
    ["plain", 7, 9, "ClusterIP", ["10.0.0.0/8"]],
  );
  assert.equal("serviceSelector" in plain!, false);
  assert.equal("namespaceSelector" in plain!, false);
  assert.equal(rules.valid.has("gone"), false);
  assert.equal(rules.invalid.has("gone"), false);
  assert.equal(rules.namespaceSelectors, false);
  const selecting = new RuleSet([
    ipRule("a", { cidrs: ["10.0.0.0/8"] }),
    ipRule("b", {
      cidrs: ["10.1.0.0/16"],
      source: "LoadBalancerIP",
      serviceSelector: { matchLabels: { app: "web" } },
      namespaceSelector: { matchLabels: { team: "x" } },
    }),
    ipRule("c", { cidrs: ["10.2.0.0/16"] }),
  ]);
  assert.equal(selecting.namespaceSelectors, true);
  const b = selecting.valid.get("b");
  assert.deepEqual(
    [b?.source, b?.serviceSelector, b?.namespaceSelector],
    ["LoadBalancerIP", { matchLabels: { app: "web" } }, { matchLabels: { team: "x" } }],
  );
});

Deno.test("RuleSet.lookup() finds every IPRule containing an address, each once by its longest CIDR, best first", () => {
  const rules = new RuleSet([
    ipRule("wide", { cidrs: ["10.0.0.0/8"] }),
    ipRule("narrow", { cidrs: ["10.1.2.0/24", "10.1.0.0/16"] }),
    ipRule("odd", { cidrs: ["10.1.2.0/23"], priority: 5 }),
    ipRule("elsewhere", { cidrs: ["192.168.0.0/16", "fd00::/8"] }),
    ipRule("v6", { cidrs: ["fd00:1::/32", "::/0"] }),
    ipRule("all", { cidrs: ["0.0.0.0/0"] }),
  ]);
  assert.deepEqual(lookup(rules, "10.1.2.3"), [
    "narrow/24",
    "odd/23",
    "wide/8",
    "all/0",
  ]);
  assert.deepEqual(lookup(rules, "10.1.3.1"), ["odd/23", "narrow/16", "wide/8", "all/0"]);
  assert.deepEqual(lookup(rules, "10.200.0.1"), ["wide/8", "all/0"]);
  assert.deepEqual(lookup(rules, "172.16.0.1"), ["all/0"]);
  assert.deepEqual(lookup(rules, "fd00:1::5"), ["v6/32", "elsewhere/8"]);
  assert.deepEqual(lookup(rules, "2001:db8::1"), ["v6/0"]);
  assert.deepEqual(lookup(new RuleSet([]), "10.0.0.1"), []);
  // A rule's longest CIDR counts, in whatever order its CIDRs and the rules come.
  const nested = new RuleSet([
    ipRule("nested", { cidrs: ["10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24"] }),
    ipRule("middle", { cidrs: ["10.1.0.0/20"] }),
  ]);
  assert.deepEqual(lookup(nested, "10.1.2.3"), ["nested/24", "middle/20"]);
});

Deno.test("RuleSet keeps the compiled object of an unchanged spec, and tells what changed since", () => {
  const first = new RuleSet([
    ipRule("same", { cidrs: ["10.0.0.0/8"] }),
    ipRule("moved", { cidrs: ["10.1.0.0/16"] }),
    ipRule("dropped", { cidrs: ["10.2.0.0/16"] }),
    ipRule("broken", { cidrs: [] }),
    ipRule("stays-broken", { cidrs: ["nope"] }),
  ]);
  const second = new RuleSet([
    ipRule("same", { cidrs: ["10.0.0.0/8"] }),
    ipRule("moved", { cidrs: ["10.3.0.0/16"] }),
    ipRule("added", { cidrs: ["10.4.0.0/16"] }),
    ipRule("broken", { cidrs: ["10.5.0.0/16"] }),
    ipRule("stays-broken", { cidrs: ["nope"] }),
  ], first);
  assert.equal(second.valid.get("same"), first.valid.get("same"));
  const { names, cidrs } = second.changedSince(first);
  assert.deepEqual([...names].sort(), ["added", "broken", "dropped", "moved"]);
  assert.deepEqual(cidrs.map((c) => c.text).sort(), [
    "10.1.0.0/16",
    "10.2.0.0/16",
    "10.3.0.0/16",
    "10.4.0.0/16",
    "10.5.0.0/16",
  ]);
  // An IPRule whose problem changes is changed too; one that turns invalid names its old CIDRs.
  const third = new RuleSet([
    ipRule("same", { cidrs: ["10.0.0.0/8"] }),
    ipRule("moved", { cidrs: ["10.3.0.0/16"] }),
    ipRule("added", { cidrs: ["10.4.0.0/16"] }),
    ipRule("broken", { cidrs: ["10.5.0.0/16"], priority: 0 }),
    ipRule("stays-broken", { cidrs: ["still nope"] }),
  ], second);
  const later = third.changedSince(second);
  assert.deepEqual([...later.names].sort(), ["broken", "stays-broken"]);
  assert.deepEqual(later.cidrs.map((c) => c.text), ["10.5.0.0/16"]);
  assert.deepEqual([...third.changedSince(third).names], []);
});
