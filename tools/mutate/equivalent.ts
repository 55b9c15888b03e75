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
export const EQUIVALENT: readonly EquivalentMutant[] = [];
