/**
 * Pure planning of the opt-in adoption of unmarked rules (`--adopt-unmarked-rules`): what the
 * original operator left in the kernel, rules without a protocol (0, `proto unspec`), taken
 * over or removed. No I/O: the kernel's dump and the desired rules in, operations out.
 *
 * - An unmarked plain rule identical to a desired rule the agent does not hold is adopted: the
 *   agent adds its own marked copy, then deletes the unmarked one. Adding first is what keeps the
 *   rule in the kernel at every instant: the kernel's duplicate check (`rule_exists`, with
 *   NLM_F_EXCL) compares the protocol, so the marked copy is not refused while the unmarked one
 *   exists (tests/netns/adoption_test.ts shows it on the kernel). Should a kernel refuse it
 *   anyway (EEXIST), the unmarked rule is not deleted and the add is reported as failed.
 * - An unmarked plain rule identical to a desired rule the agent already holds is a duplicate,
 *   deleted.
 * - An unmarked plain rule whose source is the serviceIP of an IPRuleConfig (present or absent)
 *   but which no desired rule matches is a leftover (the original's table or priority changed,
 *   or its config went absent on a node that never acknowledged), deleted.
 * - Every other rule is untouched, whatever it looks like.
 *
 * The kernel cannot be told to delete only the rule with protocol 0: a delete request without a
 * protocol matches any protocol, and every other selector it leaves out matches anything too, so
 * it removes the FIRST rule in the kernel's list with the same source, prefix length, table,
 * priority and action (`rule_find`). An unmarked rule is therefore deleted only when every rule
 * before it in the dump that such a request also matches is itself deleted before it (our own
 * rules, deleted by exact requests first, or unmarked rules deleted the same way); otherwise it
 * is left in place and reported as blocked. The marked copy an adoption adds lands after every
 * rule of the same priority (the kernel inserts after the last rule with a lower or equal
 * priority), so it never comes first.
 */
import type { Family, KernelRule, Rule } from "../../ffi/mod.ts";
import { FR_ACT_TO_TBL } from "../../ffi/constants.ts";
import type { RuleSet } from "./rule_plan.ts";

/** The protocol of the rules adoption looks at: none (`proto unspec`), as the original adds them. */
export const UNMARKED = 0;

/** The sources of the IPRuleConfigs, present or absent (canonical text). */
export interface Sources {
  has(src: string): boolean;
}

/** An unmarked rule replaced by the agent's own copy. */
export interface Adoption {
  /** The desired rule, added with the agent's protocol. */
  rule: Rule;
  /** The unmarked rule it replaces, deleted once `rule` was added. */
  replaces: KernelRule;
}

/** Why an unmarked rule is deleted without a replacement. */
export type RemovalReason = "duplicate" | "leftover";

/** An unmarked rule to delete. */
export interface Removal {
  rule: KernelRule;
  reason: RemovalReason;
}

/** What adoption does in one reconcile. */
export interface AdoptionPlan {
  /** Unmarked rules replaced by the agent's own copy (add, then delete). */
  adopt: Adoption[];
  /** Unmarked rules deleted: duplicates of own rules and leftovers of configs. */
  remove: Removal[];
  /** Unmarked rules adoption would change but cannot delete alone (see the module doc). */
  blocked: KernelRule[];
}

/** `held[i]`: desired rule i is held by no rule (yet). */
export const HELD_NO = 0;
/** `held[i]`: desired rule i is held by an own rule. */
export const HELD_OWN = 1;
/** `held[i]`: desired rule i is adopted (its own copy is added this reconcile). */
export const HELD_ADOPTED = 2;

/** The adoption step's input: the planner's state after it matched the own rules. */
export interface AdoptionInput {
  /** The desired rules. */
  wanted: RuleSet;
  /** Per desired rule, whether an own rule holds it; adopted ones are marked here. */
  held: Uint8Array;
  /** The kernel's rules in dump order (the order of its list). */
  kernel: readonly KernelRule[];
  /** Own rules the plan deletes (they go before any unmarked one). */
  ownDeletes: readonly KernelRule[];
  /** Sources of the IPRuleConfigs. */
  sources: Sources;
}

function fullLength(family: Family): number {
  return family === 4 ? 32 : 128;
}

/**
 * The adoption of one reconcile. Marks each adopted desired rule `HELD_ADOPTED` in
 * `input.held`; a desired rule whose unmarked copy is blocked stays unheld (the planner then
 * counts that copy as satisfying it, as without adoption).
 */
export function planAdoption(input: AdoptionInput): AdoptionPlan {
  const { wanted, held, kernel, sources } = input;
  const candidates = new Map<KernelRule, { at: number } | RemovalReason>();
  const adopting = new Set<number>();
  for (const rule of kernel) {
    if (rule.protocol !== UNMARKED || !rule.plain || rule.srcLen !== fullLength(rule.family)) {
      continue;
    }
    const at = wanted.indexOf(rule);
    if (at < 0) {
      if (sources.has(rule.src)) candidates.set(rule, "leftover");
    } else if (held[at] === HELD_NO && !adopting.has(at)) {
      adopting.add(at);
      candidates.set(rule, { at });
    } else {
      candidates.set(rule, "duplicate");
    }
  }
  const plan: AdoptionPlan = { adopt: [], remove: [], blocked: [] };
  if (candidates.size === 0) return plan;
  const safe = deletableAlone(kernel, new Set(candidates.keys()), new Set(input.ownDeletes));
  for (const [rule, what] of candidates) {
    if (!safe.has(rule)) {
      plan.blocked.push(rule);
    } else if (typeof what === "string") {
      plan.remove.push({ rule, reason: what });
    } else {
      held[what.at] = HELD_ADOPTED;
      plan.adopt.push({ rule: wanted.values()[what.at]!, replaces: rule });
    }
  }
  return plan;
}

/** What a delete request without protocol matches of a rule: family, source, table, priority. */
function matchKey(rule: KernelRule): string {
  return `${rule.family} ${rule.src}/${rule.srcLen} ${rule.table} ${rule.priority}`;
}

/**
 * The `doomed` rules a protocol-less delete request removes and nothing else: walking the list
 * in kernel order, per match key, a doomed rule is safe while every rule before it with that key
 * is also deleted first (`gone`, or a safe doomed one); the first rule that stays blocks the
 * doomed rules after it.
 */
function deletableAlone(
  kernel: readonly KernelRule[],
  doomed: ReadonlySet<KernelRule>,
  gone: ReadonlySet<KernelRule>,
): Set<KernelRule> {
  const blocked = new Set<string>();
  const safe = new Set<KernelRule>();
  for (const rule of kernel) {
    // A request with action "lookup" matches only lookup rules.
    if (rule.action !== FR_ACT_TO_TBL || gone.has(rule)) continue;
    const key = matchKey(rule);
    if (doomed.has(rule) && !blocked.has(key)) safe.add(rule);
    else blocked.add(key);
  }
  return safe;
}

/** Whether the plan changes anything. */
export function adoptionChanges(plan: AdoptionPlan | undefined): number {
  return plan === undefined ? 0 : plan.adopt.length + plan.remove.length;
}
