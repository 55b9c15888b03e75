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

/** Every file in scope, in the order `task mutate` runs them. */
export const TARGETS: readonly MutationTarget[] = [
  {
    file: "src/controller/workqueue.ts",
    tests: ["src/controller/workqueue_test.ts"],
    tier: "unit",
  },
  {
    file: "src/k8s/informer.ts",
    tests: ["src/k8s/informer_test.ts"],
    tier: "unit",
  },
  {
    file: "src/agent/rule_plan.ts",
    tests: ["src/agent/rule_plan_test.ts", "src/agent/adoption_test.ts"],
    tier: "unit",
  },
  {
    file: "src/agent/adoption.ts",
    tests: ["src/agent/adoption_test.ts", "src/agent/rule_plan_test.ts"],
    tier: "unit",
  },
  {
    file: "src/agent/node_agent.ts",
    tests: ["src/agent/node_agent_test.ts"],
    tier: "unit",
  },
  {
    file: "src/agent/node_state.ts",
    tests: ["src/agent/node_state_test.ts"],
    tier: "unit",
  },
  {
    file: "src/write_pacer.ts",
    tests: ["src/write_pacer_test.ts"],
    tier: "unit",
  },
  {
    file: "ffi/rule_codec.ts",
    tests: [
      "ffi/rule_codec_test.ts",
      "ffi/rule_codec_edge_test.ts",
      "ffi/rule_dump_test.ts",
    ],
    tier: "unit",
  },
  {
    file: "ffi/rule_dump.ts",
    tests: ["ffi/rule_dump_test.ts"],
    tier: "unit",
  },
  {
    file: "src/controller/agent_tally.ts",
    tests: ["src/controller/agent_tally_test.ts"],
    tier: "unit",
  },
  {
    file: "src/controller/agent_status.ts",
    tests: [
      "src/controller/agent_status_test.ts",
      "src/controller/agent_tally_test.ts",
    ],
    tier: "unit",
  },
  {
    file: "src/drain.ts",
    tests: ["src/drain_test.ts"],
    tier: "unit",
  },
  {
    file: "src/controller/plan.ts",
    tests: ["src/controller/plan_test.ts", "src/controller/plan_edge_test.ts"],
    tier: "unit",
  },
  {
    file: "src/controller/plan_rules.ts",
    tests: ["src/controller/plan_test.ts", "src/controller/plan_rules_test.ts"],
    tier: "unit",
  },
  {
    file: "src/controller/address_index.ts",
    tests: ["src/controller/address_index_test.ts"],
    tier: "unit",
  },
];
