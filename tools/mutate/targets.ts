/**
 * The files `task mutate` mutates (the pure and near-pure cores) and, per file, the narrowest
 * test files that exercise it: Stryker's command runner runs every listed test file against
 * every mutant (it cannot tell which tests cover which mutant), so each extra file costs once
 * per mutant. Generated code and wiring (entry points, flags, I/O adapters) are out of scope.
 */

/** One mutated file and the tests run against its mutants. */
export interface MutationTarget {
  /** The file Stryker mutates, relative to the repository root. */
  file: string;
  /** The test files run against each mutant, relative to the repository root. */
  tests: readonly string[];
  /** The tier whose permissions the tests get: unit (no privileges) or netns (root). */
  tier: "unit" | "netns";
}

/** The minimum mutation score per file, in percent (equivalent mutants not counted). */
export const TARGET_SCORE = 85;

/** `deno test` permissions per tier, as scripts/test.sh gives them. */
export const TIER_FLAGS: Readonly<
  Record<MutationTarget["tier"], readonly string[]>
> = {
  unit: ["--allow-read", "--allow-env", "--allow-net=127.0.0.1"],
  netns: ["-A"],
};

/** A target whose tests run in the unit tier. */
function unit(file: string, ...tests: string[]): MutationTarget {
  return { file, tests, tier: "unit" };
}

/** Every file in scope, in the order `task mutate` runs them. */
export const TARGETS: readonly MutationTarget[] = [
  unit("src/controller/workqueue.ts", "src/controller/workqueue_test.ts"),
  unit("src/k8s/informer.ts", "src/k8s/informer_test.ts"),
  unit(
    "src/agent/rule_plan.ts",
    "src/agent/rule_plan_test.ts",
    "src/agent/adoption_test.ts",
  ),
  unit(
    "src/agent/adoption.ts",
    "src/agent/adoption_test.ts",
    "src/agent/rule_plan_test.ts",
  ),
  unit("src/agent/node_agent.ts", "src/agent/node_agent_test.ts"),
  unit("src/agent/node_state.ts", "src/agent/node_state_test.ts"),
  unit("src/write_pacer.ts", "src/write_pacer_test.ts"),
  unit(
    "ffi/rule_codec.ts",
    "ffi/rule_codec_test.ts",
    "ffi/rule_codec_edge_test.ts",
    "ffi/rule_dump_test.ts",
  ),
  unit("ffi/rule_dump.ts", "ffi/rule_dump_test.ts"),
  unit("src/controller/agent_tally.ts", "src/controller/agent_tally_test.ts"),
  unit(
    "src/controller/agent_status.ts",
    "src/controller/agent_status_test.ts",
    "src/controller/agent_tally_test.ts",
  ),
  unit("src/drain.ts", "src/drain_test.ts"),
  unit(
    "src/controller/plan.ts",
    "src/controller/plan_test.ts",
    "src/controller/plan_edge_test.ts",
    "src/controller/plan_slices_test.ts",
    "src/controller/plan_incremental_test.ts",
  ),
  unit(
    "src/controller/plan_rules.ts",
    "src/controller/plan_test.ts",
    "src/controller/plan_rules_test.ts",
  ),
  unit(
    "src/controller/address_index.ts",
    "src/controller/address_index_test.ts",
  ),
];
