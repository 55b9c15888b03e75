/**
 * Flag parsing shared by both executables: `node:util` parseArgs (strict), typed value
 * checks, and `--help` generated from the same table so it lists every flag.
 */
import { parseArgs } from "node:util";
// @deno-types="@types/ms"
import ms from "ms";
import { MAX_TIMER_MS } from "./k8s/backoff.ts";

/** A command-line mistake: reported as one line, exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** One flag of an executable. */
export interface FlagDef {
  name: string;
  type: "string" | "boolean";
  /** Placeholder of the value in --help, e.g. "DURATION". */
  value?: string;
  /** Default shown in --help (applied by the caller's typed config). */
  default?: string;
  help: string;
}

/** Parsed flags: string or boolean values by flag name; `undefined` when not given. */
export type FlagValues = Record<string, string | boolean | undefined>;

/** Parses argv against the flag table; unknown flags and stray arguments are UsageErrors. */
export function parseFlags(args: readonly string[], defs: readonly FlagDef[]): FlagValues {
  const options: Record<string, { type: "string" | "boolean" }> = { help: { type: "boolean" } };
  for (const def of defs) options[def.name] = { type: def.type };
  try {
    const { values } = parseArgs({
      args: [...args],
      options,
      strict: true,
      allowPositionals: false,
    });
    return values as FlagValues;
  } catch (err: unknown) {
    const message = err instanceof Error ? err.message : String(err);
    throw new UsageError(message.split("\n")[0]!.replace(/\.$/, ""));
  }
}

/** The --help text: usage line, summary, then every flag with its default. */
export function helpText(program: string, summary: string, defs: readonly FlagDef[]): string {
  const help: FlagDef = { name: "help", type: "boolean", help: "Show this help and exit" };
  const rows = [...defs, help]
    .map((d) => {
      const left = `  --${d.name}${d.type === "string" ? `=${d.value ?? "VALUE"}` : ""}`;
      const right = d.help + (d.default !== undefined ? ` (default: ${d.default})` : "");
      return [left, right] as const;
    });
  const width = Math.max(...rows.map(([left]) => left.length)) + 2;
  return [
    `Usage: ${program} [flags]`,
    "",
    summary,
    "",
    "Flags:",
    ...rows.map(([left, right]) => left.padEnd(width) + right),
  ].join("\n");
}

/**
 * Longest duration flag: every duration ends up in a timer, and setTimeout fires at once for a
 * delay above 2^31-1 ms (~596.5 h), which would turn a resync into a busy loop.
 */
export const MAX_DURATION_MS = Math.floor(MAX_TIMER_MS / 3_600_000) * 3_600_000; // 596h

/** A duration flag such as `10s`, `1m30s`, `250ms`, in milliseconds, within [minMs, 596h]. */
export function durationFlag(name: string, value: string, minMs = 1): number {
  // Go-style durations as the Agent CRD and kubectl users write them ("10s", "1m30s"): `ms`
  // parses one number and unit, so the parts of a compound are parsed one by one and summed.
  const parts = /^(\d+(\.\d+)?(ms|s|m|h))+$/.test(value)
    ? value.match(/\d+(\.\d+)?(ms|s|m|h)/g)
    : null;
  const parsed = parts?.reduce((sum, part) => sum + ms(part as ms.StringValue), 0);
  if (typeof parsed !== "number" || !Number.isFinite(parsed) || parsed <= 0) {
    throw new UsageError(
      `Invalid value for --${name}: "${value}" (expected a duration such as 10s, 1m30s, 250ms)`,
    );
  }
  if (parsed < minMs) {
    throw new UsageError(
      `Invalid value for --${name}: "${value}" (expected at least ${ms(minMs)})`,
    );
  }
  if (parsed > MAX_DURATION_MS) {
    throw new UsageError(`Invalid value for --${name}: "${value}" (expected at most 596h)`);
  }
  return parsed;
}

/** An integer flag within [min, max]. */
export function integerFlag(name: string, value: string, min: number, max: number): number {
  const n = /^-?\d+$/.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new UsageError(
      `Invalid value for --${name}: "${value}" (expected an integer from ${min} to ${max})`,
    );
  }
  return n;
}

/** A flag that takes one of a few words. */
export function choiceFlag<T extends string>(
  name: string,
  value: string,
  allowed: readonly T[],
): T {
  if (!(allowed as readonly string[]).includes(value)) {
    throw new UsageError(
      `Invalid value for --${name}: "${value}" (expected one of ${allowed.join(", ")})`,
    );
  }
  return value as T;
}

/** A listen address `host:port` or `:port` (port 0..65535). */
export function addressFlag(name: string, value: string): { hostname: string; port: number } {
  const match = /^(\[[0-9a-fA-F:.]+\]|[^:\s]*):(\d{1,5})$/.exec(value);
  const port = match ? Number(match[2]) : NaN;
  if (!match || port > 65535) {
    throw new UsageError(
      `Invalid value for --${name}: "${value}" (expected host:port or :port, e.g. :8080)`,
    );
  }
  const host = match[1]!.replace(/^\[|\]$/g, "");
  // No host: every address of both families ("::" also accepts IPv4 on Linux), so probes of an
  // IPv6 pod or node address reach it too; startHealthServer falls back to 0.0.0.0 without IPv6.
  return { hostname: host === "" ? "::" : host, port };
}

/** Log line formats. */
export type LogFormat = "json" | "text";
/** Log levels. */
export type LogLevel = "debug" | "info" | "warn" | "error";
const LOG_LEVELS: readonly LogLevel[] = ["debug", "info", "warn", "error"];

/** What flag defaults come from: environment and terminal. */
export interface FlagContext {
  env: Readonly<Record<string, string | undefined>>;
  isTerminal: boolean;
}

/** This process's flag context: its environment, and whether stderr is a terminal. */
export function flagContext(): FlagContext {
  return { env: Deno.env.toObject(), isTerminal: Deno.stderr.isTerminal() };
}

/** --kubeconfig, shared by both executables. */
export const KUBECONFIG_FLAG: FlagDef = {
  name: "kubeconfig",
  type: "string",
  value: "PATH",
  help: "Kubeconfig to use (default: in-cluster, then $KUBECONFIG, then ~/.kube/config)",
};

/** --log-format, --log-level and --version, shared by both executables. */
export const COMMON_FLAGS: readonly FlagDef[] = [
  {
    name: "log-format",
    type: "string",
    value: "json|text",
    default: "json, text on a terminal",
    help: "Log line format",
  },
  {
    name: "log-level",
    type: "string",
    value: "LEVEL",
    default: "info",
    help: "debug, info, warn or error",
  },
  { name: "version", type: "boolean", help: "Print the version and exit" },
];

/** A string flag's value, undefined when not given. */
export function stringFlag(values: FlagValues, name: string): string | undefined {
  const v = values[name];
  return typeof v === "string" ? v : undefined;
}

/** The typed values of the shared flags. */
export interface CommonOptions {
  help: boolean;
  version: boolean;
  kubeconfig?: string;
  logFormat: LogFormat;
  logLevel: LogLevel;
}

/** Reads the shared flags (see {@link KUBECONFIG_FLAG}, {@link COMMON_FLAGS}). */
export function commonOptions(values: FlagValues, ctx: FlagContext): CommonOptions {
  const options: CommonOptions = {
    help: values.help === true,
    version: values.version === true,
    logFormat: choiceFlag(
      "log-format",
      stringFlag(values, "log-format") ?? (ctx.isTerminal ? "text" : "json"),
      ["json", "text"],
    ),
    logLevel: choiceFlag("log-level", stringFlag(values, "log-level") ?? "info", LOG_LEVELS),
  };
  const kubeconfig = stringFlag(values, "kubeconfig");
  if (kubeconfig !== undefined) options.kubeconfig = kubeconfig;
  return options;
}

/**
 * Runs `fn` with a signal that aborts on SIGTERM or SIGINT (logged), and removes the signal
 * listeners afterwards: the one shutdown path of both executables.
 */
export async function untilSignal<T>(
  log: { info: (msg: string) => void },
  fn: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const shutdown = new AbortController();
  const stop = () => {
    log.info("Shutdown requested");
    shutdown.abort();
  };
  Deno.addSignalListener("SIGTERM", stop);
  Deno.addSignalListener("SIGINT", stop);
  try {
    return await fn(shutdown.signal);
  } finally {
    Deno.removeSignalListener("SIGTERM", stop);
    Deno.removeSignalListener("SIGINT", stop);
  }
}

/**
 * Runs an entry point's main: `--help` prints and exits 0, a UsageError prints one line and
 * exits 2.
 */
export async function runCli(
  program: string,
  main: (args: readonly string[]) => Promise<number | void> | number | void,
): Promise<void> {
  try {
    const code = await main(Deno.args);
    if (typeof code === "number" && code !== 0) Deno.exit(code);
  } catch (err: unknown) {
    if (err instanceof UsageError) {
      console.error(`${program}: ${err.message} (see --help)`);
      Deno.exit(2);
    }
    throw err;
  }
}
