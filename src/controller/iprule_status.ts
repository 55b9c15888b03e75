/** IPRule status from the planner's report (pure). */
import type { IPRule, IPRuleStatus } from "../api/types.ts";
import type { IPRuleReport } from "./plan.ts";
import { sameConditions, setCondition } from "../api/conditions.ts";

/** Most conflicting Services named in a Conflict condition message. */
const MESSAGE_SERVICE_LIMIT = 5;

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
  const shown = report.conflicts.slice(0, MESSAGE_SERVICE_LIMIT).map((c) =>
    `${c.service.namespace}/${c.service.name} (LB IP ${c.lbIP}) went to IPRule "${c.winner}"`
  );
  const more = report.conflicts.length - shown.length;
  conditions = setCondition(
    conditions,
    report.conflicts.length > 0
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
  return { ...gen, matchedServices: report.matchedServices, conditions };
}

/** Whether a status write would change anything. */
export function sameIPRuleStatus(a: IPRuleStatus | undefined, b: IPRuleStatus): boolean {
  return a !== undefined && a.observedGeneration === b.observedGeneration &&
    a.matchedServices === b.matchedServices && sameConditions(a.conditions, b.conditions);
}
