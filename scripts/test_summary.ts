/**
 * Prints `N passed, N failed` over every tier from the JUnit reports `deno test --junit-path`
 * wrote (Deno's own summary is per tier and not read by CI). A tier whose runner failed without
 * a failed case in its report (a module that did not load, a crash) counts as one failure.
 */
import { countJunit } from "./junit.ts";

const dir = Deno.args[0] ?? ".cache/test-results";
let passed = 0;
let failed = 0;
let skipped = 0;
for await (const entry of Deno.readDir(dir)) {
  if (!entry.name.endsWith(".exit")) continue;
  const tier = entry.name.slice(0, -".exit".length);
  const exitCode = Number((await Deno.readTextFile(`${dir}/${entry.name}`)).trim());
  let counts = { passed: 0, failed: 0, skipped: 0 };
  try {
    counts = countJunit(await Deno.readTextFile(`${dir}/${tier}.xml`));
  } catch {
    // No report: the runner died before writing one; the exit code below tells.
  }
  if (exitCode !== 0 && counts.failed === 0) {
    console.error(`Tier "${tier}" exited with code ${exitCode} without a failed test case`);
    counts.failed = 1;
  }
  passed += counts.passed;
  failed += counts.failed;
  skipped += counts.skipped;
}
console.log(`${passed} passed, ${failed} failed` + (skipped ? `, ${skipped} skipped` : ""));
if (failed > 0) Deno.exit(1);
