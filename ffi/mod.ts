/**
 * The netlink rule engine: `ip rule` through libmnl and Deno FFI. `RuleSocket` adds, deletes and
 * lists rules in batches with one result per rule; `RuleSubscription` reports rule changes.
 *
 * ```ts
 * using socket = RuleSocket.open();
 * const results = await socket.addRules([
 *   { family: 4, src: "10.96.1.50", srcLen: 32, table: 100, priority: 1000, protocol: 99 },
 * ]);
 * ```
 * @module
 */
export { canonicalAddress, type Family } from "../net/address.ts";
export {
  InvalidRuleError,
  LibmnlLoadError,
  NetlinkDecodeError,
  NetlinkError,
  type NetlinkErrorOptions,
  type NetlinkOp,
} from "./errors.ts";
export { DEFAULT_LIBMNL_PATH, LIBMNL_PATH_ENV, resolveLibmnlPath } from "./library.ts";
export {
  formatRule,
  type KernelRule,
  type Rule,
  type RuleSelectors,
  type RuleSpec,
} from "./rule.ts";
export {
  type AddRulesOptions,
  type ListRulesOptions,
  type RuleList,
  type RuleResult,
  RuleSocket,
  type RuleSocketOptions,
} from "./rule_socket.ts";
export { RuleListImage } from "./rule_dump.ts";
export {
  type RuleChange,
  type RuleEvent,
  RuleSubscription,
  type RuleSubscriptionOptions,
} from "./rule_subscription.ts";
