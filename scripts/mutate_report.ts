/**
 * The pure half of `task mutate`: reads StrykerJS's JSON report (mutation-testing-report-schema),
 * takes the allowlisted equivalent mutants out, computes the score per file and formats the
 * survivors. No I/O; scripts/mutate.ts runs Stryker and writes the files.
 */

/** A mutant's status as Stryker reports it. */
export type MutantStatus =
  | "Killed"
  | "Survived"
  | "NoCoverage"
  | "Timeout"
  | "CompileError"
  | "RuntimeError"
  | "Ignored"
  | "Pending";

/** One mutant of Stryker's JSON report (the fields used here). */
export interface ReportMutant {
  id: string;
  mutatorName: string;
  replacement?: string;
  status: MutantStatus;
  location: { start: { line: number; column: number }; end: { line: number; column: number } };
}

/** Stryker's JSON report (the fields used here). */
export interface StrykerReport {
  files: Record<string, { source: string; mutants: ReportMutant[] }>;
}

/** An allowlisted equivalent mutant (tools/mutate/equivalent.ts). */
export interface EquivalentMutant {
  /** The mutated file, relative to the repository root. */
  file: string;
  /** Stryker's mutator name, e.g. `ConditionalExpression`. */
  mutator: string;
  /** The source line where the mutant starts, trimmed. */
  line: string;
  /** The mutant's replacement text as Stryker prints it. */
  replacement: string;
  /**
   * The text it replaces (first line), when the line has several mutants of that mutator and
   * replacement (e.g. each operand of `a && b && c` → `true`): only this one is equivalent.
   */
  original?: string;
  /** Why no test can kill it: the program behaves the same. */
  why: string;
}

/** A mutant that no test killed, located for a person. */
export interface Survivor {
  /** 1-based line and column where the mutant starts. */
  line: number;
  column: number;
  mutator: string;
  /** The original text the mutant replaces (first line only when it spans several). */
  original: string;
  replacement: string;
  status: "Survived" | "NoCoverage";
  /** The allowlist entry that shows it equivalent. */
  allowed?: EquivalentMutant;
}

/** The mutation score of one file. */
export interface FileScore {
  file: string;
  /** Every mutant Stryker made, whatever its status. */
  mutants: number;
  killed: number;
  timeout: number;
  /** Survived or not covered, equivalent ones excluded. */
  survived: number;
  /** Survivors the allowlist shows equivalent. */
  equivalent: number;
  /** Mutants that do not count: compile or runtime errors, ignored. */
  invalid: number;
  /** Stryker's own score: detected / (detected + undetected), in percent. */
  strykerScore: number;
  /** The score with equivalent mutants out of the denominator, in percent. */
  score: number;
  /** Survivors not shown equivalent, in source order. */
  survivors: Survivor[];
  /** Survivors matched by the allowlist. */
  equivalents: Survivor[];
}

/** The trimmed text of 1-based `line` of `source`. */
function sourceLine(lines: readonly string[], line: number): string {
  return (lines[line - 1] ?? "").trim();
}

/** The text a mutant replaces, cut to its first line. */
function originalText(lines: readonly string[], mutant: ReportMutant): string {
  const { start, end } = mutant.location;
  const first = lines[start.line - 1] ?? "";
  const stop = end.line === start.line ? end.column - 1 : first.length;
  return first.slice(start.column - 1, stop).trim();
}

/** Percent with one decimal; 100 when nothing counts (no mutant, or only equivalent ones). */
function percent(part: number, whole: number): number {
  return whole === 0 ? 100 : Math.round((part / whole) * 1000) / 10;
}

/** Scores `file` of `report`, taking the `allowlist`'s equivalent mutants out. */
export function scoreFile(
  report: StrykerReport,
  file: string,
  allowlist: readonly EquivalentMutant[],
): FileScore {
  const entry = report.files[file];
  if (entry === undefined) throw new Error(`Stryker's report has no file "${file}"`);
  const lines = entry.source.split("\n");
  const score: FileScore = {
    file,
    mutants: entry.mutants.length,
    killed: 0,
    timeout: 0,
    survived: 0,
    equivalent: 0,
    invalid: 0,
    strykerScore: 0,
    score: 0,
    survivors: [],
    equivalents: [],
  };
  for (const mutant of entry.mutants) {
    switch (mutant.status) {
      case "Killed":
        score.killed++;
        continue;
      case "Timeout":
        score.timeout++;
        continue;
      case "Survived":
      case "NoCoverage":
        break;
      default:
        score.invalid++;
        continue;
    }
    const survivor: Survivor = {
      line: mutant.location.start.line,
      column: mutant.location.start.column,
      mutator: mutant.mutatorName,
      original: originalText(lines, mutant),
      replacement: mutant.replacement ?? "",
      status: mutant.status,
    };
    const match = allowlist.find((e) =>
      e.file === file && e.mutator === survivor.mutator && e.replacement === survivor.replacement &&
      e.line === sourceLine(lines, survivor.line) &&
      (e.original === undefined || e.original === survivor.original)
    );
    if (match === undefined) {
      score.survived++;
      score.survivors.push(survivor);
    } else {
      score.equivalent++;
      score.equivalents.push({ ...survivor, allowed: match });
    }
  }
  const detected = score.killed + score.timeout;
  score.strykerScore = percent(detected, detected + score.survived + score.equivalent);
  score.score = percent(detected, detected + score.survived);
  const bySource = (a: Survivor, b: Survivor) => a.line - b.line || a.column - b.column;
  score.survivors.sort(bySource);
  score.equivalents.sort(bySource);
  return score;
}

/**
 * Allowlist entries of the scored files that matched no surviving mutant: the code or a test
 * changed, and the entry should go.
 */
export function staleEntries(
  scores: readonly FileScore[],
  allowlist: readonly EquivalentMutant[],
): EquivalentMutant[] {
  const scored = new Set(scores.map((s) => s.file));
  const used = new Set(scores.flatMap((s) => s.equivalents.map((e) => e.allowed)));
  return allowlist.filter((e) => scored.has(e.file) && !used.has(e));
}

/** One survivor as a line: `file:line:col Mutator: original -> replacement`. */
export function formatSurvivor(file: string, s: Survivor): string {
  const oneLine = (text: string) => text.replace(/\s+/g, " ").slice(0, 100);
  const tag = s.status === "NoCoverage" ? " (no coverage)" : "";
  return `${file}:${s.line}:${s.column} ${s.mutator}${tag}: ${oneLine(s.original)} -> ${
    oneLine(s.replacement)
  }`;
}

/** The per-file table as aligned text lines. */
export function formatTable(
  scores: readonly FileScore[],
  options: { target: number; seconds?: ReadonlyMap<string, number> },
): string[] {
  const width = Math.max(4, ...scores.map((s) => s.file.length));
  const head =
    `${"file".padEnd(width)}  score  stryker  mutants  killed  timeout  survived  equiv` +
    (options.seconds ? "   time" : "");
  const rows = scores.map((s) => {
    const cells = [
      s.file.padEnd(width),
      `${s.score.toFixed(1)}%`.padStart(6),
      `${s.strykerScore.toFixed(1)}%`.padStart(8),
      String(s.mutants).padStart(8),
      String(s.killed).padStart(7),
      String(s.timeout).padStart(8),
      String(s.survived).padStart(9),
      String(s.equivalent).padStart(6),
    ];
    const secs = options.seconds?.get(s.file);
    if (options.seconds) {
      cells.push(secs === undefined ? "      -" : `${secs.toFixed(0)} s`.padStart(7));
    }
    return cells.join(" ") + (s.score < options.target ? `  below ${options.target}%` : "");
  });
  return [head, ...rows];
}

/** The whole report as Markdown: table, survivors per file, the equivalent mutants and why. */
export function formatReport(
  scores: readonly FileScore[],
  options: {
    target: number;
    seconds?: ReadonlyMap<string, number>;
    stale?: readonly EquivalentMutant[];
    header?: string;
  },
): string {
  const out: string[] = [];
  if (options.header) out.push(options.header, "");
  out.push("```", ...formatTable(scores, options), "```", "");
  out.push("## Surviving mutants", "");
  const survivors = scores.flatMap((s) => s.survivors.map((v) => formatSurvivor(s.file, v)));
  out.push(...(survivors.length ? survivors.map((l) => `- ${l}`) : ["None."]), "");
  out.push("## Equivalent mutants (allowlist, not counted)", "");
  const equivalents = scores.flatMap((s) =>
    s.equivalents.map((v) => `- ${formatSurvivor(s.file, v)}\n  ${v.allowed?.why ?? ""}`)
  );
  out.push(...(equivalents.length ? equivalents : ["None."]), "");
  if (options.stale?.length) {
    out.push("## Stale allowlist entries (matched no surviving mutant)", "");
    for (const e of options.stale) {
      out.push(`- ${e.file} ${e.mutator}: ${e.line} -> ${e.replacement}`);
    }
    out.push("");
  }
  return out.join("\n");
}
