import { XMLParser } from "fast-xml-parser";

/** Test counts of one JUnit report. */
export interface JunitCounts {
  passed: number;
  failed: number;
  skipped: number;
}

/** A parent's failure that only reports its steps' failures ("1 test step failed."). */
const STEPS_FAILED = /^\d+ test steps? failed\.?$/;

/**
 * Counts the test cases of a JUnit report written by `deno test`: each leaf once (a test
 * without steps, or a step without sub-steps). A test with steps counts through its steps, so
 * a failing step is one failure and a test whose steps were all ignored is no pass; the parent
 * counts itself only when it failed on its own (outside its steps).
 */
export function countJunit(xml: string): JunitCounts {
  const parser = new XMLParser({
    ignoreAttributes: false,
    isArray: (name) => name === "testsuite" || name === "testcase",
  });
  const doc = parser.parse(xml) as {
    testsuites?: { testsuite?: { testcase?: Record<string, unknown>[] }[] };
  };
  const counts: JunitCounts = { passed: 0, failed: 0, skipped: 0 };
  for (const suite of doc.testsuites?.testsuite ?? []) {
    const cases = (suite.testcase ?? []).filter((c) => c && typeof c === "object");
    const names = cases.map((c) => String(c["@_name"] ?? ""));
    for (const [i, testcase] of cases.entries()) {
      const parent = names.some((n) => n.startsWith(`${names[i]} > `));
      const failure = testcase.failure;
      if (failure !== undefined) {
        const message = typeof failure === "object" && failure !== null
          ? String((failure as Record<string, unknown>)["@_message"] ?? "")
          : String(failure);
        if (!parent || !STEPS_FAILED.test(message.trim())) counts.failed++;
      } else if (parent) {
        continue; // counted through its steps
      } else if ("skipped" in testcase) {
        counts.skipped++;
      } else {
        counts.passed++;
      }
    }
  }
  return counts;
}
