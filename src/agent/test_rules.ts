/** Test fixture shared by the agent's unit tests: a rule as a kernel dump reports it. */
import type { KernelRule, RuleSpec } from "../../ffi/mod.ts";

/** `rule` as `listRules()` returns it: no other selectors, a plain `from X lookup T`. */
export function kernelRule(rule: RuleSpec, extra: Partial<KernelRule> = {}): KernelRule {
  return {
    action: 1,
    dst: rule.family === 4 ? "0.0.0.0" : "::",
    dstLen: 0,
    tos: 0,
    flags: 0,
    iif: "",
    oif: "",
    fwmark: 0,
    fwmask: 0,
    goto: 0,
    extra: new Uint8Array(),
    plain: true,
    ...rule,
    ...extra,
  };
}
