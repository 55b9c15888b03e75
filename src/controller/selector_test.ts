import assert from "node:assert/strict";
import { selectorMatches } from "./selector.ts";

const labels = { app: "web", tier: "front" };

Deno.test("selectorMatches() follows the label selector semantics of the API", () => {
  const cases: [string, Parameters<typeof selectorMatches>[0], boolean][] = [
    ["absent selector", undefined, true],
    ["empty selector", {}, true],
    ["matchLabels hit", { matchLabels: { app: "web" } }, true],
    ["matchLabels miss", { matchLabels: { app: "db" } }, false],
    ["In hit", { matchExpressions: [{ key: "tier", operator: "In", values: ["front"] }] }, true],
    ["In miss", { matchExpressions: [{ key: "tier", operator: "In", values: ["back"] }] }, false],
    ["NotIn absent key", {
      matchExpressions: [{ key: "zone", operator: "NotIn", values: ["a"] }],
    }, true],
    [
      "NotIn hit",
      { matchExpressions: [{ key: "app", operator: "NotIn", values: ["web"] }] },
      false,
    ],
    ["Exists", { matchExpressions: [{ key: "app", operator: "Exists" }] }, true],
    ["DoesNotExist", { matchExpressions: [{ key: "app", operator: "DoesNotExist" }] }, false],
    ["labels and expressions ANDed", {
      matchLabels: { app: "web" },
      matchExpressions: [{ key: "tier", operator: "DoesNotExist" }],
    }, false],
  ];
  for (const [name, selector, want] of cases) {
    assert.equal(selectorMatches(selector, labels), want, name);
  }
});
