import { XMLParser } from "fast-xml-parser";

/** Test counts of one JUnit report. */
export interface JunitCounts {
  passed: number;
  failed: number;
  skipped: number;
}

/** Counts the test cases (steps included) of a JUnit report written by `deno test`. */
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
    for (const testcase of suite.testcase ?? []) {
      if (testcase && typeof testcase === "object" && "failure" in testcase) counts.failed++;
      else if (testcase && typeof testcase === "object" && "skipped" in testcase) counts.skipped++;
      else counts.passed++;
    }
  }
  return counts;
}
