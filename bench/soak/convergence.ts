/**
 * What "converged" means at the end of a soak (invariants 3 and 4; pure): every IPRuleConfig is
 * exactly what the pure planner computes from the final Services and IPRules (so no write of
 * the controller was lost across leader changes), every node holds exactly the rules those
 * configs ask for, and every IPRuleNodeState says so.
 */
import type {
  IPRule,
  IPRuleConfig,
  IPRuleConfigSpec,
  IPRuleNodeStateStatus,
  ServiceInfo,
} from "../../src/api/types.ts";
import { planConfigs } from "../../src/controller/plan.ts";
import { type KernelSample, type RuleKey, ruleKey } from "./checker.ts";

/** The configs the planner wants present, by name, from Services, IPRules and namespaces. */
export function plannedConfigs(input: {
  services: readonly ServiceInfo[];
  ipRules: readonly IPRule[];
  namespaceLabels: ReadonlyMap<string, Readonly<Record<string, string>>>;
}): Map<string, IPRuleConfigSpec> {
  // With no existing config every planned one is a create: the whole desired set.
  const plan = planConfigs({ ...input, configs: [] }, { now: 0, graceMs: 0 });
  const planned = new Map<string, IPRuleConfigSpec>();
  for (const change of plan.changes) {
    if (change.op === "create") planned.set(change.name, change.config.spec);
  }
  return planned;
}

/** The rule a config asks for. */
export function configKey(spec: Pick<IPRuleConfigSpec, "serviceIP" | "table" | "priority">) {
  return ruleKey({
    src: spec.serviceIP,
    srcLen: spec.serviceIP.includes(":") ? 128 : 32,
    table: spec.table,
    priority: spec.priority,
  });
}

function refs(spec: IPRuleConfigSpec): string {
  return JSON.stringify([spec.service, spec.services, spec.ipRule]);
}

/** What the final state of a soak still lacks; empty when converged. */
export function differences(input: {
  planned: ReadonlyMap<string, IPRuleConfigSpec>;
  configs: readonly IPRuleConfig[];
  kernels: ReadonlyMap<string, KernelSample>;
  nodeStates: ReadonlyMap<string, IPRuleNodeStateStatus | undefined>;
}): string[] {
  const out: string[] = [];
  const byName = new Map(input.configs.map((c) => [c.metadata.name, c]));
  for (const [name, want] of input.planned) {
    const have = byName.get(name)?.spec;
    if (!have) out.push(`IPRuleConfig ${name} missing (want ${configKey(want)})`);
    else if (have.state !== "present") out.push(`IPRuleConfig ${name} is ${have.state}`);
    else if (configKey(have) !== configKey(want)) {
      out.push(`IPRuleConfig ${name} asks for "${configKey(have)}", want "${configKey(want)}"`);
    } else if (refs(have) !== refs(want)) {
      out.push(`IPRuleConfig ${name} names ${refs(have)}, want ${refs(want)}`);
    }
  }
  for (const config of input.configs) {
    if (config.spec.state === "present" && !input.planned.has(config.metadata.name)) {
      out.push(`IPRuleConfig ${config.metadata.name} present, but nothing asks for it`);
    }
  }
  const desired = new Set<RuleKey>([...input.planned.values()].map(configKey));
  for (const [node, sample] of input.kernels) {
    for (const key of desired) if (!sample.present.has(key)) out.push(`${node}: missing ${key}`);
    for (const key of sample.own) if (!desired.has(key)) out.push(`${node}: not desired ${key}`);
    const status = input.nodeStates.get(node);
    const converged = status?.conditions?.find((c) => c.type === "Converged");
    if (
      converged?.status !== "True" || status?.desiredRules !== desired.size ||
      status.appliedRules !== desired.size || status.failedCount !== 0
    ) {
      out.push(
        `${node}: IPRuleNodeState says Converged=${converged?.status ?? "?"} desired=${
          status?.desiredRules ?? "?"
        } applied=${status?.appliedRules ?? "?"} failed=${status?.failedCount ?? "?"}, want ` +
          `Converged=True desired=applied=${desired.size} failed=0`,
      );
    }
  }
  return out;
}
