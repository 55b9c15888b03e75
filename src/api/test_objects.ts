/** Test fixtures shared by the unit tests: API objects and conditions as the API returns them. */
import {
  type Agent,
  type AgentSpec,
  API_VERSION,
  type Condition,
  type IPRuleNodeStateStatus,
  type ObjectMeta,
} from "./types.ts";

/** When every fixture condition last changed. */
export const TEST_TRANSITION_TIME = "2026-01-01T00:00:00Z";

/** A condition `type` that is `status` for `reason`, with no message. */
export function testCondition(type: string, status: boolean, reason: string): Condition {
  return {
    type,
    status: status ? "True" : "False",
    reason,
    message: "",
    lastTransitionTime: TEST_TRANSITION_TIME,
  };
}

/** A node's status with `rules` desired and applied, none failed: Converged=True. */
export function convergedStatus(rules: number): IPRuleNodeStateStatus {
  return {
    desiredRules: rules,
    appliedRules: rules,
    failedCount: 0,
    conditions: [testCondition("Converged", true, "RulesApplied")],
  };
}

/** The Agent (always named `agent`) in `namespace`, with `spec` and more `metadata`. */
export function testAgent(
  namespace: string,
  spec: AgentSpec = {},
  metadata: Partial<ObjectMeta> = {},
): Agent {
  return {
    apiVersion: API_VERSION,
    kind: "Agent",
    metadata: { name: "agent", namespace, ...metadata },
    spec,
  };
}
