/**
 * One reconcile of the node's rules: dump the kernel's IPv4 and IPv6 rules, plan against the
 * desired rules, apply the difference in one batch of adds and one of deletes. A rule that fails
 * is reported and the rest still apply; EPERM (no NET_ADMIN) is fatal.
 */
import {
  formatRule,
  type KernelRule,
  NetlinkError,
  type Rule,
  type RuleList,
  type RuleListImage,
  type RuleResult,
  type RuleSpec,
} from "../../ffi/mod.ts";
import type { FailedRule } from "../api/types.ts";
import type { Logger } from "../log.ts";
import {
  type DesiredRules,
  ipRuleCommand,
  planIsEmpty,
  planRules,
  type RulePlan,
} from "./rule_plan.ts";

/** The kernel's rule list as the reconciler uses it; `RuleSocket` is one. */
export interface RuleTable {
  /**
   * Every rule of both families (`ip rule show` + `ip -6 rule show`) with the list's image;
   * undefined when the list is exactly the one `since` is the image of.
   */
  listRulesIfChanged(since?: RuleListImage): Promise<RuleList | undefined>;
  /** Adds rules; one result per rule, in order. */
  addRules(rules: readonly RuleSpec[]): Promise<RuleResult[]>;
  /** Deletes rules; one result per rule, in order. */
  deleteRules(rules: readonly RuleSpec[]): Promise<RuleResult[]>;
}

/** What one reconcile found and did. */
export interface RuleReconcileResult {
  /** The plan computed from the dump. */
  plan: RulePlan;
  /** Desired rules, refused configs included. */
  desired: number;
  /** Desired rules present in the kernel after the reconcile. */
  applied: number;
  /** Rules that could not be added or deleted, and refused configs, with their errors. */
  failed: FailedRule[];
  /** Rules added. */
  added: number;
  /** Rules deleted (or found already gone), unmarked ones included. */
  deleted: number;
  /** Unmarked rules replaced by the agent's own copy (adoption, counted in `added` too). */
  adopted: number;
  /** Every desired rule present, no other own rule left, nothing failed. */
  converged: boolean;
  /**
   * The kernel's answers do not prove the outcome: an add met EEXIST though the dump showed no
   * identical rule. The caller reconciles again at once to see what the kernel holds.
   */
  recheck: boolean;
}

/** Options of a `RuleReconciler`. */
export interface RuleReconcilerOptions {
  /** The agent's rule protocol number. */
  protocol: number;
  /** Plan only: never add or delete. */
  dryRun?: boolean;
  /**
   * Take over unmarked rules identical to desired ones and delete unmarked leftovers of the
   * configs' sources (adoption.ts); needs the desired state's sources.
   */
  adoptUnmarked?: boolean;
}

/** Per-rule log lines up to this many changes in one reconcile; beyond, only the summary. */
const RULE_LOG_LIMIT = 20;

/** NET_ADMIN is missing: the agent cannot change rules at all. */
export class PermissionError extends Error {
  override name = "PermissionError";
  constructor(cause: NetlinkError, message = cause.message) {
    super(message, { cause });
  }
}

/**
 * A rule no reconcile ever wants (broadcast source, highest table and priority): deleting it
 * probes for NET_ADMIN without changing anything.
 */
function probeRule(protocol: number): RuleSpec {
  return {
    family: 4,
    src: "255.255.255.255",
    srcLen: 32,
    table: 4294967295,
    priority: 4294967295,
    protocol,
  };
}

/**
 * Checks that rules can be changed, before any change: the delete of a rule that cannot exist
 * answers ENOENT with NET_ADMIN and EPERM without. Throws PermissionError on EPERM.
 */
export async function checkPermission(table: RuleTable, protocol: number): Promise<void> {
  const [result] = await table.deleteRules([probeRule(protocol)]);
  if (result?.error?.code === "EPERM") {
    throw new PermissionError(
      result.error,
      "Cannot change rules: operation not permitted (EPERM); the process needs the NET_ADMIN " +
        "capability in this network namespace",
    );
  }
}

/** A reconcile that found nothing to do, and what it planned from. */
interface QuietReconcile {
  image: RuleListImage;
  rules: DesiredRules["rules"];
  version: number;
  result: RuleReconcileResult;
}

/** Converges the kernel's rules to the desired rules, one reconcile per call. */
export class RuleReconciler {
  readonly #table: RuleTable;
  readonly #options: RuleReconcilerOptions;
  /** Failures of the previous reconcile, so a rule that keeps failing is logged once. */
  #failing = new Map<string, string>();
  /**
   * The last reconcile with nothing to add or delete. The plan depends only on the desired
   * rules and the kernel's list: while both are the same, so is the result, and an idle resync
   * of 10k rules costs one dump and one compare instead of decoding and planning them.
   */
  #quiet: QuietReconcile | undefined;
  /** Rules whose add met EEXIST in the previous reconcile (formatRule text). */
  #existing = new Set<string>();

  constructor(table: RuleTable, options: RuleReconcilerOptions) {
    this.#table = table;
    this.#options = options;
  }

  /** Dumps, plans and (unless dry-run) applies; throws PermissionError on EPERM. */
  async reconcile(desired: DesiredRules, log: Logger): Promise<RuleReconcileResult> {
    const quiet = this.#quiet?.rules === desired.rules && this.#quiet.version === desired.version
      ? this.#quiet
      : undefined;
    const list = await this.#table.listRulesIfChanged(quiet?.image);
    if (list === undefined) return quiet!.result;
    this.#quiet = undefined;
    const result = await this.#apply(desired, list.rules, log);
    if (planIsEmpty(result.plan)) {
      this.#quiet = {
        image: list.image,
        rules: desired.rules,
        version: desired.version,
        result,
      };
    }
    return result;
  }

  async #apply(
    desired: DesiredRules,
    kernel: readonly KernelRule[],
    log: Logger,
  ): Promise<RuleReconcileResult> {
    const { protocol, adoptUnmarked } = this.#options;
    const plan = planRules(desired.rules, kernel, {
      protocol,
      ...(adoptUnmarked && desired.sources ? { adopt: { sources: desired.sources } } : {}),
    });
    const failed: FailedRule[] = desired.invalid.map((c) => ({
      rule: c.rule,
      error: `IPRuleConfig "${c.config}": ${c.error}`,
    }));
    const total = desired.rules.size + desired.invalid.length;
    if (this.#options.dryRun) {
      return {
        plan,
        desired: total,
        applied: plan.satisfied,
        failed,
        added: 0,
        deleted: 0,
        adopted: 0,
        converged: planIsEmpty(plan) && failed.length === 0,
        recheck: false,
      };
    }
    const adoption = plan.adoption ?? { adopt: [], remove: [], blocked: [] };
    const verbose = plan.add.length + plan.delete.length + adoption.adopt.length +
        adoption.remove.length <= RULE_LOG_LIMIT;
    const note = (message: string, fields: Record<string, unknown>) =>
      verbose ? log.info(message, fields) : log.debug(message, fields);
    // Adds first: a rule that moves to another table or priority never leaves a gap, and an
    // adopted unmarked rule is deleted only once its marked copy is in (below).
    const toAdd = [...plan.add, ...adoption.adopt.map((a) => a.rule)];
    const adds = toAdd.length > 0 ? await this.#table.addRules(toAdd) : [];
    let added = 0;
    let adopted = 0;
    let recheck = false;
    const existing = new Set<string>();
    // Unmarked rules to delete: those whose marked copy was added, duplicates and leftovers.
    const unmarked: KernelRule[] = [];
    const reasons = new Map<KernelRule, string>();
    for (const [i, { rule, error }] of adds.entries()) {
      const adopting = i >= plan.add.length ? adoption.adopt[i - plan.add.length] : undefined;
      if (error === undefined) {
        added++;
        if (adopting === undefined) {
          note("Rule added", { rule: ipRuleCommand("add", rule) });
        } else {
          adopted++;
          unmarked.push(adopting.replaces);
          reasons.set(adopting.replaces, "adopted");
          note("Rule adopted", {
            rule: ipRuleCommand("add", rule),
            replaces: ipRuleCommand("del", adopting.replaces),
          });
        }
      } else if (error.code === "EEXIST") {
        // The dump showed no identical rule, yet the kernel's duplicate check (which ignores a
        // destination or tos the new rule lacks) found one; for an adoption, the unmarked rule
        // stays. Either the rule came
        // back meanwhile, or another rule blocks it: the next reconcile tells, and a rule that
        // meets EEXIST twice in a row is reported as failed.
        const key = formatRule(rule);
        existing.add(key);
        if (this.#existing.has(key)) {
          failed.push({
            rule: key,
            error: `${error.message}: the kernel holds a rule it treats as the same (same ` +
              "table and priority, other selectors such as a destination), which blocks this one",
          });
        } else {
          recheck = true;
        }
      } else {
        failed.push(this.#failure(rule, error));
      }
    }
    this.#existing = existing;
    for (const { rule, reason } of adoption.remove) {
      unmarked.push(rule);
      reasons.set(rule, reason);
    }
    // Own rules first: a protocol-less delete of an unmarked rule of the same source, table and
    // priority must find them gone (adoption.ts); the socket keeps this order per priority.
    const toDelete = [...plan.delete, ...unmarked];
    const deletes = toDelete.length > 0 ? await this.#table.deleteRules(toDelete) : [];
    let deleted = 0;
    for (const [i, { rule, error }] of deletes.entries()) {
      if (error === undefined || error.code === "ENOENT") {
        deleted++;
        const reason = i >= plan.delete.length ? reasons.get(toDelete[i]!) : undefined;
        note(reason === undefined ? "Rule deleted" : "Unmarked rule deleted", {
          rule: ipRuleCommand("del", rule),
          ...(reason === undefined ? {} : { reason }),
        });
      } else {
        failed.push(this.#failure(rule, error));
      }
    }
    this.#logFailures(failed, log);
    return {
      plan,
      desired: total,
      applied: plan.satisfied + added,
      failed,
      added,
      deleted,
      adopted,
      converged: failed.length === 0 && !recheck,
      recheck,
    };
  }

  /**
   * Puts back desired rules someone else deleted, without a dump (the kernel event named them):
   * the repair of drift takes one add instead of a full reconcile. Returns how many were added
   * and whether any failed or met EEXIST (the caller then runs a full reconcile, which tells).
   */
  async restore(rules: readonly Rule[], log: Logger): Promise<{ added: number; failed: boolean }> {
    if (this.#options.dryRun || rules.length === 0) return { added: 0, failed: false };
    let added = 0;
    let failed = false;
    const verbose = rules.length <= RULE_LOG_LIMIT;
    for (const { rule, error } of await this.#table.addRules(rules)) {
      if (error === undefined) {
        added++;
        if (verbose) log.info("Rule restored", { rule: ipRuleCommand("add", rule) });
        else log.debug("Rule restored", { rule: ipRuleCommand("add", rule) });
      } else if (error.code === "EPERM") {
        throw new PermissionError(error);
      } else {
        // EEXIST too: the rule is back, or another one blocks it; the full reconcile tells.
        failed = true;
      }
    }
    return { added, failed };
  }

  #failure(rule: RuleSpec, error: NetlinkError): FailedRule {
    if (error.code === "EPERM") throw new PermissionError(error);
    return { rule: formatRule(rule), error: error.message };
  }

  /** Logs failures that are new or changed since the previous reconcile. */
  #logFailures(failed: readonly FailedRule[], log: Logger): void {
    const now = new Map(failed.map((f) => [f.rule, f.error]));
    for (const [rule, error] of now) {
      if (this.#failing.get(rule) !== error) log.warn("Rule failed", { rule, error });
    }
    for (const rule of this.#failing.keys()) {
      if (!now.has(rule)) log.info("Rule no longer failing", { rule });
    }
    this.#failing = now;
  }
}
