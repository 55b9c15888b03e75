import assert from "node:assert/strict";
import { BOUNDS } from "./checker.ts";
import { formatReport, type SoakReport } from "./report.ts";

const REPORT: SoakReport = {
  seed: 42,
  durationMs: 900_000,
  nodes: ["n0", "n1"],
  loadAverage: { start: "0.50 0.40 0.30", end: "1.50 1.40 1.30" },
  bounds: BOUNDS,
  faults: {
    byKind: new Map([["apiserver-kill", 3], ["link-cut (drop)", 2]]),
    total: 5,
    maxConcurrent: 2,
    foreignAdded: 4,
    foreignRefused: 1,
    midBatchHits: 0,
  },
  changes: { model: 2_700, writes: 3_000, failures: 12 },
  checks: { kernel: 1_000, foreign: 990, configs: 100, final: 1 },
  violations: [],
  repairTimes: [12, 40, 8],
  repairsWithoutAgent: 0,
  catchUpTimes: [1_200, undefined, 300],
  convergenceMs: 3_210,
  calm: {
    ms: 125_000,
    perMinute: new Map([["n0", new Map([["GET", 1], ["PATCH", 60.5]])], ["n1", undefined]]),
  },
  peakRssKiB: new Map([["agent n0", 76_800]]),
  exits: [{ role: "controller-1", code: 1 }],
  maxSampleGapMs: 180,
};

Deno.test("formatReport() prints the figures and closes with faults and violations", () => {
  const lines = formatReport(REPORT);
  assert.equal(lines.at(-2), "faults: 5 (apiserver-kill 3, link-cut (drop) 2); at most 2 at once");
  assert.equal(lines.at(-1), "violations: 0");
  const text = lines.join("\n");
  assert.match(text, /seed 42, duration 15m00s, 2 nodes/);
  assert.match(text, /longest repair after an outside flush: 40 ms \(3 flushes, median 12 ms\)/);
  assert.match(text, /longest convergence after the last fault: 3210 ms/);
  assert.match(text, /catch-up after a link cut healed: 1200 ms \(3 cuts, 1 not converged/);
  assert.match(text, /\(2m05s, .*\): n0 61\.5 \(GET 1\.0, PATCH 60\.5\), n1 \? \(no calm/);
  assert.match(text, /peak RSS: agent n0 75 MiB/);
  assert.match(text, /invariant checks: 2091 /);
});

Deno.test("formatReport() lists each violation with its node, time and faults", () => {
  const lines = formatReport({
    ...REPORT,
    convergenceMs: undefined,
    violations: [{
      invariant: "no-dip",
      at: 12_345,
      node: "n1",
      subject: "from 10.96.0.1 lookup 100 priority 1000",
      detail: "desired rule missing",
      faults: ["#3 flush n1"],
    }],
  });
  assert.equal(lines.at(-1), "violations: 1");
  assert.ok(lines.includes(
    "  VIOLATION no-dip at 12.345s on n1: from 10.96.0.1 lookup 100 priority 1000: desired " +
      "rule missing; faults: #3 flush n1",
  ));
  assert.match(lines.join("\n"), /longest convergence after the last fault: did not converge/);
});
