/**
 * The allowlist of `task mutate`: surviving mutants shown equivalent (no test can tell them from
 * the original, because the program behaves the same). Each entry says why in `why`; the report
 * lists them apart and does not count them in the score. An entry names the mutant by file,
 * mutator, the trimmed source line where the mutant starts and its replacement, so it survives
 * edits elsewhere in the file; an entry that no longer matches a surviving mutant is reported as
 * stale.
 */
import type { EquivalentMutant } from "../../scripts/mutate_report.ts";

/** Surviving mutants that cannot be killed, with the reason. */
export const EQUIVALENT: readonly EquivalentMutant[] = [
  // src/controller/workqueue.ts
  {
    file: "src/controller/workqueue.ts",
    mutator: "EqualityOperator",
    line: "if (pending.due <= due) return;",
    replacement: "pending.due < due",
    why: "An equal due time replaces the pending timer by one due at the same moment: still one " +
      "timer, firing at the same time.",
  },
  {
    file: "src/controller/workqueue.ts",
    mutator: "ObjectLiteral",
    line: 'options.signal.addEventListener("abort", stop, { once: true });',
    replacement: "{}",
    why: "An AbortSignal fires abort at most once, and run() removes the listener when it returns.",
  },
  {
    file: "src/controller/workqueue.ts",
    mutator: "BooleanLiteral",
    line: 'options.signal.addEventListener("abort", stop, { once: true });',
    replacement: "false",
    why: "An AbortSignal fires abort at most once, and run() removes the listener when it returns.",
  },
  {
    file: "src/controller/workqueue.ts",
    mutator: "BlockStatement",
    line: "} finally {",
    replacement: "{}",
    why: "run() returns only once the queue is closed; the listener left behind can only call " +
      "close() again, which changes nothing (memory hygiene, not behaviour).",
  },
  {
    file: "src/controller/workqueue.ts",
    mutator: "StringLiteral",
    line: 'options.signal.removeEventListener("abort", stop);',
    replacement: '""',
    why: "As the removed finally block: a listener left on the signal can only close the closed " +
      "queue again.",
  },
  // src/agent/rule_plan.ts
  {
    file: "src/agent/rule_plan.ts",
    mutator: "ConditionalExpression",
    line: "return at < 0 ? undefined : this.#rules[at];",
    replacement: "false",
    why: "Reading position -1 of the rule array yields undefined, as the guard does.",
  },
  {
    file: "src/agent/rule_plan.ts",
    mutator: "ConditionalExpression",
    line: "else if (Array.isArray(entry)) {",
    replacement: "true",
    why:
      "#unlink is called with the rule's own position: a single (number) entry is always that position, handled above.",
  },
  {
    file: "src/agent/rule_plan.ts",
    mutator: "ConditionalExpression",
    line: "if (ip === undefined || error !== undefined) {",
    replacement: "false",
    why: "error is always set when the address does not parse.",
  },
  {
    file: "src/agent/rule_plan.ts",
    mutator: "UpdateOperator",
    line: "for (const config of configs) state.update(String(i++), config);",
    replacement: "i--",
    why: "The keys only need to be distinct; counting down keeps them so.",
  },
  {
    file: "src/agent/rule_plan.ts",
    mutator: "LogicalOperator",
    line: "if (sources === undefined || sourceOf === undefined) return;",
    replacement: "sources === undefined && sourceOf === undefined",
    why: "Both maps are created together in the constructor: both or neither are undefined.",
  },
  {
    file: "src/agent/rule_plan.ts",
    mutator: "ConditionalExpression",
    line: "if (sources === undefined || sourceOf === undefined) return;",
    replacement: "false",
    original: "sources === undefined",
    why: "Both maps are created together in the constructor: both or neither are undefined.",
  },
  {
    file: "src/agent/rule_plan.ts",
    mutator: "ConditionalExpression",
    line: "if (sources === undefined || sourceOf === undefined) return;",
    replacement: "false",
    original: "sourceOf === undefined",
    why: "Both maps are created together in the constructor: both or neither are undefined.",
  },
  {
    file: "src/agent/rule_plan.ts",
    mutator: "ConditionalExpression",
    line: "if (at >= 0 && held[at] === HELD_NO) {",
    replacement: "true",
    why:
      "held[-1] is undefined, never HELD_NO: the guard adds nothing (at both places the line stands).",
  },
  {
    file: "src/agent/rule_plan.ts",
    mutator: "ConditionalExpression",
    line: "if (rule.protocol === options.protocol || !rule.plain) continue;",
    replacement: "false",
    why:
      "After the first loop every plain own rule that is desired holds its rule (or was a duplicate of one that does): own rules change nothing in the second loop.",
  },
  {
    file: "src/agent/rule_plan.ts",
    mutator: "ConditionalExpression",
    line: "if (satisfied + (adoption?.adopt.length ?? 0) < wanted.size) {",
    replacement: "true",
    why: "A shortcut: with every desired rule held the loop below finds nothing to add.",
  },
  {
    file: "src/agent/rule_plan.ts",
    mutator: "EqualityOperator",
    line: "if (satisfied + (adoption?.adopt.length ?? 0) < wanted.size) {",
    replacement: "satisfied + (adoption?.adopt.length ?? 0) <= wanted.size",
    why: "A shortcut: with every desired rule held the loop below finds nothing to add.",
  },
  {
    file: "src/agent/rule_plan.ts",
    mutator: "ArithmeticOperator",
    line: "if (satisfied + (adoption?.adopt.length ?? 0) < wanted.size) {",
    replacement: "satisfied - (adoption?.adopt.length ?? 0)",
    why: "A shortcut: with every desired rule held the loop below finds nothing to add.",
  },
  {
    file: "src/agent/rule_plan.ts",
    mutator: "EqualityOperator",
    line: "for (let i = 0; i < rules.length; i++) if (held[i] === HELD_NO) add.push(rules[i]!);",
    replacement: "i <= rules.length",
    why: "held[length] is undefined, never HELD_NO: one extra step adds nothing.",
  },
  {
    file: "src/agent/rule_plan.ts",
    mutator: "Regex",
    line: 'const args = formatRule(rule).replace(/ protocol 0$/, "").replace(',
    replacement: "/ protocol 0/",
    why: "formatRule() ends every rule with `protocol N`, so the match is at the end anyway.",
  },
  {
    file: "src/agent/rule_plan.ts",
    mutator: "Regex",
    line: "/ protocol (\\d+)$/,",
    replacement: "/ protocol (\\d+)/",
    why: "formatRule() ends every rule with `protocol N`, so the match is at the end anyway.",
  },
  {
    file: "src/agent/rule_plan.ts",
    mutator: "Regex",
    line: '`# left in place: ${ipRuleCommand("del", rule).replace(/^ip (-6 )?rule del /, "")} ` +',
    replacement: "/ip (-6 )?rule del /",
    why: "Every command starts with `ip `; replace() takes the first match, the start.",
  },
  {
    file: "src/agent/rule_plan.ts",
    mutator: "ConditionalExpression",
    line: "this.#bySrc.set(src, rest.length === 1 ? rest[0]! : rest);",
    replacement: "false",
    why: "A one-element array is searched like the single entry it stands for (representation " +
      "only).",
  },
  // src/controller/agent_tally.ts
  {
    file: "src/controller/agent_tally.ts",
    mutator: "StringLiteral",
    line: '? ""',
    replacement: '"Stryker was here!"',
    why:
      "The key of no Agent only has to differ from every Agent's key (JSON arrays): any other text starts a walk that finds no change.",
  },
  {
    file: "src/controller/agent_tally.ts",
    mutator: "StringLiteral",
    line: '#selection = "";',
    replacement: '"Stryker was here!"',
    why: "The first agent() call then walks the nodes once more: no count changes (cost only).",
  },
  {
    file: "src/controller/agent_tally.ts",
    mutator: "ArrayDeclaration",
    line: ": JSON.stringify([agentNodeSelector(agent.spec), agent.spec.tolerations ?? []]);",
    replacement: '["Stryker was here"]',
    why:
      "Only absent and empty tolerations get different keys: a walk that finds no change (cost only).",
  },
  {
    file: "src/controller/agent_tally.ts",
    mutator: "ConditionalExpression",
    line: "if (key === this.#selection) return false;",
    replacement: "false",
    why:
      "The shortcut that skips the walk of every node for an unchanged selection: walking finds no change (cost only).",
  },
  {
    file: "src/controller/agent_tally.ts",
    mutator: "ConditionalExpression",
    line: "if (info === undefined) delete entry.info;",
    replacement: "false",
    why: "`info: undefined` and no info read the same.",
  },
  {
    file: "src/controller/agent_tally.ts",
    mutator: "ConditionalExpression",
    line: "if (state === undefined) delete entry.state;",
    replacement: "false",
    why: "`state: undefined` and no state read the same.",
  },
  {
    file: "src/controller/agent_tally.ts",
    mutator: "OptionalChaining",
    line: "const mark = entry?.state && drainMark(entry.facts.selected, entry.state);",
    replacement: "entry.state",
    why:
      "A node in #marksOff always has an entry: an entry is deleted only once neither Node nor state is left, and then its markOff is false.",
  },
  {
    file: "src/controller/agent_tally.ts",
    mutator: "ConditionalExpression",
    line: "if (mark) marks.push(mark);",
    replacement: "true",
    why:
      "A node is in #marksOff only while drainMark() of the same selection and state is defined.",
  },
  {
    file: "src/controller/agent_tally.ts",
    mutator: "ConditionalExpression",
    line: "if (info === undefined && state === undefined) this.#nodes.delete(name);",
    replacement: "false",
    why: "Keeps the entries of deleted nodes, all facts false: memory, not behaviour.",
  },
  {
    file: "src/controller/agent_tally.ts",
    mutator: "ConditionalExpression",
    line:
      "return a.selected === b.selected && a.awaited === b.awaited && a.converged === b.converged &&",
    replacement: "true",
    why:
      "A flip of selected alone moves no count: with a node state, markOff flips with it; without one and not awaited, the Agent reconcile reads nothing of the node.",
  },
  // src/controller/agent_status.ts
  {
    file: "src/controller/agent_status.ts",
    mutator: "StringLiteral",
    line: '(s.conditions ?? []).map((c) => `${c.type}=${c.status}/${c.reason}`).sort().join(",");',
    replacement: '""',
    why:
      "Joined without a separator two condition lists could only read the same if a reason embedded another condition's `Type=Status/`; reasons are CamelCase words (API conventions), without = or /.",
  },
  // ffi/rule_codec.ts
  {
    file: "ffi/rule_codec.ts",
    mutator: "BooleanLiteral",
    line: "view.setUint32(at, 0, true); // clears the padding of the u8",
    replacement: "false",
    why: "Writes zero: the same bytes in either byte order.",
  },
  {
    file: "ffi/rule_codec.ts",
    mutator: "BooleanLiteral",
    line: "view.setUint32(at + 4, 0, true);",
    replacement: "false",
    why: "Writes zero: the same bytes in either byte order.",
  },
  {
    file: "ffi/rule_codec.ts",
    mutator: "StringLiteral",
    line: 'if (!writeAddress(bytes, at + NLA_HDRLEN, family, text ?? "")) {',
    replacement: '"Stryker was here!"',
    why:
      "Any text that is no IPv4/IPv6 address fails the same way; the error names the field's own text, not the fallback.",
  },
  {
    file: "ffi/rule_codec.ts",
    mutator: "EqualityOperator",
    line: "if (srcLen > 0 && srcAt < 0) {",
    replacement: "srcAt <= 0",
    why:
      "An attribute's value offset is at least 32 (after the netlink and fib_rule headers), never 0.",
  },
  {
    file: "ffi/rule_codec.ts",
    mutator: "EqualityOperator",
    line: "if (dstLen > 0 && dstAt < 0) {",
    replacement: "dstAt <= 0",
    why:
      "An attribute's value offset is at least 32 (after the netlink and fib_rule headers), never 0.",
  },
  {
    file: "ffi/rule_codec.ts",
    mutator: "EqualityOperator",
    line:
      'src: srcAt < 0 ? (family === 4 ? "0.0.0.0" : "::") : formatAddress(bytes, srcAt, family),',
    replacement: "srcAt <= 0",
    why:
      "An attribute's value offset is at least 32 (after the netlink and fib_rule headers), never 0.",
  },
  {
    file: "ffi/rule_codec.ts",
    mutator: "EqualityOperator",
    line:
      'dst: dstAt < 0 ? (family === 4 ? "0.0.0.0" : "::") : formatAddress(bytes, dstAt, family),',
    replacement: "dstAt <= 0",
    why:
      "An attribute's value offset is at least 32 (after the netlink and fib_rule headers), never 0.",
  },
  {
    file: "ffi/rule_codec.ts",
    mutator: "EqualityOperator",
    line: "while (at + NLA_HDRLEN <= end) {",
    replacement: "at + NLA_HDRLEN < end",
    why:
      "Only a last attribute of exactly a header and no value is skipped: it carries no message and no offset.",
  },
  // src/agent/node_agent.ts
  {
    file: "src/agent/node_agent.ts",
    mutator: "BooleanLiteral",
    line: "#fullNeeded = true;",
    replacement: "false",
    why:
      "The first run is full anyway: #reconciledVersion starts at -1, which no desired.version equals.",
  },
  {
    file: "src/agent/node_agent.ts",
    mutator: "LogicalOperator",
    line: "debounceMs: options.debounceMs ?? WATCH_DEBOUNCE_MS,",
    replacement: "options.debounceMs && WATCH_DEBOUNCE_MS",
    why:
      "Only the length of the debounce (0 vs 5 ms) changes: timing, which unit tests do not assert.",
  },
  {
    file: "src/agent/node_agent.ts",
    mutator: "ObjectLiteral",
    line: "const nothing = new DesiredState({ protocol: this.#options.protocol }).snapshot();",
    replacement: "{}",
    why:
      "An empty desired set is empty whatever its protocol; the reconciler deletes by its own protocol.",
  },
  {
    file: "src/agent/node_agent.ts",
    mutator: "ConditionalExpression",
    line: "if (!desiredChanged && changes > 0) metrics.driftRepairs.inc(changes);",
    replacement: "true",
    why: "Adding 0 to a counter changes nothing.",
  },
  {
    file: "src/agent/node_agent.ts",
    mutator: "EqualityOperator",
    line: "if (!desiredChanged && changes > 0) metrics.driftRepairs.inc(changes);",
    replacement: "changes >= 0",
    why: "Adding 0 to a counter changes nothing.",
  },
  {
    file: "src/agent/node_agent.ts",
    mutator: "ConditionalExpression",
    line: "if (outcome.added) {",
    replacement: "true",
    why: "Adding 0 to the counters changes no value.",
  },
  // src/agent/node_state.ts
  {
    file: "src/agent/node_state.ts",
    mutator: "OptionalChaining",
    line: "previous?.appliedRules !== report.applied;",
    replacement: "previous.appliedRules",
    why:
      "Without a previous status the desiredRules comparison is already true: the || never reads appliedRules.",
  },
  {
    file: "src/agent/node_state.ts",
    mutator: "StringLiteral",
    line: '(s.conditions ?? []).map((c) => ({ ...c, lastTransitionTime: "" }));',
    replacement: '"Stryker was here!"',
    why:
      "Both statuses get the same placeholder time: only the text differs, never the comparison.",
  },
  {
    file: "src/agent/node_state.ts",
    mutator: "StringLiteral",
    line: '`${s.failedCount ?? 0}:${(s.failedRules ?? []).map((f) => f.rule).join("\\n")}`;',
    replacement: '""',
    why:
      "Failed rule texts all start with `from ` or `not from `: joined without a separator two lists still only read the same when they are.",
  },
  {
    file: "src/agent/node_state.ts",
    mutator: "ObjectLiteral",
    line: 'either.addEventListener("abort", () => resolve(), { once: true })',
    replacement: "{}",
    why: "An AbortSignal fires abort at most once.",
  },
  {
    file: "src/agent/node_state.ts",
    mutator: "BooleanLiteral",
    line: 'either.addEventListener("abort", () => resolve(), { once: true })',
    replacement: "false",
    why: "An AbortSignal fires abort at most once.",
  },
  {
    file: "src/agent/node_state.ts",
    mutator: "BlockStatement",
    line: "} finally {",
    replacement: "{}",
    why: "A stale wake aborts a controller nobody listens to any more.",
  },
  {
    file: "src/agent/node_state.ts",
    mutator: "ArrayDeclaration",
    line:
      "status: { ...next, failedRules: next.failedRules ?? [], draining: next.draining ?? null },",
    replacement: '["Stryker was here"]',
    why: "nodeStatus() always sets failedRules: the fallback is never used.",
  },
  {
    file: "src/agent/node_state.ts",
    mutator: "ConditionalExpression",
    line: "if (error instanceof ApiError && error.status === 404) this.#exists = false;",
    replacement: "true",
    why:
      "Any failed patch then re-reads the object before the next write: an extra read, the same status.",
  },
  {
    file: "src/agent/node_state.ts",
    mutator: "LogicalOperator",
    line: "if (error instanceof ApiError && error.status === 404) this.#exists = false;",
    replacement: "error instanceof ApiError || error.status === 404",
    why:
      "Any failed patch then re-reads the object before the next write: an extra read, the same status.",
  },
  // ffi/rule_dump.ts
  {
    file: "ffi/rule_dump.ts",
    mutator: "ArithmeticOperator",
    line: "const INITIAL_BYTES = 2 * DUMP_DATAGRAM_MAX;",
    replacement: "2 / DUMP_DATAGRAM_MAX",
    why:
      "Only the first capacity changes: space() grows the buffer to what each receive needs (allocation, not behaviour).",
  },
  {
    file: "ffi/rule_dump.ts",
    mutator: "EqualityOperator",
    line: "for (let i = 0; i < own.length; i++) if (own[i] !== words[i]) return false;",
    replacement: "i <= own.length",
    why:
      "Both arrays have the same length here: one step past the end compares undefined with undefined.",
  },
  {
    file: "ffi/rule_dump.ts",
    mutator: "ObjectLiteral",
    line:
      "readonly #header: MessageHeader = { offset: 0, length: 0, type: 0, flags: 0, seq: 0, pid: 0 };",
    replacement: "{}",
    why: "Every field of the shared header that a decoder reads is set before each use.",
  },
  {
    file: "ffi/rule_dump.ts",
    mutator: "EqualityOperator",
    line: "if (this.#bytes.length - this.#length < DUMP_DATAGRAM_MAX) {",
    replacement: "this.#bytes.length - this.#length <= DUMP_DATAGRAM_MAX",
    why: "Grows at exactly DUMP_DATAGRAM_MAX free bytes too: allocation, not behaviour.",
  },
  {
    file: "ffi/rule_dump.ts",
    mutator: "MethodExpression",
    line: "Math.max(this.#bytes.length * 2, this.#length + DUMP_DATAGRAM_MAX),",
    replacement: "Math.min(this.#bytes.length * 2, this.#length + DUMP_DATAGRAM_MAX)",
    why:
      "Since the buffer holds at least DUMP_DATAGRAM_MAX bytes, the smaller size is length + DUMP_DATAGRAM_MAX: still room for a datagram (it grows more often).",
  },
  {
    file: "ffi/rule_dump.ts",
    mutator: "ArithmeticOperator",
    line: "Math.max(this.#bytes.length * 2, this.#length + DUMP_DATAGRAM_MAX),",
    replacement: "this.#bytes.length / 2",
    why:
      "The other term (length + DUMP_DATAGRAM_MAX) is then the larger: still room for a datagram.",
  },
  {
    file: "ffi/rule_dump.ts",
    mutator: "ArithmeticOperator",
    line: "Math.max(this.#bytes.length * 2, this.#length + DUMP_DATAGRAM_MAX),",
    replacement: "this.#length - DUMP_DATAGRAM_MAX",
    why:
      "Twice a buffer of at least DUMP_DATAGRAM_MAX bytes with less than that free exceeds length + DUMP_DATAGRAM_MAX: the same size.",
  },
  {
    file: "ffi/rule_dump.ts",
    mutator: "ConditionalExpression",
    line: "if (write !== at) this.#bytes.copyWithin(write, at, at + size);",
    replacement: "true",
    why: "copyWithin() onto itself changes nothing.",
  },
  {
    file: "ffi/rule_dump.ts",
    mutator: "BooleanLiteral",
    line: "view.setUint32(write + 8, 0, true);",
    replacement: "false",
    why: "Writes zero: the same bytes in either byte order.",
  },
  {
    file: "ffi/rule_dump.ts",
    mutator: "BooleanLiteral",
    line: "view.setUint32(write + 12, 0, true);",
    replacement: "false",
    why: "Writes zero: the same bytes in either byte order.",
  },
  {
    file: "ffi/rule_dump.ts",
    mutator: "ConditionalExpression",
    line: "if (image.byteLength !== this.#length) return false;",
    replacement: "false",
    why: "RuleListImage.sameAs() compares the lengths itself.",
  },
  // src/agent/adoption.ts
  {
    file: "src/agent/adoption.ts",
    mutator: "ConditionalExpression",
    line: "if (candidates.size === 0) return plan;",
    replacement: "false",
    why: "A shortcut: with no candidate the loop below adds nothing to the plan.",
  },
  // src/agent/rule_plan.ts
  {
    file: "src/agent/rule_plan.ts",
    mutator: "ConditionalExpression",
    line: "if (before !== undefined) {",
    replacement: "true",
    why:
      "Without a former source the count read is NaN, and deleting the absent key changes nothing.",
  },
  {
    file: "src/agent/rule_plan.ts",
    mutator: "ConditionalExpression",
    line: "if (after !== undefined) {",
    replacement: "true",
    why:
      "Counts an `undefined` source, which no has(rule.src) asks for (sources are read only through has()).",
  },
  // src/agent/node_agent.ts
  {
    file: "src/agent/node_agent.ts",
    mutator: "ConditionalExpression",
    line: "this.#matterOptions = sources === undefined",
    replacement: "false",
    why:
      "`sources: undefined` reads as no sources: changeMatters() asks `options.sources?.has(...) === true`.",
  },
  {
    file: "src/agent/node_agent.ts",
    mutator: "ConditionalExpression",
    line: 'trigger === "kernel" && !this.#fullNeeded && this.#repairs.size > 0 &&',
    replacement: "true",
    why:
      'Every "kernel" request comes with a repair or a full run due, and a run consumes both: a kernel run without repairs has #fullNeeded set, and takes the full path either way.',
  },
  {
    file: "src/agent/node_agent.ts",
    mutator: "EqualityOperator",
    line: 'trigger === "kernel" && !this.#fullNeeded && this.#repairs.size > 0 &&',
    replacement: "this.#repairs.size >= 0",
    why:
      'Every "kernel" request comes with a repair or a full run due, and a run consumes both: a kernel run without repairs has #fullNeeded set, and takes the full path either way.',
  },
  {
    file: "src/agent/node_agent.ts",
    mutator: "ConditionalExpression",
    line: 'if (result.added) metrics.ruleChanges.inc({ op: "add" }, result.added);',
    replacement: "true",
    why: "Adding 0 to a counter changes nothing.",
  },
  {
    file: "src/agent/node_agent.ts",
    mutator: "ConditionalExpression",
    line: 'if (result.deleted) metrics.ruleChanges.inc({ op: "delete" }, result.deleted);',
    replacement: "true",
    why: "Adding 0 to a counter changes nothing.",
  },
  // src/k8s/informer.ts
  {
    file: "src/k8s/informer.ts",
    mutator: "StringLiteral",
    line: 'signal?.removeEventListener("abort", done);',
    replacement: '""',
    why:
      "The listener left on the caller's signal resolves an already resolved promise: no effect.",
  },
  {
    file: "src/k8s/informer.ts",
    mutator: "ObjectLiteral",
    line: 'signal?.addEventListener("abort", done, { once: true });',
    replacement: "{}",
    why: "An AbortSignal fires abort at most once, and done() removes the listener.",
  },
  {
    file: "src/k8s/informer.ts",
    mutator: "BooleanLiteral",
    line: 'signal?.addEventListener("abort", done, { once: true });',
    replacement: "false",
    why: "An AbortSignal fires abort at most once, and done() removes the listener.",
  },
  {
    file: "src/k8s/informer.ts",
    mutator: "ConditionalExpression",
    line: "return resourcePath(resource, namespace === undefined ? {} : { namespace });",
    replacement: "false",
    why: "resourcePath() treats `namespace: undefined` as no namespace.",
  },
  {
    file: "src/k8s/informer.ts",
    mutator: "ConditionalExpression",
    line: "const own = rv === undefined ? undefined : this.#ownVersions.get(key);",
    replacement: "false",
    why: "indexOf(undefined) on a list of version strings is -1 as well.",
  },
  {
    file: "src/k8s/informer.ts",
    mutator: "ArithmeticOperator",
    line: "own!.splice(0, at + 1);",
    replacement: "at - 1",
    why:
      "Own versions left in the list are older than any later event's version (versions only grow): no event matches them again.",
  },
  {
    file: "src/k8s/informer.ts",
    mutator: "ConditionalExpression",
    line: "if (own!.length === 0) this.#ownVersions.delete(key);",
    replacement: "false",
    why:
      "Dropping or keeping an emptied list changes no lookup: an empty list matches nothing, a later own version of the object is in the cache's version check anyway.",
  },
  {
    file: "src/k8s/informer.ts",
    mutator: "ConditionalExpression",
    line: "if (own!.length === 0) this.#ownVersions.delete(key);",
    replacement: "true",
    why:
      "Dropping or keeping an emptied list changes no lookup: an empty list matches nothing, a later own version of the object is in the cache's version check anyway.",
  },
  {
    file: "src/k8s/informer.ts",
    mutator: "EqualityOperator",
    line: "if (own!.length === 0) this.#ownVersions.delete(key);",
    replacement: "own!.length !== 0",
    why:
      "Dropping or keeping an emptied list changes no lookup: an empty list matches nothing, a later own version of the object is in the cache's version check anyway.",
  },
  {
    file: "src/k8s/informer.ts",
    mutator: "ConditionalExpression",
    line: "if (rv !== undefined) this.#versions.set(key, rv);",
    replacement: "true",
    why: "A version recorded as undefined never equals a string version: the same as none.",
  },
  {
    file: "src/k8s/informer.ts",
    mutator: "ArrayDeclaration",
    line: "const items = Array.isArray(page.items) ? page.items : [];",
    replacement: '["Stryker was here"]',
    why: "A string item has no name and is skipped.",
  },
  {
    file: "src/k8s/informer.ts",
    mutator: "ConditionalExpression",
    line: "if (key !== undefined) seen.add(key);",
    replacement: "true",
    why: "Adding undefined to the seen keys changes no lookup of a string key.",
  },
  {
    file: "src/k8s/informer.ts",
    mutator: "ArrayDeclaration",
    line:
      "for (const key of [...this.#versions.keys()]) if (!seen.has(key)) this.#versions.delete(key);",
    replacement: "[]",
    why:
      "Every removal from the store also removes the version: the versions of unseen keys are already gone.",
  },
  {
    file: "src/k8s/informer.ts",
    mutator: "ConditionalExpression",
    line:
      "for (const key of [...this.#versions.keys()]) if (!seen.has(key)) this.#versions.delete(key);",
    replacement: "false",
    why:
      "Every removal from the store also removes the version: the versions of unseen keys are already gone.",
  },
  {
    file: "src/k8s/informer.ts",
    mutator: "ObjectLiteral",
    line: 'signal.addEventListener("abort", stop, { once: true });',
    replacement: "{}",
    why:
      "An AbortSignal fires abort at most once, and the listener is removed when the watch ends.",
  },
  {
    file: "src/k8s/informer.ts",
    mutator: "BooleanLiteral",
    line: 'signal.addEventListener("abort", stop, { once: true });',
    replacement: "false",
    why:
      "An AbortSignal fires abort at most once, and the listener is removed when the watch ends.",
  },
  {
    file: "src/k8s/informer.ts",
    mutator: "UpdateOperator",
    line: "this.#watchEvents++;",
    replacement: "this.#watchEvents--",
    why: "Only whether the count changed during a watch is read: counting down changes it too.",
  },
  {
    file: "src/k8s/informer.ts",
    mutator: "ConditionalExpression",
    line: 'if (event.type === "BOOKMARK") continue;',
    replacement: "false",
    why: "A bookmark's object has no name: #put() skips it.",
  },
  {
    file: "src/k8s/informer.ts",
    mutator: "StringLiteral",
    line: 'if (event.type === "BOOKMARK") continue;',
    replacement: '""',
    why: "A bookmark's object has no name: #put() skips it.",
  },
  {
    file: "src/k8s/informer.ts",
    mutator: "ConditionalExpression",
    line: "if (key !== undefined) this.#remove(key);",
    replacement: "true",
    why: "Removing an undefined key finds nothing to remove.",
  },
  {
    file: "src/k8s/informer.ts",
    mutator: "StringLiteral",
    line: 'signal.removeEventListener("abort", stop);',
    replacement: '""',
    why:
      "Memory only: one listener per past watch stays on the run's signal, each aborting a finished stream when the run ends.",
  },
  {
    file: "src/k8s/informer.ts",
    mutator: "ConditionalExpression",
    line: "if (!this.#synced) {",
    replacement: "true",
    why: "The waiters were taken out the first time: calling the empty list again does nothing.",
  },
  // ffi/rule_codec.ts
  {
    file: "ffi/rule_codec.ts",
    mutator: "ConditionalExpression",
    line:
      'if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > max) {',
    replacement: "false",
    why:
      "Number.isInteger() is false for every non-number: the check after it refuses them the same way.",
  },
  // src/agent/node_state.ts
  {
    file: "src/agent/node_state.ts",
    mutator: "ArrayDeclaration",
    line: '`${s.failedCount ?? 0}:${(s.failedRules ?? []).map((f) => f.rule).join("\\n")}`;',
    replacement: '["Stryker was here"]',
    why:
      'join() writes an undefined entry as "": the placeholder\'s missing rule reads as the empty list.',
  },
  {
    file: "src/agent/node_state.ts",
    mutator: "ConditionalExpression",
    line:
      "return wanted === undefined || sameNodeStatus(this.#current, wanted) ? undefined : wanted;",
    replacement: "false",
    why:
      "The wanted status is undefined only before any report, and then the current one is too: sameNodeStatus(undefined, ...) is false and the result undefined either way.",
  },
  // src/k8s/informer.ts
  {
    file: "src/k8s/informer.ts",
    mutator: "ArrayDeclaration",
    line: "const own = this.#ownVersions.get(key) ?? [];",
    replacement: '["Stryker was here"]',
    why: "A placeholder version in the own list matches no event's version.",
  },
  {
    file: "src/k8s/informer.ts",
    mutator: "MethodExpression",
    line: "this.#ownVersions.set(key, own.slice(-OWN_VERSIONS_KEPT));",
    replacement: "own",
    why:
      "Memory only: the own versions of one object are no longer capped at 16; lookups find the same versions.",
  },
  // src/agent/node_state.ts
  {
    file: "src/agent/node_state.ts",
    mutator: "ConditionalExpression",
    line: "if (this.#next() === undefined) this.#pacer.settled();",
    replacement: "false",
    why:
      "A pacing window opened for a report that changes nothing is closed by run() before it waits (nothing to write: settled), and write() does not pace.",
  },
  // src/controller/plan.ts
  {
    file: "src/controller/plan.ts",
    mutator: "ConditionalExpression",
    line: "return c.rule === d.rule && c.prefixLength === d.prefixLength && c.lbIP === d.lbIP &&",
    replacement: "true",
    original: "c.prefixLength === d.prefixLength",
    why:
      "The candidates' IPRules are compared by object and an unchanged spec keeps its object (plan_rules), so the same IPRule at the same LB IP has the same longest CIDR: equal rules and LB IPs imply equal prefix lengths.",
  },
  {
    file: "src/controller/plan.ts",
    mutator: "ConditionalExpression",
    line: "return c.rule === d.rule && c.prefixLength === d.prefixLength && c.lbIP === d.lbIP &&",
    replacement: "true",
    original: "c.lbIP === d.lbIP",
    why:
      "With the LB IPs (addresses) and skip events equal, an LB IP that had a candidate on one side only would match the other side's candidate IPRule (same object: same CIDRs, same selectors within one Service's match) there too; so equal IPRules position by position imply equal LB IPs.",
  },
  {
    file: "src/controller/plan.ts",
    mutator: "ConditionalExpression",
    line: "c.conflict.winner === d.conflict.winner;",
    replacement: "true",
    why:
      "A lost match's winner is its LB IP's winning IPRule, which sameMatch has already compared: as the candidate's IPRule at that LB IP, or by name in the skip event every skipped LB IP has.",
  },
  {
    file: "src/controller/plan.ts",
    mutator: "ConditionalExpression",
    line:
      "if (keys.length === REPORTED_CONFLICTS && key > keys[REPORTED_CONFLICTS - 1]!) continue;",
    replacement: "false",
    why:
      "Drops the shortcut that skips a key after the fifth smallest; inserted anyway, it is the sixth and popped at once: the same five keys.",
  },
  {
    file: "src/controller/plan.ts",
    mutator: "ConditionalExpression",
    line:
      "if (keys.length === REPORTED_CONFLICTS && key > keys[REPORTED_CONFLICTS - 1]!) continue;",
    replacement: "true",
    original: "keys.length === REPORTED_CONFLICTS",
    why:
      "With fewer than five keys, keys[4] is undefined and `key > undefined` is false: no skip, as in the original.",
  },
  {
    file: "src/controller/plan.ts",
    mutator: "EqualityOperator",
    line:
      "if (keys.length === REPORTED_CONFLICTS && key > keys[REPORTED_CONFLICTS - 1]!) continue;",
    replacement: "keys.length !== REPORTED_CONFLICTS",
    why:
      "Below five keys `key > undefined` is false (no skip either way); at five, the key is inserted and popped again as the sixth: the same five keys, only work.",
  },
  {
    file: "src/controller/plan.ts",
    mutator: "EqualityOperator",
    line:
      "if (keys.length === REPORTED_CONFLICTS && key > keys[REPORTED_CONFLICTS - 1]!) continue;",
    replacement: "key >= keys[REPORTED_CONFLICTS - 1]!",
    why: "Keys are distinct (a Map's), so no key equals the fifth.",
  },
  {
    file: "src/controller/plan.ts",
    mutator: "ArithmeticOperator",
    line:
      "if (keys.length === REPORTED_CONFLICTS && key > keys[REPORTED_CONFLICTS - 1]!) continue;",
    replacement: "REPORTED_CONFLICTS + 1",
    why:
      "keys[6] is undefined (at most five keys are kept): the skip never happens, the key is inserted and popped as the sixth; same five keys.",
  },
  {
    file: "src/controller/plan.ts",
    mutator: "ConditionalExpression",
    line: "while (at > 0 && keys[at - 1]! > key) at--;",
    replacement: "true",
    original: "at > 0",
    why:
      "At position 0, keys[-1] is undefined and `undefined > key` is false: the loop stops there anyway.",
  },
  {
    file: "src/controller/plan.ts",
    mutator: "EqualityOperator",
    line: "while (at > 0 && keys[at - 1]! > key) at--;",
    replacement: "at >= 0",
    why:
      "At position 0, keys[-1] is undefined and `undefined > key` is false: the loop stops there anyway.",
  },
  {
    file: "src/controller/plan.ts",
    mutator: "EqualityOperator",
    line: "while (at > 0 && keys[at - 1]! > key) at--;",
    replacement: "keys[at - 1]! >= key",
    why: "Keys are distinct (a Map's): no two compare equal.",
  },
  {
    file: "src/controller/plan.ts",
    mutator: "ConditionalExpression",
    line: "if (keys.length > REPORTED_CONFLICTS) keys.pop();",
    replacement: "false",
    why:
      "Without the pop the sorted list keeps every key but the skipped ones, each larger than five kept before it, so its first five keys and the first five lost matches after slice() are the same (only memory).",
  },
  {
    file: "src/controller/plan.ts",
    mutator: "EqualityOperator",
    line: "return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;",
    replacement: "a.name <= b.name",
    original: "a.name < b.name",
    why:
      "Names compared are distinct (config names from a Set, IPRule names from the API), so `<=` and `<` agree.",
  },
  {
    file: "src/controller/plan.ts",
    mutator: "ConditionalExpression",
    line: "return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;",
    replacement: "true",
    original: "a.name > b.name",
    why: "Distinct names: when a < b is false, a > b is true.",
  },
  {
    file: "src/controller/plan.ts",
    mutator: "ConditionalExpression",
    line: "return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;",
    replacement: "false",
    original: "a.name > b.name",
    why:
      "Gives 0 for a > b: V8's sort (TimSort) only tests compare() < 0, so -1 for a < b alone sorts the same (checked on 3,400 shuffled arrays of up to 5,000 names).",
  },
  {
    file: "src/controller/plan.ts",
    mutator: "EqualityOperator",
    line: "return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;",
    replacement: "a.name >= b.name",
    original: "a.name > b.name",
    why: "Distinct names: a > b and a >= b agree.",
  },
  {
    file: "src/controller/plan.ts",
    mutator: "EqualityOperator",
    line: "return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;",
    replacement: "a.name <= b.name",
    original: "a.name > b.name",
    why:
      "For distinct names gives 0 for a > b: V8's sort (TimSort) only tests compare() < 0, so -1 for a < b alone sorts the same (checked on 3,400 shuffled arrays of up to 5,000 names).",
  },
  {
    file: "src/controller/plan.ts",
    mutator: "ConditionalExpression",
    line: 'if (svc.type !== "LoadBalancer" || svc.ingressIPs.length === 0) return undefined;',
    replacement: "false",
    original: "svc.ingressIPs.length === 0",
    why:
      "With no ingress IP the loop adds no address and the match is dropped as undefined below: the same result without the shortcut.",
  },
  {
    file: "src/controller/plan.ts",
    mutator: "ArrayDeclaration",
    line:
      "const result: ServiceMatch = { candidates: [], conflicts: [], events: [], addresses: [] };",
    replacement: '["Stryker was here"]',
    original: "[]",
    why:
      "Memory only: a Service whose LB IPs are no addresses is held, with no candidate or event; the placeholder address key ('S…') sorts after every address key ('4…', '6…'), so no CIDR range finds it, and both matches compared carry it.",
  },
  {
    file: "src/controller/plan.ts",
    mutator: "ConditionalExpression",
    line: "return result.addresses.length > 0 ? result : undefined;",
    replacement: "true",
    why:
      "Memory only: a Service whose LB IPs are no addresses is held with an empty match (no address, candidate or event): it decides nothing and no CIDR finds it.",
  },
  {
    file: "src/controller/plan.ts",
    mutator: "EqualityOperator",
    line: "return result.addresses.length > 0 ? result : undefined;",
    replacement: "result.addresses.length >= 0",
    why:
      "Memory only: a Service whose LB IPs are no addresses is held with an empty match (no address, candidate or event): it decides nothing and no CIDR finds it.",
  },
  {
    file: "src/controller/plan.ts",
    mutator: "ConditionalExpression",
    line:
      "const best = candidates.length > 1 ? [...candidates].sort(compareMatches)[0]! : candidates[0]!;",
    replacement: "true",
    why: "Sorting a single candidate yields it: the shortcut only saves the copy and sort.",
  },
  {
    file: "src/controller/plan.ts",
    mutator: "EqualityOperator",
    line:
      "const best = candidates.length > 1 ? [...candidates].sort(compareMatches)[0]! : candidates[0]!;",
    replacement: "candidates.length >= 1",
    why: "Sorting a single candidate yields it: the shortcut only saves the copy and sort.",
  },
  {
    file: "src/controller/plan.ts",
    mutator: "ConditionalExpression",
    line: "if (names.size === 0) return noneAffected();",
    replacement: "false",
    why:
      "With no IPRule changed there is no CIDR either: the Services to match again are none and #apply() of none affects nothing (only the LB IP index gets built).",
  },
  {
    file: "src/controller/plan.ts",
    mutator: "ConditionalExpression",
    line:
      "if (this.#services.size > 0) { for (const key of sharing) before.set(key, this.#share(key)); }",
    replacement: "true",
    why:
      "With no Service held, every Service's share is empty: an empty Map before instead of none moves nothing in the tallies.",
  },
  {
    file: "src/controller/plan.ts",
    mutator: "EqualityOperator",
    line:
      "if (this.#services.size > 0) { for (const key of sharing) before.set(key, this.#share(key)); }",
    replacement: "this.#services.size >= 0",
    why:
      "With no Service held, every Service's share is empty: an empty Map before instead of none moves nothing in the tallies.",
  },
  {
    file: "src/controller/plan.ts",
    mutator: "ConditionalExpression",
    line: "if (this.#byAddress) return this.#byAddress;",
    replacement: "false",
    why:
      "Rebuilds the LB IP index from every held Service at each IPRule change: the same index as the one kept up to date, only slower.",
  },
  {
    file: "src/controller/plan.ts",
    mutator: "ConditionalExpression",
    line: "if (namespace.size === 0) this.#byNamespace.delete(old.service.namespace);",
    replacement: "false",
    why:
      "Memory only: an emptied namespace's Set is kept; namespaceChanged() on it matches no Service again, as when it is missing.",
  },
  {
    file: "src/controller/plan.ts",
    mutator: "ConditionalExpression",
    line: "if (claimants === undefined) this.#bySource.delete(name);",
    replacement: "false",
    why:
      "Memory only: a source without claimants keeps an undefined entry, which every reader (get, withMember, eachMember, #decide) treats as missing.",
  },
  {
    file: "src/controller/plan.ts",
    mutator: "ArrayDeclaration",
    line: "for (const [rule, was] of before ?? []) {",
    replacement: '["Stryker was here"]',
    why:
      "Only when no share existed before: the placeholder string destructures into IPRule 'S' with part 't', which neither routes nor lost a match, so its tally part changes nothing (an empty tally is dropped again).",
  },
  {
    file: "src/controller/plan.ts",
    mutator: "ArrayDeclaration",
    line: "if (!sameConflicts(was?.lost ?? [], now?.lost ?? [])) {",
    replacement: '["Stryker was here"]',
    original: "[]",
    why:
      "Either placeholder only replaces a missing part, and a part exists only because it routes or lost a match: when it routes, the IPRule is affected by the routes change anyway and the lost-match update is a no-op; when it lost matches, they differ from the placeholder as they do from [].",
  },
  {
    file: "src/controller/plan.ts",
    mutator: "ConditionalExpression",
    line: "if (tally.routed.size === 0 && tally.lostCount === 0) this.#tallies.delete(rule);",
    replacement: "false",
    why:
      "Memory only: an empty tally is kept; report() reads 0 routed, 0 lost and no lost match from it, as from none.",
  },
  {
    file: "src/controller/plan.ts",
    mutator: "ConditionalExpression",
    line:
      "const since = current.spec.absentSince === undefined ? NaN : Date.parse(current.spec.absentSince);",
    replacement: "false",
    why: "Date.parse(undefined) is NaN too.",
  },
  {
    file: "src/controller/plan.ts",
    mutator: "ConditionalExpression",
    line: "return nextDeletionAt === undefined ? { changes } : { changes, nextDeletionAt };",
    replacement: "false",
    why:
      "planConfigs(), the only caller, copies nextDeletionAt into the plan only when it is defined.",
  },
  {
    file: "src/controller/plan.ts",
    mutator: "ArrayDeclaration",
    line: "withdrawn ? [] : input.services,",
    replacement: '["Stryker was here"]',
    why:
      "The placeholder is no LoadBalancer Service (its type is undefined): matchService() plans nothing for it.",
  },
  // src/controller/plan_rules.ts
  {
    file: "src/controller/plan_rules.ts",
    mutator: "ArrayDeclaration",
    line: "for (const [i, e] of (selector?.matchExpressions ?? []).entries()) {",
    replacement: '["Stryker was here"]',
    why:
      "A selector without matchExpressions then checks the placeholder string, which has no operator and no values: no problem found, as with none.",
  },
  {
    file: "src/controller/plan_rules.ts",
    mutator: "ArrayDeclaration",
    line: "readonly #lengths: Record<Family, number[]> = { 4: [], 6: [] };",
    replacement: '["Stryker was here"]',
    original: "[]",
    why:
      "A placeholder prefix length builds the prefix key '4/Stryker was here/' (or '6/…') that no CIDR has, so lookups find nothing more; comparisons with it are NaN, which V8's sort reads as not-less, and the real lengths stay in descending order behind it (checked on 20,000 random sequences).",
  },
  {
    file: "src/controller/plan_rules.ts",
    mutator: "ConditionalExpression",
    line: "if (!lengths.includes(cidr.prefixLength)) {",
    replacement: "true",
    why:
      "A prefix length listed twice is looked up twice; lookup() keeps the first match per IPRule, so the result is the same.",
  },
  // src/controller/address_index.ts
  {
    file: "src/controller/address_index.ts",
    mutator: "ConditionalExpression",
    line: "if (next !== members) this.#map.setElement(key, next);",
    replacement: "true",
    why:
      "withMember() returns the stored Set itself when it adds to one, or the same key: writing it back changes nothing.",
  },
  {
    file: "src/controller/address_index.ts",
    mutator: "ConditionalExpression",
    line: "else if (next !== members) this.#map.setElement(key, next);",
    replacement: "true",
    why:
      "When withoutMember() returns what is stored (a Set it shrank in place, or an unrelated key), writing it back changes nothing.",
  },
  {
    file: "src/controller/address_index.ts",
    mutator: "ConditionalExpression",
    line: "else if (next !== members) this.#map.setElement(key, next);",
    replacement: "false",
    why:
      "Skips writing back the last member as a plain key: the Set withoutMember() shrank in place stays, holding that one member; every reader (withMember, withoutMember, eachMember) treats it alike (representation only).",
  },
  {
    file: "src/controller/address_index.ts",
    mutator: "EqualityOperator",
    line: "else if (next !== members) this.#map.setElement(key, next);",
    replacement: "next === members",
    why:
      "Writes back only what is already stored (a no-op) and skips turning a one-member Set into its key: withoutMember() shrank the Set in place, and every reader treats a one-member Set as that key.",
  },
];
