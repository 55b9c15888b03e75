/** The figures of one soak run and their text (pure). */
import { type Bounds, seconds, type Violation } from "./checker.ts";

/** What one run measured. */
export interface SoakReport {
  seed: number;
  /** Asked-for length of the load, ms. */
  durationMs: number;
  nodes: readonly string[];
  /** /proc/loadavg at the start and at the end. */
  loadAverage: { start: string; end: string };
  bounds: Bounds;
  faults: {
    /** Injected, by kind (and variant). */
    byKind: ReadonlyMap<string, number>;
    total: number;
    maxConcurrent: number;
    foreignAdded: number;
    foreignRefused: number;
    /** Mid-batch agent kills that caught the kernel changing. */
    midBatchHits: number;
  };
  changes: { model: number; writes: number; failures: number };
  checks: { kernel: number; foreign: number; configs: number; final: number };
  violations: readonly Violation[];
  /**
   * Outside flush (or the agent's listing, when it was not running) → every desired rule back,
   * ms, one per flush that completed.
   */
  repairTimes: readonly number[];
  /** Flushes whose rules all stopped being desired before the node's agent ran again. */
  repairsWithoutAgent: number;
  /**
   * Healed link cut → the node seen converged, ms, one per cut; undefined when it was not
   * before the watchdog bound (then the safety clock ran again anyway).
   */
  catchUpTimes: readonly (number | undefined)[];
  /** Last fault and last change → converged, ms; undefined when it did not converge. */
  convergenceMs: number | undefined;
  /**
   * API requests per minute of each agent by verb while no fault was active, and how long that
   * was (undefined for an agent never measured through a calm interval).
   */
  calm: { ms: number; perMinute: ReadonlyMap<string, ReadonlyMap<string, number> | undefined> };
  /** Peak resident set by process role, KiB. */
  peakRssKiB: ReadonlyMap<string, number>;
  /** Exits the soak did not cause. */
  exits: readonly { role: string; code: number }[];
  /** Longest time between two kernel samples of a node (a starved soak shows here), ms. */
  maxSampleGapMs: number;
  /** Where the run's logs were kept, if they were. */
  logsDir?: string;
}

function mib(kib: number): string {
  return `${(kib / 1024).toFixed(0)} MiB`;
}

function perMinute(byVerb: ReadonlyMap<string, number> | undefined): string {
  if (byVerb === undefined) return "? (no calm interval)";
  const total = [...byVerb.values()].reduce((a, b) => a + b, 0);
  const verbs = [...byVerb].filter(([, n]) => n > 0).sort(([a], [b]) => a < b ? -1 : 1);
  return `${total.toFixed(1)} (${verbs.map(([v, n]) => `${v} ${n.toFixed(1)}`).join(", ")})`;
}

function catchUp(times: readonly (number | undefined)[]): string {
  if (times.length === 0) return "no link cut";
  const done = times.filter((t) => t !== undefined);
  const capped = times.length - done.length;
  const longest = done.length === 0 ? "none converged" : `${Math.max(...done).toFixed(0)} ms`;
  return `${longest} (${times.length} cuts${
    capped ? `, ${capped} not converged by the bound` : ""
  })`;
}

function duration(ms: number): string {
  const s = Math.round(ms / 1000);
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s` : `${s}s`;
}

/** The report as printed; the last two lines are `faults: N …` and `violations: N`. */
export function formatReport(r: SoakReport): string[] {
  const lines: string[] = [];
  const kinds = [...r.faults.byKind].map(([k, n]) => `${k} ${n}`).join(", ");
  const midBatch = r.faults.byKind.get("agent-kill (mid-batch)") ?? 0;
  const repairs = [...r.repairTimes].sort((a, b) => a - b);
  const median = repairs[Math.floor(repairs.length / 2)];
  const totalChecks = r.checks.kernel + r.checks.foreign + r.checks.configs + r.checks.final;
  lines.push(
    `soak: seed ${r.seed}, duration ${duration(r.durationMs)}, ${r.nodes.length} nodes ` +
      `(${r.nodes.join(", ")}); load average ${r.loadAverage.start} at the start, ` +
      `${r.loadAverage.end} at the end`,
    `  bounds: safety ${r.bounds.safetyMs} ms, flush repair ${r.bounds.repairMs} ms, ` +
      `convergence ${r.bounds.convergenceMs} ms after the last fault`,
    `  changes applied: ${r.changes.model} to Services and IPRules, ${r.changes.writes} API ` +
      `writes (${r.changes.failures} requests failed and were retried)`,
    `  invariant checks: ${totalChecks} (${r.checks.kernel} kernel samples, ${r.checks.foreign} ` +
      `foreign-rule comparisons, ${r.checks.configs} IPRuleConfig changes, ${r.checks.final} ` +
      `final); longest gap between two samples of a node ${r.maxSampleGapMs} ms`,
    `  foreign rules: ${r.faults.foreignAdded} added, ${r.faults.foreignRefused} refused by the ` +
      `kernel (an identical rule existed); mid-batch agent kills that caught the kernel ` +
      `changing: ${r.faults.midBatchHits} of ${midBatch}`,
    `  longest repair after an outside flush: ${
      repairs.length === 0
        ? "no flush repaired"
        : `${repairs[repairs.length - 1]!.toFixed(0)} ms (${repairs.length} flushes, median ${
          median!.toFixed(0)
        } ms)`
    }${
      r.repairsWithoutAgent > 0
        ? `; ${r.repairsWithoutAgent} more flush(es) hit a node whose agent was down until its ` +
          "rules were no longer desired"
        : ""
    }`,
    `  longest catch-up after a link cut healed: ${catchUp(r.catchUpTimes)}`,
    `  longest convergence after the last fault: ${
      r.convergenceMs === undefined ? "did not converge" : `${r.convergenceMs.toFixed(0)} ms`
    }`,
    `  API requests per minute per agent while no fault was active (${duration(r.calm.ms)}, ` +
      `Services and IPRules still changing): ${
        [...r.calm.perMinute].map(([node, byVerb]) => `${node} ${perMinute(byVerb)}`).join(", ")
      }`,
    `  peak RSS: ${[...r.peakRssKiB].map(([role, kib]) => `${role} ${mib(kib)}`).join(", ")}`,
    `  process exits the soak did not cause: ${
      r.exits.length === 0 ? "none" : r.exits.map((e) => `${e.role} (code ${e.code})`).join(", ")
    }`,
  );
  if (r.logsDir) lines.push(`  logs: ${r.logsDir}`);
  for (const v of r.violations) {
    lines.push(
      `  VIOLATION ${v.invariant} at ${seconds(v.at)}${v.node ? ` on ${v.node}` : ""}: ` +
        `${v.subject}: ${v.detail}; faults: ${v.faults.join("; ") || "none"}`,
    );
  }
  lines.push(
    `faults: ${r.faults.total} (${kinds}); at most ${r.faults.maxConcurrent} at once`,
    `violations: ${r.violations.length}`,
  );
  return lines;
}
