/**
 * `task mutate [-- FILE...] [--force] [--concurrency=N]`: mutation testing of the cores with
 * StrykerJS. Installs the pinned Stryker (tools/mutate/package-lock.json) with npm into
 * .cache/mutate/npm, out of deno.json's import map; then, one file at a time, runs Stryker's
 * command test runner with `deno test` on that file's test files (tools/mutate/targets.ts) and
 * prints the score per file and the surviving mutants. Report: .cache/mutate/report.md (and
 * report.json, Stryker's HTML per file under .cache/mutate/html/).
 *
 * Incremental: Stryker reuses the results of mutants whose code did not change. Its command
 * runner knows no tests, so it cannot see a changed test; a file whose tests or their imports
 * changed (a fingerprint of the module graph, the mutated file aside) is therefore run in full.
 */
import { parseArgs } from "node:util";
import { EQUIVALENT } from "../tools/mutate/equivalent.ts";
import { type MutationTarget, TARGET_SCORE, TARGETS, TIER_FLAGS } from "../tools/mutate/targets.ts";
import {
  type FileScore,
  formatReport,
  formatSurvivor,
  formatTable,
  scoreFile,
  staleEntries,
  type StrykerReport,
} from "./mutate_report.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const TOOL = `${ROOT}/tools/mutate`;
const CACHE = `${ROOT}/.cache/mutate`;
const NODE_MAJOR = 20;

const decoder = new TextDecoder();

async function run(
  cmd: string,
  args: string[],
  options: { cwd?: string; env?: Record<string, string> } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(cmd, { args, ...options, stdin: "null" }).output();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

async function readOrEmpty(path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (err: unknown) {
    if (err instanceof Deno.errors.NotFound) return "";
    throw err;
  }
}

async function sha256(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Installs the pinned StrykerJS with `npm ci` unless installed; returns its CLI script. */
async function ensureStryker(): Promise<string> {
  let version = "";
  try {
    version = (await run("node", ["--version"])).stdout.trim();
  } catch {
    // Not installed: reported below.
  }
  const major = Number(/^v(\d+)\./.exec(version)?.[1] ?? 0);
  if (major < NODE_MAJOR) {
    throw new Error(
      `StrykerJS needs Node.js ${NODE_MAJOR} or later on the PATH (found "${version || "none"}")`,
    );
  }
  const dir = `${CACHE}/npm`;
  const cli = `${dir}/node_modules/@stryker-mutator/core/bin/stryker.js`;
  const wanted = await Deno.readTextFile(`${TOOL}/package-lock.json`);
  const manifest = await Deno.readTextFile(`${TOOL}/package.json`);
  const installed = await readOrEmpty(`${dir}/package-lock.json`);
  const hasCli = await Deno.stat(cli).then(() => true, () => false);
  if (installed === wanted && hasCli) return cli;
  console.log("mutate: installing StrykerJS (tools/mutate/package-lock.json) with npm ci");
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(`${dir}/package.json`, manifest);
  await Deno.writeTextFile(`${dir}/package-lock.json`, wanted);
  const npm = await run("npm", ["ci", "--no-audit", "--no-fund", "--loglevel=error"], { cwd: dir });
  if (npm.code !== 0) throw new Error(`npm ci in "${dir}" failed: ${npm.stderr.trim()}`);
  return cli;
}

/** Files, relative to the root, that the test files load (their whole local module graph). */
async function moduleGraph(tests: readonly string[]): Promise<string[]> {
  const files = new Set<string>();
  for (const test of tests) {
    const info = await run(Deno.execPath(), ["info", "--json", test], { cwd: ROOT });
    if (info.code !== 0) throw new Error(`deno info "${test}" failed: ${info.stderr.trim()}`);
    const graph = JSON.parse(info.stdout) as { modules: { specifier: string }[] };
    const prefix = `file://${ROOT}/`;
    for (const { specifier } of graph.modules) {
      if (specifier.startsWith(prefix)) files.add(specifier.slice(prefix.length));
    }
  }
  return [...files].sort();
}

/**
 * What the results of `target` depend on besides its own file (which Stryker's incremental mode
 * diffs itself): the tests and everything they import, their permissions, Stryker and its config.
 */
async function fingerprint(target: MutationTarget): Promise<string> {
  const parts: string[] = [
    JSON.stringify(target),
    JSON.stringify(TIER_FLAGS[target.tier]),
    await Deno.readTextFile(`${TOOL}/stryker.config.json`),
    await Deno.readTextFile(`${TOOL}/package-lock.json`),
  ];
  for (const file of await moduleGraph(target.tests)) {
    if (file !== target.file) parts.push(file, await sha256(await Deno.readTextFile(file)));
  }
  return await sha256(parts.join("\0"));
}

function slug(file: string): string {
  return file.replace(/\.ts$/, "").replaceAll("/", "_");
}

function reportPath(target: MutationTarget): string {
  return `${CACHE}/reports/${slug(target.file)}.json`;
}

/** Runs Stryker on one file; returns its score and the seconds it took. */
async function mutateFile(
  cli: string,
  target: MutationTarget,
  options: { force: boolean; concurrency: number },
): Promise<{ score: FileScore; seconds: number }> {
  const name = slug(target.file);
  const printPath = `${CACHE}/incremental/${name}.fingerprint`;
  const print = await fingerprint(target);
  const force = options.force || (await readOrEmpty(printPath)) !== print;
  const base = JSON.parse(await Deno.readTextFile(`${TOOL}/stryker.config.json`));
  delete base.$schema;
  const config = {
    ...base,
    mutate: [target.file],
    concurrency: options.concurrency,
    incrementalFile: `.cache/mutate/incremental/${name}.json`,
    force,
    jsonReporter: { fileName: `.cache/mutate/reports/${name}.json` },
    htmlReporter: { fileName: `.cache/mutate/html/${name}.html` },
  };
  for (const dir of ["run", "logs", "incremental", "reports", "html"]) {
    await Deno.mkdir(`${CACHE}/${dir}`, { recursive: true });
  }
  const configPath = `${CACHE}/run/${name}.config.json`;
  await Deno.writeTextFile(configPath, JSON.stringify(config, null, 2));
  const log = `${CACHE}/logs/${name}.log`;
  console.log(
    `mutate: ${target.file} (${target.tests.join(" ")}${force ? "; full run" : "; incremental"})`,
  );
  const started = performance.now();
  // The log is written as Stryker goes (its progress lines), for `tail -f` on a long run.
  const logFile = await Deno.open(log, { write: true, create: true, truncate: true });
  const child = new Deno.Command("node", {
    args: [cli, "run", configPath],
    cwd: ROOT,
    env: {
      MUTATE_DENO: Deno.execPath(),
      MUTATE_FLAGS: TIER_FLAGS[target.tier].join(" "),
      MUTATE_TESTS: target.tests.join(" "),
      NO_COLOR: "1",
      DENO_NO_UPDATE_CHECK: "1",
    },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  // Plain writes: a writable stream of the file held them until it was closed.
  const copy = async (stream: ReadableStream<Uint8Array>) => {
    for await (const chunk of stream) {
      for (let done = 0; done < chunk.length;) done += await logFile.write(chunk.subarray(done));
    }
  };
  const [status] = await Promise.all([child.status, copy(child.stdout), copy(child.stderr)]);
  logFile.close();
  const seconds = (performance.now() - started) / 1000;
  if (status.code !== 0) {
    const tail = (await Deno.readTextFile(log)).trim().split("\n").slice(-30).join("\n");
    throw new Error(`Stryker failed on "${target.file}" (log: ${log}):\n${tail}`);
  }
  const report = JSON.parse(await Deno.readTextFile(reportPath(target))) as StrykerReport;
  await Deno.writeTextFile(printPath, print);
  return { score: scoreFile(report, target.file, EQUIVALENT), seconds };
}

/** The last score of every target that has a report, whether run now or before. */
async function lastScores(): Promise<FileScore[]> {
  const scores: FileScore[] = [];
  for (const target of TARGETS) {
    const text = await readOrEmpty(reportPath(target));
    if (text) scores.push(scoreFile(JSON.parse(text) as StrykerReport, target.file, EQUIVALENT));
  }
  return scores;
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    options: {
      force: { type: "boolean", default: false },
      concurrency: { type: "string", default: Deno.env.get("MUTATE_CONCURRENCY") ?? "2" },
    },
  });
  const concurrency = Number(values.concurrency);
  if (!Number.isInteger(concurrency) || concurrency < 1) {
    throw new Error(`--concurrency must be a positive integer (got "${values.concurrency}")`);
  }
  const known = new Map(TARGETS.map((t) => [t.file, t]));
  const targets = positionals.length === 0 ? [...TARGETS] : positionals.map((file) => {
    const target = known.get(file.replace(/^\.\//, ""));
    if (target === undefined) {
      throw new Error(
        `"${file}" is not in tools/mutate/targets.ts (${[...known.keys()].join(", ")})`,
      );
    }
    return target;
  });
  if (targets.some((t) => t.tier === "netns") && Deno.uid() !== 0) {
    throw new Error("The netns tier's tests need root (network namespaces): run as root");
  }
  const cli = await ensureStryker();
  const started = performance.now();
  const seconds = new Map<string, number>();
  const now: FileScore[] = [];
  for (const target of targets) {
    const result = await mutateFile(cli, target, { force: values.force, concurrency });
    seconds.set(target.file, result.seconds);
    now.push(result.score);
    console.log(formatTable([result.score], { target: TARGET_SCORE, seconds })[1]);
  }
  const total = (performance.now() - started) / 1000;
  const all = await lastScores();
  const stale = staleEntries(all, EQUIVALENT);
  const header = `# Mutation testing (StrykerJS, command runner driving deno test)\n\n` +
    `Last run: ${new Date().toISOString()}, ${targets.length} file(s) in ${total.toFixed(0)} s, ` +
    `concurrency ${concurrency}. Target: ${TARGET_SCORE}% per file, equivalent mutants ` +
    `(tools/mutate/equivalent.ts) not counted. Times are of this run; other rows are from earlier runs.`;
  const markdown = formatReport(all, { target: TARGET_SCORE, seconds, stale, header });
  await Deno.writeTextFile(`${CACHE}/report.md`, markdown);
  await Deno.writeTextFile(
    `${CACHE}/report.json`,
    JSON.stringify(
      { total, concurrency, seconds: Object.fromEntries(seconds), scores: all },
      null,
      2,
    ),
  );
  console.log("");
  console.log(formatTable(all, { target: TARGET_SCORE, seconds }).join("\n"));
  console.log("");
  const survivors = now.flatMap((s) => s.survivors.map((v) => formatSurvivor(s.file, v)));
  console.log(
    survivors.length ? `Surviving mutants:\n${survivors.join("\n")}` : "No surviving mutants.",
  );
  for (const e of stale) {
    console.log(`Stale allowlist entry: ${e.file} ${e.mutator}: ${e.line} -> ${e.replacement}`);
  }
  console.log(
    `\nmutate: ${targets.length} file(s) in ${total.toFixed(0)} s; report ${CACHE}/report.md`,
  );
  return now.some((s) => s.score < TARGET_SCORE) ? 1 : 0;
}

if (import.meta.main) {
  try {
    Deno.exit(await main());
  } catch (err: unknown) {
    console.error(`mutate: ${err instanceof Error ? err.message : String(err)}`);
    Deno.exit(2);
  }
}
