import assert from "node:assert/strict";
import {
  type EquivalentMutant,
  formatReport,
  formatSurvivor,
  type MutantStatus,
  type ReportMutant,
  scoreFile,
  staleEntries,
  type StrykerReport,
} from "./mutate_report.ts";

const SOURCE = [
  "export function f(a: number): number {",
  "  if (a > 0) return a + 1;",
  "  return 0;",
  "}",
].join("\n");

function mutant(
  id: string,
  status: MutantStatus,
  at: [number, number, number, number],
  mutatorName: string,
  replacement: string,
): ReportMutant {
  const [line, column, endLine, endColumn] = at;
  return {
    id,
    mutatorName,
    replacement,
    status,
    location: { start: { line, column }, end: { line: endLine, column: endColumn } },
  };
}

function report(mutants: ReportMutant[]): StrykerReport {
  return { files: { "src/f.ts": { source: SOURCE, mutants } } };
}

const MUTANTS = [
  mutant("0", "Killed", [2, 8, 2, 13], "ConditionalExpression", "true"),
  mutant("1", "Timeout", [2, 8, 2, 13], "EqualityOperator", "a >= 0"),
  mutant("2", "Survived", [2, 21, 2, 26], "ArithmeticOperator", "a - 1"),
  mutant("3", "NoCoverage", [3, 10, 3, 11], "NumberLiteral", "1"),
  mutant("4", "CompileError", [1, 38, 4, 2], "BlockStatement", "{}"),
  mutant("5", "Survived", [1, 38, 4, 2], "BlockStatement", "{}"),
];

Deno.test("scoreFile() counts timeouts as detected and errors as not counting", () => {
  const score = scoreFile(report(MUTANTS), "src/f.ts", []);
  assert.equal(score.mutants, 6);
  assert.equal(score.killed, 1);
  assert.equal(score.timeout, 1);
  assert.equal(score.survived, 3);
  assert.equal(score.invalid, 1);
  assert.equal(score.score, 40); // 2 detected of 5
  assert.equal(score.strykerScore, 40);
});

Deno.test("scoreFile() lists survivors in source order with the text they replace", () => {
  const score = scoreFile(report(MUTANTS), "src/f.ts", []);
  assert.deepEqual(
    score.survivors.map((s) => formatSurvivor("src/f.ts", s)),
    [
      "src/f.ts:1:38 BlockStatement: { -> {}",
      "src/f.ts:2:21 ArithmeticOperator: a + 1 -> a - 1",
      "src/f.ts:3:10 NumberLiteral (no coverage): 0 -> 1",
    ],
  );
});

Deno.test("scoreFile() takes an allowlisted equivalent mutant out of the score, matched by its line", () => {
  const allow: EquivalentMutant = {
    file: "src/f.ts",
    mutator: "ArithmeticOperator",
    line: "if (a > 0) return a + 1;",
    replacement: "a - 1",
    why: "example",
  };
  const otherLine = { ...allow, line: "return 0;" };
  const score = scoreFile(report(MUTANTS), "src/f.ts", [allow, otherLine]);
  assert.equal(score.equivalent, 1);
  assert.equal(score.survived, 2);
  assert.equal(score.score, 50); // 2 detected of 4
  assert.equal(score.strykerScore, 40); // Stryker's own score still counts it
  assert.deepEqual(score.equivalents.map((e) => e.allowed), [allow]);
  assert.deepEqual(staleEntries([score], [allow, otherLine]), [otherLine]);
  assert.match(formatReport([score], { target: 85 }), /a \+ 1 -> a - 1\n {2}example/);
});

Deno.test("scoreFile() tells apart mutants of one line by the text they replace, when told it", () => {
  const survivors = [
    mutant("0", "Survived", [2, 7, 2, 12], "ConditionalExpression", "true"),
    mutant("1", "Survived", [2, 21, 2, 26], "ConditionalExpression", "true"),
  ];
  const allow: EquivalentMutant = {
    file: "src/f.ts",
    mutator: "ConditionalExpression",
    line: "if (a > 0) return a + 1;",
    replacement: "true",
    original: "a + 1",
    why: "example",
  };
  const score = scoreFile(report(survivors), "src/f.ts", [allow]);
  assert.deepEqual(score.equivalents.map((e) => e.original), ["a + 1"]);
  assert.deepEqual(score.survivors.map((e) => e.original), ["a > 0"]);
});

Deno.test("scoreFile() gives 100 % to a file with nothing to detect", () => {
  assert.equal(scoreFile(report([]), "src/f.ts", []).score, 100);
  assert.throws(() => scoreFile(report([]), "src/g.ts", []), /no file "src\/g.ts"/);
});

Deno.test("formatReport() marks a file below the target", () => {
  const score = scoreFile(report(MUTANTS), "src/f.ts", []);
  assert.match(formatReport([score], { target: 85 }), /src\/f\.ts +40\.0% .* below 85%/);
  assert.doesNotMatch(formatReport([score], { target: 40 }), /below/);
});
