/** IPRule status from the planner's report, and the deprecation notice (pure). */
import type { IPRule, IPRuleStatus } from "../api/types.ts";
import type { IPRuleReport, PlanEvent } from "./plan.ts";
import { sameConditions, setCondition } from "../api/conditions.ts";

/** Condition type set while an IPRule uses a deprecated field. */
export const DEPRECATED = "Deprecated";

/** Why an IPRule's spec is deprecated, or undefined when it is not. */
function deprecation(rule: IPRule): string | undefined {
  const { cidr, cidrs } = rule.spec;
  if (cidr === undefined) return undefined;
  const read = cidrs.length === 1
    ? `it is read as spec.cidrs ["${cidr}"]`
    : `it is set together with spec.cidrs (refused by the CRD since) and both are routed`;
  return `spec.cidr is deprecated (the original operator's single CIDR): ${read}; ` +
    "write spec.cidrs instead";
}

/** The Warning Event of an IPRule that uses a deprecated field, if it does (repeats are the
 * recorder's to drop). */
export function deprecationEvents(rule: IPRule): PlanEvent[] {
  const note = deprecation(rule);
  if (note === undefined) return [];
  return [{
    regarding: { kind: "IPRule", name: rule.metadata.name },
    type: "Warning",
    reason: "DeprecatedField",
    note,
  }];
}

/** The status an IPRule should have after a reconcile. */
export function ipRuleStatus(rule: IPRule, report: IPRuleReport, now: string): IPRuleStatus {
  const generation = rule.metadata.generation;
  const gen = generation === undefined ? {} : { observedGeneration: generation };
  let conditions = rule.status?.conditions;
  conditions = setCondition(
    conditions,
    report.invalid
      ? { type: "Ready", status: "False", reason: "InvalidSpec", message: report.invalid, ...gen }
      : {
        type: "Ready",
        status: "True",
        reason: "Reconciled",
        message: `Routing ${report.matchedServices} Service(s)`,
        ...gen,
      },
    now,
  );
  const shown = report.conflicts.map((c) =>
    `${c.service.namespace}/${c.service.name} (LB IP ${c.lbIP}) went to IPRule "${c.winner}"`
  );
  const more = report.conflictCount - shown.length;
  conditions = setCondition(
    conditions,
    report.conflictCount > 0
      ? {
        type: "Conflict",
        status: "True",
        reason: "LostToOtherIPRule",
        message: shown.join("; ") + (more > 0 ? `; and ${more} more` : ""),
        ...gen,
      }
      : { type: "Conflict", status: "False", reason: "NoConflict", message: "", ...gen },
    now,
  );
  // Set only while a deprecated field is used: IPRules written with today's API carry none.
  const deprecated = deprecation(rule);
  conditions = deprecated === undefined
    ? conditions.filter((c) => c.type !== DEPRECATED)
    : setCondition(conditions, {
      type: DEPRECATED,
      status: "True",
      reason: "DeprecatedField",
      message: deprecated,
      ...gen,
    }, now);
  return { ...gen, matchedServices: report.matchedServices, conditions };
}

/** Whether a status write would change anything. */
export function sameIPRuleStatus(a: IPRuleStatus | undefined, b: IPRuleStatus): boolean {
  return a !== undefined && a.observedGeneration === b.observedGeneration &&
    a.matchedServices === b.matchedServices && sameConditions(a.conditions, b.conditions);
}
