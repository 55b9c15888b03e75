import assert from "node:assert/strict";
import { parse } from "yaml";
import {
  DEFAULT_PRIORITY,
  MAX_CIDRS,
  MAX_FAILED_ERROR_TEXT,
  MAX_FAILED_RULE_TEXT,
  MAX_FAILED_RULES,
  MAX_PRIORITY,
  MAX_PROTOCOL,
  MAX_TABLE,
  MIN_PRIORITY,
  MIN_TABLE,
  priorityProblem,
  RESERVED_TABLES,
  tableProblem,
} from "./limits.ts";

// deno-lint-ignore no-explicit-any
type Schema = any;

/** The spec and status schemas of a CRD in crds/. */
function schema(file: string): { spec: Schema; status: Schema } {
  const crd = parse(Deno.readTextFileSync(new URL(`../../crds/${file}`, import.meta.url)));
  const root = crd.spec.versions[0].schema.openAPIV3Schema.properties;
  return { spec: root.spec.properties, status: root.status?.properties };
}

/** The numbers a CEL rule such as `self != 253 && self != 254` excludes. */
function excluded(field: Schema): number[] {
  const rules: string[] = (field["x-kubernetes-validations"] ?? []).map((v: Schema) => v.rule);
  return rules.flatMap((rule) => [...rule.matchAll(/self != (\d+)/g)].map((m) => Number(m[1])));
}

function assertTable(field: Schema, where: string): void {
  assert.equal(field.minimum, MIN_TABLE, where);
  assert.equal(field.maximum, MAX_TABLE, where);
  assert.deepEqual(excluded(field), [...RESERVED_TABLES.keys()], where);
}

function assertPriority(field: Schema, where: string): void {
  assert.equal(field.minimum, MIN_PRIORITY, where);
  assert.equal(field.maximum, MAX_PRIORITY, where);
}

Deno.test("the IPRule CRD states the limits of src/api/limits.ts", () => {
  const { spec } = schema("iprules.yaml");
  assertTable(spec.table, "iprules spec.table");
  assertPriority(spec.priority, "iprules spec.priority");
  assert.equal(spec.priority.default, DEFAULT_PRIORITY);
  assert.equal(spec.cidrs.minItems, 1);
  assert.equal(spec.cidrs.maxItems, MAX_CIDRS);
});

Deno.test("the IPRuleConfig CRD states the limits of src/api/limits.ts", () => {
  const { spec } = schema("ipruleconfigs.yaml");
  assertTable(spec.table, "ipruleconfigs spec.table");
  assertPriority(spec.priority, "ipruleconfigs spec.priority");
});

Deno.test("the IPRuleNodeState CRD states the limits of src/api/limits.ts", () => {
  const { status } = schema("iprulenodestates.yaml");
  assert.equal(status.failedRules.maxItems, MAX_FAILED_RULES);
  assert.equal(status.failedRules.items.properties.rule.maxLength, MAX_FAILED_RULE_TEXT);
  assert.equal(status.failedRules.items.properties.error.maxLength, MAX_FAILED_ERROR_TEXT);
  assert.equal(status.protocol.maximum, MAX_PROTOCOL);
});

Deno.test("tableProblem() and priorityProblem() refuse exactly what the CRDs refuse", () => {
  for (const table of [MIN_TABLE, 100, 252, 256, MAX_TABLE]) {
    assert.equal(tableProblem(table), undefined, String(table));
  }
  for (const table of [0, -1, 1.5, MAX_TABLE + 1, NaN]) {
    assert.equal(tableProblem(table), `out of range 1..${MAX_TABLE}`, String(table));
  }
  assert.equal(
    tableProblem(254),
    "the kernel's main table (253, 254, 255 are reserved)",
  );
  for (const priority of [MIN_PRIORITY, DEFAULT_PRIORITY, MAX_PRIORITY]) {
    assert.equal(priorityProblem(priority), undefined, String(priority));
  }
  for (const priority of [0, MAX_PRIORITY + 1, 32767, 2.5]) {
    assert.equal(priorityProblem(priority), `out of range 1..${MAX_PRIORITY}`, String(priority));
  }
});
