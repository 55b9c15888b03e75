/**
 * `task soak -- --duration=15m --seed=N`: the chaos soak (bench/soak/mod.ts) on a local test
 * ground, with its figures. Both flags are optional; a random seed is printed when none is
 * given, so any run can be repeated. Exits 0 only when no invariant was violated.
 */
import { parseArgs } from "node:util";
import { durationFlag, integerFlag, UsageError } from "../src/cli.ts";
import { runSoak } from "./soak/mod.ts";
import { MAX_SEED, randomSeed } from "./soak/random.ts";
import { formatReport } from "./soak/report.ts";

const USAGE = "Usage: task soak -- [--duration=15m] [--seed=N] [--nodes=3] [--fault-rate=1] " +
  "[--changes-per-second=3] [--keep-logs]";

function positive(name: string, text: string): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0 || n > 100) {
    throw new UsageError(`Invalid value for --${name}: "${text}" (expected a number above 0)`);
  }
  return n;
}

function options() {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      duration: { type: "string", default: "15m" },
      seed: { type: "string" },
      nodes: { type: "string", default: "3" },
      "fault-rate": { type: "string", default: "1" },
      "changes-per-second": { type: "string", default: "3" },
      "keep-logs": { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    Deno.exit(0);
  }
  return {
    durationMs: durationFlag("duration", values.duration, 30_000),
    seed: values.seed === undefined ? randomSeed() : integerFlag("seed", values.seed, 0, MAX_SEED),
    nodes: integerFlag("nodes", values.nodes, 1, 8),
    faultRate: positive("fault-rate", values["fault-rate"]),
    changesPerSecond: positive("changes-per-second", values["changes-per-second"]),
    keepLogs: values["keep-logs"] ? "always" as const : "on-violation" as const,
  };
}

if (import.meta.main) {
  let opts;
  try {
    opts = options();
  } catch (error: unknown) {
    if (!(error instanceof UsageError) && !(error instanceof TypeError)) throw error;
    console.error(`${error.message}\n${USAGE}`);
    Deno.exit(2);
  }
  if (Deno.uid() !== 0) {
    console.error("task soak needs root: its nodes are network namespaces with kernel rules");
    Deno.exit(1);
  }
  console.log(`soak: seed ${opts.seed} (repeat with --seed=${opts.seed})`);
  const report = await runSoak(opts);
  for (const line of formatReport(report)) console.log(line);
  Deno.exit(report.violations.length === 0 ? 0 : 1);
}
