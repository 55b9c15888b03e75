import assert from "node:assert/strict";
import { countJunit } from "./junit.ts";

Deno.test("countJunit() counts each leaf once: tests without steps, and steps", () => {
  const xml = `<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="deno test" tests="5" failures="2" errors="0" time="0.007">
  <testsuite name="./a_test.ts" tests="5" disabled="1" errors="0" failures="2">
    <testcase name="one" classname="./a_test.ts" time="0.000"></testcase>
    <testcase name="two" classname="./a_test.ts" time="0.002">
      <failure message="1 test step failed">1 test step failed.</failure>
    </testcase>
    <testcase name="ign" classname="./a_test.ts" time="0.000"><skipped/></testcase>
    <testcase name="two &gt; s1" classname="./a_test.ts" time="0.000"></testcase>
    <testcase name="two &gt; s2" classname="./a_test.ts" time="0.000">
      <failure message="Uncaught Error: x">Error: x</failure>
    </testcase>
  </testsuite>
</testsuites>`;
  // one, two > s1 pass; two > s2 fails (two's own failure only reports it); ign is skipped.
  assert.deepEqual(countJunit(xml), { passed: 2, failed: 1, skipped: 1 });
});

Deno.test("countJunit(): nested steps, all-ignored steps and a parent failing on its own", () => {
  const xml = `<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="deno test" tests="8" failures="2" errors="0" time="0.007">
  <testsuite name="./b_test.ts" tests="8" disabled="1" errors="0" failures="2">
    <testcase name="outer" classname="./b_test.ts" time="0.001"></testcase>
    <testcase name="outer &gt; mid" classname="./b_test.ts" time="0.001"></testcase>
    <testcase name="outer &gt; mid &gt; leaf" classname="./b_test.ts" time="0.000"></testcase>
    <testcase name="onlyignored" classname="./b_test.ts" time="0.000"></testcase>
    <testcase name="onlyignored &gt; s" classname="./b_test.ts" time="0.000"><skipped/></testcase>
    <testcase name="setup" classname="./b_test.ts" time="0.000">
      <failure message="Uncaught Error: control plane missing">Error</failure>
    </testcase>
    <testcase name="setup &gt; s" classname="./b_test.ts" time="0.000"></testcase>
  </testsuite>
</testsuites>`;
  // outer > mid > leaf and setup > s pass; onlyignored > s is skipped (not a pass); setup
  // failed on its own.
  assert.deepEqual(countJunit(xml), { passed: 2, failed: 1, skipped: 1 });
});

Deno.test("countJunit() reads a report with no test cases as zero", () => {
  assert.deepEqual(countJunit(`<testsuites name="deno test"></testsuites>`), {
    passed: 0,
    failed: 0,
    skipped: 0,
  });
});
