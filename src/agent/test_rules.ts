/** Test fixtures shared by the agent's unit tests: rules as a dump reports them, a memory kernel. */
import {
  type KernelRule,
  NetlinkError,
  type Rule,
  type RuleList,
  RuleListImage,
  type RuleResult,
  type RuleSpec,
} from "../../ffi/mod.ts";
import type { RuleTable } from "./reconciler.ts";

/** The tests' agent protocol. */
export const TEST_PROTOCOL = 201;

/** `from SRC lookup 100 priority 1000` of the family of `src`, with the tests' protocol. */
export function rule(src: string, extra: Partial<Rule> = {}): Rule {
  const family = src.includes(":") ? 6 : 4;
  return {
    family,
    src,
    srcLen: family === 4 ? 32 : 128,
    table: 100,
    priority: 1000,
    protocol: TEST_PROTOCOL,
    ...extra,
  };
}

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

/** An in-memory rule list standing in for the kernel (the unit tier has no netlink). */
export class MemoryTable implements RuleTable {
  rules: KernelRule[] = [];
  /** Sources whose add fails with this errno. */
  refuse = new Map<string, number>();
  /** Dumps made (unchanged ones included). */
  dumps = 0;
  /** Dumps found unchanged. */
  unchanged = 0;
  /** An error the next dump throws (once). */
  dumpError: Error | undefined;
  /** Called at each dump. */
  onDump: (() => void) | undefined;

  listRulesIfChanged(since?: RuleListImage): Promise<RuleList | undefined> {
    this.dumps++;
    this.onDump?.();
    const error = this.dumpError;
    if (error !== undefined) {
      this.dumpError = undefined;
      return Promise.reject(error);
    }
    // The image of the list: its JSON, padded to whole words.
    const json = new TextEncoder().encode(JSON.stringify(this.rules));
    const bytes = new Uint8Array((json.length + 3) & ~3);
    bytes.set(json);
    if (since?.sameAs(new Int32Array(bytes.buffer))) {
      this.unchanged++;
      return Promise.resolve(undefined);
    }
    return Promise.resolve({
      rules: this.rules.map((r) => ({ ...r })),
      image: new RuleListImage(bytes),
    });
  }

  addRules(rules: readonly RuleSpec[]): Promise<RuleResult[]> {
    return Promise.resolve(rules.map((rule) => {
      const errno = this.refuse.get(rule.src);
      if (errno !== undefined) return { rule, error: new NetlinkError("add", errno, { rule }) };
      this.rules.push(kernelRule(rule));
      return { rule };
    }));
  }

  deleteRules(rules: readonly RuleSpec[]): Promise<RuleResult[]> {
    return Promise.resolve(rules.map((rule) => {
      const errno = this.refuse.get(rule.src);
      if (errno !== undefined) return { rule, error: new NetlinkError("delete", errno, { rule }) };
      const at = this.rules.findIndex((r) =>
        r.src === rule.src && r.table === rule.table && r.priority === rule.priority &&
        r.protocol === rule.protocol
      );
      if (at < 0) return { rule, error: new NetlinkError("delete", 2, { rule }) };
      this.rules.splice(at, 1);
      return { rule };
    }));
  }
}
