import assert from "node:assert/strict";
import { countJunit } from "./junit.ts";

Deno.test("countJunit() counts passed, failed and skipped cases, steps included", () => {
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
  assert.deepEqual(countJunit(xml), { passed: 2, failed: 2, skipped: 1 });
});

Deno.test("countJunit() reads a report with no test cases as zero", () => {
  assert.deepEqual(countJunit(`<testsuites name="deno test"></testsuites>`), {
    passed: 0,
    failed: 0,
    skipped: 0,
  });
});
